"""Integration harness: a real Tansu broker, a real Redis server and real worker processes, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devtools.process import free_port, stop

ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """``python app.py worker`` as a child process with its own web port and data dir."""

    # Workers started by the current test, so that a timeout can report what each one was doing.
    live: ClassVar[list[Worker]] = []

    def __init__(self, broker_url: str, redis_url: str, run_dir: Path, name: str = "w1", **env: str) -> None:
        self.port = free_port()
        self.run_dir = run_dir
        self.name = name
        self.log_path = run_dir / f"worker-{name}.log"
        self.env = {
            **os.environ,
            "PARCELWATCH_BROKER_URL": broker_url,
            "PARCELWATCH_BROKER_KIND": "embedded",
            "PARCELWATCH_REDIS_URL": redis_url,
            "PARCELWATCH_WEB_PORT": str(self.port),
            "PARCELWATCH_DATA_DIR": str(run_dir / f"data-{name}"),
            "PARCELWATCH_TICK_INTERVAL": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 90) -> Worker:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "worker", "-l", "info"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        Worker.live.append(self)
        if wait:
            try:
                self.wait_healthy(timeout)
            except BaseException:
                self.kill()  # never leave a half-started worker behind a failed test
                raise
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, timeout: float = 5) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as resp:
                body = resp.read()
                ctype = resp.headers.get("content-type", "")
                return resp.status, json.loads(body) if "json" in ctype else body
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                return exc.code, body

    def wait_healthy(self, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, body = self.get("/healthz", timeout=5)
                last = body
                if status == 200:
                    return body  # type: ignore[no-any-return]
            except (OSError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        raise TimeoutError(f"worker not healthy in {timeout} s (last: {last})\n{self.log_tail()}")

    def diagnosis(self) -> str:
        """What this worker was doing: health, input counters, and the end of its log (tables folded)."""
        parts = [f"--- worker {self.name} (pid {self.proc.pid if self.proc else None}, "
                 f"exit {self.proc.poll() if self.proc else None})"]
        try:
            parts.append(f"healthz: {self.get('/healthz', timeout=3)}")
            metrics = self.get("/metrics", timeout=3)[1]
            text = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
            parts += [line for line in text.splitlines()
                      if line.startswith(("parcelwatch_events_consumed_total{", "parcelwatch_redis_",
                                          "parcelwatch_issues_opened_total{", "parcelwatch_consumer_lag", "parcelwatch_deadline_"))
                      and not line.rstrip().endswith(" 0.0")]
        except (OSError, ValueError) as exc:
            parts.append(f"web: {type(exc).__name__}: {exc}")
        lines = [ln for ln in self.log_tail(200_000).splitlines() if ln.strip() and not ln.startswith(("|", "+"))]
        parts += lines[-60:]
        return "\n".join(parts)

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def stop(self) -> None:
        stop(self.proc, timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create ``name`` with ``partitions`` partitions (before a worker would, with the broker's default)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def produce(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]],
            arrived: Iterable[float] | None = None, partitions: Iterable[int] | None = None) -> None:
    """Send (topic, key, value) records and wait until the broker acknowledged all of them.

    ``arrived``: each record's Kafka timestamp (epoch seconds), as if produced then (default: now).
    ``partitions``: each record's partition (default: by its key)."""

    async def _run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            times = iter(arrived) if arrived is not None else None
            parts = iter(partitions) if partitions is not None else None
            futures = [await producer.send(t, value=v, key=k,
                                           timestamp_ms=None if times is None else int(next(times) * 1000),
                                           partition=None if parts is None else next(parts))
                       for t, k, v in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(_run())


def consume_all(bootstrap: str, topic: str, timeout: float = 3.0) -> list[Any]:
    """Every record currently in ``topic`` (all partitions), read from the beginning."""

    async def _run() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[Any] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for msgs in batch.values():
                    out.extend(msgs)
            return out
        finally:
            # aiokafka may cancel its own committed-offsets task while stopping a consumer that
            # never fetched; that is not a failure of the read.
            with contextlib.suppress(asyncio.CancelledError):
                await consumer.stop()

    return asyncio.run(_run())


def all_issues(redis_url: str) -> list[dict[str, Any]]:
    """Every issue document in the Redis queue."""
    import redis

    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter("pw:issue:*", count=1000))
    return [json.loads(v) for v in r.mget(keys) if v is not None] if keys else []


