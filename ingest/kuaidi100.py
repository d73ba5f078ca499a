"""kuaidi100 (快递100) subscription push: form fields ``param`` (JSON) and ``sign`` = md5(param + salt).

Every documented state / sub-state maps to our status (``STATE``); free text (``context``) is never
used to decide "signed" — "无法签收" contains "签收". Times are China time without a zone.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

import orjson

from domain.events import TrackingUpdate
from domain.vocabulary import CHINA_TZ

from . import BadSignature, Parsed, PushError, event_id
from .carriers import KUAIDI100, canonical

SOURCE = "kuaidi100"
OK_REPLY = {"result": True, "returnCode": "200", "message": "成功"}
FAIL_REPLY = {"result": False, "returnCode": "500", "message": "失败"}

# code -> (status, exception reason)
STATE: dict[str, tuple[str, str | None]] = {
    "1": ("picked_up", None), "101": ("info_received", None), "102": ("info_received", None),
    "103": ("picked_up", None),
    "0": ("in_transit", None), "1001": ("arrived_city", None), "1002": ("in_transit", None),
    "1003": ("in_transit", None),
    "5": ("out_for_delivery", None), "501": ("at_locker", None),
    "3": ("signed", None), "301": ("signed", None), "302": ("signed", None), "303": ("signed", None),
    "304": ("signed", None),
    "6": ("exception", "returned"), "4": ("exception", "returned"), "401": ("exception", "returned"),
    "14": ("exception", "refused"), "7": ("in_transit", None),
    "2": ("exception", "problem_parcel"), "201": ("exception", "problem_parcel"),
    "202": ("exception", "held"), "203": ("exception", "refused"), "204": ("exception", "delivery_failed"),
    "205": ("at_locker", None), "206": ("exception", "unreachable"), "207": ("exception", "out_of_area"),
    "208": ("exception", "held"), "209": ("exception", "damaged"), "210": ("exception", "other"),
    "8": ("in_transit", None), "10": ("in_transit", None), "11": ("in_transit", None), "12": ("in_transit", None),
    "13": ("exception", "customs"),
}


def verify(param: str, sign: str | None, salt: str | None) -> None:
    if not salt:
        return
    expected = hashlib.md5((param + salt).encode()).hexdigest()
    if not sign or not hmac.compare_digest(expected.upper(), sign.strip().upper()):
        raise BadSignature("kuaidi100 sign does not match md5(param + salt)")


def _time(raw: Any, where: str) -> float:
    try:
        return datetime.strptime(str(raw), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ).timestamp()
    except ValueError:
        raise PushError(where, f"expected YYYY-MM-DD HH:MM:SS (China time), got {str(raw)[:30]!r}") from None


def parse(param: str, on_unknown: Any = None) -> Parsed:
    try:
        doc = orjson.loads(param)
    except orjson.JSONDecodeError as exc:
        raise PushError("param", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("lastResult"), dict):
        raise PushError("param.lastResult", "is required (an object)")
    last = doc["lastResult"]
    result = Parsed()
    declared = canonical(KUAIDI100, last.get("com"))
    carrier = declared
    if str(doc.get("autoCheck")) == "1" and doc.get("comNew"):
        corrected = canonical(KUAIDI100, doc.get("comNew"))
        if corrected is None:
            raise PushError("param.comNew", f"unknown carrier code {str(doc.get('comNew'))[:20]!r}")
        old = canonical(KUAIDI100, doc.get("comOld")) or declared
        if old and old != corrected:
            result.carrier_correction = (old, corrected)
        carrier = corrected
    if carrier is None:
        raise PushError("param.lastResult.com", f"unknown carrier code {str(last.get('com'))[:20]!r}")
    number = str(last.get("nu") or "")
    if not number:
        raise PushError("param.lastResult.nu", "is required")
    data = last.get("data") or []
    if not isinstance(data, list):
        raise PushError("param.lastResult.data", "expected a list")
    for i, scan in enumerate(data):
        where = f"param.lastResult.data[{i}]"
        if not isinstance(scan, dict):
            raise PushError(where, "expected an object")
        t = _time(scan.get("ftime") or scan.get("time"), f"{where}.ftime")
        code = str(scan.get("statusCode") or "")
        mapped = STATE.get(code)
        if mapped is None:
            if code:
                result.unknown_codes.append(code)
                if on_unknown:
                    on_unknown(SOURCE, code)
            # No code we know: only the push-level state may say more, never the text.
            mapped = STATE.get(str(last.get("state")), ("in_transit", None)) if i == 0 else ("in_transit", None)
            if mapped[0] == "signed" and str(last.get("ischeck")) != "1":
                mapped = ("in_transit", None)
        status, reason = mapped
        text = str(scan.get("context") or "")[:2000]
        result.updates.append(TrackingUpdate(
            event_id=event_id(SOURCE, carrier, number, t, code, text), carrier=carrier, tracking_number=number,
            status=status, event_time=t, exception_reason=reason, city=(str(scan.get("areaName"))[:40] or None)
            if scan.get("areaName") else None, raw_code=code or None, raw_text=text or None, source=SOURCE))
    result.updates.sort(key=lambda u: u.event_time)  # kuaidi100 sends newest first
    return result
