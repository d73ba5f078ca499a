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
