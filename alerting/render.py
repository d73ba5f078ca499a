"""What an alert says: Chinese text for one issue, a digest of several, or a lane incident.

Pure. :func:`describe` turns the items of one message into a title, plain lines and a link back to the staff
page; the destinations wrap them in their own markup (DingTalk/WeCom markdown, Feishu text/post/card, Slack
blocks) and cut the lines to what the platform takes, measured on the encoded request, with a note of how
many were left out. A digest lists the most severe issues first, the oldest first among equals, so a cut
never hides a critical issue behind routine ones.

:func:`issue_words` is the one place an issue's reason, evidence and suggested action become words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from config import Labels
from domain.events import InvalidEvent, parse_time
from domain.vocabulary import SEVERITY_LABELS, carrier_name, china_time
from issue_queue.store import issue_id

from .config import severity_rank

INCIDENT_KIND = "lane_incident"
# Not an issue kind of the detectors, so not in the configured labels.
INCIDENT_LABEL = "线路异常"
ACTION_LABELS = {"open": "新问题", "update": "更新", "resolve": "已解决"}
# Why the stream resolved an issue (processor._resolution); unknown codes are shown as they are.
RESOLUTION_LABELS = {
    "signed": "已签收", "shipped": "已发货", "picked_up": "已揽收", "scanned_again": "物流已更新", "collected": "已取件",
    "order_confirmed": "订单已确认收货", "order_refunded": "订单已退款", "order_closed": "订单已关闭",
    "deadline_moved_or_passed": "确认收货期限已变更或已过", "condition_ended": "条件已解除",
}
PLATFORM_LABELS = {
    "taobao": "淘宝", "tmall": "天猫", "douyin": "抖店", "pinduoduo": "拼多多", "jd": "京东", "kuaishou": "快手",
    "xiaohongshu": "小红书", "other": "其他",
}
ISSUE_LINK_TEXT = "在工作台查看"
QUEUE_LINK_TEXT = "在问题队列中查看全部"
# A line longer than this (an evidence dump) is clipped, so it cannot push every other line out of a message.
MAX_LINE_BYTES = 1000
MAX_TITLE_BYTES = 300


@dataclass(frozen=True, slots=True)
class Description:
    title: str
    lines: tuple[str, ...]
    # The issue on the staff page (one issue), or the queue filtered to what the digest holds; None without base_url.
    link: str | None = None
    link_text: str = ISSUE_LINK_TEXT
    # The most severe of the items not resolved (None: only resolves), for mentions and colours.
    top_severity: str | None = None
    critical: bool = False


@dataclass(frozen=True, slots=True)
class IssueWords:
    reason: str
    evidence: str
    action: str


def severity_label(severity: str | None) -> str:
    return SEVERITY_LABELS.get(severity or "", (severity or "?",))[0]


def carrier_label(code: Any) -> str:
    return carrier_name(str(code)) if code else "?"


def lane_label(item: Mapping[str, Any]) -> str:
    """中通快递 广东→新疆: the carrier by its name, not its code."""
    carrier, origin, dest = item.get("carrier"), item.get("origin_province"), item.get("destination_province")
    if carrier and (origin or dest):
        return f"{carrier_label(carrier)} {origin or '?'}→{dest or '?'}"
    lane = str(item.get("lane") or "")
    code, _, rest = lane.partition(" ")
    return f"{carrier_label(code)} {rest}" if rest else lane


def _time(value: Any) -> str:
    if value is None or value == "" or isinstance(value, bool):
        return ""
    try:
        return china_time(value if isinstance(value, (int, float, str)) else str(value))
    except (ValueError, TypeError, OverflowError):
        return str(value)  # shown as received rather than losing the line


def _epoch(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return parse_time(value, "time")
    except InvalidEvent:  # an unreadable time only loses its part of the sentence
        return None


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    hours = seconds / 3600
    if hours < 48:
        return f"{hours:.0f} 小时" if hours >= 10 else f"{hours:.1f} 小时".replace(".0 ", " ")
    days, rest = divmod(round(hours), 24)
    return f"{days} 天 {rest} 小时" if rest else f"{days} 天"


def _hours(value: Any) -> str:
    return f"{value:g} 小时" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


_STAGES = {"out for delivery": "派送中", "in transit": "运输中"}
_BASELINES = {"lane": "该线路近期", "carrier_destination": "该快递到该省近期", "default_sla": "默认时效", "region_sla:remote": "偏远地区时效"}
_EXCEPTION_ACTIONS = {
    "problem_parcel": "联系快递网点处理疑难件",
    "out_of_area": "告知买家自提地点，或改用能派送到该地区的快递重新发货",
    "refused": "联系买家了解拒收原因，退回后准备退款",
    "returned": "联系买家，退件到达后补发或退款",
    "lost": "向快递公司发起理赔，并给买家补发",
    "damaged": "向快递公司发起理赔，并给买家换货或退款",
    "held": "催快递公司放行滞留的包裹",
    "unreachable": "联系买家核实电话和地址，方便快递员联系",
    "delivery_failed": "联系买家另约派送时间",
    "customs": "按快递公司要求补充清关资料",
}
_REASONS = {
    "ship_overdue": "付款后超时未发货", "pickup_overdue": "发货后超时未揽收", "transit_overdue": "超过线路正常时效仍未签收",
    "tracking_stale": "物流长时间没有更新", "confirmed_unsigned": "已确认收货但包裹未签收",
    "autoconfirm_imminent": "即将自动确认收货，包裹尚未签收", "locker_uncollected": "包裹在驿站/快递柜超时未取",
    "carrier_exception": "快递公司报告异常",
}
_ACTIONS = {
    "ship_overdue": "尽快发货，或联系买家说明延迟，避免平台判定延迟发货",
    "pickup_overdue": "催快递网点上门揽收，或换一家快递重新发货",
    "transit_overdue": "向快递公司查询包裹位置，在买家询问前主动告知",
    "tracking_stale": "请快递公司追查包裹；如已丢失，发起理赔并补发",
    "confirmed_unsigned": "联系买家确认是否收到包裹；如未收到，催快递或补发",
    "autoconfirm_imminent": "为买家延长收货时间，避免包裹送达前被自动确认收货",
    "locker_uncollected": "提醒买家凭取件码尽快取件",
    "carrier_exception": "联系快递公司处理异常",
}


def _ship_overdue(d: Mapping[str, Any], now: float | None, item: Mapping[str, Any], labels: Labels) -> tuple[str, str]:
    paid, deadline = _epoch(d.get("paid_at")), _epoch(d.get("deadline"))
    since = _duration(now - paid) if now is not None and paid is not None else ""
    reason = f"付款 {since}后仍未发货" if since else _REASONS["ship_overdue"]
    return reason, "，".join(x for x in (f"付款时间 {_time(paid)}" if paid else "", f"发货期限 {_time(deadline)}" if deadline else "") if x)


def _pickup_overdue(d: Mapping[str, Any], now: float | None, item: Mapping[str, Any], labels: Labels) -> tuple[str, str]:
    shipped, window = _epoch(d.get("shipped_at")), _hours(d.get("window_hours"))
    since = _duration(now - shipped) if now is not None and shipped is not None else ""
    reason = f"发货 {since}后仍无揽收记录" + (f"（时限 {window}）" if window else "") if since else _REASONS["pickup_overdue"]
    parts = (f"发货时间 {_time(shipped)}" if shipped else "", f"揽收时限 {window}" if window else "",
             f"截至 {_time(now)} 无揽收扫描" if now is not None else "")
    return reason, "，".join(x for x in parts if x)


def _transit_overdue(d: Mapping[str, Any], now: float | None, item: Mapping[str, Any], labels: Labels) -> tuple[str, str]:
    pickup = _epoch(d.get("picked_up_at"))
    limit = d.get("limit_hours")
    limit_text = _duration(limit * 3600) if isinstance(limit, (int, float)) and not isinstance(limit, bool) else ""
    since = _duration(now - pickup) if now is not None and pickup is not None else ""
    if since:
        reason = f"揽收 {since}后仍未签收" + (f"，超过正常时效 {limit_text}" if limit_text else "")
    else:
        reason = _REASONS["transit_overdue"]
    basis = ""
    if limit_text:
        source = str(d.get("baseline_source") or "")
        samples = d.get("samples")
        basis = f"{_BASELINES.get(source, '参考')}时效 {limit_text}" + (f"（{samples} 单）" if isinstance(samples, int) and samples else "")
    parts = (f"揽收时间 {_time(pickup)}" if pickup else "", f"线路 {lane_label(item)}" if item.get("carrier") else "", basis)
    return reason, "，".join(x for x in parts if x)


def _tracking_stale(d: Mapping[str, Any], now: float | None, item: Mapping[str, Any], labels: Labels) -> tuple[str, str]:
    last = _epoch(d.get("last_scan_at"))
    limit = _hours(d.get("limit_hours"))
    stage = _STAGES.get(str(d.get("stage") or ""), "")
    since = _duration(now - last) if now is not None and last is not None else ""
    reason = (f"{stage}已 {since}没有新物流" + (f"（时限 {limit}）" if limit else "")) if since else _REASONS["tracking_stale"]
    return reason, f"最后一次扫描 {_time(last)}" if last else ""


def _confirmed_unsigned(d: Mapping[str, Any], now: float | None, item: Mapping[str, Any], labels: Labels) -> tuple[str, str]:
    at = _epoch(d.get("confirmed_at"))
    by_buyer = d.get("by_buyer")
    who = "买家已确认收货" if by_buyer is True else "平台已自动确认收货" if by_buyer is False else "订单已确认收货"
    return f"{who}，但包裹未签收", f"确认收货时间 {_time(at)}" if at else ""


def _autoconfirm_imminent(d: Mapping[str, Any], now: float | None, item: Mapping[str, Any], labels: Labels) -> tuple[str, str]:
    deadline = _epoch(d.get("deadline"))
    if deadline is None:
        return _REASONS["autoconfirm_imminent"], ""
    source = "订单的确认收货期限" if d.get("source") == "order deadline" else "平台默认期限"
    return f"将于 {_time(deadline)} 自动确认收货，包裹尚未签收", f"自动确认收货时间 {_time(deadline)}（{source}）"


def _locker_uncollected(d: Mapping[str, Any], now: float | None, item: Mapping[str, Any], labels: Labels) -> tuple[str, str]:
    at = _epoch(d.get("at_locker_at"))
    limit = _hours(d.get("limit_hours"))
    since = _duration(now - at) if now is not None and at is not None else ""
    reason = (f"包裹已在驿站/快递柜 {since}，买家未取件" + (f"（时限 {limit}）" if limit else "")) if since else _REASONS["locker_uncollected"]
    return reason, f"入柜/入站时间 {_time(at)}" if at else ""


def _carrier_exception(d: Mapping[str, Any], now: float | None, item: Mapping[str, Any], labels: Labels) -> tuple[str, str]:
    code = str(d.get("exception_reason") or item.get("exception_reason") or "other")
    at = _epoch(d.get("exception_at"))
    city = item.get("destination_city")
    evidence = f"快递公司于 {_time(at)} 报告异常：{labels.reason(code, 'zh')}" if at else ""
    return f"快递异常：{labels.reason(code, 'zh')}", evidence + (f"（收件城市 {city}）" if evidence and city else "")


_KIND_WORDS: dict[str, Callable[[Mapping[str, Any], float | None, Mapping[str, Any], Labels], tuple[str, str]]] = {
    "ship_overdue": _ship_overdue, "pickup_overdue": _pickup_overdue, "transit_overdue": _transit_overdue,
    "tracking_stale": _tracking_stale, "confirmed_unsigned": _confirmed_unsigned,
    "autoconfirm_imminent": _autoconfirm_imminent, "locker_uncollected": _locker_uncollected,
    "carrier_exception": _carrier_exception,
}


def issue_words(item: Mapping[str, Any], labels: Labels) -> IssueWords:
    """An issue's reason, evidence and suggested action in Chinese, from its structured ``evidence_data`` (the
    detectors' English ``reason``/``evidence``/``suggested_action`` strings are never shown). A value missing
    from ``evidence_data`` drops its part of the sentence, never the message."""
    kind = str(item.get("kind") or "")
    data = item.get("evidence_data")
    data = data if isinstance(data, Mapping) else {}
    words = _KIND_WORDS.get(kind)
    reason, evidence = words(data, _epoch(item.get("at")), item, labels) if words else (labels.kind(kind, "zh"), "")
    action = _ACTIONS.get(kind, "")
    if kind == "carrier_exception":
        action = _EXCEPTION_ACTIONS.get(str(data.get("exception_reason") or item.get("exception_reason") or ""), action)
    return IssueWords(reason, evidence, action)


def _parcel(item: Mapping[str, Any]) -> str:
    if item.get("carrier") and item.get("tracking_number"):
        return f"{carrier_label(item['carrier'])} {item['tracking_number']}"
    if item.get("order_id"):
        return f"订单 {item['order_id']}"
    return str(item.get("subject") or item.get("issue_key") or "?")


def _shop(item: Mapping[str, Any]) -> str:
    platform = item.get("platform")
    label = PLATFORM_LABELS.get(platform or "", platform or "")
    return f"{item.get('shop') or '?'}（{label}）" if label else str(item.get("shop") or "?")


def kind_label(item: Mapping[str, Any], labels: Labels) -> str:
    kind = str(item.get("kind") or "?")
    return INCIDENT_LABEL if kind == INCIDENT_KIND else labels.kind(kind, "zh")


def _resolution(item: Mapping[str, Any]) -> str:
    code = str(item.get("resolution") or "")
    return RESOLUTION_LABELS.get(code, code) or "已解决"


def _issue_lines(item: Mapping[str, Any], labels: Labels) -> list[str]:
    lines = [f"店铺：{_shop(item)}"]
    if item.get("order_id"):
        lines.append(f"订单：{item['order_id']}")
    if item.get("lane"):
        lines.append(f"线路：{lane_label(item)}")
    if item.get("exception_reason"):
        lines.append(f"异常类型：{labels.reason(str(item['exception_reason']), 'zh')}")
    if item.get("action") == "resolve":
        lines.append(f"结果：{_resolution(item)}")
        lines.append(f"解决时间：{_time(item.get('resolved_at') or item.get('at'))}")
        return lines
    words = issue_words(item, labels)
    for label, text in (("原因", words.reason), ("依据", words.evidence), ("建议", words.action)):
        if text:
            lines.append(f"{label}：{text}")
    if item.get("order_value") is not None:
        lines.append(f"订单金额：¥{item['order_value']}")
    lines.append(f"发现时间：{_time(item.get('opened_at') or item.get('at'))}")
    return lines


def _incident_lines(item: Mapping[str, Any], labels: Labels) -> list[str]:
    kinds = item.get("kinds") or {}
    breakdown = "，".join(f"{labels.kind(k, 'zh')} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    window = item.get("window_minutes")
    shown = f"{window:g}" if isinstance(window, (int, float)) else "?"
    lines = [f"{shown} 分钟内同一线路 {item.get('count', 0)} 个包裹出现问题：{breakdown}"]
    if item.get("action") == "resolve":
        lines = [f"该线路问题包裹已降至 {item.get('count', 0)} 个，事件关闭"]
    lines.append(f"受影响店铺：{'、'.join(item.get('shops') or ()) or '?'}")
    if item.get("sample"):
        lines.append(f"样例运单：{'、'.join(item['sample'])}")
    if item.get("action") != "resolve":
        carrier = carrier_label(item.get("carrier")) if item.get("carrier") else "快递公司"
        lines.append(f"建议：联系{carrier}网点核实该线路是否停发、爆仓或中转延误；单个包裹的问题仍在问题队列中")
    lines.append(f"开始时间：{_time(item.get('opened_at'))}")
    return lines


def _headline(item: Mapping[str, Any], labels: Labels) -> str:
    action = item.get("action")
    if item.get("kind") == INCIDENT_KIND:
        state = {"open": "", "update": "（更新）", "resolve": "（已恢复）"}.get(str(action), "")
        return f"【{INCIDENT_LABEL}{state}】{lane_label(item) or '?'}：{item.get('count', 0)} 个包裹"
    state = "" if action == "open" else f"·{ACTION_LABELS.get(str(action), str(action))}"
    return f"【{kind_label(item, labels)}·{severity_label(item.get('severity'))}{state}】{_parcel(item)}"


def _digest_line(item: Mapping[str, Any], labels: Labels) -> str:
    if item.get("kind") == INCIDENT_KIND:
        return _headline(item, labels)
    action = item.get("action")
    tail = _resolution(item) if action == "resolve" else issue_words(item, labels).reason
    state = "" if action == "open" else f"{ACTION_LABELS.get(str(action), str(action))} "
    parts = [f"[{severity_label(item.get('severity'))}] {state}{kind_label(item, labels)}", _parcel(item), str(item.get("shop") or "?")]
    if tail:
        parts.append(str(tail))
    return " · ".join(parts)


def digest_order(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Most severe first, then the oldest (opened first) among equals; arrival order breaks ties."""
    return sorted(items, key=lambda i: (-severity_rank(i.get("severity")), str(i.get("opened_at") or i.get("at") or "")))


