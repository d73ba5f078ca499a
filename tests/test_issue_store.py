"""The Redis issue queue against a real Redis server: idempotent stream writes, staff lifecycle,
shop scoping, exact counts, the day's queue from history, and the Excel CSV."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any, TypeVar

import pytest

import config
from devtools.redis_server import RedisServer
from domain.events import InvalidEvent, format_time
from domain.vocabulary import china_day_bounds
from issue_queue.access import Access, AccessDenied, visible_shops
from issue_queue.store import IssueStore, check_issue_event, issue_id
from issue_queue.views import table, to_csv

pytestmark = pytest.mark.integration
T = TypeVar("T")

DAY = date(2026, 11, 3)
START, END = china_day_bounds(DAY)  # 2026-11-03 00:00 China time


def run(redis_server: RedisServer, fn: Callable[[IssueStore], Awaitable[T]]) -> T:
    async def go() -> T:
        store = IssueStore.from_url(redis_server.url)
        try:
            return await fn(store)
        finally:
            await store.redis.aclose()

    return asyncio.run(go())


def event(action: str, opened: float, at: float | None = None, *, key: str = "ZTO:7310001|pickup_overdue",
          shop: str = "shop-a", severity: str = "medium", **extra: Any) -> dict[str, Any]:
    subject, kind = key.split("|")
    return {
        "action": action, "issue_key": key, "kind": kind, "subject": subject, "parcel": subject,
        "carrier": subject.split(":")[0], "tracking_number": subject.split(":")[1], "order_id": "TB1",
        "shop": shop, "platform": "taobao", "lane": f"{subject.split(':')[0]} 广东→新疆", "reason": "no carrier scan 24.0 h after shipping",
        "severity": severity, "evidence": "shipped 2026-11-02 10:00", "suggested_action": "push the carrier",
        "opened_at": format_time(opened), "at": format_time(at if at is not None else opened),
        "resolved_at": format_time(at) if action == "resolve" else None,
        "resolution": "picked_up" if action == "resolve" else None, "order_value": 129.0, **extra,
    }


@pytest.mark.parametrize(("broken", "field", "problem"), [
    ({"action": "explode"}, "action", "must be one of open, update, resolve"),
    ({"shop": None}, "shop", "is required"),
    ({"severity": ""}, "severity", "is required"),
    ({"issue_key": 7}, "issue_key", "is required"),
    ({"opened_at": "yesterday"}, "opened_at", "is not an ISO 8601 time"),
    ({"at": "2026-11-02T10:00:00"}, "at", "has no timezone offset"),
])
def test_an_invalid_issue_event_is_refused_before_anything_is_written(
        redis_server: RedisServer, broken: dict[str, Any], field: str, problem: str) -> None:
    """Each of these once failed the Lua script (or the sink) mid-pipeline, and the sink retried it for ever."""
    bad = {**event("open", START + 60, key="ZTO:7310009|pickup_overdue"), **broken}
    with pytest.raises(InvalidEvent) as caught:
        check_issue_event(bad)
    assert (caught.value.field, problem in caught.value.problem) == (field, True)
    with pytest.raises(InvalidEvent):
        run(redis_server, lambda store: store.apply_events([event("open", START + 60), bad]))
    assert run(redis_server, lambda store: store.get(issue_id("ZTO:7310001|pickup_overdue"))) is None
    with pytest.raises(InvalidEvent, match="must be a JSON object"):
        check_issue_event(["open"])


def test_redelivered_stream_events_change_nothing(redis_server: RedisServer) -> None:
    t = START + 3600
    evs = [event("open", t), event("update", t, t + 100, severity="high"), event("resolve", t, t + 200)]

    async def go(store: IssueStore) -> tuple[list[str], list[str], dict[str, Any] | None, Any]:
        first = await store.apply_events(evs)
        again = await store.apply_events(evs + evs[:1])  # at-least-once: all of it again
        return first, again, await store.get(issue_id(evs[0]["issue_key"])), await store.counts()

    first, again, doc, counts = run(redis_server, go)
    assert first == ["opened", "updated", "auto_resolved"]
    assert again == ["duplicate", "stale", "duplicate", "duplicate"]
    assert doc is not None and doc["status"] == "auto_resolved" and doc["severity"] == "high"
    assert [h["action"] for h in doc["history"]] == ["opened", "severity_changed", "auto_resolved"]
    assert counts == {("shop-a", "pickup_overdue", "auto_resolved"): 1}


def test_a_batch_longer_than_one_script_call_is_applied_in_order_across_calls(redis_server: RedisServer) -> None:
    """apply_events cuts a batch into script calls of EVENTS_PER_CALL events: one subject's open, update
    and resolve landing in different calls still apply in order, each with its own result."""
    from issue_queue import store as issue_store

    per_call = issue_store.EVENTS_PER_CALL
    t = START + 3600
    filler = [event("open", t, key=f"ZTO:73{i:05d}|pickup_overdue") for i in range(2 * per_call + 10)]
    watched = "ZTO:7399999|pickup_overdue"
    evs = [event("open", t, key=watched), *filler[:per_call], event("update", t, t + 100, key=watched, severity="high"),
           *filler[per_call:], event("resolve", t, t + 200, key=watched), event("open", t, key=watched)]

    async def go(store: IssueStore) -> tuple[list[str], dict[str, Any] | None, dict[tuple[str, str, str], int]]:
        return await store.apply_events(evs), await store.get(issue_id(watched)), await store.counts()

    results, doc, counts = run(redis_server, go)
    assert len(evs) > 2 * per_call  # three calls at least
    assert results == ["opened", *["opened"] * per_call, "updated", *["opened"] * (per_call + 10), "auto_resolved",
                       "duplicate"]
    assert doc is not None and doc["status"] == "auto_resolved" and doc["severity"] == "high"
    assert [h["action"] for h in doc["history"]] == ["opened", "severity_changed", "auto_resolved"]
    assert counts[("shop-a", "pickup_overdue", "open")] == len(filler)
    assert counts[("shop-a", "pickup_overdue", "auto_resolved")] == 1
    assert run(redis_server, lambda store: store.apply_events([])) == []


def test_an_issue_opened_at_a_time_with_microseconds_is_updated_and_resolved(redis_server: RedisServer) -> None:
    # Deadlines come from event times (microseconds); Redis's cjson keeps 14 significant digits of the
    # stored opened_ts, so an exact comparison dropped every later update and resolve as stale.
    t = START + 3600.455486

    async def go(store: IssueStore) -> tuple[list[str], list[str]]:
        evs = [event("open", t), event("update", t, t + 100, severity="high"), event("resolve", t, t + 200)]
        return await store.apply_events(evs), await store.apply_events(evs[:1])

    assert run(redis_server, go) == (["opened", "updated", "auto_resolved"], ["duplicate"])


def test_condition_returning_reopens_the_same_issue_with_history(redis_server: RedisServer) -> None:
    t = START + 3600

    async def go(store: IssueStore) -> dict[str, Any] | None:
        await store.apply_events([event("open", t), event("resolve", t, t + 60), event("open", t + 7200)])
        return await store.get(issue_id("ZTO:7310001|pickup_overdue"))

    doc = run(redis_server, go)
    assert doc is not None and doc["status"] == "open" and doc["reopened"] == 1
    assert doc["opened_at"] == format_time(t + 7200)
    assert [h["action"] for h in doc["history"]] == ["opened", "auto_resolved", "reopened"]


@pytest.mark.parametrize("reopened_at", [-3600.0, 0.0])
def test_a_reopening_is_never_dropped_whatever_its_opened_at(redis_server: RedisServer, reopened_at: float) -> None:
    """A period that begins after the last one ended is a re-opening, even when its ``opened_at`` is not
    later than the period before (a producer that back-dated it): dropping it as a duplicate left the
    issue auto-resolved in the queue while the parcel was still overdue. A re-delivered event of the
    ended period (its ``at`` is not after the end) is still a duplicate."""
    t = START + 7200
    key = "ZTO:7310001|transit_overdue"
    first = [event("open", t, key=key), event("resolve", t, t + 600, key=key)]
    # Re-opened two hours after the resolution, with an opened_at at or before the first period's.
    again = event("open", t + reopened_at, t + 600 + 7200, key=key)

    async def go(store: IssueStore) -> tuple[list[str], list[str], dict[str, Any] | None]:
        applied = await store.apply_events([*first, again])
        redelivered = await store.apply_events([*first, again, event("resolve", t + reopened_at, t + 9000, key=key)])
        return applied, redelivered, await store.get(issue_id(key))

    applied, redelivered, doc = run(redis_server, go)
    assert applied == ["opened", "auto_resolved", "reopened"]
    assert redelivered == ["duplicate", "stale", "duplicate", "auto_resolved"]
    assert doc is not None and doc["status"] == "auto_resolved" and doc["reopened"] == 1
    assert [h["action"] for h in doc["history"]] == ["opened", "auto_resolved", "reopened", "auto_resolved"]


def test_staff_lifecycle_and_illegal_transitions(redis_server: RedisServer) -> None:
    t = START + 3600
    iid = issue_id("ZTO:7310001|pickup_overdue")
    other = issue_id("ZTO:7310002|carrier_exception")

    async def go(store: IssueStore) -> list[dict[str, Any]]:
        await store.apply_events([event("open", t), event("open", t, key="ZTO:7310002|carrier_exception")])
        out = [
            await store.staff_action(iid, "acknowledge", {"by": "xiaoli"}, t + 10, ["shop-a"]),
            await store.staff_action(iid, "assign", {"by": "xiaoli", "assignee": "xiaoli"}, t + 20, ["shop-a"]),
            await store.staff_action(iid, "resolve", {"by": "xiaoli", "resolution_code": "contacted_buyer",
                                                      "note": "buyer informed"}, t + 30, ["shop-a"]),
            await store.staff_action(iid, "resolve", {"by": "xiaoli", "resolution_code": "refunded"}, t + 40, ["shop-a"]),
            await store.staff_action("0000000000000000", "acknowledge", {"by": "x"}, t, ["*"]),
            await store.staff_action(other, "acknowledge", {"by": "x"}, t, ["shop-b"]),  # another shop's issue
        ]
        # An auto-resolved issue cannot be resolved by staff.
        await store.apply_events([event("resolve", t, t + 50, key="ZTO:7310002|carrier_exception")])
        out.append(await store.staff_action(other, "resolve", {"by": "x", "resolution_code": "other"}, t + 60, ["*"]))
        doc = await store.get(iid)
        assert doc is not None
        out.append(doc)
        return out

    ack, assign, resolve, again, missing, foreign, auto, doc = run(redis_server, go)
    assert ack == {"ok": True, "status": "acknowledged"}
    assert assign["ok"] and resolve == {"ok": True, "status": "resolved"}
    assert again["error"] == "conflict" and again["current"] == "resolved"
    assert missing["error"] == "not_found"
    assert foreign["error"] == "not_found"  # a token for shop-b learns nothing about shop-a
    assert auto["error"] == "conflict" and auto["current"] == "auto_resolved"
    assert doc["assignee"] == "xiaoli" and doc["resolution_code"] == "contacted_buyer" and doc["note"] == "buyer informed"
    assert [(h["action"], h["by"]) for h in doc["history"]] == [
        ("opened", "stream"), ("acknowledge", "xiaoli"), ("assign", "xiaoli"), ("resolve", "xiaoli")]


def test_stream_resolution_after_staff_resolution_keeps_staff_decision(redis_server: RedisServer) -> None:
    t = START + 3600
    iid = issue_id("ZTO:7310001|pickup_overdue")

    async def go(store: IssueStore) -> tuple[str, dict[str, Any] | None]:
        await store.apply_events([event("open", t)])
        await store.staff_action(iid, "resolve", {"by": "x", "resolution_code": "reshipped"}, t + 5, ["*"])
        result = await store.apply_event(event("resolve", t, t + 60))
        return result, await store.get(iid)

    result, doc = run(redis_server, go)
    assert result == "duplicate"
    assert doc is not None and doc["status"] == "resolved" and doc["resolution_code"] == "reshipped"


def test_queue_order_filters_and_exact_counts(redis_server: RedisServer) -> None:
    t = START + 3600
    evs = [
        event("open", t + 300, key="ZTO:1|pickup_overdue", severity="low"),
        event("open", t + 200, key="ZTO:2|carrier_exception", severity="critical"),
        event("open", t + 100, key="ZTO:3|pickup_overdue", severity="medium"),
        event("open", t, key="ZTO:4|tracking_stale", severity="medium", shop="shop-b"),
    ]

    async def go(store: IssueStore) -> Any:
        await store.apply_events(evs)
        prio = await store.query(shops=["shop-a"])
        age = await store.query(shops=["shop-a"], order="age")
        kind = await store.query(shops=["shop-a", "shop-b"], kind="pickup_overdue")
        page = await store.query(shops=["shop-a"], offset=1, limit=1)
        return prio, age, kind, page, await store.open_counts(), await store.shops()

    prio, age, kind, page, open_counts, shops = run(redis_server, go)
    assert [i["subject"] for i in prio.issues] == ["ZTO:2", "ZTO:3", "ZTO:1"]  # severity, then age
    assert [i["subject"] for i in age.issues] == ["ZTO:3", "ZTO:2", "ZTO:1"]
    assert kind.total == 2 and kind.by_kind == {"pickup_overdue": 2, "carrier_exception": 1, "tracking_stale": 1}
    assert page.total == 3 and [i["subject"] for i in page.issues] == ["ZTO:3"]
    assert open_counts[("pickup_overdue", "medium", "ZTO")] == 1
    assert sum(open_counts.values()) == 4
    assert shops == ["shop-a", "shop-b"]


def test_daily_queue_for_a_past_day_from_history(redis_server: RedisServer) -> None:
    evs = [
        # open before the day, resolved during it: in the day's queue
        event("open", START - 86400, key="ZTO:1|tracking_stale"),
        event("resolve", START - 86400, START + 3600, key="ZTO:1|tracking_stale"),
        # resolved before the day: not in it
        event("open", START - 86400, key="ZTO:2|tracking_stale"),
        event("resolve", START - 86400, START - 60, key="ZTO:2|tracking_stale"),
        # opened during the day, still open: in it
        event("open", START + 7200, key="ZTO:3|carrier_exception"),
        # opened the next day: not in it
        event("open", END + 60, key="ZTO:4|carrier_exception"),
        # open since before the day, never resolved: in it
        event("open", START - 3 * 86400, key="ZTO:5|pickup_overdue"),
    ]

    async def go(store: IssueStore) -> list[str]:
        await store.apply_events(evs)
        result = await store.query(shops=["shop-a"], statuses=None, day=(START, END), order="age")
        return [i["subject"] for i in result.issues]

    assert run(redis_server, go) == ["ZTO:5", "ZTO:1", "ZTO:3"]


def test_csv_opens_in_excel_with_chinese_headers_and_safe_cells(settings: config.Settings) -> None:
    issue = {
        "id": "abc", "shop": "店铺A", "platform": "taobao", "order_id": "=HYPERLINK(\"x\")",
        "carrier": "ZTO", "tracking_number": "73100012345678", "lane": "ZTO 广东→新疆", "kind": "pickup_overdue",
        "reason": "揽收超时 30 h", "severity": "high", "evidence": "发货 2026-11-02 10:00", "suggested_action": "催揽收",
        "status": "acknowledged", "assignee": "小李", "opened_at": "2026-11-03T02:00:00Z",
        "updated_at": "2026-11-03T03:00:00Z", "resolution_code": None, "note": None,
    }
    body = to_csv([issue], settings, "zh")
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the Chinese text right
    rows = list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))
    assert rows[0][:6] == ["问题编号", "店铺", "平台", "订单号", "快递公司", "运单号"]
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["问题类型"] == "揽收超时" and row["严重程度"] == "高" and row["状态"] == "处理中"
    assert row["运单号"] == '="73100012345678"'  # stays text, not 7.31E+13
    assert row["订单号"].startswith("'=")  # never a formula
    for bait in ("＝HYPERLINK(\"x\")", " =1+1", "\u200b=1+1", "＋1", "＠SUM(1)", "\n=1"):
        cells = list(csv.reader(io.StringIO(to_csv([{**issue, "order_id": bait}], settings, "zh")[3:].decode())))[1]
        assert cells[rows[0].index("订单号")] == "'" + bait, bait
    assert row["发现时间"] == "2026-11-03 10:00"  # China time
    en = list(csv.reader(io.StringIO(to_csv([issue], settings, "en")[3:].decode())))
    assert en[0][0] == "Issue id" and en[1][en[0].index("Kind")] == "Pickup overdue"


def test_the_terminal_table_prints_no_control_characters(settings: config.Settings) -> None:
    """``app.py queue`` prints text from outside: an escape sequence in it must not reach the terminal."""
    issue = {"id": "abc", "shop": "shop-a", "platform": "taobao", "order_id": "TB1\x1b[2J\x1b]0;owned\x07\nX",
             "carrier": "ZTO", "tracking_number": "7310001", "kind": "pickup_overdue", "severity": "high",
             "status": "open", "opened_at": "2026-11-03T02:00:00Z"}
    printed = table([issue], settings, "en")
    assert "\x1b" not in printed and "\x07" not in printed and len(printed.splitlines()) == 2
    assert "TB1[2J]0;ownedX" in printed


def test_tokens_are_scoped_to_shops() -> None:
    access = Access({"tok-a": ["shop-a"], "tok-all": ["*"]})
    assert access.read_scope("tok-a") == ["shop-a"]
    assert visible_shops(access.read_scope("tok-a"), ["shop-a", "shop-b"], None) == ["shop-a"]
    assert visible_shops(access.read_scope("tok-a"), ["shop-a", "shop-b"], "shop-b") == []
    assert visible_shops(access.read_scope("tok-all"), ["shop-a", "shop-b"], None) == ["shop-a", "shop-b"]
    with pytest.raises(AccessDenied):
        access.write_scope("wrong")
    with pytest.raises(AccessDenied):
        access.read_scope(None)
    with pytest.raises(AccessDenied):
        Access({}).write_scope("anything")  # no tokens configured: no writes at all
    assert Access({}).read_scope(None) == ["*"]
    assert "tok-a" not in Access.label("tok-a")
    # A header's undecodable bytes (aiohttp hands them on as surrogates) are a wrong token, not a crash (500).
    with pytest.raises(AccessDenied):
        access.read_scope(b"\xff\xfe".decode("utf-8", "surrogateescape"))


def test_an_issue_without_a_carrier_is_counted_under_an_empty_carrier(redis_server: RedisServer) -> None:
    """An order's ship_overdue has no parcel yet, so no carrier (JSON null): its open count once went under
    the label "userdata: (nil)" (Lua's tostring of cjson.null)."""
    order_issue = {**event("open", START + 60, key="ORDER:TB9|ship_overdue"), "parcel": None, "carrier": None,
                   "tracking_number": None, "lane": None}

    async def go(store: IssueStore) -> Any:
        await store.apply_events([order_issue])
        counted = await store.open_counts()
        raw = await store.redis.hgetall("pw:open")
        return counted, {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

    counted, raw = run(redis_server, go)
    assert counted == {("ship_overdue", "medium", ""): 1}
    assert raw == {"ship_overdue|medium|": 1}


def test_counts_left_under_the_old_nil_label_are_read_with_the_new_one(redis_server: RedisServer) -> None:
    # Opened before the fix (counted under "userdata: (nil)"), resolved after it (uncounted under ""): none open.
    opened = {**event("open", START + 60, key="ORDER:TB8|ship_overdue"), "parcel": None, "carrier": None,
              "tracking_number": None}

    async def go(store: IssueStore) -> Any:
        await store.apply_events([opened])
        await store.redis.hdel("pw:open", "ship_overdue|medium|")
        await store.redis.hset("pw:open", "ship_overdue|medium|userdata: (nil)", 1)
        before = await store.open_counts()
        await store.apply_events([{**opened, "action": "resolve", "at": format_time(START + 120),
                                   "resolved_at": format_time(START + 120), "resolution": "shipped"}])
        return before, await store.open_counts()

    before, after = run(redis_server, go)
    assert before == {("ship_overdue", "medium", ""): 1}
    assert after == {}


def test_a_new_broker_lifetime_marks_every_active_issue_whose_state_is_gone(redis_server: RedisServer) -> None:
    t = START + 3600

    async def go(store: IssueStore) -> Any:
        await store.apply_events([
            event("open", t, key="ZTO:1|tracking_stale"),
            event("open", t, key="ZTO:2|carrier_exception", shop="shop-b"),
            event("open", t, key="ZTO:3|pickup_overdue"), event("resolve", t, t + 60, key="ZTO:3|pickup_overdue"),
        ])
        await store.staff_action(issue_id("ZTO:2|carrier_exception"), "acknowledge", {"by": "li"}, t + 10, ["*"])
        first = await store.reconcile_broker_lifetime("lifetime-a", t + 100)  # the first one recorded
        unchanged = await store.open_counts()
        marked = await store.reconcile_broker_lifetime("lifetime-b", t + 200)  # the broker came back empty
        again = await store.reconcile_broker_lifetime("lifetime-b", t + 300)  # another worker of the group
        docs = {i: await store.get(issue_id(i)) for i in ("ZTO:1|tracking_stale", "ZTO:2|carrier_exception",
                                                          "ZTO:3|pickup_overdue")}
        active = await store.query(shops=["shop-a", "shop-b"])
        counts = await store.open_counts()
        # The problem persists: the new lifetime's states raise it again, and the issue reopens.
        [reopened] = await store.apply_events([event("open", t + 400, key="ZTO:1|tracking_stale")])
        return first, unchanged, marked, again, docs, active, counts, reopened

    first, unchanged, marked, again, docs, active, counts, reopened = run(redis_server, go)
    assert first is None and sum(unchanged.values()) == 2
    assert marked == 2 and again is None
    for key in ("ZTO:1|tracking_stale", "ZTO:2|carrier_exception"):
        doc = docs[key]
        assert (doc["status"], doc["resolution"], doc["resolved_at"]) == ("auto_resolved", "state_lost",
                                                                          format_time(t + 200)), key
        assert (doc["history"][-1]["action"], doc["history"][-1]["resolution"]) == ("auto_resolved", "state_lost")
    assert docs["ZTO:3|pickup_overdue"]["resolution"] == "picked_up"  # already ended: untouched
    assert active.total == 0 and counts == {}
    assert reopened == "reopened"


def test_query_pages_with_totals_and_counts_every_filter_would_give(redis_server: RedisServer) -> None:
    t = START + 3600
    evs = [event("open", t + i, key=f"ZTO:9{i:03d}|carrier_exception", severity="critical") for i in range(96)]
    evs += [event("open", t + 200 + i, key=f"YTO:8{i:03d}|pickup_overdue", shop="shop-b" if i % 2 else "shop-a")
            for i in range(104)]

    async def go(store: IssueStore) -> list[Any]:
        await store.apply_events(evs)
        first = await store.query(shops=["shop-a", "shop-b"], limit=100)
        second = await store.query(shops=["shop-a", "shop-b"], offset=100, limit=100)
        narrowed = await store.query(shops=["shop-a", "shop-b"], shop="shop-b", severity="medium", limit=5)
        yto = await store.query(shops=["shop-a", "shop-b"], carrier="YTO", since=t + 250, order="age", limit=3)
        return [first, second, narrowed, yto]

    first, second, narrowed, yto = run(redis_server, go)
    assert first.total == 200 and len(first.issues) == 100
    assert {i["kind"] for i in first.issues} == {"carrier_exception", "pickup_overdue"}  # the 104 are reachable
    assert len({i["id"] for i in first.issues + second.issues}) == 200
    assert first.by_kind == {"carrier_exception": 96, "pickup_overdue": 104}
    assert first.by_severity == {"critical": 96, "medium": 104}
    assert first.by_shop == {"shop-a": 148, "shop-b": 52}
    # Each count is what clicking it would give: the other filters kept, its own dropped.
    assert narrowed.total == 52 and len(narrowed.issues) == 5
    assert narrowed.by_shop == {"shop-a": 52, "shop-b": 52} and narrowed.by_severity == {"medium": 52}
    assert narrowed.by_kind == {"pickup_overdue": 52}
    assert yto.total == 104 and yto.new == 104 - 51 and [i["tracking_number"] for i in yto.issues] == ["8000", "8001", "8002"]


def test_search_finds_an_order_id_or_a_tracking_number_through_the_index(redis_server: RedisServer) -> None:
    t = START + 3600
    evs = [event("open", t, key="ZTO:73100012345678|pickup_overdue", order_id="TB2026110300001"),
           event("open", t, key="ZTO:73100012345678|tracking_stale", order_id="TB2026110300001"),
           event("open", t, key="YT:yt9988|carrier_exception", order_id="DD1", shop="shop-b"),
           event("resolve", t, t + 60, key="ZTO:73100012345678|tracking_stale", order_id="TB2026110300001")]

    async def go(store: IssueStore) -> list[Any]:
        await store.apply_events(evs)
        by_order = await store.query(shops=["shop-a", "shop-b"], statuses=None, search=" TB2026110300001 ")
        by_number = await store.query(shops=["shop-a"], statuses=None, search="ZTO:73100012345678")
        active_only = await store.query(shops=["shop-a"], search="73100012345678")
        upper = await store.query(shops=["shop-a", "shop-b"], statuses=None, search="YT9988")
        foreign = await store.query(shops=["shop-a"], statuses=None, search="DD1")
        none = await store.query(shops=["shop-a"], statuses=None, search="nothing-like-it")
        return [by_order, by_number, active_only, upper, foreign, none]

    by_order, by_number, active_only, upper, foreign, none = run(redis_server, go)
    assert by_order.total == 2 and {i["kind"] for i in by_order.issues} == {"pickup_overdue", "tracking_stale"}
    assert by_number.total == 2
    assert [i["kind"] for i in active_only.issues] == ["pickup_overdue"]  # a status filter still applies
    assert upper.total == 0  # tracking numbers are indexed as written; "yt9988" was written lower-case
    assert foreign.total == 0 and none.total == 0  # another shop's issue is never found


def test_an_issue_moved_to_its_shop_and_order_leaves_nothing_under_the_old_ones(redis_server: RedisServer) -> None:
    """Issues open under 'unknown' until the order's facts reach the parcel, then an update names the shop and
    order. The old shop's day history and the old order's search entry kept the issue: a resolved issue came
    back in every later day's queue of a caller seeing both shops, and a search for the old order found it."""
    t = START + 3600
    evs = [event("open", t, shop="unknown", order_id=None),
           event("update", t, t + 60, order_id="TB7"),
           event("update", t, t + 90, order_id="TB8"),
           event("resolve", t, t + 120, order_id="TB8")]

    async def go(store: IssueStore) -> list[Any]:
        await store.apply_events(evs)
        later_day = await store.query(shops=["shop-a", "unknown"], statuses=None, day=(END + 86400, END + 2 * 86400))
        old_order = await store.query(shops=["shop-a", "unknown"], statuses=None, search="TB7")
        new_order = await store.query(shops=["shop-a"], statuses=None, search="TB8")
        return [later_day.total, old_order.total, new_order.total,
                await store.redis.zrange("pw:opened:unknown", 0, -1), await store.redis.zrange("pw:resolved:shop-a", 0, -1)]

    later, old_order, new_order, opened_unknown, resolved_a = run(redis_server, go)
    assert (later, old_order, new_order, opened_unknown, len(resolved_a)) == (0, 0, 1, [], 1)


def test_a_reopening_names_the_shop_and_order_the_parcel_has_now(redis_server: RedisServer) -> None:
    t = START + 3600
    evs = [event("open", t, shop="unknown", order_id=None),
           event("resolve", t, t + 60, shop="unknown", order_id=None),
           event("open", t + 3600, order_id="TB9")]

    async def go(store: IssueStore) -> tuple[Any, int]:
        results = await store.apply_events(evs)
        page = await store.query(shops=["shop-a"], statuses=None, search="TB9")
        return results, page.total

    results, found = run(redis_server, go)
    assert results == ["opened", "auto_resolved", "reopened"] and found == 1


def test_the_parcels_story_merges_whatever_order_its_events_come_in(redis_server: RedisServer) -> None:
    t = START + 3600
    scans1 = [[t - 7200, "picked_up", "【广州市】已揽收", "广州市", None]]
    scans2 = [*scans1, [t - 60, "exception", "【乌鲁木齐市】超区，请联系收件人自提", "乌鲁木齐市", "out_of_area"]]
    key = "ZTO:7310077|carrier_exception"
    evs = [event("open", t, key=key, scans=scans1, autoconfirm_at=t + 86400.0),
           event("update", t, t + 60, key=key, scans=scans2, autoconfirm_at=t + 5 * 86400.0)]

    async def go(store: IssueStore) -> tuple[dict[str, Any], dict[str, Any], Any]:
        await store.apply_events(list(reversed(evs)))  # the newer first: the older must not win
        await store.apply_events(evs)  # and everything again
        doc = await store.get(issue_id(key))
        assert doc is not None
        page = await store.query(shops=["shop-a"], stories=True)
        return await store.story(doc), doc, page

    story, doc, page = run(redis_server, go)
    assert [s["status"] for s in story["scans"]] == ["picked_up", "exception"]
    assert story["scans"][1] == {"at": format_time(t - 60), "status": "exception", "text": "【乌鲁木齐市】超区，请联系收件人自提",
                                 "place": "乌鲁木齐市", "exception_reason": "out_of_area"}
    assert story["autoconfirm_at"] == t + 5 * 86400.0
    assert "scans" not in doc  # the story is kept beside the issue, not in it
    assert [s["status"] for s in page.issues[0]["scans"]] == ["exception"]  # a row shows the newest scan


def test_issues_written_before_rows_and_the_search_index_are_still_found(redis_server: RedisServer) -> None:
    t = START + 3600

    async def go(store: IssueStore) -> tuple[int, int, int, int, int]:
        await store.apply_events([event("open", t, key=f"ZTO:55{i}|pickup_overdue") for i in range(3)])
        await store.redis.delete("pw:row", "pw:find:551", "pw:find:TB1")  # as an older version left them
        listed = (await store.query(shops=["shop-a"])).total  # rows are made on first read
        await store.redis.delete("pw:row")
        seen = await store.backfill_indexes(batch=2)
        rows = await store.redis.hlen("pw:row")
        found = (await store.query(shops=["shop-a"], statuses=None, search="551")).total
        return listed, seen, rows, found, await store.backfill_indexes()

    assert run(redis_server, go) == (3, 3, 3, 1, 0)
