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
from collections.abc import Awaitable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import EventT, StreamT, TopicT
from mode import Service

from batching import decode_batch, is_batch, keyed_records, partition_for, record_events
from clock import WATERMARK_HOLD_SECONDS, CatchUpClock, decode_watermark
from detectors import LaneBaselines
from kafka_tools import send_now, stop_consumer
from models import InvalidEvent, TrackingUpdate, parse_time, parse_tracking_update
from notifications import load_rules
from processor import Output, Processor, decode_order_facts, encode_gone, order_facts_from_doc
from state import OrderFacts

from . import telemetry as metrics
from .base import (
    T,
    _cfg,
    app,
    deadline_index,
    deliveries_topic,
    issues_topic,
    notifications_topic,
    order_facts_topic,
    order_purges_topic,
    parcel_inputs,
    parcel_state,
    settings,
    ticks_topic,
    tracking_topic,
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


async def _emit(event: EventT, out: Output, partition: int, *, wait: bool = False) -> None:
    """Everything one record's processing gave (a lone event, or a tick's sweep: ``wait``)."""
    issues: list[tuple[str, bytes]] = []
    await _settle(event, await _send(out, issues), (out,), issues, partition, wait=wait)


async def _send(out: Output, issues: list[tuple[str, bytes]]) -> list[Awaitable[Any]]:
    """Send the notifications and deletion notices of ``out`` (their acknowledgements returned); its
    issue events are encoded onto ``issues``, which ``_settle`` sends as few records."""
    acks = []
    encoded = [(issue["subject"], orjson.dumps(issue)) for issue in out.issues]
    for note in out.notifications:
        acks.append(await notifications_topic.send(key=note["parcel"], value=orjson.dumps(note)))
        metrics.on_notification(note)
    for order_id, subject in out.gone:
        # Before the tombstone too: a crash in between deletes the subject again and repeats the notice
        # (which the router takes twice without harm) instead of leaving the order's facts for ever.
        acks.append(await order_purges_topic.send(key=order_id, value=encode_gone(order_id, subject)))
    issues.extend(encoded)
    for issue in out.issues:
        metrics.on_issue_event(issue)
    return acks


async def _settle(
    event: EventT, acks: list[Awaitable[Any]], outs: Iterable[Output], issues: list[tuple[str, bytes]],
    partition: int, *, wait: bool = False,
) -> None:
    """Send the record's ``issues`` (one record per partition, a batch record when several: each issue
    event sent alone cost the worker four Faust messages); the staged state that records them is written
    once the broker has acknowledged them and every notification and notice sent (``acks``), see
    agents/staging.py: a crash in between repeats them instead of losing them.

    That wait (about 4 ms on the embedded broker) no longer holds the agent unless asked to (``wait``):
    the states are written by a task (``_write_when_acknowledged``) while the agent goes on with other
    partitions' records; the next record of ``partition`` waits for it (``parcel_agent``), and so does
    every offset commit (``ChangelogWriter.hold``), so no offset is committed ahead of its states."""
    for key, issues_partition, record in keyed_records(issues, _cfg.partitions):
        acks.append(await issues_topic.send(key=key, value=record, partition=issues_partition))
    if not acks:
        await _write(acks, outs, partition)
        return
    send_now(app.producer._ensure_producer())  # type: ignore[attr-defined]  # (waited for: no linger)
    if wait:
        await _write(acks, outs, partition)
        return
    # (A task copies the current event's context: the writes go to this partition's changelog.)
    task = asyncio.ensure_future(_write_when_acknowledged(event, acks, outs, partition))
    _settling[partition] = task
    writer.hold(task)


# Per partition: its last record's states, written once its issue events are acknowledged (``_settle``).
_settling: dict[int, asyncio.Future[None]] = {}


async def _write_when_acknowledged(
    event: EventT, acks: list[Awaitable[Any]], outs: Iterable[Output], partition: int
) -> None:
    try:
        await _write(acks, outs, partition)
    except Exception as exc:  # noqa: BLE001 - e.g. an issue event the broker refused
        await _reject(event, exc)


async def _write(acks: list[Awaitable[Any]], outs: Iterable[Output], partition: int) -> None:
    """Once ``acks`` are in: the staged states and index of ``partition``, then the rest of ``outs``:
    index removals, milestones, deliveries."""
    if acks:
        await asyncio.gather(*acks)
    staged_states.flush(partition)
    staged_index.flush(partition)
    deliveries: list[tuple[str, bytes]] = []
    for out in outs:
        if out.index_removals:
            _remove_after_acknowledged(partition, out)
        for shop, shipped_at, picked_up_at in out.milestones:
            if picked_up_at is None:
                metrics.observe_shipment(shop)
            else:
                metrics.observe_pickup(shop, shipped_at, picked_up_at)
        deliveries.extend((delivery["carrier"], orjson.dumps(delivery)) for delivery in out.deliveries)
    # A record's deliveries as one record per partition (a batch record when several), as issue events:
    # one Faust send each cost the parcel agent about as much as the rules of an event.
    for key, deliveries_partition, record in keyed_records(deliveries, _cfg.partitions):
        await deliveries_topic.send(key=key, value=record, partition=deliveries_partition)


# A sweep's index removals (its swept buckets, the new cursor) per partition, with the wait for the
# acknowledgement of every state and index write made up to the sweep's end (``_remove_after_acknowledged``).
_swept: dict[int, tuple[asyncio.Future[None], Output]] = {}


def _remove_after_acknowledged(partition: int, out: Output) -> None:
    """A sweep's removals go last: only once its re-filings and states are acknowledged can the swept
    buckets and the old cursor go without risking a subject that is filed nowhere. The agent used to wait
    for that here: 21-131 ms of idle a sweep on the embedded broker, one partition after the other. Now
    the wait runs while the agent goes on with other partitions' records, and the next record of this
    partition (each gets a tick every interval) removes them first (``_remove_swept``). Nothing writes the
    partition's index keys in between, so the removals, computed from the index as the sweep left it,
    still hold. A crash or a rebalance meanwhile drops them: the buckets are swept again, which finds
    nothing new (what a crash part-way through a sweep already leaves)."""
    acked = asyncio.ensure_future(writer.wait_acked(parcel_state, deadline_index))
    acked.add_done_callback(_retrieved)
    # Only the removals are kept (not the sweep's issue events, sent already).
    _swept[partition] = (acked, Output(index_removals=out.index_removals))


def _retrieved(done: asyncio.Future[None]) -> None:
    """Read a dropped wait's failure (a failed write is already recorded by the send-failure guard)."""
    if not done.cancelled():
        done.exception()


async def _remove_swept(event: EventT) -> None:
    """Before a record of a partition with a sweep's removals waiting: make them, once acknowledged."""
    acked, out = _swept.pop(event.message.partition)
    try:
        await acked
        processor.apply_index_removals(out)
        staged_index.flush()
    except Exception:  # the buckets stay (swept again); the record still goes through
        staged_index.discard()
        log.exception("the swept buckets of partition %s stay: the sweep's writes were not acknowledged",
                      event.message.partition)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]  # (mode types the sender positional-only)
