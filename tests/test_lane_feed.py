"""The deliveries topic as the lane baselines read it: a record carries one delivery or a batch of them
(the parcel agent sends a record's deliveries as one record per partition, agents/parcels.py ``_write``),
a malformed delivery is skipped alone, and a copy sent again after a crash counts once."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

import agents
import config
from agents.parcels import ParcelAgent
from delivery.batch_records import keyed_records
from delivery.clients import stop_consumer, topic_partitions
from delivery.redelivery import SeenLately
from detectors.lanes import LaneBaselines
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from domain.events import OrderEvent, TrackingUpdate

from .harness import Worker, all_issues, create_topic, produce, wait_for

T0 = 1_793_500_000.0


@pytest.fixture(scope="module")
def parcels() -> ParcelAgent:
    """A worker's parcel agent, built (not started) as the worker builds it."""
    stream = agents.build(config.load(env={}))
    assert stream.parcels is not None
    return stream.parcels


def _delivery(carrier: str, hours: float, dest: str = "浙江") -> dict[str, Any]:
    return {"carrier": carrier, "origin_province": "广东", "destination_province": dest,
            "picked_up_at": T0, "signed_at": T0 + hours * 3600, "subject": f"{carrier}:1"}


def test_the_deliveries_of_a_record_travel_as_batch_records_and_all_reach_the_baselines(parcels: ParcelAgent) -> None:
    deliveries = [_delivery("ZTO", h) for h in (30, 31, 32)] + [_delivery("YTO", 40), _delivery("STO", 20, "新疆")]
    records = keyed_records([(d["carrier"], orjson.dumps(d)) for d in deliveries], 4)
    assert len(records) < len(deliveries)  # some travel together
    before = parcels.stream.baselines.deliveries
    assert sum(parcels.add_deliveries(record) for _, _, record in records) == len(deliveries)
    assert parcels.stream.baselines.deliveries - before == len(deliveries)


def test_a_malformed_delivery_is_skipped_alone_and_a_malformed_record_whole(parcels: ParcelAgent) -> None:
    good = orjson.dumps(_delivery("ZTO", 30))
    before = parcels.stream.baselines.deliveries
    assert parcels.add_deliveries(good) == 1  # a lone delivery, as records written before batching
    batch = b"[" + b",".join([good, orjson.dumps({"carrier": "ZTO"}), b'"text"', good]) + b"]"
    assert parcels.add_deliveries(batch) == 2
    assert parcels.add_deliveries(b"[not json") == 0
    assert parcels.add_deliveries(None) == 0
    assert parcels.stream.baselines.deliveries - before == 3


def test_a_delivery_sent_again_after_a_crash_counts_once(parcels: ParcelAgent) -> None:
    """A ``kill -9`` can land a delivery and lose the state that says it was sent: the record is processed again
    and sends it again, the same parcel signed at the same time."""
    first = {**_delivery("ZTO", 30), "parcel": "ZTO:771"}
    before = parcels.stream.baselines.deliveries
    assert parcels.add_deliveries(orjson.dumps(first)) == 1
    again = b"[" + b",".join([orjson.dumps(first), orjson.dumps({**_delivery("ZTO", 31), "parcel": "ZTO:772"})]) + b"]"
    assert parcels.add_deliveries(again) == 1  # only the other parcel's
    # The same tracking number signed at another time is another parcel (carriers reuse numbers).
    assert parcels.add_deliveries(orjson.dumps({**first, "signed_at": T0 + 99 * 86400})) == 1
    assert parcels.stream.baselines.deliveries - before == 3


def test_what_was_seen_lately_is_remembered_for_its_last_keys_only() -> None:
    seen = SeenLately(keep=2)
    assert [seen.first_time(k) for k in ("a", "b", "a", "c")] == [True, True, False, True]
    assert len(seen) == 2
    assert seen.first_time("a")  # forgotten: the oldest went when "c" came
    assert not seen.first_time("c")


@pytest.mark.integration
def test_the_feed_finds_the_deliveries_topic_whatever_its_consumers_start_up_metadata_names(broker: TansuBroker) -> None:
    """What a consumer's start fetched names no topic on Apache Kafka (a metadata request of version 1 or later
    reads aiokafka's empty topic list as "no topics"; Tansu answers it with every topic), nor here one created
    since. Taking that for the deliveries topic's absence, the feed read no delivery, ever: it asks the
    cluster, and asking creates nothing."""
    async def scenario() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            await create_topic(broker.bootstrap, "lane-feed-created-since", 3)
            assert consumer.partitions_for_topic("lane-feed-created-since") is None  # (the start's metadata)
            assert await topic_partitions(consumer, "lane-feed-created-since") == {0, 1, 2}
            assert await topic_partitions(consumer, "lane-feed-absent") is None
            assert await topic_partitions(consumer, "lane-feed-absent") is None  # (not created by the asking)
        finally:
            await stop_consumer(consumer)

    asyncio.run(scenario())


