"""The alert path in process (no broker): issue events/s through what the lane re-keying and the alert router do.

The processor's own issue events over simulator traffic (``replay.Engine``), in batch records of 20 as the
issues topic carries them; then, per record, what ``agents/alerts.py`` does around Faust: decode it, check
each event, keep what the router needs (``AlertRouter.needed``), encode and group that by alert-routing
partition (``keyed_records``), decode the forwarded records, check each event again and ``submit`` it to the
router (the configured routes, ``config/alert_routes.yaml``: by default none, so only lane incidents count).
Prints issue events/s (median, range over ``--repeats`` runs) and the records and bytes forwarded against
those read. Run: ``.venv/bin/python -m bench.alert_path [--parcels 5000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

import orjson

import config
from agents.alerts import alert_routing_pairs
from alerting import AlertRouter, load_routes
from core.processor import Output
from core.replay import Engine
from delivery.batch_records import encode_batches, keyed_records, record_events
from devtools.simulator import Simulator
from issue_queue.store import check_issue_event

from .detector_core import START

PARTITIONS = 4
PER_RECORD = 20


def issue_records(settings: config.Settings, parcels: int) -> tuple[int, list[bytes]]:
    """The issue events the processor raises over ``parcels`` simulated parcels, as batch records."""
    issues = issue_events(settings, parcels)
    return len(issues), encode_batches((orjson.dumps(i) for i in issues), max_events=PER_RECORD)


def issue_events(settings: config.Settings, parcels: int) -> list[dict[str, Any]]:
    """The issue events the processor raises over ``parcels`` simulated parcels, in the order it emits them."""
    engine = Engine(settings)
    issues: list[dict[str, Any]] = []
    collect = engine._collect

    def keep(out: Output) -> None:
        issues.extend(out.issues)
        collect(out)

    engine._collect = keep  # type: ignore[method-assign]
    last = 0.0
    for kind, _, event in Simulator(seed=21, start_time=START, mean_gap_seconds=30).events(parcels):
        last = event.event_time
        if kind == "orders":
            engine.order(event, last)  # type: ignore[arg-type]
        else:
            engine.tracking(event, last)  # type: ignore[arg-type]
    engine.tick(last)
    return issues


async def alert_path(settings: config.Settings, records: list[bytes]) -> tuple[float, int, int]:
    """Seconds for every record through the re-keying and the router; records and bytes forwarded."""
    with tempfile.TemporaryDirectory() as data_dir:
        router = AlertRouter(load_routes(data_dir=data_dir), labels=settings.labels)
        forwarded = size = 0
        started = time.perf_counter()
        for record in records:
            for _, _, value in keyed_records(alert_routing_pairs(router, record_events(record)), PARTITIONS):
                forwarded += 1
                size += len(value)
                for issue in record_events(value):
                    check_issue_event(issue)
                    router.submit_nowait(issue)
        return time.perf_counter() - started, forwarded, size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    settings = config.load(env={})
    n, records = issue_records(settings, args.parcels)
    rates: list[float] = []
    forwarded = size = 0
    for _ in range(max(1, args.repeats)):
        seconds, forwarded, size = asyncio.run(alert_path(settings, records))
        rates.append(n / seconds)
    print(f"alert path: {n:,} issue events in {len(records):,} records ({sum(map(len, records)):,} bytes)")
    print(f"  re-keying + router: {statistics.median(rates):10,.0f} issue events/s"
          f" ({min(rates):,.0f}-{max(rates):,.0f}, median of {len(rates)})")
    print(f"  forwarded to alert routing: {forwarded:,} records, {size:,} bytes")


if __name__ == "__main__":
    main()
