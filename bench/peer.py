"""parcelwatch's worker beside the same job on Quix Streams (``bench/quix_peer.py``), in alternation, on the
same embedded broker and the same simulated events, one worker each, over several rounds:

  (b)  an empty Faust agent, one record per event (the framework's floor: records per CPU-second)
  (c)  the parcelwatch worker, one record per event      (q)  the Quix peer, one record per event
  (c*) the parcelwatch worker, batch records of --batch  (q*) the Quix peer, the same batch records
  (r*) (c*) with the worker's tables on ``rocksdb://``, the production store (the peer's state is on RocksDB)

Each round starts a broker (and Redis) for its single-record runs, another for its batch-record runs and a
third for (r*) (the worker's consumer group and topics are its own on a broker); in each, both workers get
the same events on topics of their own, the order of the two alternating from
round to round ((b) first or last with it). parcelwatch is timed as ``bench.ceiling`` times (c): from its
first event consumed until every input, the order facts the router re-keyed, the closing sweeps and the
issue events in Redis are done. The peer is timed from its first event until its consumer group has
committed the end of its inputs (Quix commits once the issue events and changelog records are
acknowledged). CPU seconds are each worker process's own over the same span.

Prints, per row, the median and range over rounds of events/s and of events per worker CPU-second (the
headline: less sensitive to the machine's spell than events/s), and the per-round ratios with the
issue's targets: c*/q* >= 100% and c/b >= 60%, both in events per worker CPU-second (and r*/q*, the same
store on both sides). Asserts nothing.
Needs ``requirements-bench.txt`` (``make bench`` installs it). Run:
``.venv/bin/python -m bench.peer [--events 20000] [--rounds 4] [--batch 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from delivery.batch_records import batch_records
from devtools.broker import TansuBroker
from devtools.process import stop
from devtools.redis_server import RedisServer

from .ceiling import (
    PARTITIONS,
    ROOT,
    Records,
    _create,
    _produce,
    _produce_partitioned,
    _TopicCounter,
    empty_agent_cpu,
    parcelwatch_workers,
    simulated_events,
)

# The peer's topics (the worker's are its configured ones); the peer's inputs are created with the
# retention stated, which Quix needs to read back (see ``bench.quix_peer.TOPIC_CONFIG``).
PEER_TRACKING, PEER_ORDERS, PEER_ISSUES = "peer-tracking", "peer-orders", "peer-issues"
EMPTY_AGENT_TOPIC = "bench-events"
POLL_SECONDS = 0.1


@dataclass
class Run:
    seconds: float
    cpu: float
    issue_events: int

    def rate(self, n: int) -> float:
        return n / self.seconds

    def per_cpu(self, n: int) -> float:
        return n / self.cpu


async def _create_peer_inputs(bootstrap: str) -> None:
    from .quix_peer import TOPIC_CONFIG

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1, topic_configs=dict(TOPIC_CONFIG))
                                   for t in (PEER_TRACKING, PEER_ORDERS)])
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("parcelwatch-orders", "parcelwatch-tracking")])
    finally:
        await admin.close()


async def _produce_peer_batches(bootstrap: str, records: Records, size: int) -> int:
    """The events as the worker's batch records (``_produce_partitioned``), on the peer's topics, each keyed
    by its partition's name (Quix's state is scoped to the record key); returns the records sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        futures = []
        for kind, topic in (("orders", PEER_ORDERS), ("tracking", PEER_TRACKING)):
            mine = [(key, value) for k, key, value in records if k == kind]
            for partition, record in batch_records(mine, PARTITIONS, size):
                futures.append(await producer.send(topic, key=f"p{partition}".encode(), value=record, partition=partition))
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


