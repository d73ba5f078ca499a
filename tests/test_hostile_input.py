"""Hostile and huge input against a real worker: never a crash, never a silent loss, never buyer data echoed.

Records of about a megabyte, event times from the future, a record on a partition its parcel does not hash
to: each is dead-lettered (or re-routed) with a reason, counted, shown by ``/healthz``, and the worker goes on.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer

from .harness import Worker, all_issues, consume_all, produce, wait_for
from .test_integration_e2e import scan, shipped

pytestmark = pytest.mark.integration


def test_event_times_from_the_future_are_dead_lettered_with_their_reason(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        now = time.time()
        produce(broker.bootstrap, [
            shipped("TB7910", "7910000", now - 3 * 86400),
            scan("7910000", "picked_up", now - 3 * 86400 + 3600),  # then silent: tracking_stale opens
            scan("7911000", "exception", now + 86400, exception_reason="lost"),  # dated tomorrow
            shipped("TB7912", "7912000", now + 2 * 3600),  # an order event two hours ahead
        ])
        wait_for(lambda: any(i["kind"] == "tracking_stale" for i in all_issues(redis_server.url)), 60, "tracking_stale")
        # A scan dated 30 days ahead must not end it (resolved_at in the future).
        produce(broker.bootstrap, [scan("7910000", "in_transit", now + 30 * 86400)])
        dead = wait_for(lambda: (lambda d: d if len(d) >= 3 else None)(
            consume_all(broker.bootstrap, "parcelwatch-dead-letter", timeout=3)), 60, "three dead letters")
        reasons = sorted(dict(m.headers)["pw-reason"].decode() for m in dead)
        assert all(r.startswith("event_time: is ") and "in the future; at most 1.0 h ahead is accepted" in r
                   for r in reasons), reasons
        spans = sorted(r.split(" in the future")[0].removeprefix("event_time: is ") for r in reasons)
        # (A day ahead of an arrival a moment after the event was made: "24.0 h" or "1.0 d".)
        assert spans in (["1.0 d", "2.0 h", "30.0 d"], ["2.0 h", "24.0 h", "30.0 d"]), spans
        issues = all_issues(redis_server.url)
        assert [(i["kind"], i["status"]) for i in issues] == [("tracking_stale", "open")]
    finally:
        worker.stop()
