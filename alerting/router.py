"""The alert dispatcher: issue events in, messages out to each route's destinations, never blocking the stream.

``submit(issue)`` does only in-memory work (match the routes, add to a digest, put in an outbox) and
returns; it never awaits a destination. Each (route, destination) pair has its own outbox and its own
background task, so a slow or dead destination only grows its own outbox (spilled to disk past
``memory_limit``) and never holds up another route or destination.

* **Priority.** Lane incidents and critical issues go in the outbox's urgent lane, sent before routine
  messages; routine sends also leave each rate-limit window a reserve for them (``limits.py``).
* **Limits.** A send first takes a slot in every window of its robot (the platform's documented limits,
  ``vendors.py``) and of its route, in Redis when the router has it, so every worker of a deployment counts
  together. Waiting for a slot takes none.
* **Answers.** Throttled: the platform's penalty (DingTalk's 10 minutes) is recorded for the robot, for every
  worker, and the message is sent again after it; it is not a failure. Refused for good (a bad request, too
  large, missing keyword, bad signature): set aside at once, counted (``on_refused``) and kept in the
  dead-letter store (``dead_letter``), never retried into the limit. Anything else (a 5xx, a timeout): retried
  with backoff; after ``max_attempts`` counted (``on_failed``) and kept at the back of its lane, so nothing is
  dropped while a destination is down. A request that never reached the server gives its slot back.
* **Quiet hours.** A route's non-critical alerts wait them out and come as one summary, most severe first;
  an issue that opened and ended within them is not sent at all. Critical ones go at once.

Metrics wiring, one line each (``telemetry/recorder.py`` owns it)::

    router.on_sent = lambda route, dest: ALERTS_SENT.labels(route=route, destination=dest).inc()
    router.on_failed = lambda route, dest: ALERTS_FAILED.labels(route=route, destination=dest).inc()
    router.on_refused = lambda route, dest, reason: ALERTS_REFUSED.labels(...).inc()
    router.on_throttled = lambda route, dest: ALERTS_THROTTLED.labels(route=route, destination=dest).inc()
    router.on_incident = lambda carrier: LANE_INCIDENTS.labels(carrier=carrier).inc()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from config import Labels

from .config import AlertConfig, Route
from .destinations import REFUSED, THROTTLED, DeliveryError, Destination, KafkaSend, build, error_text
from .incidents import COUNTED_FIELDS, LaneIncidents
from .limits import SharedLimits, Window
from .outbox import Envelope, PriorityOutbox
from .render import INCIDENT_KIND, digest_order

log = logging.getLogger("parcelwatch.alerting")

RouteHook = Callable[[str, str], None]
RefusedHook = Callable[[str, str, str], None]
CarrierHook = Callable[[str], None]
# Summaries of what quiet hours held: at most this many issues a message (a digest route: its max_items).
QUIET_SUMMARY_ITEMS = 50
# The least a throttling answer holds a destination back (a platform's "again at once" included).
MIN_THROTTLE_SECONDS = 1.0
# The dead-letter store of a router given no other, under its spool_dir.
REFUSED_FILE = Path("refused.jsonl.log")
# Marks an issue event cut to what lane incidents count (``AlertRouter.needed``): no route sends it.
LANE_COUNT_ONLY = "lane_count_only"
# What every issue event has (``issue_queue.store.check_issue_event``), kept in a cut one so it stays valid,
# and its lane (the alert-routing partition it is on is its lane's: readable from the event itself).
_ISSUE_FIELDS = ("action", "issue_key", "subject", "kind", "shop", "severity", "opened_at", "at", "lane")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message a destination refused for good, for the dead-letter store."""

    route: str
    destination: str
    reason: str  # a bounded label (vendors.REFUSAL_REASONS)
    detail: str  # the platform's answer
    envelope: Envelope


DeadLetter = Callable[[Refusal], Awaitable[None]]


def _noop_route(route: str, destination: str) -> None:
    pass


def _noop_refused(route: str, destination: str, reason: str) -> None:
    pass


def _noop_carrier(carrier: str) -> None:
    pass


def is_urgent(item: Mapping[str, Any]) -> bool:
    """Lane incidents and open critical issues go before routine alerts."""
    return item.get("kind") == INCIDENT_KIND or (item.get("severity") == "critical" and item.get("action") != "resolve")


