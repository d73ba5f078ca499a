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
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import orjson
import redis.asyncio as aioredis

from domain.events import InvalidEvent, format_time, parse_time
from domain.vocabulary import ACTIVE_STATUSES, STATUSES


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def issue_id(issue_key: str) -> str:
    return hashlib.sha1(issue_key.encode()).hexdigest()[:16]


ISSUE_ACTIONS = ("open", "update", "resolve")
# What Lua's tostring made of a JSON null carrier (an order's issue) in the open counts' keys before: such keys
# may still hold counts, which the fixed script now moves under "".
_LUA_NIL = "userdata: (nil)"
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


def is_issue_event(event: Any) -> bool:
    """Whether ``event`` passes ``check_issue_event`` (for a reader that skips what another dead-letters)."""
    try:
        check_issue_event(event)
    except InvalidEvent:
        return False
    return True


# What the queue's reads filter, count and order by (``_QUERY``): one small JSON array per issue in `row`,
# written with every index change.
_LUA_ROW = """
-- A text field as stored, or '' when it is absent or JSON null (cjson.null, which tostring makes "userdata").
local function text(v) if type(v) == 'string' then return v end return '' end
local function row_of(d)
  return cjson.encode({d.shop, d.status, d.severity, d.kind, text(d.carrier), text(d.platform), d.opened_ts, text(d.assignee_login)})
end
"""

