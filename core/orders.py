"""The order router's logic: order events (keyed by order id) -> merged order facts -> one snapshot per
subject, and the records that carry them.

Order facts must reach the parcel state, which is keyed by parcel. The router keeps each order's merged
facts in a table and sends the whole snapshot (idempotent, commutative to apply) to every subject of the
order: the order itself (``order:<id>``, watched for ship-overdue until it ships) and each of its parcels.
Pure: the Faust agent (``agents/orders.py``) and replay (``core/replay.py``) hand it a mapping of bytes.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson

from domain.events import InvalidEvent, OrderEvent, decode_object
from domain.state import OrderFacts, order_subject


class OrderRouter:
    """Merges order events into order facts and says which subjects must get the new snapshot.

    The subjects are the order itself (``order:<id>``, watched for ship-overdue until it ships) and each
    of its parcels. A fact that arrives before the shipment is kept and reaches the parcel when the
    shipment names it, because the whole snapshot is sent each time.
    """

    def __init__(self, orders: MutableMapping[str, bytes]) -> None:
        self.orders = orders

    def route(self, ev: OrderEvent) -> list[tuple[str, bytes]]:
        """(subject, order-facts record) pairs to send on the order-facts topic, keyed by subject."""
        raw = self.orders.get(ev.order_id)
        facts = OrderFacts.from_json(raw) if raw is not None else OrderFacts(ev.order_id, ev.shop, ev.platform)
        if facts.shop != ev.shop:
            # An order is one shop's: an event naming another (that shop's order token, an export imported
            # under the wrong shop) must not move the order, its parcels and their issues into its queue.
            raise InvalidEvent("shop", "the order belongs to another shop")
        was_shipped = facts.shipped_at is not None
        facts.apply(ev)
        encoded = facts.to_json()
        # Reassign (never mutate in place): a Faust table writes its changelog only on assignment.
        self.orders[ev.order_id] = encoded
        subjects = snapshot_subjects(facts, was_shipped, ev.kind)
        head = b'{"at":' + orjson.dumps(ev.event_time) + b',"facts":' + encoded + b',"subject":'
        return [(s, head + orjson.dumps(s) + b"}") for s in subjects]

    def forget(self, order_id: str, subject: str) -> bool:
        """The parcel side deleted (or ignored as expired) one of the order's subjects. Once every subject
        the facts feed is gone (the order itself and each parcel), the facts are deleted: True then.

        Only then: an order event arriving while a parcel is still watched (a refund for a parcel lost in
        transit) must still reach it with the order's whole snapshot. A notice repeated after a crash, or
        for facts already deleted, changes nothing.
        """
        raw = self.orders.get(order_id)
        if raw is None:
            return False
        facts = OrderFacts.from_json(raw)
        if subject in facts.gone:
            return False
        facts.gone.append(subject)
        facts.gone.sort()
        if {order_subject(order_id), *facts.parcels} <= set(facts.gone):
            del self.orders[order_id]  # a tombstone in the live worker's changelog
            return True
        self.orders[order_id] = facts.to_json()
        return False


def snapshot_subjects(facts: OrderFacts, was_shipped: bool, kind: str) -> list[str]:
    """The subjects an order event's snapshot goes to: each of its parcels, and the order itself while it
    is watched for ship-overdue (until it ships; the shipping, refund or close that ends the watch too)."""
    subjects = list(facts.parcels)
    if not was_shipped or kind in ("shipped", "refunded", "closed"):
        subjects.append(order_subject(facts.order_id))
    return subjects


def encode_gone(order_id: str, subject: str) -> bytes:
    """The order-purges record telling the order router that a subject of the order is gone."""
    return orjson.dumps({"order_id": order_id, "subject": subject})


def decode_gone(raw: bytes) -> tuple[str, str]:
    """An order-purges record -> (order id, subject)."""
    doc = decode_object(raw)
    for name in ("order_id", "subject"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise InvalidEvent(name, f"must be a non-empty string, got {doc.get(name)!r:.64}")
    return doc["order_id"], doc["subject"]


def decode_order_facts(raw: bytes) -> tuple[str, OrderFacts, float]:
    """The order-facts record -> (subject, facts, event time of the order event)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("$", f"malformed order-facts record: {exc}") from None
    return order_facts_from_doc(doc)


def order_facts_from_doc(doc: Any) -> tuple[str, OrderFacts, float]:
    """One decoded order-facts record (or element of a batch record) -> (subject, facts, event time)."""
    try:
        subject = doc["subject"]
        if not isinstance(subject, str):
            raise TypeError(f"subject must be a string, got {type(subject).__name__}")
        return subject, OrderFacts.from_dict(doc["facts"]), float(doc["at"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidEvent("$", f"malformed order-facts record: {type(exc).__name__}: {exc}") from None
