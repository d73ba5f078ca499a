"""``POST /ingest/orders``: order events from a shop's own system (an ERP, a script, ``python app.py
import-orders --url``) into the orders topic.

- **Who**: an order token, the ingest token for orders (``Authorization: Bearer``; ``access.order_tokens`` /
  ``PARCELWATCH_ORDER_TOKENS``), scoped to shops like a staff token but separate from them: a staff token cannot
  send orders, an order token cannot read the queue. None configured: every request is refused (401).
- **What**: one order event (a JSON object) or a list of them, in the format of docs/events.md, validated
  element by element exactly as the order router validates them (``parse_order_event``). A bad element, or one
  for a shop the token does not cover, is rejected alone: the push goes to the dead-letter topic byte for byte
  with every problem (``DeadLetters.reject_push``, as the tracking pushes: replaying it is posting it again,
  which order events, idempotent by their content, allow) and the answer names each index, field and problem;
  the rest is sent. A body that is not JSON is dead-lettered whole (400).
- **No buyer data**: an order event has no field for the buyer's name, phone or street. What is forwarded is
  the validated event re-encoded, so any other field a sender adds is dropped (its name is listed in the answer
  as ``ignored_fields``, so the sender can stop sending it).
- **Acknowledged before success**: 200 only once the broker acknowledged the accepted events and the dead
  letters (one batch record per orders partition every ``app.producer_linger_ms``,
  ``delivery/record_batcher.py``); a broker that fails or does not answer within
  ``app.ingest_ack_timeout_seconds`` gets the sender a 503 with ``Retry-After`` (a repeat is harmless: order
  events are idempotent by their content).
- Answers: 200 ``{"ok", "accepted", "rejected": [...]}`` (``ok`` false when some were rejected); 400 when none
  could be accepted; 401 token; 413 over 900,000 bytes; 503 broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import faust
import orjson
from faust import web

from config import Settings
from delivery.dead_letters import MAX_PUSH_BYTES, DeadLetters
from delivery.record_batcher import RecordBatcher
from domain.events import InvalidEvent, OrderEvent, parse_order_event
from issue_queue.access import Access
from telemetry.recorder import Recorder

from .session import bearer_of
from .views import route

log = logging.getLogger("parcelwatch.ingest.orders")
_TOO_LARGE = f"body larger than {MAX_PUSH_BYTES:,} bytes: send fewer orders per request"
# Order events one request may carry (import-orders sends 500): each is parsed, and each rejected one answered
# and dead-lettered, so a body of tiny elements (450,000 zeros fit the byte limit) must not be taken.
MAX_ORDER_EVENTS = 2_000
_TOO_MANY = f"more than {MAX_ORDER_EVENTS:,} order events: send fewer orders per request"
RETRY_AFTER_SECONDS = 30
ENDPOINT = "/ingest/orders"
SOURCE = "orders"  # the ingest metric's source label
EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(OrderEvent))


class OrderEndpoint:
    def __init__(self, app: faust.App, settings: Settings, orders: faust.TopicT, dead_letters: DeadLetters,
                 recorder: Recorder) -> None:
        self.settings = settings
        self.orders = orders
        self.dead_letters = dead_letters
        self.recorder = recorder
        self.access = Access(settings.access.order_tokens)
        self.batcher = RecordBatcher(self._send, settings.app.partitions, linger=settings.app.producer_linger_ms / 1000.0)
        route(app, ENDPOINT, "ingest_orders", post=self.handle)

    async def _send(self, partition: int, key: str | None, value: bytes) -> Any:
        # force: never deferred to a current event's commit; the sender waits for this acknowledgement.
        return await self.orders.send(key=key, value=value, partition=partition, force=True)

    async def handle(self, view: web.View, request: web.Request) -> web.Response:
        observe = self.recorder.observe_push
        scope = self.access.shops_for(bearer_of(request))
        if scope is None:
            observe(SOURCE, "bad_token")
            problem = ("an order token is required (Authorization: Bearer <token>)" if self.access.enabled else
                       "no order token is configured: set PARCELWATCH_ORDER_TOKENS (token=shop,...)")
            return view.json({"ok": False, "error": problem}, status=401)
        if (request.content_length or 0) > MAX_PUSH_BYTES:  # type: ignore[attr-defined]
            observe(SOURCE, "too_large")
            return view.json({"ok": False, "error": _TOO_LARGE}, status=413)
        body: bytes = await request.read()  # type: ignore[attr-defined]
        if len(body) > MAX_PUSH_BYTES:
            observe(SOURCE, "too_large")
            return view.json({"ok": False, "error": _TOO_LARGE}, status=413)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            error = InvalidEvent("$", f"not valid JSON (UTF-8): {exc}")
            return await self._answer(view, request, body, [], [(None, error)], set())
        items = doc if isinstance(doc, list) else [doc]
        if len(items) > MAX_ORDER_EVENTS:
            observe(SOURCE, "too_large")
            return view.json({"ok": False, "error": _TOO_MANY}, status=413)
        accepted: list[OrderEvent] = []
        rejected: list[tuple[int | None, InvalidEvent]] = []
        ignored: set[str] = set()
        for i, item in enumerate(items):
            index = i if isinstance(doc, list) else None
            try:
                if not isinstance(item, dict):
                    raise InvalidEvent("$", f"an order event must be a JSON object, got {type(item).__name__}")
                ev = parse_order_event(item)
                if "*" not in scope and ev.shop not in scope:
                    raise InvalidEvent("shop", "this order token may not send orders of this shop")
            except InvalidEvent as exc:
                rejected.append((index, exc))
                continue
            ignored.update(str(k) for k in item if k not in EVENT_FIELDS)
            accepted.append(ev)
        return await self._answer(view, request, body, accepted, rejected, ignored)

    async def _answer(self, view: web.View, request: web.Request, body: bytes, accepted: list[OrderEvent],
                      rejected: list[tuple[int | None, InvalidEvent]], ignored: set[str]) -> web.Response:
        timeout = self.settings.app.ingest_ack_timeout_seconds
        try:
            await asyncio.wait_for(self._deliver(request, body, accepted, rejected), timeout)
        except Exception as exc:  # noqa: BLE001 - the sender must retry; nothing counts as received
            outcome = "timeout" if isinstance(exc, TimeoutError) else "broker_error"
            self.recorder.observe_push(SOURCE, outcome)
            log.error("could not deliver %d order events (%s)", len(accepted) + len(rejected), type(exc).__name__)
            return view.json({"ok": False, "error": "temporarily unavailable, retry"}, status=503,
                             headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.recorder.observe_push(SOURCE, "ok" if not rejected else "invalid" if not accepted else "partly_invalid")
        answer: dict[str, Any] = {
            "ok": not rejected, "accepted": len(accepted),
            "rejected": [{"index": i, "field": e.field, "problem": e.problem} for i, e in rejected],
        }
        if ignored:
            answer["ignored_fields"] = sorted(ignored)
        return view.json(answer, status=400 if rejected and not accepted else 200)

    async def _deliver(self, request: web.Request, body: bytes, accepted: list[OrderEvent],
                       rejected: list[tuple[int | None, InvalidEvent]]) -> None:
        """Send the accepted events (keyed by order id) and, when some were rejected, the push as a dead letter;
        return once the broker acknowledged all of them."""
        sent = asyncio.ensure_future(self.batcher.send([(ev.order_id, ev.to_json()) for ev in accepted]))
        if rejected:
            problems = [(e.field if i is None else f"[{i}].{e.field}", e.problem) for i, e in rejected]
            content_type = request.headers.get("Content-Type")  # type: ignore[attr-defined]
            await self.dead_letters.reject_push(body, source=SOURCE, endpoint=ENDPOINT, problems=problems,
                                                whole=not accepted,
                                                request_headers={"content-type": content_type} if content_type else None)
        await sent
