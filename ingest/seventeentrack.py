"""17TRACK v2.2 webhook → tracking updates.

Where the tables come from: 17TRACK API v2.2 documentation (asset.17track.net/api/document/v2.2_zh/: WebHook,
``event`` TRACKING_UPDATED / TRACKING_STOPPED, ``data.track_info`` with ``latest_status`` {status, sub_status},
``milestone`` key stages, ``tracking.providers[].events[]`` {time_iso, time_utc, time_raw, description, location,
stage, sub_status, address}; the ``sign`` header = SHA-256 hex of body + "/" + key), its status and sub-status
appendix (9 statuses, 30 sub-statuses), its key stages (InfoReceived, PickedUp, Departure, Arrival,
AvailableForPickup, OutForDelivery, Delivered, Returning, Returned), its carrier list (see
``ingest/carriers.py``), and ``../shared/reference/carrier-status-codes.md``.

17TRACK treats any answer but 200 as a failed push and tries again: a push we keep (taken, or stored as a dead
letter) is answered 200. A v1 push (``data.track`` with its numeric ``e`` status, the format before v2) is not
silently taken: it is answered 400 saying so, and kept as a dead letter to replay once the webhook is switched.

Per event: ``sub_status``, else ``stage``, else for the newest event the tracking's ``latest_status`` (its
sub-status, else its status), else a plain scan. ``Expired`` (运输过久) is 17TRACK's own clock (see
``ingest/__init__.py``). Times: ``time_utc`` / ``time_iso`` (with offsets); else ``time_raw`` read in the zone of
the event's ``address.country``. A tracking with a status but no event still gives it once, at the push's time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from domain.events import InvalidEvent
from domain.vocabulary import CHINA_TZ

from . import NO_SCAN_YET, SCAN, TIMER, ElementError, Meaning, Parsed, PushError, check_signature, fields, scan, settle, signed_by_header
from .timezones import zone_of

SOURCE = "17track"
SIGNATURE_HEADER = "sign"

STATUS: dict[str, Meaning] = {
    "NotFound": NO_SCAN_YET, "InfoReceived": NO_SCAN_YET, "InTransit": Meaning("in_transit"), "Expired": TIMER,
    "AvailableForPickup": Meaning("at_locker"), "OutForDelivery": Meaning("out_for_delivery"),
    "DeliveryFailure": Meaning("exception", "delivery_failed"), "Delivered": Meaning("signed"),
    "Exception": Meaning("exception", "other"),
}
SUB_STATUS: dict[str, Meaning] = {
    "NotFound_Other": NO_SCAN_YET, "NotFound_InvalidCode": NO_SCAN_YET, "InfoReceived": NO_SCAN_YET,
    "InTransit_PickedUp": Meaning("picked_up"), "InTransit_Other": Meaning("in_transit"),
    "InTransit_Departure": Meaning("in_transit"), "InTransit_Arrival": Meaning("in_transit"),
    "InTransit_CustomsProcessing": Meaning("in_transit"), "InTransit_CustomsReleased": Meaning("in_transit"),
    "InTransit_CustomsRequiringInformation": Meaning("exception", "customs"),
    "Expired_Other": TIMER, "AvailableForPickup_Other": Meaning("at_locker"),
    "OutForDelivery_Other": Meaning("out_for_delivery"),
    "DeliveryFailure_Other": Meaning("exception", "delivery_failed"),
    "DeliveryFailure_NoBody": Meaning("exception", "unreachable"), "DeliveryFailure_Security": Meaning("exception", "held"),
    "DeliveryFailure_Rejected": Meaning("exception", "refused"),
    "DeliveryFailure_InvalidAddress": Meaning("exception", "unreachable"),
    "Delivered_Other": Meaning("signed"),
    "Exception_Other": Meaning("exception", "other"), "Exception_Returning": Meaning("exception", "returned"),
    "Exception_Returned": Meaning("exception", "returned"), "Exception_NoBody": Meaning("exception", "unreachable"),
    "Exception_Security": Meaning("exception", "held"), "Exception_Damage": Meaning("exception", "damaged"),
    "Exception_Rejected": Meaning("exception", "refused"), "Exception_Delayed": Meaning("exception", "held"),
    "Exception_Lost": Meaning("exception", "lost"), "Exception_Destroyed": Meaning("exception", "lost"),
    "Exception_Cancel": Meaning("exception", "other"),
}
STAGE: dict[str, Meaning] = {
    "InfoReceived": NO_SCAN_YET, "PickedUp": Meaning("picked_up"), "Departure": Meaning("in_transit"),
    "Arrival": Meaning("in_transit"), "AvailableForPickup": Meaning("at_locker"),
    "OutForDelivery": Meaning("out_for_delivery"), "Delivered": Meaning("signed"),
    "Returning": Meaning("exception", "returned"), "Returned": Meaning("exception", "returned"),
}


def verify(body: bytes, sign: str | None, key: str | None) -> None:
    if not key:
        return
    expected = hashlib.sha256(body + b"/" + key.encode()).hexdigest().encode()
    check_signature(expected, sign, "17TRACK sign does not match sha256(body/key)", also=str.lower)


def parse(body: bytes, on_unknown: Callable[[str, str], Any] | None = None, *, charset: str | None = None,
          received_at: float | None = None) -> Parsed:
    data = fields.json_section(body, "data", charset)
    if "track" in data and "track_info" not in data:
        raise PushError("data.track", "this is a 17TRACK v1 push; parcelwatch reads v2.2 pushes: set the webhook "
                                      "version to v2.2 in the 17TRACK console, then replay the dead letters")
    result = Parsed()
    carrier = fields.carrier_of(SOURCE, data.get("carrier"), "data.carrier")
    if not carrier.mapped:
        result.unknown_carriers.append(carrier.code)
    number = fields.tracking_number(data.get("number"), "data.number")
    info = data.get("track_info")
    if info is None:
        return result  # TRACKING_STOPPED and the like: nothing to track
    info = fields.object_at(info, "data.track_info", PushError)
    latest = fields.optional_object(info.get("latest_status"))
    latest_codes = (fields.code_of(latest.get("sub_status")), fields.code_of(latest.get("status")))
    tracking = info.get("tracking")
    providers = fields.list_at(fields.object_at(tracking, "data.track_info.tracking", PushError).get("providers"),
                        "data.track_info.tracking.providers") if tracking is not None else []
    events: list[tuple[str, Any]] = []
    for p, provider in enumerate(providers):
        where = f"data.track_info.tracking.providers[{p}]"
        if not isinstance(provider, dict) or not isinstance(provider.get("events", []), (list, type(None))):
            result.reject(ElementError(where, "expected an object with a list of events"))
            continue
        events += [(f"{where}.events[{i}]", ev) for i, ev in enumerate(provider.get("events") or [])]
    timed: list[tuple[float, str, dict[str, Any]]] = []
    for where, item in events:
        try:
            ev = fields.object_at(item, where)
            timed.append((_time(ev, where), where, ev))
        except ElementError as exc:
            result.reject(exc)
    newest = max(range(len(timed)), key=lambda i: timed[i][0], default=-1)
    for i, (t, where, ev) in enumerate(timed):
        codes = (fields.code_of(ev.get("sub_status")), fields.code_of(ev.get("stage")))
        if i == newest and not any(codes):
            codes = latest_codes
        meaning, code = _meaning(codes, result, on_unknown)
        address = fields.optional_object(ev.get("address"))
        try:
            result.updates.append(scan(SOURCE, carrier.code, number, t, settle(meaning, scan=True), code=code,
                                       text=fields.text_of(ev.get("description")), city=fields.text_of(address.get("city")) or None))
        except InvalidEvent as exc:
            result.reject(exc, where)
    if not events and any(latest_codes) and received_at is not None:
        meaning, code = _meaning(latest_codes, result, on_unknown)
        try:
            result.updates.append(scan(SOURCE, carrier.code, number, received_at, settle(meaning, scan=False),
                                       code=code, text=""))
        except InvalidEvent as exc:
            result.reject(exc, "data.track_info.latest_status")
    result.updates.sort(key=lambda u: u.event_time)
    return result


read = signed_by_header(verify, SIGNATURE_HEADER, parse)


def _time(ev: dict[str, Any], where: str) -> float:
    """``time_utc`` or ``time_iso`` (offsets given); else ``time_raw`` in the zone of the event's country."""
    for key in ("time_utc", "time_iso"):
        if ev.get(key):
            return fields.local_time(ev.get(key), f"{where}.{key}", CHINA_TZ)
    raw = ev.get("time_raw")
    if isinstance(raw, dict) and raw.get("date"):
        address = fields.optional_object(ev.get("address"))
        zone = zone_of(address.get("country"), address.get("state")) or CHINA_TZ
        text = f"{raw.get('date')} {raw.get('time') or '00:00:00'}".strip()
        offset = fields.code_of(raw.get("timezone"))
        return fields.local_time(f"{text}{offset}" if offset.startswith(("+", "-")) else text, f"{where}.time_raw", zone)
    raise ElementError(f"{where}.time_iso", "is required (time_utc, time_iso or time_raw)")


def _meaning(codes: tuple[str, str], result: Parsed, on_unknown: Callable[[str, str], Any] | None
             ) -> tuple[Meaning, str | None]:
    """The sub-status's meaning, else the stage's (or a status's), else a plain scan (counted when unknown). A
    key stage says more than a sub-status that only says "in transit" (PickedUp beside InTransit_Other)."""
    sub, other = codes
    staged = STAGE.get(other) or STATUS.get(other)
    if sub in SUB_STATUS and not (staged is not None and SUB_STATUS[sub] == SCAN):
        return SUB_STATUS[sub], sub
    if staged is not None:
        return staged, other
    main = sub.partition("_")[0]
    if main in STATUS:
        return STATUS[main], sub
    return result.unknown(SOURCE, sub or other, on_unknown)
