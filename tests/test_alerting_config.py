"""Alert routing rules: the default file, a full file, matching, and errors that name the exact key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alerting.config import DEFAULT_PATH, RetryPolicy, load_routes, parse
from config import ConfigError

ENV = {"DT_URL": "https://oapi.dingtalk.com/robot/send?access_token=abc", "DT_SECRET": "SECxyz", "TOKEN": "t0k"}

FULL = """
spool_dir: spool
memory_limit: 50
incidents: {threshold: 30, window_minutes: 30, renotify_minutes: 10, severity: critical}
destinations:
  ops:
    type: dingtalk
    url: ${DT_URL}
    secret: ${DT_SECRET}
    at_mobiles: ["13800000000"]
    rate_limit: {per_minute: 20}
  erp:
    type: webhook
    url: https://erp.example.com/hook
    headers: {Authorization: "Bearer ${TOKEN}"}
  topic:
    type: kafka
    topic: parcelwatch-alerts
routes:
  - name: urgent
    match: {min_severity: high, kinds: [pickup_overdue], carriers: [zto], platforms: [taobao], shops: [shop-a]}
    destinations: [ops, erp]
    lane_incidents: true
    rate_limit: {per_minute: 10}
    retry: {max_attempts: 3, initial_backoff_seconds: 0.5, max_backoff_seconds: 30, jitter: 0.1}
  - name: digest
    actions: [open, resolve]
    destinations: topic
    digest: {max_items: 10, max_seconds: 60}
