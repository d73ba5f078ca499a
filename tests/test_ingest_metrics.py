"""Carriers nobody maps are lanes and issues like any other, but metrics label them by source, never by code:
however many unknown carriers and codes arrive, the series stay bounded."""

from __future__ import annotations

import re
from types import SimpleNamespace

import config
from domain.vocabulary import CARRIER_SOURCES, CARRIERS, carrier_label
from telemetry.recorder import Recorder


def series(recorder: Recorder, name: str) -> set[bytes]:
    text, _ = recorder.render()
    return set(re.findall(rb"^" + name.encode() + rb"\{[^}]*\}", text, flags=re.M))


def test_carrier_labels_are_the_canonical_codes_or_one_per_source() -> None:
    assert {carrier_label(c) for c in CARRIERS} == set(CARRIERS)
    assert carrier_label("kuaidi100:zhongtongkuaiyun") == carrier_label("kuaidi100:fengwang") == "kuaidi100:other"
    assert carrier_label("generic:安能物流") == "generic:other"
    assert carrier_label("somewhere-else:x") == "other"
    assert len({carrier_label(f"{s}:{i}") for s in CARRIER_SOURCES for i in range(50)}) == len(CARRIER_SOURCES)


def test_many_unknown_carriers_and_codes_add_no_series_per_code() -> None:
    recorder = Recorder(config.load(env={}))
    counts: list[tuple[tuple[str, str, str], int]] = []
    recorder.read_at_scrape(open_issues=lambda: counts)
    router = SimpleNamespace(route_names=(), on_sent=None, on_failed=None, on_incident=None)
    recorder.watch_alert_router(router)
    for i in range(300):
        carrier = f"kuaidi100:line{i}"
        delivery = {"carrier": carrier, "origin_province": "广东", "destination_province": "浙江",
                    "picked_up_at": 1.0e9, "signed_at": 1.0e9 + 86400, "shop": "s"}
        recorder.observe_delivery(delivery)
        recorder.observe_lane_sample(delivery)
        recorder.observe_unknown_code("kuaidi100")
        recorder.observe_unknown_carrier("kuaidi100")
        router.on_incident(carrier)
        counts.append((("tracking_stale", "low", carrier), 1))
    text, _ = recorder.render()
    assert b"line1" not in text
    assert series(recorder, "parcelwatch_transit_seconds_count") == {
        b'parcelwatch_transit_seconds_count{carrier="kuaidi100:other",region="east"}'}
    assert series(recorder, "parcelwatch_lane_baseline_samples") == {
        b'parcelwatch_lane_baseline_samples{carrier="kuaidi100:other",region="east"}'}
    assert b'parcelwatch_lane_incidents_total{carrier="kuaidi100:other"} 300.0' in text
    assert b'parcelwatch_open_issues{carrier="kuaidi100:other",kind="tracking_stale",severity="low"} 300.0' in text
    assert b'parcelwatch_ingest_unknown_carriers_total{source="kuaidi100"} 300.0' in text
    assert b'parcelwatch_ingest_unknown_codes_total{source="kuaidi100"} 300.0' in text
