"""The parcel agent: tracking updates, order facts and ticks in; parcel state, issues and deliveries out.

One agent consumes the three co-partitioned inputs so that every table write happens in the context of
an event of the right partition (Faust writes a table's changelog to the current event's partition;
timers cannot write tables, so the leader's timer turns wall-clock time into tick events instead).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import StreamT
from mode import Service

from clock import WATERMARK_HOLD_SECONDS, CatchUpClock, decode_watermark
from detectors import LaneBaselines
from kafka_tools import stop_consumer
from models import InvalidEvent, parse_time, parse_tracking_update
from notifications import load_rules
from processor import Output, Processor, decode_order_facts

from . import telemetry as metrics
from .base import (
    T,
    _cfg,
    app,
    deadline_index,
    deliveries_topic,
    issues_topic,
    notifications_topic,
    parcel_inputs,
    parcel_state,
    settings,
    ticks_topic,
    writer,
)
from .deadletter import dead_letter
from .staging import StagedWrites

log = logging.getLogger("parcelwatch.parcels")

baselines = LaneBaselines(settings.lanes)
notification_rules = load_rules()
staged_states = StagedWrites(parcel_state, writer)
staged_index = StagedWrites(deadline_index, writer)
# A new index epoch for every worker process: filings made by an earlier process (which may have died
# between its state and index writes) are re-checked instead of trusted (see processor.py).
processor = Processor(settings, baselines, staged_states, staged_index, notification_rules,
                      epoch=secrets.randbits(31) | 1, defer_index_removals=True)
# While a partition works through records that arrived long ago, its detectors and sweeps run at their
# arrival time instead of the wall clock (clock.py): no spurious open/resolve pairs after an outage.
# Every partition hears from its tracking and from each order-router partition before its clock moves.
catch_up = CatchUpClock(_cfg.catch_up_after_seconds, quiet_seconds=max(10.0, 2 * _cfg.tick_interval_seconds),
                        started_at=time.time(),
                        expected=[T.tracking, *(f"orders:{q}" for q in range(_cfg.partitions))])
metrics.track_catch_up(catch_up)


async def _emit(out: Output) -> None:
    # Issue events and notifications first, acknowledged by the broker, then the state that records
    # them (see agents/staging.py): a crash in between repeats them instead of losing them.
    acks = []
    for issue in out.issues:
        acks.append(await issues_topic.send(key=issue["subject"], value=orjson.dumps(issue)))
        metrics.on_issue_event(issue)
    for note in out.notifications:
        acks.append(await notifications_topic.send(key=note["parcel"], value=orjson.dumps(note)))
        metrics.on_notification(note)
    if acks:
        await asyncio.gather(*acks)
    staged_states.flush()
    staged_index.flush()
    if out.index_removals:
        # A sweep's removals go last: only once its re-filings and states are acknowledged can the
        # swept buckets and the old cursor go without risking a subject that is filed nowhere.
        await writer.wait_acked(parcel_state, deadline_index)
        processor.apply_index_removals(out)
        staged_index.flush()
    for shop, shipped_at, picked_up_at in out.milestones:
        if picked_up_at is None:
            metrics.observe_shipment(shop)
        else:
            metrics.observe_pickup(shop, shipped_at, picked_up_at)
    for delivery in out.deliveries:
        await deliveries_topic.send(key=f"{delivery['carrier']}", value=orjson.dumps(delivery))


@app.agent(parcel_inputs)
async def parcel_agent(stream: StreamT[bytes]) -> None:
    async for event in stream.events():
        msg = event.message
        started = time.perf_counter()
        topic = msg.topic
        # One bad event must never kill the agent: everything per event is inside this try.
        try:
            raw: bytes = event.value
            partition = msg.partition
            if topic == T.tracking:
                update = parse_tracking_update(raw)
                wall = time.time()
                now = catch_up.observe(topic, partition, msg.timestamp, wall)
                out = processor.on_tracking(partition, update, now, wall)
                metrics.observe_event(topic, "ok", wall - update.event_time, time.perf_counter() - started)
            elif topic == T.order_facts:
                mark = decode_watermark(raw)
                if mark is not None:  # the order router's progress through a backlog (clock.py)
                    catch_up.observe(f"orders:{mark[0]}", partition, mark[1], time.time(), hold=WATERMARK_HOLD_SECONDS)
                    metrics.observe_event(topic, "watermark", None, time.perf_counter() - started)
                    continue
                subject, facts, at = decode_order_facts(raw)
                wall = time.time()
                now = catch_up.observe(topic, partition, msg.timestamp, wall)
                out = processor.on_order_facts(partition, subject, facts, at, now, wall)
                metrics.observe_event(topic, "ok", None, time.perf_counter() - started)
            else:  # ticks
                wall = float(orjson.loads(raw)["now"])  # the leader's clock when it sent the tick
                now = min(wall, catch_up.now(partition, time.time()))
                out = processor.on_tick(partition, now, wall)
                metrics.observe_sweep(partition, time.perf_counter() - started, out.due, now, processor)
            await _emit(out)
        except InvalidEvent as exc:
            staged_states.discard()
            staged_index.discard()
            reason = await dead_letter(event, exc)
            metrics.observe_invalid(topic, reason)
        except Exception as exc:
            staged_states.discard()
            staged_index.discard()
            log.exception("failed to process %s[%s]@%s", topic, msg.partition, msg.offset)
            reason = await dead_letter(event, exc)
            metrics.observe_invalid(topic, "processing_error")


@app.timer(interval=_cfg.tick_interval_seconds, on_leader=True)
async def tick() -> None:
    """Turn wall-clock time into one tick per partition (the sweep runs in the parcel agent)."""
    value = orjson.dumps({"now": time.time()})
    for partition in range(_cfg.partitions):
        await ticks_topic.send(key="tick", value=value, partition=partition)


@app.service
class LaneBaselineFeed(Service):
    """Feeds the lane baselines from ALL partitions of the deliveries topic, on every worker, so every
    worker gives the same baseline for a lane whichever partition a parcel is on."""

    @Service.task
    async def _feed(self) -> None:
        bootstrap = ",".join(u.removeprefix("kafka://") for u in _cfg.broker.split(";"))
        while not self.should_stop:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
            try:
                await consumer.start()
                partitions = consumer.partitions_for_topic(T.deliveries)
                if not partitions:
                    await self.sleep(2)  # no delivery yet (the topic is created by the first one)
                    continue
                tps = [TopicPartition(T.deliveries, p) for p in sorted(partitions)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                while not self.should_stop:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for msgs in batch.values():
                        for m in msgs:
                            _add_delivery(m.value)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lane baseline feed failed; retrying")
                await self.sleep(2)
            finally:
                await stop_consumer(consumer)


def _add_delivery(raw: bytes | None) -> None:
    try:
        d = orjson.loads(raw or b"")
        baselines.add_delivery(
            d["carrier"], d.get("origin_province"), d.get("destination_province"),
            float(d["picked_up_at"]), float(d["signed_at"]),
        )
        metrics.observe_delivery(d)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("skipped a malformed delivery record")


__all__ = ["baselines", "parcel_agent", "parse_time", "processor", "tick"]
