"""Learned baselines: each level's normal transit, the credibility blend, time decay and horizon, the refreshes,
the constants (before any delivery, and as a floor while a stream is new), and each source's scan cadence."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from statistics import NormalDist

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import config
from detectors import lanes as lanes_module
from detectors.lanes import LaneBaselines

S = config.load(env={})
H = 3600.0
D = 24 * H
NOW = 1_793_584_800.0  # 2026-11-02T02:00:00Z, 10:00 in China: the day's refresh was at 16:00Z the day before
REFRESH = NOW - 10 * H
Z = NormalDist().inv_cdf(S.lanes.quantile)


def fed(samples: list[tuple[float, float]], carrier: str = "ZTO", origin: str | None = "广东", dest: str | None = "浙江",
        lanes: config.Lanes = S.lanes, history: bool = True) -> LaneBaselines:
    """samples: (signed_at, transit hours). ``history``: one delivery on another lane 60 days back, so the stream is
    not new (see the floor tests)."""
    b = LaneBaselines(lanes)
    if history:
        b.add_delivery("SF", "北京", "天津", NOW - 60 * D - 20 * H, NOW - 60 * D)
    for signed, th in samples:
        b.add_delivery(carrier, origin, dest, signed - th * H, signed)
    return b


def spread(hours: list[float], signed_before: float = 2 * D) -> list[tuple[float, float]]:
    """Deliveries of the given transit hours, signed a minute apart, ending ``signed_before`` NOW."""
    return [(NOW - signed_before - i * 60.0, th) for i, th in enumerate(hours)]


def lane(b: LaneBaselines, now: float = NOW) -> lanes_module.Baseline:
    return b.baseline("ZTO", "广东", "浙江", now)


def seen(b: LaneBaselines, now: float = NOW) -> float:
    """The (decayed) deliveries ZTO 广东→浙江's own level has seen, as of the refresh in force at ``now``."""
    return lane(b, now).levels[0].deliveries


def weight(signed: float, refresh: float = REFRESH) -> float:
    """What a delivery signed at ``signed`` weighs at ``refresh`` (halved every 30 days)."""
    return float(2 ** (-(refresh - signed) / (S.lanes.half_life_days * D)))


def test_a_lane_learns_its_median_and_the_spread_of_its_faster_half() -> None:
    b = fed(spread([48.0 + i for i in range(60)]))  # 48..107 h
    normal = lane(b).normal
    assert normal is not None
    median, p10 = math.exp(normal.mu), math.exp(normal.mu - 1.2816 * normal.sigma)
    assert median == pytest.approx(77.5, rel=0.05) and p10 == pytest.approx(54.0, rel=0.05)
    limit = lane(b).limit_hours
    assert limit == pytest.approx(max(median * math.exp(Z * normal.sigma), median + 24), rel=1e-9)
    samples = spread([0.0] * 60)
    assert lane(b).source == "learned" and seen(b) == pytest.approx(sum(weight(s) for s, _ in samples))
    assert lane(b).answer == (limit, "learned", round(seen(b)))


def test_parcels_held_for_weeks_do_not_stretch_what_normal_means() -> None:
    """A fifth of a lane's deliveries sat in a depot for weeks: its 90th percentile lies among them, its
    normal (and its limit) does not."""
    usual = [200.0 + 2 * i for i in range(80)]  # 8 to 14 days
    clean = lane(fed(spread(usual))).limit_hours
    held = lane(fed(spread(usual + [700.0 + 10 * i for i in range(20)]))).limit_hours  # and 29 to 37 days
    assert clean < held < 1.25 * clean < 700.0


def test_a_lane_delivered_in_daily_rounds_allows_its_median_and_a_day() -> None:
    b = fed(spread([20.0] * 30))  # every parcel the next afternoon: no spread at all
    assert lane(b).limit_hours == pytest.approx(20.0 * math.exp(0.0) + 24.0, rel=0.06)  # (bins are 5 % wide)


def test_recent_deliveries_count_more() -> None:
    old = spread([24.0] * 100, signed_before=90 * D)  # weigh an eighth each after three half-lives
    recent = spread([72.0] * 20)
    normal = lane(fed(old + recent)).normal
    assert normal is not None and math.exp(normal.mu) == pytest.approx(72.0, rel=0.06)
    assert seen(fed(old)) == pytest.approx(sum(weight(s) for s, _ in old)) == pytest.approx(100 / 8, rel=0.05)


