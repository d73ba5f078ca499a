"""Our own JSON (``POST /ingest/generic``): one tracking update or a list of them, in the format of
``docs/events.md``. Each element is checked as the parcel agent checks it; a bad one is rejected alone. A carrier
may be written as any source writes it (the element's ``source`` names whose code it is; canonical codes and
carrier names always work): ``ingest.carriers.resolve`` maps it, and an unknown one is kept under the source's
code and counted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.events import InvalidEvent, parse_tracking_update
from domain.vocabulary import carrier_source, is_mapped_carrier

from . import Parsed, PushError, fields
from .carriers import resolve

SOURCE = "generic"


def read(body: bytes, headers: Mapping[str, str], secret: str | None, charset: str | None,
         received_at: float) -> Parsed:
    return parse(body, charset=charset)


def parse(body: bytes, *, charset: str | None = None) -> Parsed:
    doc = fields.json_document(body, charset)
    if not isinstance(doc, (dict, list)):
        raise PushError("$", "expected a tracking update (a JSON object) or a list of them")
    items: list[Any] = doc if isinstance(doc, list) else [doc]
    result = Parsed()
    for i, item in enumerate(items):
        where = f"[{i}]"
        if not isinstance(item, dict):
            result.reject(InvalidEvent("$", "expected a JSON object"), where)
            continue
        try:
            update = parse_tracking_update(_with_carrier_resolved(item))
        except InvalidEvent as exc:
            result.reject(exc, where)
            continue
        if not is_mapped_carrier(update.carrier):
            result.unknown_carriers.append(update.carrier)
        result.updates.append(update)
    return result


def _with_carrier_resolved(item: dict[str, Any]) -> dict[str, Any]:
    carrier, source = item.get("carrier"), item.get("source")
    if not isinstance(carrier, str) or not carrier.strip():
        return item  # the validation names the problem
    try:
        resolved = resolve(carrier_source(source if isinstance(source, str) else None), carrier)
    except ValueError:
        return item
    return item if resolved == carrier else {**item, "carrier": resolved}
