"""The worker creates its topics before it starts, with the configured partitions, its replicas and the
deliveries topic's retention: not with what the broker would give a topic created on first use (Tansu's 4,
Kafka's ``num.partitions``), and not at all where auto-creation is off. A topic that exists with another
partition count stops the start, named. An order import before the first worker creates them the same way."""

from __future__ import annotations

import argparse
import asyncio
import io
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

import config
from delivery.clients import stop_consumer, topic_partitions
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from domain.events import OrderEvent, TrackingUpdate
from importers import cli

from .export_files import taobao_rows, write_taobao_csv
from .harness import Worker, all_issues, create_topic, produce, wait_for


async def _partitions(bootstrap: str, names: list[str]) -> dict[str, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        found = {name: await topic_partitions(consumer, name) for name in names}
        return {name: None if p is None else len(p) for name, p in found.items()}
    finally:
        await stop_consumer(consumer)


async def _retention_ms(bootstrap: str, topic: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        for _, _, _, _, entries in response.resources:
            for entry in entries:
                if entry[0] == "retention.ms":
                    return str(entry[1])
        return None
    finally:
        await admin.close()


def test_a_worker_with_eight_partitions_creates_its_topics_with_eight_and_judges_on_all_of_them(
    broker: TansuBroker, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Eight partitions on a fresh broker: every topic has eight before any record, the deliveries topic keeps
    the lane horizon, and parcels on every partition are judged (ticks, issues and deliveries go to all eight)."""
    settings = config.load(env={"PARCELWATCH_PARTITIONS": "8"})
    names = [getattr(settings.topics, f) for f in settings.topics.__dataclass_fields__]
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_PARTITIONS="8").start(timeout=180)
    try:
        assert asyncio.run(_partitions(broker.bootstrap, names)) == dict.fromkeys(names, 8)
        retention = (settings.lanes.horizon_days + 1) * 86400 + settings.lanes.refresh_minutes * 60
        assert asyncio.run(_retention_ms(broker.bootstrap, settings.topics.deliveries)) == str(int(retention * 1000))
        assert "parcelwatch: warning" not in worker.log_path.read_text()
        now = time.time()
        events: list[tuple[str, bytes, bytes]] = []
        for i, carrier in enumerate(("ZTO", "YTO", "STO", "SF", "JD", "YUNDA", "EMS", "JTEXPRESS") * 3):
            number = f"8P{i:04d}"
            shipped = OrderEvent(f"{number}-shipped", f"TB-{number}", "shop-a", "taobao", "shipped", now - 80 * 3600,
                                 carrier=carrier, tracking_number=number, origin_province="广东",
                                 destination_province="浙江")
            events.append((settings.topics.orders, shipped.order_id.encode(), shipped.to_json()))
            if i % 2:  # delivered: a delivery for the lane baselines; the others never picked up: an issue each
                for status, at in (("picked_up", now - 70 * 3600), ("signed", now - 20 * 3600)):
                    scan = TrackingUpdate(f"{number}-{status}", carrier, number, status, at)
                    events.append((settings.topics.tracking, scan.parcel_key.encode(), scan.to_json()))
        produce(broker.bootstrap, events)

        def judged() -> bool:
            status, health = worker.get("/healthz")
            deliveries = health.get("checks", {}).get("lane_baselines", {}).get("deliveries", 0)
            raised = [i for i in all_issues(redis_server.url) if i["kind"] == "pickup_overdue"]
            return status == 200 and deliveries == 12 and len(raised) == 12

        wait_for(judged, 90, "12 deliveries in the baselines and 12 parcels never picked up raised")
    finally:
        worker.stop()


def test_a_topic_with_another_partition_count_stops_the_worker_naming_it(
    broker: TansuBroker, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = config.load(env={})
    asyncio.run(create_topic(broker.bootstrap, settings.topics.tracking, 2))
    worker = Worker(broker.url, redis_server.url, tmp_path).start(wait=False)
    assert worker.proc is not None
    assert worker.proc.wait(120) != 0
    assert f"{settings.topics.tracking} has 2 partitions; app.partitions (PARCELWATCH_PARTITIONS) is 4" in worker.log_tail()


def _import_orders(bootstrap: str, export: Path) -> tuple[int, str]:
    """``import-orders`` of a 千牛 export straight to the broker, as a shop's first step may be; exit code and
    what it wrote to standard error."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(export), "--platform", "taobao", "--shop", "shop-a", "--bootstrap", bootstrap,
                              "--no-progress"])
    err = io.StringIO()
    return cli.run(args, out=io.StringIO(), err=err), err.getvalue()


async def _records(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic) or ()]
        return sum((await consumer.end_offsets(partitions)).values()) if partitions else 0
    finally:
        await stop_consumer(consumer)


