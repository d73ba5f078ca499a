"""The issue queue's JSON API and CSV export: what the queue page, the CLI's peers and other tools call.

Callers: a person signed in to the queue page (session cookie, CSRF token on every change) or a machine
with an API token (``Authorization: Bearer``); ``web/session.py``. Texts come in the caller's language
(``lang=en``, Chinese by default), rendered by ``issue_queue/texts.py``.

Errors are JSON ``{"error": ..., "code": ..., "field": ...}``: 401 without a valid session or token, 403 for
a read-only account or a missing CSRF token, 404 for an unknown issue (or another shop's: a caller must not
learn what other shops have), 409 for an illegal transition (with the current state), 422 for a malformed
body or query naming the field, 503 when Redis does not answer (naming the cause, within 1.5 s).
"""

from __future__ import annotations

import time
from typing import Any

import faust
from faust import web

from config import Settings
from domain.vocabulary import ACTIVE_STATUSES, ISSUE_KINDS, PLATFORMS, RESOLUTION_CODES, SEVERITIES, STATUSES, china_date, china_day_bounds
from issue_queue.store import IssueStore
from issue_queue.texts import error_text
from issue_queue.views import label_issue, parse_day, to_csv
from telemetry.recorder import Recorder

from .session import Caller, Callers
from .views import DATA_HEADERS, BadRequest, choice, guarded, int_param, json_body, lang_of, reply, route, text

MAX_PAGE = 500
MAX_BULK = 500
MAX_NOTE = 1000
# A CSV export reads every matching issue: it may take longer than a page before Redis counts as hung.
CSV_WAIT_SECONDS = 30.0


