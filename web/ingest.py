"""Ingest endpoints on the worker's web server: aggregator pushes → normalised tracking updates → Kafka.

``POST /ingest/{kuaidi100,kdniao,aftership,17track,generic}``, for the sources in ``ingest.sources`` (the others
answer 404). Formats, statuses, carriers and answers: ``docs/ingest.md``; the adapters are in ``ingest/``.

Nothing is lost, nothing is a 500:
- A push that cannot be read as a whole gets a 4xx naming the problem (never echoing its content) and goes to
  the dead-letter topic byte for byte, with its reason, source and endpoint (``DeadLetters.reject_push``), so it
  can be replayed: post the value to the endpoint again with the ``pw-http-*`` headers it kept.
- A push with some bad elements (a scan, a parcel) is taken without them; it goes to the dead-letter topic too,
  naming each rejected element, and the answer names them.
- Each vendor gets the answer that stops its retries once we keep a push (taken, or stored as a dead letter)
  and asks for a retry only when that helps: a broker that fails or does not acknowledge within
  ``app.ingest_ack_timeout_seconds`` (503), too many scans waiting for it (503), a wrong signature (401: the
  secret may be changing). kuaidi100 and kdniao decide on their reply's JSON, AfterShip and 17TRACK on the HTTP
  status (see the adapters). A push the dead-letter topic cannot take either is answered 503.
- Any other failure is logged with its traceback, dead-lettered when it can be, and answered 503.

Authenticated by default: the aggregators' signatures are checked with their secrets (from the environment,
never logged); a worker that listens beyond loopback does not start without them (``config.check_ingest_secrets``).
``/ingest/generic`` takes only an ingest token (``ingest.tokens``, ``Authorization: Bearer``), never a staff
token and never a cookie.

The scans of all concurrent pushes go through one ``RecordBatcher`` (``delivery/record_batcher.py``): one batch
record per tracking partition every ``app.producer_linger_ms``, a lone scan as a plain record keyed by its parcel.
A push is answered with success only after the broker acknowledged every record carrying its new scans. A push
carries a whole history: scans already acknowledged (their event ids, bounded memory) are not produced again;
correctness does not depend on that cache, because the parcel state is idempotent on duplicates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from aiohttp import web as aiohttp_web
from faust import web

from config import INGEST_SECRETS, Settings
from delivery.dead_letters import MAX_PUSH_BYTES, DeadLetters
from delivery.record_batcher import RecordBatcher
from domain.events import TrackingUpdate
from ingest import BadSignature, Parsed, PushError, Reader, aftership, generic, kdniao, kuaidi100, seventeentrack
from telemetry.recorder import Recorder

from .session import bearer_of
from .views import route

log = logging.getLogger("parcelwatch.ingest")
SEEN_LIMIT = 200_000
DEAD_LETTERED_LIMIT = 10_000
RETRY_AFTER_SECONDS = 30  # a hint to sources that honour it; the aggregators retry on their own schedule
REJECTIONS_ANSWERED = 20

@dataclass(frozen=True)
class Vendor:
    read: Reader
    # Request headers a replay of a dead letter needs besides the content type (a signature over the body).
    kept_headers: tuple[str, ...] = ()


VENDORS: dict[str, Vendor] = {
    "kuaidi100": Vendor(kuaidi100.read),
    "kdniao": Vendor(kdniao.read),
    "aftership": Vendor(aftership.read, (aftership.SIGNATURE_HEADER,)),
    "17track": Vendor(seventeentrack.read, (seventeentrack.SIGNATURE_HEADER,)),
    "generic": Vendor(generic.read),
}


@dataclass(frozen=True)
class Answer:
    """What a push is answered: HTTP status, whether the vendor should send it again, a message, and for a
    taken push its counts and rejected elements."""

    status: int
    retry: bool
    message: str
    parsed: Parsed | None = None
    scans: int = 0
    new: int = 0


class IngestEndpoints:
    """``POST /ingest/<source>``: one worker's push endpoints."""

    def __init__(self, app: faust.App, settings: Settings, tracking: faust.TopicT, recorder: Recorder,
                 dead_letters: DeadLetters, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.settings = settings
        self.tracking = tracking
        self.recorder = recorder
        self.dead_letters = dead_letters
        # Secrets come from the environment and are never logged.
        self.secrets = {source: (env.get(INGEST_SECRETS[source]) or "").strip() or None
                        for source in VENDORS if source != "generic"}
        self._ingest_tokens = [t.strip().encode() for t in settings.ingest.tokens]
        self._staff_tokens = [t.encode() for t in settings.access.tokens]
        # Event ids of scans already acknowledged by the broker (bounded; a push carries a whole history).
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Digests of pushes already dead-lettered: a vendor's retry of the same bytes is not stored twice.
        self._dead_lettered: OrderedDict[bytes, None] = OrderedDict()
        self.batcher = RecordBatcher(self._send_tracking, settings.app.partitions,
                                     linger=settings.app.producer_linger_ms / 1000.0)
        for source in dict.fromkeys(settings.ingest.sources):
            route(app, f"/ingest/{source}", f"ingest_{source}", post=self._endpoint(source))

    def _endpoint(self, source: str) -> Callable[[web.View, web.Request], Awaitable[web.Response]]:
        async def handler(view: web.View, request: web.Request) -> web.Response:
            return await self.handle(view, request, source)

        return handler

    async def _send_tracking(self, partition: int, key: str | None, value: bytes) -> Any:
        # force: never deferred to a current event's commit (Faust attaches sends made while an agent
        # processes an event); a push waits for this acknowledgement.
        return await self.tracking.send(key=key, value=value, partition=partition, force=True)

    async def produce(self, updates: list[TrackingUpdate]) -> int:
        """Send the scans not seen before and wait for the broker's acknowledgement of every record carrying
        them; only then are they marked seen (a failed push is produced again when the source retries)."""
        seen = self._seen
        fresh = [u for u in dict((u.event_id, u) for u in updates).values() if u.event_id not in seen]
        await self.batcher.send([(u.parcel_key, u.to_json()) for u in fresh])
        for u in fresh:
            seen[u.event_id] = None
            if len(seen) > SEEN_LIMIT:
                seen.popitem(last=False)
        return len(fresh)

    # -- one push ------------------------------------------------------------------------------------------------

    async def handle(self, view: web.View, request: web.Request, source: str) -> web.Response:
        """Answer one push; whatever happens inside, never a 500 and never an exception out of the handler."""
        received_at = time.time()
        context: dict[str, str] = {}
        bodies: list[bytes] = []
        try:
            answer = await self._handle(request, source, received_at, context, bodies)
        except Exception as exc:  # a bug must not cost the push: logged, kept when it can be, answered "retry"
            log.exception("failed to handle a %s push", source)
            self.recorder.observe_push(source, "error")
            if bodies:
                headers: Mapping[str, str] = request.headers  # type: ignore[attr-defined]
                await self._dead_letter(source, bodies[0], headers, [("$", f"processing error: {type(exc).__name__}")],
                                        whole=True)
            answer = Answer(503, True, "internal error; retry later")
        return self._reply(view, source, answer, context, received_at)

    async def _handle(self, request: web.Request, source: str, received_at: float,
                      context: dict[str, str], bodies: list[bytes]) -> Answer:
        observe = self.recorder.observe_push
        if source == "generic":
            refused = self._authorise(request)
            if refused is not None:
                observe(source, "unauthorized")
                return refused
        body = await self._body(request)
        if body is None:
            observe(source, "too_large")
            return Answer(413, False, f"body larger than {MAX_PUSH_BYTES} bytes")
        bodies.append(body)
        headers: Mapping[str, str] = request.headers  # type: ignore[attr-defined]
        try:
            parsed = VENDORS[source].read(body, headers, self.secrets.get(source), _charset(headers), received_at)
        except BadSignature as exc:
            observe(source, "bad_signature")
            return Answer(401, True, str(exc))
        except PushError as exc:
            log.info("rejected a %s push: %s", source, exc)
            if not await self._dead_letter(source, body, headers, [(exc.field, exc.problem)], whole=True):
                observe(source, "broker_error")
                return Answer(503, True, "temporarily unavailable, retry")
            observe(source, "invalid")
            return Answer(415 if exc.field == "Content-Type" else 400, False, f"{exc}")
        context.update(parsed.reply_context)
        self._count(source, parsed)
        app_cfg = self.settings.app
        unacked = self.batcher.unsettled()
        if unacked >= app_cfg.ingest_max_unacked_scans:
            observe(source, "overloaded")
            log.warning("refused a %s push: %d scans wait for the broker's acknowledgement", source, unacked)
            return Answer(503, True, "the broker is not keeping up, retry later")
        if parsed.rejected:
            problems = [(r.path, r.problem) for r in parsed.rejected]
            key = parsed.updates[0].parcel_key if parsed.updates else None
            if not await self._dead_letter(source, body, headers, problems, whole=False, key=key):
                observe(source, "broker_error")
                return Answer(503, True, "temporarily unavailable, retry")
        try:
            # Cancelling the wait leaves the records it waits for alone (RecordBatcher: other pushes share them).
            sent = await asyncio.wait_for(self.produce(parsed.updates), app_cfg.ingest_ack_timeout_seconds)
        except TimeoutError:
            observe(source, "timeout")
            log.error("a %s push was not acknowledged by the broker within %g s", source,
                      app_cfg.ingest_ack_timeout_seconds)
            return Answer(503, True, "temporarily unavailable, retry")
        except Exception as exc:  # noqa: BLE001 - the source must retry; nothing was acknowledged
            observe(source, "broker_error")
            log.error("could not produce a %s push: %s", source, type(exc).__name__)
            return Answer(503, True, "temporarily unavailable, retry")
        observe(source, "partial" if parsed.rejected else "ok")
        return Answer(200, False, "", parsed, len(parsed.updates), sent)

    def _authorise(self, request: web.Request) -> Answer | None:
        """/ingest/generic: an ingest token in ``Authorization: Bearer``; a staff token is refused (403)."""
        if not self._ingest_tokens:
            return Answer(401, False, "no ingest token is configured: set PARCELWATCH_INGEST_TOKENS "
                                      "(/ingest/generic never takes anonymous scans)")
        token = bearer_of(request) or ""
        if not token:
            return Answer(401, False, "an ingest token is required (Authorization: Bearer <token>)")
        given = token.encode("utf-8", "replace")
        if _matches(given, self._ingest_tokens):
            return None
        if _matches(given, self._staff_tokens):
            return Answer(403, False, "a staff token cannot post scans; use an ingest token (ingest.tokens)")
        return Answer(401, False, "not a valid ingest token")

    async def _body(self, request: web.Request) -> bytes | None:
        """The request body, or None when it is larger than ``MAX_PUSH_BYTES``."""
        length = request.content_length  # type: ignore[attr-defined]
        if length is not None and length > MAX_PUSH_BYTES:
            return None
        try:
            body: bytes = await request.read()  # type: ignore[attr-defined]
        except aiohttp_web.HTTPRequestEntityTooLarge:
            return None
        return None if len(body) > MAX_PUSH_BYTES else body

    def _count(self, source: str, parsed: Parsed) -> None:
        for _code in parsed.unknown_codes:
            self.recorder.observe_unknown_code(source)
        for _carrier in parsed.unknown_carriers:
            self.recorder.observe_unknown_carrier(source)
        for declared, corrected in parsed.carrier_corrections:
            log.info("%s corrected a carrier %s -> %s; the seller's %s is kept", source, declared, corrected, declared)

    async def _dead_letter(self, source: str, body: bytes, headers: Mapping[str, str],
                           problems: list[tuple[str, str]], *, whole: bool, key: str | None = None) -> bool:
        """Store a rejected push (or a push with rejected elements); False when the broker did not take it."""
        digest = hashlib.sha1(source.encode() + b"\0" + body).digest()
        if digest in self._dead_lettered:
            return True  # the vendor's retry of a push already kept
        kept = {"content-type": headers.get("Content-Type", "")}
        kept.update({name: headers[name] for name in VENDORS[source].kept_headers if name in headers})
        try:
            await self.dead_letters.reject_push(
                body, source=source, endpoint=f"/ingest/{source}", problems=problems, whole=whole, key=key,
                request_headers=kept, timeout=self.settings.app.ingest_ack_timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - not stored: the vendor must send it again
            log.error("could not dead-letter a %s push: %s", source, type(exc).__name__)
            return False
        self._dead_lettered[digest] = None
        if len(self._dead_lettered) > DEAD_LETTERED_LIMIT:
            self._dead_lettered.popitem(last=False)
        return True

    # -- answers -------------------------------------------------------------------------------------------------

    def _reply(self, view: web.View, source: str, answer: Answer, context: Mapping[str, str],
               received_at: float) -> web.Response:
        rejected = [str(r) for r in answer.parsed.rejected[:REJECTIONS_ANSWERED]] if answer.parsed else []
        message = answer.message
        if answer.status == 200 and rejected:
            message = (f"taken without {len(answer.parsed.rejected) if answer.parsed else 0} element(s), kept as "
                       f"dead letters: {rejected[0]}")
        kept = not answer.retry  # taken, or stored: the vendor must not send it again
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if answer.status == 503 else None
        body: dict[str, Any]
        if source == "kuaidi100":
            body = {"result": kept, "returnCode": "200" if kept else "500",
                    "message": "成功" if answer.status == 200 and not rejected else (message or "失败")}
        elif source == "kdniao":
            body = kdniao.reply(kept, message, context, received_at)
        elif answer.status == 200:
            body = {"ok": True, "scans": answer.scans, "new": answer.new}
            if rejected:
                body["rejected"] = rejected
        else:
            body = {"ok": False, "retry": answer.retry, "message": message}
        return view.json(body, status=answer.status, headers=headers)


def _matches(given: bytes, tokens: list[bytes]) -> bool:
    found = False
    for known in tokens:
        # Compare against every token in constant time: no early exit that times the match.
        found |= hmac.compare_digest(known, given)
    return found


def _charset(headers: Mapping[str, str]) -> str | None:
    """The ``charset`` parameter of the request's Content-Type, lower case (None when not given)."""
    for part in headers.get("Content-Type", "").split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() or None
    return None
