"""Retention on a live worker: a finished parcel leaves the state with a tombstone on its changelog, its
order's facts leave the order router's table once nothing they feed is held, a restarted worker recovers
neither, and a late scan for the parcel is ignored (core/processor.py, "retention")."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer

from .harness import Worker, consume_all, produce, wait_for

pytestmark = pytest.mark.integration

ORDERS = "parcelwatch-orders"
TRACKING = "parcelwatch-tracking"
STATE_CHANGELOG = "parcelwatch-parcel-state-changelog"
ORDERS_CHANGELOG = "parcelwatch-orders-changelog"
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


def counter(worker: Worker, pattern: bytes) -> float:
    _, text = worker.get("/metrics")
    found = re.search(pattern + rb" ([0-9.]+)", text)
    return float(found.group(1)) if found else 0.0


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
        finished = {b"ZTO:7300000001", b"order:TB1", b"order:TB2"}

        def state_changelog() -> tuple[set[bytes], set[bytes]] | None:
            # The store drops a subject when its tombstone is handed to the changelog writer, which sends
            # it after its linger: once, under a loaded CI run, none of the three was readable for the 3 s
            # of a read that began as the store dropped them. They must still arrive (a lost tombstone
            # would bring the subject back after a restart), so read again until they do.
            records = consume_all(broker.bootstrap, STATE_CHANGELOG)
            deleted = {m.key for m in records if m.value is None}
            return ({m.key for m in records if m.value is not None}, deleted) if deleted >= finished else None

        written, deleted = wait_for(state_changelog, 30, "the finished subjects' tombstones on the changelog")
        assert finished | {b"ZTO:7300000002"} <= written and deleted == finished
        assert counter(worker, rb"parcelwatch_subjects_purged_total") == 3.0
        # TB1's subjects are all gone, so its facts go too (a tombstone on the orders table's changelog);
        # TB2's stay while its parcel is in transit (a refund must still reach it).
        wait_for(lambda: counter(worker, rb"parcelwatch_orders_purged_total") == 1.0, 30, "TB1's facts deleted")

        def orders_changelog() -> list[Any] | None:  # (as for the state's tombstones above)
            records = consume_all(broker.bootstrap, ORDERS_CHANGELOG)
            return records if any(m.value is None for m in records) else None

        records = wait_for(orders_changelog, 30, "TB1's tombstone on the orders changelog")
        assert {m.key for m in records if m.value is None} == {b"TB1"}
        assert {m.key for m in records if m.value is not None} == {b"TB1", b"TB2"}
    finally:
        worker.stop()

    # A restarted worker recovers the state from the changelog: the tombstones keep the deleted away.
    worker = Worker(broker.url, redis_server.url, tmp_path, name="w2", **env).start()
    try:
        assert subjects(worker) == 1
        # A scan of the delivered parcel arrives late: from before the horizon, for a subject no longer held.
        produce(broker.bootstrap, [scan("7300000001", "in_transit", t - 5 * RETENTION_SECONDS)])

        expired = rb'parcelwatch_events_consumed_total\{outcome="expired",topic="parcelwatch-tracking"\}'
        wait_for(lambda: counter(worker, expired) == 1.0, 60, "the late scan counted as expired")
        assert subjects(worker) == 1
        # A late refund of TB1 starts its facts afresh: every snapshot is ignored as expired, and the
        # parcel side's notices delete the facts again. (The router's table holds TB2's only.)
        produce(broker.bootstrap, [order_event("TB1", "refunded", t - 5 * RETENTION_SECONDS)])
        wait_for(lambda: counter(worker, rb"parcelwatch_orders_purged_total") == 1.0, 60, "TB1's facts deleted again")
        latest = {m.key: m.value for m in consume_all(broker.bootstrap, ORDERS_CHANGELOG)}
        assert latest[b"TB1"] is None and latest[b"TB2"] is not None
    finally:
        worker.stop()
