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
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from domain.events import MAX_TEXT, InvalidEvent, TrackingUpdate, parse_tracking_update
from domain.vocabulary import normalise_province

MAX_RAW_CODE = 40
MAX_CITY = 40


class FieldError(ValueError):
    """``field`` names the place in the push, ``problem`` what was wrong (never the value)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class PushError(FieldError):
    """A push that cannot be read as a whole (HTTP 4xx)."""


class ElementError(FieldError):
    """One element of a push (a scan, a parcel) cannot be read; the rest of the push is taken."""


class BadSignature(ValueError):
    """The push is not signed with the configured secret (HTTP 401)."""


def check_signature(expected: bytes, given: str | None, problem: str, *, also: Callable[[str], str] | None = None) -> None:
    """``given`` (a header or form field, any text) must be ``expected``, compared in constant time; ``also``
    names another spelling of the same value a sender may use. BadSignature(problem) otherwise."""
    text = (given or "").strip()
    spellings = [text] if also is None else [text, also(text)]
    matched = False
    for spelling in spellings:
        matched |= hmac.compare_digest(expected, spelling.encode("utf-8", "replace"))
    if not matched:
        raise BadSignature(problem)


Reader = Callable[[bytes, Mapping[str, str], "str | None", "str | None", float], "Parsed"]


def signed_by_header(verify: Callable[[bytes, str | None, str | None], None], header: str,
                     parse: Callable[..., Parsed]) -> Reader:
    """A JSON webhook signed in a request header: check the signature, then parse the body."""
    def read(body: bytes, headers: Mapping[str, str], secret: str | None, charset: str | None,
             received_at: float) -> Parsed:
        verify(body, headers.get(header), secret)
        return parse(body, charset=charset, received_at=received_at)

    return read


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

    def unknown(self, source: str, code: str, on_unknown: Callable[[str, str], Any] | None = None
                ) -> tuple[Meaning, str | None]:
        """A code no table knows: counted, and read as a plain scan that keeps the code."""
        if code:
            self.unknown_codes.append(code[:40])
            if on_unknown:
                on_unknown(source, code)
        return SCAN, code or None

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
