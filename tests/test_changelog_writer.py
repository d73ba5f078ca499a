"""delivery/changelog.py on a real Tansu broker (loopback): what Faust reads back, when offsets are committed, failures.

The worker tests run a small Faust app (``_worker_main`` below, started as its own process) with two raw
tables fed by the same commands: ``state`` written through the ChangelogWriter, ``reference`` through
Faust's own ``table[key] = value`` / ``del table[key]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.broker import TansuBroker
from devtools.process import free_port, stop

from .harness import ROOT, consume_all, create_topic, produce

pytestmark = pytest.mark.integration

PARTITIONS = 4
INPUT = "cw-input"


# -- the worker under test (a separate process) -------------------------------------------------------------


def _worker_main() -> None:
    """A Faust worker configured by CW_* environment variables (see ``_start_worker``)."""
    import faust
    from faust.types import TP

    from delivery import framework
    from delivery.checkpoint import Checkpoint

    env = os.environ
    out = Path(env["CW_OUT"])

    app = faust.App(
        env["CW_APP"], broker=env["CW_BROKER"], store=env["CW_STORE"], datadir=env["CW_DATADIR"], web_enabled=False,
        # (Faust's worker command binds its web server even so: a loopback port of its own, never :6066
        # on every interface, where a running `make run` made these tests fail.)
        web_port=int(env["CW_WEB_PORT"]), web_bind="127.0.0.1", web_host="127.0.0.1",
        topic_partitions=PARTITIONS, broker_session_timeout=10, broker_heartbeat_interval=1,
        broker_commit_interval=float(env["CW_COMMIT_INTERVAL"]), producer_linger=0.005,
    )
    topic = app.topic(INPUT, key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw")

    class RawTable(faust.Table):  # as agents/topology.py
        def _serializer_from_type(self, typ: object) -> str:
            return "raw"

    def table(name: str) -> Any:
        return app.tables.add(RawTable(app, name=name, key_type=str, value_type=bytes, partitions=PARTITIONS,
                                       beacon=app.tables.beacon))

    state, reference = table("state"), table("reference")
    tables: Any = app.tables  # the TableManager: its recovery service says when recovery is complete
    # The worker setup parcelwatch uses (agents/__init__.py): its commit order and every override.
    checkpoint = Checkpoint(app, linger=float(env["CW_LINGER"]))
    framework.install(checkpoint, tansu_bootstrap=env["CW_BROKER"].removeprefix("kafka://"))
    writer = checkpoint.writer
    # The one-lookup read, checked against Faust's own ``get`` of ``reference``; and Faust's own ``get`` of
    # what the writer wrote on the memory store (on RocksDB the writer reads and writes the partition
    # databases itself, and they hold a write once it is sealed: the dump below reads them through Faust).
    read = writer.reader(state)
    faust_reads = env["CW_STORE"].startswith("memory")
    expected = int(env["CW_EXPECTED"])
    slow = float(env.get("CW_SLOW", "0"))
    seen = [0]
    reads = {"compared": 0, "differed": []}

    def compare(key: str) -> None:
        for k in (key, f"never-written:{key}"):
            reads["compared"] += 1  # type: ignore[operator]
            if read(k) != reference.get(k) or (faust_reads and state.get(k) != reference.get(k)):
                reads["differed"].append(k)  # type: ignore[attr-defined]

    @app.agent(topic)
    async def process(stream: Any) -> None:
        async for event in stream.events():
            cmd = json.loads(event.value)
            if cmd["op"] == "set":
                value = bytes.fromhex(cmd["value"])
                writer.set(state, cmd["key"], value)
                reference[cmd["key"]] = value
            elif cmd["op"] == "del":
                writer.delete(state, cmd["key"])
                del reference[cmd["key"]]
            else:  # "mark": one write that names the event's own partition and offset
                writer.set(state, f"{event.message.partition}:{event.message.offset}", b"1")
            if cmd["op"] != "mark":
                compare(cmd["key"])
            seen[0] += 1
            if seen[0] == expected:
                (out / "reads.json").write_text(json.dumps(reads))
                (out / "processed").write_text(str(seen[0]))
            if slow:
                await asyncio.sleep(slow)

    @app.timer(0.5)
    async def dump() -> None:
        """Once recovery is complete: both tables and the persisted changelog offsets, to dump.json."""
        if not env.get("CW_DUMP") or (out / "dump.json").exists() or not tables.recovery.completed.is_set():
            return
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == INPUT}
        if len(assigned) < PARTITIONS:
            return
        doc = {
            "state": {k: v.hex() for k, v in state.items()},
            "reference": {k: v.hex() for k, v in reference.items()},
            # Outside of an event, as the web views read: the RocksDB store looks in every partition db.
            "read": {k: (v.hex() if (v := read(k)) is not None else None) for k in reference},
            "persisted": {p: state.data.persisted_offset(TP(state.changelog_topic_name, p)) for p in range(PARTITIONS)},
        }
        (out / "dump.json.tmp").write_text(json.dumps(doc))
        (out / "dump.json.tmp").rename(out / "dump.json")

    app.main()


if __name__ == "__main__":
    _worker_main()


# -- helpers --------------------------------------------------------------------------------------------------


def _start_worker(broker: TansuBroker, run_dir: Path, name: str, *, app_id: str, store: str = "memory://", expected: int = 0,
                  linger: float = 0.05, commit_interval: float = 0.5, dump: bool = False, slow: float = 0.0,
                  datadir: Path | None = None) -> subprocess.Popen[bytes]:
    out = run_dir / name
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CW_BROKER": broker.url, "CW_APP": app_id, "CW_STORE": store, "CW_OUT": str(out),
           "CW_DATADIR": str(datadir or out / "data"), "CW_EXPECTED": str(expected), "CW_LINGER": str(linger),
           "CW_COMMIT_INTERVAL": str(commit_interval), "CW_DUMP": "1" if dump else "", "CW_SLOW": str(slow),
           "CW_WEB_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    log = (out / "worker.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "tests.test_changelog_writer", "worker", "-l", "info"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    log = (path.parent / "worker.log").read_text(errors="replace")[-4000:]
    raise TimeoutError(f"no {path.name} from the worker (exit {proc.poll()}):\n{log}")


async def _create_topic(bootstrap: str, name: str) -> None:
    await create_topic(bootstrap, name, PARTITIONS)


def _create_input(bootstrap: str) -> None:
    asyncio.run(_create_topic(bootstrap, INPUT))


def _committed(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offset per input partition (0 where none)."""

    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return {p: (await consumer.committed(TopicPartition(INPUT, p))) or 0 for p in range(PARTITIONS)}
        finally:
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                pass

    return asyncio.run(run())


