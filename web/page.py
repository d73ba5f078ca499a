"""The queue page for after-sales staff: sign in as yourself, work the queue, see each parcel's story, and a
shop's logistics health (物流体验).

Server-rendered HTML plus static scripts and a stylesheet (no build step, nothing fetched from elsewhere;
a strict Content-Security-Policy allows only this origin, with ``base-uri`` and ``form-action`` too). The
scripts use the JSON API, so the page sees exactly what its signed-in person may see. Sessions, cookies
and CSRF rules are in ``web/session.py``.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import faust
import orjson
from faust import web

from config import Labels
from domain.vocabulary import CARRIERS, ISSUE_KINDS, PLATFORM_LABELS, RESOLUTION_LABELS, SEVERITY_LABELS, STATUS_LABELS, STATUSES
from issue_queue.people import ROLES, Account, People, Session
from issue_queue.store import IssueStore
from issue_queue.texts import carrier_name, error_text

from .health_view import HEALTH_TEXT
from .session import (
    Callers,
    Unauthorized,
    clear_session_cookie,
    new_signin_token,
    same_origin,
    session_id_of,
    set_session_cookie,
    set_signin_cookie,
    signin_token_ok,
)
from .views import REDIS_WAIT_SECONDS, lang_of, redis_cause, reply, route

STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {"queue.js": "text/javascript; charset=utf-8", "health.js": "text/javascript; charset=utf-8",
                "common.js": "text/javascript; charset=utf-8", "queue.css": "text/css; charset=utf-8"}
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
REFRESH_SECONDS = 15
PAGE_SIZES = ("20", "50", "100", "200")

# What the page says: (Chinese, English) per text; "js" holds those the script uses.
TEXT: dict[str, tuple[str, str]] = {
    "title": ("问题包裹队列", "Problem-parcel queue"),
    "health_title": ("物流体验", "Logistics health"),
    "signin": ("登录", "Sign in"),
    "login": ("账号", "Account"),
    "password": ("密码", "Password"),
    "signin_hint": ("用自己的账号登录：处理记录会写上你的名字。", "Sign in as yourself: the history records your name."),
    "no_accounts": ("还没有员工账号。管理员可用 python app.py staff add 账号 --name 姓名 --shops 店铺 创建。",
                    "No staff accounts yet. An administrator creates one with python app.py staff add LOGIN --name NAME --shops SHOPS."),
    "shop": ("店铺", "Shop"),
    "kind": ("问题类型", "Kind"),
    "severity": ("严重程度", "Severity"),
    "carrier": ("快递公司", "Carrier"),
    "platform": ("平台", "Platform"),
    "status": ("状态", "Status"),
    "date": ("日期", "Date"),
    "order": ("排序", "Order"),
    "priority": ("紧急优先", "Most urgent first"),
    "age": ("最早优先", "Oldest first"),
    "all": ("全部", "All"),
    "active": ("待办", "To do"),
    "mine": ("只看分配给我的", "Only assigned to me"),
    "search": ("搜索订单号或运单号", "Search an order id or tracking number"),
    "search_go": ("搜索", "Search"),
    "clear": ("清除", "Clear"),
    "bulk_ack": ("批量确认", "Acknowledge selected"),
    "csv": ("导出 Excel", "Export to Excel"),
    "signout": ("退出", "Sign out"),
    "other_lang": ("English", "中文"),
    "queue_nav": ("问题队列", "Queue"),
    "counts_kind": ("各类问题", "By kind"),
    "counts_sev": ("严重程度", "By severity"),
    "counts_shop": ("各店铺", "By shop"),
    "select": ("选择", "Select"),
    "sev": ("级别", "Severity"),
    "issue": ("问题", "Issue"),
    "where": ("店铺 / 平台", "Shop / platform"),
    "parcel": ("订单 / 运单", "Order / parcel"),
    "to": ("目的地 / 金额", "Destination / value"),
    "scan": ("最新物流", "Latest scan"),
    "why": ("原因", "Why"),
    "actions": ("操作", "Actions"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "page_size": ("每页", "Per page"),
    "pager": ("翻页", "Pages"),
    "filters": ("筛选", "Filters"),
    "who": ("{name}（{role}）", "{name} ({role})"),
    "shops_all": ("全部店铺", "all shops"),
    "unavailable": ("问题队列暂时无法读取：{cause}。请稍后刷新。", "The issue queue cannot be read right now: {cause}. Reload shortly."),
    "days": ("统计天数", "Days"),
    "health_shop": ("店铺", "Shop"),
}
SCRIPT_TEXT: dict[str, tuple[str, str]] = {
    "done_acknowledge": ("已确认", "Acknowledged"),
    "done_assign": ("已分配给你", "Assigned to you"),
    "done_resolve": ("已标记解决", "Resolved"),
    "evidence": ("依据", "Evidence"),
    "suggested": ("建议操作", "Suggested action"),
    "history": ("处理记录", "History"),
    "scans": ("物流轨迹", "Tracking"),
    "noScans": ("还没有物流记录", "No scans yet"),
    "resolution": ("处理结果", "Resolution"),
    "note": ("备注", "Note"),
    "resolve": ("解决", "Resolve"),
    "select": ("选择", "Select"),
    "details": ("详情", "Details"),
    "hideDetails": ("收起", "Hide"),
    "acknowledge": ("确认", "Acknowledge"),
    "assignMe": ("分配给我", "Assign to me"),
    "empty": ("没有符合条件的问题包裹", "No problem parcels match"),
    "range": ("第 {from}–{to} 条，共 {total} 条", "{from}–{to} of {total}"),
    "none": ("共 0 条", "0 issues"),
    "noneSelected": ("请先勾选问题", "Select issues first"),
    "loading": ("正在加载…", "Loading…"),
    "timeout": ("服务器没有响应（{seconds} 秒），请稍后重试", "The server did not answer ({seconds} s); try again shortly"),
    "network": ("网络连接失败，请检查网络后重试", "The network failed; check the connection and try again"),
    "new": ("新", "New"),
    "newSince": ("自你上次打开以来新增 {n} 条", "{n} new since you last opened the queue"),
    "updates": ("列表有更新，点击刷新", "The list has changed: show the changes"),
    "copy": ("复制", "Copy"),
    "copied": ("已复制 {text}", "Copied {text}"),
    "copyFailed": ("复制失败，请手动选择复制", "Could not copy; select the text instead"),
    "track": ("查物流", "Track"),
    "overdue": ("已超时 {d}", "{d} overdue"),
    "leftConfirm": ("距自动确认还有 {d}", "{d} left before auto-confirm"),
    "pastConfirm": ("已过自动确认时间 {d}", "auto-confirmed {d} ago"),
    "ago": ("{d}前", "{d} ago"),
    "confirmBy": ("自动确认 {t}", "auto-confirm {t}"),
    "bulkDone": ("已确认 {n} 条", "{n} acknowledged"),
    "bulkGone": ("{n} 条已不在你的队列中", "{n} no longer in your queue"),
    "bulkConflict": ("{n} 条已解决，无法确认", "{n} already resolved, not acknowledged"),
    "searchFor": ("搜索“{q}”：共 {total} 条", "Search “{q}”: {total}"),
    "signinTitle": ("登录已过期，请重新登录", "Your sign-in has expired; sign in again"),
    "signinGo": ("登录并继续", "Sign in and continue"),
    "cancel": ("取消", "Cancel"),
    "closed": ("已结束", "Closed"),
    "readOnly": ("只读", "Read-only"),
    "minutes": ("{n} 分钟", "{n} min"),
    "hours": ("{n} 小时", "{n} h"),
    "days": ("{n} 天", "{n} d"),
    "daysHours": ("{d} 天 {h} 小时", "{d} d {h} h"),
    "orderValue": ("¥{v}", "¥{v}"),
    "assignee": ("处理人：{name}", "Assignee: {name}"),
    "allShops": ("全部", "All"),
}


def _texts(table: dict[str, tuple[str, str]], lang: str) -> dict[str, str]:
    """One language's side of a (Chinese, English) table."""
    i = 1 if lang == "en" else 0
    return {k: v[i] for k, v in table.items()}


