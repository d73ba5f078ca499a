"""The queue as staff read it: labels in their language, the day asked for, CSV for Excel, a terminal table.

Pure helpers shared by the web API (``web/api.py``) and the ``queue`` command; Redis access is in
``issue_queue/store.py``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date
from typing import Any

from config import Settings
from domain.vocabulary import RESOLUTION_LABELS, SEVERITY_LABELS, STATUS_LABELS, china_time

# (field, Chinese header, English header)
CSV_COLUMNS = (
    ("id", "问题编号", "Issue id"),
    ("shop", "店铺", "Shop"),
    ("platform", "平台", "Platform"),
    ("order_id", "订单号", "Order id"),
    ("carrier", "快递公司", "Carrier"),
    ("tracking_number", "运单号", "Tracking number"),
    ("lane", "线路", "Lane"),
    ("kind", "问题类型", "Kind"),
    ("reason", "原因", "Reason"),
    ("severity", "严重程度", "Severity"),
    ("evidence", "依据", "Evidence"),
    ("suggested_action", "建议操作", "Suggested action"),
    ("status", "状态", "Status"),
    ("assignee", "处理人", "Assignee"),
    ("opened_at", "发现时间", "Opened at"),
    ("updated_at", "更新时间", "Updated at"),
    ("resolution_code", "处理结果", "Resolution"),
    ("note", "备注", "Note"),
)


def parse_day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {raw[:20]!r}") from None


def label_issue(issue: dict[str, Any], settings: Settings, lang: str) -> dict[str, Any]:
    """A copy of ``issue`` with labels for kind, severity, status and resolution in ``lang``."""
    i = 0 if lang == "zh" else 1
    out = dict(issue)
    out["kind_label"] = settings.labels.kind(issue["kind"], lang)
    out["severity_label"] = SEVERITY_LABELS.get(issue["severity"], (issue["severity"],) * 2)[i]
    out["status_label"] = STATUS_LABELS.get(issue["status"], (issue["status"],) * 2)[i]
    code = issue.get("resolution_code")
    out["resolution_label"] = RESOLUTION_LABELS.get(code, (code or "",) * 2)[i] if code else ""
    return out


def _excel_safe(value: Any) -> str:
    """Text for one CSV cell that Excel shows as written."""
    if value is None:
        return ""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text  # never let a cell become a formula (CSV injection)
    if text.isdigit() and len(text) > 11:
        # Long digit strings (tracking numbers, order ids) would turn into 7.31E+13; keep them as text.
        return f'="{text}"'
    return text


def to_csv(issues: Iterable[dict[str, Any]], settings: Settings, lang: str = "zh") -> bytes:
    """UTF-8 with BOM (Excel on Windows then reads Chinese correctly), CRLF rows, labelled values."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([zh if lang == "zh" else en for _, zh, en in CSV_COLUMNS])
    for issue in issues:
        labelled = label_issue(issue, settings, lang)
        row = []
        for field, _, _ in CSV_COLUMNS:
            if field == "kind":
                value: Any = labelled["kind_label"]
            elif field == "severity":
                value = labelled["severity_label"]
            elif field == "status":
                value = labelled["status_label"]
            elif field == "resolution_code":
                value = labelled["resolution_label"]
            elif field in ("opened_at", "updated_at"):
                value = china_time(issue.get(field))
            else:
                value = issue.get(field)
            row.append(_excel_safe(value))
        writer.writerow(row)
    return "\ufeff".encode() + buf.getvalue().encode("utf-8")


def table(issues: list[dict[str, Any]], settings: Settings, lang: str = "zh") -> str:
    """A plain terminal table of the queue (for the ``queue`` command)."""
    import unicodedata

    def width(s: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)

    def pad(s: str, n: int) -> str:
        s = s if width(s) <= n else _clip(s, n)
        return s + " " * (n - width(s))

    def _clip(s: str, n: int) -> str:
        out = ""
        for c in s:
            if width(out + c) > n - 1:
                return out + "…"
            out += c
        return out

    cols = (("severity_label", 6), ("kind_label", 16), ("order_id", 18), ("carrier", 6),
            ("tracking_number", 16), ("lane", 16), ("status_label", 10), ("opened", 16), ("reason", 40))
    head = {"severity_label": "级别" if lang == "zh" else "Sev", "kind_label": "问题" if lang == "zh" else "Kind",
            "order_id": "订单号" if lang == "zh" else "Order", "carrier": "快递" if lang == "zh" else "Carr.",
            "tracking_number": "运单号" if lang == "zh" else "Tracking", "lane": "线路" if lang == "zh" else "Lane",
            "status_label": "状态" if lang == "zh" else "Status", "opened": "发现时间" if lang == "zh" else "Opened",
            "reason": "原因" if lang == "zh" else "Reason"}
    lines = ["  ".join(pad(head[c], w) for c, w in cols)]
    for issue in issues:
        row = label_issue(issue, settings, lang)
        row["opened"] = china_time(issue.get("opened_at"))
        lines.append("  ".join(pad(str(row.get(c) or ""), w) for c, w in cols))
    return "\n".join(lines)
