"""Buyer stage notification rules: matching, templates, quiet hours, validation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config import ConfigError
from notifications import load_rules

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