def _page(view: web.View, title: str, body: str, lang: str, status: int = 200) -> web.Response:
    doc = (f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
           f'<link rel="icon" href="data:,"><link rel="stylesheet" href="/queue/static/queue.css"></head><body>{body}</body></html>')
    return view.bytes(doc.encode(), content_type=None, status=status,
                      headers={**HEADERS, "Content-Type": "text/html; charset=utf-8"})


def _options(pairs: list[tuple[str, str]], selected: str | None = None) -> str:
    return "".join(f'<option value="{html.escape(v)}"{" selected" if v == selected else ""}>{html.escape(label)}</option>'
                   for v, label in pairs)


def _attr(value: Any) -> str:
    return html.escape(json.dumps(value, ensure_ascii=False), quote=True)


@dataclass(frozen=True, slots=True)
class _Signed:
    """A page's signed-in person: the session (and its new id when rotated), the shops they see, and their
    previous visit."""

    session: Session
    account: Account
    rotated: Session | None
    shops: list[str]
    since: float


class QueuePage:
    """``/queue``: the page, its sign-in and sign-out, the health view and the static files."""

    def __init__(self, app: faust.App, labels: Labels, store: IssueStore, people: People, callers: Callers) -> None:
        self.labels, self.store, self.people, self.callers = labels, store, people, callers
        route(app, "/queue", "queue_page", get=self.page)
        route(app, "/queue/health", "queue_health", get=self.health_page)
        route(app, "/queue/signin", "queue_signin", get=self.signin_token, post=self.sign_in)
        route(app, "/queue/signout", "queue_signout", post=self.sign_out)
        route(app, "/queue/static/{name}", "queue_static", get=self.static)

    # -- sign-in ------------------------------------------------------------------------------------------------

    async def _signin_page(self, view: web.View, request: web.Request, lang: str, error: str | None = None,
                           status: int = 200) -> web.Response:
        t = _texts(TEXT, lang)
        e = html.escape
        token = new_signin_token(request)
        msg = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
        hint = t["signin_hint"] if await self.people.any() else t["no_accounts"]
        other = "en" if lang == "zh" else "zh"
        body = (f'<main class="signin"><h1>{e(t["title"])}</h1>{msg}<p class="hint">{e(hint)}</p>'
                f'<form method="post" action="/queue/signin?lang={lang}">'
                f'<input type="hidden" name="csrf" value="{e(token)}">'
                f'<label>{e(t["login"])}<input name="login" autocomplete="username" autocapitalize="none" required autofocus '
                f'maxlength="32"></label>'
                f'<label>{e(t["password"])}<input type="password" name="password" autocomplete="current-password" required '
                f'maxlength="200"></label>'
                f'<button class="primary" type="submit">{e(t["signin"])}</button></form>'
                f'<p><a href="/queue?lang={other}">{e(t["other_lang"])}</a></p></main>')
        response = _page(view, t["title"], body, lang, status=status)
        set_signin_cookie(response, request, token)
        return response

    async def signin_token(self, view: web.View, request: web.Request) -> web.Response:
        """``GET /queue/signin``: a sign-in token for the page's own sign-in dialog (a session that expired
        while a note was being typed signs in again without leaving the page)."""
        token = new_signin_token(request)
        response = reply(view, {"csrf": token})
        set_signin_cookie(response, request, token)
        return response

    async def sign_in(self, view: web.View, request: web.Request) -> web.Response:
        """``POST /queue/signin``: the form (answered with a redirect) or the dialog's JSON (answered with the
        new session's CSRF token)."""
        lang = lang_of(request)
        raw = await request.read()  # type: ignore[attr-defined]
        as_json = "json" in request.headers.get("Content-Type", "")  # type: ignore[attr-defined]
        if as_json:
            try:
                body = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                body = {}
            form = {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
        else:
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", errors="replace")).items()}
        if not signin_token_ok(request, form.get("csrf")):
            if as_json:
                return reply(view, {"error": error_text("csrf", lang), "code": "csrf"}, 403)
            return await self._signin_page(view, request, lang, error_text("csrf", lang), status=403)
        try:
            outcome = await self.people.authenticate(form.get("login", "")[:32], form.get("password", "")[:200])
        except Exception as exc:
            if redis_cause(exc) is None:
                raise
            return self._unavailable(view, lang, redis_cause(exc) or "error")
        if not isinstance(outcome, Account):
            message = error_text(outcome, lang, minutes=15)
            if as_json:
                return reply(view, {"error": message, "code": outcome}, 401)
            return await self._signin_page(view, request, lang, message, status=401)
        old = session_id_of(request)
        if old:
            await self.people.end_session(old)  # whatever id the browser held before sign-in is not reused
        session = await self.people.start_session(outcome, time.time())
        if as_json:
            response = reply(view, {"ok": True, "csrf": session.csrf, "name": outcome.name})
        else:
            response = view.bytes(b"", content_type=None, status=303, headers={"Location": f"/queue?lang={lang}", **HEADERS})
        set_session_cookie(response, request, session.id)
        return response

    async def sign_out(self, view: web.View, request: web.Request) -> web.Response:
        """``POST /queue/signout``: the session ends in Redis (its id is worthless from now on), then the cookie."""
        lang = lang_of(request)
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode("utf-8", errors="replace")).items()}  # type: ignore[attr-defined]
        session = await self.people.session(session_id_of(request), time.time())
        if session is not None:
            if form.get("csrf") != session.csrf or not same_origin(request):
                return reply(view, {"error": error_text("csrf", lang), "code": "csrf"}, 403)
            await self.people.end_session(session.id)
        response = view.bytes(b"", content_type=None, status=303, headers={"Location": f"/queue?lang={lang}", **HEADERS})
        clear_session_cookie(response, request)
        return response

    def _unavailable(self, view: web.View, lang: str, cause: str) -> web.Response:
        t = _texts(TEXT, lang)
        text = t["unavailable"].format(cause=error_text(f"redis_{cause}", lang))
        body = f'<main class="signin"><h1>{html.escape(t["title"])}</h1><p class="error" role="alert">{html.escape(text)}</p></main>'
        return _page(view, t["title"], body, lang, status=503)

    # -- the pages --------------------------------------------------------------------------------------------------

    async def _signed_in(self, view: web.View, request: web.Request, lang: str, *, visit: bool = False) -> _Signed | web.Response:
        """The signed-in person's page context, or the answer to give instead: the sign-in page, or 503 when
        Redis does not answer. ``visit``: the page records the visit (``since``: the one before)."""
        try:
            caller = await asyncio.wait_for(self.callers.resolve(request), REDIS_WAIT_SECONDS)
            if caller.session is None or caller.account is None:
                return await self._signin_page(view, request, lang)
            rotated = await asyncio.wait_for(self.callers.rotate_if_due(caller.session), REDIS_WAIT_SECONDS)
            known = await asyncio.wait_for(self.store.shops(), REDIS_WAIT_SECONDS)
            since = 0.0
            if visit:
                since = await asyncio.wait_for(self.people.previous_visit(caller.account.login, time.time()), REDIS_WAIT_SECONDS)
        except Unauthorized:
            return await self._signin_page(view, request, lang)
        except Exception as exc:
            cause = redis_cause(exc)
            if cause is None:
                raise
            return self._unavailable(view, lang, cause)
        account = caller.account
        shops = known if "*" in account.shops else account.shops
        return _Signed(caller.session, account, rotated, shops, since)

    def _header(self, account: Account, lang: str, csrf: str, here: str) -> str:
        t = _texts(TEXT, lang)
        e = html.escape
        other = "en" if lang == "zh" else "zh"
        role = ROLES.get(account.role, (account.role, account.role))[0 if lang == "zh" else 1]
        shops = t["shops_all"] if "*" in account.shops else "、".join(account.shops)
        current = ' aria-current="page"'
        nav = "".join(
            f'<a href="{href}?lang={lang}"{current if href == here else ""}>{e(label)}</a>'
            for href, label in (("/queue", t["queue_nav"]), ("/queue/health", t["health_title"])))
        return (f'<header class="top"><h1>{e(t["title"] if here == "/queue" else t["health_title"])}</h1>'
                f'<nav class="views">{nav}</nav><span class="spacer"></span>'
                f'<span class="who" title="{e(shops)}">{e(t["who"].format(name=account.name, role=role))}</span>'
                f'<a href="{here}?lang={other}">{e(t["other_lang"])}</a>'
                f'<form method="post" action="/queue/signout?lang={lang}"><input type="hidden" name="csrf" value="{e(csrf)}">'
                f'<button type="submit">{e(t["signout"])}</button></form></header>')

    def _respond(self, view: web.View, request: web.Request, title: str, body: str, lang: str,
                 rotated: Session | None) -> web.Response:
        response = _page(view, title, body, lang)
        if rotated is not None:
            set_session_cookie(response, request, rotated.id)
        return response

    async def page(self, view: web.View, request: web.Request) -> web.Response:
        lang = lang_of(request)
        signed = await self._signed_in(view, request, lang, visit=True)
        if not isinstance(signed, _Signed):
            return signed
        session, account, shops, since = signed.session, signed.account, signed.shops, signed.since
        t = _texts(TEXT, lang)
        i = 0 if lang == "zh" else 1
        kinds = [(k, self.labels.kind(k, lang)) for k in ISSUE_KINDS]
        severities = [(k, v[i]) for k, v in SEVERITY_LABELS.items()]
        labels = {**_texts(SCRIPT_TEXT, lang), "kinds": dict(kinds), "severities": dict(severities),
                  "codes": {c: v[i] for c, v in RESOLUTION_LABELS.items()}}
        e = html.escape
        filters = (
            f'<label>{e(t["shop"])}<select name="shop">{_options([("", t["all"])] + [(s, s) for s in shops])}</select></label>'
            f'<label>{e(t["kind"])}<select name="kind">{_options([("", t["all"]), *kinds])}</select></label>'
            f'<label>{e(t["severity"])}<select name="severity">{_options([("", t["all"]), *severities])}</select></label>'
            f'<label>{e(t["carrier"])}<select name="carrier">'
            f'{_options([("", t["all"])] + [(c, carrier_name(c, lang)) for c in CARRIERS])}</select></label>'
            f'<label>{e(t["platform"])}<select name="platform">'
            f'{_options([("", t["all"])] + [(p, v[i]) for p, v in PLATFORM_LABELS.items()])}</select></label>'
            f'<label>{e(t["status"])}<select name="status">'
            f'{_options([("open,acknowledged", t["active"]), (",".join(STATUSES), t["all"])] + [(s, STATUS_LABELS[s][i]) for s in STATUSES])}'
            f'</select></label>'
            f'<label>{e(t["date"])}<input type="date" name="date"></label>'
            f'<label>{e(t["order"])}<select name="order">{_options([("priority", t["priority"]), ("age", t["age"])])}'
            f'</select></label>'
            f'<label class="check"><input type="checkbox" name="mine" value="1">{e(t["mine"])}</label>'
        )
        write = account.can_write
        heads = [("sev", "sev"), ("issue", "issue"), ("where", "where"), ("parcel", "parcel"), ("to", "to"),
                 ("scan", "scan"), ("why", "why"), ("status", "status"), ("actions", "actions")]
        if write:
            heads.insert(0, ("select", "select"))
        head_html = "".join(f'<th scope="col" class="col-{c}">{e(t[k])}</th>' for k, c in heads)
        body = (
            self._header(account, lang, session.csrf, "/queue")
            + f'<main id="queue-app" data-lang="{lang}" data-labels="{_attr(labels)}" data-csrf="{e(session.csrf)}" '
            f'data-since="{since!r}" data-write="{"1" if write else "0"}" data-refresh="{REFRESH_SECONDS}">'
            f'<form id="search" class="search" role="search"><label for="q">{e(t["search"])}</label>'
            f'<input id="q" type="search" name="q" maxlength="64" autocomplete="off" inputmode="search">'
            f'<button type="submit">{e(t["search_go"])}</button><button type="button" id="clear-search" hidden>{e(t["clear"])}</button></form>'
            f'<details class="filters-box" open><summary>{e(t["filters"])}</summary>'
            f'<form id="filters" class="filters" aria-label="{e(t["filters"])}">{filters}</form></details>'
            f'<div class="counts"><ul id="kind-counts" aria-label="{e(t["counts_kind"])}"></ul>'
            f'<ul id="severity-counts" aria-label="{e(t["counts_sev"])}"></ul>'
            f'<ul id="shop-counts" aria-label="{e(t["counts_shop"])}"></ul></div>'
            f'<div class="toolbar">'
            + (f'<button id="bulk-ack" type="button">{e(t["bulk_ack"])}</button>' if write else "")
            + f'<a id="csv" href="/issues.csv">{e(t["csv"])}</a>'
            f'<label class="page-size">{e(t["page_size"])}<select id="page-size">{_options([(n, n) for n in PAGE_SIZES], "50")}'
            f'</select></label>'
            f'<p id="new-since" class="new-since" hidden></p></div>'
            f'<div id="status" class="status" role="status" aria-live="polite" tabindex="-1">'
            f'<span class="spinner" hidden aria-hidden="true"></span><span class="msg"></span></div>'
            f'<p class="notice" id="notice" hidden><button type="button" id="show-updates"></button></p>'
            f'<table class="queue"><thead><tr>{head_html}</tr></thead><tbody id="rows"></tbody></table>'
            f'<nav class="pager" aria-label="{e(t["pager"])}"><button type="button" id="prev">{e(t["prev"])}</button>'
            f'<span id="range"></span><button type="button" id="next">{e(t["next"])}</button></nav></main>'
            f'<dialog id="signin-dialog"><form method="dialog" id="signin-form"><h2 id="signin-title"></h2>'
            f'<p class="error" id="signin-error" role="alert" hidden></p>'
            f'<label>{e(t["login"])}<input name="login" autocomplete="username" autocapitalize="none" required maxlength="32"></label>'
            f'<label>{e(t["password"])}<input type="password" name="password" autocomplete="current-password" required maxlength="200"></label>'
            f'<div class="actions"><button class="primary" type="submit" id="signin-go"></button>'
            f'<button type="button" id="signin-cancel"></button></div></form></dialog>'
            f'<script src="/queue/static/common.js"></script><script src="/queue/static/queue.js"></script>'
        )
        return self._respond(view, request, t["title"], body, lang, signed.rotated)

    async def health_page(self, view: web.View, request: web.Request) -> web.Response:
        """``/queue/health``: a shop's logistics health (its data from ``/shop-health``)."""
        lang = lang_of(request)
        signed = await self._signed_in(view, request, lang)
        if not isinstance(signed, _Signed):
            return signed
        t = _texts(TEXT, lang)
        e = html.escape
        shops = signed.shops
        body = (
            self._header(signed.account, lang, signed.session.csrf, "/queue/health")
            + f'<main id="health-app" data-lang="{lang}" data-labels="{_attr(_texts(HEALTH_TEXT, lang))}">'
            f'<form id="health-filters" class="filters">'
            f'<label>{e(t["health_shop"])}<select name="shop">{_options([(s, s) for s in shops])}</select></label>'
            f'<label>{e(t["days"])}<select name="days">{_options([("7", "7"), ("30", "30"), ("90", "90")], "30")}</select></label>'
            f'</form><div id="status" class="status" role="status" aria-live="polite"><span class="spinner" hidden aria-hidden="true">'
            f'</span><span class="msg"></span></div><div id="health"></div></main>'
            f'<script src="/queue/static/common.js"></script><script src="/queue/static/health.js"></script>'
        )
        return self._respond(view, request, t["health_title"], body, lang, signed.rotated)

    async def static(self, view: web.View, request: web.Request, name: str) -> web.Response:
        if name not in STATIC_TYPES:
            return reply(view, {"error": "not found"}, 404)
        return view.bytes((STATIC / name).read_bytes(), content_type=None,
                          headers={"Content-Type": STATIC_TYPES[name], "X-Content-Type-Options": "nosniff",
                                   "Cache-Control": "no-cache"})
