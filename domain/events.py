"""Normalised wire models: tracking updates and order events, and their validation.

Events arrive as JSON bytes. ``parse_tracking_update`` / ``parse_order_event`` check every field and
raise :class:`InvalidEvent` naming the field and the problem; the agents send such events to the
dead-letter topic with that reason. A reason never repeats the value it rejects: it ends up in logs,
headers and alerts, and a sender may put anything in any field (a buyer's name and phone in a province).
Times on the wire are ISO 8601 with an explicit offset (or epoch seconds); inside, every time is UTC epoch
seconds (float). An event time further ahead of now than configured is rejected (``check_not_ahead``).

The models are slotted dataclasses rather than ``faust.Record``: building a Record costs
about 2.1 µs against 0.3 µs for a slotted dataclass, and the detector core is budgeted at 5 µs an event.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .vocabulary import (
    CARRIERS,
    PLATFORMS,
    ExceptionReason,
    OrderEventKind,
    TrackingStatus,
    canonical_carrier,
    normalise_province,
)

# Event times outside these bounds are rejected as absurd, whatever the clock says.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
MAX_TEXT = 2000
MAX_ID = 64
# Characters that show as nothing (zero-width spaces and joiners, a BOM): text pasted from elsewhere carries them.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"


_TRACKING_STATUSES = frozenset(s.value for s in TrackingStatus)
_EXCEPTION_REASONS = frozenset(r.value for r in ExceptionReason)
_ORDER_KINDS = frozenset(k.value for k in OrderEventKind)


class InvalidEvent(ValueError):
    """An event failed validation: ``field`` names the offending field, ``problem`` says what was wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    @property
    def reason_code(self) -> str:
        """A bounded label for metrics: the field name (never the value)."""
        return self.field


def parcel_key(carrier: str, tracking_number: str) -> str:
    return f"{carrier}:{tracking_number}"


