"""Learned baselines: the normal transit time of every lane, and each carrier's (and source's) scan cadence.

Transit. A lane is carrier × origin province × destination province. Every delivered parcel is one sample
(pickup → signature, at its signature time) of six levels at once: its lane, carrier × destination, origin
× destination, the destination's region, the carrier, and all deliveries. A level weighs a delivery by its
age (halved every ``half_life_days``, none older than ``horizon_days``), so a shop of a few hundred parcels
a month keeps learning from months of history while a lane's recent slowdown counts more.

What a level learned is its *normal* transit: the median and the spread of its faster half (from the 10th
percentile to the median, in log time, as a log-normal's). The slower half is left out on purpose: on a bad
lane a fifth of the deliveries may have sat in a depot for weeks, and those must not stretch what normal
means (the 90th percentile of such a lane lands among them, and flags its late parcels after the promise).
A lane's normal is its own level's blended with its parent's, and that with its own parent's, up to all
deliveries: a level that has seen n (decayed) deliveries keeps n / (n + ``credibility_samples``) of its own
and takes the rest from the level above (credibility: shrinkage towards the parent, no hard cut-off).

The limit is the ``quantile`` of the lane's normal transit, and never less than its median plus
``min_hours_past_median`` (a day: a parcel that missed today's delivery round is delivered tomorrow, which on
1-4 day express lanes is normal);
a parcel's severity follows its elapsed time's percentile in it. Constants (``default_sla_hours``,
``region_sla_hours``) before any delivery has been seen; and while all deliveries seen so far span less than
twice their own limit (a new stream has seen only its fastest parcels arrive), the limit is at least the
constant. A level's deliveries are read into a histogram over log-spaced transit times (5 % wide bins, a
second to 280 days), from which its percentiles are read.

Refresh. Baselines are taken at fixed moments (every ``refresh_minutes`` from midnight China time) from the
deliveries signed before that moment (at most the latest ``MAX_SAMPLES`` of a level): between two refreshes a
lane's answer does not move, and a replay at time t answers what a live worker answered at t. What the last
``_KEPT_REFRESHES`` refreshes learned stays when a busy level drops the deliveries they learned from. A refresh that
lowers a lane's limit makes parcels overdue at once: the processor re-checks the parcels in flight at each
refresh (core/processor.py).

Scan cadence. Per carrier and source (kuaidi100, AfterShip, a freight line's own feed ...): the share of
delivered parcels that had any scan between pickup and signature, and how long their first and last legs
went without one. A source that reports only pickup and signature has no cadence to judge staleness by: it
is not judged (transit_overdue covers those parcels); a slower one is judged against its own legs.

Pure data structure: fed by ``add_record`` (a delivery as the processor reports it); every worker feeds it
from the whole deliveries topic, so every worker answers the same for a lane whichever partition a parcel is on.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from config import Lanes
from domain.vocabulary import DAY, HOUR, province_region

# Midnight in China is 16:00 UTC: refreshes count from there.
_CHINA_OFFSET = 8 * HOUR
# A level learns, at a refresh, from at most this many deliveries: the latest signed before it (plenty for a
# stable distribution). It keeps that many signed before the latest refresh its deliveries have reached (its
# *turn*), and the latest as many signed after it (all a later refresh can learn from).
MAX_SAMPLES = 5000
# Samples that went are dropped from a level's arrays this many at a time (and the ones after the turn may
# exceed MAX_SAMPLES by as many).
_TRIM_EVERY = 1024
# The histogram: bin i holds transit times in [exp(LOG_LOW + i * WIDTH), exp(LOG_LOW + (i + 1) * WIDTH)) hours.
WIDTH = 0.05
LOG_LOW = math.log(1 / 3600)
BINS = 340
# What a level learned, kept for this many refreshes (the current one, and past ones for walks along old
# timelines: a worker catching up walks each parcel through the days it missed); as many again for refreshes
# whose deliveries went (``_Level.frozen``).
_KEPT_REFRESHES = 64
# Lanes' baselines at earlier refreshes kept for walks along old timelines (cleared when full).
_PAST_KEPT = 10_000
# A delivery's weight is kept relative to this moment (its age-halving then needs no exponential per refresh).
_REFERENCE = 1_700_000_000.0
# The faster half's spread is read between these percentiles (z of the 10th percentile: 1.2816).
_LOW_PERCENTILE = 0.1
_Z_LOW = -NormalDist().inv_cdf(_LOW_PERCENTILE)
# A spread below this (in log time, about 5 %) is the histogram's resolution, not the lane's.
_MIN_SPREAD = 0.05
# The earliest deliveries by signature time kept to tell how long the stream has been watched.
_FIRST_KEPT = 1000
_NORMAL = NormalDist()

LEVELS = ("lane", "carrier_destination", "origin_destination", "destination_region", "carrier", "all")


def bin_of(hours: float) -> int:
    if hours <= 0:
        return 0
    i = int((math.log(hours) - LOG_LOW) / WIDTH)
    return 0 if i < 0 else BINS - 1 if i >= BINS else i


@dataclass(slots=True)
class Normal:
    """What one level learned as of one refresh: how many (decayed) deliveries, and their normal transit as
    a log-normal's parameters (log hours): ``mu`` the median's log, ``sigma`` the faster half's spread."""

    deliveries: float
    mu: float
    sigma: float

    def hours_at(self, p: float) -> float:
        return math.exp(self.mu + _NORMAL.inv_cdf(p) * self.sigma)


