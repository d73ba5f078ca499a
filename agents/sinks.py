"""The issue sink: issue events from the ``issues`` topic into the Redis queue, idempotently.

The issues topic is the source of truth: when Redis is away the sink holds its batch and retries with
backoff (the parcel agent keeps running), and the at-least-once redelivery after a crash is harmless
because ``IssueStore.apply_events`` ignores what it has already applied.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from faust.types import StreamT
from redis.exceptions import RedisError

from issue_store import IssueStore

from . import telemetry as metrics
from .base import app, issues_topic, settings

log = logging.getLogger("parcelwatch.sink")

store = IssueStore.from_url(settings.app.redis_url)
redis_state = {"up": True, "last_error": ""}
BATCH = 500


@app.agent(issues_topic)
async def issue_sink(stream: StreamT[bytes]) -> None:
    async for values in stream.take(BATCH, within=0.2):
        events = []
        for raw in values:
            try:
                events.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                log.error("skipped an undecodable issue event (%d bytes)", len(raw))
        backoff = 0.2
        while events:
            try:
                await store.apply_events(events)
                if not redis_state["up"]:
                    log.warning("Redis is back; issue writes resumed")
                redis_state.update(up=True, last_error="")
                metrics.set_redis_up(True)
                break
            except (RedisError, OSError) as exc:
                if redis_state["up"]:
                    log.error("Redis unavailable (%s); holding %d issue events and retrying", exc, len(events))
                redis_state.update(up=False, last_error=str(exc)[:200])
                metrics.set_redis_up(False)
                metrics.redis_retry()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
