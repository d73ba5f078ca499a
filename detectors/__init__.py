"""Pure problem-parcel detectors: ``evaluate(subject, state, now, ctx)`` runs every rule that applies.

An order that has not shipped is watched as the subject ``order:<id>`` (ship overdue only); a parcel
(``CARRIER:number``) by the seven parcel rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from state import ORDER_SUBJECT_PREFIX, ParcelState

from .base import Check, DetectorContext, Finding, severity
from .lanes import LaneBaselines
from .rules import (
    autoconfirm_imminent,
    carrier_exception,
    confirmed_unsigned,
    locker_uncollected,
    pickup_overdue,
    ship_overdue,
    tracking_stale,
    transit_overdue,
)

__all__ = ["DetectorContext", "Evaluation", "Finding", "LaneBaselines", "evaluate"]


@dataclass(slots=True)
class Evaluation:
    # kind -> (finding, severity)
    findings: dict[str, tuple[Finding, str]]
    # The earliest moment any rule's answer could change; None when nothing is pending.
    next_at: float | None


def evaluate(subject: str, state: ParcelState, now: float, ctx: DetectorContext) -> Evaluation:
    if subject.startswith(ORDER_SUBJECT_PREFIX):
        checks: tuple[Check, ...] = (ship_overdue(state, now, ctx),)
    else:
        carrier = subject.split(":", 1)[0]
        checks = (
            pickup_overdue(state, now, ctx),
            transit_overdue(state, now, ctx, carrier),
            tracking_stale(state, now, ctx),
            confirmed_unsigned(state, now, ctx),
            autoconfirm_imminent(state, now, ctx),
            locker_uncollected(state, now, ctx),
            carrier_exception(state, now, ctx),
        )
    findings: dict[str, tuple[Finding, str]] = {}
    next_at: float | None = None
    remote = state.destination_province is not None and state.destination_province in ctx.settings.lanes.remote_provinces
    for check in checks:
        if check.finding is not None:
            f = check.finding
            findings[f.kind] = (f, severity(ctx, f.kind, f, state.order_value, remote))
        if check.next_at is not None and (next_at is None or check.next_at < next_at):
            next_at = check.next_at
    return Evaluation(findings, next_at)