"""


def issue(**kw: Any) -> dict[str, Any]:
    base = {"action": "open", "kind": "pickup_overdue", "severity": "high", "shop": "shop-a", "carrier": "ZTO", "platform": "taobao"}
    return {**base, **kw}


def test_default_file_loads_with_no_routes_and_resolves_the_spool_under_data_dir(tmp_path: Path) -> None:
    cfg = load_routes(env={}, data_dir=tmp_path)
    assert cfg.routes == () and dict(cfg.destinations) == {}
    assert cfg.spool_dir == tmp_path / "alert-spool"
    assert cfg.incidents.kinds == {"pickup_overdue", "transit_overdue", "tracking_stale"}
    assert cfg.source == str(DEFAULT_PATH)


def test_the_commented_examples_of_the_default_file_are_valid(tmp_path: Path) -> None:
    lines = []
    for line in DEFAULT_PATH.read_text(encoding="utf-8").splitlines():
        if line.startswith(("destinations: {}", "routes: []")):
            line = line.split(":")[0] + ":"
        elif line.startswith("#  "):
            line = line[1:]
        lines.append(line)
    path = tmp_path / "routes.yaml"
    path.write_text("\n".join(lines), encoding="utf-8")
    env = {v: f"https://robot.example/{v}" for v in ("PARCELWATCH_DINGTALK_URL", "PARCELWATCH_WECOM_URL", "PARCELWATCH_FEISHU_URL",
                                                  "PARCELWATCH_SLACK_URL")}
    env |= {"PARCELWATCH_DINGTALK_SECRET": "s", "PARCELWATCH_FEISHU_SECRET": "s", "PARCELWATCH_ERP_TOKEN": "t"}
    cfg = load_routes(path, env=env)
    assert [r.name for r in cfg.routes] == ["urgent-to-ops", "daily-digest-to-cs"]
    assert {d.type for d in cfg.destinations.values()} == {"webhook", "dingtalk", "wecom", "feishu", "slack", "kafka"}


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(FULL, encoding="utf-8")
    cfg = load_routes(env={"PARCELWATCH_ALERT_ROUTES": str(path), **ENV}, data_dir=tmp_path)
    assert cfg.spool_dir == tmp_path / "spool" and cfg.memory_limit == 50
    assert (cfg.incidents.threshold, cfg.incidents.close_below, cfg.incidents.severity) == (30, 15, "critical")
    ops = cfg.destinations["ops"]
    assert ops.url == ENV["DT_URL"] and ops.secret == "SECxyz" and ops.at_mobiles == ("13800000000",)
    assert "SECxyz" not in repr(ops) and "access_token" not in repr(ops)  # a logged config leaks no credentials
    assert cfg.destinations["erp"].headers == {"Authorization": "Bearer t0k"}
    urgent, digest = cfg.routes
    assert urgent.actions == {"open"} and urgent.lane_incidents and urgent.match.carriers == {"ZTO"}
    assert urgent.retry == RetryPolicy(3, 0.5, 30.0, 2.0, 0.1) and urgent.rate_limit is not None
    assert urgent.rate_limit.max_messages == 10 and urgent.rate_limit.window_seconds == 60
    assert digest.destinations == ("topic",) and digest.digest is not None and digest.digest.max_items == 10
    assert digest.actions == {"open", "resolve"}


def test_matching() -> None:
    cfg = parse(yaml.safe_load(FULL), env=ENV)
    urgent, digest = cfg.routes
    assert urgent.matches(issue())
    assert urgent.matches(issue(severity="critical"))
    assert not urgent.matches(issue(severity="medium"))
    assert not urgent.matches(issue(severity=None))
    assert not urgent.matches(issue(action="update"))  # actions default to open only
    assert not urgent.matches(issue(kind="tracking_stale"))
    assert not urgent.matches(issue(shop="shop-b"))
    assert not urgent.matches(issue(carrier="YTO"))
    assert not urgent.matches(issue(platform="douyin"))
    assert digest.matches(issue(kind="ship_overdue", carrier=None, severity="low", action="resolve"))
    assert not digest.matches(issue(action="update"))


def test_backoff_is_exponential_capped_and_jittered_downwards() -> None:
    p = RetryPolicy(max_attempts=9, initial_backoff_seconds=1, max_backoff_seconds=10, multiplier=2, jitter=0.5)
    assert [p.backoff(n, 0.0) for n in range(1, 6)] == [1, 2, 4, 8, 10]
    assert p.backoff(3, 0.999) == pytest.approx(2.002)


def _route(**kw: Any) -> dict[str, Any]:
    return {"name": "r", "destinations": ["d"], **kw}


DEST = {"d": {"type": "webhook", "url": "http://127.0.0.1:1/x"}}


@pytest.mark.parametrize(("data", "key", "problem"), [
    ({"rooutes": []}, "alert_routes.rooutes", "unknown key"),
    ({"routes": {"a": 1}}, "alert_routes.routes", "expected a list"),
    ({"destinations": DEST, "routes": [{"destinations": ["d"]}]}, "alert_routes.routes[0].name", "is required"),
    ({"destinations": DEST, "routes": [_route(name="a b")]}, "alert_routes.routes[0].name", "letters, digits"),
    ({"destinations": DEST, "routes": [_route(), _route()]}, "alert_routes.routes[1].name", "used twice"),
    ({"destinations": DEST, "routes": [_route(destinations=["d", "x"])]}, "alert_routes.routes[0].destinations[1]",
     "unknown destination 'x'"),
    ({"destinations": DEST, "routes": [_route(destinations=[])]}, "alert_routes.routes[0].destinations", "non-empty"),
    ({"destinations": DEST, "routes": [_route(match={"kinds": ["pickup_overdue", "pickup_late"]})]},
     "alert_routes.routes[0].match.kinds[1]", "unknown value 'pickup_late'"),
    ({"destinations": DEST, "routes": [_route(match={"min_severity": "urgent"})]}, "alert_routes.routes[0].match.min_severity",
     "expected one of low"),
    ({"destinations": DEST, "routes": [_route(match={"severity": ["high"], "min_severity": "high"})]},
     "alert_routes.routes[0].match.min_severity", "not both"),
    ({"destinations": DEST, "routes": [_route(match={"carriers": ["ARAMEX"]})]}, "alert_routes.routes[0].match.carriers[0]",
     "unknown value 'ARAMEX'"),
    ({"destinations": DEST, "routes": [_route(match={"platform": ["taobao"]})]}, "alert_routes.routes[0].match.platform",
     "unknown key"),
    ({"destinations": DEST, "routes": [_route(actions=["close"])]}, "alert_routes.routes[0].actions[0]", "unknown value"),
    ({"destinations": DEST, "routes": [_route(digest={"max_items": 0, "max_seconds": 5})]}, "alert_routes.routes[0].digest.max_items",
     ">= 1"),
    ({"destinations": DEST, "routes": [_route(digest={"max_items": 5})]}, "alert_routes.routes[0].digest.max_seconds", "is required"),
    ({"destinations": DEST, "routes": [_route(rate_limit={"per_minute": 0})]}, "alert_routes.routes[0].rate_limit.per_minute", ">= 1"),
    ({"destinations": DEST, "routes": [_route(retry={"max_backoff_seconds": 0.5})]}, "alert_routes.routes[0].retry.max_backoff_seconds",
     "initial_backoff"),
    ({"destinations": DEST, "routes": [_route(retry={"jitter": 1.5})]}, "alert_routes.routes[0].retry.jitter", "below 1"),
    ({"destinations": DEST, "routes": [_route(retry={"max_attempts": True})]}, "alert_routes.routes[0].retry.max_attempts",
     "whole number"),
    ({"destinations": DEST, "routes": [_route(lane_incidents="yes")]}, "alert_routes.routes[0].lane_incidents", "true or false"),
    ({"destinations": {"d": {"type": "teams", "url": "http://x"}}}, "alert_routes.destinations.d.type", "expected one of webhook"),
    ({"destinations": {"d": {"type": "dingtalk"}}}, "alert_routes.destinations.d.url", "is required"),
    ({"destinations": {"d": {"type": "wecom", "url": "ftp://x"}}}, "alert_routes.destinations.d.url", "http"),
    ({"destinations": {"d": {"type": "dingtalk", "url": "${NOPE}"}}}, "alert_routes.destinations.d.url", "NOPE, which is not set"),
    ({"destinations": {"d": {"type": "kafka"}}}, "alert_routes.destinations.d.topic", "is required"),
    ({"destinations": {"d": {"type": "kafka", "topic": "t", "url": "http://x"}}}, "alert_routes.destinations.d.url", "does not apply"),
    ({"destinations": {"d": {"type": "slack", "url": "http://x", "secret": "s"}}}, "alert_routes.destinations.d.secret",
     "dingtalk and feishu"),
    ({"destinations": {"d": {"type": "feishu", "url": "http://x", "format": "card"}}}, "alert_routes.destinations.d.format",
     "text, post, interactive"),
    ({"destinations": {"d": {"type": "webhook", "url": "http://x", "timeout_seconds": float("nan")}}},
     "alert_routes.destinations.d.timeout_seconds", "finite"),
    ({"incidents": {"threshold": 10, "close_below": 11}}, "alert_routes.incidents.close_below", "<= threshold"),
    ({"incidents": {"kinds": ["ship_overdue", "nope"]}}, "alert_routes.incidents.kinds[1]", "unknown value"),
    ({"incidents": {"window_minutes": 0}}, "alert_routes.incidents.window_minutes", "> 0"),
])
def test_errors_name_the_exact_key(data: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(data, env={})
    assert err.value.key == key
    assert problem in err.value.problem


def test_unreadable_and_invalid_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_routes(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_routes(bad, env={})


# -- the platforms' limits and the operators' options -----------------------------------------------------------


def test_each_robot_gets_its_platforms_documented_limits_and_penalty_with_none_configured() -> None:
    cfg = parse({"destinations": {
        "d": {"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=a"},
        "w": {"type": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"},
        "f": {"type": "feishu", "url": "https://open.feishu.cn/open-apis/bot/v2/hook/h"},
        "s": {"type": "slack", "url": "https://hooks.slack.com/services/T/B/X"},
        "hook": {"type": "webhook", "url": "https://erp.example.com/hook"},
        "mine": {"type": "feishu", "url": "https://open.feishu.cn/open-apis/bot/v2/hook/m", "rate_limit": {"per_minute": 30}},
    }}, env={})
    limits = {n: [(lim.max_messages, lim.window_seconds) for lim in d.rate_limits] for n, d in cfg.destinations.items()}
    assert limits == {"d": [(20, 60)], "w": [(20, 60)], "f": [(5, 1), (100, 60)], "s": [(1, 1)], "hook": [],
                      "mine": [(5, 1), (100, 60), (30, 60)]}  # an operator's limit adds a window, never loosens
    assert {n: d.penalty_seconds for n, d in cfg.destinations.items() if n in "dwfs"} == {"d": 600, "w": 60, "f": 60, "s": 60}


OPTIONS = """
environment: 测试
base_url: https://pw.example.cn/
proxy: http://egress.internal:3128
destinations:
  ops:
    type: dingtalk
    url: https://oapi.dingtalk.com/robot/send?access_token=a
    keyword: 告警
    at_mobiles: ["13900000000"]
    mention:
      users: [manager1]
      mobiles: [13800000000]
      on_call: {mobiles: ["13700000001", "13700000002"], start: 2026-01-05T09:00:00+08:00, shift_hours: 12}
      min_severity: high
      all_for_critical: true
  erp: {type: webhook, url: "https://erp.example.com/hook", proxy: null}
