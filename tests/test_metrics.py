"""Metric naming conventions and behaviour, read off the registry itself."""

from __future__ import annotations

import re

import pytest

from domain.vocabulary import province_region
from telemetry.metrics import Metrics, dead_letter_reason, shop_label

FORBIDDEN_LABELS = {"parcel", "order_id", "tracking_number", "subject", "issue_key", "id", "buyer", "phone"}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def test_names_prefix_units_and_bounded_labels(metrics: Metrics) -> None:
    for fam in metrics.registry.collect():
        assert fam.name.startswith("parcelwatch_"), fam.name
        if fam.type == "counter":
            # prometheus_client strips _total from the family name and adds it to the samples.
            assert all(s.name.endswith("_total") for s in fam.samples), fam.name
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), fam.name
        for sample in fam.samples:
            assert not FORBIDDEN_LABELS & set(sample.labels), (fam.name, sample.labels)


def test_the_exposition_carries_no_created_series(metrics: Metrics) -> None:
    """Half the exposition once, read by nothing (telemetry/metrics.py): a scrape renders the values only."""
    metrics.lane_incidents.labels(carrier="TEST-CREATED").inc()
    body = metrics.render()[0].decode()
    assert 'parcelwatch_lane_incidents_total{carrier="TEST-CREATED"} 1.0' in body and "_created" not in body


def test_labelled_counters_start_at_zero(metrics: Metrics) -> None:
    metrics.init_label_sets(kinds=["pickup_overdue"], severities=["high"], carriers=["ZTO"], topics=["t"],
                            stages=["picked_up"])
    body = metrics.render()[0].decode()
    assert 'parcelwatch_issues_opened_total{kind="pickup_overdue",severity="high"} 0.0' in body
    assert 'parcelwatch_events_consumed_total{outcome="invalid",topic="t"} 0.0' in body
    assert 'parcelwatch_dead_letters_total{reason="carrier",topic="t"} 0.0' in body


def test_callable_gauges_render_exact_values_at_scrape(metrics: Metrics) -> None:
    counts = {("carrier_exception", "high", "ZTO"): 3}
    metrics.scrape_time.open_issues = lambda: list(counts.items())
    metrics.scrape_time.parcels_tracked = lambda: 42.0
    body = metrics.render()[0].decode()
    assert 'parcelwatch_open_issues{carrier="ZTO",kind="carrier_exception",severity="high"} 3.0' in body
    counts[("carrier_exception", "high", "ZTO")] = 5
    assert re.search(r'parcelwatch_open_issues\{[^}]*\} 5\.0', metrics.render()[0].decode())
    assert "parcelwatch_parcels_tracked 42.0" in metrics.render()[0].decode()


def test_shop_label_and_regions_are_bounded() -> None:
    assert shop_label("shop-a", {"shop-a"}) == "shop-a"
    assert shop_label("some new shop", {"shop-a"}) == "other"
    assert province_region("新疆") == "remote" and province_region("浙江") == "east"
    assert province_region(None) == "unknown"
    assert dead_letter_reason("made-up field") == "other"


def test_a_scrape_can_ask_for_some_series_only(metrics: Metrics) -> None:
    """``name[]`` as Prometheus' exposition handlers take it: the benchmarks poll five counters often,
    and a full render costs the worker milliseconds each time."""
    metrics.lane_incidents.labels(carrier="TEST-NAMES").inc()
    metrics.sweep.observe(0.5)
    body = metrics.render(["parcelwatch_lane_incidents_total", "parcelwatch_deadline_sweep_seconds_count"])[0].decode()
    series = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and not line.startswith("#")}
    assert series == {"parcelwatch_lane_incidents_total", "parcelwatch_deadline_sweep_seconds_count"}
    assert 'parcelwatch_lane_incidents_total{carrier="TEST-NAMES"} 1.0' in body
    # No names: everything, as before.
    assert "parcelwatch_deadline_sweep_seconds_bucket" in metrics.render()[0].decode()


def test_the_per_event_series_render_as_prometheus_clients_own_would() -> None:
    """``EventMetrics`` keeps plain counts: what it renders must be what prometheus-client's Counter and
    Histograms render for the same events (boundaries included: a value on a bound is in that bucket)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.registry import RestrictedRegistry

    from telemetry.metrics import LAG_BUCKETS, PROCESSING_BUCKETS

    metrics = Metrics()
    events = metrics.events
    events.init_topic("tracking", ("ok", "invalid"))
    reference = CollectorRegistry()
    consumed = Counter("parcelwatch_events_consumed_total", "Input events consumed, by topic and outcome.",
                       ["topic", "outcome"], registry=reference)
    lag = Histogram("parcelwatch_event_lag_seconds", "Processing time minus event time.", buckets=LAG_BUCKETS,
                    registry=reference)
    processing = Histogram("parcelwatch_processing_seconds", "Time to process one input event.", ["topic"],
                           buckets=PROCESSING_BUCKETS, registry=reference)
    for outcome in ("ok", "invalid"):
        consumed.labels("tracking", outcome)
    processing.labels("tracking")
    observed = [("tracking", "ok", 30.0, 0.0001), ("tracking", "ok", -2.0, 3e-5), ("orders", "rerouted", None, 2.0),
                ("tracking", "expired", None, 0.25), ("orders", "ok", 86400.0 * 30, 0.001), ("tracking", "ok", 5.0, 1e-4)]
    for topic, outcome, lag_seconds, seconds in observed:
        events.observe(topic, outcome, lag_seconds, seconds)
        consumed.labels(topic, outcome).inc()
        processing.labels(topic).observe(seconds)
        if lag_seconds is not None:
            lag.observe(max(0.0, lag_seconds))
    # (Through the registry as a scrape reads it, and asking for these series only, as a scrape may.)
    ours = metrics.registry.restricted_registry(
        [f"{name}{suffix}" for name in ("parcelwatch_event_lag_seconds", "parcelwatch_processing_seconds")
         for suffix in ("_bucket", "_count", "_sum")] + ["parcelwatch_events_consumed_total"])

    def lines(registry: CollectorRegistry | RestrictedRegistry) -> list[str]:
        return sorted(line for line in generate_latest(registry).decode().splitlines() if "_created" not in line)

    assert lines(ours) == lines(reference)
    assert 'parcelwatch_processing_seconds_bucket{le="0.0001",topic="tracking"} 3.0' in lines(ours)
