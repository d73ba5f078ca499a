"""The embedded broker's lifetimes: a worker notices at once that the broker went away or came back empty.

(The whole story with real workers, input flowing and the queue compared with a replay is
``tests/test_fault_replay.py::test_a_broker_that_comes_back_empty_is_a_new_lifetime_for_running_workers``.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from delivery.tansu import LifetimeWatch, broker_incarnation, broker_refuses, read_incarnation
from devtools.broker import TansuBroker

pytestmark = pytest.mark.integration


def test_a_restarted_broker_is_another_lifetime_and_a_stopped_one_refuses(tmp_path: Path) -> None:
    broker = TansuBroker(tmp_path / "broker").start()
    restarts: list[str] = []
    try:
        first = asyncio.run(broker_incarnation(broker.bootstrap))
        assert asyncio.run(read_incarnation(broker.bootstrap)) == first
        watch = LifetimeWatch(broker.bootstrap, lambda: first, restart=lambda: restarts.append("restart"))
        assert asyncio.run(watch.check()) is False and watch.lost is None
        assert asyncio.run(broker_refuses(broker.bootstrap)) is False
        broker.stop()
        assert asyncio.run(broker_refuses(broker.bootstrap)) is True  # gone: it will come back empty
        broker = TansuBroker(tmp_path / "broker", port=broker.port).start()
        assert asyncio.run(read_incarnation(broker.bootstrap)) is None  # the marker went with the topics
        assert asyncio.run(watch.check()) is True
        assert restarts == ["restart"] and watch.lost is not None and "came back empty" in watch.lost
        # Once another worker has written the new lifetime's marker, it is simply another id.
        second = asyncio.run(broker_incarnation(broker.bootstrap))
        assert second != first
        other = LifetimeWatch(broker.bootstrap, lambda: first, restart=lambda: restarts.append("other"))
        assert asyncio.run(other.check()) is True and restarts[-1] == "other"
        same = LifetimeWatch(broker.bootstrap, lambda: second, restart=lambda: restarts.append("wrong"))
        assert asyncio.run(same.check()) is False and "wrong" not in restarts
    finally:
        broker.stop()


def test_tansu_writes_records_sent_blind_into_a_new_lifetime(tmp_path: Path) -> None:
    """Why a worker restarts as soon as the broker is gone (delivery/tansu.py, difference 6): a client that
    kept the old lifetime's metadata writes into partitions the new broker does not have, and the first
    writes of a fresh client then fail. (If Tansu stops doing this, this test fails: the restart could go.)"""

    async def scenario() -> tuple[list[bool], list[bool]]:
        broker = TansuBroker(tmp_path / "b").start()
        stale = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
        await stale.start()
        try:
            await (await stale.send("lifetimes", b"old", partition=0))
            broker.stop()
            await asyncio.sleep(0.5)
            broker = TansuBroker(tmp_path / "b", port=broker.port).start()
            blind = [await _sent(stale, b"blind") for _ in range(2)]
            fresh_client = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
            await fresh_client.start()
            try:
                fresh = [await _sent(fresh_client, b"fresh") for _ in range(3)]
            finally:
                await fresh_client.stop()
            return blind, fresh
        finally:
            await stale.stop()
            broker.stop()

    blind, fresh = asyncio.run(scenario())
    assert blind == [True, True]  # taken, though the topic does not exist in this lifetime
    assert fresh == [False, False, True]  # the fresh client's first writes collide with them


async def _sent(producer: AIOKafkaProducer, value: bytes) -> bool:
    try:
        await (await producer.send("lifetimes", value, partition=0))
        return True
    except Exception:  # noqa: BLE001 - the broker's refusal is what is measured
        return False