def _changelog(bootstrap: str, app_id: str, table: str) -> list[Any]:
    return sorted(consume_all(bootstrap, f"{app_id}-{table}-changelog"), key=lambda m: (m.partition, m.offset))


def _commands(n_keys: int) -> list[tuple[str, bytes | None, bytes]]:
    """Sets (raw bytes, non-UTF-8 included), overwrites, and deletes, spread over partitions.

    No empty value after a delete of the same key: Faust's memory store drops a key whose latest value
    is falsy when its recovery batch also holds a tombstone for it (``if not self.data[key]``), for its
    own changelog as for the writer's."""
    cmds: list[dict[str, str]] = []
    for i in range(n_keys):
        cmds.append({"op": "set", "key": f"k{i}", "value": (bytes([i % 256, 0xFF, 0xFE]) + f"v{i}".encode() * (i % 7)).hex()})
    cmds.append({"op": "set", "key": "empty", "value": ""})  # an empty value that is never deleted is kept
    cmds.append({"op": "set", "key": "顺丰:SF1234-é", "value": "包裹".encode().hex()})  # a key beyond ASCII
    for i in range(0, n_keys, 3):
        cmds.append({"op": "set", "key": f"k{i}", "value": f"again-{i}".encode().hex()})
    for i in range(0, n_keys, 5):
        cmds.append({"op": "del", "key": f"k{i}"})
    cmds.append({"op": "set", "key": "k5", "value": b"back".hex()})  # deleted, then written again
    # Keyed by the table key: every command on a key lands on one partition, in order.
    return [(INPUT, c["key"].encode(), json.dumps(c).encode()) for c in cmds]


