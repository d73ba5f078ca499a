"""Configuration: defaults load, overrides merge, and every error names the exact key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import config
from config import ConfigError


def write(tmp_path: Path, text: str, name: str = "override.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)  # deployment files holding tokens must be private (checked by the loader)
    return path


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text), env=env or {})
    return info.value


def test_defaults_load_with_the_documented_values() -> None:
    s = config.load(env={})
    assert s.app.replication_factor == 3
    assert s.thresholds.ship_overdue_hours == 48.0
    assert s.thresholds.pickup_overdue_hours == 24.0
    assert s.thresholds.pickup_overdue_hours_by_category == {"furniture": 48.0, "large_appliance": 48.0, "fresh": 48.0}
    assert s.thresholds.tracking_stale_hours == 48.0
    assert s.thresholds.tracking_stale_out_for_delivery_hours == 24.0
    assert s.thresholds.locker_uncollected_hours == 48.0
    assert s.thresholds.autoconfirm_warning_hours == 48.0
    assert s.thresholds.autoconfirm_default_days["other"] == 10.0
    assert (s.lanes.quantile, s.lanes.half_life_days, s.lanes.horizon_days) == (0.95, 30.0, 180.0)
    assert (s.lanes.credibility_samples, s.lanes.refresh_minutes, s.lanes.severity_percentiles) == (20.0, 1440.0, [0.99, 0.999])
    assert (s.lanes.default_sla_hours, s.lanes.region_sla_hours) == (96.0, {"remote": 168.0})
    assert "新疆" in s.lanes.remote_provinces
    assert s.severity.base["carrier_exception"] == "high"
    assert s.severity.base["tracking_stale"] == "low"
    assert s.access.tokens == {}
    assert s.source == (str(config.DEFAULT_PATH),)
    # Ints in YAML become floats where the schema says float.
    assert isinstance(s.thresholds.ship_overdue_hours, float)


def test_override_file_merges_over_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "thresholds:\n  pickup_overdue_hours: 12\n  pickup_overdue_hours_by_category:\n    books: 72\nlanes:\n  credibility_samples: 5\n",
    )
    s = config.load(path, env={})
    assert s.thresholds.pickup_overdue_hours == 12.0
    # Siblings keep their defaults; mappings merge key by key.
    assert s.thresholds.ship_overdue_hours == 48.0
    assert s.thresholds.pickup_overdue_hours_by_category == {"furniture": 48.0, "large_appliance": 48.0, "fresh": 48.0, "books": 72.0}
    assert s.lanes.credibility_samples == 5.0
    assert s.lanes.quantile == 0.95
    assert s.source == (str(config.DEFAULT_PATH), str(path))


def test_parcelwatch_config_env_names_the_override(tmp_path: Path) -> None:
    path = write(tmp_path, "severity:\n  high_value_order: 1000\n")
    s = config.load(env={"PARCELWATCH_CONFIG": str(path)})
    assert s.severity.high_value_order == 1000.0
    assert s.source[-1] == str(path)


def test_explicit_path_wins_over_env(tmp_path: Path) -> None:
    a = write(tmp_path, "lanes:\n  credibility_samples: 3\n", "a.yaml")
    b = write(tmp_path, "lanes:\n  credibility_samples: 7\n", "b.yaml")
    assert config.load(a, env={"PARCELWATCH_CONFIG": str(b)}).lanes.credibility_samples == 3.0


def test_empty_override_file_is_fine(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, ""), env={}).thresholds.pickup_overdue_hours == 24.0


def test_missing_override_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(env={"PARCELWATCH_CONFIG": str(tmp_path / "nope.yaml")})
    assert info.value.key == "PARCELWATCH_CONFIG"
    assert "does not exist" in info.value.problem


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "thresholds: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    assert info.value.key == str(path)
    assert info.value.problem.startswith("is not valid YAML")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    err = error_of(tmp_path, "- a\n- b\n")
    assert err.problem == "must hold a mapping at the top level"


@pytest.mark.parametrize(
    ("text", "key", "problem_start"),
    [
        # unknown keys
        ("thresholds:\n  pickup_overdue_hour: 12\n", "thresholds.pickup_overdue_hour", "unknown key; expected one of"),
        ("thresholdz:\n  a: 1\n", "thresholdz", "unknown key"),
        ("labels:\n  kinds:\n    ship_overdue: {zh: a, en: b, fr: c}\n", "labels.kinds.ship_overdue.fr", "unknown key"),
        ("severity:\n  base:\n    lost_parcel: high\n", "severity.base.lost_parcel", "unknown issue kind"),
        # wrong types
        ("thresholds:\n  pickup_overdue_hours: 24h\n", "thresholds.pickup_overdue_hours", "expected a number, got '24h'"),
        ("thresholds:\n  pickup_overdue_hours: true\n", "thresholds.pickup_overdue_hours", "expected a number, got True"),
        ("app:\n  partitions: 4.5\n", "app.partitions", "expected a whole number, got 4.5"),
        ("app:\n  redis_url: 6379\n", "app.redis_url", "expected a string, got 6379"),
        ("thresholds: 5\n", "thresholds", "expected a mapping, got int"),
        ("thresholds:\n  pickup_overdue_hours_by_category: [furniture]\n", "thresholds.pickup_overdue_hours_by_category", "expected a mapping"),
        ("lanes:\n  remote_provinces: 新疆\n", "lanes.remote_provinces", "expected a list, got str"),
        ("lanes:\n  remote_provinces: [新疆, 7]\n", "lanes.remote_provinces[1]", "expected a string, got 7"),
        ("access:\n  tokens: {t1: [shop-a, 3]}\n", "access.tokens.t1[1]", "expected a string, got 3"),
        ("app:\n  broker_kind: redpanda\n", "app.broker_kind", "expected one of embedded, kafka, got 'redpanda'"),
        ("severity:\n  base:\n    ship_overdue: urgent\n", "severity.base.ship_overdue", "unknown severity 'urgent'"),
        # out of range
        ("thresholds:\n  pickup_overdue_hours: 0\n", "thresholds.pickup_overdue_hours", "must be > 0, got 0.0"),
        ("thresholds:\n  pickup_overdue_hours_by_category:\n    fresh: -48\n", "thresholds.pickup_overdue_hours_by_category.fresh", "must be > 0"),
        ("thresholds:\n  autoconfirm_default_days:\n    douyin: 0\n", "thresholds.autoconfirm_default_days.douyin", "must be > 0"),
        ("thresholds:\n  tracking_stale_hours: .nan\n", "thresholds.tracking_stale_hours", "expected a finite number, got nan"),
        ("thresholds:\n  locker_uncollected_hours: .inf\n", "thresholds.locker_uncollected_hours", "expected a finite number, got inf"),
        ("lanes:\n  quantile: 1.0\n", "lanes.quantile", "must be between 0 and 1 (exclusive), got 1.0"),
        ("lanes:\n  quantile: 0\n", "lanes.quantile", "must be between 0 and 1"),
        ("lanes:\n  credibility_samples: 0\n", "lanes.credibility_samples", "must be > 0, got 0"),
        ("lanes:\n  refresh_minutes: -1\n", "lanes.refresh_minutes", "must be > 0"),
        ("lanes:\n  min_hours_past_median: -1\n", "lanes.min_hours_past_median", "must be >= 0"),
        ("lanes:\n  severity_percentiles: [0.99, 0.98]\n", "lanes.severity_percentiles[1]", "must be above 0.99"),
        ("lanes:\n  severity_percentiles: [0.9]\n", "lanes.severity_percentiles[0]", "must be above 0.95 (the quantile"),
        ("lanes:\n  min_samples: 20\n", "lanes.min_samples", "unknown key"),
        ("lanes:\n  region_sla_hours:\n    remote: -1\n", "lanes.region_sla_hours.remote", "must be > 0"),
        ("lanes:\n  remote_provinces: [新疆, 西藏自治区]\n", "lanes.remote_provinces[1]", "unknown province '西藏自治区'"),
        ("app:\n  web_port: 70000\n", "app.web_port", "must be a TCP port 1-65535, got 70000"),
        ("app:\n  partitions: 0\n", "app.partitions", "must be > 0"),
        ("app:\n  producer_linger_ms: -1\n", "app.producer_linger_ms", "must be >= 0"),
        ("app:\n  producer_request_timeout_seconds: 0\n", "app.producer_request_timeout_seconds", "must be > 0"),
        ("app:\n  catch_up_after_seconds: -5\n", "app.catch_up_after_seconds", "must be >= 0 (0 turns catching up off)"),
        ("app:\n  broker: localhost:9092\n", "app.broker", "expected kafka://host:port"),
        ("app:\n  redis_url: http://x\n", "app.redis_url", "expected a redis:// URL"),
        ("app:\n  store: disk://\n", "app.store", "expected memory:// or rocksdb://"),
        ("severity:\n  very_late_hours: 0\n", "severity.very_late_hours", "must be > 0"),
        ("simulator:\n  problem_shares:\n    lost: 1.5\n", "simulator.problem_shares.lost", "must be a share between 0 and 1"),
        ("simulator:\n  problem_shares:\n    lost: 0.9\n", "simulator.problem_shares", "shares add up to more than 1"),
        # a whole section nulled out
        ("severity:\n  base: null\n", "severity.base.ship_overdue", "is missing"),
        ("topics: null\n", "topics", "expected a mapping, got NoneType"),
    ],
)
def test_errors_name_the_exact_key(tmp_path: Path, text: str, key: str, problem_start: str) -> None:
    err = error_of(tmp_path, text)
    assert err.key == key
    assert err.problem.startswith(problem_start), err.problem
    assert str(err).startswith(f"config key {key!r}: ")


@pytest.mark.parametrize(
    ("section", "path", "key", "problem"),
    [
        ("thresholds", [], "locker_uncollected_hours", "is missing"),
        ("app", [], "redis_url", "is missing"),
        ("lanes", ["region_sla_hours"], "remote", "is required"),
        ("severity", ["base"], "carrier_exception", "is missing"),
    ],
)
def test_missing_key_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: str, path: list[str], key: str, problem: str) -> None:
    """The defaults file is the schema's source: a key removed from it is reported by its full path."""
    data = yaml.safe_load(config.DEFAULT_PATH.read_text(encoding="utf-8"))
    node = data[section]
    for part in path:
        node = node[part]
    del node[key]
    defaults = tmp_path / "default.yaml"
    defaults.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(config, "DEFAULT_PATH", defaults)
    with pytest.raises(ConfigError) as info:
        config.load(env={})
    assert (info.value.key, info.value.problem) == (".".join([section, *path, key]), problem)


