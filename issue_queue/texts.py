"""What staff read about an issue, in their language: reason, evidence, suggested action, history lines,
display names and error messages, rendered from the issue's structured fields (``evidence_data``, the order
facts, the scans), Chinese by default, English on request.

Pure and free of the web: the page, the API (``lang=``), the CSV, the command line and alert routing all
render through here, so a text reads the same wherever staff meet it. The detectors still write English
``reason`` / ``evidence`` / ``suggested_action`` into each issue event (for tools that read the raw
events); staff never see those. A value missing from ``evidence_data`` (an older issue, or a detector
that records other values) leaves its phrase out instead of showing a placeholder or English.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from config import Labels
from domain.vocabulary import (
    AUTO_RESOLUTION_LABELS,
    CARRIERS,
    PLATFORM_LABELS,
    RESOLUTION_LABELS,
    SEVERITY_LABELS,
    STATUS_LABELS,
    TRACKING_STATUS_LABELS,
    china_time,
)

LANGS = ("zh", "en")

# English names of the carriers (``domain.vocabulary.CARRIERS`` holds the Chinese ones).
CARRIER_NAMES_EN = {
    "ZTO": "ZTO Express", "YTO": "YTO Express", "YUNDA": "Yunda Express", "STO": "STO Express", "SF": "SF Express",
    "JD": "JD Logistics", "EMS": "China EMS", "JTEXPRESS": "J&T Express", "DEPPON": "Deppon Express",
    "YZPY": "China Post parcel", "BESTEXP": "Best Express", "CAINIAO": "Cainiao Express",
}
# kuaidi100's company codes: its public query page (https://www.kuaidi100.com/chaxun?com=...&nu=...) shows
# any of these carriers' tracking, the page Chinese shop staff already use.
KUAIDI100_CODES = {
    "ZTO": "zhongtong", "YTO": "yuantong", "YUNDA": "yunda", "STO": "shentong", "SF": "shunfeng", "JD": "jd",
    "EMS": "ems", "JTEXPRESS": "jtexpress", "DEPPON": "debangkuaidi", "YZPY": "youzhengguonei",
    "BESTEXP": "huitongkuaidi", "CAINIAO": "cainiao",
}
KUAIDI100_QUERY = "https://www.kuaidi100.com/chaxun?com={com}&nu={number}"


def _i(lang: str) -> int:
    return 1 if lang == "en" else 0


def _pick(lang: str, zh: str, en: str) -> str:
    return en if lang == "en" else zh


def _label(table: Mapping[str, tuple[str, str]], code: Any, lang: str) -> str:
    if code is None or code == "":
        return ""
    pair = table.get(str(code))
    return str(code) if pair is None else pair[_i(lang)]


# -- display names ------------------------------------------------------------------------------------------


def carrier_name(code: str | None, lang: str = "zh") -> str:
    """A carrier as staff call it (中通快递 / ZTO Express); an unknown code as it is."""
    if not code:
        return ""
    if lang == "en":
        return CARRIER_NAMES_EN.get(code, code)
    return CARRIERS.get(code, code)


def platform_name(code: str | None, lang: str = "zh") -> str:
    return _label(PLATFORM_LABELS, code, lang)


def severity_name(code: str | None, lang: str = "zh") -> str:
    return _label(SEVERITY_LABELS, code, lang)


def status_name(code: str | None, lang: str = "zh") -> str:
    return _label(STATUS_LABELS, code, lang)


def parcel_status_name(code: str | None, lang: str = "zh") -> str:
    return _label(TRACKING_STATUS_LABELS, code, lang)


def resolution_name(code: str | None, lang: str = "zh") -> str:
    """A staff resolution code (已补发) or the stream's reason for ending an issue (已签收)."""
    if not code:
        return ""
    if code in RESOLUTION_LABELS:
        return _label(RESOLUTION_LABELS, code, lang)
    return _label(AUTO_RESOLUTION_LABELS, code, lang)


