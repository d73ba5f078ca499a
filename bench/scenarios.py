"""Shops' histories with ground truth, for judging the transit detectors (``make eval``, ``bench/eval.py``).

Each scenario is the order and tracking stream of one kind of shop, generated from how Chinese carriers and
platforms behave, with what parcelwatch is never told: the delivery date the platform promised the buyer.
Nothing here knows how parcelwatch learns; the generator only describes the world.

The world:
- A parcel's journey: collected from the seller (evening for a warehouse's express pickup, daytime for a
  freight line), line haul by road distance between provincial capitals at the service's speed, with the
  service's spread and a route factor per lane (hubs, mountains), then the last mile: express delivery rounds
  at 09:00 and 14:00 China time, a share into lockers or stations collected hours later; a freight line
  calls the buyer and delivers by appointment one to three days after arrival, in the daytime.
- Scans: express services scan at the origin hub, every few hours along the line haul, on arrival in the
  destination city, out for delivery, and at the signature; some sources (a freight line, an aggregator
  without the carrier's route data) report only the pickup and the signature.
- Problems: a share of parcels is held up (stuck at a hub, mis-sorted, weather) for days, silently; a few
  are lost (some get a "lost" exception scan, the seller refunds the buyer after complaints); some are
  refused and go back (excluded from scoring: a refusal is not a delivery time, carrier_exception covers it).
- Seasons: the Double 11 volume (pre-sale waves, the night of the 11th) with carriers slow for about ten
  days and the platform's longer promises for festival orders; the Spring Festival, when freight lines
  stop for a week and the platform extends its promises; a regional delay (floods, a lockdown) that slows
  every parcel into one province for weeks while the promises stay as they were.
- The promise: the platform's estimate for the origin and destination (a high percentile of a normal
  journey there with the carriers the shop uses, in whole days, plus a margin where the platform gives
  one) and its handling allowance, counted from payment, to the end of that day in China time. The
  platform does not know which carrier's route a parcel takes, nor the problems ahead of it.
  Late = signed after the promise, or never delivered.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.events import OrderEvent, TrackingUpdate
from domain.vocabulary import CHINA_TZ, DAY, HOUR

# Provincial capitals (latitude, longitude): road distances between provinces are taken between these.
SITES: dict[str, tuple[float, float]] = {
    "北京": (39.9, 116.4), "天津": (39.1, 117.2), "上海": (31.2, 121.5), "重庆": (29.6, 106.5), "河北": (38.0, 114.5),
    "山西": (37.9, 112.5), "辽宁": (41.8, 123.4), "吉林": (43.9, 125.3), "黑龙江": (45.8, 126.6), "江苏": (32.1, 118.8),
    "浙江": (30.3, 120.2), "安徽": (31.8, 117.3), "福建": (26.1, 119.3), "江西": (28.7, 115.9), "山东": (36.7, 117.0),
    "河南": (34.7, 113.6), "湖北": (30.6, 114.3), "湖南": (28.2, 112.9), "广东": (23.1, 113.3), "海南": (20.0, 110.3),
    "四川": (30.7, 104.1), "贵州": (26.6, 106.7), "云南": (25.0, 102.7), "陕西": (34.3, 108.9), "甘肃": (36.1, 103.8),
    "青海": (36.6, 101.8), "内蒙古": (40.8, 111.7), "广西": (22.8, 108.3), "西藏": (29.7, 91.1), "宁夏": (38.5, 106.3),
    "新疆": (43.8, 87.6),
}
# Where online buyers are (shares of parcels by destination, roughly population times online spending).
DEMAND: dict[str, float] = {
    "广东": 12, "浙江": 8, "江苏": 8, "山东": 6, "上海": 5, "北京": 4, "河南": 5, "四川": 5, "湖北": 4, "湖南": 4,
    "福建": 4, "安徽": 3.5, "河北": 4, "辽宁": 2.5, "陕西": 2.5, "重庆": 2, "广西": 2.5, "江西": 2.5, "云南": 2,
    "天津": 1.5, "山西": 1.8, "黑龙江": 1.8, "吉林": 1.2, "贵州": 1.5, "内蒙古": 1, "新疆": 1, "甘肃": 1, "海南": 0.8,
    "宁夏": 0.4, "青海": 0.3, "西藏": 0.2,
}
# Destinations past the mountains and deserts: longer last legs (fewer flights and trunk lines).
FAR_WEST = {"新疆": 1.5, "西藏": 2.0, "青海": 0.7}
# Orders by hour of the day, China time (evening peak; the night after 00:00 on festival days).
ORDER_HOURS = (2, 1, .5, .3, .2, .3, .6, 1, 2, 3.5, 4.5, 4.5, 3.5, 4, 4.5, 4.5, 4, 3.5, 3.5, 4.5, 6, 7, 6.5, 4)


def road_km(a: str, b: str) -> float:
    """Road distance between two provinces' capitals (great circle times a road factor; 60 km within one)."""
    (la1, lo1), (la2, lo2) = SITES[a], SITES[b]
    p1, p2 = math.radians(la1), math.radians(la2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lo2 - lo1) / 2) ** 2
    return 60.0 + 1.3 * 6371.0 * 2 * math.asin(math.sqrt(h))


