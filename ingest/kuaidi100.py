"""kuaidi100 (快递100) subscription push → tracking updates.

Where the tables come from: kuaidi100's 订阅推送 documentation (api.kuaidi100.com/document/5f0ffa8f2977d50a94e1023c,
"快递订阅查询快递api接口技术文档", and its 推送接口 page, apifox.com/apidoc/project-514987/api-8568518) and the
state table "运单快递状态(state)说明" (apifox.com/apidoc/project-514987/api-8562559); summarised in
``../shared/reference/carrier-status-codes.md``.

Transport: HTTP POST, ``application/x-www-form-urlencoded`` (UTF-8), fields ``param`` (a JSON string) and ``sign``
= md5(param + salt), upper- or lower-case hex, present when the subscription set a salt. kuaidi100 expects
``{"result": true, "returnCode": "200", "message": "成功"}`` within 20 s; ``result: false`` makes it push again
30 minutes later, three times, then it gives up. So a push we keep (taken, or stored as a dead letter) is answered
``result: true``, and only a temporary failure ``result: false``.

``param``: ``status`` (polling | shutdown | abort | updateall), ``autoCheck`` ("1": kuaidi100 corrected the
carrier code, then ``comOld`` / ``comNew``), ``lastResult`` {``state``, ``ischeck``, ``com``, ``nu``, ``data``:
[{``context``, ``time``, ``ftime`` (China time, no zone), ``status``, ``statusCode``, ``areaName`` ...}] newest
first}.

Per scan:
- advanced mode (``resultv2=4``): ``statusCode`` is the scan's 高级物流状态值 (``STATE``);
- basic mode (``resultv2=1``): ``status`` is the scan's 物流状态名称, e.g. 揽收, 在途, 派件, 签收 (``NAME_CODES``; the
  advanced names and common spellings of the same states too);
- neither (no ``resultv2``): a plain scan.
The newest scan takes ``lastResult.state`` (kuaidi100's latest word, where a re-classification such as 在途 →
疑难 → 拒签 shows), unless its own ``statusCode`` details that state.
``lastResult.ischeck`` is documented as "ignore it" and is ignored. Timers: 201 超时未签收 and 202 超时未更新 are
kuaidi100's own clock, never a carrier exception (see ``ingest/__init__.py``); 205 柜或驿站超时未取 still says
the parcel is at a locker or station, which parcelwatch's own locker rule times.

Carrier: the seller's declared code is kept when kuaidi100 corrected it (``autoCheck`` "1": the parcel is the
one the seller shipped, ``comOld``), and the correction is reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from domain.events import InvalidEvent

from . import SCAN, TIMER, ElementError, Meaning, Parsed, PushError, check_signature, fields, scan, settle

SOURCE = "kuaidi100"

# 高级物流状态值 (and the 10 basic states) -> meaning.
STATE: dict[str, Meaning] = {
    "1": Meaning("picked_up"), "101": Meaning("info_received"), "102": Meaning("info_received"),
    "103": Meaning("picked_up"),
    "0": Meaning("in_transit"), "1001": Meaning("arrived_city"), "1002": Meaning("in_transit"),
    "1003": Meaning("in_transit"),
    "5": Meaning("out_for_delivery"), "501": Meaning("at_locker"),
    "3": Meaning("signed"), "301": Meaning("signed"), "302": Meaning("signed"), "303": Meaning("signed"),
    "304": Meaning("signed"),
    "6": Meaning("exception", "returned"), "4": Meaning("exception", "returned"), "401": Meaning("exception", "other"),
    "14": Meaning("exception", "refused"), "7": Meaning("in_transit"),
    "2": Meaning("exception", "problem_parcel"), "201": TIMER, "202": TIMER,
    "203": Meaning("exception", "refused"), "204": Meaning("exception", "delivery_failed"),
    "205": Meaning("at_locker"), "206": Meaning("exception", "unreachable"), "207": Meaning("exception", "out_of_area"),
    "208": Meaning("exception", "held"), "209": Meaning("exception", "damaged"), "210": Meaning("exception", "other"),
    "8": Meaning("in_transit"), "10": Meaning("in_transit"), "11": Meaning("in_transit"), "12": Meaning("in_transit"),
    "13": Meaning("exception", "customs"),
}
# 高级物流状态值 -> the basic state it details.
SUBSTATE_OF: dict[str, str] = {
    **dict.fromkeys(("101", "102", "103"), "1"), **dict.fromkeys(("1001", "1002", "1003"), "0"), "501": "5",
    **dict.fromkeys(("301", "302", "303", "304"), "3"), "401": "4",
    **{str(c): "2" for c in range(201, 211)}, **dict.fromkeys(("10", "11", "12", "13"), "8"),
}
# 物流状态名称 (basic mode) and 高级物流状态名称 (advanced mode), with common spellings of the same states -> code.
NAME_CODES: dict[str, str] = {
    "揽收": "1", "已下单": "101", "待揽收": "102", "已揽收": "103", "已揽件": "103",
    "在途": "0", "在途中": "0", "运输中": "0", "到达派件城市": "1001", "干线": "1002", "转递": "1003",
    "派件": "5", "派件中": "5", "派送中": "5", "投柜或驿站": "501", "驿站代收": "501", "待取件": "501",
    "签收": "3", "已签收": "3", "本人签收": "301", "派件异常后签收": "302", "代签": "303", "投柜或站签收": "304",
    "退回": "6", "退签": "4", "已销单": "401", "拒签": "14", "转投": "7",
    "疑难": "2", "疑难件": "2", "超时未签收": "201", "超时未更新": "202", "拒收": "203", "派件异常": "204",
    "柜或驿站超时未取": "205", "无法联系": "206", "超区": "207", "滞留": "208", "破损": "209", "销单": "210",
    "清关": "8", "待清关": "10", "清关中": "11", "已清关": "12", "清关异常": "13",
}


def verify(param: str, sign: str | None, salt: str | None) -> None:
    """``sign`` = md5(param + salt), in either case of hex. No salt configured: nothing to check."""
    if not salt:
        return
    expected = hashlib.md5((param + salt).encode()).hexdigest().encode()
    check_signature(expected, sign, "kuaidi100 sign does not match md5(param + salt)", also=str.lower)


def read(body: bytes, headers: Mapping[str, str], secret: str | None, charset: str | None,
         received_at: float) -> Parsed:
    """A push as the endpoint receives it: the form, its signature, then ``parse``."""
    form = fields.form_fields(body, charset)
    param = fields.required_field(form, "param", "kuaidi100 pushes param and sign as a form")
    verify(param, form.get("sign"), secret)
    return parse(param)


def parse(param: str, on_unknown: Callable[[str, str], Any] | None = None) -> Parsed:
    doc = fields.json_object_in(param, "param")
    last = fields.object_at(doc.get("lastResult"), "param.lastResult", PushError)
    result = Parsed()
    declared = fields.carrier_of(SOURCE, last.get("com"), "param.lastResult.com") if last.get("com") else None
    if str(doc.get("autoCheck")) == "1" and doc.get("comNew"):
        corrected = fields.carrier_of(SOURCE, doc.get("comNew"), "param.comNew")
        if doc.get("comOld"):
            declared = fields.carrier_of(SOURCE, doc.get("comOld"), "param.comOld")
        if declared is None:
            declared = corrected
        elif declared.code != corrected.code:
            result.carrier_corrections.append((declared.code, corrected.code))
    if declared is None:
        raise PushError("param.lastResult.com", "is required (the carrier code)")
    if not declared.mapped:
        result.unknown_carriers.append(declared.code)
    number = fields.tracking_number(last.get("nu"), "param.lastResult.nu")
    data = fields.list_at(last.get("data"), "param.lastResult.data")
    state = fields.code_of(last.get("state"))
    for i, item in enumerate(data):
        where = f"param.lastResult.data[{i}]"
        try:
            entry = fields.object_at(item, where)
            t = fields.china_time(entry.get("ftime") or entry.get("time"), f"{where}.ftime")
            meaning, raw_code = _meaning(entry, state if i == 0 else "", result, on_unknown)
            province, city = _area(entry.get("areaName"))
            result.updates.append(scan(SOURCE, declared.code, number, t, settle(meaning, scan=True), code=raw_code,
                                       text=fields.text_of(entry.get("context")), city=city, province=province))
        except ElementError as exc:
            result.reject(exc)
        except InvalidEvent as exc:
            result.reject(exc, where)
    result.updates.sort(key=lambda u: u.event_time)  # kuaidi100 sends newest first
    return result


def _meaning(entry: dict[str, Any], state: str, result: Parsed, on_unknown: Callable[[str, str], Any] | None
             ) -> tuple[Meaning, str | None]:
    """The scan's meaning and the code it came from: its ``statusCode``, else its status name, else a plain scan.
    The newest scan takes the push's ``state`` instead (kuaidi100's latest word: a re-classification such as
    在途 → 疑难 → 拒签 shows there), unless the scan's own code is that state or details it."""
    own, raw = "", ""
    for code, known in ((fields.code_of(entry.get("statusCode")), STATE), (fields.code_of(entry.get("status")), NAME_CODES)):
        if not code:
            continue
        if code in known:
            own = code if known is STATE else NAME_CODES[code]
            raw = code
            break
        result.unknown(SOURCE, code, on_unknown)
    if state:
        if state not in STATE:
            result.unknown(SOURCE, state, on_unknown)
        elif not own or (own != state and SUBSTATE_OF.get(own) != state):
            return STATE[state], state
    return (STATE[own], raw) if own else (SCAN, None)


def _area(area: object) -> tuple[str | None, str | None]:
    """``areaName`` ("江苏,苏州市,相城区" or "杭州市") → (province, city)."""
    if not isinstance(area, str) or not area.strip():
        return None, None
    parts = [p.strip() for p in area.replace("，", ",").split(",") if p.strip()]
    if len(parts) >= 2:
        return parts[0], parts[1]
    return None, parts[0] if parts else None
