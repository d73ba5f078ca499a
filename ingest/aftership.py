"""AfterShip tracking webhook → tracking updates.

Where the tables come from: AfterShip's webhook specification (aftership.com/docs/tracking/webhook/
webhook-specifications: ``ts``, ``event``, ``event_id``, ``msg``), its webhook signature page (header
``aftership-hmac-sha256`` = Base64 HMAC-SHA256 of the raw body with the webhook secret), its checkpoint model
(aftership.com/docs/tracking/model/checkpoint: ``checkpoint_time`` "provided by the carrier, in the timezone of
the checkpoint", written ``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM:SS`` or ``YYYY-MM-DDTHH:MM:SS+TIMEZONE``), its delivery
statuses (tags) and sub-statuses (subtags, aftership.com/docs/tracking/enum/delivery-sub-statuses), and
``../shared/reference/carrier-status-codes.md``.

AfterShip retries any answer outside 200-299 (up to 14 times, 2^n x 30 s apart): a push we keep (taken, or
stored as a dead letter) is answered 2xx; a body that is not an AfterShip webhook at all gets a 4xx naming the
problem.

Times: with an offset, as given. Without one, local time at the checkpoint: the zone of its ``country_region``
(``country_iso3`` in older versions) and ``state`` (``ingest/timezones.py``), else of the tracking's
destination, else its origin, else China time. A date alone is the start of that day there (the carrier gave no
hour; a day's start never lies in the future). A tracking with a tag but no checkpoints (Expired, Exception,
InfoReceived ...) still gives its status once, at the webhook's ``ts``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from domain.events import InvalidEvent
from domain.vocabulary import CHINA_TZ

from . import NO_SCAN_YET, TIMER, ElementError, Meaning, Parsed, PushError, check_signature, fields, scan, settle, signed_by_header
from .timezones import zone_of

SOURCE = "aftership"
SIGNATURE_HEADER = "aftership-hmac-sha256"

TAG: dict[str, Meaning] = {
    "Pending": NO_SCAN_YET, "InfoReceived": NO_SCAN_YET, "InTransit": Meaning("in_transit"),
    "OutForDelivery": Meaning("out_for_delivery"), "AttemptFail": Meaning("exception", "delivery_failed"),
    "Delivered": Meaning("signed"), "AvailableForPickup": Meaning("at_locker"), "Exception": Meaning("exception", "other"),
    "Expired": TIMER,
}
SUBTAG: dict[str, Meaning] = {
    **{f"Pending_00{n}": NO_SCAN_YET for n in range(1, 7)}, "InfoReceived_001": NO_SCAN_YET,
    "InTransit_001": Meaning("in_transit"), "InTransit_002": Meaning("picked_up"), "InTransit_003": Meaning("in_transit"),
    "InTransit_004": Meaning("in_transit"), "InTransit_005": Meaning("in_transit"), "InTransit_006": Meaning("in_transit"),
    "InTransit_007": Meaning("in_transit"), "InTransit_008": Meaning("in_transit"), "InTransit_009": Meaning("in_transit"),
    "OutForDelivery_001": Meaning("out_for_delivery"), "OutForDelivery_003": Meaning("out_for_delivery"),
    "OutForDelivery_004": Meaning("out_for_delivery"),
    "AttemptFail_001": Meaning("exception", "delivery_failed"), "AttemptFail_002": Meaning("exception", "unreachable"),
    "AttemptFail_003": Meaning("exception", "delivery_failed"),
    "Delivered_001": Meaning("signed"), "Delivered_002": Meaning("signed"), "Delivered_003": Meaning("signed"),
    "Delivered_004": Meaning("signed"), "AvailableForPickup_001": Meaning("at_locker"),
    "Exception_001": Meaning("exception", "other"), "Exception_002": Meaning("exception", "unreachable"),
    "Exception_003": Meaning("exception", "refused"), "Exception_004": Meaning("exception", "customs"),
    "Exception_005": Meaning("exception", "held"), "Exception_006": Meaning("exception", "held"),
    "Exception_007": Meaning("exception", "unreachable"), "Exception_008": Meaning("exception", "delivery_failed"),
    "Exception_009": Meaning("exception", "other"), "Exception_010": Meaning("exception", "returned"),
    "Exception_011": Meaning("exception", "returned"), "Exception_012": Meaning("exception", "damaged"),
    "Exception_013": Meaning("exception", "lost"), "Exception_016": Meaning("exception", "held"),
    "Exception_017": Meaning("exception", "held"), "Exception_018": Meaning("exception", "customs"),
    "Expired_001": TIMER,
}


def verify(body: bytes, header: str | None, secret: str | None) -> None:
    if not secret:
        return
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    check_signature(expected, header, f"{SIGNATURE_HEADER} does not match the body")


def parse(body: bytes, on_unknown: Callable[[str, str], Any] | None = None, *, charset: str | None = None,
          received_at: float | None = None) -> Parsed:
    doc = fields.json_document(body, charset)
    if not isinstance(doc, dict):
        raise PushError("$", "expected a JSON object (an AfterShip webhook: ts, event, msg)")
    msg = fields.object_at(doc.get("msg"), "msg", PushError)
    result = Parsed()
    carrier = fields.carrier_of(SOURCE, msg.get("slug"), "msg.slug")
    if not carrier.mapped:
        result.unknown_carriers.append(carrier.code)
    number = fields.tracking_number(msg.get("tracking_number"), "msg.tracking_number")
    fallback = (_zone(msg, "destination_country_region", "destination_country_iso3", None)
                or _zone(msg, "origin_country_region", "origin_country_iso3", None) or CHINA_TZ)
    checkpoints = fields.list_at(msg.get("checkpoints"), "msg.checkpoints")
    for i, item in enumerate(checkpoints):
        where = f"msg.checkpoints[{i}]"
        try:
            cp = fields.object_at(item, where)
            zone = _zone(cp, "country_region", "country_iso3", cp.get("state")) or fallback
            t = fields.local_time(cp.get("checkpoint_time"), f"{where}.checkpoint_time", zone)
            meaning, code = _meaning(fields.code_of(cp.get("subtag")), fields.code_of(cp.get("tag")), result, on_unknown)
            city = fields.text_of(cp.get("city")) or None
            result.updates.append(scan(SOURCE, carrier.code, number, t, settle(meaning, scan=True), code=code,
                                       text=fields.text_of(cp.get("message")), city=city))
        except ElementError as exc:
            result.reject(exc)
        except InvalidEvent as exc:
            result.reject(exc, where)
    tag = fields.code_of(msg.get("tag"))
    if not checkpoints and tag:
        _without_checkpoints(doc.get("ts"), msg, carrier.code, number, tag, result, on_unknown, received_at)
    result.updates.sort(key=lambda u: u.event_time)
    return result


read = signed_by_header(verify, SIGNATURE_HEADER, parse)


def _without_checkpoints(ts: object, msg: dict[str, Any], carrier: str, number: str, tag: str, result: Parsed,
                         on_unknown: Callable[[str, str], Any] | None, received_at: float | None) -> None:
    """A tracking's tag with no checkpoint to carry it: its status once, at the webhook's ``ts``."""
    try:
        t = received_at if ts is None and received_at is not None else fields.epoch_time(ts, "ts")
        meaning, code = _meaning(fields.code_of(msg.get("subtag")), tag, result, on_unknown)
        result.updates.append(scan(SOURCE, carrier, number, t, settle(meaning, scan=False), code=code,
                                   text=fields.text_of(msg.get("subtag_message"))))
    except ElementError as exc:
        result.reject(exc)
    except InvalidEvent as exc:
        result.reject(exc, "msg.tag")


def _zone(place: dict[str, Any], key: str, older_key: str, state: object) -> tzinfo | None:
    return zone_of(place.get(key) or place.get(older_key), state)


def _meaning(subtag: str, tag: str, result: Parsed, on_unknown: Callable[[str, str], Any] | None
             ) -> tuple[Meaning, str | None]:
    """The subtag's meaning, else its tag's (a subtag's prefix is its tag), else a plain scan (counted)."""
    for code in (subtag, tag, subtag.partition("_")[0]):
        if code and (code in SUBTAG or code in TAG):
            return SUBTAG.get(code) or TAG[code], subtag or tag
    return result.unknown(SOURCE, subtag or tag, on_unknown)
