"""Subscriptions: every shipped parcel registered with the tracking aggregator (``subscriptions/``).

- ``subscription_requests`` reads the order events (beside the order router, which dead-letters the invalid
  ones) and forwards each valid, recent ``shipped`` event's parcel to the subscriptions topic, keyed by parcel
  (one record per partition, a batch record when several): a Kafka send, so the orders topic never waits on
  Redis or a vendor.
- ``subscription_intake`` files them in Redis, once per parcel (``SubscriptionStore.enqueue``). When Redis is
  away it holds its record and retries with backoff: only the subscriptions topic waits.
- The registrar (``subscriptions/registrar.py``) runs beside the stream as a service of the worker: it
  registers what is due at the vendor's rate and sends an issue for each parcel that cannot be registered.

Built only when ``subscriptions.aggregator`` names a vendor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson
from faust.types import StreamT
from mode import Service
from redis.exceptions import RedisError

from delivery.batch_records import is_batch, keyed_records, record_events
from domain.events import InvalidEvent, parse_order_event
from subscriptions.registrar import KIND, Registrar, credentials_from_env
from subscriptions.store import SubscriptionStore
from subscriptions.vendors import Parcel, make_vendor

from . import Agent

if TYPE_CHECKING:
    from . import StreamApp

log = logging.getLogger("parcelwatch.subscriptions")
PARCEL_TEXT_FIELDS = ("order_id", "platform", "origin_province", "destination_province", "destination_city")


class SubscriptionAgents(Agent):
    def __init__(self, stream: StreamApp) -> None:
        super().__init__(stream)
        settings = stream.settings
        self.cfg = cfg = settings.subscriptions
        self.store = SubscriptionStore(stream.store.redis)
        vendor = make_vendor(cfg.aggregator, credentials_from_env(cfg.aggregator, os.environ), callback_url=cfg.callback_url,
                             endpoint=cfg.endpoint, sender_phones=cfg.sender_phones, carrier_codes=cfg.carrier_codes)
        self.recorder.watch_subscriptions(cfg.aggregator)
        self.registrar = Registrar(cfg, vendor, self.store, self._send_issue, settings.severity.base[KIND],
                                   issue_lookup=stream.store.get, on_outcome=self.recorder.observe_subscription,
                                   on_counts=self.recorder.set_subscriptions_waiting)
        self.app.agent(self.topics.orders, name="subscription_requests")(self.requests)
        self.app.agent(self.topics.subscriptions, name="subscription_intake")(self.intake)
        self.app.service(_RegistrarLifetime(self.registrar))  # type: ignore[arg-type]  # (an instance is started as it is)

    async def requests(self, stream: StreamT[bytes]) -> None:
        async for raw in stream:
            pairs = [(p.key, orjson.dumps(asdict(p))) for p in self.shipped_parcels(raw, time.time())]
            try:
                for key, partition, record in keyed_records(pairs, self.partitions):
                    await self.topics.subscriptions.send(key=key, value=record, partition=partition)
            except Exception:
                log.exception("could not forward shipped parcels to the subscriptions topic")

    def shipped_parcels(self, raw: bytes | None, now: float) -> list[Parcel]:
        """The parcels of an orders record's shipped events (none of a record that is not JSON: the order router,
        which reads the same record, dead-letters it with its reason)."""
        try:
            return [p for p in (self.shipped_parcel(doc, now) for doc in record_events(raw)) if p is not None]
        except InvalidEvent:
            return []

    def shipped_parcel(self, doc: Any, now: float) -> Parcel | None:
        """The parcel of a valid ``shipped`` event recent enough to register by itself, else None."""
        if not isinstance(doc, dict) or doc.get("kind") != "shipped":
            return None
        try:
            ev = parse_order_event(doc)
        except InvalidEvent:
            return None
        if now - ev.event_time > self.cfg.max_age_days * 86400:
            self.recorder.observe_subscription(self.cfg.aggregator, "too_old")
            return None
        assert ev.carrier is not None and ev.tracking_number is not None
        return Parcel(ev.carrier, ev.tracking_number, ev.shop, ev.order_id, ev.platform, ev.origin_province,
                      ev.destination_province, ev.destination_city)

    async def intake(self, stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                docs = record_events(event.value)
            except InvalidEvent as exc:
                await self.stream.dead_letters.reject(event, exc)
                continue
            parcels = []
            for i, doc in enumerate(docs):
                try:
                    parcels.append(parcel_from_doc(doc))
                except InvalidEvent as exc:
                    await self.stream.dead_letters.reject(event, exc, (i, doc) if is_batch(event.value) else None)
            await self._enqueue(parcels)

    async def _enqueue(self, parcels: list[Parcel]) -> None:
        delay = 0.5
        while True:
            try:
                await self.store.enqueue(parcels, time.time())
                return
            except (RedisError, OSError) as exc:
                log.warning("cannot file %d parcels for registration in Redis (%s); retrying in %.1f s",
                            len(parcels), type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    async def _send_issue(self, key: str, value: bytes) -> None:
        # Keyed by subject, as the parcel agent's issue events: the same partition, the same order.
        await self.app.producer.send_and_wait(self.names.issues, key.encode(), value, partition=None, timestamp=None, headers=None)

    async def describe(self) -> dict[str, Any]:
        """``/healthz``'s detail (never a reason for 503: a vendor's trouble is not the worker's)."""
        out: dict[str, Any] = {"aggregator": self.cfg.aggregator, "rate_per_second": self.registrar.rate,
                               "vendor_refuses_key": self.registrar.account_error}
        try:
            out.update(await self.store.counts())
            out["latest_failures"] = [{"parcel": f["parcel"], "error": f["error"], "failed_at": f["failed_at"]}
                                      for f in await self.store.failures(5)]
        except (RedisError, OSError) as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return out


def parcel_from_doc(doc: Any) -> Parcel:
    """A subscriptions-topic element (``asdict(Parcel)``) back into a parcel, or InvalidEvent naming the field."""
    if not isinstance(doc, dict):
        raise InvalidEvent("$", f"expected a JSON object, got {type(doc).__name__}")
    for name in ("carrier", "number", "shop"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise InvalidEvent(name, "is required (a non-empty string)")
    for name in PARCEL_TEXT_FIELDS:
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise InvalidEvent(name, "expected a string")
    return Parcel(doc["carrier"], doc["number"], doc["shop"], *(doc.get(name) for name in PARCEL_TEXT_FIELDS))


class _RegistrarLifetime(Service):
    """Runs the registration loop while the worker runs; on stop it finishes the request in flight."""

    def __init__(self, registrar: Registrar) -> None:
        super().__init__()
        self.registrar = registrar
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        self._task = asyncio.ensure_future(self.registrar.run(self._stopping))

    async def on_stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self.registrar.cfg.timeout_seconds + 5)
            except (TimeoutError, asyncio.CancelledError):
                pass
