"""The eight rules, one by one: threshold edges, next_at, severity, and how each issue ends."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import config
from detectors import DetectorContext, LaneBaselines, earliest_deadline, evaluate
from detectors.base import Check, Finding, hours, severity
from detectors.lanes import Baseline
from detectors.rules import (
    autoconfirm_deadline,
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
    ship_overdue,
    tracking_stale,
    tracking_stale_deadline,
    transit_deadline,
    transit_overdue,
)
from domain.state import ParcelState
from domain.vocabulary import china_time

S = config.load(env={})
H = 3600.0
D = 24 * H
T0 = 1_793_584_800.0  # 2026-11-02T02:00:00Z = 10:00 China time
VERY_LATE = S.severity.very_late_hours * H  # 48 h

Rule = Callable[[ParcelState, float], Check]


class FixedBaseline:
    """A lane baseline that always answers the same limit, with no distribution behind it (as a constant:
    severity by very-late hours), and the configured stale limit."""

    def __init__(self, limit_hours: float, source: str = "lane", samples: int = 20) -> None:
        self.answer = (limit_hours, source, samples)
        self.asked: list[tuple[str, str | None, str | None, float]] = []

    def transit_limit(self, carrier: str, origin: str | None, destination: str | None, now: float) -> tuple[float, str, int]:
        self.asked.append((carrier, origin, destination, now))
        return self.answer

    def baseline(self, carrier: str, origin: str | None, destination: str | None, now: float) -> Baseline:
        self.asked.append((carrier, origin, destination, now))
        limit, source, _ = self.answer
        return Baseline(limit, source, S.lanes.quantile, now, None, self.answer)

    def stale_limit_hours(self, carrier: str, source: str | None, configured_hours: float, now: float) -> float | None:
        return configured_hours

    def refreshed_at(self, now: float) -> float:
        return now

    def next_refresh(self, now: float) -> float:
        return math.inf


def ctx_with(settings: config.Settings = S, baselines: object | None = None) -> DetectorContext:
    return DetectorContext(settings, baselines if baselines is not None else LaneBaselines(settings.lanes))  # type: ignore[arg-type]


CTX = ctx_with()


def settings_with(**sections: dict[str, object]) -> config.Settings:
    """A copy of the defaults with some fields of some sections replaced."""
    changes = {name: dataclasses.replace(getattr(S, name), **fields) for name, fields in sections.items()}
    return dataclasses.replace(S, **changes)


def parcel(**kw: object) -> ParcelState:
    base: dict[str, object] = {"order_id": "TB1", "shop": "shop-a", "platform": "taobao", "paid_at": T0 - 2 * H, "shipped_at": T0}
    base.update(kw)
    return ParcelState(**base)  # type: ignore[arg-type]


def assert_overdue_edges(rule: Rule, state: ParcelState, deadline: float) -> Finding:
    """Just before / at / after the deadline, and the severity escalation point after it."""
    before = rule(state, deadline - 1)
    assert before.finding is None
    assert before.next_at == deadline
    at = rule(state, deadline)
    assert at.finding is not None
    assert at.finding.since == deadline
    assert at.finding.late_hours == 0
    assert at.next_at == deadline + VERY_LATE  # look again when it becomes very late
    after = rule(state, deadline + 47 * H)
    assert after.finding is not None and after.finding.since == deadline
    assert after.finding.late_hours == 47
    assert after.next_at == deadline + VERY_LATE
    very = rule(state, deadline + VERY_LATE)
    assert very.finding is not None and very.finding.late_hours == 48
    assert very.next_at is None  # nothing more can change by time alone
    return at.finding


# -- ship_overdue ---------------------------------------------------------------------------------------


def ship(s: ParcelState, now: float) -> Check:
    return ship_overdue(s, now, CTX)


def test_ship_overdue_48h_after_payment() -> None:
    s = ParcelState(order_id="TB1", shop="shop-a", paid_at=T0)
    f = assert_overdue_edges(ship, s, T0 + 48 * H)
    assert f.kind == "ship_overdue"
    assert f.reason == "not shipped 2.0 d after payment (limit 48 h after payment)"
    assert f.evidence == "paid 2026-11-02 10:00, limit 48 h after payment, now 2.0 d since payment"
    assert f.evidence_data == {"paid_at": T0, "deadline": T0 + 48 * H, "promised": False, "limit_hours": 48.0}


def test_ship_overdue_uses_the_orders_own_promise() -> None:
    s = ParcelState(paid_at=T0, promised_ship_at=T0 + 20 * H)
    f = assert_overdue_edges(ship, s, T0 + 20 * H)
    assert f.reason == "not shipped 20.0 h after payment (promised ship time 2026-11-03 06:00)"


def test_ship_overdue_threshold_comes_from_config() -> None:
    ctx = ctx_with(settings_with(thresholds={"ship_overdue_hours": 24.0}))
    assert ship_overdue(ParcelState(paid_at=T0), T0, ctx).next_at == T0 + 24 * H


@pytest.mark.parametrize("end", [{"shipped_at": T0 + 50 * H}, {"closed_at": T0 + 50 * H, "closed_kind": "refunded"}, {"paid_at": None}])
def test_ship_overdue_ends_when_shipped_closed_or_unpaid(end: dict[str, object]) -> None:
    s = ParcelState(paid_at=T0)
    assert ship(s, T0 + 60 * H).finding is not None
    for k, v in end.items():
        setattr(s, k, v)
    assert ship(s, T0 + 60 * H) == Check(None, None)


# -- pickup_overdue -------------------------------------------------------------------------------------


def pickup(s: ParcelState, now: float) -> Check:
    return pickup_overdue(s, now, CTX)


def test_pickup_overdue_24h_after_shipping() -> None:
    f = assert_overdue_edges(pickup, parcel(category="apparel"), T0 + 24 * H)
    assert f.kind == "pickup_overdue"
    assert f.reason == "no carrier scan 24.0 h after shipping (limit 24 h)"
    assert f.evidence == "shipped 2026-11-02 10:00, pickup window 24 h, no scan as of 2026-11-03 10:00"
    assert f.evidence_data == {"shipped_at": T0, "window_hours": 24.0, "deadline": T0 + 24 * H}


@pytest.mark.parametrize("category", ["furniture", "large_appliance", "fresh"])
def test_pickup_overdue_48h_for_categories_measured_at_48h(category: str) -> None:
    s = parcel(category=category)
    assert pickup(s, T0 + 24 * H).finding is None
    f = assert_overdue_edges(pickup, s, T0 + 48 * H)
    assert f.reason == "no carrier scan 2.0 d after shipping (limit 48 h)"
    assert f.evidence.startswith(f"shipped 2026-11-02 10:00, pickup window 48 h for category {category}, ")


def test_pickup_window_without_order_facts_counts_from_the_waybill() -> None:
    s = ParcelState(info_received_at=T0 + H)
    assert_overdue_edges(pickup, s, T0 + 25 * H)
    # The shipping time from the order wins over the waybill scan.
    s.shipped_at = T0
    assert pickup(s, T0 + 24 * H).finding is not None


@pytest.mark.parametrize(
    "end",
    [
        {"first_scan_at": T0 + 30 * H, "picked_up_at": T0 + 30 * H},  # first carrier scan
        {"first_scan_at": T0 + 30 * H},  # any carrier scan (e.g. an exception) counts
        {"signed_at": T0 + 30 * H},
        {"closed_at": T0 + 30 * H, "closed_kind": "closed"},
    ],
)
def test_pickup_overdue_ends(end: dict[str, object]) -> None:
    s = parcel()
    assert pickup(s, T0 + 40 * H).finding is not None
    for k, v in end.items():
        setattr(s, k, v)
    assert pickup(s, T0 + 40 * H) == Check(None, None)


def test_pickup_overdue_needs_a_shipment() -> None:
    assert pickup(parcel(shipped_at=None), T0 + 100 * H) == Check(None, None)


# -- transit_overdue ------------------------------------------------------------------------------------


def transit_with(baselines: object) -> Rule:
    ctx = ctx_with(baselines=baselines)
    return lambda s, now: transit_overdue(s, now, ctx, "ZTO")


def picked(**kw: object) -> ParcelState:
    """Shipped at T0, picked up (first and last scan) at T0 + 1 h, 广东 → 浙江 unless overridden."""
    base: dict[str, object] = {
        "picked_up_at": T0 + H,
        "first_scan_at": T0 + H,
        "last_scan_at": T0 + H,
        "origin_province": "广东",
        "destination_province": "浙江",
    }
    base.update(kw)
    return parcel(**base)


def test_transit_overdue_with_a_fixed_baseline() -> None:
    baseline = FixedBaseline(30.0, "lane", 25)
    f = assert_overdue_edges(transit_with(baseline), picked(), T0 + H + 30 * H)
    assert f.kind == "transit_overdue"
    assert f.reason == "not signed 30.0 h after pickup; normal transit 30.0 h"
    assert f.evidence.startswith("picked up 2026-11-02 11:00; overdue since 2026-11-03 17:00 (30.0 h after pickup); ")
    data = f.evidence_data
    assert {k: data[k] for k in ("picked_up_at", "deadline", "limit_hours", "baseline_source", "samples", "lane")} == {
        "picked_up_at": T0 + H, "deadline": T0 + 31 * H, "limit_hours": 30.0, "baseline_source": "lane",
        "samples": 25, "lane": "ZTO 广东→浙江"}
    assert (data["percentile"], data["elapsed_hours"]) == (None, 30.0)
    assert baseline.asked[0][:3] == ("ZTO", "广东", "浙江")


def add_samples(b: LaneBaselines, origin: str, dest: str, transit_hours: list[float]) -> None:
    """Deliveries signed ten days before T0, an hour apart (long enough ago to be past a new stream's floor)."""
    for i, th in enumerate(transit_hours):
        signed = T0 - 10 * D - i * H
        b.add_delivery("ZTO", origin, dest, signed - th * H, signed)


def test_transit_overdue_from_real_baselines_steps_up_past_each_severity_percentile() -> None:
    b = LaneBaselines(S.lanes)
    add_samples(b, "广东", "浙江", [20.0 + i for i in range(20)])  # 20..39 h, learned a day before T0
    rule = transit_with(b)
    limit = b.transit_limit("ZTO", "广东", "浙江", T0)[0]
    deadline = T0 + H + limit * H
    assert rule(picked(), deadline - 1) == Check(None, deadline)
    at = rule(picked(), deadline)
    assert at.finding is not None and at.finding.since == deadline and at.finding.steps == 0
    normal = b.baseline("ZTO", "广东", "浙江", T0)
    step1, step2 = (T0 + H + (normal.hours_at(p) or 0.0) * H for p in S.lanes.severity_percentiles)
    assert deadline <= step1 < step2 and at.next_at == step1
    for now, steps, next_at in ((step1 - 1, 0, step1), (step1, 1, step2), (step2, 2, None), (step2 + 30 * D, 2, None)):
        check = rule(picked(), now)
        assert check.finding is not None and (check.finding.steps, check.next_at) == (steps, next_at)
        assert check.finding.since == deadline
    data = at.finding.evidence_data
    # Twenty deliveries ten days old weigh about sixteen (a weight halves every 30 days; the days since pickup).
    assert data["baseline_source"] == "learned" and data["samples"] in (15, 16) and data["deadline"] == deadline
    assert data["percentile"] == pytest.approx(normal.percentile(limit))
    lane = data["baseline"]["levels"][0]
    seen = lane["deliveries"]
    assert 14 < seen < 17
    assert lane == {"level": "lane", "key": "ZTO 广东→浙江", "deliveries": seen,
                    "weight": pytest.approx(seen / (seen + S.lanes.credibility_samples), abs=0.002),
                    "median_hours": pytest.approx(29.5, rel=0.06)}
    # Severity: medium at the limit, one level per percentile passed.
    state = picked()
    assert [severity(CTX, "transit_overdue", c.finding, None, False) for c in (rule(state, deadline), rule(state, step1),
            rule(state, step2)) if c.finding] == ["medium", "high", "critical"]


def test_transit_overdue_leans_on_the_wider_level_while_the_lane_has_seen_little() -> None:
    b = LaneBaselines(S.lanes)
    add_samples(b, "广东", "浙江", [10.0] * 5)  # the lane itself: five fast deliveries
    add_samples(b, "江苏", "浙江", [50.0] * 15)  # ZTO to 浙江 from elsewhere: slow
    lane = b.baseline("ZTO", "广东", "浙江", T0)
    alone = b.baseline("ZTO", "江苏", "浙江", T0)
    assert lane.normal is not None and alone.normal is not None
    assert 10.0 < math.exp(lane.normal.mu) < math.exp(alone.normal.mu)
    f = transit_with(b)(picked(), T0 + H + 2 * lane.limit_hours * H)
    assert f.finding is not None
    levels = {level["level"]: level for level in f.finding.evidence_data["baseline"]["levels"]}
    seen = levels["lane"]["deliveries"]  # five, decayed a little
    assert levels["lane"]["weight"] == pytest.approx(seen / (seen + S.lanes.credibility_samples), abs=0.01)
    assert levels["carrier_destination"]["deliveries"] == pytest.approx(4 * seen, rel=0.05)


def test_transit_overdue_uses_the_constant_before_any_delivery() -> None:
    f = assert_overdue_edges(transit_with(LaneBaselines(S.lanes)), picked(), T0 + H + 96 * H)
    data = f.evidence_data
    assert (data["limit_hours"], data["baseline_source"], data["samples"], data["percentile"]) == (96.0, "default_sla", 0, None)
    assert f.reason == "not signed 4.0 d after pickup; normal transit 4.0 d"


@pytest.mark.parametrize("dest", ["新疆", "西藏", "青海", "内蒙古"])
def test_transit_overdue_remote_region_sla_is_longer(dest: str) -> None:
    s = picked()
    s.destination_province = dest
    f = assert_overdue_edges(transit_with(LaneBaselines(S.lanes)), s, T0 + H + 168 * H)
    assert f.evidence_data["baseline_source"] == "region_sla:remote"
    assert f.evidence_data["limit_hours"] == 168.0


def test_transit_overdue_counts_from_first_scan_without_pickup_scan() -> None:
    s = picked(picked_up_at=None, first_scan_at=T0 + 5 * H)
    assert_overdue_edges(transit_with(FixedBaseline(10.0)), s, T0 + 15 * H)


@pytest.mark.parametrize("end", [{"signed_at": T0 + 60 * H}, {"closed_at": T0 + 60 * H, "closed_kind": "refunded"},
                                 {"exception_at": T0 + 60 * H, "exception_reason": "returned"}])
def test_transit_overdue_ends_when_signed_returned_or_closed(end: dict[str, object]) -> None:
    rule = transit_with(FixedBaseline(30.0))
    s = picked()
    assert rule(s, T0 + 70 * H).finding is not None
    for k, v in end.items():
        setattr(s, k, v)
    assert rule(s, T0 + 70 * H) == Check(None, None)


def test_transit_overdue_needs_a_pickup() -> None:
    assert transit_with(FixedBaseline(1.0))(parcel(), T0 + 500 * H) == Check(None, None)


# -- tracking_stale -------------------------------------------------------------------------------------


def stale(s: ParcelState, now: float) -> Check:
    return tracking_stale(s, now, CTX, "ZTO")


def test_tracking_stale_48h_in_transit() -> None:
    s = picked(status="in_transit", last_province="广东", last_city="广州市")
    s.last_scan_at = T0 + 5 * H
    f = assert_overdue_edges(stale, s, T0 + 53 * H)
    assert f.kind == "tracking_stale"
    assert f.reason == "no new scan for 2.0 d while in transit (limit 48 h)"
    assert f.evidence == "last scan 2026-11-02 15:00 at 广东 广州市, status in_transit"
    assert f.evidence_data == {"last_scan_at": T0 + 5 * H, "limit_hours": 48.0, "stage": "in transit",
                               "deadline": T0 + 53 * H, "configured_hours": 48.0, "cadence": "configured", "source": None,
                               "last_province": "广东", "last_city": "广州市", "status": "in_transit"}


def test_tracking_stale_24h_once_out_for_delivery() -> None:
    s = picked(status="out_for_delivery", out_for_delivery_at=T0 + 10 * H)
    s.last_scan_at = T0 + 10 * H
    f = assert_overdue_edges(stale, s, T0 + 34 * H)
    assert f.reason == "no new scan for 24.0 h while out for delivery (limit 24 h)"
    assert f.evidence_data["stage"] == "out for delivery"


def test_tracking_stale_new_scan_moves_the_deadline() -> None:
    s = picked(status="in_transit")
    assert stale(s, T0 + 49 * H).finding is not None
    s.last_scan_at = T0 + 40 * H  # scanned again
    check = stale(s, T0 + 49 * H)
    assert check == Check(None, T0 + 88 * H)


def test_tracking_stale_not_at_a_locker_signed_closed_or_before_pickup() -> None:
    assert stale(picked(status="at_locker", at_locker_at=T0 + H), T0 + 100 * H) == Check(None, None)
    assert stale(picked(signed_at=T0 + 2 * H, status="signed"), T0 + 100 * H) == Check(None, None)
    assert stale(picked(closed_at=T0 + 2 * H), T0 + 100 * H) == Check(None, None)
    assert stale(parcel(info_received_at=T0), T0 + 100 * H) == Check(None, None)


def test_tracking_stale_threshold_from_config() -> None:
    ctx = ctx_with(settings_with(thresholds={"tracking_stale_hours": 12.0, "tracking_stale_out_for_delivery_hours": 6.0}))
    s = picked(status="in_transit")
    assert tracking_stale(s, T0, ctx, "ZTO").next_at == T0 + 13 * H
    s.status = "out_for_delivery"
    assert tracking_stale(s, T0, ctx, "ZTO").next_at == T0 + 7 * H


# -- confirmed_unsigned ---------------------------------------------------------------------------------


def confirmed(s: ParcelState, now: float) -> Check:
    return confirmed_unsigned(s, now, CTX)


def test_confirmed_unsigned_by_the_buyer_is_immediate() -> None:
    s = picked(confirmed_at=T0 + 50 * H, status="in_transit")
    assert confirmed(s, T0 + 50 * H - 1) == Check(None, T0 + 50 * H)
    check = confirmed(s, T0 + 50 * H)
    assert check.next_at is None
    f = check.finding
    assert f is not None and f.kind == "confirmed_unsigned"
    assert f.since == T0 + 50 * H
    assert f.reason == "confirmed received by the buyer, parcel not signed"
    assert f.evidence == "confirmed received by the buyer 2026-11-04 12:00; carrier status in_transit, last scan 2026-11-02 11:00"
    assert f.evidence_data == {"confirmed_at": T0 + 50 * H, "by_buyer": True, "status": "in_transit", "last_scan_at": T0 + H}
    assert f.late_hours == 0


def test_confirmed_unsigned_by_the_platform_at_the_orders_deadline() -> None:
    deadline = T0 + 7 * D
    s = parcel(autoconfirm_deadline=deadline, autoconfirm_set_at=T0)
    assert confirmed(s, deadline - 1) == Check(None, deadline)
    f = confirmed(s, deadline).finding
    assert f is not None and f.since == deadline
    assert f.reason == "auto-confirmed by the platform at its deadline, parcel not signed"
    assert f.evidence == "auto-confirmed by the platform at its deadline 2026-11-09 10:00; carrier status no scan"
    assert f.evidence_data == {"confirmed_at": deadline, "by_buyer": False, "status": None, "last_scan_at": None}


def test_confirmed_unsigned_buyer_after_the_deadline_counts_from_the_deadline() -> None:
    s = parcel(autoconfirm_deadline=T0 + 7 * D, confirmed_at=T0 + 8 * D)
    f = confirmed(s, T0 + 9 * D).finding
    assert f is not None and f.since == T0 + 7 * D and f.evidence_data["by_buyer"] is False


@pytest.mark.parametrize(("platform", "days"), [("taobao", 10), ("douyin", 7), ("kuaishou", 12), (None, 12)])
def test_autoconfirm_default_deadline_per_platform(platform: str | None, days: float) -> None:
    settings = settings_with(thresholds={"autoconfirm_default_days": {"taobao": 10.0, "douyin": 7.0, "other": 12.0}})
    ctx = ctx_with(settings)
    s = parcel(platform=platform)
    assert autoconfirm_deadline(s, ctx) == T0 + days * D
    f = confirmed_unsigned(s, T0 + days * D, ctx).finding
    assert f is not None and f.since == T0 + days * D
    assert confirmed_unsigned(s, T0 + days * D - 1, ctx).finding is None


def test_autoconfirm_deadline_none_before_shipping() -> None:
    assert autoconfirm_deadline(parcel(shipped_at=None), CTX) is None
    assert confirmed(parcel(shipped_at=None, confirmed_at=T0), T0 + H) == Check(None, None)


@pytest.mark.parametrize("end", [{"signed_at": T0 + 60 * H}, {"closed_at": T0 + 60 * H, "closed_kind": "refunded"}])
def test_confirmed_unsigned_ends_when_signed_or_refunded(end: dict[str, object]) -> None:
    s = parcel(confirmed_at=T0 + 50 * H)
    assert confirmed(s, T0 + 70 * H).finding is not None
    for k, v in end.items():
        setattr(s, k, v)
    assert confirmed(s, T0 + 70 * H) == Check(None, None)


# -- autoconfirm_imminent -------------------------------------------------------------------------------


def imminent(s: ParcelState, now: float) -> Check:
    return autoconfirm_imminent(s, now, CTX)


def test_autoconfirm_imminent_48h_before_the_orders_deadline() -> None:
    deadline = T0 + 10 * D
    warn = deadline - 48 * H
    s = parcel(autoconfirm_deadline=deadline, autoconfirm_set_at=T0, status="in_transit")
    assert imminent(s, warn - 1) == Check(None, warn)
    at = imminent(s, warn)
    assert at.finding is not None and at.next_at == deadline
    f = at.finding
    assert (f.kind, f.since, f.late_hours) == ("autoconfirm_imminent", warn, 0)
    assert f.reason == "auto-confirm at 2026-11-12 10:00 (order deadline); parcel not signed"
    assert f.evidence == "auto-confirm deadline 2026-11-12 10:00 (order deadline), warning 48 h before; carrier status in_transit"
    assert f.evidence_data == {"deadline": deadline, "source": "order deadline", "order_deadline": True, "warning_hours": 48.0,
                               "status": "in_transit"}
    last = imminent(s, deadline - 1)
    assert last.finding is not None and last.next_at == deadline
    # At the deadline the order is confirmed: confirmed_unsigned takes over.
    assert imminent(s, deadline) == Check(None, None)
    assert confirmed(s, deadline).finding is not None


def test_autoconfirm_imminent_per_platform_default() -> None:
    s = parcel(platform="douyin")
    deadline = T0 + 10 * D
    f = imminent(s, deadline - 48 * H).finding
    assert f is not None and f.evidence_data == {"deadline": deadline, "source": "douyin default", "order_deadline": False,
                                                 "warning_hours": 48.0, "status": None}
    assert imminent(s, deadline - 48 * H - 1).next_at == deadline - 48 * H


def test_autoconfirm_imminent_resolves_when_the_deadline_is_extended() -> None:
    s = parcel(autoconfirm_deadline=T0 + 10 * D, autoconfirm_set_at=T0)
    now = T0 + 9 * D
    assert imminent(s, now).finding is not None
    s.autoconfirm_deadline, s.autoconfirm_set_at = T0 + 15 * D, now  # 延长收货 by 5 days
    assert imminent(s, now) == Check(None, T0 + 15 * D - 48 * H)
    assert confirmed(s, T0 + 14 * D).finding is None


@pytest.mark.parametrize(
    "end",
    [{"signed_at": T0 + 9 * D}, {"confirmed_at": T0 + 9 * D}, {"closed_at": T0 + 9 * D, "closed_kind": "refunded"}],
)
def test_autoconfirm_imminent_ends_when_signed_confirmed_or_refunded(end: dict[str, object]) -> None:
    s = parcel(autoconfirm_deadline=T0 + 10 * D)
    assert imminent(s, T0 + 9 * D).finding is not None
    for k, v in end.items():
        setattr(s, k, v)
    assert imminent(s, T0 + 9 * D) == Check(None, None)


def test_autoconfirm_warning_hours_from_config() -> None:
    ctx = ctx_with(settings_with(thresholds={"autoconfirm_warning_hours": 72.0}))
    assert autoconfirm_imminent(parcel(autoconfirm_deadline=T0 + 10 * D), T0, ctx).next_at == T0 + 7 * D


# -- locker_uncollected ---------------------------------------------------------------------------------


def locker(s: ParcelState, now: float) -> Check:
    return locker_uncollected(s, now, CTX)


def test_locker_uncollected_48h() -> None:
    s = picked(status="at_locker", at_locker_at=T0 + 30 * H, last_city="杭州市")
    f = assert_overdue_edges(locker, s, T0 + 78 * H)
    assert f.kind == "locker_uncollected"
    assert f.reason == "waiting at locker/station for 2.0 d (limit 48 h)"
    assert f.evidence == "put into locker/station 2026-11-03 16:00 in 杭州市"
    assert f.evidence_data == {"at_locker_at": T0 + 30 * H, "limit_hours": 48.0, "city": "杭州市"}


@pytest.mark.parametrize("end", [{"signed_at": T0 + 90 * H}, {"closed_at": T0 + 90 * H, "closed_kind": "closed"}])
def test_locker_uncollected_ends_when_collected_or_closed(end: dict[str, object]) -> None:
    s = picked(status="at_locker", at_locker_at=T0 + 30 * H)
    assert locker(s, T0 + 100 * H).finding is not None
    for k, v in end.items():
        setattr(s, k, v)
    assert locker(s, T0 + 100 * H) == Check(None, None)


def test_locker_not_watched_before_the_locker() -> None:
    assert locker(picked(status="out_for_delivery"), T0 + 500 * H) == Check(None, None)


# -- carrier_exception ----------------------------------------------------------------------------------


def exc(s: ParcelState, now: float) -> Check:
    return carrier_exception(s, now, CTX)


@pytest.mark.parametrize(
    ("reason", "label", "action_start"),
    [
        ("lost", "Lost", "file a claim with the carrier and re-ship"),
        ("out_of_area", "Outside delivery area", "tell the buyer where to collect"),
        ("refused", "Refused", "contact the buyer about the refusal"),
        ("other", "Other exception", "contact the carrier about the exception"),
    ],
)
def test_carrier_exception_is_immediate_and_keeps_its_reason(reason: str, label: str, action_start: str) -> None:
    at = T0 + 20 * H
    s = picked(exception_at=at, exception_reason=reason, last_city="乌鲁木齐市")
    assert exc(s, at - 1) == Check(None, at)
    check = exc(s, at)
    assert check.next_at is None
    f = check.finding
    assert f is not None
    assert (f.kind, f.since, f.exception_reason) == ("carrier_exception", at, reason)
    assert f.reason == f"carrier exception: {label}"
    assert f.evidence == f"carrier reported {reason} at 2026-11-03 06:00 in 乌鲁木齐市"
    assert f.evidence_data == {"exception_at": at, "exception_reason": reason, "city": "乌鲁木齐市"}
    assert f.suggested_action.startswith(action_start)
    later = exc(s, at + 500 * H)
    assert later.finding is not None and later.finding.late_hours == 0 and later.next_at is None


@pytest.mark.parametrize("end", [{"signed_at": T0 + 30 * H}, {"closed_at": T0 + 30 * H, "closed_kind": "refunded"}])
def test_carrier_exception_ends_when_signed_or_closed(end: dict[str, object]) -> None:
    s = picked(exception_at=T0 + 20 * H, exception_reason="held")
    assert exc(s, T0 + 25 * H).finding is not None
    for k, v in end.items():
        setattr(s, k, v)
    assert exc(s, T0 + 25 * H) == Check(None, None)


def test_a_later_scan_does_not_end_an_exception() -> None:
    s = picked(exception_at=T0 + 20 * H, exception_reason="held", status="in_transit")
    s.last_scan_at = T0 + 30 * H
    assert exc(s, T0 + 31 * H).finding is not None


# -- evaluate: which rules, next_at, severity -----------------------------------------------------------


def test_order_subject_is_watched_for_ship_overdue_only() -> None:
    s = ParcelState(paid_at=T0, exception_at=T0, exception_reason="lost", first_scan_at=T0)
    ev = evaluate("order:TB1", s, T0 + 49 * H, CTX)
    assert set(ev.findings) == {"ship_overdue"}
    assert ev.next_at == T0 + 96 * H
    ev = evaluate("ZTO:731", s, T0 + 49 * H, CTX)
    assert "ship_overdue" not in ev.findings
    assert "carrier_exception" in ev.findings


def test_evaluate_next_at_is_the_earliest_rule() -> None:
    s = picked(status="in_transit", autoconfirm_deadline=T0 + 10 * D)
    ev = evaluate("ZTO:731", s, T0 + 2 * H, CTX)
    assert ev.findings == {}
    # stale at last scan + 48 h beats transit (pickup + 96 h) and the auto-confirm warning.
    assert ev.next_at == T0 + H + 48 * H


def test_evaluate_runs_the_rules_from_the_learned_lanes_deadline() -> None:
    """The learned lane's limit is the earliest deadline, well before the configured SLA and the stale
    limit (48 h after the last scan): evaluate must look at the rules from it on, not from those."""
    ctx = _learned_ctx()
    s = picked(status="in_transit", autoconfirm_deadline=T0 + 10 * D)
    deadline = T0 + H + ctx.baselines.transit_limit("ZTO", "广东", "浙江", T0)[0] * H
    assert deadline < T0 + H + 48 * H
    before = evaluate("ZTO:731", s, deadline - 1, ctx)
    assert (before.findings, before.next_at) == ({}, deadline)
    at = evaluate("ZTO:731", s, deadline, ctx)
    assert list(at.findings) == ["transit_overdue"]
    assert at.findings["transit_overdue"][0].evidence_data["baseline_source"] == "learned"


def test_evaluate_nothing_pending_for_a_signed_parcel() -> None:
    s = picked(status="signed", signed_at=T0 + 20 * H, last_scan_at=T0 + 20 * H)
    ev = evaluate("ZTO:731", s, T0 + 30 * D, CTX)
    assert (ev.findings, ev.next_at) == ({}, None)


@pytest.mark.parametrize(
    ("state", "now", "kind"),
    [
        (ParcelState(paid_at=T0), T0 + 48 * H, "ship_overdue"),
        (parcel(), T0 + 24 * H, "pickup_overdue"),
        (picked(status="at_locker", at_locker_at=T0 + 2 * H), T0 + 97 * H, "transit_overdue"),
        (picked(status="in_transit"), T0 + 49 * H, "tracking_stale"),
        (parcel(confirmed_at=T0 + H, first_scan_at=T0), T0 + H, "confirmed_unsigned"),
        (parcel(autoconfirm_deadline=T0 + 3 * D, first_scan_at=T0, last_scan_at=T0 + 2 * D), T0 + D, "autoconfirm_imminent"),
        (picked(status="at_locker", at_locker_at=T0 + 2 * H), T0 + 50 * H, "locker_uncollected"),
        (picked(exception_at=T0 + 2 * H, exception_reason="lost"), T0 + 3 * H, "carrier_exception"),
    ],
)
def test_base_severity_per_kind(state: ParcelState, now: float, kind: str) -> None:
    subject = "order:TB1" if kind == "ship_overdue" else "ZTO:731"
    ev = evaluate(subject, state, now, CTX)
    assert kind in ev.findings
    assert ev.findings[kind][1] == S.severity.base[kind]
    # One level up for a high-value order (at the threshold, inclusive).
    state.order_value = 500.0
    assert evaluate(subject, state, now, CTX).findings[kind][1] == _up(S.severity.base[kind], 1)
    state.order_value = 499.99
    assert evaluate(subject, state, now, CTX).findings[kind][1] == S.severity.base[kind]


def _up(level: str, steps: int) -> str:
    order = ("low", "medium", "high", "critical")
    return order[max(0, min(order.index(level) + steps, 3))]


def test_severity_very_late_steps_up_once() -> None:
    s = parcel()  # pickup deadline T0 + 24 h, base medium
    deadline = T0 + 24 * H
    assert evaluate("ZTO:1", s, deadline + VERY_LATE - 1, CTX).findings["pickup_overdue"][1] == "medium"
    assert evaluate("ZTO:1", s, deadline + VERY_LATE, CTX).findings["pickup_overdue"][1] == "high"
    assert evaluate("ZTO:1", s, deadline + 20 * D, CTX).findings["pickup_overdue"][1] == "high"
    s.order_value = 1000.0
    assert evaluate("ZTO:1", s, deadline + VERY_LATE, CTX).findings["pickup_overdue"][1] == "critical"


def test_severity_is_capped_at_critical() -> None:
    s = parcel(confirmed_at=T0 + H, order_value=9999.0, destination_province="新疆")  # high + value = critical
    ctx = ctx_with(settings_with(severity={"remote_region_step": 2}))
    assert evaluate("ZTO:1", s, T0 + 60 * D, ctx).findings["confirmed_unsigned"][1] == "critical"


@pytest.mark.parametrize(
    ("step", "dest", "expected"),
    [(0, "新疆", "low"), (1, "新疆", "medium"), (1, "浙江", "low"), (2, "西藏", "high"), (-1, "新疆", "low")],
)
def test_remote_region_step(step: int, dest: str, expected: str) -> None:
    s = picked(status="in_transit", destination_province=dest)  # tracking_stale: base low
    ctx = ctx_with(settings_with(severity={"remote_region_step": step}))
    assert evaluate("ZTO:1", s, T0 + 49 * H, ctx).findings["tracking_stale"][1] == expected


def test_remote_step_can_lower_severity() -> None:
    s = picked(status="in_transit", destination_province="青海", order_value=800.0)  # transit medium + value = high
    ctx = ctx_with(settings_with(severity={"remote_region_step": -1}), FixedBaseline(10.0))
    assert evaluate("ZTO:1", s, T0 + 12 * H, ctx).findings["transit_overdue"][1] == "medium"


def test_severity_function_directly() -> None:
    f = Finding("transit_overdue", T0, "r", "e", "a", late_hours=48.0)
    assert severity(CTX, "transit_overdue", f, None, False) == "high"
    assert severity(CTX, "transit_overdue", f, 500.0, False) == "critical"
    f.late_hours = 47.999
    assert severity(CTX, "transit_overdue", f, None, True) == "medium"


def test_evidence_formatting_helpers() -> None:
    assert china_time(T0) == "2026-11-02 10:00"
    assert hours(47.9 * H) == "47.9 h"
    assert hours(48 * H) == "2.0 d"
    assert hours(30 * 60) == "0.5 h"


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_china_time_formats_each_minute_once_and_the_same(epoch: float) -> None:
    from datetime import datetime

    from domain.vocabulary import CHINA_TZ

    # The minute's cached text is what formatting the instant itself gives (seconds are not shown).
    expected = datetime.fromtimestamp(math.floor(epoch), tz=CHINA_TZ).strftime("%Y-%m-%d %H:%M")
    assert china_time(epoch) == expected
    assert china_time(epoch) == expected  # from the cache


def test_china_time_cache_is_bounded() -> None:
    from domain import vocabulary

    for minute in range(vocabulary._CHINA_MINUTES_KEPT + 10):
        vocabulary.china_time(T0 + 60.0 * minute)
    assert len(vocabulary._CHINA_MINUTES) <= vocabulary._CHINA_MINUTES_KEPT
    assert vocabulary.china_time(T0) == "2026-11-02 10:00"


# -- evaluate == every rule, texts rendered on demand --------------------------------------------------------

_TIMES = st.one_of(st.none(), st.sampled_from([T0 + k * 6 * H for k in range(-4, 40)]))
_STATES = st.builds(
    ParcelState,
    order_id=st.sampled_from([None, "TB1"]),
    platform=st.sampled_from([None, "taobao", "pinduoduo"]),
    order_value=st.sampled_from([None, 20.0, 5000.0]),
    category=st.sampled_from([None, "fresh", "beauty"]),
    origin_province=st.sampled_from([None, "广东"]),
    destination_province=st.sampled_from([None, "浙江", "新疆"]),
    paid_at=_TIMES,
    promised_ship_at=_TIMES,
    shipped_at=_TIMES,
    confirmed_at=_TIMES,
    autoconfirm_deadline=_TIMES,
    closed_at=st.one_of(st.none(), st.just(T0 + 200 * H)),
    status=st.sampled_from([None, "picked_up", "in_transit", "out_for_delivery", "at_locker", "signed"]),
    info_received_at=_TIMES,
    picked_up_at=_TIMES,
    first_scan_at=_TIMES,
    last_scan_at=_TIMES,
    at_locker_at=_TIMES,
    signed_at=st.one_of(st.none(), st.just(T0 + 100 * H)),
    exception_reason=st.sampled_from([None, "lost", "held", "returned"]),
    exception_at=_TIMES,
    last_province=st.sampled_from([None, "江西"]),
    last_city=st.sampled_from([None, "南昌市"]),
)


def _every_rule(subject: str, state: ParcelState, now: float, ctx: DetectorContext) -> list[Check]:
    """Every rule, as evaluate ran them before it skipped the ones that cannot apply."""
    if subject.startswith("order:"):
        return [ship_overdue(state, now, ctx)]
    carrier = subject.split(":", 1)[0]
    return [
        pickup_overdue(state, now, ctx),
        transit_overdue(state, now, ctx, carrier),
        tracking_stale(state, now, ctx, carrier),
        confirmed_unsigned(state, now, ctx),
        autoconfirm_imminent(state, now, ctx),
        locker_uncollected(state, now, ctx),
        carrier_exception(state, now, ctx),
    ]


def _learned_ctx() -> DetectorContext:
    """Lane 广东 → 浙江 learned from 20 deliveries of 10 to 19 h signed before T0 (a limit under two days):
    the transit deadline then comes from what was learned, not a configured SLA."""
    b = LaneBaselines(S.lanes)
    add_samples(b, "广东", "浙江", [10.0 + i for i in range(10)] * 2)
    return ctx_with(baselines=b)


@hypothesis_settings(max_examples=400, deadline=None)
@given(state=_STATES, now=st.sampled_from([T0 + k * 5 * H for k in range(-2, 50)]), order=st.booleans(),
       learned=st.booleans())
def test_evaluate_equals_every_rule_in_order(state: ParcelState, now: float, order: bool, learned: bool) -> None:
    """The rules evaluate skips (signed, closed, the field a rule needs unknown, or before the earliest
    deadline) find nothing and have nothing pending; the findings come in the rules' order with the same
    texts and severity."""
    ctx = _learned_ctx() if learned else CTX
    subject = "order:TB1" if order else "ZTO:731"
    checks = _every_rule(subject, state, now, ctx)
    ev = evaluate(subject, state, now, ctx)
    remote = state.destination_province in S.lanes.remote_provinces
    expected = [(c.finding, severity(ctx, c.finding.kind, c.finding, state.order_value, remote)) for c in checks if c.finding]
    assert [(f, sev) for f, sev in ev.findings.values()] == expected
    assert list(ev.findings) == [f.kind for f, _ in expected]
    pending = [c.next_at for c in checks if c.next_at is not None]
    assert ev.next_at == (min(pending) if pending else None)


@hypothesis_settings(max_examples=400, deadline=None)
@given(state=_STATES, now=st.sampled_from([T0 + k * 5 * H for k in range(-2, 50)]), learned=st.booleans())
def test_earliest_deadline_is_the_earliest_of_the_rules_deadlines(state: ParcelState, now: float, learned: bool) -> None:
    """evaluate's one-pass earliest deadline equals the rules' own ``*_deadline`` functions, the spec of each
    rule, for every parcel evaluate asks it for (neither signed nor closed)."""
    state.signed_at = state.closed_at = None
    ctx = _learned_ctx() if learned else CTX
    deadlines = [
        pickup_deadline(state, ctx),
        transit_deadline(state, now, ctx, "ZTO"),
        tracking_stale_deadline(state, now, ctx, "ZTO"),
        confirmed_deadline(state, ctx),
        autoconfirm_warning_at(state, ctx),
        locker_deadline(state, ctx),
        exception_deadline(state),
    ]
    known = [d for d in deadlines if d is not None]
    assert earliest_deadline("ZTO:731", state, now, ctx) == (min(known) if known else math.inf)


def test_finding_texts_are_rendered_once_from_the_values_the_rule_read() -> None:
    s = parcel(picked_up_at=T0 + H, first_scan_at=T0 + H, last_scan_at=T0 + 5 * H, status="in_transit",
               last_province="江西", last_city="南昌市")
    check = tracking_stale(s, T0 + 53 * H, CTX, "ZTO")
    assert check.finding is not None
    # The state moves on before anyone reads the texts: they still describe the moment of the rule.
    s.last_city = "九江市"
    s.status = "out_for_delivery"
    f = check.finding
    assert f.reason == "no new scan for 2.0 d while in transit (limit 48 h)"
    assert f.evidence == f"last scan {china_time(T0 + 5 * H)} at 江西 南昌市, status in_transit"
    assert f.texts() is f.texts()  # rendered once
    eager = Finding(f.kind, f.since, f.reason, f.evidence, f.suggested_action, f.late_hours, dict(f.evidence_data))
    assert f == eager
    assert repr(f) == repr(eager)
    assert f != Finding(f.kind, f.since, "another reason", f.evidence, f.suggested_action, f.late_hours, f.evidence_data)


def test_an_eager_finding_keeps_its_texts() -> None:
    f = Finding("transit_overdue", T0, "r", "e", "a")
    assert (f.reason, f.evidence, f.suggested_action, f.evidence_data, f.late_hours, f.exception_reason) == ("r", "e", "a", {}, 0.0, None)
    f.late_hours = 3.0
    assert f.late_hours == 3.0
