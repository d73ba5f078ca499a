"""A sweep's index removals on a live worker. The parcel agent no longer waits for the sweep's writes to be
acknowledged before going on with other records; the next record of the swept partition (its next tick)
makes the removals (agents/parcels.py, ``_remove_after_acknowledged``). This checks that they are made:
the swept bucket is deleted and the cursor moves past it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer

from .harness import Worker, consume_all, produce, wait_for

pytestmark = pytest.mark.integration

INDEX_CHANGELOG = "parcelwatch-deadline-index-changelog"
SUBJECT = b"ZTO:7400000001"


def _index(bootstrap: str) -> tuple[dict[str, bytes | None], set[str]]:
    """The index changelog's latest value per key (None: deleted), and every key that ever held SUBJECT."""
    latest: dict[str, bytes | None] = {}
    held: set[str] = set()
    for m in consume_all(bootstrap, INDEX_CHANGELOG):
        key = m.key.decode()
        latest[key] = m.value
        if m.value is not None and SUBJECT in m.value.split(b"\n"):
            held.add(key)
    return latest, held


def test_swept_buckets_are_removed_by_the_partitions_next_tick(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_TICK_INTERVAL="1").start()
    t = time.time()

    def order(kind: str, at: float, **extra: str) -> tuple[str, bytes, bytes]:
        ev = {"event_id": f"TB74-{kind}", "order_id": "TB74", "shop": "shop-a", "platform": "taobao", "kind": kind,
              "event_time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at)), **extra}
        return "parcelwatch-orders", b"TB74", json.dumps(ev).encode()

    try:
        # Shipped two days ago and never scanned: pickup-overdue is due at once, so the parcel is filed in
        # the current minute's bucket and the next sweep of its partition opens the issue.
        produce(broker.bootstrap, [order("paid", t - 3 * 86400),
                                   order("shipped", t - 2 * 86400, carrier="ZTO", tracking_number="7400000001")])

        def swept() -> bool:
            latest, held = _index(broker.bootstrap)
            partition = next(iter(held), ":").split(":")[0]
            cursor = latest.get(f"{partition}:cursor")
            # Every bucket that held the parcel before its issue opened is deleted, behind the cursor.
            removed = [k for k in held if latest.get(k) is None]
            return bool(removed) and cursor is not None and all(int(cursor) >= int(k.split(":")[1]) for k in removed)

        wait_for(swept, 90, "the bucket the parcel was swept from removed and the cursor past it")
        _, text = worker.get("/metrics?name[]=parcelwatch_issues_opened_total")
        opened = sum(float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines()
                     if line.startswith('parcelwatch_issues_opened_total{kind="pickup_overdue"'))
        assert opened == 1.0
    finally:
        worker.stop()