def test_deliveries_past_the_horizon_do_not_count() -> None:
    b = fed(spread([100.0] * 30, signed_before=181 * D) + spread([30.0] * 30, signed_before=179 * D))
    normal = lane(b).normal
    assert normal is not None and math.exp(normal.mu) == pytest.approx(30.0, rel=0.06)
    assert lane(b, NOW + 2 * D).normal is None or lane(b, NOW + 2 * D).answer[2] == 0  # all aged out


def test_a_lane_leans_on_the_level_above_in_proportion_to_how_little_it_has_seen() -> None:
    b = fed(spread([100.0] * 200))  # ZTO to 浙江 from 广东 and from 江苏: 100 h
    for signed, th in spread([100.0] * 200):
        b.add_delivery("ZTO", "江苏", "浙江", signed - th * H, signed)
    for signed, th in spread([20.0] * 5, signed_before=3 * D):
        b.add_delivery("ZTO", "福建", "浙江", signed - th * H, signed)
    few = b.baseline("ZTO", "福建", "浙江", NOW)
    share = {s.level: s for s in few.levels}
    k = S.lanes.credibility_samples
    assert share["lane"].deliveries == pytest.approx(5 * weight(NOW - 3 * D), rel=1e-3)
    assert share["lane"].weight == pytest.approx(share["lane"].deliveries / (share["lane"].deliveries + k), rel=1e-9)
    assert sum(s.weight for s in few.levels) == pytest.approx(1.0)
    assert few.normal is not None and 20.0 < math.exp(few.normal.mu) < 100.0  # pulled towards ZTO →浙江's 100 h
    for signed, th in spread([20.0] * 300, signed_before=3 * D):
        b.add_delivery("ZTO", "福建", "浙江", signed - th * H, signed)
    many = b.baseline("ZTO", "福建", "浙江", NOW + D)
    assert many.normal is not None and math.exp(many.normal.mu) == pytest.approx(20.0, rel=0.1)


def test_constants_before_any_delivery() -> None:
    b = LaneBaselines(S.lanes)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (96.0, "default_sla", 0)
    for dest in ("新疆", "西藏", "青海", "内蒙古", "甘肃", "宁夏", "海南"):
        assert b.transit_limit("ZTO", "广东", dest, NOW) == (168.0, "region_sla:remote", 0)
    assert b.baseline("ZTO", "广东", None, NOW).percentile(500.0) is None


def test_a_new_stream_keeps_the_constant_as_a_floor_until_it_has_watched_twice_its_limit() -> None:
    """On its first day a stream has seen only its fastest parcels arrive: their limit would flag most of
    the rest. Until the deliveries span twice the limit they give, the limit is at least the constant."""
    first_day = [(REFRESH - 12 * H + i * 60.0, 10.0 + i % 12) for i in range(200)]  # picked up a day ago at most
    b = fed(first_day, history=False)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW)[:2] == (96.0, "learned+floor")
    # Five days on, the same deliveries have been watched long enough: what they teach stands.
    later = b.transit_limit("ZTO", "广东", "浙江", NOW + 5 * D)
    assert later[1] == "learned" and later[0] < 48.0


def test_only_deliveries_signed_before_the_refresh_in_force_count() -> None:
    """A replay at t answers what a live worker answered at t: between two refreshes nothing moves."""
    b, control = fed(spread([30.0] * 30)), fed(spread([30.0] * 30))
    before = b.transit_limit("ZTO", "广东", "浙江", NOW)
    b.add_delivery("ZTO", "广东", "浙江", NOW - 200 * H, NOW - H)  # signed after this morning's refresh
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == before
    assert b.transit_limit("ZTO", "广东", "浙江", REFRESH + D - 1) == before
    # Counted from the next refresh on.
    assert seen(b, REFRESH + D) - seen(control, REFRESH + D) == pytest.approx(weight(NOW - H, REFRESH + D))
    # Signed exactly at a refresh: not yet in it.
    b2 = fed(spread([30.0] * 30))
    b2.add_delivery("ZTO", "广东", "浙江", REFRESH - 200 * H, REFRESH)
    assert seen(b2) == seen(control)


def test_refreshes_are_daily_at_midnight_china_time() -> None:
    b = LaneBaselines(S.lanes)
    assert b.refreshed_at(NOW) == REFRESH  # 16:00 UTC
    assert b.refreshed_at(REFRESH) == REFRESH and b.refreshed_at(REFRESH - 1) == REFRESH - D
    assert b.next_refresh(NOW) == REFRESH + D
    hourly = LaneBaselines(dataclasses.replace(S.lanes, refresh_minutes=60))
    assert (hourly.refreshed_at(NOW + 59), hourly.next_refresh(NOW)) == (NOW, NOW + H)