_NOTHING = Normal(0.0, 0.0, 0.0)


class _Level:
    """One level key's samples (signature time, transit bin, weight relative to ``_REFERENCE``), sorted by
    signature time, and what it learned as of the refreshes asked lately.

    The samples are the arrays from ``start`` on: the oldest go by moving ``start`` up, and the arrays drop
    what lies before it every ``_TRIM_EVERY`` (deleting each from the front moved the whole array, three
    times a delivery on a full level: a third of what reading a delivery cost).

    What a refresh learns depends only on the deliveries signed before it, however many came after: keeping
    only its last 5,000 samples, a busy level (tens of thousands of deliveries a day) would hold none signed
    before the morning's refresh by noon, and a lane's answer taken again then (after a late delivery, or in
    a restarted worker) would fall back to the constant.

    The refreshes before the turn need the deliveries signed before them, which a busy level drops when its
    turn moves on: what each of those refreshes learned is kept (``frozen``) just before they go, for walks
    along old timelines (a partition catching up behind the others judges at the refreshes it is still at).
    A delivery signed before a kept refresh and reaching the worker after it was kept does not change it."""

    __slots__ = ("bins", "cached", "decay", "frozen", "horizon", "newest", "period", "signed", "start", "weights")

    def __init__(self, decay: float, horizon: float, period: float) -> None:
        self.decay = decay
        self.horizon = horizon
        self.period = period  # between refreshes
        self.signed = array("d")
        self.bins = array("H")
        self.weights = array("d")
        self.start = 0
        self.cached: dict[float, Normal] = {}
        self.newest = -math.inf  # the latest refresh in ``cached``
        # What refreshes before the turn learned, kept when the deliveries they learned from went (at most
        # ``_KEPT_REFRESHES``, the latest).
        self.frozen: dict[float, Normal] = {}

    def signatures(self) -> array[float]:
        """The signature times of the samples kept, oldest first."""
        return self.signed[self.start:]

    def add(self, signed_at: float, b: int, weight: float, turn: float) -> bool:
        """A sample signed at ``signed_at`` in bin ``b``, weighing ``weight`` at ``_REFERENCE``; ``turn``: the
        latest refresh the deliveries have reached. True when samples signed before the turn went (what the
        refreshes before it learned may change)."""
        signed = self.signed
        start = self.start
        if signed and signed_at < signed[-1]:
            i = bisect.bisect_right(signed, signed_at, start)
            signed.insert(i, signed_at)
            self.bins.insert(i, b)
            self.weights.insert(i, weight)
        else:  # (nearly always: deliveries arrive about in the order they are signed)
            signed.append(signed_at)
            self.bins.append(b)
            self.weights.append(weight)
        dropped_before_turn = False
        if signed_at < self.newest:
            # Only the refreshes after the sample's signature change (a delivery reaching a worker late).
            for at in [at for at in self.cached if at > signed_at]:
                del self.cached[at]
            self.newest = max(self.cached, default=-math.inf)
        n = len(signed)
        if n - start > MAX_SAMPLES:
            split = bisect.bisect_left(signed, turn, start)  # the first sample signed at or after the turn
            if split - start > MAX_SAMPLES:
                # Before the turn only the latest MAX_SAMPLES count (for the turn and every refresh after it).
                start = split - MAX_SAMPLES
                self._freeze(turn, start)
                dropped_before_turn = True
                for at in [at for at in self.cached if at < turn]:
                    del self.cached[at]
            if n - split > MAX_SAMPLES + _TRIM_EVERY:
                # After it, the latest MAX_SAMPLES are all any later refresh learns from.
                cut = n - split - MAX_SAMPLES
                del signed[split:split + cut]
                del self.bins[split:split + cut]
                del self.weights[split:split + cut]
            if start >= _TRIM_EVERY:
                del signed[:start]
                del self.bins[:start]
                del self.weights[:start]
                start = 0
            self.start = start
        return dropped_before_turn

    def _freeze(self, turn: float, keep_from: int) -> None:
        """The samples before index ``keep_from`` are about to go: keep what each refresh before ``turn`` whose
        learning they are part of learns with them (refreshes kept earlier keep what they had)."""
        signed = self.signed
        first = self.start
        oldest = signed[first]
        frozen = self.frozen
        index = refresh_index(turn, self.period)
        for back in range(1, _KEPT_REFRESHES + 1):
            refresh = refresh_at(index - back, self.period)
            if refresh <= oldest:
                break  # (nothing signed before it, nor before the ones before it)
            if refresh in frozen:
                continue
            hi = bisect.bisect_left(signed, refresh, first)
            if max(bisect.bisect_left(signed, refresh - self.horizon, first), hi - MAX_SAMPLES) < keep_from:
                n = self.cached.get(refresh)
                frozen[refresh] = self._learn(refresh) if n is None else n
        while len(frozen) > _KEPT_REFRESHES:
            del frozen[min(frozen)]

    def at(self, refresh: float) -> Normal:
        n = self.cached.get(refresh)
        if n is None:
            n = self.frozen.get(refresh)
            if n is not None:
                return n
            n = self._learn(refresh)
            if len(self.cached) >= _KEPT_REFRESHES:
                del self.cached[min(self.cached)]
            self.cached[refresh] = n
            if refresh > self.newest:
                self.newest = refresh
        return n

    def _learn(self, refresh: float) -> Normal:
        signed = self.signed
        hi = bisect.bisect_left(signed, refresh, self.start)  # signed exactly at the refresh: not yet
        lo = max(bisect.bisect_left(signed, refresh - self.horizon, self.start), hi - MAX_SAMPLES)
        if lo >= hi:
            return _NOTHING
        hist: dict[int, float] = {}  # (sparse: most levels' deliveries fall into a few bins)
        get = hist.get
        for b, w in zip(self.bins[lo:hi], self.weights[lo:hi], strict=True):
            hist[b] = get(b, 0.0) + w
        total = sum(hist.values())
        low, median = _percentiles_log(hist, total, _LOW_PERCENTILE, 0.5)
        spread = (median - low) / _Z_LOW
        deliveries = total * math.exp((_REFERENCE - refresh) * self.decay)  # each weighed by its age at the refresh
        return Normal(deliveries, median, spread if spread > _MIN_SPREAD else _MIN_SPREAD)

    def prune(self, before: float) -> None:
        cut = bisect.bisect_left(self.signed, before, self.start)
        if cut > self.start:
            del self.signed[:cut]
            del self.bins[:cut]
            del self.weights[:cut]
            self.start = 0
            self.cached.clear()
            self.newest = -math.inf


