"""Alert routing rules: ``config/alert_routes.yaml`` loaded and validated.

Every error is a :class:`config.ConfigError` naming the exact key (``alert_routes.routes[2].match.kinds[0]``)
and the problem, so a typo in a route stops the worker at start-up instead of silently never alerting.

Secrets do not belong in the file: ``url``, ``secret`` and header values may say ``${VAR}`` and are taken
from the environment at load time (an unset variable is an error naming the key and the variable).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from config import ConfigError
from domain.vocabulary import CARRIERS, CHINA_TZ, ISSUE_KINDS, PLATFORMS, SEVERITIES, china_date, china_day_bounds

from .vendors import VENDORS, RateLimit

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "alert_routes.yaml"
PATH_ENV = "PARCELWATCH_ALERT_ROUTES"
ACTIONS = ("open", "update", "resolve")
DESTINATION_TYPES = ("webhook", "dingtalk", "wecom", "feishu", "slack", "kafka")
CHAT_TYPES = ("dingtalk", "wecom", "feishu", "slack")
FEISHU_FORMATS = ("text", "post", "interactive")
# Route and destination names become metric label values and spool file names: keep them plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
ROOT = "alert_routes"


def severity_rank(severity: str | None) -> int:
    """Position in SEVERITIES; unknown or missing severities rank below ``low`` so min_severity filters them out."""
    try:
        return SEVERITIES.index(severity or "")
    except ValueError:
        return -1


@dataclass(frozen=True, slots=True)
class Match:
    """What a route takes; an empty set means any value."""

    kinds: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    min_severity: str | None = None
    shops: frozenset[str] = frozenset()
    carriers: frozenset[str] = frozenset()
    platforms: frozenset[str] = frozenset()

    def matches(self, issue: Mapping[str, Any]) -> bool:
        if self.kinds and issue.get("kind") not in self.kinds:
            return False
        severity = issue.get("severity")
        if self.severities and severity not in self.severities:
            return False
        if self.min_severity is not None and severity_rank(severity) < severity_rank(self.min_severity):
            return False
        if self.shops and issue.get("shop") not in self.shops:
            return False
        if self.carriers and issue.get("carrier") not in self.carriers:
            return False
        return not (self.platforms and issue.get("platform") not in self.platforms)

    def matches_incident(self, incident: Mapping[str, Any]) -> bool:
        """A lane incident spans several kinds, shops and platforms: it matches when any of them does."""
        if self.kinds and not self.kinds.intersection(incident.get("kinds") or ()):
            return False
        severity = incident.get("severity")
        if self.severities and severity not in self.severities:
            return False
        if self.min_severity is not None and severity_rank(severity) < severity_rank(self.min_severity):
            return False
        if self.shops and not self.shops.intersection(incident.get("shops") or ()):
            return False
        if self.carriers and incident.get("carrier") not in self.carriers:
            return False
        return not (self.platforms and not self.platforms.intersection(incident.get("platforms") or ()))


@dataclass(frozen=True, slots=True)
class Digest:
    """Batch up to ``max_items`` issues, or whatever arrived within ``max_seconds`` of the first, into one message."""

    max_items: int
    max_seconds: float


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    multiplier: float = 2.0
    # Each delay is reduced by up to this fraction at random, so destinations recovering from an outage
    # are not hit by every worker at the same instant.
    jitter: float = 0.2

    def backoff(self, attempt: int, rand: float) -> float:
        """Delay after failed attempt number ``attempt`` (1-based); ``rand`` is uniform in [0, 1)."""
        delay = min(self.max_backoff_seconds, self.initial_backoff_seconds * self.multiplier ** (attempt - 1))
        return delay * (1.0 - self.jitter * rand)


@dataclass(frozen=True, slots=True)
class OnCall:
    """A rotation: ``users`` take turns of ``shift_hours`` each, the first from ``start`` (epoch seconds).
    ``by_mobile``: the entries are DingTalk phone numbers rather than user ids."""

    users: tuple[str, ...]
    start: float
    shift_hours: float = 24.0
    by_mobile: bool = False

    def current(self, now: float) -> str:
        shift = int((now - self.start) // (self.shift_hours * 3600))
        return self.users[shift % len(self.users)]


@dataclass(frozen=True, slots=True)
class Mention:
    """Who a destination's messages @-mention, in that platform's own ids: DingTalk userIds (or ``mobiles``),
    WeCom userids, Feishu open_ids (ou_...), Slack member ids (U...). Only new and updated issues at least
    ``min_severity`` mention anyone (never a resolve); @all only a message with a critical issue in it."""

    users: tuple[str, ...] = ()
    mobiles: tuple[str, ...] = ()  # dingtalk only
    on_call: OnCall | None = None
    min_severity: str | None = None
    all_for_critical: bool = False

    def people(self, now: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(user ids, mobiles) to mention now: the fixed ones and whoever is on call."""
        users = list(self.users)
        mobiles = list(self.mobiles)
        if self.on_call is not None:
            person = self.on_call.current(now)
            target = mobiles if self.on_call.by_mobile else users
            if person not in target:
                target.append(person)
        return tuple(users), tuple(mobiles)


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    name: str
    type: str
    # URLs carry access tokens and headers credentials: kept out of repr so a logged config leaks nothing.
    url: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    topic: str | None = None
    format: str = "text"  # feishu: text | post | interactive
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    at_mobiles: tuple[str, ...] = ()  # dingtalk: phone numbers to @ (kept for older files; see ``mention``)
    at_all: bool = False  # dingtalk: @all, for messages with a critical issue (kept for older files)
    timeout_seconds: float = 10.0
    # Every window must hold: the platform's documented limits plus any the operator adds. Shared by every
    # route and every worker that sends to the same robot.
    rate_limits: tuple[RateLimit, ...] = ()
    # The robot's 关键词 (DingTalk / Feishu keyword security): put in front of every message's title and text.
    keyword: str | None = None
    environment: str | None = None  # 生产 / 测试 ...: shown in front of every title
    base_url: str | None = None  # the staff page (https://...): each message links back to its issue there
    proxy: str | None = field(default=None, repr=False)  # http://[user:password@]host:port for allow-listed egress
    mention: Mention = Mention()
    # The wait after a throttling answer that names none (default: the platform's documented penalty).
    throttle_penalty_seconds: float | None = None

    @property
    def mentions(self) -> Mention:
        """``mention`` with the older ``at_mobiles`` / ``at_all`` keys folded in."""
        m = self.mention
        if not self.at_mobiles and not self.at_all:
            return m
        mobiles = tuple(dict.fromkeys((*m.mobiles, *self.at_mobiles)))
        return Mention(m.users, mobiles, m.on_call, m.min_severity, m.all_for_critical or self.at_all)

    @property
    def penalty_seconds(self) -> float:
        if self.throttle_penalty_seconds is not None:
            return self.throttle_penalty_seconds
        vendor = VENDORS.get(self.type)
        return vendor.penalty_seconds if vendor else 60.0


