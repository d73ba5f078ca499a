"""Table writes without Faust's per-record send machinery, with the same changelog and the same guarantees.

Why: every ``table[key] = value`` makes Faust build a FutureMessage, queue it in the ProducerBuffer, let a
service task publish it through ``Topic.publish_message`` and one aiokafka ``send`` with its own future and
two callbacks: about 170 us per record, measured (bench.ceiling, b1 against b). The worker writes ~3.6
records per event, so this cost bounds it. ``ChangelogWriter`` keeps the writes of each (changelog topic,
partition) until they are sealed (at a commit, as Kafka Streams' record cache and Quix's checkpoints do),
one record per key, its latest value: a key written many times between commits (a deadline-index bucket,
a sweep's cursor, a parcel scanned twice) is one record, and on RocksDB one database write. Sealed, they go
straight into aiokafka record batches: one batch is one send, one future and one callback for tens of
records.

What is kept, and how:

1. Changelog records are byte-identical to Faust's: same topic, partition (the current event's, through the
   table's own ``partition_for_key``), key and value serialized by the changelog topic's own schema, same
   (empty) headers, timestamp left to aiokafka as Faust does. Faust's recovery and standbys read them as
   their own. Per partition the changelog is the subsequence of Faust's records that leaves out each write
   a later write of the same key made before the seal supersedes (what compaction would leave out anyway).
2. Before every offset commit (``delivery/checkpoint.py``) ``flush`` seals and sends every pending write and
   waits for the broker's acknowledgement. ``max_pending_records`` unsealed records are sealed and sent at
   once (memory stays bounded between commits). A batch goes out only after its ``follows``
   (the checkpoint's: every record produced before it acknowledged), so a state never reaches the changelog
   ahead of a record it says was sent. A batch that fails is recorded in the checkpoint's ``SendFailures``,
   and that flush and every later one raise ``SendFailed``: no offset is committed past a lost write (the
   same contract as for every other record the worker produces).
3. For each acknowledged batch the highest offset goes to ``store.set_persisted_offset`` as Faust's
   ``Collection._on_changelog_sent`` does per record (RocksDB keeps it; a no-op for the memory store).
4. ``await writer.wait_acked(*tables)`` waits for the acknowledgement of every write made so far to those
   tables (like ``RawTable.wait_acked``, now per table instead of per future).
5. Writes must happen while an agent processes an event (``partition_for_key`` raises otherwise); the
   RocksDB store picks its partition database from the same current event.
6. On a ``rocksdb://`` store a raw table's reads and writes go to the current event's partition database as
   the bytes Faust's store would read and write (``_RocksDBAccess``), without its serializer dispatch per key
   and value and its key-to-partition cache (about 2-3 us a read or write, several per event). Sealed writes
   reach the database as one write batch just before their first record batch is sent: after its
   ``follows`` (a flush of RocksDB's memtable never keeps a state ahead of a record it says was sent) and
   before the persisted offset that covers them. Until then reads look among the writer's writes first. The memory store
   is written at once (a dict write costs less than keeping it aside).

Use one writer per app and route every write of a table through it: mixing ``table[key] = value`` and the
writer on one table could reorder its changelog (two queues to the same partition). Plain tables only:
windowed (TTL bookkeeping), global, ``use_partitioner`` tables, exactly-once apps and the threaded producer
are refused rather than half supported. Not kept: Faust's producer-level sensors and the
``app.on_produce_message`` signal (per record); the table sensors (``on_table_set``/``on_table_del``) are.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.serializers import codecs
from faust.serializers.schemas import Schema
from faust.stores.base import SerializedStore
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import current_event
from faust.tables.base import Collection
from faust.tables.table import Table
from faust.types import TP, AppT
from faust.types.enums import ProcessingGuarantee

from .framework import AFTER_A_FAILED_SEND, SendFailures, aiokafka_producer

log = logging.getLogger("parcelwatch.changelog")

# Unsealed records at which they are sealed and sent without waiting for a commit, and sent records not yet
# acknowledged above which the stream waits: a few MB of values (records are a few hundred bytes).
MAX_PENDING_RECORDS = 20_000


class _Table:
    """What the writer needs of one table, resolved once: its changelog topic, codecs and sensors."""

    __slots__ = (
        "headers", "key_serializer", "name", "on_del", "on_get", "on_set", "raw", "rocksdb", "table", "topic",
        "topic_name", "value_serializer",
    )

    def __init__(self, table: Collection) -> None:
        self.table = table
        self.name = table.name
        self.topic: Any = table.changelog_topic  # a SerializedChannel: prepare_key/value take headers
        self.topic_name = table.changelog_topic_name
        self.key_serializer = table.key_serializer
        self.value_serializer = table.value_serializer
        self.on_set = table._sensor_on_set
        self.on_del = table._sensor_on_del
        self.on_get = table._sensor_on_get
        self.headers: list[tuple[str, bytes]] = []
        self.raw = _serializes_raw(self)
        self.rocksdb = _RocksDBAccess.of(self)

    def record(self, key: Any, value: Any, delete: bool) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        """The changelog record's key, value and headers exactly as ``Collection.send_changelog`` makes them."""
        if self.raw and type(key) is str and (delete or type(value) is bytes):
            # What Faust's schema and raw codec make of them (``_serializes_raw``), without the ~10 us of
            # dispatch through the serializer registry per record (a fifth of the worker's writes).
            return key.encode(), None if delete else value, self.headers
        headers: Any = {}
        key_bytes, headers = self.topic.prepare_key(key, self.key_serializer, None, headers)
        # A delete is Faust's ``on_key_del``: value None with the raw serializer, i.e. a tombstone.
        value_bytes, headers = self.topic.prepare_value(None if delete else value, "raw" if delete else self.value_serializer, None, headers)
        if headers:
            return key_bytes, value_bytes, list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        return key_bytes, value_bytes, self.headers


