"""Pure problem-parcel detectors: ``evaluate(subject, state, now, ctx)`` runs every rule that applies.

An order that has not shipped is watched as the subject ``order:<id>`` (ship overdue only); a parcel
(``CARRIER:number``) by the seven parcel rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from domain.state import ORDER_SUBJECT_PREFIX, ParcelState
from domain.vocabulary import HOUR

from .base import DetectorContext, Finding, severity
from .lanes import LaneBaselines
from .rules import (
    autoconfirm_imminent,
    carrier_exception,
    confirmed_unsigned,
    locker_uncollected,
    pickup_overdue,
    ship_deadline,
    ship_overdue,
    tracking_stale,
    transit_overdue,
)

__all__ = ["DetectorContext", "Evaluation", "Finding", "LaneBaselines", "earliest_deadline", "evaluate", "finished_at"]


@dataclass(slots=True)
class Evaluation:
    # kind -> (finding, severity); read-only for callers (the early exits share one empty dict)
    findings: Mapping[str, tuple[Finding, str]]
    # The earliest moment any rule's answer could change; None when nothing is pending.
    next_at: float | None


def evaluate(subject: str, state: ParcelState, now: float, ctx: DetectorContext) -> Evaluation:
    if subject.startswith(ORDER_SUBJECT_PREFIX):
        deadline = ship_deadline(state, ctx)
        if deadline is None or now < deadline:
            return Evaluation(_NO_FINDINGS, deadline)
        checks = [ship_overdue(state, now, ctx)]
    elif state.signed_at is not None or state.closed_at is not None:
        # Signed or closed: every parcel rule starts with this check and is silent, nothing is pending.
        return Evaluation(_NO_FINDINGS, None)
    else:
        # Before the earliest deadline of the rules that watch the parcel, every rule answers "nothing
        # yet, look again at my deadline". That is most events (a scan of a parcel in transit), so the
        # rules themselves run only from the earliest deadline on.
        earliest = earliest_deadline(subject, state, now, ctx)
        if now < earliest:
            return Evaluation(_NO_FINDINGS, None if earliest == _NEVER else earliest)
        # Each rule is called only when the one field it cannot do without is known: a rule skipped here
        # would have answered NO_CHECK at its first line. The order is the rules' order (it is the order
        # of the findings, hence of the issue events).
        checks = []
        if state.first_scan_at is None:
            checks.append(pickup_overdue(state, now, ctx))
        carrier = subject[: subject.rfind(":")]
        if state.picked_up_at is not None or state.first_scan_at is not None:
            checks.append(transit_overdue(state, now, ctx, carrier))
        if state.last_scan_at is not None:
            checks.append(tracking_stale(state, now, ctx, carrier))
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
# The findings of the early exits (most events): one empty dict, never written to (readers only look up
# and iterate ``Evaluation.findings``).
_NO_FINDINGS: Mapping[str, tuple[Finding, str]] = {}


def earliest_deadline(subject: str, s: ParcelState, now: float, ctx: DetectorContext) -> float:
    """The earliest deadline among the parcel rules watching ``s``, a parcel neither signed nor closed
    (infinity: none watches it).

    The same times as the rules' own ``*_deadline`` functions (a property test holds them equal), computed
    here in one pass: this runs for nearly every event, and calling the seven functions, each repeating
    the signed / closed checks, cost about a tenth of the detector core. The auto-confirm warning counts
    from its start: from then on the rules run.
    """
    earliest = _NEVER
    first_scan_at = s.first_scan_at
    if first_scan_at is None:  # pickup_deadline
        shipped = s.shipped_at if s.shipped_at is not None else s.info_received_at
        if shipped is not None:
            earliest = shipped + ctx.pickup_seconds_by_category.get(s.category or "", ctx.pickup_seconds)
    pickup = s.picked_up_at if s.picked_up_at is not None else first_scan_at
    if pickup is not None:
        carrier = subject[: subject.rfind(":")]
        if s.exception_reason != "returned":  # transit_deadline
            if "transit_overdue" in s.open_issues:
                # Raised: it stays until the parcel is signed, returned or closed, whatever the limit does now.
                earliest = -_NEVER
            else:
                deadline = pickup + ctx.baselines.transit_limit(carrier, s.origin_province, s.destination_province, now)[0] * HOUR
                if deadline < earliest:
                    earliest = deadline
        last_scan_at = s.last_scan_at
        status = s.status
        if last_scan_at is not None and status != "at_locker":  # tracking_stale_deadline
            if status == "out_for_delivery":
                deadline = last_scan_at + ctx.stale_out_for_delivery_seconds
                if deadline < earliest:
                    earliest = deadline
            else:
                limit_h = ctx.baselines.stale_limit_hours(carrier, s.source, ctx.stale_hours, now)
                if limit_h is not None and last_scan_at + limit_h * HOUR < earliest:
                    earliest = last_scan_at + limit_h * HOUR
    shipped_at = s.shipped_at
    if shipped_at is not None:
        autoconfirm = s.autoconfirm_deadline  # autoconfirm_deadline
        if autoconfirm is None:
            by_platform = ctx.autoconfirm_seconds_by_platform
            autoconfirm = shipped_at + by_platform.get(s.platform or "other", by_platform["other"])
        confirmed_at = s.confirmed_at
        if confirmed_at is None:
            # confirmed_deadline is the auto-confirm deadline, after its warning (autoconfirm_warning_at).
            deadline = autoconfirm - ctx.autoconfirm_warning_seconds
        else:
            deadline = autoconfirm if autoconfirm < confirmed_at else confirmed_at  # confirmed_deadline
        if deadline < earliest:
            earliest = deadline
    at_locker_at = s.at_locker_at
    if at_locker_at is not None:  # locker_deadline
        deadline = at_locker_at + ctx.locker_seconds
        if deadline < earliest:
            earliest = deadline
    exception_at = s.exception_at
    if exception_at is not None and exception_at < earliest:  # exception_deadline
        earliest = exception_at
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