class _CommittedOffsets:
    """A consumer group's committed offsets on the peer's inputs, summed (librdkafka's admin client, as
    Quix's own: aiokafka's OffsetFetch decoding fails on Tansu's answer)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.request = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t in (PEER_TRACKING, PEER_ORDERS)
                                                             for p in range(PARTITIONS)])]

    def total(self) -> int:
        try:
            answer = self.admin.list_consumer_group_offsets(self.request, request_timeout=5)
            result = next(iter(answer.values())).result()
        except Exception:  # noqa: BLE001  # the group does not exist yet, or is rebalancing: not yet
            return 0
        return sum(max(0, tp.offset) for tp in result.topic_partitions)

    def close(self) -> None:
        del self.admin  # (librdkafka's client ends with its last reference)


def quix_peer(broker: TansuBroker, run_dir: Path, events: int, records: int, batched: bool) -> Run:
    """The peer over ``events`` events already on its input topics in ``records`` records."""
    group = f"quix-peer-{uuid.uuid4().hex[:8]}"
    mark = run_dir / "peer-first-event"
    env = {**os.environ, "BENCH_BOOTSTRAP": broker.bootstrap, "BENCH_GROUP": group, "BENCH_EVENTS": str(events),
           "BENCH_STATE_DIR": str(run_dir / "peer-state"), "BENCH_MARK": str(mark), "BENCH_BATCHED": "1" if batched else "0",
           "BENCH_PARTITIONS": str(PARTITIONS), "BENCH_TRACKING_TOPIC": PEER_TRACKING, "BENCH_ORDERS_TOPIC": PEER_ORDERS,
           "BENCH_ISSUES_TOPIC": PEER_ISSUES}
    log = (run_dir / "peer.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "bench.quix_peer"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=log, stderr=subprocess.STDOUT)
    committed = _CommittedOffsets(broker.bootstrap, group)
    try:
        deadline = time.monotonic() + 600
        while committed.total() < records:
            if proc.poll() is not None:
                raise RuntimeError(f"the Quix peer exited with {proc.returncode}: see {run_dir / 'peer.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Quix peer committed {committed.total()} of {records} records in time")
            time.sleep(POLL_SECONDS)
        ended = time.time()
        times = psutil.Process(proc.pid).cpu_times()
        cpu_ended = times.user + times.system
        started, cpu_started = (float(x) for x in mark.read_text().split())
    finally:
        committed.close()
        if proc.stdin:
            proc.stdin.close()
        stop(proc, timeout=20)
    counter = _TopicCounter(broker.bootstrap, [PEER_ISSUES])
    try:
        issues = counter(PEER_ISSUES)
    finally:
        counter.close()
    return Run(ended - started, cpu_ended - cpu_started, issues)


def _round(records: Records, batch: int, peer_first: bool, run_dir: Path) -> dict[str, Run]:
    """One round: (b), (c) and (q) on one broker; (c*) and (q*) on another; (r*) on a third, before (c*) and
    (q*) in the rounds where the peer goes first, after them in the others."""
    runs = _mode(records, 0, peer_first, run_dir / "single")
    if peer_first:
        runs["r*"] = _rocksdb_worker(records, batch, run_dir / "batched-rocksdb")
    runs.update(_mode(records, batch, peer_first, run_dir / "batched"))
    if not peer_first:
        runs["r*"] = _rocksdb_worker(records, batch, run_dir / "batched-rocksdb")
    return runs


def _rocksdb_worker(records: Records, batch: int, mode_dir: Path) -> Run:
    """(r*): the worker on batch records of ``batch`` with its tables on ``rocksdb://``, on a broker of its own."""
    with TansuBroker(mode_dir / "broker") as broker, RedisServer(mode_dir / "redis") as redis:
        asyncio.run(_create(broker.bootstrap, ["parcelwatch-orders", "parcelwatch-tracking"]))
        produce = partial(_produce_partitioned, broker.bootstrap, size=batch)
        return Run(*parcelwatch_workers(broker, redis, 1, mode_dir, produce, records, [], store="rocksdb://"))


