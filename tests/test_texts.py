"""What staff read, rendered from an issue's structured fields: natural Chinese by default, English on
request, for every kind the detectors raise, and graceful when a value is missing."""

from __future__ import annotations

import re
from typing import Any

import pytest

import config
from detectors import DetectorContext, LaneBaselines
from detectors import rules as r
from domain.state import ParcelState
from domain.vocabulary import ISSUE_KINDS
from issue_queue import texts

T0 = 1_793_584_800.0  # 2026-11-02 10:00 China time
H = 3600.0
D = 24 * H
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


@pytest.fixture(scope="module")
def ctx(settings: config.Settings) -> DetectorContext:
    return DetectorContext(settings, LaneBaselines(settings.lanes))


def findings(ctx: DetectorContext) -> dict[str, dict[str, Any]]:
    """One real finding per kind, as the detectors make them, turned into issue documents."""
    base: dict[str, Any] = {"order_id": "TB1", "shop": "shop-a", "platform": "douyin", "origin_province": "广东",
            "destination_province": "新疆", "destination_city": "乌鲁木齐市"}
    states = {
        "ship_overdue": (ParcelState(**base, paid_at=T0), T0 + 50 * H),
        "pickup_overdue": (ParcelState(**base, paid_at=T0, shipped_at=T0), T0 + 30 * H),
        "transit_overdue": (ParcelState(**base, shipped_at=T0, picked_up_at=T0 + H, first_scan_at=T0 + H,
                                        last_scan_at=T0 + 2 * H, status="in_transit"), T0 + 9 * D),
        "tracking_stale": (ParcelState(**base, shipped_at=T0, picked_up_at=T0 + H, first_scan_at=T0 + H,
                                       last_scan_at=T0 + 2 * H, status="in_transit", last_city="兰州市"), T0 + 3 * D),
        "confirmed_unsigned": (ParcelState(**base, shipped_at=T0, picked_up_at=T0 + H, first_scan_at=T0 + H,
                                           last_scan_at=T0 + H, status="in_transit", confirmed_at=T0 + 3 * D), T0 + 3 * D),
        "autoconfirm_imminent": (ParcelState(**base, shipped_at=T0, status="in_transit"), T0 + 9 * D),
        "locker_uncollected": (ParcelState(**base, shipped_at=T0, picked_up_at=T0 + H, first_scan_at=T0 + H,
                                           last_scan_at=T0 + 2 * D, at_locker_at=T0 + 2 * D, status="at_locker",
                                           last_city="乌鲁木齐市"), T0 + 5 * D),
        "carrier_exception": (ParcelState(**base, shipped_at=T0, picked_up_at=T0 + H, first_scan_at=T0 + H,
                                          last_scan_at=T0 + 2 * D, exception_at=T0 + 2 * D, exception_reason="out_of_area",
                                          last_city="乌鲁木齐市"), T0 + 2 * D),
    }
    rules = {"ship_overdue": r.ship_overdue, "pickup_overdue": r.pickup_overdue,
             "confirmed_unsigned": r.confirmed_unsigned, "autoconfirm_imminent": r.autoconfirm_imminent,
             "locker_uncollected": r.locker_uncollected, "carrier_exception": r.carrier_exception}
    out = {}
    for kind, (state, now) in states.items():
        if kind == "transit_overdue":
            check = r.transit_overdue(state, now, ctx, "ZTO")
        elif kind == "tracking_stale":
            check = r.tracking_stale(state, now, ctx, "ZTO")
        else:
            check = rules[kind](state, now, ctx)
        finding = check.finding
        assert finding is not None, kind
        reason, evidence, action, data = finding.texts()
        out[kind] = {**base, "kind": kind, "carrier": "ZTO", "reason": reason, "evidence": evidence,
                     "suggested_action": action, "evidence_data": data, "exception_reason": finding.exception_reason}
    # Raised by the subscriptions registrar, not a detector: its evidence as the registrar records it.
    out["tracking_unregistered"] = {**base, "kind": "tracking_unregistered", "carrier": "ZTO",
                                    "evidence_data": {"aggregator": "kuaidi100", "code": "700",
                                                      "message": "订阅方的订阅数据存在错误", "attempts": 1,
                                                      "refused": True, "answered_at": T0}}
    return out


def test_every_kind_reads_in_chinese_with_its_values(ctx: DetectorContext, settings: config.Settings) -> None:
    issues = findings(ctx)
    assert set(issues) == set(ISSUE_KINDS)
    for kind, issue in issues.items():
        text = texts.render(issue, settings.labels)
        for part in (text.reason, text.evidence, text.suggested_action):
            assert part and CJK.search(part), (kind, part)
            # No English word slips into the Chinese text (times, numbers and 驿站-style words only).
            assert not LATIN_WORD.search(part), (kind, part)
    show = {k: texts.render(i, settings.labels) for k, i in issues.items()}
    assert show["ship_overdue"].reason == "付款后 48 小时仍未发货"
    assert show["ship_overdue"].evidence == "付款 2026-11-02 10:00，最晚发货时间 2026-11-04 10:00"
    assert show["pickup_overdue"].reason == "发货后 24 小时仍无揽收记录"
    assert show["pickup_overdue"].evidence.startswith("发货 2026-11-02 10:00，揽收时限 24 小时")
    assert show["transit_overdue"].reason.startswith("揽收后超过正常时效（")
    assert show["tracking_stale"].reason == "运输中超过 48 小时没有新物流"
    assert show["tracking_stale"].evidence == "最后一条物流 2026-11-02 12:00"
    assert show["confirmed_unsigned"].reason == "买家已确认收货，但包裹未签收"
    assert "快递状态：运输中" in show["confirmed_unsigned"].evidence
    assert show["autoconfirm_imminent"].evidence.startswith("确认收货时间 2026-11-12 10:00（抖店默认确认收货时间）")
    assert show["locker_uncollected"].evidence == "2026-11-04 10:00 放入驿站/快递柜（乌鲁木齐市）"
    assert show["carrier_exception"].reason == "物流异常：超区"
    assert show["carrier_exception"].evidence == "快递公司 2026-11-04 10:00 报告超区（乌鲁木齐市）"
    assert show["carrier_exception"].suggested_action.startswith("告诉买家到附近网点自取")
    assert show["tracking_unregistered"].reason == "快递100拒绝订阅这个运单的物流"
    assert show["tracking_unregistered"].evidence == "快递100答复：700 订阅方的订阅数据存在错误，第 1 次尝试，2026-11-02 10:00"


