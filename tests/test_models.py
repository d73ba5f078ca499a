"""Wire models: every validation error names the field; provinces and times are normalised."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from domain.events import MAX_TEXT, InvalidEvent, OrderEvent, TrackingUpdate, format_time, parse_order_event, parse_time, parse_tracking_update
from domain.vocabulary import normalise_province

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC).timestamp()  # 2026-11-02 10:00 China time


def tracking(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "kd100:1",
        "carrier": "ZTO",
        "tracking_number": "73100012345678",
        "status": "in_transit",
        "event_time": "2026-11-02T10:00:00+08:00",
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not ...}


def order(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "tb:1",
        "order_id": "TB1",
        "shop": "shop-a",
        "platform": "taobao",
        "kind": "paid",
        "event_time": "2026-11-02T10:00:00+08:00",
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not ...}


def tracking_error(**over: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_tracking_update(orjson.dumps(tracking(**over)))
    return info.value


def order_error(**over: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_order_event(orjson.dumps(order(**over)))
    return info.value


# -- valid events -------------------------------------------------------------------------------------


def test_tracking_update_is_normalised() -> None:
    up = parse_tracking_update(
        orjson.dumps(tracking(carrier="zto", status="exception", exception_reason="out_of_area", province="新疆维吾尔自治区", city="乌鲁木齐市"))
    )
    assert up == TrackingUpdate(
        event_id="kd100:1",
        carrier="ZTO",
        tracking_number="73100012345678",
        status="exception",
        event_time=T0,
        exception_reason="out_of_area",
        province="新疆",
        city="乌鲁木齐市",
    )
    assert up.parcel_key == "ZTO:73100012345678"


def test_exception_without_reason_defaults_to_other() -> None:
    assert parse_tracking_update(tracking(status="exception")).exception_reason == "other"


def test_dict_input_is_accepted_like_bytes() -> None:
    assert parse_tracking_update(tracking()) == parse_tracking_update(orjson.dumps(tracking()))


def test_order_event_is_normalised() -> None:
    ev = parse_order_event(
        orjson.dumps(
            order(
                kind="shipped",
                carrier="sf",
                tracking_number="SF123",
                origin_province="广东省",
                destination_province="浙江",
                promised_ship_time="2026-11-03T10:00:00+08:00",
                auto_confirm_deadline=T0 + 10 * 86400,
                order_value="129.5",
                category="apparel",
            )
        )
    )
    assert ev == OrderEvent(
        event_id="tb:1",
        order_id="TB1",
        shop="shop-a",
        platform="taobao",
        kind="shipped",
        event_time=T0,
        carrier="SF",
        tracking_number="SF123",
        origin_province="广东",
        destination_province="浙江",
        promised_ship_time=T0 + 86400,
        auto_confirm_deadline=T0 + 10 * 86400,
        order_value=129.5,
        category="apparel",
    )
    assert ev.parcel_key == "SF:SF123"


def test_order_event_without_parcel_has_no_parcel_key() -> None:
    assert parse_order_event(order()).parcel_key is None


def test_receipt_extended_carries_new_deadline() -> None:
    ev = parse_order_event(order(kind="receipt_extended", auto_confirm_deadline="2026-11-20T10:00:00+08:00"))
    assert ev.auto_confirm_deadline == T0 + 18 * 86400


def test_to_json_round_trips() -> None:
    up = parse_tracking_update(tracking(province="广东", raw_text="快件已揽收"))
    assert parse_tracking_update(up.to_json()) == up
    ev = parse_order_event(order(kind="shipped", carrier="ZTO", tracking_number="1", order_value=5))
    assert parse_order_event(ev.to_json()) == ev


# -- provinces ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("广东省", "广东"),
        ("广东", "广东"),
        (" 广东省 ", "广东"),
        ("内蒙古自治区", "内蒙古"),
        ("北京市", "北京"),
        ("香港特别行政区", "香港"),
        ("", None),
        (None, None),
        ("Guangdong", None),
    ],
)
def test_normalise_province(raw: str | None, expected: str | None) -> None:
    assert normalise_province(raw) == expected


def test_unknown_province_names_the_field() -> None:
    err = tracking_error(province="广东州")
    assert (err.field, err.problem) == ("province", "is not a known province name (write e.g. 广东 or 广东省)")
    assert order_error(destination_province="Mars").field == "destination_province"
    assert order_error(origin_province="x" * 21).field == "origin_province"


# -- times --------------------------------------------------------------------------------------------


def test_times_with_offsets_and_epochs() -> None:
    assert parse_time("2026-11-02T10:00:00+08:00", "t") == T0
    assert parse_time("2026-11-02T02:00:00Z", "t") == T0
    assert parse_time(T0, "t") == T0
    assert parse_time(int(T0), "t") == T0
    assert format_time(T0) == "2026-11-02T02:00:00Z"
    assert format_time(None) is None


@pytest.mark.parametrize(
    ("value", "problem_start"),
    [
        ("2026-11-02T10:00:00", "has no timezone offset"),
        ("2026-11-02", "has no timezone offset"),
        ("yesterday", "is not an ISO 8601 time"),
        ("2026-13-01T00:00:00Z", "is not an ISO 8601 time"),
        ("2026-11-02T10:00:00+08:00" + " " * 20, "is too long to be a time"),
        (True, "expected an ISO 8601 time with offset, got a boolean"),
        ([2026], "expected an ISO 8601 time with offset, got list"),
        (None, "expected an ISO 8601 time with offset, got NoneType"),
        ("1999-12-31T23:59:59Z", "is out of the plausible range 2000-2100: 1999-12-31T23:59:59Z"),
        ("2100-01-01T00:00:00Z", "is out of the plausible range 2000-2100"),
        (T0 * 1000, "is out of the plausible range 2000-2100"),  # milliseconds by mistake
        (-1.0, "is out of the plausible range 2000-2100"),
        # Beyond what datetime can even display: must still be a validation error, not a crash.
        ("0001-01-01T00:30:00+01:00", "is out of the plausible range 2000-2100"),
        ("9999-12-31T23:59:59-12:00", "is out of the plausible range 2000-2100"),
        (1e20, "is out of the plausible range 2000-2100"),
        (-1e20, "is out of the plausible range 2000-2100"),
    ],
)
def test_bad_event_time_names_the_field(value: Any, problem_start: str) -> None:
    err = tracking_error(event_time=value)
    assert err.field == "event_time"
    assert err.problem.startswith(problem_start), err.problem
    assert str(err) == f"event_time: {err.problem}"
    assert err.reason_code == "event_time"


def test_non_finite_epoch_is_rejected() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_time(float("nan"), "event_time")
    assert (info.value.field, info.value.problem) == ("event_time", "is not a finite number")


def test_huge_json_number_is_a_validation_error() -> None:
    raw = orjson.dumps(tracking(event_time=...))[:-1] + b',"event_time":100000000000000000000000000000}'
    with pytest.raises(InvalidEvent) as info:
        parse_tracking_update(raw)
    assert info.value.field == "event_time"


def test_other_time_fields_are_named() -> None:
    assert order_error(promised_ship_time="2026-11-03").field == "promised_ship_time"
    assert order_error(auto_confirm_deadline="1970-01-01T00:00:00Z").field == "auto_confirm_deadline"


# -- tracking update errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"carrier": "!!!"}, "carrier"),
        ({"carrier": ...}, "carrier"),
        ({"carrier": 7}, "carrier"),
        ({"tracking_number": ...}, "tracking_number"),
        ({"tracking_number": "73100 12"}, "tracking_number"),
        ({"tracking_number": "７３１"}, "tracking_number"),  # full-width digits
        ({"tracking_number": "1" * 41}, "tracking_number"),
        ({"event_id": ...}, "event_id"),
        ({"event_id": 12}, "event_id"),
        ({"event_id": "e" * 129}, "event_id"),
        ({"status": "delivered"}, "status"),
        ({"status": ...}, "status"),
        ({"status": ["signed"]}, "status"),  # unhashable: must not be a TypeError
        ({"status": {"a": 1}}, "status"),
        ({"status": "in_transit", "exception_reason": "lost"}, "exception_reason"),
        ({"status": "signed", "exception_reason": "other"}, "exception_reason"),
        ({"status": "exception", "exception_reason": "stolen"}, "exception_reason"),
        ({"status": "exception", "exception_reason": ["lost"]}, "exception_reason"),
        ({"city": "市" * 41}, "city"),
        ({"raw_text": "x" * (MAX_TEXT + 1)}, "raw_text"),
        ({"raw_code": "c" * 41}, "raw_code"),
        ({"source": "s" * 33}, "source"),
        ({"province": 44}, "province"),
    ],
)
def test_tracking_errors_name_the_field(over: dict[str, Any], field: str) -> None:
    assert tracking_error(**over).field == field


def test_an_unknown_carrier_is_kept_under_its_sources_code_never_rejected() -> None:
    assert parse_tracking_update(tracking(carrier="zhongtongkuaiyun", source="kuaidi100")).parcel_key.startswith(
        "kuaidi100:zhongtongkuaiyun:")
    assert parse_tracking_update(tracking(carrier="安能物流")).carrier == "generic:安能物流"
    assert parse_tracking_update(tracking(carrier="中通快递")).carrier == "ZTO"
    assert tracking_error(carrier="!!!").problem == "has no letters or digits"


def test_exception_reason_with_other_status_says_why() -> None:
    err = tracking_error(status="in_transit", exception_reason="lost")
    assert err.problem == "is only allowed with status 'exception', not 'in_transit'"


def test_huge_strings_are_rejected_by_length() -> None:
    err = tracking_error(raw_text="长" * 100_000)
    assert err.problem == f"is longer than {MAX_TEXT} characters (100000)"
    assert tracking_error(city="x" * 10_000_000).field == "city"


def test_max_length_strings_are_accepted() -> None:
    up = parse_tracking_update(tracking(raw_text="x" * MAX_TEXT, tracking_number="A-" + "1" * 38))
    assert len(up.raw_text or "") == MAX_TEXT


# -- whole-document errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem_start"),
    [
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"text"', "expected a JSON object, got str"),
        (b"42", "expected a JSON object, got int"),
        (b"null", "expected a JSON object, got NoneType"),
        (b"{not json", "not valid JSON (UTF-8)"),
        (b"", "not valid JSON (UTF-8)"),
        (b'{"event_id": "\xff\xfe"}', "not valid JSON (UTF-8)"),
        ('{"city": "广州"}'.encode("gbk"), "not valid JSON (UTF-8)"),
    ],
)
def test_document_errors_name_the_root(raw: bytes, problem_start: str) -> None:
    for parse in (parse_tracking_update, parse_order_event):
        with pytest.raises(InvalidEvent) as info:
            parse(raw)
        assert info.value.field == "$"
        assert info.value.problem.startswith(problem_start), info.value.problem


# -- order event errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"order_id": ...}, "order_id"),
        ({"order_id": "o" * 65}, "order_id"),
        ({"shop": ...}, "shop"),
        ({"shop": 3}, "shop"),
        ({"platform": "amazon"}, "platform"),
        ({"platform": ...}, "platform"),
        ({"kind": "delivered"}, "kind"),
        ({"kind": ["paid"]}, "kind"),  # unhashable: must not be a TypeError
        ({"kind": ...}, "kind"),
        ({"event_time": ...}, "event_time"),
        ({"kind": "shipped"}, "carrier"),
        ({"kind": "shipped", "carrier": "ZTO"}, "tracking_number"),
        ({"kind": "shipped", "carrier": "#", "tracking_number": "1"}, "carrier"),
        ({"kind": "confirmed", "carrier": "ZTO"}, "tracking_number"),
        ({"kind": "confirmed", "tracking_number": "1"}, "carrier"),
        ({"order_value": -0.01}, "order_value"),
        ({"order_value": "12 yuan"}, "order_value"),
        ({"order_value": True}, "order_value"),
        ({"order_value": [1]}, "order_value"),
        ({"order_value": "NaN"}, "order_value"),
        ({"order_value": "inf"}, "order_value"),
        ({"kind": "receipt_extended"}, "auto_confirm_deadline"),
        ({"category": "c" * 41}, "category"),
        ({"destination_city": "c" * 41}, "destination_city"),
    ],
)
def test_order_errors_name_the_field(over: dict[str, Any], field: str) -> None:
    assert order_error(**over).field == field


def test_negative_order_value_message() -> None:
    assert order_error(order_value=-5).problem == "must be a finite amount >= 0, got -5.0"


def test_receipt_extended_without_deadline_message() -> None:
    assert order_error(kind="receipt_extended").problem == "is required on receipt_extended (the new deadline)"


def test_zero_order_value_is_valid() -> None:
    assert parse_order_event(order(order_value=0)).order_value == 0.0


# -- optional fields: absent, null and empty all mean "not given"; a present value is still checked -------------


@pytest.mark.parametrize("missing", [..., None, ""])
def test_optional_tracking_fields_absent_null_or_empty_are_none(missing: Any) -> None:
    up = parse_tracking_update(orjson.dumps(tracking(province=missing, city=missing, raw_code=missing, raw_text=missing, source=missing)))
    assert (up.province, up.city, up.raw_code, up.raw_text, up.source) == (None, None, None, None, "generic")


@pytest.mark.parametrize("missing", [..., None, ""])
def test_optional_order_fields_absent_null_or_empty_are_none(missing: Any) -> None:
    ev = parse_order_event(orjson.dumps(order(
        origin_province=missing, destination_province=missing, destination_city=missing, category=missing,
    )))
    assert (ev.origin_province, ev.destination_province, ev.destination_city, ev.category) == (None, None, None, None)


@pytest.mark.parametrize(
    ("over", "field", "problem"),
    [
        ({"city": 5}, "city", "expected a string, got int"),
        ({"source": ["x"]}, "source", "expected a string, got list"),
        ({"raw_code": "x" * 41}, "raw_code", "is longer than 40 characters (41)"),
        ({"province": "火星"}, "province", "is not a known province name (write e.g. 广东 or 广东省)"),
    ],
)
def test_present_optional_tracking_fields_are_still_validated(over: dict[str, Any], field: str, problem: str) -> None:
    err = tracking_error(**over)
    assert (err.field, err.problem) == (field, problem)


@pytest.mark.parametrize(
    ("over", "field", "problem"),
    [
        ({"category": 1.5}, "category", "expected a string, got float"),
        ({"destination_city": "x" * 41}, "destination_city", "is longer than 40 characters (41)"),
        ({"origin_province": "火星"}, "origin_province", "is not a known province name (write e.g. 广东 or 广东省)"),
    ],
)
def test_present_optional_order_fields_are_still_validated(over: dict[str, Any], field: str, problem: str) -> None:
    err = order_error(**over)
    assert (err.field, err.problem) == (field, problem)


# -- what a reason may say --------------------------------------------------------------------------------

BUYER = "13800138000 张三"  # what a sender put in the wrong field


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: tracking_error(province=BUYER[:20]), "province"),
        (lambda: order_error(destination_province=BUYER[:20]), "destination_province"),
        (lambda: tracking_error(status=BUYER), "status"),
        (lambda: tracking_error(status="exception", exception_reason=BUYER), "exception_reason"),
        (lambda: tracking_error(event_time=BUYER), "event_time"),
        (lambda: order_error(platform=BUYER), "platform"),
        (lambda: order_error(kind=BUYER), "kind"),
        (lambda: order_error(order_value=BUYER), "order_value"),
        (lambda: order_error(promised_ship_time=BUYER), "promised_ship_time"),
    ],
)
def test_a_reason_names_the_field_and_the_problem_but_never_repeats_the_value(make: Any, field: str) -> None:
    # Reasons go into dead-letter headers and the worker's log: a value there may be a buyer's name and phone.
    err = make()
    assert err.field == field
    assert err.problem
    for part in ("13800138000", "张三", "138001"):
        assert part not in str(err), str(err)


# -- times from the future --------------------------------------------------------------------------------


def test_an_event_time_ahead_of_now_by_more_than_the_tolerance_is_rejected() -> None:
    from domain.events import check_not_ahead

    check_not_ahead(T0 + 3599, T0, 3600)  # a sender's clock a little ahead: accepted
    check_not_ahead(T0 - 30 * 86400, T0, 3600)
    with pytest.raises(InvalidEvent) as info:
        check_not_ahead(T0 + 86400, T0, 3600)  # an exception dated tomorrow
    assert (info.value.field, info.value.problem) == (
        "event_time", "is 1.0 d in the future; at most 1.0 h ahead is accepted (config app.future_event_tolerance_seconds)")
    with pytest.raises(InvalidEvent) as info:
        check_not_ahead(T0 + 2 * 3600, T0, 0)
    assert info.value.problem.startswith("is 2.0 h in the future; at most 0 s ahead")
