"""The eight problem-parcel rules. Each answers: what issue does this subject have at ``now``, and when
could that answer next change (``Check.next_at``)? Thresholds: ../shared/reference/domain.md.

Each rule treats its deadline as inclusive: at exactly the deadline the issue is raised.

Each rule decides the finding's kind, time and next check itself and hands its texts over deferred
(``Finding.deferred``): a ``_*_texts`` function over the values the rule read renders them on first use.
Most findings only tell the processor that nothing changed, so their texts are never needed; those
that become issue events get exactly the texts of the moment the rule ran.
"""

from __future__ import annotations

from typing import Any

from domain.state import ParcelState
from domain.vocabulary import HOUR, IssueKind, china_time

from .base import NO_CHECK, Check, DetectorContext, Finding, Texts, hours, severity_escalation_at

# The kinds as plain strings (an enum member's ``.value`` is a lookup per finding).
SHIP_OVERDUE = IssueKind.SHIP_OVERDUE.value
PICKUP_OVERDUE = IssueKind.PICKUP_OVERDUE.value
TRANSIT_OVERDUE = IssueKind.TRANSIT_OVERDUE.value
TRACKING_STALE = IssueKind.TRACKING_STALE.value
CONFIRMED_UNSIGNED = IssueKind.CONFIRMED_UNSIGNED.value
AUTOCONFIRM_IMMINENT = IssueKind.AUTOCONFIRM_IMMINENT.value
LOCKER_UNCOLLECTED = IssueKind.LOCKER_UNCOLLECTED.value
CARRIER_EXCEPTION = IssueKind.CARRIER_EXCEPTION.value


def _overdue(ctx: DetectorContext, finding: Finding, deadline: float, now: float) -> Check:
    """A finding past its deadline: look again when it becomes very late (severity may rise)."""
    finding.late_hours = (now - deadline) / HOUR
    escalate = severity_escalation_at(ctx, finding, deadline)
    return Check(finding, escalate if now < escalate else None)


def ship_deadline(s: ParcelState, ctx: DetectorContext) -> float | None:
    """When a paid, unshipped order becomes ship-overdue (None: the rule does not watch it)."""
    paid_at = s.paid_at
    if paid_at is None or s.shipped_at is not None or s.closed_at is not None:
        return None
    if s.promised_ship_at is not None:
        return s.promised_ship_at
    return paid_at + ctx.settings.thresholds.ship_overdue_hours * HOUR


