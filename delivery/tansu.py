"""Workarounds for measured differences of the embedded Tansu broker (0.6.0). Active ONLY when
``app.broker_kind`` is ``embedded``; against Apache Kafka none of this runs.

1. ListOffsets(LATEST) answers the base offset of the newest record batch + 1, not the true end offset
   (Fetch responses carry the right high watermark). Faust ends table recovery at that figure, so after
   a restart the newest table updates would be missing (memory store) or the worker would die with
   ``ConsistencyError`` (RocksDB). ``patch_highwaters`` makes Faust's consumer ask with a one-record
   fetch at the reported end, which reveals the true high watermark.
2. Rebalances wait for half the session timeout: the embedded config uses a short
   ``broker_session_timeout`` (config ``app.session_timeout_seconds``, 10 s) — see ``app_settings``.
3. No idempotent or transactional producer with aiokafka: processing is at-least-once, so every sink
   is idempotent (issue_store's Lua script, deterministic issue events).
4. A fetch waiting on several partitions is not answered when a record arrives for one of them: it
   waits about 0.55 s whatever its ``fetch_max_wait_ms`` above that (measured, 12 partitions: 553 ms
   from send to receipt with 1500 ms, 2-6 ms with 100 ms; one partition alone: 2 ms). Faust asks 1500
   ms, so every hop between agents (order router -> parcel agent, parcel agent -> issue sink -> alert
   routing) added about half a second once the consumer had caught up. ``patch_fetch_wait`` makes
   Faust's consumer ask ``FETCH_MAX_WAIT_MS`` instead: an idle worker then fetches ten times a second.
5. Memory-only storage, no compaction or retention: a broker restart wipes every topic, so the
   worker's local table data built against the old broker must be discarded —
   ``discard_stale_tables`` compares a broker incarnation id kept in a marker topic with the one
   recorded in the worker's data dir. A worker already running when the broker goes away or comes back
   empty starts again in place (``LifetimeWatch``): the same process image run afresh, which waits for the
   broker, discards its local tables, re-creates the topics and goes on (its in-memory tables, offsets and
   producer state all belong to the lifetime that is gone).
6. A record sent to a partition of a topic the broker does not have is written anyway (a client with the
   previous lifetime's metadata); when the topic is created, the partition's first writes fail with
   ``UnknownError`` until its offsets pass those records. Hence the restart as soon as the broker is gone
   (the worker's own clients never write into the new lifetime blind), and ticks whose failed sends stop
   no commit (``Checkpoint.best_effort``). Producers of the input topics retry such failures themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from mode import Service

from delivery.clients import stop_consumer

log = logging.getLogger(__name__)

INCARNATION_TOPIC = "__parcelwatch-broker-incarnation"
_patched = False


async def true_highwaters(bootstrap: str, reported: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The real end offsets: fetch one record at each reported end - 1 and read the fetch's high watermark."""
    result = dict(reported)
    probe = [tp for tp, end in reported.items() if end is not None and end > 0]
    if not probe:
        return result
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        consumer.assign(probe)
        for tp in probe:
            consumer.seek(tp, reported[tp] - 1)
        pending = set(probe)
        for _ in range(20):
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None:
                    result[tp] = max(hw, reported[tp])
                    pending.discard(tp)
            if not pending:
                break
        if pending:
            log.warning("could not confirm the high watermark of %s; using the broker's ListOffsets figure", pending)
    finally:
        await stop_consumer(consumer)
    return result


FETCH_MAX_WAIT_MS = 100
_fetch_wait_patched = False


