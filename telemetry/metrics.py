"""parcelwatch's Prometheus metrics, on a registry of their own (not the process-global default).

Naming: ``parcelwatch_`` prefix, base units (seconds), ``_total`` on counters, bounded labels only —
kind, reason, severity, carrier, platform, topic, outcome, region, and shop only through ``shop_label``
(shops listed in config ``access.metric_shops``; every other shop is "other"). Never parcel, order or
tracking ids.

Gauges that describe the whole product (open issues, parcels tracked, consumer lag) are filled at scrape
time from callables the app sets, so they are exact when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Reasons a record is dead-lettered, as bounded labels: the field names validation can name.
DEAD_LETTER_REASONS = (
    "$", "event_id", "carrier", "tracking_number", "status", "exception_reason", "event_time", "province",
    "city", "raw_code", "raw_text", "source", "order_id", "shop", "platform", "kind", "order_value",
    "promised_ship_time", "auto_confirm_deadline", "origin_province", "destination_province",
    "destination_city", "category", "processing_error", "other",
)
# What the issue sink's Redis script did with an issue event (plus "invalid": dead-lettered before it).
ISSUE_EVENT_RESULTS = ("opened", "reopened", "updated", "auto_resolved", "duplicate", "stale", "invalid")


class Metrics:
    """Every metric parcelwatch exports, on this object's own registry."""

    def __init__(self) -> None:
        # No ``*_created`` series (the time each counter and histogram child was made): 191 of the 461 series
        # of an idle worker, read by no dashboard or rule, and rendering them doubled the exposition.
        # (prometheus-client's switch is process-wide.)
        disable_created_metrics()
        self.registry = registry = CollectorRegistry(auto_describe=True)
        # Input events consumed, their processing time and lag: counted per event, in a collector of their own.
        self.events = EventMetrics()
        for family in self.events.families:
            registry.register(_Family(family))
        self.dead_letters = Counter(
            "parcelwatch_dead_letters_total", "Events sent to the dead-letter topic, by invalid field.",
            ["topic", "reason"], registry=registry)
        self.dead_letter_values_omitted = Counter(
            "parcelwatch_dead_letter_values_omitted_total",
            "Dead letters whose value was too large to send again: sent as a stand-in naming where the original is.",
            ["topic"], registry=registry)
        self.dead_letter_failures = Counter(
            "parcelwatch_dead_letter_failures_total",
            "Dead letters the broker did not take: offsets stop, the record is processed again after a restart.",
            ["topic"], registry=registry)
        self.issues_opened = Counter(
            "parcelwatch_issues_opened_total", "Issues opened by the detectors.", ["kind", "severity"],
            registry=registry)
        self.issues_resolved = Counter(
            "parcelwatch_issues_resolved_total", "Issues resolved, by how (auto or staff).", ["kind", "resolution"],
            registry=registry)
        self.sweep = Histogram(
            "parcelwatch_deadline_sweep_seconds", "Duration of one partition's deadline sweep.",
            buckets=(1e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5), registry=registry)
        self.due = Counter(
            "parcelwatch_deadline_due_total", "Subjects re-checked by deadline sweeps.", registry=registry)
        self.purged = Counter(
            "parcelwatch_subjects_purged_total",
            "Finished subjects deleted from the parcel state when their retention ended.", registry=registry)
        self.orders_purged = Counter(
            "parcelwatch_orders_purged_total",
            "Orders whose facts the order router deleted once every subject they feed was deleted.", registry=registry)
        self.sweep_lag = Gauge(
            "parcelwatch_deadline_sweep_lag_seconds", "Wall clock minus the clock of the last sweep.", registry=registry)
        self.catching_up = Gauge(
            "parcelwatch_partitions_catching_up",
            "Partitions of this worker working through a backlog: their detectors and sweeps run at the backlog's "
            "arrival time, not the wall clock.", registry=registry)
        self.partitions_held = Gauge(
            "parcelwatch_partitions_held",
            "Parcel-state partitions this worker holds: its share of the co-partitioned inputs, as the consumer group "
            "last assigned them (per instance; summed over a group, the partition count).", registry=registry)
        self.lane_samples = Gauge(
            "parcelwatch_lane_baseline_samples", "Deliveries learned per carrier and destination region.",
            ["carrier", "region"], registry=registry)
        self.shipments = Counter(
            "parcelwatch_shipments_total", "Parcels shipped (waybill issued), by shop.", ["shop"], registry=registry)
        self.pickups = Counter(
            "parcelwatch_pickups_total", "Parcels picked up, by shop and time from shipping (24h|48h|later).",
            ["shop", "within"], registry=registry)
        self.transit = Histogram(
            "parcelwatch_transit_seconds", "Pickup to signature, by carrier and destination region.",
            ["carrier", "region"], buckets=tuple(h * 3600 for h in (6, 12, 24, 36, 48, 72, 96, 120, 168, 240, 360)),
            registry=registry)
        self.ingest_requests = Counter(
            "parcelwatch_ingest_requests_total", "Aggregator pushes, by source and outcome.", ["source", "outcome"],
            registry=registry)
        self.ingest_unknown = Counter(
            "parcelwatch_ingest_unknown_codes_total", "Aggregator status codes not in our tables.", ["source"],
            registry=registry)
        self.ingest_unknown_carriers = Counter(
            "parcelwatch_ingest_unknown_carriers_total",
            "Parcels pushed with a carrier no table maps (kept under the source's own code), by source.", ["source"],
            registry=registry)
        self.alerts_sent = Counter(
            "parcelwatch_alerts_sent_total", "Alert messages delivered.", ["route", "destination"], registry=registry)
        self.alerts_failed = Counter(
            "parcelwatch_alerts_failed_total", "Alert messages that used up their retries (kept).",
            ["route", "destination"], registry=registry)
        self.alerts_refused = Counter(
            "parcelwatch_alerts_refused_total",
            "Alert messages a destination refused for good (bad request, too large, keyword, signature ...): set aside in "
            "the dead-letter topic, not retried.", ["route", "destination", "reason"], registry=registry)
        self.alerts_throttled = Counter(
            "parcelwatch_alerts_throttled_total",
            "Throttling answers from a chat robot (its rate limit hit): the robot's penalty is waited out, then the message "
            "is sent again.", ["route", "destination"], registry=registry)
        self.alerts_pending = Gauge(
            "parcelwatch_alerts_pending", "Issues waiting to be sent, per route.", ["route"], registry=registry)
        self.lane_incidents = Counter(
            "parcelwatch_lane_incidents_total", "Lane incidents opened.", ["carrier"], registry=registry)
        self.redis_retries = Counter(
            "parcelwatch_redis_retries_total", "Retried Redis writes of the issue sink.", registry=registry)
        self.redis_up = Gauge(
            "parcelwatch_redis_up", "1 when the issue sink's last Redis write succeeded.", registry=registry)
        self.issue_events_applied = Counter(
            "parcelwatch_issue_events_applied_total",
            "Issue events the sink applied to the Redis queue, by result (duplicate: redelivered; stale: of an "
            "earlier open period; invalid: dead-lettered).", ["result"], registry=registry)
        self.notifications = Counter(
            "parcelwatch_notifications_total", "Buyer notifications emitted, by stage.", ["stage"], registry=registry)
        self.subscriptions = Counter(
            "parcelwatch_subscriptions_total",
            "Parcel registrations with the tracking aggregator, by outcome: registered, already (registered before), "
            "retry (temporary failure), rejected (refused for the parcel: an issue for staff), gave_up (still failing "
            "after subscriptions.give_up_after_hours: an issue), account (the vendor refused our key), too_old (a "
            "shipment older than subscriptions.max_age_days, not registered by itself).", ["aggregator", "outcome"],
            registry=registry)
        self.subscriptions_waiting = Gauge(
            "parcelwatch_subscriptions_waiting",
            "Parcels not registered with the aggregator, from Redis (every worker's): pending (to be tried) or failed "
            "(could not be registered; each has an issue).", ["state"], registry=registry)
        self.scrape_time = _ScrapeTimeGauges()
        registry.register(self.scrape_time)

    def init_label_sets(self, kinds: Iterable[str], severities: Iterable[str], carriers: Iterable[str],
                        topics: Iterable[str], stages: Iterable[str] = ()) -> None:
        """Touch every known label combination so labelled counters start at zero."""
        kinds, severities = list(kinds), list(severities)
        for topic in topics:
            self.events.init_topic(topic, ("ok", "invalid"))
            for reason in DEAD_LETTER_REASONS:
                self.dead_letters.labels(topic=topic, reason=reason)
            self.dead_letter_values_omitted.labels(topic=topic)
            self.dead_letter_failures.labels(topic=topic)
        for kind in kinds:
            for severity in severities:
                self.issues_opened.labels(kind=kind, severity=severity)
            for resolution in ("auto", "staff"):
                self.issues_resolved.labels(kind=kind, resolution=resolution)
        for carrier in carriers:
            self.lane_incidents.labels(carrier=carrier)
        for stage in stages:
            self.notifications.labels(stage=stage)
        for result in ISSUE_EVENT_RESULTS:
            self.issue_events_applied.labels(result=result)

    def render(self, names: Collection[str] = ()) -> tuple[bytes, str]:
        """The exposition; with ``names`` (sample names, as Prometheus' ``name[]`` parameter gives them:
        ``parcelwatch_issues_opened_total``, ``..._seconds_count``) only those series. A full render costs
        the worker a few milliseconds; a client polling a few counters often (the benchmarks) asks for those."""
        registry = self.registry.restricted_registry(names) if names else self.registry
        return generate_latest(registry), CONTENT_TYPE_LATEST


