"""The issue queue in Redis: one issue per (subject, kind), idempotent writes, indexes for staff reads.

Layout (prefix ``pw:`` by default; see docs/events.md "Redis layout"):

- ``pw:issue:{id}``                 JSON document of the issue (id = sha1 of ``subject|kind``, 16 hex).
- ``pw:q:{shop}:{status}``         ZSET of ids, score = opened_at: a shop's queue per status, oldest first.
- ``pw:qs:{shop}:{status}:{sev}``  ZSET of ids per severity, so "priority first" reads severity by severity.
- ``pw:kind:{kind}:{status}``      ZSET of ids by kind (all shops), score = opened_at.
- ``pw:opened:{shop}``             ZSET of ids by opened_at (every issue ever) — the daily queue's history.
- ``pw:resolved:{shop}``           ZSET of ids by resolved_at (resolved or auto-resolved ones).
- ``pw:counts``                    HASH ``{shop}|{kind}|{status}`` -> exact count, kept in step by the script.
- ``pw:open``                      HASH ``{kind}|{severity}|{carrier}`` -> exact open+acknowledged count.
- ``pw:shops``                     SET of shop names seen.

Every write goes through one Lua script (atomic, one round trip). Stream events are applied
idempotently: the input is at-least-once, so a redelivered event must change nothing. The rules:
an ``open`` creates the issue, or starts a new open period when it comes after the current one began
(its ``at``, the moment it was raised, is later than the current period's: ``period_ts``), reopening a
resolved issue; an ``update`` or ``resolve`` applies only to the open period it names (same
``opened_at``, at or after the period began); anything older is ignored. A period is told by when it
began, not by its ``opened_at`` alone: a re-opening whose ``opened_at`` was not later than the period
before (a producer that back-dated it) was dropped as a duplicate, and the queue showed auto-resolved a
parcel still overdue.
"The same ``opened_at``" is compared at the 14 significant digits Redis's cjson keeps of the stored
``opened_ts`` (0.1 ms for today's epochs): compared exactly, every ``resolve`` and ``update`` of an issue
opened at a time with microseconds (a deadline computed from event times) was dropped as stale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from domain.events import InvalidEvent, format_time, parse_time
from domain.vocabulary import ACTIVE_STATUSES, SEVERITIES_DESC, STATUSES


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def issue_id(issue_key: str) -> str:
    return hashlib.sha1(issue_key.encode()).hexdigest()[:16]


ISSUE_ACTIONS = ("open", "update", "resolve")
# What the apply script reads of an event without a default: a missing one would fail the script, and
# the sink would retry the whole pipeline for ever.
_REQUIRED_TEXT = ("issue_key", "subject", "kind", "shop", "severity")


def check_issue_event(event: Any) -> tuple[float, float]:
    """Validate a stream issue event (as the parcel agent sends it; README "Issue events"): its
    ``opened_at`` and ``at`` as epoch seconds, or InvalidEvent naming the field and the problem."""
    if not isinstance(event, dict):
        raise InvalidEvent("$", f"an issue event must be a JSON object, got {type(event).__name__}")
    action = event.get("action")
    if action not in ISSUE_ACTIONS:
        raise InvalidEvent("action", f"must be one of {', '.join(ISSUE_ACTIONS)}, got {str(action)[:40]!r}")
    for field in _REQUIRED_TEXT:
        value = event.get(field)
        if not isinstance(value, str) or not value:
            raise InvalidEvent(field, "is required (a non-empty string)")
    return parse_time(event.get("opened_at"), "opened_at"), parse_time(event.get("at"), "at")


# KEYS: none (all keys derive from the prefix, which is ARGV[1]; this keeps one script for any layout).
# ARGV: prefix, then per event: id, event JSON, opened_at epoch, at epoch (a run of events in one call).
# Index maintenance shared by both write scripts: every status change moves the id between the zsets
# and keeps the exact counts in step. Needs `prefix` and `id` defined by the script before it.
_LUA_INDEXES = """
local function unindex(d)
  redis.call('ZREM', prefix .. 'q:' .. d.shop .. ':' .. d.status, id)
  redis.call('ZREM', prefix .. 'qs:' .. d.shop .. ':' .. d.status .. ':' .. d.severity, id)
  redis.call('ZREM', prefix .. 'kind:' .. d.kind .. ':' .. d.status, id)
  redis.call('HINCRBY', prefix .. 'counts', d.shop .. '|' .. d.kind .. '|' .. d.status, -1)
  if d.status == 'open' or d.status == 'acknowledged' then
    redis.call('HINCRBY', prefix .. 'open', d.kind .. '|' .. d.severity .. '|' .. tostring(d.carrier), -1)
  end