def _final_state(commands: list[tuple[str, bytes | None, bytes]]) -> dict[str, str]:
    state: dict[str, str] = {}
    for _, _, raw in commands:
        c = json.loads(raw)
        if c["op"] == "set":
            state[c["key"]] = c["value"]
        else:
            state.pop(c["key"], None)
    return state


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


# -- the records: what Faust would serialize ----------------------------------------------------------------


def test_a_raw_tables_records_skip_faust_serializer_dispatch_and_are_what_it_makes() -> None:
    import faust

    from delivery.changelog import _Table

    app = faust.App("cw-records", broker="kafka://127.0.0.1:1", store="memory://")

    class RawTable(faust.Table):  # as agents/topology.py
        def _serializer_from_type(self, typ: object) -> str:
            return "raw"

    raw = _Table(RawTable(app, name="raw", key_type=str, value_type=bytes, partitions=PARTITIONS))
    json_table = _Table(app.Table("json", key_type=str, value_type=bytes, partitions=PARTITIONS))  # type: ignore[arg-type]  # Faust's derived "json"
    assert raw.raw
    assert raw.rocksdb is None  # (a memory store: written through the store itself)
    assert not json_table.raw  # the registry's path: a JSON string, quoted
    assert json_table.record("k", b"v", delete=False)[0] == b'"k"'

    cases = [("k", b"v"), ("顺丰:SF1234-é", "包裹".encode()), ("", b""), ("k", bytes(range(256)))]
    for key, value in cases:
        for delete in (False, True):
            fast = raw.record(key, value, delete)
            raw.raw = False  # Faust's own schema and codec
            try:
                assert raw.record(key, value, delete) == fast, (key, value, delete)
            finally:
                raw.raw = True
    assert raw.record("k", None, delete=True) == (b"k", None, [])


def test_a_raw_table_on_rocksdb_is_read_and_written_in_its_partition_databases_as_faust_stores_them(tmp_path: Path) -> None:
    import faust

    from delivery.changelog import _Table

    app = faust.App("cw-rocksdb", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))

    class RawTable(faust.Table):  # as agents/topology.py
        def _serializer_from_type(self, typ: object) -> str:
            return "raw"

    raw = _Table(RawTable(app, name="raw", key_type=str, value_type=bytes, partitions=PARTITIONS))
    json_table = _Table(app.Table("json", key_type=str, value_type=bytes, partitions=PARTITIONS))  # type: ignore[arg-type]
    assert raw.rocksdb is not None
    assert json_table.rocksdb is None  # (its store encodes keys and values: Faust's own path)
    store: Any = raw.table.data
    try:
        raw.rocksdb.db(1).put(*raw.record("顺丰:SF1", b"\x00state", delete=False)[:2])
        # Faust's store finds it (outside of an event it searches every partition database), decoded as its own.
        assert raw.table.data["顺丰:SF1"] == b"\x00state"
        assert raw.rocksdb.get("顺丰:SF1") == b"\x00state"  # (no current event: Faust's search)
        assert raw.rocksdb.get("absent") is None
        raw.rocksdb.db(1).delete(raw.record("顺丰:SF1", None, delete=True)[0])
        assert "顺丰:SF1" not in raw.table.data
    finally:
        for db in store._dbs.values():
            db.close()