def _serializes_raw(info: _Table) -> bool:
    """Whether Faust writes this table's changelog key ``k`` (a str) as ``k.encode()`` and a bytes value
    unchanged, with no headers: both serializers "raw", Faust's own raw codec alone under that name, and
    the plain ``Schema`` (a subclass may add headers or encode otherwise)."""
    raw_codec = codecs.get_codec("raw")
    return (
        info.key_serializer == "raw"
        and info.value_serializer == "raw"
        and type(raw_codec) is codecs.raw
        and len(raw_codec.nodes) == 1
        and type(info.topic.schema) is Schema
    )


class _RocksDBAccess:
    """A raw table's partition databases on Faust's ``rocksdb://`` store, read and written as the store does
    within an event (``Store._get`` / ``_set`` / ``_del``: the current event's partition database, keys
    ``key.encode()``, values the bytes themselves), without two steps that cost more than the database call:

    - the serializer registry's dispatch for each key and value (``_encode_key`` / ``_decode_value``, about
      1 us each), which for a raw table gives back ``key.encode()`` and the bytes unchanged (``_Table.raw``);
    - the store's key-to-partition cache (``_key_index``, a locked LRU, 0.7 us a read or write). Faust consults
      it only for a key looked up outside of an event, and then searches every partition database when a key
      is not in it; a delete here goes to the current event's database, the one a key of that partition lives in.
    """

    __slots__ = ("store",)

    def __init__(self, store: RocksDBStore) -> None:
        self.store = store

    @classmethod
    def of(cls, info: _Table) -> _RocksDBAccess | None:
        store = info.table.data
        if info.raw and type(store) is RocksDBStore and store.key_serializer == "raw" and store.value_serializer == "raw":
            return cls(store)
        return None

    def db(self, partition: int) -> Any:
        return self.store._db_for_partition(partition)

    def get(self, key: str) -> bytes | None:
        event = current_event()
        if event is None:  # (outside of an event: Faust's own search of the partition databases)
            return self.store._get(key.encode())  # type: ignore[no-any-return]
        return self.db(event.message.partition).get(key.encode())  # type: ignore[no-any-return]

    def write(self, partition: int, records: Mapping[bytes, tuple[bytes | None, Any]]) -> None:
        write_batch(self.db(partition), records)


def write_batch(db: Any, records: Mapping[bytes, tuple[bytes | None, Any]]) -> None:
    """``records`` (key -> (value, headers); value None: delete) into the rocksdict database ``db`` at once."""
    import rocksdict

    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, (value, _) in records.items():
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    db.write(batch)


class _Open:
    """The writes of one (changelog topic, partition) not sealed yet: one record per key, its latest."""

    __slots__ = ("partition", "records", "table")

    def __init__(self, table: _Table, partition: int) -> None:
        self.table = table
        self.partition = partition
        # Serialized key -> (value, headers); a key written again moves to the end, so the records go
        # out in the order of their last writes: the changelog stays a subsequence of the writes.
        self.records: dict[bytes, tuple[bytes | None, list[tuple[str, bytes]]]] = {}


