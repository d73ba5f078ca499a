"""Ingest endpoints on the worker's web server: aggregator pushes → normalised tracking updates → Kafka.

The scans of all concurrent pushes go through one ``RecordBatcher`` (``record_batcher.py``): one batch
record (a JSON array, ``batching.py``) per tracking partition every ``app.producer_linger_ms`` (5 ms), a
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
from typing import Any

from faust import web

import metrics
from ingest import BadSignature, Parsed, PushError, aftership, kuaidi100, seventeentrack
from models import InvalidEvent, TrackingUpdate, parse_tracking_update

from .base import app, settings, tracking_topic
from .record_batcher import RecordBatcher

log = logging.getLogger("parcelwatch.ingest")
MAX_BODY = 1 << 20
SEEN_LIMIT = 200_000
RETRY_AFTER_SECONDS = 30  # a hint to sources that honour it; the aggregators retry on their own schedule
_seen: OrderedDict[str, None] = OrderedDict()
SECRETS = {
    "kuaidi100": os.environ.get("PARCELWATCH_KUAIDI100_SALT"),
    "aftership": os.environ.get("PARCELWATCH_AFTERSHIP_SECRET"),
    "17track": os.environ.get("PARCELWATCH_17TRACK_KEY"),
}


def _unknown(source: str, code: str) -> None:
    metrics.INGEST_UNKNOWN.labels(source=source).inc()


async def _send_tracking(partition: int, key: str | None, value: bytes) -> Any:
    # force: never deferred to a current event's commit (Faust attaches sends made while an agent
    # processes an event); a push waits for this acknowledgement.
    return await tracking_topic.send(key=key, value=value, partition=partition, force=True)


batcher = RecordBatcher(_send_tracking, settings.app.partitions, linger=settings.app.producer_linger_ms / 1000.0)


async def produce(updates: list[TrackingUpdate]) -> int:
    """Send the scans not seen before and wait for the broker's acknowledgement of every record carrying
    them; only then are they marked seen (a failed push is produced again when the source retries)."""
    fresh = [u for u in updates if u.event_id not in _seen]
    await batcher.send([(u.parcel_key, u.to_json()) for u in fresh])
    for u in fresh:
        _seen[u.event_id] = None
        if len(_seen) > SEEN_LIMIT:
            _seen.popitem(last=False)
    return len(fresh)


async def _handle(view: web.View, request: web.Request, source: str, ok: Any, fail: Any) -> web.Response:
    counter = metrics.INGEST_REQUESTS
    if (request.content_length or 0) > MAX_BODY:  # type: ignore[attr-defined]
        counter.labels(source=source, outcome="too_large").inc()
        return view.json({**fail, "message": "body larger than 1 MiB"}, status=413)
    body: bytes = await request.read()  # type: ignore[attr-defined]
    if len(body) > MAX_BODY:
        counter.labels(source=source, outcome="too_large").inc()
        return view.json({**fail, "message": "body larger than 1 MiB"}, status=413)
    try:
        parsed = await _parse(source, request, body)
    except BadSignature as exc:
        counter.labels(source=source, outcome="bad_signature").inc()
        return view.json({**fail, "message": str(exc)}, status=401)
    except (PushError, InvalidEvent) as exc:
        counter.labels(source=source, outcome="invalid").inc()
        return view.json({**fail, "message": str(exc)}, status=400)
    if parsed.carrier_correction:
        log.info("%s corrected carrier %s -> %s", source, *parsed.carrier_correction)
    app_cfg = settings.app
    unacked = batcher.unsettled()
    if unacked >= app_cfg.ingest_max_unacked_scans:
        counter.labels(source=source, outcome="overloaded").inc()
        log.warning("refused a %s push: %d scans wait for the broker's acknowledgement", source, unacked)
        return _unavailable(view, fail, "the broker is not keeping up, retry later")
    try:
        # Cancelling the wait leaves the records it waits for alone (RecordBatcher: other pushes share them).
        sent = await asyncio.wait_for(produce(parsed.updates), app_cfg.ingest_ack_timeout_seconds)
    except TimeoutError:
        counter.labels(source=source, outcome="timeout").inc()
        log.error("a %s push was not acknowledged by the broker within %g s", source,
                  app_cfg.ingest_ack_timeout_seconds)
        return _unavailable(view, fail, "temporarily unavailable, retry")
    except Exception as exc:  # noqa: BLE001 - the source must retry; nothing was acknowledged
        counter.labels(source=source, outcome="broker_error").inc()
        log.error("could not produce a %s push: %s", source, type(exc).__name__)
        return _unavailable(view, fail, "temporarily unavailable, retry")
    counter.labels(source=source, outcome="ok").inc()
    return view.json({**ok, "scans": len(parsed.updates), "new": sent} if source != "kuaidi100" else ok)


def _unavailable(view: web.View, fail: Any, message: str) -> web.Response:
    """503 in the source's own failure format; nothing of the push counts as received, so it retries."""
    return view.json({**fail, "message": message}, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _parse(source: str, request: web.Request, body: bytes) -> Parsed:
    if source == "kuaidi100":
        from urllib.parse import parse_qs

        form = parse_qs(body.decode("utf-8", errors="strict"), keep_blank_values=True)
        param = (form.get("param") or [""])[0]
        if not param:
            raise PushError("param", "form field is required")
        kuaidi100.verify(param, (form.get("sign") or [""])[0] or None, SECRETS["kuaidi100"])
        return kuaidi100.parse(param, _unknown)
    headers = request.headers  # type: ignore[attr-defined]
    if source == "aftership":
        aftership.verify(body, headers.get("aftership-hmac-sha256"), SECRETS["aftership"])
        return aftership.parse(body, _unknown)
    if source == "17track":
        seventeentrack.verify(body, headers.get("sign"), SECRETS["17track"])
        return seventeentrack.parse(body, _unknown)
    import orjson

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


_GENERIC_OK = {"ok": True}
_GENERIC_FAIL = {"ok": False}


@app.page("/ingest/kuaidi100")
class Kuaidi100View(web.View):
    async def post(self, request: web.Request) -> web.Response:
        return await _handle(self, request, "kuaidi100", kuaidi100.OK_REPLY, kuaidi100.FAIL_REPLY)


@app.page("/ingest/aftership")
class AfterShipView(web.View):
    async def post(self, request: web.Request) -> web.Response:
        return await _handle(self, request, "aftership", _GENERIC_OK, _GENERIC_FAIL)


@app.page("/ingest/17track")
class SeventeenTrackView(web.View):
    async def post(self, request: web.Request) -> web.Response:
        return await _handle(self, request, "17track", _GENERIC_OK, _GENERIC_FAIL)


@app.page("/ingest/generic")
class GenericView(web.View):
    async def post(self, request: web.Request) -> web.Response:
        return await _handle(self, request, "generic", _GENERIC_OK, _GENERIC_FAIL)