def test_a_delivery_reaching_a_worker_late_changes_the_refreshes_after_its_signature() -> None:
    b = fed(spread([30.0] * 30))
    asked, count = b.transit_limit("ZTO", "广东", "浙江", NOW), seen(b)
    b.add_delivery("ZTO", "广东", "浙江", REFRESH - 300 * H, REFRESH - 2 * H)  # signed before this refresh
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) != asked
    assert seen(b) - count == pytest.approx(weight(REFRESH - 2 * H))


def test_order_of_arrival_does_not_matter() -> None:
    samples = spread([20.0 + (7 * i) % 50 for i in range(60)])
    assert fed(samples).transit_limit("ZTO", "广东", "浙江", NOW) == fed(list(reversed(samples))).transit_limit(
        "ZTO", "广东", "浙江", NOW)


def test_percentile_and_severity_steps_follow_the_normal() -> None:
    b = fed(spread([48.0 + i for i in range(60)]))
    base = lane(b)
    assert base.normal is not None
    assert base.percentile(math.exp(base.normal.mu)) == pytest.approx(0.5)
    assert base.percentile(base.limit_hours) == pytest.approx(S.lanes.quantile, abs=0.01)
    steps = [base.hours_at(p) or 0.0 for p in S.lanes.severity_percentiles]
    assert base.limit_hours < steps[0] < steps[1]
    assert base.percentile(steps[0]) == pytest.approx(S.lanes.severity_percentiles[0], abs=0.01)


def test_evidence_names_each_level_with_weight() -> None:
    data = lane(fed(spread([30.0] * 30))).evidence()
    assert (data["quantile"], data["source"], data["refreshed_at"]) == (S.lanes.quantile, "learned", REFRESH)
    levels = [(lv["level"], lv["key"]) for lv in data["levels"]]
    assert levels[:4] == [("lane", "ZTO 广东→浙江"), ("carrier_destination", "ZTO →浙江"), ("origin_destination", "广东→浙江"),
                          ("destination_region", "east")]
    assert sum(lv["weight"] for lv in data["levels"]) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("quantile", [0.8, 0.95])
def test_the_lanes_view_shows_each_level_and_each_lanes_blend_at_the_configured_quantile(quantile: float) -> None:
    b = fed(spread([48.0 + i for i in range(60)]), lanes=dataclasses.replace(S.lanes, quantile=quantile))
    delivered(b, 3, "17track", None)
    view = b.describe(NOW, 48.0)
    assert (view["quantile"], view["refreshed_at"], view["deliveries"]) == (quantile, REFRESH, 64)
    by_key = {(lv["level"], lv["key"]): lv for lv in view["levels"]}
    assert by_key[("lane", "ZTO 广东→浙江")]["median_hours"] == pytest.approx(77.5, rel=0.05)
    assert by_key[("all", "all")]["deliveries"] > by_key[("lane", "ZTO 广东→浙江")]["deliveries"]
    shown = next(entry for entry in view["lanes"] if entry["lane"] == "ZTO 广东→浙江")
    assert shown["limit_hours"] == round(lane(b).limit_hours, 2) and shown["quantile"] == quantile
    assert shown["levels"][0]["level"] == "lane"
    assert view["scan_cadence"] == [{"carrier": "DEPPON", "source": "17track", "deliveries": pytest.approx(2.9, abs=0.1),
                                     "with_transit_scans": 0.0, "legs_hours": None, "stale_limit_hours": 48.0}]


def test_non_positive_transit_is_not_a_sample() -> None:
    b = LaneBaselines(S.lanes)
    b.add_delivery("ZTO", "广东", "浙江", NOW - D, NOW - D)
    b.add_delivery("ZTO", "广东", "浙江", NOW - D, NOW - D - H)
    assert b.deliveries == 0 and b.describe(NOW, 48.0)["levels"] == []


