"""Web views on the worker's web server: the issue queue API, health, lane baselines and metrics.

Errors are JSON ``{"error": ..., "field": ...}``: 401 without a valid token, 404 for an unknown issue
(or another shop's: a token must not learn what other shops have), 409 for an illegal transition
(with the current state), 422 for a malformed body or query naming the field.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from faust import web

import metrics as _metrics
from issue_queue import Access, AccessDenied, day_bounds, label_issue, parse_day, to_csv, today, visible_shops
from issue_store import ACTIVE_STATUSES, RESOLUTION_CODES, STATUSES
from kafka_tools import send_failures
from models import IssueKind, Severity

from . import telemetry as metrics
from .base import T, app, deadline_index, parcel_state, settings
from .parcels import baselines
from .sinks import redis_state, store

MAX_PAGE = 500
MAX_BULK = 500
MAX_NOTE = 1000
access = Access(settings.access.tokens)


class BadRequest(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")  # type: ignore[attr-defined]
    if header.startswith("Bearer "):
        return str(header[7:].strip())
    cookie = request.cookies.get("pw_token")  # type: ignore[attr-defined]
    return str(cookie) if cookie else None


def _int_param(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(name, f"expected a whole number, got {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _choice(query: Any, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    raw = query.get(name) or default
    if raw is not None and raw not in allowed:
        raise BadRequest(name, f"unknown value {raw[:30]!r}; expected one of {', '.join(allowed)}")
    return raw  # type: ignore[no-any-return]


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()  # type: ignore[attr-defined]
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("$", "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("$", "body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, max_len: int, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(name, "is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(name, "must be a non-empty string" if required else "must be a string")
    if len(value) > max_len:
        raise BadRequest(name, f"is longer than {max_len} characters")
    return value


async def query_params(view: web.View, request: web.Request) -> dict[str, Any]:
    """Shared by the JSON list, the CSV export and the page: filters, day, order, pagination."""
    q = request.query  # type: ignore[attr-defined]
    scope = access.read_scope(_token(request))
    status_param = q.get("status") or ""
    statuses: tuple[str, ...] | None = tuple(s for s in status_param.split(",") if s) or None
    for s in statuses or ():
        if s not in STATUSES:
            raise BadRequest("status", f"unknown status {s[:30]!r}; expected one of {', '.join(STATUSES)}")
    day: tuple[float, float] | None = None
    if q.get("date"):
        try:
            day = day_bounds(parse_day(q["date"]))
        except ValueError as exc:
            raise BadRequest("date", str(exc)) from None
    elif q.get("today") in ("1", "true"):
        day = day_bounds(today(time.time()))
    if day is None and statuses is None:
        statuses = ACTIVE_STATUSES

    shops = visible_shops(scope, await store.shops(), q.get("shop") or None)
    return {
        "shops": shops,
        "statuses": statuses,
        "day": day,
        "kind": _choice(q, "kind", tuple(k.value for k in IssueKind)),
        "severity": _choice(q, "severity", tuple(s.value for s in Severity)),
        "carrier": q.get("carrier") or None,
        "order": _choice(q, "order", ("priority", "age"), "priority"),
        "offset": _int_param(q, "offset", 0, 0, 10_000_000),
        "limit": _int_param(q, "limit", 100, 1, MAX_PAGE),
    }


def _error(view: web.View, exc: Exception) -> web.Response:
    if isinstance(exc, AccessDenied):
        return view.json({"error": str(exc)}, status=401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, BadRequest):
        return view.json({"error": str(exc), "field": exc.field}, status=422)
    raise exc


@app.page("/issues")
class IssuesView(web.View):
    """``GET /issues?shop=&kind=&severity=&carrier=&status=&date=YYYY-MM-DD&order=priority|age&offset=&limit=``."""

    async def get(self, request: web.Request) -> web.Response:
        try:
            params = await query_params(self, request)
        except (AccessDenied, BadRequest) as exc:
            return _error(self, exc)
        result = await store.query(**params)
        lang = request.query.get("lang")  # type: ignore[attr-defined]
        # With ?lang=zh|en each issue also carries kind/severity/status labels in that language.
        issues = [label_issue(i, settings, lang) for i in result.issues] if lang in ("zh", "en") else result.issues
        return self.json({
            "total": result.total, "offset": params["offset"], "limit": params["limit"],
            "by_kind": result.by_kind, "issues": issues,
        })


@app.page("/issues.csv")
class IssuesCsvView(web.View):
    """The same filters as ``/issues``, all matching rows, as CSV that Excel opens with Chinese intact."""

    async def get(self, request: web.Request) -> web.Response:
        try:
            params = await query_params(self, request)
            lang = _choice(request.query, "lang", ("zh", "en"), "zh")  # type: ignore[attr-defined]
        except (AccessDenied, BadRequest) as exc:
            return _error(self, exc)
        params.update(offset=0, limit=10_000_000)
        result = await store.query(**params)
        body = to_csv(result.issues, settings, lang or "zh")
        name = f"parcelwatch-issues-{time.strftime('%Y%m%d')}.csv"
        # aiohttp refuses a charset inside content_type=; the full header goes in headers instead.
        return self.bytes(body, content_type=None, headers={
            "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"'})


@app.page("/issues/{issue_id}")
class IssueView(web.View):
    async def get(self, request: web.Request, issue_id: str) -> web.Response:
        try:
            scope = access.read_scope(_token(request))
        except AccessDenied as exc:
            return _error(self, exc)
        doc = await store.get(issue_id)
        if doc is None or ("*" not in scope and doc["shop"] not in scope):
            return self.json({"error": f"no issue with id {issue_id[:40]!r}"}, status=404)
        return self.json(doc)


async def _staff(view: web.View, request: web.Request, issue_id: str, action: str) -> web.Response:
    try:
        token = _token(request)
        scope = access.write_scope(token)
        body = await _body(request)
        by = _text(body, "by", 64) or Access.label(token or "")
        payload: dict[str, Any] = {"by": by, "note": _text(body, "note", MAX_NOTE)}
        if action == "assign":
            payload["assignee"] = _text(body, "assignee", 64, required=True)
        elif action == "resolve":
            code = _text(body, "resolution_code", 32, required=True)
            if code not in RESOLUTION_CODES:
                raise BadRequest("resolution_code", f"unknown code {code!r}; expected one of {', '.join(RESOLUTION_CODES)}")
            payload["resolution_code"] = code
    except (AccessDenied, BadRequest) as exc:
        return _error(view, exc)
    result = await store.staff_action(issue_id, action, payload, time.time(), scope)
    if action == "resolve" and result.get("ok") and not result.get("unchanged"):
        doc = await store.get(issue_id)
        if doc is not None:
            metrics.on_staff_resolution(doc["kind"])
    return _staff_response(view, issue_id, result)


def _staff_response(view: web.View, issue_id: str, result: dict[str, Any]) -> web.Response:
    if result.get("ok"):
        return view.json({"id": issue_id, "status": result["status"], "unchanged": bool(result.get("unchanged"))})
    if result["error"] == "not_found":
        return view.json({"error": f"no issue with id {issue_id[:40]!r}"}, status=404)
    return view.json({"error": result.get("message", "illegal transition"), "current_status": result.get("current")},
                     status=409)


@app.page("/issues/{issue_id}/acknowledge")
class AcknowledgeView(web.View):
    async def post(self, request: web.Request, issue_id: str) -> web.Response:
        return await _staff(self, request, issue_id, "acknowledge")


@app.page("/issues/{issue_id}/assign")
class AssignView(web.View):
    async def post(self, request: web.Request, issue_id: str) -> web.Response:
        return await _staff(self, request, issue_id, "assign")


@app.page("/issues/{issue_id}/resolve")
class ResolveView(web.View):
    async def post(self, request: web.Request, issue_id: str) -> web.Response:
        return await _staff(self, request, issue_id, "resolve")


@app.page("/bulk/acknowledge")
class BulkAcknowledgeView(web.View):
    """``POST {"ids": [...], "by": "...", "note": "..."}``: acknowledge each; per-id results."""

    async def post(self, request: web.Request) -> web.Response:
        try:
            token = _token(request)
            scope = access.write_scope(token)
            body = await _body(request)
            ids = body.get("ids")
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and len(i) <= 40 for i in ids):
                raise BadRequest("ids", "must be a non-empty list of issue ids")
            if len(ids) > MAX_BULK:
                raise BadRequest("ids", f"at most {MAX_BULK} ids per request")
            payload = {"by": _text(body, "by", 64) or Access.label(token or ""), "note": _text(body, "note", MAX_NOTE)}
        except (AccessDenied, BadRequest) as exc:
            return _error(self, exc)
        now = time.time()
        results = {}
        for issue_id in dict.fromkeys(ids):
            r = await store.staff_action(issue_id, "acknowledge", payload, now, scope)
            results[issue_id] = r.get("status") if r.get("ok") else r["error"]
        return self.json({"results": results})


_open_counts: list[tuple[tuple[str, str, str], int]] = []


@app.timer(interval=15.0)
async def refresh_open_issue_counts() -> None:
    """Read the exact open counts from Redis for the scrape-time gauge (the collector cannot await)."""
    try:
        _open_counts[:] = list((await store.open_counts()).items())
    except Exception:  # noqa: BLE001 - Redis away: keep the last figures; /healthz reports the outage
        pass


def _is_changelog(topic: str) -> bool:
    # Table changelogs are read only to restore state, never committed: their "lag" means nothing.
    return topic in app.tables._changelogs  # type: ignore[attr-defined]


def _consumer_lag() -> list[tuple[str, float]]:
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})
    lag: dict[str, float] = {}
    for tp in consumer.assignment():
        if _is_changelog(tp.topic):
            continue
        hw = consumer.highwater(tp)
        if hw is None:
            continue
        done = committed.get(tp)
        lag[tp.topic] = lag.get(tp.topic, 0.0) + max(0, hw - (done + 1 if done is not None else 0))
    return sorted(lag.items())


def _held_partitions() -> list[int]:
    """The parcel-state partitions this worker holds: its share of the co-partitioned inputs (tracking,
    order facts, ticks), as the consumer group last assigned them."""
    return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == T.tracking)


STALL_SECONDS = 60.0


def _stream_partitions(now: float) -> dict[str, Any]:
    """Each assigned stream partition with records waiting: fetch position, high watermark, last fetch.

    A partition whose position stays behind its high watermark while nothing is fetched for it is
    stalled (a consumer that silently stopped fetching after a rebalance); on-call sees it here.
    """
    consumer: Any = app.consumer
    try:
        assignment = consumer._thread._ensure_consumer()._fetcher._subscriptions.subscription.assignment
    except Exception:  # noqa: BLE001 - not started / rebalancing: nothing to report
        return {"ok": True, "behind": [], "stalled": []}
    behind: list[dict[str, Any]] = []
    for tp in sorted(consumer.assignment()):
        if _is_changelog(tp.topic) or assignment is None:
            continue
        state = assignment.state_value(tp)
        if state is None or state.highwater is None or not state.has_valid_position:
            continue
        if state.position >= state.highwater:
            continue
        last_fetch = state.timestamp / 1000 if state.timestamp else None
        behind.append({
            "topic": tp.topic, "partition": tp.partition, "position": state.position, "highwater": state.highwater,
            "paused": state.paused, "seconds_since_fetch": None if last_fetch is None else round(now - last_fetch, 1),
            "committed": consumer._committed_offset.get(tp), "read": consumer._read_offset.get(tp),
        })
    stalled = [b for b in behind if b["seconds_since_fetch"] is None or b["seconds_since_fetch"] > STALL_SECONDS]
    return {"ok": not stalled, "behind": behind, "stalled": [f"{b['topic']}[{b['partition']}]" for b in stalled]}


def _deadline_partitions(now: float) -> dict[str, Any]:
    """Per partition of the deadline index: how far the sweep has got and what is filed (for on-call)."""
    from processor import BUCKET_SECONDS

    parts: dict[int, dict[str, Any]] = {}
    for key, value in list(deadline_index.data.items()):
        partition, _, rest = str(key).partition(":")
        if not partition.isdigit():
            continue
        entry = parts.setdefault(int(partition), {"cursor_age_seconds": None, "buckets": 0, "filed": 0,
                                                   "earliest_due_in_seconds": None})
        bucket, _, chunk = rest.partition(":")  # "{bucket}", "{bucket}:{n}" or "{bucket}:tail" (processor.py)
        if rest == "cursor":
            entry["cursor_age_seconds"] = round(now - int(value) * BUCKET_SECONDS)
        elif bucket.lstrip("-").isdigit() and chunk != "tail":
            entry["buckets"] += 0 if chunk else 1
            entry["filed"] += bytes(value).count(b"\n")
            due_in = round(int(bucket) * BUCKET_SECONDS - now)
            if entry["earliest_due_in_seconds"] is None or due_in < entry["earliest_due_in_seconds"]:
                entry["earliest_due_in_seconds"] = due_in
    return {str(p): parts[p] for p in sorted(parts)}


_metrics.set_open_issue_source(lambda: list(_open_counts))
_metrics.set_parcels_tracked_source(lambda: float(len(parcel_state.data)))
_metrics.set_consumer_lag_source(_consumer_lag)
_metrics.PARTITIONS_HELD.set_function(lambda: len(_held_partitions()))


@app.page("/healthz")
class HealthView(web.View):
    """Broker, Redis and table recovery readiness, each checked for real; 503 unless all are ready."""

    async def get(self, request: web.Request) -> web.Response:
        checks: dict[str, dict[str, Any]] = {}
        try:
            producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 3)
            checks["broker"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            checks["broker"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        try:
            await asyncio.wait_for(store.redis.ping(), 2)
            checks["redis"] = {"ok": True, "sink_writing": redis_state["up"]}
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        # A record the broker did not accept stops all commits (kafka_tools.patch_send_failure_guard):
        # the worker must be restarted to re-process from its last commit.
        checks["producer"] = {"ok": not send_failures, "failed_sends": list(send_failures)}
        recovered = app.tables.recovery.completed.is_set() and not app.rebalancing  # type: ignore[attr-defined]
        checks["tables"] = {
            "ok": recovered,
            "rebalancing": bool(app.rebalancing),
            # Subjects (parcels and unshipped orders) in this worker's store, all its partitions.
            "subjects": len(parcel_state.data),
            "partitions": _held_partitions(),
        }
        if recovered:
            checks["streams"] = _stream_partitions(time.time())
        deadlines = _deadline_partitions(time.time())
        ok = all(c["ok"] for c in checks.values())
        return self.json({"ok": ok, "checks": checks, "deadline_index": deadlines}, status=200 if ok else 503)


@app.page("/lanes")
class LanesView(web.View):
    """Each learned lane: sample count, p50/p90 and the limit in use with its source (learned or fallback)."""

    async def get(self, request: web.Request) -> web.Response:
        now = time.time()
        lanes = [
            {
                "lane": s.lane,
                "samples": s.samples,
                "p50_hours": s.p50_hours,
                "p90_hours": s.p90_hours,
                "limit_hours": s.limit_hours,
                "source": s.source,
            }
            for s in baselines.stats(now)
        ]
        return self.json({"quantile": baselines.cfg.quantile, "window_days": baselines.cfg.window_days, "lanes": lanes})


@app.page("/metrics")
class MetricsView(web.View):
    async def get(self, request: web.Request) -> web.Response:
        # ``?name[]=a&name[]=b``: only those series, as prometheus_client's own exposition handlers allow.
        body, content_type = metrics.render(request.query.getall("name[]", []))  # type: ignore[attr-defined]
        return self.bytes(body, content_type=None, headers={"Content-Type": content_type})
