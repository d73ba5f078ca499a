"""The framework ceiling: a Faust agent that iterates raw events and does nothing else.

Started by ``bench.ceiling`` as ``python -m bench.empty_agent -L uvloop worker``; it prints
``DONE <events> <seconds>`` once it has seen ``BENCH_EVENTS`` events (timed from the first one).
"""

from __future__ import annotations

import os
import sys
import time

import faust

TOPIC = os.environ["BENCH_TOPIC"]
EXPECTED = int(os.environ["BENCH_EVENTS"])

app = faust.App(
    "bench-empty-agent",
    broker=os.environ["BENCH_BROKER"],
    store="memory://",
    datadir=os.environ.get("BENCH_DATADIR", "/tmp/bench-empty-agent"),
    web_enabled=False,
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "4")),
)
topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


@app.agent(topic)
async def count(stream: faust.StreamT[bytes]) -> None:
    seen = 0
    started = 0.0
    async for _value in stream:
        if seen == 0:
            started = time.perf_counter()
        seen += 1
        if seen == EXPECTED:
            print(f"DONE {seen} {time.perf_counter() - started:.6f}", flush=True)
            sys.stdout.flush()
            os._exit(0)


if __name__ == "__main__":
    from kafka_tools import disable_worker_spinner

    disable_worker_spinner()  # the same worker setup as parcelwatch's (see kafka_tools)
    app.main()
