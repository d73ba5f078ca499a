"""The ``ingest`` configuration: sources, ingest tokens separate from staff tokens, and a worker that listens
beyond loopback refusing to start without each enabled source's secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import config

ROOT = Path(__file__).resolve().parent.parent
ALL_SECRETS = {
    "PARCELWATCH_KUAIDI100_SALT": "s", "PARCELWATCH_KDNIAO_API_KEY": "k", "PARCELWATCH_AFTERSHIP_SECRET": "a",
    "PARCELWATCH_17TRACK_KEY": "t", "PARCELWATCH_INGEST_TOKENS": "ingest-token-0123456789",
}


@pytest.mark.parametrize("variable", sorted(ALL_SECRETS))
def test_a_worker_beyond_loopback_needs_every_enabled_sources_secret(variable: str) -> None:
    env = {**ALL_SECRETS, "PARCELWATCH_WEB_HOST": "0.0.0.0"}
    del env[variable]
    settings = config.load(env=env)
    with pytest.raises(config.ConfigError) as err:
        config.check_ingest_secrets(settings, env)
    assert err.value.key == variable and "0.0.0.0" in str(err.value) and "PARCELWATCH_INGEST_SOURCES" in str(err.value)
    config.check_ingest_secrets(config.load(env={**env, "PARCELWATCH_WEB_HOST": "127.0.0.1"}), env)  # loopback
    source = next(s for s, v in config.INGEST_SECRETS.items() if v == variable)
    others = ",".join(s for s in config.INGEST_SECRETS if s != source)
    config.check_ingest_secrets(config.load(env={**env, "PARCELWATCH_INGEST_SOURCES": others}), env)
    config.check_ingest_secrets(config.load(env={**ALL_SECRETS, "PARCELWATCH_WEB_HOST": "0.0.0.0"}), ALL_SECRETS)


@pytest.mark.parametrize(("host", "beyond"), [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                              ("[::1]", False), ("0.0.0.0", True), ("", True), ("::", True),
                                              ("10.0.0.5", True), ("worker-1", True)])
def test_what_listens_beyond_loopback(host: str, beyond: bool) -> None:
    assert config.listens_beyond_loopback(host) is beyond


def test_ingest_tokens_are_separate_from_staff_tokens_and_sources_are_checked() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(env={"PARCELWATCH_TOKENS": "same-token-0123456789=*", "PARCELWATCH_INGEST_TOKENS": "same-token-0123456789"})
    assert err.value.key == "ingest.tokens"
    with pytest.raises(config.ConfigError) as err:
        config.load(env={"PARCELWATCH_INGEST_SOURCES": "kuaidi100,aftershp"})
    assert err.value.key == "ingest.sources[1]"
    with pytest.raises(config.ConfigError) as err:
        config.load(env={"PARCELWATCH_INGEST_TOKENS": "short"})
    assert err.value.key == "ingest.tokens[0]"
    settings = config.load(env={"PARCELWATCH_INGEST_SOURCES": "", "PARCELWATCH_INGEST_TOKENS": "a-long-ingest-token-1;b-long-ingest-token-2"})
    assert settings.ingest.sources == [] and settings.ingest.tokens == ["a-long-ingest-token-1", "b-long-ingest-token-2"]


def test_a_config_file_with_ingest_tokens_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "override.yaml"
    path.write_text("ingest:\n  tokens: [a-long-ingest-token-1]\n")
    path.chmod(0o644)
    with pytest.raises(config.ConfigError) as err:
        config.load(path, env={})
    assert "chmod 600" in str(err.value)
    path.chmod(0o600)
    assert config.load(path, env={}).ingest.tokens == ["a-long-ingest-token-1"]


def test_the_worker_refuses_to_start_with_a_message_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELWATCH_")}
    env.update(PARCELWATCH_WEB_HOST="0.0.0.0", PARCELWATCH_INGEST_SOURCES="kdniao")
    done = subprocess.run([sys.executable, "app.py", "worker"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "PARCELWATCH_KDNIAO_API_KEY" in done.stderr and "/ingest/kdniao" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("bound", [{"WEB_BIND": "0.0.0.0"}, ["-b", "0.0.0.0"], ["--web-bind=0.0.0.0"]])
def test_a_worker_bound_beyond_loopback_by_faust_s_own_option_needs_the_secrets_too(bound: dict[str, str] | list[str]) -> None:
    """``app.web_host`` says loopback, but Faust's ``WEB_BIND`` or ``--web-bind`` binds every interface."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELWATCH_")}
    env.update(PARCELWATCH_INGEST_SOURCES="kuaidi100", **(bound if isinstance(bound, dict) else {}))
    args = bound if isinstance(bound, list) else []
    done = subprocess.run([sys.executable, "app.py", "worker", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "PARCELWATCH_KUAIDI100_SALT" in done.stderr and "0.0.0.0" in done.stderr

