"""Learned lane baselines: what "normal transit time" means for a lane.

A lane is carrier × origin province × destination province. Every delivered parcel contributes one
sample (pickup → signature seconds, at its signature time). A lane's normal transit time at ``now`` is
the configured quantile of the samples signed in ``[now - window, now)``: only deliveries before
``now`` count (no future leakage), so a replay at time t sees what a live worker saw at t.

With too few samples the answer falls back, in order: carrier × destination, the destination region's
SLA from config (remote regions longer), the global default.

Pure data structure: fed by ``add_delivery``; every worker feeds it from the whole deliveries topic,
so every worker answers the same for a lane whichever partition the parcel is on.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from config import Lanes

HOUR = 3600.0
# Samples kept per key: enough for a stable p90 over 30 days; older ones are dropped first.
MAX_SAMPLES = 5000


@dataclass(slots=True)
class _Samples:
    signed_at: list[float] = field(default_factory=list)
    transit: list[float] = field(default_factory=list)
    # Cache of the last quantile: (lo index, hi index) -> seconds.
    cached_span: tuple[int, int] = (-1, -1)
    cached_value: float = 0.0
    # The whole answer ``transit_limit`` gave from the window located last (None: not asked since ``locate``,
    # which every change of the samples forces).
    answer: tuple[float, str, int] | None = None
    # Cache of the last window located (``locate``): its (lo, hi) indexes hold while
    # ``since_above < now - window <= since_upto`` and ``now_above < now <= now_upto`` (the neighbouring
    # samples, exactly what bisect compares with). Emptied (since_above = inf) when the samples change.
    lo: int = 0
    hi: int = 0
    since_above: float = math.inf
    since_upto: float = -math.inf
    now_above: float = math.inf
    now_upto: float = -math.inf

    def add(self, signed_at: float, transit_seconds: float) -> None:
        i = bisect.bisect_right(self.signed_at, signed_at)
        self.signed_at.insert(i, signed_at)
        self.transit.insert(i, transit_seconds)
        if len(self.signed_at) > MAX_SAMPLES:
            del self.signed_at[0]
            del self.transit[0]
        self.cached_span = (-1, -1)
        self.since_above = math.inf

    def locate(self, now: float, since: float) -> None:
        """Set ``lo``, ``hi`` to the samples signed in ``[since, now)`` and the range they hold for."""
        times = self.signed_at
        n = len(times)
        lo = self.lo = bisect.bisect_left(times, since)
        hi = self.hi = bisect.bisect_left(times, now)
        self.since_above = times[lo - 1] if lo > 0 else -math.inf
        self.since_upto = times[lo] if lo < n else math.inf
        self.now_above = times[hi - 1] if hi > 0 else -math.inf
        self.now_upto = times[hi] if hi < n else math.inf
        self.answer = None

    def window(self, now: float, since: float) -> tuple[int, int]:
        """(lo, hi) of the samples signed in ``[since, now)``, located again only when ``since`` or ``now``
        crossed a neighbouring sample (exactly what bisect compares with)."""
        if not (self.since_above < since <= self.since_upto and self.now_above < now <= self.now_upto):
            self.locate(now, since)
        return self.lo, self.hi

    def span(self, now: float, window: float) -> tuple[int, int]:
        return bisect.bisect_left(self.signed_at, now - window), bisect.bisect_left(self.signed_at, now)

    def quantile(self, lo: int, hi: int, q: float) -> float:
        if (lo, hi) != self.cached_span:
            values = sorted(self.transit[lo:hi])
            # Nearest-rank quantile: a value that was really observed.
            rank = max(1, math.ceil(q * len(values)))
            self.cached_value = values[rank - 1]
            self.cached_span = (lo, hi)
        return self.cached_value

    def prune(self, before: float) -> None:
        cut = bisect.bisect_left(self.signed_at, before)
        if cut:
            del self.signed_at[:cut]
            del self.transit[:cut]
            self.cached_span = (-1, -1)
            self.since_above = math.inf


@dataclass(slots=True)
class LaneStats:
    lane: str
    samples: int
    p50_hours: float | None
    p90_hours: float | None
    limit_hours: float
    source: str


class LaneBaselines:
    """Rolling per-lane transit distributions with fallbacks; implements detectors.base.TransitBaseline."""

    def __init__(self, cfg: Lanes) -> None:
        self.cfg = cfg
        self.window = cfg.window_days * 24 * HOUR
        self.remote = frozenset(cfg.remote_provinces)
        # The answers without enough samples (``region_sla_hours``), made once: most lanes have too few.
        self._remote_sla = (cfg.region_sla_hours["remote"], "region_sla:remote", 0)
        self._default_sla = (cfg.default_sla_hours, "default_sla", 0)
        self._lanes: dict[tuple[str, str | None, str | None], _Samples] = {}
        self._carrier_dest: dict[tuple[str, str | None], _Samples] = {}
        self.deliveries = 0

    def add_delivery(
        self, carrier: str, origin: str | None, destination: str | None, picked_up_at: float, signed_at: float
    ) -> None:
        transit = signed_at - picked_up_at
        if transit <= 0:
            return  # clock skew between scans: not a usable sample
        self._lanes.setdefault((carrier, origin, destination), _Samples()).add(signed_at, transit)
        self._carrier_dest.setdefault((carrier, destination), _Samples()).add(signed_at, transit)
        self.deliveries += 1

    def region_sla_hours(self, destination: str | None) -> tuple[float, str]:
        limit, source, _ = self._remote_sla if destination in self.remote else self._default_sla
        return limit, source

    def transit_limit(
        self, carrier: str, origin: str | None, destination: str | None, now: float
    ) -> tuple[float, str, int]:
        # Asked for every scanned parcel on every event: the window located last time is reused while
        # ``now`` stays between the same samples (``_Samples.window``), and so is the answer given from it.
        since = now - self.window
        samples = self._lanes.get((carrier, origin, destination))
        if samples is not None:
            lo, hi = samples.window(now, since)
            if hi - lo >= self.cfg.min_samples:
                answer = samples.answer
                if answer is None:
                    answer = samples.answer = (samples.quantile(lo, hi, self.cfg.quantile) / HOUR, "lane", hi - lo)
                return answer
        samples = self._carrier_dest.get((carrier, destination))
        if samples is not None:
            lo, hi = samples.window(now, since)
            if hi - lo >= self.cfg.min_samples:
                answer = samples.answer
                if answer is None:
                    answer = samples.answer = (samples.quantile(lo, hi, self.cfg.quantile) / HOUR, "carrier_destination", hi - lo)
                return answer
        return self._remote_sla if destination in self.remote else self._default_sla

    def prune(self, now: float) -> None:
        """Drop samples that left the window (memory bound for long-running workers)."""
        for samples in (*self._lanes.values(), *self._carrier_dest.values()):
            samples.prune(now - self.window)

    def stats(self, now: float) -> list[LaneStats]:
        out = []
        for (carrier, origin, dest), samples in sorted(self._lanes.items(), key=lambda kv: tuple(map(str, kv[0]))):
            lo, hi = samples.span(now, self.window)
            n = hi - lo
            p50 = p90 = None
            if n:
                values = sorted(samples.transit[lo:hi])
                p50 = values[max(1, math.ceil(0.5 * n)) - 1] / HOUR
                p90 = values[max(1, math.ceil(0.9 * n)) - 1] / HOUR
            limit, source, _ = self.transit_limit(carrier, origin, dest, now)
            out.append(LaneStats(f"{carrier} {origin or '?'}→{dest or '?'}", n, p50, p90, limit, source))
        return out
