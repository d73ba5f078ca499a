"""Per-subject state: forward-only status, min/max milestone merges, encoding, order-fact merges."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import fields

import orjson
import pytest

from domain.events import OrderEvent, TrackingUpdate
from domain.state import _FIELD_NAMES, OrderFacts, ParcelState, order_subject

T0 = 1_793_584_800.0  # 2026-11-02T02:00:00Z
H = 3600.0


def scan(status: str, t: float, reason: str | None = None, province: str | None = None, city: str | None = None) -> TrackingUpdate:
    return TrackingUpdate(f"e-{status}-{t}", "ZTO", "731", status, t, exception_reason=reason, province=province, city=city)


def order_ev(kind: str, t: float, **kw: object) -> OrderEvent:
    return OrderEvent(f"o-{kind}-{t}", "TB1", "shop-a", "taobao", kind, t, **kw)  # type: ignore[arg-type]


def applied(*updates: TrackingUpdate) -> ParcelState:
    s = ParcelState()
    for up in updates:
        s.apply_tracking(up)
    return s


# -- tracking merges ------------------------------------------------------------------------------------


def test_status_only_moves_forward() -> None:
    s = applied(scan("picked_up", T0), scan("signed", T0 + 50 * H), scan("in_transit", T0 + 60 * H))
    assert (s.status, s.status_at) == ("signed", T0 + 50 * H)
    assert s.is_signed
    assert s.signed_at == T0 + 50 * H
    # The late scan still counts as the latest carrier scan.
    assert s.last_scan_at == T0 + 60 * H


def test_late_in_transit_never_downgrades_signed_in_any_order() -> None:
    ups = [scan("picked_up", T0), scan("in_transit", T0 + 5 * H), scan("signed", T0 + 30 * H), scan("in_transit", T0 + 40 * H)]
    results = {(s.status, s.status_at, s.signed_at, s.picked_up_at) for s in (applied(*p) for p in itertools.permutations(ups))}
    assert results == {("signed", T0 + 30 * H, T0 + 30 * H, T0)}


def test_same_status_keeps_its_earliest_time() -> None:
    s = applied(scan("out_for_delivery", T0 + 9 * H), scan("out_for_delivery", T0 + 3 * H))
    assert (s.status, s.status_at, s.out_for_delivery_at) == ("out_for_delivery", T0 + 3 * H, T0 + 3 * H)


def test_milestones_take_min_and_last_scan_max() -> None:
    s = applied(
        scan("in_transit", T0 + 10 * H),
        scan("arrived_city", T0 + 20 * H),
        scan("picked_up", T0 + 2 * H),
        scan("arrived_city", T0 + 18 * H),
        scan("at_locker", T0 + 30 * H),
        scan("at_locker", T0 + 29 * H),
        scan("picked_up", T0 + 1 * H),
        scan("in_transit", T0 + 12 * H),
    )
    assert s.picked_up_at == T0 + 1 * H
    assert s.arrived_city_at == T0 + 18 * H
    assert s.at_locker_at == T0 + 29 * H
    assert s.first_scan_at == T0 + 1 * H
    assert s.last_scan_at == T0 + 30 * H
    assert s.status == "at_locker"
    assert s.pickup_at == T0 + 1 * H
    assert not s.is_signed


def test_info_received_is_not_a_carrier_scan() -> None:
    s = applied(scan("info_received", T0 + 2 * H), scan("info_received", T0))
    assert s.info_received_at == T0
    assert (s.status, s.first_scan_at, s.last_scan_at, s.pickup_at) == (None, None, None, None)


def test_pickup_falls_back_to_first_later_scan() -> None:
    s = applied(scan("arrived_city", T0 + 20 * H), scan("in_transit", T0 + 8 * H))
    assert s.picked_up_at is None
    assert s.pickup_at == T0 + 8 * H


def test_exception_is_tracked_on_its_own_and_latest_wins() -> None:
    s = applied(scan("out_for_delivery", T0), scan("exception", T0 + 5 * H, "refused"), scan("exception", T0 + 2 * H, "held"))
    assert (s.status, s.exception_at, s.exception_reason) == ("out_for_delivery", T0 + 5 * H, "refused")
    assert s.last_scan_at == T0 + 5 * H  # an exception scan shows the carrier has the parcel
    assert s.first_scan_at == T0


def test_exception_tie_is_broken_by_reason_whatever_the_order() -> None:
    a, b = scan("exception", T0, "held"), scan("exception", T0, "refused")
    assert applied(a, b).exception_reason == applied(b, a).exception_reason == "refused"


def test_last_place_comes_from_the_latest_scan() -> None:
    s = applied(
        scan("in_transit", T0 + 5 * H, province="浙江", city="杭州市"),
        scan("in_transit", T0 + 2 * H, province="广东", city="广州市"),
        scan("in_transit", T0 + 6 * H),  # no place: keeps the last known one
    )
    assert (s.last_province, s.last_city) == ("浙江", "杭州市")


# -- order facts ----------------------------------------------------------------------------------------


def test_order_facts_apply_merges() -> None:
    f = OrderFacts("TB1", "shop-a", "taobao")
    f.apply(order_ev("paid", T0 + H, order_value=99.0, promised_ship_time=T0 + 24 * H, destination_province="浙江"))
    f.apply(order_ev("paid", T0))  # an earlier duplicate
    f.apply(order_ev("shipped", T0 + 5 * H, carrier="ZTO", tracking_number="B2", origin_province="广东", category="fresh"))
    f.apply(order_ev("shipped", T0 + 4 * H, carrier="ZTO", tracking_number="A1"))
    f.apply(order_ev("shipped", T0 + 6 * H, carrier="ZTO", tracking_number="A1"))
    f.apply(order_ev("confirmed", T0 + 90 * H))
    f.apply(order_ev("confirmed", T0 + 80 * H))
    assert f.paid_at == T0
    assert f.shipped_at == T0 + 4 * H
    assert f.parcels == ["ZTO:A1", "ZTO:B2"]
    assert f.confirmed_at == T0 + 80 * H
    assert (f.order_value, f.promised_ship_at, f.category) == (99.0, T0 + 24 * H, "fresh")
    assert (f.origin_province, f.destination_province) == ("广东", "浙江")
    assert OrderFacts.from_json(f.to_json()) == f


def test_earliest_close_wins_with_its_kind() -> None:
    for evs in itertools.permutations([order_ev("closed", T0 + 9 * H), order_ev("refunded", T0 + 3 * H), order_ev("closed", T0 + 5 * H)]):
        f = OrderFacts("TB1", "shop-a", "taobao")
        for ev in evs:
            f.apply(ev)
        assert (f.closed_at, f.closed_kind) == (T0 + 3 * H, "refunded")


def test_receipt_extended_latest_event_wins_regardless_of_arrival_order() -> None:
    shipped = order_ev("shipped", T0, carrier="ZTO", tracking_number="1", auto_confirm_deadline=T0 + 10 * 24 * H)
    ext1 = order_ev("receipt_extended", T0 + 8 * 24 * H, auto_confirm_deadline=T0 + 13 * 24 * H)
    ext2 = order_ev("receipt_extended", T0 + 12 * 24 * H, auto_confirm_deadline=T0 + 20 * 24 * H)
    for evs in itertools.permutations([shipped, ext1, ext2]):
        f = OrderFacts("TB1", "shop-a", "taobao")
        for ev in evs:
            f.apply(ev)
        assert (f.autoconfirm_deadline, f.autoconfirm_set_at) == (T0 + 20 * 24 * H, T0 + 12 * 24 * H), evs


def test_receipt_extension_can_move_a_deadline_earlier_if_it_is_the_latest_event() -> None:
    """Latest event wins, not largest deadline: the platform's latest word is the deadline."""
    f = OrderFacts("TB1", "shop-a", "taobao")
    f.apply(order_ev("receipt_extended", T0 + 2 * H, auto_confirm_deadline=T0 + 100 * H))
    f.apply(order_ev("receipt_extended", T0 + 1 * H, auto_confirm_deadline=T0 + 300 * H))
    assert f.autoconfirm_deadline == T0 + 100 * H


