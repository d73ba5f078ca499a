"""17TRACK v2 webhook: JSON body; ``sign`` header = sha256(body + "/" + key) in hex."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from domain.events import TrackingUpdate, parse_time

from . import BadSignature, Parsed, PushError, event_id, json_section
from .carriers import SEVENTEENTRACK, canonical

SOURCE = "17track"
STATUS: dict[str, tuple[str, str | None]] = {
    "NotFound": ("info_received", None), "InfoReceived": ("info_received", None), "InTransit": ("in_transit", None),
    "Expired": ("exception", "held"), "AvailableForPickup": ("at_locker", None),
    "OutForDelivery": ("out_for_delivery", None), "DeliveryFailure": ("exception", "delivery_failed"),
    "Delivered": ("signed", None), "Exception": ("exception", "other"),
}
SUB_STATUS: dict[str, tuple[str, str | None]] = {
    "InTransit_PickedUp": ("picked_up", None), "DeliveryFailure_InvalidAddress": ("exception", "unreachable"),
    "Exception_Returning": ("exception", "returned"), "Exception_Returned": ("exception", "returned"),
    "Exception_Damage": ("exception", "damaged"), "Exception_Lost": ("exception", "lost"),
    "Exception_Rejected": ("exception", "refused"), "Exception_Delayed": ("exception", "held"),
}


def verify(body: bytes, sign: str | None, key: str | None) -> None:
    if not key:
        return
    expected = hashlib.sha256(body + b"/" + key.encode()).hexdigest()
    if not sign or not hmac.compare_digest(expected, sign.strip().lower()):
        raise BadSignature("17TRACK sign does not match sha256(body/key)")


def parse(body: bytes, on_unknown: Any = None) -> Parsed:
    data = json_section(body, "data")
    carrier = canonical(SEVENTEENTRACK, data.get("carrier"))
    if carrier is None:
        raise PushError("data.carrier", f"unknown carrier {str(data.get('carrier'))[:20]!r}")
    number = str(data.get("number") or "")
    if not number:
        raise PushError("data.number", "is required")
    info = data.get("track_info") or {}
    providers = ((info.get("tracking") or {}).get("providers") or []) if isinstance(info, dict) else []
    result = Parsed()
    for p, provider in enumerate(providers):
        for i, ev in enumerate((provider or {}).get("events") or []):
            where = f"data.track_info.tracking.providers[{p}].events[{i}]"
            try:
                t = parse_time(ev.get("time_iso") or ev.get("time_utc"), f"{where}.time_iso")
            except ValueError as exc:
                raise PushError(f"{where}.time_iso", str(exc)) from None
            sub, stage = str(ev.get("sub_status") or ""), str(ev.get("stage") or "")
            mapped = SUB_STATUS.get(sub) or STATUS.get(sub.split("_")[0] if sub else stage)
            if mapped is None:
                result.unknown_codes.append(sub or stage)
                if on_unknown:
                    on_unknown(SOURCE, sub or stage)
                mapped = ("in_transit", None)
            text = str(ev.get("description") or "")[:2000]
            result.updates.append(TrackingUpdate(
                event_id=event_id(SOURCE, carrier, number, t, sub, text), carrier=carrier, tracking_number=number,
                status=mapped[0], event_time=t, exception_reason=mapped[1], raw_code=sub or None,
                raw_text=text or None, source=SOURCE))
    result.updates.sort(key=lambda u: u.event_time)
    return result
