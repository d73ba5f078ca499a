"""The registration loop: due parcels from Redis -> the aggregator, at its rate -> what became of each.

Runs beside the stream in every worker (``agents/subscriptions.py`` starts it), never in an agent: a slow or
failing vendor delays registrations, never the stream. Workers share the work through the store's claims
and the vendor's rate through its request slots (``store.py``).

- **Registered or already registered**: done; an issue raised for the parcel before is resolved.
- **Temporary failure** (server error, rate limit, timeout, an answer we do not know): tried again after
  ``retry_initial_seconds``, doubling up to ``retry_max_seconds`` (or as long as the vendor asked), with
  jitter; still failing ``give_up_after_hours`` after the first attempt, it fails for good.
- **Refused for this parcel** (bad number, carrier, missing field): fails for good at once.
- **Refused for our key or account**: no parcel is at fault. The parcels wait; the worker asks again with one
  request at a time, backing off the same way, until the key works (a worker restarted with the right key
  takes them at once); ``/healthz`` names the vendor's answer; no issue is raised for it.
- **Failed for good**: the parcel gets a ``tracking_unregistered`` issue in the staff's queue, through the
  issues topic like every issue (its ``opened_at`` makes it idempotent), and counts in the metrics.

Issue events go through an outbox in Redis, written with the parcel's new state in one script, so a worker
that dies between the two still sends the event (the next pump of any worker does).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from config import Subscriptions
from domain.events import format_time
from domain.vocabulary import IssueKind, china_time
from issue_queue.store import issue_id

from .store import Claimed, SubscriptionStore, slot_tolerance_seconds
from .vendors import ACCOUNT, REJECTED, RETRY, Credentials, Parcel, Result, Vendor

log = logging.getLogger("parcelwatch.subscriptions")

KIND = IssueKind.TRACKING_UNREGISTERED.value
IDLE_SECONDS = 1.0  # how long the loop sleeps when nothing is due
COUNTS_EVERY_SECONDS = 15.0
# Slots a request may miss in a row by waking too late before it goes anyway (``Registrar.take_slot``).
MAX_LATE_SLOTS = 5

# Aggregator -> (the variable holding its key, the variable holding its second secret or None).
CREDENTIAL_VARIABLES: dict[str, tuple[str, str | None]] = {
    "kuaidi100": ("PARCELWATCH_KUAIDI100_KEY", "PARCELWATCH_KUAIDI100_SALT"),
    "aftership": ("PARCELWATCH_AFTERSHIP_API_KEY", None),
    "17track": ("PARCELWATCH_17TRACK_KEY", None),
    "kdniao": ("PARCELWATCH_KDNIAO_BUSINESS_ID", "PARCELWATCH_KDNIAO_API_KEY"),
}


def credentials_from_env(aggregator: str, env: Mapping[str, str]) -> Credentials:
    key_var, secret_var = CREDENTIAL_VARIABLES[aggregator]
    return Credentials(env.get(key_var, "").strip(), env.get(secret_var, "").strip() if secret_var else "")


SendIssue = Callable[[str, bytes], Awaitable[None]]
IssueLookup = Callable[[str], Awaitable[dict[str, Any] | None]]


class Registrar:
    def __init__(self, cfg: Subscriptions, vendor: Vendor, store: SubscriptionStore, send_issue: SendIssue,
                 severity: str, *, issue_lookup: IssueLookup | None = None,
                 on_outcome: Callable[[str, str], None] | None = None, on_counts: Callable[[dict[str, int]], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.vendor = vendor
        self.store = store
        self.send_issue = send_issue
        self.severity = severity
        self.issue_lookup = issue_lookup
        self.on_outcome = on_outcome or (lambda vendor, outcome: None)
        self.on_counts = on_counts
        self.clock = clock
        self.rate = cfg.rate_per_second or vendor.documented_rate
        self.slot_tolerance = slot_tolerance_seconds(self.rate)
        # Claims last long enough for a slot wait, the request's timeout and the settle.
        self.lease = 3 * cfg.timeout_seconds + 30.0
        # The vendor's last refusal of our key or account (None once a registration works again).
        self.account_error: dict[str, Any] | None = None
        self._holds = 0
        self._probe_at = 0.0  # while the key is refused: when to ask again
        self._counts_at = 0.0

    # -- the loop ----------------------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stopping.is_set():
                try:
                    done = await self.pump(session)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("subscription pump failed; retrying")
                    done = 0
                    await _sleep_unless(stopping, 5.0)
                if not done:
                    await _sleep_unless(stopping, IDLE_SECONDS)

    async def pump(self, session: aiohttp.ClientSession) -> int:
        """One pass: send the outbox, register what is due (about two seconds of the vendor's rate), send
        the issue events that produced. Returns how many parcels were attempted."""
        await self.flush_outbox()
        now = self.clock()
        if now - self._counts_at >= COUNTS_EVERY_SECONDS and self.on_counts is not None:
            self._counts_at = now
            self.on_counts(await self.store.counts())
        size = self.vendor.max_batch
        if self.account_error is not None and now < self._probe_at:
            return 0
        # While the key is refused, one request's worth at a time: a probe, not a flood of refusals.
        limit = size if self.account_error is not None else max(1, int(self.rate * 2)) * size
        claimed = await self.store.claim(now, self.lease, limit)
        batches = [claimed[i : i + size] for i in range(0, len(claimed), size)]
        await asyncio.gather(*(self.register(session, batch) for batch in batches))
        if claimed:
            await self.flush_outbox()
        return len(claimed)

    async def flush_outbox(self) -> None:
        for key, event in (await self.store.outbox()).items():
            try:
                await self.send_issue(key, event)
            except Exception as exc:  # noqa: BLE001 - the broker will take it on a later pass
                log.warning("could not send the issue event for %s yet: %s", key, type(exc).__name__)
                return
            await self.store.sent(key, event)

    # -- one request -------------------------------------------------------------------------------------------

    async def register(self, session: aiohttp.ClientSession, batch: Sequence[Claimed]) -> None:
        asking = []
        for claimed in batch:
            refusal = self.vendor.precheck(claimed.parcel)
            if refusal is None:
                asking.append(claimed)
            else:
                await self.settle(claimed, refusal)
        if not asking:
            return
        batch, parcels = asking, [c.parcel for c in asking]
        await self.take_slot()
        results = await self.call(session, parcels)
        pause = max((r.retry_after or 0.0 for r in results.values() if r.outcome == RETRY), default=0.0)
        if pause > 0:
            await self.store.pause(self.vendor.name, self.rate, pause)
        for claimed in batch:
            await self.settle(claimed, results[claimed.parcel.key])

    async def take_slot(self) -> None:
        """Wait for the vendor's next request slot (shared by every worker through the store). A task that wakes
        later than its slot by more than the tolerance (a busy event loop, a busy machine) takes a new slot:
        sent late, its request would land in a one-second window with the punctual ones after it, one more
        than the vendor allows. Late every time (``MAX_LATE_SLOTS``), it goes rather than never."""
        loop = asyncio.get_running_loop()
        for _ in range(MAX_LATE_SLOTS):
            wait = await self.store.acquire(self.vendor.name, self.rate)
            due = loop.time() + wait
            if wait > 0:
                await asyncio.sleep(wait)
            if loop.time() - due <= self.slot_tolerance:
                return

    async def call(self, session: aiohttp.ClientSession, parcels: list[Parcel]) -> dict[str, Result]:
        request = self.vendor.request(parcels)
        try:
            async with session.request(request.method, request.url, data=request.body, headers=request.headers) as resp:
                body = await resp.read()
                return self.vendor.results(parcels, resp.status, resp.headers, body)
        except TimeoutError:
            return {p.key: Result(RETRY, "timeout", f"no answer in {self.cfg.timeout_seconds:g} s") for p in parcels}
        except (aiohttp.ClientError, OSError) as exc:
            return {p.key: Result(RETRY, "network", type(exc).__name__) for p in parcels}

    async def settle(self, claimed: Claimed, result: Result) -> None:
        now = self.clock()
        key = claimed.parcel.key
        error = f"{self.vendor.name} {result.code}: {result.message}".strip().rstrip(":")[:300]
        if result.ok:
            self.on_outcome(self.vendor.name, result.outcome)
            self.account_error, self._holds, self._probe_at = None, 0, 0.0
            event = self.issue_event(claimed.parcel, "resolve", claimed.issue, now, result, claimed.attempts + 1) if claimed.issue else b""
            await self.store.settle(key, "registered", now, event=event)
            return
        if result.outcome == ACCOUNT:
            self.on_outcome(self.vendor.name, ACCOUNT)
            if self.account_error is None:
                log.error("%s refuses our key or account (%s): registrations wait until it is fixed", self.vendor.name, error)
                self.account_error = {"code": result.code, "message": result.message, "since": format_time(now)}
            if now >= self._probe_at:
                self._holds += 1
                self._probe_at = now + self.backoff(self._holds - 1)
            await self.store.settle(key, "hold", now, next_at=now + self.cfg.retry_initial_seconds, error=error)
            return
        if result.outcome == RETRY:
            delay = result.retry_after if result.retry_after else self.backoff(claimed.attempts)
            if now + delay - claimed.first_at <= self.cfg.give_up_after_hours * 3600:
                self.on_outcome(self.vendor.name, RETRY)
                await self.store.settle(key, "retry", now, next_at=now + max(1.0, delay), error=error)
                return
            self.on_outcome(self.vendor.name, "gave_up")
        else:
            self.on_outcome(self.vendor.name, REJECTED)
        opened = await self.opened_at(claimed, now)
        log.warning("could not register %s with %s: %s", key, self.vendor.name, error)
        event = self.issue_event(claimed.parcel, "open", opened, now, result, claimed.attempts + 1)
        await self.store.settle(key, "failed", now, error=error, event=event, issue=opened)

    def backoff(self, attempts: int) -> float:
        base = min(self.cfg.retry_max_seconds, self.cfg.retry_initial_seconds * 2 ** min(attempts, 30))
        return base * (0.5 + random.random() / 2)

    async def opened_at(self, claimed: Claimed, now: float) -> str:
        """The open period to name: the issue raised for this parcel before if it is still open (a newer
        ``opened_at`` would leave the stored period unresolvable), else a new one starting now."""
        if claimed.issue and self.issue_lookup is not None:
            doc = await self.issue_lookup(issue_id(f"{claimed.parcel.key}|{KIND}"))
            if doc is not None and doc.get("status") in ("open", "acknowledged") and doc.get("opened_at") == claimed.issue:
                return claimed.issue
        return format_time(now) or ""

    # -- the issue ---------------------------------------------------------------------------------------------

    def issue_event(self, parcel: Parcel, action: str, opened_at: str, now: float, result: Result, attempts: int) -> bytes:
        vendor = self.vendor.name
        answer = f"{result.code} {result.message}".strip()
        event: dict[str, Any] = {
            "action": action, "issue_key": f"{parcel.key}|{KIND}", "kind": KIND, "subject": parcel.key,
            "parcel": parcel.key, "carrier": parcel.carrier, "tracking_number": parcel.number,
            "order_id": parcel.order_id, "shop": parcel.shop, "platform": parcel.platform,
            "origin_province": parcel.origin_province, "destination_province": parcel.destination_province,
            "destination_city": parcel.destination_city, "severity": self.severity,
            "opened_at": opened_at, "at": format_time(now), "resolved_at": None, "resolution": None,
        }
        if action == "resolve":
            event.update(resolved_at=format_time(now), resolution="registered")
        else:
            cause = "refused by" if result.outcome == REJECTED else f"no success after {attempts} attempts with"
            event.update(
                reason=f"tracking not registered: {cause} {vendor}",
                evidence=f"{vendor} answered {answer} at {china_time(now)} (attempt {attempts})",
                evidence_data={"aggregator": vendor, "code": result.code, "message": result.message, "attempts": attempts,
                               "refused": result.outcome == REJECTED, "answered_at": now},
                suggested_action="check the carrier and tracking number of the order; once right, register it again "
                                 "with `python app.py register-parcels --retry-failed`",
            )
        return orjson.dumps({k: v for k, v in event.items() if v is not None or k in ("resolved_at", "resolution")})


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