def china_hour(t: float) -> float:
    return ((t + 8 * HOUR) % DAY) / HOUR


def at_china_hour(t: float, hour: float) -> float:
    """The first moment at or after ``t`` when it is ``hour`` o'clock in China."""
    day_start = t - ((t + 8 * HOUR) % DAY)
    when = day_start + hour * HOUR
    return when if when >= t else when + DAY


def china_day_end(t: float) -> float:
    return t - ((t + 8 * HOUR) % DAY) + DAY - 1


def china(y: int, m: int, d: int) -> float:
    return datetime(y, m, d, tzinfo=CHINA_TZ).timestamp()


@dataclass(frozen=True)
class Service:
    """How one carrier's product moves parcels."""

    carrier: str
    fixed_days: float  # collection, sorting at both ends
    km_per_day: float  # line haul
    spread: float  # log-sd of a normal journey's line haul
    # Hours between in-transit scans (low, high); None: the source reports only pickup and signature.
    scan_gap_hours: tuple[float, float] | None
    source: str
    freight: bool = False  # delivered by appointment (a freight line), not in express rounds
    lockers: float = 0.3  # share put into a locker or station, collected by the buyer


@dataclass(frozen=True)
class Problems:
    delayed: float  # share held up somewhere for days
    delay_days: float  # median hold-up
    lost: float
    refused: float


@dataclass
class Truth:
    """What happened to one parcel, and what was promised (parcelwatch is told neither)."""

    subject: str
    lane: str
    paid_at: float
    picked_up_at: float
    promise: float
    signed_at: float | None
    # When it stopped being a parcel in flight: signed, or the order refunded (lost), or refused.
    ended_at: float
    cause: str  # normal, delayed, lost, refused, plus ":regional" / ":peak" / ":festival"
    # Picked up after the platform's handling allowance had passed (the seller shipped late).
    shipped_late: bool = False

    @property
    def late(self) -> bool:
        return self.signed_at is None or self.signed_at > self.promise

    @property
    def scored(self) -> bool:
        return not self.cause.startswith("refused")


@dataclass
class Scenario:
    name: str
    title: str
    events: list[OrderEvent | TrackingUpdate]
    parcels: list[Truth]
    start: float
    end: float