def refresh_at(index: int, period: float) -> float:
    """The ``index``-th refresh every ``period`` seconds from midnight China time at the epoch."""
    return index * period - _CHINA_OFFSET


def refresh_in_force(now: float, period: float) -> float:
    """The refresh in force at ``now`` (the last at or before it), with refreshes every ``period`` seconds."""
    return refresh_at(math.floor((now + _CHINA_OFFSET) / period), period)


def refresh_index(refresh: float, period: float) -> int:
    """Which refresh ``refresh`` is (``refresh_at``'s inverse)."""
    return round((refresh + _CHINA_OFFSET) / period)


def _percentiles_log(hist: dict[int, float], total: float, low: float, high: float) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles' log hours of a histogram (bin -> weight) holding ``total`` (one
    pass), each interpolated within its bin."""
    found: list[float] = []
    need = low * total
    seen = 0.0
    for i in sorted(hist):
        w = hist[i]
        if w:
            while seen + w >= need:
                found.append(LOG_LOW + (i + (need - seen) / w) * WIDTH)
                if len(found) == 2:
                    return found[0], found[1]
                need = high * total
            seen += w
    while len(found) < 2:
        found.append(LOG_LOW + BINS * WIDTH)
    return found[0], found[1]


@dataclass(slots=True, frozen=True)
class LevelShare:
    """One level's part in a lane's blend: which key, how many (decayed) deliveries it has, its weight, and
    what it learned on its own (None: it has seen none)."""

    level: str
    key: str
    deliveries: float
    weight: float
    median_hours: float | None
    spread: float | None


@dataclass(slots=True)
class Baseline:
    """A lane's normal transit time as of one refresh."""

    limit_hours: float
    # "learned", or the constant: "default_sla", "region_sla:remote" (before any delivery), and
    # "learned+floor" while the stream is too new to know its slow parcels (the constant is the floor).
    source: str
    quantile: float
    refreshed_at: float
    # The blended log-normal (log hours); None for a constant.
    normal: Normal | None
    # What ``transit_limit`` answers: (limit hours, source, deliveries behind the blend, rounded).
    answer: tuple[float, str, int]
    # The blend: each level's key, what it learned and its weight (narrowest first; empty: nothing to show).
    keys: tuple[tuple[Any, ...], ...] = ()
    learned: tuple[Normal, ...] = ()
    weights: tuple[float, ...] = ()
    # ``levels`` and ``evidence()``, built on first use and kept: a baseline is one lane at one refresh, fixed
    # once made, and every transit issue event of the lane until the next refresh shows the same (rebuilding
    # them for each took about a twentieth of the worker's CPU on a backlog with many issues).
    _levels: tuple[LevelShare, ...] | None = field(default=None, repr=False, compare=False)
    _evidence: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def levels(self) -> tuple[LevelShare, ...]:
        """Each level's part in the blend (built when shown: most baselines are only asked for their limit)."""
        levels = self._levels
        if levels is None:
            levels = self._levels = () if not self.keys else tuple(
                LevelShare(name, _label(key), n.deliveries, w, math.exp(n.mu) if n.deliveries > 0 else None,
                           n.sigma if n.deliveries > 0 else None)
                for name, key, n, w in zip(LEVELS, self.keys, self.learned, self.weights, strict=True)
            )
        return levels

    def percentile(self, elapsed_hours: float) -> float | None:
        """The share of the lane's normal deliveries that took no longer than ``elapsed_hours`` (None: a
        constant, nothing learned)."""
        normal = self.normal
        if normal is None:
            return None
        if elapsed_hours <= 0:
            return 0.0
        return _NORMAL.cdf((math.log(elapsed_hours) - normal.mu) / normal.sigma)

    def hours_at(self, p: float) -> float | None:
        """How long after pickup a parcel is as far past the lane's limit as the ``p`` percentile of its normal
        transit is past the ``quantile`` (the ``p`` percentile itself unless the limit was raised to the
        median and a day); None: a constant."""
        normal = self.normal
        if normal is None:
            return None
        return self.limit_hours * math.exp((_NORMAL.inv_cdf(p) - _NORMAL.inv_cdf(self.quantile)) * normal.sigma)

    def evidence(self) -> dict[str, Any]:
        """What the limit rests on, for an issue's ``evidence_data``: the quantile, the limit, the blended
        median and spread, and each level that carries weight (its key, deliveries, weight, own median).
        One dict per baseline, shared by every issue event that shows it: read-only for callers."""
        evidence = self._evidence
        if evidence is None:
            evidence = self._evidence = self._build_evidence()
        return evidence

    def _build_evidence(self) -> dict[str, Any]:
        normal = self.normal
        return {
            "quantile": self.quantile,
            "limit_hours": round(self.limit_hours, 2),
            "source": self.source,
            "refreshed_at": self.refreshed_at,
            "median_hours": None if normal is None else round(math.exp(normal.mu), 2),
            "spread": None if normal is None else round(normal.sigma, 3),
            "levels": [
                {"level": s.level, "key": s.key, "deliveries": round(s.deliveries, 1), "weight": round(s.weight, 3),
                 "median_hours": None if s.median_hours is None else round(s.median_hours, 2)}
                for s in self.levels if s.weight >= 0.005
            ],
        }