class _Batch:
    """One aiokafka record batch for one (changelog topic, partition): sealed, sent, acked."""

    __slots__ = ("acked", "builder", "count", "partition", "store_writes", "table")

    def __init__(self, table: _Table, partition: int, builder: BatchBuilder, acked: asyncio.Future[None]) -> None:
        self.table = table
        self.partition = partition
        self.builder = builder
        self.count = 0
        self.acked = acked
        # The first batch of a seal on a RocksDB store: the sealed writes, into the database just before
        # it is sent (after its ``follows``).
        self.store_writes: _Open | None = None


class ChangelogWriter:
    """Writes table keys to the store and to batched changelog records; one per app (see the module doc)."""

    def __init__(self, app: AppT, failures: SendFailures, *, linger: float | None = None,
                 max_pending_records: int = MAX_PENDING_RECORDS, follows: Callable[[], Awaitable[None]] | None = None) -> None:
        """``failures``: where a batch the broker did not accept is recorded. ``linger``: how long writes
        collect before they are sealed and sent; default None: until a commit's flush, ``wait_acked`` or
        ``max_pending_records`` of them, whichever comes first. ``max_pending_records``: unsealed records
        at which they are sealed and sent, and sent records not yet acknowledged above which the stream
        waits (Faust's producer buffer does the same with ``wait_until_ebb``), so a slow broker cannot grow
        memory without bound. ``follows``: awaited before the batches sealed by then are sent; when it
        raises they fail with its error, unsent."""
        guarantee: Any = app.conf.processing_guarantee
        if guarantee is ProcessingGuarantee.EXACTLY_ONCE:
            raise ValueError("ChangelogWriter supports at_least_once apps only (no transactional producer)")
        if app.conf.producer_threaded:
            raise ValueError("ChangelogWriter needs the app's own aiokafka producer (producer_threaded=False)")
        self.app = app
        self.failures = failures
        self.linger = linger
        self.max_pending_records = max_pending_records
        self._follows = follows
        self._tables: dict[int, _Table] = {}
        self._open: dict[tuple[str, int], _Open] = {}
        # RocksDB stores: sealed writes not in the database yet, oldest first (read after the unsealed ones).
        self._sealed: dict[tuple[str, int], deque[_Open]] = {}
        self._ready: deque[_Batch] = deque()
        self._unacked: builtins.set[_Batch] = builtins.set()  # ready, or sent and waiting for the broker
        self._pending_records = 0  # unsealed, or sealed and not acknowledged (or failed)
        self._unsealed = 0
        self._timer: asyncio.TimerHandle | None = None
        self._lock: asyncio.Lock | None = None
        self._tasks: builtins.set[asyncio.Task[None]] = builtins.set()
        # Records below this many key + value bytes cannot exceed max_request_size: no exact estimate.
        self._size_guard = app.conf.producer_max_request_size - 1024

    # -- writing ------------------------------------------------------------------------------------------

    def set(self, table: Collection, key: Any, value: Any) -> None:
        """``table[key] = value``: the changelog record among the unsealed writes; the store now (a RocksDB
        store once they are sealed and sent: until then reads find the value among them)."""
        info = self._tables.get(id(table)) or self._register(table)
        partition = table.partition_for_key(key)  # the current event's; raises outside of an event
        assert partition is not None  # use_partitioner tables are refused in _register
        key_bytes, value_bytes, headers = info.record(key, value, delete=False)
        self._append(info, partition, key_bytes, value_bytes, headers)
        if info.rocksdb is None:
            table.data[key] = value
        info.on_set(table, key, value)

    def delete(self, table: Collection, key: Any) -> None:
        """``del table[key]`` without the KeyError: a tombstone record, and the key leaves the store."""
        info = self._tables.get(id(table)) or self._register(table)
        partition = table.partition_for_key(key)
        assert partition is not None
        key_bytes, value_bytes, headers = info.record(key, None, delete=True)
        self._append(info, partition, key_bytes, value_bytes, headers)
        if info.rocksdb is None:
            try:
                del table.data[key]
            except KeyError:
                pass  # the tombstone is still written: the changelog then surely says "absent"
        info.on_del(table, key)

    def reader(self, table: Collection) -> Callable[[Any], Any]:
        """``table.get(key)`` (None when absent) with one store lookup and no exception.

        A Faust table's ``get`` goes through ``Mapping.get``: ``key in store``, then ``store[key]`` (on
        RocksDB two reads), and a KeyError raised and caught for an absent key. The table sensors still
        see the read (``on_table_get``), as the writes keep theirs."""
        info = self._tables.get(id(table)) or self._register(table)
        mapping: Any = table
        if getattr(type(table), "__missing__", None) is not Table.__missing__ or mapping.default is not None:
            return mapping.get  # a default makes an absent key present: Faust's own path
        on_get = info.on_get
        rocksdb = info.rocksdb
        if rocksdb is not None:
            unsealed = self._open
            sealed = self._sealed
            topic = info.topic_name
            db = rocksdb.db

            def get_rocksdb(key: Any) -> Any:
                on_get(table, key)
                key_bytes = key.encode()
                event = current_event()
                if event is None:  # (outside of an event: every partition's writes, then Faust's search)
                    for partition in {p for t, p in (*unsealed, *sealed) if t == topic}:
                        found = self._not_stored((topic, partition), key_bytes)
                        if found is not None:
                            return found[0]
                    return rocksdb.get(key)
                partition = event.message.partition
                writes = unsealed.get((topic, partition))
                if writes is not None:
                    found = writes.records.get(key_bytes)
                    if found is not None:
                        return found[0]  # (None: deleted)
                if sealed:
                    found = self._not_stored((topic, partition), key_bytes, unsealed=False)
                    if found is not None:
                        return found[0]
                return db(partition).get(key_bytes)

            return get_rocksdb

        def get(key: Any) -> Any:
            on_get(table, key)
            store = table.data
            if type(store) is MemoryStore:
                return store.data.get(key)
            if isinstance(store, SerializedStore):
                raw = store._get(store._encode_key(key))
                return None if raw is None else store._decode_value(raw)
            return mapping.get(key)

        return get

    def _not_stored(self, slot: tuple[str, int], key: bytes, unsealed: bool = True) -> tuple[bytes | None, Any] | None:
        """``key``'s latest write of ``slot`` not in its RocksDB database yet (unsealed, then sealed newest
        first), as (value, headers); None when there is none."""
        writes = self._open.get(slot) if unsealed else None
        found = writes.records.get(key) if writes is not None else None
        if found is None:
            for each in reversed(self._sealed.get(slot, ())):
                found = each.records.get(key)
                if found is not None:
                    break
        return found

    def _register(self, table: Collection) -> _Table:
        if table.app is not self.app:
            raise ValueError(f"table {table.name!r} belongs to another app")
        if table.window is not None or table.is_global or table.use_partitioner:
            raise ValueError(f"table {table.name!r}: windowed, global and use_partitioner tables are not supported")
        info = self._tables[id(table)] = _Table(table)
        return info

    def _append(self, info: _Table, partition: int, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        if key is None:
            raise ValueError(f"table {info.name!r}: a changelog record needs a key")
        if len(key) + (len(value) if value else 0) > self._size_guard:
            self._check_size(key, value, headers)
        slot = (info.topic_name, partition)
        writes = self._open.get(slot)
        if writes is None:
            writes = self._open[slot] = _Open(info, partition)
        records = writes.records
        if records.pop(key, None) is None:
            self._unsealed += 1
            self._pending_records += 1
        records[key] = (value, headers)
        if self._unsealed >= self.max_pending_records:
            self._seal_all()  # (sent without waiting: the stream waits only in wait_until_ebb)
            self._kick()
        elif self._timer is None and self.linger is not None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._on_linger)

    def _check_size(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        # aiokafka's send refuses a record above max_request_size; so do we, before the store is touched.
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        limit = self.app.conf.producer_max_request_size
        if size > limit:
            raise MessageSizeTooLargeError(f"a changelog record of {size} bytes exceeds producer_max_request_size ({limit})")

    def _new_batch(self, info: _Table, partition: int) -> _Batch:
        batch = _Batch(info, partition, self._producer().create_batch(), asyncio.get_running_loop().create_future())
        self._unacked.add(batch)
        self._ready.append(batch)
        return batch

    def _producer(self) -> Any:
        return aiokafka_producer(self.app)

    # -- sending ------------------------------------------------------------------------------------------

    def _seal(self, slot: tuple[str, int]) -> None:
        """The unsealed writes of ``slot`` into record batches ready to send, in order. A RocksDB store gets
        them as one write batch when the first is sent, after its ``follows`` (so never ahead of a record
        they say was sent, and before the persisted offset that covers them); read from here until then."""
        writes = self._open.pop(slot)
        records = writes.records
        self._unsealed -= len(records)
        info, partition = writes.table, writes.partition
        batch = self._new_batch(info, partition)
        if info.rocksdb is not None:
            batch.store_writes = writes
            self._sealed.setdefault(slot, deque()).append(writes)
        for key, (value, headers) in records.items():
            if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                # Full (an empty builder always takes one record): the next batch.
                batch.builder.close()
                batch = self._new_batch(info, partition)
                batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
            batch.count += 1
        batch.builder.close()  # a closed builder is sent by aiokafka at once, without its own linger

    def _seal_all(self, topics: builtins.set[str] | None = None) -> None:
        for slot in list(self._open):
            if topics is None or slot[0] in topics:
                self._seal(slot)

    def _on_linger(self) -> None:
        self._timer = None
        self._seal_all()
        self._kick()

    def _kick(self) -> None:
        if self._ready:
            task = asyncio.get_running_loop().create_task(self._submit())
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _submit(self) -> None:
        """Hand the sealed batches to aiokafka, oldest first (one submitter at a time keeps each
        partition's changelog in write order)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while self._ready:
                sealed = len(self._ready)  # (one sealed during the wait goes next round: it may follow newer records)
                if self._follows is not None:
                    try:
                        await self._follows()
                    except Exception as exc:  # noqa: BLE001 - what they follow failed: they must not go out
                        for _ in range(sealed):
                            batch = self._ready.popleft()
                            self._stored(batch, write=False)  # (nor into the database: the worker must restart)
                            self._done(batch, None, exc)
                        continue
                for _ in range(sealed):
                    batch = self._ready.popleft()
                    try:
                        self._stored(batch, write=True)
                    except Exception as exc:  # noqa: BLE001 - the database refused them: a lost write, as unsent
                        self._done(batch, None, exc)
                        continue
                    try:
                        # (framework.py's tracked topics keep the changelog in the producer's
                        # metadata refreshes: a batch queued for a topic that fell out of them never drains.)
                        sent = await self._producer().send_batch(batch.builder, batch.table.topic_name, partition=batch.partition)
                    except Exception as exc:  # noqa: BLE001 - any failure to hand over is a lost write
                        self._done(batch, None, exc)
                    else:
                        sent.add_done_callback(lambda fut, batch=batch: self._on_sent(batch, fut))

    def _stored(self, batch: _Batch, *, write: bool) -> None:
        """A seal's writes into its RocksDB database (``write``), no longer read from the writer."""
        writes = batch.store_writes
        if writes is None:
            return
        batch.store_writes = None
        try:
            if write:
                info = batch.table
                assert info.rocksdb is not None
                info.rocksdb.write(batch.partition, writes.records)
        finally:
            slot = (batch.table.topic_name, batch.partition)
            waiting = self._sealed[slot]
            waiting.remove(writes)  # (the oldest: batches go out in order)
            if not waiting:
                del self._sealed[slot]

    def _on_sent(self, batch: _Batch, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self._done(batch, None, asyncio.CancelledError("changelog batch cancelled"))
            return
        exc = fut.exception()
        self._done(batch, None if exc is not None else fut.result(), exc)

    def _done(self, batch: _Batch, metadata: Any, exc: BaseException | None) -> None:
        self._unacked.discard(batch)
        self._pending_records -= batch.count
        if exc is None:
            if metadata is not None and metadata.offset >= 0:  # acks=0 gives no offset
                # Faust's _on_changelog_sent, once per batch with its last offset.
                batch.table.table.data.set_persisted_offset(TP(batch.table.topic_name, batch.partition), metadata.offset + batch.count - 1)
            batch.acked.set_result(None)
            return
        failure = f"{batch.table.topic_name}: {type(exc).__name__}: {exc}"
        self.failures.note(failure)
        log.error("a changelog batch of %d record(s) failed to send (%s): %s", batch.count, failure[:300], AFTER_A_FAILED_SEND)
        batch.acked.set_exception(self.failures.error(failure))
        batch.acked.exception()  # retrieved here: nobody may be waiting for this batch

    # -- waiting ------------------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Send every pending batch and wait for the broker; raise ``SendFailed`` if any write ever failed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._wait(None)
        self.failures.raise_if_any()

    async def wait_acked(self, *tables: Collection) -> None:
        """Wait until every write made so far to ``tables`` (all tables if none) is acknowledged.

        Raises ``SendFailed`` if one of them failed."""
        topics = {t.changelog_topic_name for t in tables} if tables else None
        for batch in await self._wait(topics):
            batch.acked.result()

    async def wait_until_ebb(self) -> None:
        """Back-pressure: wait while too many records are sent but not acknowledged."""
        if self._pending_records - self._unsealed > self.max_pending_records:
            await self._wait(None)

    async def _wait(self, topics: builtins.set[str] | None) -> list[_Batch]:
        self._seal_all(topics)
        # The batches holding every write made before this call; later writes are not waited for.
        batches = [b for b in self._unacked if topics is None or b.table.topic_name in topics]
        if self._ready:
            await self._submit()
        if batches:
            await asyncio.wait([b.acked for b in batches])
        return batches

    @property
    def pending_records(self) -> int:
        """Records written and not yet acknowledged (or failed): one per key until sealed."""
        return self._pending_records