class IssueApi:
    """``/issues``, ``/issues.csv``, ``/issues/{id}`` and the staff transitions."""

    def __init__(self, app: faust.App, settings: Settings, store: IssueStore, callers: Callers, recorder: Recorder) -> None:
        self.settings = settings
        self.store = store
        self.callers = callers
        self.recorder = recorder
        route(app, "/issues", "issues", get=guarded(self.list))
        route(app, "/issues.csv", "issues_csv", get=guarded(self.csv, CSV_WAIT_SECONDS))
        route(app, "/issues/{issue_id}", "issue", get=guarded(self.one))
        for action in ("acknowledge", "assign", "resolve"):
            route(app, f"/issues/{{issue_id}}/{action}", action, post=guarded(self._transition(action)))
        route(app, "/bulk/acknowledge", "bulk_acknowledge", post=guarded(self.bulk_acknowledge))

    async def query_params(self, request: web.Request, caller: Caller) -> dict[str, Any] | None:
        """Shared by the JSON list and the CSV export: filters, day or search, order, pagination (None: the
        caller may see no shop asked for)."""
        q = request.query  # type: ignore[attr-defined]
        status_param = q.get("status") or ""
        statuses: tuple[str, ...] | None = tuple(s for s in status_param.split(",") if s) or None
        for s in statuses or ():
            if s not in STATUSES:
                raise BadRequest("status", f"unknown status {s[:30]!r}; expected one of {', '.join(STATUSES)}",
                                 f"不认识的状态 {s[:30]!r}")
        search = (q.get("q") or "").strip() or None
        if search is not None and len(search) > 64:
            raise BadRequest("q", "is longer than 64 characters", "超过 64 个字")
        day: tuple[float, float] | None = None
        if search is None:
            if q.get("date"):
                try:
                    day = china_day_bounds(parse_day(q["date"]))
                except ValueError as exc:
                    raise BadRequest("date", str(exc), "应为 年-月-日，例如 2026-11-03") from None
            elif q.get("today") in ("1", "true"):
                day = china_day_bounds(china_date(time.time()))
            if day is None and statuses is None:
                statuses = ACTIVE_STATUSES
        known = await self.store.shops()
        allowed = known if "*" in caller.shops else [s for s in caller.shops if s != "*"]
        shop = q.get("shop") or None
        if shop is not None and shop not in allowed:
            if "*" not in caller.shops:
                return None
            allowed = [*allowed, shop]
        mine = q.get("mine") in ("1", "true")
        since_raw = q.get("since")
        try:
            since = float(since_raw) if since_raw else None
        except ValueError:
            raise BadRequest("since", "expected epoch seconds", "应为时间戳（秒）") from None
        return {
            "shops": sorted(allowed),
            "shop": shop,
            "statuses": statuses,
            "day": day,
            "search": search,
            "kind": choice(q, "kind", ISSUE_KINDS),
            "severity": choice(q, "severity", SEVERITIES),
            "platform": choice(q, "platform", PLATFORMS),
            "carrier": q.get("carrier") or None,
            "assignee": caller.account.login if mine and caller.account is not None else None,
            "since": since,
            "order": choice(q, "order", ("priority", "age"), "priority"),
            "offset": int_param(q, "offset", 0, 0, 10_000_000),
            "limit": int_param(q, "limit", 100, 1, MAX_PAGE),
        }

    async def list(self, view: web.View, request: web.Request) -> web.Response:
        """``GET /issues?shop=&kind=&severity=&carrier=&platform=&status=&date=YYYY-MM-DD&q=&mine=&since=
        &order=priority|age&offset=&limit=&lang=``: a page, its total, and the count each filter would give."""
        caller = await self.callers.resolve(request)
        lang = choice(request.query, "lang", ("zh", "en"), "zh") or "zh"  # type: ignore[attr-defined]
        params = await self.query_params(request, caller)
        if params is None:
            return reply(view, {"total": 0, "offset": 0, "limit": 0, "new": 0, "by_kind": {}, "by_severity": {},
                                "by_shop": {}, "issues": []})
        result = await self.store.query(**params, stories=True)
        return reply(view, {
            "total": result.total, "offset": params["offset"], "limit": params["limit"], "new": result.new,
            "by_kind": result.by_kind, "by_severity": result.by_severity, "by_shop": result.by_shop,
            "issues": [label_issue(i, self.settings, lang) for i in result.issues],
        })

    async def csv(self, view: web.View, request: web.Request) -> web.Response:
        """The same filters as ``/issues``, all matching rows, as CSV that Excel opens with Chinese intact."""
        caller = await self.callers.resolve(request)
        lang = choice(request.query, "lang", ("zh", "en"), "zh") or "zh"  # type: ignore[attr-defined]
        params = await self.query_params(request, caller)
        issues: list[dict[str, Any]] = []
        if params is not None:
            params.update(offset=0, limit=10_000_000)
            issues = (await self.store.query(**params, stories=True)).issues
        body = to_csv(issues, self.settings, lang)
        name = f"parcelwatch-issues-{time.strftime('%Y%m%d')}.csv"
        # aiohttp refuses a charset inside content_type=; the full header goes in headers instead.
        return view.bytes(body, content_type=None, headers={
            **DATA_HEADERS, "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"'})

    async def one(self, view: web.View, request: web.Request, issue_id: str) -> web.Response:
        """One issue with its history and its parcel's whole story."""
        caller = await self.callers.resolve(request)
        lang = lang_of(request)
        doc = await self.store.get(issue_id)
        if doc is None or ("*" not in caller.shops and doc["shop"] not in caller.shops):
            return reply(view, {"error": error_text("not_found", lang, id=issue_id[:40]), "code": "not_found"}, 404)
        return reply(view, label_issue(await self.store.story(doc), self.settings, lang))

    def _transition(self, action: str) -> Any:
        async def handler(view: web.View, request: web.Request, issue_id: str) -> web.Response:
            return await self.transition(view, request, issue_id, action)

        return handler

    def _payload(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        """Who acts (the signed-in person; a token's label), and the note."""
        payload: dict[str, Any] = {**caller.actor(), "note": text(body, "note", MAX_NOTE)}
        if caller.account is None:
            claimed = text(body, "by", 64)
            if claimed:
                payload["on_behalf_of"] = claimed
        return payload

    async def transition(self, view: web.View, request: web.Request, issue_id: str, action: str) -> web.Response:
        """``POST /issues/{id}/acknowledge`` · ``/assign`` ``{"assignee"}`` (a person: to themselves) ·
        ``/resolve`` ``{"resolution_code", "note"}``."""
        caller = await self.callers.resolve(request, write=True)
        lang = lang_of(request)
        body = await json_body(request)
        payload = self._payload(caller, body)
        if action == "assign":
            if caller.account is not None:
                payload.update(assignee=caller.account.name, assignee_login=caller.account.login)
            else:
                payload["assignee"] = text(body, "assignee", 64, required=True)
        elif action == "resolve":
            code = text(body, "resolution_code", 32, required=True)
            if code not in RESOLUTION_CODES:
                raise BadRequest("resolution_code", f"unknown code {code!r}; expected one of {', '.join(RESOLUTION_CODES)}",
                                 f"不认识的处理结果 {code!r}")
            payload["resolution_code"] = code
        result = await self.store.staff_action(issue_id, action, payload, time.time(), caller.shops)
        if action == "resolve" and result.get("ok") and not result.get("unchanged"):
            doc = await self.store.get(issue_id)
            if doc is not None:
                self.recorder.on_staff_resolution(doc["kind"])
        if result.get("ok"):
            return reply(view, {"id": issue_id, "status": result["status"], "unchanged": bool(result.get("unchanged"))})
        if result["error"] == "not_found":
            return reply(view, {"error": error_text("not_found", lang, id=issue_id[:40]), "code": "not_found"}, 404)
        return reply(view, {"error": error_text("conflict", lang, status=result.get("current"), action=action),
                            "code": "conflict", "current_status": result.get("current")}, 409)

    async def bulk_acknowledge(self, view: web.View, request: web.Request) -> web.Response:
        """``POST {"ids": [...], "note": "..."}``: acknowledge each; a result per id (``acknowledged``, or
        ``not_found`` / ``conflict``), with counts."""
        caller = await self.callers.resolve(request, write=True)
        body = await json_body(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and len(i) <= 40 for i in ids):
            raise BadRequest("ids", "must be a non-empty list of issue ids", "应为问题编号的列表")
        if len(ids) > MAX_BULK:
            raise BadRequest("ids", f"at most {MAX_BULK} ids per request", f"一次最多 {MAX_BULK} 个")
        payload = self._payload(caller, body)
        now = time.time()
        results: dict[str, str] = {}
        for issue_id in dict.fromkeys(ids):
            r = await self.store.staff_action(issue_id, "acknowledge", payload, now, caller.shops)
            results[issue_id] = str(r.get("status") if r.get("ok") else r["error"])
        counts: dict[str, int] = {}
        for outcome in results.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return reply(view, {"results": results, "counts": counts})