# -- environment --------------------------------------------------------------------------------------


def test_env_overrides_apply_and_convert() -> None:
    s = config.load(
        env={
            "PARCELWATCH_BROKER_URL": "kafka://k1:9092;kafka://k2:9092",
            "PARCELWATCH_BROKER_KIND": "kafka",
            "PARCELWATCH_REDIS_URL": "redis://r:6380/1",
            "PARCELWATCH_WEB_PORT": "8080",
            "PARCELWATCH_PARTITIONS": "8",
            "PARCELWATCH_REPLICATION_FACTOR": "1",
            "PARCELWATCH_TICK_INTERVAL": "2.5",
            "PARCELWATCH_APP_ID": "pw-test",
        }
    )
    assert s.app.broker == "kafka://k1:9092;kafka://k2:9092"
    assert s.app.broker_kind == "kafka"
    assert s.app.redis_url == "redis://r:6380/1"
    assert s.app.web_port == 8080
    assert s.app.partitions == 8
    assert s.app.replication_factor == 1
    assert s.app.tick_interval_seconds == 2.5
    assert s.app.id == "pw-test"


def test_env_wins_over_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, "app:\n  web_port: 7000\n")
    assert config.load(path, env={"PARCELWATCH_WEB_PORT": "7001"}).app.web_port == 7001


