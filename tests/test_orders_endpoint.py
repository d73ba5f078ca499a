"""A live worker with subscriptions on: orders POSTed to /ingest/orders with an order token reach the orders
topic (bad elements rejected alone and dead-lettered, buyer fields dropped), and their shipped parcels are
registered with a loopback kuaidi100; a parcel kuaidi100 refuses becomes a staff issue; /healthz and /metrics
show it."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import Counter, deque
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from domain.vocabulary import CHINA_TZ

from .fake_aggregators import FakeAggregators
from .harness import Worker, all_issues, consume_all, wait_for

pytestmark = pytest.mark.integration


def post(url: str, body: Any, token: str | None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=25) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def order(kind: str, order_id: str, t: datetime, shop: str = "shop-a", **kw: Any) -> dict[str, Any]:
    return {"event_id": f"{order_id}-{kind}-{kw.get('tracking_number', '')}", "order_id": order_id, "shop": shop,
            "platform": "taobao", "kind": kind, "event_time": t.isoformat(), "destination_province": "浙江",
            "destination_city": "杭州市", **kw}


def test_orders_endpoint_and_registration_on_a_live_worker(tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    with FakeAggregators() as fake:
        fake.script["73100000000700"] = deque([("700", "订阅方的订阅数据存在错误")])
        override = tmp_path / "override.yaml"
        override.write_text(f"subscriptions:\n  endpoint: {fake.url('/poll')}\n  retry_initial_seconds: 0.5\n"
                            "  sender_phones: {shop-a: '13800135678'}\n", encoding="utf-8")
        worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_CONFIG=str(override),
                        PARCELWATCH_SUBSCRIPTIONS="kuaidi100", PARCELWATCH_KUAIDI100_KEY="kd100-key",
                        PARCELWATCH_KUAIDI100_SALT="salt-1",
                        PARCELWATCH_SUBSCRIPTION_CALLBACK_URL="https://shop.example/ingest/kuaidi100",
                        PARCELWATCH_ORDER_TOKENS="orders-a-0123456789=shop-a", PARCELWATCH_TOKENS="staff-0123456789ab=*").start()
        try:
            url = worker.url("/ingest/orders")
            now = datetime.now(CHINA_TZ)
            paid = order("paid", "TB1001", now - timedelta(hours=30))
            shipped = order("shipped", "TB1001", now - timedelta(hours=5), carrier="ZTO", tracking_number="73100000000001",
                            buyer_phone="13912345678", receiver_name="张三")
            split = order("shipped", "TB1001", now - timedelta(hours=4), carrier="SF", tracking_number="SF1400000000002")
            refused = order("shipped", "TB1002", now - timedelta(hours=3), carrier="ZTO", tracking_number="73100000000700")
            bad = order("paid", "TB1003", now, destination_province="13800138000 张三")
            other_shop = order("paid", "TB1004", now, shop="shop-b")
            old = order("shipped", "TB0999", now - timedelta(days=60), carrier="ZTO", tracking_number="73100000000999")

            assert post(url, [paid], None)[0] == 401
            assert post(url, [paid], "staff-0123456789ab")[0] == 401  # a staff token cannot send orders
            assert post(url, b"{not json", "orders-a-0123456789")[0] == 400
            status, body = post(url, [0] * 2_001, "orders-a-0123456789")  # (tiny elements: within the byte limit)
            assert status == 413 and "2,000" in body["error"]
            status, body = post(url, [paid, shipped, split, refused, bad, other_shop, old], "orders-a-0123456789")
            assert status == 200 and body["accepted"] == 5 and body["ok"] is False
            assert [(r["index"], r["field"]) for r in body["rejected"]] == [(4, "destination_province"), (5, "shop")]
            assert body["ignored_fields"] == ["buyer_phone", "receiver_name"]
            status, body = post(url, bad, "orders-a-0123456789")  # a single invalid object: 400 naming the field
            assert status == 400 and body["rejected"][0]["field"] == "destination_province"

            # Both parcels of the split order registered (SF with the last four digits of the shop's sender phone);
            # the 60-day-old shipment is not registered by itself.
            wait_for(lambda: {"zhongtong:73100000000001", "shunfeng:SF1400000000002"} <= fake.registered["kuaidi100"], 60,
                     "the shipped parcels registered with kuaidi100")
            sf = [json.loads(c.form["param"]) for c in fake.calls_of("kuaidi100")]
            assert {p["number"]: p["parameters"].get("phone") for p in sf}["SF1400000000002"] == "5678"
            # The refused one: an issue in the staff's queue.
            issue = wait_for(lambda: [i for i in all_issues(redis_server.url) if i["kind"] == "tracking_unregistered"], 60,
                             "the tracking_unregistered issue")[0]
            assert issue["parcel"] == "ZTO:73100000000700" and issue["order_id"] == "TB1002" and issue["status"] == "open"
            assert "73100000000999" not in {json.loads(c.form["param"])["number"] for c in fake.calls_of("kuaidi100")}

            health = worker.get("/healthz")[1]
            assert health["ok"] is True
            subs = health["subscriptions"]
            assert subs["aggregator"] == "kuaidi100" and subs["failed"] == 1 and subs["registered"] >= 2
            assert subs["latest_failures"][0]["parcel"] == "ZTO:73100000000700" and "700" in subs["latest_failures"][0]["error"]
            metrics = worker.get("/metrics")[1].decode()
            assert re.search(r'parcelwatch_subscriptions_total\{aggregator="kuaidi100",outcome="registered"\} [2-9]', metrics)
            assert 'parcelwatch_subscriptions_total{aggregator="kuaidi100",outcome="rejected"} 1.0' in metrics
            assert 'parcelwatch_subscriptions_total{aggregator="kuaidi100",outcome="too_old"} 1.0' in metrics

            # What reached the orders topic carries no buyer field; the rejected elements are dead letters.
            orders = b"".join(m.value for m in consume_all(broker.bootstrap, "parcelwatch-orders"))
            assert b"13912345678" not in orders and "张三".encode() not in orders and b"TB1001" in orders
            # Each push with a rejected element is a dead letter byte for byte, with every problem (as tracking pushes).
            dead = consume_all(broker.bootstrap, "parcelwatch-dead-letter")
            pushes = [dict(m.headers) for m in dead]
            assert len(dead) == 3  # (the whole non-JSON body, the list with two bad elements, the single object)
            assert all(h["pw-endpoint"] == b"/ingest/orders" and h["pw-source"] == b"orders" for h in pushes)
            problems = sorted(line.split(b":")[0] for h in pushes for line in h["pw-problems"].split(b"\n"))
            assert problems == [b"$", b"[4].destination_province", b"[5].shop", b"destination_province"]
        finally:
            worker.stop()


def test_an_export_imported_then_its_past_parcels_registered_in_bulk(tmp_path: Path, broker: TansuBroker,
                                                                      redis_server: RedisServer) -> None:
    """A shop's first day: its 千牛 export imported (through the endpoint, then again straight to the broker: the
    same events), its shipments too old to be registered by themselves, then registered in bulk on purpose."""
    import argparse
    import asyncio
    import io

    import config
    from importers import cli as importers
    from subscriptions.cli import namespace, register_parcels

    from .export_files import write_taobao_csv

    export = write_taobao_csv(tmp_path / "ExportOrderList.csv")
    with FakeAggregators() as fake:
        override = tmp_path / "override.yaml"
        override.write_text(f"subscriptions:\n  endpoint: {fake.url('/poll')}\n  sender_phones: {{shop-a: '13800135678'}}\n",
                            encoding="utf-8")
        env = {"PARCELWATCH_CONFIG": str(override), "PARCELWATCH_SUBSCRIPTIONS": "kuaidi100",
               "PARCELWATCH_KUAIDI100_KEY": "kd100-key", "PARCELWATCH_SUBSCRIPTION_CALLBACK_URL": "https://shop.example/ingest/kuaidi100"}
        worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_ORDER_TOKENS="orders-a-0123456789=shop-a", **env).start()
        try:
            parser = argparse.ArgumentParser()
            importers.add_arguments(parser)
            common = [str(export), "--platform", "taobao", "--shop", "shop-a", "--no-progress"]
            err = io.StringIO()
            assert importers.run(parser.parse_args([*common, "--url", worker.url(""), "--token", "orders-a-0123456789"]), err=err) == 0
            assert "sent 12 events" in err.getvalue()
            assert importers.run(parser.parse_args([*common, "--bootstrap", broker.bootstrap]), err=io.StringIO()) == 0

            def event_ids() -> list[str]:
                from delivery.batch_records import record_events

                return [e["event_id"] for m in consume_all(broker.bootstrap, "parcelwatch-orders") for e in record_events(m.value)]

            ids = wait_for(lambda: (lambda got: got if len(got) == 24 else None)(event_ids()), 30, "both imports on the topic")
            assert set(Counter(ids).values()) == {2}  # the re-import: the same 12 events again
            metrics = wait_for(lambda: (lambda text: text if re.search(
                r'parcelwatch_subscriptions_total\{aggregator="kuaidi100",outcome="too_old"\} 8\.0', text) else None)(
                worker.get("/metrics")[1].decode()), 30, "the old shipments counted, not registered")
            assert "outcome=\"registered\"} 0.0" in metrics and not fake.calls_of("kuaidi100")

            settings = config.load(env=env)
            out = io.StringIO()
            args = namespace(files=[str(export)], platform="taobao", shop="shop-a")
            assert asyncio.run(register_parcels(settings, redis_server.url, "test", args, out=out)) == 0
            assert "filed 4 parcels for kuaidi100" in out.getvalue()
            wait_for(lambda: len(fake.registered["kuaidi100"]) == 4, 60, "the past parcels registered")
            assert {json.loads(c.form["param"])["number"] for c in fake.calls_of("kuaidi100")} == {
                "73100012345678", "YT7500000000001", "YT7500000000002", "SF1400000000006"}
            out = io.StringIO()
            assert asyncio.run(register_parcels(settings, redis_server.url, "test", args, out=out)) == 0
            assert "filed 0 parcels" in out.getvalue() and "registered 4" in out.getvalue()
        finally:
            worker.stop()
