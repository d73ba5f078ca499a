"""Message bodies of each destination type, pure: Chinese labels, digests, size limits, signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson

import config
from alerting.config import DestinationConfig
from alerting.destinations import (
    WECOM_MAX_BYTES,
    DingTalkDestination,
    FeishuDestination,
    SlackDestination,
    WebhookDestination,
    WeComDestination,
    dingtalk_sign,
    feishu_sign,
)
from alerting.render import describe

LABELS = config.load(env={}).labels
NOW = 1_793_700_000.0


def no_http() -> aiohttp.ClientSession:
    raise AssertionError("body() is pure: no HTTP here")


def issue(n: int = 1, **kw: Any) -> dict[str, Any]:
    number = f"731{n:04d}"
    base = {
        "action": "open", "issue_key": f"ZTO:{number}|pickup_overdue", "kind": "pickup_overdue", "subject": f"ZTO:{number}",
        "parcel": f"ZTO:{number}", "carrier": "ZTO", "tracking_number": number, "order_id": f"TB{n}", "shop": "shop-a",
        "platform": "taobao", "lane": "ZTO 广东→新疆", "origin_province": "广东", "destination_province": "新疆",
        "reason": "no carrier scan 30.0 h after shipping (limit 24 h)", "severity": "high",
        "evidence": "shipped 2026-11-02 10:00, no scan since", "suggested_action": "push the carrier to collect",
        "opened_at": "2026-11-03T10:00:00Z", "at": "2026-11-03T10:00:00Z", "resolved_at": None, "resolution": None,
        "order_value": 129.0,
    }
    return {**base, **kw}


def env(*items: dict[str, Any], digest: bool = False) -> dict[str, Any]:
    return {"id": "m1", "route": "r", "digest": digest, "created_at": NOW, "items": list(items)}


def dest(kind: str, **kw: Any) -> DestinationConfig:
    return DestinationConfig(name=kind, type=kind, url="http://127.0.0.1:9/x", **kw)


def test_single_issue_text_is_chinese_with_labels_from_the_config() -> None:
    d = describe([issue()], LABELS)
    assert d.title == "【揽收超时·高】中通快递 7310001"
    assert "店铺：shop-a（淘宝）" in d.lines and "线路：中通快递 广东→新疆" in d.lines
    assert "原因：发货后超时未揽收" in d.lines  # Chinese from the kind; the English reason is never shown
    assert "发现时间：2026-11-03 18:00" in d.lines  # China time
    resolved = describe([issue(action="resolve", resolution="signed", resolved_at="2026-11-04T02:00:00Z")], LABELS)
    assert resolved.title == "【揽收超时·高·已解决】中通快递 7310001" and "结果：已签收" in resolved.lines
    damaged = describe([issue(kind="carrier_exception", exception_reason="damaged")], LABELS)
    assert damaged.title.startswith("【物流异常·高】") and "异常类型：破损" in damaged.lines
    order = describe([issue(kind="ship_overdue", carrier=None, tracking_number=None, subject="order:TB9", order_id="TB9")], LABELS)
    assert order.title == "【发货超时·高】订单 TB9"


def test_digest_text_counts_kinds() -> None:
    d = describe([issue(1), issue(2), issue(3, kind="tracking_stale", severity="critical")], LABELS)
    assert d.title == "parcelwatch 问题汇总：3 条（揽收超时 2，物流停滞 1）"
    assert d.lines[0].startswith("【紧急】物流停滞 · 中通快递 7310003 · shop-a")  # most severe first


def test_webhook_sends_the_issue_or_a_list_for_digest_routes() -> None:
    w = WebhookDestination(dest("webhook", headers={"Authorization": "Bearer x"}), LABELS, no_http)
    assert w.body(env(issue()), NOW) == issue()
    assert w.body(env(issue(), digest=True), NOW) == [issue()]
    headers = w.headers(env(issue()))
    assert headers["X-Parcelwatch-Message-Id"] == "m1" and headers["Authorization"] == "Bearer x"


def test_dingtalk_markdown_with_mentions_and_signature() -> None:
    d = DingTalkDestination(dest("dingtalk", secret="SECabc", at_mobiles=("13800000000",)), LABELS, no_http)
    body = d.body(env(issue()), NOW)
    assert body["msgtype"] == "markdown" and body["markdown"]["title"] == "【揽收超时·高】中通快递 7310001"
    assert body["markdown"]["text"].startswith("### 【揽收超时·高】") and "@13800000000" in body["markdown"]["text"]
    assert body["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    q = parse_qs(urlsplit(d.url(NOW)).query)
    ts = q["timestamp"][0]
    assert ts == str(int(NOW * 1000))
    expected = base64.b64encode(hmac.new(b"SECabc", f"{ts}\nSECabc".encode(), hashlib.sha256).digest()).decode()
    assert q["sign"] == [expected]
    assert dingtalk_sign("SECabc", int(ts)) != expected  # it is URL-encoded on the wire ...
    assert "+" not in dingtalk_sign("SECabc", int(ts)) and "/" not in dingtalk_sign("SECabc", int(ts))  # ... as DingTalk asks


def test_wecom_digest_is_cut_to_the_4096_byte_limit_with_a_note() -> None:
    w = WeComDestination(dest("wecom"), LABELS, no_http)
    body = w.body(env(*[issue(n) for n in range(300)], digest=True), NOW)
    content = body["markdown"]["content"]
    assert body["msgtype"] == "markdown" and len(content.encode()) <= WECOM_MAX_BYTES
    assert "300 条" in content and "条未列出" in content


def test_feishu_text_post_card_and_signature() -> None:
    text = FeishuDestination(dest("feishu", secret="s3"), LABELS, no_http).body(env(issue()), NOW)
    assert text["msg_type"] == "text" and text["content"]["text"].startswith("【揽收超时·高】")
    assert text["timestamp"] == str(int(NOW))
    assert text["sign"] == base64.b64encode(hmac.new(f"{int(NOW)}\ns3".encode(), b"", hashlib.sha256).digest()).decode()
    assert text["sign"] == feishu_sign("s3", int(NOW))
    post = FeishuDestination(dest("feishu", format="post"), LABELS, no_http).body(env(issue()), NOW)
    zh = post["content"]["post"]["zh_cn"]
    assert post["msg_type"] == "post" and zh["title"].startswith("【揽收超时")
    assert zh["content"][0] == [{"tag": "text", "text": "店铺：shop-a（淘宝）"}]
    assert "sign" not in post
    card = FeishuDestination(dest("feishu", format="interactive"), LABELS, no_http).body(
        env(issue(1, severity="low"), issue(2, severity="critical"), digest=True), NOW)
    assert card["msg_type"] == "interactive" and card["card"]["header"]["template"] == "red"
    assert "2 条" in card["card"]["header"]["title"]["content"]


def test_slack_text_and_blocks_escape_markup() -> None:
    s = SlackDestination(dest("slack"), LABELS, no_http)
    body = s.body(env(issue(order_id="TB<missing> & late")), NOW)
    assert body["text"].startswith("【揽收超时·高】")
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": body["text"]}}
    section = body["blocks"][1]["text"]
    assert section["type"] == "mrkdwn" and "TB&lt;missing&gt; &amp; late" in section["text"]
    big = s.body(env(*[issue(n, reason="x" * 400) for n in range(400)], digest=True), NOW)
    assert len(big["blocks"]) <= 46 and all(len(b["text"]["text"]) <= 3000 for b in big["blocks"][1:])
    assert len(orjson.dumps(big)) < 200_000


def test_lane_incident_message() -> None:
    incident = {
        "action": "open", "kind": "lane_incident", "issue_key": "lane:ZTO|广东|新疆", "carrier": "ZTO", "lane": "ZTO 广东→新疆",
        "count": 37, "kinds": {"pickup_overdue": 30, "tracking_stale": 7}, "shops": ["shop-a", "shop-b"],
        "sample": ["7310001", "7310002"], "window_minutes": 60.0, "severity": "high", "opened_at": "2026-11-03T10:00:00Z",
    }
    d = describe([incident], LABELS)
    assert d.title == "【线路异常】中通快递 广东→新疆：37 个包裹"
    assert d.lines[0] == "60 分钟内同一线路 37 个包裹出现问题：揽收超时 30，物流停滞 7"
    assert "受影响店铺：shop-a、shop-b" in d.lines and any("中通快递" in line for line in d.lines)
    closed = describe([{**incident, "action": "resolve", "count": 4}], LABELS)
    assert closed.title == "【线路异常（已恢复）】中通快递 广东→新疆：4 个包裹"


def test_text_from_outside_makes_no_link_mention_or_line_of_its_own_in_a_chat_message() -> None:
    """An order id, a shop or a scan's place comes from outside: in a markdown message it must not become a
    link staff click, an @ or a line that looks like one of ours."""
    bait = issue(order_id="TB1\n\n- [订单已退款，点此处理](https://e.vil/x)", shop="shop-a<at id=all></at>")
    texts = [
        DingTalkDestination(dest("dingtalk"), LABELS, no_http).body(env(bait), NOW)["markdown"]["text"],
        WeComDestination(dest("wecom"), LABELS, no_http).body(env(bait), NOW)["markdown"]["content"],
        FeishuDestination(dest("feishu", format="interactive"), LABELS, no_http).body(env(bait), NOW)
        ["card"]["elements"][-1]["text"]["content"],
    ]
    for text in texts:
        assert "](https://e.vil" not in text and "<at id=all>" not in text
        assert not any(line.startswith("- ［订单已退款") for line in text.splitlines())
        assert "订单：TB1 - ［订单已退款，点此处理］(https://e.vil/x)" in text
