"""The framework ceiling: a Faust agent that iterates raw events and does (almost) nothing else.

Started by ``bench.ceiling`` as ``python -m bench.empty_agent -L uvloop worker``; it prints
``DONE <events> <seconds> <CPU seconds>`` once it has seen ``BENCH_EVENTS`` events (timed from the first
one; the CPU seconds are the whole process's over the same span).

``BENCH_TABLE_WRITES=1``: one raw-bytes table write per event (the event's key -> its value), the least
a stateful Faust app does per event (each write is one changelog record). ``BENCH_TABLE_WRITES=direct``:
the same writes through ``delivery/changelog.py``'s ``ChangelogWriter`` (the store, and changelog records appended
to aiokafka record batches: no Faust message per record). ``BENCH_BATCHED=1``: each record carries a
JSON array of ``[key, event]`` pairs instead of one event (events are counted, not records), to measure
what batching records on the ingest side would give.
"""

from __future__ import annotations

import os
import sys
import time

import faust
import orjson

from devtools.process import free_port

TOPIC = os.environ["BENCH_TOPIC"]
EXPECTED = int(os.environ["BENCH_EVENTS"])
TABLE_WRITES_MODE = os.environ.get("BENCH_TABLE_WRITES", "0")
TABLE_WRITES = TABLE_WRITES_MODE in ("1", "direct")
DIRECT = TABLE_WRITES_MODE == "direct"
BATCHED = os.environ.get("BENCH_BATCHED") == "1"

app = faust.App(
    # A consumer group of its own per run: a group that an earlier run committed offsets in would start
    # part-way through the topic and never see all the events.
    f"bench-empty-agent-{os.getpid()}",
    broker=os.environ["BENCH_BROKER"],
    store="memory://",
    datadir=os.environ.get("BENCH_DATADIR", "/tmp/bench-empty-agent"),
    web_enabled=False,
    # (the worker command binds its web server even so: a loopback port of its own, not :6066 on every
    # interface, which a running `make run` holds)
    web_port=int(os.environ.get("BENCH_WEB_PORT") or free_port()),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "4")),
    producer_linger=0.005,  # as parcelwatch's default
)
topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


class RawTable(faust.Table):
    """Raw bytes in the store and the changelog, as parcelwatch's tables (agents/topology.py)."""

    def _serializer_from_type(self, typ: object) -> str:
        return "raw"


table = RawTable(app, name="bench-state", key_type=bytes, value_type=bytes,
                 partitions=int(os.environ.get("BENCH_PARTITIONS", "4")), beacon=app.tables.beacon)
app.tables.add(table)

if DIRECT:
    from delivery import framework
    from delivery.checkpoint import Checkpoint

    checkpoint = Checkpoint(app)
    framework.install(checkpoint)  # the worker's commit order and overrides, as agents/__init__.py installs them
    writer = checkpoint.writer

    def write(key: bytes, value: bytes) -> None:
        writer.set(table, key, value)
else:

    def write(key: bytes, value: bytes) -> None:
        table[key] = value


class Counter:
    seen = 0
    started = 0.0
    cpu_started = 0.0

    @classmethod
    def add(cls, n: int) -> None:
        if cls.seen == 0:
            cls.started = time.perf_counter()
            cls.cpu_started = time.process_time()
        cls.seen += n
        if cls.seen >= EXPECTED:
            print(f"DONE {cls.seen} {time.perf_counter() - cls.started:.6f} {time.process_time() - cls.cpu_started:.6f}",
                  flush=True)
            sys.stdout.flush()
            os._exit(0)


@app.agent(topic)
async def count(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        if BATCHED:
            pairs = orjson.loads(event.value)
            if TABLE_WRITES:
                for key, value in pairs:
                    write(key.encode(), orjson.dumps(value))
            Counter.add(len(pairs))
        else:
            if TABLE_WRITES:
                write(event.key, event.value)
            Counter.add(1)


if __name__ == "__main__":
    if not DIRECT:  # Faust as it is, but for the terminal spinner no worker of ours runs with
        from delivery import framework

        framework.disable_worker_spinner()
    app.main()
