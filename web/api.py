"""The issue queue's JSON API and CSV export: what the queue page, the CLI's peers and other tools call.

Errors are JSON ``{"error": ..., "field": ...}``: 401 without a valid token, 404 for an unknown issue (or
another shop's: a token must not learn what other shops have), 409 for an illegal transition (with the
current state), 422 for a malformed body or query naming the field.
"""

from __future__ import annotations

import time
from typing import Any

import faust
from faust import web

from config import Settings
from domain.vocabulary import ACTIVE_STATUSES, ISSUE_KINDS, RESOLUTION_CODES, SEVERITIES, STATUSES, china_date, china_day_bounds
from issue_queue.access import Access, AccessDenied, visible_shops
from issue_queue.store import IssueStore
from issue_queue.views import label_issue, parse_day, to_csv
from telemetry.recorder import Recorder

from .views import BadRequest, choice, int_param, json_body, route, text, token_of

MAX_PAGE = 500
MAX_BULK = 500
MAX_NOTE = 1000


class IssueApi:
    """``/issues``, ``/issues.csv``, ``/issues/{id}`` and the staff transitions."""

    def __init__(self, app: faust.App, settings: Settings, store: IssueStore, access: Access, recorder: Recorder) -> None:
        self.settings = settings
        self.store = store
        self.access = access
        self.recorder = recorder
        route(app, "/issues", "issues", get=self.list)
        route(app, "/issues.csv", "issues_csv", get=self.csv)
        route(app, "/issues/{issue_id}", "issue", get=self.one)
        for action in ("acknowledge", "assign", "resolve"):
            route(app, f"/issues/{{issue_id}}/{action}", action, post=self._transition(action))
        route(app, "/bulk/acknowledge", "bulk_acknowledge", post=self.bulk_acknowledge)

    async def query_params(self, request: web.Request) -> dict[str, Any]:
        """Shared by the JSON list and the CSV export: filters, day, order, pagination."""
        q = request.query  # type: ignore[attr-defined]
        scope = self.access.read_scope(token_of(request))
        status_param = q.get("status") or ""
        statuses: tuple[str, ...] | None = tuple(s for s in status_param.split(",") if s) or None
        for s in statuses or ():
            if s not in STATUSES:
                raise BadRequest("status", f"unknown status {s[:30]!r}; expected one of {', '.join(STATUSES)}")
        day: tuple[float, float] | None = None
        if q.get("date"):
            try:
                day = china_day_bounds(parse_day(q["date"]))
            except ValueError as exc:
                raise BadRequest("date", str(exc)) from None
        elif q.get("today") in ("1", "true"):
            day = china_day_bounds(china_date(time.time()))
        if day is None and statuses is None:
            statuses = ACTIVE_STATUSES

        shops = visible_shops(scope, await self.store.shops(), q.get("shop") or None)
        return {
            "shops": shops,
            "statuses": statuses,
            "day": day,
            "kind": choice(q, "kind", ISSUE_KINDS),
            "severity": choice(q, "severity", SEVERITIES),
            "carrier": q.get("carrier") or None,
            "order": choice(q, "order", ("priority", "age"), "priority"),
            "offset": int_param(q, "offset", 0, 0, 10_000_000),
            "limit": int_param(q, "limit", 100, 1, MAX_PAGE),
        }

    async def list(self, view: web.View, request: web.Request) -> web.Response:
        """``GET /issues?shop=&kind=&severity=&carrier=&status=&date=YYYY-MM-DD&order=priority|age&offset=&limit=``."""
        try:
            params = await self.query_params(request)
        except (AccessDenied, BadRequest) as exc:
            return error(view, exc)
        result = await self.store.query(**params)
        lang = request.query.get("lang")  # type: ignore[attr-defined]
        # With ?lang=zh|en each issue also carries kind/severity/status labels in that language.
        issues = [label_issue(i, self.settings, lang) for i in result.issues] if lang in ("zh", "en") else result.issues
        return view.json({
            "total": result.total, "offset": params["offset"], "limit": params["limit"],
            "by_kind": result.by_kind, "issues": issues,
        })

    async def csv(self, view: web.View, request: web.Request) -> web.Response:
        """The same filters as ``/issues``, all matching rows, as CSV that Excel opens with Chinese intact."""
        try:
            params = await self.query_params(request)
            lang = choice(request.query, "lang", ("zh", "en"), "zh")  # type: ignore[attr-defined]
        except (AccessDenied, BadRequest) as exc:
            return error(view, exc)
        params.update(offset=0, limit=10_000_000)
        result = await self.store.query(**params)
        body = to_csv(result.issues, self.settings, lang or "zh")
        name = f"parcelwatch-issues-{time.strftime('%Y%m%d')}.csv"
        # aiohttp refuses a charset inside content_type=; the full header goes in headers instead.
        return view.bytes(body, content_type=None, headers={
            "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"'})

    async def one(self, view: web.View, request: web.Request, issue_id: str) -> web.Response:
        try:
            scope = self.access.read_scope(token_of(request))
        except AccessDenied as exc:
            return error(view, exc)
        doc = await self.store.get(issue_id)
        if doc is None or ("*" not in scope and doc["shop"] not in scope):
            return view.json({"error": f"no issue with id {issue_id[:40]!r}"}, status=404)
        return view.json(doc)

    def _transition(self, action: str) -> Any:
        async def handler(view: web.View, request: web.Request, issue_id: str) -> web.Response:
            return await self.transition(view, request, issue_id, action)

        return handler

    async def transition(self, view: web.View, request: web.Request, issue_id: str, action: str) -> web.Response:
        """``POST /issues/{id}/acknowledge`` · ``/assign`` ``{"assignee"}`` · ``/resolve`` ``{"resolution_code", "note"}``."""
        try:
            token = token_of(request)
            scope = self.access.write_scope(token)
            body = await json_body(request)
            by = text(body, "by", 64) or Access.label(token or "")
            payload: dict[str, Any] = {"by": by, "note": text(body, "note", MAX_NOTE)}
            if action == "assign":
                payload["assignee"] = text(body, "assignee", 64, required=True)
            elif action == "resolve":
                code = text(body, "resolution_code", 32, required=True)
                if code not in RESOLUTION_CODES:
                    raise BadRequest("resolution_code", f"unknown code {code!r}; expected one of {', '.join(RESOLUTION_CODES)}")
                payload["resolution_code"] = code
        except (AccessDenied, BadRequest) as exc:
            return error(view, exc)
        result = await self.store.staff_action(issue_id, action, payload, time.time(), scope)
        if action == "resolve" and result.get("ok") and not result.get("unchanged"):
            doc = await self.store.get(issue_id)
            if doc is not None:
                self.recorder.on_staff_resolution(doc["kind"])
        if result.get("ok"):
            return view.json({"id": issue_id, "status": result["status"], "unchanged": bool(result.get("unchanged"))})
        if result["error"] == "not_found":
            return view.json({"error": f"no issue with id {issue_id[:40]!r}"}, status=404)
        return view.json({"error": result.get("message", "illegal transition"), "current_status": result.get("current")},
                         status=409)

    async def bulk_acknowledge(self, view: web.View, request: web.Request) -> web.Response:
        """``POST {"ids": [...], "by": "...", "note": "..."}``: acknowledge each; per-id results."""
        try:
            token = token_of(request)
            scope = self.access.write_scope(token)
            body = await json_body(request)
            ids = body.get("ids")
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and len(i) <= 40 for i in ids):
                raise BadRequest("ids", "must be a non-empty list of issue ids")
            if len(ids) > MAX_BULK:
                raise BadRequest("ids", f"at most {MAX_BULK} ids per request")
            payload = {"by": text(body, "by", 64) or Access.label(token or ""), "note": text(body, "note", MAX_NOTE)}
        except (AccessDenied, BadRequest) as exc:
            return error(view, exc)
        now = time.time()
        results = {}
        for issue_id in dict.fromkeys(ids):
            r = await self.store.staff_action(issue_id, "acknowledge", payload, now, scope)
            results[issue_id] = r.get("status") if r.get("ok") else r["error"]
        return view.json({"results": results})


def error(view: web.View, exc: Exception) -> web.Response:
    if isinstance(exc, AccessDenied):
        return view.json({"error": str(exc)}, status=401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, BadRequest):
        return view.json({"error": str(exc), "field": exc.field}, status=422)
    raise exc
