"""The deliveries topic as the lane baselines read it: a record carries one delivery or a batch of them
(the parcel agent sends a record's deliveries as one record per partition, agents/parcels.py ``_write``),
and a malformed delivery is skipped alone."""

from __future__ import annotations

from typing import Any

import orjson

from agents import parcels
from batching import keyed_records

T0 = 1_793_500_000.0


def _delivery(carrier: str, hours: float, dest: str = "浙江") -> dict[str, Any]:
    return {"carrier": carrier, "origin_province": "广东", "destination_province": dest,
            "picked_up_at": T0, "signed_at": T0 + hours * 3600, "subject": f"{carrier}:1"}


def test_the_deliveries_of_a_record_travel_as_batch_records_and_all_reach_the_baselines() -> None:
    deliveries = [_delivery("ZTO", h) for h in (30, 31, 32)] + [_delivery("YTO", 40), _delivery("STO", 20, "新疆")]
    records = keyed_records([(d["carrier"], orjson.dumps(d)) for d in deliveries], 4)
    assert len(records) < len(deliveries)  # some travel together
    before = parcels.baselines.deliveries
    assert sum(parcels._add_deliveries(record) for _, _, record in records) == len(deliveries)
    assert parcels.baselines.deliveries - before == len(deliveries)


def test_a_malformed_delivery_is_skipped_alone_and_a_malformed_record_whole() -> None:
    good = orjson.dumps(_delivery("ZTO", 30))
    before = parcels.baselines.deliveries
    assert parcels._add_deliveries(good) == 1  # a lone delivery, as records written before batching
    batch = b"[" + b",".join([good, orjson.dumps({"carrier": "ZTO"}), b'"text"', good]) + b"]"
    assert parcels._add_deliveries(batch) == 2
    assert parcels._add_deliveries(b"[not json") == 0
    assert parcels._add_deliveries(None) == 0
    assert parcels.baselines.deliveries - before == 3
