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

from faust.types import StreamT

from models import InvalidEvent, parse_order_event
from processor import OrderRouter

from . import telemetry as metrics
from .base import T, app, order_facts_topic, order_table, orders_topic, writer
from .deadletter import dead_letter
from .staging import StagedWrites

log = logging.getLogger("parcelwatch.orders")
staged_orders = StagedWrites(order_table, writer)
router = OrderRouter(staged_orders)


@app.agent(orders_topic)
async def order_router(stream: StreamT[bytes]) -> None:
    async for event in stream.events():
        msg = event.message
        started = time.perf_counter()
        try:
            ev = parse_order_event(event.value)
            if event.key is not None and event.key != ev.order_id:
                raise InvalidEvent("order_id", f"does not match the record key {str(event.key)[:64]!r}")
            routed = router.route(ev)
            staged_orders.flush()
            for subject, record in routed:
                await order_facts_topic.send(key=subject, value=record)
            metrics.observe_event(T.orders, "ok", time.time() - ev.event_time, time.perf_counter() - started)
        except InvalidEvent as exc:
            staged_orders.discard()
            reason = await dead_letter(event, exc)
            metrics.observe_invalid(T.orders, reason)
        except Exception as exc:
            staged_orders.discard()
            log.exception("failed to route order event %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            await dead_letter(event, exc)
            metrics.observe_invalid(T.orders, "processing_error")