@dataclass
class Shop:
    """One shop's world: where it ships from, with which services, how fast it hands parcels over, and the
    platform's promise rules. ``slowdown(lane, pickup)`` multiplies the line haul (seasons, regional delays);
    ``slowdown`` also gives days added to the line haul (a holiday stop) and names the season;
    ``promise_extra(paid)`` is the days the platform adds for festival orders; ``volume(day)`` scales the
    daily orders."""

    name: str
    platform: str
    origins: dict[str, float]
    services: dict[str, float]  # carrier -> share
    per_day: float
    handling_days: float  # the platform's handling allowance (promise counted from payment)
    problems: Problems
    ship: Callable[[random.Random, float], float]  # paid -> shipped
    volume: Callable[[float], float] = lambda day: 1.0
    slowdown: Callable[[str, float], tuple[float, float, str]] = lambda dest, pickup: (1.0, 0.0, "")
    promise_extra: Callable[[float], float] = lambda paid: 0.0
    autoconfirm_days: float = 10.0
    # The platform's estimate: this percentile of a normal journey on the origin and destination, plus days.
    promise_quantile: float = 0.9
    promise_margin_days: float = 0.0
    lanes: dict[tuple[str, str, str], float] = field(default_factory=dict)  # route factors, drawn once


EXPRESS = {
    "ZTO": Service("ZTO", 0.3, 900, 0.16, (5, 14), "kuaidi100"),
    "YTO": Service("YTO", 0.3, 870, 0.17, (5, 14), "kuaidi100"),
    "YUNDA": Service("YUNDA", 0.35, 850, 0.18, (6, 16), "kuaidi100"),
    "STO": Service("STO", 0.35, 820, 0.19, (6, 16), "kuaidi100"),
    "JTEXPRESS": Service("JTEXPRESS", 0.4, 800, 0.2, (6, 18), "kuaidi100"),
    "SF": Service("SF", 0.2, 1500, 0.14, (3, 9), "kuaidi100", lockers=0.15),
    "EMS": Service("EMS", 0.6, 650, 0.22, (8, 24), "kuaidi100", lockers=0.4),
}
FREIGHT = {
    "DEPPON": Service("DEPPON", 3.5, 360, 0.2, None, "17track", freight=True, lockers=0.0),
    "YZPY": Service("YZPY", 4.0, 320, 0.24, None, "17track", freight=True, lockers=0.0),
    "BESTEXP": Service("BESTEXP", 4.0, 300, 0.25, None, "17track", freight=True, lockers=0.0),
    "CAINIAO": Service("CAINIAO", 3.5, 340, 0.22, None, "17track", freight=True, lockers=0.0),
}
SERVICES = {**EXPRESS, **FREIGHT}


