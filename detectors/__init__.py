"""Pure problem-parcel detectors: ``evaluate(subject, state, now, ctx)`` runs every rule that applies.

An order that has not shipped is watched as the subject ``order:<id>`` (ship overdue only); a parcel
(``CARRIER:number``) by the seven parcel rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from state import ORDER_SUBJECT_PREFIX, ParcelState

from .base import DetectorContext, Finding, severity
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

__all__ = ["DetectorContext", "Evaluation", "Finding", "LaneBaselines", "evaluate", "finished_at"]


@dataclass(slots=True)
class Evaluation:
    # kind -> (finding, severity)
    findings: dict[str, tuple[Finding, str]]
    # The earliest moment any rule's answer could change; None when nothing is pending.
    next_at: float | None


def evaluate(subject: str, state: ParcelState, now: float, ctx: DetectorContext) -> Evaluation:
    if subject.startswith(ORDER_SUBJECT_PREFIX):
        checks = [ship_overdue(state, now, ctx)]
    elif state.signed_at is not None or state.closed_at is not None:
        # Signed or closed: every parcel rule starts with this check and is silent, nothing is pending.
        return Evaluation({}, None)
    else:
        # Each rule is called only when the one field it cannot do without is known: a rule skipped here
        # would have answered NO_CHECK at its first line. The order is the rules' order (it is the order
        # of the findings, hence of the issue events).
        checks = []
        if state.first_scan_at is None:
            checks.append(pickup_overdue(state, now, ctx))
        if state.picked_up_at is not None or state.first_scan_at is not None:
            checks.append(transit_overdue(state, now, ctx, subject.split(":", 1)[0]))
        if state.last_scan_at is not None:
            checks.append(tracking_stale(state, now, ctx))
        if state.shipped_at is not None:
            checks.append(confirmed_unsigned(state, now, ctx))
            if state.confirmed_at is None:
                checks.append(autoconfirm_imminent(state, now, ctx))
        if state.at_locker_at is not None:
            checks.append(locker_uncollected(state, now, ctx))
        if state.exception_at is not None:
            checks.append(carrier_exception(state, now, ctx))
    findings: dict[str, tuple[Finding, str]] = {}
    next_at: float | None = None
    remote: bool | None = None
    for check in checks:
        f = check.finding
        if f is not None:
            if remote is None:  # only needed for a finding's severity
                dest = state.destination_province
                remote = dest is not None and dest in ctx.settings.lanes.remote_provinces
            findings[f.kind] = (f, severity(ctx, f.kind, f, state.order_value, remote))
        t = check.next_at
        if t is not None and (next_at is None or t < next_at):
            next_at = t
    return Evaluation(findings, next_at)


def finished_at(subject: str, state: ParcelState) -> float | None:
    """From when every rule is silent on the subject for good (None: not finished).

    The early exits of ``evaluate``: a parcel once signed or its order closed; an order subject (watched
    for ship-overdue only) once shipped or closed. Nothing can un-sign, un-ship or reopen them (first
    times only move earlier), so a finished subject stays finished.
    """
    if subject.startswith(ORDER_SUBJECT_PREFIX):
        first, second = state.shipped_at, state.closed_at
    else:
        first, second = state.signed_at, state.closed_at
    if first is None:
        return second
    return first if second is None or first <= second else second
