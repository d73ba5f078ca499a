"""Validated configuration: YAML defaults, an optional override file, and environment variables.

Every error names the exact key (``thresholds.pickup_overdue_hours``) and what was wrong with it, so a
typo in a deployment file stops the worker at start-up instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from domain.vocabulary import CARRIERS, ISSUE_KINDS, PROVINCES, SEVERITIES

DEFAULT_PATH = Path(__file__).with_name("default.yaml")


# A URL in a text: its scheme, any user:password@, its host[:port], its path, and any query or fragment.
_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://(?:[^\s/@'\"]*@)?([^\s/?#'\"]*)([^\s?#'\"]*)[^\s'\"]*")


def without_secrets(text: str) -> str:
    """``text`` with each URL in it stripped of its user:password, query and fragment, and a web URL of its
    path too: configured URLs carry secrets (a proxy's or Redis's password, a robot's token in its query or
    path), and texts that name them reach logs and terminals (a client library's error message quotes the
    URL it failed on). A Redis URL keeps its database (``/0``), a socket its path."""
    def keep(m: re.Match[str]) -> str:
        path = "" if m.group(1).lower() in ("http", "https", "ws", "wss") else m.group(3)
        return f"{m.group(1)}://{m.group(2)}{path}"

    return _URL.sub(keep, text)


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
    replication_factor: int
    web_host: str
    web_port: int
    session_timeout_seconds: float
    tick_interval_seconds: float
    producer_linger_ms: int
    producer_request_timeout_seconds: float
    catch_up_after_seconds: float
    future_event_tolerance_seconds: float
    ingest_ack_timeout_seconds: float
    ingest_max_unacked_scans: int

    @property
    def bootstrap_servers(self) -> str:
        """``broker``'s every URL as a Kafka client's bootstrap list: ``host:port,host:port``."""
        return ",".join(u.strip().removeprefix("kafka://") for u in self.broker.split(";"))

    def validate(self, path: str) -> None:
        urls = [u.strip() for u in self.broker.split(";")]
        for url in urls:
            if not url.startswith("kafka://") or len(url) <= len("kafka://"):
                raise ConfigError(f"{path}.broker",
                                  f"expected kafka://host:port[;kafka://host:port], got {without_secrets(self.broker)!r}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"{path}.redis_url", f"expected a redis:// URL, got {without_secrets(self.redis_url)!r}")
        if not self.store.startswith(("memory://", "rocksdb://")):
            raise ConfigError(f"{path}.store", f"expected memory:// or rocksdb://, got {self.store!r}")
        _positive(f"{path}.partitions", self.partitions)
        _positive(f"{path}.replication_factor", self.replication_factor)
        if not 0 < self.web_port < 65536:
            raise ConfigError(f"{path}.web_port", f"must be a TCP port 1-65535, got {self.web_port}")
        _positive(f"{path}.session_timeout_seconds", self.session_timeout_seconds)
        _positive(f"{path}.tick_interval_seconds", self.tick_interval_seconds)
        if self.producer_linger_ms < 0:
            raise ConfigError(f"{path}.producer_linger_ms", "must be >= 0")
        _positive(f"{path}.producer_request_timeout_seconds", self.producer_request_timeout_seconds)
        if self.catch_up_after_seconds < 0:
            raise ConfigError(f"{path}.catch_up_after_seconds", f"must be >= 0 (0 turns catching up off), "
                              f"got {self.catch_up_after_seconds}")
        if self.future_event_tolerance_seconds < 0:
            raise ConfigError(f"{path}.future_event_tolerance_seconds", f"must be >= 0, got {self.future_event_tolerance_seconds}")
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
    subscriptions: str
    shop_logistics: str


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
    # Order tokens: ingest tokens that may send orders (POST /ingest/orders) for their shops, and nothing else.
    order_tokens: dict[str, list[str]]
    metric_shops: list[str]

    def validate(self, path: str) -> None:
        for token in self.order_tokens:
            # Never echo a token: name the entry by its place only.
            if token in self.tokens:
                raise ConfigError(f"{path}.order_tokens", "a token is both a staff token and an order token; "
                                  "give the order senders tokens of their own")
            if len(token.strip()) < 16:
                raise ConfigError(f"{path}.order_tokens", "a token is too short to be a secret (16 characters at least)")


# Aggregator -> the environment variables its registration needs (secrets never live in a config file).
SUBSCRIPTION_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "kuaidi100": ("PARCELWATCH_KUAIDI100_KEY",),
    "aftership": ("PARCELWATCH_AFTERSHIP_API_KEY",),
    "17track": ("PARCELWATCH_17TRACK_KEY",),
    "kdniao": ("PARCELWATCH_KDNIAO_BUSINESS_ID", "PARCELWATCH_KDNIAO_API_KEY"),
}


@dataclass(frozen=True)
class Subscriptions:
    """Registering shipped parcels with the tracking aggregator (``subscriptions/``)."""

    aggregator: Literal["none", "kuaidi100", "aftership", "17track", "kdniao"]
    callback_url: str
    endpoint: str
    rate_per_second: float
    timeout_seconds: float
    retry_initial_seconds: float
    retry_max_seconds: float
    give_up_after_hours: float
    max_age_days: float
    sender_phones: dict[str, str]
    carrier_codes: dict[str, str]

    @property
    def enabled(self) -> bool:
        return self.aggregator != "none"

    def validate(self, path: str) -> None:
        for name in ("callback_url", "endpoint"):
            url = getattr(self, name)
            if url and not url.startswith(("http://", "https://")):
                raise ConfigError(f"{path}.{name}", "expected an http:// or https:// URL")
        if self.aggregator == "kuaidi100" and not self.callback_url:
            raise ConfigError(f"{path}.callback_url", "is required with kuaidi100: it takes the push address with "
                              "each subscription (your worker's /ingest/kuaidi100 as the internet reaches it)")
        if self.rate_per_second < 0:
            raise ConfigError(f"{path}.rate_per_second", "must be >= 0 (0 = the vendor's documented limit)")
        for name in ("timeout_seconds", "retry_initial_seconds", "retry_max_seconds", "give_up_after_hours", "max_age_days"):
            _positive(f"{path}.{name}", getattr(self, name))
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ConfigError(f"{path}.retry_max_seconds", "must be >= retry_initial_seconds")
        for shop, phone in self.sender_phones.items():
            digits = phone.replace("-", "").replace(" ", "")
            if not digits.isascii() or not digits.isdigit() or len(digits) < 4:
                # (the value is the shop's own phone: still never echoed)
                raise ConfigError(f"{path}.sender_phones.{shop}", "expected a phone number (digits, at least the last four)")
        for carrier, code in self.carrier_codes.items():
            if carrier not in CARRIERS:
                raise ConfigError(f"{path}.carrier_codes.{carrier}", f"unknown carrier; expected one of {', '.join(CARRIERS)}")
            if not code.strip():
                raise ConfigError(f"{path}.carrier_codes.{carrier}", "must not be empty")


# Push endpoints a worker can serve (``/ingest/<source>``), and the environment variable holding each one's
# secret: the aggregators' signing secrets, and for our own JSON the ingest tokens.
INGEST_SECRETS: dict[str, str] = {
    "kuaidi100": "PARCELWATCH_KUAIDI100_SALT",
    "kdniao": "PARCELWATCH_KDNIAO_API_KEY",
    "aftership": "PARCELWATCH_AFTERSHIP_SECRET",
    "17track": "PARCELWATCH_17TRACK_KEY",
    "generic": "PARCELWATCH_INGEST_TOKENS",
}
LOOPBACK_HOSTS = ("localhost", "::1")


@dataclass(frozen=True)
class Ingest:
    # The push endpoints this worker serves; the others answer 404.
    sources: list[str]
    # Tokens that may post scans to /ingest/generic (Authorization: Bearer). Never a staff token.
    tokens: list[str]

    def validate(self, path: str) -> None:
        for i, source in enumerate(self.sources):
            if source not in INGEST_SECRETS:
                raise ConfigError(f"{path}.sources[{i}]", f"unknown source {source!r}; expected one of "
                                                          f"{', '.join(INGEST_SECRETS)}")
        for i, token in enumerate(self.tokens):
            if len(token.strip()) < 16:
                raise ConfigError(f"{path}.tokens[{i}]", "is too short to be a secret (16 characters at least)")


def listens_beyond_loopback(host: str) -> bool:
    """Whether a web server bound to ``host`` can be reached from other machines."""
    name = host.strip().strip("[]").lower()
    return not (name in LOOPBACK_HOSTS or name.startswith("127."))


def check_ingest_secrets(settings: Settings, env: Mapping[str, str] | None = None, bind: str | None = None) -> None:
    """A worker that listens beyond loopback serves pushes only with their secrets: each enabled source's
    secret must be set (a ConfigError naming the variable). On loopback (a developer's machine), the
    aggregators' signatures are checked when their secret is set; /ingest/generic always needs a token.
    ``bind``: the address the web server will bind to, when something other than ``app.web_host`` sets it
    (Faust's ``WEB_BIND`` or ``--web-bind``)."""
    env = os.environ if env is None else env
    host = next((h for h in (settings.app.web_host, bind) if h is not None and listens_beyond_loopback(h)), None)
    if host is None:
        return
    for source in settings.ingest.sources:
        variable = INGEST_SECRETS[source]
        present = bool(settings.ingest.tokens) if source == "generic" else bool((env.get(variable) or "").strip())
        if not present:
            raise ConfigError(variable, f"is required: this worker listens on {host} (beyond loopback) and serves "
                                        f"/ingest/{source}; set {variable}, or leave {source} out of ingest.sources "
                                        f"(PARCELWATCH_INGEST_SOURCES)")


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
    subscriptions: Subscriptions
    ingest: Ingest
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
    "PARCELWATCH_REPLICATION_FACTOR": ("app", "replication_factor", int),
    "PARCELWATCH_TICK_INTERVAL": ("app", "tick_interval_seconds", float),
    "PARCELWATCH_APP_ID": ("app", "id", str),
    "PARCELWATCH_SUBSCRIPTIONS": ("subscriptions", "aggregator", str),
    "PARCELWATCH_SUBSCRIPTION_CALLBACK_URL": ("subscriptions", "callback_url", str),
}


def _parse_list(raw: str) -> list[str]:
    """``a,b;c`` -> [a, b, c] (commas or semicolons; blanks dropped)."""
    return [part.strip() for part in raw.replace(";", ",").split(",") if part.strip()]


def _parse_tokens(raw: str, variable: str = "PARCELWATCH_TOKENS") -> dict[str, list[str]]:
    """``token1=shop-a,shop-b;token2=*`` -> {token1: [shop-a, shop-b], token2: [*]}."""
    tokens: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        token, sep, shops = part.partition("=")
        if not sep or not token.strip() or not shops.strip():
            raise ConfigError(variable, "expected token=shop[,shop];token=shop ... (one entry is malformed)")
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
        access = override_data.get("access") or {}
        holds_tokens = access.get("tokens") or access.get("order_tokens") or (override_data.get("ingest") or {}).get("tokens")
        if holds_tokens and override_path.stat().st_mode & 0o077:
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
    if env.get("PARCELWATCH_ORDER_TOKENS"):
        data.setdefault("access", {})["order_tokens"] = _parse_tokens(env["PARCELWATCH_ORDER_TOKENS"], "PARCELWATCH_ORDER_TOKENS")
    if "PARCELWATCH_INGEST_SOURCES" in env:
        data.setdefault("ingest", {})["sources"] = _parse_list(env["PARCELWATCH_INGEST_SOURCES"])
    if env.get("PARCELWATCH_INGEST_TOKENS"):
        data.setdefault("ingest", {})["tokens"] = _parse_list(env["PARCELWATCH_INGEST_TOKENS"])
    settings: Settings = _build(Settings, data, "")
    _check_credentials(settings.subscriptions, env)
    staff = set(settings.access.tokens)
    if any(token in staff for token in settings.ingest.tokens):
        # A staff token must never post scans: one leaked page token could then resolve issues with fake scans.
        raise ConfigError("ingest.tokens", "a token is also a staff token (access.tokens); use separate tokens")
    return dataclasses.replace(settings, source=tuple(sources))


def _check_credentials(subs: Subscriptions, env: Mapping[str, str]) -> None:
    """The aggregator chosen needs its keys in the environment: a worker that would fail every registration
    stops at start-up instead, naming the variable (never its value)."""
    for variable in SUBSCRIPTION_CREDENTIALS.get(subs.aggregator, ()):
        if not env.get(variable, "").strip():
            raise ConfigError(variable, f"is required when subscriptions.aggregator is {subs.aggregator} "
                              "(the key from the vendor's console; it is read from the environment only)")