def _seed(lane: tuple[str, str, str]) -> int:
    """A seed per lane that is the same in every process (``hash`` of a string is not)."""
    return zlib.crc32("|".join(lane).encode())


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class World:
    """Generates one shop's orders and journeys. Deterministic for a seed."""

    def __init__(self, shop: Shop, seed: int) -> None:
        self.shop = shop
        self.rng = random.Random(seed)
        self.events: list[OrderEvent | TrackingUpdate] = []
        self.parcels: list[Truth] = []
        self.promise_days: dict[tuple[str, str], float] = {}
        self.number = 0

    # -- the platform's lane estimate ------------------------------------------------------------------

    def route_factor(self, lane: tuple[str, str, str]) -> float:
        factor = self.shop.lanes.get(lane)
        if factor is None:
            # Each route has its own hubs and roads: a lasting factor per lane, drawn once.
            factor = self.shop.lanes[lane] = math.exp(random.Random(_seed(lane)).gauss(0.0, 0.12))
        return factor

    def promised_days(self, origin: str, dest: str) -> float:
        """The platform's estimate from ``origin`` to ``dest``: a percentile of a normal journey with the
        shop's carriers, in whole days, plus its margin (from its data on every seller's parcels; here,
        journeys of the same world)."""
        days = self.promise_days.get((origin, dest))
        if days is None:
            rng = random.Random(_seed(("", origin, dest)))
            pickup = china(2026, 3, 2) + 18 * HOUR
            ends = sorted(self.journey(rng, (_pick(rng, self.shop.services), origin, dest), pickup, normal=True)[1]
                          - pickup for _ in range(400))
            q = ends[min(len(ends) - 1, int(self.shop.promise_quantile * len(ends)))]
            days = self.promise_days[(origin, dest)] = math.ceil(q / DAY) + self.shop.promise_margin_days
        return days

    # -- one parcel ------------------------------------------------------------------------------------

    def journey(self, rng: random.Random, lane: tuple[str, str, str], pickup: float, normal: bool = False,
                slow: float = 1.0, hold_days: float = 0.0) -> tuple[list[tuple[str, float]], float]:
        """Scans after the pickup scan, and the signature's time (the journey's end)."""
        carrier, origin, dest = lane
        service = SERVICES[carrier]
        haul = (service.fixed_days + road_km(origin, dest) / service.km_per_day + FAR_WEST.get(dest, 0.0))
        haul *= self.route_factor(lane) * math.exp(rng.gauss(0.0, service.spread)) * slow
        arrival = pickup + (haul + hold_days) * DAY
        scans: list[tuple[str, float]] = []
        if service.scan_gap_hours is not None and not normal:
            lo, hi = service.scan_gap_hours
            t = pickup + rng.uniform(1, 4) * HOUR
            hold_at = pickup + rng.uniform(0.2, 0.8) * haul * DAY  # where a hold-up starts (silent)
            while t < arrival - 2 * HOUR:
                scans.append(("in_transit", t))
                step = rng.uniform(lo, hi) * HOUR
                if hold_days and t < hold_at <= t + step:
                    step += hold_days * DAY
                t += step
            scans.append(("arrived_city", arrival))
        if service.freight:
            day = arrival + rng.uniform(1.0, 3.0) * DAY  # the appointment
            signed = at_china_hour(day - 12 * HOUR, rng.uniform(9.5, 18.0))
            return scans, signed
        # Express: the next delivery round with the parcel sorted for it.
        round_at = min(at_china_hour(arrival + 1.5 * HOUR, 9.0), at_china_hour(arrival + 1.5 * HOUR, 14.0))
        out = round_at + rng.uniform(0.0, 1.0) * HOUR
        if not normal:
            scans.append(("out_for_delivery", out))
        if rng.random() < service.lockers:
            locker = out + rng.uniform(0.3, 3.0) * HOUR
            if not normal:
                scans.append(("at_locker", locker))
            return scans, locker + math.exp(rng.gauss(math.log(8.0), 1.0)) * HOUR
        return scans, out + rng.uniform(0.2, 4.0) * HOUR

    def order(self, paid: float) -> None:
        shop, rng = self.shop, self.rng
        self.number += 1
        order_id = f"{shop.name}-{self.number:07d}"
        carrier = _pick(rng, shop.services)
        origin = _pick(rng, shop.origins)
        dest = _pick(rng, DEMAND)
        lane = (carrier, origin, dest)
        service = SERVICES[carrier]
        number = f"{self.number:012d}"
        subject = f"{carrier}:{number}"
        shipped = shop.ship(rng, paid)
        pickup = shipped + rng.uniform(0.5, 3.0) * HOUR
        if service.freight:
            pickup = at_china_hour(shipped, rng.uniform(10.0, 17.0))
        promise = china_day_end(paid + (shop.handling_days + self.promised_days(origin, dest) + shop.promise_extra(paid)) * DAY)
        slow, stop_days, season = shop.slowdown(dest, pickup)
        p = shop.problems
        draw = rng.random()
        cause = "normal"
        hold = 0.0
        if draw < p.lost:
            cause = "lost"
        elif draw < p.lost + p.refused:
            cause = "refused"
        elif draw < p.lost + p.refused + p.delayed:
            cause = "delayed"
            hold = math.exp(rng.gauss(math.log(p.delay_days), 0.6))
        scans, signed = self.journey(rng, lane, pickup, slow=slow, hold_days=hold + stop_days)
        if season:
            cause += ":" + season
        value = round(math.exp(rng.gauss(math.log(150 if not service.freight else 2500), 0.7)), 2)

        def order_event(kind: str, t: float, **facts: Any) -> None:
            self.events.append(OrderEvent(f"{order_id}-{kind}", order_id, shop.name, shop.platform, kind, t, **facts))

        order_event("paid", paid, order_value=value)
        order_event("shipped", shipped, carrier=carrier, tracking_number=number, origin_province=origin,
                    destination_province=dest, order_value=value, auto_confirm_deadline=shipped + shop.autoconfirm_days * DAY)

        def scan(status: str, t: float, reason: str | None = None) -> None:
            self.events.append(TrackingUpdate(f"{subject}-{status}-{len(self.events)}", carrier, number, status, t,
                                              exception_reason=reason, source=service.source,
                                              province=dest if status in ("arrived_city", "out_for_delivery") else None))

        scan("picked_up", pickup)
        ended: float
        signed_at: float | None = None
        if cause.startswith("lost"):
            kept = [s for s in scans if s[1] < pickup + rng.uniform(0.2, 0.7) * (signed - pickup)]
            for status, t in kept:
                scan(status, t)
            if service.scan_gap_hours is not None and rng.random() < 0.5:
                scan("exception", pickup + rng.uniform(5, 15) * DAY, "lost")
            # The buyer complains after the promise; the seller refunds.
            ended = promise + rng.uniform(1.0, 10.0) * DAY
            order_event("refunded", ended)
        elif cause.startswith("refused"):
            for status, t in scans:
                if status in ("in_transit", "arrived_city"):
                    scan(status, t)
            ended = signed
            scan("exception", ended, "refused")
            scan("exception", ended + rng.uniform(0.5, 2.0) * DAY, "returned")
        else:
            for status, t in scans:
                scan(status, t)
            scan("signed", signed)
            ended = signed_at = signed
            if rng.random() < 0.6:  # most buyers confirm within days; the rest are auto-confirmed
                order_event("confirmed", signed + rng.uniform(0.1, 4.0) * DAY)
        shipped_late = pickup > paid + (shop.handling_days + shop.promise_extra(paid)) * DAY
        self.parcels.append(Truth(subject, f"{carrier} {origin}→{dest}", paid, pickup, promise, signed_at, ended, cause,
                                  shipped_late))

    def run(self, start: float, days: int) -> None:
        shop, rng = self.shop, self.rng
        for d in range(days):
            day = start + d * DAY
            n = _poisson(rng, shop.per_day * shop.volume(day))
            for _ in range(n):
                hour = rng.choices(range(24), weights=ORDER_HOURS)[0]
                self.order(day + (hour + rng.random()) * HOUR)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    k, p, limit = 0, 1.0, math.exp(-mean)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def warehouse_ship(cutoff_hour: float = 16.0, late_share: float = 0.05) -> Callable[[random.Random, float], float]:
    """A warehouse: orders paid before the cut-off leave the same evening, the rest the next; a few wait
    for stock for one to three days."""

    def ship(rng: random.Random, paid: float) -> float:
        out = at_china_hour(paid, 17.0) if china_hour(paid) < cutoff_hour else at_china_hour(paid + 8 * HOUR, 17.0)
        if rng.random() < late_share:
            out += rng.randint(1, 3) * DAY
        return out + rng.uniform(0, 2.5) * HOUR

    return ship