def _forget_swept(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    """Never write the index of a partition this worker may no longer hold (nor may hold again with what
    another worker wrote meanwhile): its waiting removals go, and its buckets are swept again. (``args``:
    the revoked topic partitions, as the signal sends them.)"""
    revoked: set[TopicPartition] = args[0]
    for tp in revoked:
        pending = _swept.pop(tp.partition, None)
        if pending is not None:
            pending[0].cancel()


@app.agent(parcel_inputs)
async def parcel_agent(stream: StreamT[bytes]) -> None:
    async for event in stream.events():
        partition = event.message.partition
        settling = _settling.pop(partition, None)
        if settling is not None and not settling.done():  # the partition's last record still writing its states
            await asyncio.wait((settling,))  # (it handles its own failure)
        staged_states.select(partition)
        staged_index.select(partition)
        if partition in _swept:
            await _remove_swept(event)
        if event.message.topic != T.ticks and is_batch(event.value):
            await _process_batch(event)
        else:
            await _process_record(event)


async def _process_record(event: EventT) -> None:
    msg = event.message
    started = time.perf_counter()
    topic = msg.topic
    # One bad event must never kill the agent: everything per event is inside this try.
    try:
        raw: bytes = event.value
        partition = msg.partition
        if topic == T.tracking:
            await _emit(event, _on_tracking(parse_tracking_update(raw), partition, msg.timestamp, started), partition)
        elif topic == T.order_facts:
            mark = decode_watermark(raw)
            if mark is not None:  # the order router's progress through a backlog (clock.py)
                catch_up.observe(f"orders:{mark[0]}", partition, mark[1], time.time(), hold=WATERMARK_HOLD_SECONDS)
                metrics.observe_event(topic, "watermark", None, time.perf_counter() - started)
                return
            await _emit(event, _on_order_facts(*decode_order_facts(raw), partition, msg.timestamp, started), partition)
        else:  # ticks
            wall = float(orjson.loads(raw)["now"])  # the leader's clock when it sent the tick
            now = min(wall, catch_up.now(partition, time.time()))
            out = processor.on_tick(partition, now, wall)
            seconds = time.perf_counter() - started
            await _emit(event, out, partition, wait=True)
            # Counted once done: its issue events acknowledged, its states written.
            metrics.observe_sweep(partition, seconds, out.due, now, processor, out.purged)
    except Exception as exc:  # noqa: BLE001 - one bad event must never kill the agent
        await _reject(event, exc)


async def _process_batch(event: EventT) -> None:
    """A batch record (batching.py): each element processed as if it had come alone, except that the
    record waits once, at its end, for the broker to acknowledge the issue events of all its elements
    before their states are written (one wait of a few milliseconds per record, not one per element
    that opened or ended an issue). Later elements read the states earlier ones staged."""
    msg = event.message
    topic = msg.topic
    partition = msg.partition
    try:
        elements = decode_batch(event.value)
    except InvalidEvent as exc:
        await _reject(event, exc)
        return
    acks: list[Awaitable[Any]] = []
    outs: list[Output] = []
    issues: list[tuple[str, bytes]] = []
    for i, element in enumerate(elements):
        started = time.perf_counter()
        staged_states.mark()
        staged_index.mark()
        try:
            if not isinstance(element, dict):
                raise InvalidEvent("$", f"a batch element must be a JSON object, got {type(element).__name__}")
            if topic == T.tracking:
                update = parse_tracking_update(element)
                key = update.parcel_key
                assert key is not None  # carrier and tracking number are required
                if partition_for(key, _cfg.partitions) != partition:
                    await _reroute(tracking_topic, key, element, msg.timestamp, topic, started)
                    continue
                out = _on_tracking(update, partition, msg.timestamp, started)
            else:
                subject, facts, at = order_facts_from_doc(element)
                if partition_for(subject, _cfg.partitions) != partition:
                    await _reroute(order_facts_topic, subject, element, msg.timestamp, topic, started)
                    continue
                out = _on_order_facts(subject, facts, at, partition, msg.timestamp, started)
            acks.extend(await _send(out, issues))
            outs.append(out)
        except Exception as exc:  # noqa: BLE001 - nor one bad element the rest of its record
            # Only this element's staged writes go; the elements before it stand.
            staged_states.rollback()
            staged_index.rollback()
            await _reject(event, exc, (i, element), discard=False)
    try:
        await _settle(event, acks, outs, issues, partition)
    except Exception as exc:  # noqa: BLE001 - e.g. an issue event the broker refused
        await _reject(event, exc)


def _on_tracking(update: TrackingUpdate, partition: int, arrived: float, started: float) -> Output:
    wall = time.time()
    now = catch_up.observe(T.tracking, partition, arrived, wall)
    out = processor.on_tracking(partition, update, now, wall)
    # (An expired scan's lag of a month or more would only skew the lag histogram.)
    metrics.observe_event(T.tracking, "expired" if out.expired else "ok",
                          None if out.expired else wall - update.event_time, time.perf_counter() - started)
    return out


def _on_order_facts(
    subject: str, facts: OrderFacts, at: float, partition: int, arrived: float, started: float
) -> Output:
    wall = time.time()
    now = catch_up.observe(T.order_facts, partition, arrived, wall)
    out = processor.on_order_facts(partition, subject, facts, at, now, wall)
    metrics.observe_event(T.order_facts, "expired" if out.expired else "ok", None, time.perf_counter() - started)
    return out


async def _reroute(topic: TopicT, key: str, element: dict[str, Any], arrived: float, source: str,
                   started: float) -> None:
    """A batch element that hashes to another partition (a producer that batched it wrongly) is sent
    on, alone and keyed, to the partition that holds its subject's state: never lost, never split."""
    await topic.send(key=key, value=orjson.dumps(element), timestamp=arrived)
    metrics.observe_event(source, "rerouted", None, time.perf_counter() - started)


async def _reject(event: EventT, exc: Exception, element: tuple[int, Any] | None = None, discard: bool = True) -> None:
    """Dead-letter a bad event (or one bad element of a batch record) with its reason; nothing it
    staged is written (``discard``: drop every staged write; False: the caller dropped the element's)."""
    if discard:
        staged_states.discard(event.message.partition)
        staged_index.discard(event.message.partition)
    msg = event.message
    if isinstance(exc, InvalidEvent):
        reason = await dead_letter(event, exc, element)
        metrics.observe_invalid(msg.topic, reason)
    else:
        log.exception("failed to process %s[%s]@%s%s", msg.topic, msg.partition, msg.offset,
                      "" if element is None else f" element {element[0]}")
        await dead_letter(event, exc, element)
        metrics.observe_invalid(msg.topic, "processing_error")


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
                            _add_deliveries(m.value)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lane baseline feed failed; retrying")
                await self.sleep(2)
            finally:
                await stop_consumer(consumer)


def _add_deliveries(raw: bytes | None) -> int:
    """The deliveries of one record (one, or a batch record's elements) into the lane baselines; a
    malformed one is skipped alone (this worker wrote them: a bad one is a bug to log, not input to
    dead-letter). Returns how many were added."""
    try:
        elements = record_events(raw)
    except InvalidEvent:
        log.warning("skipped a malformed deliveries record")
        return 0
    added = 0
    for d in elements:
        try:
            baselines.add_delivery(
                d["carrier"], d.get("origin_province"), d.get("destination_province"),
                float(d["picked_up_at"]), float(d["signed_at"]),
            )
            metrics.observe_delivery(d)
            added += 1
        except (AttributeError, KeyError, TypeError, ValueError):
            log.warning("skipped a malformed delivery")
    return added


__all__ = ["baselines", "parcel_agent", "parse_time", "processor", "tick"]
