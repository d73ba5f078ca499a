"""Reading a vendor's push: bodies in their charsets, JSON and forms, objects and lists that may be anything, times
with or without a zone, tracking numbers and carriers. Every problem is a ``PushError`` (the whole push) or an
``ElementError`` (one element) naming the field, never echoing its value."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import orjson

from domain.events import MAX_TEXT
from domain.vocabulary import CHINA_TZ, is_mapped_carrier

from . import ElementError, PushError
from .carriers import resolve


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
    except UnicodeDecodeError as exc:
        raise PushError("$", f"the {what} is not valid {name} (byte {exc.start}); send UTF-8, or declare the "
                             f"charset in Content-Type (e.g. charset=gbk)") from None
    except UnicodeError:
        # A Python codec that is no body charset ("undefined", "punycode", "idna") fails without a position.
        raise PushError("Content-Type", f"charset {name[:20]!r} cannot be read as text; send UTF-8") from None
    except (LookupError, ValueError):  # (ValueError: a name with a NUL in it)
        raise PushError("Content-Type", f"unknown charset {name[:20]!r}; send UTF-8") from None


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


def json_object_in(text: str, where: str) -> dict[str, Any]:
    """The JSON object a form field carries (kuaidi100's ``param``, kdniao's ``RequestData``)."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PushError(where, f"not valid JSON: {_json_problem(exc)}") from None
    if not isinstance(doc, dict):
        raise PushError(where, f"expected a JSON object, got {_kind(doc)}")
    return doc


def form_fields(body: bytes, charset: str | None) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields (first value of each), decoded in its charset."""
    text = decode_text(body, charset)
    try:
        form = parse_qs(text, keep_blank_values=True, encoding=charset or "utf-8", errors="strict", max_num_fields=50)
    except UnicodeDecodeError as exc:
        raise PushError("$", f"a form field is not valid {charset or 'utf-8'} after percent-decoding (byte "
                             f"{exc.start}); send UTF-8, or declare the charset") from None
    except UnicodeError:  # (as in ``decode_text``)
        raise PushError("Content-Type", f"charset {(charset or '')[:20]!r} cannot be read as text; send UTF-8") from None
    except ValueError:
        raise PushError("$", "too many form fields (more than 50)") from None
    return {name: values[0] for name, values in form.items()}


def required_field(form: dict[str, str], name: str, how: str) -> str:
    value = form.get(name)
    if not value:
        raise PushError(name, f"form field is required ({how})")
    return value


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
