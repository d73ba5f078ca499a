"""Issue alert routing: issue events → routes (config/alert_routes.yaml) → chat robots, webhooks, Kafka.

The issues topic is keyed by parcel, so one lane's parcels are spread over every partition; lane
incidents need to see a whole lane in one place. ``lane_rekey`` forwards each issue event to the
alert-routing partition of its lane (the events of one issues record that share a partition in one
record, a batch record when several: batching.py), and ``alert_router`` hands them to this worker's
``AlertRouter``, which never blocks the stream (bounded queues, retries, spill to disk).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from faust.types import StreamT
from mode import Service

from alerting import AlertRouter, load_routes
from batching import keyed_records, record_events
from models import InvalidEvent

from . import telemetry
from .base import alert_routing_topic, app, issues_topic, settings

log = logging.getLogger("parcelwatch.alerts")

routes = load_routes(data_dir=settings.app.data_dir)


async def _kafka_send(topic: str, key: bytes | None, value: bytes) -> None:
    await app.producer.send_and_wait(topic, key, value, partition=None, timestamp=None, headers=None)


router = AlertRouter(routes, labels=settings.labels, kafka_send=_kafka_send)
telemetry.watch_alert_router(router)


@app.service
class AlertRouterService(Service):
    """Starts the router with the worker and closes it (flushing digests, spooling the rest) on stop."""

    async def on_start(self) -> None:
        await router.start()

    async def on_stop(self) -> None:
        await router.close(timeout=5.0)


@app.agent(issues_topic)
async def lane_rekey(stream: StreamT[bytes]) -> None:
    async for raw in stream:
        try:
            issues = record_events(raw)
        except InvalidEvent:
            continue  # (dead-lettered with its reason by the issue sink, which reads the same record)
        try:
            # One record per alert-routing partition (a batch record when several), in their order.
            pairs = [(_lane_key(issue), orjson.dumps(issue)) for issue in issues if isinstance(issue, dict)]
            for key, partition, record in keyed_records(pairs, settings.app.partitions):
                await alert_routing_topic.send(key=key, value=record, partition=partition)
        except Exception:
            log.exception("could not forward issue events to alert routing")


def _lane_key(issue: dict[str, Any]) -> str:
    return str(issue.get("lane") or f"subject:{issue.get('subject')}")


@app.agent(alert_routing_topic)
async def alert_router(stream: StreamT[bytes]) -> None:
    async for raw in stream:
        try:
            issues = record_events(raw)
        except Exception:
            log.exception("could not decode an alert-routing record")
            continue
        for issue in issues:
            try:
                await router.submit(issue)
            except Exception:
                log.exception("could not route an issue event")