def patch_fetch_wait(max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make Faust's consumer long-poll ``max_wait_ms`` instead of its fixed 1500 ms (idempotent)."""
    global _fetch_wait_patched
    if _fetch_wait_patched:
        return
    from faust.transport.drivers import aiokafka as faust_aiokafka

    original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # read when its fetcher is made, at start()
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _fetch_wait_patched = True


def patch_highwaters(bootstrap: str) -> None:
    """Make Faust's consumer thread use ``true_highwaters`` (idempotent)."""
    global _patched
    if _patched:
        return
    from faust.transport.drivers import aiokafka as faust_aiokafka

    original = faust_aiokafka.AIOKafkaConsumerThread._highwaters

    async def _highwaters(self: Any, partitions: Iterable[TopicPartition]) -> Mapping[TopicPartition, int]:
        reported = await original(self, list(partitions))
        return await true_highwaters(bootstrap, reported)

    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
    _patched = True


async def broker_incarnation(bootstrap: str) -> str:
    """The id of this broker's lifetime: read from a marker topic, written there if the topic is new."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        try:
            await admin.create_topics([NewTopic(INCARNATION_TOPIC, 1, 1)])
        except Exception as exc:  # noqa: BLE001 - already exists is the normal case
            log.debug("incarnation topic: %s", exc)
    finally:
        await admin.close()
    current = await read_incarnation(bootstrap)
    if current:
        return current
    new_id = uuid.uuid4().hex
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(INCARNATION_TOPIC, new_id.encode(), partition=0)
    finally:
        await producer.stop()
    # Two workers may race to write; the first record is the one everybody reads.
    return await broker_incarnation(bootstrap)


def discard_stale_tables(bootstrap: str, data_dir: Path) -> bool:
    """Wipe ``data_dir`` if it was built against another broker lifetime. Returns True if it wiped."""
    return discard_stale_tables_of(asyncio.run(broker_incarnation(bootstrap)), data_dir)


def discard_stale_tables_of(incarnation: str, data_dir: Path) -> bool:
    """``discard_stale_tables`` for a broker lifetime already read."""
    marker = data_dir / "broker-incarnation"
    wiped = False
    if data_dir.exists() and (not marker.exists() or marker.read_text().strip() != incarnation):
        log.warning("broker %s is a new lifetime: discarding local table data in %s", incarnation, data_dir)
        shutil.rmtree(data_dir)
        wiped = True
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(incarnation)
    return wiped


class _QuietMarkerReads(logging.Filter):
    """aiokafka logs each assignment of a consumer at INFO: the marker is read every few seconds."""

    def filter(self, record: logging.LogRecord) -> bool:
        return INCARNATION_TOPIC not in record.getMessage()


logging.getLogger("aiokafka.consumer.subscription_state").addFilter(_QuietMarkerReads())


async def read_incarnation(bootstrap: str) -> str | None:
    """The broker lifetime's id as its marker topic holds it, without creating anything: None when the topic
    is gone (the broker came back empty), "" while it exists but holds no id yet (a worker writing it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000)
    await consumer.start()
    try:
        if not consumer.partitions_for_topic(INCARNATION_TOPIC):  # (the start's metadata names every topic)
            return None
        tp = TopicPartition(INCARNATION_TOPIC, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        for msgs in records.values():
            for msg in msgs:
                return bytes(msg.value or b"").decode()
        return ""
    finally:
        await stop_consumer(consumer)


class LifetimeWatch(Service):
    """Starts this worker again in place when the embedded broker goes away or comes back empty.

    Tansu 0.6.0 takes a record sent to a partition of a topic it does not have (a client that still has the
    old lifetime's metadata) and writes it; when the topic is then created, the partition's first writes
    collide with those records and fail (``UnknownError``) until its offsets pass them. A worker that lives
    on through the broker's restart sends exactly such records (its timers, its retried batches) and then
    fails on its own partitions. So a broker that refuses connections (the process is gone: memory-only, it
    will come back empty) restarts the worker at once, before the broker is back; the new process waits for
    it. A restart too quick to be seen is caught by the marker: read every ``check_every`` seconds and on
    every partition assignment (a restarted broker has lost the group, so the partitions are assigned again
    before any record of the new lifetime is processed). ``lifetime()`` gives the id this process started
    with (None: unknown, nothing is watched); ``lost`` says why it restarts (``/healthz`` shows it)."""

    def __init__(self, bootstrap: str, lifetime: Callable[[], str | None], probe_every: float = 1.0,
                 check_every: float = 3.0, restart: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.lifetime = lifetime
        self.probe_every = probe_every
        self.check_every = check_every
        self.restart_worker = restart or restart_in_place
        self.lost: str | None = None

    @Service.task
    async def _watch(self) -> None:
        since_check = 0.0
        while not self.should_stop and self.lost is None:
            await self.sleep(self.probe_every)
            if self.lifetime() is None:
                continue
            if await broker_refuses(self.bootstrap):
                self._restart("the broker refuses connections: it is gone, and comes back empty")
                return
            since_check += self.probe_every
            if since_check >= self.check_every:
                since_check = 0.0
                await self.check()

    async def check(self) -> bool:
        """True (and the restart begun) when the broker is another lifetime than the one this worker started in."""
        started_in = self.lifetime()
        if started_in is None or self.lost is not None:
            return self.lost is not None
        try:
            current = await read_incarnation(self.bootstrap)
        except Exception as exc:  # noqa: BLE001 - the broker away: the probe decides
            log.debug("broker lifetime not readable: %s", exc)
            return False
        if current is not None and current in ("", started_in):
            return False
        self._restart(f"the broker came back empty (a new lifetime: {current or 'no marker'}, this worker started "
                      f"in {started_in})")
        return True

    def _restart(self, why: str) -> None:
        self.lost = f"{why}: restarting in place, local tables discarded"
        log.error("%s", self.lost)
        self.restart_worker()


async def broker_refuses(bootstrap: str) -> bool:
    """Whether nothing listens at ``bootstrap`` (the broker's process is gone; a slow answer is not that)."""
    host, _, port = bootstrap.rpartition(":")
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    return False


# Set in the environment of a worker restarted in place: its start-up waits for the broker as long as it takes.
RESTARTED_IN_PLACE = "PARCELWATCH_RESTARTED_IN_PLACE"


def restart_in_place() -> None:
    """Run this worker's command again in this process (``exec``): the start-up path then discards the local
    tables of the old lifetime, re-creates the topics and rejoins the group. Nothing of the old lifetime is
    worth flushing (its topics are gone)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, RESTARTED_IN_PLACE: "1"})