end
local function index(d)
  redis.call('ZADD', prefix .. 'q:' .. d.shop .. ':' .. d.status, d.opened_ts, id)
  redis.call('ZADD', prefix .. 'qs:' .. d.shop .. ':' .. d.status .. ':' .. d.severity, d.opened_ts, id)
  redis.call('ZADD', prefix .. 'kind:' .. d.kind .. ':' .. d.status, d.opened_ts, id)
  redis.call('ZADD', prefix .. 'opened:' .. d.shop, d.opened_ts, id)
  redis.call('HINCRBY', prefix .. 'counts', d.shop .. '|' .. d.kind .. '|' .. d.status, 1)
  if d.status == 'open' or d.status == 'acknowledged' then
    redis.call('HINCRBY', prefix .. 'open', d.kind .. '|' .. d.severity .. '|' .. tostring(d.carrier), 1)
    redis.call('ZREM', prefix .. 'resolved:' .. d.shop, id)
  else
    redis.call('ZADD', prefix .. 'resolved:' .. d.shop, d.resolved_ts, id)
  end
  redis.call('SADD', prefix .. 'shops', d.shop)
end
"""

_APPLY_EVENTS = """
local prefix = ARGV[1]
-- The event being applied (the functions below read them as upvalues): its issue id, decoded event,
-- opened_at and at epochs, document key and stored document (nil: none yet).
local id, ev, opened_at, at, key, doc

--INDEXES--
-- cjson stores numbers with 14 significant digits: the stored opened_ts is the event's opened_at rounded.
local function same_time(a, b) return string.format('%.14g', a) == string.format('%.14g', b) end
local function after(a, b) return a > b and not same_time(a, b) end
-- When the document's current open period began (documents written before periods were told by it: their
-- opening's at was its opened_at).
local function period_start(d) return d.period_ts or d.opened_ts end
local function copy_finding(d)
  for _, f in ipairs({'reason', 'severity', 'evidence', 'evidence_data', 'suggested_action', 'exception_reason'}) do
    if ev[f] ~= nil then d[f] = ev[f] end
  end
end
local function copy_base(d)
  for _, f in ipairs({'issue_key', 'kind', 'subject', 'parcel', 'carrier', 'tracking_number', 'order_id',
                      'shop', 'platform', 'lane', 'origin_province', 'destination_province',
                      'destination_city', 'order_value'}) do
    if ev[f] ~= nil then d[f] = ev[f] end
  end
end
local function push_history(d, what, extra)
  local h = {at = ev.at, by = 'stream', action = what}
  if extra then for k, v in pairs(extra) do h[k] = v end end
  table.insert(d.history, h)
end

-- Starts an open period on doc (a new issue, or one reopened): the event's finding and times, a history
-- line saying which (`what`), the indexes and the stored document.
local function open_period(what)
  copy_finding(doc)
  doc.status = 'open'
  doc.opened_at = ev.opened_at
  doc.opened_ts = opened_at
  doc.period_ts = at
  doc.updated_at = ev.at
  push_history(doc, what, {severity = ev.severity, reason = ev.reason})
  index(doc)
  redis.call('SET', key, cjson.encode(doc))
end