def test_samples_per_level_are_bounded_and_prune_drops_what_no_refresh_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes_module, "MAX_SAMPLES", 30)
    monkeypatch.setattr(lanes_module, "_TRIM_EVERY", 8)
    # 50 before the latest refresh the deliveries reached, then 60 after it: the latest 30 before it are kept
    # (all that refresh learns from), and the latest 30 to 38 after it (all a later refresh learns from).
    b = fed(spread([100.0] * 50, signed_before=3 * D) + spread([10.0] * 60, signed_before=D + H))
    kept = b._levels[("lane", "ZTO", "广东", "浙江")]
    assert list(kept.signatures()) == sorted(kept.signatures())
    turn = b.refreshed_at(NOW - D - H)
    before = [t for t in kept.signatures() if t < turn]
    assert len(before) == 30 and min(before) == NOW - 3 * D - 29 * 60.0  # the oldest went first
    assert 30 <= len(kept.signatures()) - 30 <= 38 and max(kept.signatures()) == NOW - D - H
    old = fed(spread([10.0] * 20, signed_before=300 * D) + spread([10.0] * 20))
    old.prune(NOW)
    assert len(old._levels[("lane", "ZTO", "广东", "浙江")].signatures()) == 20


def test_add_record_reads_the_processors_delivery_and_refuses_a_malformed_one() -> None:
    b = LaneBaselines(S.lanes)
    b.add_record({"carrier": "ZTO", "origin_province": "广东", "destination_province": "浙江", "picked_up_at": NOW - 30 * H,
                  "signed_at": NOW - 2 * D + 30 * H, "shop": "shop-a", "source": "kuaidi100",
                  "first_transit_scan_at": NOW - 28 * H, "last_transit_scan_at": NOW - 20 * H})
    assert b.deliveries == 1
    for bad in ({"carrier": "ZTO"}, {"carrier": "ZTO", "picked_up_at": "x", "signed_at": NOW},
                {"carrier": "ZTO", "picked_up_at": None, "signed_at": NOW}):
        with pytest.raises((KeyError, TypeError, ValueError)):
            b.add_record(bad)
    assert b.deliveries == 1


# -- scan cadence ------------------------------------------------------------------------------------------


def delivered(b: LaneBaselines, n: int, source: str, legs: tuple[float, float] | None, carrier: str = "DEPPON") -> None:
    for i in range(n):
        signed = NOW - 2 * D - i * 600.0
        picked = signed - 200 * H
        scans = {} if legs is None else {"first_transit_scan_at": picked + legs[0] * H, "last_transit_scan_at": signed - legs[1] * H}
        b.add_record({"carrier": carrier, "origin_province": "广东", "destination_province": "浙江", "picked_up_at": picked,
                      "signed_at": signed, "source": source, **scans})


def test_a_source_that_reports_only_pickup_and_signature_is_not_judged_stale() -> None:
    b = LaneBaselines(S.lanes)
    assert b.stale_limit_hours("DEPPON", "17track", 48.0, NOW) == 48.0  # nothing learned: the configured hours
    delivered(b, 5, "17track", None)
    assert b.stale_limit_hours("DEPPON", "17track", 48.0, NOW) == 48.0  # too little to tell yet
    delivered(b, 60, "17track", None)
    assert b.stale_limit_hours("DEPPON", "17track", 48.0, NOW) is None
    # Another source for the same carrier, or another carrier, is judged on its own.
    assert b.stale_limit_hours("DEPPON", "kuaidi100", 48.0, NOW) == 48.0
    assert b.stale_limit_hours("ZTO", "17track", 48.0, NOW) == 48.0


def test_a_carrier_that_scans_is_judged_by_the_configured_hours_or_its_own_longer_legs() -> None:
    b = LaneBaselines(S.lanes)
    delivered(b, 60, "kuaidi100", (5.0, 10.0), carrier="ZTO")
    assert b.stale_limit_hours("ZTO", "kuaidi100", 48.0, NOW) == 48.0
    delivered(b, 60, "aftership", (70.0, 20.0), carrier="EMS")
    assert b.stale_limit_hours("EMS", "aftership", 48.0, NOW) == pytest.approx(70.0, rel=0.1)  # (their 95th percentile)


# -- caches equal the definition ---------------------------------------------------------------------------