def tracking_url(carrier: str | None, number: str | None) -> str | None:
    """The carrier's tracking page for a parcel (kuaidi100's public query), None for an unknown carrier."""
    if not carrier or not number:
        return None
    com = KUAIDI100_CODES.get(carrier)
    if com is None and carrier.startswith("kuaidi100:"):
        com = carrier.split(":", 1)[1]  # a carrier kept under kuaidi100's own code
    if com is None or not com.replace("_", "").isalnum() or not number.replace("-", "").isalnum():
        return None
    return KUAIDI100_QUERY.format(com=com, number=number)


def lane_name(issue: Mapping[str, Any], lang: str = "zh") -> str:
    """The lane as staff read it: 中通快递 广东→新疆."""
    carrier = issue.get("carrier")
    if not carrier:
        return ""
    origin = issue.get("origin_province") or "?"
    destination = issue.get("destination_province") or "?"
    return f"{carrier_name(carrier, lang)} {origin}→{destination}"


def destination_name(issue: Mapping[str, Any]) -> str:
    province = issue.get("destination_province") or ""
    city = issue.get("destination_city") or ""
    if city and province and city.startswith(province):
        return city  # 北京市 rather than 北京 北京市
    return " ".join(x for x in (province, city) if x)


# -- amounts of time ----------------------------------------------------------------------------------------


def duration(hours: Any, lang: str = "zh") -> str:
    """A span of hours as staff say it: 30 小时, 3 天 6 小时, 45 分钟 (30 h, 3 d 6 h, 45 min)."""
    if not isinstance(hours, (int, float)) or isinstance(hours, bool) or not math.isfinite(hours):
        return ""
    h = abs(float(hours))
    if h < 1:
        minutes = max(1, round(h * 60))
        return _pick(lang, f"{minutes} 分钟", f"{minutes} min")
    if h < 72:
        shown = f"{h:.1f}".rstrip("0").rstrip(".") if h < 10 else str(round(h))
        return _pick(lang, f"{shown} 小时", f"{shown} h")
    days, rest = divmod(round(h), 24)
    if rest == 0:
        return _pick(lang, f"{days} 天", f"{days} d")
    return _pick(lang, f"{days} 天 {rest} 小时", f"{days} d {rest} h")