def ship_overdue(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """Paid, no waybill by the promised ship time (or 48 h after payment)."""
    deadline = ship_deadline(s, ctx)
    if deadline is None:
        return NO_CHECK
    if now < deadline:
        return Check(None, deadline)
    limit_h = ctx.settings.thresholds.ship_overdue_hours
    args = (now, s.paid_at, deadline, s.promised_ship_at is not None, limit_h)
    return _overdue(ctx, Finding.deferred(SHIP_OVERDUE, deadline, _ship_overdue_texts, args), deadline, now)


def _ship_overdue_texts(args: tuple[Any, ...]) -> Texts:
    now, paid_at, deadline, promised, limit_h = args
    promise = f"promised ship time {china_time(deadline)}" if promised else f"limit {limit_h:g} h after payment"
    return (
        f"not shipped {hours(now - paid_at)} after payment ({promise})",
        f"paid {china_time(paid_at)}, {promise}, now {hours(now - paid_at)} since payment",
        "ship now or contact the buyer about the delay before the platform penalises late shipping",
        {"paid_at": paid_at, "deadline": deadline, "promised": promised, "limit_hours": limit_h},
    )


def pickup_deadline(s: ParcelState, ctx: DetectorContext) -> float | None:
    """When a shipped parcel without a carrier scan becomes pickup-overdue (None: not watched)."""
    shipped = s.shipped_at if s.shipped_at is not None else s.info_received_at
    if shipped is None or s.first_scan_at is not None or s.closed_at is not None or s.signed_at is not None:
        return None
    return shipped + ctx.pickup_seconds_by_category.get(s.category or "", ctx.pickup_seconds)


def pickup_overdue(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """Waybill issued, no carrier scan in time (24 h; 48 h for configured categories)."""
    deadline = pickup_deadline(s, ctx)
    if deadline is None:
        return NO_CHECK
    if now < deadline:
        return Check(None, deadline)
    shipped = s.shipped_at if s.shipped_at is not None else s.info_received_at
    th = ctx.settings.thresholds
    by_category = th.pickup_overdue_hours_by_category
    window_h = by_category.get(s.category or "", th.pickup_overdue_hours)
    args = (now, shipped, window_h, deadline, s.category, s.category in by_category)
    return _overdue(ctx, Finding.deferred(PICKUP_OVERDUE, deadline, _pickup_overdue_texts, args), deadline, now)


def _pickup_overdue_texts(args: tuple[Any, ...]) -> Texts:
    now, shipped, window_h, deadline, category, own_window = args
    return (
        f"no carrier scan {hours(now - shipped)} after shipping (limit {window_h:g} h)",
        f"shipped {china_time(shipped)}, pickup window {window_h:g} h"
        + (f" for category {category}" if own_window else "")
        + f", no scan as of {china_time(now)}",
        "push the carrier's outlet to collect the parcel, or re-issue the waybill with another carrier",
        {"shipped_at": shipped, "window_hours": window_h, "deadline": deadline},
    )


def transit_deadline(s: ParcelState, now: float, ctx: DetectorContext, carrier: str) -> float | None:
    """When a picked-up parcel in flight (not signed, returned or closed) becomes transit-overdue by its lane's
    limit as of ``now`` (None: not watched)."""
    pickup = s.picked_up_at if s.picked_up_at is not None else s.first_scan_at  # s.pickup_at, inlined
    if pickup is None or s.signed_at is not None or s.closed_at is not None or s.exception_reason == "returned":
        return None
    return pickup + ctx.baselines.transit_limit(carrier, s.origin_province, s.destination_province, now)[0] * HOUR


def transit_overdue(s: ParcelState, now: float, ctx: DetectorContext, carrier: str) -> Check:
    """Picked up, not signed, past the lane's normal transit time (the configured quantile of its learned,
    blended baseline; a constant before any delivery). Once raised it stays until the parcel is signed,
    returned or closed: a baseline that rises later may lower its severity, never end it. Severity steps up
    past each of ``lanes.severity_percentiles`` of the lane (by very-late hours on a constant)."""
    deadline = transit_deadline(s, now, ctx, carrier)
    if deadline is None:
        return NO_CHECK
    crossed = s.finding_time(TRANSIT_OVERDUE)  # raised already: the deadline it crossed then
    if crossed is None:
        if now < deadline:
            return Check(None, deadline)
        crossed = deadline
    pickup = s.picked_up_at if s.picked_up_at is not None else s.first_scan_at
    assert pickup is not None  # transit_deadline answered
    origin = s.origin_province
    destination = s.destination_province
    baseline = ctx.baselines.baseline(carrier, origin, destination, now)
    args = (now, pickup, carrier, origin, destination, crossed, baseline)
    finding = Finding.deferred(TRANSIT_OVERDUE, crossed, _transit_overdue_texts, args)
    if baseline.normal is None:  # a constant: one step when very late
        return _overdue(ctx, finding, crossed, now)
    # One level per severity percentile the parcel is past, counted by time (the next one is when to look again).
    steps = 0
    next_at: float | None = None
    for p in ctx.settings.lanes.severity_percentiles:
        step_at = pickup + (baseline.hours_at(p) or 0.0) * HOUR
        if now < step_at:
            next_at = step_at
            break
        steps += 1
    finding.steps = steps
    return Check(finding, next_at)


def _transit_overdue_texts(args: tuple[Any, ...]) -> Texts:
    now, pickup, carrier, origin, destination, crossed, baseline = args
    lane = f"{carrier} {origin or '?'}→{destination or '?'}"
    limit_h = baseline.limit_hours
    q = round(baseline.quantile * 100)
    elapsed_h = (now - pickup) / HOUR
    percentile = baseline.percentile(elapsed_h)
    if baseline.normal is not None:
        main = max(baseline.levels, key=lambda level: level.weight)
        basis = (f"p{q} of the normal transit of {lane}, learned from {baseline.answer[2]} deliveries "
                 f"(mostly {main.level.replace('_', ' ')} {main.key})")
    else:
        basis = f"{baseline.source.replace('_', ' ')} for {lane}, no delivery learned yet"
    data = {
        "picked_up_at": pickup,
        "deadline": crossed,
        "limit_hours": (crossed - pickup) / HOUR,
        "elapsed_hours": elapsed_h,
        "percentile": percentile,
        "lane": lane,
        "quantile": baseline.quantile,
        "baseline_source": baseline.source,
        "samples": baseline.answer[2],
        "baseline": baseline.evidence(),
    }
    beyond = "" if percentile is None else f", slower than {percentile:.0%} of the lane's deliveries"
    return (
        f"not signed {hours(now - pickup)} after pickup; normal transit {hours(limit_h * HOUR)}",
        f"picked up {china_time(pickup)}; overdue since {china_time(crossed)} ({hours(crossed - pickup)} after pickup); "
        f"normal transit {hours(limit_h * HOUR)}: {basis}; now {hours(now - pickup)}{beyond}",
        "ask the carrier where the parcel is and tell the buyer before they ask",
        data,
    )


def tracking_stale_deadline(s: ParcelState, now: float, ctx: DetectorContext, carrier: str) -> float | None:
    """When a parcel in transit becomes stale without a new scan (None: not watched). In transit the limit is
    the configured hours, or longer for a carrier and source whose own legs without a scan are longer; a
    source that reports no scans between pickup and signature is not watched (nothing to judge it by)."""
    last_scan = s.last_scan_at
    if (
        last_scan is None
        or (s.picked_up_at is None and s.first_scan_at is None)  # s.pickup_at is None, inlined
        or s.signed_at is not None
        or s.closed_at is not None
    ):
        return None
    status = s.status
    if status == "at_locker":
        return None  # waiting for the buyer, watched by locker_uncollected instead
    if status == "out_for_delivery":
        return last_scan + ctx.stale_out_for_delivery_seconds
    limit_h = ctx.baselines.stale_limit_hours(carrier, s.source, ctx.settings.thresholds.tracking_stale_hours, now)
    return None if limit_h is None else last_scan + limit_h * HOUR


def tracking_stale(s: ParcelState, now: float, ctx: DetectorContext, carrier: str) -> Check:
    """In transit with no new scan for too long (shorter once out for delivery; against the carrier and
    source's own cadence when that is slower)."""
    deadline = tracking_stale_deadline(s, now, ctx, carrier)
    if deadline is None:
        return NO_CHECK
    if now < deadline:
        return Check(None, deadline)
    last_scan = s.last_scan_at
    assert last_scan is not None  # tracking_stale_deadline answered
    status = s.status
    th = ctx.settings.thresholds
    delivering = status == "out_for_delivery"
    limit_h = (deadline - last_scan) / HOUR
    configured_h = th.tracking_stale_out_for_delivery_hours if delivering else th.tracking_stale_hours
    args = (now, last_scan, limit_h, configured_h, delivering, s.last_province, s.last_city, status, s.source, deadline)
    return _overdue(ctx, Finding.deferred(TRACKING_STALE, deadline, _tracking_stale_texts, args), deadline, now)


def _tracking_stale_texts(args: tuple[Any, ...]) -> Texts:
    now, last_scan, limit_h, configured_h, delivering, last_province, last_city, status, source, deadline = args
    where = " ".join(x for x in (last_province, last_city) if x)
    stage = "out for delivery" if delivering else "in transit"
    learned = limit_h > configured_h
    limit = f"{limit_h:g} h" if not learned else f"{hours(limit_h * HOUR)}, this carrier's usual gap via {source}"
    return (
        f"no new scan for {hours(now - last_scan)} while {stage} (limit {limit})",
        f"last scan {china_time(last_scan)}" + (f" at {where}" if where else "") + f", status {status}",
        "ask the carrier to trace the parcel; if lost, file a claim and re-ship",
        {"last_scan_at": last_scan, "limit_hours": limit_h, "stage": stage, "deadline": deadline,
         "configured_hours": configured_h, "cadence": "learned" if learned else "configured", "source": source,
         "last_province": last_province, "last_city": last_city, "status": status},
    )


def autoconfirm_deadline(s: ParcelState, ctx: DetectorContext) -> float | None:
    """The order's own deadline, else a per-platform default counted from shipping."""
    if s.autoconfirm_deadline is not None:
        return s.autoconfirm_deadline
    if s.shipped_at is None:
        return None
    by_platform = ctx.autoconfirm_seconds_by_platform
    return s.shipped_at + by_platform.get(s.platform or "other", by_platform["other"])


def confirmed_deadline(s: ParcelState, ctx: DetectorContext) -> float | None:
    """When a shipped, unsigned parcel counts as confirmed received: the buyer's confirmation or the
    auto-confirm deadline, whichever is earlier (None: not watched)."""
    if s.signed_at is not None or s.closed_at is not None or s.shipped_at is None:
        return None
    deadline = autoconfirm_deadline(s, ctx)
    confirmed = s.confirmed_at
    # The earlier of the two known times (on a tie the buyer's confirmation, as ``min`` would pick).
    if deadline is None:
        return confirmed
    if confirmed is None or deadline < confirmed:
        return deadline
    return confirmed


def confirmed_unsigned(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """Confirmed received (by the buyer, or by the platform at its deadline) though not signed."""
    since = confirmed_deadline(s, ctx)
    if since is None:
        return NO_CHECK
    if now < since:
        return Check(None, since)
    confirmed = s.confirmed_at
    by_buyer = confirmed is not None and confirmed <= since
    args = (since, by_buyer, s.status, s.last_scan_at)
    return Check(Finding.deferred(CONFIRMED_UNSIGNED, since, _confirmed_unsigned_texts, args), None)


def _confirmed_unsigned_texts(args: tuple[Any, ...]) -> Texts:
    since, by_buyer, status, last_scan_at = args
    how = "confirmed received by the buyer" if by_buyer else "auto-confirmed by the platform at its deadline"
    return (
        f"{how}, parcel not signed",
        f"{how} {china_time(since)}; carrier status {status or 'no scan'}"
        + (f", last scan {china_time(last_scan_at)}" if last_scan_at is not None else ""),
        "check with the buyer that the parcel arrived; if not, push the carrier or re-ship",
        {"confirmed_at": since, "by_buyer": by_buyer, "status": status, "last_scan_at": last_scan_at},
    )


def autoconfirm_warning_at(s: ParcelState, ctx: DetectorContext) -> float | None:
    """When the warning before a shipped, unconfirmed, unsigned parcel's auto-confirm begins (None: not
    watched). The warning ends at the deadline itself."""
    if s.signed_at is not None or s.closed_at is not None or s.confirmed_at is not None or s.shipped_at is None:
        return None
    deadline = autoconfirm_deadline(s, ctx)
    if deadline is None:
        return None
    return deadline - ctx.autoconfirm_warning_seconds


def autoconfirm_imminent(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """The auto-confirm deadline is near (48 h) and the parcel is not signed."""
    warn_at = autoconfirm_warning_at(s, ctx)
    if warn_at is None:
        return NO_CHECK
    if now < warn_at:
        return Check(None, warn_at)
    warn_h = ctx.settings.thresholds.autoconfirm_warning_hours
    deadline = autoconfirm_deadline(s, ctx)
    assert deadline is not None  # autoconfirm_warning_at answered
    if now >= deadline:
        return NO_CHECK  # past the deadline the order is confirmed: confirmed_unsigned takes over
    args = (deadline, s.autoconfirm_deadline is not None, s.platform, warn_h, s.status)
    return Check(Finding.deferred(AUTOCONFIRM_IMMINENT, warn_at, _autoconfirm_imminent_texts, args), deadline)


def _autoconfirm_imminent_texts(args: tuple[Any, ...]) -> Texts:
    deadline, order_deadline, platform, warn_h, status = args
    source = "order deadline" if order_deadline else f"{platform or 'platform'} default"
    return (
        f"auto-confirm at {china_time(deadline)} ({source}); parcel not signed",
        f"auto-confirm deadline {china_time(deadline)} ({source}), warning {warn_h:g} h before; "
        f"carrier status {status or 'no scan'}",
        "extend the receipt deadline (延长收货) so the buyer is not confirmed before delivery",
        {"deadline": deadline, "source": source, "order_deadline": order_deadline, "warning_hours": warn_h, "status": status},
    )


def locker_deadline(s: ParcelState, ctx: DetectorContext) -> float | None:
    """When a parcel left at a locker or station becomes uncollected (None: not watched)."""
    at_locker = s.at_locker_at
    if at_locker is None or s.signed_at is not None or s.closed_at is not None:
        return None
    return at_locker + ctx.locker_seconds


def locker_uncollected(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """Put into a locker or parcel station and not collected in time."""
    deadline = locker_deadline(s, ctx)
    if deadline is None:
        return NO_CHECK
    if now < deadline:
        return Check(None, deadline)
    at_locker = s.at_locker_at
    limit_h = ctx.settings.thresholds.locker_uncollected_hours
    args = (now, at_locker, limit_h, s.last_city)
    return _overdue(ctx, Finding.deferred(LOCKER_UNCOLLECTED, deadline, _locker_uncollected_texts, args), deadline, now)


def _locker_uncollected_texts(args: tuple[Any, ...]) -> Texts:
    now, at_locker, limit_h, last_city = args
    return (
        f"waiting at locker/station for {hours(now - at_locker)} (limit {limit_h:g} h)",
        f"put into locker/station {china_time(at_locker)}" + (f" in {last_city}" if last_city else ""),
        "remind the buyer to collect the parcel with the pickup code",
        {"at_locker_at": at_locker, "limit_hours": limit_h, "city": last_city},
    )


def exception_deadline(s: ParcelState) -> float | None:
    """When a carrier exception on an unsigned parcel counts: the exception scan's time (None: none)."""
    exception_at = s.exception_at
    if exception_at is None or s.signed_at is not None or s.closed_at is not None:
        return None
    return exception_at


def carrier_exception(s: ParcelState, now: float, ctx: DetectorContext) -> Check:
    """The carrier reported an exception (problem parcel, refused, lost ...) and the parcel is not signed."""
    exception_at = exception_deadline(s)
    if exception_at is None:
        return NO_CHECK
    if now < exception_at:
        return Check(None, exception_at)
    reason_code = s.exception_reason or "other"
    args = (ctx, reason_code, exception_at, s.last_city)
    return Check(Finding.deferred(CARRIER_EXCEPTION, exception_at, _carrier_exception_texts, args, reason_code), None)


def _carrier_exception_texts(args: tuple[Any, ...]) -> Texts:
    ctx, reason_code, exception_at, last_city = args
    label = ctx.settings.labels.reason(reason_code, "en")
    return (
        f"carrier exception: {label}",
        f"carrier reported {reason_code} at {china_time(exception_at)}" + (f" in {last_city}" if last_city else ""),
        _EXCEPTION_ACTIONS.get(reason_code, "contact the carrier about the exception"),
        {"exception_at": exception_at, "exception_reason": reason_code, "city": last_city},
    )


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
