"""What the stream observes, recorded in the Prometheus metrics of ``metrics.py``."""

from __future__ import annotations

from typing import Any


def observe_event(topic: str, outcome: str, lag_seconds: float | None, seconds: float) -> None:
    pass


def observe_invalid(topic: str, reason: str) -> None:
    pass


def observe_sweep(partition: int, seconds: float, due: int, now: float, processor: Any) -> None:
    pass


def observe_delivery(delivery: dict[str, Any]) -> None:
    pass


def on_issue_event(issue: dict[str, Any]) -> None:
    pass


def set_redis_up(up: bool) -> None:
    pass


def redis_retry() -> None:
    pass


def render() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(), CONTENT_TYPE_LATEST


def watch_alert_router(router: Any) -> None:
    pass


def on_notification(note: dict[str, Any]) -> None:
    pass
