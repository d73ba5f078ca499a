"""Dashboards, alert rules and deployment files live in the repo: check them against the code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import agents
import config
from telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
METRIC = re.compile(r"\b(parcelwatch_[a-z_]+)")


def known_metrics() -> set[str]:
    names = set()
    for fam in Metrics().registry.collect():
        names.add(fam.name)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        for s in fam.samples:
            names.add(s.name)
    return names


def referenced(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", m) if not m.endswith("_total") else m for m in METRIC.findall(expr)}


def test_dashboard_uses_only_real_metrics() -> None:
    dash = json.loads((OPS / "grafana/dashboards/parcelwatch.json").read_text(encoding="utf-8"))
    known = known_metrics()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        for name in referenced(expr):
            assert name in known or name.removesuffix("_bucket") in known, (name, expr)
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("open issues", "new issues", "carrier", "pickup", "lag", "dead letter"):
        assert topic in titles


def test_rules_use_only_real_metrics_and_promtool_tests_pass() -> None:
    rules = yaml.safe_load((OPS / "prometheus/rules/parcelwatch.rules.yml").read_text())
    known = known_metrics()
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in referenced(rule["expr"]):
                assert name in known, (name, rule.get("alert") or rule.get("record"))
            if "alert" in rule:
                assert {"severity", "team"} <= set(rule["labels"])
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed here (CI installs it)")
    check = subprocess.run([promtool, "check", "rules", "prometheus/rules/parcelwatch.rules.yml"], cwd=OPS,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", "prometheus/tests/parcelwatch.rules.test.yml"], cwd=OPS,
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr


def test_compose_mounts_exist_and_env_names_match_the_app() -> None:
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    services = compose["services"]
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            if host.startswith("."):
                assert (ROOT / "deploy" / host).exists(), (name, host)
    allowed = set(config.ENV_OVERRIDES) | {"PARCELWATCH_CONFIG", "PARCELWATCH_TOKENS", "PARCELWATCH_ALERT_ROUTES",
                                           "PARCELWATCH_NOTIFICATIONS", "PARCELWATCH_INGEST_SOURCES",
                                           *config.INGEST_SECRETS.values()}
    workers = [s for n, s in services.items() if n.startswith("worker")]
    assert len(workers) == 2
    data_dirs = set()
    for svc in workers:
        env = svc["environment"]
        assert set(env) <= allowed, set(env) - allowed
        assert env["PARCELWATCH_WEB_PORT"] == str(config.load(env={}).app.web_port)
        assert env["PARCELWATCH_BROKER_KIND"] == "kafka" and env["PARCELWATCH_STORE"] == "rocksdb://"
        data_dirs.add(env["PARCELWATCH_DATA_DIR"])
    assert len(data_dirs) == 2  # one data dir per worker
    prom = yaml.safe_load((OPS / "prometheus/prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert {t.split(":")[0] for t in targets} <= set(services)
    assert "--appendonly" in services["redis"]["command"]


def test_every_compose_service_starts_again_after_it_exits() -> None:
    """A worker exits when a record it produced fails to send (``delivery/checkpoint.py``): only started again
    does it go on, from its last commit. Kafka, Redis and the monitoring likewise after a crash or a reboot."""
    services = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())["services"]
    assert {name: svc.get("restart") for name, svc in services.items()} == dict.fromkeys(services, "unless-stopped")


def test_the_compose_workers_create_topics_its_kafka_can_hold() -> None:
    """The worker creates its topics (and Faust the tables' changelogs) with the app's replication factor,
    and Kafka refuses a topic with more replicas than it has brokers: the workers would not start."""
    services = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())["services"]
    brokers = [n for n, svc in services.items() if str(svc.get("image", "")).startswith("apache/kafka")]
    for name, svc in services.items():
        env = svc.get("environment", {})
        if env.get("PARCELWATCH_BROKER_KIND") == "kafka":
            settings = config.load(env={k: v for k, v in env.items() if k in config.ENV_OVERRIDES and "$" not in v})
            assert 1 <= agents.build(settings).app.conf.topic_replication_factor <= len(brokers), name


def test_dockerfile_copies_files_that_exist_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "USER parcelwatch" in text and "HEALTHCHECK" in text
    for line in re.findall(r"^COPY (?:--chown=\S+ )?(.+?) \S+$", text.replace("\\\n", " "), flags=re.M):
        for src in line.split():
            assert (ROOT / src).exists(), src
