"""The queue as staff read it: labels in their language, the day asked for, CSV for Excel, a terminal table.

Pure helpers shared by the web API (``web/api.py``) and the ``queue`` command; Redis access is in
``issue_queue/store.py``.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable
from datetime import date
from typing import Any

from config import Settings
from domain.events import INVISIBLE
from domain.vocabulary import china_time

from . import texts

# (field, Chinese header, English header)
CSV_COLUMNS = (
    ("id", "问题编号", "Issue id"),
    ("shop", "店铺", "Shop"),
    ("platform_label", "平台", "Platform"),
    ("order_id", "订单号", "Order id"),
    ("carrier_label", "快递公司", "Carrier"),
    ("tracking_number", "运单号", "Tracking number"),
    ("lane_label", "线路", "Lane"),
    ("kind_label", "问题类型", "Kind"),
    ("reason", "原因", "Reason"),
    ("severity_label", "严重程度", "Severity"),
    ("evidence", "依据", "Evidence"),
    ("suggested_action", "建议操作", "Suggested action"),
    ("status_label", "状态", "Status"),
    ("assignee", "处理人", "Assignee"),
    ("opened_at", "发现时间", "Opened at"),
    ("updated_at", "更新时间", "Updated at"),
    ("resolution_label", "处理结果", "Resolution"),
    ("note", "备注", "Note"),
    ("order_value", "订单金额", "Order value"),
    ("destination", "目的地", "Destination"),
    ("last_scan_text", "最新物流", "Latest scan"),
    ("autoconfirm_at", "自动确认收货时间", "Auto-confirm at"),
    ("tracking_url", "物流查询", "Tracking page"),
)
TIME_COLUMNS = ("opened_at", "updated_at", "autoconfirm_at")


def parse_day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {raw[:20]!r}") from None


def label_issue(issue: dict[str, Any], settings: Settings, lang: str) -> dict[str, Any]:
    """A copy of ``issue`` as staff read it in ``lang``: labels for its codes, its reason, evidence and
    suggested action rendered from its structured fields (the detector's own texts kept under
    ``detector_texts``), its history and scans with their texts, the tracking page."""
    lang = "en" if lang == "en" else "zh"
    out = dict(issue)
    rendered = texts.render(issue, settings.labels, lang)
    out["detector_texts"] = {k: issue.get(k) for k in ("reason", "evidence", "suggested_action")}
    out["reason"], out["evidence"], out["suggested_action"] = rendered.reason, rendered.evidence, rendered.suggested_action
    out["kind_label"] = settings.labels.kind(issue["kind"], lang)
    out["severity_label"] = texts.severity_name(issue["severity"], lang)
    out["status_label"] = texts.status_name(issue["status"], lang)
    if issue.get("resolution_code"):
        out["resolution_label"] = texts.resolution_name(issue["resolution_code"], lang)
    elif issue.get("status") == "auto_resolved":
        out["resolution_label"] = texts.resolution_name(issue.get("resolution"), lang)
    else:
        out["resolution_label"] = ""
    out["platform_label"] = texts.platform_name(issue.get("platform"), lang)
    out["carrier_label"] = texts.carrier_name(issue.get("carrier"), lang)
    out["lane_label"] = texts.lane_name(issue, lang)
    out["destination"] = texts.destination_name(issue)
    out["tracking_url"] = texts.tracking_url(issue.get("carrier"), issue.get("tracking_number"))
    if issue.get("exception_reason"):
        out["exception_label"] = settings.labels.reason(issue["exception_reason"], lang)
    history = issue.get("history")
    if isinstance(history, list):
        out["history"] = [{**h, "actor": texts.actor(h.get("by"), lang), "text": texts.history_line(h, lang)}
                          for h in history if isinstance(h, dict)]
    scans = issue.get("scans")
    if isinstance(scans, list):
        out["scans"] = [{**s, "status_label": texts.parcel_status_name(s.get("status"), lang),
                         "exception_label": settings.labels.reason(s["exception_reason"], lang) if s.get("exception_reason") else ""}
                        for s in scans if isinstance(s, dict)]
        newest = out["scans"][-1] if out["scans"] else None
        out["last_scan_text"] = scan_text(newest, lang) if newest else ""
    return out


def scan_text(scan: dict[str, Any], lang: str) -> str:
    """One scan on one line: its time, then the carrier's own words (else its status and place)."""
    words = scan.get("text") or " ".join(x for x in (scan.get("place"), scan.get("exception_label") or scan.get("status_label")) if x)
    return " ".join(x for x in (china_time(scan.get("at")), words) if x)