# KEYS: none (all keys derive from the prefix, which is ARGV[1]; this keeps one script for any layout).
# ARGV: prefix, then per event: id, event JSON, opened_at epoch, at epoch (a run of events in one call).
# Index maintenance shared by both write scripts: every status change moves the id between the zsets
# and keeps the exact counts in step. Needs `prefix` and `id` defined by the script before it.
_LUA_INDEXES = _LUA_ROW + """
-- The inverse of index (but for the row and the shops seen, which index overwrites): an update that moves an
-- issue to another shop (the order's facts arrived after it opened under 'unknown') or gives it another order or
-- tracking number leaves nothing under the old ones for the day queues and the search to find.
local function unindex(d)
  redis.call('ZREM', prefix .. 'q:' .. d.shop .. ':' .. d.status, id)
  redis.call('ZREM', prefix .. 'qs:' .. d.shop .. ':' .. d.status .. ':' .. d.severity, id)
  redis.call('ZREM', prefix .. 'kind:' .. d.kind .. ':' .. d.status, id)
  redis.call('ZREM', prefix .. 'opened:' .. d.shop, id)
  redis.call('ZREM', prefix .. 'resolved:' .. d.shop, id)
  for _, f in ipairs({'order_id', 'tracking_number'}) do
    if type(d[f]) == 'string' and d[f] ~= '' then redis.call('SREM', prefix .. 'find:' .. d[f], id) end
  end
  redis.call('HINCRBY', prefix .. 'counts', d.shop .. '|' .. d.kind .. '|' .. d.status, -1)
  if d.status == 'open' or d.status == 'acknowledged' then
    redis.call('HINCRBY', prefix .. 'open', d.kind .. '|' .. d.severity .. '|' .. text(d.carrier), -1)
  end
end
local function index(d)
  redis.call('ZADD', prefix .. 'q:' .. d.shop .. ':' .. d.status, d.opened_ts, id)
  redis.call('ZADD', prefix .. 'qs:' .. d.shop .. ':' .. d.status .. ':' .. d.severity, d.opened_ts, id)
  redis.call('ZADD', prefix .. 'kind:' .. d.kind .. ':' .. d.status, d.opened_ts, id)
  redis.call('ZADD', prefix .. 'opened:' .. d.shop, d.opened_ts, id)
  redis.call('HINCRBY', prefix .. 'counts', d.shop .. '|' .. d.kind .. '|' .. d.status, 1)
  if d.status == 'open' or d.status == 'acknowledged' then
    redis.call('HINCRBY', prefix .. 'open', d.kind .. '|' .. d.severity .. '|' .. text(d.carrier), 1)
    redis.call('ZREM', prefix .. 'resolved:' .. d.shop, id)
  else
    redis.call('ZADD', prefix .. 'resolved:' .. d.shop, d.resolved_ts, id)
  end
  redis.call('SADD', prefix .. 'shops', d.shop)
  redis.call('HSET', prefix .. 'row', id, row_of(d))
  for _, f in ipairs({'order_id', 'tracking_number'}) do
    if type(d[f]) == 'string' and d[f] ~= '' then redis.call('SADD', prefix .. 'find:' .. d[f], id) end
  end
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
  copy_base(doc)  -- (a reopening names the shop and order the parcel has now: an issue opened under 'unknown')
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
      copy_base(doc)
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
-- Who signed in (a staff account's login), or whom a machine token said it acted for (unverified).
if type(p.by_login) == 'string' then entry.by_login = p.by_login end
if type(p.on_behalf_of) == 'string' then entry.on_behalf_of = p.on_behalf_of end

if action == 'acknowledge' then
  if d.status == 'acknowledged' then return cjson.encode({ok = true, status = d.status, unchanged = true}) end
  if not active then return conflict('only an open issue can be acknowledged') end
  unindex(d); d.status = 'acknowledged'; index(d)
elseif action == 'assign' then
  if not active then return conflict('only an open or acknowledged issue can be assigned') end
  if d.assignee == p.assignee then return cjson.encode({ok = true, status = d.status, unchanged = true}) end
  entry.assignee = p.assignee
  d.assignee = p.assignee
  d.assignee_login = p.assignee_login or cjson.null
  redis.call('HSET', prefix .. 'row', id, row_of(d))
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

# A page of the queue from the rows alone (``row_of``): the candidates (a shop's status zsets, a day's
# queue, or the search index), filtered, counted per kind / severity / shop, ordered, cut to the page.
# No issue document is read (one is, once, for an issue written before rows existed). ARGV: prefix, the
# request (``IssueStore.query``) as JSON. Returns JSON {total, new, by_kind, by_severity, by_shop, ids}.
_QUERY = """
local prefix = ARGV[1]
local q = cjson.decode(ARGV[2])
--ROW--
local function opt(v) if v == nil or v == cjson.null or v == '' then return nil end return v end
local kind, severity, carrier, platform = opt(q.kind), opt(q.severity), opt(q.carrier), opt(q.platform)
local shop, assignee, since = opt(q.shop), opt(q.assignee), tonumber(opt(q.since) or 0)
local shops, statuses = {}, nil
for _, s in ipairs(q.shops) do shops[s] = true end
if opt(q.statuses) then
  statuses = {}
  for _, s in ipairs(q.statuses) do statuses[s] = true end
end

