"""What an alert says: Chinese text for one issue, a digest of several, or a lane incident.

Pure. :func:`describe` turns the items of one message into a title and plain lines; the destinations wrap
those lines in their own markup (DingTalk/WeCom markdown, Feishu text/post/card, Slack blocks). Lines are
cut to fit each platform's size limit with a note of how many were left out, rather than having the robot
refuse the whole message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config import Labels
from domain.vocabulary import CARRIERS, SEVERITY_LABELS, china_time

INCIDENT_KIND = "lane_incident"
# Not an issue kind of the detectors, so not in the configured labels.
INCIDENT_LABEL = "线路异常"
ACTION_LABELS = {"open": "新问题", "update": "更新", "resolve": "已解决"}
# Why the stream resolved an issue (processor._resolution); unknown codes are shown as they are.
RESOLUTION_LABELS = {
    "signed": "已签收", "shipped": "已发货", "picked_up": "已揽收", "scanned_again": "物流已更新", "collected": "已取件",
    "order_confirmed": "订单已确认收货", "order_refunded": "订单已退款", "order_closed": "订单已关闭",
    "deadline_moved_or_passed": "确认收货期限已变更或已过", "condition_ended": "条件已解除",
}
PLATFORM_LABELS = {
    "taobao": "淘宝", "tmall": "天猫", "douyin": "抖音", "pinduoduo": "拼多多", "jd": "京东", "kuaishou": "快手",
    "xiaohongshu": "小红书", "other": "其他",
}


@dataclass(frozen=True, slots=True)
class Description:
    title: str
    lines: tuple[str, ...]


def severity_label(severity: str | None) -> str:
    return SEVERITY_LABELS.get(severity or "", (severity or "?",))[0]


def _time(iso: Any) -> str:
    if not isinstance(iso, str) or not iso:
        return ""
    try:
        return china_time(iso)
    except ValueError:
        return iso  # shown as received rather than losing the line


def _parcel(item: Mapping[str, Any]) -> str:
    if item.get("carrier") and item.get("tracking_number"):
        return f"{CARRIERS.get(item['carrier'], item['carrier'])} {item['tracking_number']}"
    if item.get("order_id"):
        return f"订单 {item['order_id']}"
    return str(item.get("subject") or item.get("issue_key") or "?")


def _shop(item: Mapping[str, Any]) -> str:
    platform = item.get("platform")
    label = PLATFORM_LABELS.get(platform or "", platform or "")
    return f"{item.get('shop') or '?'}（{label}）" if label else str(item.get("shop") or "?")


def kind_label(item: Mapping[str, Any], labels: Labels) -> str:
    kind = str(item.get("kind") or "?")
    return INCIDENT_LABEL if kind == INCIDENT_KIND else labels.kind(kind, "zh")


def _resolution(item: Mapping[str, Any]) -> str:
    code = str(item.get("resolution") or "")
    return RESOLUTION_LABELS.get(code, code) or "已解决"


def _issue_lines(item: Mapping[str, Any], labels: Labels) -> list[str]:
    lines = [f"店铺：{_shop(item)}"]
    if item.get("order_id"):
        lines.append(f"订单：{item['order_id']}")
    if item.get("lane"):
        lines.append(f"线路：{item['lane']}")
    if item.get("exception_reason"):
        lines.append(f"异常类型：{labels.reason(str(item['exception_reason']), 'zh')}")
    if item.get("action") == "resolve":
        lines.append(f"结果：{_resolution(item)}")
        lines.append(f"解决时间：{_time(item.get('resolved_at') or item.get('at'))}")
        return lines
    for label, key in (("原因", "reason"), ("依据", "evidence"), ("建议", "suggested_action")):
        if item.get(key):
            lines.append(f"{label}：{item[key]}")
    if item.get("order_value") is not None:
        lines.append(f"订单金额：¥{item['order_value']}")
    lines.append(f"发现时间：{_time(item.get('opened_at') or item.get('at'))}")
    return lines


def _incident_lines(item: Mapping[str, Any], labels: Labels) -> list[str]:
    kinds = item.get("kinds") or {}
    breakdown = "，".join(f"{labels.kind(k, 'zh')} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    window = item.get("window_minutes")
    shown = f"{window:g}" if isinstance(window, (int, float)) else "?"
    lines = [f"{shown} 分钟内同一线路 {item.get('count', 0)} 个包裹出现问题：{breakdown}"]
    if item.get("action") == "resolve":
        lines = [f"该线路问题包裹已降至 {item.get('count', 0)} 个，事件关闭"]
    lines.append(f"受影响店铺：{'、'.join(item.get('shops') or ()) or '?'}")
    if item.get("sample"):
        lines.append(f"样例运单：{'、'.join(item['sample'])}")
    if item.get("action") != "resolve":
        carrier = CARRIERS.get(item.get("carrier") or "", item.get("carrier") or "快递公司")
        lines.append(f"建议：联系{carrier}网点核实该线路是否停发、爆仓或中转延误；单个包裹的问题仍在问题队列中")
    lines.append(f"开始时间：{_time(item.get('opened_at'))}")
    return lines


def _headline(item: Mapping[str, Any], labels: Labels) -> str:
    action = item.get("action")
    if item.get("kind") == INCIDENT_KIND:
        state = {"open": "", "update": "（更新）", "resolve": "（已恢复）"}.get(str(action), "")
        return f"【{INCIDENT_LABEL}{state}】{item.get('lane') or '?'}：{item.get('count', 0)} 个包裹"
    state = "" if action == "open" else f"·{ACTION_LABELS.get(str(action), str(action))}"
    return f"【{kind_label(item, labels)}·{severity_label(item.get('severity'))}{state}】{_parcel(item)}"


def _digest_line(item: Mapping[str, Any], labels: Labels) -> str:
    if item.get("kind") == INCIDENT_KIND:
        return _headline(item, labels)
    action = item.get("action")
    tail = _resolution(item) if action == "resolve" else item.get("reason")
    state = "" if action == "open" else f"{ACTION_LABELS.get(str(action), str(action))} "
    parts = [f"[{severity_label(item.get('severity'))}] {state}{kind_label(item, labels)}", _parcel(item), str(item.get("shop") or "?")]
    if tail:
        parts.append(str(tail))
    return " · ".join(parts)


def describe(items: Sequence[Mapping[str, Any]], labels: Labels) -> Description:
    """Title and lines for one message: a single item in detail (a digest of one, too), else one line per item."""
    if len(items) == 1:
        item = items[0]
        lines = _incident_lines(item, labels) if item.get("kind") == INCIDENT_KIND else _issue_lines(item, labels)
        return Description(_headline(item, labels), tuple(lines))
    counts = Counter(kind_label(i, labels) for i in items)
    summary = "，".join(f"{k} {n}" for k, n in counts.most_common())
    return Description(f"parcelwatch 问题汇总：{len(items)} 条（{summary}）", tuple(_digest_line(i, labels) for i in items))


def fit(lines: Iterable[str], max_bytes: int, *, sep: str = "\n") -> list[str]:
    """As many whole lines as fit in ``max_bytes`` of UTF-8, then a note of how many were left out."""
    out: list[str] = []
    # One very long line (an evidence dump) must not push every other line out.
    all_lines = [_clip(line, max(200, max_bytes // 4)) for line in lines]
    used = 0
    for i, line in enumerate(all_lines):
        size = len(line.encode()) + len(sep)
        # Keep room for the note: about 60 bytes of UTF-8 with its separator.
        if (used + size > max_bytes - 96 and i < len(all_lines) - 1) or used + size > max_bytes:
            out.append(f"……另有 {len(all_lines) - i} 条未列出，请在问题队列中查看")
            return out
        out.append(line)
        used += size
    return out


def _clip(line: str, max_bytes: int) -> str:
    raw = line.encode()
    if len(raw) <= max_bytes:
        return line
    return raw[: max_bytes - 3].decode(errors="ignore") + "…"
