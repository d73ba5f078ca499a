"""Messages the robots take, and that say what a Chinese operations team needs: sizes measured on the encoded
request, digests most severe first with "and N more" and a link, urgent alerts first, the operator's options
(keyword, environment, proxy, @mentions, quiet hours, a link back), Chinese text.

Sent through the router to the fake robots of ``test_alerting_robots``, which refuse what the platforms
refuse. No Redis: one router's limits hold in its own process (``test_alerting_limits`` covers Redis).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
from aiohttp import web

from alerting import AlertRouter
from alerting.config import AlertConfig, DestinationConfig, Mention, OnCall, parse
from alerting.destinations import DingTalkDestination, FeishuDestination, SlackDestination, WeComDestination
from alerting.render import describe
from domain.vocabulary import CHINA_TZ
from issue_queue.store import issue_id

from .test_alerting_robots import LABELS, FakeProxy, FakeRobots, envelope, issue, run, serve

BASE = "https://pw.example.cn"
REASON_DATA = {"shipped_at": 1793584800.0, "window_hours": 24.0, "deadline": 1793671200.0}


def config(tmp: Path, destinations: dict[str, dict[str, Any]], routes: list[dict[str, Any]], **top: Any) -> AlertConfig:
    return parse({"destinations": destinations, "routes": routes, **top}, env={}, data_dir=tmp)


def route(*destinations: str, **kw: Any) -> dict[str, Any]:
    return {"name": "r", "destinations": list(destinations), **kw}


def mixed(n: int) -> dict[str, Any]:
    """An issue of a 60-issue morning: mostly low, a few high and critical arriving last."""
    severity = "critical" if n >= 57 else "high" if n >= 50 else "low"
    return issue(n, severity=severity, opened_at=f"2026-11-03T{n // 10:02d}:{n % 60:02d}:00Z")


# -- sizes and digests -------------------------------------------------------------------------------------------------


def test_a_feishu_post_digest_of_150_issues_stays_under_20_kb_and_is_taken(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.feishu("digest", secret="s3")
        cfg = config(tmp_path, {"cs": {"type": "feishu", "url": url, "secret": "s3", "format": "post"}},
                     [route("cs", digest={"max_items": 150, "max_seconds": 60})], base_url=BASE)
        async with AlertRouter(cfg, labels=LABELS) as router:
            for n in range(150):
                await router.submit(issue(n, shop=f"淘宝旗舰店-{n % 7}", order_id=f"TB2026110300{n:06d}"))
            assert await router.drain(5)
        [seen] = robots[("feishu", "digest")].seen
        assert seen.accepted and seen.size <= 20_000
        rows = seen.body["content"]["post"]["zh_cn"]["content"]
        note = next(r[0]["text"] for r in rows if r[0]["text"].startswith("……另有"))
        left = int(re.search(r"另有 (\d+) 条", note).group(1))  # type: ignore[union-attr]
        assert len(rows) - 2 + left == 150  # every issue is listed or counted
        queue = f"{BASE}/queue?kind=pickup_overdue&carrier=ZTO&severity=high&status=open"
        assert rows[-1] == [{"tag": "a", "text": "在问题队列中查看全部", "href": queue}]

    run(test)


def test_a_feishu_bad_request_is_refused_for_good_not_retried_as_throttling(tmp_path: Path) -> None:
    answers: list[float] = []

    async def feishu(request: web.Request) -> web.Response:
        answers.append(time.monotonic())
        return web.json_response({"code": 9499, "msg": "Bad Request", "data": {}})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/open-apis/bot/v2/hook/x", feishu)
        runner, port = await serve(app)
        url = f"http://127.0.0.1:{port}/open-apis/bot/v2/hook/x"
        refused: list[str] = []
        router = AlertRouter(config(tmp_path, {"f": {"type": "feishu", "url": url}}, [route("f")]), labels=LABELS)
        router.on_refused = lambda r, d, why: refused.append(why)
        try:
            async with router:
                await router.submit(issue())
                assert await router.drain(3)
                await asyncio.sleep(0.3)
        finally:
            await runner.cleanup()
        assert len(answers) == 1 and refused == ["bad_request"]

    asyncio.run(main())


def test_a_wecom_digest_shows_the_most_severe_first_then_how_many_more_and_a_link(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.wecom("morning")
        cfg = config(tmp_path, {"w": {"type": "wecom", "url": url}}, [route("w", digest={"max_items": 60, "max_seconds": 60})],
                     base_url=BASE)
        async with AlertRouter(cfg, labels=LABELS) as router:
            for n in range(60):
                await router.submit(mixed(n))
            assert await router.drain(3)
        [seen] = robots[("wecom", "morning")].seen
        content = seen.body["markdown"]["content"]
        assert seen.accepted and len(content.encode()) <= 4096
        listed = re.findall(r"^- 【(\S+)】.*?中通快递 (731\d{4})", content, flags=re.M)
        assert [s for s, _ in listed[:10]] == ["紧急"] * 3 + ["高"] * 7  # none of the 10 severe issues is hidden
        assert [t for _, t in listed[:3]] == ["7310057", "7310058", "7310059"]  # the oldest first among equals
        left = int(re.search(r"另有 (\d+) 条未列出", content).group(1))  # type: ignore[union-attr]
        assert len(listed) + left == 60
        assert f"[在问题队列中查看全部]({BASE}/queue?shop=shop-a&kind=pickup_overdue&carrier=ZTO&status=open)" in content

    run(test)


def test_dingtalk_and_slack_digests_fit_their_platforms(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        cfg = config(tmp_path, {"d": {"type": "dingtalk", "url": robots.dingtalk("big", secret="SECx"), "secret": "SECx"},
                                "s": {"type": "slack", "url": robots.slack("T/B/big")}},
                     [route("d", "s", digest={"max_items": 400, "max_seconds": 60})], base_url=BASE)
        async with AlertRouter(cfg, labels=LABELS) as router:
            for n in range(400):
                await router.submit(issue(n, shop="店" * 40))
            assert await router.drain(5)
        [ding] = robots[("dingtalk", "big")].seen
        [slack] = robots[("slack", "T/B/big")].seen
        assert ding.accepted and ding.size <= 20_000 and "条未列出" in ding.body["markdown"]["text"]
        assert slack.accepted and len(slack.body["blocks"]) <= 50 and "条未列出" in orjson.dumps(slack.body).decode()

    run(test)


# -- priority ---------------------------------------------------------------------------------------------------------


def test_critical_issues_go_ahead_of_routine_ones(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.wecom("prio")
        cfg = config(tmp_path, {"w": {"type": "wecom", "url": url}}, [route("w", rate_limit={"per_minute": 1, "window_seconds": 0.1})])
        async with AlertRouter(cfg, labels=LABELS) as router:
            for n in range(6):
                await router.submit(issue(n, severity="low"))
            await router.submit(issue(99, severity="critical"))
            assert await router.drain(5)
        order = [re.search(r"中通快递 (731\d{4})", s.body["markdown"]["content"]).group(1) for s in robots[("wecom", "prio")].seen]  # type: ignore[union-attr]
        assert order[0] == "7310099" and order[1:] == [f"731{n:04d}" for n in range(6)]

    run(test)


# -- the operator's options ---------------------------------------------------------------------------------------------


def test_keyword_and_environment_lead_every_message(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        cfg = config(tmp_path, {
            "d": {"type": "dingtalk", "url": robots.dingtalk("kw", keyword="告警"), "keyword": "告警"},
            "ft": {"type": "feishu", "url": robots.feishu("t", keyword="告警"), "keyword": "告警"},
            "fp": {"type": "feishu", "url": robots.feishu("p", keyword="告警"), "keyword": "告警", "format": "post"},
            "fc": {"type": "feishu", "url": robots.feishu("c", keyword="告警"), "keyword": "告警", "format": "interactive"},
        }, [route("d", "ft", "fp", "fc", actions=["open", "resolve"])], environment="测试")
        async with AlertRouter(cfg, labels=LABELS) as router:
            await router.submit(issue(1))
            await router.submit(issue(1, action="resolve", resolution="picked_up", resolved_at="2026-11-03T12:00:00Z"))
            assert await router.drain(5)
        for key in (("dingtalk", "kw"), ("feishu", "t"), ("feishu", "p"), ("feishu", "c")):
            robot = robots[key]
            assert len(robot.accepted) == 2 and not robot.refused, (key, [s.answer for s in robot.refused])
        title = robots[("dingtalk", "kw")].accepted[0]["markdown"]["title"]
        assert title == "告警 [测试] 【揽收超时·高】中通快递 7310001"

    run(test)


def test_a_proxy_carries_the_requests_for_allow_listed_egress(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        async with FakeProxy() as proxy:
            cfg = config(tmp_path, {"via": {"type": "wecom", "url": robots.wecom("via")},
                                    "direct": {"type": "wecom", "url": robots.wecom("direct"), "proxy": None}},
                         [route("via", "direct")], proxy=proxy.url)
            async with AlertRouter(cfg, labels=LABELS) as router:
                await router.submit(issue())
                assert await router.drain(5)
        assert len(robots[("wecom", "via")].accepted) == 1 and len(robots[("wecom", "direct")].accepted) == 1
        assert [urlsplit(u).query for u in proxy.forwarded] == ["key=via"]

    run(test)


def test_each_message_links_back_to_its_issue_in_the_staff_page(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        cfg = config(tmp_path, {"d": {"type": "dingtalk", "url": robots.dingtalk("link")}}, [route("d")], base_url=BASE + "/")
        async with AlertRouter(cfg, labels=LABELS) as router:
            await router.submit(issue(7))
            assert await router.drain(3)
        text = robots[("dingtalk", "link")].accepted[0]["markdown"]["text"]
        assert f"[在工作台查看]({BASE}/queue?issue={issue_id('ZTO:7310007|pickup_overdue')})" in text

    run(test)


def no_http() -> aiohttp.ClientSession:
    raise AssertionError("body() is pure: no HTTP here")


def dest(kind: str, **kw: Any) -> DestinationConfig:
    return DestinationConfig(name=kind, type=kind, url="http://127.0.0.1:9/x", **kw)


def test_mentions_per_platform_only_for_new_issues_and_at_all_only_for_critical() -> None:
    mention = Mention(users=("u1",), all_for_critical=True)
    now = 1_793_700_000.0
    ding = DingTalkDestination(dest("dingtalk", mention=Mention(users=("u1",), mobiles=("13800000000",), all_for_critical=True)), LABELS,
                               no_http)
    high = ding.body(envelope(issue()), now)
    assert high["at"] == {"atMobiles": ["13800000000"], "isAtAll": False, "atUserIds": ["u1"]}
    assert high["markdown"]["text"].endswith("@13800000000 @u1")  # DingTalk notifies only those named in the text
    assert ding.body(envelope(issue(severity="critical")), now)["at"]["isAtAll"] is True
    resolved = ding.body(envelope(issue(action="resolve")), now)
    assert resolved["at"] == {"atMobiles": [], "isAtAll": False} and "@" not in resolved["markdown"]["text"]

    wecom = WeComDestination(dest("wecom", mention=mention), LABELS, no_http)
    assert wecom.body(envelope(issue()), now)["markdown"]["content"].endswith("<@u1>")
    critical = wecom.body(envelope(issue(severity="critical")), now)  # markdown cannot @all: a text message can
    assert critical["msgtype"] == "text" and critical["text"]["mentioned_list"] == ["u1", "@all"]

    text = FeishuDestination(dest("feishu", mention=mention), LABELS, no_http)
    assert text.body(envelope(issue(severity="critical")), now)["content"]["text"].endswith('<at user_id="u1"></at> <at user_id="all">所有人</at>')
    post = FeishuDestination(dest("feishu", mention=mention, format="post"), LABELS, no_http)
    assert post.body(envelope(issue()), now)["content"]["post"]["zh_cn"]["content"][-1] == [{"tag": "at", "user_id": "u1"}]
    card = FeishuDestination(dest("feishu", mention=mention, format="interactive"), LABELS, no_http)
    assert card.body(envelope(issue()), now)["card"]["elements"][-1]["text"]["content"].endswith("<at id=u1></at>")

    slack = SlackDestination(dest("slack", mention=mention), LABELS, no_http)
    assert slack.body(envelope(issue(severity="critical")), now)["blocks"][-1]["text"]["text"] == "<@u1> <!channel>"

    quiet_low = DingTalkDestination(dest("dingtalk", mention=Mention(users=("u1",), min_severity="critical")), LABELS,
                                    no_http)
    assert "atUserIds" not in quiet_low.body(envelope(issue()), now)["at"]


def test_the_person_on_call_is_mentioned_by_the_rotation() -> None:
    monday = 1_793_584_800.0  # a shift start
    rotation = OnCall(("zhang", "li", "wang"), start=monday, shift_hours=24)
    ding = DingTalkDestination(dest("dingtalk", mention=Mention(users=("lead",), on_call=rotation)), LABELS,
                               no_http)
    assert [ding.body(envelope(issue()), monday + day * 86400 + 3600)["at"]["atUserIds"] for day in range(4)] == [
        ["lead", "zhang"], ["lead", "li"], ["lead", "wang"], ["lead", "zhang"]]


def test_mentions_reach_the_robots_in_shapes_they_take(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        mention = {"users": ["u1"], "all_for_critical": True}
        cfg = config(tmp_path, {"d": {"type": "dingtalk", "url": robots.dingtalk("m"), "mention": {**mention, "mobiles": ["13800000000"]}},
                                "w": {"type": "wecom", "url": robots.wecom("m"), "mention": mention},
                                "f": {"type": "feishu", "url": robots.feishu("m"), "mention": mention, "format": "post"}},
                     [route("d", "w", "f")])
        async with AlertRouter(cfg, labels=LABELS) as router:
            await router.submit(issue(1))
            await router.submit(issue(2, severity="critical"))
            assert await router.drain(5)
        for key in (("dingtalk", "m"), ("wecom", "m"), ("feishu", "m")):
            assert len(robots[key].accepted) == 2 and not robots[key].refused, key

    run(test)


def test_quiet_hours_hold_non_critical_alerts_for_a_morning_summary(tmp_path: Path) -> None:
    now = [datetime(2026, 11, 3, 23, 0, tzinfo=CHINA_TZ).timestamp()]  # the router's clock, China time

    async def test(robots: FakeRobots) -> None:
        cfg = config(tmp_path, {"d": {"type": "dingtalk", "url": robots.dingtalk("night")}},
                     [route("d", actions=["open", "resolve"], quiet_hours={"start": 1320, "end": "08:00"})])  # 22:00 as YAML reads it
        router = AlertRouter(cfg, labels=LABELS, clock=lambda: now[0], incident_tick_seconds=0.01)
        async with router:
            await router.submit(issue(1, severity="low"))
            await router.submit(issue(2, severity="medium"))
            await router.submit(issue(2, severity="medium", action="resolve", resolution="picked_up"))  # over by itself
            await router.submit(issue(3, severity="high"))
            await router.submit(issue(4, severity="critical"))
            robot = robots[("dingtalk", "night")]
            await asyncio.sleep(0.3)
            assert [s.body["markdown"]["title"] for s in robot.seen] == ["【揽收超时·紧急】中通快递 7310004"]
            assert router.pending("r") == 2
            now[0] = datetime(2026, 11, 4, 8, 1, tzinfo=CHINA_TZ).timestamp()
            assert await router.drain(3)
        morning = robot.seen[1].body["markdown"]
        assert len(robot.seen) == 2 and morning["title"].startswith("parcelwatch 问题汇总：2 条")
        assert morning["text"].index("7310003") < morning["text"].index("7310001") and "7310002" not in morning["text"]

    run(test)


# -- Chinese text ----------------------------------------------------------------------------------------------------------


def test_reason_evidence_and_action_are_chinese_for_every_kind() -> None:
    at = "2026-11-05T10:00:00Z"
    cases = {
        "ship_overdue": {"paid_at": 1793584800.0, "deadline": 1793757600.0},
        "pickup_overdue": REASON_DATA,
        "transit_overdue": {"picked_up_at": 1793584800.0, "limit_hours": 96.0, "baseline_source": "lane", "samples": 42},
        "tracking_stale": {"last_scan_at": 1793584800.0, "limit_hours": 48.0, "stage": "in transit"},
        "confirmed_unsigned": {"confirmed_at": 1793584800.0, "by_buyer": True},
        "autoconfirm_imminent": {"deadline": 1793757600.0, "source": "order deadline"},
        "locker_uncollected": {"at_locker_at": 1793584800.0, "limit_hours": 48.0},
        "carrier_exception": {"exception_at": 1793584800.0, "exception_reason": "out_of_area"},
    }
    english = re.compile(r"\b(?!ZTO\b|TB\d|shop\b)[A-Za-z]{3,}\b")
    for kind, data in cases.items():
        d = describe([issue(kind=kind, evidence_data=data, at=at, reason="English reason", evidence="English evidence",
                            suggested_action="English action")], LABELS)
        words = [line for line in d.lines if line.startswith(("原因", "依据", "建议"))]
        assert len(words) == 3, (kind, d.lines)
        assert not [w for w in words if english.search(w)], (kind, words)
    lines = describe([issue(kind="transit_overdue", evidence_data=cases["transit_overdue"], at=at)], LABELS).lines
    # The staff page's own words (issue_queue/texts.py): the same in the queue and in the chat.
    assert "原因：揽收后超过正常时效（4 天）仍未签收" in lines
    assert "依据：揽收 2026-11-02 10:00，正常时效 4 天，依据该线路历史时效（42 单）" in lines
    digest = describe([issue(1), issue(2, kind="carrier_exception", evidence_data=cases["carrier_exception"], severity="critical")], LABELS)
    assert digest.lines[0] == "【紧急】物流异常 · 中通快递 7310002 · shop-a · 物流异常：超区"


def test_an_old_issue_without_evidence_data_still_reads_in_chinese() -> None:
    d = describe([issue(evidence_data=None, reason="no carrier scan 30.0 h after shipping (limit 24 h)")], LABELS)
    assert "原因：发货后超时未揽收" in d.lines and not any("scan" in line for line in d.lines)


def test_signature_query_is_recomputed_per_attempt() -> None:
    ding = DingTalkDestination(dest("dingtalk", secret="SECabc"), LABELS, no_http)
    first, later = parse_qs(urlsplit(ding.url(1_793_700_000.0)).query), parse_qs(urlsplit(ding.url(1_793_700_060.0)).query)
    assert first["timestamp"] != later["timestamp"] and first["sign"] != later["sign"]
