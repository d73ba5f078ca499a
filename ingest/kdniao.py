"""kdniao (快递鸟) track push (轨迹订阅推送, standard and 增值版) → tracking updates.

Where the tables come from: kdniao's push documentation ("推送(增值版)接口(商户实现)", apifox.com/apidoc/docs-site/
2538027/doc-2283185: RequestData, Data[] with ShipperCode, LogisticCode, State, StateEx, Location, Traces[]
{AcceptTime, AcceptStation, Location, Action, Remark}), kdniao's signature page (apitest.kdniao.com/checkSign.aspx:
DataSign = Base64(MD5(RequestData + ApiKey)) with the MD5 written as 32 lower-case hex digits, not URL-encoded
again for pushes), kdniao's 物流状态 / 增值物流状态 code table, and ``../shared/reference/carrier-status-codes.md``.

Transport: HTTP POST, ``application/x-www-form-urlencoded;charset=utf-8``, fields ``RequestData`` (JSON),
``DataSign``, ``RequestType`` (101 / 102: a track push). ``RequestData``: {EBusinessID, PushTime, Count, Data: [one
object per parcel]}; each parcel's Traces are its whole history. kdniao expects {"EBusinessID", "UpdateTime",
"Success", "Reason"}: ``Success: false`` makes it push again, so a push we keep (taken, or stored as a dead
letter) is answered ``Success: true`` and only a temporary failure ``false``. A parcel that cannot be read is
rejected alone; the other parcels of the push are taken.

Per trace: ``Action`` (the trace's own state code, 增值版), else for the newest trace the parcel's ``StateEx``
(else ``State``), else a plain scan. ``State``: 0 no trace, 1 picked up, 2 in transit, 3 signed, 4 problem.
``StateEx``: 1 已揽收, 2 在途中, 201 到达派件城市, 202 派件中, 204 到达转运中心, 211 已放入快递柜或驿站, 3 已签收,
301 正常签收, 302 派件异常后最终签收, 304 代收签收, 311 快递柜或驿站签收, 4 问题件, 401 发货无信息, 402 超时未签收,
403 超时未更新, 404 拒收(退件), 405 派件异常, 406 退货签收, 407 退货未签收, 412 快递柜或驿站超时未取, 413 单号已拦截,
414 破损, 415 客户取消发货, 416 无法联系, 417 配送延迟, 418 快件取出, 419 重新派送, 420 收货地址不详细,
421 收件人电话错误, 422 错分件, 423 超区件, 10 待揽件. Timers: 401, 402, 403 are kdniao's own clock (see
``ingest/__init__.py``). A parcel with no trace at all gives its State / StateEx once, at the push time.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from domain.events import InvalidEvent
from domain.vocabulary import CHINA_TZ

from . import NO_SCAN_YET, SCAN, TIMER, ElementError, Meaning, Parsed, PushError, check_signature, fields, scan, settle

SOURCE = "kdniao"
PUSH_REQUEST_TYPES = ("101", "102")

STATE_EX: dict[str, Meaning] = {
    "0": NO_SCAN_YET, "10": NO_SCAN_YET,
    "1": Meaning("picked_up"), "2": Meaning("in_transit"), "201": Meaning("arrived_city"),
    "202": Meaning("out_for_delivery"), "204": Meaning("in_transit"), "211": Meaning("at_locker"),
    "3": Meaning("signed"), "301": Meaning("signed"), "302": Meaning("signed"), "304": Meaning("signed"),
    "311": Meaning("signed"),
    "4": Meaning("exception", "problem_parcel"), "401": TIMER, "402": TIMER, "403": TIMER,
    "404": Meaning("exception", "refused"), "405": Meaning("exception", "delivery_failed"),
    "406": Meaning("exception", "returned"), "407": Meaning("exception", "returned"), "412": Meaning("at_locker"),
    "413": Meaning("exception", "returned"), "414": Meaning("exception", "damaged"),
    "415": Meaning("exception", "other"), "416": Meaning("exception", "unreachable"),
    "417": Meaning("exception", "held"), "418": Meaning("in_transit"), "419": Meaning("out_for_delivery"),
    "420": Meaning("exception", "unreachable"), "421": Meaning("exception", "unreachable"),
    "422": Meaning("in_transit"), "423": Meaning("exception", "out_of_area"),
}


def sign(request_data: str, api_key: str) -> str:
    """kdniao's DataSign: Base64 of the lower-case hex MD5 of RequestData + ApiKey."""
    return base64.b64encode(hashlib.md5((request_data + api_key).encode()).hexdigest().encode()).decode()


def verify(request_data: str, data_sign: str | None, api_key: str | None) -> None:
    if not api_key:
        return
    # Some senders URL-encode the sign once more ("%3d" for "="): that spelling of the same value is accepted.
    check_signature(sign(request_data, api_key).encode(), data_sign,
                    "kdniao DataSign does not match Base64(MD5(RequestData + ApiKey))", also=urllib.parse.unquote)