def test_an_import_before_the_first_worker_creates_the_topics_the_worker_then_starts_on(
    broker: TansuBroker, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left to the broker, the first import's orders topic got its default count (Tansu's 4), and a worker with
    8 partitions refused to start on it. The import creates every topic as the worker would; the worker starts
    and judges the imported orders."""
    monkeypatch.setenv("PARCELWATCH_PARTITIONS", "8")
    settings = config.load()
    names = [getattr(settings.topics, f) for f in settings.topics.__dataclass_fields__]
    rows = taobao_rows()
    china = datetime.now(timezone(timedelta(hours=8)))  # the export's own time zone (no offset in its cells)
    rows[1].update({"订单创建时间": f"{china - timedelta(days=3):%Y-%m-%d %H:%M:%S}",
                    "订单付款时间": f"{china - timedelta(days=3):%Y-%m-%d %H:%M:%S}",
                    "发货时间": f"{china - timedelta(days=2):%Y-%m-%d %H:%M:%S}"})
    code, err = _import_orders(broker.bootstrap, write_taobao_csv(tmp_path / "ExportOrderList.csv", rows))
    assert code == 0, err
    assert asyncio.run(_partitions(broker.bootstrap, names)) == dict.fromkeys(names, 8)
    assert asyncio.run(_records(broker.bootstrap, settings.topics.orders)) > 0
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_PARTITIONS="8").start(timeout=180)
    try:
        # Shipped two days ago and never scanned: not picked up.
        wait_for(lambda: any(i["kind"] == "pickup_overdue" and i["order_id"] == "1930679858170002"
                             for i in all_issues(redis_server.url)), 90, "the imported shipped order judged")
    finally:
        worker.stop()


def test_an_import_into_an_orders_topic_with_another_count_is_refused_before_sending(
    broker: TansuBroker, tmp_path: Path
) -> None:
    settings = config.load(env={})
    asyncio.run(create_topic(broker.bootstrap, settings.topics.orders, 2))
    code, err = _import_orders(broker.bootstrap, write_taobao_csv(tmp_path / "ExportOrderList.csv"))
    assert code == 2
    assert f"{settings.topics.orders} has 2 partitions; app.partitions (PARCELWATCH_PARTITIONS) is 4" in err
    assert "nothing sent" in err
    assert asyncio.run(_records(broker.bootstrap, settings.topics.orders)) == 0


def test_a_deliveries_topic_that_keeps_a_week_is_reported_at_start_with_the_retention_to_set(
    broker: TansuBroker, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A deployment from before the worker created its topics has a deliveries topic the broker made, with its
    default week: after every restart the lane baselines would learn from one week of the horizon, unsaid."""
    settings = config.load(env={})
    week_ms = 7 * 86_400_000

    async def create_with_a_week() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(settings.topics.deliveries, settings.app.partitions, 1,
                                                topic_configs={"retention.ms": str(week_ms)})])
        finally:
            await admin.close()

    asyncio.run(create_with_a_week())
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        need_ms = int(((settings.lanes.horizon_days + 1) * 86400 + settings.lanes.refresh_minutes * 60) * 1000)
        log = worker.log_path.read_text()
        assert (f"parcelwatch: warning: {settings.topics.deliveries} keeps its records 7 days (retention.ms {week_ms}), "
                f"and the app reads 182 days back from it") in log
        assert f"Set its retention.ms to {need_ms}" in log
        assert asyncio.run(_retention_ms(broker.bootstrap, settings.topics.deliveries)) == str(week_ms)  # left as it is
    finally:
        worker.stop()
