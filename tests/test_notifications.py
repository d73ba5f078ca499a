"""Buyer stage notification rules: matching, templates, quiet hours, validation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config import ConfigError
from core.notifications import load_rules

CN = timezone(timedelta(hours=8))


def at(hour: int, minute: int = 0, day: int = 3) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=CN).timestamp()


FACTS = {"order_id": "TB1", "shop": "shop-a", "platform": "taobao", "order_value": 129.0, "city": "杭州市",
         "province": "浙江"}


def test_default_rules_load_and_pickup_message_uses_carrier_name() -> None:
    rules = load_rules()
    n = rules.build("ZTO:7310001", "picked_up", at(10), FACTS)
    assert n is not None
    assert n["text"] == "您购买的商品已由中通快递揽收，运单号 7310001，我们会持续跟踪物流。"
    assert n["send_at"] == at(10) and n["deferred"] is False
    assert n["notification_id"] == rules.build("ZTO:7310001", "picked_up", at(11), FACTS)["notification_id"]  # type: ignore[index]


def test_value_threshold_is_respected() -> None:
    rules = load_rules()
    assert rules.build("ZTO:1", "arrived_city", at(10), FACTS) is None  # 129 < 500
    n = rules.build("ZTO:1", "arrived_city", at(10), {**FACTS, "order_value": 500.0})
    assert n is not None and "杭州市" in n["text"]


@pytest.mark.parametrize(("hour", "minute", "day", "expected"), [
    (20, 59, 3, (20, 59, 3)),  # just before quiet hours: at once
    (21, 0, 3, (8, 0, 4)),     # at the start: next morning
    (23, 30, 3, (8, 0, 4)),
    (2, 0, 4, (8, 0, 4)),      # after midnight: same morning
    (8, 0, 4, (8, 0, 4)),      # at the end: at once
])
def test_quiet_hours_defer_to_their_end(hour: int, minute: int, day: int, expected: tuple[int, int, int]) -> None:
    n = load_rules().build("ZTO:1", "exception", at(hour, minute, day), {**FACTS, "exception_reason": "damaged"})
    assert n is not None and "破损" in n["text"]
    assert n["send_at"] == at(*expected)
    assert n["deferred"] is (n["send_at"] > at(hour, minute, day))


def test_filters_by_platform_shop_and_carrier(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    path.write_text("""
quiet_hours: {start: "00:00", end: "00:00"}
rules:
  - name: jd-only
    stage: picked_up
    when: {platforms: [jd], shops: [shop-a], carriers: [SF]}
    template: "{carrier} {tracking_number}"
""", encoding="utf-8")
    rules = load_rules(path)
    assert rules.build("SF:1", "picked_up", at(22), {**FACTS, "platform": "jd"}) is not None
    assert rules.build("SF:1", "picked_up", at(22), FACTS) is None  # taobao
    assert rules.build("ZTO:1", "picked_up", at(22), {**FACTS, "platform": "jd"}) is None
    assert rules.build("SF:1", "picked_up", at(22), {**FACTS, "platform": "jd"})["send_at"] == at(22)  # type: ignore[index]


@pytest.mark.parametrize(("body", "key"), [
    ("rules: [{stage: flying, template: x}]", "notifications.rules[0].stage"),
    ("rules: [{stage: picked_up, template: '{phone}'}]", "notifications.rules[0].template"),
    ("rules: [{stage: picked_up, template: x, when: {platforms: [amazon]}}]", "notifications.rules[0].when.platforms"),
    ("quiet_hours: {start: '25', end: '08:00'}", "notifications.quiet_hours.start"),
    ("max_age_hours: -1", "notifications.max_age_hours"),
    ("colour: red", "notifications.colour"),
])
def test_bad_rules_name_the_key(tmp_path: Path, body: str, key: str) -> None:
    path = tmp_path / "n.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    assert err.value.key == key


# -- through the processor (the same code the live worker and replay run) ------------------------------

import itertools  # noqa: E402

import config  # noqa: E402
from core.replay import Engine  # noqa: E402
from domain.events import TrackingUpdate  # noqa: E402
from domain.state import OrderFacts  # noqa: E402


def engine_with_order(value: float = 129.0) -> Engine:
    eng = Engine(config.load(env={}))
    facts = OrderFacts(order_id="TB1", shop="shop-a", platform="taobao", shipped_at=at(9), order_value=value,
                       origin_province="广东", destination_province="浙江", destination_city="杭州市",
                       parcels=["ZTO:7310001"])
    eng._collect(eng.processor.on_order_facts(0, "ZTO:7310001", facts, at(9), at(9)))
    return eng


def scan_at(status: str, t: float, **kw: str) -> TrackingUpdate:
    return TrackingUpdate(f"e-{status}-{t}", "ZTO", "7310001", status, t, **kw)  # type: ignore[arg-type]


def feed(eng: Engine, updates: list[TrackingUpdate], clock: float) -> None:
    for u in updates:
        eng.tick(u.event_time)
        eng.tracking(u, u.event_time)
    eng.tick(clock)


def test_each_stage_notifies_once_despite_duplicates() -> None:
    eng = engine_with_order()
    pickup = scan_at("picked_up", at(10))
    feed(eng, [pickup, pickup, scan_at("in_transit", at(12)), pickup], at(13))
    stages = [n["stage"] for n in eng.result.notifications]
    assert stages == ["picked_up"]
    assert eng.result.notifications[0]["send_at"] == at(10)


def test_quiet_hours_defer_until_the_sweep_reaches_their_end() -> None:
    eng = engine_with_order()
    feed(eng, [scan_at("picked_up", at(23))], at(23, 30))
    assert eng.result.notifications == []  # deferred, not yet sent
    eng.tick(at(7, 59, day=4))
    assert eng.result.notifications == []
    eng.tick(at(8, 0, day=4))
    assert [(n["stage"], n["send_at"], n["deferred"]) for n in eng.result.notifications] == [
        ("picked_up", at(8, 0, day=4), True)]


def test_value_threshold_for_arrived_city() -> None:
    cheap, dear = engine_with_order(129.0), engine_with_order(800.0)
    for eng in (cheap, dear):
        feed(eng, [scan_at("picked_up", at(10)), scan_at("arrived_city", at(15), city="杭州市")], at(16))
    assert [n["stage"] for n in cheap.result.notifications] == ["picked_up"]
    assert [n["stage"] for n in dear.result.notifications] == ["picked_up", "arrived_city"]


def test_a_deferred_message_is_dropped_when_the_parcel_is_signed_first() -> None:
    eng = engine_with_order()
    feed(eng, [scan_at("picked_up", at(10)), scan_at("exception", at(22), exception_reason="held")], at(22, 30))
    feed(eng, [scan_at("signed", at(7, day=4))], at(9, day=4))
    assert [n["stage"] for n in eng.result.notifications] == ["picked_up"]


def test_reordered_events_give_the_same_notifications() -> None:
    updates = [scan_at("picked_up", at(10)), scan_at("in_transit", at(14)),
               scan_at("exception", at(16), exception_reason="damaged")]
    results = set()
    for perm in itertools.permutations(updates):
        eng = engine_with_order()
        for u in perm:
            eng.tracking(u, at(17))
        eng.tick(at(17))
        # Each stage once with the same text; when it went out may differ (a stage is notified when it
        # is first seen, and a late earlier scan does not send it again).
        results.add(tuple(sorted((n["stage"], n["text"]) for n in eng.result.notifications)))
    assert len(results) == 1
    assert [s for s, _ in next(iter(results))] == ["exception", "picked_up"]