LAG_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0)
PROCESSING_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05, 0.25, 1.0)


class _Buckets:
    """One histogram's counts: per bucket (the last is +Inf), not cumulative, and the sum."""

    __slots__ = ("bounds", "counts", "labels", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.labels = (*map(floatToGoString, bounds), "+Inf")  # the "le" label of each bucket
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # (the first bucket whose bound is >= value: "le")
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        buckets, total = [], 0
        for bound, count in zip(self.labels, self.counts, strict=True):
            total += count
            buckets.append((bound, float(total)))
        return buckets


class EventMetrics:
    """``parcelwatch_events_consumed_total``, ``parcelwatch_processing_seconds`` and
    ``parcelwatch_event_lag_seconds``, which every input event updates: kept as plain counts and rendered
    at scrape time (``families``), as prometheus-client's own counter and histograms would render them.
    Theirs take a lock and validate per update, about 3 us an event (a batch record's elements each
    count). Updated from the event loop's thread only."""

    def __init__(self) -> None:
        self.consumed: dict[tuple[str, str], int] = {}  # (topic, outcome) -> events
        self.processing: dict[str, _Buckets] = {}  # topic -> seconds per event
        self.lag = _Buckets(LAG_BUCKETS)

    def init_topic(self, topic: str, outcomes: Iterable[str]) -> None:
        """A topic's series, at zero until its first event."""
        for outcome in outcomes:
            self.consumed.setdefault((topic, outcome), 0)
        self.processing.setdefault(topic, _Buckets(PROCESSING_BUCKETS))

    def observe(self, topic: str, outcome: str, lag_seconds: float | None, seconds: float) -> None:
        key = (topic, outcome)
        consumed = self.consumed
        consumed[key] = consumed.get(key, 0) + 1
        processing = self.processing.get(topic)
        if processing is None:
            processing = self.processing[topic] = _Buckets(PROCESSING_BUCKETS)
        processing.observe(seconds)
        if lag_seconds is not None:
            self.lag.observe(lag_seconds if lag_seconds > 0.0 else 0.0)

    @property
    def families(self) -> tuple[Callable[[], Metric], ...]:
        """What a scrape renders, one metric family each (a scrape asking for one renders only that one)."""
        return self._consumed_family, self._lag_family, self._processing_family

    def _consumed_family(self) -> Metric:
        consumed = CounterMetricFamily("parcelwatch_events_consumed", "Input events consumed, by topic and outcome.",
                                       labels=["topic", "outcome"])
        for (topic, outcome), count in self.consumed.items():
            consumed.add_metric([topic, outcome], float(count))
        return consumed

    def _lag_family(self) -> Metric:
        lag = HistogramMetricFamily("parcelwatch_event_lag_seconds", "Processing time minus event time.")
        lag.add_metric([], self.lag.cumulative(), self.lag.sum)
        return lag

    def _processing_family(self) -> Metric:
        processing = HistogramMetricFamily("parcelwatch_processing_seconds", "Time to process one input event.",
                                           labels=["topic"])
        for topic, buckets in self.processing.items():
            processing.add_metric([topic], buckets.cumulative(), buckets.sum)
        return processing


class _Family(Collector):
    """One metric family rendered at scrape time by ``render``."""

    def __init__(self, render: Callable[[], Metric]) -> None:
        self.render = render

    def collect(self) -> Iterable[Metric]:
        yield self.render()


class _ScrapeTimeGauges(Collector):
    """Gauges read at scrape time from callables the app sets."""

    def __init__(self) -> None:
        # Open and acknowledged issues by (kind, severity, carrier): global, read from Redis.
        self.open_issues: Callable[[], Iterable[tuple[tuple[str, str, str], int]]] | None = None
        self.parcels_tracked: Callable[[], float] | None = None
        self.consumer_lag: Callable[[], Iterable[tuple[str, float]]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily("parcelwatch_open_issues", "Open and acknowledged issues (exact, from Redis).",
                              labels=["kind", "severity", "carrier"])
        if self.open_issues is not None:
            for (kind, severity, carrier), count in self.open_issues():
                g.add_metric([kind, severity, carrier], count)
        yield g
        t = GaugeMetricFamily("parcelwatch_parcels_tracked", "Subjects in this worker's parcel state.")
        if self.parcels_tracked is not None:
            t.add_metric([], self.parcels_tracked())
        yield t
        lag = GaugeMetricFamily("parcelwatch_consumer_lag_messages", "Messages not yet consumed, by topic.",
                                labels=["topic"])
        if self.consumer_lag is not None:
            for topic, value in self.consumer_lag():
                lag.add_metric([topic], value)
        yield lag


def shop_label(shop: str | None, allowed: set[str] | frozenset[str]) -> str:
    return shop if shop and shop in allowed else "other"


def dead_letter_reason(field: str) -> str:
    return field if field in DEAD_LETTER_REASONS else "other"
