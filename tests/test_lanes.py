"""Learned lane baselines: nearest-rank quantile over a window before now, and each fallback level."""

from __future__ import annotations

import dataclasses
import math

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
NOW = 1_793_584_800.0  # 2026-11-02T02:00:00Z


def fed(samples: list[tuple[float, float]], carrier: str = "ZTO", origin: str | None = "广东", dest: str | None = "浙江") -> LaneBaselines:
    """samples: (signed_at, transit hours)."""
    b = LaneBaselines(S.lanes)
    for signed, th in samples:
        b.add_delivery(carrier, origin, dest, signed - th * H, signed)
    return b


def spread(n: int, first_hours: float = 1.0, signed_before: float = D) -> list[tuple[float, float]]:
    """n deliveries of 1, 2, ..., n hours (shifted), signed over the day before ``NOW - signed_before``."""
    return [(NOW - signed_before - i * 60.0, first_hours + i) for i in range(n)]


def test_lane_quantile_is_nearest_rank_p90() -> None:
    b = fed(spread(20))  # 1..20 h -> rank ceil(0.9 * 20) = 18
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (18.0, "lane", 20)


def test_quantile_is_an_observed_value() -> None:
    b = fed(spread(25))  # 1..25 h -> rank ceil(22.5) = 23
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (23.0, "lane", 25)


def test_order_of_arrival_does_not_matter() -> None:
    samples = spread(30)
    a = fed(samples)
    b = fed(list(reversed(samples)))
    assert a.transit_limit("ZTO", "广东", "浙江", NOW) == b.transit_limit("ZTO", "广东", "浙江", NOW) == (27.0, "lane", 30)


def test_too_few_lane_samples_fall_back() -> None:
    b = fed(spread(19))
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (96.0, "default_sla", 0)


def test_min_samples_from_config() -> None:
    lanes = dataclasses.replace(S.lanes, min_samples=3)
    b = LaneBaselines(lanes)
    for signed, th in spread(3, first_hours=10.0):
        b.add_delivery("ZTO", "广东", "浙江", signed - th * H, signed)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (12.0, "lane", 3)


def test_no_future_leakage() -> None:
    """Only deliveries signed before now count: a replay at t sees what a live worker saw at t."""
    b = fed(spread(20, signed_before=-H))  # all signed after NOW
    assert b.transit_limit("ZTO", "广东", "浙江", NOW)[1] == "default_sla"
    assert b.transit_limit("ZTO", "广东", "浙江", NOW + 2 * D) == (18.0, "lane", 20)
    # Signed exactly at now: not yet counted.
    b = fed([(NOW, 5.0)] * 20)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW)[1] == "default_sla"
    assert b.transit_limit("ZTO", "广东", "浙江", NOW + 1) == (5.0, "lane", 20)


def test_later_deliveries_leave_an_earlier_quantile_alone() -> None:
    """Asked at a time before some samples were signed (a replay, a sweep walking a timeline): only the
    earlier samples count, whatever came in since."""
    b = fed(spread(20))  # 1..20 h, signed a day before NOW
    for i in range(20):
        b.add_delivery("ZTO", "广东", "浙江", NOW + H + i - 500 * H, NOW + H + i)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (18.0, "lane", 20)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW + 2 * H) == (500.0, "lane", 40)


def test_window_is_thirty_days() -> None:
    old = [(NOW - 31 * D - i, 100.0) for i in range(20)]
    recent = [(NOW - 29 * D - i, 10.0) for i in range(20)]
    b = fed(old + recent)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (10.0, "lane", 20)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW - 2 * D) == (100.0, "lane", 40)
    # Once the recent ones age out too, the lane is cold again.
    assert b.transit_limit("ZTO", "广东", "浙江", NOW + 2 * D)[1] == "default_sla"


def test_carrier_destination_fallback() -> None:
    b = fed(spread(5, first_hours=1.0))  # 广东→浙江: 5 samples
    for signed, th in spread(15, first_hours=30.0):
        b.add_delivery("ZTO", "江苏", "浙江", signed - th * H, signed)
    # The lane has 5, carrier x destination has 20: p90 over 1..5 and 30..44 h = rank 18 = 42 h.
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (42.0, "carrier_destination", 20)
    # Another carrier learns nothing from ZTO.
    assert b.transit_limit("YTO", "广东", "浙江", NOW) == (96.0, "default_sla", 0)


@pytest.mark.parametrize("dest", ["新疆", "西藏", "青海", "内蒙古", "甘肃", "宁夏", "海南"])
def test_remote_region_sla(dest: str) -> None:
    b = LaneBaselines(S.lanes)
    assert b.transit_limit("ZTO", "广东", dest, NOW) == (168.0, "region_sla:remote", 0)
    assert b.region_sla_hours(dest) == (168.0, "region_sla:remote")


@pytest.mark.parametrize("dest", ["浙江", "广东", None])
def test_default_sla(dest: str | None) -> None:
    assert LaneBaselines(S.lanes).transit_limit("ZTO", "广东", dest, NOW) == (96.0, "default_sla", 0)


def test_learned_lane_beats_remote_sla() -> None:
    b = fed(spread(20, first_hours=50.0), dest="新疆")
    assert b.transit_limit("ZTO", "广东", "新疆", NOW) == (67.0, "lane", 20)


