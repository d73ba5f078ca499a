"""The command line: its introduction, the choices made before Faust is imported, and the Redis it reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.process import closed_port
from devtools.redis_server import RedisServer
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


def _app(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PARCELWATCH_")}
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env={**environ, **env}, capture_output=True,
                          text=True, timeout=120)


def test_help_introduces_parcelwatch_and_its_commands_not_faust() -> None:
    done = _app("--help")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("parcelwatch:"), first
    for command in ("worker", "queue", "replay", "simulate"):
        assert f"\n  {command} " in done.stdout
    assert "Welcome" not in done.stdout  # Faust's own banner is one flag away, not the introduction
    assert "Welcome" in _app("--faust-help").stdout


def test_an_unreachable_redis_is_one_line_naming_it(tmp_path: Path) -> None:
    with closed_port() as port:
        url = f"redis://127.0.0.1:{port}/0"
        done = _app("queue", PARCELWATCH_REDIS_URL=url, PARCELWATCH_RUN_DIR=str(tmp_path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert url in done.stderr and "PARCELWATCH_REDIS_URL" in done.stderr


def test_running_stack_is_found_only_while_its_process_lives(tmp_path: Path) -> None:
    from devtools.stack import STACK_FILE, running_stack

    assert running_stack(tmp_path) is None
    (tmp_path / STACK_FILE).write_text(json.dumps({"pid": os.getpid(), "redis": "redis://127.0.0.1:1/0"}))
    assert running_stack(tmp_path) == {"pid": str(os.getpid()), "redis": "redis://127.0.0.1:1/0"}
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / STACK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "redis": "redis://127.0.0.1:1/0"}))
    assert running_stack(tmp_path) is None


@pytest.mark.integration
def test_queue_reads_the_running_stacks_redis_wherever_its_port_went(tmp_path: Path, redis_server: RedisServer) -> None:
    """``make run`` moves its Redis to a free port when 6379 is taken; ``app.py queue`` must read that one,
    not whatever answers on the configured port."""
    import asyncio

    from devtools.stack import STACK_FILE
    from issue_queue.store import IssueStore

    from .test_issue_store import START, event

    async def seed() -> None:
        store = IssueStore.from_url(redis_server.url)
        await store.apply_events([event("open", START + 60, key="ZTO:73100001|pickup_overdue", shop="shop-on-the-stack")])
        await store.redis.aclose()

    asyncio.run(seed())
    (tmp_path / STACK_FILE).write_text(json.dumps({"pid": os.getpid(), "redis": redis_server.url}))
    done = _app("queue", "--date", "2026-11-03", PARCELWATCH_RUN_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "shop-on-the-stack" in done.stdout and redis_server.url in done.stdout


@pytest.mark.integration
def test_make_run_starts_its_worker_again_when_it_exits(tmp_path: Path) -> None:
    """A worker exits when a record it produced fails to send: ``make run`` starts it again, as a production
    supervisor would, instead of stopping the whole stack."""
    import signal
    import urllib.request

    from tests.harness import wait_for

    output = tmp_path / "make-run.out"
    stack = subprocess.Popen([sys.executable, "-m", "devtools.stack", "--run-dir", str(tmp_path), "--no-simulator"],
                             cwd=ROOT, stdout=output.open("wb"), stderr=subprocess.STDOUT)
    try:
        web = wait_for(lambda: json.loads((tmp_path / "stack.json").read_text())["web"]
                       if (tmp_path / "stack.json").exists() else None, 180, "make run to be ready")
        first = int((tmp_path / "worker.pid").read_text())
        os.kill(first, signal.SIGKILL)

        def healthy_again() -> bool:
            if int((tmp_path / "worker.pid").read_text()) == first:
                return False
            try:
                with urllib.request.urlopen(f"{web}/healthz", timeout=3) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for(healthy_again, 180, "the worker to be started again and healthy")
        assert stack.poll() is None
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(60)
    out = output.read_text()
    assert "worker exited with code -9" in out and "worker   starting again" in out, out