def test_parcel_state_takes_order_snapshot() -> None:
    f = OrderFacts(
        "TB1",
        "shop-a",
        "douyin",
        paid_at=T0,
        shipped_at=T0 + H,
        autoconfirm_deadline=T0 + 100 * H,
        autoconfirm_set_at=T0 + H,
        order_value=600.0,
        destination_province="新疆",
        category="fresh",
    )
    s = ParcelState()
    s.apply_order(f)
    assert (s.order_id, s.shop, s.platform, s.order_value, s.category) == ("TB1", "shop-a", "douyin", 600.0, "fresh")
    assert (s.paid_at, s.shipped_at, s.autoconfirm_deadline, s.destination_province) == (T0, T0 + H, T0 + 100 * H, "新疆")
    # An older snapshot's deadline (set by an earlier event) does not replace a newer one.
    older = OrderFacts("TB1", "shop-a", "douyin", autoconfirm_deadline=T0 + 50 * H, autoconfirm_set_at=T0)
    s.apply_order(older)
    assert s.autoconfirm_deadline == T0 + 100 * H


def test_order_snapshots_commute() -> None:
    """Snapshots are re-delivered at least once: an older one arriving last must not erase what is known."""
    early = OrderFacts("TB1", "shop-a", "taobao", paid_at=T0)
    late = OrderFacts(
        "TB1",
        "shop-a",
        "taobao",
        paid_at=T0,
        promised_ship_at=T0 + 24 * H,
        shipped_at=T0 + 2 * H,
        order_value=800.0,
        category="furniture",
        origin_province="广东",
        destination_province="西藏",
        destination_city="拉萨市",
        closed_at=T0 + 9 * H,
        closed_kind="refunded",
    )
    a, b = ParcelState(), ParcelState()
    for f in (early, late):
        a.apply_order(f)
    for f in (late, early, late, early):
        b.apply_order(f)
    assert a == b
    assert (b.order_value, b.category, b.promised_ship_at, b.closed_kind) == (800.0, "furniture", T0 + 24 * H, "refunded")


