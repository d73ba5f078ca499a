"""Replay and the live worker run the same code: given the same events, the queue they leave is the same."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import config
from embedded.broker import TansuBroker
from embedded.redis_server import RedisServer
from replay import replay
from simulator import Simulator, write_jsonl

from .harness import Worker, all_issues, produce, wait_for

pytestmark = pytest.mark.integration


def test_open_queue_after_the_same_events_matches_replay(tmp_path: Path, broker: TansuBroker,
                                                         redis_server: RedisServer) -> None:
    now = time.time()
    sim = Simulator(seed=17, start_time=now - 3 * 86400, mean_gap_seconds=900)
    records = [r for r in sim.events(250, until=now - 60)]
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        produce(broker.bootstrap, [(f"parcelwatch-{kind}", key, ev.to_json()) for kind, key, ev in records])
        path = tmp_path / "events.jsonl"
        write_jsonl(path, iter(records))

        def live_open() -> dict[str, str] | None:
            got = {i["issue_key"]: i["opened_at"] for i in all_issues(redis_server.url) if i["status"] == "open"}
            return got or None

        # Let the worker consume everything and sweep a few times (ticks every second in tests).
        time.sleep(25)
        live = wait_for(live_open, 60, "open issues in the live queue")
        clock = time.time()
        with path.open("rb") as fh:
            result = replay(config.load(env={}), fh, until=clock)
        replayed = {i["issue_key"]: i["opened_at"] for i in result.issues.values() if i["resolved_at"] is None}
        assert len(replayed) >= 10
        # Same open issues, opened at the same instants (deadlines, not processing times).
        assert live == replayed
    finally:
        worker.stop()
