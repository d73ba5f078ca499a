"""The after-sales queue as staff use it: shop-scoped access, the day's queue, labels and CSV for Excel.

Pure helpers shared by the web API (``agents/web.py``) and the ``queue`` command; Redis access is in
``issue_store``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from config import Settings

CHINA_TZ = timezone(timedelta(hours=8))
STATUS_LABELS = {
    "open": ("待处理", "Open"),
    "acknowledged": ("处理中", "Acknowledged"),
    "resolved": ("已解决", "Resolved"),
    "auto_resolved": ("已自动解决", "Auto-resolved"),
}
SEVERITY_LABELS = {
    "critical": ("紧急", "Critical"),
    "high": ("高", "High"),
    "medium": ("中", "Medium"),
    "low": ("低", "Low"),
}
RESOLUTION_LABELS = {
    "contacted_buyer": ("已联系买家", "Contacted buyer"),
    "extended_receipt": ("已延长收货", "Extended receipt"),
    "reshipped": ("已补发", "Re-shipped"),
    "refunded": ("已退款", "Refunded"),
    "carrier_claim": ("已向快递索赔", "Carrier claim"),
    "other": ("其他", "Other"),
}
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


class AccessDenied(Exception):
    """401: no token, or a token that is not configured."""


class Access:
    """Shop-scoped API tokens. A token is never logged; ``label`` is a short hash to name it in history."""

    def __init__(self, tokens: dict[str, list[str]]) -> None:
        self._tokens = dict(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def shops_for(self, token: str | None) -> list[str] | None:
        """The shops this token may read and change (``["*"]`` = all), or None if it is not valid."""
        if not token:
            return None
        found = None
        for known, shops in self._tokens.items():
            # Compare against every token in constant time: no early exit that times the match.
            if hmac.compare_digest(known.encode(), token.encode()):
                found = shops
        return found

    def read_scope(self, token: str | None) -> list[str]:
        """Reads are open when no tokens are configured (a developer's loopback); otherwise token-scoped."""
        if not self.enabled:
            return ["*"]
        shops = self.shops_for(token)
        if shops is None:
            raise AccessDenied("a valid API token is required (Authorization: Bearer <token>)")
        return shops

    def write_scope(self, token: str | None) -> list[str]:
        if not self.enabled:
            raise AccessDenied("write access needs an API token; none is configured (set PARCELWATCH_TOKENS)")
        shops = self.shops_for(token)
        if shops is None:
            raise AccessDenied("a valid API token is required (Authorization: Bearer <token>)")
        return shops

    @staticmethod
    def label(token: str) -> str:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def visible_shops(scope: list[str], known: Iterable[str], requested: str | None) -> list[str]:
    """The shops a request reads: the requested one if the scope allows it, else all it allows."""
    allowed = set(known) if "*" in scope else set(scope)
    if requested:
        return [requested] if requested in allowed or "*" in scope else []
    return sorted(allowed)


def day_bounds(day: date) -> tuple[float, float]:
    """A calendar day in China time as [start, end) epoch seconds."""
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def today(now: float) -> date:
    return datetime.fromtimestamp(now, tz=CHINA_TZ).date()


def parse_day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {raw[:20]!r}") from None


def china_time(iso: str | None) -> str:
    if not iso:
        return ""
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return dt.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


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