@dataclass(frozen=True, slots=True)
class QuietHours:
    """China time, minutes after midnight: from ``start`` to ``end`` (past midnight when ``end`` < ``start``)."""

    start: int
    end: int

    def active(self, now: float) -> bool:
        minute = self._minute(now)
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    @staticmethod
    def _minute(now: float) -> int:
        return int((now - china_day_bounds(china_date(now))[0]) // 60)


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    destinations: tuple[str, ...]
    match: Match = Match()
    actions: frozenset[str] = frozenset({"open"})
    digest: Digest | None = None
    rate_limits: tuple[RateLimit, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    # Issues of a lane with an open lane incident are left out; the route gets the incident message instead.
    lane_incidents: bool = False
    # Non-critical alerts wait out these hours and then come as one summary; critical ones are sent at once.
    quiet_hours: QuietHours | None = None

    @property
    def rate_limit(self) -> RateLimit | None:
        return self.rate_limits[0] if self.rate_limits else None

    def matches(self, issue: Mapping[str, Any]) -> bool:
        return issue.get("action") in self.actions and self.match.matches(issue)


@dataclass(frozen=True, slots=True)
class IncidentSettings:
    kinds: frozenset[str] = frozenset({"pickup_overdue", "transit_overdue", "tracking_stale"})
    threshold: int = 20
    window_minutes: float = 60.0
    renotify_minutes: float = 30.0
    # Closed when the count falls below this (hysteresis: a count wobbling around the threshold must not
    # open and close the incident with every parcel).
    close_below: int = 10
    severity: str = "high"


@dataclass(frozen=True, slots=True)
class AlertConfig:
    routes: tuple[Route, ...]
    destinations: Mapping[str, DestinationConfig]
    spool_dir: Path
    memory_limit: int = 1000  # envelopes held in memory per (route, destination) before spilling to disk
    incidents: IncidentSettings = IncidentSettings()
    source: str = ""
    environment: str | None = None
    base_url: str | None = None


# -- validation helpers ---------------------------------------------------------------------------------


def _mapping(value: Any, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
    for k in value:
        if k not in allowed:
            raise ConfigError(f"{key}.{k}", f"unknown key; expected one of {', '.join(allowed)}")
    return value


def _number(value: Any, key: str, *, minimum: float = 0.0, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"expected a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ConfigError(key, f"must be {'>' if strict else '>='} {minimum:g}, got {value}")
    return float(value)


def _int(value: Any, key: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected a whole number, got {value!r}")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value}")
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected a non-empty string, got {value!r}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def _name(value: Any, key: str) -> str:
    name = _str(value, key)
    if not _NAME.match(name):
        raise ConfigError(key, f"{name!r} must be 1-64 letters, digits, '_', '.' or '-' (it names metrics and spool files)")
    return name


def _set(value: Any, key: str, allowed: tuple[str, ...] | None = None, *, upper: bool = False) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]  # `kinds: pickup_overdue` is read as a list of one rather than refused
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list, got {type(value).__name__}")
    out = set()
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{key}[{i}]", f"expected a non-empty string, got {v!r}")
        v = v.upper() if upper else v
        if allowed is not None and v not in allowed:
            raise ConfigError(f"{key}[{i}]", f"unknown value {v!r}; expected one of {', '.join(allowed)}")
        out.add(v)
    return frozenset(out)


def _expand(value: Any, key: str, env: Mapping[str, str]) -> str:
    raw = _str(value, key)

    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var not in env or env[var] == "":
            raise ConfigError(key, f"refers to environment variable {var}, which is not set")
        return env[var]

    return _ENV_REF.sub(sub, raw)


def _url(value: Any, key: str, env: Mapping[str, str]) -> str:
    url = _expand(value, key, env)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(key, "must be an http:// or https:// URL")
    return url


def _rate_limits(value: Any, key: str) -> tuple[RateLimit, ...]:
    """``{per_minute: 20}``, ``{per_second: 5, per_minute: 100}``, ``{per_minute: 3, window_seconds: 10}`` (3 in
    any 10 s), or a list of those."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(lim for i, v in enumerate(value) for lim in _rate_limits(v, f"{key}[{i}]"))
    data = _mapping(value, key, ("per_second", "per_minute", "window_seconds"))
    if "per_second" not in data and "per_minute" not in data:
        raise ConfigError(f"{key}.per_minute", "is required (or per_second)")
    if "window_seconds" in data and "per_second" in data:
        raise ConfigError(f"{key}.window_seconds", "goes with per_minute alone (per_minute messages in any window_seconds)")
    limits = []
    if "per_second" in data:
        limits.append(RateLimit(_int(data["per_second"], f"{key}.per_second"), 1.0))
    if "per_minute" in data:
        window = _number(data.get("window_seconds", 60), f"{key}.window_seconds")
        limits.append(RateLimit(_int(data["per_minute"], f"{key}.per_minute"), window))
    return tuple(limits)


def _time(value: Any, key: str) -> float:
    """An ISO 8601 time (a YAML timestamp too); without an offset it is China time."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(key, f"expected a time like 2026-01-05T09:00:00+08:00, got {value!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ConfigError(key, f"expected a time like 2026-01-05T09:00:00+08:00, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA_TZ)
    return value.timestamp()


def _clock_minute(value: Any, key: str) -> int:
    """"22:00" (China time) as minutes after midnight. YAML 1.1 reads an unquoted 22:00 as the number 1320
    (base 60), which is the same minutes."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return value
    if isinstance(value, str) and (m := _CLOCK.match(value.strip())):
        hours, minutes = int(m.group(1)), int(m.group(2))
        if hours < 24 and minutes < 60:
            return hours * 60 + minutes
    raise ConfigError(key, f"expected a time of day like \"22:00\", got {value!r}")


def _mention(value: Any, key: str, kind: str) -> Mention:
    data = _mapping(value, key, ("users", "mobiles", "on_call", "min_severity", "all_for_critical"))
    if "mobiles" in data and kind != "dingtalk":
        raise ConfigError(f"{key}.mobiles", "applies to dingtalk only (the others mention user ids)")
    min_severity = data.get("min_severity")
    if min_severity is not None and min_severity not in SEVERITIES:
        raise ConfigError(f"{key}.min_severity", f"expected one of {', '.join(SEVERITIES)}, got {min_severity!r}")
    on_call = None
    if data.get("on_call") is not None:
        ok = f"{key}.on_call"
        raw = _mapping(data["on_call"], ok, ("users", "mobiles", "start", "shift_hours"))
        if ("users" in raw) == ("mobiles" in raw):
            raise ConfigError(f"{ok}.users", "give the rotation as users (or, for dingtalk, mobiles)")
        if "mobiles" in raw and kind != "dingtalk":
            raise ConfigError(f"{ok}.mobiles", "applies to dingtalk only (the others mention user ids)")
        field_ = "mobiles" if "mobiles" in raw else "users"
        people = _list(raw[field_], f"{ok}.{field_}")
        if not people:
            raise ConfigError(f"{ok}.{field_}", "must name at least one person")
        if "start" not in raw:
            raise ConfigError(f"{ok}.start", "is required (when the first person's shift began)")
        on_call = OnCall(people, _time(raw["start"], f"{ok}.start"),
                         _number(raw.get("shift_hours", 24), f"{ok}.shift_hours"), by_mobile=field_ == "mobiles")
    return Mention(
        users=_list(data.get("users"), f"{key}.users"), mobiles=_list(data.get("mobiles"), f"{key}.mobiles"),
        on_call=on_call, min_severity=min_severity,
        all_for_critical=_bool(data.get("all_for_critical", False), f"{key}.all_for_critical"),
    )


def _list(value: Any, key: str) -> tuple[str, ...]:
    """A list of non-empty strings in the given order, without repeats (numbers are read as text: phone numbers)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        value = [value]
    out: list[str] = []
    for i, v in enumerate(value):
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{key}[{i}]", f"expected a non-empty string, got {v!r}")
        if v not in out:
            out.append(v)
    return tuple(out)


def _destination(name: str, value: Any, key: str, env: Mapping[str, str], defaults: Mapping[str, Any]) -> DestinationConfig:
    allowed = ("type", "url", "secret", "topic", "format", "headers", "at_mobiles", "at_all", "timeout_seconds", "rate_limit",
               "keyword", "proxy", "mention", "throttle_penalty_seconds")
    data = _mapping(value, key, allowed)
    kind = data.get("type")
    if kind not in DESTINATION_TYPES:
        raise ConfigError(f"{key}.type", f"expected one of {', '.join(DESTINATION_TYPES)}, got {kind!r}")
    url = secret = topic = None
    if kind == "kafka":
        if "topic" not in data:
            raise ConfigError(f"{key}.topic", "is required for a kafka destination")
        topic = _str(data["topic"], f"{key}.topic")
        for k in ("url", "secret", "headers", "format", "at_mobiles", "at_all", "keyword", "proxy", "mention"):
            if k in data:
                raise ConfigError(f"{key}.{k}", "does not apply to a kafka destination")
    else:
        if "url" not in data:
            raise ConfigError(f"{key}.url", f"is required for a {kind} destination")
        url = _url(data["url"], f"{key}.url", env)
        if "topic" in data:
            raise ConfigError(f"{key}.topic", f"does not apply to a {kind} destination")
    if "secret" in data:
        if kind not in ("dingtalk", "feishu"):
            raise ConfigError(f"{key}.secret", f"signing applies to dingtalk and feishu, not {kind}")
        secret = _expand(data["secret"], f"{key}.secret", env)
    fmt = "text"
    if "format" in data:
        if kind != "feishu":
            raise ConfigError(f"{key}.format", "applies to feishu only")
        fmt = data["format"]
        if fmt not in FEISHU_FORMATS:
            raise ConfigError(f"{key}.format", f"expected one of {', '.join(FEISHU_FORMATS)}, got {fmt!r}")
    headers: dict[str, str] = {}
    if "headers" in data:
        if kind != "webhook":
            raise ConfigError(f"{key}.headers", "applies to webhook destinations only")
        raw_headers = data["headers"]
        if not isinstance(raw_headers, Mapping):
            raise ConfigError(f"{key}.headers", f"expected a mapping, got {type(raw_headers).__name__}")
        headers = {str(h): _expand(v, f"{key}.headers.{h}", env) for h, v in raw_headers.items()}
    for k in ("at_mobiles", "at_all"):
        if k in data and kind != "dingtalk":
            raise ConfigError(f"{key}.{k}", "applies to dingtalk only (use mention for the others)")
    chat = kind in CHAT_TYPES
    for k in ("keyword", "mention"):
        if k in data and not chat:
            raise ConfigError(f"{key}.{k}", f"applies to the chat robots ({', '.join(CHAT_TYPES)}), not {kind}")
    at_mobiles = _set(data.get("at_mobiles"), f"{key}.at_mobiles")
    vendor = VENDORS.get(kind)
    proxy = defaults.get("proxy") if kind != "kafka" else None
    if "proxy" in data:
        proxy = None if data["proxy"] is None else _url(data["proxy"], f"{key}.proxy", env)
    penalty = None
    if "throttle_penalty_seconds" in data:
        penalty = _number(data["throttle_penalty_seconds"], f"{key}.throttle_penalty_seconds", strict=False)
    return DestinationConfig(
        name=name, type=kind, url=url, secret=secret, topic=topic, format=fmt, headers=headers,
        at_mobiles=tuple(sorted(at_mobiles)), at_all=_bool(data.get("at_all", False), f"{key}.at_all"),
        timeout_seconds=_number(data.get("timeout_seconds", 10), f"{key}.timeout_seconds"),
        rate_limits=(vendor.limits if vendor else ()) + _rate_limits(data.get("rate_limit"), f"{key}.rate_limit"),
        keyword=_str(data["keyword"], f"{key}.keyword") if "keyword" in data else None,
        environment=defaults.get("environment") if chat else None,
        base_url=defaults.get("base_url") if chat else None,
        proxy=proxy,
        mention=_mention(data.get("mention"), f"{key}.mention", kind) if "mention" in data else Mention(),
        throttle_penalty_seconds=penalty,
    )


def _match(value: Any, key: str) -> Match:
    data = _mapping(value, key, ("kinds", "severity", "min_severity", "shops", "carriers", "platforms"))
    if "severity" in data and "min_severity" in data:
        raise ConfigError(f"{key}.min_severity", "give either severity (a list) or min_severity, not both")
    min_severity = data.get("min_severity")
    if min_severity is not None and min_severity not in SEVERITIES:
        raise ConfigError(f"{key}.min_severity", f"expected one of {', '.join(SEVERITIES)}, got {min_severity!r}")
    return Match(
        kinds=_set(data.get("kinds"), f"{key}.kinds", ISSUE_KINDS),
        severities=_set(data.get("severity"), f"{key}.severity", SEVERITIES),
        min_severity=min_severity,
        shops=_set(data.get("shops"), f"{key}.shops"),
        carriers=_set(data.get("carriers"), f"{key}.carriers", tuple(CARRIERS), upper=True),
        platforms=_set(data.get("platforms"), f"{key}.platforms", PLATFORMS),
    )


def _retry(value: Any, key: str) -> RetryPolicy:
    data = _mapping(value, key, ("max_attempts", "initial_backoff_seconds", "max_backoff_seconds", "multiplier", "jitter"))
    d = RetryPolicy()
    policy = RetryPolicy(
        max_attempts=_int(data.get("max_attempts", d.max_attempts), f"{key}.max_attempts"),
        initial_backoff_seconds=_number(data.get("initial_backoff_seconds", d.initial_backoff_seconds), f"{key}.initial_backoff_seconds"),
        max_backoff_seconds=_number(data.get("max_backoff_seconds", d.max_backoff_seconds), f"{key}.max_backoff_seconds"),
        multiplier=_number(data.get("multiplier", d.multiplier), f"{key}.multiplier", minimum=1.0, strict=False),
        jitter=_number(data.get("jitter", d.jitter), f"{key}.jitter", strict=False),
    )
    if policy.jitter >= 1:
        raise ConfigError(f"{key}.jitter", f"must be a fraction below 1, got {policy.jitter}")
    if policy.max_backoff_seconds < policy.initial_backoff_seconds:
        raise ConfigError(f"{key}.max_backoff_seconds", "must be >= initial_backoff_seconds")
    return policy


def _all_of(value: Any, key: str, keys: tuple[str, ...], hint: str = "") -> Mapping[str, Any] | None:
    """An optional mapping that, when given, must have every one of ``keys`` (and no other)."""
    if value is None:
        return None
    data = _mapping(value, key, keys)
    for k in keys:
        if k not in data:
            raise ConfigError(f"{key}.{k}", f"is required{hint}")
    return data


def _route(value: Any, key: str, destinations: Mapping[str, DestinationConfig]) -> Route:
    data = _mapping(value, key, ("name", "match", "actions", "destinations", "digest", "rate_limit", "retry", "lane_incidents",
                                 "quiet_hours"))
    if "name" not in data:
        raise ConfigError(f"{key}.name", "is required")
    name = _name(data["name"], f"{key}.name")
    raw_dest = data.get("destinations")
    if isinstance(raw_dest, str):
        raw_dest = [raw_dest]
    if not isinstance(raw_dest, list) or not raw_dest:
        raise ConfigError(f"{key}.destinations", "expected a non-empty list of destination names")
    dest_names: list[str] = []
    for i, d in enumerate(raw_dest):
        if d not in destinations:
            known = ", ".join(destinations) or "none are defined"
            raise ConfigError(f"{key}.destinations[{i}]", f"unknown destination {d!r}; defined: {known}")
        if d in dest_names:
            raise ConfigError(f"{key}.destinations[{i}]", f"destination {d!r} is listed twice")
        dest_names.append(d)
    actions = _set(data.get("actions", ["open"]), f"{key}.actions", ACTIONS)
    if not actions:
        raise ConfigError(f"{key}.actions", "must name at least one of open, update, resolve")
    digest = None
    if (raw := _all_of(data.get("digest"), f"{key}.digest", ("max_items", "max_seconds"))) is not None:
        dk = f"{key}.digest"
        digest = Digest(_int(raw["max_items"], f"{dk}.max_items"), _number(raw["max_seconds"], f"{dk}.max_seconds"))
    quiet = None
    hint = " (a time of day, China time, like \"22:00\")"
    if (raw := _all_of(data.get("quiet_hours"), f"{key}.quiet_hours", ("start", "end"), hint)) is not None:
        qk = f"{key}.quiet_hours"
        quiet = QuietHours(_clock_minute(raw["start"], f"{qk}.start"), _clock_minute(raw["end"], f"{qk}.end"))
        if quiet.start == quiet.end:
            raise ConfigError(f"{qk}.end", "must differ from start")
    return Route(
        name=name,
        destinations=tuple(dest_names),
        match=_match(data.get("match"), f"{key}.match"),
        actions=actions,
        digest=digest,
        rate_limits=_rate_limits(data.get("rate_limit"), f"{key}.rate_limit"),
        retry=_retry(data.get("retry"), f"{key}.retry"),
        lane_incidents=_bool(data.get("lane_incidents", False), f"{key}.lane_incidents"),
        quiet_hours=quiet,
    )


def _incidents(value: Any, key: str) -> IncidentSettings:
    data = _mapping(value, key, ("kinds", "threshold", "window_minutes", "renotify_minutes", "close_below", "severity"))
    d = IncidentSettings()
    kinds = _set(data.get("kinds"), f"{key}.kinds", ISSUE_KINDS) if "kinds" in data else d.kinds
    if not kinds:
        raise ConfigError(f"{key}.kinds", "must name at least one issue kind")
    threshold = _int(data.get("threshold", d.threshold), f"{key}.threshold", minimum=2)
    close_below = _int(data.get("close_below", max(1, threshold // 2)), f"{key}.close_below")
    if close_below > threshold:
        raise ConfigError(f"{key}.close_below", f"must be <= threshold ({threshold}), got {close_below}")
    severity = data.get("severity", d.severity)
    if severity not in SEVERITIES:
        raise ConfigError(f"{key}.severity", f"expected one of {', '.join(SEVERITIES)}, got {severity!r}")
    return IncidentSettings(
        kinds=kinds,
        threshold=threshold,
        window_minutes=_number(data.get("window_minutes", d.window_minutes), f"{key}.window_minutes"),
        renotify_minutes=_number(data.get("renotify_minutes", d.renotify_minutes), f"{key}.renotify_minutes"),
        close_below=close_below,
        severity=severity,
    )


def parse(data: Any, *, env: Mapping[str, str] | None = None, data_dir: str | os.PathLike[str] | None = None,
          source: str = "") -> AlertConfig:
    """Validate an already-read mapping (the YAML document)."""
    env = os.environ if env is None else env
    if data is None:
        data = {}
    top = _mapping(data, ROOT, ("spool_dir", "memory_limit", "incidents", "environment", "base_url", "proxy", "destinations",
                                "routes"))
    defaults = {
        "environment": _str(top["environment"], f"{ROOT}.environment") if top.get("environment") is not None else None,
        "base_url": _url(top["base_url"], f"{ROOT}.base_url", env).rstrip("/") if top.get("base_url") is not None else None,
        "proxy": _url(top["proxy"], f"{ROOT}.proxy", env) if top.get("proxy") is not None else None,
    }
    raw_dest = top.get("destinations") or {}
    if not isinstance(raw_dest, Mapping):
        raise ConfigError(f"{ROOT}.destinations", f"expected a mapping of name -> destination, got {type(raw_dest).__name__}")
    destinations = {
        _name(n, f"{ROOT}.destinations.{n}"): _destination(n, v, f"{ROOT}.destinations.{n}", env, defaults)
        for n, v in raw_dest.items()
    }
    raw_routes = top.get("routes") or []
    if not isinstance(raw_routes, list):
        raise ConfigError(f"{ROOT}.routes", f"expected a list, got {type(raw_routes).__name__}")
    routes: list[Route] = []
    for i, r in enumerate(raw_routes):
        route = _route(r, f"{ROOT}.routes[{i}]", destinations)
        if any(route.name == other.name for other in routes):
            raise ConfigError(f"{ROOT}.routes[{i}].name", f"route name {route.name!r} is used twice")
        routes.append(route)
    spool = Path(_str(top.get("spool_dir", "alert-spool"), f"{ROOT}.spool_dir"))
    if not spool.is_absolute() and data_dir is not None:
        spool = Path(data_dir) / spool
    return AlertConfig(
        routes=tuple(routes),
        destinations=destinations,
        spool_dir=spool,
        memory_limit=_int(top.get("memory_limit", 1000), f"{ROOT}.memory_limit"),
        incidents=_incidents(top.get("incidents"), f"{ROOT}.incidents"),
        source=source,
        environment=defaults["environment"],
        base_url=defaults["base_url"],
    )


def load_routes(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None,
                data_dir: str | os.PathLike[str] | None = None) -> AlertConfig:
    """Load the routing rules from ``path``, ``$PARCELWATCH_ALERT_ROUTES`` or ``config/alert_routes.yaml``.

    A relative ``spool_dir`` is taken under ``data_dir`` (pass ``settings.app.data_dir``).
    """
    env = os.environ if env is None else env
    p = Path(path or env.get(PATH_ENV) or DEFAULT_PATH)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(p), f"cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), f"is not valid YAML: {exc}") from None
    return parse(data, env=env, data_dir=data_dir, source=str(p))
