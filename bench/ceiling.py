"""Ceiling vs product, side by side on one embedded broker, the same N simulated events each:

  (a) a bare aiokafka consumer that only decodes them with orjson  — the Python ceiling
  (b) an empty Faust agent that iterates them and does nothing       — the framework ceiling
  (b1) the same agent writing one table key per event                — the least a stateful app pays
  (b1d) the same writes through delivery/changelog.py (batched changelog)  — what a cheaper write path gives
  (c) the parcelwatch worker processing them fully (state, all detectors, issues to Redis)
  (c*) the same worker on batch records (delivery/batch_records.py): the events grouped per partition, --batch a record

Each of (a) and (b) starts after all N events are in the broker; (c) gets them once its workers are up
and their group has settled (each worker holds its share of the partitions). Each is timed from its
first event to its last; for (c) "last" is when the order facts the order router re-keyed to parcels (one more Faust
message per order subject) have also gone through the parcel agent, then every partition has swept
its due subjects (a tick the harness sends), opening the issues the events imply, and the issue sink has
applied every issue event to Redis. Prints the rates and the ratios
c/b, c/b1 and c/a; then (b), (b1), (b1d) and (c) again over records that carry ``--batch`` events each
(the way past Faust's per-record cost: c*/b compares the product on batch records with the framework
ceiling on single records). Run: ``.venv/bin/python -m bench.ceiling``
(``--events N``, default 20000; ``--workers 2`` runs (c) with two workers in one group; ``--batch 0``
skips the batched runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from delivery.batch_records import batch_records, decode_batch, is_batch
from delivery.clients import stop_consumer
from devtools.broker import TansuBroker
from devtools.process import free_port, stop
from devtools.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4


def simulated_events(n: int) -> list[tuple[str, bytes, bytes]]:
    """N events of the simulator's realistic mix, as (topic kind, key, value), in event-time order."""
    from devtools.simulator import Simulator

    sim = Simulator(seed=11, start_time=time.time() - 12 * 86400)
    out: list[tuple[str, bytes, bytes]] = []
    for kind, key, event in sim.events(max(1, n // 8), start_time=time.time() - 12 * 86400):
        out.append((kind, key, event.to_json()))
        if len(out) == n:
            break
    return out


async def _create(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    finally:
        await admin.close()


async def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes]], arrival: bool = False) -> None:
    """``arrival``: each record's Kafka timestamp is its event's time, as if it had arrived then (a
    backlog after an outage, judged by the catch-up clock); else the time of producing it."""
    from domain.events import parse_time

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key, timestamp_ms=int(
                       parse_time(orjson.loads(value)["event_time"], "event_time") * 1000) if arrival else None)
                   for topic, key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def bare_consumer(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="bench-bare",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        seen = 0
        started = 0.0
        while seen < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for msgs in batch.values():
                for m in msgs:
                    if seen == 0:
                        started = time.perf_counter()
                    orjson.loads(m.value)
                    seen += 1
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def empty_agent(broker: TansuBroker, topic: str, n: int, table_writes: bool | str = False, batched: bool = False) -> float:
    """Seconds the framework-ceiling agent (bench.empty_agent) takes for ``n`` events (``table_writes``:
    False, True for Faust table writes, or "direct" for the same writes through delivery/changelog.py)."""
    return empty_agent_cpu(broker, topic, n, table_writes, batched)[0]


def empty_agent_cpu(broker: TansuBroker, topic: str, n: int, table_writes: bool | str = False,
                    batched: bool = False) -> tuple[float, float]:
    """``empty_agent``'s seconds and the agent's CPU seconds over the same span."""
    writes = table_writes if isinstance(table_writes, str) else "1" if table_writes else "0"
    with tempfile.TemporaryDirectory() as datadir:
        env = {**os.environ, "BENCH_BROKER": broker.url, "BENCH_TOPIC": topic, "BENCH_EVENTS": str(n),
               "BENCH_DATADIR": datadir, "BENCH_PARTITIONS": str(PARTITIONS),
               "BENCH_TABLE_WRITES": writes, "BENCH_BATCHED": "1" if batched else "0", "BENCH_WEB_PORT": str(free_port())}
        proc = subprocess.run([sys.executable, "-m", "bench.empty_agent", "-L", "uvloop", "worker", "-l", "warn"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        # Faust routes a worker's stdout through its logger: find the line wherever it starts.
        found = re.search(r"DONE (\d+) ([0-9.]+) ([0-9.]+)", proc.stdout + proc.stderr)
        if found:
            return float(found.group(2)), float(found.group(3))
        raise RuntimeError(f"empty agent did not finish:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


async def _produce_batched(bootstrap: str, topic: str, records: list[tuple[str, bytes, bytes]], size: int) -> None:
    """The same events, ``size`` to a record (a JSON array of [key, event] pairs), spread over the partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(0, len(records), size):
            pairs = [[k.decode(), orjson.loads(v)] for _, k, v in records[i:i + size]]
            futures.append(await producer.send(topic, value=orjson.dumps(pairs), partition=(i // size) % PARTITIONS))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _produce_partitioned(bootstrap: str, records: list[tuple[str, bytes, bytes]], size: int,
                               arrival: bool = False) -> None:
    """The same events as batch records (delivery/batch_records.py), as the ingest side would send them: each topic's
    events grouped by the partition of their key, in event order, ``size`` to a record (arrival: each
    record stamped with its newest event's time)."""
    from domain.events import parse_time

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        futures = []
        for kind in ("orders", "tracking"):
            mine = [(key, value) for k, key, value in records if k == kind]
            for partition, record in batch_records(mine, PARTITIONS, size):
                stamp = None
                if arrival:
                    stamp = int(max(parse_time(e["event_time"], "event_time") for e in decode_batch(record)) * 1000)
                futures.append(await producer.send(f"parcelwatch-{kind}", value=record, partition=partition,
                                                   timestamp_ms=stamp))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


ISSUE_EVENTS = "issue events"  # _consumed's keys for the issues opened and resolved so far,
SWEEPS = "sweeps"  # for the deadline sweeps done (one per partition and tick),
APPLIED = "applied"  # and for the issue events the sink has applied to Redis (any result)


# The series the harness reads: asked for by name (``name[]``), so that a poll costs the worker a small
# render, not the whole exposition's (about 5 ms of the worker's CPU per poll, when the harness polls
# every 0.1 s).
_POLLED = ("parcelwatch_events_consumed_total", "parcelwatch_issues_opened_total", "parcelwatch_issues_resolved_total",
           "parcelwatch_deadline_sweep_seconds_count", "parcelwatch_issue_events_applied_total")
_POLL_QUERY = "&".join(f"name[]={name}" for name in _POLLED)


def _consumed(port: int) -> dict[str, float]:
    """Events the worker has consumed (ok or invalid) per input topic, the issues it has opened and
    resolved (``ISSUE_EVENTS``), its sweeps (``SWEEPS``) and the issue events its sink applied to Redis
    (``APPLIED``), from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?{_POLL_QUERY}", timeout=5) as resp:
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("parcelwatch_events_consumed_total{"):
            topic = line.split('topic="', 1)[1].split('"', 1)[0]
            totals[topic] = totals.get(topic, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(("parcelwatch_issues_opened_total{", "parcelwatch_issues_resolved_total{")):
            totals[ISSUE_EVENTS] = totals.get(ISSUE_EVENTS, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("parcelwatch_deadline_sweep_seconds_count"):
            totals[SWEEPS] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("parcelwatch_issue_events_applied_total{"):
            totals[APPLIED] = totals.get(APPLIED, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


# How often the harness reads the workers' /metrics. A whole render cost the worker about 20 ms
# (polling every 50 ms then took a quarter of its CPU and halved (c)); since the harness asks for its
# five series by name (``_POLLED``), a poll costs it about 2 ms. So: often while waiting for the first
# event and near the end (the start and end times are known to within POLL_SECONDS), less often in
# between, but never more than POLL_MAX_SECONDS apart: the estimate of the time left, taken from the
# first polls' rate while the worker warms up, once slept 1.7 s, most of it past the inputs' end.
POLL_SECONDS = 0.1
POLL_MAX_SECONDS = 0.25


def _poll_interval(done: float, expected: float, last: tuple[float, float] | None, now: float) -> float:
    """A quarter of the estimated time left, at the rate since the last poll (``last``: its time and
    count; the rate since the phase began misleads when its counter starts late, as the order facts do
    behind the inputs: a run's end was once seen 1.6 s late), within [POLL_SECONDS, POLL_MAX_SECONDS]."""
    if last is None or done <= last[1] or now <= last[0]:
        return POLL_SECONDS
    left = max(0.0, expected - done) / ((done - last[1]) / (now - last[0]))
    return min(POLL_MAX_SECONDS, max(POLL_SECONDS, left / 4))


FACTS_TOPIC, ISSUES_TOPIC = "parcelwatch-order-facts", "parcelwatch-issues"


class _TopicCounter:
    """Events in a topic as the worker counts them consumed (one per record, one per element of a batch
    record, delivery/batch_records.py), read incrementally by a consumer per topic kept open for the whole run, on a
    loop of its own. A fresh consumer for each count took 45-120 ms and read the warm-up's records
    again; the harness counts three times in each timed phase, so that was measured as the worker's time."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.loop = asyncio.new_event_loop()
        self.consumers = {t: self.loop.run_until_complete(self._start(bootstrap)) for t in topics}
        self.counted = dict.fromkeys(topics, 0)
        self.tps: dict[str, list[TopicPartition]] = {}

    @staticmethod
    async def _start(bootstrap: str) -> AIOKafkaConsumer:
        # A short fetch wait: a count's ListOffsets request queues behind the fetch in flight, which
        # Tansu answers only after its wait when nothing arrives (500 ms by default: a count took 0.5 s).
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
        await consumer.start()
        return consumer

    def __call__(self, topic: str) -> int:
        """Every event in ``topic`` up to its end now (and any written meanwhile and read with them)."""
        return self.loop.run_until_complete(self._count(topic))

    async def _count(self, topic: str) -> int:
        consumer = self.consumers[topic]
        tps = self.tps.get(topic)
        if tps is None:  # (the worker creates its topics: known once it runs)
            # (A metadata refresh of every topic: topics() would fetch without updating the client's.)
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not tps:
                return 0
            self.tps[topic] = tps
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
        while remaining:
            for msgs in (await consumer.getmany(*remaining, timeout_ms=500, max_records=10_000)).values():
                for m in msgs:
                    self.counted[topic] += len(decode_batch(m.value)) if is_batch(m.value) else 1
            remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
        return self.counted[topic]

    def close(self) -> None:
        for consumer in self.consumers.values():
            self.loop.run_until_complete(stop_consumer(consumer))
        self.loop.close()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the worker processes have used so far."""
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


async def _sweep_all(bootstrap: str) -> None:
    """A tick on every partition of the ticks topic, as the leader's timer sends them: each partition
    sweeps its due subjects at the wall clock."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        value = orjson.dumps({"now": time.time()})
        await asyncio.gather(*[await producer.send("parcelwatch-ticks", key=b"tick", value=value, partition=p)
                               for p in range(PARTITIONS)])
    finally:
        await producer.stop()


# The leader's own ticks (default every 5 s) are turned off: they queue behind a backlog of inputs and
# land anywhere in a run of a few seconds, and each one that lands opens issues that later events of the
# run resolve (issue events varied from 1,200 to 3,200 between runs of the same code). The harness sends
# the ticks instead, at fixed points (``_sweep_all``).
TICK_INTERVAL_SECONDS = 86_400.0


@dataclass
class _Progress:
    first: float = 0.0  # perf_counter when the phase's first event was seen consumed
    last: float = 0.0  # ... and when its closing sweep was done
    cpu_first: float = 0.0
    cpu_last: float = 0.0
    consumed: float = 0.0  # input events consumed so far (warm-up included)
    issue_events: float = 0.0  # issues opened and resolved so far


def _until_swept(count: _TopicCounter, procs: list[subprocess.Popen[bytes]], ports: list[int], inputs: int,
                 before: _Progress | None = None) -> _Progress:
    """Poll the workers until ``inputs`` input events are consumed, the order facts the router re-keyed
    from them (one more Faust message per order subject) have gone through the parcel agent too, then
    every partition has swept its due subjects (a tick the harness sends), and every issue event on the
    issues topic is applied to Redis by the sink: the events' issues are in the queue staff read.
    ``before``: the phase before this one (its events are not this phase's first). ``count``: the
    harness's counter of the topics' events."""
    progress = _Progress()
    deadline = time.monotonic() + 900
    facts_total: int | None = None  # order-facts records the router produced, known once it is done
    sweeps_before: float | None = None  # sweeps seen when the inputs were done and the ticks sent
    issues_total: int | None = None  # issue events on the topic once the closing sweeps are done
    already = before.consumed if before else 0.0
    done = facts = sweeps = applied = 0.0
    last_done: tuple[float, float] | None = None  # (time, count) at the last poll, for _poll_interval
    while time.monotonic() < deadline:
        try:
            counts = [_consumed(p) for p in ports]
            done = sum(c.get("parcelwatch-tracking", 0.0) + c.get("parcelwatch-orders", 0.0) for c in counts)
            facts = sum(c.get("parcelwatch-order-facts", 0.0) for c in counts)
            sweeps = sum(c.get(SWEEPS, 0.0) for c in counts)
            applied = sum(c.get(APPLIED, 0.0) for c in counts)
            progress.issue_events = sum(c.get(ISSUE_EVENTS, 0.0) for c in counts)
        except OSError:
            done = facts = 0.0
        now = time.perf_counter()
        if done > already and not progress.first:
            progress.first = now
            progress.cpu_first = _cpu_seconds([p.pid for p in procs])
        if issues_total is not None:
            if applied >= issues_total:
                progress.last = now
                progress.cpu_last = _cpu_seconds([p.pid for p in procs])
                progress.consumed = done
                return progress
        elif sweeps_before is not None:
            if sweeps >= sweeps_before + PARTITIONS:
                # (a sweep is counted once its issue events are acknowledged: all are on the topic now)
                issues_total = count(ISSUES_TOPIC)
                continue
        elif done >= inputs and facts_total is None:
            facts_total = count(FACTS_TOPIC)
        elif facts_total is not None and facts >= facts_total:
            # (a batch of order events is counted as routed before its facts are sent: count again)
            recount = count(FACTS_TOPIC)
            if recount == facts_total:
                sweeps_before = sweeps
                asyncio.run(_sweep_all(count.bootstrap))
                continue
            facts_total = recount
        if facts_total is None:
            time.sleep(_poll_interval(done, inputs, last_done, now))
        else:
            # The order facts' phase is short, and its rate since the last poll says little: the
            # parcel agent takes the facts up in a burst once the inputs are done (an estimate from the
            # trickle before it once slept 0.58 s past the phase's end).
            time.sleep(POLL_SECONDS)
        last_done = (now, done)
    raise RuntimeError(f"parcelwatch consumed only {done} of {inputs} events (order facts: {facts} of {facts_total}; "
                       f"issue events applied: {applied} of {issues_total})")


Records = list[tuple[str, bytes, bytes]]  # (topic kind, key, value), as simulated_events gives them


def _held_partitions(port: int) -> list[int] | None:
    """The parcel-state partitions a worker holds, from its /healthz; None until it is healthy (its
    tables recovered, no rebalance under way)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            body = orjson.loads(resp.read())
    except (OSError, ValueError):  # not listening yet, or 503 (urllib's HTTPError is an OSError)
        return None
    return [int(p) for p in body["checks"]["tables"]["partitions"]]


def _until_settled(procs: list[subprocess.Popen[bytes]], ports: list[int], timeout: float = 180.0) -> None:
    """Wait until every worker is healthy and their group has split the partitions between them: each
    holds some (when there are enough to go round), none is held twice, together they hold all. Inputs
    produced before that go to whichever worker joins first, and a rebalance then pauses it for the late
    one: in a two-worker (c*) run of 2.3 s (against 1.4 s when both had joined in time), one worker had
    done its share before the other took its first event, 0.46 s later."""
    deadline = time.monotonic() + timeout
    held: list[list[int] | None] = []
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a parcelwatch worker exited with {p.returncode} before the group settled")
        held = [_held_partitions(port) for port in ports]
        if all(h is not None for h in held):
            flat = sorted(p for h in held for p in h or [])
            if flat == list(range(PARTITIONS)) and (len(held) > PARTITIONS or all(held)):
                return
        time.sleep(0.1)
    raise RuntimeError(f"the workers' group did not settle within {timeout:.0f} s: {held}")


def parcelwatch_workers(
    broker: TansuBroker, redis: RedisServer, workers: int, run_dir: Path,
    produce: Callable[[Records], Coroutine[Any, Any, None]], timed: Records, warm_up: Records, store: str | None = None,
) -> tuple[float, float, int]:
    """Seconds from the first timed event consumed until every timed input is processed and swept, the
    workers' CPU seconds over the same span (CPU / wall near the worker count: CPU-bound; lower:
    waiting), and the issues they opened and resolved meanwhile (the proof that (c) did the whole job).

    ``produce`` sends events to the workers' input topics, once the workers are up and their group has
    settled (``_until_settled``). With ``warm_up`` events the workers first process and sweep them,
    untimed: the ``timed`` events then meet parcels already tracked and open issues, which their scans,
    signatures and refunds update and resolve (each such issue event acknowledged by the broker before its
    state is written). ``store``: the workers' table store (default: the configured one, ``memory://``)."""
    procs: list[subprocess.Popen[bytes]] = []
    ports = []
    count = _TopicCounter(broker.bootstrap, [FACTS_TOPIC, ISSUES_TOPIC])
    try:
        for i in range(workers):
            port = free_port()
            env = {**os.environ, "PARCELWATCH_BROKER_URL": broker.url, "PARCELWATCH_REDIS_URL": redis.url,
                   "PARCELWATCH_WEB_PORT": str(port), "PARCELWATCH_DATA_DIR": str(run_dir / f"data-{i}"),
                   "PARCELWATCH_PARTITIONS": str(PARTITIONS), "PARCELWATCH_TICK_INTERVAL": str(TICK_INTERVAL_SECONDS)}
            if store is not None:
                env["PARCELWATCH_STORE"] = store
            log = (run_dir / f"worker-{i}.log").open("wb")
            procs.append(subprocess.Popen([sys.executable, "app.py", "worker", "-l", "warn"], cwd=ROOT, env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
            ports.append(port)
        _until_settled(procs, ports)
        warm = _Progress()
        if warm_up:
            asyncio.run(produce(warm_up))
            warm = _until_swept(count, procs, ports, len(warm_up))
        asyncio.run(produce(timed))
        run = _until_swept(count, procs, ports, int(warm.consumed) + len(timed), before=warm)
        return run.last - run.first, run.cpu_last - run.cpu_first, int(run.issue_events - warm.issue_events)
    finally:
        for p in procs:
            stop(p, timeout=20)
        count.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--arrival", action="store_true",
                        help="stamp (c)'s records with their event time: a twelve-day backlog after an outage")
    parser.add_argument("--warm-up", action="store_true",
                        help="(c) and (c*) first process and sweep as many events again, untimed: the timed events "
                             "meet tracked parcels and open issues, which they update and resolve")
    parser.add_argument("--batch", type=int, default=50,
                        help="also measure the framework ceiling with this many events per record (0: skip)")
    args = parser.parse_args(argv)
    # With --warm-up the simulation's second half is timed; (c) and (c*) process its first half first.
    simulated = simulated_events(2 * args.events if args.warm_up else args.events)
    warm_up, records = simulated[: len(simulated) - args.events], simulated[len(simulated) - args.events:]
    n = len(records)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        with TansuBroker(run_dir / "broker") as broker, RedisServer(run_dir / "redis") as redis:
            bench_topic, batched_topic = "bench-events", "bench-batched"
            asyncio.run(_create(broker.bootstrap, [bench_topic, batched_topic, "parcelwatch-orders", "parcelwatch-tracking"]))
            asyncio.run(_produce(broker.bootstrap, [(bench_topic, k, v) for _, k, v in records]))
            if args.batch:
                asyncio.run(_produce_batched(broker.bootstrap, batched_topic, records, args.batch))
            a = asyncio.run(bare_consumer(broker.bootstrap, bench_topic, n))
            b = empty_agent(broker, bench_topic, n)
            b1 = empty_agent(broker, bench_topic, n, table_writes=True)
            b1d = empty_agent(broker, bench_topic, n, table_writes="direct")
            c, c_cpu, c_issues = parcelwatch_workers(
                broker, redis, args.workers, run_dir,
                lambda events: _produce(broker.bootstrap, [(f"parcelwatch-{kind}", k, v) for kind, k, v in events],
                                        arrival=args.arrival),
                records, warm_up)
            if args.batch:
                bb = empty_agent(broker, batched_topic, n, batched=True)
                bb1 = empty_agent(broker, batched_topic, n, table_writes=True, batched=True)
                bb1d = empty_agent(broker, batched_topic, n, table_writes="direct", batched=True)
        if args.batch:
            # (c*): the product on batch records, on a broker and Redis of its own (the worker's topic
            # names are fixed): the same events, grouped per partition as the ingest side sends them.
            batched_dir = run_dir / "batched"
            with TansuBroker(batched_dir / "broker") as broker2, RedisServer(batched_dir / "redis") as redis2:
                asyncio.run(_create(broker2.bootstrap, ["parcelwatch-orders", "parcelwatch-tracking"]))
                bootstrap, size = broker2.bootstrap, args.batch
                cb, cb_cpu, cb_issues = parcelwatch_workers(
                    broker2, redis2, args.workers, batched_dir,
                    lambda events: _produce_partitioned(bootstrap, events, size, arrival=args.arrival),
                    records, warm_up)
    ra, rb, rb1, rb1d, rc = n / a, n / b, n / b1, n / b1d, n / c
    print(f"events: {n} simulated (orders + tracking), {PARTITIONS} partitions, embedded Tansu broker")
    print(f"(a)  bare aiokafka + orjson decode           : {ra:10,.0f} events/s")
    print(f"(b)  empty Faust agent (uvloop)              : {rb:10,.0f} events/s")
    print(f"(b1) Faust agent, one table write per event  : {rb1:10,.0f} events/s   (b1/b = {rb1 / rb:.0%})")
    print(f"(b1d) the same writes, ChangelogWriter       : {rb1d:10,.0f} events/s   (b1d/b = {rb1d / rb:.0%}, b1d/b1 = {rb1d / rb1:.1f}x)")
    print(f"(c)  parcelwatch, {args.workers} worker(s){' (arrival)' if args.arrival else '          '}      : {rc:10,.0f} events/s"
          f"   (worker CPU {c_cpu:.1f} s in {c:.1f} s wall: {c_cpu / c:.0%} of one core; {c_issues:,} issue events; "
          f"{n / c_cpu:,.0f} events per worker CPU-second)")
    print(f"c/b = {rc / rb:.0%}   c/b1 = {rc / rb1:.0%}   c/a = {rc / ra:.1%}   (target c/b >= 60% on one core)")
    if args.batch:
        print(f"records of {args.batch} events (what batching on the ingest side would give the framework):")
        print(f"(b*)  empty Faust agent                      : {n / bb:10,.0f} events/s   ({b / bb:.1f}x b)")
        print(f"(b1*) one table write per event              : {n / bb1:10,.0f} events/s   ({b1 / bb1:.1f}x b1)")
        print(f"(b1d*) the same writes, ChangelogWriter      : {n / bb1d:10,.0f} events/s   ({b1d / bb1d:.1f}x b1d)")
        print(f"(c*)  parcelwatch, {args.workers} worker(s), batch records : {n / cb:10,.0f} events/s   "
              f"(worker CPU {cb_cpu:.1f} s in {cb:.1f} s wall: {cb_cpu / cb:.0%} of one core; {cb_issues:,} issue events; "
              f"{n / cb_cpu:,.0f} events per worker CPU-second; {c / cb:.1f}x c)")
        print(f"c*/b = {rb and (n / cb) / rb:.0%}   c*/b* = {(n / cb) / (n / bb):.0%}   "
              "(b: the same events one to a record, as (c) gets them)")


if __name__ == "__main__":
    main()