def _mode(records: Records, batch: int, peer_first: bool, mode_dir: Path) -> dict[str, Run]:
    """(b), (c) and (q) on one record per event (``batch`` 0), or (c*) and (q*) on batch records of ``batch``,
    on a broker of their own, the peer first or last."""
    n = len(records)
    runs: dict[str, Run] = {}
    star = "*" if batch else ""
    with TansuBroker(mode_dir / "broker") as broker, RedisServer(mode_dir / "redis") as redis:
        bootstrap = broker.bootstrap
        asyncio.run(_create_peer_inputs(bootstrap))
        produce: Callable[[Records], Coroutine[Any, Any, None]]
        if batch:
            peer_records = asyncio.run(_produce_peer_batches(bootstrap, records, batch))
            produce = partial(_produce_partitioned, bootstrap, size=batch)
        else:
            asyncio.run(_produce(bootstrap, [(f"peer-{kind}", k, v) for kind, k, v in records]))
            asyncio.run(_produce(bootstrap, [(EMPTY_AGENT_TOPIC, k, v) for _, k, v in records]))
            peer_records = n
            produce = partial(_produce_worker_inputs, bootstrap)
        for step in ("q", "c", "b") if peer_first else ("b", "c", "q"):
            if step == "q":
                runs["q" + star] = quix_peer(broker, mode_dir, n, peer_records, bool(batch))
            elif step == "c":
                runs["c" + star] = Run(*parcelwatch_workers(broker, redis, 1, mode_dir, produce, records, []))
            elif not batch:
                runs["b"] = Run(*empty_agent_cpu(broker, EMPTY_AGENT_TOPIC, n), 0)
    return runs


async def _produce_worker_inputs(bootstrap: str, events: Records) -> None:
    await _produce(bootstrap, [(f"parcelwatch-{kind}", k, v) for kind, k, v in events])


ROWS = (
    ("b", "(b)  empty Faust agent, one record per event"),
    ("c", "(c)  parcelwatch, one record per event"),
    ("q", "(q)  Quix peer, one record per event"),
    ("c*", "(c*) parcelwatch, batch records"),
    ("q*", "(q*) Quix peer, batch records"),
    ("r*", "(r*) parcelwatch on RocksDB, batch records"),
)


def _spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50, help="events per batch record for (c*) and (q*)")
    args = parser.parse_args(argv)
    records = simulated_events(args.events)
    n = len(records)
    rounds: list[dict[str, Run]] = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            rounds.append(_round(records, args.batch, peer_first=r % 2 == 1, run_dir=Path(tmp)))
        done = rounds[-1]
        print(f"  round {r + 1}: " + ", ".join(
            f"{k} {done[k].per_cpu(n):,.0f}/CPU-s" for k, _ in ROWS if k in done), flush=True)
    print(f"{n:,} simulated events (orders + tracking), {PARTITIONS} partitions, one worker each, embedded Tansu broker, "
          f"{len(rounds)} alternating rounds; medians (range)")
    print(f"{'':48} {'events/s':>24}   {'events per worker CPU-second':>30}   issue events")
    for key, label in ROWS:
        rates = [run[key].rate(n) for run in rounds]
        per_cpu = [run[key].per_cpu(n) for run in rounds]
        issues = [run[key].issue_events for run in rounds]
        issues_text = "" if key == "b" else f"{min(issues):,}-{max(issues):,}" if min(issues) != max(issues) else f"{issues[0]:,}"
        if key.endswith("*"):
            label = label.replace("batch records", f"batch records of {args.batch}")
        print(f"{label:48} {_spread(rates):>24}   {_spread(per_cpu):>30}   {issues_text}")

    def ratio(a: str, b: str, per_cpu: bool = True) -> list[float]:
        return [(run[a].per_cpu(n) / run[b].per_cpu(n)) if per_cpu else (run[a].rate(n) / run[b].rate(n))
                for run in rounds]

    pct = "{:.0%}"
    print("ratios per round, median (range), events per worker CPU-second:")
    batch_ratio, single_ratio = ratio("c*", "q*"), ratio("c", "b")
    print(f"  c*/q* = {_spread(batch_ratio, pct)}   target >= 100%: "
          f"{'met' if statistics.median(batch_ratio) >= 1 else 'not met'}")
    print(f"  c/b   = {_spread(single_ratio, pct)}   target >= 60%: "
          f"{'met' if statistics.median(single_ratio) >= 0.6 else 'not met'}")
    print(f"  c/q   = {_spread(ratio('c', 'q'), pct)}   (events/s: c/q {_spread(ratio('c', 'q', False), pct)}, "
          f"c*/q* {_spread(ratio('c*', 'q*', False), pct)})")
    print(f"  r*/q* = {_spread(ratio('r*', 'q*'), pct)}   (both on RocksDB; r*/c* {_spread(ratio('r*', 'c*'), pct)})")


if __name__ == "__main__":
    main()
