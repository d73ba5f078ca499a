"""The parcel agent: tracking updates, order facts and ticks in; parcel state, issues and deliveries out.

One agent consumes the three co-partitioned inputs so that every table write happens in the context of
an event of the right partition (Faust writes a table's changelog to the current event's partition;
timers cannot write tables, so the leader's timer turns wall-clock time into tick events instead). Each
record follows the commit order of ``delivery/checkpoint.py``: begin, stage, send, acknowledged, write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, EventT, StreamT, TopicT
from mode import Service

from core.clock import WATERMARK_HOLD_SECONDS, CatchUpClock, decode_watermark
from core.orders import decode_order_facts, encode_gone, order_facts_from_doc
from core.processor import Output, Processor
from delivery.batch_records import decode_batch, is_batch, keyed_records, partition_for, record_events
from delivery.clients import stop_consumer, topic_partitions
from delivery.framework import aiokafka_consumer, committed_offsets, fetched_highwater
from delivery.redelivery import SeenLately
from domain.events import InvalidEvent, TrackingUpdate, check_not_ahead, parse_tracking_update
from domain.state import OrderFacts

from . import Agent

if TYPE_CHECKING:
    from . import StreamApp

log = logging.getLogger("parcelwatch.parcels")
# Deliveries remembered to recognise one sent again after a crash: many minutes of a busy deployment's.
RECENT_DELIVERIES = 50_000


class ParcelAgent(Agent):
    """The parcel agent, the tick timer and the lane baselines' feed of one worker."""

    def __init__(self, stream: StreamApp) -> None:
        super().__init__(stream)
        app = self.app
        self.checkpoint = stream.checkpoint
        self.states = self.checkpoint.staged(self.topics.parcel_state)
        self.index = self.checkpoint.staged(self.topics.deadline_index)
        # A new index epoch for every worker process: filings made by an earlier process (which may have died
        # between its state and index writes) are re-checked instead of trusted (see core/processor.py).
        self.processor = Processor(stream.settings, stream.baselines, self.states, self.index, stream.notification_rules,
                                   epoch=secrets.randbits(31) | 1, defer_index_removals=True)
        cfg = stream.settings.app
        self.future_tolerance = cfg.future_event_tolerance_seconds
        # The next offset to process of each input topic partition (what the clock asks: do records wait?).
        self._next_offset: dict[TP, int] = {}
        # While a record is processed: what ``_records_waiting`` answered for it. The clock asks for every event,
        # and a batch record's elements all get the answer its first one got: as if processed at once.
        self._waiting_memo: dict[tuple[str, int], bool] | None = None
        # While a partition works through records that arrived long ago, its detectors and sweeps run at their
        # arrival time instead of the wall clock (core/clock.py): no spurious open/resolve pairs after an
        # outage. Every partition hears from its tracking and from each order-router partition before its
        # clock moves; none has a clock before its backlog's first record.
        self.catch_up = CatchUpClock(cfg.catch_up_after_seconds, quiet_seconds=max(10.0, 2 * cfg.tick_interval_seconds),
                                     started_at=time.time(),
                                     expected=[self.names.tracking, *(f"orders:{q}" for q in range(self.partitions))],
                                     local=[self.names.tracking, self.names.order_facts], waiting=self._records_waiting)
        self.recorder.read_at_scrape(catching_up=lambda: len(self.catch_up.lagging_partitions(time.time())))
        app.agent(self.topics.parcel_inputs, name="parcel_agent")(self.run)
        app.timer(interval=cfg.tick_interval_seconds, on_leader=True, name="tick")(self.tick)
        self.checkpoint.best_effort.add(self.names.ticks)  # (a tick that failed to send: the next one comes)
        self._deliveries_seen = SeenLately(RECENT_DELIVERIES)  # (parcel, signature time) of deliveries read
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]  # (mode types the sender positional-only)
        self.feed = LaneBaselineFeed(self)
        app.service(self.feed)  # type: ignore[arg-type]  # (an instance is started as it is)

    # -- the agent --------------------------------------------------------------------------------------------

    async def run(self, stream: StreamT[bytes]) -> None:
        # Nothing is judged on part of the lanes' history (see ``LaneBaselineFeed``): the records wait in
        # their topics meanwhile, and the catch-up clock judges them at their arrival.
        await self.feed.ready.wait()
        next_offset = self._next_offset
        checkpoint = self.checkpoint
        async for event in stream.events():
            msg = event.message
            next_offset[msg.tp] = msg.offset + 1
            await checkpoint.begin(msg.partition)  # (the partition's previous record written, or failed)
            if checkpoint.stopped:
                continue  # processed again once the worker has started again (``Checkpoint.stopped``)
            self._waiting_memo = {}
            try:
                if msg.topic != self.names.ticks and is_batch(event.value):
                    await self._process_batch(event)
                else:
                    await self._process_record(event)
            finally:
                self._waiting_memo = None

    async def tick(self) -> None:
        """Turn wall-clock time into one tick per partition (the sweep runs in the parcel agent)."""
        value = orjson.dumps({"now": time.time()})
        for partition in range(self.partitions):
            await self.topics.ticks.send(key="tick", value=value, partition=partition)

    def _on_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """(``args``: the revoked topic partitions, as the signal sends them.)"""
        revoked: set[TopicPartition] = args[0]
        self.checkpoint.forget(tp.partition for tp in revoked)
        self.catch_up.forget({tp.partition for tp in revoked if tp.topic in self.catch_up.local})
        for tp in revoked:
            self._next_offset.pop(TP(tp.topic, tp.partition), None)

    def _records_waiting(self, topic: str, partition: int) -> bool:
        """Whether records of ``topic`` (an input of the parcel state) on ``partition`` wait to be processed
        here, as far as the consumer's last fetch knows (True while it cannot tell: nothing fetched yet)."""
        memo = self._waiting_memo
        if memo is not None:
            known = memo.get((topic, partition))
            if known is None:
                known = memo[(topic, partition)] = self._records_waiting_now(topic, partition)
            return known
        return self._records_waiting_now(topic, partition)

    def _records_waiting_now(self, topic: str, partition: int) -> bool:
        tp = TP(topic, partition)
        try:
            highwater = fetched_highwater(aiokafka_consumer(self.app), tp)
        except AssertionError:  # (aiokafka's: not assigned here, e.g. a record still in flight after a rebalance)
            return True
        if highwater is None:  # (nothing fetched yet, or the broker has not answered lately)
            return True
        next_offset = self._next_offset.get(tp)
        if next_offset is None:
            next_offset = committed_offsets(self.app).get(tp) or 0  # (where the consumer started)
        return next_offset < highwater

    async def _process_record(self, event: EventT) -> None:
        msg = event.message
        started = time.perf_counter()
        topic = msg.topic
        names = self.names
        # One bad event must never kill the agent: everything per event is inside this try.
        try:
            raw: bytes = event.value
            partition = msg.partition
            if topic == names.tracking:
                update = parse_tracking_update(raw)
                if partition_for(update.parcel_key, self.partitions) != partition:
                    await self._reroute(self.topics.tracking, update.parcel_key, raw, msg.timestamp, topic, started)
                    return
                out = self._on_tracking(update, partition, msg.timestamp, started)
                await self._emit(event, await self._send_notices(out), [out], self._encode(out), partition)
            elif topic == names.order_facts:
                mark = decode_watermark(raw)
                if mark is not None:  # the order router's progress through a backlog (core/clock.py)
                    self.catch_up.observe(f"orders:{mark[0]}", partition, mark[1], time.time(), hold=WATERMARK_HOLD_SECONDS,
                                          progress=True)
                    self.recorder.observe_event(topic, "watermark", None, time.perf_counter() - started)
                    return
                subject, facts, at = decode_order_facts(raw)
                if partition_for(subject, self.partitions) != partition:
                    await self._reroute(self.topics.order_facts, subject, raw, msg.timestamp, topic, started)
                    return
                out = self._on_order_facts(subject, facts, at, partition, msg.timestamp, started)
                await self._emit(event, await self._send_notices(out), [out], self._encode(out), partition)
            else:  # ticks
                wall = float(orjson.loads(raw)["now"])  # the leader's clock when it sent the tick
                clock = self.catch_up.now(partition, time.time())
                if clock is None:  # its backlog's time is not known yet: sweeping now would run ahead of it
                    return
                now = min(wall, clock)
                out = self.processor.on_tick(partition, now, wall)
                seconds = time.perf_counter() - started
                await self._emit(event, await self._send_notices(out), [out], self._encode(out), partition, wait=True)
                # Counted once done: its issue events acknowledged, its states written.
                self.recorder.observe_sweep(seconds, out.due, now, out.purged)
        except Exception as exc:  # noqa: BLE001 - one bad event must never kill the agent
            await self._reject(event, exc)

    async def _process_batch(self, event: EventT) -> None:
        """A batch record (delivery/batch_records.py): each element processed as if it had come alone, except
        that the record waits once, at its end, for the broker to acknowledge the sends of all its elements
        before their states are written. Later elements read the states earlier ones staged."""
        msg = event.message
        topic = msg.topic
        partition = msg.partition
        try:
            elements = decode_batch(event.value)
        except InvalidEvent as exc:
            await self._reject(event, exc)
            return
        acks: list[Awaitable[Any]] = []
        outs: list[Output] = []
        issues: list[tuple[str, bytes]] = []
        for i, element in enumerate(elements):
            started = time.perf_counter()
            self.states.mark()
            self.index.mark()
            try:
                if not isinstance(element, dict):
                    raise InvalidEvent("$", f"a batch element must be a JSON object, got {type(element).__name__}")
                if topic == self.names.tracking:
                    update = parse_tracking_update(element)
                    key = update.parcel_key
                    if partition_for(key, self.partitions) != partition:
                        await self._reroute(self.topics.tracking, key, orjson.dumps(element), msg.timestamp, topic, started)
                        continue
                    out = self._on_tracking(update, partition, msg.timestamp, started)
                else:
                    subject, facts, at = order_facts_from_doc(element)
                    if partition_for(subject, self.partitions) != partition:
                        await self._reroute(self.topics.order_facts, subject, orjson.dumps(element), msg.timestamp, topic,
                                            started)
                        continue
                    out = self._on_order_facts(subject, facts, at, partition, msg.timestamp, started)
                acks.extend(await self._send_notices(out))
                issues.extend(self._encode(out))
                outs.append(out)
            except Exception as exc:  # noqa: BLE001 - nor one bad element the rest of its record
                # Only this element's staged writes go; the elements before it stand.
                self.states.rollback()
                self.index.rollback()
                await self._reject(event, exc, (i, element), discard=False)
        try:
            await self._emit(event, acks, outs, issues, partition)
        except Exception as exc:  # noqa: BLE001 - e.g. an issue event the broker refused
            await self._reject(event, exc)

    def _on_tracking(self, update: TrackingUpdate, partition: int, arrived: float, started: float) -> Output:
        wall = time.time()
        # Ahead of its arrival (not of the wall clock: a record processed again after a restart is judged
        # the same way), or of now when it has no timestamp.
        check_not_ahead(update.event_time, wall if arrived is None else min(arrived, wall), self.future_tolerance)
        catch_up = self.catch_up
        clock = catch_up.observe(self.names.tracking, partition, arrived, wall)
        now = catch_up.event_now(partition, self.names.tracking, clock, update.event_time, wall)
        out = self.processor.on_tracking(partition, update, now, wall)
        # (An expired scan's lag of a month or more would only skew the lag histogram.)
        self.recorder.observe_event(self.names.tracking, "expired" if out.expired else "ok",
                                    None if out.expired else wall - update.event_time, time.perf_counter() - started)
        return out

    def _on_order_facts(self, subject: str, facts: OrderFacts, at: float, partition: int, arrived: float,
                        started: float) -> Output:
        wall = time.time()
        catch_up = self.catch_up
        clock = catch_up.observe(self.names.order_facts, partition, arrived, wall)
        now = catch_up.event_now(partition, self.names.order_facts, clock, at, wall)
        out = self.processor.on_order_facts(partition, subject, facts, at, now, wall)
        self.recorder.observe_event(self.names.order_facts, "expired" if out.expired else "ok", None,
                                    time.perf_counter() - started)
        return out

    # -- send, acknowledged, write (delivery/checkpoint.py) ------------------------------------------------------

    def _encode(self, out: Output) -> list[tuple[str, bytes]]:
        """The issue events of ``out``, keyed by subject and encoded (counted as they are)."""
        for issue in out.issues:
            self.recorder.on_issue_event(issue)
        return [(issue["subject"], orjson.dumps(issue)) for issue in out.issues]

    async def _send_notices(self, out: Output) -> list[Awaitable[Any]]:
        """Send the buyer notifications and deletion notices of ``out`` (step 3); their acknowledgements."""
        topics = self.topics
        acks: list[Awaitable[Any]] = []
        for note in out.notifications:
            acks.append(await topics.notifications.send(key=note["parcel"], value=orjson.dumps(note)))
            self.recorder.on_notification(note)
        for order_id, subject in out.gone:
            # Before the tombstone too: a crash in between deletes the subject again and repeats the notice
            # (which the router takes twice without harm) instead of leaving the order's facts for ever.
            acks.append(await topics.order_purges.send(key=order_id, value=encode_gone(order_id, subject)))
        return acks

    async def _emit(self, event: EventT, acks: list[Awaitable[Any]], outs: list[Output], issues: list[tuple[str, bytes]],
                    partition: int, *, wait: bool = False) -> None:
        """Send a record's issue events (step 3) as one record per partition (a batch record when several:
        each sent alone cost four Faust messages); its staged writes follow once these and ``acks`` are
        acknowledged (steps 4-5)."""
        for key, issues_partition, record in keyed_records(issues, self.partitions):
            acks.append(await self.topics.issues.send(key=key, value=record, partition=issues_partition))

        async def write() -> None:
            await self._write(outs, partition)

        async def on_failure(exc: Exception) -> None:
            await self._reject(event, exc)

        await self.checkpoint.settle(partition, acks, write, on_failure, wait=wait)

    async def _write(self, outs: list[Output], partition: int) -> None:
        """Step 5: the deliveries and milestones of ``outs``, then the staged states and index of ``partition``
        and a sweep's index removals (step 6, once these writes are acknowledged).

        Deliveries and milestones are sent first and not waited for: waiting, as for issue events, would
        stall the partition's next record after nearly every record. The changelog batch holding the
        state that says they were sent goes out only once they are acknowledged (``Checkpoint`` step 9).
        A copy sent again after a crash is recognised by their readers (``delivery/redelivery.py``, the
        shops' health)."""
        deliveries: list[tuple[str, bytes]] = []
        milestones: list[tuple[str, bytes]] = []
        for out in outs:
            for shop, shipped_at, picked_up_at in out.milestones:
                if picked_up_at is None:
                    self.recorder.observe_shipment(shop)
                else:
                    self.recorder.observe_pickup(shop, shipped_at, picked_up_at)
            for delivery in out.deliveries:
                self.recorder.observe_delivery(delivery)
                deliveries.append((delivery["carrier"], orjson.dumps(delivery)))
            milestones.extend((m["parcel"], orjson.dumps(m)) for m in out.logistics)
        # One record per partition (a batch record when several), as issue events; the milestones are read
        # by the shops' logistics health (agents/shop_health.py).
        for key, deliveries_partition, record in keyed_records(deliveries, self.partitions):
            await self.topics.deliveries.send(key=key, value=record, partition=deliveries_partition)
        for key, milestones_partition, record in keyed_records(milestones, self.partitions):
            await self.topics.shop_logistics.send(key=key, value=record, partition=milestones_partition)
        self.checkpoint.write_staged(partition)
        for out in outs:
            if out.index_removals:
                removals = Output(index_removals=out.index_removals)  # (not the sweep's issue events: sent)
                self.checkpoint.remove_after_acknowledged(partition, functools.partial(self._remove, removals, partition))

    def _remove(self, removals: Output, partition: int) -> None:
        self.processor.apply_index_removals(removals)
        self.index.flush(partition)

    async def _reroute(self, topic: TopicT, key: str, value: bytes, arrived: float, source: str,
                       started: float) -> None:
        """An event that hashes to another partition (a batch element batched wrongly, a record keyed by
        something else or sent to a partition of the producer's choosing) is sent on, alone and keyed, to the
        partition that holds its subject's state: never lost, never split. (Acknowledged before the record's
        offset can be committed: a failed send stops every commit, ``delivery/checkpoint.py``.)"""
        await topic.send(key=key, value=value, timestamp=arrived)
        self.recorder.observe_event(source, "rerouted", None, time.perf_counter() - started)

    async def _reject(self, event: EventT, exc: Exception, element: tuple[int, Any] | None = None,
                      discard: bool = True) -> None:
        """Dead-letter a bad event (or one bad element of a batch record) with its reason; nothing it staged
        is written (``discard``: drop every staged write; False: the caller dropped the element's)."""
        if discard:
            self.checkpoint.discard_staged(event.message.partition)
        await self.stream.dead_letters.reject(event, exc, element)

    # -- the lane baselines' input ------------------------------------------------------------------------------

    def add_deliveries(self, raw: bytes | None) -> int:
        """The deliveries of one record (one, or a batch record's elements) into the lane baselines; a
        malformed one is skipped alone (this worker wrote them: a bad one is a bug to log, not input to
        dead-letter), and so is a parcel's delivery read lately (a copy sent again after a crash). Returns
        how many were added."""
        try:
            elements = record_events(raw)
        except InvalidEvent:
            log.warning("skipped a malformed deliveries record")
            return 0
        added = 0
        for d in elements:
            try:
                if isinstance(d, dict) and "parcel" in d and not self._deliveries_seen.first_time((d["parcel"], d["signed_at"])):
                    continue  # sent again (see ``_write``)
                self.stream.baselines.add_record(d)
                self.recorder.observe_lane_sample(d)
                added += 1
            except (AttributeError, KeyError, TypeError, ValueError):
                log.warning("skipped a malformed delivery")
        return added