@dataclass(slots=True)
class _Channel:
    """One (route, destination) pair: its outbox, the windows its sends must fit, and its sender task."""

    route: Route
    destination: Destination
    outbox: PriorityOutbox
    windows: tuple[Window, ...]
    task: asyncio.Task[None] | None = None
    failing: bool = False
    # envelope id -> (failed attempts, loop time before which it is not tried again)
    attempts: dict[str, tuple[int, float]] = field(default_factory=dict)


@dataclass(slots=True)
class _RouteState:
    route: Route
    channels: list[_Channel] = field(default_factory=list)
    batch: list[dict[str, Any]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    # issue key -> its latest event, held by quiet hours (in arrival order)
    held: dict[str, dict[str, Any]] = field(default_factory=dict)


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
        redis: Any | None = None,
        redis_prefix: str = "pw:",
    ) -> None:
        """``labels``: the kind labels for message text (default: ``config.load().labels``); ``kafka_send``:
        needed when a destination is a Kafka topic; ``session``: an aiohttp session to share (else one is
        made on ``start`` and closed on ``close``); ``clock``: wall time for lane incident windows and quiet
        hours; ``redis``: a ``redis.asyncio`` client shared by every worker, where the rate limits and
        penalties live (without it they hold per process)."""
        if labels is None:
            import config as app_config

            labels = app_config.load().labels
        self.config = config
        self.labels = labels
        self.clock = clock
        self.incident_tick_seconds = incident_tick_seconds
        self.on_sent: RouteHook = _noop_route
        self.on_failed: RouteHook = _noop_route
        self.on_refused: RefusedHook = _noop_refused
        self.on_throttled: RouteHook = _noop_route
        self.on_incident: CarrierHook = _noop_carrier
        self.dead_letter: DeadLetter = self._dead_letter_file
        self.incidents = LaneIncidents(config.incidents)
        self.limits = SharedLimits(redis, redis_prefix)
        self._rng = rng or random.Random()
        self._session = session
        self._own_session = session is None
        self._tick_task: asyncio.Task[None] | None = None
        self._started = self._closed = False
        destinations = {name: build(d, labels, self._http, kafka_send) for name, d in config.destinations.items()}
        self._routes: list[_RouteState] = []
        for route in config.routes:
            state = _RouteState(route)
            for name in route.destinations:
                dest = destinations[name]
                # A robot's own limits are shared by every route that sends to it; a route's by its destinations.
                windows = tuple(Window("robot", lim) for lim in dest.config.rate_limits)
                windows += tuple(Window(f"route:{route.name}", lim) for lim in route.rate_limits)
                outbox = PriorityOutbox(config.spool_dir / f"{route.name}@{name}.jsonl", config.memory_limit)
                state.channels.append(_Channel(route, dest, outbox, windows))
            self._routes.append(state)
        self._by_name = {s.route.name: s for s in self._routes}

    # -- public API ---------------------------------------------------------------------------------------

    @property
    def route_names(self) -> list[str]:
        return list(self._by_name)

    def pending(self, route: str) -> int:
        """Alerts of ``route`` not delivered yet: issues waiting for a digest or the end of quiet hours, plus,
        per destination, the issues in its undelivered messages (in memory or spooled)."""
        state = self._by_name.get(route)
        if state is None:
            return 0
        return len(state.batch) + len(state.held) + sum(ch.outbox.items for ch in state.channels)

    def needed(self, issue: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """What this router needs of an issue event (for the lane re-keying to forward): the whole event when a
        route may send it; when only lane incidents count it, the fields they read (about a tenth of an event
        with its scans, texts and evidence), marked ``LANE_COUNT_ONLY``; None when neither looks at it.
        Routes match on the event alone (quiet hours and digests come after), so this is ``submit``'s own
        choice, made before the event travels."""
        if any(state.route.matches(issue) for state in self._routes):
            return issue
        if not self.incidents.counts(issue):
            return None
        cut = {name: issue.get(name) for name in _ISSUE_FIELDS + COUNTED_FIELDS}
        cut[LANE_COUNT_ONLY] = True
        return cut

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
        now = self.clock()
        verdict = self.incidents.observe(issue, now)
        self._route_incidents(verdict.alerts, now)
        if issue.get(LANE_COUNT_ONLY):
            return  # (no route matched it where it was cut: ``needed``)
        for state in self._routes:
            route = state.route
            if not route.matches(issue):
                continue
            if verdict.suppress and route.lane_incidents:
                continue  # this route hears about the lane through the incident message
            if self._hold(state, issue, now):
                continue
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
        """Flush digests (and what quiet hours hold), give destinations ``timeout`` seconds to take what is
        pending, then keep the rest on disk for the next start."""
        if self._closed:
            return
        self._closed = True
        for state in self._routes:
            self._flush(state)
            self._release(state)
        if self._started:
            await self.drain(timeout)
        tasks = [t for t in (self._tick_task, *(ch.task for s in self._routes for ch in s.channels)) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            # A cancellation can be lost below us (a client library turning it into its own error; Python
            # 3.11's asyncio.wait_for when its timeout fires at the same moment): the sender would retry for
            # ever and a graceful stop wait on it. Cancel again until the task has ended.
            while not t.done():
                await asyncio.wait([t], timeout=0.1)
                if not t.done():
                    t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for state in self._routes:
            for ch in state.channels:
                try:
                    ch.outbox.persist()
                except OSError as exc:
                    log.error("alerts of %s@%s could not be saved to %s: %s (%d messages lost)",
                              ch.route.name, ch.destination.name, ch.outbox.path, exc, ch.outbox.in_memory)
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

    def _enqueue(self, state: _RouteState, items: list[dict[str, Any]], *, digest: bool | None = None) -> None:
        envelope: Envelope = {
            "id": uuid.uuid4().hex,
            "route": state.route.name,
            "digest": state.route.digest is not None if digest is None else digest,
            "created_at": self.clock(),
            "urgent": any(is_urgent(i) for i in items),
            "items": items,
        }
        for ch in state.channels:
            ch.outbox.put(envelope)

    def _hold(self, state: _RouteState, item: dict[str, Any], now: float) -> bool:
        """Keep a non-critical alert for the end of the route's quiet hours (True: held, not to be sent now)."""
        quiet = state.route.quiet_hours
        key = str(item.get("issue_key") or "")
        if quiet is None or not quiet.active(now):
            return False
        if item.get("severity") == "critical" and item.get("action") != "resolve":
            state.held.pop(key, None)  # what the night held of it is told now, by this event
            return False
        earlier = state.held.get(key)
        if item.get("action") == "resolve" and earlier is not None and earlier.get("action") != "resolve":
            del state.held[key]  # opened and ended while quiet: nothing to tell
        elif earlier is not None and earlier.get("action") == "open":
            state.held[key] = {**item, "action": "open"}  # staff never heard of it: still new to them
        else:
            state.held[key] = item
        return True

    def _release(self, state: _RouteState) -> None:
        """Send what quiet hours held as summaries, most severe first."""
        if not state.held:
            return
        items = digest_order(state.held.values())
        state.held.clear()
        size = state.route.digest.max_items if state.route.digest else QUIET_SUMMARY_ITEMS
        for start in range(0, len(items), size):
            chunk = [dict(i) for i in items[start:start + size]]
            self._enqueue(state, chunk, digest=True if len(items) > 1 else None)

    def _route_incidents(self, alerts: tuple[dict[str, Any], ...] | list[dict[str, Any]], now: float) -> None:
        for alert in alerts:
            if alert["action"] == "open":
                self._hook(self.on_incident, alert["carrier"])
                log.warning("lane incident: %s", alert["reason"])
            for state in self._routes:
                # Every step of the incident (open, new count, closed) goes to the routes that grouped its
                # issues: they heard of those parcels through it only. It skips the digest batch: it is urgent
                # and rare.
                if state.route.lane_incidents and state.route.match.matches_incident(alert) and not self._hold(state, alert, now):
                    self._enqueue(state, [alert])

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.incident_tick_seconds)
            now = self.clock()
            self._route_incidents(self.incidents.tick(now), now)
            for state in self._routes:
                if state.held and state.route.quiet_hours is not None and not state.route.quiet_hours.active(now):
                    self._release(state)

    async def _deliver(self, ch: _Channel) -> None:
        loop = asyncio.get_running_loop()
        retry = ch.route.retry
        dest = ch.destination
        while True:
            envelope = ch.outbox.head()
            if envelope is None:
                await ch.outbox.wait()
                continue
            seen = ch.outbox.urgent_puts
            key = str(envelope.get("id"))
            attempt, not_before = ch.attempts.get(key, (0, 0.0))
            if not_before > loop.time():  # backing off; a newer urgent message wakes us to go first
                await ch.outbox.wait_for_urgent(not_before - loop.time(), seen)
                continue
            grant = await self.limits.acquire(dest.robot, ch.windows, bool(envelope.get("urgent")))
            if grant.wait > 0:  # no slot in some window, or the robot's penalty: nothing was taken
                await ch.outbox.wait_for_urgent(grant.wait + 0.01 * self._rng.random(), seen)
                continue
            try:
                await dest.send(envelope)
            except DeliveryError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - a bug in one destination must not stop its sender for good
                error = DeliveryError(error_text(exc))
                if attempt == 0:  # once per message, not once per retry (the frames, not the message: error_text)
                    log.error("alert destination %s crashed (%s)\n%s", dest.name, error,
                              "".join(traceback.format_tb(exc.__traceback__)))
            else:
                ch.outbox.pop_head()
                ch.attempts.pop(key, None)
                if ch.failing:
                    ch.failing = False
                    log.info("alerts to %s@%s are going through again", ch.route.name, dest.name)
                self._hook(self.on_sent, ch.route.name, dest.name)
                continue
            if not error.sent:
                await self.limits.release(grant)
            if error.kind == THROTTLED:
                penalty = error.retry_after if error.retry_after is not None else dest.config.penalty_seconds
                # Throttled answers are not attempts, so no backoff slows them: an "again at once" (Retry-After: 0,
                # or a penalty configured as 0) would resend in a tight loop.
                penalty = max(penalty, MIN_THROTTLE_SECONDS)
                log.warning("%s@%s throttled by the platform (%s); no message to it for %.0f s", ch.route.name, dest.name,
                            error, penalty)
                await self.limits.penalize(dest.robot, penalty)
                self._hook(self.on_throttled, ch.route.name, dest.name)
                continue  # the same message, once the penalty has passed
            if error.kind == REFUSED:
                ch.outbox.pop_head()
                ch.attempts.pop(key, None)
                log.error("%s@%s refused a message for good (%s): set aside, not retried", ch.route.name, dest.name, error)
                self._hook(self.on_refused, ch.route.name, dest.name, error.reason)
                try:
                    await self.dead_letter(Refusal(ch.route.name, dest.name, error.reason, str(error), envelope))
                except Exception:  # the refusal is counted and logged; a failing store must not stop the sender
                    log.exception("could not keep the refused alert of %s@%s", ch.route.name, dest.name)
                continue
            attempt += 1
            if attempt >= retry.max_attempts:
                if not ch.failing:
                    log.warning("alerts to %s@%s failing after %d attempts (%s); kept for retry",
                                ch.route.name, dest.name, attempt, error)
                ch.failing = True
                self._hook(self.on_failed, ch.route.name, dest.name)
                ch.attempts.pop(key, None)
                ch.outbox.requeue_head()
                # The destination looks down: wait the longest backoff before its next message.
                await asyncio.sleep(retry.backoff(retry.max_attempts + 1, self._rng.random()))
                continue
            delay = retry.backoff(attempt, self._rng.random())
            if error.retry_after is not None:
                delay = max(delay, min(error.retry_after, retry.max_backoff_seconds))
            ch.attempts[key] = (attempt, loop.time() + delay)

    async def _dead_letter_file(self, refusal: Refusal) -> None:
        """The dead-letter store of a router with no other: ``<spool_dir>/refused.jsonl.log``, one JSON line a
        refused message with why."""
        path = self.config.spool_dir / REFUSED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"at": self.clock(), "route": refusal.route, "destination": refusal.destination, "reason": refusal.reason,
                  "detail": refusal.detail, "envelope": refusal.envelope}
        with path.open("ab") as fh:
            fh.write(orjson.dumps(record) + b"\n")

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
        known = {lane.path.name for s in self._routes for ch in s.channels for lane in ch.outbox.lanes}
        for path in sorted(spool.glob("*.jsonl")):
            if path.name not in known and path.stat().st_size:
                log.warning("alert spool %s belongs to no configured route/destination; its messages are not sent", path)

