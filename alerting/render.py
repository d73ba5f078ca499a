"""What an alert says: Chinese text for one issue, a digest of several, or a lane incident.

Pure. :func:`describe` turns the items of one message into a title, plain lines and a link back to the staff
page; the destinations wrap them in their own markup (DingTalk/WeCom markdown, Feishu text/post/card, Slack
blocks) and cut the lines to what the platform takes, measured on the encoded request, with a note of how
many were left out. A digest lists the most severe issues first, the oldest first among equals, so a cut
never hides a critical issue behind routine ones.

:func:`issue_words` turns an issue into words with the staff page's own templates (``issue_queue/texts.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from config import Labels
from domain.vocabulary import SEVERITY_LABELS, china_time
from issue_queue import texts
from issue_queue.store import issue_id

from .config import severity_rank

INCIDENT_KIND = "lane_incident"
# Not an issue kind of the detectors, so not in the configured labels.
INCIDENT_LABEL = "线路异常"
ACTION_LABELS = {"open": "新问题", "update": "更新", "resolve": "已解决"}
ISSUE_LINK_TEXT = "在工作台查看"
QUEUE_LINK_TEXT = "在问题队列中查看全部"
# A line longer than this (an evidence dump) is clipped, so it cannot push every other line out of a message.
MAX_LINE_BYTES = 1000
MAX_TITLE_BYTES = 300


@dataclass(frozen=True, slots=True)
class Description:
    title: str
    lines: tuple[str, ...]
    # The issue on the staff page (one issue), or the queue filtered to what the digest holds; None without base_url.
    link: str | None = None
    link_text: str = ISSUE_LINK_TEXT
    # The most severe of the items not resolved (None: only resolves), for mentions and colours.
    top_severity: str | None = None
    critical: bool = False


@dataclass(frozen=True, slots=True)
class IssueWords:
    reason: str
    evidence: str
    action: str


def severity_label(severity: str | None) -> str:
    return SEVERITY_LABELS.get(severity or "", (severity or "?",))[0]


def carrier_label(code: Any) -> str:
    return texts.carrier_name(str(code)) if code else "?"


def lane_label(item: Mapping[str, Any]) -> str:
    """中通快递 广东→新疆: the carrier by its name, not its code."""
    carrier, origin, dest = item.get("carrier"), item.get("origin_province"), item.get("destination_province")
    if carrier and (origin or dest):
        return f"{carrier_label(carrier)} {origin or '?'}→{dest or '?'}"
    lane = str(item.get("lane") or "")
    code, _, rest = lane.partition(" ")
    return f"{carrier_label(code)} {rest}" if rest else lane


def _time(value: Any) -> str:
    if value is None or value == "" or isinstance(value, bool):
        return ""
    try:
        return china_time(value if isinstance(value, (int, float, str)) else str(value))
    except (ValueError, TypeError, OverflowError):
        return str(value)  # shown as received rather than losing the line


def issue_words(item: Mapping[str, Any], labels: Labels) -> IssueWords:
    """An issue's reason, evidence and suggested action in Chinese, from the staff page's templates
    (``issue_queue/texts.py``): the same words in the queue and in the chat."""
    text = texts.render(item, labels, "zh")
    return IssueWords(text.reason, text.evidence, text.suggested_action)


def _parcel(item: Mapping[str, Any]) -> str:
    if item.get("carrier") and item.get("tracking_number"):
        return f"{carrier_label(item['carrier'])} {item['tracking_number']}"
    if item.get("order_id"):
        return f"订单 {item['order_id']}"
    return str(item.get("subject") or item.get("issue_key") or "?")


def _shop(item: Mapping[str, Any]) -> str:
    platform = item.get("platform")
    label = texts.platform_name(platform) if platform else ""
    return f"{item.get('shop') or '?'}（{label}）" if label else str(item.get("shop") or "?")


def kind_label(item: Mapping[str, Any], labels: Labels) -> str:
    kind = str(item.get("kind") or "?")
    return INCIDENT_LABEL if kind == INCIDENT_KIND else labels.kind(kind, "zh")


def _resolution(item: Mapping[str, Any]) -> str:
    return texts.resolution_name(str(item.get("resolution") or "")) or "已解决"


def _issue_lines(item: Mapping[str, Any], labels: Labels) -> list[str]:
    lines = [f"店铺：{_shop(item)}"]
    if item.get("order_id"):
        lines.append(f"订单：{item['order_id']}")
    if item.get("lane"):
        lines.append(f"线路：{lane_label(item)}")
    if item.get("exception_reason"):
        lines.append(f"异常类型：{labels.reason(str(item['exception_reason']), 'zh')}")
    if item.get("action") == "resolve":
        lines.append(f"结果：{_resolution(item)}")
        lines.append(f"解决时间：{_time(item.get('resolved_at') or item.get('at'))}")
        return lines
    words = issue_words(item, labels)
    for label, text in (("原因", words.reason), ("依据", words.evidence), ("建议", words.action)):
        if text:
            lines.append(f"{label}：{text}")
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
        carrier = carrier_label(item.get("carrier")) if item.get("carrier") else "快递公司"
        lines.append(f"建议：联系{carrier}网点核实该线路是否停发、爆仓或中转延误；单个包裹的问题仍在问题队列中")
    lines.append(f"开始时间：{_time(item.get('opened_at'))}")
    return lines


def _headline(item: Mapping[str, Any], labels: Labels) -> str:
    action = item.get("action")
    if item.get("kind") == INCIDENT_KIND:
        state = {"open": "", "update": "（更新）", "resolve": "（已恢复）"}.get(str(action), "")
        return f"【{INCIDENT_LABEL}{state}】{lane_label(item) or '?'}：{item.get('count', 0)} 个包裹"
    state = "" if action == "open" else f"·{ACTION_LABELS.get(str(action), str(action))}"
    return f"【{kind_label(item, labels)}·{severity_label(item.get('severity'))}{state}】{_parcel(item)}"


def _digest_line(item: Mapping[str, Any], labels: Labels) -> str:
    if item.get("kind") == INCIDENT_KIND:
        return _headline(item, labels)
    action = item.get("action")
    tail = _resolution(item) if action == "resolve" else issue_words(item, labels).reason
    state = "" if action == "open" else f"{ACTION_LABELS.get(str(action), str(action))} "
    parts = [f"【{severity_label(item.get('severity'))}】{state}{kind_label(item, labels)}", _parcel(item), str(item.get("shop") or "?")]
    if tail:
        parts.append(str(tail))
    return " · ".join(parts)


def digest_order(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Most severe first, then the oldest (opened first) among equals; arrival order breaks ties."""
    return sorted(items, key=lambda i: (-severity_rank(i.get("severity")), str(i.get("opened_at") or i.get("at") or "")))


