"""The alert dispatcher: issue events in, messages out to each route's destinations, never blocking the stream.

``submit(issue)`` does only in-memory work (match the routes, add to a digest, put in an outbox) and
returns; it never awaits a destination. Each (route, destination) pair has its own outbox and its own
background task that sends with rate limits and retries, so a slow or dead destination only grows its own
outbox (spilled to disk past ``memory_limit``) and never holds up another route or destination. A message
that exhausts its retries is counted (``on_failed``) and kept: it goes to the back of its outbox and is tried
again after the others, so nothing is dropped while a destination is down.

Metrics wiring, one line each (``telemetry/`` owns the collectors)::

    router.on_sent = lambda route, dest: ALERTS_SENT.labels(route=route, destination=dest).inc()
    router.on_failed = lambda route, dest: ALERTS_FAILED.labels(route=route, destination=dest).inc()
    router.on_incident = lambda carrier: LANE_INCIDENTS.labels(carrier=carrier).inc()
    for r in router.route_names: ALERTS_PENDING.labels(route=r).set_function(lambda r=r: router.pending(r))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from config import Labels

from .config import AlertConfig, RateLimit, Route
from .destinations import DeliveryError, Destination, KafkaSend, build
from .incidents import LaneIncidents
from .outbox import Envelope, Outbox

log = logging.getLogger("parcelwatch.alerting")

RouteHook = Callable[[str, str], None]
CarrierHook = Callable[[str], None]


def _noop_route(route: str, destination: str) -> None:
    pass


def _noop_carrier(carrier: str) -> None:
    pass


class RateLimiter:
    """At most ``max_messages`` in any ``window_seconds`` (a sliding log: exact, and tiny at robot rates)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._sent: deque[float] = deque()

    def delay(self) -> float:
        """Seconds until one more send is allowed (0: now)."""
        now = self._clock()
        while self._sent and now - self._sent[0] >= self.limit.window_seconds:
            self._sent.popleft()
        if len(self._sent) < self.limit.max_messages:
            return 0.0
        return self._sent[0] + self.limit.window_seconds - now

    def record(self) -> None:
        self._sent.append(self._clock())


@dataclass(slots=True)
class _Channel:
    """One (route, destination) pair: its outbox, limiters and sender task."""

    route: Route
    destination: Destination
    outbox: Outbox
    limiters: tuple[RateLimiter, ...]
    task: asyncio.Task[None] | None = None
    failing: bool = False

    async def acquire(self) -> None:
        # Check every limiter before recording any, so a send waits for the slowest and is counted once by each.
        while (wait := max((lim.delay() for lim in self.limiters), default=0.0)) > 0:
            await asyncio.sleep(wait)
        for lim in self.limiters:
            lim.record()