def test_a_starting_worker_judges_nothing_before_its_baselines_have_read_the_deliveries_topic(
    broker: TansuBroker, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A (re)started worker's baselines are empty until its feed has read the deliveries topic again, oldest
    first. Judged on part of it, a lane that has slowed down lately (its newest deliveries, read last) still
    looks fast, and a transit issue raised on that limit stays (a rising baseline never ends it). Here the
    topic holds 300,000 older deliveries of other lanes (about 20 h each), then the lane's last 3,000 (about
    150 h each): its parcels in flight for 126 h must raise nothing; one in flight for 400 h must."""
    settings = config.load(env={})
    lanes = LaneBaselines(settings.lanes)
    now = time.time()
    refresh = lanes.refreshed_at(now)
    deliveries: list[dict[str, Any]] = []
    for i in range(300_000):
        signed = refresh - 30 * 86400 + i * 5.0
        deliveries.append({"parcel": f"SF:H{i}", "carrier": "SF", "origin_province": "北京", "destination_province": "天津",
                           "picked_up_at": signed - (18 + i % 5) * 3600, "signed_at": signed})
    for i in range(3000):
        signed = refresh - 9 * 86400 + i * 250.0
        deliveries.append({"parcel": f"ZTO:S{i}", "carrier": "ZTO", "origin_province": "广东", "destination_province": "浙江",
                           "picked_up_at": signed - (145 + i % 11) * 3600, "signed_at": signed})
    assert max(d["signed_at"] for d in deliveries) < refresh  # all count at the refresh in force now
    asyncio.run(create_topic(broker.bootstrap, settings.topics.deliveries, settings.app.partitions))
    produce(broker.bootstrap, ((settings.topics.deliveries, None, b"[" + b",".join(orjson.dumps(d) for d in chunk) + b"]")
                               for chunk in (deliveries[i:i + 500] for i in range(0, len(deliveries), 500))),
            partitions=itertools.repeat(0))
    ages = {f"P{i}": 126.0 for i in range(10)} | {"LATE": 400.0}
    events: list[tuple[str, bytes, bytes]] = []
    for name, hours in ages.items():
        shipped = OrderEvent(f"{name}-shipped", f"TB-{name}", "shop-a", "taobao", "shipped", now - (hours + 4) * 3600,
                             carrier="ZTO", tracking_number=name, origin_province="广东", destination_province="浙江",
                             order_value=99.0)
        events.append((settings.topics.orders, shipped.order_id.encode(), shipped.to_json()))
        for status, at in (("picked_up", now - hours * 3600), ("in_transit", now - 2 * 3600)):
            scan = TrackingUpdate(f"{name}-{status}", "ZTO", name, status, at)
            events.append((settings.topics.tracking, scan.parcel_key.encode(), scan.to_json()))
    produce(broker.bootstrap, events)
    worker = Worker(broker.url, redis_server.url, tmp_path, name="w1").start(timeout=180)
    try:
        def settled() -> bool:
            status, health = worker.get("/healthz")
            streams = health.get("checks", {}).get("streams", {}) if isinstance(health, dict) else {}
            return status == 200 and not streams.get("behind") and not streams.get("catching_up") and any(
                i["issue_key"] == "ZTO:LATE|transit_overdue" for i in all_issues(redis_server.url))

        wait_for(settled, 120, "the worker through its input, the 400 h parcel raised")
        time.sleep(3)  # (a few more ticks: nothing due may be left unswept)
        raised = sorted(i["issue_key"] for i in all_issues(redis_server.url) if i["kind"] == "transit_overdue")
        assert raised == ["ZTO:LATE|transit_overdue"], raised
    finally:
        worker.stop()


def _metric_sum(worker: Worker, name: str) -> float:
    text = worker.get("/metrics")[1].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_a_delivery_counts_in_the_transit_times_once_not_again_from_the_history_a_worker_reads(
    broker: TansuBroker, redis_server: RedisServer, tmp_path: Path
) -> None:
    """``parcelwatch_transit_seconds`` (the dashboard's transit p90 over the last day) counts each delivery once,
    when it happens, at the worker that reports it. Every starting worker's feed reads the whole history into its
    baselines: counted there, every restart or added worker put half a year of deliveries into the last day."""
    settings = config.load(env={})
    now = time.time()
    events: list[tuple[str, bytes, bytes]] = []
    for i in range(3):
        name = f"TT{i}"
        shipped = OrderEvent(f"{name}-shipped", f"TB-{name}", "shop-a", "taobao", "shipped", now - 50 * 3600,
                             carrier="ZTO", tracking_number=name, origin_province="广东", destination_province="浙江")
        events.append((settings.topics.orders, shipped.order_id.encode(), shipped.to_json()))
        for status, at in (("picked_up", now - 48 * 3600), ("signed", now - 3600)):
            scan = TrackingUpdate(f"{name}-{status}", "ZTO", name, status, at)
            events.append((settings.topics.tracking, scan.parcel_key.encode(), scan.to_json()))
    first = Worker(broker.url, redis_server.url, tmp_path, name="w1").start()
    try:
        produce(broker.bootstrap, events)
        wait_for(lambda: _metric_sum(first, "parcelwatch_transit_seconds_count") == 3, 60, "three deliveries reported")
    finally:
        first.stop()
    second = Worker(broker.url, redis_server.url, tmp_path, name="w2").start()
    try:
        wait_for(lambda: second.get("/healthz")[1]["checks"]["lane_baselines"]["deliveries"] == 3, 60,
                 "the history read into the second worker's baselines")
        assert _metric_sum(second, "parcelwatch_lane_baseline_samples") == 3
        assert _metric_sum(second, "parcelwatch_transit_seconds_count") == 0
    finally:
        second.stop()
