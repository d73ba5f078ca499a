"""The command line's choices that must be made before Faust is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import ROOT


def _loop_policy(argv: list[str]) -> str:
    """The event loop policy in force once ``app`` is imported with ``argv`` as the command line."""
    code = (f"import sys; sys.argv = {argv!r}; import app, asyncio; "
            "p = asyncio.get_event_loop_policy(); print(type(p).__module__ + '.' + type(p).__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_worker_runs_on_uvloop_by_default() -> None:
    # Faust sets the loop policy from sys.argv when first imported: a default added later is ignored.
    assert _loop_policy(["app.py", "worker", "-l", "info"]) == "uvloop.EventLoopPolicy"


@pytest.mark.parametrize("choice", [["-L", "aio"], ["--loop", "aio"], ["--loop=aio"]])
def test_an_explicit_loop_is_kept(choice: list[str]) -> None:
    assert _loop_policy(["app.py", *choice, "worker"]) != "uvloop.EventLoopPolicy"


def test_other_commands_keep_asyncios_loop() -> None:
    assert _loop_policy(["app.py", "queue"]) != "uvloop.EventLoopPolicy"