def _scenario(name: str, title: str, shop: Shop, start: float, days: int, tail_days: int, seed: int) -> Scenario:
    world = World(shop, seed)
    world.run(start, days)
    events = sorted(world.events, key=lambda e: e.event_time)
    end = start + (days + tail_days) * DAY
    return Scenario(name, title, [e for e in events if e.event_time <= end], world.parcels, start, end)


# -- the four scenarios ------------------------------------------------------------------------------------


def dense_domestic(scale: float = 1.0, seed: int = 11) -> Scenario:
    """A Tmall shop with warehouses in Zhejiang and Guangdong: thousands of express parcels a day, 1-4 days."""
    shop = Shop("dense-shop", "tmall", {"浙江": 0.65, "广东": 0.35},
                {"ZTO": .3, "YTO": .22, "YUNDA": .18, "JTEXPRESS": .1, "STO": .08, "SF": .08, "EMS": .04},
                per_day=2000 * scale, handling_days=1.0, problems=Problems(0.04, 1.5, 0.003, 0.01),
                ship=warehouse_ship())
    return _scenario("dense domestic shop", "2,000 express parcels a day for 30 days, 1-4 day lanes",
                     shop, china(2026, 3, 2), 30, 15, seed)


def sparse_marketplace(scale: float = 1.0, seed: int = 12, **tweak: Any) -> Scenario:
    """A furniture seller on a marketplace: big items by freight lines from four provinces to the whole
    country, 1-3 weeks, only pickup and delivery reported, about eight orders a day for two years.
    ``tweak``: ``Shop`` fields to set otherwise (to calibrate the world against another real history)."""

    def ship(rng: random.Random, paid: float) -> float:
        return paid + math.exp(rng.gauss(math.log(1.8), 0.5)) * DAY

    festivals = [china(2025, 1, 29), china(2026, 2, 17)]  # Spring Festival

    def slowdown(dest: str, pickup: float) -> tuple[float, float, str]:
        for f in festivals:
            # Freight lines stop for a week over the holiday: what is on the road then waits.
            if f - 7 * DAY <= pickup <= f + 4 * DAY:
                return 1.0, 7.0, "festival"
            if f - 12 * DAY <= pickup <= f + 8 * DAY:
                return 1.15, 3.0, "festival"
        return 1.0, 0.0, ""

    def promise_extra(paid: float) -> float:
        return 7.0 if any(f - 12 * DAY <= paid <= f + 5 * DAY for f in festivals) else 0.0

    def volume(day: float) -> float:
        month = datetime.fromtimestamp(day, CHINA_TZ).month
        return {11: 1.6, 12: 1.2, 1: 0.8, 2: 0.6, 6: 1.2}.get(month, 1.0)

    # A marketplace's delivery guarantee: generous (the 95th percentile and two days more, a week's handling),
    # yet a fifth of this seller's parcels miss it: held for weeks at freight lines' transfer depots, or
    # never delivered. (Calibrated on the fixed thresholds of the real history in issue 26: there "not
    # signed 14 d after pickup" had 70% precision, 94% recall, 6.5 d lead; 18 d: 83%, 91%, 3.0 d.)
    shop = Shop("furniture-mall", "other", {"广东": 0.55, "江西": 0.2, "浙江": 0.15, "福建": 0.1},
                {"DEPPON": .35, "YZPY": .2, "BESTEXP": .2, "CAINIAO": .25},
                per_day=7.6 * scale, handling_days=6.0, problems=Problems(0.13, 16.0, 0.11, 0.02),
                ship=ship, slowdown=slowdown, promise_extra=promise_extra, volume=volume, autoconfirm_days=30.0,
                promise_quantile=0.95, promise_margin_days=2.0)
    for name, value in tweak.items():
        setattr(shop, name, value)
    return _scenario("sparse long-haul marketplace", "about 6,000 freight orders over two years, 1-3 weeks, "
                     "pickup and delivery scans only", shop, china(2024, 11, 1), 730, 60, seed)


