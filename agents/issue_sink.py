"""The issue sink: issue events from the ``issues`` topic into the Redis queue, idempotently.

The issues topic is the source of truth: when Redis is away the sink holds its batch and retries with
backoff (the parcel agent keeps running), and the at-least-once redelivery after a crash is harmless
because ``IssueStore.apply_events`` ignores what it has already applied. Before its first write in a broker
lifetime it reconciles the queue with it: after the embedded broker came back empty, the issues still
active were raised from parcel states that are gone, and are marked so (``reconcile_broker_lifetime``). A record may carry one issue
event or a batch of them (the parcel agent sends one record per partition for all the issue events of
an input record or a sweep); an invalid one is dead-lettered alone with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from faust.types import EventT, StreamT
from redis.exceptions import RedisError

from delivery.batch_records import is_batch
from domain.events import InvalidEvent
from issue_queue.store import check_issue_event

if TYPE_CHECKING:
    from . import StreamApp

log = logging.getLogger("parcelwatch.sink")
BATCH = 500  # records taken at once, and issue events per Redis pipeline
# How long take() gathers records before handing over fewer than BATCH: its timer fires every so often
# whether or not a record is waiting, so this is also how late an issue reaches the queue once the topic
# is quiet. The parcel agent already sends each input record's or sweep's issue events as one record per
# partition, so a short wait loses little pipelining (a backlog still fills BATCH at once).
TAKE_WITHIN_SECONDS = 0.02


class IssueSink:
    def __init__(self, stream: StreamApp) -> None:
        self.stream = stream
        self.store = stream.store
        self.recorder = stream.recorder
        # Whether the last Redis write went through, and why not (for /healthz).
        self.redis_up = True
        self.last_error = ""
        # The broker lifetime the queue was reconciled with, and how many issues that marked (for /healthz).
        self.reconciled: str | None = None
        self.marked_state_lost = 0
        stream.app.agent(stream.topology.issues, name="issue_sink")(self.run)

    async def run(self, stream: StreamT[bytes]) -> None:
        await self._store([])  # (reconciled before the first issue event of this lifetime, Redis permitting)
        # (take_events: take's buffering, with each record's event for dead-lettering; acked, as in take, only
        # once the body has written them. StreamT's type omits it; faust.Stream has it.)
        async for records in stream.take_events(BATCH, within=TAKE_WITHIN_SECONDS):  # type: ignore[attr-defined]
            events: list[tuple[dict[str, Any], float, float]] = []
            for record in records:
                events.extend(await self._valid_issue_events(record))
                # Decoded a pipeline's worth at a time: 500 batch records of 500 events each, decoded at once,
                # would hold a quarter of a million dicts.
                while len(events) >= BATCH:
                    await self._store(events[:BATCH])
                    del events[:BATCH]
            if events:
                await self._store(events)

    async def _valid_issue_events(self, record: EventT) -> list[tuple[dict[str, Any], float, float]]:
        """The issue events of one record, each with its checked times (``check_issue_event``); each invalid
        one (or the whole record, when it is not JSON) goes to the dead-letter topic with its reason instead
        of failing the pipeline it would have joined."""
        try:
            elements = self.stream.issue_decodes.events(record.value)  # (shared with the lane re-keying: read-only)
        except InvalidEvent as exc:
            await self._reject(record, exc, None)
            return []
        batch = is_batch(record.value)
        valid = []
        for i, element in enumerate(elements):
            try:
                valid.append((element, *check_issue_event(element)))
            except InvalidEvent as exc:
                await self._reject(record, exc, (i, element) if batch else None)
        return valid

    async def _reject(self, record: EventT, exc: InvalidEvent, element: tuple[int, Any] | None) -> None:
        await self.stream.dead_letters.reject(record, exc, element)
        self.recorder.observe_invalid_issue_event()

    async def _store(self, events: list[tuple[dict[str, Any], float, float]]) -> None:
        """One pipeline of issue events into Redis, retried with backoff while Redis is away."""
        backoff = 0.2
        while True:
            try:
                if self.reconciled != self.stream.broker_lifetime:
                    await self._reconcile()
                results = await self.store.apply_checked(events)
                self.recorder.observe_issue_events_applied(results)
                if not self.redis_up:
                    log.warning("Redis is back; issue writes resumed")
                self.redis_up, self.last_error = True, ""
                self.recorder.set_redis_up(True)
                return
            except (RedisError, OSError) as exc:
                if self.redis_up:
                    log.error("Redis unavailable (%s); holding %d issue events and retrying", exc, len(events))
                self.redis_up, self.last_error = False, str(exc)[:200]
                self.recorder.set_redis_up(False)
                self.recorder.redis_retry()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _reconcile(self) -> None:
        lifetime = self.stream.broker_lifetime
        assert lifetime is not None
        marked = await self.store.reconcile_broker_lifetime(lifetime, time.time())
        self.reconciled = lifetime
        if marked:
            self.marked_state_lost = marked
            log.warning("broker lifetime %s is new: %d active issues raised from parcel states that went with the old "
                        "one are marked auto_resolved (state_lost)", lifetime, marked)