def open_issue_times(redis_url: str) -> dict[str, str]:
    """The open queue in Redis: issue key -> opened_at (what a replay's open issues are compared with)."""
    return {i["issue_key"]: i["opened_at"] for i in all_issues(redis_url) if i["status"] == "open"}


def replayed_open_times(result: Any) -> dict[str, str]:
    """A replay's open issues as ``open_issue_times`` gives the live queue's: issue key -> opened_at."""
    return {i["issue_key"]: i["opened_at"] for i in result.issues.values() if i["resolved_at"] is None}


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    report = "\n".join(w.diagnosis() for w in Worker.live if w.proc is not None and w.proc.poll() is None)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}\n{report}")


def explain_subjects(bootstrap: str, subjects: Iterable[str]) -> str:
    """For a test that timed out waiting for issues: what the changelogs say about each subject (its
    state's partition, milestones, open issues and filing) and which index buckets hold it."""
    from delivery.batch_records import decode_batch, is_batch
    from domain.state import ParcelState

    latest: dict[str, tuple[int, int, bytes | None]] = {}
    for m in consume_all(bootstrap, "parcelwatch-parcel-state-changelog"):
        latest[m.key.decode()] = (m.partition, m.offset, m.value)
    buckets: dict[str, bytes] = {}
    for m in consume_all(bootstrap, "parcelwatch-deadline-index-changelog"):
        buckets[m.key.decode()] = m.value or b""
    facts: dict[str, list[tuple[int, int]]] = {}
    for m in consume_all(bootstrap, "parcelwatch-order-facts"):
        if m.key is not None:
            facts.setdefault(m.key.decode(), []).append((m.partition, m.offset))
        elif is_batch(m.value):  # the router's batch records carry no key: each element names its subject
            for doc in decode_batch(m.value):
                if isinstance(doc, dict) and "subject" in doc:
                    facts.setdefault(str(doc["subject"]), []).append((m.partition, m.offset))
    lines = [f"index cursors: { {k: v.decode() for k, v in buckets.items() if k.endswith(':cursor')} }"]
    for subject in sorted(subjects):
        partition, offset, raw = latest.get(subject, (None, None, None))
        if raw is None:
            lines.append(f"{subject}: no state in the changelog; order-facts records (partition, offset) "
                         f"for it: {facts.get(subject, [])}")
            continue
        s = ParcelState.decode(raw)
        held_in = [k for k, v in buckets.items() if not k.endswith(":cursor") and subject.encode() in v.split(b"\n")]
        lines.append(
            f"{subject}: partition {partition} offset {offset}, shipped {s.shipped_at}, exception {s.exception_at}, "
            f"open {sorted(s.open_issues)}, next check {s.next_check_at}, filed {s.indexed_bucket} "
            f"(epoch {s.index_epoch}), in index keys {held_in}")
    return "\n".join(lines)



# -- faults against a replay: input flowing, workers killed, the whole queue compared ---------------------

SIMULATED_TOPICS = {"orders": "parcelwatch-orders", "tracking": "parcelwatch-tracking"}


def simulated_traffic(seed: int, parcels: int, end: float, span_days: float) -> list[Any]:
    """``parcels`` simulated parcels' events (``devtools.simulator``: (kind, key, event)) in event-time order,
    the first paid ``span_days`` before ``end``, none later than ``end``."""
    from devtools.simulator import Simulator

    sim = Simulator(seed=seed, start_time=end - span_days * 86400, mean_gap_seconds=span_days * 86400 / parcels)
    return list(sim.events(parcels, until=end))


