"""Which parcels are registered with the aggregator, which wait, which failed: in Redis, shared by every worker.

Layout (prefix ``pw:sub:``):

- ``pw:sub:p:{parcel}``  HASH: ``p`` (the parcel's JSON), ``state`` (pending | registered | failed), ``attempts``,
  ``first_at``, ``last_error``, ``registered_at`` / ``failed_at``, ``issue`` (``opened_at`` of the issue raised
  for it). A registered or failed parcel's hash expires ``KEPT_DAYS`` after that.
- ``pw:sub:due``         ZSET of pending parcels by the time of their next attempt (a claimed one: its lease end).
- ``pw:sub:failed``      ZSET of parcels that could not be registered, by when.
- ``pw:sub:outbox``      HASH parcel -> the issue event still to send for it (sent, then removed if unchanged).
- ``pw:sub:count``       HASH ``registered`` -> parcels registered.
- ``pw:sub:rate:{vendor}`` the vendor's next free request slot (ms), shared by every worker (``acquire``).

Every change is one Lua script: a parcel is registered once whatever number of workers, redeliveries or
imports name it ("known" answers), and a claim hands a due parcel to one worker at a time (a lease: a worker
that dies mid-request leaves it to be claimed again when the lease ends; the vendor then answers "already").
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from .vendors import Parcel

KEPT_DAYS = 90  # a registered or failed parcel is remembered this long (an import of older orders repeats it)

_ENQUEUE = """
local prefix, now, retry = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local out = {}
for i = 4, #ARGV, 2 do
  local key, doc = ARGV[i], ARGV[i + 1]
  local h = prefix .. 'p:' .. key
  local state = redis.call('HGET', h, 'state')
  if not state or (state == 'failed' and retry) then
    redis.call('HSET', h, 'p', doc, 'state', 'pending', 'attempts', 0, 'first_at', now, 'last_error', '')
    redis.call('PERSIST', h)
    redis.call('ZREM', prefix .. 'failed', key)
    redis.call('ZADD', prefix .. 'due', now, key)
    out[#out + 1] = state and 'requeued' or 'queued'
  else
    out[#out + 1] = state
  end
end
return out
"""

# ARGV: prefix, now, lease, limit. Returns (key, parcel JSON, attempts, first_at, issue) per claimed parcel.
_CLAIM = """
local prefix, now, lease, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local due = prefix .. 'due'
local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit)) do
  local f = redis.call('HMGET', prefix .. 'p:' .. key, 'p', 'attempts', 'first_at', 'issue', 'state')
  if f[1] and f[5] == 'pending' then
    redis.call('ZADD', due, now + lease, key)
    out[#out + 1] = key
    out[#out + 1] = f[1]
    out[#out + 1] = f[2] or '0'
    out[#out + 1] = f[3] or tostring(now)
    out[#out + 1] = f[4] or ''
  else
    redis.call('ZREM', due, key)
  end
end
return out
"""

# ARGV: prefix, key, outcome (registered | retry | hold | failed), now, next_at, error, event JSON or '', issue
# opened_at or '', kept seconds. Only a pending parcel is settled (a repeated settle changes nothing).
_SETTLE = """
local prefix, key, outcome, now, next_at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local err, event, issue, kept = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local h = prefix .. 'p:' .. key
if redis.call('HGET', h, 'state') ~= 'pending' then return 'stale' end
local due, failed = prefix .. 'due', prefix .. 'failed'
if outcome == 'registered' then
  redis.call('HSET', h, 'state', 'registered', 'registered_at', now, 'last_error', '')
  redis.call('HDEL', h, 'issue')
  redis.call('ZREM', due, key)
  redis.call('HINCRBY', prefix .. 'count', 'registered', 1)
  redis.call('EXPIRE', h, kept)
elseif outcome == 'retry' then
  redis.call('HINCRBY', h, 'attempts', 1)
  redis.call('HSET', h, 'last_error', err)
  redis.call('ZADD', due, next_at, key)
elseif outcome == 'hold' then
  redis.call('HSET', h, 'last_error', err)
  redis.call('ZADD', due, next_at, key)
elseif outcome == 'failed' then
  redis.call('HINCRBY', h, 'attempts', 1)
  redis.call('HSET', h, 'state', 'failed', 'failed_at', now, 'last_error', err, 'issue', issue)
  redis.call('ZREM', due, key)
  redis.call('ZADD', failed, now, key)
  redis.call('ZREMRANGEBYSCORE', failed, '-inf', tonumber(now) - kept)
  redis.call('EXPIRE', h, kept)
else
  return redis.error_reply('unknown outcome ' .. tostring(outcome))
end
if event ~= '' then redis.call('HSET', prefix .. 'outbox', key, event) end
return outcome
"""

_SENT = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

# The vendor's request slots, one every ARGV[1] ms, on Redis's clock (every worker shares it). ARGV[2]: ms to
# hold every slot back (the vendor asked us to wait). Returns how many ms the caller must wait for its slot.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, pause = tonumber(ARGV[1]), tonumber(ARGV[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
if pause > 0 then
  if slot < now + pause then slot = now + pause end
  redis.call('SET', KEYS[1], slot, 'PX', math.floor(pause + interval * 2))
  return 0
end
redis.call('SET', KEYS[1], slot + interval, 'PX', math.floor(slot - now + interval * 2))
return slot - now
"""


# Slots are this much wider than 1/rate: evenly spaced slots of exactly 1/rate put rate + 1 requests into a
# closed one-second window, and a request reaches the vendor later than its slot (a busy machine between the
# slot and the send, then the network). At 5 % the vendor's side of a loaded test machine saw rate + 1.
SLOT_MARGIN = 0.10


def slot_ms(rate: float) -> int:
    """Milliseconds between two requests at ``rate`` a second, ``SLOT_MARGIN`` wider."""
    return max(1, math.ceil(1000.0 / rate * (1 + SLOT_MARGIN)))


def slot_tolerance_seconds(rate: float) -> float:
    """How late after its slot a request may still go: half of what the slots' margin leaves over in one
    second (the other half is for the way to the vendor). A request later than that would share a one-second
    window with the punctual ones after it, one more than ``rate`` (the registrar then takes a new slot)."""
    return max(0.001, (slot_ms(rate) * rate - 1000.0) / 2 / 1000.0)


@dataclass(frozen=True, slots=True)
class Claimed:
    parcel: Parcel
    attempts: int
    first_at: float
    issue: str  # opened_at of the issue raised for it, "" when none


class SubscriptionStore:
    def __init__(self, redis: aioredis.Redis, prefix: str = "pw:sub:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._settle = redis.register_script(_SETTLE)
        self._sent = redis.register_script(_SENT)
        self._acquire = redis.register_script(_ACQUIRE)

    async def enqueue(self, parcels: list[Parcel], now: float, *, retry_failed: bool = False) -> list[str]:
        """File each parcel to be registered unless it is known: per parcel ``queued``, ``requeued`` (a failed
        one, with ``retry_failed``) or its current state (``pending``, ``registered``, ``failed``)."""
        if not parcels:
            return []
        args: list[Any] = [self.prefix, repr(now), "1" if retry_failed else "0"]
        for parcel in parcels:
            args += (parcel.key, json.dumps(asdict(parcel), ensure_ascii=False))
        return [_text(r) for r in await self._enqueue(args=args)]

    async def claim(self, now: float, lease: float, limit: int) -> list[Claimed]:
        """Up to ``limit`` parcels due by ``now``, each leased to the caller for ``lease`` seconds."""
        raw = await self._claim(args=[self.prefix, repr(now), repr(lease), limit])
        out = []
        for i in range(0, len(raw), 5):
            doc = json.loads(raw[i + 1])
            out.append(Claimed(Parcel(**doc), int(raw[i + 2]), float(raw[i + 3]), _text(raw[i + 4])))
        return out

    async def settle(self, key: str, outcome: str, now: float, *, next_at: float = 0.0, error: str = "",
                     event: bytes = b"", issue: str = "") -> str:
        """Record what became of a claimed parcel, with the issue event to send for it (the outbox)."""
        return _text(await self._settle(args=[self.prefix, key, outcome, repr(now), repr(next_at), error, event, issue,
                                              KEPT_DAYS * 86400]))

    async def outbox(self) -> dict[str, bytes]:
        raw = await self.redis.hgetall(self.prefix + "outbox")
        return {_text(k): v if isinstance(v, bytes) else str(v).encode() for k, v in raw.items()}

    async def sent(self, key: str, event: bytes) -> None:
        """The event was acknowledged: drop it from the outbox unless a newer one replaced it meanwhile."""
        await self._sent(keys=[self.prefix + "outbox"], args=[key, event])

    async def acquire(self, vendor: str, rate: float) -> float:
        """Reserve the vendor's next request slot; the seconds to wait until it."""
        return float(await self._acquire(keys=[self.prefix + "rate:" + vendor], args=[slot_ms(rate), 0])) / 1000.0

    async def pause(self, vendor: str, rate: float, seconds: float) -> None:
        """The vendor asked us to wait: no worker takes a slot of it for ``seconds``."""
        await self._acquire(keys=[self.prefix + "rate:" + vendor], args=[slot_ms(rate), max(1, int(seconds * 1000))])

    async def counts(self) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.prefix + "due")
        pipe.zcard(self.prefix + "failed")
        pipe.hget(self.prefix + "count", "registered")
        pending, failed, registered = await pipe.execute()
        return {"pending": int(pending), "failed": int(failed), "registered": int(registered or 0)}

    async def failures(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest parcels that could not be registered: key, when, error, the order's shop and id."""
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in await self.redis.zrevrange(self.prefix + "failed", 0, limit - 1)]
        out = []
        for key in keys:
            doc, failed_at, error, attempts = await self.redis.hmget(self.prefix + "p:" + key, "p", "failed_at",
                                                                     "last_error", "attempts")
            if doc is None:
                continue
            parcel = json.loads(doc)
            out.append({"parcel": key, "shop": parcel.get("shop"), "order_id": parcel.get("order_id"),
                        "failed_at": float(failed_at or 0), "attempts": int(attempts or 0), "error": _text(error or b"")})
        return out

    async def failed_parcels(self, shop: str | None = None) -> list[Parcel]:
        """Every parcel that could not be registered (of one shop), to be filed again (``enqueue(retry_failed=True)``)."""
        out = []
        for key in await self.redis.zrange(self.prefix + "failed", 0, -1):
            doc = await self.redis.hget(self.prefix + "p:" + (key.decode() if isinstance(key, bytes) else str(key)), "p")
            if doc is not None:
                parcel = Parcel(**json.loads(doc))
                if shop is None or parcel.shop == shop:
                    out.append(parcel)
        return out

    async def state(self, key: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.prefix + "p:" + key)
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