-- One event: id, ev, opened_at, at and key are set by the loop below.
local function apply()
  local raw = redis.call('GET', key)
  doc = nil
  if raw then doc = cjson.decode(raw) end

  if ev.action == 'open' then
    if doc == nil then
      doc = {id = id, history = {}, reopened = 0, assignee = cjson.null, resolution_code = cjson.null,
             note = cjson.null, resolved_at = cjson.null, resolved_ts = 0, resolution = cjson.null}
      copy_base(doc)
      open_period('opened')
      return 'opened'
    end
    -- Raised no later than the current period began: this period's opening again, or an older one's.
    if not after(at, period_start(doc)) then return 'duplicate' end
    if doc.status == 'open' or doc.status == 'acknowledged' then
      -- A newer open period while still open (the resolve was lost upstream): carry on as an update, in
      -- the new period (its own updates and resolve name it).
      unindex(doc)
      copy_finding(doc)
      doc.opened_at = ev.opened_at
      doc.opened_ts = opened_at
      doc.period_ts = at
      doc.updated_at = ev.at
      index(doc)
      redis.call('SET', key, cjson.encode(doc))
      return 'updated'
    end
    unindex(doc)
    doc.resolved_at = cjson.null
    doc.resolved_ts = 0
    doc.resolution = cjson.null
    doc.resolution_code = cjson.null
    doc.reopened = (doc.reopened or 0) + 1
    open_period('reopened')
    return 'reopened'
  end

  -- Another period's event (named by its opened_at), or one from before this period began.
  if doc == nil or not same_time(opened_at, doc.opened_ts) or after(period_start(doc), at) then return 'stale' end

  if ev.action == 'update' then
    if doc.status ~= 'open' and doc.status ~= 'acknowledged' then return 'stale' end
    -- Re-applying the same update gives the same document: idempotent without a duplicate check.
    unindex(doc)
    local before = doc.severity
    copy_base(doc)
    copy_finding(doc)
    doc.updated_at = ev.at
    if before ~= doc.severity then push_history(doc, 'severity_changed', {from = before, to = doc.severity}) end
    index(doc)
    redis.call('SET', key, cjson.encode(doc))
    return 'updated'
  end

  if ev.action == 'resolve' then
    if doc.status ~= 'open' and doc.status ~= 'acknowledged' then return 'duplicate' end
    unindex(doc)
    doc.status = 'auto_resolved'
    doc.resolved_at = ev.resolved_at
    doc.resolved_ts = at
    doc.resolution = ev.resolution
    doc.updated_at = ev.at
    push_history(doc, 'auto_resolved', {resolution = ev.resolution})
    index(doc)
    redis.call('SET', key, cjson.encode(doc))
    return 'auto_resolved'
  end
  return redis.error_reply('unknown action ' .. tostring(ev.action))
end

