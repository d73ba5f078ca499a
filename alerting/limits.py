"""Rate limits and throttling penalties that hold across every worker of a deployment.

A chat robot counts the messages of all our workers together: two workers keeping 20 a minute each still
send it 40. So the sliding windows live in Redis (one sorted set per window, the send times as scores), and
one Lua script checks every window of a send and records it in all of them, or in none: a send that must
wait takes no slot. Times are Redis' own clock (``TIME``), so workers whose clocks differ still agree.

* ``acquire`` answers 0 (the send may go now; its slot is taken) or how long to wait. Routine messages
  leave each window's ``reserve`` to urgent ones (lane incidents, critical issues).
* ``release`` gives back the slot of a send that never reached the robot (the connection failed), so a
  retry costs no slot the robot did not count.
* ``penalize`` records a throttling answer's penalty (DingTalk's 10-minute lock after 130101): no worker
  sends to that robot until it has passed.

Without Redis (or while it is unreachable) the same rules hold within this process only.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from .vendors import RateLimit

log = logging.getLogger("parcelwatch.alerting")
_REDIS_TROUBLE = (RedisError, OSError, TimeoutError)

# KEYS[1]: the robot's penalty key; KEYS[2..]: one sorted set per window. ARGV[1]: this send's token;
# ARGV[2]: "1" for a routine send; then per window: its length (ms), its limit, its reserve for urgent sends.
# Returns {1, 0} when the send was recorded in every window, {0, wait_ms} when it must wait.
_ACQUIRE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
local penalty = tonumber(redis.call('GET', KEYS[1]) or '0')
if penalty > now then wait = penalty - now end
local routine = ARGV[2] == '1'
for i = 2, #KEYS do
  local base = 3 + (i - 2) * 3
  local window = tonumber(ARGV[base])
  local allowed = tonumber(ARGV[base + 1])
  if routine then allowed = allowed - tonumber(ARGV[base + 2]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= allowed then
    -- a slot frees when the send that leaves the window room for one more does
    local oldest = redis.call('ZRANGE', KEYS[i], count - allowed, count - allowed, 'WITHSCORES')
    local w = window
    if oldest[2] then w = tonumber(oldest[2]) + window - now end
    if w > wait then wait = w end
  end
end
if wait > 0 then return {0, wait} end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 + (i - 2) * 3]))
end
return {1, 0}
"""

# KEYS[1]: the penalty key; ARGV[1]: the penalty (ms). Keeps the later of the current and the new end.
_PENALIZE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < ends then redis.call('SET', KEYS[1], ends, 'PX', tonumber(ARGV[1])) end
return ends
"""


@dataclass(frozen=True, slots=True)
class Window:
    """One limit a send must fit: ``name`` tells it apart among the robot's windows (``robot``, ``route:x``)."""

    name: str
    limit: RateLimit

    @property
    def key(self) -> str:
        """The window's own key under its robot: its name and its length as counted (ms)."""
        return f"{self.name}:{round(self.limit.guarded_window * 1000)}"


@dataclass(frozen=True, slots=True)
class Grant:
    """``wait`` 0: the send may go and holds slot ``token``; else the seconds to wait (nothing was taken)."""

    wait: float
    token: str | None = None
    robot: str = ""
    windows: tuple[Window, ...] = ()
    local: bool = False


class LocalLimits:
    """The same rules within one process (no Redis, or Redis unreachable)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._sent: dict[tuple[str, str], deque[tuple[float, str]]] = {}
        self._penalty: dict[str, float] = {}

    def acquire(self, robot: str, windows: Sequence[Window], urgent: bool) -> Grant:
        now = self._clock()
        wait = max(0.0, self._penalty.get(robot, 0.0) - now)
        logs = []
        for w in windows:
            span = w.limit.guarded_window
            sent = self._sent.setdefault((robot, w.key), deque())
            while sent and now - sent[0][0] >= span:
                sent.popleft()
            allowed = w.limit.max_messages - (0 if urgent else w.limit.reserve)
            if len(sent) >= allowed:
                wait = max(wait, sent[len(sent) - allowed][0] + span - now if allowed > 0 else span)
            logs.append(sent)
        if wait > 0:
            return Grant(wait, local=True)
        token = uuid.uuid4().hex
        for sent in logs:
            sent.append((now, token))
        return Grant(0.0, token, robot, tuple(windows), local=True)

    def release(self, grant: Grant) -> None:
        for w in grant.windows:
            sent = self._sent.get((grant.robot, w.key))
            if sent is not None:
                for entry in [e for e in sent if e[1] == grant.token]:
                    sent.remove(entry)

    def penalize(self, robot: str, seconds: float) -> None:
        self._penalty[robot] = max(self._penalty.get(robot, 0.0), self._clock() + seconds)


class SharedLimits:
    """The limits in Redis (``redis``: an ``redis.asyncio`` client; ``prefix``: the app's key prefix), falling
    back to this process's own while Redis cannot be reached."""

    def __init__(self, redis: Any | None, prefix: str = "pw:", local: LocalLimits | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.local = local or LocalLimits()
        self._acquire = redis.register_script(_ACQUIRE) if redis is not None else None
        self._penalize = redis.register_script(_PENALIZE) if redis is not None else None
        self._redis_failing = False

    def key(self, robot: str, name: str) -> str:
        # One hash tag per robot: every key of one send lives in one slot of a Redis cluster.
        return f"{self.prefix}alert:{{{robot}}}:{name}"

    async def acquire(self, robot: str, windows: Sequence[Window], urgent: bool) -> Grant:
        if self._acquire is None:
            return self.local.acquire(robot, windows, urgent)
        token = uuid.uuid4().hex
        keys = [self.key(robot, "penalty")] + [self.key(robot, w.key) for w in windows]
        args: list[Any] = [token, "0" if urgent else "1"]
        for w in windows:
            args += [round(w.limit.guarded_window * 1000), w.limit.max_messages, w.limit.reserve]
        try:
            granted, wait_ms = await self._acquire(keys=keys, args=args)
        except _REDIS_TROUBLE as exc:  # this process's limits rather than no alerts at all
            self._failing(exc)
            return self.local.acquire(robot, windows, urgent)
        self._recovered()
        if int(granted):
            return Grant(0.0, token, robot, tuple(windows))
        return Grant(max(int(wait_ms), 1) / 1000)

    async def release(self, grant: Grant) -> None:
        if grant.token is None:
            return
        if grant.local or self.redis is None:
            self.local.release(grant)
            return
        with contextlib.suppress(*_REDIS_TROUBLE):  # best effort: the slot then simply ages out of its window
            pipe = self.redis.pipeline(transaction=False)
            for w in grant.windows:
                pipe.zrem(self.key(grant.robot, w.key), grant.token)
            await pipe.execute()

    async def penalize(self, robot: str, seconds: float) -> None:
        self.local.penalize(robot, seconds)
        if self._penalize is None or seconds <= 0:
            return
        try:
            await self._penalize(keys=[self.key(robot, "penalty")], args=[max(1, round(seconds * 1000))])
        except _REDIS_TROUBLE as exc:  # the local penalty still holds for this process
            self._failing(exc)

    def _failing(self, exc: Exception) -> None:
        if not self._redis_failing:
            self._redis_failing = True
            log.warning("alert rate limits: Redis unreachable (%s); limits hold per worker until it returns", exc)

    def _recovered(self) -> None:
        if self._redis_failing:
            self._redis_failing = False
            log.info("alert rate limits: Redis is back; limits hold across workers again")
