"""End to end on real servers: Tansu broker + Redis + a real worker process, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from delivery.batch_records import batch_records, record_events
from devtools.broker import TansuBroker
from devtools.process import free_port
from devtools.redis_server import RedisServer
from issue_queue.store import issue_id

from .harness import Worker, consume_all, produce, wait_for

pytestmark = pytest.mark.integration

ORDERS = "parcelwatch-orders"
TRACKING = "parcelwatch-tracking"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))


def shipped(order_id: str, number: str, at: float, **extra: Any) -> tuple[str, bytes, bytes]:
    ev = {
        "event_id": f"{order_id}-shipped", "order_id": order_id, "shop": "shop-a", "platform": "taobao",
        "kind": "shipped", "event_time": iso(at), "carrier": "ZTO", "tracking_number": number,
        "origin_province": "广东", "destination_province": "浙江", "order_value": 129, **extra,
    }
    return ORDERS, order_id.encode(), json.dumps(ev).encode()


def scan(number: str, status: str, at: float, **extra: Any) -> tuple[str, bytes, bytes]:
    ev = {"event_id": f"{number}-{status}-{at}", "carrier": "ZTO", "tracking_number": number,
          "status": status, "event_time": iso(at), **extra}
    return TRACKING, f"ZTO:{number}".encode(), json.dumps(ev).encode()


def issues_of(worker: Worker, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = worker.get(f"/issues?{qs}")
    assert status == 200, body
    return body["issues"]  # type: ignore[no-any-return]


@pytest.fixture
def stack(tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> Any:
    worker = Worker(broker.url, redis_server.url, tmp_path)
    worker.start()
    yield broker, redis_server, worker
    worker.stop()


def test_carrier_exception_reaches_redis_and_api_and_bad_event_is_dead_lettered(stack: Any) -> None:
    broker, redis_server, worker = stack
    now = time.time()
    produce(broker.bootstrap, [
        shipped("TB1001", "7310001", now - 3600),
        (TRACKING, b"ZTO:broken", b"{not json"),
        (TRACKING, b"ZTO:7310009", json.dumps({"event_id": "x", "carrier": "!!!", "tracking_number": "1",
                                                "status": "in_transit", "event_time": iso(now)}).encode()),
        scan("7310001", "exception", now - 60, exception_reason="lost"),
    ])
    found = wait_for(lambda: issues_of(worker, kind="carrier_exception"), 40, "carrier exception issue")
    issue = found[0]
    assert issue["parcel"] == "ZTO:7310001"
    assert issue["exception_reason"] == "lost"
    assert issue["status"] == "open"
    # The order facts reach the issue even though they travel through the order router.
    wait_for(lambda: issues_of(worker, kind="carrier_exception")[0]["order_id"] == "TB1001", 20, "order facts")
    assert issues_of(worker, shop="shop-a")[0]["shop"] == "shop-a"
    # And the same issue is in Redis, under its stable id.
    r = redis.Redis.from_url(redis_server.url)
    raw = r.get(f"pw:issue:{issue_id('ZTO:7310001|carrier_exception')}")
    assert isinstance(raw, bytes)
    doc = json.loads(raw)
    assert doc["kind"] == "carrier_exception" and doc["shop"] == "shop-a"

    dead = consume_all(broker.bootstrap, "parcelwatch-dead-letter")
    by_key = {m.key: m for m in dead}
    assert by_key[b"ZTO:broken"].value == b"{not json"  # original bytes kept
    headers = dict(by_key[b"ZTO:broken"].headers)
    assert headers["pw-field"] == b"$" and b"not valid JSON" in headers["pw-reason"]
    assert headers["pw-source-topic"] == TRACKING.encode()
    assert dict(by_key[b"ZTO:7310009"].headers)["pw-field"] == b"carrier"

    health = worker.get("/healthz")
    assert health[0] == 200 and health[1]["checks"]["redis"]["ok"] is True


def test_pickup_overdue_fires_at_deadline_without_events_and_auto_resolves_on_first_scan(stack: Any) -> None:
    broker, _redis_server, worker = stack
    now = time.time()
    # Shipped 24 h minus 8 s ago: the 24 h pickup window closes 8 s from now, with no further event.
    produce(broker.bootstrap, [shipped("TB2001", "7320001", now - 24 * 3600 + 8)])
    time.sleep(3)
    assert issues_of(worker, kind="pickup_overdue") == []
    found = wait_for(lambda: issues_of(worker, kind="pickup_overdue"), 40, "pickup overdue issue")
    assert found[0]["parcel"] == "ZTO:7320001"
    assert found[0]["opened_at"] == iso(now - 24 * 3600 + 8 + 24 * 3600).replace("+00:00", "Z")

    produce(broker.bootstrap, [scan("7320001", "picked_up", time.time())])
    wait_for(lambda: issues_of(worker, kind="pickup_overdue") == [], 30, "auto-resolution")
    resolved = issues_of(worker, kind="pickup_overdue", status="auto_resolved")
    assert resolved[0]["resolution"] == "picked_up"
    assert [h["action"] for h in resolved[0]["history"]] == ["opened", "auto_resolved"]


def test_the_web_port_serves_no_table_data_outside_the_api(stack: Any) -> None:
    broker, _redis_server, worker = stack
    now = time.time()
    produce(broker.bootstrap, [shipped("TB2101", "7321001", now - 3600),
                               scan("7321001", "exception", now - 60, exception_reason="lost")])
    # The parcel's state and its order's facts are in the tables once the issue carries the order.
    wait_for(lambda: [i for i in issues_of(worker, kind="carrier_exception") if i["order_id"] == "TB2101"], 40,
             "the parcel's issue with its order")
    for path in ("/table/", "/table/parcel-state/", "/table/parcel-state/ZTO:7321001/", "/table/orders/TB2101/",
                 "/router/"):
        status, body = worker.get(path)
        assert status == 404, (path, status)
        assert b"7321001" not in (body if isinstance(body, bytes) else json.dumps(body).encode())


def test_an_order_event_naming_another_shop_moves_nothing_into_its_queue(stack: Any) -> None:
    """An order token of shop-a (or an export imported under the wrong shop) sends an event of shop-b's
    order: it is dead-lettered, and shop-b's parcel and issue stay shop-b's."""
    broker, _redis_server, worker = stack
    now = time.time()
    produce(broker.bootstrap, [shipped("TB2201", "7322001", now - 3600, shop="shop-b"),
                               scan("7322001", "exception", now - 60, exception_reason="lost")])
    wait_for(lambda: [i for i in issues_of(worker, shop="shop-b") if i["order_id"] == "TB2201"], 40,
             "shop-b's issue with its order")
    hijack = {"event_id": "TB2201-closed", "order_id": "TB2201", "shop": "shop-a", "platform": "taobao",
              "kind": "closed", "event_time": iso(now - 30)}
    produce(broker.bootstrap, [(ORDERS, b"TB2201", json.dumps(hijack).encode())])
    dead = wait_for(lambda: [m for m in consume_all(broker.bootstrap, "parcelwatch-dead-letter") if m.key == b"TB2201"],
                    40, "the other shop's event dead-lettered")
    assert dict(dead[0].headers)["pw-field"] == b"shop"
    # A later scan of the parcel still reaches the issue, in shop-b's queue only.
    produce(broker.bootstrap, [scan("7322001", "exception", now - 10, exception_reason="damaged")])
    wait_for(lambda: [i for i in issues_of(worker, shop="shop-b") if i.get("exception_reason") == "damaged"], 40,
             "the parcel's next scan")
    assert [i for i in issues_of(worker, shop="shop-a") if i["order_id"] == "TB2201"] == []


def test_the_liveness_answer_stays_200_while_healthz_is_red(tmp_path: Path, broker: TansuBroker) -> None:
    """``/`` is what a liveness probe asks: a worker waiting for Redis is alive (a restart would not help),
    though not ready."""
    worker = Worker(broker.url, f"redis://127.0.0.1:{free_port()}/0", tmp_path).start(wait=False)
    try:
        def red() -> tuple[int, Any] | None:
            try:
                status, body = worker.get("/healthz")
            except OSError:
                return None  # (not serving yet)
            return (status, body) if status == 503 and "redis" in body["checks"] else None

        health = wait_for(red, 60, "healthz answering red")
        assert health[1]["checks"]["redis"]["ok"] is False
        assert worker.get("/") == (200, {"status": "OK"})
    finally:
        worker.stop()


def test_worker_restart_recovers_state_from_changelogs(tmp_path: Path, broker: TansuBroker,
                                                       redis_server: RedisServer) -> None:
    """After a restart the parcel state comes back in full (Tansu's ListOffsets workaround at work)."""
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        now = time.time()
        records = [shipped(f"TB3{i:03d}", f"733{i:04d}", now - 1800) for i in range(40)]
        records += [scan(f"733{i:04d}", "exception", now - 60, exception_reason="damaged") for i in range(40)]
        produce(broker.bootstrap, records)
        wait_for(lambda: len(issues_of(worker, kind="carrier_exception", limit="100")) == 40, 60, "40 issues")
        subjects_before = worker.get("/healthz")[1]["checks"]["tables"]["subjects"]
    finally:
        worker.stop()
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        assert worker.get("/healthz")[1]["checks"]["tables"]["subjects"] == subjects_before == 80
        # Signing every parcel must resolve every issue: only possible if the restarted worker
        # recovered each parcel's state (with its open issues) from the changelog.
        produce(broker.bootstrap, [scan(f"733{i:04d}", "signed", time.time()) for i in range(40)])
        wait_for(lambda: issues_of(worker, kind="carrier_exception") == [], 60, "all resolved after restart")
        resolved = issues_of(worker, kind="carrier_exception", status="auto_resolved", limit="100")
        assert len(resolved) == 40 and {i["resolution"] for i in resolved} == {"signed"}
    finally:
        worker.stop()


def test_true_highwaters_sees_past_tansus_list_offsets(broker: TansuBroker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from delivery.tansu import true_highwaters

    async def run() -> tuple[int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
        await producer.start()
        futures = [await producer.send("hw-probe", b"x", partition=0) for _ in range(50)]
        await asyncio.gather(*futures)
        await producer.stop()
        tp = TopicPartition("hw-probe", 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        reported = (await consumer.end_offsets([tp]))[tp]
        await consumer.stop()
        return reported, (await true_highwaters(broker.bootstrap, {tp: reported}))[tp]

    reported, true = asyncio.run(run())
    # One batch of 50 records: Tansu reports 1 (base offset + 1); the fetch reveals 50.
    assert true == 50
    assert reported <= true


def test_local_tables_are_discarded_when_the_embedded_broker_is_a_new_lifetime(tmp_path: Path) -> None:
    from delivery.tansu import discard_stale_tables

    data_dir = tmp_path / "worker-data"
    with TansuBroker(tmp_path / "b1") as first:
        assert discard_stale_tables(first.bootstrap, data_dir) is False  # nothing there yet
        (data_dir / "v1").mkdir()
        (data_dir / "v1" / "table.sst").write_text("state built against the first broker")
        assert discard_stale_tables(first.bootstrap, data_dir) is False  # same lifetime: kept
        assert (data_dir / "v1" / "table.sst").exists()
    with TansuBroker(tmp_path / "b2") as second:
        assert discard_stale_tables(second.bootstrap, data_dir) is True
        assert not (data_dir / "v1").exists()
        assert (data_dir / "broker-incarnation").exists()


def test_buyer_notifications_reach_their_topic_once(tmp_path: Path, broker: TansuBroker,
                                                    redis_server: RedisServer) -> None:
    rules = tmp_path / "notifications.yaml"
    rules.write_text("""
quiet_hours: {start: "00:00", end: "00:00"}
rules:
  - {name: picked_up, stage: picked_up, template: "{carrier_name} 已揽收 {tracking_number}"}
  - {name: exception, stage: exception, template: "异常：{reason}"}
""", encoding="utf-8")
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_NOTIFICATIONS=str(rules)).start()
    try:
        now = time.time()
        pickup = scan("7350001", "picked_up", now - 600)
        produce(broker.bootstrap, [shipped("TB4001", "7350001", now - 3600), pickup, pickup,
                                   scan("7350001", "exception", now - 60, exception_reason="damaged"), pickup])

        def notes() -> list[Any]:
            got = [json.loads(m.value) for m in consume_all(broker.bootstrap, "parcelwatch-notifications", 1)]
            return got if len(got) >= 2 else []

        got = wait_for(notes, 40, "two notifications")
        time.sleep(3)
        got = [json.loads(m.value) for m in consume_all(broker.bootstrap, "parcelwatch-notifications", 1)]
        assert sorted(n["stage"] for n in got) == ["exception", "picked_up"]  # duplicates did not re-send
        texts = {n["stage"]: n["text"] for n in got}
        assert texts == {"picked_up": "中通快递 已揽收 7350001", "exception": "异常：破损"}
        assert all(n["order_id"] == "TB4001" for n in got)
    finally:
        worker.stop()


def test_the_notification_webhook_sends_again_after_too_many_requests(tmp_path: Path, broker: TansuBroker,
                                                                      redis_server: RedisServer) -> None:
    """A seller's webhook answering 429 ("not now") gets the notification again, not dropped."""
    received: list[tuple[int, bytes]] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 429 if not received else 200
            received.append((status, body))
            self.send_response(status)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rules = tmp_path / "notifications.yaml"
    rules.write_text(f"""
quiet_hours: {{start: "00:00", end: "00:00"}}
webhook_url: http://127.0.0.1:{server.server_address[1]}/notify
rules:
  - {{name: picked_up, stage: picked_up, template: "{{carrier_name}} 已揽收 {{tracking_number}}"}}
""", encoding="utf-8")
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_NOTIFICATIONS=str(rules)).start()
    try:
        now = time.time()
        produce(broker.bootstrap, [shipped("TB4101", "7351001", now - 3600), scan("7351001", "picked_up", now - 600)])
        wait_for(lambda: len(received) >= 2, 40, "the notification sent again after the 429")
        assert [status for status, _ in received[:2]] == [429, 200] and received[0][1] == received[1][1]
        assert json.loads(received[1][1])["text"] == "中通快递 已揽收 7351001"
    finally:
        worker.stop()
        server.shutdown()


def test_delivered_parcels_teach_the_live_worker_its_lane_baseline(stack: Any) -> None:
    broker, _redis, worker = stack
    now = time.time()
    records = []
    for i in range(12):
        number = f"66{i:05d}"
        records += [shipped(f"TB66{i:03d}", number, now - 5 * 86400),
                    scan(number, "picked_up", now - 4 * 86400),
                    scan(number, "signed", now - 4 * 86400 + (40 + i) * 3600)]
    produce(broker.bootstrap, records)

    def lane() -> dict[str, Any] | None:
        lanes = worker.get("/lanes")[1]["lanes"]
        # (Twelve deliveries four days old weigh a little under twelve: a weight halves every 30 days.)
        return next((entry for entry in lanes if entry["lane"].startswith("ZTO") and entry["deliveries"] >= 11), None)

    learned = wait_for(lane, 60, "12 deliveries in the ZTO 广东→浙江 baseline")
    assert learned["lane"] == "ZTO 广东→浙江"
    assert 40 <= learned["median_hours"] <= 52


def test_the_router_sends_a_burst_of_order_facts_together_and_each_reaches_its_subject(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    """Order events queued behind each other have their facts sent together, one record per parcel partition:
    a burst costs the parcel agent a few records, not one per order. Every subject still gets its snapshot,
    and a record carries the earliest arrival among its facts (a parcel partition catching up must never
    judge ahead of an order event whose facts it has not read)."""
    n = 120
    now = time.time()
    arrivals = {f"TB9{i:03d}": now - 3600 + i for i in range(n)}  # a backlog from an hour ago
    produce(broker.bootstrap, [shipped(order_id, f"739{i:04d}", now - 7200) for i, order_id in enumerate(arrivals)],
            arrived=arrivals.values())
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        produce(broker.bootstrap, [scan(f"739{i:04d}", "exception", now - 60, exception_reason="damaged")
                                   for i in range(n)])

        def with_their_orders() -> list[dict[str, Any]]:
            found = issues_of(worker, kind="carrier_exception", limit="200")
            return found if len(found) == n and all(i["order_id"] for i in found) else []

        found = wait_for(with_their_orders, 60, f"{n} exception issues showing their order")
        assert {i["parcel"]: i["order_id"] for i in found} == {f"ZTO:739{i:04d}": o for i, o in enumerate(arrivals)}
    finally:
        worker.stop()
    records = [m for m in consume_all(broker.bootstrap, "parcelwatch-order-facts")
               if not m.value.startswith(b'{"watermark":')]
    subjects = [(element["subject"], element["facts"]["order_id"], m.timestamp)
                for m in records for element in record_events(m.value)]
    # The parcel and the order itself (watched for ship-overdue until the shipment) each got the snapshot.
    assert sorted(s for s, _, _ in subjects) == sorted([f"ZTO:739{i:04d}" for i in range(n)]
                                                       + [f"order:{o}" for o in arrivals])
    assert len(records) <= n // 4, f"{len(records)} order-facts records for {n} order events"
    late = [(s, ts) for s, order_id, ts in subjects if ts > int(arrivals[order_id] * 1000)]
    assert not late, f"records stamped later than an order event they carry arrived: {late[:3]}"


def test_a_worker_stopped_while_its_router_holds_order_facts_stops_at_once_and_loses_none(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    """A stop clears the streams' queues, then waits until every record taken is acknowledged: order events
    whose facts the router still holds are sent then (not waited on until the worker is killed), and their
    subjects get them, in this run or the next."""
    n = 4000
    now = time.time()
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        produce(broker.bootstrap, [shipped(f"TC{i:05d}", f"74{i:06d}", now - 7200) for i in range(n)])

        def routing() -> bool:  # (stopped at the first sign: part-way through the burst)
            metrics = worker.get("/metrics")[1].decode()
            return any(float(line.rsplit(" ", 1)[1]) > 0 for line in metrics.splitlines()
                       if line.startswith("parcelwatch_events_consumed_total{") and 'topic="parcelwatch-orders"' in line)

        wait_for(routing, 60, "the router routing the burst", interval=0.05)
        started = time.monotonic()
        worker.stop()
        stopped_in = time.monotonic() - started
    finally:
        worker.kill()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.log_tail()
    assert stopped_in < 15, f"stopped in {stopped_in:.1f} s\n{worker.log_tail()}"
    _until_every_order_and_parcel_is_held(broker, redis_server, tmp_path, n)


def test_a_long_burst_of_batched_order_events_sends_its_facts_as_it_goes(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    """Batch records of order events carry many facts each: the router holds no more than a full batch record's
    worth per parcel partition before it sends them (not the whole burst: memory, and the parcels' wait)."""
    n = 4000
    now = time.time()
    orders = [shipped(f"TD{i:05d}", f"75{i:06d}", now - 7200) for i in range(n)]
    records = batch_records([(key, value) for _, key, value in orders], 4)  # 500 order events a record at most
    produce(broker.bootstrap, [("parcelwatch-orders", None, record) for _, record in records],
            arrived=[now - 3600 + 60 * k for k in range(len(records))], partitions=[p for p, _ in records])
    _until_every_order_and_parcel_is_held(broker, redis_server, tmp_path, n)
    facts = [m for m in consume_all(broker.bootstrap, "parcelwatch-order-facts")
             if not m.value.startswith(b'{"watermark":')]
    assert sum(len(record_events(m.value)) for m in facts) == 2 * n
    # Each send is stamped with the earliest arrival among its facts: held all together, every record would
    # carry the burst's first.
    assert len({m.timestamp for m in facts}) >= 3, sorted({m.timestamp for m in facts})


def _until_every_order_and_parcel_is_held(broker: TansuBroker, redis_server: RedisServer, tmp_path: Path,
                                          n: int) -> None:
    """A worker runs until it holds the state of ``n`` shipped orders and their ``n`` parcels, then stops."""
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        wait_for(lambda: worker.get("/healthz")[1]["checks"]["tables"]["subjects"] == 2 * n, 90,
                 f"the {n} orders and their {n} parcels")
    finally:
        worker.stop()