_LANE = st.tuples(st.sampled_from(["ZTO", "SF"]), st.sampled_from(["广东", None]), st.sampled_from(["西藏", "浙江"]))
_TIME = st.integers(min_value=-12, max_value=12).map(lambda k: NOW + k * D / 2)
_STEP = st.one_of(
    st.tuples(st.just("deliver"), _LANE, _TIME, st.integers(min_value=-2, max_value=300)),
    st.tuples(st.just("ask"), _LANE, _TIME, st.just(0)),
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(steps=st.lists(_STEP, max_size=80))
def test_answers_kept_between_calls_equal_a_fresh_computation(steps: list[tuple[str, tuple[str, str | None, str], float, int]]) -> None:
    """Whatever deliveries arrive in between (late ones too) and however ``now`` jumps back and forth, the
    answers and distributions kept between calls give what a fresh instance fed the same deliveries gives."""
    lanes = dataclasses.replace(S.lanes, horizon_days=5, refresh_minutes=720)
    b = LaneBaselines(lanes)
    deliveries: list[tuple[str, str | None, str, float, float]] = []
    for action, (carrier, origin, dest), t, transit_hours in steps:
        if action == "deliver":
            b.add_delivery(carrier, origin, dest, t - transit_hours * H, t)
            deliveries.append((carrier, origin, dest, t - transit_hours * H, t))
        else:
            fresh = LaneBaselines(lanes)
            for d in deliveries:
                fresh.add_delivery(*d)
            for now in (t - 1e-4, t, t + 1e-4):
                assert b.transit_limit(carrier, origin, dest, now) == fresh.transit_limit(carrier, origin, dest, now)


_DECAY = math.log(2) / (30 * D)
_PERIOD = 10 * H  # (between refreshes, in the level property tests)


@contextlib.contextmanager
def _small_levels() -> Iterator[None]:
    """Levels that keep 12 samples before their turn and drop 5 at a time, for the property tests."""
    max_samples, trim_every = lanes_module.MAX_SAMPLES, lanes_module._TRIM_EVERY
    lanes_module.MAX_SAMPLES, lanes_module._TRIM_EVERY = 12, 5
    try:
        yield
    finally:
        lanes_module.MAX_SAMPLES, lanes_module._TRIM_EVERY = max_samples, trim_every


def _as_if_fed_only(samples: list[tuple[float, int, float]], refresh: float, horizon: float) -> lanes_module.Normal:
    """What a fresh level fed only the latest 12 of ``samples`` signed before ``refresh`` (within the
    horizon) learns at it: the reference."""
    window = sorted((s for s in samples if refresh - horizon <= s[0] < refresh), key=lambda s: s[0])
    plain = lanes_module._Level(_DECAY, horizon, _PERIOD)
    for sample in window[-12:]:
        plain.add(*sample, turn=-math.inf)
    return plain.at(refresh)


_LEVEL_STEP = st.tuples(st.sampled_from(["add", "add", "add", "add", "ask", "prune"]), st.integers(0, 30),
                        st.integers(0, 339))


@hypothesis_settings(max_examples=300, deadline=None)
@given(steps=st.lists(_LEVEL_STEP, min_size=20, max_size=250))
def test_a_level_learns_at_each_refresh_from_the_latest_deliveries_signed_before_it_however_many_came_after(
    steps: list[tuple[str, int, int]],
) -> None:
    """At its turn (the latest refresh its deliveries have reached) or any refresh after it, a level learns
    what the latest ``MAX_SAMPLES`` deliveries signed before that refresh (within the horizon) give, of all it
    was given (late ones too, minus those pruned): however many were signed after the refresh, and whatever
    it dropped or answered before (a fresh level fed only those deliveries is the reference)."""
    with _small_levels():
        horizon = 20 * H
        level = lanes_module._Level(_DECAY, horizon, _PERIOD)
        given_: list[tuple[float, int, float]] = []  # every sample given, in the order given
        turn = -math.inf
        for action, hour, b in steps:
            t = NOW + hour * H
            if action == "add":
                weight = math.exp((t - lanes_module._REFERENCE) * _DECAY)
                turn = max(turn, NOW + (hour // 10) * _PERIOD)
                level.add(t, b, weight, turn)
                given_.append((t, b, weight))
            elif action == "prune":
                level.prune(t)
                given_ = [sample for sample in given_ if sample[0] >= t]
            else:
                for refresh in {max(turn, NOW), turn + _PERIOD, NOW + 4 * _PERIOD}:
                    assert level.at(refresh) == _as_if_fed_only(given_, refresh, horizon), refresh
            assert len(level.signed) <= 12 + 12 + 5 + 5  # (before the turn, after it, and what waits to be dropped)


_IN_ORDER_STEP = st.tuples(st.sampled_from(["add", "add", "add", "ask"]), st.integers(0, 40), st.integers(0, 339),
                          st.integers(0, 6))


@hypothesis_settings(max_examples=300, deadline=None)
@given(steps=st.lists(_IN_ORDER_STEP, min_size=20, max_size=300))
def test_a_level_fed_in_signature_order_answers_every_recent_refresh_as_if_it_had_kept_every_delivery(
    steps: list[tuple[str, int, int, int]],
) -> None:
    """Deliveries arriving in the order they were signed (as they nearly always do): at the turn, after it,
    and at each of the last ``_KEPT_REFRESHES`` refreshes before it (a walk along an old timeline, a
    partition behind the others), a level learns what the latest ``MAX_SAMPLES`` deliveries signed before
    the refresh give, however many it has dropped since (a fresh level fed only those is the reference)."""
    with _small_levels():
        horizon = 60 * H
        level = lanes_module._Level(_DECAY, horizon, _PERIOD)
        given_: list[tuple[float, int, float]] = []
        t = lanes_module.refresh_in_force(NOW, _PERIOD)
        turn = -math.inf
        for action, minutes, b, back in steps:
            if action == "add":
                t += minutes * 6 * 60.0  # up to four hours later: often several in a period, sometimes none
                weight = math.exp((t - lanes_module._REFERENCE) * _DECAY)
                turn = lanes_module.refresh_in_force(t, _PERIOD)
                level.add(t, b, weight, turn)
                given_.append((t, b, weight))
            elif given_:
                refresh = lanes_module.refresh_at(lanes_module.refresh_index(turn, _PERIOD) - back, _PERIOD)
                assert level.at(refresh) == _as_if_fed_only(given_, refresh, horizon), (back, refresh)


def test_a_busy_lane_walked_back_to_yesterdays_refresh_answers_what_it_learned_not_the_constant() -> None:
    """A partition catching up behind the others (after a restart) judges its parcels at the refresh it is
    still at, after the others' deliveries have moved the turn past it: a level busier than ``MAX_SAMPLES``
    a day has dropped every delivery signed before that refresh, and must still answer what it learned."""
    b = LaneBaselines(S.lanes)
    today = b.refreshed_at(NOW)
    per_day = 8000
    answered: dict[int, tuple[float, str, int]] = {}
    for day in range(5, 0, -1):  # five days of a slow remote lane (150 h), busier than a level keeps
        midnight = today - day * D
        for i in range(per_day):
            signed = midnight + i * D / per_day
            b.add_delivery("ZTO", "广东", "新疆", signed - (140 + (i % 21)) * H, signed)
        answered[day] = b.transit_limit("ZTO", "广东", "新疆", midnight + D - H)  # 23:00, asked that evening
    for i in range(100):  # today's first deliveries: the turn moves to today
        b.add_delivery("ZTO", "广东", "新疆", today + i * 60.0 - 150 * H, today + i * 60.0)
    for day in (1, 2, 3):
        walked = b.transit_limit("ZTO", "广东", "新疆", today - (day - 1) * D - H)
        assert walked[1] == "learned" and walked == answered[day], day
    constant, _ = b.region_sla_hours("新疆")
    assert answered[1][0] > constant  # (what the constant would have raised falsely)


def test_a_busy_lane_answers_from_the_deliveries_before_the_refresh_however_many_came_since() -> None:
    """A lane asked again hours after the refresh (a late delivery invalidated its answer, or a worker
    restarted) answers from the latest deliveries signed before the refresh, not from the constant: the
    deliveries signed since (more than a level learns from) do not push those out."""
    b = LaneBaselines(S.lanes)
    refresh = b.refreshed_at(NOW)
    for i in range(6000):  # before the refresh: 40 h each
        b.add_delivery("ZTO", "广东", "浙江", refresh - 4 * D + i * 50.0 - 40 * H, refresh - 4 * D + i * 50.0)
    asked_at_midnight = b.transit_limit("ZTO", "广东", "浙江", refresh + 60)
    for i in range(6000):  # since: 10 h each, more than MAX_SAMPLES
        signed = refresh + i * 1.5
        b.add_delivery("ZTO", "广东", "浙江", signed - 10 * H, signed)
    b.add_delivery("ZTO", "广东", "浙江", refresh - 60 - 40 * H, refresh - 60)  # late: the answer is taken again
    again = b.transit_limit("ZTO", "广东", "浙江", NOW)
    assert again[1] == "learned" and again[0] == pytest.approx(asked_at_midnight[0], rel=0.01)
    assert again[2] >= lanes_module.MAX_SAMPLES * 0.9  # (decayed)