class SteadyProducer:
    """Produces simulated events at a steady rate from a thread of its own while the test does other things.

    Each record's Kafka timestamp is its event's time, as if it had arrived then: the worker judges them with
    its catch-up clock (``core/clock.py``), the way it judges any backlog, so the queue it builds can be held
    equal to an event-time replay of the same events. ``batch`` > 1 sends batch records (up to ``batch``
    events of one partition a record, ``delivery/batch_records.py``), else one keyed record per event. A
    send that fails (the broker away) is retried with a new client: at least once, as a real producer."""

    STEP_SECONDS = 0.1

    def __init__(self, bootstrap: str, records: list[Any], rate: float, batch: int = 1, partitions: int = 4) -> None:
        import threading

        self.bootstrap = bootstrap
        self.records = records
        self.rate = rate
        self.batch = batch
        self.partitions = partitions
        self.sent = 0  # events the broker acknowledged, in order
        self.until = len(records)  # produce up to here (``hold_at``)
        self._reconnect = False
        self.retries = 0
        self._go = threading.Event()
        self._go.set()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="steady-producer", daemon=True)

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self.until = len(self.records)
        self._go.set()

    def hold_at(self, index: int) -> None:
        """Produce up to ``records[index]`` (excluded) and wait there for ``resume``."""
        self.until = index

    def reconnect(self) -> None:
        """Send the next records through a new client: after the embedded broker restarted, a client that kept
        the old lifetime's metadata writes into partitions the broker does not have, and Tansu 0.6.0 takes
        such records and then loses some of them among later ones (``delivery/tansu.py``, difference 6)."""
        self._reconnect = True

    @property
    def done(self) -> bool:
        return self.sent >= len(self.records)

    def close(self, timeout: float = 30) -> None:
        self._closing.set()
        self._go.set()
        self._thread.join(timeout)

    def _encode(self, chunk: list[Any]) -> list[tuple[str, bytes | None, bytes, int | None, int]]:
        """(topic, key, value, partition, timestamp ms) of the records that carry ``chunk``."""
        from delivery.batch_records import encode_batches, partition_for

        if self.batch <= 1:
            return [(SIMULATED_TOPICS[kind], key, event.to_json(), None, int(event.event_time * 1000))
                    for kind, key, event in chunk]
        groups: dict[tuple[str, int], list[Any]] = {}
        for kind, key, event in chunk:
            groups.setdefault((SIMULATED_TOPICS[kind], partition_for(key, self.partitions)), []).append(event)
        out: list[tuple[str, bytes | None, bytes, int | None, int]] = []
        for (topic, partition), events in groups.items():
            for i in range(0, len(events), self.batch):
                part = events[i : i + self.batch]
                [record] = encode_batches([e.to_json() for e in part], max_events=self.batch)
                out.append((topic, None, record, partition, int(max(e.event_time for e in part) * 1000)))
        return out

    async def _run(self) -> None:
        producer: AIOKafkaProducer | None = None
        allowed = 0.0
        try:
            while self.sent < len(self.records) and not self._closing.is_set():
                if not self._go.is_set():
                    await asyncio.sleep(0.05)
                    continue
                await asyncio.sleep(self.STEP_SECONDS)
                if self.sent >= self.until:
                    allowed = float(self.sent)  # (held: the rate starts again from here)
                    continue
                allowed += self.rate * self.STEP_SECONDS
                n = min(int(allowed), self.until) - self.sent
                if n <= 0:
                    continue
                chunk = self.records[self.sent : self.sent + n]
                if self._reconnect and producer is not None:
                    self._reconnect = False
                    await producer.stop()
                    producer = None
                try:
                    if producer is None:
                        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, request_timeout_ms=10_000)
                        await producer.start()
                    futures = [await producer.send(topic, value=value, key=key, partition=partition, timestamp_ms=ts)
                               for topic, key, value, partition, ts in self._encode(chunk)]
                    await asyncio.gather(*futures)
                    self.sent += len(chunk)
                except Exception:  # noqa: BLE001 - the broker away: a new client, the same events again
                    self.retries += 1
                    allowed = float(self.sent)
                    if producer is not None:
                        with contextlib.suppress(Exception):
                            await producer.stop()
                    producer = None
                    await asyncio.sleep(0.5)
        finally:
            if producer is not None:
                await producer.stop()