def _excel_safe(value: Any) -> str:
    """Text for one CSV cell that Excel shows as written."""
    if value is None:
        return ""
    text = str(value)
    # Never let a cell become a formula (CSV injection), full-width signs (＝ ＋ －), which Excel in Chinese
    # may take as their ASCII forms, and signs behind spaces or invisible characters included.
    first = unicodedata.normalize("NFKC", text).lstrip(" " + INVISIBLE)[:1]
    if first in ("=", "+", "-", "@") or text[:1] in ("\t", "\r", "\n"):
        return "'" + text
    if text.isdigit() and len(text) > 11:
        # Long digit strings (tracking numbers, order ids) would turn into 7.31E+13; keep them as text.
        return f'="{text}"'
    return text


def to_csv(issues: Iterable[dict[str, Any]], settings: Settings, lang: str = "zh") -> bytes:
    """UTF-8 with BOM (Excel on Windows then reads Chinese correctly), CRLF rows, every text in ``lang``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([zh if lang == "zh" else en for _, zh, en in CSV_COLUMNS])
    for issue in issues:
        labelled = label_issue(issue, settings, lang)
        row = []
        for field, _, _ in CSV_COLUMNS:
            value = labelled.get(field)
            if field in TIME_COLUMNS:
                value = texts.when(value)
            row.append(_excel_safe(value))
        writer.writerow(row)
    return "\ufeff".encode() + buf.getvalue().encode("utf-8")


def table(issues: list[dict[str, Any]], settings: Settings, lang: str = "zh") -> str:
    """A plain terminal table of the queue (for the ``queue`` command)."""

    def width(s: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)

    def pad(s: str, n: int) -> str:
        # (Text from outside may hold terminal escapes and line breaks: printed, they would drive the terminal.)
        s = "".join(c for c in s if not unicodedata.category(c).startswith("C"))
        s = s if width(s) <= n else _clip(s, n)
        return s + " " * (n - width(s))

    def _clip(s: str, n: int) -> str:
        out = ""
        for c in s:
            if width(out + c) > n - 1:
                return out + "…"
            out += c
        return out

    zh = lang != "en"
    cols = (("severity_label", 6), ("kind_label", 16), ("shop", 10), ("order_id", 18), ("carrier_label", 10),
            ("tracking_number", 16), ("destination", 12), ("status_label", 10), ("opened", 16), ("reason", 40))
    head = {"severity_label": "级别" if zh else "Sev", "kind_label": "问题" if zh else "Kind", "shop": "店铺" if zh else "Shop",
            "order_id": "订单号" if zh else "Order", "carrier_label": "快递" if zh else "Carrier",
            "tracking_number": "运单号" if zh else "Tracking", "destination": "目的地" if zh else "To",
            "status_label": "状态" if zh else "Status", "opened": "发现时间" if zh else "Opened", "reason": "原因" if zh else "Reason"}
    lines = ["  ".join(pad(head[c], w) for c, w in cols)]
    for issue in issues:
        row = label_issue(issue, settings, lang)
        row["opened"] = china_time(issue.get("opened_at"))
        lines.append("  ".join(pad(str(row.get(c) or ""), w) for c, w in cols))
    return "\n".join(lines)
