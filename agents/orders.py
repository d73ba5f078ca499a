"""The order router: order events (keyed by order id) → merged order facts → one snapshot per subject.

Order facts must reach the parcel state, which is keyed by parcel. The router keeps each order's
merged facts in a table and sends the whole snapshot (idempotent, commutative to apply) to every
subject of the order on the co-partitioned order-facts topic: the order itself (``order:<id>``, watched
for ship-overdue until it ships) and each of its parcels. A fact that arrives before the shipment
(confirmation, refund...) is kept and reaches the parcel when the shipment names it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from faust.types import TP, EventT, StreamT

from batching import decode_batch, is_batch, keyed_records, partition_for
from clock import encode_watermark
from kafka_tools import note_send_failure
from models import InvalidEvent, parse_order_event
from processor import OrderRouter, decode_gone

from . import telemetry as metrics
from .base import T, _cfg, app, order_facts_topic, order_inputs, order_table, orders_topic, writer
from .deadletter import dead_letter
from .staging import StagedWrites

log = logging.getLogger("parcelwatch.orders")
staged_orders = StagedWrites(order_table, writer)
router = OrderRouter(staged_orders)
WATERMARK_EVERY_SECONDS = 0.5
_watermark_sent: dict[int, float] = {}  # orders partition -> wall clock of its last watermark
_routed: dict[int, int] = {}  # orders partition -> offset of the last order event routed
_lagging: set[int] = set()  # orders partitions that sent watermarks and have not said they caught up


async def _broadcast(source_partition: int, arrived: float) -> None:
    mark = encode_watermark(source_partition, arrived)
    for partition in range(_cfg.partitions):
        # Sent after the facts routed so far: on each partition the watermark is queued behind them.
        await order_facts_topic.send(key=f"watermark:{source_partition}", value=mark, partition=partition,
                                     timestamp=arrived)


async def _send_watermark(source_partition: int, arrived: float | None, wall: float) -> None:
    """While this partition's order events are old, tell every parcel partition how far routing got
    (clock.py): a parcel partition catching up must not judge parcels ahead of their order facts."""
    lag = _cfg.catch_up_after_seconds
    if lag <= 0 or arrived is None or wall - arrived <= lag:
        return
    if wall - _watermark_sent.get(source_partition, 0.0) < WATERMARK_EVERY_SECONDS:
        return
    _watermark_sent[source_partition] = wall
    _lagging.add(source_partition)
    await _broadcast(source_partition, arrived)


@app.timer(interval=WATERMARK_EVERY_SECONDS)
async def caught_up_watermarks() -> None:
    """An orders partition routed up to its high watermark has caught up: a watermark at the wall clock
    releases the parcel partitions it held (a router starved of fetches is not caught up: it holds)."""
    for source_partition in sorted(_lagging):
        highwater = app.consumer.highwater(TP(T.orders, source_partition))
        if highwater is not None and _routed.get(source_partition, -1) + 1 >= highwater:
            _lagging.discard(source_partition)
            await _broadcast(source_partition, time.time())


@app.agent(order_inputs)
async def order_router(stream: StreamT[bytes]) -> None:
    async for event in stream.events():
        msg = event.message
        if msg.topic == T.order_purges:
            await _forget(event)
            continue
        # Order facts go out one record per parcel partition (a batch record when it carries several):
        # a batch of order events then costs the parcel agent a few records, not one per subject.
        outgoing: list[tuple[str, bytes]] = []
        if is_batch(event.value):
            try:
                elements = decode_batch(event.value)
            except InvalidEvent as exc:
                elements = []
                await _reject(event, exc)
            for i, element in enumerate(elements):
                await _route(event, element, outgoing, (i, element))
        else:
            await _route(event, event.value, outgoing, None)
        try:
            # The order events' arrival time travels with their facts: the parcel agent's catch-up clock
            # (clock.py) must see a backlog of old order events as old, not as just produced.
            for key, partition, record in keyed_records(outgoing, _cfg.partitions):
                await order_facts_topic.send(key=key, value=record, partition=partition, timestamp=msg.timestamp)
            await _send_watermark(msg.partition, msg.timestamp, time.time())
        except Exception as exc:
            # Not sent: no offset may be committed past these facts (as when the broker refuses them,
            # kafka_tools.patch_send_failure_guard): recorded, commits stop, /healthz goes red.
            log.exception("failed to send the order facts of %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            note_send_failure(f"{T.order_facts}: {type(exc).__name__}: {exc}")
        # Routed or dead-lettered: either way done with. Only now, after its facts were sent: the send
        # awaits, and a caught-up watermark sent meanwhile would pass the facts still to come.
        _routed[msg.partition] = msg.offset


async def _route(event: EventT, value: Any, outgoing: list[tuple[str, bytes]],
                 element: tuple[int, Any] | None) -> None:
    """Merge one order event into its order's facts; its snapshots are added to ``outgoing``."""
    started = time.perf_counter()
    try:
        if element is not None and not isinstance(value, dict):
            raise InvalidEvent("$", f"a batch element must be a JSON object, got {type(value).__name__}")
        ev = parse_order_event(value)
        if element is None and event.key is not None and event.key != ev.order_id:
            raise InvalidEvent("order_id", f"does not match the record key {str(event.key)[:64]!r}")
        if element is not None and partition_for(ev.order_id, _cfg.partitions) != event.message.partition:
            # Batched onto another order's partition: re-sent alone, keyed, to its own, where its order's
            # facts are kept (never merged into a second copy here).
            await orders_topic.send(key=ev.order_id, value=orjson.dumps(value), timestamp=event.message.timestamp)
            metrics.observe_event(T.orders, "rerouted", None, time.perf_counter() - started)
            return
        routed = router.route(ev)
        staged_orders.flush()
        outgoing.extend(routed)
        metrics.observe_event(T.orders, "ok", time.time() - ev.event_time, time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - one bad event must never kill the agent
        await _reject(event, exc, element)


async def _forget(event: EventT) -> None:
    """The parcel side deleted a subject of an order (``processor.Output.gone``): the order's facts go
    once every subject they feed is gone (``OrderRouter.forget``)."""
    started = time.perf_counter()
    try:
        order_id, subject = decode_gone(event.value)
        if event.key is not None and event.key != order_id:
            raise InvalidEvent("order_id", f"does not match the record key {str(event.key)[:64]!r}")
        if router.forget(order_id, subject):
            metrics.observe_order_purged()
        staged_orders.flush()
        metrics.observe_event(T.order_purges, "ok", None, time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - one bad record must never kill the agent
        await _reject(event, exc)


async def _reject(event: EventT, exc: Exception, element: tuple[int, Any] | None = None) -> None:
    staged_orders.discard()
    if isinstance(exc, InvalidEvent):
        reason = await dead_letter(event, exc, element)
        metrics.observe_invalid(T.orders, reason)
    else:
        msg = event.message
        log.exception("failed to route order event %s[%s]@%s", msg.topic, msg.partition, msg.offset)
        await dead_letter(event, exc, element)
        metrics.observe_invalid(T.orders, "processing_error")
