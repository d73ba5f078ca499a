"""What on-call and Prometheus read: ``/healthz``, ``/lanes``, ``/metrics``, and the scrape-time gauges."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from faust import web

from core.deadline_index import describe
from delivery.framework import aiokafka_producer, committed_offsets, stream_positions
from delivery.tansu import INCARNATION_TOPIC

from .views import route

if TYPE_CHECKING:
    from agents import StreamApp

# A partition whose position stays behind its high watermark while nothing is fetched for it this long is
# stalled (a consumer that silently stopped fetching after a rebalance).
STALL_SECONDS = 60.0
OPEN_COUNTS_EVERY_SECONDS = 15.0


class Health:
    def __init__(self, stream: StreamApp) -> None:
        self.stream = stream
        self.app = app = stream.app
        self._open_counts: list[tuple[tuple[str, str, str], int]] = []
        parcel_state = stream.topology.parcel_state
        stream.recorder.read_at_scrape(
            open_issues=lambda: list(self._open_counts),
            parcels_tracked=lambda: float(len(parcel_state.data)),
            consumer_lag=self._consumer_lag,
            partitions_held=lambda: len(self._held_partitions()),
        )
        app.timer(interval=OPEN_COUNTS_EVERY_SECONDS, name="refresh_open_issue_counts")(self.refresh_open_issue_counts)
        route(app, "/healthz", "healthz", get=self.healthz)
        route(app, "/lanes", "lanes", get=self.lanes)
        route(app, "/metrics", "metrics", get=self.metrics)

    async def refresh_open_issue_counts(self) -> None:
        """Read the exact open counts from Redis for the scrape-time gauge (a collector cannot await)."""
        try:
            self._open_counts[:] = list((await self.stream.store.open_counts()).items())
        except Exception:  # noqa: BLE001 - Redis away: keep the last figures; /healthz reports the outage
            pass

    def _stream_topics(self) -> set[str]:
        # Table changelogs are read only to restore state, never committed: their "lag" means nothing.
        changelogs = self.app.tables._changelogs  # type: ignore[attr-defined]
        return {tp.topic for tp in self.app.consumer.assignment() if tp.topic not in changelogs}

    def _consumer_lag(self) -> list[tuple[str, float]]:
        consumer = self.app.consumer
        committed = committed_offsets(self.app)
        topics = self._stream_topics()
        lag: dict[str, float] = {}
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            done = committed.get(tp)
            lag[tp.topic] = lag.get(tp.topic, 0.0) + max(0, hw - (done + 1 if done is not None else 0))
        return sorted(lag.items())

    def _held_partitions(self) -> list[int]:
        """The parcel-state partitions this worker holds: its share of the co-partitioned inputs (tracking,
        order facts, ticks), as the consumer group last assigned them."""
        tracking = self.stream.settings.topics.tracking
        return sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == tracking)

    def _clocks(self, now: float) -> dict[str, list[int]]:
        """Held parcel partitions whose clock is not known yet (a backlog not begun: no sweep runs on them), and
        those whose clock is behind the wall clock (a backlog judged at its arrival time: deadlines wait)."""
        parcels = self.stream.parcels
        if parcels is None:
            return {"no_clock": [], "catching_up": []}
        clock = parcels.catch_up
        return {"no_clock": [p for p in self._held_partitions() if not clock.known(p, now)],
                "catching_up": clock.lagging_partitions(now)}

    def _streams(self, now: float) -> dict[str, Any]:
        """Each assigned stream partition with records waiting, and which of them are stalled."""
        positions = stream_positions(self.app, self._stream_topics())
        if positions is None:
            return {"ok": True, "behind": [], "stalled": []}
        behind = []
        for p in positions:
            last_fetch = p.pop("last_fetch")
            behind.append({**p, "seconds_since_fetch": None if last_fetch is None else round(now - last_fetch, 1)})
        stalled = [b for b in behind if b["seconds_since_fetch"] is None or b["seconds_since_fetch"] > STALL_SECONDS]
        return {"ok": not stalled, "behind": behind, "stalled": [f"{b['topic']}[{b['partition']}]" for b in stalled]}

    async def healthz(self, view: web.View, request: web.Request) -> web.Response:
        """Broker, Redis and table recovery readiness, each checked for real; 503 unless all are ready."""
        app, stream = self.app, self.stream
        checks: dict[str, dict[str, Any]] = {}
        topics: set[str] | None = None
        try:
            producer = aiokafka_producer(app)
            topics = set((await asyncio.wait_for(producer.client.fetch_all_metadata(), 3)).topics())
            checks["broker"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            checks["broker"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        if stream.lifetime_watch is not None:
            checks["lifetime"] = self._lifetime(topics)
        try:
            await asyncio.wait_for(stream.store.redis.ping(), 2)
            checks["redis"] = {"ok": True, "sink_writing": stream.issue_sink.redis_up if stream.issue_sink else None}
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        # A record the broker did not accept stops all commits (delivery/checkpoint.py): the worker must be
        # restarted to re-process from its last commit.
        failures = stream.checkpoint.failures
        checks["producer"] = {"ok": not failures, "failed_sends": list(failures.first)}
        # Dead letters since the start; one that could not be sent is a failed send too (see producer).
        dead = stream.dead_letters.counts
        checks["dead_letters"] = {"ok": not dead.failed, "sent": dead.sent, "values_omitted": dead.values_omitted,
                                  "last_omitted": dead.last_omitted or None, "failed": dead.failed,
                                  "last_failure": dead.last_failure or None}
        recovered = app.tables.recovery.completed.is_set() and not app.rebalancing  # type: ignore[attr-defined]
        parcel_state = stream.topology.parcel_state
        checks["tables"] = {
            "ok": recovered,
            "rebalancing": bool(app.rebalancing),
            # Subjects (parcels and unshipped orders) in this worker's store, all its partitions.
            "subjects": len(parcel_state.data),
            "partitions": self._held_partitions(),
        }
        parcels = stream.parcels
        if parcels is not None:
            # The parcel agent judges nothing until then (agents/parcels.py, ``LaneBaselineFeed``).
            checks["lane_baselines"] = {"ok": parcels.feed.ready.is_set(), "deliveries": stream.baselines.deliveries}
        if recovered:
            checks["streams"] = self._streams(time.time())
            checks["streams"].update(self._clocks(time.time()))
        deadlines = describe(list(stream.topology.deadline_index.data.items()), time.time())
        ok = all(c["ok"] for c in checks.values())
        body: dict[str, Any] = {"ok": ok, "checks": checks, "deadline_index": deadlines}
        if stream.subscriptions is not None:  # a detail, never a check: a vendor's trouble is not the worker's
            body["subscriptions"] = await stream.subscriptions.describe()
        return view.json(body, status=200 if ok else 503)

    def _lifetime(self, topics: set[str] | None) -> dict[str, Any]:
        """The embedded broker lifetime this worker started in, and whether the broker is still in it: a
        broker that came back empty has lost its marker topic (seen at once, in the metadata just fetched)."""
        stream = self.stream
        assert stream.lifetime_watch is not None
        lost = stream.lifetime_watch.lost
        if lost is None and topics is not None and stream.broker_lifetime is not None and INCARNATION_TOPIC not in topics:
            lost = "the broker came back empty (its topics are gone: a new lifetime); the worker starts again in place"
        sink = stream.issue_sink
        return {"ok": lost is None, "started_in": stream.broker_lifetime, **({"error": lost} if lost else {}),
                "issues_marked_state_lost": sink.marked_state_lost if sink else 0}

    async def lanes(self, view: web.View, request: web.Request) -> web.Response:
        """What the baselines learned (detectors/lanes.py ``describe``): each level's normal transit, each lane's
        blend and its limit at the configured quantile, each carrier and source's scan cadence."""
        stream = self.stream
        return view.json(stream.baselines.describe(time.time(), stream.settings.thresholds.tracking_stale_hours))

    async def metrics(self, view: web.View, request: web.Request) -> web.Response:
        # ``?name[]=a&name[]=b``: only those series, as prometheus_client's own exposition handlers allow.
        body, content_type = self.stream.recorder.render(request.query.getall("name[]", []))  # type: ignore[attr-defined]
        return view.bytes(body, content_type=None, headers={"Content-Type": content_type})