def test_os_environ_is_the_default_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARCELWATCH_WEB_PORT", "7123")
    monkeypatch.delenv("PARCELWATCH_CONFIG", raising=False)
    monkeypatch.delenv("PARCELWATCH_TOKENS", raising=False)
    assert config.load().app.web_port == 7123


@pytest.mark.parametrize(
    ("env", "key", "problem_start"),
    [
        ({"PARCELWATCH_WEB_PORT": "eighty"}, "PARCELWATCH_WEB_PORT", "expected a whole number, got 'eighty'"),
        ({"PARCELWATCH_PARTITIONS": "4.0"}, "PARCELWATCH_PARTITIONS", "expected a whole number"),
        ({"PARCELWATCH_TICK_INTERVAL": "5s"}, "PARCELWATCH_TICK_INTERVAL", "expected a number, got '5s'"),
        # Parsed fine, then validated under the key it sets.
        ({"PARCELWATCH_TICK_INTERVAL": "nan"}, "app.tick_interval_seconds", "expected a finite number"),
        ({"PARCELWATCH_TICK_INTERVAL": "-1"}, "app.tick_interval_seconds", "must be > 0"),
        ({"PARCELWATCH_WEB_PORT": "0"}, "app.web_port", "must be a TCP port"),
        ({"PARCELWATCH_REPLICATION_FACTOR": "0"}, "app.replication_factor", "must be > 0"),
        ({"PARCELWATCH_BROKER_KIND": "pulsar"}, "app.broker_kind", "expected one of embedded, kafka"),
        ({"PARCELWATCH_BROKER_URL": "kafka://a:1;b:2"}, "app.broker", "expected kafka://host:port"),
        ({"PARCELWATCH_STORE": "redis://"}, "app.store", "expected memory:// or rocksdb://"),
    ],
)
def test_bad_env_override_names_the_variable_or_key(env: dict[str, str], key: str, problem_start: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(env=env)
    assert info.value.key == key
    assert info.value.problem.startswith(problem_start), info.value.problem


def test_tokens_parsing() -> None:
    s = config.load(env={"PARCELWATCH_TOKENS": " tok1 = shop-a , shop-b ; tok2=* ;; tok3=shop-c "})
    assert s.access.tokens == {"tok1": ["shop-a", "shop-b"], "tok2": ["*"], "tok3": ["shop-c"]}


def test_tokens_env_replaces_file_tokens(tmp_path: Path) -> None:
    path = write(tmp_path, "access:\n  tokens:\n    filetok: [shop-z]\n")
    assert config.load(path, env={}).access.tokens == {"filetok": ["shop-z"]}
    assert config.load(path, env={"PARCELWATCH_TOKENS": "envtok=shop-y"}).access.tokens == {"envtok": ["shop-y"]}
    # An empty variable does not wipe the file's tokens.
    assert config.load(path, env={"PARCELWATCH_TOKENS": ""}).access.tokens == {"filetok": ["shop-z"]}


@pytest.mark.parametrize("raw", ["tok1", "tok1=", "=shop-a", "tok1=shop-a;tok2", " = ;"])
def test_malformed_tokens_name_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(env={"PARCELWATCH_TOKENS": raw})
    assert info.value.key == "PARCELWATCH_TOKENS"
    assert info.value.problem.startswith("expected token=shop[,shop];token=shop")


def test_labels_lookup() -> None:
    labels = config.load(env={}).labels
    assert labels.kind("pickup_overdue") == "揽收超时"
    assert labels.kind("pickup_overdue", "en") == "Pickup overdue"
    assert labels.kind("no_such_kind") == "no_such_kind"
    assert labels.reason("out_of_area", "en") == "Outside delivery area"
    assert labels.reason("weird") == "weird"


def test_a_config_file_with_tokens_must_not_be_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text("access:\n  tokens:\n    secret-token: [shop-a]\n", encoding="utf-8")
    path.chmod(0o644)
    with pytest.raises(config.ConfigError) as err:
        config.load(path, env={})
    assert "chmod 600" in err.value.problem and "secret-token" not in str(err.value)
    path.chmod(0o600)
    assert config.load(path, env={}).access.tokens == {"secret-token": ["shop-a"]}


def test_texts_naming_a_url_keep_its_host_and_lose_its_secrets() -> None:
    assert config.without_secrets("cannot reach redis://:s3cret@redis.internal:6379/0 (timeout)") == \
        "cannot reach redis://redis.internal:6379/0 (timeout)"
    assert config.without_secrets("url='https://open.feishu.cn/open-apis/bot/v2/hook/0a1b2c'") == \
        "url='https://open.feishu.cn'"
    with pytest.raises(config.ConfigError) as info:
        config.load(env={"PARCELWATCH_REDIS_URL": "http://user:s3cret@redis.internal"})
    assert "s3cret" not in str(info.value) and "redis.internal" in str(info.value)
