"""Shared types of the detectors: what a rule found, when to look again, and how severe it is.

Detectors are pure: they read a ``ParcelState``, an injected ``now`` (UTC epoch seconds) and a
``DetectorContext`` (thresholds and lane baselines), and never touch a clock, a socket or a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from config import Settings
from models import SEVERITY_ORDER

HOUR = 3600.0
CHINA_TZ = timezone(timedelta(hours=8))


@dataclass(slots=True)
class Finding:
    """One problem a detector sees on a subject right now."""

    kind: str
    # When the condition began (a deadline, or the event that caused it). Derived from the data, never
    # from the clock, so a replay and a live run open the issue at the same instant.
    since: float
    reason: str
    evidence: str
    suggested_action: str
    # Hours past the threshold at ``now``; drives severity escalation.
    late_hours: float = 0.0
    # Structured evidence for tools: the times and the baseline used.
    evidence_data: dict[str, Any] = field(default_factory=dict)
    exception_reason: str | None = None


@dataclass(slots=True)
class Check:
    """A detector's answer: the finding now (if any) and the next moment its answer could change."""

    finding: Finding | None = None
    next_at: float | None = None


NO_CHECK = Check()


class TransitBaseline(Protocol):
    """What the transit detector needs from the learned lane baselines."""

    def transit_limit(
        self, carrier: str, origin: str | None, destination: str | None, now: float
    ) -> tuple[float, str, int]:
        """(limit in hours, source label, sample count) for the lane as of ``now``."""
        ...


@dataclass(slots=True)
class DetectorContext:
    settings: Settings
    baselines: TransitBaseline


def china_time(epoch: float) -> str:
    """How staff read times in evidence: China time, minutes."""
    return datetime.fromtimestamp(epoch, tz=CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def hours(seconds: float) -> str:
    h = seconds / HOUR
    return f"{h / 24:.1f} d" if h >= 48 else f"{h:.1f} h"


def severity(ctx: DetectorContext, kind: str, finding: Finding, order_value: float | None, remote: bool) -> str:
    """Base severity per kind, one level up for a high-value order, for very late, for remote regions."""
    rules = ctx.settings.severity
    level = SEVERITY_ORDER.index(rules.base[kind])
    if order_value is not None and order_value >= rules.high_value_order:
        level += 1
    if finding.late_hours >= rules.very_late_hours:
        level += 1
    if remote:
        level += rules.remote_region_step
    return SEVERITY_ORDER[max(0, min(level, len(SEVERITY_ORDER) - 1))]


def severity_escalation_at(ctx: DetectorContext, finding: Finding, deadline: float) -> float:
    """When a finding past ``deadline`` becomes very late (its severity may rise then)."""
    return deadline + ctx.settings.severity.very_late_hours * HOUR