-- ARGV[2..]: one (id, event JSON, opened_at, at) quadruple per event, applied in order.
local results = {}
for i = 2, #ARGV, 4 do
  id, ev, opened_at, at = ARGV[i], cjson.decode(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  key = prefix .. 'issue:' .. id
  results[#results + 1] = apply()
end
return results
""".replace("--INDEXES--", _LUA_INDEXES)


# Staff transitions. ARGV: prefix, id, action, payload JSON, now ISO, now epoch, allowed shops JSON ("*" = any).
# Returns {ok, status|error, current}; errors are 'not_found', 'forbidden', 'conflict'.
_STAFF_ACTION = """
local prefix, id, action = ARGV[1], ARGV[2], ARGV[3]
local p = cjson.decode(ARGV[4])
local now_iso, now_ts = ARGV[5], tonumber(ARGV[6])
local allowed = cjson.decode(ARGV[7])
local key = prefix .. 'issue:' .. id
local raw = redis.call('GET', key)
if not raw then return cjson.encode({ok = false, error = 'not_found'}) end
local d = cjson.decode(raw)
local permitted = false
for _, s in ipairs(allowed) do if s == '*' or s == d.shop then permitted = true end end
-- Another shop's issue is reported as not found: a token must not learn what other shops have.
if not permitted then return cjson.encode({ok = false, error = 'not_found'}) end

--INDEXES--
local function conflict(why)
  return cjson.encode({ok = false, error = 'conflict', current = d.status, message = why})
end
local active = d.status == 'open' or d.status == 'acknowledged'
local entry = {at = now_iso, by = p.by, action = action}

if action == 'acknowledge' then
  if d.status == 'acknowledged' then return cjson.encode({ok = true, status = d.status, unchanged = true}) end
  if not active then return conflict('only an open issue can be acknowledged') end
  unindex(d); d.status = 'acknowledged'; index(d)
elseif action == 'assign' then
  if not active then return conflict('only an open or acknowledged issue can be assigned') end
  if d.assignee == p.assignee then return cjson.encode({ok = true, status = d.status, unchanged = true}) end
  entry.assignee = p.assignee
  d.assignee = p.assignee
elseif action == 'resolve' then
  if d.status == 'resolved' and d.resolution_code == p.resolution_code then
    return cjson.encode({ok = true, status = d.status, unchanged = true})
  end
  if not active then return conflict('the issue is already ' .. d.status .. '; it cannot be resolved again') end
  unindex(d)
  d.status = 'resolved'
  d.resolution_code = p.resolution_code
  d.resolved_at = now_iso
  d.resolved_ts = now_ts
  d.resolution = 'staff'
  entry.resolution_code = p.resolution_code
  index(d)
else
  return redis.error_reply('unknown staff action ' .. tostring(action))
end
if p.note ~= nil and p.note ~= cjson.null then d.note = p.note; entry.note = p.note end
d.updated_at = now_iso
table.insert(d.history, entry)
redis.call('SET', key, cjson.encode(d))
return cjson.encode({ok = true, status = d.status})
""".replace("--INDEXES--", _LUA_INDEXES)

# ARGV: prefix, shop, day start, day end (epoch). Issues opened before the end and not resolved before the start.
_DAY_QUEUE = """
local prefix, shop, s, e = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local ids = redis.call('ZRANGEBYSCORE', prefix .. 'opened:' .. shop, '-inf', '(' .. e)
local out = {}
for _, id in ipairs(ids) do
  local r = redis.call('ZSCORE', prefix .. 'resolved:' .. shop, id)
  if not r or tonumber(r) >= s then table.insert(out, id) end
end
return out
"""

# Issue events applied by one script call (``IssueStore.apply_events``): Redis runs one call at a time,
# so this bounds how long a call holds the queue's readers (about 20 us an event).
EVENTS_PER_CALL = 100


class IssueStore:
    """Async access to the issue queue: stream events applied idempotently, staff transitions, reads."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "pw:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._apply = redis.register_script(_APPLY_EVENTS)
        self._staff = redis.register_script(_STAFF_ACTION)
        self._day = redis.register_script(_DAY_QUEUE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "pw:") -> IssueStore:
        return cls(aioredis.from_url(url, decode_responses=False, socket_timeout=5, socket_connect_timeout=2), prefix)

    async def apply_event(self, event: dict[str, Any]) -> str:
        """Apply one stream issue event idempotently; returns what happened (opened, duplicate, ...).
        An invalid event raises InvalidEvent (``check_issue_event``) before anything is written."""
        [result] = await self.apply_events([event])
        return result

    async def apply_events(self, events: list[dict[str, Any]]) -> list[str]:
        """Apply a batch in one pipeline round trip (order kept: events of one subject stay in order).
        Any invalid event raises InvalidEvent (``check_issue_event``) before anything is written."""
        return await self.apply_checked([(event, *check_issue_event(event)) for event in events])

    async def apply_checked(self, checked: list[tuple[dict[str, Any], float, float]]) -> list[str]:
        """``apply_events`` for events already checked: (event, opened_at, at) as ``check_issue_event``
        gave them (the sink checks each event once, to dead-letter a bad one alone).

        Each script call applies a run of up to ``EVENTS_PER_CALL`` events: one command to build and one
        reply to parse per run instead of per event (redis-py's own cost per command is most of the
        sink's), while no single call holds Redis for long."""
        args: list[Any] = []
        for event, opened, at in checked:
            args += (issue_id(event["issue_key"]), orjson.dumps(event), repr(opened), repr(at))
        step = 4 * EVENTS_PER_CALL
        if len(args) <= step:
            replies = [await self._apply(args=[self.prefix, *args])] if args else []
        else:
            pipe = self.redis.pipeline(transaction=False)
            for i in range(0, len(args), step):
                await self._apply(args=[self.prefix, *args[i : i + step]], client=pipe)
            replies = await pipe.execute()
        results = [r for reply in replies for r in reply]
        for r in results:
            if isinstance(r, Exception):  # (an error reply inside the script's array is not raised by redis-py)
                raise r
        return [r.decode() if isinstance(r, bytes) else str(r) for r in results]

    async def staff_action(
        self, id_: str, action: str, payload: dict[str, Any], now: float, shops: list[str]
    ) -> dict[str, Any]:
        """Apply a staff transition atomically. ``shops`` are those the caller may touch (``["*"]`` = all)."""
        raw = await self._staff(
            args=[self.prefix, id_, action, orjson.dumps(payload), format_time(now) or "", repr(now), orjson.dumps(shops)]
        )
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def get(self, id_: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"{self.prefix}issue:{id_}")
        return None if raw is None else orjson.loads(raw)

    async def get_many(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        raws = await self.redis.mget([f"{self.prefix}issue:{i}" for i in ids])
        return [orjson.loads(r) for r in raws if r is not None]

    async def shops(self) -> list[str]:
        return sorted(_text(s) for s in await self.redis.smembers(f"{self.prefix}shops"))

    async def open_counts(self) -> dict[tuple[str, str, str], int]:
        """Exact open (+acknowledged) counts by (kind, severity, carrier), for the metrics gauge."""
        raw = await self.redis.hgetall(f"{self.prefix}open")
        out: dict[tuple[str, str, str], int] = {}
        for k, v in raw.items():
            kind, sev, carrier = _text(k).split("|", 2)
            if int(v):
                out[(kind, sev, carrier)] = int(v)
        return out

    async def counts(self) -> dict[tuple[str, str, str], int]:
        """Exact counts by (shop, kind, status)."""
        raw = await self.redis.hgetall(f"{self.prefix}counts")
        out: dict[tuple[str, str, str], int] = {}
        for k, v in raw.items():
            shop, kind, status = _text(k).split("|", 2)
            if int(v):
                out[(shop, kind, status)] = int(v)
        return out

    async def day_ids(self, shop: str, start: float, end: float) -> list[str]:
        """Ids of ``shop``'s issues in the queue of the day [start, end): open at its start or opened during it."""
        raw = await self._day(args=[self.prefix, shop, repr(start), repr(end)])
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def query(
        self,
        *,
        shops: list[str],
        statuses: tuple[str, ...] | None = ACTIVE_STATUSES,
        day: tuple[float, float] | None = None,
        kind: str | None = None,
        severity: str | None = None,
        carrier: str | None = None,
        order: str = "priority",
        offset: int = 0,
        limit: int = 100,
    ) -> QueryResult:
        """A page of issues, ordered by severity then age ("priority") or oldest first ("age").

        Without ``day``: the issues now in ``statuses``, read from the per-shop status indexes. With
        ``day``: that day's queue from the history (``statuses`` then filters it, None = all).
        """
        ids: list[str] = []
        if day is not None:
            for shop in shops:
                ids.extend(await self.day_ids(shop, *day))
        else:
            pipe = self.redis.pipeline(transaction=False)
            for shop in shops:
                for status in statuses or STATUSES:
                    pipe.zrange(f"{self.prefix}q:{shop}:{status}", 0, -1)
            for members in await pipe.execute():
                ids.extend(m.decode() for m in members)
        docs = await self.get_many(ids)
        if statuses is not None:
            docs = [d for d in docs if d["status"] in statuses]
        if severity:
            docs = [d for d in docs if d["severity"] == severity]
        if carrier:
            docs = [d for d in docs if d.get("carrier") == carrier]
        by_kind: dict[str, int] = {}
        for d in docs:
            by_kind[d["kind"]] = by_kind.get(d["kind"], 0) + 1
        if kind:
            docs = [d for d in docs if d["kind"] == kind]
        if order == "priority":
            docs.sort(key=lambda d: (SEVERITIES_DESC.index(d["severity"]), d["opened_ts"], d["id"]))
        else:
            docs.sort(key=lambda d: (d["opened_ts"], d["id"]))
        return QueryResult(docs[offset : offset + limit], len(docs), by_kind)


@dataclass(slots=True)
class QueryResult:
    issues: list[dict[str, Any]]
    total: int
    # Counts per kind over the whole filtered set before the kind filter (the page's header counts).
    by_kind: dict[str, int]