def format_time(epoch: float | None) -> str | None:
    """UTC ISO 8601 with offset; how every time leaves the system."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any, field: str) -> float:
    """ISO 8601 with an explicit offset, or epoch seconds -> UTC epoch seconds."""
    if isinstance(value, bool):
        raise InvalidEvent(field, "expected an ISO 8601 time with offset, got a boolean")
    if isinstance(value, (int, float)):
        ts = float(value)
        if not math.isfinite(ts):
            raise InvalidEvent(field, "is not a finite number")
    elif isinstance(value, str):
        if len(value) > 40:
            raise InvalidEvent(field, "is too long to be a time")
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise InvalidEvent(field, "is not an ISO 8601 time (write e.g. 2026-11-02T10:00:00+08:00)") from None
        if dt.tzinfo is None:
            raise InvalidEvent(field, "has no timezone offset (write e.g. 2026-11-02T10:00:00+08:00)")
        ts = dt.timestamp()
    else:
        raise InvalidEvent(field, f"expected an ISO 8601 time with offset, got {type(value).__name__}")
    if not EARLIEST_EVENT_TIME <= ts < LATEST_EVENT_TIME:
        try:
            shown = format_time(ts)
        except (ValueError, OverflowError, OSError):  # beyond what datetime can show (year 0, 1e20 ...)
            shown = "far outside it"
        raise InvalidEvent(field, f"is out of the plausible range 2000-2100: {shown}")
    return ts


def check_not_ahead(event_time: float, now: float, allowed_seconds: float, field: str = "event_time") -> None:
    """Raise InvalidEvent if ``event_time`` lies more than ``allowed_seconds`` after ``now``: a scan dated
    tomorrow would resolve issues ahead of time and is judged at a clock that never reaches it."""
    ahead = event_time - now
    if ahead > allowed_seconds:
        raise InvalidEvent(field, f"is {_span(ahead)} in the future; at most {_span(allowed_seconds)} ahead is "
                                  "accepted (config app.future_event_tolerance_seconds)")


def _span(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _str(data: dict[str, Any], field: str, *, required: bool = True, max_len: int = MAX_ID) -> str | None:
    value = data.get(field)
    if value.__class__ is str and value and len(value) <= max_len:
        return value  # the usual case, decided first (every field of every event comes through here)
    if value is None or value == "":
        if required:
            raise InvalidEvent(field, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(field, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidEvent(field, f"is longer than {max_len} characters ({len(value)})")
    return value


def _carrier(data: dict[str, Any]) -> str:
    """A canonical carrier code, or an unknown carrier kept under its source's code (``generic:anneng``,
    ``kuaidi100:zhongtongkuaiyun``; see ``canonical_carrier``): an unknown carrier is never rejected."""
    carrier = _str(data, "carrier")
    assert carrier is not None
    if carrier in CARRIERS:
        return carrier  # the usual case, decided first
    source = data.get("source")
    try:
        return canonical_carrier(carrier, source if isinstance(source, str) else "generic")
    except ValueError as exc:
        raise InvalidEvent("carrier", str(exc)) from None


def _tracking_number(data: dict[str, Any]) -> str:
    number = _str(data, "tracking_number", max_len=40)
    assert number is not None
    if not number.isascii() or not number.replace("-", "").isalnum():
        raise InvalidEvent("tracking_number", "must be letters, digits and dashes only")
    return number


def _province(data: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    raw = _str(data, field, required=required, max_len=20)
    if raw is None:
        return None
    province = normalise_province(raw)
    if province is None:
        raise InvalidEvent(field, "is not a known province name (write e.g. 广东 or 广东省)")
    return province


def decode_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from bytes, or InvalidEvent saying what is wrong with them."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("$", f"not valid JSON (UTF-8): {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("$", f"expected a JSON object, got {type(data).__name__}")
    return data


@dataclass(slots=True)
class TrackingUpdate:
    """One carrier scan, normalised. Keyed on Kafka by the parcel key ``CARRIER:tracking_number``."""

    event_id: str
    carrier: str
    tracking_number: str
    status: str
    event_time: float
    exception_reason: str | None = None
    province: str | None = None
    city: str | None = None
    raw_code: str | None = None
    raw_text: str | None = None
    source: str = "generic"

    @property
    def parcel_key(self) -> str:
        return f"{self.carrier}:{self.tracking_number}"

    def to_json(self) -> bytes:
        d = asdict(self)
        d["event_time"] = format_time(self.event_time)
        return orjson.dumps({k: v for k, v in d.items() if v is not None})


@dataclass(slots=True)
class OrderEvent:
    """A fact about an order from the shop platform. Keyed on Kafka by ``order_id``."""

    event_id: str
    order_id: str
    shop: str
    platform: str
    kind: str
    event_time: float
    carrier: str | None = None
    tracking_number: str | None = None
    origin_province: str | None = None
    destination_province: str | None = None
    destination_city: str | None = None
    promised_ship_time: float | None = None
    auto_confirm_deadline: float | None = None
    order_value: float | None = None
    category: str | None = None

    @property
    def parcel_key(self) -> str | None:
        if self.carrier and self.tracking_number:
            return f"{self.carrier}:{self.tracking_number}"
        return None

    def to_json(self) -> bytes:
        d = asdict(self)
        for f in ("event_time", "promised_ship_time", "auto_confirm_deadline"):
            d[f] = format_time(d[f])
        return orjson.dumps({k: v for k, v in d.items() if v is not None})


def parse_tracking_update(raw: bytes | dict[str, Any]) -> TrackingUpdate:
    data = decode_object(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    event_id = _str(data, "event_id", max_len=128)
    carrier = _carrier(data)
    number = _tracking_number(data)
    status = data.get("status")
    if not isinstance(status, str) or status not in _TRACKING_STATUSES:
        raise InvalidEvent("status", f"unknown status; expected one of {', '.join(sorted(_TRACKING_STATUSES))}")
    reason = data.get("exception_reason")
    if status == "exception":
        if reason is None:
            reason = "other"
        elif not isinstance(reason, str) or reason not in _EXCEPTION_REASONS:
            raise InvalidEvent("exception_reason", f"unknown reason; expected one of {', '.join(sorted(_EXCEPTION_REASONS))}")
    elif reason is not None:
        raise InvalidEvent("exception_reason", f"is only allowed with status 'exception', not {status!r}")
    get = data.get
    province = None if get("province") is None else _province(data, "province")
    # Positional (in field order): measurably cheaper than keywords, once per event. An absent optional
    # field is None without the validation call (which would say None too).
    return TrackingUpdate(
        event_id,  # type: ignore[arg-type]
        carrier,
        number,
        status,
        parse_time(get("event_time"), "event_time"),
        reason,
        province,
        None if get("city") is None else _str(data, "city", required=False, max_len=40),
        None if get("raw_code") is None else _str(data, "raw_code", required=False, max_len=40),
        None if get("raw_text") is None else _str(data, "raw_text", required=False, max_len=MAX_TEXT),
        (None if get("source") is None else _str(data, "source", required=False, max_len=32)) or "generic",
    )


def parse_order_event(raw: bytes | dict[str, Any]) -> OrderEvent:
    data = decode_object(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    event_id = _str(data, "event_id", max_len=128)
    order_id = _str(data, "order_id")
    shop = _str(data, "shop")
    platform = _str(data, "platform", max_len=20)
    assert platform is not None
    if platform not in PLATFORMS:
        raise InvalidEvent("platform", f"unknown platform; expected one of {', '.join(PLATFORMS)}")
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _ORDER_KINDS:
        raise InvalidEvent("kind", f"unknown order event kind; expected one of {', '.join(sorted(_ORDER_KINDS))}")
    event_time = parse_time(data.get("event_time"), "event_time")
    carrier = number = None
    if kind == "shipped":
        carrier = _carrier(data)
        number = _tracking_number(data)
    elif data.get("carrier") is not None or data.get("tracking_number") is not None:
        # Post-shipping facts may name the parcel; when they do it must be valid.
        carrier = _carrier(data)
        number = _tracking_number(data)
    value = data.get("order_value")
    order_value: float | None = None
    if value is not None:
        if isinstance(value, bool):
            raise InvalidEvent("order_value", "expected a number, got a boolean")
        try:
            order_value = float(value)
        except (TypeError, ValueError):
            raise InvalidEvent("order_value", f"expected a number, got {type(value).__name__}") from None
        if not math.isfinite(order_value) or order_value < 0:
            raise InvalidEvent("order_value", f"must be a finite amount >= 0, got {order_value}")
    promised = data.get("promised_ship_time")
    deadline = data.get("auto_confirm_deadline")
    if kind == "receipt_extended" and deadline is None:
        raise InvalidEvent("auto_confirm_deadline", "is required on receipt_extended (the new deadline)")
    # Positional (in field order): measurably cheaper than keywords, once per event.
    return OrderEvent(
        event_id,  # type: ignore[arg-type]
        order_id,  # type: ignore[arg-type]
        shop,  # type: ignore[arg-type]
        platform,
        kind,
        event_time,
        carrier,
        number,
        None if data.get("origin_province") is None else _province(data, "origin_province"),
        None if data.get("destination_province") is None else _province(data, "destination_province"),
        None if data.get("destination_city") is None else _str(data, "destination_city", required=False, max_len=40),
        None if promised is None else parse_time(promised, "promised_ship_time"),
        None if deadline is None else parse_time(deadline, "auto_confirm_deadline"),
        order_value,
        None if data.get("category") is None else _str(data, "category", required=False, max_len=40),
    )
