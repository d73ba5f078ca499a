"""Issue alert routing: issue events → routes (config/alert_routes.yaml) → chat robots, webhooks, Kafka.

The issues topic is keyed by parcel, so one lane's parcels are spread over every partition; lane
incidents need to see a whole lane in one place. ``lane_rekey`` forwards each issue event to the
alert-routing topic keyed by lane, and ``alert_router`` hands them to this worker's ``AlertRouter``,
which never blocks the stream (bounded queues, retries, spill to disk).
"""

from __future__ import annotations

import logging

import orjson
from faust.types import StreamT
from mode import Service

from alerting import AlertRouter, load_routes

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
            issue = orjson.loads(raw)
            await alert_routing_topic.send(key=issue.get("lane") or f"subject:{issue.get('subject')}", value=raw)
        except Exception:
            log.exception("could not forward an issue event to alert routing")


@app.agent(alert_routing_topic)
async def alert_router(stream: StreamT[bytes]) -> None:
    async for raw in stream:
        try:
            await router.submit(orjson.loads(raw))
        except Exception:
            log.exception("could not route an issue event")
