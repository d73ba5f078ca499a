"""Ingest's tracking updates, many to a Kafka record: one batch record per partition every few milliseconds.

Why: the parcel agent pays Faust's 150-250 us per consumed record whatever the record carries
(``bench.ceiling`` (b) against (b*)), and an ingest push sent one record per scan. ``RecordBatcher``
collects the scans of every concurrent push of the worker, groups them by the partition their parcel key
hashes to (``batching.partition_for``, the producer's default partitioner) and sends one batch record (a
JSON array, ``batching.encode_batches``) per partition per flush (more only when a partition fills a
record); the parcel agent processes each element as if it had come alone (``bench.ingest_load`` prints
how many records the scans took; pushes/s is bound by the HTTP path).

How, and what it keeps:

- **Acknowledged before success.** ``send`` returns only once the broker acknowledged every record that
  carries the caller's items, and raises that record's error otherwise (the endpoint answers 503 and the
  source retries). Nothing is reported sent that was not.
- **When.** A partition's items go when the linger (default the app's ``producer_linger_ms``, 5 ms)
  elapses after the first pending item, or at once when the partition has ``MAX_BATCH_EVENTS`` items or
  about ``MAX_BATCH_BYTES`` (the chunk is cut by the rule ``encode_batches`` applies, so a chunk is one
  record).
- **Order.** One partition's items are sent in the order ``send`` was called with them: chunks are taken
  FIFO and handed to the producer by one flush at a time (a lock); only the wait for the acknowledgement
  runs outside it, so flushes still pipeline (aiokafka keeps one produce request in flight per
  partition, so the order holds on the wire too).
- **Failures are confined.** A chunk's record that cannot be sent fails the callers with items in that
  chunk, and no one else; later chunks, of that partition too, are still sent (a retried scan may then
  arrive after a newer one of its parcel: the parcel state's merges do not depend on order).
- **Cancellation.** Flushes run in the batcher's own tasks, and callers wait through ``asyncio.wait``,
  which never cancels what it waits for: a push whose client went away cancels its own wait, not the
  record that also carries other pushes' scans. If a flush task itself is cancelled (the worker stops),
  the chunks it had not completely handed to the producer fail their callers with ``FlushCancelled``
  (503); items that were not its to send stay pending for the next flush.
- **A lone item travels in the old format**: a chunk of one item is sent as a plain record keyed by its
  parcel key, byte-identical to a record produced before batching (a quiet worker's traffic looks as it
  always did, and its key is the parcel's, e.g. for a dead letter). A batch record has no key (None):
  no single key describes it; its explicit ``partition`` places it, and the parcel agent ignores its key.
  Both are sent with an explicit partition, so a parcel's records land on one partition however they
  travel.

The send function is injected (``SendRecord``): the ingest endpoints pass ``tracking_topic.send``, tests a
fake. The batcher needs a running event loop only when ``send`` is called.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from delivery.batch_records import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, encode_batches, partition_for, record_is_full

log = logging.getLogger("parcelwatch.record_batcher")

# (partition, key or None, value) -> once the record is handed to the producer, an awaitable of the
# broker's acknowledgement (like ``faust.Topic.send``, which returns the aiokafka future).
SendRecord = Callable[[int, str | None, bytes], Awaitable[Awaitable[object]]]


class FlushCancelled(RuntimeError):
    """The flush carrying these items was cancelled before it handed them to the producer (the worker is
    stopping): nothing was acknowledged, the caller must report failure so the source retries."""


@dataclass(eq=False)
class _Chunk:
    """Items of one partition that go in one record (at most ``max_events``, about ``max_bytes``)."""

    key: str  # the first item's key: the record's key if the chunk stays a lone item
    values: list[bytes] = field(default_factory=list)
    size: int = 2  # the encoded record's length: brackets, then each element and its comma
    # Resolved when the broker acknowledged the chunk's record(s), failed with the send's error.
    acked: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self) -> None:
        # Callers that were cancelled no longer read the outcome: never warn "exception never retrieved".
        self.acked.add_done_callback(_retrieve)

    def fail(self, exc: BaseException) -> None:
        if not self.acked.done():
            self.acked.set_exception(exc)


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


@dataclass(eq=False)
class _Partition:
    sealed: deque[_Chunk] = field(default_factory=deque)  # full chunks, oldest first, to go at once
    open: _Chunk | None = None  # the chunk still filling, goes when the linger elapses


class RecordBatcher:
    """Batches (key, event) items of all concurrent callers into one record per partition per flush; see
    the module docstring for the guarantees. One instance per worker process (per event loop)."""

    def __init__(self, send: SendRecord, partitions: int, *, linger: float = 0.005,
                 max_events: int = MAX_BATCH_EVENTS, max_bytes: int = MAX_BATCH_BYTES) -> None:
        """``send``: hands one record to the producer (see ``SendRecord``); ``partitions``: the topic's
        partition count (the app's, which every parcel-state input topic has); ``linger``: seconds a
        pending item may wait for others; ``max_events``/``max_bytes``: a record's bounds."""
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if linger < 0:
            raise ValueError(f"linger must be >= 0, got {linger}")
        self._send = send
        self.partitions = partitions
        self.linger = linger
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._parts: dict[int, _Partition] = {}
        self._lock = asyncio.Lock()  # one flush at a time hands records to the producer: per-partition order
        self._timer: asyncio.TimerHandle | None = None  # the linger of the oldest open chunk
        self._flush_waiting = False  # a flush task exists that has not taken its chunks yet
        self._take_open = False  # ... and it must take the open chunks too (the linger elapsed)
        self._tasks: set[asyncio.Task[None]] = set()  # flush tasks, referenced until done
        self._unsettled = 0  # items given to ``send`` whose record is neither acknowledged nor failed

    async def send(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Send ``items`` ((partition key, JSON-encoded event object), in order) and return once the broker
        acknowledged every record carrying them; raise the first failed record's error otherwise."""
        chunks: dict[int, _Chunk] = {}  # by id: a caller waits once per chunk it has items in
        for key, value in items:
            chunk = self._append(partition_for(key, self.partitions), key, value)
            chunks[id(chunk)] = chunk
        if not chunks:
            return
        waits = [chunk.acked for chunk in chunks.values()]
        # asyncio.wait, not gather: cancelling this caller must not cancel a record other callers share.
        await asyncio.wait(waits)
        for fut in waits:
            fut.result()  # raises the failed record's error

    async def flush(self) -> None:
        """Send everything pending now and wait until it is acknowledged (tests; a clean stop).
        Raises the first failure, after every record was settled."""
        chunks = [c for part in self._parts.values() for c in (*part.sealed, *([part.open] if part.open else []))]
        if not chunks:
            return
        self._request_flush(take_open=True)
        waits = [c.acked for c in chunks]
        await asyncio.wait(waits)
        for fut in waits:
            fut.result()

    def unsettled(self) -> int:
        """Items given to ``send`` whose record the broker has neither acknowledged nor failed yet: pending
        here or in flight in the producer (what a broker that stopped answering piles up)."""
        return self._unsettled

    def pending(self) -> int:
        """Items not yet handed to the producer."""
        return sum(len(c.values) for part in self._parts.values() for c in (*part.sealed, *([part.open] if part.open else [])))

    # -- internals ---------------------------------------------------------------------------------

    def _append(self, partition: int, key: str, value: bytes) -> _Chunk:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        chunk = part.open
        # The rule of batching.encode_batches, so that a chunk encodes to exactly one record.
        if chunk is not None and record_is_full(len(chunk.values), chunk.size, value, self.max_events, self.max_bytes):
            part.sealed.append(chunk)
            part.open = chunk = None
            self._request_flush(take_open=False)
        if chunk is None:
            chunk = part.open = _Chunk(key)
            # (A chunk stops growing before it can settle: it is taken by a flush first, or failed with it.)
            chunk.acked.add_done_callback(functools.partial(self._on_settled, chunk))
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.linger, self._on_linger)
        chunk.values.append(value)
        chunk.size += len(value) + 1
        self._unsettled += 1
        return chunk

    def _on_settled(self, chunk: _Chunk, _acked: asyncio.Future[None]) -> None:
        self._unsettled -= len(chunk.values)

    def _on_linger(self) -> None:
        self._timer = None
        self._request_flush(take_open=True)

    def _request_flush(self, take_open: bool) -> None:
        """Make sure a flush that has not taken its chunks yet exists (one is enough: it takes all)."""
        self._take_open = self._take_open or take_open
        if self._flush_waiting:
            return
        self._flush_waiting = True
        task = asyncio.get_running_loop().create_task(self._flush(), name="record-batcher-flush")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[int, _Chunk]]:
        """The chunks this flush sends: every sealed one, and the open ones once the linger elapsed."""
        take_open, self._take_open, self._flush_waiting = self._take_open, False, False
        if take_open and self._timer is not None:
            self._timer.cancel()  # the open chunks go now; the next item starts a new linger
            self._timer = None
        taken: list[tuple[int, _Chunk]] = []
        for partition, part in self._parts.items():
            while part.sealed:
                taken.append((partition, part.sealed.popleft()))
            if take_open and part.open is not None:
                taken.append((partition, part.open))
                part.open = None
        return taken

    async def _flush(self) -> None:
        taken: list[tuple[int, _Chunk]] | None = None
        handed = 0
        try:
            async with self._lock:
                taken = self._take()
                while handed < len(taken):
                    await self._send_chunk(*taken[handed])
                    handed += 1
        except asyncio.CancelledError:
            # Cancelled before its turn came, it fails what it would have taken (no caller left waiting for a
            # flush that will never come); cancelled while sending, the chunks not completely handed over.
            for _, chunk in (self._take() if taken is None else taken)[handed:]:
                chunk.fail(FlushCancelled("the flush carrying these items was cancelled; nothing acknowledged"))
            raise

    async def _send_chunk(self, partition: int, chunk: _Chunk) -> None:
        """Hand the chunk's record(s) to the producer; the chunk resolves when all are acknowledged."""
        try:
            if len(chunk.values) == 1:
                acks = [await self._send(partition, chunk.key, chunk.values[0])]
            else:
                records = encode_batches(chunk.values, max_events=self.max_events, max_bytes=self.max_bytes)
                acks = [await self._send(partition, None, record) for record in records]
        except Exception as exc:  # noqa: BLE001 - fails exactly this chunk's callers, the flush goes on
            log.warning("could not send a record of %d items to partition %d: %s", len(chunk.values), partition,
                        type(exc).__name__)
            chunk.fail(exc)
            return
        _settle_when_acked(chunk, [asyncio.ensure_future(a) for a in acks])


def _settle_when_acked(chunk: _Chunk, acks: list[asyncio.Future[object]]) -> None:
    """Resolve ``chunk.acked`` once every ack succeeded, or fail it with the first error (no task per chunk)."""
    remaining = len(acks)

    def done(ack: asyncio.Future[object]) -> None:
        nonlocal remaining
        if chunk.acked.done():
            if not ack.cancelled():
                ack.exception()  # retrieved: the chunk already failed with an earlier error
            return
        if ack.cancelled():
            chunk.fail(FlushCancelled("the producer cancelled the record; nothing acknowledged"))
            return
        exc = ack.exception()
        if exc is not None:
            chunk.fail(exc)
            return
        remaining -= 1
        if remaining == 0:
            chunk.acked.set_result(None)

    for ack in acks:
        ack.add_done_callback(done)
