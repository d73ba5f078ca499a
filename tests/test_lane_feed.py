"""The deliveries topic as the lane baselines read it: a record carries one delivery or a batch of them
(the parcel agent sends a record's deliveries as one record per partition, agents/parcels.py ``_write``),
a malformed delivery is skipped alone, and a copy sent again after a crash counts once."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import agents
import config
from agents.parcels import ParcelAgent
from delivery.batch_records import keyed_records
from delivery.redelivery import SeenLately

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


def test_a_delivery_sent_again_after_a_crash_counts_once(parcels: ParcelAgent) -> None:
    """A ``kill -9`` can land a delivery and lose the state that says it was sent: the record is processed again
    and sends it again, the same parcel signed at the same time."""
    first = {**_delivery("ZTO", 30), "parcel": "ZTO:771"}
    before = parcels.stream.baselines.deliveries
    assert parcels.add_deliveries(orjson.dumps(first)) == 1
    again = b"[" + b",".join([orjson.dumps(first), orjson.dumps({**_delivery("ZTO", 31), "parcel": "ZTO:772"})]) + b"]"
    assert parcels.add_deliveries(again) == 1  # only the other parcel's
    # The same tracking number signed at another time is another parcel (carriers reuse numbers).
    assert parcels.add_deliveries(orjson.dumps({**first, "signed_at": T0 + 99 * 86400})) == 1
    assert parcels.stream.baselines.deliveries - before == 3


def test_what_was_seen_lately_is_remembered_for_its_last_keys_only() -> None:
    seen = SeenLately(keep=2)
    assert [seen.first_time(k) for k in ("a", "b", "a", "c")] == [True, True, False, True]
    assert len(seen) == 2
    assert seen.first_time("a")  # forgotten: the oldest went when "c" came
    assert not seen.first_time("c")