class LaneBaselineFeed(Service):
    """Feeds the lane baselines from ALL partitions of the deliveries topic, on every worker, so every
    worker gives the same baseline for a lane whichever partition a parcel is on.

    A starting worker's baselines are empty, and the feed reads the topic oldest first: on part of it a lane
    that has slowed down lately (its newest deliveries, read last) still looks fast, and a transit issue
    raised on that limit stays (a rising baseline never ends it). So the parcel agent waits for ``ready``:
    every delivery that was on the topic when the feed started has been read. (Taking answers meanwhile
    would also re-learn the shared levels after every delivery read: each is signed before the refresh
    in force.)"""

    def __init__(self, parcels: ParcelAgent) -> None:
        super().__init__()
        self.parcels = parcels
        self.ready = asyncio.Event()
        # Until ready: each partition's end offset when the feed started, for those not read up to it yet.
        self.unread: dict[TopicPartition, int] | None = None
        self._began = 0.0  # (monotonic: when those offsets were taken)

    async def _read_up(self, consumer: AIOKafkaConsumer) -> None:
        """Set ``ready`` once the consumer's position reached every partition's end offset at the start."""
        unread = self.unread
        assert unread is not None
        for tp, end in list(unread.items()):
            if await consumer.position(tp) >= end:
                del unread[tp]
        if not unread:
            self.ready.set()
            log.info("lane baselines ready: %d deliveries read in %.1f s", self.parcels.stream.baselines.deliveries,
                     time.monotonic() - self._began)

    @Service.task
    async def _feed(self) -> None:
        settings = self.parcels.stream.settings
        bootstrap = settings.app.bootstrap_servers
        topic = settings.topics.deliveries
        # The next offset to read of each partition: a feed that failed goes on from there, not from the
        # beginning (read twice, every delivery would count twice).
        positions: dict[TopicPartition, int] = {}
        while not self.should_stop:
            # (An offset past the end, a broker that came back empty, reads the partition from its start.)
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                        auto_offset_reset="earliest")
            try:
                await consumer.start()
                partitions = await topic_partitions(consumer, topic)
                if not partitions:
                    if not self.ready.is_set():
                        self._began, self.unread = time.monotonic(), {}
                        await self._read_up(consumer)  # nothing to read
                    await self.sleep(2)  # no delivery yet (the topic is created by the first one)
                    continue
                tps = [TopicPartition(topic, p) for p in sorted(partitions)]
                consumer.assign(tps)
                unread = [tp for tp in tps if tp not in positions]
                if unread:  # (with none, aiokafka would seek every partition)
                    await consumer.seek_to_beginning(*unread)
                for tp in tps:
                    if tp in positions:
                        consumer.seek(tp, positions[tp])
                if not self.ready.is_set():
                    if self.unread is None:
                        self._began = time.monotonic()
                        ends = await consumer.end_offsets(tps)
                        self.unread = {tp: end for tp, end in ends.items() if end > 0}
                        log.info("reading the deliveries topic up to its end offsets (%d in all) before judging anything",
                                 sum(self.unread.values()))
                    await self._read_up(consumer)
                while not self.should_stop:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for tp, msgs in batch.items():
                        for m in msgs:
                            self.parcels.add_deliveries(m.value)
                            positions[tp] = m.offset + 1
                    if not self.ready.is_set():
                        await self._read_up(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lane baseline feed failed; retrying")
                await self.sleep(2)
            finally:
                await stop_consumer(consumer)
