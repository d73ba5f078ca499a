"""Small helpers around the aiokafka clients the worker's side consumers and the embedded tools open."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from delivery.framework import cluster_metadata


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer``; a CancelledError that aiokafka raises from its own tasks is not ours to obey.

    With aiokafka 0.14, stopping a consumer that never fetched awaits its cancelled committed-offsets
    task and re-raises that task's CancelledError. Left alone, it ends the caller's task as if the caller
    had been cancelled (the live lane-baseline feed died at start-up this way). A real cancellation of
    the calling task is still raised.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int] | None:
    """``topic``'s partitions as the cluster has them now; None when it has no such topic. Creates nothing.

    Not ``consumer.partitions_for_topic``: that reads the metadata the consumer holds, and what its start
    fetched names no topic on Apache Kafka (aiokafka asks with an empty topic list, which a metadata request
    of version 1 or later reads as "no topics"; Tansu answers it with every topic), nor one created since.
    This asks for every topic (a null list), which no broker auto-creates from.
    """
    partitions: set[int] | None = (await cluster_metadata(consumer)).partitions_for_topic(topic)
    return partitions
