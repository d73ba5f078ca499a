"""A shop's logistics health (物流体验), as the platforms score sellers: pickup within 24 h / 48 h of shipping,
delivery time from pickup to signature per lane against that lane's normal time, and the carriers'
exception rate, over the last 7, 30 or 90 days.

Daily aggregates per shop in Redis, written from the stream (``agents/shop_health.py`` reads each parcel's
shipping, pickup and signature from the ``shop_logistics`` topic); the exceptions are counted from the
issue queue itself at read time. Layout (prefix ``pw:``):

- ``health:{shop}:{YYYYMMDD}`` HASH, China days, kept ``KEEP_DAYS``. Shipping and pickup count on the
  parcel's shipping day: ``shipped|{carrier}``, ``picked|{carrier}``, ``p24|{carrier}``, ``p48|{carrier}``,
  ``pickup_h|{carrier}`` (hours, summed). Signatures count on their own day, per lane
  ``{carrier}|{origin}|{destination}``: ``signed|``, ``transit_h|`` and ``normal_h|`` (the lane's normal
  transit time when the parcel was signed, summed), ``over|`` (signed later than that).
- ``health_seen:{kind}:{parcel}`` a milestone already counted (the stream delivers at least once), kept
  ``SEEN_SECONDS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis

from domain.vocabulary import HOUR, china_date, china_day_bounds

from .texts import carrier_name

KEEP_DAYS = 100
WINDOWS = (7, 30, 90)
# Redelivery after a crash repeats records within minutes; a marker outlives that by far.
SEEN_SECONDS = 3 * 86400
# The most recent shipping days whose 48 h have not all passed: their pickup rates are not final.
UNSETTLED_DAYS = 2

# ARGV: prefix, seen seconds, keep seconds, records JSON [[seen key, hash key, [[field, amount], ...]], ...].
_RECORD = """
local prefix, seen, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local counted = 0
for _, r in ipairs(cjson.decode(ARGV[4])) do
  if redis.call('SET', prefix .. r[1], '1', 'NX', 'EX', seen) then
    local key = prefix .. r[2]
    for _, f in ipairs(r[3]) do redis.call('HINCRBYFLOAT', key, f[1], f[2]) end
    redis.call('EXPIRE', key, keep)
    counted = counted + 1
  end
