"""Ingest adapters: aggregator pushes (kuaidi100, kdniao, AfterShip, 17TRACK, our own JSON) → normalised tracking
updates. Pure parsing and mapping here; the HTTP endpoints (signatures' secrets, replies, dead letters) are in
``web/ingest.py``. Formats, statuses and carriers accepted: ``docs/ingest.md``.

What every adapter holds to:
- A push the adapter cannot read as a whole (not the vendor's envelope, no tracking number) is a ``PushError``
  naming the field. An element that cannot be read (one scan, one parcel of a kdniao push) is rejected alone, as
  a ``Rejection`` with its path; the rest of the push is taken.
- Every status comes from the vendor's documented codes, per scan; free text never decides one. The source's own
  code stays in ``raw_code``. A code no table knows is counted (``Parsed.unknown_codes``) and read as a plain scan.
- An aggregator's own timer (kuaidi100 201/202, kdniao 401/402/403, AfterShip and 17TRACK "Expired") is the
  vendor's opinion of "late", not carrier news: parcelwatch raises its own overdue and stale issues, so a timer
  never becomes a carrier exception. On a real scan it is a plain scan at that scan's own time (it moves nothing
  forward); without a scan it says only that the carrier has shown nothing yet (``info_received``).
- A scan's event id covers its status, so a change of status on a scan already sent is a new event.
- A carrier nobody maps is kept under the source's code (``ingest.carriers.resolve``) and counted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import orjson

from domain.events import MAX_TEXT, InvalidEvent, TrackingUpdate, parse_tracking_update
from domain.vocabulary import CHINA_TZ, is_mapped_carrier, normalise_province

from .carriers import resolve

MAX_RAW_CODE = 40
MAX_CITY = 40


class PushError(ValueError):
    """A push that cannot be read as a whole: ``field`` names the place, ``problem`` what was wrong (HTTP 4xx)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class BadSignature(ValueError):
    """The push is not signed with the configured secret (HTTP 401)."""


class ElementError(ValueError):
    """One element of a push (a scan, a parcel) cannot be read; the rest of the push is taken."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Rejection:
    """An element rejected alone: where it is in the push (``data[3].ftime``) and what was wrong."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(slots=True)
class Parsed:
    updates: list[TrackingUpdate] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    unknown_codes: list[str] = field(default_factory=list)
    # Carriers kept under the source's own code, once per parcel of the push.
    unknown_carriers: list[str] = field(default_factory=list)
    # (declared, corrected) when the aggregator corrected a seller's carrier code.
    carrier_corrections: list[tuple[str, str]] = field(default_factory=list)
    # What the vendor's reply must echo (kdniao: EBusinessID).
    reply_context: dict[str, str] = field(default_factory=dict)

    def reject(self, exc: ElementError | InvalidEvent, path: str = "") -> None:
        where = exc.field if not path else (f"{path}.{exc.field}" if exc.field != "$" else path)
        self.rejected.append(Rejection(where, exc.problem))


class Meaning(NamedTuple):
    """What a vendor's status code means here: our status and exception reason, or the vendor's own timer."""

    status: str
    reason: str | None = None
    timer: bool = False


SCAN = Meaning("in_transit")  # a scan that says nothing more than "the carrier has the parcel, here, now"
NO_SCAN_YET = Meaning("info_received")
TIMER = Meaning("in_transit", None, True)


def settle(meaning: Meaning, *, scan: bool) -> Meaning:
    """A vendor's timer on a real scan is that scan as a plain one; without a scan, "nothing from the carrier yet"."""
    if meaning.timer:
        return SCAN if scan else NO_SCAN_YET
    return meaning


def event_id(source: str, carrier: str, number: str, t: float, status: str, reason: str | None, code: str | None,
             text: str) -> str:
    """Stable per scan and status: a repeated push yields the same ids, a scan re-classified a new one."""
    digest = hashlib.sha1(f"{carrier}|{number}|{t:.0f}|{status}|{reason or ''}|{code or ''}|{text}".encode()).hexdigest()
    return f"{source}:{digest[:16]}"


class Carrier(NamedTuple):
    code: str
    mapped: bool


def carrier_of(source: str, value: object, where: str, error: type[PushError] | type[ElementError] = PushError) -> Carrier:
    """The canonical carrier for ``value`` as ``source`` writes it; an unknown one kept under the source's code."""
    try:
        code = resolve(source, value)
    except ValueError as exc:
        raise error(where, str(exc)) from None
    return Carrier(code, is_mapped_carrier(code))


def tracking_number(value: object, where: str, error: type[PushError] | type[ElementError] = PushError) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise error(where, "is required (the tracking number)")
    number = str(value).strip()
    if len(number) > 40 or not number.isascii() or not number.replace("-", "").isalnum():
        raise error(where, "must be letters, digits and dashes only, at most 40")
    return number