Outcome = dict[str, tuple[str, str, str | None]]


def queue_outcome(redis_url: str) -> Outcome:
    """The whole Redis queue: issue key -> (status, opened_at, resolved_at)."""
    return {i["issue_key"]: (i["status"], i["opened_at"], i.get("resolved_at")) for i in all_issues(redis_url)}


def jsonl_line(kind: str, key: bytes, event: Any) -> bytes:
    """One event as ``devtools.simulator.write_jsonl`` writes it (what ``app.py replay`` reads)."""
    return b'{"topic":"' + kind.encode() + b'","key":' + json.dumps(key.decode()).encode() + b',"value":' + event.to_json() + b"}"


def replayed_outcome(records: list[Any], until: float, settings: Any) -> Outcome:
    """What ``app.py replay --until`` gives for the same events, as ``queue_outcome`` shows the queue: each
    issue's latest open period, open or auto-resolved."""
    from core.replay import replay

    lines = [jsonl_line(kind, key, event) for kind, key, event in records]
    result = replay(settings, lines, until=until)
    out: Outcome = {}
    for issue in sorted(result.issues.values(), key=lambda i: i["opened_at"]):
        status = "open" if issue["resolved_at"] is None else "auto_resolved"
        out[issue["issue_key"]] = (status, issue["opened_at"], issue["resolved_at"])
    return out


def replayed_deliveries(records: list[Any], until: float, settings: Any) -> set[tuple[str, float]]:
    """The deliveries (parcel, signature time) a replay of the same events reports to the lane baselines."""
    from core.processor import Output
    from core.replay import Engine, play, read_events
    from domain.events import InvalidEvent

    delivered: set[tuple[str, float]] = set()

    class Recording(Engine):
        def _collect(self, out: Output) -> None:
            delivered.update((d["parcel"], d["signed_at"]) for d in out.deliveries)
            super()._collect(out)

    lines = [jsonl_line(kind, key, event) for kind, key, event in records]
    events = [ev for _, ev in read_events(lines) if not isinstance(ev, InvalidEvent)]
    play(Recording(settings), events, until)
    return delivered


def sent_deliveries(bootstrap: str, topic: str) -> list[tuple[str, float]]:
    """Every delivery (parcel, signature time) on the deliveries topic, copies included."""
    from delivery.batch_records import record_events

    return [(d["parcel"], d["signed_at"]) for m in consume_all(bootstrap, topic) for d in record_events(m.value)]


@dataclass
class Comparison:
    """The queue against the replay: issues only in the replay (lost), only in the queue (extra), in both
    with another status or time (wrong)."""

    live: int
    replayed: int
    lost: list[str]
    extra: list[str]
    extra_open: int
    wrong: list[str]

    @property
    def equal(self) -> bool:
        return not (self.lost or self.extra or self.wrong)

    def describe(self, limit: int = 12) -> str:
        parts = [f"queue {self.live} / replay {self.replayed}: lost {len(self.lost)}, extra {len(self.extra)} "
                 f"({self.extra_open} still open), wrong state {len(self.wrong)}"]
        parts += [f"  lost   {x}" for x in self.lost[:limit]]
        parts += [f"  extra  {x}" for x in self.extra[:limit]]
        parts += [f"  wrong  {x}" for x in self.wrong[:limit]]
        return "\n".join(parts)


