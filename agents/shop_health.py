"""The shops' logistics health: each parcel's shipping, pickup and signature (the ``shop_logistics`` topic,
written by the parcel agent) counted into daily aggregates per shop in Redis (``issue_queue/health.py``).

Counting is idempotent per milestone (a redelivered record counts once); when Redis is away the agent
holds its batch and retries with backoff, as the issue sink does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from faust.types import StreamT
from redis.exceptions import RedisError

from delivery.batch_records import record_events
from domain.events import InvalidEvent
from issue_queue.health import NormalTime, ShopHealth

from . import Agent

if TYPE_CHECKING:
    from . import StreamApp

log = logging.getLogger("parcelwatch.shop_health")
BATCH = 500


def normal_hours(stream: StreamApp) -> NormalTime:
    """A lane's normal transit time in hours at a time, from this worker's lane baselines."""
    baselines = stream.baselines

    def hours(carrier: str, origin: str | None, destination: str | None, at: float) -> float:
        return float(baselines.transit_limit(carrier, origin, destination, at)[0])

    return hours


class ShopHealthAgent(Agent):
    def __init__(self, stream: StreamApp) -> None:
        super().__init__(stream)
        self.health = ShopHealth(stream.store.redis, stream.store.prefix)
        self.normal_hours = normal_hours(stream)
        self.app.agent(self.topics.shop_logistics, name="shop_health")(self.run)

    async def run(self, stream: StreamT[bytes]) -> None:
        # (take_events, as the issue sink: each record acknowledged only once its batch is counted.)
        async for records in stream.take_events(BATCH, within=1.0):  # type: ignore[attr-defined]
            milestones: list[dict[str, Any]] = []
            for record in records:
                try:
                    milestones.extend(m for m in record_events(record.value) if isinstance(m, dict))
                except InvalidEvent:
                    log.warning("skipped a malformed shop-logistics record")  # this worker wrote it: a bug to log
            await self._count(milestones)

    async def _count(self, milestones: list[dict[str, Any]]) -> None:
        backoff = 0.2
        while True:
            try:
                await self.health.record(milestones, self.normal_hours)
                return
            except (RedisError, OSError) as exc:
                log.warning("Redis unavailable for the shops' logistics health (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
