"""A shop's logistics health (物流体验): each parcel's shipping, pickup and signature, counted once per shop
and day from the stream, read back as the platforms score sellers (pickup within 24 h / 48 h, delivery
time per lane against its normal time, exceptions per carrier) over 7, 30 or 90 days."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from core.processor import Output
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from domain.events import format_time
from issue_queue.health import ShopHealth, milestone_fields
from issue_queue.people import People
from issue_queue.store import IssueStore

from .harness import Worker, produce, wait_for
from .test_processor import Rig, shipped

T = TypeVar("T")
H = 3600.0
D = 24 * H
NOW = time.time()


def normal(carrier: str, origin: str | None, destination: str | None, at: float) -> float:
    return 48.0  # every lane's normal transit time, for these tests


def test_the_processor_reports_each_parcels_milestones_once() -> None:
    rig = Rig()
    t0 = 1_793_584_800.0
    outs: list[Output] = [rig.order(shipped(t0, destination_city="杭州市")), rig.scan("picked_up", t0 + 30 * H),
                          rig.scan("in_transit", t0 + 40 * H), rig.scan("picked_up", t0 + 30 * H), rig.scan("signed", t0 + 70 * H),
                          rig.scan("signed", t0 + 70 * H)]
    milestones = [m for out in outs for m in out.logistics]
    assert [m["kind"] for m in milestones] == ["shipped", "picked_up", "signed"]
    assert milestones[2] == {"kind": "signed", "parcel": "ZTO:1", "shop": "shop-a", "platform": "taobao", "carrier": "ZTO",
                             "origin_province": "广东", "destination_province": "浙江", "shipped_at": t0,
                             "picked_up_at": t0 + 30 * H, "signed_at": t0 + 70 * H}


def test_milestones_count_on_the_shipping_day_and_the_signature_day() -> None:
    t0 = 1_793_584_800.0  # 2026-11-02 10:00 China time
    base = {"parcel": "ZTO:1", "shop": "shop-a", "carrier": "ZTO", "origin_province": "广东", "destination_province": "浙江",
            "shipped_at": t0, "picked_up_at": t0 + 30 * H, "signed_at": t0 + 90 * H}
    assert milestone_fields({**base, "kind": "shipped"}, normal) == ("health:shop-a:20261102", [("shipped|ZTO", 1.0)])
    assert milestone_fields({**base, "kind": "picked_up"}, normal) == (
        "health:shop-a:20261102", [("picked|ZTO", 1.0), ("pickup_h|ZTO", 30.0), ("p48|ZTO", 1.0)])
    assert milestone_fields({**base, "kind": "signed"}, normal) == (
        "health:shop-a:20261106", [("signed|ZTO|广东|浙江", 1.0), ("transit_h|ZTO|广东|浙江", 60.0),
                                   ("normal_h|ZTO|广东|浙江", 48.0), ("over|ZTO|广东|浙江", 1.0)])
    assert milestone_fields({**base, "kind": "shipped", "shop": None}, normal) is None
    assert milestone_fields({**base, "kind": "signed", "signed_at": None}, normal) is None


def run(redis_server: RedisServer, fn: Callable[[IssueStore, ShopHealth], Awaitable[T]]) -> T:
    async def go() -> T:
        store = IssueStore.from_url(redis_server.url)
        try:
            return await fn(store, ShopHealth(store.redis, store.prefix))
        finally:
            await store.redis.aclose()

    return asyncio.run(go())


def milestone(kind: str, n: int, shipped_at: float, pickup_h: float | None, transit_h: float | None, carrier: str = "ZTO",
              destination: str = "浙江") -> dict[str, Any]:
    picked = None if pickup_h is None else shipped_at + pickup_h * H
    signed = None if picked is None or transit_h is None else picked + transit_h * H
    return {"kind": kind, "parcel": f"{carrier}:{n}", "shop": "shop-h", "platform": "douyin", "carrier": carrier,
            "origin_province": "广东", "destination_province": destination, "shipped_at": shipped_at,
            "picked_up_at": picked, "signed_at": signed}


@pytest.mark.integration
def test_a_window_reads_as_the_platforms_score_it_and_redelivery_counts_once(redis_server: RedisServer) -> None:
    shipped_at = NOW - 5 * D
    parcels = [  # (carrier, pickup hours, transit hours, destination)
        ("ZTO", 6, 30, "浙江"), ("ZTO", 20, 60, "浙江"), ("ZTO", 30, 40, "浙江"), ("ZTO", 60, None, "浙江"),
        ("JTEXPRESS", 10, 50, "新疆"), ("JTEXPRESS", None, None, "新疆"),
    ]
    records = []
    for n, (carrier, pickup_h, transit_h, destination) in enumerate(parcels):
        for kind in ("shipped", "picked_up", "signed"):
            records.append(milestone(kind, n, shipped_at, pickup_h, transit_h, carrier, destination))
    exception = {"action": "open", "issue_key": "JTEXPRESS:5|carrier_exception", "kind": "carrier_exception",
                 "subject": "JTEXPRESS:5", "carrier": "JTEXPRESS", "shop": "shop-h", "severity": "high",
                 "opened_at": format_time(NOW - 4 * D), "at": format_time(NOW - 4 * D)}

    async def go(store: IssueStore, health: ShopHealth) -> tuple[int, int, dict[str, Any], dict[str, Any]]:
        first = await health.record(records, normal)
        again = await health.record(records, normal)  # at least once: all of it again
        await store.apply_events([exception])
        return first, again, await health.summary("shop-h", 7, NOW, normal), await health.summary("shop-h", 7, NOW - 6 * D, normal)

    first, again, week, before = run(redis_server, go)
    assert (first, again) == (6 + 5 + 4, 0)
    assert week["pickup"] == {"shipped": 6, "settled_shipped": 6, "rate_24h": round(3 / 6, 4), "rate_48h": round(4 / 6, 4)}
    zto = next(c for c in week["carriers"] if c["carrier"] == "ZTO")
    assert (zto["carrier_label"], zto["shipped"], zto["pickup_rate_24h"], zto["pickup_rate_48h"]) == ("中通快递", 4, 0.5, 0.75)
    jt = next(c for c in week["carriers"] if c["carrier"] == "JTEXPRESS")
    assert (jt["exceptions"], jt["exception_rate"]) == (1, 0.5)
    assert week["exceptions"] == {"total": 1, "rate": round(1 / 6, 4)}
    # The lanes with the most late parcels first (then the busiest).
    zhejiang, xinjiang = week["lanes"]
    assert (zhejiang["destination"], zhejiang["signed"], zhejiang["hours"], zhejiang["over"], zhejiang["over_share"]) == (
        "浙江", 3, round(130 / 3, 1), 1, 0.3333)
    assert (xinjiang["carrier"], xinjiang["destination"], xinjiang["signed"], xinjiang["over"], xinjiang["hours"],
            xinjiang["normal_hours"]) == ("JTEXPRESS", "新疆", 1, 1, 50.0, 48.0)
    assert week["delivery"]["signed"] == 4 and week["issues"] == {"carrier_exception": 1}
    assert before["pickup"]["shipped"] == 0  # a window before the shipping day holds none of it


@pytest.mark.integration
def test_the_worker_fills_the_health_view_from_the_stream(tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    async def account() -> None:
        store = IssueStore.from_url(redis_server.url)
        await People(store.redis, store.prefix).add("xiaoli", "小李", ["shop-h"], "agent", "a-long-password")
        await store.redis.aclose()

    asyncio.run(account())
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_TOKENS="tok=shop-h").start()
    try:
        t0 = NOW - 5 * D

        def order(number: str) -> tuple[str, bytes, bytes]:
            ev = {"event_id": f"o{number}", "order_id": f"DY{number}", "shop": "shop-h", "platform": "douyin", "kind": "shipped",
                  "event_time": format_time(t0), "carrier": "ZTO", "tracking_number": number, "origin_province": "广东",
                  "destination_province": "浙江"}
            return "parcelwatch-orders", f"DY{number}".encode(), json.dumps(ev).encode()

        def scan(number: str, status: str, at: float) -> tuple[str, bytes, bytes]:
            ev = {"event_id": f"{number}-{status}", "carrier": "ZTO", "tracking_number": number, "status": status,
                  "event_time": format_time(at), "raw_text": "【杭州市】已签收" if status == "signed" else "【广州市】已揽收"}
            return "parcelwatch-tracking", f"ZTO:{number}".encode(), json.dumps(ev).encode()

        produce(broker.bootstrap, [order("9001"), order("9002"), scan("9001", "picked_up", t0 + 5 * H),
                                   scan("9002", "picked_up", t0 + 30 * H), scan("9001", "signed", t0 + 40 * H)])

        def summary() -> dict[str, Any] | None:
            import urllib.request

            req = urllib.request.Request(worker.url("/shop-health?shop=shop-h&days=7"), headers={"Authorization": "Bearer tok"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                body: dict[str, Any] = json.loads(resp.read())
            return body if body["pickup"]["shipped"] == 2 and body["delivery"]["signed"] == 1 and body["carriers"][0].get(
                "pickup_hours") else None

        body = wait_for(summary, 60, "the health view's figures")
        assert body["pickup"]["rate_24h"] == 0.5 and body["pickup"]["rate_48h"] == 1.0
        assert body["lanes"][0]["hours"] == 35.0 and body["carriers"][0]["carrier_label"] == "中通快递"
        status, _ = worker.get("/shop-health?shop=shop-h")
        assert status == 401  # a shop's figures need a session or a token
    finally:
        worker.stop()