@dataclass(slots=True)
class _RouteState:
    route: Route
    channels: list[_Channel] = field(default_factory=list)
    batch: list[dict[str, Any]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class AlertRouter:
    def __init__(
        self,
        config: AlertConfig,
        *,
        labels: Labels | None = None,
        kafka_send: KafkaSend | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        incident_tick_seconds: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        """``labels``: the kind labels for message text (default: ``config.load().labels``); ``kafka_send``:
        needed when a destination is a Kafka topic; ``session``: an aiohttp session to share (else one is
        made on ``start`` and closed on ``close``); ``clock``: wall time for lane incident windows."""
        if labels is None:
            import config as app_config

            labels = app_config.load().labels
        self.config = config
        self.labels = labels
        self.clock = clock
        self.incident_tick_seconds = incident_tick_seconds
        self.on_sent: RouteHook = _noop_route
        self.on_failed: RouteHook = _noop_route
        self.on_incident: CarrierHook = _noop_carrier
        self.incidents = LaneIncidents(config.incidents)
        self._rng = rng or random.Random()
        self._session = session
        self._own_session = session is None
        self._tick_task: asyncio.Task[None] | None = None
        self._started = self._closed = False
        destinations = {name: build(d, labels, self._http, kafka_send) for name, d in config.destinations.items()}
        # A robot's own limit is shared by every route that sends to it.
        shared = {name: RateLimiter(d.rate_limit) for name, d in config.destinations.items() if d.rate_limit}
        self._routes: list[_RouteState] = []
        for route in config.routes:
            state = _RouteState(route)
            for name in route.destinations:
                limiters = [RateLimiter(route.rate_limit)] if route.rate_limit else []
                if name in shared:
                    limiters.append(shared[name])
                outbox = Outbox(config.spool_dir / f"{route.name}@{name}.jsonl", config.memory_limit)
                state.channels.append(_Channel(route, destinations[name], outbox, tuple(limiters)))
            self._routes.append(state)
        self._by_name = {s.route.name: s for s in self._routes}

    # -- public API ---------------------------------------------------------------------------------------

    @property
    def route_names(self) -> list[str]:
        return list(self._by_name)

    def pending(self, route: str) -> int:
        """Alerts of ``route`` not delivered yet: issues waiting for a digest, plus, per destination, the
        issues in its undelivered messages (in memory or spooled)."""
        state = self._by_name.get(route)
        if state is None:
            return 0
        return len(state.batch) + sum(ch.outbox.items for ch in state.channels)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._warn_orphan_spools()
        for state in self._routes:
            for ch in state.channels:
                ch.task = asyncio.create_task(self._deliver(ch), name=f"alerts:{ch.route.name}@{ch.destination.name}")
        # Always: incidents are counted (on_incident) even when no route groups them, and must age out.
        self._tick_task = asyncio.create_task(self._tick_loop(), name="alerts:incidents")

    async def submit(self, issue: Mapping[str, Any]) -> None:
        """Route one issue event. Returns at once: no I/O but, past the memory bound, one line appended to a spool."""
        self.submit_nowait(issue)

    def submit_nowait(self, issue: Mapping[str, Any]) -> None:
        if self._closed:
            raise RuntimeError("the alert router is closed")
        issue = dict(issue)  # the caller may reuse its dict; ours waits in outboxes
        verdict = self.incidents.observe(issue, self.clock())
        self._route_incidents(verdict.alerts)
        for state in self._routes:
            route = state.route
            if not route.matches(issue):
                continue
            if verdict.suppress and route.lane_incidents:
                continue  # this route hears about the lane through the incident message
            if route.digest is None:
                self._enqueue(state, [issue])
                continue
            state.batch.append(issue)
            if len(state.batch) >= route.digest.max_items:
                self._flush(state)
            elif state.timer is None:
                state.timer = asyncio.get_running_loop().call_later(route.digest.max_seconds, self._flush, state)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending anywhere (digests included); False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while any(self.pending(name) for name in self._by_name):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush digests, give destinations ``timeout`` seconds to take what is pending, then keep the rest
        on disk for the next start."""
        if self._closed:
            return
        self._closed = True
        for state in self._routes:
            self._flush(state)
        if self._started:
            await self.drain(timeout)
        tasks = [t for t in (self._tick_task, *(ch.task for s in self._routes for ch in s.channels)) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for state in self._routes:
            for ch in state.channels:
                try:
                    ch.outbox.persist()
                except OSError as exc:
                    log.error("alerts of %s@%s could not be saved to %s: %s (%d messages lost)",
                              ch.route.name, ch.destination.name, ch.outbox.path, exc, len(ch.outbox.memory))
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AlertRouter:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- internals ----------------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _flush(self, state: _RouteState) -> None:
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        if state.batch:
            items, state.batch = state.batch, []
            self._enqueue(state, items)

    def _enqueue(self, state: _RouteState, items: list[dict[str, Any]]) -> None:
        envelope: Envelope = {
            "id": uuid.uuid4().hex,
            "route": state.route.name,
            "digest": state.route.digest is not None,
            "created_at": self.clock(),
            "items": items,
        }
        for ch in state.channels:
            ch.outbox.put(envelope)

    def _route_incidents(self, alerts: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> None:
        for alert in alerts:
            if alert["action"] == "open":
                self._hook(self.on_incident, alert["carrier"])
                log.warning("lane incident: %s", alert["reason"])
            for state in self._routes:
                # Every step of the incident (open, new count, closed) goes to the routes that grouped its
                # issues: they heard of those parcels through it only. It skips the digest batch: it is urgent
                # and rare.
                if state.route.lane_incidents and state.route.match.matches_incident(alert):
                    self._enqueue(state, [alert])

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.incident_tick_seconds)
            self._route_incidents(self.incidents.tick(self.clock()))

    async def _deliver(self, ch: _Channel) -> None:
        retry = ch.route.retry
        while True:
            envelope = ch.outbox.head()
            if envelope is None:
                await ch.outbox.wait()
                continue
            attempt = 0
            while True:
                attempt += 1
                await ch.acquire()
                try:
                    await ch.destination.send(envelope)
                except DeliveryError as exc:
                    error: str = str(exc)
                    retry_after = exc.retry_after
                except Exception as exc:  # a bug in one destination must not stop its sender for good
                    if attempt == 1:  # once per message, not once per retry
                        log.exception("alert destination %s crashed", ch.destination.name)
                    error, retry_after = f"{type(exc).__name__}: {exc}", None
                else:
                    ch.outbox.pop_head()
                    if ch.failing:
                        ch.failing = False
                        log.info("alerts to %s@%s are going through again", ch.route.name, ch.destination.name)
                    self._hook(self.on_sent, ch.route.name, ch.destination.name)
                    break
                delay = retry.backoff(attempt, self._rng.random())
                if retry_after is not None:
                    delay = max(delay, min(retry_after, retry.max_backoff_seconds))
                if attempt >= retry.max_attempts:
                    if not ch.failing:
                        log.warning("alerts to %s@%s failing after %d attempts (%s); kept for retry",
                                    ch.route.name, ch.destination.name, attempt, error)
                    ch.failing = True
                    self._hook(self.on_failed, ch.route.name, ch.destination.name)
                    ch.outbox.requeue_head()
                    # The destination looks down: wait the longest backoff before its next message.
                    await asyncio.sleep(retry.backoff(retry.max_attempts + 1, self._rng.random()))
                    break
                await asyncio.sleep(delay)

    def _hook(self, hook: Callable[..., None], *args: str) -> None:
        try:
            hook(*args)
        except Exception:  # a broken metrics hook must not stop delivery
            log.exception("alert metrics hook failed")

    def _warn_orphan_spools(self) -> None:
        """Spool files of routes or destinations no longer configured are never sent: say so, once, at start."""
        spool = self.config.spool_dir
        if not spool.is_dir():
            return
        known = {ch.outbox.path.name for s in self._routes for ch in s.channels}
        for path in sorted(spool.glob("*.jsonl")):
            if path.name not in known and path.stat().st_size:
                log.warning("alert spool %s belongs to no configured route/destination; its messages are not sent", path)
