"""What the stream observes, recorded in the Prometheus metrics of ``metrics.py``.

Labelled children are bound once and cached, so the per-event cost is a dict lookup and an increment.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import metrics
from models import CARRIERS, SEVERITY_ORDER, IssueKind

from .base import T, settings

_SHOPS = frozenset(settings.access.metric_shops)
_children: dict[tuple[Any, ...], Any] = {}
_last_sweep_clock = [0.0]

metrics.init_label_sets(
    kinds=[k.value for k in IssueKind], severities=SEVERITY_ORDER, carriers=CARRIERS,
    topics=[T.tracking, T.orders, T.order_facts, T.order_purges],
    stages=("picked_up", "arrived_city", "out_for_delivery", "delayed", "exception", "locker_uncollected"),
)
metrics.REDIS_UP.set(1)
metrics.SWEEP_LAG.set_function(lambda: max(0.0, time.time() - _last_sweep_clock[0]) if _last_sweep_clock[0] else 0.0)


def _child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)`` (label values in the metric's declared order), bound once per label set:
    prometheus_client validates and looks the set up on every ``labels`` call (~5 us), and the metrics
    below are counted per event."""
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def track_catch_up(clock: Any) -> None:
    metrics.CATCHING_UP.set_function(lambda: len(clock.lagging_partitions(time.time())))


def observe_event(topic: str, outcome: str, lag_seconds: float | None, seconds: float) -> None:
    _child(metrics.EVENTS_CONSUMED, topic, outcome).inc()
    _child(metrics.PROCESSING, topic).observe(seconds)
    if lag_seconds is not None:
        metrics.EVENT_LAG.observe(max(0.0, lag_seconds))


def observe_invalid(topic: str, reason: str) -> None:
    observe_event(topic, "invalid", None, 0.0)
    metrics.DEAD_LETTERS.labels(topic=topic, reason=metrics.dead_letter_reason(reason)).inc()


def observe_order_purged() -> None:
    metrics.ORDERS_PURGED.inc()


def observe_sweep(partition: int, seconds: float, due: int, now: float, processor: Any, purged: int = 0) -> None:
    metrics.SWEEP.observe(seconds)
    if due:
        metrics.DUE.inc(due)
    if purged:
        metrics.PURGED.inc(purged)
    _last_sweep_clock[0] = max(_last_sweep_clock[0], now)


def observe_delivery(delivery: dict[str, Any]) -> None:
    region = metrics.province_region(delivery.get("destination_province"))
    carrier = delivery["carrier"]
    _child(metrics.TRANSIT, carrier, region).observe(delivery["signed_at"] - delivery["picked_up_at"])
    _child(metrics.LANE_SAMPLES, carrier, region).inc()


def observe_pickup(shop: str | None, shipped_at: float, picked_up_at: float) -> None:
    hours = (picked_up_at - shipped_at) / 3600
    within = "24h" if hours <= 24 else "48h" if hours <= 48 else "later"
    _child(metrics.PICKUPS, metrics.shop_label(shop, _SHOPS), within).inc()


def observe_shipment(shop: str | None) -> None:
    _child(metrics.SHIPMENTS, metrics.shop_label(shop, _SHOPS)).inc()


def on_issue_event(issue: dict[str, Any]) -> None:
    if issue["action"] == "open":
        _child(metrics.ISSUES_OPENED, issue["kind"], issue["severity"]).inc()
    elif issue["action"] == "resolve":
        _child(metrics.ISSUES_RESOLVED, issue["kind"], "auto").inc()


def on_staff_resolution(kind: str) -> None:
    metrics.ISSUES_RESOLVED.labels(kind=kind, resolution="staff").inc()


def on_notification(note: dict[str, Any]) -> None:
    _child(metrics.NOTIFICATIONS, note["stage"]).inc()


def observe_issue_events_applied(results: list[str]) -> None:
    """What the sink's Redis script did with each issue event of a pipeline (bounded: its fixed results)."""
    counts: dict[str, int] = {}
    for result in results:
        if result in metrics.ISSUE_EVENT_RESULTS:  # (the script returns nothing else)
            counts[result] = counts.get(result, 0) + 1
    for label, n in counts.items():
        metrics.ISSUE_EVENTS_APPLIED.labels(result=label).inc(n)


def observe_invalid_issue_event(reason: str) -> None:
    metrics.ISSUE_EVENTS_APPLIED.labels(result="invalid").inc()
    metrics.DEAD_LETTERS.labels(topic=T.issues, reason=metrics.dead_letter_reason(reason)).inc()


def set_redis_up(up: bool) -> None:
    metrics.REDIS_UP.set(1 if up else 0)


def redis_retry() -> None:
    metrics.REDIS_RETRIES.inc()


def watch_alert_router(router: Any) -> None:
    router.on_sent = lambda r, d: metrics.ALERTS_SENT.labels(route=r, destination=d).inc()
    router.on_failed = lambda r, d: metrics.ALERTS_FAILED.labels(route=r, destination=d).inc()
    router.on_incident = lambda carrier: metrics.LANE_INCIDENTS.labels(carrier=carrier).inc()
    for route in router.route_names:
        metrics.ALERTS_PENDING.labels(route=route).set_function(_pending(router, route))


def _pending(router: Any, route: str) -> Any:
    return lambda: float(router.pending(route))


def render(names: Collection[str] = ()) -> tuple[bytes, str]:
    return metrics.render(names)
