"""Fixtures: real embedded servers for integration tests (loopback only); pure tests need none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import config
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer


@pytest.fixture(scope="session")
def settings() -> config.Settings:
    return config.load(env={})


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A fresh Tansu broker per test: memory-only, starts in well under a second."""
    with TansuBroker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as r:
        yield r


@pytest.fixture(autouse=True)
def _forget_workers() -> Iterator[None]:
    """Each test's timeout report lists only the workers that test started."""
    from .harness import Worker

    Worker.live.clear()
    yield
    Worker.live.clear()