def test_non_positive_transit_is_not_a_sample() -> None:
    b = LaneBaselines(S.lanes)
    b.add_delivery("ZTO", "广东", "浙江", NOW, NOW)
    b.add_delivery("ZTO", "广东", "浙江", NOW, NOW - H)
    assert b.deliveries == 0
    assert b.stats(NOW + D) == []


def test_cache_is_invalidated_by_new_samples() -> None:
    b = fed(spread(20))
    assert b.transit_limit("ZTO", "广东", "浙江", NOW)[0] == 18.0
    for i in range(20):
        b.add_delivery("ZTO", "广东", "浙江", NOW - 2 * D - i - 100 * H, NOW - 2 * D - i)
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (100.0, "lane", 40)


def test_prune_drops_samples_outside_the_window() -> None:
    b = fed([(NOW - 40 * D + i, 5.0) for i in range(20)] + spread(20))
    assert len(b._lanes[("ZTO", "广东", "浙江")].signed_at) == 40
    b.prune(NOW)
    assert len(b._lanes[("ZTO", "广东", "浙江")].signed_at) == 20
    assert len(b._carrier_dest[("ZTO", "浙江")].signed_at) == 20
    assert b.transit_limit("ZTO", "广东", "浙江", NOW) == (18.0, "lane", 20)


def test_samples_per_key_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes_module, "MAX_SAMPLES", 30)
    b = fed([(NOW - D - i, 100.0) for i in range(20)] + [(NOW - H - i, 1.0) for i in range(20)])
    kept = b._lanes[("ZTO", "广东", "浙江")]
    assert len(kept.signed_at) == 30
    # The oldest deliveries went first.
    assert min(kept.signed_at) == NOW - D - 9
    assert kept.signed_at == sorted(kept.signed_at)


def test_stats() -> None:
    b = fed(spread(20))
    b.add_delivery("SF", "上海", None, NOW - D - 10 * H, NOW - D)
    stats = b.stats(NOW)
    assert [s.lane for s in stats] == ["SF 上海→?", "ZTO 广东→浙江"]
    sf, zto = stats
    assert (sf.samples, sf.p50_hours, sf.p90_hours, sf.limit_hours, sf.source) == (1, 10.0, 10.0, 96.0, "default_sla")
    assert (zto.samples, zto.p50_hours, zto.p90_hours, zto.limit_hours, zto.source) == (20, 10.0, 18.0, 18.0, "lane")
    # Before any delivery: no percentiles.
    assert b.stats(NOW - 10 * D)[1].p50_hours is None


def _from_scratch(deliveries: list[tuple[str, str | None, str | None, float, float]], lanes: config.Lanes,
                  carrier: str, origin: str | None, dest: str | None, now: float) -> tuple[float, str, int]:
    """What ``transit_limit`` must answer, straight from its definition with nothing kept between calls:
    the quantile of the lane's samples signed in [now - window, now), else carrier x destination's, else
    the region's SLA."""
    since = now - lanes.window_days * D
    for source, wanted in (("lane", lambda o, d: (o, d) == (origin, dest)), ("carrier_destination", lambda o, d: d == dest)):
        values = sorted(signed - picked for c, o, d, picked, signed in deliveries
                        if c == carrier and wanted(o, d) and since <= signed < now and signed > picked)
        if len(values) >= lanes.min_samples:
            return values[max(1, math.ceil(lanes.quantile * len(values))) - 1] / H, source, len(values)
    if dest in lanes.remote_provinces:
        return lanes.region_sla_hours["remote"], "region_sla:remote", 0
    return lanes.default_sla_hours, "default_sla", 0


# A few lanes sharing carrier and destination (so one lane's delivery changes another's fallback), times
# on a coarse grid (so queries land exactly on sample times and on window edges).
_LANE = st.tuples(st.sampled_from(["ZTO", "SF"]), st.sampled_from(["广东", None]), st.sampled_from(["西藏", None]))
_TIME = st.integers(min_value=-12, max_value=12).map(lambda k: NOW + k * D)
_STEP = st.one_of(
    st.tuples(st.just("deliver"), _LANE, _TIME, st.integers(min_value=-2, max_value=60)),
    st.tuples(st.just("ask"), _LANE, _TIME, st.just(0)),
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(steps=st.lists(_STEP, max_size=120), min_samples=st.integers(min_value=1, max_value=4))
def test_kept_windows_and_answers_equal_the_definition(
    steps: list[tuple[str, tuple[str, str | None, str | None], float, int]], min_samples: int
) -> None:
    """Whatever deliveries arrive in between and however ``now`` jumps back and forth (onto sample times
    and window edges too), the windows and answers kept between calls give what the definition gives."""
    # A window of 5 days over 25 days: queries whose window starts or ends on a sample time too.
    lanes = dataclasses.replace(S.lanes, min_samples=min_samples, window_days=5)
    b = LaneBaselines(lanes)
    deliveries: list[tuple[str, str | None, str | None, float, float]] = []
    for action, (carrier, origin, dest), t, transit_hours in steps:
        if action == "deliver":
            b.add_delivery(carrier, origin, dest, t - transit_hours * H, t)
            deliveries.append((carrier, origin, dest, t - transit_hours * H, t))
        else:
            for now in (t - 1e-4, t, t + 1e-4, t):
                assert b.transit_limit(carrier, origin, dest, now) == _from_scratch(deliveries, lanes, carrier, origin, dest, now)
