"""The eight problem-parcel rules. Each answers: what issue does this subject have at ``now``, and when
could that answer next change (``Check.next_at``)? Thresholds: ../shared/reference/domain.md.

Each rule treats its deadline as inclusive: at exactly the deadline the issue is raised.
"""

from __future__ import annotations

from models import IssueKind
from state import ParcelState

from .base import HOUR, NO_CHECK, Check, DetectorContext, Finding, china_time, hours, severity_escalation_at


def _overdue(ctx: DetectorContext, finding: Finding, deadline: float, now: float) -> Check:
    """A finding past its deadline: look again when it becomes very late (severity may rise)."""
    finding.late_hours = (now - deadline) / HOUR
    escalate = severity_escalation_at(ctx, finding, deadline)
    return Check(finding, escalate if now < escalate else None)


def ship_overdue(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """Paid, no waybill by the promised ship time (or 48 h after payment)."""
    if s.paid_at is None or s.shipped_at is not None or s.closed_at is not None:
        return NO_CHECK
    limit_h = ctx.settings.thresholds.ship_overdue_hours
    deadline = s.promised_ship_at if s.promised_ship_at is not None else s.paid_at + limit_h * HOUR
    if now < deadline:
        return Check(None, deadline)
    promise = (
        f"promised ship time {china_time(deadline)}"
        if s.promised_ship_at is not None
        else f"limit {limit_h:g} h after payment"
    )
    finding = Finding(
        kind=IssueKind.SHIP_OVERDUE.value,
        since=deadline,
        reason=f"not shipped {hours(now - s.paid_at)} after payment ({promise})",
        evidence=f"paid {china_time(s.paid_at)}, {promise}, now {hours(now - s.paid_at)} since payment",
        suggested_action="ship now or contact the buyer about the delay before the platform penalises late shipping",
        evidence_data={"paid_at": s.paid_at, "deadline": deadline},
    )
    return _overdue(ctx, finding, deadline, now)


def pickup_overdue(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """Waybill issued, no carrier scan in time (24 h; 48 h for configured categories)."""
    shipped = s.shipped_at if s.shipped_at is not None else s.info_received_at
    if shipped is None or s.first_scan_at is not None or s.closed_at is not None or s.is_signed:
        return NO_CHECK
    th = ctx.settings.thresholds
    window_h = th.pickup_overdue_hours_by_category.get(s.category or "", th.pickup_overdue_hours)
    deadline = shipped + window_h * HOUR
    if now < deadline:
        return Check(None, deadline)
    finding = Finding(
        kind=IssueKind.PICKUP_OVERDUE.value,
        since=deadline,
        reason=f"no carrier scan {hours(now - shipped)} after shipping (limit {window_h:g} h)",
        evidence=f"shipped {china_time(shipped)}, pickup window {window_h:g} h"
        + (f" for category {s.category}" if s.category in th.pickup_overdue_hours_by_category else "")
        + f", no scan as of {china_time(now)}",
        suggested_action="push the carrier's outlet to collect the parcel, or re-issue the waybill with another carrier",
        evidence_data={"shipped_at": shipped, "window_hours": window_h, "deadline": deadline},
    )
    return _overdue(ctx, finding, deadline, now)


def transit_overdue(s: ParcelState, now: float, ctx: DetectorContext, carrier: str) -> Check:
    """Picked up, not signed, past the lane's normal transit time (learned p90, else fallback SLA)."""
    pickup = s.pickup_at
    if pickup is None or s.is_signed or s.closed_at is not None:
        return NO_CHECK
    limit_h, source, samples = ctx.baselines.transit_limit(carrier, s.origin_province, s.destination_province, now)
    deadline = pickup + limit_h * HOUR
    if now < deadline:
        return Check(None, deadline)
    lane = f"{carrier} {s.origin_province or '?'}→{s.destination_province or '?'}"
    q = round(ctx.settings.lanes.quantile * 100)
    basis = f"lane {lane} p{q} = {hours(limit_h * HOUR)}" if source == "lane" else f"{lane} {source} {hours(limit_h * HOUR)}"
    finding = Finding(
        kind=IssueKind.TRANSIT_OVERDUE.value,
        since=deadline,
        reason=f"not signed {hours(now - pickup)} after pickup; normal transit {hours(limit_h * HOUR)}",
        evidence=f"picked up {china_time(pickup)}, {basis}, now {hours(now - pickup)}",
        suggested_action="ask the carrier where the parcel is and tell the buyer before they ask",
        evidence_data={"picked_up_at": pickup, "limit_hours": limit_h, "baseline_source": source, "samples": samples},
    )
    return _overdue(ctx, finding, deadline, now)


def tracking_stale(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """In transit with no new scan for too long (shorter once out for delivery)."""
    if s.last_scan_at is None or s.pickup_at is None or s.is_signed or s.closed_at is not None:
        return NO_CHECK
    if s.status == "at_locker":
        return NO_CHECK  # waiting for the buyer, watched by locker_uncollected instead
    th = ctx.settings.thresholds
    delivering = s.status == "out_for_delivery"
    limit_h = th.tracking_stale_out_for_delivery_hours if delivering else th.tracking_stale_hours
    deadline = s.last_scan_at + limit_h * HOUR
    if now < deadline:
        return Check(None, deadline)
    where = " ".join(x for x in (s.last_province, s.last_city) if x)
    stage = "out for delivery" if delivering else "in transit"
    finding = Finding(
        kind=IssueKind.TRACKING_STALE.value,
        since=deadline,
        reason=f"no new scan for {hours(now - s.last_scan_at)} while {stage} (limit {limit_h:g} h)",
        evidence=f"last scan {china_time(s.last_scan_at)}" + (f" at {where}" if where else "") + f", status {s.status}",
        suggested_action="ask the carrier to trace the parcel; if lost, file a claim and re-ship",
        evidence_data={"last_scan_at": s.last_scan_at, "limit_hours": limit_h, "stage": stage},
    )
    return _overdue(ctx, finding, deadline, now)


def autoconfirm_deadline(s: ParcelState, ctx: DetectorContext) -> float | None:
    """The order's own deadline, else a per-platform default counted from shipping."""
    if s.autoconfirm_deadline is not None:
        return s.autoconfirm_deadline
    if s.shipped_at is None:
        return None
    days = ctx.settings.thresholds.autoconfirm_default_days
    return s.shipped_at + days.get(s.platform or "other", days["other"]) * 24 * HOUR


def confirmed_unsigned(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """Confirmed received (by the buyer, or by the platform at its deadline) though not signed."""
    if s.is_signed or s.closed_at is not None or s.shipped_at is None:
        return NO_CHECK
    deadline = autoconfirm_deadline(s, ctx)
    candidates = [t for t in (s.confirmed_at, deadline) if t is not None]
    if not candidates:
        return NO_CHECK
    since = min(candidates)
    if now < since:
        return Check(None, since)
    by_buyer = s.confirmed_at is not None and s.confirmed_at <= since
    how = "confirmed received by the buyer" if by_buyer else "auto-confirmed by the platform at its deadline"
    finding = Finding(
        kind=IssueKind.CONFIRMED_UNSIGNED.value,
        since=since,
        reason=f"{how}, parcel not signed",
        evidence=f"{how} {china_time(since)}; carrier status {s.status or 'no scan'}"
        + (f", last scan {china_time(s.last_scan_at)}" if s.last_scan_at is not None else ""),
        suggested_action="check with the buyer that the parcel arrived; if not, push the carrier or re-ship",
        evidence_data={"confirmed_at": since, "by_buyer": by_buyer},
    )
    return Check(finding, None)


def autoconfirm_imminent(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """The auto-confirm deadline is near (48 h) and the parcel is not signed."""
    if s.is_signed or s.closed_at is not None or s.confirmed_at is not None or s.shipped_at is None:
        return NO_CHECK
    deadline = autoconfirm_deadline(s, ctx)
    if deadline is None:
        return NO_CHECK
    warn_h = ctx.settings.thresholds.autoconfirm_warning_hours
    warn_at = deadline - warn_h * HOUR
    if now < warn_at:
        return Check(None, warn_at)
    if now >= deadline:
        return NO_CHECK  # past the deadline the order is confirmed: confirmed_unsigned takes over
    source = "order deadline" if s.autoconfirm_deadline is not None else f"{s.platform or 'platform'} default"
    finding = Finding(
        kind=IssueKind.AUTOCONFIRM_IMMINENT.value,
        since=warn_at,
        reason=f"auto-confirm at {china_time(deadline)} ({source}); parcel not signed",
        evidence=f"auto-confirm deadline {china_time(deadline)} ({source}), warning {warn_h:g} h before; "
        f"carrier status {s.status or 'no scan'}",
        suggested_action="extend the receipt deadline (延长收货) so the buyer is not confirmed before delivery",
        evidence_data={"deadline": deadline, "source": source},
    )
    return Check(finding, deadline)


def locker_uncollected(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """Put into a locker or parcel station and not collected in time."""
    if s.at_locker_at is None or s.is_signed or s.closed_at is not None:
        return NO_CHECK
    limit_h = ctx.settings.thresholds.locker_uncollected_hours
    deadline = s.at_locker_at + limit_h * HOUR
    if now < deadline:
        return Check(None, deadline)
    finding = Finding(
        kind=IssueKind.LOCKER_UNCOLLECTED.value,
        since=deadline,
        reason=f"waiting at locker/station for {hours(now - s.at_locker_at)} (limit {limit_h:g} h)",
        evidence=f"put into locker/station {china_time(s.at_locker_at)}"
        + (f" in {s.last_city}" if s.last_city else ""),
        suggested_action="remind the buyer to collect the parcel with the pickup code",
        evidence_data={"at_locker_at": s.at_locker_at, "limit_hours": limit_h},
    )
    return _overdue(ctx, finding, deadline, now)


def carrier_exception(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """The carrier reported an exception (problem parcel, refused, lost ...) and the parcel is not signed."""
    if s.exception_at is None or s.is_signed or s.closed_at is not None:
        return NO_CHECK
    if now < s.exception_at:
        return Check(None, s.exception_at)
    reason_code = s.exception_reason or "other"
    label = ctx.settings.labels.reason(reason_code, "en")
    finding = Finding(
        kind=IssueKind.CARRIER_EXCEPTION.value,
        since=s.exception_at,
        reason=f"carrier exception: {label}",
        evidence=f"carrier reported {reason_code} at {china_time(s.exception_at)}"
        + (f" in {s.last_city}" if s.last_city else ""),
        suggested_action=_EXCEPTION_ACTIONS.get(reason_code, "contact the carrier about the exception"),
        evidence_data={"exception_at": s.exception_at, "exception_reason": reason_code},
        exception_reason=reason_code,
    )
    return Check(finding, None)


_EXCEPTION_ACTIONS = {
    "problem_parcel": "call the carrier's outlet to resolve the problem parcel (疑难件)",
    "out_of_area": "tell the buyer where to collect the parcel, or re-ship with a carrier that delivers there",
    "refused": "contact the buyer about the refusal; prepare refund on return",
    "returned": "contact the buyer; re-ship or refund once the return arrives",
    "lost": "file a claim with the carrier and re-ship to the buyer",
    "damaged": "file a claim with the carrier and offer the buyer a replacement or refund",
    "held": "push the carrier to release the held parcel",
    "unreachable": "contact the buyer to confirm phone and address for the courier",
    "delivery_failed": "contact the buyer to arrange another delivery",
    "customs": "provide the customs documents the carrier asks for",
}
