"""Memory per tracked parcel.

1. Memory store (what Faust's ``memory://`` table holds: a dict of key -> our encoded state, plus the
   deadline index): RSS growth per parcel after 1M parcels went through the processor with order facts
   and three scans each. Target <= 1 KB per parcel.
2. RocksDB store (``rocksdb://`` uses rocksdict): RSS while writing 5M encoded parcel states, sampled every
   million, to show it stays bounded (the data lives on disk, not in RAM).

Run: ``.venv/bin/python -m bench.memory [--parcels 1000000] [--rocksdb-parcels 5000000]``.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
from pathlib import Path

import psutil

import config
from core.processor import Processor
from detectors import LaneBaselines
from domain.events import TrackingUpdate
from domain.state import OrderFacts

T0 = 1_793_500_000.0


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def memory_store(parcels: int) -> tuple[float, int]:
    settings = config.load(env={})
    states: dict[str, bytes] = {}
    index: dict[str, bytes] = {}
    proc = Processor(settings, LaneBaselines(settings.lanes), states, index)
    gc.collect()
    before = rss()
    for i in range(parcels):
        number = f"73{i:012d}"
        subject = f"ZTO:{number}"
        t = T0 + (i % 86400)
        facts = OrderFacts(order_id=f"TB{i:012d}", shop=f"shop-{i % 20}", platform="taobao", paid_at=t - 7200,
                           shipped_at=t - 3600, order_value=88.0, origin_province="广东",
                           destination_province="浙江", destination_city="杭州市", parcels=[subject])
        proc.on_order_facts(0, subject, facts, t - 3600, t)
        for k, status in enumerate(("picked_up", "in_transit", "arrived_city")):
            proc.on_tracking(0, TrackingUpdate(f"e{i}-{k}", "ZTO", number, status, t + k * 20000,
                                               province="浙江", city="杭州市"), t + k * 20000)
    gc.collect()
    grown = rss() - before
    return grown / parcels, len(states)


def rocksdb_store(parcels: int) -> list[tuple[int, int]]:
    from rocksdict import Rdict

    sample_state = OrderFacts(order_id="TB000000000001", shop="shop-1", platform="taobao").to_json()
    # RSS before the first write: the process may still hold what the memory-store run allocated.
    samples: list[tuple[int, int]] = [(0, rss())]
    tmp = Path(tempfile.mkdtemp(prefix="pw-rocks-"))
    try:
        db = Rdict(str(tmp / "parcel-state"))
        step = max(1, parcels // 5)
        for i in range(parcels):
            db[f"ZTO:73{i:012d}".encode()] = sample_state + str(i).encode()
            if (i + 1) % step == 0:
                samples.append((i + 1, rss()))
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--rocksdb-parcels", type=int, default=5_000_000)
    args = parser.parse_args(argv)
    per_parcel, subjects = memory_store(args.parcels)
    print(f"memory store: {args.parcels:,} parcels ({subjects:,} subjects incl. index), "
          f"RSS growth {per_parcel:,.0f} bytes per parcel (target <= 1024)")
    samples = rocksdb_store(args.rocksdb_parcels)
    for n, r in samples:
        print(f"rocksdb store: {n:>10,} parcels written, RSS {r / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
