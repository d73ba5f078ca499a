"""Fault tests on real servers (loopback, bounded in time): the queue must survive what production does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.clock import encode_watermark
from delivery.batch_records import partition_for
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer

from .harness import Worker, all_issues, explain_subjects, produce, wait_for
from .test_integration_e2e import scan, shipped

pytestmark = pytest.mark.integration


def test_kill_9_mid_stream_then_restart_loses_nothing_and_fires_missed_deadlines(
    tmp_path: Path, broker: TansuBroker, redis_server: RedisServer
) -> None:
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    now = time.time()
    # 60 parcels whose 24 h pickup window closes 15 s from now (the worker will be dead then), and
    # 60 parcels with a carrier exception, sent in two waves around the kill.
    late = [shipped(f"TB5{i:03d}", f"751{i:04d}", now - 24 * 3600 + 15) for i in range(60)]
    broken = [shipped(f"TB6{i:03d}", f"761{i:04d}", now - 3600) for i in range(60)]
    broken += [scan(f"761{i:04d}", "exception", now - 30, exception_reason="held") for i in range(60)]
    produce(broker.bootstrap, late + broken[:90])
    time.sleep(1.5)
    worker.kill()  # SIGKILL: no flush, no commit, no goodbye
    produce(broker.bootstrap, broken[90:])
    time.sleep(20)  # the pickup deadlines pass while no worker runs
    worker = Worker(broker.url, redis_server.url, tmp_path, name="w2").start()
    try:
        def settled() -> list[dict] | None:
            issues = all_issues(redis_server.url)
            kinds = [i["kind"] for i in issues]
            if kinds.count("pickup_overdue") == 60 and kinds.count("carrier_exception") == 60:
                return issues
            return None

        try:
            issues = wait_for(settled, 90, "all 120 issues after the restart")
        except TimeoutError as exc:
            have = {(i["subject"], i["kind"]) for i in all_issues(redis_server.url)}
            missing = {f"ZTO:751{i:04d}" for i in range(60) if (f"ZTO:751{i:04d}", "pickup_overdue") not in have}
            missing |= {f"ZTO:761{i:04d}" for i in range(60) if (f"ZTO:761{i:04d}", "carrier_exception") not in have}
            raise TimeoutError(f"{exc}\nmissing:\n{explain_subjects(broker.bootstrap, missing)}") from None
        assert len(issues) == 120  # one per (parcel, kind): nothing twice
        for issue in issues:
            assert [h["action"] for h in issue["history"]] == ["opened"], issue["issue_key"]
        overdue = [i for i in issues if i["kind"] == "pickup_overdue"]
        # Opened at the deadline itself, not when the restarted worker got round to it.
        assert {i["opened_at"] for i in overdue} == {
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(now) + 15))}
        assert {i["order_id"] for i in overdue} == {f"TB5{i:03d}" for i in range(60)}
    finally:
        worker.stop()


def test_redis_outage_holds_issues_and_writes_them_when_redis_returns(tmp_path: Path, broker: TansuBroker) -> None:
    redis_server = RedisServer(tmp_path / "redis", appendonly=True).start()
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        now = time.time()
        produce(broker.bootstrap, [shipped("TB7000", "7700000", now - 3600),
                                   scan("7700000", "exception", now - 30, exception_reason="lost")])
        wait_for(lambda: len(all_issues(redis_server.url)) == 1, 30, "first issue")
        redis_server.stop()
        outage_started = time.monotonic()
        records = [shipped(f"TB7{i:03d}", f"771{i:04d}", now - 3600) for i in range(1, 31)]
        records += [scan(f"771{i:04d}", "exception", time.time() - 10, exception_reason="damaged") for i in range(1, 31)]
        produce(broker.bootstrap, records)
        _status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(worker.get("/healthz")), 20,
                                "health to report the outage")
        assert body["checks"]["redis"]["ok"] is False
        time.sleep(max(0.0, 60 - (time.monotonic() - outage_started)))  # a full minute without Redis
        assert worker.proc is not None and worker.proc.poll() is None  # no crash
        redis_server = RedisServer(tmp_path / "redis", port=redis_server.port, appendonly=True).start()
        wait_for(lambda: len(all_issues(redis_server.url)) == 31, 60, "held issues written after the outage")
        wait_for(lambda: worker.get("/healthz")[0] == 200, 30, "health back to ok")
        metrics = worker.get("/metrics")[1]
        text = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
        retries = [line for line in text.splitlines() if line.startswith("parcelwatch_redis_retries_total")]
        assert retries and float(retries[0].split()[-1]) > 0
    finally:
        worker.stop()
        redis_server.stop()


def test_a_restarted_router_with_nothing_to_route_releases_the_watermarks_left_behind(
    tmp_path: Path, broker: TansuBroker, redis_server: RedisServer
) -> None:
    """A worker killed while its order router was behind leaves the router's watermarks on the order-facts
    topic, and its parcel partitions read them again from their uncommitted offsets: each holds its partition's
    clock until that orders partition reports again. The restarted router has every order event of it routed
    and committed already; it must still say it caught up, or every sweep waits out the hold (five minutes, longer
    than the fault tests wait) and the deadlines due meanwhile fire late."""
    now = time.time()
    long_ago = now - 3 * 86400
    order_id = "TB8000"
    source = partition_for(order_id, 4)

    def stale(n: int) -> Callable[[], bool]:
        return lambda: sum(i["kind"] == "tracking_stale" for i in all_issues(redis_server.url)) == n

    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        # An order routed and committed before the fault: its orders partition has nothing left to route.
        produce(broker.bootstrap, [shipped(order_id, "8800000", long_ago), scan("8800000", "picked_up", long_ago)],
                arrived=[long_ago] * 2)
        wait_for(stale(1), 120, "the order's parcel's tracking_stale")
    finally:
        worker.stop()  # (its offsets committed)
    # What the router had sent, not yet read by the parcel partitions, when it died: its behind watermark on
    # every order-facts partition. And a backlog of scans whose tracking_stale deadlines passed a day ago.
    behind = now - 2 * 86400
    produce(broker.bootstrap, [("parcelwatch-order-facts", f"watermark:{source}".encode(), encode_watermark(source, behind))
                               for _ in range(4)], arrived=[behind] * 4, partitions=range(4))
    scans = [scan(f"881{i:04d}", "in_transit", long_ago) for i in range(40)]
    produce(broker.bootstrap, scans, arrived=[long_ago] * len(scans))
    worker = Worker(broker.url, redis_server.url, tmp_path, name="w2").start()
    try:
        # (Well inside the 300 s hold: a busy CI machine gets time, a held clock still fails.)
        wait_for(stale(41), 150, "the 40 new tracking_stale issues (the clocks released by the restarted router)")
    finally:
        worker.stop()


def hostile_events(n: int, now: float) -> list[tuple[str, bytes | None, bytes]]:
    """``n`` malformed or hostile records of many kinds, deterministic."""
    import random

    rnd = random.Random(7)
    good = {"event_id": "x", "carrier": "ZTO", "tracking_number": "7000001", "status": "in_transit",
            "event_time": "2026-11-02T10:00:00+08:00"}
    order = {"event_id": "o", "order_id": "TBX", "shop": "s", "platform": "taobao", "kind": "paid",
             "event_time": "2026-11-02T10:00:00+08:00"}
    makers = [
        lambda: b"",
        lambda: b"\xff\xfe\x00garbage",  # invalid UTF-8
        lambda: b"[1, 2, 3]",  # not an object
        lambda: b"null",
        lambda: json.dumps({**good, "carrier": rnd.choice(["", "!!!", ";;", "   "])}).encode(),
        lambda: json.dumps({**good, "status": rnd.choice(["teleported", 5, None, ["signed"]])}).encode(),
        lambda: json.dumps({**good, "event_time": rnd.choice(["1900-01-01T00:00:00Z", "9999-12-31T00:00:00Z",
                                                              "2026-11-02 10:00", "yesterday", 1e300, True])}).encode(),
        lambda: json.dumps({**good, "tracking_number": "7" * 5000}).encode(),  # huge string
        lambda: json.dumps({**good, "raw_text": "噪" * 50_000}).encode(),  # ~300 KB escaped
        lambda: (lambda drop: json.dumps({k: v for k, v in good.items() if k != drop}).encode())(rnd.choice(list(good))),
        lambda: json.dumps({**good, "status": "in_transit", "exception_reason": "lost"}).encode(),
        lambda: json.dumps({**order, "order_value": rnd.choice([-5, "abc", -0.01])}).encode(),
        lambda: json.dumps({**order, "kind": "shipped"}).encode(),  # shipped without a parcel
        lambda: json.dumps({**order, "kind": "receipt_extended"}).encode(),  # without the new deadline
        lambda: json.dumps({**order, "platform": "amazon"}).encode(),
        lambda: b'{"event_id": "x", "carrier": {"$ne": 1}}',
    ]
    out: list[tuple[str, bytes | None, bytes]] = []
    for i in range(n):
        maker = makers[i % len(makers)]
        value = maker()
        is_order = b'"order_id"' in value
        topic = "parcelwatch-orders" if is_order else "parcelwatch-tracking"
        key = None if i % 7 == 0 else (b"TBX" if is_order else b"ZTO:7000001")
        out.append((topic, key, value))
    return out


def test_poison_input_is_dead_lettered_and_good_events_still_flow(
    tmp_path: Path, broker: TansuBroker, redis_server: RedisServer
) -> None:
    from .harness import consume_all

    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        now = time.time()
        bad = hostile_events(10_000, now)
        good = [shipped(f"TBP{i:03d}", f"790{i:04d}", now - 3600) for i in range(200)]
        good += [scan(f"790{i:04d}", "exception", now - 60, exception_reason="held") for i in range(200)]
        mixed: list[tuple[str, bytes | None, bytes]] = []
        for i, record in enumerate(bad):
            mixed.append(record)
            if i % 25 == 0 and good:
                mixed.append(good.pop(0))
        mixed.extend(good)
        produce(broker.bootstrap, mixed)
        wait_for(lambda: len(all_issues(redis_server.url)) == 200, 180, "all 200 good parcels' issues")
        assert worker.proc is not None and worker.proc.poll() is None
        # A JSON array is a batch record (delivery/batch_records.py): each of its bad elements is dead-lettered alone.
        expected = sum(len(json.loads(v)) if v.startswith(b"[") else 1 for _, _, v in bad)
        assert expected > 10_000
        dead = wait_for(lambda: (lambda d: d if len(d) >= expected else None)(
            consume_all(broker.bootstrap, "parcelwatch-dead-letter", timeout=5)), 120, f"{expected:,} dead letters")
        assert len(dead) == expected  # every bad one, and nothing good
        reasons = [dict(m.headers).get("pw-reason") for m in dead]
        assert all(r and b": " in r for r in reasons)
        fields = {dict(m.headers)["pw-field"].decode() for m in dead}
        assert {"$", "carrier", "status", "event_time", "tracking_number", "order_value", "platform"} <= fields
        assert worker.get("/healthz")[0] == 200
    finally:
        worker.stop()
