"""The order router agent: order events (keyed by order id) → merged order facts → one snapshot per subject.

The logic is ``core/orders.py``'s ``OrderRouter``; this agent feeds it order events and the parcel side's
deletion notices, and sends the snapshots on the co-partitioned order-facts topic, with the watermarks that
let a parcel partition catching up on a backlog know how far routing got (``core/clock.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from faust.types import TP, EventT, Message, StreamT

from core.clock import encode_watermark
from core.orders import OrderRouter, decode_gone
from delivery.batch_records import MAX_BATCH_EVENTS, decode_batch, is_batch, keyed_records, partition_for
from delivery.framework import aiokafka_consumer, committed_offsets, fetched_highwater, note_send_failure, records_queued
from delivery.staging import StagedWrites
from domain.events import InvalidEvent, check_not_ahead, parse_order_event

from . import Agent

if TYPE_CHECKING:
    from . import StreamApp

log = logging.getLogger("parcelwatch.orders")
WATERMARK_EVERY_SECONDS = 0.5
# An orders partition is declared caught up (a watermark at the wall clock) once it has routed everything it
# holds and nothing new came for this long: a producer still sending events that arrived long ago (a backfill,
# a replay of history) keeps it behind, and its watermarks keep saying how far it got.
CAUGHT_UP_QUIET_SECONDS = 10.0
# Order facts wait for the order events queued behind theirs, up to this many records (and a full batch record's
# worth per parcel partition): they go out together, one record per parcel partition, once the stream has nothing
# more queued. Sent per order event, they cost the parcel agent about one Faust record per order event.
HOLD_RECORDS = 200


class OrderRouterAgent(Agent):
    def __init__(self, stream: StreamApp) -> None:
        super().__init__(stream)
        app = self.app
        self.catch_up_after = stream.settings.app.catch_up_after_seconds
        self.future_tolerance = stream.settings.app.future_event_tolerance_seconds
        # The router writes at once, event by event: nothing it writes waits for an acknowledgement (its
        # order facts are sent without waiting; a failed send stops every commit, delivery/checkpoint.py).
        self.orders = StagedWrites(self.topics.order_table, stream.checkpoint.writer)
        self.router = OrderRouter(self.orders)
        self._watermark_sent: dict[int, float] = {}  # orders partition -> wall clock of its last watermark
        self._routed: dict[int, int] = {}  # orders partition -> offset of the last order event routed
        self._routed_at: dict[int, float] = {}  # orders partition -> wall clock when it routed the last one
        # Orders partitions that have not said they caught up: those that sent behind watermarks, and every one
        # newly assigned here (what an earlier owner left standing is unknown: see _on_assigned).
        self._lagging: set[int] = set()
        # Records routed whose order facts are not sent yet (``_send_held``), and those facts: a record is
        # acknowledged to Faust (its offset committable) only once its facts are sent.
        self._held: list[EventT] = []
        self._facts: list[tuple[str, bytes]] = []
        self._facts_arrived: dict[int, float] = {}  # parcel partition -> earliest arrival among the facts held for it
        self._stream: StreamT[bytes] | None = None
        # Held while a record is routed: what is held is sent between records only.
        self._routing = asyncio.Lock()
        self._hold_facts = MAX_BATCH_EVENTS * self.partitions  # (batch records of order events hold many each)
        stream.checkpoint.add_holder(self.send_held)
        app.agent(self.topics.order_inputs, name="order_router")(self.run)
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]  # (as below)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]  # (mode types the sender positional-only)
        app.timer(interval=WATERMARK_EVERY_SECONDS, name="caught_up_watermarks")(self.caught_up_watermarks)

    async def run(self, stream: StreamT[bytes]) -> None:
        stream.enable_acks = False  # (acknowledged in ``_send_held``, once their facts are sent)
        self._stream = stream
        async for event in stream.events():
            async with self._routing:
                if self.stream.checkpoint.stopped:  # routed again once the worker has started again
                    await stream.ack(event)  # (nothing to wait for: a stop or rebalance waits for every record taken)
                    continue
                msg = event.message
                if msg.topic == self.names.order_purges:
                    await self._forget(event)
                elif is_batch(event.value):
                    try:
                        elements = decode_batch(event.value)
                    except InvalidEvent as exc:
                        elements = []
                        await self._reject(event, exc)
                    for i, element in enumerate(elements):
                        await self._route(event, element, (i, element))
                else:
                    await self._route(event, event.value, None)
                self._held.append(event)
                if (len(self._held) >= HOLD_RECORDS or len(self._facts) >= self._hold_facts
                        or not records_queued(stream)):
                    await self._send_held()

    async def send_held(self) -> None:
        """Send what is held, between records. Called before Faust waits for its streams to acknowledge every
        record they took (a rebalance, a stop): it cleared their queues, so no next record would send it."""
        async with self._routing:
            if self._held:
                await self._send_held()

    async def _send_held(self) -> None:
        """Send the order facts of the held records, one record per parcel partition (a batch record when it
        carries several), then the watermarks that say how far routing got; then acknowledge the records."""
        held, facts, arrived = self._held, self._facts, self._facts_arrived
        self._held, self._facts, self._facts_arrived = [], [], {}
        last: dict[int, Message] = {}  # orders partition -> its last record held (routed or dead-lettered)
        for event in held:
            if event.message.topic == self.names.orders:
                last[event.message.partition] = event.message
        try:
            # The order events' arrival time travels with their facts, so that the parcel agent's catch-up clock
            # sees a backlog of old order events as old. A record carries the earliest arrival among its facts: the
            # parcel partition's clock may then run behind by the records held together, never ahead of one.
            for key, partition, record in keyed_records(facts, self.partitions):
                await self.topics.order_facts.send(key=key, value=record, partition=partition,
                                                   timestamp=arrived.get(partition))
            for source_partition, msg in last.items():
                await self._send_watermark(source_partition, msg.timestamp, time.time())
        except Exception as exc:
            log.exception("failed to send the order facts of %d records", len(held))
            note_send_failure(self.app, f"{self.names.order_facts}: {type(exc).__name__}: {exc}")
        # Routed or dead-lettered: either way done with. Only now, after their facts were sent: the sends await,
        # and a caught-up watermark sent meanwhile would pass the facts still to come.
        now = time.time()
        for source_partition, msg in last.items():
            self._routed[source_partition] = msg.offset
            self._routed_at[source_partition] = now
        if self._stream is not None:
            for event in held:
                await self._stream.ack(event)

    async def _route(self, event: EventT, value: Any, element: tuple[int, Any] | None) -> None:
        """Merge one order event into its order's facts; its snapshots are held to be sent (``_send_held``)."""
        started = time.perf_counter()
        started_wall = time.time()
        try:
            if element is not None and not isinstance(value, dict):
                raise InvalidEvent("$", f"a batch element must be a JSON object, got {type(value).__name__}")
            ev = parse_order_event(value)
            arrived = event.message.timestamp
            check_not_ahead(ev.event_time, started_wall if arrived is None else min(arrived, started_wall),
                            self.future_tolerance)
            if element is None and event.key is not None and event.key != ev.order_id:
                raise InvalidEvent("order_id", "does not match the record key")
            if partition_for(ev.order_id, self.partitions) != event.message.partition:
                # On another order's partition (batched wrongly, or keyed by something else): re-sent alone, keyed,
                # to its own, where its order's facts are kept (never merged into a second copy here).
                raw = orjson.dumps(value) if element is not None else value
                await self.topics.orders.send(key=ev.order_id, value=raw, timestamp=event.message.timestamp)
                self.recorder.observe_event(self.names.orders, "rerouted", None, time.perf_counter() - started)
                return
            routed = self.router.route(ev)
            self.orders.flush()
            self._hold(routed, event.message.timestamp)
            self.recorder.observe_event(self.names.orders, "ok", time.time() - ev.event_time, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - one bad event must never kill the agent
            await self._reject(event, exc, element)

    def _hold(self, routed: list[tuple[str, bytes]], arrived: float | None) -> None:
        """Hold one order event's facts, noting its arrival as the earliest of its parcel partitions' so far."""
        self._facts.extend(routed)
        if arrived is None:
            return
        earliest = self._facts_arrived
        for subject, _ in routed:
            partition = partition_for(subject, self.partitions)
            known = earliest.get(partition)
            if known is None or arrived < known:
                earliest[partition] = arrived

    async def _forget(self, event: EventT) -> None:
        """The parcel side deleted a subject of an order (``Output.gone``): the order's facts go once every
        subject they feed is gone (``OrderRouter.forget``)."""
        started = time.perf_counter()
        try:
            order_id, subject = decode_gone(event.value)
            if event.key is not None and event.key != order_id:
                raise InvalidEvent("order_id", "does not match the record key")
            if self.router.forget(order_id, subject):
                self.recorder.observe_order_purged()
            self.orders.flush()
            self.recorder.observe_event(self.names.order_purges, "ok", None, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - one bad record must never kill the agent
            await self._reject(event, exc)

    async def _reject(self, event: EventT, exc: Exception, element: tuple[int, Any] | None = None) -> None:
        self.orders.discard()
        await self.stream.dead_letters.reject(event, exc, element)

    # -- watermarks (core/clock.py) -------------------------------------------------------------------------------

    def _on_assigned(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Orders partitions assigned here count as lagging until they say they caught up. The router that had
        them before (killed, stopped, or this worker before a rebalance) may have left behind watermarks that
        the parcel partitions have not read yet, or read again from their uncommitted offsets: each holds its
        partition's clock until the partition's owner reports again. With nothing left to route, this router
        would otherwise never report, and those clocks would stay held for ``WATERMARK_HOLD_SECONDS``."""
        assigned: set[TP] = args[0]
        now = time.time()
        for tp in assigned:
            if tp.topic == self.names.orders:
                self._lagging.add(tp.partition)
                self._routed_at[tp.partition] = now  # (quiet from here: a producer may still send old events)

    def _on_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Orders partitions revoked from this worker: their new owner's router reports on them."""
        revoked: set[TP] = args[0]
        self._lagging.difference_update(tp.partition for tp in revoked if tp.topic == self.names.orders)

    async def _broadcast(self, source_partition: int, arrived: float) -> None:
        self._watermark_sent[source_partition] = time.time()
        mark = encode_watermark(source_partition, arrived)
        for partition in range(self.partitions):
            # Sent after the facts routed so far: on each partition the watermark is queued behind them.
            await self.topics.order_facts.send(key=f"watermark:{source_partition}", value=mark, partition=partition,
                                               timestamp=arrived)

    async def _send_watermark(self, source_partition: int, arrived: float | None, wall: float) -> None:
        """While this partition's order events are old, tell every parcel partition how far routing got: a
        parcel partition catching up must not judge parcels ahead of their order facts."""
        lag = self.catch_up_after
        if lag <= 0 or arrived is None:
            return
        if wall - arrived <= lag:
            if source_partition in self._lagging:  # caught up on fresh events: as far as this one
                self._lagging.discard(source_partition)
                await self._broadcast(source_partition, arrived)
            return
        if wall - self._watermark_sent.get(source_partition, 0.0) < WATERMARK_EVERY_SECONDS:
            return
        self._lagging.add(source_partition)
        await self._broadcast(source_partition, arrived)

    async def caught_up_watermarks(self) -> None:
        """An orders partition that routed up to its high watermark and got nothing new for
        ``CAUGHT_UP_QUIET_SECONDS`` has caught up: a watermark at the wall clock releases the parcel partitions
        it held (a router starved of fetches is not caught up: it holds). So does one newly assigned here with
        nothing to route (``_on_assigned``)."""
        if not self._lagging:
            return
        now = time.time()
        committed = committed_offsets(self.app)
        for source_partition in sorted(self._lagging):
            tp = TP(self.names.orders, source_partition)
            try:
                highwater = fetched_highwater(aiokafka_consumer(self.app), tp)  # (None while the broker does not answer: it holds)
            except AssertionError:  # (aiokafka's: no longer assigned here; its new owner reports on it)
                self._lagging.discard(source_partition)
                continue
            # Routed up to here: by this router, or (committed) by any before it, their facts sent before this.
            routed_to = max(self._routed.get(source_partition, -1) + 1, committed.get(tp) or 0)
            if (highwater is not None and routed_to >= highwater
                    and now - self._routed_at.get(source_partition, 0.0) >= CAUGHT_UP_QUIET_SECONDS):
                self._lagging.discard(source_partition)
                await self._broadcast(source_partition, now)
