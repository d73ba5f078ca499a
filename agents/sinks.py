"""The issue sink: issue events from the ``issues`` topic into the Redis queue, idempotently.

The issues topic is the source of truth: when Redis is away the sink holds its batch and retries with
backoff (the parcel agent keeps running), and the at-least-once redelivery after a crash is harmless
because ``IssueStore.apply_events`` ignores what it has already applied. A record may carry one issue
event or a batch of them (batching.py: the parcel agent sends one record per partition for all the issue
events of an input record or a sweep); an invalid one is dead-lettered alone with its reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.types import EventT, StreamT
from redis.exceptions import RedisError

from batching import is_batch, record_events
from issue_store import IssueStore, check_issue_event
from models import InvalidEvent

from . import telemetry as metrics
from .base import app, issues_topic, settings
from .deadletter import dead_letter

log = logging.getLogger("parcelwatch.sink")

store = IssueStore.from_url(settings.app.redis_url)
redis_state = {"up": True, "last_error": ""}
BATCH = 500  # records taken at once, and issue events per Redis pipeline
# How long take() gathers records before handing over fewer than BATCH: its timer fires every so often
# whether or not a record is waiting, so this is also how late an issue reaches the queue once the
# topic is quiet. The parcel agent already sends each input record's or sweep's issue events as one
# record per partition, so a short wait loses little pipelining (a backlog still fills BATCH at once);
# 0.2 s held the end of every sweep's issues that long (the last second of the ceiling runs). Measured:
# (c*) +14% in three alternating pairs; an idle worker 1.5% -> 1.8-2.4% of a core (the timer's wakeups).
TAKE_WITHIN_SECONDS = 0.02


@app.agent(issues_topic)
async def issue_sink(stream: StreamT[bytes]) -> None:
    # (take_events: take's buffering, with each record's event for dead-lettering; acked, as in take,
    # only once the body has written them. StreamT's type omits it; faust.Stream has it.)
    async for records in stream.take_events(BATCH, within=TAKE_WITHIN_SECONDS):  # type: ignore[attr-defined]
        events: list[tuple[dict[str, Any], float, float]] = []
        for record in records:
            events.extend(await _valid_issue_events(record))
            # Decoded a pipeline's worth at a time: 500 batch records of 500 events each, decoded at
            # once, would hold a quarter of a million dicts.
            while len(events) >= BATCH:
                await _store(events[:BATCH])
                del events[:BATCH]
        if events:
            await _store(events)


async def _valid_issue_events(record: EventT) -> list[tuple[dict[str, Any], float, float]]:
    """The issue events of one record, each with its checked times (``check_issue_event``); each invalid
    one (or the whole record, when it is not JSON) goes to the dead-letter topic with its reason instead
    of failing the pipeline it would have joined."""
    try:
        elements = record_events(record.value)
    except InvalidEvent as exc:
        await _reject(record, exc, None)
        return []
    batch = is_batch(record.value)
    valid = []
    for i, element in enumerate(elements):
        try:
            valid.append((element, *check_issue_event(element)))
        except InvalidEvent as exc:
            await _reject(record, exc, (i, element) if batch else None)
    return valid


async def _reject(record: EventT, exc: InvalidEvent, element: tuple[int, Any] | None) -> None:
    reason = await dead_letter(record, exc, element)
    metrics.observe_invalid_issue_event(reason)


async def _store(events: list[tuple[dict[str, Any], float, float]]) -> None:
    """One pipeline of issue events into Redis, retried with backoff while Redis is away."""
    backoff = 0.2
    while True:
        try:
            results = await store.apply_checked(events)
            metrics.observe_issue_events_applied(results)
            if not redis_state["up"]:
                log.warning("Redis is back; issue writes resumed")
            redis_state.update(up=True, last_error="")
            metrics.set_redis_up(True)
            return
        except (RedisError, OSError) as exc:
            if redis_state["up"]:
                log.error("Redis unavailable (%s); holding %d issue events and retrying", exc, len(events))
            redis_state.update(up=False, last_error=str(exc)[:200])
            metrics.set_redis_up(False)
            metrics.redis_retry()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
