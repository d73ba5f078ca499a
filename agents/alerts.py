"""Issue alert routing: issue events → routes (config/alert_routes.yaml) → chat robots, webhooks, Kafka.

The issues topic is keyed by parcel, so one lane's parcels are spread over every partition; lane incidents
need to see a whole lane in one place. ``lane_rekey`` forwards each issue event to the alert-routing
partition of its lane (the events of one issues record that share a partition in one record, a batch record
when several), and ``alert_router`` hands them to this worker's ``AlertRouter`` (``alerting/``), which never
blocks the stream (bounded queues, retries, spill to disk). The router counts the robots' rate limits in the
issue store's Redis, so every worker of the deployment keeps within them together; a message a robot refuses
for good goes to the dead-letter topic.

Only valid issue events are forwarded (the issue sink dead-letters the others, from the issues topic), and
only as much of each as the router will use (``AlertRouter.needed``): the whole event when a route may send
it, the few fields lane incidents count by when only they look at it, nothing otherwise. An
invalid record or element on the alert-routing topic itself, which only someone else could have written,
is dead-lettered by ``alert_router`` with its reason while the rest of its record is routed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from faust.types import EventT, StreamT
from mode import Service

from alerting import AlertRouter, Refusal, load_routes
from delivery.batch_records import is_batch, keyed_records, record_events
from domain.events import InvalidEvent
from issue_queue.store import check_issue_event, is_issue_event

if TYPE_CHECKING:
    from . import StreamApp

log = logging.getLogger("parcelwatch.alerts")


class AlertRouting:
    def __init__(self, stream: StreamApp) -> None:
        self.stream = stream
        self.app = app = stream.app
        self.topics = stream.topology
        self.partitions = stream.settings.app.partitions
        routes = load_routes(data_dir=stream.settings.app.data_dir)
        # The issue store's Redis: the robots' rate limits and penalties are counted there by every worker.
        self.router = AlertRouter(routes, labels=stream.settings.labels, kafka_send=self._kafka_send,
                                  redis=stream.store.redis, redis_prefix=stream.store.prefix)
        self.router.dead_letter = self._dead_letter
        stream.recorder.watch_alert_router(self.router)
        app.service(_RouterLifetime(self.router))  # type: ignore[arg-type]  # (an instance is started as it is)
        app.agent(self.topics.issues, name="lane_rekey")(self.lane_rekey)
        app.agent(self.topics.alert_routing, name="alert_router")(self.alert_router)

    async def _kafka_send(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self.app.producer.send_and_wait(topic, key, value, partition=None, timestamp=None, headers=None)

    async def lane_rekey(self, stream: StreamT[bytes]) -> None:
        async for raw in stream:
            try:
                issues = self.stream.issue_decodes.events(raw)  # (shared with the issue sink: read-only)
            except InvalidEvent:
                continue  # (dead-lettered with its reason by the issue sink, which reads the same record)
            try:
                # One record per alert-routing partition (a batch record when several), in their order. Only
                # valid issue events (the sink dead-letters the others from this same record, once), and of
                # those only what the router will look at: most match no route and only feed lane incidents.
                for key, partition, record in keyed_records(alert_routing_pairs(self.router, issues), self.partitions):
                    await self.topics.alert_routing.send(key=key, value=record, partition=partition)
            except Exception:
                log.exception("could not forward issue events to alert routing")

    async def alert_router(self, stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            # The lane re-keying forwards only valid issue events; anything else here was written by someone
            # else (or a bug): dead-lettered with its reason, the rest of its record routed.
            try:
                issues = record_events(event.value)
            except InvalidEvent as exc:
                await self._reject(event, exc, None)
                continue
            batch = is_batch(event.value)
            for i, issue in enumerate(issues):
                try:
                    check_issue_event(issue)
                except InvalidEvent as exc:
                    await self._reject(event, exc, (i, issue) if batch else None)
                    continue
                try:
                    await self.router.submit(issue)
                except Exception:
                    log.exception("could not route an issue event")

    async def _reject(self, event: EventT, exc: InvalidEvent, element: tuple[int, Any] | None) -> None:
        await self.stream.dead_letters.reject(event, exc, element)

    async def _dead_letter(self, refusal: Refusal) -> None:
        """A message a destination refused for good goes to the dead-letter topic: the envelope as JSON, the
        platform's answer as the reason. (Counted by the router's ``on_refused``.)"""
        headers = {
            "pw-reason": f"destination: {refusal.detail}"[:1000].encode(),
            "pw-field": b"destination",
            "pw-alert-route": refusal.route.encode(),
            "pw-alert-destination": refusal.destination.encode(),
            "pw-alert-refusal": refusal.reason.encode(),
        }
        await self.topics.dead_letter.send(key=str(refusal.envelope.get("id", "")), value=orjson.dumps(refusal.envelope),
                                           headers=headers)


class _RouterLifetime(Service):
    """Starts the router with the worker and closes it (flushing digests, spooling the rest) on stop."""

    def __init__(self, router: AlertRouter) -> None:
        super().__init__()
        self.router = router

    async def on_start(self) -> None:
        await self.router.start()

    async def on_stop(self) -> None:
        await self.router.close(timeout=5.0)


def alert_routing_pairs(router: AlertRouter, issues: list[Any]) -> list[tuple[str, bytes]]:
    """What the lane re-keying forwards of a record's issue events: for each valid one the router looks at,
    its lane (the key) and what the router needs of it."""
    pairs = []
    for issue in issues:
        needed = router.needed(issue) if is_issue_event(issue) else None
        if needed is not None:
            pairs.append((str(issue.get("lane") or f"subject:{issue.get('subject')}"), orjson.dumps(needed)))
    return pairs
