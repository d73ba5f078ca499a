"""Buyer stage notifications: tell the buyer when the parcel is picked up, reaches their city, is out for
delivery, is delayed, hits an exception or waits uncollected at a locker — before they have to ask.

Pure rules over parcel state (``now`` injected): ``NotificationRules.stages_reached`` says which stages
a subject has reached and when; ``NotificationRules.build`` turns a reached stage into a notification
event (or nothing, when no rule matches), with ``send_at`` moved out of quiet hours. The processor
keeps which stages were already notified in the parcel state, so each stage is notified at most once
per parcel, whatever duplicates or reordering the stream delivers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

from config import ConfigError
from domain.vocabulary import CARRIERS, CHINA_TZ, NOTIFICATION_STAGES, PLATFORMS, carrier_name

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "notifications.yaml"
TEMPLATE_FIELDS = ("carrier_name", "carrier", "tracking_number", "city", "province", "reason", "expected_delay",
                   "order_id", "shop")
_EXCEPTION_ZH = {
    "problem_parcel": "疑难件", "out_of_area": "超出派送范围", "refused": "被拒收", "returned": "退回中",
    "lost": "丢失", "damaged": "破损", "held": "滞留", "unreachable": "无法联系收件人",
    "delivery_failed": "派送失败", "customs": "清关异常", "other": "异常",
}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    stage: str
    template: str
    min_order_value: float = 0.0
    platforms: frozenset[str] = frozenset()
    shops: frozenset[str] = frozenset()
    carriers: frozenset[str] = frozenset()

    def matches(self, order_value: float | None, platform: str | None, shop: str | None, carrier: str) -> bool:
        if self.min_order_value and (order_value is None or order_value < self.min_order_value):
            return False
        if self.platforms and platform not in self.platforms:
            return False
        if self.shops and shop not in self.shops:
            return False
        return not (self.carriers and carrier not in self.carriers)


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    exempt_stages: frozenset[str] = frozenset()

    def defer(self, t: float, stage: str) -> float:
        """The first moment at or after ``t`` outside quiet hours (China time)."""
        if stage in self.exempt_stages or self.start == self.end:
            return t
        local = datetime.fromtimestamp(t, tz=CHINA_TZ)
        now_t = local.time()
        overnight = self.start > self.end  # e.g. 21:00 -> 08:00
        quiet = (now_t >= self.start or now_t < self.end) if overnight else (self.start <= now_t < self.end)
        if not quiet:
            return t
        end_day = local.date() + timedelta(days=1) if overnight and now_t >= self.start else local.date()
        return datetime.combine(end_day, self.end, tzinfo=CHINA_TZ).timestamp()


@dataclass(slots=True)
class NotificationRules:
    rules: list[Rule]
    quiet: QuietHours
    max_age_seconds: float
    webhook_url: str | None = None
    by_stage: dict[str, list[Rule]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rule in self.rules:
            self.by_stage.setdefault(rule.stage, []).append(rule)

    def build(self, subject: str, stage: str, reached_at: float, facts: dict[str, Any]) -> dict[str, Any] | None:
        """The notification event for ``stage`` of ``subject``, or None when no rule matches."""
        carrier, number = subject.rsplit(":", 1)
        for rule in self.by_stage.get(stage, ()):
            if not rule.matches(facts.get("order_value"), facts.get("platform"), facts.get("shop"), carrier):
                continue
            values = {
                "carrier_name": carrier_name(carrier), "carrier": carrier, "tracking_number": number,
                "city": facts.get("city") or facts.get("province") or "", "province": facts.get("province") or "",
                "reason": _EXCEPTION_ZH.get(facts.get("exception_reason") or "", facts.get("exception_reason") or ""),
                "expected_delay": facts.get("expected_delay") or "有所延误",
                "order_id": facts.get("order_id") or "", "shop": facts.get("shop") or "",
            }
            send_at = self.quiet.defer(reached_at, stage)
            return {
                "notification_id": hashlib.sha1(f"{subject}|{stage}".encode()).hexdigest()[:16],
                "stage": stage,
                "rule": rule.name,
                "parcel": subject,
                "carrier": carrier,
                "tracking_number": number,
                "order_id": facts.get("order_id"),
                "shop": facts.get("shop"),
                "platform": facts.get("platform"),
                "text": rule.template.format(**values),
                "reached_at": reached_at,
                "send_at": send_at,
                "deferred": send_at > reached_at,
            }
        return None


def _hhmm(raw: Any, key: str) -> time:
    try:
        hours, minutes = str(raw).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ConfigError(key, f"expected HH:MM, got {raw!r}") from None


def _set(rule: dict[str, Any], name: str, key: str, allowed: tuple[str, ...] | None = None) -> frozenset[str]:
    values = rule.get(name) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(key, "expected a list of strings")
    if allowed is not None:
        for v in values:
            if v not in allowed:
                raise ConfigError(key, f"unknown value {v!r}; expected one of {', '.join(allowed)}")
    return frozenset(values)


def load_rules(path: Path | str | None = None) -> NotificationRules:
    """Load and validate the notification rules; errors name the exact key."""
    import os

    p = Path(path or os.environ.get("PARCELWATCH_NOTIFICATIONS") or DEFAULT_PATH)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(p), f"cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), "must hold a mapping")
    unknown = set(data) - {"quiet_hours", "max_age_hours", "webhook_url", "rules"}
    if unknown:
        raise ConfigError(f"notifications.{sorted(unknown)[0]}", "unknown key")
    qh = data.get("quiet_hours") or {}
    quiet = QuietHours(
        _hhmm(qh.get("start", "00:00"), "notifications.quiet_hours.start"),
        _hhmm(qh.get("end", "00:00"), "notifications.quiet_hours.end"),
        _set(qh, "exempt_stages", "notifications.quiet_hours.exempt_stages", NOTIFICATION_STAGES),
    )
    max_age = data.get("max_age_hours", 24)
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age <= 0:
        raise ConfigError("notifications.max_age_hours", f"must be a number > 0, got {max_age!r}")
    rules = []
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise ConfigError("notifications.rules", "expected a list")
    for i, r in enumerate(raw_rules):
        key = f"notifications.rules[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(key, "expected a mapping")
        extra = set(r) - {"name", "stage", "when", "template"}
        if extra:
            raise ConfigError(f"{key}.{sorted(extra)[0]}", "unknown key")
        stage = r.get("stage")
        if stage not in NOTIFICATION_STAGES:
            raise ConfigError(f"{key}.stage", f"unknown stage {stage!r}; expected one of {', '.join(NOTIFICATION_STAGES)}")
        template = r.get("template")
        if not isinstance(template, str) or not template:
            raise ConfigError(f"{key}.template", "is required")
        try:
            template.format(**dict.fromkeys(TEMPLATE_FIELDS, ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"{key}.template", f"unknown field {exc}; fields: {', '.join(TEMPLATE_FIELDS)}") from None
        when = r.get("when") or {}
        if not isinstance(when, dict) or set(when) - {"min_order_value", "platforms", "shops", "carriers"}:
            raise ConfigError(f"{key}.when", "expected min_order_value, platforms, shops, carriers")
        min_value = when.get("min_order_value", 0)
        if isinstance(min_value, bool) or not isinstance(min_value, (int, float)) or min_value < 0:
            raise ConfigError(f"{key}.when.min_order_value", "must be a number >= 0")
        rules.append(Rule(
            name=str(r.get("name") or f"rule{i}"), stage=stage, template=template, min_order_value=float(min_value),
            platforms=_set(when, "platforms", f"{key}.when.platforms", PLATFORMS),
            shops=_set(when, "shops", f"{key}.when.shops"),
            carriers=_set(when, "carriers", f"{key}.when.carriers", tuple(CARRIERS)),
        ))
    webhook = data.get("webhook_url")
    if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
        raise ConfigError("notifications.webhook_url", "must be an http(s) URL or null")
    return NotificationRules(rules, quiet, float(max_age) * 3600, webhook)