LaneKey = tuple[str, str | None, str | None]


class LaneBaselines:
    """Blended, time-decayed normal transit per lane, and scan cadence per carrier and source; implements
    detectors.base.TransitBaseline."""

    def __init__(self, cfg: Lanes) -> None:
        self.cfg = cfg
        self.horizon = cfg.horizon_days * DAY
        self.decay = math.log(2) / (cfg.half_life_days * DAY)
        self.refresh = cfg.refresh_minutes * 60.0
        self.z = _NORMAL.inv_cdf(cfg.quantile)
        self.past_median = cfg.min_hours_past_median
        self.remote = frozenset(cfg.remote_provinces)
        self._levels: dict[tuple[Any, ...], _Level] = {}
        # Per lane: the refresh its baseline was last taken at, and that baseline; and baselines taken at earlier
        # refreshes (a sweep catching up walks each parcel through the days it missed), a bounded number.
        self._answers: dict[LaneKey, tuple[float, Baseline]] = {}
        self._past: dict[tuple[LaneKey, float], Baseline] = {}
        # Per lane: its six level keys and levels (with how many levels existed when they were looked up).
        self._lane_levels: dict[LaneKey, tuple[int, tuple[tuple[Any, ...], ...], tuple[_Level | None, ...]]] = {}
        self._latest_answer = -math.inf  # the latest refresh any answer was taken at
        # The earliest deliveries' signature times (sorted), and the earliest pickup among each and those before.
        self._first: list[float] = []
        self._earliest_pickup: list[float] = []
        self._cadence: dict[tuple[str, str], _Cadence] = {}
        self._stale: dict[tuple[str, str | None], tuple[float, float | None]] = {}
        self.deliveries = 0
        self._turn = -math.inf  # the latest refresh any delivery's signature has reached

    # -- input ---------------------------------------------------------------------------------------------

    def add_record(self, d: Mapping[str, Any]) -> None:
        """A delivery as the processor reports it (``core/processor.py``: carrier, provinces, ``picked_up_at``,
        ``signed_at``, and for the scan cadence ``source``, ``first_transit_scan_at``, ``last_transit_scan_at``).
        A malformed one raises KeyError, TypeError or ValueError and adds nothing."""
        carrier = str(d["carrier"])
        picked, signed = float(d["picked_up_at"]), float(d["signed_at"])
        first, last = d.get("first_transit_scan_at"), d.get("last_transit_scan_at")
        legs = None if first is None or last is None else (float(first) - picked, signed - float(last))
        self.add_delivery(carrier, d.get("origin_province"), d.get("destination_province"), picked, signed)
        if "source" in d:
            self.add_cadence(carrier, str(d["source"] or "generic"), signed, legs)

    def add_delivery(
        self, carrier: str, origin: str | None, destination: str | None, picked_up_at: float, signed_at: float
    ) -> None:
        transit = signed_at - picked_up_at
        if transit <= 0:
            return  # clock skew between scans: not a usable sample
        b = bin_of(transit / HOUR)
        weight = math.exp((signed_at - _REFERENCE) * self.decay)
        levels = self._levels
        turn = self._turn_at(signed_at)
        dropped_before_turn = False
        for key in _level_keys(carrier, origin, destination):
            level = levels.get(key)
            if level is None:
                level = levels[key] = _Level(self.decay, self.horizon, self.refresh)
            if level.add(signed_at, b, weight, turn):
                dropped_before_turn = True
        if dropped_before_turn:
            # (A busy level once a refresh period, when the turn moves on, and after late deliveries.) The
            # refreshes before the turn answer what their levels kept (``_Level.frozen``), or, beyond those,
            # what is left: taken again when asked.
            for lane in [lane for lane, (at, _) in self._answers.items() if at < turn]:
                del self._answers[lane]
            self._past.clear()
        first = self._first
        if len(first) < _FIRST_KEPT or signed_at < first[-1]:
            i = bisect.bisect_right(first, signed_at)
            first.insert(i, signed_at)
            earliest = self._earliest_pickup
            earliest.insert(i, picked_up_at if i == 0 or picked_up_at < earliest[i - 1] else earliest[i - 1])
            for j in range(i + 1, len(earliest)):  # (running minima: only the first deliveries are kept)
                if earliest[j] <= earliest[j - 1]:
                    break
                earliest[j] = earliest[j - 1]
            del first[_FIRST_KEPT:]
            del earliest[_FIRST_KEPT:]
        if signed_at < self._latest_answer:
            # A lane's answer for a refresh after this signature changes (a delivery reaching a worker after
            # the refresh it belongs to): taken again when asked.
            for lane in [lane for lane, (at, _) in self._answers.items() if at > signed_at]:
                del self._answers[lane]
            self._past.clear()
        self.deliveries += 1

    def add_cadence(self, carrier: str, source: str, signed_at: float, legs: tuple[float, float] | None) -> None:
        """One delivered parcel's scans: ``legs`` = (pickup to the first in-transit scan, the last in-transit
        scan to the signature) in seconds, None when it had no scan in between."""
        cadence = self._cadence.get((carrier, source))
        if cadence is None:
            cadence = self._cadence[(carrier, source)] = _Cadence(self.decay, self.horizon, self.refresh)
        turn = self._turn_at(signed_at)
        # (A late delivery, or one beyond what a refresh before the turn learns from, changes answers.)
        if cadence.add(signed_at, legs, turn) or any(at > signed_at for at, _ in self._stale.values()):
            self._stale.clear()

    def _turn_at(self, signed_at: float) -> float:
        """The turn (see ``MAX_SAMPLES``) once a delivery signed at ``signed_at`` is in."""
        turn = self._turn
        if signed_at >= turn + self.refresh:
            turn = self._turn = self.refreshed_at(signed_at)
        return turn

    # -- transit -------------------------------------------------------------------------------------------

    def refreshed_at(self, now: float) -> float:
        """The refresh in force at ``now``: the last one at or before it."""
        return refresh_in_force(now, self.refresh)

    def next_refresh(self, now: float) -> float:
        return self.refreshed_at(now) + self.refresh

    def transit_limit(self, carrier: str, origin: str | None, destination: str | None, now: float) -> tuple[float, str, int]:
        """(limit in hours, source, deliveries behind it) for the lane at ``now``: asked for nearly every event."""
        cached = self._answers.get((carrier, origin, destination))
        if cached is not None and cached[0] <= now < cached[0] + self.refresh:
            return cached[1].answer
        return self.baseline(carrier, origin, destination, now).answer

    def baseline(self, carrier: str, origin: str | None, destination: str | None, now: float) -> Baseline:
        lane = (carrier, origin, destination)
        refresh = self.refreshed_at(now)
        cached = self._answers.get(lane)
        if cached is not None and cached[0] == refresh:
            return cached[1]
        if cached is not None and refresh < cached[0]:
            past = self._past.get((lane, refresh))
            if past is None:
                if len(self._past) >= _PAST_KEPT:
                    self._past.clear()
                past = self._past[(lane, refresh)] = self._blend(lane, refresh)
            return past
        b = self._blend(lane, refresh)
        if cached is not None:
            self._past[(lane, cached[0])] = cached[1]
        self._answers[lane] = (refresh, b)
        if refresh > self._latest_answer:
            self._latest_answer = refresh
        return b

    def _blend(self, lane: LaneKey, refresh: float) -> Baseline:
        found = self._lane_levels.get(lane)
        if found is None or found[0] != len(self._levels):  # (a level created since: look the keys up again)
            keys = _level_keys(*lane)
            found = self._lane_levels[lane] = (len(self._levels), keys, tuple(self._levels.get(key) for key in keys))
        _, keys, levels = found
        learned = [_NOTHING if level is None else level.at(refresh) for level in levels]
        q = self.cfg.quantile
        constant, constant_source = self.region_sla_hours(lane[2])
        if learned[-1].deliveries <= 0:
            return Baseline(constant, constant_source, q, refresh, None, (constant, constant_source, 0), keys, tuple(learned),
                            (0.0,) * len(keys))
        k = self.cfg.credibility_samples
        weights: list[float] = []
        remaining = 1.0
        for n in learned[:-1]:  # narrowest first: each keeps its credibility, the rest goes up
            z = n.deliveries / (n.deliveries + k)
            weights.append(remaining * z)
            remaining -= remaining * z
        weights.append(remaining)
        mu = sigma = behind = 0.0
        for w, n in zip(weights, learned, strict=True):
            if w > 0:
                mu += w * n.mu
                sigma += w * n.sigma
                behind += w * n.deliveries
        normal = Normal(behind, mu, sigma)
        limit = self._limit(normal)
        source = "learned"
        root = learned[-1]
        if limit < constant and self._watched(refresh) < 2 * self._limit(root) * HOUR:
            limit, source = constant, "learned+floor"
        return Baseline(limit, source, q, refresh, normal, (limit, source, round(behind)), keys, tuple(learned), tuple(weights))

    def _limit(self, normal: Normal) -> float:
        """The ``quantile`` of a normal transit (hours), and at least its median and ``min_hours_past_median``."""
        median = math.exp(normal.mu)
        limit = median * math.exp(self.z * normal.sigma)
        least = median + self.past_median
        return limit if limit > least else least

    def _watched(self, refresh: float) -> float:
        """How long deliveries signed before ``refresh`` have been watched: since the earliest pickup among them."""
        i = bisect.bisect_left(self._first, refresh)
        return 0.0 if i == 0 else refresh - self._earliest_pickup[i - 1]

    def _level_at(self, key: tuple[Any, ...], refresh: float) -> Normal:
        level = self._levels.get(key)
        return _NOTHING if level is None else level.at(refresh)

    def region_sla_hours(self, destination: str | None) -> tuple[float, str]:
        if destination in self.remote:
            return self.cfg.region_sla_hours["remote"], "region_sla:remote"
        return self.cfg.default_sla_hours, "default_sla"

    # -- scan cadence ----------------------------------------------------------------------------------------

    def stale_limit_hours(self, carrier: str, source: str | None, configured_hours: float, now: float) -> float | None:
        """How long a parcel of ``carrier`` reported by ``source`` may go without a scan while in transit:
        the configured hours, or longer if this carrier and source's own legs without a scan are longer (their
        ``quantile``); None when the source does not report scans between pickup and signature. Until a
        source has shown that, it is taken to report scans (that prior weighs ``credibility_samples``)."""
        key = (carrier, source)
        cached = self._stale.get(key)
        if cached is not None and cached[0] <= now < cached[0] + self.refresh:
            return cached[1]
        refresh = self.refreshed_at(now)
        limit: float | None = configured_hours
        cadence = self._cadence.get((carrier, source or "generic"))
        if cadence is not None:
            n, share, legs = cadence.summary(refresh)
            k = self.cfg.credibility_samples
            if n > 0 and (share * n + k) / (n + k) < 0.5:
                limit = None
            elif legs.deliveries > 0 and legs.hours_at(self.cfg.quantile) > configured_hours:
                limit = legs.hours_at(self.cfg.quantile)
        self._stale[key] = (refresh, limit)
        return limit

    # -- upkeep and views ------------------------------------------------------------------------------------

    def prune(self, now: float) -> None:
        """Drop samples that left the horizon of every refresh still asked (memory bound)."""
        before = self.refreshed_at(now) - self.refresh - self.horizon
        for level in self._levels.values():
            level.prune(before)
        for cadence in self._cadence.values():
            cadence.prune(before)
        self._stale.clear()

    def describe(self, now: float, stale_hours: float) -> dict[str, Any]:
        """What was learned, as of the refresh in force at ``now``, for on-call and sellers (``GET /lanes``):
        the settings; each level key with deliveries (what it learned on its own and the limit that alone
        would give); each lane with its own deliveries (the blend it gets: each level's weight, and the limit
        at the configured quantile); each carrier and source's scan cadence and the stale limit it gives
        (``stale_hours``: the configured one)."""
        refresh = self.refreshed_at(now)
        cfg = self.cfg
        levels = []
        for key in sorted(self._levels, key=lambda k: tuple(map(str, k))):
            learned = self._level_at(key, refresh)
            if learned.deliveries > 0:
                levels.append({"level": key[0], "key": _label(key), "deliveries": round(learned.deliveries, 1),
                               "median_hours": round(math.exp(learned.mu), 2), "spread": round(learned.sigma, 3),
                               "limit_hours": round(self._limit(learned), 2)})
        lanes = []
        for key in sorted((k for k in self._levels if k[0] == "lane"), key=lambda k: tuple(map(str, k))):
            b = self.baseline(key[1], key[2], key[3], refresh)
            lanes.append({"lane": _label(key), "deliveries": round(b.levels[0].deliveries, 1), **b.evidence()})
        cadence = []
        for (carrier, source), c in sorted(self._cadence.items()):
            n, share, legs = c.summary(refresh)
            if n > 0:
                cadence.append({"carrier": carrier, "source": source, "deliveries": round(n, 1),
                                "with_transit_scans": round(share, 3),
                                "legs_hours": round(legs.hours_at(cfg.quantile), 1) if legs.deliveries > 0 else None,
                                "stale_limit_hours": self.stale_limit_hours(carrier, source, stale_hours, refresh)})
        return {
            "quantile": cfg.quantile, "half_life_days": cfg.half_life_days, "horizon_days": cfg.horizon_days,
            "credibility_samples": cfg.credibility_samples, "refresh_minutes": cfg.refresh_minutes,
            "refreshed_at": refresh, "deliveries": self.deliveries, "levels": levels, "lanes": lanes,
            "scan_cadence": cadence,
        }