def compare_outcomes(live: Outcome, replayed: Outcome) -> Comparison:
    lost = sorted(f"{k} {replayed[k]}" for k in replayed.keys() - live.keys())
    extra = sorted(f"{k} {live[k]}" for k in live.keys() - replayed.keys())
    extra_open = sum(1 for k in live.keys() - replayed.keys() if live[k][0] == "open")
    wrong = sorted(f"{k} queue {live[k]} replay {replayed[k]}" for k in live.keys() & replayed.keys()
                   if live[k] != replayed[k])
    return Comparison(len(live), len(replayed), lost, extra, extra_open, wrong)


def _subjects(records: list[Any]) -> set[str]:
    """The subjects (parcels, and orders for ship_overdue) simulated events are about."""
    from domain.state import ORDER_SUBJECT_PREFIX

    out: set[str] = set()
    for kind, key, event in records:
        if kind == "tracking":
            out.add(key.decode())
        else:
            out.add(ORDER_SUBJECT_PREFIX + event.order_id)
            if event.carrier and event.tracking_number:
                out.add(f"{event.carrier}:{event.tracking_number}")
    return out


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


class FaultRun:
    """One run of the fault harness: a broker and a Redis (with its append-only file) of its own, workers,
    simulated input produced steadily, faults at seeded random moments meanwhile, and at the end the whole
    queue compared with a replay of the same events (``tests/test_fault_replay.py``, ``bench/soak.py``)."""

    def __init__(self, run_dir: Path, *, seed: int, parcels: int, rate: float, batch: int = 1, workers: int = 1,
                 span_days: float = 6.0, broker_lifetimes: int = 1, store: str = "memory://",
                 producer_request_timeout: float | None = None) -> None:
        """``broker_lifetimes`` 2: a second traffic (other parcels) follows the first, and ``broker_restart``
        restarts the memory-only broker between them (what was produced before goes with it). ``store``: the
        workers' table store (``rocksdb://`` keeps the tables in files across their restarts).
        ``producer_request_timeout``: the workers' ``app.producer_request_timeout_seconds`` (``broker_freeze``)."""
        import random

        import config
        from devtools.broker import TansuBroker
        from devtools.redis_server import RedisServer

        self.run_dir = run_dir
        self.rng = random.Random(seed)
        # Learned lane baselines reach a live worker asynchronously (through the deliveries topic) and a replay at
        # once: pinned to the fallback SLAs, the transit deadlines differ for no reason the faults are about.
        overrides = run_dir / "config.yaml"
        run_dir.mkdir(parents=True, exist_ok=True)
        overrides.write_text("lanes:\n  refresh_minutes: 1000000000\n"  # (the refresh in force: before any delivery)
                             + (f"app:\n  producer_request_timeout_seconds: {producer_request_timeout}\n"
                                if producer_request_timeout is not None else ""))
        self.settings = config.load(overrides, env={})
        self.broker = TansuBroker(run_dir / "broker")
        self.redis = RedisServer(run_dir / "redis", appendonly=True)
        end = time.time() - 600
        self.records = simulated_traffic(seed, parcels, end, span_days)
        # The first lifetime's events (all of them while the broker keeps one lifetime).
        self.first_lifetime = len(self.records)
        if broker_lifetimes == 2:
            self.records += simulated_traffic(seed + 1000, parcels, end, span_days)
        self.restarted_broker = False
        self.unhealthy_answers: list[str] = []  # /healthz answers 200 from the old lifetime after a broker restart
        self.rate = rate
        self.batch = batch
        self.worker_count = workers
        self.workers: list[Worker] = []
        self.producer: SteadyProducer | None = None
        self.env = {"PARCELWATCH_CONFIG": str(overrides), "PARCELWATCH_STORE": store}
        self.faults: dict[str, int] = {}
        self.exit_codes: list[int] = []  # of the workers that exited by themselves (``broker_freeze``)
        self.log: list[str] = []
        self.started = time.monotonic()

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.1f}s {what}")

    def __enter__(self) -> FaultRun:
        self.broker.start()
        self.redis.start()
        self.workers = [Worker(self.broker.url, self.redis.url, self.run_dir, name=f"w{i + 1}", **self.env)
                        for i in range(self.worker_count)]
        for worker in self.workers:
            worker.start()
        self.producer = SteadyProducer(self.broker.bootstrap, self.records, self.rate, self.batch,
                                       self.settings.app.partitions)
        self.producer.hold_at(self.first_lifetime)
        self.producer.start()
        self.note(f"producing {len(self.records)} events at {self.rate:g}/s"
                  + (f" in batch records of up to {self.batch}" if self.batch > 1 else " one record per event"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.producer is not None:
            self.producer.close()
        for worker in self.workers:
            worker.stop()
        self.redis.stop()
        self.broker.stop()

    # -- faults ------------------------------------------------------------------------------------------------

    def _count(self, fault: str) -> None:
        self.faults[fault] = self.faults.get(fault, 0) + 1

    def pause(self, low: float, high: float) -> None:
        time.sleep(self.rng.uniform(low, high))

    def kill(self, after: tuple[float, float] = (1.0, 6.0), down: tuple[float, float] = (0.2, 3.0)) -> None:
        """``kill -9`` one worker at a random moment ``after`` it is up (working, with state to lose), and
        start it again after ``down``."""
        worker = self.rng.choice(self.workers)
        worker.wait_healthy(120)
        self.pause(*after)
        self._take_down(worker, "kill -9", worker.kill, down)

    def graceful_stop(self, down: tuple[float, float] = (3.0, 12.0)) -> None:
        worker = self.rng.choice(self.workers)
        worker.wait_healthy()  # (a stop while it starts is a kill in all but name)
        self._take_down(worker, "graceful stop", worker.stop, down)

    def _take_down(self, worker: Worker, fault: str, stop: Any, down: tuple[float, float]) -> None:
        stop()
        self._count(fault)
        seconds = self.rng.uniform(*down)
        self.note(f"{fault} {worker.name}, down {seconds:.1f} s")
        time.sleep(seconds)
        worker.start(wait=False)

    def redis_outage(self, seconds: tuple[float, float] = (3.0, 12.0)) -> None:
        from devtools.redis_server import RedisServer

        for worker in self.workers:  # (an outage while the workers work)
            worker.wait_healthy(120)
        self.pause(1, 4)
        self.redis.stop()
        self._count("Redis outage")
        down = self.rng.uniform(*seconds)
        self.note(f"Redis down {down:.1f} s")
        time.sleep(down)
        self.redis = RedisServer(self.redis.run_dir, port=self.redis.port, appendonly=True).start()

    def broker_freeze(self, frozen: tuple[float, float] = (12.0, 16.0), exit_within: float = 90.0) -> None:
        """Stop the broker's process (SIGSTOP) while the workers work, for longer than their producer request
        timeout, then let it go on. A record sent meanwhile may fail (aiokafka expires a batch whose request
        timed out) or go out once the connection is back. A worker with a failed send must exit by itself
        (non-zero) rather than carry on unable to commit; it is started again, as its supervisor would, once it
        has. A worker whose sends all went out must be healthy again."""
        import signal

        assert self.broker.proc is not None
        for worker in self.workers:
            worker.wait_healthy(120)
        self.pause(1, 4)
        # At once after a worker processed a record: its writes (changelog, issue events) are still to go out.
        watched = self.rng.choice(self.workers)

        def consumed() -> float:
            return _metric(watched.get("/metrics", timeout=2)[1].decode(), "parcelwatch_events_consumed_total{")

        before = consumed()
        wait_for(lambda: consumed() > before, 60, f"{watched.name} to process a record", interval=0.02)
        os.kill(self.broker.proc.pid, signal.SIGSTOP)
        self._count("broker frozen")
        seconds = self.rng.uniform(*frozen)
        self.note(f"broker frozen {seconds:.1f} s")
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.broker.proc.pid, signal.SIGCONT)
        thawed = time.monotonic()
        waiting = list(self.workers)
        while waiting:
            for worker in list(waiting):
                assert worker.proc is not None
                code = worker.proc.poll()
                if code is not None:
                    waiting.remove(worker)
                    self.exit_codes.append(code)
                    self.note(f"{worker.name} exited with {code}; started again")
                    worker.start(wait=False)
                elif time.monotonic() - thawed > 15:  # (commits every few seconds: a failed send has stopped it)
                    with contextlib.suppress(OSError):
                        if worker.get("/healthz", timeout=2)[0] == 200:
                            waiting.remove(worker)
                            self.note(f"{worker.name} carried on")
            assert time.monotonic() - thawed < exit_within, (
                f"{', '.join(w.name for w in waiting)} neither exited nor healthy {exit_within:.0f} s after the broker "
                f"went on:\n" + "\n".join(w.log_tail() for w in waiting))
            time.sleep(0.5)

    def broker_restart(self, down: tuple[float, float] = (2.0, 6.0)) -> None:
        """Once the first traffic is produced, restart the memory-only broker: it comes back empty (a new
        lifetime), and the second traffic goes to it. Meanwhile ``/healthz`` is asked every 0.2 s: no worker
        may answer 200 from the old lifetime once the broker is back."""
        from devtools.broker import TansuBroker

        assert self.producer is not None and self.first_lifetime < len(self.records)
        wait_for(lambda: self.producer is not None and self.producer.sent >= self.first_lifetime, 120,
                 "the first traffic to be produced")
        self.pause(3, 8)  # (some of it processed, some still waiting: both go with the broker)
        before = {w.name: w.get("/healthz")[1]["checks"]["lifetime"]["started_in"] for w in self.workers}
        pids = {w.name: w.proc.pid if w.proc else None for w in self.workers}
        self.broker.stop()
        self._count("broker restart (empty)")
        seconds = self.rng.uniform(*down)
        self.note(f"broker down {seconds:.1f} s, back empty")
        time.sleep(seconds)
        self.broker = TansuBroker(self.broker.run_dir, port=self.broker.port).start()
        self.restarted_broker = True
        self.producer.reconnect()
        self.producer.resume()
        deadline = time.monotonic() + 120
        recovered: set[str] = set()
        while len(recovered) < len(self.workers) and time.monotonic() < deadline:
            for worker in self.workers:
                try:
                    status, body = worker.get("/healthz", timeout=2)
                except OSError:
                    continue  # (restarting in place: the web server is not up yet)
                started_in = body.get("checks", {}).get("lifetime", {}).get("started_in") if isinstance(body, dict) else None
                if status == 200 and started_in == before[worker.name]:
                    self.unhealthy_answers.append(f"{worker.name}: 200 from the old lifetime {started_in}")
                if status == 200 and started_in != before[worker.name]:
                    recovered.add(worker.name)
            time.sleep(0.2)
        for worker in self.workers:
            assert worker.proc is not None and worker.proc.pid == pids[worker.name] and worker.proc.poll() is None, (
                f"{worker.name} exited instead of starting again in place:\n{worker.log_tail()}")
        self.note(f"every worker in the new lifetime ({', '.join(sorted(recovered))})")

    # -- the outcome -------------------------------------------------------------------------------------------

    def settled(self) -> bool:
        """Every event produced and consumed, every worker up, no partition catching up or lagging."""
        if self.producer is None or not self.producer.done:
            return False
        for worker in self.workers:
            status, health = worker.get("/healthz")
            if status != 200:
                return False
            streams = health["checks"]["streams"]
            if streams["no_clock"] or streams["catching_up"]:  # (sweeps not running, or held behind)
                return False
            text = worker.get("/metrics")[1].decode()
            if _metric(text, "parcelwatch_partitions_catching_up ") or _metric(text, "parcelwatch_consumer_lag_messages{"):
                return False
        return True

    def finish(self, timeout: float = 180) -> Comparison:
        """Wait for the input to be produced and worked through, then compare the queue with the replay until it
        is equal or ``timeout`` passes (a deadline between the worker's last sweep and the replay's end appears
        in one before the other for a tick)."""
        for worker in self.workers:
            worker.wait_healthy(120)
        wait_for(self.settled, timeout, "the workers to work through every event and catch up", interval=1.0)
        self.note("settled")
        # After a broker restart the queue holds both lifetimes: the second one's parcels must be what a replay of
        # their events gives; the first one's may no longer be active (``first_lifetime_active``).
        records = self.records[self.first_lifetime:] if self.restarted_broker else self.records
        gone = _subjects(self.records[: self.first_lifetime]) if self.restarted_broker else set()
        deadline = time.monotonic() + 30
        while True:
            live = {k: v for k, v in queue_outcome(self.redis.url).items() if k.split("|")[0] not in gone}
            comparison = compare_outcomes(live, replayed_outcome(records, time.time(), self.settings))
            if comparison.equal or time.monotonic() > deadline:
                self.note(comparison.describe(0))
                return comparison
            time.sleep(1.5)

    def lost_deliveries(self) -> list[tuple[str, float]]:
        """The deliveries a replay of the same events reports that never reached the deliveries topic (what the
        lane baselines learn from; a copy sent again after a crash is read once, ``delivery/redelivery.py``)."""
        records = self.records[self.first_lifetime:] if self.restarted_broker else self.records
        sent = set(sent_deliveries(self.broker.bootstrap, self.settings.topics.deliveries))
        return sorted(replayed_deliveries(records, time.time(), self.settings) - sent)

    def dead_letters(self) -> list[str]:
        """Each dead letter's reason and where its record came from (the simulated traffic holds no bad event)."""
        return [f"{dict(m.headers).get('pw-reason', b'').decode()} ({dict(m.headers).get('pw-source-topic', b'').decode()})"
                for m in consume_all(self.broker.bootstrap, self.settings.topics.dead_letter)]

    def first_lifetime_active(self) -> list[str]:
        """Issues of the first broker lifetime's parcels still open or acknowledged: their state is gone, no
        event can end them, so none may be left active."""
        gone = _subjects(self.records[: self.first_lifetime])
        return sorted(f"{i['issue_key']} {i['status']}" for i in all_issues(self.redis.url)
                      if i["subject"] in gone and i["status"] in ("open", "acknowledged"))

    def diagnostics(self, log_lines: int = 30) -> str:
        """For a failed comparison, while the workers still run: each one's deadline index per partition and its
        stream checks (``/healthz``), and the last lines of its log above DEBUG (the run's directory is gone by
        the time anyone looks)."""
        out: list[str] = []
        for worker in self.workers:
            try:
                _, health = worker.get("/healthz")
            except OSError as exc:
                health = f"/healthz unanswered: {exc}"
            if isinstance(health, dict):
                health = {"deadline_index": health.get("deadline_index"), "streams": health.get("checks", {}).get("streams")}
            log = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
            lines = [line for line in log.splitlines() if "[DEBUG]" not in line]
            out.append(f"-- {worker.name}: {json.dumps(health, default=str)[:3000]}")
            out.extend(line[:300] for line in lines[-log_lines:])
        return "\n".join(out)

    def report(self) -> str:
        faults = ", ".join(f"{n} {what}" for what, n in self.faults.items()) or "none"
        return f"faults: {faults}\n" + "\n".join(self.log)