def test_order_subject_key() -> None:
    assert order_subject("TB1") == "order:TB1"


# -- encoding -------------------------------------------------------------------------------------------


def full_state() -> ParcelState:
    s = applied(scan("picked_up", T0, province="广东"), scan("exception", T0 + 3 * H, "held", city="杭州市"))
    s.apply_order(OrderFacts("TB1", "shop-a", "taobao", paid_at=T0 - H, shipped_at=T0 - 0.5, order_value=12.34))
    s.open_issues = {"carrier_exception": [T0 + 3 * H, "high", "ctx", T0 + 3 * H]}
    s.next_check_at = T0 + 51.25 * H
    s.indexed_bucket = 29_893_080
    s.index_epoch = 1_234_567
    s.delivery_reported = True
    return s


def test_encode_decode_round_trip() -> None:
    s = full_state()
    raw = s.encode()
    assert isinstance(raw, bytes)
    assert ParcelState.decode(raw) == s
    assert ParcelState.decode(ParcelState().encode()) == ParcelState()


def test_encoding_is_positional() -> None:
    values = orjson.loads(full_state().encode())
    assert isinstance(values, list)
    assert len(values) == len(fields(ParcelState))
    assert values[_FIELD_NAMES.index("exception_reason")] == "held"


@pytest.mark.parametrize("keep", [0, 5, len(_FIELD_NAMES) - 4, len(_FIELD_NAMES) - 1])
def test_decode_of_shorter_older_encoding_keeps_defaults(keep: int) -> None:
    s = full_state()
    values = orjson.loads(s.encode())[:keep]
    decoded = ParcelState.decode(orjson.dumps(values))
    for i, name in enumerate(_FIELD_NAMES):
        expected = getattr(s, name) if i < keep else getattr(ParcelState(), name)
        assert getattr(decoded, name) == expected, name
    # Defaults from a factory are fresh objects, never shared between decoded states.
    if keep <= _FIELD_NAMES.index("open_issues"):
        other = ParcelState.decode(orjson.dumps(values))
        decoded.open_issues["x"] = [1]
        assert other.open_issues == {}


def test_decode_of_longer_newer_encoding_ignores_extra_values() -> None:
    s = full_state()
    values = [*orjson.loads(s.encode()), "from-a-newer-version"]
    assert ParcelState.decode(orjson.dumps(values)) == s


# -- order facts encoding ----------------------------------------------------------------------------------


def _facts() -> OrderFacts:
    return OrderFacts(
        "TB1", "shop-a", "taobao", paid_at=T0, shipped_at=T0 + H, order_value=99.5, category="beauty",
        origin_province="广东", destination_province="浙江", destination_city="杭州市", parcels=["ZTO:731"],
    )


def test_order_facts_json_is_an_object_of_every_field_in_order() -> None:
    facts = _facts()
    doc = orjson.loads(facts.to_json())
    assert list(doc) == [f.name for f in fields(OrderFacts)]
    assert doc["destination_city"] == "杭州市"
    assert OrderFacts.from_json(facts.to_json()) == facts


def test_order_facts_from_reordered_or_shorter_json() -> None:
    """Records written by another version (fields reordered, fields missing) still decode by name."""
    facts = _facts()
    doc = orjson.loads(facts.to_json())
    reordered = dict(reversed(list(doc.items())))
    assert OrderFacts.from_json(orjson.dumps(reordered)) == facts
    shorter = {k: v for k, v in doc.items() if k not in ("destination_city", "parcels")}
    assert OrderFacts.from_json(orjson.dumps(shorter)) == dataclasses.replace(facts, destination_city=None, parcels=[])
    with pytest.raises(TypeError):
        OrderFacts.from_dict({**doc, "from_a_newer_version": 1})

