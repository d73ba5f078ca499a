"""The lane baselines' feed in process (no broker): deliveries/s read into the baselines, as a starting worker
reads the whole deliveries topic before its parcel agent judges anything (``agents/parcels.py``,
``LaneBaselineFeed``).

``--deliveries`` deliveries over 30 days on the lanes of every carrier between ten provinces, JSON-encoded in
batch records of 500 as the parcel agent sends them, through ``ParcelAgent.add_deliveries`` (decode, the
redelivery check, the baselines, the per-delivery metrics) of a worker's agents built as the worker builds them.
Prints deliveries/s (median, range over ``--repeats`` runs, a fresh worker's agents each) and what a history
of a million deliveries would make a worker wait at start. Run:
``.venv/bin/python -m bench.lane_feed [--deliveries 300000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import orjson

import agents
import config
from domain.vocabulary import CARRIERS

PER_RECORD = 500
PROVINCES = ["广东", "浙江", "江苏", "上海", "北京", "四川", "湖北", "河南", "山东", "新疆"]


def history(deliveries: int, now: float) -> list[bytes]:
    """``deliveries`` deliveries signed over the 30 days before ``now``, oldest first, as batch records."""
    rnd = random.Random(7)
    carriers = sorted(CARRIERS)
    out: list[dict[str, Any]] = []
    for i in range(deliveries):
        signed = now - 30 * 86400 + i * (30 * 86400 / deliveries)
        carrier, origin, destination = rnd.choice(carriers), rnd.choice(PROVINCES), rnd.choice(PROVINCES)
        out.append({"parcel": f"{carrier}:B{i}", "carrier": carrier, "origin_province": origin,
                    "destination_province": destination, "picked_up_at": signed - rnd.uniform(20, 120) * 3600,
                    "signed_at": signed, "source": "kuaidi100"})
    return [b"[" + b",".join(orjson.dumps(d) for d in out[i:i + PER_RECORD]) + b"]"
            for i in range(0, len(out), PER_RECORD)]


def read(settings: config.Settings, records: list[bytes]) -> float:
    """Seconds for a fresh worker's parcel agent to read ``records`` into its baselines."""
    stream = agents.build(settings)
    assert stream.parcels is not None
    add = stream.parcels.add_deliveries
    started = time.perf_counter()
    for record in records:
        add(record)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    settings = config.load(env={})
    records = history(args.deliveries, time.time())
    rates = sorted(args.deliveries / read(settings, records) for _ in range(args.repeats))
    median = statistics.median(rates)
    print(f"lane feed, in process: {args.deliveries:,} deliveries in batch records of {PER_RECORD}: "
          f"{median:,.0f} deliveries/s (range {rates[0]:,.0f}-{rates[-1]:,.0f}, {args.repeats} runs); "
          f"a history of 1,000,000 deliveries holds a starting worker about {1_000_000 / median:.0f} s")


if __name__ == "__main__":
    main()
