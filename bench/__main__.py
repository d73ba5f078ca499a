"""``make bench``: every benchmark with small defaults (about a quarter of an hour on a 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

from . import alert_path, ceiling, detector_core, importer, lane_feed, peer, queue_page, records, redis_sink, sweep


def main() -> None:
    steps = [
        # Five pairs of (1) and (5): the RocksDB target is their ratio, and three pairs spread by a third here.
        ("detector core", lambda: detector_core.main(["--parcels", "10000", "--store-repeats", "5"])),
        ("alert path (lane re-keying + alert router, in process)", lambda: alert_path.main([])),
        # What a starting worker waits for before it judges anything: its baselines read from the deliveries topic.
        ("lane feed (the deliveries topic read at start, in process)", lambda: lane_feed.main([])),
        # One sweep per 5,000 events: about what the ceiling's worker does (a tick every 5 s at ~1k/s).
        ("records per event", lambda: records.main(["--events", "20000", "--tick-every", "5000"])),
        ("deadline sweep", lambda: sweep.main(["--large", "1000000"])),
        # In a process of its own: after the steps before it, its RSS growth would reuse their freed memory.
        ("memory", lambda: _alone("bench.memory", "--parcels", "1000000", "--rocksdb-parcels", "5000000")),
        ("redis sink", lambda: redis_sink.main([])),
        # The workbench issue's targets: 10,000 open issues across 20 shops, first page and a filter change
        # under 100 ms, a search under 50 ms (in process and through a worker's API).
        ("queue page", lambda: queue_page.main(["--http"])),
        # The headline: the worker beside the same job on Quix Streams, alternating rounds, events per
        # worker CPU-second (the targets: c*/q* >= 100%, c/b >= 60%).
        ("peer (parcelwatch beside Quix Streams)", lambda: peer.main(["--events", "20000", "--rounds", "4"])),
        ("ceiling vs product", lambda: ceiling.main(["--events", "20000"])),
        # The scale-out target: the same with two workers in one group (on a 2-core machine they
        # share the cores with the broker, Redis and the harness: read "events per worker CPU-second").
        ("scale-out, two workers", lambda: ceiling.main(["--events", "20000", "--workers", "2"])),
        ("importer (an order export read into events)", lambda: importer.main(["--rows", "50000"])),
    ]
    only = set(sys.argv[1:])
    for name, run in steps:
        if only and name.split()[0] not in only:
            continue
        print(f"== {name}", flush=True)
        run()


def _alone(module: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", module, *args], check=True)


if __name__ == "__main__":
    main()
