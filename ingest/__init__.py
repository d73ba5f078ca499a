"""Ingest adapters: aggregator pushes (kuaidi100, AfterShip, 17TRACK, our own JSON) → normalised
tracking updates. Pure parsing and mapping here; the HTTP endpoints are in ``web/ingest.py``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from domain.events import TrackingUpdate


class PushError(ValueError):
    """A push that cannot be parsed: ``field`` names the place, ``problem`` what was wrong (HTTP 400)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class BadSignature(ValueError):
    """The push is not signed with the configured secret (HTTP 401)."""


@dataclass(slots=True)
class Parsed:
    updates: list[TrackingUpdate] = field(default_factory=list)
    unknown_codes: list[str] = field(default_factory=list)
    carrier_correction: tuple[str, str] | None = None  # (declared, corrected)


def json_section(body: bytes, name: str) -> dict[str, Any]:
    """The JSON object ``body[name]`` of a webhook body, or a PushError naming what is wrong."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PushError("$", f"not valid JSON: {exc}") from None
    section = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise PushError(name, "is required (an object)")
    return section


def event_id(source: str, carrier: str, number: str, t: float, code: str, text: str) -> str:
    """Stable per scan: a repeated push yields the same ids (dedupe downstream is idempotent anyway)."""
    digest = hashlib.sha1(f"{carrier}|{number}|{t:.0f}|{code}|{text}".encode()).hexdigest()[:16]
    return f"{source}:{digest}"