def regional_delay(scale: float = 1.0, seed: int = 13) -> Scenario:
    """A mid-size shop whose parcels into one province are slowed for weeks (floods, a lockdown); the
    platform keeps its promises."""
    start = china(2026, 5, 1)
    hit, begins, weeks = "河南", start + 50 * DAY, 4

    def slowdown(dest: str, pickup: float) -> tuple[float, float, str]:
        if dest != hit or not begins <= pickup < begins + weeks * 7 * DAY:
            return 1.0, 0.0, ""
        k = (pickup - begins) / DAY
        # Worst in the first two weeks, easing over the last two.
        factor = 3.0 if k < 14 else 3.0 - 2.0 * (k - 14) / 14
        return factor, 0.0, "regional"

    shop = Shop("regional-shop", "taobao", {"浙江": 1.0}, {"ZTO": .35, "YTO": .25, "YUNDA": .2, "STO": .1, "SF": .1},
                per_day=500 * scale, handling_days=1.0, problems=Problems(0.04, 1.5, 0.003, 0.01),
                ship=warehouse_ship(), slowdown=slowdown)
    return _scenario("regional delay", "500 parcels a day for 90 days; every lane into 河南 three times slower "
                     "for four weeks from day 50", shop, start, 90, 15, seed)


def double_eleven(scale: float = 1.0, seed: int = 14) -> Scenario:
    """A shop through Double 11: pre-sale waves, the night of the 11th, days of shipping backlog, carriers
    slower for about ten days; the platform's festival promises are longer."""
    start = china(2026, 10, 15)
    d11 = china(2026, 11, 11)

    def volume(day: float) -> float:
        k = round((day - d11) / DAY)
        return {-10: 2.5, -9: 1.6, -8: 1.3, 0: 8.0, 1: 2.5, 2: 1.5}.get(k, 1.3 if -20 <= k < 0 else 1.0)

    base_ship = warehouse_ship()

    def ship(rng: random.Random, paid: float) -> float:
        k = (paid - d11) / DAY
        out = base_ship(rng, paid)
        if 0 <= k < 3 or -10 <= k < -8:  # the warehouse works through the waves for days
            out += rng.uniform(0, 3.0) * DAY
        return out

    def slowdown(dest: str, pickup: float) -> tuple[float, float, str]:
        k = (pickup - d11) / DAY
        if -10 <= k < -7:
            return 1.3, 0.0, "peak"
        if 0 <= k < 12:
            return 1.0 + 1.0 * math.exp(-k / 5.0), 0.0, "peak"
        return 1.0, 0.0, ""

    def promise_extra(paid: float) -> float:
        k = (paid - d11) / DAY
        return 1.0 if (-10 <= k < -8 or 0 <= k < 2) else 0.0

    shop = Shop("d11-shop", "tmall", {"浙江": 0.5, "广东": 0.3, "江苏": 0.2},
                {"ZTO": .3, "YTO": .22, "YUNDA": .18, "JTEXPRESS": .12, "SF": .1, "EMS": .08},
                per_day=1000 * scale, handling_days=2.0, problems=Problems(0.04, 1.5, 0.003, 0.01),
                ship=ship, volume=volume, slowdown=slowdown, promise_extra=promise_extra)
    return _scenario("Double 11 backlog", "1,000 parcels a day from 15 Oct to 5 Dec, eight times that on the 11th",
                     shop, start, 51, 20, seed)


