"""Issue 27, row by row: real tracking payloads as third parties publish them, through the adapters and, where
the row is about issues, through the same pipeline as the live worker (``core.replay``). The HTTP side of the
rows (answers, dead letters, authentication, no 500) is in ``test_ingest_endpoints.py``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import config
from core.replay import replay
from ingest import BadSignature, PushError, aftership, kuaidi100, seventeentrack

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
CN = timezone(timedelta(hours=8))


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def shipped(carrier: str, number: str, at: datetime, order_id: str) -> bytes:
    return json.dumps({"event_id": f"{order_id}-shipped", "order_id": order_id, "shop": "shop-a", "platform": "taobao",
                       "kind": "shipped", "event_time": at.isoformat(), "carrier": carrier, "tracking_number": number,
                       "origin_province": "广东", "destination_province": "浙江"}).encode()


def kinds_opened(lines: list[bytes], until: datetime) -> set[str]:
    result = replay(config.load(env={}), lines, until=until.timestamp())
    return {issue["kind"] for issue in result.issues.values()}


def test_row_kuaidi100_basic_mode_each_scan_keeps_its_status_and_a_station_parcel_is_locker_uncollected() -> None:
    parsed = kuaidi100.parse(json.dumps(fixture("kuaidi100_basic_yto.json"), ensure_ascii=False))
    assert [u.status for u in parsed.updates] == [
        "picked_up", "in_transit", "in_transit", "in_transit", "out_for_delivery", "at_locker"]
    lines = [shipped("YTO", "YT7512345678901", datetime(2026, 11, 2, 12, tzinfo=CN), "TB-ROW1")]
    lines += [u.to_json() for u in parsed.updates]
    # 50 hours after the parcel went into the station: the station rule, not "no new scan".
    kinds = kinds_opened(lines, datetime(2026, 11, 4, 13, 5, tzinfo=CN) + timedelta(hours=50))
    assert "locker_uncollected" in kinds and "tracking_stale" not in kinds


def test_row_the_same_scans_pushed_again_with_state_0_then_2_then_14_are_three_events() -> None:
    doc = fixture("kuaidi100_basic_yto.json")
    doc["lastResult"]["data"] = [{**doc["lastResult"]["data"][2], "status": ""}]  # one scan, no status name
    updates = []
    for state in ("0", "2", "14"):
        doc["lastResult"]["state"] = state
        (update,) = kuaidi100.parse(json.dumps(doc, ensure_ascii=False)).updates
        updates.append(update)
    assert [(u.status, u.exception_reason, u.raw_code) for u in updates] == [
        ("in_transit", None, "0"), ("exception", "problem_parcel", "2"), ("exception", "refused", "14")]
    assert len({u.event_id for u in updates}) == 3


@pytest.mark.parametrize(("com", "carrier"), [
    ("fedex", "FEDEX"), ("usps", "USPS"), ("jtexpress", "JTEXPRESS"), ("jitu", "JTEXPRESS"),
    ("zhongtongkuaiyun", "kuaidi100:zhongtongkuaiyun"), ("fengwang", "kuaidi100:fengwang"),
])
def test_row_kuaidi100_carriers_nobody_listed_are_kept_never_rejected(com: str, carrier: str) -> None:
    doc = fixture("kuaidi100_basic_yto.json")
    doc["lastResult"]["com"] = com
    parsed = kuaidi100.parse(json.dumps(doc, ensure_ascii=False))
    assert {u.carrier for u in parsed.updates} == {carrier} and len(parsed.updates) == 6


def test_row_kdniao_push_htky_and_zto_with_station_211_and_signed_301() -> None:
    from ingest import kdniao

    parsed = kdniao.parse((FIXTURES / "kdniao_push.json").read_text(encoding="utf-8"), received_at=0.0)
    last = {u.parcel_key: (u.status, u.raw_code) for u in parsed.updates}  # sorted by time: the newest wins
    assert last == {"BESTEXP:557012345678": ("at_locker", "211"), "ZTO:73100098765432": ("signed", "301")}


@pytest.mark.parametrize(("name", "carrier", "scans"), [
    ("aftership_fedex.json", "FEDEX", 11), ("aftership_ups.json", "UPS", 4), ("aftership_usps.json", "USPS", 3)])
def test_row_every_real_aftership_slug_is_taken(name: str, carrier: str, scans: int) -> None:
    parsed = aftership.parse((FIXTURES / name).read_bytes())
    assert {u.carrier for u in parsed.updates} == {carrier} and len(parsed.updates) == scans


def test_row_an_aftership_checkpoint_without_offset_is_local_time_and_costs_nothing_else() -> None:
    parsed = aftership.parse((FIXTURES / "aftership_fedex.json").read_bytes())
    assert len(parsed.updates) == 11
    memphis = next(u for u in parsed.updates if u.city == "MEMPHIS" and u.raw_code == "InTransit_005")
    assert memphis.event_time == datetime(2026, 11, 4, 2, 30, tzinfo=timezone(timedelta(hours=-6))).timestamp()


@pytest.mark.parametrize(("name", "status", "reason"), [
    ("aftership_expired.json", "info_received", None), ("aftership_exception.json", "exception", "lost")])
def test_row_an_aftership_tag_without_checkpoints_still_gives_a_status(name: str, status: str, reason: str | None) -> None:
    (update,) = aftership.parse((FIXTURES / name).read_bytes()).updates
    assert (update.status, update.exception_reason) == (status, reason)


def test_row_17track_documented_example_carrier_3011_is_china_post_and_every_stage_counts() -> None:
    parsed = seventeentrack.parse((FIXTURES / "17track_v2_2.json").read_bytes())
    assert {u.carrier for u in parsed.updates} == {"YZPY"}
    assert [(u.status, u.exception_reason) for u in parsed.updates] == [
        ("info_received", None), ("picked_up", None), ("in_transit", None), ("in_transit", None),
        ("exception", "returned"), ("exception", "returned")]
    assert [u.raw_code for u in parsed.updates][2:4] == ["Departure", "Arrival"] and not parsed.unknown_codes


def test_row_a_17track_v1_push_gets_a_clear_error_not_silence() -> None:
    with pytest.raises(PushError) as err:
        seventeentrack.parse((FIXTURES / "17track_v1.json").read_bytes())
    assert "v1" in err.value.problem and "v2.2" in err.value.problem


def test_row_non_ascii_signatures_and_events_that_are_not_objects_are_named_not_crashes() -> None:
    body = (FIXTURES / "aftership_ups.json").read_bytes()
    with pytest.raises(BadSignature):
        aftership.verify(body, "签名", "secret")
    with pytest.raises(BadSignature):
        seventeentrack.verify(body, "签名", "secret")
    with pytest.raises(BadSignature):
        kuaidi100.verify("{}", "签名", "salt")
    assert base64.b64encode(hmac.new(b"secret", body, hashlib.sha256).digest())  # the real one is ASCII
    doc = fixture("17track_v2_2.json")
    doc["data"]["track_info"]["tracking"]["providers"][0]["events"] += ["a string", 7]
    parsed = seventeentrack.parse(json.dumps(doc).encode())
    assert len(parsed.updates) == 6


def test_row_kuaidi100_timers_never_duplicate_parcelwatchs_own_issues() -> None:
    doc = fixture("kuaidi100_advanced_zto.json")
    doc["lastResult"]["state"] = "202"
    newest = {"context": "【乌鲁木齐市】快件已到达 乌鲁木齐沙依巴克区网点", "ftime": "2026-11-05 18:00:00",
              "status": "超时未更新", "statusCode": "202"}
    doc["lastResult"]["data"] = [newest, *doc["lastResult"]["data"][2:]]
    parsed = kuaidi100.parse(json.dumps(doc, ensure_ascii=False))
    assert all(u.status != "exception" for u in parsed.updates)
    assert parsed.updates[-1].raw_code == "202"
    lines = [shipped("ZTO", "73100012345678", datetime(2026, 11, 2, 12, tzinfo=CN), "TB-ROW11")]
    lines += [u.to_json() for u in parsed.updates]
    kinds = kinds_opened(lines, datetime(2026, 11, 8, 12, tzinfo=CN))
    assert "carrier_exception" not in kinds and "tracking_stale" in kinds  # parcelwatch's own, once