def scan(source: str, carrier: str, number: str, t: float, meaning: Meaning, *, code: str | None, text: str,
         city: str | None = None, province: str | None = None) -> TrackingUpdate:
    """One normalised scan, checked exactly as the parcel agent will check it (``InvalidEvent`` if not)."""
    status, reason = meaning.status, meaning.reason
    raw_code = code[:MAX_RAW_CODE] if code else None
    raw_text = text[:MAX_TEXT] if text else None
    doc: dict[str, Any] = {
        "event_id": event_id(source, carrier, number, t, status, reason, raw_code, raw_text or ""),
        "carrier": carrier, "tracking_number": number, "status": status, "event_time": t, "source": source,
    }
    if reason is not None:
        doc["exception_reason"] = reason
    if raw_code:
        doc["raw_code"] = raw_code
    if raw_text:
        doc["raw_text"] = raw_text
    if city:
        doc["city"] = city.strip()[:MAX_CITY]
    if province and normalise_province(province) is not None:
        doc["province"] = province.strip()
    return parse_tracking_update(doc)


def text_of(value: object, limit: int = MAX_TEXT) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def code_of(value: object) -> str:
    """A vendor's status code or name as text ("" when absent); numbers and strings alike."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, str)):
        return str(value).strip()
    return ""


# -- bodies ------------------------------------------------------------------------------------------------------


def decode_text(body: bytes, charset: str | None, what: str = "body") -> str:
    """``body`` as text in its declared charset (UTF-8 when none is declared), or a PushError saying which."""
    name = (charset or "utf-8").strip().strip('"').lower()
    try:
        return body.decode(name)
    except LookupError:
        raise PushError("Content-Type", f"unknown charset {name[:20]!r}; send UTF-8") from None
    except UnicodeDecodeError as exc:
        raise PushError("$", f"the {what} is not valid {name} (byte {exc.start}); send UTF-8, or declare the "
                             f"charset in Content-Type (e.g. charset=gbk)") from None


def json_document(body: bytes, charset: str | None = None) -> Any:
    """The JSON document of a body (UTF-8, or its declared charset), or a PushError saying what is wrong."""
    try:
        if charset is None or charset.strip().strip('"').lower() in ("utf-8", "utf8"):
            return orjson.loads(body)
        return orjson.loads(decode_text(body, charset))
    except orjson.JSONDecodeError as exc:
        raise PushError("$", f"not valid JSON: {_json_problem(exc)}") from None


def _json_problem(exc: orjson.JSONDecodeError) -> str:
    # orjson's message names the position, never the content.
    return str(exc).splitlines()[0][:200]


def json_section(body: bytes, name: str, charset: str | None = None) -> dict[str, Any]:
    """The JSON object ``body[name]`` of a webhook body, or a PushError naming what is wrong."""
    doc = json_document(body, charset)
    if not isinstance(doc, dict):
        raise PushError("$", f"expected a JSON object, got {_kind(doc)}")
    section = doc.get(name)
    if not isinstance(section, dict):
        raise PushError(name, f"is required (an object), got {_kind(section)}")
    return section


def form_fields(body: bytes, charset: str | None) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields (first value of each), decoded in its charset."""
    text = decode_text(body, charset)
    try:
        form = parse_qs(text, keep_blank_values=True, encoding=charset or "utf-8", errors="strict", max_num_fields=50)
    except UnicodeDecodeError as exc:
        raise PushError("$", f"a form field is not valid {charset or 'utf-8'} after percent-decoding (byte "
                             f"{exc.start}); send UTF-8, or declare the charset") from None
    except ValueError:
        raise PushError("$", "too many form fields (more than 50)") from None
    return {name: values[0] for name, values in form.items()}


def object_at(value: object, where: str, error: type[PushError] | type[ElementError] = ElementError) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise error(where, f"expected an object, got {_kind(value)}")
    return value


def optional_object(value: object) -> dict[str, Any]:
    """An optional nested object (absent, null or not an object: empty)."""
    return value if isinstance(value, dict) else {}


def list_at(value: object, where: str) -> list[Any]:
    """A list field (absent or null: empty); anything else is a PushError."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise PushError(where, f"expected a list, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


# -- times -------------------------------------------------------------------------------------------------------


def local_time(raw: object, where: str, zone: tzinfo) -> float:
    """A vendor's time as epoch seconds: ISO 8601 with an offset as given; without one, local time in ``zone``;
    a date alone (``YYYY-MM-DD``) the start of that day in ``zone``. ``YYYY/MM/DD`` and a space for ``T`` are
    accepted. An ElementError names the field otherwise."""
    if not isinstance(raw, str) or not raw.strip():
        raise ElementError(where, f"expected a time, got {_kind(raw)}")
    text = raw.strip().replace("/", "-")
    if len(text) > 40:
        raise ElementError(where, "is too long to be a time")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ElementError(where, "is not a time (expected e.g. 2026-11-02 10:00:00 or ISO 8601)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return dt.timestamp()


def china_time(raw: object, where: str) -> float:
    """Chinese aggregators' times: China time without a zone (``2026-11-02 10:00:00``), or with an offset."""
    return local_time(raw, where, CHINA_TZ)


def epoch_time(raw: object, where: str) -> float:
    """An epoch-seconds field (AfterShip's ``ts``), or an ElementError."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ElementError(where, f"expected epoch seconds, got {_kind(raw)}")
    return float(raw)