def test_english_on_request(ctx: DetectorContext, settings: config.Settings) -> None:
    for kind, issue in findings(ctx).items():
        text = texts.render(issue, settings.labels, "en")
        for part in (text.reason, text.evidence, text.suggested_action):
            # (Place names and a vendor's own answer are data, shown as written.)
            assert part and not CJK.search(re.sub("乌鲁木齐市|订阅方的订阅数据存在错误", "", part)), (kind, part)
    issue = findings(ctx)["carrier_exception"]
    assert texts.render(issue, settings.labels, "en").reason == "Carrier exception: Outside delivery area"


def test_missing_values_leave_their_phrase_out(settings: config.Settings) -> None:
    """An older issue, or a detector that records other values, still reads as plain Chinese."""
    bare = {"kind": "transit_overdue", "evidence_data": {"picked_up_at": T0, "blend": {"lane": 0.4}}}
    text = texts.render(bare, settings.labels)
    assert text.reason == "超过线路正常时效仍未签收"
    assert text.evidence == "揽收 2026-11-02 10:00"
    nothing = texts.render({"kind": "tracking_stale", "evidence": "last scan 2026-11-02 10:00"}, settings.labels)
    assert nothing.reason == "物流长时间没有更新" and nothing.evidence == ""
    unknown = texts.render({"kind": "lane_incident", "evidence_data": {"deadline": T0}}, settings.labels)
    assert (unknown.reason, unknown.evidence) == ("lane_incident", "期限 2026-11-02 10:00")


def test_tracking_stale_takes_its_place_from_the_newest_scan(settings: config.Settings) -> None:
    issue = {"kind": "tracking_stale", "evidence_data": {"last_scan_at": T0, "limit_hours": 24.0, "stage": "out for delivery"},
             "scans": [{"at": "2026-11-02T02:00:00Z", "status": "out_for_delivery", "text": "派件中", "place": "杭州市"}]}
    text = texts.render(issue, settings.labels)
    assert (text.reason, text.evidence) == ("派件中超过 24 小时没有新物流", "最后一条物流 2026-11-02 10:00（杭州市）")


def test_history_lines_names_and_errors() -> None:
    opened = {"at": "2026-11-02T02:00:00Z", "by": "stream", "action": "opened", "severity": "high", "reason": "x"}
    assert texts.history_text(opened) == "2026-11-02 10:00 系统 发现问题（高）"
    assert texts.history_text(opened, "en") == "2026-11-02 10:00 system Raised (High)"
    auto = {"at": "2026-11-03T02:00:00Z", "by": "stream", "action": "auto_resolved", "resolution": "signed"}
    assert texts.history_text(auto) == "2026-11-03 10:00 系统 自动解决：已签收"
    staff = {"at": "2026-11-03T03:00:00Z", "by": "小李", "action": "resolve", "resolution_code": "reshipped", "note": "补发顺丰"}
    assert texts.history_text(staff) == "2026-11-03 11:00 小李 标记解决：已补发。备注：补发顺丰"
    machine = {"at": "2026-11-03T03:00:00Z", "by": "token:1a2b3c4d", "action": "acknowledge", "on_behalf_of": "erp"}
    assert texts.history_text(machine) == "2026-11-03 11:00 接口令牌 1a2b3c4d（代 erp） 确认处理"
    assert texts.history_line({"action": "severity_changed", "from": "medium", "to": "high"}) == "严重程度 中 → 高"
    assert texts.history_line({"action": "assign", "assignee": "小王"}, "en") == "Assigned to 小王"
    assert texts.platform_name("douyin") == "抖店" and texts.platform_name("taobao", "en") == "Taobao"
    assert texts.carrier_name("JTEXPRESS") == "极兔速递" and texts.carrier_name("kuaidi100:fengwang") == "kuaidi100:fengwang"
    assert texts.tracking_url("ZTO", "73100012345678") == "https://www.kuaidi100.com/chaxun?com=zhongtong&nu=73100012345678"
    assert texts.tracking_url("kuaidi100:fengwang", "FW1") == "https://www.kuaidi100.com/chaxun?com=fengwang&nu=FW1"
    assert texts.tracking_url("ACME", "1") is None and texts.tracking_url("ZTO", "1&x=<") is None
    assert texts.duration(30) == "30 小时" and texts.duration(78) == "3 天 6 小时" and texts.duration(54) == "54 小时"
    assert texts.duration(0.5) == "30 分钟"
    assert texts.duration(2.25, "en") == "2.2 h" and texts.duration(None) == ""
    assert texts.error_text("conflict", status="resolved", action="resolve") == "这个问题已解决，不能再解决"
    assert texts.error_text("conflict", "en", status="auto_resolved", action="assign") == \
        "This issue is already resolved by itself; it cannot be assigned"
    assert texts.error_text("redis", cause=texts.error_text("redis_timeout")) == "问题队列暂时无法读取：Redis 没有响应。请稍后重试"
