"""kafka_tools: aiokafka's own CancelledError on stop is swallowed; a real cancellation is not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kafka_tools import stop_consumer


class _RaisesOnStop:
    """Stands in for an AIOKafkaConsumer whose stop() re-raises its internal task's cancellation."""

    async def stop(self) -> None:
        raise asyncio.CancelledError


class _SlowStop:
    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def stop(self) -> None:
        self.started.set()
        await asyncio.sleep(30)


def test_aiokafkas_internal_cancellation_does_not_end_the_caller() -> None:
    async def caller() -> str:
        await stop_consumer(_RaisesOnStop())  # type: ignore[arg-type]
        return "still running"

    assert asyncio.run(caller()) == "still running"


def test_a_real_cancellation_of_the_caller_still_propagates() -> None:
    async def main() -> Any:
        consumer = _SlowStop()
        task = asyncio.create_task(stop_consumer(consumer))  # type: ignore[arg-type]
        await consumer.started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(main()) is True


# -- a record that failed to send stops every later commit ------------------------------------------------


@pytest.fixture
def guarded() -> Any:
    import kafka_tools

    kafka_tools.patch_send_failure_guard()
    kafka_tools.send_failures.clear()
    yield kafka_tools
    kafka_tools.send_failures.clear()


async def _published(topic: Any, error: BaseException | None) -> Any:
    """Run Faust's send callback the way aiokafka's delivery does, with a result or an error."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
    message = topic.as_future_message(key=b"ZTO:1", value=b"{}")
    topic._on_published(fut, message, producer=None, state=None)
    return message


class _Buffer:
    async def flush(self) -> None:
        return None


class _ProducerStub:
    """What Faust's aiokafka Producer.flush touches: its buffer, no aiokafka producer yet."""

    def __init__(self) -> None:
        self.buffer = _Buffer()
        self._producer = None
        self._transaction_producers: dict[str, Any] = {}


def test_a_failed_send_makes_every_later_flush_refuse_so_nothing_is_committed(guarded: Any) -> None:
    import faust
    from aiokafka.errors import KafkaTimeoutError
    from faust.transport.drivers.aiokafka import Producer

    async def scenario() -> None:
        app = faust.App("test-send-guard", broker="kafka://127.0.0.1:9", store="memory://")
        topic = app.topic("parcelwatch-order-facts", key_type=bytes, value_type=bytes)

        await _published(topic, None)
        await Producer.flush(_ProducerStub())  # type: ignore[arg-type]  # all delivered: commits go ahead
        assert guarded.send_failures == []

        failed = await _published(topic, KafkaTimeoutError("batch expired"))
        assert isinstance(failed.exception(), KafkaTimeoutError)  # Faust's own handling is kept
        assert len(guarded.send_failures) == 1
        assert guarded.send_failures[0].startswith("parcelwatch-order-facts: KafkaTimeoutError")
        for _ in range(2):  # not once: every commit after the failure is refused
            with pytest.raises(guarded.SendFailed, match="parcelwatch-order-facts"):
                await Producer.flush(_ProducerStub())  # type: ignore[arg-type]

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_topic_produced_to_stays_in_the_producers_metadata(broker: Any) -> None:
    """aiokafka asks a metadata refresh for its tracked topics only and replaces what it knew with the
    answer; a topic it learnt at start-up and sends to without ever tracking it vanished at the next
    refresh (the first send to a newer topic), stranding whatever was queued for it."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    import kafka_tools

    kafka_tools.patch_track_produced_topics()

    async def create(*names: str) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, 2, 1) for n in names])
        finally:
            await admin.close()

    async def scenario() -> None:
        await create("kt-early")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()  # start-up metadata: every topic, "kt-early" included
        try:
            assert producer.client.cluster.partitions_for_topic("kt-early")
            await (await producer.send("kt-early", b"1", partition=0))
            await create("kt-late")
            await (await producer.send("kt-late", b"2", partition=0))  # tracks "kt-late": a refresh for it
            await producer.client.force_metadata_update()
            assert producer.client.cluster.partitions_for_topic("kt-early"), "kt-early fell out of the metadata"
            await asyncio.wait_for(await producer.send("kt-early", b"3", partition=1), 10)
        finally:
            await producer.stop()

    asyncio.run(scenario())
