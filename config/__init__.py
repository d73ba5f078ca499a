"""Validated configuration: YAML defaults, an optional override file, and environment variables.

Every error names the exact key (``thresholds.pickup_overdue_hours``) and what was wrong with it, so a
typo in a deployment file stops the worker at start-up instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from domain.vocabulary import ISSUE_KINDS, PROVINCES, SEVERITIES

DEFAULT_PATH = Path(__file__).with_name("default.yaml")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type or range."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class AppSettings:
    id: str
    broker_kind: Literal["embedded", "kafka"]
    broker: str
    redis_url: str
    store: str
    data_dir: str
    partitions: int
    web_host: str
    web_port: int
    session_timeout_seconds: float
    tick_interval_seconds: float
    producer_linger_ms: int
    catch_up_after_seconds: float
    ingest_ack_timeout_seconds: float
    ingest_max_unacked_scans: int

    def validate(self, path: str) -> None:
        urls = [u.strip() for u in self.broker.split(";")]
        for url in urls:
            if not url.startswith("kafka://") or len(url) <= len("kafka://"):
                raise ConfigError(f"{path}.broker", f"expected kafka://host:port[;kafka://host:port], got {self.broker!r}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"{path}.redis_url", f"expected a redis:// URL, got {self.redis_url!r}")
        if not self.store.startswith(("memory://", "rocksdb://")):
            raise ConfigError(f"{path}.store", f"expected memory:// or rocksdb://, got {self.store!r}")
        _positive(f"{path}.partitions", self.partitions)
        if not 0 < self.web_port < 65536:
            raise ConfigError(f"{path}.web_port", f"must be a TCP port 1-65535, got {self.web_port}")
        _positive(f"{path}.session_timeout_seconds", self.session_timeout_seconds)
        _positive(f"{path}.tick_interval_seconds", self.tick_interval_seconds)
        if self.producer_linger_ms < 0:
            raise ConfigError(f"{path}.producer_linger_ms", "must be >= 0")
        if self.catch_up_after_seconds < 0:
            raise ConfigError(f"{path}.catch_up_after_seconds", f"must be >= 0 (0 turns catching up off), "
                              f"got {self.catch_up_after_seconds}")
        _positive(f"{path}.ingest_ack_timeout_seconds", self.ingest_ack_timeout_seconds)
        _positive(f"{path}.ingest_max_unacked_scans", self.ingest_max_unacked_scans)


@dataclass(frozen=True)
class Topics:
    tracking: str
    orders: str
    order_facts: str
    order_purges: str
    ticks: str
    issues: str
    dead_letter: str
    deliveries: str
    alert_routing: str
    notifications: str


@dataclass(frozen=True)
class Thresholds:
    ship_overdue_hours: float
    pickup_overdue_hours: float
    pickup_overdue_hours_by_category: dict[str, float]
    tracking_stale_hours: float
    tracking_stale_out_for_delivery_hours: float
    locker_uncollected_hours: float
    autoconfirm_warning_hours: float
    autoconfirm_default_days: dict[str, float]

    def validate(self, path: str) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                for k, v in value.items():
                    _positive(f"{path}.{f.name}.{k}", v)
            else:
                _positive(f"{path}.{f.name}", value)
        if "other" not in self.autoconfirm_default_days:
            raise ConfigError(f"{path}.autoconfirm_default_days.other", "is required (used for unlisted platforms)")


@dataclass(frozen=True)
class Lanes:
    quantile: float
    half_life_days: float
    horizon_days: float
    credibility_samples: float
    min_hours_past_median: float
    refresh_minutes: float
    severity_percentiles: list[float]
    default_sla_hours: float
    region_sla_hours: dict[str, float]
    remote_provinces: list[str]

    def validate(self, path: str) -> None:
        if not 0 < self.quantile < 1:
            raise ConfigError(f"{path}.quantile", f"must be between 0 and 1 (exclusive), got {self.quantile}")
        _positive(f"{path}.half_life_days", self.half_life_days)
        _positive(f"{path}.horizon_days", self.horizon_days)
        _positive(f"{path}.credibility_samples", self.credibility_samples)
        if self.min_hours_past_median < 0:
            raise ConfigError(f"{path}.min_hours_past_median", f"must be >= 0, got {self.min_hours_past_median}")
        _positive(f"{path}.refresh_minutes", self.refresh_minutes)
        previous = self.quantile
        for i, p in enumerate(self.severity_percentiles):
            if not previous < p < 1:
                raise ConfigError(f"{path}.severity_percentiles[{i}]", f"must be above {previous:g} (the quantile, then "
                                  f"the step before) and below 1, got {p}")
            previous = p
        _positive(f"{path}.default_sla_hours", self.default_sla_hours)
        for k, v in self.region_sla_hours.items():
            _positive(f"{path}.region_sla_hours.{k}", v)
        if "remote" not in self.region_sla_hours:
            raise ConfigError(f"{path}.region_sla_hours.remote", "is required")
        for i, name in enumerate(self.remote_provinces):
            if name not in PROVINCES:
                raise ConfigError(f"{path}.remote_provinces[{i}]", f"unknown province {name!r}; use the short name (e.g. 新疆)")


@dataclass(frozen=True)
class Severity:
    high_value_order: float
    very_late_hours: float
    # Levels to add for a destination in a remote region (may be negative: slow lanes there are normal).
    remote_region_step: int
    base: dict[str, str]

    def validate(self, path: str) -> None:
        _positive(f"{path}.high_value_order", self.high_value_order)
        _positive(f"{path}.very_late_hours", self.very_late_hours)
        for kind in ISSUE_KINDS:
            if kind not in self.base:
                raise ConfigError(f"{path}.base.{kind}", "is missing")
        for kind, sev in self.base.items():
            if kind not in ISSUE_KINDS:
                raise ConfigError(f"{path}.base.{kind}", f"unknown issue kind; expected one of {', '.join(ISSUE_KINDS)}")
            if sev not in SEVERITIES:
                raise ConfigError(f"{path}.base.{kind}", f"unknown severity {sev!r}; expected one of {', '.join(SEVERITIES)}")


@dataclass(frozen=True)
class Label:
    zh: str
    en: str


@dataclass(frozen=True)
class Labels:
    kinds: dict[str, Label]
    exception_reasons: dict[str, Label]

    def validate(self, path: str) -> None:
        for kind in ISSUE_KINDS:
            if kind not in self.kinds:
                raise ConfigError(f"{path}.kinds.{kind}", "is missing")

    def kind(self, kind: str, lang: str = "zh") -> str:
        label = self.kinds.get(kind)
        return kind if label is None else (label.zh if lang == "zh" else label.en)

    def reason(self, reason: str, lang: str = "zh") -> str:
        label = self.exception_reasons.get(reason)
        return reason if label is None else (label.zh if lang == "zh" else label.en)


@dataclass(frozen=True)
class Access:
    tokens: dict[str, list[str]]
    metric_shops: list[str]


@dataclass(frozen=True)
class Simulator:
    seed: int
    rate_per_second: float
    speedup: float
    problem_shares: dict[str, float]

    def validate(self, path: str) -> None:
        _positive(f"{path}.rate_per_second", self.rate_per_second)
        _positive(f"{path}.speedup", self.speedup)
        for k, v in self.problem_shares.items():
            if not 0 <= v <= 1:
                raise ConfigError(f"{path}.problem_shares.{k}", f"must be a share between 0 and 1, got {v}")
        if sum(self.problem_shares.values()) > 1:
            raise ConfigError(f"{path}.problem_shares", "shares add up to more than 1")


@dataclass(frozen=True)
class Retention:
    finished_subject_days: float

    def validate(self, path: str) -> None:
        _positive(f"{path}.finished_subject_days", self.finished_subject_days)


@dataclass(frozen=True)
class Settings:
    app: AppSettings
    topics: Topics
    thresholds: Thresholds
    retention: Retention
    lanes: Lanes
    severity: Severity
    labels: Labels
    access: Access
    simulator: Simulator
    source: tuple[str, ...] = field(default=(), compare=False)


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be > 0, got {value}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the type hint ``tp``; return it converted (ints to floats, dicts to dataclasses)."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
        return _build(typing.cast(type, tp), value, key)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(key, f"expected one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key)
    if origin is dict:
        _key_tp, val_tp = get_args(tp)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(val_tp, v, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp)
        if value is None:
            return []
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        return [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            # NaN passes every "> 0" check and would make each deadline comparison false.
            raise ConfigError(key, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected a whole number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    raise ConfigError(key, f"unsupported type {_type_name(tp)}")  # pragma: no cover - schema bug


def _build(cls: type, data: Mapping[str, Any], path: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    for k in data:
        if k not in names:
            where = f"{path}.{k}" if path else str(k)
            raise ConfigError(where, f"unknown key; expected one of {', '.join(sorted(names))}")
    kwargs = {}
    for name in names:
        where = f"{path}.{name}" if path else name
        if name not in data:
            raise ConfigError(where, "is missing")
        kwargs[name] = _coerce(hints[name], data[name], where)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(path)
    return obj


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must hold a mapping at the top level")
    return data


# Environment variables that override a key: the deployment-specific ones (URLs, ports, paths).
ENV_OVERRIDES: dict[str, tuple[str, str, type]] = {
    "PARCELWATCH_BROKER_URL": ("app", "broker", str),
    "PARCELWATCH_BROKER_KIND": ("app", "broker_kind", str),
    "PARCELWATCH_REDIS_URL": ("app", "redis_url", str),
    "PARCELWATCH_STORE": ("app", "store", str),
    "PARCELWATCH_DATA_DIR": ("app", "data_dir", str),
    "PARCELWATCH_WEB_PORT": ("app", "web_port", int),
    "PARCELWATCH_WEB_HOST": ("app", "web_host", str),
    "PARCELWATCH_PARTITIONS": ("app", "partitions", int),
    "PARCELWATCH_TICK_INTERVAL": ("app", "tick_interval_seconds", float),
    "PARCELWATCH_APP_ID": ("app", "id", str),
}


def _parse_tokens(raw: str) -> dict[str, list[str]]:
    """``token1=shop-a,shop-b;token2=*`` -> {token1: [shop-a, shop-b], token2: [*]}."""
    tokens: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        token, sep, shops = part.partition("=")
        if not sep or not token.strip() or not shops.strip():
            raise ConfigError("PARCELWATCH_TOKENS", "expected token=shop[,shop];token=shop ... (one entry is malformed)")
        tokens[token.strip()] = [s.strip() for s in shops.split(",") if s.strip()]
    return tokens


def load(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load defaults, merge the override file (argument or ``PARCELWATCH_CONFIG``), apply env overrides."""
    env = os.environ if env is None else env
    data = _read_yaml(DEFAULT_PATH)
    sources = [str(DEFAULT_PATH)]
    override = path or env.get("PARCELWATCH_CONFIG")
    if override:
        override_path = Path(override)
        if not override_path.is_file():
            raise ConfigError("PARCELWATCH_CONFIG", f"file {override_path} does not exist")
        override_data = _read_yaml(override_path)
        if (override_data.get("access") or {}).get("tokens") and override_path.stat().st_mode & 0o077:
            # Tokens are secrets: a file others can read would leak every shop's queue.
            raise ConfigError(
                "PARCELWATCH_CONFIG",
                f"{override_path} holds access tokens but can be read by other users; chmod 600 it",
            )
        data = _merge(data, override_data)
        sources.append(str(override_path))
    for var, (section, key, tp) in ENV_OVERRIDES.items():
        if var in env:
            raw = env[var]
            if tp is int:
                try:
                    value: Any = int(raw)
                except ValueError:
                    raise ConfigError(var, f"expected a whole number, got {raw!r}") from None
            elif tp is float:
                try:
                    value = float(raw)
                except ValueError:
                    raise ConfigError(var, f"expected a number, got {raw!r}") from None
            else:
                value = raw
            data.setdefault(section, {})[key] = value
    if env.get("PARCELWATCH_TOKENS"):
        data.setdefault("access", {})["tokens"] = _parse_tokens(env["PARCELWATCH_TOKENS"])
    settings: Settings = _build(Settings, data, "")
    return dataclasses.replace(settings, source=tuple(sources))