routes:
  - name: night
    destinations: [ops, erp]
    quiet_hours: {start: 22:00, end: "07:30"}
    rate_limit: [{per_second: 1}, {per_minute: 10}]
"""


def test_keyword_environment_link_proxy_mentions_and_quiet_hours() -> None:
    cfg = parse(yaml.safe_load(OPTIONS), env={})
    ops, erp = cfg.destinations["ops"], cfg.destinations["erp"]
    assert (ops.keyword, ops.environment, ops.base_url, ops.proxy) == ("告警", "测试", "https://pw.example.cn", "http://egress.internal:3128")
    assert erp.proxy is None and erp.environment is None  # a JSON webhook gets the event as it is
    m = ops.mentions
    assert (m.users, m.mobiles, m.min_severity, m.all_for_critical) == (("manager1",), ("13800000000", "13900000000"), "high", True)
    assert m.on_call is not None and m.on_call.by_mobile and m.on_call.shift_hours == 12
    start = m.on_call.start
    assert m.people(start + 13 * 3600) == (("manager1",), ("13800000000", "13900000000", "13700000002"))
    [night] = cfg.routes
    assert night.quiet_hours is not None and (night.quiet_hours.start, night.quiet_hours.end) == (22 * 60, 7 * 60 + 30)
    assert [(lim.max_messages, lim.window_seconds) for lim in night.rate_limits] == [(1, 1), (10, 60)]
    china = 8 * 3600
    midnight = 1_793_664_000 - china  # 2026-11-03 00:00 in China
    assert night.quiet_hours.active(midnight + 23 * 3600) and night.quiet_hours.active(midnight + 7 * 3600)
    assert not night.quiet_hours.active(midnight + 8 * 3600)
    assert night.quiet_hours.active(midnight + 7 * 3600 + 29 * 60) and not night.quiet_hours.active(midnight + 7.5 * 3600)


def test_the_commented_top_level_options_of_the_default_file_are_valid() -> None:
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    options = [line[2:] for line in text.splitlines() if line.startswith(("# environment:", "# base_url:", "# proxy:"))]
    assert len(options) == 3
    cfg = parse(yaml.safe_load("\n".join(options)), env={})
    assert cfg.environment == "生产" and cfg.base_url is not None


@pytest.mark.parametrize(("data", "key", "problem"), [
    ({"base_url": "pw.example.cn"}, "alert_routes.base_url", "http"),
    ({"environment": ""}, "alert_routes.environment", "non-empty"),
    ({"destinations": {"d": {"type": "webhook", "url": "http://x", "keyword": "告警"}}}, "alert_routes.destinations.d.keyword",
     "chat robots"),
    ({"destinations": {"d": {"type": "kafka", "topic": "t", "proxy": "http://p"}}}, "alert_routes.destinations.d.proxy", "does not apply"),
    ({"destinations": {"d": {"type": "wecom", "url": "http://x", "proxy": "socks://p"}}}, "alert_routes.destinations.d.proxy", "http"),
    ({"destinations": {"d": {"type": "wecom", "url": "http://x", "mention": {"mobiles": ["138"]}}}},
     "alert_routes.destinations.d.mention.mobiles", "dingtalk only"),
    ({"destinations": {"d": {"type": "slack", "url": "http://x", "mention": {"user": ["U1"]}}}},
     "alert_routes.destinations.d.mention.user", "unknown key"),
    ({"destinations": {"d": {"type": "feishu", "url": "http://x", "mention": {"min_severity": "urgent"}}}},
     "alert_routes.destinations.d.mention.min_severity", "expected one of"),
    ({"destinations": {"d": {"type": "feishu", "url": "http://x", "mention": {"on_call": {"users": ["a"]}}}}},
     "alert_routes.destinations.d.mention.on_call.start", "is required"),
    ({"destinations": {"d": {"type": "feishu", "url": "http://x", "mention": {"on_call": {"users": [], "start": "2026-01-05"}}}}},
     "alert_routes.destinations.d.mention.on_call.users", "at least one"),
    ({"destinations": {"d": {"type": "feishu", "url": "http://x", "mention": {"on_call": {"users": ["a"], "start": "monday"}}}}},
     "alert_routes.destinations.d.mention.on_call.start", "expected a time"),
    ({"destinations": {"d": {"type": "dingtalk", "url": "http://x", "rate_limit": {"per_hour": 3}}}},
     "alert_routes.destinations.d.rate_limit.per_hour", "unknown key"),
    ({"destinations": {"d": {"type": "dingtalk", "url": "http://x", "rate_limit": [{"per_second": 0}]}}},
     "alert_routes.destinations.d.rate_limit[0].per_second", ">= 1"),
    ({"destinations": {"d": {"type": "dingtalk", "url": "http://x", "throttle_penalty_seconds": -1}}},
     "alert_routes.destinations.d.throttle_penalty_seconds", ">= 0"),
    ({"destinations": DEST, "routes": [_route(quiet_hours={"start": "22:00"})]}, "alert_routes.routes[0].quiet_hours.end", "is required"),
    ({"destinations": DEST, "routes": [_route(quiet_hours={"start": "25:00", "end": "07:00"})]},
     "alert_routes.routes[0].quiet_hours.start", "time of day"),
    ({"destinations": DEST, "routes": [_route(quiet_hours={"start": "07:00", "end": "07:00"})]},
     "alert_routes.routes[0].quiet_hours.end", "differ"),
])
def test_option_errors_name_the_exact_key(data: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(data, env={})
    assert err.value.key == key
    assert problem in err.value.problem
