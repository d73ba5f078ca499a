"""``/shop-health``: a shop's logistics health (物流体验) for the page's health view and other tools: pickup
within 24 h / 48 h, delivery time per lane against its normal time, exceptions per carrier, over 7, 30 or
90 days (``issue_queue/health.py``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import faust
from faust import web

from agents.shop_health import normal_hours
from issue_queue.health import WINDOWS, ShopHealth
from issue_queue.texts import error_text

from .session import Callers
from .views import BadRequest, choice, guarded, lang_of, reply, route

if TYPE_CHECKING:
    from agents import StreamApp

# What the health view says: (Chinese, English) per text.
HEALTH_TEXT: dict[str, tuple[str, str]] = {
    "pickup24": ("24 小时揽收率", "Picked up within 24 h"),
    "pickup48": ("48 小时揽收率", "Picked up within 48 h"),
    "deliveryHours": ("平均配送时长（揽收到签收）", "Average delivery (pickup to signature)"),
    "overShare": ("超过线路正常时效", "Later than the lane's normal time"),
    "exceptionRate": ("物流异常率", "Exception rate"),
    "shipped": ("发货", "Shipped"),
    "carriers": ("各快递公司", "By carrier"),
    "lanes": ("各线路配送时长（最拖后腿的在前）", "Delivery time by lane (worst first)"),
    "carrier": ("快递公司", "Carrier"),
    "lane": ("线路", "Lane"),
    "signed": ("签收", "Signed"),
    "hours": ("平均时长", "Average"),
    "normal": ("线路正常时效", "Lane's normal time"),
    "normalNow": ("现在的正常时效", "Normal time now"),
    "over": ("超时效", "Late"),
    "overShareCol": ("超时效占比", "Late share"),
    "exceptions": ("异常", "Exceptions"),
    "exceptionRateCol": ("异常率", "Exception rate"),
    "pickupHours": ("平均揽收用时", "Average pickup time"),
    "none": ("—", "—"),
    "noData": ("这段时间还没有发货记录", "No shipments in this period"),
    "settledNote": ("揽收率按发货日统计，不含最近 2 天（还没满 48 小时）：统计到 {to}。",
                    "Pickup rates count shipping days whose 48 h have passed (up to {to})."),
    "laneNote": ("正常时效：该线路近期签收用时的 P90；标红的线路超时效占比超过 20%。",
                 "Normal time: the p90 of the lane's recent deliveries; lanes with over 20% late are marked."),
    "hoursUnit": ("{n} 小时", "{n} h"),
    "issues": ("期间发现的问题", "Issues raised"),
}


class ShopHealthApi:
    """``GET /shop-health?shop=&days=7|30|90&lang=``."""

    def __init__(self, app: faust.App, stream: StreamApp, callers: Callers) -> None:
        self.health = ShopHealth(stream.store.redis, stream.store.prefix)
        self.store = stream.store
        self.callers = callers
        self.labels = stream.settings.labels
        self.normal_hours = normal_hours(stream)
        route(app, "/shop-health", "shop_health", get=guarded(self.summary))

    async def summary(self, view: web.View, request: web.Request) -> web.Response:
        caller = await self.callers.resolve(request)
        lang = lang_of(request)
        q = request.query  # type: ignore[attr-defined]
        days = int(choice(q, "days", tuple(str(d) for d in WINDOWS), "30") or 30)
        shop = q.get("shop") or ""
        if not shop:
            raise BadRequest("shop", "is required", "不能为空")
        if "*" not in caller.shops and shop not in caller.shops:
            return reply(view, {"error": error_text("not_found", lang, id=shop[:40]), "code": "not_found"}, 404)
        summary = await self.health.summary(shop, days, time.time(), self.normal_hours, lang)
        summary["issue_labels"] = {k: self.labels.kind(k, lang) for k in summary["issues"]}
        return reply(view, summary)
