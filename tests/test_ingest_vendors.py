"""Each vendor's documented push, field by field (fixtures in tests/fixtures/ingest/), through the pure adapters:
statuses per scan, every documented code, times, carriers, signatures and per-element rejection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from domain.vocabulary import CARRIERS, STATUS_RANK
from ingest import BadSignature, PushError, aftership, generic, kdniao, kuaidi100, seventeentrack
from ingest.carriers import ALIASES, resolve

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
CN = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 7, tzinfo=UTC).timestamp()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def utc(update: Any) -> str:
    return datetime.fromtimestamp(update.event_time, UTC).strftime("%Y-%m-%dT%H:%M")


# -- kuaidi100 ------------------------------------------------------------------------------------------------


def test_kuaidi100_basic_mode_takes_each_scans_status_name() -> None:
    parsed = kuaidi100.parse(json.dumps(fixture("kuaidi100_basic_yto.json"), ensure_ascii=False))
    assert [(u.status, u.raw_code) for u in parsed.updates] == [
        ("picked_up", "揽收"), ("in_transit", "在途"), ("in_transit", "在途"), ("in_transit", "在途"),
        ("out_for_delivery", "派件中"), ("at_locker", "驿站代收")]
    first = parsed.updates[0]
    assert first.carrier == "YTO" and first.tracking_number == "YT7512345678901" and first.source == "kuaidi100"
    assert first.event_time == datetime(2026, 11, 2, 16, 30, tzinfo=CN).timestamp()  # China time, no zone given
    assert (first.province, first.city) == ("广东", "广州市")  # areaName "广东,广州市,白云区"
    assert not parsed.rejected and not parsed.unknown_codes


def test_kuaidi100_advanced_mode_takes_each_scans_status_code() -> None:
    parsed = kuaidi100.parse(json.dumps(fixture("kuaidi100_advanced_zto.json"), ensure_ascii=False))
    assert [(u.status, u.exception_reason, u.raw_code) for u in parsed.updates] == [
        ("info_received", None, "101"), ("picked_up", None, "103"), ("in_transit", None, "1002"),
        ("arrived_city", None, "1001"), ("exception", "out_of_area", "207")]
    assert parsed.updates[-1].carrier == "ZTO"


# Every state and sub-state of kuaidi100's 运单快递状态 table (resultv2 4), and what it becomes.
KUAIDI100_DOCUMENTED = {
    "0": ("in_transit", None), "1001": ("arrived_city", None), "1002": ("in_transit", None), "1003": ("in_transit", None),
    "1": ("picked_up", None), "101": ("info_received", None), "102": ("info_received", None), "103": ("picked_up", None),
    "2": ("exception", "problem_parcel"), "201": ("in_transit", None), "202": ("in_transit", None),
    "203": ("exception", "refused"), "204": ("exception", "delivery_failed"), "205": ("at_locker", None),
    "206": ("exception", "unreachable"), "207": ("exception", "out_of_area"), "208": ("exception", "held"),
    "209": ("exception", "damaged"), "210": ("exception", "other"),
    "3": ("signed", None), "301": ("signed", None), "302": ("signed", None), "303": ("signed", None),
    "304": ("signed", None),
    "4": ("exception", "returned"), "401": ("exception", "other"), "5": ("out_for_delivery", None),
    "501": ("at_locker", None), "6": ("exception", "returned"), "7": ("in_transit", None), "8": ("in_transit", None),
    "10": ("in_transit", None), "11": ("in_transit", None), "12": ("in_transit", None), "13": ("exception", "customs"),
    "14": ("exception", "refused"),
}


def k100(scans: list[dict[str, Any]], state: str = "0", com: str = "zhongtong", nu: str = "73100012345678",
         **top: Any) -> str:
    return json.dumps({"status": "polling", "message": "", **top,
                       "lastResult": {"state": state, "ischeck": "0", "com": com, "nu": nu, "data": scans}},
                      ensure_ascii=False)


@pytest.mark.parametrize("code", sorted(KUAIDI100_DOCUMENTED))
def test_every_documented_kuaidi100_code_per_scan_and_as_the_pushs_state(code: str) -> None:
    older = {"context": "更早的扫描", "ftime": "2026-11-01 10:00:00", "statusCode": "1002"}
    newest = {"context": "扫描", "ftime": "2026-11-03 09:00:00", "statusCode": code}
    by_code = kuaidi100.parse(k100([newest, older], state=""))
    by_state = kuaidi100.parse(k100([{"context": "扫描", "ftime": "2026-11-03 09:00:00"}, older], state=code))
    for parsed in (by_code, by_state):
        newest_update = parsed.updates[-1]
        assert (newest_update.status, newest_update.exception_reason) == KUAIDI100_DOCUMENTED[code]
        assert newest_update.raw_code == code
        assert parsed.updates[0].status == "in_transit" and not parsed.unknown_codes


@pytest.mark.parametrize(("name", "code"), sorted(kuaidi100.NAME_CODES.items()))
def test_every_kuaidi100_status_name_reads_as_its_code(name: str, code: str) -> None:
    (update,) = kuaidi100.parse(k100([{"context": "扫描", "ftime": "2026-11-03 09:00:00", "status": name}], state="")).updates
    assert (update.status, update.exception_reason) == KUAIDI100_DOCUMENTED[code] and update.raw_code == name


def test_kuaidi100_timers_are_plain_scans_at_the_scans_own_time() -> None:
    for code in ("201", "202"):
        scans = [{"context": "超时未更新", "ftime": "2026-11-03 09:00:00", "statusCode": code}]
        parsed = kuaidi100.parse(k100(scans, state=code))
        (update,) = parsed.updates
        assert update.status == "in_transit" and update.exception_reason is None and update.raw_code == code
        assert update.event_time == datetime(2026, 11, 3, 9, tzinfo=CN).timestamp()


def test_kuaidi100_carrier_correction_keeps_the_sellers_carrier() -> None:
    param = k100([{"context": "在途", "ftime": "2026-11-03 09:00:00", "statusCode": "0"}], com="zhongtong",
                 autoCheck="1", comOld="yuantong", comNew="zhongtong")
    parsed = kuaidi100.parse(param)
    assert parsed.updates[0].carrier == "YTO" and parsed.carrier_corrections == [("YTO", "ZTO")]


def test_kuaidi100_signature() -> None:
    param = k100([{"context": "在途", "ftime": "2026-11-03 09:00:00"}])
    sign = hashlib.md5((param + "salt").encode()).hexdigest()
    kuaidi100.verify(param, sign.upper(), "salt")
    kuaidi100.verify(param, sign, "salt")
    for wrong in ("0" * 32, None, "", "签名", "ü" * 32):
        with pytest.raises(BadSignature):
            kuaidi100.verify(param, wrong, "salt")
    form = urllib.parse.urlencode({"param": param, "sign": sign}).encode()
    assert kuaidi100.read(form, {}, "salt", None, NOW).updates


def test_kuaidi100_gbk_form_is_read_when_declared_and_named_when_not() -> None:
    param = k100([{"context": "已揽收", "ftime": "2026-11-03 09:00:00", "status": "揽收"}], state="1")
    gbk = urllib.parse.urlencode({"param": param}, encoding="gbk").encode()
    assert kuaidi100.read(gbk, {}, None, "gbk", NOW).updates[0].status == "picked_up"
    with pytest.raises(PushError) as err:
        kuaidi100.read(gbk, {}, None, None, NOW)
    assert "utf-8" in err.value.problem and "charset" in err.value.problem
    raw = b"param=" + param.encode("gbk")  # not even percent-encoded
    with pytest.raises(PushError):
        kuaidi100.read(raw, {}, None, None, NOW)


def test_kuaidi100_bad_scans_are_rejected_alone() -> None:
    scans: list[Any] = [{"context": "在途", "ftime": "2026-11-03 09:00:00", "statusCode": "0"}, "not a scan",
                        {"context": "坏时间", "ftime": "yesterday"}, {"context": "太早", "ftime": "1999-01-01 00:00:00"},
                        {"context": "揽收", "ftime": "2026-11-01 09:00:00", "statusCode": "103"}]
    parsed = kuaidi100.parse(k100(scans))
    assert [u.raw_code for u in parsed.updates] == ["103", "0"]
    assert [r.path for r in parsed.rejected] == [
        "param.lastResult.data[1]", "param.lastResult.data[2].ftime", "param.lastResult.data[3].event_time"]


# -- kdniao ---------------------------------------------------------------------------------------------------


def test_kdniao_signature_matches_kdniaos_documented_example() -> None:
    # apitest.kdniao.com/checkSign.aspx: this RequestData and ApiKey sign to this DataSign.
    data = "{'OrderCode':'','ShipperCode':'SF','LogisticCode':'118954907573'}"
    key = "56da2cf8-c8a2-44b2-b6fa-476cd7d1ba17"
    assert kdniao.sign(data, key) == "OWFhM2I5N2ViM2U2MGRkMjc4YzU2NmVlZWI3ZDk0MmE="
    kdniao.verify(data, "OWFhM2I5N2ViM2U2MGRkMjc4YzU2NmVlZWI3ZDk0MmE=", key)
    kdniao.verify(data, "OWFhM2I5N2ViM2U2MGRkMjc4YzU2NmVlZWI3ZDk0MmE%3d", key)  # URL-encoded once more
    for wrong in ("", None, "OWFh", "签名"):
        with pytest.raises(BadSignature):
            kdniao.verify(data, wrong, key)


def test_kdniao_push_htky_and_zto_with_station_and_signed_states() -> None:
    request_data = json.dumps(fixture("kdniao_push.json"), ensure_ascii=False)
    form = urllib.parse.urlencode({"RequestData": request_data, "DataSign": kdniao.sign(request_data, "k"),
                                   "RequestType": "101"}).encode()
    parsed = kdniao.read(form, {}, "k", "utf-8", NOW)
    by_parcel: dict[str, list[tuple[str, str | None]]] = {}
    for u in parsed.updates:
        by_parcel.setdefault(u.parcel_key, []).append((u.status, u.raw_code))
    assert by_parcel == {
        "BESTEXP:557012345678": [("picked_up", "1"), ("in_transit", "2"), ("arrived_city", "201"),
                                 ("out_for_delivery", "202"), ("at_locker", "211")],
        "ZTO:73100098765432": [("picked_up", "1"), ("arrived_city", "201"), ("out_for_delivery", "202"),
                               ("signed", "301")],
    }
    assert parsed.reply_context == {"EBusinessID": "1237100"}
    reply = kdniao.reply(True, "", parsed.reply_context, NOW)
    assert reply["Success"] is True and reply["EBusinessID"] == "1237100" and reply["UpdateTime"] == "2026-11-07 08:00:00"


KDNIAO_DOCUMENTED = {
    "1": ("picked_up", None), "2": ("in_transit", None), "201": ("arrived_city", None), "202": ("out_for_delivery", None),
    "204": ("in_transit", None), "211": ("at_locker", None), "3": ("signed", None), "301": ("signed", None),
    "302": ("signed", None), "304": ("signed", None), "311": ("signed", None), "4": ("exception", "problem_parcel"),
    "401": ("in_transit", None), "402": ("in_transit", None), "403": ("in_transit", None),
    "404": ("exception", "refused"), "405": ("exception", "delivery_failed"), "406": ("exception", "returned"),
    "407": ("exception", "returned"), "412": ("at_locker", None), "413": ("exception", "returned"),
    "414": ("exception", "damaged"), "415": ("exception", "other"), "416": ("exception", "unreachable"),
    "417": ("exception", "held"), "419": ("out_for_delivery", None), "420": ("exception", "unreachable"),
    "421": ("exception", "unreachable"), "423": ("exception", "out_of_area"), "10": ("info_received", None),
}


@pytest.mark.parametrize("code", sorted(KDNIAO_DOCUMENTED))
def test_every_documented_kdniao_state_as_a_traces_action_and_as_the_parcels_state(code: str) -> None:
    def push(action: str, state_ex: str) -> str:
        return json.dumps({"EBusinessID": "1", "PushTime": "2026-11-06 10:00:00", "Data": [{
            "ShipperCode": "ZTO", "LogisticCode": "73100012345678", "StateEx": state_ex, "Traces": [
                {"AcceptTime": "2026-11-01 10:00:00", "AcceptStation": "已收件", "Action": "1"},
                {"AcceptTime": "2026-11-03 10:00:00", "AcceptStation": "扫描", "Action": action}]}]})

    for request_data in (push(code, ""), push("", code)):
        parsed = kdniao.parse(request_data, received_at=NOW)
        newest = parsed.updates[-1]
        assert (newest.status, newest.exception_reason, newest.raw_code) == (*KDNIAO_DOCUMENTED[code], code)
        assert not parsed.unknown_codes


def test_kdniao_parcel_without_traces_gives_its_state_at_the_push_time_and_timers_say_nothing_yet() -> None:
    def push(state_ex: str) -> str:
        return json.dumps({"EBusinessID": "1", "PushTime": "2026-11-06 10:00:00", "Data": [
            {"ShipperCode": "YTO", "LogisticCode": "YT123", "State": "0", "StateEx": state_ex, "Traces": []}]})

    (update,) = kdniao.parse(push("401"), received_at=NOW).updates
    assert (update.status, update.raw_code) == ("info_received", "401")
    assert update.event_time == datetime(2026, 11, 6, 10, tzinfo=CN).timestamp()
    (update,) = kdniao.parse(push("4"), received_at=NOW).updates
    assert (update.status, update.exception_reason) == ("exception", "problem_parcel")


def test_kdniao_bad_parcel_is_rejected_alone() -> None:
    doc = fixture("kdniao_push.json")
    doc["Data"].insert(1, {"ShipperCode": "ZTO", "LogisticCode": "73 100 (bad)", "Traces": []})
    doc["Data"].append("not a parcel")
    doc["Data"][0]["Traces"][1]["AcceptTime"] = "soon"
    parsed = kdniao.parse(json.dumps(doc, ensure_ascii=False), received_at=NOW)
    assert [r.path for r in parsed.rejected] == [
        "RequestData.Data[0].Traces[1].AcceptTime", "RequestData.Data[1].LogisticCode", "RequestData.Data[3]"]
    assert len(parsed.updates) == 4 + 4


def test_kdniao_other_request_types_are_refused_by_name() -> None:
    form = urllib.parse.urlencode({"RequestData": "{}", "RequestType": "107"}).encode()
    with pytest.raises(PushError) as err:
        kdniao.read(form, {}, None, None, NOW)
    assert err.value.field == "RequestType"


# -- AfterShip ------------------------------------------------------------------------------------------------


def test_aftership_fedex_local_checkpoint_times_are_read_at_the_checkpoint() -> None:
    parsed = aftership.parse(fixture_bytes("aftership_fedex.json"))
    assert not parsed.rejected and len(parsed.updates) == 11
    times = {f"{u.raw_code}@{u.city or ''}": utc(u) for u in parsed.updates}
    assert times["InTransit_002@SHENZHEN"] == "2026-11-02T02:05"  # 10:05 China time
    assert times["InTransit_003@ANCHORAGE"] == "2026-11-03T14:12"  # 05:12 Alaska time (AKDT, -9)
    assert times["InTransit_005@MEMPHIS"] == "2026-11-04T08:30"  # 02:30 Central (CST from 1 Nov, -6)
    assert times["Delivered_001@SAN JOSE"] == "2026-11-06T22:38"  # the offset given
    # A checkpoint without a country is read in the destination's zone (US Central here).
    assert times["InfoReceived_001@"] == "2026-11-02T00:20"
    assert [u.carrier for u in parsed.updates] == ["FEDEX"] * 11
    statuses = [(u.status, u.exception_reason) for u in parsed.updates]
    assert ("exception", "delivery_failed") in statuses and statuses[-1] == ("signed", None)


def test_aftership_date_only_checkpoint_is_the_start_of_that_day_at_the_checkpoint() -> None:
    parsed = aftership.parse(fixture_bytes("aftership_ups.json"))
    info = parsed.updates[0]
    assert (info.raw_code, info.status) == ("InfoReceived_001", "info_received")
    assert info.event_time == datetime(2026, 11, 1, tzinfo=CN).timestamp()  # China, the checkpoint's country
    assert parsed.updates[-1].status == "at_locker" and parsed.updates[-1].carrier == "UPS"


def test_aftership_usps_exceptions_and_tags_without_checkpoints() -> None:
    parsed = aftership.parse(fixture_bytes("aftership_usps.json"))
    assert [(u.status, u.exception_reason) for u in parsed.updates] == [
        ("picked_up", None), ("exception", "unreachable"), ("exception", "returned")]
    (expired,) = aftership.parse(fixture_bytes("aftership_expired.json")).updates
    assert (expired.carrier, expired.status, expired.raw_code, expired.event_time) == (
        "SF", "info_received", "Expired_001", 1793962800.0)
    (lost,) = aftership.parse(fixture_bytes("aftership_exception.json")).updates
    assert (lost.status, lost.exception_reason, lost.raw_code) == ("exception", "lost", "Exception_013")


@pytest.mark.parametrize("subtag", sorted(aftership.SUBTAG))
def test_every_documented_aftership_subtag_is_known(subtag: str) -> None:
    body = json.dumps({"ts": NOW, "msg": {"slug": "ups", "tracking_number": "1Z1", "checkpoints": [
        {"checkpoint_time": "2026-11-03T10:00:00+00:00", "tag": subtag.partition("_")[0], "subtag": subtag}]}})
    parsed = aftership.parse(body.encode())
    assert parsed.updates[0].raw_code == subtag and not parsed.unknown_codes
    assert parsed.updates[0].status in STATUS_RANK


@pytest.mark.parametrize("tag", sorted(aftership.TAG))
def test_every_aftership_tag_on_a_checkpoint_and_without_one(tag: str) -> None:
    with_checkpoint = json.dumps({"ts": NOW, "msg": {"slug": "dhl", "tracking_number": "1234567890", "checkpoints": [
        {"checkpoint_time": "2026-11-03T10:00:00+01:00", "tag": tag}]}})
    without = json.dumps({"ts": NOW, "msg": {"slug": "dhl", "tracking_number": "1234567890", "tag": tag, "checkpoints": []}})
    meaning = aftership.TAG[tag]
    for body, expected in ((with_checkpoint, ("in_transit", None) if meaning.timer else meaning[:2]),
                           (without, ("info_received", None) if meaning.timer else meaning[:2])):
        (update,) = aftership.parse(body.encode()).updates
        assert (update.status, update.exception_reason) == expected and update.raw_code == tag
        assert update.carrier == "DHL"


def test_aftership_signature_and_bad_checkpoints_alone() -> None:
    body = fixture_bytes("aftership_usps.json")
    header = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert aftership.read(body, {"aftership-hmac-sha256": header}, "s3cret", None, NOW).updates
    for wrong in (None, "", "ünïcode", header[:-2]):
        with pytest.raises(BadSignature):
            aftership.read(body, {"aftership-hmac-sha256": wrong} if wrong is not None else {}, "s3cret", None, NOW)
    doc = fixture("aftership_usps.json")
    doc["msg"]["checkpoints"] += [7, {"checkpoint_time": "late"}, {"tag": "InTransit"}]
    parsed = aftership.parse(json.dumps(doc).encode())
    assert len(parsed.updates) == 3 and [r.path for r in parsed.rejected] == [
        "msg.checkpoints[3]", "msg.checkpoints[4].checkpoint_time", "msg.checkpoints[5].checkpoint_time"]


# -- 17TRACK --------------------------------------------------------------------------------------------------


def test_17track_v2_2_every_stage_and_carrier_3011_is_china_post() -> None:
    parsed = seventeentrack.parse(fixture_bytes("17track_v2_2.json"))
    assert {u.carrier for u in parsed.updates} == {"YZPY"}
    assert [(u.status, u.exception_reason, u.raw_code) for u in parsed.updates] == [
        ("info_received", None, "InfoReceived"), ("picked_up", None, "InTransit_PickedUp"),
        ("in_transit", None, "Departure"), ("in_transit", None, "Arrival"),
        ("exception", "returned", "Exception_Returning"), ("exception", "returned", "Exception_Returned")]
    assert not parsed.unknown_codes and not parsed.rejected


@pytest.mark.parametrize("stage", sorted(seventeentrack.STAGE))
def test_every_17track_stage(stage: str) -> None:
    body = json.dumps({"event": "TRACKING_UPDATED", "data": {"number": "RR1", "carrier": 190455, "track_info": {
        "tracking": {"providers": [{"events": [{"time_utc": "2026-11-03T02:00:00Z", "stage": stage}]}]}}}})
    (update,) = seventeentrack.parse(body.encode()).updates
    assert (update.status, update.exception_reason) == seventeentrack.STAGE[stage][:2] and update.raw_code == stage
    assert update.carrier == "ZTO"


@pytest.mark.parametrize("sub_status", sorted(seventeentrack.SUB_STATUS))
def test_every_17track_sub_status(sub_status: str) -> None:
    body = json.dumps({"event": "TRACKING_UPDATED", "data": {"number": "RR1", "carrier": 3011, "track_info": {
        "tracking": {"providers": [{"events": [
            {"time_utc": "2026-11-03T02:00:00Z", "stage": None, "sub_status": sub_status},
            {"time_utc": "2026-11-01T02:00:00Z", "stage": None}]}]}}}})
    parsed = seventeentrack.parse(body.encode())
    assert parsed.updates[-1].raw_code == sub_status and not parsed.unknown_codes
    expected = seventeentrack.SUB_STATUS[sub_status]
    if expected.timer:
        assert parsed.updates[-1].status == "in_transit"  # 17TRACK's own clock: a plain scan
    else:
        assert (parsed.updates[-1].status, parsed.updates[-1].exception_reason) == expected[:2]


def test_17track_newest_event_without_codes_takes_the_latest_status_and_time_raw_is_local() -> None:
    body = json.dumps({"event": "TRACKING_UPDATED", "data": {"number": "RR1", "carrier": 3011, "track_info": {
        "latest_status": {"status": "DeliveryFailure", "sub_status": "DeliveryFailure_NoBody"},
        "tracking": {"providers": [{"events": [
            {"time_raw": {"date": "2026-11-03", "time": "18:30:00", "timezone": None}, "address": {"country": "US", "state": "NY"}},
            {"time_iso": "2026-11-01T10:00:00+08:00", "stage": "PickedUp"}]}]}}}})
    parsed = seventeentrack.parse(body.encode())
    assert utc(parsed.updates[-1]) == "2026-11-03T23:30"  # 18:30 New York (EST)
    assert (parsed.updates[-1].status, parsed.updates[-1].exception_reason) == ("exception", "unreachable")


def test_17track_v1_push_is_refused_by_name_and_events_that_are_not_objects_alone() -> None:
    with pytest.raises(PushError) as err:
        seventeentrack.parse(fixture_bytes("17track_v1.json"))
    assert err.value.field == "data.track" and "v2.2" in err.value.problem
    doc = fixture("17track_v2_2.json")
    doc["data"]["track_info"]["tracking"]["providers"][0]["events"] += ["text", 3, None, ["list"]]
    doc["data"]["track_info"]["tracking"]["providers"].append("not a provider")
    parsed = seventeentrack.parse(json.dumps(doc).encode())
    assert len(parsed.updates) == 6 and len(parsed.rejected) == 5


def test_17track_signature() -> None:
    body = fixture_bytes("17track_v2_2.json")
    sign = hashlib.sha256(body + b"/key").hexdigest()
    assert seventeentrack.read(body, {"sign": sign}, "key", None, NOW).updates
    for wrong in (None, "", "ßign", sign.upper()[:-1]):
        with pytest.raises(BadSignature):
            seventeentrack.read(body, {"sign": wrong} if wrong is not None else {}, "key", None, NOW)


# -- our own JSON and the carrier vocabulary ----------------------------------------------------------------


def test_generic_elements_are_checked_alone_and_carriers_resolved() -> None:
    good = {"event_id": "e1", "carrier": "zhongtong", "source": "kuaidi100", "tracking_number": "7310001",
            "status": "picked_up", "event_time": "2026-11-02T10:00:00+08:00"}
    body = json.dumps([good, {**good, "event_id": "e2", "carrier": "安能物流", "source": "generic"},
                       {**good, "event_id": "e3", "status": "lost"}, "nope", {**good, "event_id": "e4", "carrier": 5}])
    parsed = generic.parse(body.encode())
    assert [u.carrier for u in parsed.updates] == ["ZTO", "generic:安能物流"]
    assert parsed.unknown_carriers == ["generic:安能物流"]
    assert [r.path for r in parsed.rejected] == ["[2].status", "[3]", "[4].carrier"]


def test_every_alias_resolves_to_a_canonical_carrier_and_unknown_ones_stay_under_their_source() -> None:
    for source, table in ALIASES.items():
        for code, canonical in table.items():
            assert canonical in CARRIERS
            assert resolve(source, code) == canonical
            assert resolve(source, code.upper()) == canonical
    assert resolve("17track", 3011) == "YZPY" and resolve("17track", 3013) == "EMS"
    assert resolve("kdniao", "HTKY") == "BESTEXP" and resolve("kuaidi100", "jitu") == "JTEXPRESS"
    assert resolve("kuaidi100", "zhongtongkuaiyun") == "kuaidi100:zhongtongkuaiyun"
    assert resolve("kuaidi100", "fengwang") == "kuaidi100:fengwang"
    assert resolve("taobao", "中通快递") == "ZTO" and resolve("douyin", "顺丰") == "SF"
    assert resolve("generic", "kuaidi100:jtexpress") == "JTEXPRESS"  # a dead letter replayed after a table grew
    assert resolve("pinduoduo", "ANE | 安能") == "pinduoduo:ane-安能"
    for bad in ("", "  ", "!!!", None, True, 1.5):
        with pytest.raises(ValueError):
            resolve("kuaidi100", bad)
