"""Pure problem-parcel detectors: ``evaluate(subject, state, now, ctx)`` runs every rule that applies.

An order that has not shipped is watched as the subject ``order:<id>`` (ship overdue only); a parcel
(``CARRIER:number``) by the seven parcel rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from state import ORDER_SUBJECT_PREFIX, ParcelState

from .base import DetectorContext, Finding, severity
from .lanes import LaneBaselines
from .rules import (
    autoconfirm_imminent,
    autoconfirm_warning_at,
    carrier_exception,
    confirmed_deadline,
    confirmed_unsigned,
    exception_deadline,
    locker_deadline,
    locker_uncollected,
    pickup_deadline,
    pickup_overdue,
    ship_deadline,
    ship_overdue,
    tracking_stale,
    tracking_stale_deadline,
    transit_deadline,
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
        deadline = ship_deadline(state, ctx)
        if deadline is None or now < deadline:
            return Evaluation({}, deadline)
        checks = [ship_overdue(state, now, ctx)]
    elif state.signed_at is not None or state.closed_at is not None:
        # Signed or closed: every parcel rule starts with this check and is silent, nothing is pending.
        return Evaluation({}, None)
    else:
        # Before the earliest deadline of the rules that watch the parcel, every rule answers "nothing
        # yet, look again at my deadline". That is most events (a scan of a parcel in transit), so the
        # rules themselves run only from the earliest deadline on.
        earliest = earliest_deadline(subject, state, now, ctx)
        if now < earliest:
            return Evaluation({}, None if earliest == _NEVER else earliest)
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


_NEVER = math.inf


def earliest_deadline(subject: str, s: ParcelState, now: float, ctx: DetectorContext) -> float:
    """The earliest deadline among the parcel rules watching ``s`` (infinity: none watches it).

    The rules' own ``*_deadline`` functions, each called under the condition ``evaluate`` calls its
    rule under. The auto-confirm warning counts from its start: from then on the rules run. Written out
    rule by rule (no list, no helper call): this runs for nearly every event.
    """
    earliest = _NEVER
    if s.first_scan_at is None:
        deadline = pickup_deadline(s, ctx)
        if deadline is not None and deadline < earliest:
            earliest = deadline
    if s.picked_up_at is not None or s.first_scan_at is not None:
        deadline = transit_deadline(s, now, ctx, subject.split(":", 1)[0])
        if deadline is not None and deadline < earliest:
            earliest = deadline
    if s.last_scan_at is not None:
        deadline = tracking_stale_deadline(s, ctx)
        if deadline is not None and deadline < earliest:
            earliest = deadline
    if s.shipped_at is not None:
        deadline = confirmed_deadline(s, ctx)
        if deadline is not None and deadline < earliest:
            earliest = deadline
        if s.confirmed_at is None:
            deadline = autoconfirm_warning_at(s, ctx)
            if deadline is not None and deadline < earliest:
                earliest = deadline
    if s.at_locker_at is not None:
        deadline = locker_deadline(s, ctx)
        if deadline is not None and deadline < earliest:
            earliest = deadline
    if s.exception_at is not None:
        deadline = exception_deadline(s)
        if deadline is not None and deadline < earliest:
            earliest = deadline
    return earliest


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
