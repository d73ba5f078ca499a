"""Records per input event: what the worker's tables and topics would carry for a backlog, in process.

The ceiling benchmark's simulated events (twelve days of traffic) go through the same processor and
order router as the worker's, with dicts for tables that count every write and its bytes, and sweeps
every ``--tick-every`` events. Twice: with the clock at the wall-clock time (a worker catching up on that
backlog judged it so before the catch-up clock), and with the catch-up clock (core/clock.py), the events having
arrived at their event time. Prints, per input event, the table writes and the changelog records they
make (one per key between seals: ``delivery/changelog.py`` seals at each commit, every 2.8 s of the
model's clock, and the parcel state and index also at each sweep, as its bucket removals do), the order-facts
records, issue events (and the records they travel in) and deliveries produced, and the Faust messages
the worker would consume.
Run: ``.venv/bin/python -m bench.records [--events 20000] [--tick-every 500]``.
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Iterator, MutableMapping

import config
from agents.orders import HOLD_RECORDS
from bench.ceiling import PARTITIONS, simulated_events
from core.clock import CatchUpClock
from core.notifications import load_rules
from core.orders import OrderRouter, decode_order_facts
from core.processor import Output, Processor
from delivery.batch_records import keyed_records
from detectors import LaneBaselines
from domain.events import parse_order_event, parse_tracking_update

# Faust's default broker_commit_interval, which the worker keeps: the changelog writer seals at each commit.
COMMIT_SECONDS = 2.8


class CountingTable(MutableMapping[str, bytes]):
    """A dict that counts writes and the bytes written, and the changelog records they make (one per key
    written between two ``seal`` calls, as the changelog writer sends them)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.writes = 0
        self.bytes = 0
        self.unsealed: set[str] = set()
        self.records = 0

    def seal(self) -> None:
        self.records += len(self.unsealed)
        self.unsealed.clear()

    def __getitem__(self, key: str) -> bytes:
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes += 1
        self.bytes += len(key) + len(value)
        self.unsealed.add(key)
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.writes += 1  # a tombstone
        self.unsealed.add(key)
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def run(records: list[tuple[str, bytes, bytes]], tick_every: int, catch_up: bool) -> None:
    settings = config.load(env={})
    states, index, orders = CountingTable(), CountingTable(), CountingTable()
    processor = Processor(settings, LaneBaselines(settings.lanes), states, index, load_rules(), epoch=1)
    router = OrderRouter(orders)
    wall = time.time()
    # Lag 0 turns the catch-up clock off: the wall clock throughout, as before it.
    clock = CatchUpClock(settings.app.catch_up_after_seconds if catch_up else 0, 10, started_at=wall - 3600)
    facts = issues = issue_records = deliveries = 0
    # The order facts the router holds (subject, as keyed) and for how many order events: in a backlog its
    # stream always has records queued, so it sends them every HOLD_RECORDS order events (agents/orders.py).
    held: list[tuple[str, bytes]] = []
    held_orders = 0
    committed_at = wall

    def collect(out: Output) -> None:
        nonlocal issues, issue_records, deliveries
        issues += len(out.issues) + len(out.notifications)
        # As the parcel agent sends them: one record per partition for the issue events of one input
        # record or sweep (agents/parcels.py), each notification a record of its own.
        issue_records += len(keyed_records([(i["subject"], b"{}") for i in out.issues], PARTITIONS))
        issue_records += len(out.notifications)
        deliveries += len(out.deliveries)

    def partition(key: str) -> int:
        return zlib.crc32(key.encode()) % PARTITIONS  # any stable spread will do for counting

    for i, (kind, _key, value) in enumerate(records, 1):
        wall += 0.001  # a thousand events a second
        if kind == "orders":
            ev = parse_order_event(value)
            for subject, record in router.route(ev):
                held.append((subject, b"{}"))
                s, f, at = decode_order_facts(record)
                p = partition(subject)
                now = clock.observe("order-facts", p, ev.event_time, wall)
                collect(processor.on_order_facts(p, s, f, at, now, wall))
            held_orders += 1
            if held_orders == HOLD_RECORDS:
                facts += len(keyed_records(held, PARTITIONS))
                held.clear()
                held_orders = 0
        else:
            update = parse_tracking_update(value)
            p = partition(update.parcel_key)
            now = clock.observe("tracking", p, update.event_time, wall)
            collect(processor.on_tracking(p, update, now, wall))
        if i % tick_every == 0:
            for p in range(PARTITIONS):
                swept_at = clock.now(p, wall)
                if swept_at is not None:  # (None: a partition with a backlog it has not begun)
                    collect(processor.on_tick(p, swept_at, wall))
            # A sweep's removals wait for the writes before them, acknowledged (Checkpoint step 6): sealed.
            states.seal()
            index.seal()
        if wall - committed_at >= COMMIT_SECONDS:
            committed_at = wall
            for table in (states, index, orders):
                table.seal()
    facts += len(keyed_records(held, PARTITIONS))
    for table in (states, index, orders):
        table.seal()
    n = len(records)
    changelog = states.records + index.records + orders.records
    produced = changelog + facts + issue_records + deliveries
    print(f"records: {n:,} input events of a twelve-day backlog, a sweep every {tick_every} events, "
          f"{'catch-up clock (arrival = event time)' if catch_up else 'wall clock'}")
    for name, table in (("parcel-state", states), ("deadline-index", index), ("orders", orders)):
        print(f"  {name + ' writes':<20}: {table.writes / n:5.2f} per event ({table.bytes / 2**20:6.1f} MiB),"
              f" {table.records / n:5.2f} changelog records")
    print(f"  order-facts records : {facts / n:5.2f} per event")
    print(f"  issue events + notifications: {issues / n:5.2f} per event, in {issue_records / n:5.2f} records; "
          f"deliveries {deliveries / n:5.2f}")
    print(f"  records produced    : {produced / n:5.2f} per event; Faust messages consumed "
          f"{(n + facts + issue_records) / n:5.2f} per event (inputs, order facts, issue records)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--tick-every", type=int, default=500, help="input events between two sweeps")
    args = parser.parse_args(argv)
    records = simulated_events(args.events)
    run(records, args.tick_every, catch_up=False)
    run(records, args.tick_every, catch_up=True)


if __name__ == "__main__":
    main()