local ids, seen = {}, {}
local function add(id) if not seen[id] then seen[id] = true; ids[#ids + 1] = id end end
if opt(q.search) then
  for _, term in ipairs(q.search) do
    for _, id in ipairs(redis.call('SMEMBERS', prefix .. 'find:' .. term)) do add(id) end
  end
elseif opt(q.day) then
  -- A day's queue: opened before its end and not resolved before its start.
  local s, e = tonumber(q.day[1]), q.day[2]
  for _, sh in ipairs(q.shops) do
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', prefix .. 'opened:' .. sh, '-inf', '(' .. e)) do
      local r = redis.call('ZSCORE', prefix .. 'resolved:' .. sh, id)
      if not r or tonumber(r) >= s then add(id) end
    end
  end
else
  for _, sh in ipairs(q.shops) do
    for _, st in ipairs(q.statuses) do
      for _, id in ipairs(redis.call('ZRANGE', prefix .. 'q:' .. sh .. ':' .. st, 0, -1)) do ids[#ids + 1] = id end
    end
  end
  statuses = nil  -- (read from the status zsets themselves)
end

local RANK = {critical = 0, high = 1, medium = 2, low = 3}
local total, new = 0, 0
local by_kind, by_severity, by_shop = {}, {}, {}
local function bump(t, k) t[k] = (t[k] or 0) + 1 end
local keys, at_key = {}, {}
local priority = q.order ~= 'age'
for i = 1, #ids, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #ids) do chunk[#chunk + 1] = ids[j] end
  local rows = redis.call('HMGET', prefix .. 'row', unpack(chunk))
  for j, id in ipairs(chunk) do
    local raw = rows[j]
    if not raw then
      -- An issue written before rows existed: its row, once.
      local doc = redis.call('GET', prefix .. 'issue:' .. id)
      if doc then
        raw = row_of(cjson.decode(doc))
        redis.call('HSET', prefix .. 'row', id, raw)
      end
    end
    if raw then
      local r = cjson.decode(raw)
      local r_shop, r_status, r_sev, r_kind, r_carrier, r_platform, r_ts, r_assignee = unpack(r)
      if shops[r_shop] and (statuses == nil or statuses[r_status]) and (not carrier or r_carrier == carrier)
          and (not platform or r_platform == platform) and (not assignee or r_assignee == assignee) then
        local m_shop = not shop or r_shop == shop
        local m_kind = not kind or r_kind == kind
        local m_sev = not severity or r_sev == severity
        if m_shop and m_kind then bump(by_severity, r_sev) end
        if m_shop and m_sev then bump(by_kind, r_kind) end
        if m_kind and m_sev then bump(by_shop, r_shop) end
        if m_shop and m_kind and m_sev then
          total = total + 1
          if r_ts > since then new = new + 1 end
          local k = r_ts
          if priority then k = (RANK[r_sev] or 4) * 1e10 + r_ts end
          local same = at_key[k]
          if same == nil then at_key[k] = {id}; keys[#keys + 1] = k else same[#same + 1] = id end
        end
      end
    end
  end
end

table.sort(keys)
local offset, limit = tonumber(q.offset) or 0, tonumber(q.limit) or 100
local page, n = {}, 0
for _, k in ipairs(keys) do
  local same = at_key[k]
  if n + #same > offset then
    if #same > 1 then table.sort(same) end
    for _, id in ipairs(same) do
      n = n + 1
      if n > offset then page[#page + 1] = id end
      if #page >= limit then break end
    end
  else
    n = n + #same
  end
  if #page >= limit then break end
end
return cjson.encode({total = total, new = new, by_kind = by_kind, by_severity = by_severity, by_shop = by_shop, ids = page})
""".replace("--ROW--", _LUA_ROW)

# The parcel's story beside its issues: the scans each issue event carries, merged into one zset per subject
# (score = scan time, kept to the newest SCANS_KEPT; merging is idempotent and order-free, so a redelivered
# or late event changes nothing), and the order facts of the newest event. ARGV: prefix, kept, then per
# event: subject, event time (epoch), scans JSON, facts JSON.
_PARCEL = """
local prefix, kept = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV, 4 do
  local subject, at, scans, facts = ARGV[i], tonumber(ARGV[i + 1]), cjson.decode(ARGV[i + 2]), ARGV[i + 3]
  if #scans > 0 then
    local key = prefix .. 'scans:' .. subject
    for _, scan in ipairs(scans) do redis.call('ZADD', key, scan[1], cjson.encode(scan)) end
    redis.call('ZREMRANGEBYRANK', key, 0, -kept - 1)
  end
  local fkey = prefix .. 'facts:' .. subject
  local stored = tonumber(redis.call('HGET', fkey, 'at'))
  if stored == nil or at >= stored then redis.call('HSET', fkey, 'at', ARGV[i + 1], 'facts', facts) end
end
return #ARGV
"""
SCANS_KEPT = 30

# Rows and search entries for issues written before they existed. ARGV: prefix, then issue ids.
_BACKFILL = """
local prefix = ARGV[1]
--ROW--
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local raw = redis.call('GET', prefix .. 'issue:' .. id)
  if raw then
    local d = cjson.decode(raw)
    if redis.call('HEXISTS', prefix .. 'row', id) == 0 then redis.call('HSET', prefix .. 'row', id, row_of(d)) end
    for _, f in ipairs({'order_id', 'tracking_number'}) do
      if type(d[f]) == 'string' and d[f] ~= '' then redis.call('SADD', prefix .. 'find:' .. d[f], id) end
    end
    n = n + 1
  end
end
return n
""".replace("--ROW--", _LUA_ROW)
# What ``backfill_indexes`` records once it has indexed every issue of a queue.
INDEXES_VERSION = b"1"
# Order facts an issue event carries beyond the issue document's own fields (``_parcel_args``).
PARCEL_FACTS = ("autoconfirm_at", "paid_at", "shipped_at", "category")

# After the broker came back empty (a new lifetime: every parcel state is gone), the issues still active
# were raised from states nobody holds any more: no event can end them. Each is marked auto_resolved with
# resolution "state_lost" (a history line says why); a problem that persists is raised again from the new
# states and reopens it. Once per lifetime: the lifetime is recorded, and a second worker (or a restart)
# finds it done. The first lifetime ever recorded marks nothing (there is nothing to compare with).
# ARGV: prefix, lifetime id, now ISO, now epoch. Returns the count marked, -1 (done before), -2 (first).
_RECONCILE_LIFETIME = """
local prefix, lifetime, now_iso, now_ts = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local id

--INDEXES--
local known = redis.call('GET', prefix .. 'broker-lifetime')
if known == lifetime then return -1 end
redis.call('SET', prefix .. 'broker-lifetime', lifetime)
if not known then return -2 end
local marked = 0
for _, shop in ipairs(redis.call('SMEMBERS', prefix .. 'shops')) do
  for _, status in ipairs({'open', 'acknowledged'}) do
    for _, member in ipairs(redis.call('ZRANGE', prefix .. 'q:' .. shop .. ':' .. status, 0, -1)) do
      id = member
      local key = prefix .. 'issue:' .. id
      local raw = redis.call('GET', key)
      if raw then
        local d = cjson.decode(raw)
        unindex(d)
        d.status = 'auto_resolved'
        d.resolved_at = now_iso
        d.resolved_ts = now_ts
        d.resolution = 'state_lost'
        d.updated_at = now_iso
        table.insert(d.history, {at = now_iso, by = 'stream', action = 'auto_resolved', resolution = 'state_lost'})
        index(d)
        redis.call('SET', key, cjson.encode(d))
        marked = marked + 1
      end
    end
  end
end
return marked
""".replace("--INDEXES--", _LUA_INDEXES)

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
        self._reconcile = redis.register_script(_RECONCILE_LIFETIME)
        self._query = redis.register_script(_QUERY)
        self._parcel = redis.register_script(_PARCEL)
        self._backfill = redis.register_script(_BACKFILL)

    @classmethod
    def from_url(cls, url: str, prefix: str = "pw:", socket_timeout: float = 5) -> IssueStore:
        return cls(aioredis.from_url(url, decode_responses=False, socket_timeout=socket_timeout, socket_connect_timeout=2),
                   prefix)

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
        sink's), while no single call holds Redis for long. The parcels' scans and order facts the events
        carry go in the same round trip (``_PARCEL``)."""
        args: list[Any] = []
        parcel: list[Any] = []
        for event, opened, at in checked:
            args += (issue_id(event["issue_key"]), orjson.dumps(event), repr(opened), repr(at))
            parcel += _parcel_args(event, at)
        step = 4 * EVENTS_PER_CALL
        calls = [args[i : i + step] for i in range(0, len(args), step)]
        stories = [parcel[i : i + step] for i in range(0, len(parcel), step)]
        if len(calls) == 1 and not stories:
            replies = [await self._apply(args=[self.prefix, *calls[0]])]
        elif calls:
            pipe = self.redis.pipeline(transaction=False)
            for call in calls:
                await self._apply(args=[self.prefix, *call], client=pipe)
            for story in stories:
                await self._parcel(args=[self.prefix, SCANS_KEPT, *story], client=pipe)
            replies = (await pipe.execute())[: len(calls)]
        else:
            replies = []
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

    async def reconcile_broker_lifetime(self, lifetime: str, now: float) -> int | None:
        """Mark the issues still active from an earlier broker lifetime (``_RECONCILE_LIFETIME``); the count
        marked, or None when there was nothing to reconcile (this lifetime done before, or the first one)."""
        marked = int(await self._reconcile(args=[self.prefix, lifetime, format_time(now) or "", repr(now)]))
        return marked if marked >= 0 else None

    async def get(self, id_: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"{self.prefix}issue:{id_}")
        return None if raw is None else orjson.loads(raw)

    async def get_many(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        raws = await self.redis.mget([f"{self.prefix}issue:{i}" for i in ids])
        return [orjson.loads(r) for r in raws if r is not None]

    async def story(self, doc: dict[str, Any], *, all_scans: bool = True) -> dict[str, Any]:
        """``doc`` with its parcel's story: ``scans`` (oldest first; only the newest unless ``all_scans``)
        and the order facts the issue events carried."""
        [enriched] = await self._with_stories([dict(doc)], all_scans=all_scans)
        return enriched

    async def _with_stories(self, docs: list[dict[str, Any]], *, all_scans: bool) -> list[dict[str, Any]]:
        if not docs:
            return docs
        pipe = self.redis.pipeline(transaction=False)
        for doc in docs:
            subject = doc.get("subject") or ""
            pipe.zrange(f"{self.prefix}scans:{subject}", 0 if all_scans else -1, -1)
            pipe.hget(f"{self.prefix}facts:{subject}", "facts")
        replies = await pipe.execute()
        for n, doc in enumerate(docs):
            scans = [_scan(orjson.loads(raw)) for raw in replies[2 * n]]
            doc["scans"] = [s for s in scans if s is not None]
            facts = orjson.loads(replies[2 * n + 1]) if replies[2 * n + 1] else {}
            for key in PARCEL_FACTS:
                doc.setdefault(key, facts.get(key) if isinstance(facts, dict) else None)
        return docs

    async def shops(self) -> list[str]:
        return sorted(_text(s) for s in await self.redis.smembers(f"{self.prefix}shops"))

    async def open_counts(self) -> dict[tuple[str, str, str], int]:
        """Exact open (+acknowledged) counts by (kind, severity, carrier), for the metrics gauge."""
        raw = await self.redis.hgetall(f"{self.prefix}open")
        out: dict[tuple[str, str, str], int] = {}
        for k, v in raw.items():
            kind, sev, carrier = _text(k).split("|", 2)
            if carrier == _LUA_NIL:
                carrier = ""  # (counted under the script's old label of a missing carrier: the same issues)
            out[(kind, sev, carrier)] = out.get((kind, sev, carrier), 0) + int(v)
        return {key: n for key, n in out.items() if n}

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
        shop: str | None = None,
        platform: str | None = None,
        assignee: str | None = None,
        search: str | None = None,
        since: float | None = None,
        stories: bool = False,
    ) -> QueryResult:
        """A page of issues, ordered by severity then age ("priority") or oldest first ("age"), with the
        total and the counts a filter would give.

        ``shops`` are the shops the caller may see; ``shop`` narrows to one of them (``by_shop`` counts
        every shop the other filters leave). Without ``day``: the issues now in ``statuses``, read from the
        per-shop status indexes. With ``day``: that day's queue from the history (``statuses`` then filters
        it, None = all). ``search``: an order id or tracking number, through the search index (``statuses``
        filters it, None = all). ``since``: count as ``new`` what opened after it. ``stories``: each issue
        with its newest scan and order facts (``story``).
        """
        request: dict[str, Any] = {
            "shops": shops, "statuses": list(statuses or STATUSES) if day is None and not search else (
                list(statuses) if statuses else None),
            "kind": kind, "severity": severity, "carrier": carrier, "platform": platform, "shop": shop,
            "assignee": assignee, "since": since, "order": order, "offset": offset, "limit": limit,
            "day": list(day) if day is not None else None, "search": search_terms(search) if search else None,
        }
        if request["search"] == []:
            return QueryResult([], 0, {})
        reply = orjson.loads(await self._query(args=[self.prefix, orjson.dumps(request)]))
        page = reply["ids"] if isinstance(reply["ids"], list) else []
        docs = await self.get_many(page)
        if stories:
            docs = await self._with_stories(docs, all_scans=False)
        return QueryResult(docs, reply["total"], _counts(reply["by_kind"]), _counts(reply["by_severity"]),
                           _counts(reply["by_shop"]), reply["new"])

    async def backfill_indexes(self, batch: int = 500) -> int:
        """Rows and search entries for issues written before they existed (``_BACKFILL``); idempotent, and
        done once per queue (``indexes_version``). Returns how many issues it looked at (0: done before)."""
        marker = f"{self.prefix}indexes_version"
        if await self.redis.get(marker) == INDEXES_VERSION:
            return 0
        seen = 0
        async for keys in _batches(self.redis.scan_iter(match=f"{self.prefix}issue:*", count=batch), batch):
            prefix_len = len(self.prefix) + len("issue:")
            ids = [(k.decode() if isinstance(k, bytes) else str(k))[prefix_len:] for k in keys]
            seen += int(await self._backfill(args=[self.prefix, *ids]))
        await self.redis.set(marker, INDEXES_VERSION)
        return seen


def search_terms(raw: str) -> list[str]:
    """What a search box's text may name: an order id or a tracking number, as pasted (spaces and a
    carrier prefix such as ``ZTO:`` dropped, lower-case letters also tried in upper case)."""
    term = "".join(raw.split())
    if ":" in term:
        term = term.split(":", 1)[1]
    if not term or len(term) > 64:
        return []
    return list(dict.fromkeys((term, term.upper())))


def _counts(raw: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _scan(raw: Any) -> dict[str, Any] | None:
    """One scan of a parcel's story as the API gives it: {at, status, text, place, exception_reason}."""
    if not isinstance(raw, list) or len(raw) < 2 or not isinstance(raw[0], (int, float)):
        return None
    padded = [*raw[:5], None, None, None][:5]
    return {"at": format_time(float(padded[0])), "status": padded[1], "text": padded[2], "place": padded[3],
            "exception_reason": padded[4]}


def _parcel_args(event: Mapping[str, Any], at: float) -> list[Any]:
    """The ``_PARCEL`` arguments of one issue event: nothing when it carries neither scans nor order facts."""
    raw = event.get("scans")
    scans = [list(s[:5]) for s in raw if isinstance(s, (list, tuple)) and len(s) >= 2 and isinstance(s[0], (int, float))
             and not isinstance(s[0], bool)] if isinstance(raw, list) else []
    facts = {k: event[k] for k in PARCEL_FACTS if event.get(k) is not None}
    if not scans and not facts:
        return []
    return [event["subject"], repr(at), orjson.dumps(scans), orjson.dumps(facts)]


async def _batches(items: Any, n: int) -> Any:
    chunk: list[Any] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(slots=True)
class QueryResult:
    issues: list[dict[str, Any]]
    total: int
    # Counts over the whole filtered set before the kind filter (the page's header counts).
    by_kind: dict[str, int]
    # The same before the severity filter, and before the shop filter.
    by_severity: dict[str, int] = dataclass_field(default_factory=dict)
    by_shop: dict[str, int] = dataclass_field(default_factory=dict)
    # Of ``total``, opened after the ``since`` asked for.
    new: int = 0