def _level_keys(carrier: str, origin: str | None, destination: str | None) -> tuple[tuple[Any, ...], ...]:
    """The six level keys of a lane, narrowest first (the order of ``LEVELS``)."""
    return (
        ("lane", carrier, origin, destination),
        ("carrier_destination", carrier, destination),
        ("origin_destination", origin, destination),
        ("destination_region", province_region(destination)),
        ("carrier", carrier),
        ("all",),
    )


def _label(key: tuple[Any, ...]) -> str:
    level = key[0]
    if level == "lane":
        return f"{key[1]} {key[2] or '?'}→{key[3] or '?'}"
    if level == "carrier_destination":
        return f"{key[1]} →{key[2] or '?'}"
    if level == "origin_destination":
        return f"{key[1] or '?'}→{key[2] or '?'}"
    if level == "all":
        return "all"
    return str(key[1])


class _Cadence:
    """One carrier and source's delivered parcels (``delivered``), and of those the ones with any scan
    between pickup and signature, by the longer of their two legs without one (``scanned``)."""

    __slots__ = ("delivered", "scanned")

    def __init__(self, decay: float, horizon: float, period: float) -> None:
        self.delivered = _Level(decay, horizon, period)
        self.scanned = _Level(decay, horizon, period)

    def add(self, signed_at: float, legs: tuple[float, float] | None, turn: float) -> bool:
        """True when samples signed before ``turn`` went (see ``_Level.add``)."""
        weight = math.exp((signed_at - _REFERENCE) * self.delivered.decay)
        dropped = self.delivered.add(signed_at, 0, weight, turn)
        if legs is not None and self.scanned.add(signed_at, bin_of(max(legs) / HOUR), weight, turn):
            dropped = True
        return dropped

    def summary(self, refresh: float) -> tuple[float, float, Normal]:
        """(deliveries, share with in-transit scans, what their legs without a scan learned) as of ``refresh``."""
        n = self.delivered.at(refresh).deliveries
        legs = self.scanned.at(refresh)
        return n, legs.deliveries / n if n > 0 else 0.0, legs

    def prune(self, before: float) -> None:
        self.delivered.prune(before)
        self.scanned.prune(before)