end
return counted
"""

# Issues a shop opened in [start, end), counted by kind and carrier from the queue's rows.
# ARGV: prefix, shop, start, end. Returns JSON {"kind|carrier": n}.
_ISSUES = """
local prefix, shop = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', prefix .. 'opened:' .. shop, ARGV[3], '(' .. ARGV[4])
local out = {}
for i = 1, #ids, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #ids) do chunk[#chunk + 1] = ids[j] end
  for _, raw in ipairs(redis.call('HMGET', prefix .. 'row', unpack(chunk))) do
    if raw then
      local r = cjson.decode(raw)
      local k = r[4] .. '|' .. r[5]
      out[k] = (out[k] or 0) + 1
    end
  end
end
return cjson.encode(out)
"""

# (carrier, origin, destination, at epoch) -> the lane's normal transit time in hours then.
NormalTime = Callable[[str, str | None, str | None, float], float]


def _day(epoch: float) -> str:
    return china_date(epoch).strftime("%Y%m%d")


def milestone_fields(record: Mapping[str, Any], normal_hours: NormalTime) -> tuple[str, list[tuple[str, float]]] | None:
    """The day key and the increments of one milestone record (``core/processor.py`` ``_logistics``), or
    None for a record that cannot count (no shop, no times)."""
    kind, shop, carrier = record.get("kind"), record.get("shop"), record.get("carrier")
    if not shop or not carrier or kind not in ("shipped", "picked_up", "signed"):
        return None
    shipped, picked, signed = (_number(record.get(k)) for k in ("shipped_at", "picked_up_at", "signed_at"))
    if kind == "shipped" and shipped is not None:
        return f"health:{shop}:{_day(shipped)}", [(f"shipped|{carrier}", 1.0)]
    if kind == "picked_up" and shipped is not None and picked is not None:
        hours = max(0.0, (picked - shipped) / HOUR)
        fields = [(f"picked|{carrier}", 1.0), (f"pickup_h|{carrier}", round(hours, 3))]
        if hours <= 24:
            fields.append((f"p24|{carrier}", 1.0))
        if hours <= 48:
            fields.append((f"p48|{carrier}", 1.0))
        return f"health:{shop}:{_day(shipped)}", fields
    if kind == "signed" and picked is not None and signed is not None:
        origin, destination = record.get("origin_province"), record.get("destination_province")
        lane = f"{carrier}|{origin or '?'}|{destination or '?'}"
        hours = max(0.0, (signed - picked) / HOUR)
        normal = normal_hours(str(carrier), origin, destination, signed)
        fields = [(f"signed|{lane}", 1.0), (f"transit_h|{lane}", round(hours, 3)), (f"normal_h|{lane}", round(normal, 3))]
        if hours > normal:
            fields.append((f"over|{lane}", 1.0))
        return f"health:{shop}:{_day(signed)}", fields
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


class ShopHealth:
    """The daily aggregates: written from milestone records, read as a window's summary."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "pw:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._record = redis.register_script(_RECORD)
        self._issues = redis.register_script(_ISSUES)

    async def record(self, records: Iterable[Mapping[str, Any]], normal_hours: NormalTime) -> int:
        """Count each milestone once (a redelivered one is skipped); returns how many counted."""
        rows = []
        for r in records:
            counted = milestone_fields(r, normal_hours)
            if counted is not None:
                key, fields = counted
                rows.append([f"health_seen:{r['kind']}:{r.get('parcel')}", key, [list(f) for f in fields]])
        if not rows:
            return 0
        return int(await self._record(args=[self.prefix, SEEN_SECONDS, KEEP_DAYS * 86400, orjson.dumps(rows)]))

    async def summary(self, shop: str, days: int, now: float, normal_hours: NormalTime, lang: str = "zh") -> dict[str, Any]:
        """The window of the last ``days`` China days (today included) for ``shop``."""
        today = china_date(now)
        window = [today - timedelta(days=i) for i in range(days)]
        pipe = self.redis.pipeline(transaction=False)
        for d in window:
            pipe.hgetall(f"{self.prefix}health:{shop}:{d.strftime('%Y%m%d')}")
        daily = await pipe.execute()
        start = china_day_bounds(window[-1])[0]
        issues = orjson.loads(await self._issues(args=[self.prefix, shop, repr(start), repr(now)]))
        settled = {d for d in window if d <= today - timedelta(days=UNSETTLED_DAYS)}
        return _summarise(shop, days, window, daily, settled, issues, now, normal_hours, lang)


def _summarise(shop: str, days: int, window: list[date], daily: list[dict[Any, Any]], settled: set[date],
               issues: dict[str, int], now: float, normal_hours: NormalTime, lang: str) -> dict[str, Any]:
    carriers: dict[str, dict[str, float]] = {}
    lanes: dict[str, dict[str, float]] = {}
    for d, raw in zip(window, daily, strict=True):
        for k, v in raw.items():
            field, _, key = (k.decode() if isinstance(k, bytes) else str(k)).partition("|")
            amount = float(v)
            if field in ("shipped", "picked", "p24", "p48", "pickup_h"):
                c = carriers.setdefault(key, {})
                c[field] = c.get(field, 0.0) + amount
                if d in settled:  # pickup rates only over shipping days whose 48 h have passed
                    c["s_" + field] = c.get("s_" + field, 0.0) + amount
            else:
                lane = lanes.setdefault(key, {})
                lane[field] = lane.get(field, 0.0) + amount
    for key, n in issues.items():
        kind, _, carrier = key.partition("|")
        if kind == "carrier_exception" and carrier:
            c = carriers.setdefault(carrier, {})
            c["exceptions"] = c.get("exceptions", 0.0) + n
    by_carrier: list[dict[str, Any]] = []
    total: dict[str, float] = {}
    for carrier, c in carriers.items():
        for k, v in c.items():
            total[k] = total.get(k, 0.0) + v
        by_carrier.append({
            "carrier": carrier, "carrier_label": carrier_name(carrier, lang), "shipped": int(c.get("shipped", 0)),
            "pickup_rate_24h": _rate(c.get("s_p24", 0), c.get("s_shipped", 0)),
            "pickup_rate_48h": _rate(c.get("s_p48", 0), c.get("s_shipped", 0)),
            "pickup_hours": round(c["pickup_h"] / c["picked"], 1) if c.get("picked") else None,
            "exceptions": int(c.get("exceptions", 0)), "exception_rate": _rate(c.get("exceptions", 0), c.get("shipped", 0)),
        })
    by_carrier.sort(key=lambda c: (-c["shipped"], c["carrier"]))
    by_lane: list[dict[str, Any]] = []
    for key, lane in lanes.items():
        carrier, origin, destination = [*key.split("|"), "?", "?"][:3]
        signed = lane.get("signed", 0.0)
        if not signed:
            continue
        normal_now = normal_hours(carrier, None if origin == "?" else origin, None if destination == "?" else destination, now)
        by_lane.append({
            "carrier": carrier, "carrier_label": carrier_name(carrier, lang), "origin": origin, "destination": destination,
            "signed": int(signed), "hours": round(lane.get("transit_h", 0) / signed, 1),
            "normal_hours": round(lane.get("normal_h", 0) / signed, 1), "normal_hours_now": round(normal_now, 1),
            "over": int(lane.get("over", 0)), "over_share": _rate(lane.get("over", 0), signed),
        })
    # The lanes hurting the score most first: the most parcels later than normal.
    by_lane.sort(key=lambda lane: (-lane["over"], -lane["signed"], lane["carrier"], lane["destination"]))
    signed_total = sum(lane["signed"] for lane in by_lane)
    return {
        "shop": shop, "days": days, "from": window[-1].isoformat(), "to": window[0].isoformat(),
        "settled_to": (window[0] - timedelta(days=UNSETTLED_DAYS)).isoformat(),
        "pickup": {"shipped": int(total.get("shipped", 0)), "settled_shipped": int(total.get("s_shipped", 0)),
                   "rate_24h": _rate(total.get("s_p24", 0), total.get("s_shipped", 0)),
                   "rate_48h": _rate(total.get("s_p48", 0), total.get("s_shipped", 0))},
        "delivery": {"signed": signed_total,
                     "hours": round(sum(lane["hours"] * lane["signed"] for lane in by_lane) / signed_total, 1) if signed_total else None,
                     "over_share": _rate(sum(lane["over"] for lane in by_lane), signed_total)},
        "exceptions": {"total": int(total.get("exceptions", 0)), "rate": _rate(total.get("exceptions", 0), total.get("shipped", 0))},
        "issues": _by_kind(issues),
        "carriers": by_carrier, "lanes": by_lane,
    }


def _by_kind(issues: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in issues.items():
        kind = key.split("|", 1)[0]
        out[kind] = out.get(kind, 0) + n
    return out
