"""The deliveries topic as the lane baselines read it: a record carries one delivery or a batch of them
(the parcel agent sends a record's deliveries as one record per partition, agents/parcels.py ``_write``),
and a malformed delivery is skipped alone."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import agents
import config
from agents.parcels import ParcelAgent
from delivery.batch_records import keyed_records

T0 = 1_793_500_000.0


@pytest.fixture(scope="module")
def parcels() -> ParcelAgent:
    """A worker's parcel agent, built (not started) as the worker builds it."""
    stream = agents.build(config.load(env={}))
    assert stream.parcels is not None
    return stream.parcels


def _delivery(carrier: str, hours: float, dest: str = "浙江") -> dict[str, Any]:
    return {"carrier": carrier, "origin_province": "广东", "destination_province": dest,
            "picked_up_at": T0, "signed_at": T0 + hours * 3600, "subject": f"{carrier}:1"}


def test_the_deliveries_of_a_record_travel_as_batch_records_and_all_reach_the_baselines(parcels: ParcelAgent) -> None:
    deliveries = [_delivery("ZTO", h) for h in (30, 31, 32)] + [_delivery("YTO", 40), _delivery("STO", 20, "新疆")]
    records = keyed_records([(d["carrier"], orjson.dumps(d)) for d in deliveries], 4)
    assert len(records) < len(deliveries)  # some travel together
    before = parcels.stream.baselines.deliveries
    assert sum(parcels.add_deliveries(record) for _, _, record in records) == len(deliveries)
    assert parcels.stream.baselines.deliveries - before == len(deliveries)


def test_a_malformed_delivery_is_skipped_alone_and_a_malformed_record_whole(parcels: ParcelAgent) -> None:
    good = orjson.dumps(_delivery("ZTO", 30))
    before = parcels.stream.baselines.deliveries
    assert parcels.add_deliveries(good) == 1  # a lone delivery, as records written before batching
    batch = b"[" + b",".join([good, orjson.dumps({"carrier": "ZTO"}), b'"text"', good]) + b"]"
    assert parcels.add_deliveries(batch) == 2
    assert parcels.add_deliveries(b"[not json") == 0
    assert parcels.add_deliveries(None) == 0
    assert parcels.stream.baselines.deliveries - before == 3
