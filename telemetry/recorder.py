"""What the stream observes, recorded in the metrics (``telemetry/metrics.py``).

Labelled children are bound once per label set and cached, so the per-event cost is a dict lookup and an
increment (prometheus_client validates and looks a label set up on every ``labels`` call, about 5 us).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from config import Settings
from domain.vocabulary import CARRIERS, ISSUE_KINDS, NOTIFICATION_STAGES, SEVERITIES, carrier_label, province_region

from .metrics import ISSUE_EVENT_RESULTS, Metrics, dead_letter_reason, shop_label


class Recorder:
    """The app's metrics and what the stream, the sinks and the alert router report into them."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.metrics = m = metrics or Metrics()
        self._shops = frozenset(settings.access.metric_shops)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._last_sweep_clock = 0.0
        t = settings.topics
        m.init_label_sets(kinds=ISSUE_KINDS, severities=SEVERITIES, carriers=CARRIERS,
                          topics=[t.tracking, t.orders, t.order_facts, t.order_purges], stages=NOTIFICATION_STAGES)
        m.redis_up.set(1)
        m.sweep_lag.set_function(lambda: max(0.0, time.time() - self._last_sweep_clock) if self._last_sweep_clock else 0.0)

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)`` (label values in the metric's declared order), bound once per label set."""
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # -- scrape-time gauges ------------------------------------------------------------------------------------

    def read_at_scrape(
        self, *, open_issues: Callable[[], Iterable[tuple[tuple[str, str, str], int]]] | None = None,
        parcels_tracked: Callable[[], float] | None = None, consumer_lag: Callable[[], Iterable[tuple[str, float]]] | None = None,
        partitions_held: Callable[[], float] | None = None, catching_up: Callable[[], float] | None = None,
    ) -> None:
        """Set the callables the gauges that describe the whole worker are read from at each scrape."""
        gauges = self.metrics.scrape_time
        if open_issues is not None:
            gauges.open_issues = _by_carrier_label(open_issues)
        if parcels_tracked is not None:
            gauges.parcels_tracked = parcels_tracked
        if consumer_lag is not None:
            gauges.consumer_lag = consumer_lag
        if partitions_held is not None:
            self.metrics.partitions_held.set_function(partitions_held)
        if catching_up is not None:
            self.metrics.catching_up.set_function(catching_up)

    def render(self, names: Collection[str] = ()) -> tuple[bytes, str]:
        return self.metrics.render(names)

    # -- the stream ------------------------------------------------------------------------------------------

    def observe_event(self, topic: str, outcome: str, lag_seconds: float | None, seconds: float) -> None:
        self.metrics.events.observe(topic, outcome, lag_seconds, seconds)

    def observe_dead_letter(self, topic: str, reason: str) -> None:
        self.observe_event(topic, "invalid", None, 0.0)
        self.metrics.dead_letters.labels(topic=topic, reason=dead_letter_reason(reason)).inc()

    def observe_dead_letter_value_omitted(self, topic: str) -> None:
        self.metrics.dead_letter_values_omitted.labels(topic=topic).inc()

    def observe_dead_letter_failed(self, topic: str) -> None:
        self.metrics.dead_letter_failures.labels(topic=topic).inc()

    def observe_order_purged(self) -> None:
        self.metrics.orders_purged.inc()

    def observe_sweep(self, seconds: float, due: int, now: float, purged: int = 0) -> None:
        m = self.metrics
        m.sweep.observe(seconds)
        if due:
            m.due.inc(due)
        if purged:
            m.purged.inc(purged)
        self._last_sweep_clock = max(self._last_sweep_clock, now)

    def observe_delivery(self, delivery: dict[str, Any]) -> None:
        """A delivery reported by the worker that owns its parcel, when it happens: once in the group (twice only
        when a crash makes a record be processed again, as the pickups). Not by the lane baselines' feed, which
        every worker runs over the whole history at every start: each restart would count half a year of
        deliveries into the last day's transit times."""
        region = province_region(delivery.get("destination_province"))
        self._child(self.metrics.transit, carrier_label(delivery["carrier"]), region).observe(
            delivery["signed_at"] - delivery["picked_up_at"])

    def observe_lane_sample(self, delivery: dict[str, Any]) -> None:
        """A delivery the lane baselines learned (the feed: every delivery, history included, on every worker)."""
        region = province_region(delivery.get("destination_province"))
        self._child(self.metrics.lane_samples, carrier_label(delivery["carrier"]), region).inc()

    def observe_pickup(self, shop: str | None, shipped_at: float, picked_up_at: float) -> None:
        hours = (picked_up_at - shipped_at) / 3600
        within = "24h" if hours <= 24 else "48h" if hours <= 48 else "later"
        self._child(self.metrics.pickups, shop_label(shop, self._shops), within).inc()

    def observe_shipment(self, shop: str | None) -> None:
        self._child(self.metrics.shipments, shop_label(shop, self._shops)).inc()

    def on_issue_event(self, issue: dict[str, Any]) -> None:
        if issue["action"] == "open":
            self._child(self.metrics.issues_opened, issue["kind"], issue["severity"]).inc()
        elif issue["action"] == "resolve":
            self._child(self.metrics.issues_resolved, issue["kind"], "auto").inc()

    def on_notification(self, note: dict[str, Any]) -> None:
        self._child(self.metrics.notifications, note["stage"]).inc()

    # -- the issue sink and the staff API ---------------------------------------------------------------------

    def on_staff_resolution(self, kind: str) -> None:
        self.metrics.issues_resolved.labels(kind=kind, resolution="staff").inc()

    def observe_issue_events_applied(self, results: list[str]) -> None:
        """What the sink's Redis script did with each issue event of a pipeline (bounded: its fixed results)."""
        counts: dict[str, int] = {}
        for result in results:
            if result in ISSUE_EVENT_RESULTS:  # (the script returns nothing else)
                counts[result] = counts.get(result, 0) + 1
        for label, n in counts.items():
            self.metrics.issue_events_applied.labels(result=label).inc(n)

    def observe_invalid_issue_event(self) -> None:
        self.metrics.issue_events_applied.labels(result="invalid").inc()

    def set_redis_up(self, up: bool) -> None:
        self.metrics.redis_up.set(1 if up else 0)

    def redis_retry(self) -> None:
        self.metrics.redis_retries.inc()

    # -- ingest ---------------------------------------------------------------------------------------------

    def observe_push(self, source: str, outcome: str) -> None:
        self._child(self.metrics.ingest_requests, source, outcome).inc()

    def observe_unknown_code(self, source: str) -> None:
        self._child(self.metrics.ingest_unknown, source).inc()

    # -- subscriptions ----------------------------------------------------------------------------------------

    SUBSCRIPTION_OUTCOMES = ("registered", "already", "retry", "rejected", "gave_up", "account", "too_old")

    def watch_subscriptions(self, aggregator: str) -> None:
        """The outcomes of this aggregator's registrations start at zero."""
        for outcome in self.SUBSCRIPTION_OUTCOMES:
            self._child(self.metrics.subscriptions, aggregator, outcome)
        for state in ("pending", "failed"):
            self.metrics.subscriptions_waiting.labels(state=state).set(0)

    def observe_subscription(self, aggregator: str, outcome: str) -> None:
        self._child(self.metrics.subscriptions, aggregator, outcome).inc()

    def set_subscriptions_waiting(self, counts: dict[str, int]) -> None:
        for state in ("pending", "failed"):
            self.metrics.subscriptions_waiting.labels(state=state).set(counts.get(state, 0))
    def observe_unknown_carrier(self, source: str) -> None:
        self._child(self.metrics.ingest_unknown_carriers, source).inc()

    def observe_dead_letter_push(self, source: str, what: str) -> None:
        """A push dead-lettered whole (``what`` = "push") or for some of its elements ("element")."""
        self._child(self.metrics.dead_letters, f"/ingest/{source}", what).inc()

    # -- alert routing ----------------------------------------------------------------------------------------

    def watch_alert_router(self, router: Any) -> None:
        m = self.metrics
        router.on_sent = lambda r, d: m.alerts_sent.labels(route=r, destination=d).inc()
        router.on_failed = lambda r, d: m.alerts_failed.labels(route=r, destination=d).inc()
        router.on_refused = lambda r, d, why: m.alerts_refused.labels(route=r, destination=d, reason=why).inc()
        router.on_throttled = lambda r, d: m.alerts_throttled.labels(route=r, destination=d).inc()
        router.on_incident = lambda carrier: m.lane_incidents.labels(carrier=carrier_label(carrier)).inc()
        for route in router.route_names:
            m.alerts_pending.labels(route=route).set_function(_pending(router, route))


def _by_carrier_label(counts: Callable[[], Iterable[tuple[tuple[str, str, str], int]]]
                      ) -> Callable[[], Iterable[tuple[tuple[str, str, str], int]]]:
    """Open-issue counts with carriers kept under a source's code summed under one label per source."""
    def read() -> Iterable[tuple[tuple[str, str, str], int]]:
        summed: dict[tuple[str, str, str], int] = {}
        for (kind, severity, carrier), count in counts():
            key = (kind, severity, carrier_label(carrier))
            summed[key] = summed.get(key, 0) + count
        return summed.items()

    return read


def _pending(router: Any, route: str) -> Callable[[], float]:
    return lambda: float(router.pending(route))