def issue_link(base_url: str, item: Mapping[str, Any]) -> str:
    """The issue on the staff page: ``/queue?issue=<id>`` (the id the API and the page use)."""
    return f"{base_url}/queue?{urlencode({'issue': issue_id(str(item.get('issue_key') or ''))})}"


def queue_link(base_url: str, items: Sequence[Mapping[str, Any]]) -> str:
    """The queue filtered to what the items share (shop, kind, carrier, severity when one each)."""
    params: dict[str, str] = {}
    for name in ("shop", "kind", "carrier", "severity"):
        values = {i.get(name) for i in items if i.get("kind") != INCIDENT_KIND}
        if len(values) == 1 and (value := values.pop()):
            params[name] = str(value)
    if all(i.get("action") != "resolve" for i in items):
        params["status"] = "open"
    return f"{base_url}/queue" + (f"?{urlencode(params)}" if params else "")


_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]+")


def _clip(line: str, max_bytes: int) -> str:
    raw = line.encode()
    if len(raw) <= max_bytes:
        return line
    return raw[: max_bytes - 3].decode(errors="ignore") + "…"


def describe(items: Sequence[Mapping[str, Any]], labels: Labels, *, prefix: str = "", base_url: str | None = None) -> Description:
    """Title, lines and link for one message: a single item in detail (a digest of one, too), else one line per
    item, most severe first. ``prefix`` (keyword, environment) leads the title."""
    open_items = [i for i in items if i.get("action") != "resolve"]
    top = max((str(i.get("severity")) for i in open_items), key=severity_rank, default=None)
    critical = any(i.get("severity") == "critical" for i in open_items)
    if len(items) == 1:
        item = items[0]
        lines = _incident_lines(item, labels) if item.get("kind") == INCIDENT_KIND else _issue_lines(item, labels)
        title = _headline(item, labels)
        link = None
        if base_url:
            link = queue_link(base_url, [item]) if item.get("kind") == INCIDENT_KIND else issue_link(base_url, item)
        link_text = QUEUE_LINK_TEXT if item.get("kind") == INCIDENT_KIND else ISSUE_LINK_TEXT
    else:
        ordered = digest_order(items)
        counts = Counter(kind_label(i, labels) for i in ordered)
        summary = "，".join(f"{k} {n}" for k, n in counts.most_common())
        title = f"parcelwatch 问题汇总：{len(items)} 条（{summary}）"
        lines = [_digest_line(i, labels) for i in ordered]
        link = queue_link(base_url, ordered) if base_url else None
        link_text = QUEUE_LINK_TEXT
    title = _clip(_one_line(f"{prefix}{title}"), MAX_TITLE_BYTES)
    return Description(title, tuple(_clip(_one_line(line), MAX_LINE_BYTES) for line in lines), link, link_text, top,
                       critical)


def _one_line(text: str) -> str:
    """A line carries text from outside (a scan's place, an order id, a shop): a line break in it would start a
    line of its own in the message, one that looks like ours."""
    return _LINE_BREAKS.sub(" ", text)


def more_note(left: int) -> str:
    return f"……另有 {left} 条未列出，请在问题队列中查看"


def largest_fitting(n: int, fits: Callable[[int], bool]) -> int:
    """The most of ``n`` lines a message can keep: the largest k in [0, n] with ``fits(k)``, for a ``fits`` that
    holds up to some k and not beyond (0 when none does: the caller's smallest message)."""
    if fits(n):
        return n
    lo, hi = 0, n  # fits(hi) is False
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo
