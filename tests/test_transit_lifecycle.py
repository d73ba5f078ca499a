"""The transit-overdue lifecycle against a moving lane baseline, and retention of a late shipment.

Each test reproduces one defect seen on a real marketplace's history (issue 26) with synthetic events:
1. a rising baseline closed an open issue, and the re-opening that followed was dropped downstream;
2. ``opened_at`` was back-dated (the current limit applied to the past);
3. a falling baseline did not bring the check forward (raised late, or never before the signature);
4. an order shipped more than the retention period after payment was ignored as "expired".
"""

from __future__ import annotations

from typing import Any

import pytest

from core.processor import Output
from detectors import LaneBaselines
from domain.events import parse_time

from .test_processor import T0, D, H, Rig, brief, iso, oev, shipped


def feed(r: Rig, transit_hours: float, signed_at: float, n: int, origin: str = "广东", dest: str = "浙江") -> None:
    """``n`` deliveries on ZTO ``origin``→``dest`` of ``transit_hours`` each, signed at ``signed_at`` (as the
    deliveries feed hands them to every worker)."""
    baselines = r.p.ctx.baselines
    assert isinstance(baselines, LaneBaselines)
    for i in range(n):
        signed = signed_at + i  # one second apart: distinct samples
        baselines.add_delivery("ZTO", origin, dest, signed - transit_hours * H, signed)


def ticks(r: Rig, start: float, end: float, every: float = 600.0) -> list[dict[str, Any]]:
    """Ticks every ``every`` seconds over [start, end]; the issue events they produced."""
    out: list[dict[str, Any]] = []
    t = start
    while t <= end:
        out += r.tick(t).issues
        t += every
    return out


def transit(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transit_overdue issue events that open or end a period (a severity update does neither)."""
    return [e for e in events if e["kind"] == "transit_overdue" and e["action"] != "update"]


def in_flight(r: Rig, picked_up: float, number: str = "1") -> None:
    """Order TB<number> shipped ZTO:<number> 广东→浙江 an hour before ``picked_up``; scanned every 20 h
    (so tracking never goes stale: only transit can be overdue)."""
    r.order(shipped(picked_up - H, number=number, order_id=f"TB{number}"))
    r.scan("picked_up", picked_up, number=number)


def limit_hours(r: Rig, at: float) -> float:
    """The limit the processor's baselines give ZTO 广东→浙江 at ``at``."""
    return r.p.ctx.baselines.transit_limit("ZTO", "广东", "浙江", at)[0]


def _rising_then_falling(r: Rig) -> tuple[list[dict[str, Any]], float]:
    """A parcel raised on a lane whose deliveries took a day; then a slowdown (deliveries of five days
    raise the lane's limit far above the parcel's age), then the lane fast again. Scanned every 20 h, swept
    every ten minutes. Returns the issue events and when the slowdown's deliveries came in."""
    r.tick(T0 - 10 * D)
    feed(r, 24.0, T0 - 5 * D, 40)  # the lane's normal transit: one day
    in_flight(r, T0)
    raised_by = T0 + limit_hours(r, T0) * H + 2 * H
    log = ticks(r, T0, raised_by)
    slow_from = raised_by + H
    feed(r, 120.0, slow_from, 400)
    for k in range(4):  # four days: the lane's refreshes learn the slowdown
        t = slow_from + k * 20 * H
        log += r.scan("in_transit", t).issues
        log += ticks(r, t, t + 20 * H)
    assert limit_hours(r, slow_from + 80 * H) > 100.0  # the parcel (under 90 h old then) is within it
    fast_from = slow_from + 81 * H
    feed(r, 24.0, fast_from, 4000)
    log += ticks(r, fast_from, fast_from + 50 * H)
    return log, slow_from


def test_a_rising_baseline_never_closes_an_open_transit_issue() -> None:
    r = Rig()
    log, slow_from = _rising_then_falling(r)
    opened = [e for e in transit(log) if e["parcel"] == "ZTO:1"]
    # Raised once; the slowdown (the parcel still unsigned: still late for the buyer and for staff) did not
    # end it, so the lane getting fast again had nothing to reopen. (Its severity may move meanwhile.)
    assert [e["action"] for e in opened] == ["open"]
    assert parse_time(opened[0]["opened_at"], "opened_at") < slow_from
    assert iso(r.state("ZTO:1").open_issues["transit_overdue"][0]) == opened[0]["opened_at"]
    # Only the signature ends it.
    out = r.scan("signed", slow_from + 140 * H)
    assert [(e["action"], e["resolution"]) for e in transit(out.issues)] == [("resolve", "signed")]


def test_a_reopening_never_carries_an_opened_at_at_or_before_the_period_it_follows() -> None:
    """Whatever the baseline does, each open period starts after the previous one ended: the issue queue
    tells a re-opening from a re-delivered event by that (issue_queue/store.py)."""
    r = Rig()
    log, _ = _rising_then_falling(r)
    assert [e["action"] for e in transit(log)].count("open") >= 1
    ended: float | None = None
    for e in transit(log):
        if e["action"] == "open" and ended is not None:
            assert parse_time(e["opened_at"], "opened_at") > ended
        if e["action"] == "resolve":
            ended = parse_time(e["resolved_at"], "resolved_at")


def slow_lane(r: Rig) -> None:
    """ZTO 广东→浙江 took five days for forty parcels, three weeks ago: its limit is five days or more."""
    r.tick(T0 - 25 * D)
    feed(r, 120.0, T0 - 20 * D, 40)
    assert limit_hours(r, T0) >= 120.0


def _falling_baseline(signed_at: float | None = None) -> tuple[Rig, list[dict[str, Any]]]:
    """A parcel picked up at T0 on a slow lane, scanned at T0 + 40 h; at T0 + 50 h four hundred deliveries of
    one day come in: the lane's limit falls far below the parcel's age. Ticks every ten minutes to T0 + 90 h
    (the signature at ``signed_at``, if any)."""
    r = Rig()
    slow_lane(r)
    in_flight(r, T0)
    log = ticks(r, T0, T0 + 40 * H)
    log += r.scan("in_transit", T0 + 40 * H).issues
    log += ticks(r, T0 + 40 * H, T0 + 50 * H)
    feed(r, 24.0, T0 + 50 * H, 400)
    end = T0 + 90 * H
    if signed_at is not None:
        log += ticks(r, T0 + 50 * H + 600, signed_at - 1)
        log += r.scan("signed", signed_at).issues
        log += ticks(r, signed_at + 600, end)
    else:
        log += ticks(r, T0 + 50 * H + 600, end)
    return r, log


# By default the lanes' baselines are refreshed at midnight China time (lanes.refresh_minutes): a limit lowered
# by deliveries signed at T0 + 50 h (noon in China) is in force from the next midnight, T0 + 62 h (16:00 UTC),
# and acted on at the first tick after it.
LEARNED = T0 + 50 * H
REFRESHED = T0 + 62 * H


def test_opened_at_is_when_the_issue_was_raised_and_the_crossed_deadline_is_in_the_evidence() -> None:
    r, log = _falling_baseline()
    opens = [e for e in transit(log) if e["action"] == "open"]
    assert len(opens) == 1
    opened = parse_time(opens[0]["opened_at"], "opened_at")
    # Not back-dated to pickup + the new limit (T0 + 24 h): raised once the lower limit was known.
    assert opened == REFRESHED
    assert opens[0]["at"] == opens[0]["opened_at"]
    data = opens[0]["evidence_data"]
    # The deadline it crossed, under the baseline known then: days before it was raised.
    limit = limit_hours(r, REFRESHED)
    assert data["picked_up_at"] == T0 and data["deadline"] == T0 + limit * H
    assert data["limit_hours"] == pytest.approx(limit)
    assert data["deadline"] < REFRESHED - 6 * H


def test_a_falling_baseline_raises_the_parcels_it_makes_overdue_within_a_tick() -> None:
    r = Rig()
    slow_lane(r)
    in_flight(r, T0)
    ticks(r, T0, T0 + 40 * H)
    r.scan("in_transit", T0 + 40 * H)  # next due: stale tracking at T0 + 88 h, transit after T0 + 120 h
    ticks(r, T0 + 40 * H, T0 + 50 * H)
    feed(r, 24.0, T0 + 50 * H, 400)
    # The first tick after the refresh that learns the lower limit raises it.
    log = ticks(r, LEARNED + 600, REFRESHED + 600)
    assert [e["action"] for e in transit(log)] == ["open"]
    # Not filed for its old deadline any more: nothing left to raise there.
    assert transit(ticks(r, T0 + 90 * H, T0 + 100 * H)) == []


def test_a_parcel_signed_after_the_fall_but_before_its_old_deadline_was_still_raised() -> None:
    _, log = _falling_baseline(signed_at=T0 + 70 * H)
    assert [(e["action"], e.get("resolution")) for e in transit(log)] == [("open", None), ("resolve", "signed")]
    assert parse_time(transit(log)[0]["opened_at"], "opened_at") == REFRESHED


def test_an_order_shipped_long_after_payment_is_watched_with_its_order_facts() -> None:
    """Pre-sales and made-to-order goods ship weeks after payment: the parcel is new, not expired."""
    r = Rig()
    r.tick(T0 - H)
    r.order(oev("paid", T0, order_value=300.0))
    r.tick(T0 + 2 * D)  # ship-overdue on the order subject
    shipped_at = T0 + 35 * D
    out = r.order(shipped(shipped_at), now=shipped_at)
    assert not out.expired and out.gone == []
    out2: Output = r.scan("picked_up", shipped_at + 2 * H)
    assert not out2.expired
    state = r.state("ZTO:1")
    assert (state.order_id, state.shop, state.origin_province, state.destination_province) == ("TB1", "shop-a", "广东", "浙江")
    signed = r.scan("signed", shipped_at + 30 * H)
    assert [(d["origin_province"], d["destination_province"], d["shop"]) for d in signed.deliveries] == [("广东", "浙江", "shop-a")]
    # The order subject's ship-overdue issue ended with the shipment (and was not ignored either).
    assert ("resolve", "ship_overdue") in [(a, k) for a, k, _, _ in brief(r.log)]
    assert iso(shipped_at) in [i["resolved_at"] for i in r.log if i["kind"] == "ship_overdue"]


def test_a_partition_whose_first_filing_came_before_its_first_tick_still_acts_on_refreshes() -> None:
    """A worker may take events of a partition before that partition's first tick: the filing sets the
    sweep's cursor, and the first tick must still start counting the lanes' refreshes."""
    r = Rig()
    slow_lane(r)
    r.index.clear()  # (no tick yet on this partition)
    in_flight(r, T0)
    ticks(r, T0 + H, T0 + 40 * H)
    feed(r, 24.0, T0 + 50 * H, 400)
    log = ticks(r, T0 + 40 * H, REFRESHED + 600)
    assert [(e["action"], e["opened_at"]) for e in transit(log)] == [("open", iso(REFRESHED))]


def test_a_source_that_reports_only_pickup_and_signature_raises_no_stale_tracking_once_learned() -> None:
    """On a freight line's feed every parcel goes days without a scan between pickup and signature: once the
    deliveries (as the processor reports them to the baselines) show that, its parcels are not judged stale;
    a source that does report scans still is."""
    from domain.events import TrackingUpdate

    r = Rig()
    r.tick(T0 - 30 * D)
    baselines = r.p.ctx.baselines
    assert isinstance(baselines, LaneBaselines)

    def scan(number: str, status: str, t: float, source: str) -> None:
        r._keep(r.p.on_tracking(0, TrackingUpdate(f"{number}-{status}", "ZTO", number, status, t, source=source), t))

    for i in range(60):
        number = f"F{i}"
        r.order(shipped(T0 - 20 * D, number=number, order_id=f"TB-F{i}"))
        scan(number, "picked_up", T0 - 20 * D + H, "17track")
        out = r.p.on_tracking(0, TrackingUpdate(f"{number}-s", "ZTO", number, "signed", T0 - 15 * D, source="17track"),
                              T0 - 15 * D)
        for d in out.deliveries:  # (the deliveries topic, as every worker's feed reads it)
            baselines.add_record(d)
    for number, source in (("A", "17track"), ("B", "kuaidi100")):
        r.order(shipped(T0 - H, number=number, order_id=f"TB-{number}"))
        scan(number, "picked_up", T0, source)
    log = ticks(r, T0, T0 + 60 * H, every=H)
    stale = [(e["subject"], e["action"]) for e in log if e["kind"] == "tracking_stale"]
    assert stale == [("ZTO:B", "open")]
