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
from pathlib import Path
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

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

