"""A lane's baseline learned, raised and lowered while parcels are in flight: the live worker's whole Redis queue
equals ``app.py replay --out`` of the same events (each issue's status, opened_at, resolved_at, resolution,
severity and re-openings).

Events flow in real time (each produced at its own event time) through a worker whose baselines are refreshed
every 20 seconds (``lanes.refresh_minutes``), on a lane whose parcels take seconds:

- an hour ago, ten parcels of another carrier took a minute or more: all the stream knows when the scenario
  starts (a refresh), so parcel P, picked up on the lane then, is not due for minutes;
- ten parcels on the lane take 5 to 9 s: the next refresh learns it, and P is due under it already: raised
  at that refresh (not back-dated to its deadline);
- twenty slower parcels (24 to 30 s) each raised at its deadline, then the lane's limit rises far above P's
  age: P stays open (a rising baseline never ends it);
- forty fast parcels bring the limit down again: parcel Q, picked up while it was high, is due at once and
  raised at the refresh that lowers it; nothing of P reopens;
- an order paid three days ago ships now: its ship-overdue issue opens at its deadline (48 h after payment,
  walked to when its payment reaches the worker) and ends with the shipment.

Every signature and pickup lies seconds away from the refreshes, so a delivery reaches the live worker's
baselines (through the deliveries topic) well before the refresh that counts it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from devtools.simulator import write_jsonl
from domain.events import OrderEvent, TrackingUpdate

from .harness import ROOT, Worker, all_issues, explain_subjects, produce, wait_for

pytestmark = pytest.mark.integration

REFRESH_SECONDS = 20.0
DAY = 86400.0
Record = tuple[str, bytes, OrderEvent | TrackingUpdate]


def scenario(start: float) -> list[Record]:
    """The events, ``start`` being a refresh (times are offsets from it in seconds)."""
    records: list[Record] = []

    def order(order_id: str, kind: str, at: float, **facts: Any) -> None:
        ev = OrderEvent(f"{order_id}-{kind}", order_id, "shop-a", "taobao", kind, start + at, **facts)
        records.append(("orders", order_id.encode(), ev))

    def parcel(name: str, shipped: float, picked: float, signed: float | None, carrier: str = "ZTO",
               origin: str = "广东", dest: str = "浙江") -> None:
        order(f"TB-{name}", "shipped", shipped, carrier=carrier, tracking_number=name, origin_province=origin,
              destination_province=dest, order_value=99.0)
        for status, at in (("picked_up", picked), ("signed", signed)):
            if at is not None:
                ev = TrackingUpdate(f"{name}-{status}", carrier, name, status, start + at)
                records.append(("tracking", f"{carrier}:{name}".encode(), ev))

    for i in range(10):
        parcel(f"S{i}", -3700, -3690, -3630 + 3 * i, carrier="SF", origin="北京", dest="天津")  # an hour ago: 60-87 s
    for i in range(10):
        parcel(f"H{i}", 1, 2, 7 + i * 0.4)  # the lane's first deliveries: 5 to 9 s
    parcel("P", 1, 3, 95)
    order("TB-L", "paid", -3 * DAY, order_value=300.0)
    parcel("L", 5, 6, 12)
    for i in range(20):
        parcel(f"B{i}", 25, 26, 50 + i * 0.3)  # slower: 24 to 30 s
    for i in range(40):
        parcel(f"C{i}", 61, 63, 65 + i * 0.12)  # fast again: 2 to 7 s
    parcel("Q", 61, 63, 92)
    return sorted(records, key=lambda r: r[2].event_time)


def queue_of_redis(redis_url: str) -> dict[str, tuple[Any, ...]]:
    return {d["issue_key"]: (d["status"], d["opened_at"], d["resolved_at"], d["resolution"], d["severity"], d["reopened"])
            for d in all_issues(redis_url)}


def queue_of_replay(issues: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """``app.py replay --out``'s issues (one line per open period) as the queue holds them: each issue's last
    open period, and how often it reopened."""
    periods: dict[str, list[dict[str, Any]]] = {}
    for issue in issues:
        periods.setdefault(issue["issue_key"], []).append(issue)
    out = {}
    for key, seen in periods.items():
        last = max(seen, key=lambda i: i["opened_at"])
        status = "open" if last["resolved_at"] is None else "auto_resolved"
        out[key] = (status, last["opened_at"], last["resolved_at"], last["resolution"], last["severity"], len(seen) - 1)
    return out


def test_the_live_queue_equals_replay_while_a_lanes_baseline_rises_and_falls(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    overrides = tmp_path / "config.yaml"
    overrides.write_text(f"lanes:\n  refresh_minutes: {REFRESH_SECONDS / 60}\n  min_hours_past_median: 0\n")
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_CONFIG=str(overrides)).start()
    try:
        start = math.ceil((time.time() + 10) / REFRESH_SECONDS) * REFRESH_SECONDS
        records = scenario(start)
        write_jsonl(tmp_path / "events.jsonl", iter(records))
        # Each event at its own time (those of the past at once), a second's worth at a time.
        pending = list(records)
        while pending:
            due = time.time()
            batch = [r for r in pending if r[2].event_time <= due]
            if batch:
                pending = pending[len(batch):]
                produce(broker.bootstrap, [(f"parcelwatch-{kind}", key, ev.to_json()) for kind, key, ev in batch])
            time.sleep(0.2)

        expected_raised = {"ZTO:P|transit_overdue", "ZTO:Q|transit_overdue", "order:TB-L|ship_overdue"}

        def settled() -> dict[str, tuple[Any, ...]] | None:
            queue = queue_of_redis(redis_server.url)
            ended = all(queue.get(key, ("open",))[0] == "auto_resolved" for key in expected_raised)
            return queue if ended else None

        try:
            live = wait_for(settled, 60, "P, Q and L's issues raised and ended in the live queue")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{explain_subjects(broker.bootstrap, {'ZTO:P', 'ZTO:Q'})}") from None
        out = tmp_path / "replayed.jsonl"
        until = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        subprocess.run([sys.executable, "app.py", "replay", str(tmp_path / "events.jsonl"), "--until", until, "--out", str(out)],
                       cwd=ROOT, env={**os.environ, "PARCELWATCH_CONFIG": str(overrides)}, check=True, capture_output=True,
                       timeout=120)
        replayed = queue_of_replay([json.loads(line) for line in out.read_text().splitlines()])
        assert live == replayed
        # What the scenario is for, in the replay's (= the queue's) terms.
        p, q = replayed["ZTO:P|transit_overdue"], replayed["ZTO:Q|transit_overdue"]
        refreshes = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + k * REFRESH_SECONDS)) for k in range(6)]
        assert p[1] == refreshes[1] and p[3] == "signed" and p[5] == 0  # raised at the refresh; never reopened
        assert q[1] == refreshes[4] and q[3] == "signed"  # raised at the refresh that lowered the limit
        assert sum(key.startswith("ZTO:B") for key in replayed) == 20  # each raised at its own deadline
        assert replayed["order:TB-L|ship_overdue"][3] == "shipped"
    finally:
        worker.stop()