def when(value: Any) -> str:
    """An epoch or ISO time as China time to the minute; "" for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or value == "":
        return ""
    try:
        return china_time(value)
    except (ValueError, OverflowError, OSError):
        return ""


# -- the issue's texts --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssueText:
    reason: str
    evidence: str
    suggested_action: str


def render(issue: Mapping[str, Any], labels: Labels, lang: str = "zh") -> IssueText:
    """Reason, evidence and suggested action of ``issue`` in ``lang`` (zh or en)."""
    lang = "en" if lang == "en" else "zh"
    data = issue.get("evidence_data")
    facts = _Facts(issue, data if isinstance(data, Mapping) else {}, labels, lang)
    kind = str(issue.get("kind") or "")
    renderer = _KINDS.get(kind)
    if renderer is None:
        return IssueText(labels.kind(kind, lang), facts.generic_evidence(), "")
    reason, evidence = renderer(facts)
    if kind == "carrier_exception":
        code = str(facts.value("exception_reason") or issue.get("exception_reason") or "other")
        action = _EXCEPTION_ACTIONS.get(code, _EXCEPTION_ACTIONS["other"])[_i(lang)]
    else:
        action = _ACTIONS[kind][_i(lang)]
    evidence = evidence or facts.generic_evidence()
    if lang == "en":
        evidence = evidence[:1].upper() + evidence[1:]
    return IssueText(reason or labels.kind(kind, lang), evidence, action)


class _Facts:
    """What a kind's template reads: evidence values (each "" or None when absent) and the issue's fields."""

    def __init__(self, issue: Mapping[str, Any], data: Mapping[str, Any], labels: Labels, lang: str) -> None:
        self.issue, self.data, self.labels, self.lang = issue, data, labels, lang

    def t(self, zh: str, en: str) -> str:
        return _pick(self.lang, zh, en)

    def time(self, key: str) -> str:
        return when(self.data.get(key))

    def hours(self, key: str) -> str:
        return duration(self.data.get(key), self.lang)

    def value(self, key: str) -> Any:
        return self.data.get(key)

    def last_scan(self) -> Mapping[str, Any] | None:
        scans = self.issue.get("scans")
        if isinstance(scans, list) and scans and isinstance(scans[-1], Mapping):
            return scans[-1]
        return None

    def place(self, key: str = "city") -> str:
        """Where: the evidence's own place, else the last scan's."""
        value = self.data.get(key)
        if isinstance(value, str) and value:
            return value
        scan = self.last_scan()
        return str(scan.get("place") or "") if scan else ""

    def parcel_status(self) -> str:
        status = self.data.get("status")
        if not status:
            scan = self.last_scan()
            status = scan.get("status") if scan else None
        return parcel_status_name(status, self.lang) if status else self.t("暂无快递扫描", "no carrier scan")

    def generic_evidence(self) -> str:
        """The known times and limits of ``evidence_data`` one by one (a kind's template had nothing)."""
        parts = []
        for key, (zh, en, kind) in _GENERIC.items():
            raw = self.data.get(key)
            shown = when(raw) if kind == "time" else duration(raw, self.lang) if kind == "hours" else ""
            if shown:
                parts.append(f"{self.t(zh, en)} {shown}")
        return self.t("；", "; ").join(parts)


# evidence_data keys a generic line can show: (中文, English, time|hours).
_GENERIC = {
    "paid_at": ("付款", "paid", "time"), "shipped_at": ("发货", "shipped", "time"),
    "picked_up_at": ("揽收", "picked up", "time"), "last_scan_at": ("最后扫描", "last scan", "time"),
    "at_locker_at": ("入柜/驿站", "into locker", "time"), "exception_at": ("异常", "exception", "time"),
    "confirmed_at": ("确认收货", "confirmed", "time"), "deadline": ("期限", "deadline", "time"),
    "limit_hours": ("时限", "limit", "hours"), "window_hours": ("时限", "limit", "hours"),
}


def _sentence(lang: str, *parts: str) -> str:
    return ("，" if lang == "zh" else ", ").join(p for p in parts if p)


def _ship_overdue(f: _Facts) -> tuple[str, str]:
    promised = f.value("promised")
    limit = f.hours("limit_hours")
    if promised:
        reason = f.t("超过承诺发货时间仍未发货", "Not shipped by the promised ship time")
    elif limit:
        reason = f.t(f"付款后 {limit}仍未发货", f"Not shipped {limit} after payment")
    else:
        reason = f.t("付款后超时未发货", "Not shipped in time after payment")
    deadline = f.time("deadline")
    due = (f.t("承诺发货时间 ", "promised ship time ") if promised else f.t("最晚发货时间 ", "ship by ")) + deadline if deadline else ""
    evidence = _sentence(f.lang, f.t("付款 ", "paid ") + f.time("paid_at") if f.time("paid_at") else "", due)
    return reason, evidence


def _pickup_overdue(f: _Facts) -> tuple[str, str]:
    window = f.hours("window_hours")
    reason = (f.t(f"发货后 {window}仍无揽收记录", f"No carrier scan within {window} of shipping") if window
              else f.t("发货后超时未揽收", "Not picked up in time after shipping"))
    evidence = _sentence(
        f.lang,
        f.t("发货 ", "shipped ") + f.time("shipped_at") if f.time("shipped_at") else "",
        f.t(f"揽收时限 {window}", f"pickup limit {window}") if window else "",
        f.t(f"截至 {f.time('deadline')} 仍无揽收扫描", f"no carrier scan by {f.time('deadline')}") if f.time("deadline") else "",
    )
    return reason, evidence


_BASELINES = {
    "lane": ("该线路历史时效", "this lane's history"),
    "carrier_destination": ("该快递到此省的历史时效", "this carrier's history to the province"),
    "region_sla:remote": ("偏远地区默认时效", "the remote-region default"),
    "default_sla": ("默认时效", "the default limit"),
}


def _transit_overdue(f: _Facts) -> tuple[str, str]:
    limit = f.hours("limit_hours")
    reason = (f.t(f"揽收后超过正常时效（{limit}）仍未签收", f"Not signed within the normal transit time ({limit}) after pickup")
              if limit else f.t("超过线路正常时效仍未签收", "Not signed within the lane's normal transit time"))
    source = f.value("baseline_source")
    basis = ""
    if isinstance(source, str) and source:
        name = _BASELINES.get(source, (source, source))[_i(f.lang)]
        samples = f.value("samples")
        if isinstance(samples, int) and samples > 0:
            basis = f.t(f"依据{name}（{samples} 单）", f"from {name} ({samples} deliveries)")
        else:
            basis = f.t(f"依据{name}", f"from {name}")
    evidence = _sentence(
        f.lang,
        f.t("揽收 ", "picked up ") + f.time("picked_up_at") if f.time("picked_up_at") else "",
        f.t(f"正常时效 {limit}", f"normal transit {limit}") if limit else "",
        basis,
    )
    return reason, evidence


_STAGES = {"in transit": ("运输中", "in transit"), "out for delivery": ("派件中", "out for delivery")}


def _tracking_stale(f: _Facts) -> tuple[str, str]:
    limit = f.hours("limit_hours")
    stage = f.value("stage")
    stage_name = _STAGES[stage][_i(f.lang)] if stage in _STAGES else ""
    if limit:
        reason = f.t(f"{stage_name}超过 {limit}没有新物流", f"No new scan for {limit}" + (f" while {stage_name}" if stage_name else ""))
    else:
        reason = f.t("物流长时间没有更新", "No new scan for too long")
    place = f.place()
    last = f.time("last_scan_at")
    evidence = (f.t(f"最后一条物流 {last}", f"last scan {last}") + (f.t(f"（{place}）", f" ({place})") if place else "")) if last else ""
    return reason, evidence


def _confirmed_unsigned(f: _Facts) -> tuple[str, str]:
    by_buyer = f.value("by_buyer")
    if by_buyer:
        reason = f.t("买家已确认收货，但包裹未签收", "Confirmed received by the buyer, parcel not signed")
        how = f.t("买家确认收货 ", "confirmed by the buyer ")
    else:
        reason = f.t("已到自动确认收货时间，包裹仍未签收", "Auto-confirmed at the deadline, parcel not signed")
        how = f.t("自动确认收货 ", "auto-confirmed ")
    last = f.time("last_scan_at")
    evidence = _sentence(
        f.lang,
        how + f.time("confirmed_at") if f.time("confirmed_at") else "",
        f.t("快递状态：", "carrier status: ") + f.parcel_status(),
        f.t(f"最后物流 {last}", f"last scan {last}") if last else "",
    )
    return reason, evidence


def _autoconfirm_imminent(f: _Facts) -> tuple[str, str]:
    deadline = f.time("deadline")
    reason = (f.t(f"将于 {deadline} 自动确认收货，包裹还未签收", f"Auto-confirms at {deadline}; parcel not signed") if deadline
              else f.t("即将自动确认收货，包裹还未签收", "Auto-confirm is near; parcel not signed"))
    order_deadline = f.value("order_deadline")
    if order_deadline is None and isinstance(f.value("source"), str):
        order_deadline = f.value("source") == "order deadline"
    if order_deadline:
        source = f.t("订单给出的确认收货时间", "the order's own deadline")
    else:
        platform = platform_name(f.issue.get("platform"), f.lang)
        source = f.t(f"{platform}默认确认收货时间", f"{platform} default deadline")
    warning = f.hours("warning_hours")
    evidence = _sentence(
        f.lang,
        f.t(f"确认收货时间 {deadline}（{source}）", f"deadline {deadline} ({source})") if deadline else source,
        f.t(f"提前 {warning}提醒", f"warned {warning} before") if warning else "",
        f.t("快递状态：", "carrier status: ") + f.parcel_status(),
    )
    return reason, evidence


def _locker_uncollected(f: _Facts) -> tuple[str, str]:
    limit = f.hours("limit_hours")
    reason = (f.t(f"放入驿站/快递柜超过 {limit}未取件", f"Uncollected at a locker or station for over {limit}") if limit
              else f.t("驿站/快递柜超时未取件", "Uncollected at a locker or station"))
    place = f.place()
    at = f.time("at_locker_at")
    evidence = ""
    if at:
        evidence = f.t(f"{at} 放入驿站/快递柜", f"put into a locker or station {at}") + (f.t(f"（{place}）", f" in {place}") if place else "")
    return reason, evidence


_EXCEPTION_ACTIONS = {
    "problem_parcel": ("联系快递网点处理疑难件，并告诉买家处理进度",
                       "Call the carrier's outlet to sort out the problem parcel and keep the buyer informed"),
    "out_of_area": ("告诉买家到附近网点自取，或换能派送到该地址的快递重新发货",
                    "Tell the buyer where to collect the parcel, or re-ship with a carrier that delivers there"),
    "refused": ("联系买家了解拒收原因；退件回来后办理退款", "Ask the buyer why it was refused; refund once the return arrives"),
    "returned": ("联系买家；退件回来后补发或退款", "Contact the buyer; re-ship or refund once the return arrives"),
    "lost": ("向快递公司申请理赔，并给买家补发", "File a claim with the carrier and re-ship to the buyer"),
    "damaged": ("向快递公司申请理赔，并给买家换货或退款", "File a claim with the carrier and offer the buyer a replacement or refund"),
    "held": ("催快递尽快放行滞留的包裹", "Push the carrier to release the held parcel"),
    "unreachable": ("联系买家核对电话和地址，方便快递员派送", "Contact the buyer to confirm phone and address for the courier"),
    "delivery_failed": ("联系买家约好再次派送的时间", "Contact the buyer to arrange another delivery"),
    "customs": ("按快递公司要求提供清关资料", "Provide the customs documents the carrier asks for"),
    "other": ("联系快递公司核实异常情况", "Contact the carrier about the exception"),
}


def _carrier_exception(f: _Facts) -> tuple[str, str]:
    code = f.value("exception_reason") or f.issue.get("exception_reason") or "other"
    label = f.labels.reason(str(code), f.lang)
    reason = f.t(f"物流异常：{label}", f"Carrier exception: {label}")
    at = f.time("exception_at")
    place = f.place()
    evidence = ""
    if at:
        evidence = f.t(f"快递公司 {at} 报告{label}", f"the carrier reported {label.lower()} at {at}")
        if place:
            evidence += f.t(f"（{place}）", f" in {place}")
    return reason, evidence


_AGGREGATORS = {"kuaidi100": ("快递100", "kuaidi100"), "kdniao": ("快递鸟", "kdniao"), "aftership": ("AfterShip", "AfterShip"),
                "17track": ("17TRACK", "17TRACK")}


def _tracking_unregistered(f: _Facts) -> tuple[str, str]:
    name = _label(_AGGREGATORS, f.value("aggregator"), f.lang) or f.t("物流平台", "the aggregator")
    if f.value("refused"):
        reason = f.t(f"{name}拒绝订阅这个运单的物流", f"{name} refused to track this parcel")
    else:
        reason = f.t(f"多次向{name}订阅物流仍未成功", f"Tracking could not be registered with {name}")
    answer = " ".join(str(v) for v in (f.value("code"), f.value("message")) if v)
    at, attempts = f.time("answered_at"), f.value("attempts")
    evidence = _sentence(f.lang, f.t(f"{name}答复：{answer}", f"{name} answered: {answer}") if answer else "",
                         f.t(f"第 {attempts} 次尝试", f"attempt {attempts}") if attempts else "", at)
    return reason, evidence


# What staff should do about each kind of issue (a carrier exception: per its reason, below).
_ACTIONS = {
    "ship_overdue": ("尽快发货；来不及发货时先联系买家说明，避免被平台判为延迟发货",
                    "Ship now, or tell the buyer about the delay before the platform counts it as late shipping"),
    "pickup_overdue": ("联系快递网点尽快上门揽收；网点无法揽收时换一家快递重新发货",
                      "Push the carrier's outlet to collect the parcel, or re-ship with another carrier"),
    "transit_overdue": ("联系快递查询包裹位置，在买家询问前主动告知物流进度",
                       "Ask the carrier where the parcel is and tell the buyer before they ask"),
    "tracking_stale": ("联系快递追查包裹；确认丢失时向快递申请理赔，并给买家补发",
                      "Ask the carrier to trace the parcel; if it is lost, file a claim and re-ship"),
    "confirmed_unsigned": ("联系买家核实是否收到包裹；没收到就催快递派送或给买家补发",
                          "Check with the buyer that the parcel arrived; if not, push the carrier or re-ship"),
    "autoconfirm_imminent": ("在后台为买家延长收货时间，避免包裹未到就被自动确认收货",
                            "Extend the buyer's receipt deadline so the order is not confirmed before delivery"),
    "locker_uncollected": ("提醒买家凭取件码尽快取件",
                          "Remind the buyer to collect the parcel with the pickup code"),
    "tracking_unregistered": ("核对订单上的快递公司和运单号；改正后请负责系统的同事重新订阅，否则收不到这个包裹的物流",
                             "Check the order's carrier and tracking number; once right, have it registered again, "
                             "or no scan of this parcel arrives"),
}


_KINDS: dict[str, Callable[[_Facts], tuple[str, str]]] = {
    "ship_overdue": _ship_overdue,
    "pickup_overdue": _pickup_overdue,
    "transit_overdue": _transit_overdue,
    "tracking_stale": _tracking_stale,
    "confirmed_unsigned": _confirmed_unsigned,
    "autoconfirm_imminent": _autoconfirm_imminent,
    "locker_uncollected": _locker_uncollected,
    "carrier_exception": _carrier_exception,
    "tracking_unregistered": _tracking_unregistered,
}


# -- history --------------------------------------------------------------------------------------------------


def actor(by: Any, lang: str = "zh") -> str:
    """Who made a history entry: the stream, a machine token, or a person (their name as recorded)."""
    text = str(by or "")
    if text == "stream":
        return _pick(lang, "系统", "system")
    if text.startswith("token:"):
        return _pick(lang, f"接口令牌 {text[6:]}", f"API token {text[6:]}")
    return text


def history_line(entry: Mapping[str, Any], lang: str = "zh") -> str:
    """What one history entry did, without its time and actor: 发现问题（高）, 分配给 小李, 标记解决：已补发."""
    action = str(entry.get("action") or "")
    sev = severity_name(entry.get("severity"), lang)
    if action == "opened":
        text = _pick(lang, "发现问题", "Raised") + (_pick(lang, f"（{sev}）", f" ({sev})") if sev else "")
    elif action == "reopened":
        text = _pick(lang, "问题再次出现", "Raised again") + (_pick(lang, f"（{sev}）", f" ({sev})") if sev else "")
    elif action == "severity_changed":
        text = _pick(lang, "严重程度 ", "Severity ") + f"{severity_name(entry.get('from'), lang)} → {severity_name(entry.get('to'), lang)}"
    elif action == "auto_resolved":
        why = resolution_name(entry.get("resolution"), lang)
        text = _pick(lang, "自动解决", "Resolved by itself") + (_pick(lang, f"：{why}", f": {why}") if why else "")
    elif action == "acknowledge":
        text = _pick(lang, "确认处理", "Acknowledged")
    elif action == "assign":
        text = _pick(lang, f"分配给 {entry.get('assignee') or ''}", f"Assigned to {entry.get('assignee') or ''}").rstrip()
    elif action == "resolve":
        code = resolution_name(entry.get("resolution_code"), lang)
        text = _pick(lang, "标记解决", "Resolved") + (_pick(lang, f"：{code}", f": {code}") if code else "")
    else:
        text = action
    note = entry.get("note")
    if note:
        text += _pick(lang, f"。备注：{note}", f". Note: {note}")
    return text


def history_text(entry: Mapping[str, Any], lang: str = "zh") -> str:
    """A whole history line: time, actor and what was done."""
    by = actor(entry.get("by"), lang)
    if entry.get("on_behalf_of"):
        by += _pick(lang, f"（代 {entry['on_behalf_of']}）", f" (for {entry['on_behalf_of']})")
    return " ".join(x for x in (when(entry.get("at")), by, history_line(entry, lang)) if x)


# -- errors -----------------------------------------------------------------------------------------------------

ERRORS: dict[str, tuple[str, str]] = {
    "sign_in": ("请先登录", "Please sign in"),
    "session_expired": ("登录已过期，请重新登录", "Your sign-in has expired; please sign in again"),
    "bad_login": ("账号或密码不正确", "Wrong account or password"),
    "locked": ("登录失败次数太多，请 {minutes} 分钟后再试", "Too many failed sign-ins; try again in {minutes} min"),
    "token": ("需要有效的接口令牌（Authorization: Bearer <令牌>）", "A valid API token is required (Authorization: Bearer <token>)"),
    "no_tokens": ("没有配置接口令牌，不能修改问题（设置 PARCELWATCH_TOKENS）",
                  "Write access needs an API token; none is configured (set PARCELWATCH_TOKENS)"),
    "read_only": ("你的账号只能查看，不能处理问题", "Your account can view the queue but not change issues"),
    "csrf": ("页面已过期，请刷新页面后再试", "This page has expired; reload it and try again"),
    "not_found": ("找不到这个问题（编号 {id}）", "No issue with id {id}"),
    "conflict": ("这个问题{status}，不能再{action}", "This issue is {status_en}; it cannot be {action_en}"),
    "bad_field": ("{field}填写有误：{problem}", "{field}: {problem}"),
    "redis": ("问题队列暂时无法读取：{cause}。请稍后重试", "The issue queue cannot be read right now: {cause}. Try again shortly"),
    "redis_timeout": ("Redis 没有响应", "Redis does not answer"),
    "redis_down": ("连不上 Redis", "Redis cannot be reached"),
    "redis_error": ("Redis 出错", "Redis failed"),
}
_ACTION_NAMES = {"acknowledge": ("确认", "acknowledged"), "assign": ("分配", "assigned"), "resolve": ("解决", "resolved")}
# The status words of a conflict: "这个问题已解决" / "already resolved".
_STATUS_PHRASES = {"open": ("还未处理", "open"), "acknowledged": ("已在处理中", "already acknowledged"),
                   "resolved": ("已解决", "already resolved"), "auto_resolved": ("已自动解决", "already resolved by itself")}


def error_text(code: str, lang: str = "zh", **values: Any) -> str:
    """An error message staff can act on, in ``lang``. ``values`` fill its blanks."""
    zh, en = ERRORS.get(code, (code, code))
    if code == "conflict":
        status = str(values.get("status") or "")
        action = str(values.get("action") or "")
        phrase = _STATUS_PHRASES.get(status, (status, status))
        verb = _ACTION_NAMES.get(action, (action, action))
        return _pick(lang, zh.format(status=phrase[0], action=verb[0]), en.format(status_en=phrase[1], action_en=verb[1]))
    try:
        return _pick(lang, zh, en).format(**values)
    except (KeyError, IndexError):
        return _pick(lang, zh, en)
