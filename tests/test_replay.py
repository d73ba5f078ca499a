"""Replay: JSON Lines in, the live pipeline in event time, issues out; --until stops the clock."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

import config
from core.replay import main_replay, read_events, replay, summary, write_issues
from domain.events import InvalidEvent, OrderEvent, TrackingUpdate, format_time

S = config.load(env={})
H = 3600.0
D = 24 * H
T0 = 1_793_584_800.0  # 2026-11-02T02:00:00Z


def iso(t: float) -> str:
    out = format_time(t)
    assert out is not None
    return out


def order(kind: str, t: float, order_id: str = "TB1", **kw: Any) -> dict[str, Any]:
    return {"event_id": f"{order_id}-{kind}", "order_id": order_id, "shop": "shop-a", "platform": "taobao", "kind": kind, "event_time": iso(t), **kw}


def scan(status: str, t: float, number: str = "1", **kw: Any) -> dict[str, Any]:
    return {"event_id": f"{number}-{status}-{t}", "carrier": "ZTO", "tracking_number": number, "status": status, "event_time": iso(t), **kw}


def wrapped(topic: str, value: dict[str, Any]) -> bytes:
    key = value.get("order_id") or f"{value['carrier']}:{value['tracking_number']}"
    return orjson.dumps({"topic": topic, "key": key, "value": value})


def bare(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


def story() -> list[bytes]:
    """TB1 ships, its parcel hits an exception and is signed; TB2 is paid and never shipped."""
    return [
        wrapped("orders", order("paid", T0, order_value=600.0)),
        wrapped("orders", order("shipped", T0 + 2 * H, carrier="ZTO", tracking_number="1", origin_province="广东省", destination_province="浙江")),
        wrapped("tracking", scan("picked_up", T0 + 3 * H, province="广东")),
        bare(scan("exception", T0 + 10 * H, exception_reason="lost", city="杭州市")),
        bare(order("paid", T0 + H, order_id="TB2")),
        b"",
        bare(scan("signed", T0 + 40 * H)),
        bare(scan("in_transit", T0 + 3 * D, number="2")),  # moves the clock on
    ]


def by_key(result: Any) -> dict[str, dict[str, Any]]:
    return {i["issue_key"]: i for i in result.issues.values()}


def test_replay_raises_and_resolves_in_event_time() -> None:
    result = replay(S, story())
    assert result.invalid == []
    assert result.events == 7
    assert result.clock == T0 + 3 * D
    issues = by_key(result)
    assert set(issues) == {"ZTO:1|carrier_exception", "order:TB2|ship_overdue"}
    exc = issues["ZTO:1|carrier_exception"]
    assert exc == {
        "issue_key": "ZTO:1|carrier_exception",
        "kind": "carrier_exception",
        "reason": "carrier exception: Lost",
        "parcel": "ZTO:1",
        "order_id": "TB1",
        "shop": "shop-a",
        "platform": "taobao",
        "lane": "ZTO 广东→浙江",
        "opened_at": iso(T0 + 10 * H),
        "resolved_at": iso(T0 + 40 * H),
        "resolution": "signed",
        "severity": "critical",  # high, and a 600 CNY order
        "evidence": "carrier reported lost at 2026-11-02 20:00 in 杭州市",
        "suggested_action": "file a claim with the carrier and re-ship to the buyer",
    }
    ship = issues["order:TB2|ship_overdue"]
    assert (ship["kind"], ship["parcel"], ship["order_id"], ship["shop"]) == ("ship_overdue", None, "TB2", "shop-a")
    assert (ship["opened_at"], ship["resolved_at"], ship["severity"]) == (iso(T0 + 49 * H), None, "medium")
    assert ship["reason"] == "not shipped 2.0 d after payment (limit 48 h after payment)"
    assert ship["evidence"] == "paid 2026-11-02 11:00, limit 48 h after payment, now 2.0 d since payment"


def test_until_stops_the_clock() -> None:
    result = replay(S, story(), until=T0 + 20 * H)
    assert result.clock == T0 + 20 * H
    assert result.events == 5  # the signature and the later scan are after the clock stopped
    issues = by_key(result)
    assert set(issues) == {"ZTO:1|carrier_exception"}
    assert issues["ZTO:1|carrier_exception"]["resolved_at"] is None


def test_until_is_inclusive_of_events_and_deadlines_at_t() -> None:
    lines = story()
    result = replay(S, lines, until=T0 + 40 * H)
    assert by_key(result)["ZTO:1|carrier_exception"]["resolved_at"] == iso(T0 + 40 * H)
    assert "order:TB2|ship_overdue" not in by_key(result)
    result = replay(S, lines, until=T0 + 49 * H)  # TB2 paid at T0 + 1 h: due at T0 + 49 h exactly
    assert by_key(result)["order:TB2|ship_overdue"]["opened_at"] == iso(T0 + 49 * H)
    result = replay(S, lines, until=T0 + 49 * H - 1)
    assert "order:TB2|ship_overdue" not in by_key(result)


def test_until_past_the_last_event_fires_deadlines_up_to_it() -> None:
    result = replay(S, [bare(order("paid", T0))], until=T0 + 30 * D)
    assert result.clock == T0 + 30 * D
    assert by_key(result)["order:TB1|ship_overdue"]["severity"] == "high"  # very late by then


def test_until_before_every_event() -> None:
    result = replay(S, story(), until=T0 - H)
    assert (result.events, result.issues, result.clock) == (0, {}, T0 - H)


def test_empty_input() -> None:
    result = replay(S, [b"", b"  \n"])
    assert (result.events, result.issues, result.invalid, result.clock) == (0, {}, [], None)


def test_invalid_lines_are_reported_with_line_number_and_field() -> None:
    lines = [
        bare(order("paid", T0)),
        b"{not json",
        bare(scan("delivered", T0)),
        wrapped("tracking", scan("signed", T0, exception_reason="lost")),
        orjson.dumps({"topic": "tracking", "key": "k", "value": "ZTO:1 signed"}),
        orjson.dumps({"topic": "orders", "value": None}),
        orjson.dumps({"topic": "returns", "value": order("paid", T0)}),
        b"[1, 2, 3]",
        b"",
        bare({**order("paid", T0), "event_time": "2026-11-02T10:00:00"}),
        b'{"carrier": "ZTO", "city": "\xff\xfe"}',
        bare({k: v for k, v in scan("signed", T0).items() if k != "carrier"}),
        bare(order("receipt_extended", T0)),
        bare({**order("paid", T0), "order_value": -1}),
        bare({**scan("signed", T0), "event_time": T0 * 1000}),
        bare(scan("in_transit", T0 + H)),
    ]
    result = replay(S, lines)
    got = [(n, problem.split(":", 1)[0]) for n, problem in result.invalid]
    assert got == [
        (2, "$"),
        (3, "status"),
        (4, "exception_reason"),
        (5, "value"),
        (6, "value"),
        (7, "topic"),
        (8, "$"),
        (10, "event_time"),
        (11, "$"),
        (12, "carrier"),
        (13, "auto_confirm_deadline"),
        (14, "order_value"),
        (15, "event_time"),
    ]
    problems = dict(result.invalid)
    assert problems[3].startswith("status: unknown status;")
    assert problems[7] == "topic: unknown topic 'returns'; expected orders or tracking"
    assert problems[10] == "event_time: has no timezone offset (write e.g. 2026-11-02T10:00:00+08:00)"
    # The valid lines still ran.
    assert result.events == 2


def test_read_events_detects_bare_event_kinds() -> None:
    parsed = list(
        read_events(
            [
                bare(order("confirmed", T0)),
                bare(scan("signed", T0)),
                orjson.dumps({"topic": "order", "value": order("paid", T0)}),
                orjson.dumps({"topic": "tracking", "value": scan("in_transit", T0)}),
            ]
        )
    )
    assert [(n, type(ev).__name__) for n, ev in parsed] == [(1, "OrderEvent"), (2, "TrackingUpdate"), (3, "OrderEvent"), (4, "TrackingUpdate")]
    ev = parsed[0][1]
    assert isinstance(ev, OrderEvent) and ev.kind == "confirmed"
    up = parsed[1][1]
    assert isinstance(up, TrackingUpdate) and up.parcel_key == "ZTO:1"
    # A bare event with an order_id but no kind is taken for a tracking update and judged as one.
    ((line_no, err),) = list(read_events([bare({"order_id": "TB1", "event_id": "x"})]))
    assert line_no == 1
    assert isinstance(err, InvalidEvent) and err.field == "carrier"


def test_same_input_same_output(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_issues(replay(S, story()), a)
    write_issues(replay(S, story()), b)
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_bytes().splitlines()
    assert len(lines) == 2
    # Sorted by opening time, then key.
    opened = [orjson.loads(line)["opened_at"] for line in lines]
    assert opened == sorted(opened)


def test_output_does_not_depend_on_line_order(tmp_path: Path) -> None:
    lines = [line for line in story() if line]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_issues(replay(S, lines), a)
    shuffled = lines[:]
    random.Random(4).shuffle(shuffled)
    assert shuffled != lines
    write_issues(replay(S, shuffled), b)
    assert a.read_bytes() == b.read_bytes()


def test_summary_counts_per_kind() -> None:
    text = summary(replay(S, story()), S)
    rows = {line.split()[0]: line.split()[-3:] for line in text.splitlines()[1:9]}
    assert rows["carrier_exception"] == ["1", "0", "1"]
    assert rows["ship_overdue"] == ["1", "1", "0"]
    assert rows["transit_overdue"] == ["0", "0", "0"]
    assert "物流异常" in text
    assert text.splitlines()[-1] == "events processed: 7; invalid lines: 0"


def test_main_replay_writes_issues_and_reports_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join([*story(), b'{"event_id": "e9", "status": "signed"}']) + b"\n")
    out = tmp_path / "issues.jsonl"
    assert main_replay(S, str(src), "2026-11-03T04:00:00+08:00", str(out)) == 0
    captured = capsys.readouterr()
    assert "replay: line 9: carrier: is required" in captured.err
    assert "clock stopped at 2026-11-02T20:00:00Z" in captured.out
    issues = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [(i["issue_key"], i["resolved_at"]) for i in issues] == [("ZTO:1|carrier_exception", None)]
    for field in ("kind", "reason", "parcel", "order_id", "shop", "opened_at", "resolved_at", "severity", "evidence"):
        assert field in issues[0]


def test_main_replay_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_replay(S, str(tmp_path / "missing.jsonl"), None, None) == 2
    assert "no such file" in capsys.readouterr().err
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(story()))
    assert main_replay(S, str(src), "2026-11-05", None) == 2
    assert "replay: --until: has no timezone offset" in capsys.readouterr().err


def test_an_order_event_naming_another_shop_is_an_invalid_line_and_moves_nothing() -> None:
    """An order is one shop's: the live router dead-letters an event of it naming another shop (another
    shop's order token, an export imported under the wrong shop), and a replay reports its line."""
    lines = [
        bare(order("paid", T0)),
        bare(order("shipped", T0 + H, carrier="ZTO", tracking_number="1")),
        bare({**order("closed", T0 + 2 * H), "shop": "shop-b"}),
        bare(scan("exception", T0 + 3 * H, exception_reason="lost")),
    ]
    result = replay(S, lines)
    assert [(n, problem) for n, problem in result.invalid] == [(3, "shop: the order belongs to another shop")]
    assert result.events == 3
    assert {i["shop"] for i in result.issues.values()} == {"shop-a"}
    assert any(i["kind"] == "carrier_exception" for i in result.issues.values())