SCENARIOS: dict[str, Callable[..., Scenario]] = {
    "dense": dense_domestic,
    "marketplace": sparse_marketplace,
    "regional": regional_delay,
    "double11": double_eleven,
}


def describe(s: Scenario) -> Iterator[str]:
    scored = [p for p in s.parcels if p.scored]
    late = [p for p in scored if p.late]
    lanes = len({p.lane for p in s.parcels})
    transit = sorted((p.signed_at - p.picked_up_at) / DAY for p in scored if p.signed_at is not None)
    yield (f"{len(s.parcels):,} parcels on {lanes} lanes, {len(s.events):,} events; late or never delivered "
           f"{len(late) / max(1, len(scored)):.0%}; transit p10/p50/p90 "
           f"{transit[len(transit) // 10]:.1f}/{transit[len(transit) // 2]:.1f}/{transit[9 * len(transit) // 10]:.1f} d")
    # Why the late ones were late: what a rule counting from pickup can and cannot see.
    n = max(1, len(late))
    shipped = sum(p.shipped_late and p.cause.startswith("normal") for p in late)
    normal = sum(not p.shipped_late and p.cause.startswith("normal") for p in late)
    held = sum(p.cause.startswith("delayed") for p in late)
    lost = sum(p.cause.startswith("lost") for p in late)
    yield (f"late ones: {held / n:.0%} held up in transit, {lost / n:.0%} lost, {shipped / n:.0%} shipped late "
           f"(a normal journey after it), {normal / n:.0%} a normal journey that still missed the promise")