def read(body: bytes, headers: Mapping[str, str], secret: str | None, charset: str | None,
         received_at: float) -> Parsed:
    form = fields.form_fields(body, charset)
    request_data = fields.required_field(form, "RequestData", "kdniao pushes RequestData, DataSign and RequestType")
    verify(request_data, form.get("DataSign"), secret)
    request_type = form.get("RequestType", "").strip()
    if request_type and request_type not in PUSH_REQUEST_TYPES:
        raise PushError("RequestType", f"{request_type[:10]!r} is not a track push (expected 101 or 102)")
    return parse(request_data, received_at=received_at)


def parse(request_data: str, *, received_at: float) -> Parsed:
    doc = fields.json_object_in(request_data, "RequestData")
    result = Parsed()
    business = fields.code_of(doc.get("EBusinessID"))
    if business:
        result.reply_context["EBusinessID"] = business[:40]
    pushed_at = received_at
    if doc.get("PushTime"):
        try:
            pushed_at = fields.china_time(doc.get("PushTime"), "RequestData.PushTime")
        except ElementError:
            pushed_at = received_at
    for p, item in enumerate(fields.list_at(doc.get("Data"), "RequestData.Data")):
        where = f"RequestData.Data[{p}]"
        try:
            _parcel(fields.object_at(item, where), where, pushed_at, result)
        except ElementError as exc:
            result.reject(exc)
    result.updates.sort(key=lambda u: u.event_time)
    return result


def _parcel(parcel: dict[str, Any], where: str, pushed_at: float, result: Parsed) -> None:
    carrier = fields.carrier_of(SOURCE, parcel.get("ShipperCode"), f"{where}.ShipperCode", ElementError)
    number = fields.tracking_number(parcel.get("LogisticCode"), f"{where}.LogisticCode", ElementError)
    if not carrier.mapped:
        result.unknown_carriers.append(carrier.code)
    state_ex, state = fields.code_of(parcel.get("StateEx")), fields.code_of(parcel.get("State"))
    traces = parcel.get("Traces")
    if traces is not None and not isinstance(traces, list):
        raise ElementError(f"{where}.Traces", "expected a list")
    traces = traces or []
    newest = _newest(traces)
    for i, item in enumerate(traces):
        at = f"{where}.Traces[{i}]"
        try:
            trace = fields.object_at(item, at)
            t = fields.china_time(trace.get("AcceptTime"), f"{at}.AcceptTime")
            meaning, code = _meaning(fields.code_of(trace.get("Action")), (state_ex, state) if i == newest else ("", ""),
                                     result)
            result.updates.append(scan(SOURCE, carrier.code, number, t, settle(meaning, scan=True), code=code,
                                       text=fields.text_of(trace.get("AcceptStation")), city=fields.text_of(trace.get("Location"))))
        except ElementError as exc:
            result.reject(exc)
        except InvalidEvent as exc:
            result.reject(exc, at)
    if not traces and (state_ex or state):
        meaning, code = _meaning("", (state_ex, state), result)
        try:
            result.updates.append(scan(SOURCE, carrier.code, number, pushed_at, settle(meaning, scan=False), code=code,
                                       text=fields.text_of(parcel.get("Reason")), city=fields.text_of(parcel.get("Location"))))
        except InvalidEvent as exc:
            result.reject(exc, where)


def _newest(traces: list[Any]) -> int:
    """The index of the newest trace (kdniao lists them oldest first; compare times to be sure)."""
    best, best_t = -1, float("-inf")
    for i, item in enumerate(traces):
        try:
            t = fields.china_time(item.get("AcceptTime"), "") if isinstance(item, dict) else None
        except ElementError:
            t = None
        if t is not None and t >= best_t:
            best, best_t = i, t
    return best


def _meaning(action: str, states: tuple[str, str], result: Parsed) -> tuple[Meaning, str | None]:
    """A trace's own Action; on the newest trace the parcel's StateEx instead (kdniao's latest word) unless the
    Action is that state or details it, and the parcel's basic State only when the trace has no Action of its
    own; else a plain scan."""
    state_ex, state = states
    own = action if action in STATE_EX else ""
    for code in (action, state_ex, state):
        if code and code not in STATE_EX:
            result.unknown(SOURCE, code)
    if state_ex in STATE_EX and not (own and (own == state_ex or own.startswith(state_ex))):
        return STATE_EX[state_ex], state_ex
    if own:
        return STATE_EX[own], own
    if state in STATE_EX:
        return STATE_EX[state], state
    return SCAN, None


def reply(success: bool, reason: str, context: Mapping[str, str], now: float) -> dict[str, Any]:
    """kdniao's reply: ``Success: false`` only when the push must come again."""
    return {
        "EBusinessID": context.get("EBusinessID", ""),
        "UpdateTime": datetime.fromtimestamp(now, tz=CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"),
        "Success": success,
        "Reason": reason,
    }