def issue_link(base_url: str, item: Mapping[str, Any]) -> str:
    """The issue on the staff page: ``/queue?issue=<id>`` (the id the API and the page use)."""
    return f"{base_url}/queue?{urlencode({'issue': issue_id(str(item.get('issue_key') or ''))})}"


def queue_link(base_url: str, items: Sequence[Mapping[str, Any]]) -> str:
    """The queue filtered to what the items share (shop, kind, carrier, severity when one each)."""
    params: dict[str, str] = {}
    for name in ("shop", "kind", "carrier", "severity"):
        values = {i.get(name) for i in items if i.get("kind") != INCIDENT_KIND}
        if len(values) == 1 and (value := values.pop()):
            params[name] = str(value)
    if all(i.get("action") != "resolve" for i in items):
        params["status"] = "open"
    return f"{base_url}/queue" + (f"?{urlencode(params)}" if params else "")


def _clip(line: str, max_bytes: int) -> str:
    raw = line.encode()
    if len(raw) <= max_bytes:
        return line
    return raw[: max_bytes - 3].decode(errors="ignore") + "…"


def describe(items: Sequence[Mapping[str, Any]], labels: Labels, *, prefix: str = "", base_url: str | None = None) -> Description:
    """Title, lines and link for one message: a single item in detail (a digest of one, too), else one line per
    item, most severe first. ``prefix`` (keyword, environment) leads the title."""
    open_items = [i for i in items if i.get("action") != "resolve"]
    top = max((str(i.get("severity")) for i in open_items), key=severity_rank, default=None)
    critical = any(i.get("severity") == "critical" for i in open_items)
    if len(items) == 1:
        item = items[0]
        lines = _incident_lines(item, labels) if item.get("kind") == INCIDENT_KIND else _issue_lines(item, labels)
        title = _headline(item, labels)
        link = None
        if base_url:
            link = queue_link(base_url, [item]) if item.get("kind") == INCIDENT_KIND else issue_link(base_url, item)
        link_text = QUEUE_LINK_TEXT if item.get("kind") == INCIDENT_KIND else ISSUE_LINK_TEXT
    else:
        ordered = digest_order(items)
        counts = Counter(kind_label(i, labels) for i in ordered)
        summary = "，".join(f"{k} {n}" for k, n in counts.most_common())
        title = f"parcelwatch 问题汇总：{len(items)} 条（{summary}）"
        lines = [_digest_line(i, labels) for i in ordered]
        link = queue_link(base_url, ordered) if base_url else None
        link_text = QUEUE_LINK_TEXT
    title = _clip(f"{prefix}{title}", MAX_TITLE_BYTES)
    return Description(title, tuple(_clip(line, MAX_LINE_BYTES) for line in lines), link, link_text, top, critical)


def more_note(left: int) -> str:
    return f"……另有 {left} 条未列出，请在问题队列中查看"


def largest_fitting(n: int, fits: Callable[[int], bool]) -> int:
    """The most of ``n`` lines a message can keep: the largest k in [0, n] with ``fits(k)``, for a ``fits`` that
    holds up to some k and not beyond (0 when none does: the caller's smallest message)."""
    if fits(n):
        return n
    lo, hi = 0, n  # fits(hi) is False
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo
