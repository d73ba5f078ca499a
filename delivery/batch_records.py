"""Batch records: many events of one partition in one Kafka record (a JSON array of event objects).

Faust costs about 150-250 us per consumed record whatever it carries (``bench.ceiling`` (b)), several
times what parcelwatch itself spends on an event. So the producers we control (the ingest endpoints,
the order router's order facts, the simulator) may put many events of one partition into one record;
the agents process each element exactly as if it had come alone, and a bad element is dead-lettered
alone. Faust's guarantees hold per record: its offset is committed once every element was processed
and everything they wrote was acknowledged; after a crash the whole record is processed again, which
the idempotent state and sinks absorb.

Co-partitioning is the one rule a batch record adds: every element must belong to the partition the
record is on, by the same hash the producer's default partitioner applies to a single record's key
(Kafka's murmur2, as aiokafka's ``DefaultPartitioner`` and the Java client compute it). ``partition_for``
is that hash; an agent re-routes an element that does not belong instead of splitting a parcel's state
over two partitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from domain.events import InvalidEvent

# A record larger than this is split: brokers refuse records over their message.max.bytes (1 MB by
# default), and a crash re-processes a whole record.
MAX_BATCH_BYTES = 512 * 1024
MAX_BATCH_EVENTS = 500


# (murmur2 in pure Python is about 6 us a key, and every event of a batch is checked: a parcel's few
# dozen events, its order facts and the router's sends hit the same keys again within minutes.)
@lru_cache(maxsize=1 << 16)
def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner sends a record keyed ``key`` to."""
    raw = key.encode() if isinstance(key, str) else key
    return (murmur2(raw) & 0x7FFFFFFF) % partitions


def is_batch(raw: bytes | None) -> bool:
    """A batch record is a JSON array; a single event is a JSON object."""
    return bool(raw) and raw.lstrip()[:1] == b"["  # type: ignore[union-attr]


def decode_batch(raw: bytes) -> list[Any]:
    """The elements of a batch record (not yet validated: each is checked as its own event)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("$", f"batch record is not valid JSON: {exc}") from None
    if not isinstance(doc, list):
        raise InvalidEvent("$", f"batch record must be a JSON array, got {type(doc).__name__}")
    return doc


def record_events(raw: bytes | None) -> list[Any]:
    """The events of one record as a consumer of a topic that carries both single and batch records
    sees them: the elements of a batch record, or the one decoded event (not yet validated)."""
    if is_batch(raw):
        return decode_batch(raw)  # type: ignore[arg-type]
    try:
        return [orjson.loads(raw or b"")]
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("$", f"record is not valid JSON: {exc}") from None


class SharedDecodes:
    """The events of records that several agents of one worker read, decoded once (``record_events``).

    Faust hands every agent subscribed to a topic the same value object for a record: the first reader
    decodes it, the ``readers``-th takes the entry away. Issue events are the case: the issue sink and the
    lane re-keying read every record of the issues topic, and an issue event (about 1.6 KB, its texts and
    evidence) takes about 20 us to decode. The events returned are shared between the readers: read-only.
    At most ``keep`` records wait for their other readers (one reader far behind, or stopped, only costs
    its own decoding again).
    """

    def __init__(self, readers: int, keep: int = 256) -> None:
        self.readers = readers
        self.keep = keep
        # id(raw) -> (raw, its events or the InvalidEvent it raised, readers still to come). ``raw`` is held
        # so that its id cannot be reused by another record while the entry lives.
        self._entries: dict[int, tuple[bytes | None, list[Any] | InvalidEvent, int]] = {}

    def events(self, raw: bytes | None) -> list[Any]:
        key = id(raw)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is raw:
            _, result, left = entry
            if left <= 1:
                del self._entries[key]
            else:
                self._entries[key] = (raw, result, left - 1)
        else:
            try:
                result = record_events(raw)
            except InvalidEvent as exc:
                result = exc
            if self.readers > 1:
                self._entries[key] = (raw, result, self.readers - 1)
                if len(self._entries) > self.keep:
                    del self._entries[next(iter(self._entries))]  # the oldest (insertion order)
        if isinstance(result, InvalidEvent):
            raise InvalidEvent(result.field, result.problem)
        return result


def record_is_full(events: int, size: int, element: bytes, max_events: int = MAX_BATCH_EVENTS,
                   max_bytes: int = MAX_BATCH_BYTES) -> bool:
    """Whether a record of ``events`` elements, ``size`` bytes encoded, must be closed before ``element``
    (the one cutting rule of ``encode_batches`` and of ``delivery/record_batcher.py``'s chunks)."""
    return events > 0 and (events >= max_events or size + len(element) + 1 > max_bytes)


def batch_records(events: Iterable[tuple[str | bytes, bytes]], partitions: int,
                  max_events: int = MAX_BATCH_EVENTS) -> list[tuple[int, bytes]]:
    """(key, JSON-encoded event) pairs -> (partition, batch record): grouped by the partition of their
    key, in their order, ``max_events`` to a record (how a producer that has them all at once sends them)."""
    per: dict[int, list[bytes]] = {}
    for key, value in events:
        per.setdefault(partition_for(key, partitions), []).append(value)
    return [(partition, record) for partition, values in per.items()
            for record in encode_batches(values, max_events=max_events)]


def keyed_records(events: Iterable[tuple[str, bytes]], partitions: int,
                  max_events: int = MAX_BATCH_EVENTS) -> list[tuple[str | None, int, bytes]]:
    """(key, JSON-encoded event) pairs -> (key, partition, record) to send: a partition's lone event as an
    ordinary keyed record (what a consumer that knows nothing of batch records reads), several as batch
    records with no key, in their order (how the worker sends its own derived events: order facts,
    issue events, alert routing)."""
    per: dict[int, list[tuple[str, bytes]]] = {}
    for key, value in events:
        per.setdefault(partition_for(key, partitions), []).append((key, value))
    out: list[tuple[str | None, int, bytes]] = []
    for partition, pairs in per.items():
        if len(pairs) == 1:
            out.append((pairs[0][0], partition, pairs[0][1]))
        else:
            out.extend((None, partition, record) for record in encode_batches(v for _, v in pairs))
    return out


def encode_batches(elements: Iterable[bytes], *, max_events: int = MAX_BATCH_EVENTS,
                   max_bytes: int = MAX_BATCH_BYTES) -> list[bytes]:
    """JSON-encoded events (each an object) -> batch records of at most ``max_events`` elements and
    about ``max_bytes`` each (an element larger than that travels alone)."""
    records: list[bytes] = []
    chunk: list[bytes] = []
    size = 2
    for element in elements:
        if record_is_full(len(chunk), size, element, max_events, max_bytes):
            records.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 2
        chunk.append(element)
        size += len(element) + 1
    if chunk:
        records.append(b"[" + b",".join(chunk) + b"]")
    return records
