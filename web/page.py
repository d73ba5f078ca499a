"""The queue page for after-sales staff: sign in with the shop token, work today's queue.

Server-rendered HTML plus one static script and stylesheet (no build step, nothing fetched from
elsewhere; a strict Content-Security-Policy allows only this origin). The script uses the JSON API, so
the page sees exactly what the token may see. The token lives in an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import faust
from faust import web

from config import Labels
from domain.vocabulary import CARRIERS, ISSUE_KINDS, RESOLUTION_LABELS, SEVERITY_LABELS, STATUS_LABELS, STATUSES
from issue_queue.access import Access
from issue_queue.store import IssueStore

from .views import route, token_of

STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {"queue.js": "text/javascript; charset=utf-8", "queue.css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TEXT: dict[str, dict[str, Any]] = {
    "zh": {
        "title": "问题包裹队列", "signin": "登录", "token": "店铺令牌", "bad_token": "令牌无效，请重新输入。",
        "shop": "店铺", "kind": "问题类型", "severity": "严重程度", "carrier": "快递公司", "status": "状态",
        "date": "日期", "order": "排序", "priority": "按优先级", "age": "按时间", "all": "全部", "active": "待办",
        "apply": "筛选", "my_name": "我的名字", "bulk_ack": "批量确认", "csv": "导出 Excel (CSV)",
        "signout": "退出", "other_lang": "English", "counts": "各类问题数量", "select": "选择", "sev": "级别", "order_id": "订单号",
        "parcel": "运单", "lane": "线路", "why": "原因", "actions": "操作",
        "js": {"done": "已更新", "evidence": "依据", "suggested": "建议", "timeline": "处理记录",
               "resolution": "处理结果", "note": "备注", "resolve": "解决", "select": "选择", "since": "发现于",
               "details": "详情", "acknowledge": "确认", "assignMe": "分配给我", "needName": "请先填写我的名字",
               "empty": "没有问题包裹", "total": "共", "noneSelected": "请先勾选问题"},
    },
    "en": {
        "title": "Problem-parcel queue", "signin": "Sign in", "token": "Shop token", "bad_token": "That token is not valid.",
        "shop": "Shop", "kind": "Kind", "severity": "Severity", "carrier": "Carrier", "status": "Status",
        "date": "Date", "order": "Order", "priority": "Priority", "age": "Oldest first", "all": "All",
        "active": "To do", "apply": "Filter", "my_name": "My name", "bulk_ack": "Acknowledge selected",
        "csv": "Export to Excel (CSV)", "signout": "Sign out", "counts": "Counts by kind", "other_lang": "中文", "select": "Select",
        "sev": "Severity", "order_id": "Order", "parcel": "Parcel", "lane": "Lane", "why": "Why", "actions": "Actions",
        "js": {"done": "Updated", "evidence": "Evidence", "suggested": "Suggested", "timeline": "History",
               "resolution": "Resolution", "note": "Note", "resolve": "Resolve", "select": "Select",
               "since": "since", "details": "Details", "acknowledge": "Acknowledge", "assignMe": "Assign to me",
               "needName": "Enter your name first", "empty": "No problem parcels", "total": "Total",
               "noneSelected": "Select issues first"},
    },
}


def _lang(request: web.Request) -> str:
    return "en" if request.query.get("lang") == "en" else "zh"  # type: ignore[attr-defined]


def _page(view: web.View, title: str, body: str, lang: str, status: int = 200) -> web.Response:
    doc = (f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
           f'<link rel="stylesheet" href="/queue/static/queue.css"></head><body>{body}</body></html>')
    return view.bytes(doc.encode(), content_type=None, status=status,
                      headers={**HEADERS, "Content-Type": "text/html; charset=utf-8"})


def _signin(view: web.View, lang: str, error: bool = False) -> web.Response:
    t = TEXT[lang]
    msg = f'<p class="error" role="alert">{html.escape(t["bad_token"])}</p>' if error else ""
    body = (f'<main class="signin"><h1>{html.escape(t["title"])}</h1>{msg}'
            f'<form method="post" action="/queue/signin?lang={lang}"><label>{html.escape(t["token"])}'
            f'<input type="password" name="token" autocomplete="current-password" required autofocus></label>'
            f'<button class="primary" type="submit">{html.escape(t["signin"])}</button></form></main>')
    return _page(view, t["title"], body, lang, status=401 if error else 200)


def _options(pairs: list[tuple[str, str]], selected: str | None = None) -> str:
    return "".join(f'<option value="{html.escape(v)}"{" selected" if v == selected else ""}>{html.escape(label)}</option>'
                   for v, label in pairs)


class QueuePage:
    """``/queue``: the page, its sign-in and sign-out, and its static files."""

    def __init__(self, app: faust.App, labels: Labels, store: IssueStore, access: Access) -> None:
        self.labels, self.store, self.access = labels, store, access
        route(app, "/queue", "queue_page", get=self.page)
        route(app, "/queue/signin", "queue_signin", post=self.sign_in)
        route(app, "/queue/signout", "queue_signout", post=self.sign_out)
        route(app, "/queue/static/{name}", "queue_static", get=self.static)

    async def page(self, view: web.View, request: web.Request) -> web.Response:
        lang = _lang(request)
        t = TEXT[lang]
        token = token_of(request)
        access = self.access
        if access.enabled and access.shops_for(token) is None:
            return _signin(view, lang)
        scope = access.read_scope(token)
        known = await self.store.shops()
        shops = known if "*" in scope else [s for s in scope]
        i = 0 if lang == "zh" else 1
        kinds = [(k, self.labels.kind(k, lang)) for k in ISSUE_KINDS]
        labels = {**t["js"], "kinds": dict(kinds), "codes": {c: v[i] for c, v in RESOLUTION_LABELS.items()}}
        other = "en" if lang == "zh" else "zh"
        e = html.escape
        filters = (
            f'<label>{e(t["shop"])}<select name="shop">{_options([("", t["all"])] + [(s, s) for s in shops])}</select></label>'
            f'<label>{e(t["kind"])}<select name="kind">{_options([("", t["all"]), *kinds])}</select></label>'
            f'<label>{e(t["severity"])}<select name="severity">'
            f'{_options([("", t["all"])] + [(k, v[i]) for k, v in SEVERITY_LABELS.items()])}</select></label>'
            f'<label>{e(t["carrier"])}<select name="carrier">'
            f'{_options([("", t["all"])] + [(c, c) for c in CARRIERS])}</select></label>'
            f'<label>{e(t["status"])}<select name="status">'
            f'{_options([("", t["active"]), (",".join(STATUSES), t["all"])] + [(s, STATUS_LABELS[s][i]) for s in STATUSES])}'
            f'</select></label>'
            f'<label>{e(t["date"])}<input type="date" name="date"></label>'
            f'<label>{e(t["order"])}<select name="order">{_options([("priority", t["priority"]), ("age", t["age"])])}'
            f'</select></label><button type="submit">{e(t["apply"])}</button>'
        )
        heads = "".join(f"<th scope=\"col\">{e(t[k])}</th>" for k in
                        ("select", "sev", "kind", "order_id", "parcel", "lane", "why", "status", "actions"))
        body = (
            f'<header><h1>{e(t["title"])}</h1><span class="spacer"></span>'
            f'<label>{e(t["my_name"])} <input id="my-name" maxlength="64"></label>'
            f'<a href="/queue?lang={other}">{e(t["other_lang"])}</a>'
            f'<form method="post" action="/queue/signout"><button type="submit">{e(t["signout"])}</button></form></header>'
            f'<main id="queue-app" data-lang="{lang}" data-labels="{e(json.dumps(labels, ensure_ascii=False))}">'
            f'<form id="filters" class="filters" aria-label="{e(t["apply"])}">{filters}</form>'
            f'<div class="actions"><button id="bulk-ack" type="button">{e(t["bulk_ack"])}</button>'
            f'<a id="csv" href="/issues.csv">{e(t["csv"])}</a></div>'
            f'<ul id="counts" class="counts" aria-label="{e(t["counts"])}"></ul>'
            f'<p id="status" class="status" role="status" aria-live="polite"></p>'
            f'<table><thead><tr>{heads}</tr></thead><tbody id="rows"></tbody></table></main>'
            f'<script src="/queue/static/queue.js"></script>'
        )
        return _page(view, t["title"], body, lang)

    async def sign_in(self, view: web.View, request: web.Request) -> web.Response:
        lang = _lang(request)
        form = parse_qs((await request.read()).decode("utf-8", errors="replace"))  # type: ignore[attr-defined]
        token = (form.get("token") or [""])[0].strip()
        if self.access.shops_for(token) is None:
            return _signin(view, lang, error=True)
        resp = view.bytes(b"", content_type=None, status=303, headers={"Location": f"/queue?lang={lang}", **HEADERS})
        resp.set_cookie("pw_token", token, httponly=True, samesite="Strict", path="/", max_age=12 * 3600)  # type: ignore[attr-defined]
        return resp

    async def sign_out(self, view: web.View, request: web.Request) -> web.Response:
        resp = view.bytes(b"", content_type=None, status=303, headers={"Location": "/queue", **HEADERS})
        resp.del_cookie("pw_token", path="/")  # type: ignore[attr-defined]
        return resp

    async def static(self, view: web.View, request: web.Request, name: str) -> web.Response:
        if name not in STATIC_TYPES:
            return view.json({"error": "not found"}, status=404)
        return view.bytes((STATIC / name).read_bytes(), content_type=None,
                          headers={"Content-Type": STATIC_TYPES[name], "X-Content-Type-Options": "nosniff"})