# -- recovery: Faust reads the writer's changelog as its own ---------------------------------------------------


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_faust_recovers_the_writers_changelog_byte_identical_with_deletes(
    tmp_path: Path, broker: TansuBroker, procs: list[subprocess.Popen[bytes]], store: str
) -> None:
    app_id = "cw-recovery"
    _create_input(broker.bootstrap)
    commands = _commands(120)
    produce(broker.bootstrap, commands)
    first = _start_worker(broker, tmp_path, "first", app_id=app_id, store=store, expected=len(commands))
    procs.append(first)
    _wait_file(tmp_path / "first" / "processed", first, 90)
    # The writer's one-lookup read answered as Faust's own table read after every command, absent keys too.
    reads = json.loads((tmp_path / "first" / "reads.json").read_text())
    assert reads == {"compared": 2 * len(commands), "differed": []}
    deadline = time.monotonic() + 30  # every input offset committed, then a clean stop
    while sum(_committed(broker.bootstrap, app_id).values()) < len(commands) and time.monotonic() < deadline:
        time.sleep(0.3)
    stop(first, timeout=30)

    # The changelog holds, partition by partition, the records Faust wrote for the same commands, byte for
    # byte, in order, less the writes a later write of the same key superseded before they were sealed;
    # each key's last record is Faust's.
    state_log, reference_log = _changelog(broker.bootstrap, app_id, "state"), _changelog(broker.bootstrap, app_id, "reference")
    written = [(m.partition, m.key, m.value, list(m.headers)) for m in state_log]
    faust_written = [(m.partition, m.key, m.value, list(m.headers)) for m in reference_log]
    assert len(faust_written) == len(commands)
    assert _is_subsequence(written, faust_written)
    latest = {(p, k): v for p, k, v, _ in written}
    assert latest == {(p, k): v for p, k, v, _ in faust_written}
    assert sum(1 for v in latest.values() if v is None) == len(range(0, 120, 5)) - 1  # deletes are tombstones (k5 came back)

    # A fresh worker (no local data) rebuilds both tables from their changelogs with Faust's own recovery.
    fresh = _start_worker(broker, tmp_path, "fresh", app_id=app_id, store=store, dump=True)
    procs.append(fresh)
    doc = json.loads(_wait_file(tmp_path / "fresh" / "dump.json", fresh, 90))
    expected = _final_state(commands)
    assert doc["state"] == expected
    assert doc["reference"] == expected
    assert doc["read"] == expected
    stop(fresh, timeout=30)

    if store.startswith("rocksdb"):
        # The first worker's RocksDB files remember the last changelog offset written per partition, as
        # Faust's _on_changelog_sent does for its own writes, so a restart on them re-reads nothing.
        for table, log in (("state", state_log), ("reference", reference_log)):
            last = {p: max(m.offset for m in log if m.partition == p) for p in range(PARTITIONS)}
            assert _persisted_offsets(tmp_path / "first" / "data", table) == last, table


def _is_subsequence(part: list[Any], whole: list[Any]) -> bool:
    rest = iter(whole)
    return all(any(item == other for other in rest) for item in part)


def _persisted_offsets(datadir: Path, table: str) -> dict[int, int | None]:
    """The offset Faust's RocksDB store keeps per partition db (``Store.offset_key``), read offline."""
    import rocksdict

    out: dict[int, int | None] = {}
    for p in range(PARTITIONS):
        [path] = datadir.glob(f"*/tables/{table}-{p}.db")
        db = rocksdict.Rdict(str(path), access_type=rocksdict.AccessType.read_only())
        try:
            raw = db.get(b"__faust\0offset__")
        finally:
            db.close()
        out[p] = int(raw) if raw is not None else None
    return out


# -- no offset is committed before the writes it covers are acknowledged ---------------------------------------


