"""Ingest endpoints on the worker's web server: aggregator pushes → normalised tracking updates → Kafka.

The scans of all concurrent pushes go through one ``RecordBatcher`` (``delivery/record_batcher.py``): one
batch record (a JSON array, ``delivery/batch_records.py``) per tracking partition every ``app.producer_linger_ms`` (5 ms), a
lone scan as a plain record keyed by its parcel, because the parcel agent pays Faust's per-record cost
once per record, not per scan. Each push is answered with success only after the broker acknowledged
every record carrying its new scans (else 503 in the source's own failure format, so it retries), and
never waits longer than ``app.ingest_ack_timeout_seconds`` for that: a broker that stops answering gets
the source a 503 after 10 s, not after the producer's 20-minute request timeout with the aggregator's
connection held all along. While more than ``app.ingest_max_unacked_scans`` scans wait for the broker, a
push is answered 503 at once (the records already handed on are still delivered when it answers). A push
carries a whole history: scans already seen (stable event ids, bounded memory, marked only once
acknowledged) are not produced again; correctness does not depend on that cache, because the parcel
state is idempotent on duplicates. Wrong signature → 401; unparsable → 400 naming the field;
body over 1 MiB → 413. Secrets come from the environment and are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import faust
import orjson
from faust import web

from config import Settings
from delivery.record_batcher import RecordBatcher
from domain.events import InvalidEvent, TrackingUpdate, parse_tracking_update
from ingest import BadSignature, Parsed, PushError, aftership, kuaidi100, seventeentrack
from telemetry.recorder import Recorder

from .views import route

log = logging.getLogger("parcelwatch.ingest")
MAX_BODY = 1 << 20
SEEN_LIMIT = 200_000
RETRY_AFTER_SECONDS = 30  # a hint to sources that honour it; the aggregators retry on their own schedule
_GENERIC_OK = {"ok": True}
_GENERIC_FAIL = {"ok": False}


class IngestEndpoints:
    """``POST /ingest/{kuaidi100,aftership,17track,generic}``: one worker's push endpoints."""

    def __init__(self, app: faust.App, settings: Settings, tracking: faust.TopicT, recorder: Recorder,
                 env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.settings = settings
        self.tracking = tracking
        self.recorder = recorder
        # Secrets come from the environment and are never logged.
        self.secrets = {
            "kuaidi100": env.get("PARCELWATCH_KUAIDI100_SALT"),
            "aftership": env.get("PARCELWATCH_AFTERSHIP_SECRET"),
            "17track": env.get("PARCELWATCH_17TRACK_KEY"),
        }
        # Event ids of scans already acknowledged by the broker (bounded; a push carries a whole history).
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.batcher = RecordBatcher(self._send_tracking, settings.app.partitions,
                                     linger=settings.app.producer_linger_ms / 1000.0)
        replies = {"kuaidi100": (kuaidi100.OK_REPLY, kuaidi100.FAIL_REPLY)}
        for source in ("kuaidi100", "aftership", "17track", "generic"):
            ok, fail = replies.get(source, (_GENERIC_OK, _GENERIC_FAIL))
            route(app, f"/ingest/{source}", f"ingest_{source}", post=self._endpoint(source, ok, fail))

    def _endpoint(self, source: str, ok: Any, fail: Any) -> Any:
        async def handler(view: web.View, request: web.Request) -> web.Response:
            return await self.handle(view, request, source, ok, fail)

        return handler

    def _unknown(self, source: str, code: str) -> None:
        self.recorder.observe_unknown_code(source)

    async def _send_tracking(self, partition: int, key: str | None, value: bytes) -> Any:
        # force: never deferred to a current event's commit (Faust attaches sends made while an agent
        # processes an event); a push waits for this acknowledgement.
        return await self.tracking.send(key=key, value=value, partition=partition, force=True)

    async def produce(self, updates: list[TrackingUpdate]) -> int:
        """Send the scans not seen before and wait for the broker's acknowledgement of every record carrying
        them; only then are they marked seen (a failed push is produced again when the source retries)."""
        seen = self._seen
        fresh = [u for u in updates if u.event_id not in seen]
        await self.batcher.send([(u.parcel_key, u.to_json()) for u in fresh])
        for u in fresh:
            seen[u.event_id] = None
            if len(seen) > SEEN_LIMIT:
                seen.popitem(last=False)
        return len(fresh)

    async def handle(self, view: web.View, request: web.Request, source: str, ok: Any, fail: Any) -> web.Response:
        observe = self.recorder.observe_push
        if (request.content_length or 0) > MAX_BODY:  # type: ignore[attr-defined]
            observe(source, "too_large")
            return view.json({**fail, "message": "body larger than 1 MiB"}, status=413)
        body: bytes = await request.read()  # type: ignore[attr-defined]
        if len(body) > MAX_BODY:
            observe(source, "too_large")
            return view.json({**fail, "message": "body larger than 1 MiB"}, status=413)
        try:
            parsed = await self._parse(source, request, body)
        except BadSignature as exc:
            observe(source, "bad_signature")
            return view.json({**fail, "message": str(exc)}, status=401)
        except (PushError, InvalidEvent) as exc:
            observe(source, "invalid")
            return view.json({**fail, "message": str(exc)}, status=400)
        if parsed.carrier_correction:
            log.info("%s corrected carrier %s -> %s", source, *parsed.carrier_correction)
        app_cfg = self.settings.app
        unacked = self.batcher.unsettled()
        if unacked >= app_cfg.ingest_max_unacked_scans:
            observe(source, "overloaded")
            log.warning("refused a %s push: %d scans wait for the broker's acknowledgement", source, unacked)
            return _unavailable(view, fail, "the broker is not keeping up, retry later")
        try:
            # Cancelling the wait leaves the records it waits for alone (RecordBatcher: other pushes share them).
            sent = await asyncio.wait_for(self.produce(parsed.updates), app_cfg.ingest_ack_timeout_seconds)
        except TimeoutError:
            observe(source, "timeout")
            log.error("a %s push was not acknowledged by the broker within %g s", source,
                      app_cfg.ingest_ack_timeout_seconds)
            return _unavailable(view, fail, "temporarily unavailable, retry")
        except Exception as exc:  # noqa: BLE001 - the source must retry; nothing was acknowledged
            observe(source, "broker_error")
            log.error("could not produce a %s push: %s", source, type(exc).__name__)
            return _unavailable(view, fail, "temporarily unavailable, retry")
        observe(source, "ok")
        return view.json({**ok, "scans": len(parsed.updates), "new": sent} if source != "kuaidi100" else ok)

    async def _parse(self, source: str, request: web.Request, body: bytes) -> Parsed:
        if source == "kuaidi100":
            form = parse_qs(body.decode("utf-8", errors="strict"), keep_blank_values=True)
            param = (form.get("param") or [""])[0]
            if not param:
                raise PushError("param", "form field is required")
            kuaidi100.verify(param, (form.get("sign") or [""])[0] or None, self.secrets["kuaidi100"])
            return kuaidi100.parse(param, self._unknown)
        headers = request.headers  # type: ignore[attr-defined]
        if source == "aftership":
            aftership.verify(body, headers.get("aftership-hmac-sha256"), self.secrets["aftership"])
            return aftership.parse(body, self._unknown)
        if source == "17track":
            seventeentrack.verify(body, headers.get("sign"), self.secrets["17track"])
            return seventeentrack.parse(body, self._unknown)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PushError("$", f"not valid JSON: {exc}") from None
        items = doc if isinstance(doc, list) else [doc]
        parsed = Parsed()
        for i, item in enumerate(items):
            try:
                parsed.updates.append(parse_tracking_update(item))
            except InvalidEvent as exc:
                raise PushError(f"[{i}].{exc.field}", exc.problem) from None
        return parsed


def _unavailable(view: web.View, fail: Any, message: str) -> web.Response:
    """503 in the source's own failure format; nothing of the push counts as received, so it retries."""
    return view.json({**fail, "message": message}, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
