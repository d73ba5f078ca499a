"""AfterShip webhook: JSON body, ``aftership-hmac-sha256`` = base64 HMAC-SHA256(raw body, secret)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from domain.events import TrackingUpdate, parse_time

from . import BadSignature, Parsed, PushError, event_id, json_section
from .carriers import AFTERSHIP, canonical

SOURCE = "aftership"
TAG: dict[str, tuple[str, str | None]] = {
    "Pending": ("info_received", None), "InfoReceived": ("info_received", None), "InTransit": ("in_transit", None),
    "OutForDelivery": ("out_for_delivery", None), "AttemptFail": ("exception", "delivery_failed"),
    "Delivered": ("signed", None), "AvailableForPickup": ("at_locker", None), "Exception": ("exception", "other"),
    "Expired": ("exception", "held"),
}
SUBTAG: dict[str, tuple[str, str | None]] = {
    "InTransit_002": ("picked_up", None), "InTransit_001": ("in_transit", None),
    "Exception_002": ("exception", "unreachable"), "Exception_003": ("exception", "refused"),
    "Exception_004": ("exception", "customs"), "Exception_005": ("exception", "held"),
    "Exception_006": ("exception", "held"), "Exception_007": ("exception", "unreachable"),
    "Exception_008": ("exception", "delivery_failed"), "Exception_009": ("exception", "refused"),
    "Exception_010": ("exception", "returned"), "Exception_011": ("exception", "returned"),
    "Exception_012": ("exception", "damaged"), "Exception_013": ("exception", "lost"),
    "AttemptFail_001": ("exception", "delivery_failed"), "AttemptFail_002": ("exception", "unreachable"),
    "AttemptFail_003": ("exception", "delivery_failed"),
    "Delivered_001": ("signed", None), "Delivered_002": ("signed", None), "Delivered_003": ("signed", None),
    "Delivered_004": ("signed", None), "AvailableForPickup_001": ("at_locker", None),
    "Expired_001": ("exception", "held"),
}


def verify(body: bytes, header: str | None, secret: str | None) -> None:
    if not secret:
        return
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    if not header or not hmac.compare_digest(expected, header.strip()):
        raise BadSignature("aftership-hmac-sha256 does not match the body")


def parse(body: bytes, on_unknown: Any = None) -> Parsed:
    msg = json_section(body, "msg")
    carrier = canonical(AFTERSHIP, msg.get("slug"))
    if carrier is None:
        raise PushError("msg.slug", f"unknown carrier slug {str(msg.get('slug'))[:30]!r}")
    number = str(msg.get("tracking_number") or "")
    if not number:
        raise PushError("msg.tracking_number", "is required")
    result = Parsed()
    for i, cp in enumerate(msg.get("checkpoints") or []):
        where = f"msg.checkpoints[{i}]"
        if not isinstance(cp, dict):
            raise PushError(where, "expected an object")
        try:
            t = parse_time(cp.get("checkpoint_time"), f"{where}.checkpoint_time")
        except ValueError as exc:
            raise PushError(f"{where}.checkpoint_time", str(exc)) from None
        subtag, tag = str(cp.get("subtag") or ""), str(cp.get("tag") or "")
        mapped = SUBTAG.get(subtag) or TAG.get(tag)
        if mapped is None:
            result.unknown_codes.append(subtag or tag)
            if on_unknown:
                on_unknown(SOURCE, subtag or tag)
            mapped = ("in_transit", None)
        text = str(cp.get("message") or "")[:2000]
        result.updates.append(TrackingUpdate(
            event_id=event_id(SOURCE, carrier, number, t, subtag or tag, text), carrier=carrier,
            tracking_number=number, status=mapped[0], event_time=t, exception_reason=mapped[1],
            city=(str(cp.get("city"))[:40] if cp.get("city") else None), raw_code=subtag or tag or None,
            raw_text=text or None, source=SOURCE))
    result.updates.sort(key=lambda u: u.event_time)
    return result