def test_no_offset_is_committed_ahead_of_the_writes_it_covers_even_under_kill_9(
    tmp_path: Path, broker: TansuBroker, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Writes linger 3 s in the writer while Faust commits every 0.2 s. Were a commit not to send and await
    them first, it would cover events whose writes are still in memory, and kill -9 would lose them."""
    app_id = "cw-commit"
    _create_input(broker.bootstrap)
    n = 2000
    produce(broker.bootstrap, [(INPUT, f"e{i}".encode(), b'{"op": "mark"}') for i in range(n)])
    worker = _start_worker(broker, tmp_path, "w", app_id=app_id, expected=n, linger=3.0, commit_interval=0.2, slow=0.004)
    procs.append(worker)
    deadline = time.monotonic() + 90
    committed: dict[int, int] = {}
    while time.monotonic() < deadline:
        committed = _committed(broker.bootstrap, app_id)
        if sum(committed.values()) >= 400:
            break
        assert worker.poll() is None, (tmp_path / "w" / "worker.log").read_text(errors="replace")[-3000:]
        time.sleep(0.1)
    worker.kill()  # no flush, no final commit
    worker.wait(10)
    committed = _committed(broker.bootstrap, app_id)
    assert 400 <= sum(committed.values()) < n, committed  # killed mid-stream, after many commits

    durable = {m.key.decode() for m in _changelog(broker.bootstrap, app_id, "state")}
    lost = [f"{p}:{o}" for p, end in committed.items() for o in range(end) if f"{p}:{o}" not in durable]
    assert not lost, f"{len(lost)} committed events have no changelog record, e.g. {lost[:5]}"


# -- in process: failures, wait_acked, the event context ----------------------------------------------------


class _Message:
    def __init__(self, partition: int) -> None:
        self.topic = INPUT
        self.partition = partition


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


class _InEvent:
    """Run table writes as if an agent were processing an event of ``partition`` (Faust's current_event)."""

    def __init__(self, partition: int) -> None:
        self.event = _Event(partition)

    def __enter__(self) -> None:
        from faust.streams import _current_event

        self.token = _current_event.set(weakref.ref(self.event))  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        from faust.streams import _current_event

        _current_event.reset(self.token)


async def _app_with_writer(broker: TansuBroker, app_id: str, linger: float | None,
                           producer_linger: float = 0.0, store: str = "memory://", datadir: Path | None = None,
                           max_pending_records: int = 20_000) -> tuple[Any, Any, Any]:
    """An app with a table, its checkpoint (whose writer writes the table, ``linger``) and the worker's
    overrides; ``producer_linger``: how long aiokafka holds the app's other records."""
    import faust

    from delivery import framework
    from delivery.checkpoint import Checkpoint

    class RawTable(faust.Table):
        def _serializer_from_type(self, typ: object) -> str:
            return "raw"

    where: dict[str, Any] = {"datadir": str(datadir)} if datadir else {}
    app = faust.App(app_id, broker=broker.url, store=store, producer_request_timeout=3, topic_partitions=PARTITIONS,
                    producer_linger=producer_linger, **where)
    table: Any = app.tables.add(RawTable(app, name="state", key_type=str, value_type=bytes, partitions=PARTITIONS))
    table._verified_source_topics_for_partitions.add(INPUT)  # no consumer here to compare partition counts
    await _create_topic(broker.bootstrap, table.changelog_topic_name)
    checkpoint = Checkpoint(app, linger=linger, max_pending_records=max_pending_records)
    framework.install(checkpoint)
    await app.producer.start()
    return app, table, checkpoint


async def _read(bootstrap: str, topic: str, count: int, timeout: float = 10) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(msgs)
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            pass


def test_wait_acked_sends_at_once_and_returns_when_the_broker_has_the_writes(broker: TansuBroker) -> None:
    async def scenario() -> None:
        app, table, checkpoint = await _app_with_writer(broker, "cw-acked", linger=60.0)  # the linger never fires here
        writer = checkpoint.writer
        try:
            with pytest.raises(TypeError, match="outside of stream"):
                writer.set(table, "k", b"v")  # no event: no partition to write to (and RocksDB could not pick one)
            with _InEvent(2):
                writer.set(table, "a", b"\x00\xff1")
                writer.set(table, "b", b"2")
            with _InEvent(1):
                writer.delete(table, "a")  # a tombstone on partition 1, and gone from the store
                writer.delete(table, "never-there")  # no KeyError; the tombstone still says "absent"
            assert writer.pending_records == 4
            started = time.monotonic()
            await asyncio.wait_for(writer.wait_acked(table), 10)
            assert time.monotonic() - started < 5
            assert writer.pending_records == 0
            records = await _read(broker.bootstrap, table.changelog_topic_name, 4, timeout=3)
            assert [(m.partition, m.key, m.value) for m in records] == [
                (1, b"a", None), (1, b"never-there", None), (2, b"a", b"\x00\xff1"), (2, b"b", b"2")]
            assert dict(table.data.items()) == {"b": b"2"}
            await app.producer.flush()  # nothing failed: Faust's pre-commit flush goes through
        finally:
            await asyncio.wait_for(app.producer.stop(), 20)

    asyncio.run(scenario())


def test_writes_until_sealed_are_one_record_per_key_and_reach_rocksdb_as_they_are_sent(
    broker: TansuBroker, tmp_path: Path
) -> None:
    """Between seals a key written again is one changelog record (its last value, in the place of its last
    write), and a RocksDB store gets the writes once sealed and about to be sent, read back meanwhile from
    the writer."""

    async def scenario() -> None:
        app, table, checkpoint = await _app_with_writer(broker, "cw-sealed", linger=None, store="rocksdb://",
                                                        datadir=tmp_path, max_pending_records=3)
        writer = checkpoint.writer
        read = writer.reader(table)
        db = table.data._db_for_partition(1)
        try:
            with _InEvent(1):
                writer.set(table, "k", b"v1")
                writer.set(table, "j", b"x")
                writer.set(table, "k", b"v2")
                writer.delete(table, "j")
                assert writer.pending_records == 2  # one per key
                assert (read("k"), read("j")) == (b"v2", None)
            assert (read("k"), read("j")) == (b"v2", None)  # outside of an event too
            assert db.get(b"k") is None  # not sealed yet: no commit, no linger, below max_pending_records
            with _InEvent(1):
                writer.set(table, "m", b"1")  # the third unsealed record: all are sealed, to be sent
                assert (read("k"), read("j"), read("m")) == (b"v2", None, b"1")  # sealed, not stored yet
            assert (read("k"), read("m")) == (b"v2", b"1")
            assert db.get(b"k") is None  # stored just before they are sent, after what they follow
            await asyncio.wait_for(writer.wait_acked(table), 10)
            assert (db.get(b"k"), db.get(b"j"), db.get(b"m")) == (b"v2", None, b"1")
            records = await _read(broker.bootstrap, table.changelog_topic_name, 3, timeout=3)
            assert [(m.partition, m.key, m.value) for m in records] == [(1, b"k", b"v2"), (1, b"j", None), (1, b"m", b"1")]
            assert table.data.persisted_offset(TopicPartition(table.changelog_topic_name, 1)) == records[-1].offset
            with _InEvent(1):
                assert (read("k"), read("m")) == (b"v2", b"1")  # now from the database
        finally:
            await asyncio.wait_for(app.producer.stop(), 20)
            for each in table.data._dbs.values():
                each.close()

    asyncio.run(scenario())


def test_a_rocksdb_write_that_fails_is_a_lost_write_not_a_hang(broker: TansuBroker, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from delivery.changelog import _RocksDBAccess
    from delivery.checkpoint import SendFailed

    def refuse(self: Any, partition: int, records: Any) -> None:
        raise OSError("IO error: No space left on device")

    async def scenario() -> None:
        app, table, checkpoint = await _app_with_writer(broker, "cw-store-failure", linger=None, store="rocksdb://",
                                                        datadir=tmp_path)
        writer = checkpoint.writer
        monkeypatch.setattr(_RocksDBAccess, "write", refuse)
        try:
            with _InEvent(2):
                writer.set(table, "k", b"v")
            with pytest.raises(SendFailed, match="No space left"):
                await asyncio.wait_for(writer.wait_acked(table), 10)
            with pytest.raises(SendFailed):
                await asyncio.wait_for(app.producer.flush(), 10)  # and no offset is committed past it
            assert writer.pending_records == 0 and not writer._sealed
        finally:
            await asyncio.wait_for(app.producer.stop(), 20)
            for each in table.data._dbs.values():
                each.close()

    asyncio.run(scenario())


def test_a_producer_flush_first_waits_for_the_writes_held_back(broker: TansuBroker) -> None:
    """The parcel agent writes a record's states once its issue events are acknowledged, in a task, while
    it goes on with other records (``hold``): Faust's pre-commit flush must wait for those writes and
    send them, or the record's offset would be committed ahead of its state."""

    async def scenario() -> None:
        app, table, checkpoint = await _app_with_writer(broker, "cw-held", linger=60.0)
        writer = checkpoint.writer
        try:
            async def write_later() -> None:
                await asyncio.sleep(0.3)  # e.g. the broker acknowledging the record's issue events
                with _InEvent(1):
                    writer.set(table, "later", b"1")

            held = asyncio.ensure_future(write_later())
            checkpoint.hold(held)
            await asyncio.wait_for(app.producer.flush(), 10)
            assert held.done() and writer.pending_records == 0
            assert [(m.partition, m.key) for m in await _read(broker.bootstrap, table.changelog_topic_name, 1, timeout=3)] == [
                (1, b"later")]

            async def fail() -> None:
                raise RuntimeError("the holder's own failure")

            failed = asyncio.ensure_future(fail())
            checkpoint.hold(failed)
            await asyncio.wait_for(app.producer.flush(), 10)  # waited for, not raised: the holder handles it
            assert isinstance(failed.exception(), RuntimeError)
        finally:
            await asyncio.wait_for(app.producer.stop(), 20)

    asyncio.run(scenario())


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_a_changelog_batch_goes_out_only_after_the_records_produced_before_it(
    broker: TansuBroker, tmp_path: Path, store: str
) -> None:
    """The parcel agent sends a parcel's delivery without waiting and then writes the state that says it
    was sent: a changelog batch going out on its own (the linger, not a commit) must wait until that
    delivery is acknowledged, or a ``kill -9`` between the two leaves a state claiming a delivery the
    lane baselines never got; so must a RocksDB store's write of it (a flush of its memtable would keep
    it). After a lost record, no batch goes out at all."""
    from delivery.changelog import _RocksDBAccess
    from delivery.checkpoint import SendFailed
    from delivery.framework import aiokafka_producer, note_send_failure

    store_write = _RocksDBAccess.write

    async def scenario() -> None:
        # The deliveries linger in aiokafka for 2 s, the changelog batches 50 ms: a batch is sealed while the
        # delivery written before it has not even gone out.
        app, table, checkpoint = await _app_with_writer(broker, f"cw-follows-{store[:5]}", linger=0.05, producer_linger=2.0,
                                                        store=store, datadir=tmp_path)
        writer = checkpoint.writer
        read = writer.reader(table)
        rocksdb = store.startswith("rocksdb")
        producer = aiokafka_producer(app)
        await _create_topic(broker.bootstrap, "cw-deliveries")
        await producer.send_and_wait("cw-deliveries", b"warm", partition=0)  # metadata known: sends below do not wait
        send_batch = producer.send_batch
        delivered_when_sent: list[bool] = []
        try:
            deliveries: list[asyncio.Future[Any]] = []

            async def send_batch_watched(*args: Any, **kwargs: Any) -> Any:
                delivered_when_sent.append(all(d.done() for d in deliveries))
                return await send_batch(*args, **kwargs)

            producer.send_batch = send_batch_watched
            delivered_when_stored: list[bool] = []

            def write_watched(self: Any, partition: int, records: Any) -> None:
                delivered_when_stored.append(all(d.done() for d in deliveries))
                store_write(self, partition, records)

            _RocksDBAccess.write = write_watched  # type: ignore[method-assign]
            for i in range(3):
                deliveries.append(await producer.send("cw-deliveries", b"delivery %d" % i, partition=i))
                with _InEvent(i):
                    writer.set(table, f"parcel-{i}", b"signed, delivery sent")
                    assert read(f"parcel-{i}") == b"signed, delivery sent"
            deadline = time.monotonic() + 10
            while writer.pending_records and time.monotonic() < deadline:  # the writer's linger seals and sends
                await asyncio.sleep(0.05)  # its batches: no commit, no wait_acked
            assert writer.pending_records == 0
            assert delivered_when_sent and all(delivered_when_sent), delivered_when_sent
            assert len(await _read(broker.bootstrap, table.changelog_topic_name, 3, timeout=3)) == 3
            if rocksdb:  # stored once delivered, not before
                assert delivered_when_stored and all(delivered_when_stored), delivered_when_stored
                assert [table.data._db_for_partition(i).get(f"parcel-{i}".encode()) for i in range(3)] == [b"signed, delivery sent"] * 3

            note_send_failure(app, "cw-deliveries: KafkaTimeoutError: a delivery was lost")
            sent_before = len(delivered_when_sent)
            with _InEvent(0):
                writer.set(table, "parcel-after-the-loss", b"signed, delivery lost")
            with pytest.raises(SendFailed):
                await asyncio.wait_for(writer.wait_acked(table), 10)
            assert len(delivered_when_sent) == sent_before  # never handed to the producer
            assert len(await _read(broker.bootstrap, table.changelog_topic_name, 4, timeout=2)) == 3
            if rocksdb:
                assert table.data._db_for_partition(0).get(b"parcel-after-the-loss") is None  # nor stored
        finally:
            producer.send_batch = send_batch
            _RocksDBAccess.write = store_write  # type: ignore[method-assign]
            await asyncio.wait_for(app.producer.stop(), 20)
            if rocksdb:
                for each in table.data._dbs.values():
                    each.close()

    asyncio.run(scenario())


def test_a_failed_batch_makes_this_and_every_later_producer_flush_raise(broker: TansuBroker) -> None:
    from delivery.checkpoint import SendFailed

    async def scenario() -> None:
        app, table, checkpoint = await _app_with_writer(broker, "cw-failure", linger=60.0)
        writer, failures = checkpoint.writer, checkpoint.failures.first
        try:
            with _InEvent(0):
                writer.set(table, "before", b"1")
            await app.producer.flush()  # Faust's pre-commit flush: sent, acknowledged, no error
            assert failures == []
            assert [m.key for m in await _read(broker.bootstrap, table.changelog_topic_name, 1)] == [b"before"]

            broker.stop()  # the broker goes away: the next batch expires after producer_request_timeout (3 s)
            with _InEvent(3):
                writer.set(table, "lost", b"2")
            wait = asyncio.create_task(writer.wait_acked(table))
            with pytest.raises(SendFailed, match=f"{table.changelog_topic_name}: "):
                await asyncio.wait_for(app.producer.flush(), 30)
            assert len(failures) == 1 and failures[0].startswith(table.changelog_topic_name)
            with pytest.raises(SendFailed):  # the writer that waited for its write hears of it too
                await wait
            for _ in range(2):  # not once: every later commit is refused, with nothing pending
                with pytest.raises(SendFailed):
                    await app.producer.flush()
        finally:
            await asyncio.wait_for(app.producer.stop(), 30)

    asyncio.run(scenario())


def test_the_producer_keeps_tracking_the_changelog_topics_it_writes(broker: TansuBroker) -> None:
    """aiokafka refreshes metadata only for the topics its client tracks; a changelog known from a
    full-metadata response but not tracked vanishes from the metadata at the next refresh, and a batch
    pending for it then waits for ever (a worker stalled that way). With the worker's patch
    (delivery/framework.py, installed with the checkpoint as the worker does) the writer's topics stay tracked."""

    async def scenario() -> None:
        app, table, checkpoint = await _app_with_writer(broker, "cw-tracked", linger=60.0)
        writer = checkpoint.writer
        try:
            client = writer._producer().client
            await client.force_metadata_update()  # nothing tracked yet: metadata of every topic
            assert client.cluster.partitions_for_topic(table.changelog_topic_name)
            with _InEvent(0):
                writer.set(table, "a", b"1")
            await asyncio.wait_for(writer.wait_acked(table), 10)
            await _create_topic(broker.bootstrap, "cw-another-topic")
            await client._wait_on_metadata("cw-another-topic")  # what a first send to another topic does
            await client.force_metadata_update()
            assert client.cluster.partitions_for_topic(table.changelog_topic_name), "the changelog fell out of the metadata"
            with _InEvent(0):
                writer.set(table, "b", b"2")
            await asyncio.wait_for(writer.wait_acked(table), 10)
        finally:
            await asyncio.wait_for(app.producer.stop(), 20)

    asyncio.run(scenario())
