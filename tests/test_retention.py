"""Retention on a live worker: a finished parcel leaves the state with a tombstone on its changelog, a
restarted worker does not recover it, and a late scan for it is ignored (processor.py, "retention")."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from embedded.broker import TansuBroker
from embedded.redis_server import RedisServer

from .harness import Worker, consume_all, produce, wait_for

pytestmark = pytest.mark.integration

ORDERS = "parcelwatch-orders"
TRACKING = "parcelwatch-tracking"
STATE_CHANGELOG = "parcelwatch-parcel-state-changelog"
RETENTION_SECONDS = 30.0


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))


def order_event(order_id: str, kind: str, at: float, **extra: Any) -> tuple[str, bytes, bytes]:
    ev = {"event_id": f"{order_id}-{kind}", "order_id": order_id, "shop": "shop-a", "platform": "taobao",
          "kind": kind, "event_time": iso(at), **extra}
    return ORDERS, order_id.encode(), json.dumps(ev).encode()


def scan(number: str, status: str, at: float) -> tuple[str, bytes, bytes]:
    ev = {"event_id": f"{number}-{status}-{at}", "carrier": "ZTO", "tracking_number": number, "status": status,
          "event_time": iso(at)}
    return TRACKING, f"ZTO:{number}".encode(), json.dumps(ev).encode()


def subjects(worker: Worker) -> int:
    return int(worker.wait_healthy()["checks"]["tables"]["subjects"])


def test_a_finished_parcel_is_deleted_for_good_and_a_late_scan_does_not_bring_it_back(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    override = tmp_path / "override.yaml"
    override.write_text(f"retention:\n  finished_subject_days: {RETENTION_SECONDS / 86400!r}\n")
    env = {"PARCELWATCH_CONFIG": str(override)}
    worker = Worker(broker.url, redis_server.url, tmp_path, **env).start()
    t = time.time()
    ship = {"carrier": "ZTO", "origin_province": "广东", "destination_province": "浙江"}
    try:
        produce(broker.bootstrap, [
            # TB1 / ZTO:7300000001 is delivered; TB2 / ZTO:7300000002 is still in transit. (Event times are
            # recent: a new subject from before the retention horizon would be ignored.)
            order_event("TB1", "paid", t - 4), order_event("TB1", "shipped", t - 3, tracking_number="7300000001", **ship),
            order_event("TB2", "paid", t - 4), order_event("TB2", "shipped", t - 3, tracking_number="7300000002", **ship),
            scan("7300000001", "picked_up", t - 2), scan("7300000002", "picked_up", t - 2),
            scan("7300000001", "signed", t - 1),
        ])
        # Once the retention of the finished subjects ended, only the parcel in transit is held (an order
        # subject is finished once shipped, the delivered parcel once signed).
        wait_for(lambda: subjects(worker) == 1, 90 + RETENTION_SECONDS, "the finished subjects deleted")
        records = consume_all(broker.bootstrap, STATE_CHANGELOG)
        written = {m.key for m in records if m.value is not None}
        deleted = {m.key for m in records if m.value is None}
        finished = {b"ZTO:7300000001", b"order:TB1", b"order:TB2"}
        assert finished | {b"ZTO:7300000002"} <= written and deleted == finished
        _, text = worker.get("/metrics")
        assert re.search(rb"parcelwatch_subjects_purged_total ([0-9.]+)", text).group(1) == b"3.0"  # type: ignore[union-attr]
    finally:
        worker.stop()

    # A restarted worker recovers the state from the changelog: the tombstones keep the deleted away.
    worker = Worker(broker.url, redis_server.url, tmp_path, name="w2", **env).start()
    try:
        assert subjects(worker) == 1
        # A scan of the delivered parcel arrives late: from before the horizon, for a subject no longer held.
        produce(broker.bootstrap, [scan("7300000001", "in_transit", t - 5 * RETENTION_SECONDS)])

        def expired() -> float:
            _, text = worker.get("/metrics")
            found = re.search(rb'parcelwatch_events_consumed_total\{outcome="expired",topic="parcelwatch-tracking"\} ([0-9.]+)', text)
            return float(found.group(1)) if found else 0.0

        wait_for(lambda: expired() == 1.0, 60, "the late scan counted as expired")
        assert subjects(worker) == 1
    finally:
        worker.stop()
