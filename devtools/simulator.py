"""Realistic demo traffic: orders and tracking updates of parcels across China, with a share of problems.

Deterministic for a seed. Each parcel follows a lifecycle — paid, shipped from a warehouse province,
picked up after a delay, scanned in transit every few hours (lognormal transit time by distance class and
carrier), arrives in the destination city, goes out for delivery or into a locker, is signed, and the
buyer confirms — unless its scenario says otherwise: ``not_shipped``, ``not_picked_up``, ``stuck``,
``lost``, ``exception``, ``confirmed_unsigned``, ``near_autoconfirm``, ``locker_uncollected``.

``Simulator.events(n, start_time)`` yields ``(topic kind, key, event)`` for n parcels merged in event-time
order; topic kind is ``orders`` (key = order id) or ``tracking`` (key = ``CARRIER:number``).
JSON Lines written by ``write_jsonl`` (and read by ``app.py replay``) hold one
``{"topic": "orders"|"tracking", "key": "...", "value": {event}}`` per line.

Time: the simulator never emits an event time later than the wall clock unless ``allow_future``; the
demo (``make run``) starts its simulated clock some days back so it catches up with now and then keeps
pace with real time.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from domain.events import OrderEvent, TrackingUpdate
from domain.vocabulary import DAY, HOUR

SHOPS = ("shop-a", "shop-b", "shop-c")
PLATFORMS = (("taobao", 0.35), ("tmall", 0.2), ("douyin", 0.2), ("pinduoduo", 0.15), ("jd", 0.1))
CARRIERS = (("ZTO", 0.24), ("YTO", 0.2), ("YUNDA", 0.17), ("STO", 0.12), ("JTEXPRESS", 0.1), ("SF", 0.08),
            ("JD", 0.05), ("EMS", 0.04))
WAREHOUSES = (("广东", 0.35), ("浙江", 0.3), ("江苏", 0.15), ("上海", 0.1), ("福建", 0.1))
DESTINATIONS = (
    ("广东", 9), ("山东", 7), ("河南", 7), ("江苏", 6), ("四川", 6), ("河北", 5), ("湖南", 5), ("浙江", 5),
    ("安徽", 4), ("湖北", 4), ("广西", 3), ("云南", 3), ("江西", 3), ("辽宁", 3), ("福建", 3), ("陕西", 3),
    ("北京", 3), ("上海", 3), ("贵州", 3), ("山西", 2), ("重庆", 2), ("黑龙江", 2), ("吉林", 2), ("甘肃", 1.5),
    ("内蒙古", 1), ("新疆", 1), ("天津", 1), ("海南", 0.8), ("宁夏", 0.5), ("青海", 0.4), ("西藏", 0.2),
)
CITIES = {"广东": "广州市", "山东": "济南市", "河南": "郑州市", "江苏": "南京市", "四川": "成都市", "河北": "石家庄市",
          "湖南": "长沙市", "浙江": "杭州市", "安徽": "合肥市", "湖北": "武汉市", "广西": "南宁市", "云南": "昆明市",
          "江西": "南昌市", "辽宁": "沈阳市", "福建": "福州市", "陕西": "西安市", "北京": "北京市", "上海": "上海市",
          "贵州": "贵阳市", "山西": "太原市", "重庆": "重庆市", "黑龙江": "哈尔滨市", "吉林": "长春市",
          "甘肃": "兰州市", "内蒙古": "呼和浩特市", "新疆": "乌鲁木齐市", "天津": "天津市", "海南": "海口市",
          "宁夏": "银川市", "青海": "西宁市", "西藏": "拉萨市"}
REGION = {"广东": "S", "广西": "S", "海南": "S", "福建": "E", "浙江": "E", "江苏": "E", "上海": "E", "安徽": "E",
          "江西": "E", "山东": "E", "河南": "C", "湖北": "C", "湖南": "C", "北京": "N", "天津": "N", "河北": "N",
          "山西": "N", "辽宁": "NE", "吉林": "NE", "黑龙江": "NE", "四川": "SW", "重庆": "SW", "云南": "SW",
          "贵州": "SW", "陕西": "NW", "甘肃": "NW", "宁夏": "NW", "内蒙古": "R", "新疆": "R", "西藏": "R", "青海": "R"}
NEIGHBOURS = {("E", "E"), ("E", "C"), ("C", "E"), ("S", "S"), ("S", "C"), ("C", "S"), ("E", "N"), ("N", "E"),
              ("S", "E"), ("E", "S"), ("C", "C"), ("N", "N"), ("C", "N"), ("N", "C")}
# Median transit days by distance class: same province, neighbouring region, far, remote.
TRANSIT_DAYS = {"same": 1.0, "near": 1.8, "far": 2.6, "remote": 4.8}
FAST = {"SF": 0.6, "JD": 0.65, "EMS": 1.1}
EXCEPTIONS = ("problem_parcel", "out_of_area", "refused", "returned", "damaged", "held", "unreachable",
              "delivery_failed")
CATEGORIES = (("apparel", 0.45), ("beauty", 0.2), ("electronics", 0.15), ("home", 0.12), ("fresh", 0.04),
              ("furniture", 0.04))
SCENARIOS = ("not_shipped", "not_picked_up", "stuck", "lost", "exception", "confirmed_unsigned",
             "near_autoconfirm", "locker_uncollected")
# The issue kinds each scenario must produce (ok: none expected).
EXPECTED_KINDS: dict[str, tuple[str, ...]] = {
    "ok": (),
    "not_shipped": ("ship_overdue",),
    "not_picked_up": ("pickup_overdue",),
    "stuck": ("tracking_stale",),
    "lost": ("carrier_exception",),
    "exception": ("carrier_exception",),
    "confirmed_unsigned": ("confirmed_unsigned",),
    "near_autoconfirm": ("autoconfirm_imminent",),
    "locker_uncollected": ("locker_uncollected",),
}
DEFAULT_SHARES = {"not_picked_up": 0.04, "stuck": 0.05, "lost": 0.01, "exception": 0.04, "confirmed_unsigned": 0.02,
                  "near_autoconfirm": 0.02, "not_shipped": 0.02, "locker_uncollected": 0.02}

Record = tuple[str, bytes, OrderEvent | TrackingUpdate]


def _pick(rnd: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rnd.choices([k for k, _ in weighted], [w for _, w in weighted])[0]


def distance_class(origin: str, dest: str) -> str:
    if origin == dest:
        return "same"
    a, b = REGION[origin], REGION[dest]
    if b == "R":
        return "remote"
    return "near" if (a, b) in NEIGHBOURS else "far"


def tracking_number(rnd: random.Random, carrier: str) -> str:
    if carrier == "SF":
        return "SF" + "".join(rnd.choices("0123456789", k=13))
    if carrier == "JD":
        return "JD" + "".join(rnd.choices("0123456789", k=13))
    if carrier == "JTEXPRESS":
        return "JT" + "".join(rnd.choices("0123456789", k=13))
    first = {"ZTO": "7", "YTO": "YT", "YUNDA": "4", "STO": "77", "EMS": "98"}.get(carrier, "9")
    return first + "".join(rnd.choices("0123456789", k=14 - len(first)))


# What carriers write on their scans (the demo's ``raw_text``), per status; {city} is the scan's city,
# {place} the same without 市, {hub} a sorting centre's name.
CARRIER_TEXTS = {
    "picked_up": "【{city}】{place}营业部 已揽收",
    "in_transit": "【{city}】快件已到达 {hub}转运中心",
    "arrived_city": "【{city}】快件已到达 {place}分拨中心，准备派送",
    "out_for_delivery": "【{city}】{place}营业部 正在派件",
    "at_locker": "【{city}】快件已放入{place}菜鸟驿站，请凭取件码取件",
    "signed": "【{city}】已签收，签收人：本人",
}
EXCEPTION_TEXTS = {
    "problem_parcel": "快件为疑难件，网点正在处理", "out_of_area": "超区，请联系收件人到网点自提", "refused": "收件人拒收，快件退回中",
    "returned": "快件已退回寄件人", "lost": "快件丢失，已登记理赔", "damaged": "快件外包装破损，网点核实中",
    "held": "快件滞留，等待放行", "unreachable": "电话无人接听，无法派送", "delivery_failed": "派送不成功，明日再次派送",
}


def carrier_text(status: str, city: str | None, reason: str | None, n: int) -> str:
    place = (city or "").removesuffix("市") or "中转"
    if status == "exception":
        return f"【{city or '中转'}】{EXCEPTION_TEXTS.get(reason or '', '快件异常，网点核实中')}"
    return CARRIER_TEXTS.get(status, "【{city}】快件运输中").format(city=city or "中转", place=place, hub=f"{place}{'一二三'[n % 3]}号")


class Simulator:
    def __init__(self, seed: int = 7, problem_shares: dict[str, float] | None = None,
                 start_time: float | None = None, mean_gap_seconds: float = 120.0) -> None:
        self.seed = seed
        self.shares = dict(DEFAULT_SHARES if problem_shares is None else problem_shares)
        self.start_time = time.time() - 3 * DAY if start_time is None else start_time
        self.mean_gap = mean_gap_seconds
        self.scenarios: dict[int, str] = {}

    def scenario(self, rnd: random.Random) -> str:
        x = rnd.random()
        for name in SCENARIOS:
            x -= self.shares.get(name, 0.0)
            if x < 0:
                return name
        return "ok"

    def lifecycle(self, i: int, paid_at: float) -> list[Record]:
        """All events of parcel ``i`` (unsorted), paid at ``paid_at``."""
        rnd = random.Random(f"{self.seed}:{i}")
        scenario = self.scenario(rnd)
        self.scenarios[i] = scenario
        shop = rnd.choice(SHOPS)
        platform = _pick(rnd, PLATFORMS)
        carrier = _pick(rnd, CARRIERS)
        origin = _pick(rnd, WAREHOUSES)
        dest = rnd.choices([d for d, _ in DESTINATIONS], [w for _, w in DESTINATIONS])[0]
        if distance_class(origin, dest) == "remote" and rnd.random() < 0.5:
            carrier = "EMS"  # EMS reaches remote areas others do not
        category = _pick(rnd, CATEGORIES)
        value = round(math.exp(rnd.gauss(math.log(80), 0.9)), 2)
        order_id = f"{platform[:2].upper()}{self.seed:02d}{i:010d}"
        number = tracking_number(rnd, carrier)
        key = f"{carrier}:{number}"
        out: list[Record] = []
        n = [0]

        def order(kind: str, t: float, **kw: Any) -> None:
            n[0] += 1
            out.append(("orders", order_id.encode(), OrderEvent(
                event_id=f"sim-{self.seed}-{i}-{n[0]}", order_id=order_id, shop=shop, platform=platform,
                kind=kind, event_time=t, **kw)))

        def scan(status: str, t: float, province: str | None = None, reason: str | None = None) -> None:
            n[0] += 1
            city = CITIES.get(province or "") if province else None
            out.append(("tracking", key.encode(), TrackingUpdate(
                event_id=f"sim-{self.seed}-{i}-{n[0]}", carrier=carrier, tracking_number=number, status=status,
                event_time=t, exception_reason=reason, province=province, city=city, source="simulator",
                raw_text=carrier_text(status, city, reason, n[0]))))

        order("paid", paid_at, order_value=value, category=category, promised_ship_time=paid_at + 48 * HOUR)
        if scenario == "not_shipped":
            return out
        shipped = paid_at + rnd.uniform(1, 20) * HOUR
        deadline = shipped + 10 * DAY
        order("shipped", shipped, carrier=carrier, tracking_number=number, origin_province=origin,
              destination_province=dest, destination_city=CITIES[dest], order_value=value, category=category,
              auto_confirm_deadline=deadline)
        if scenario == "not_picked_up":
            return out
        pickup = shipped + min(20.0, rnd.lognormvariate(math.log(4), 0.6)) * HOUR
        scan("picked_up", pickup, origin)
        days = TRANSIT_DAYS[distance_class(origin, dest)] * FAST.get(carrier, 1.0)
        transit = max(0.4 * DAY, rnd.lognormvariate(math.log(days * DAY), 0.25))
        if scenario == "near_autoconfirm":
            transit = 10 * DAY  # still moving as the auto-confirm deadline nears
        t = pickup
        hops = max(2, int(transit / (10 * HOUR)))
        for h in range(1, hops):
            t = pickup + transit * h / hops * 0.8
            if scenario == "stuck" and h == max(1, hops // 2):
                return out  # scans stop mid-transit
            if scenario in ("lost", "exception") and h == max(1, hops // 2):
                scan("exception", t, origin if h < hops / 2 else dest,
                     "lost" if scenario == "lost" else rnd.choice(EXCEPTIONS))
                return out
            scan("in_transit", t, origin if h < hops / 2 else dest)
        arrived = pickup + transit * 0.85
        scan("arrived_city", arrived, dest)
        if scenario == "near_autoconfirm":
            return out
        if scenario == "confirmed_unsigned":
            scan("out_for_delivery", pickup + transit * 0.95, dest)
            order("confirmed", pickup + transit + 2 * HOUR)
            return out
        if scenario == "locker_uncollected" or rnd.random() < 0.15:
            at_locker = pickup + transit
            scan("at_locker", at_locker, dest)
            if scenario == "locker_uncollected":
                return out
            signed = at_locker + rnd.uniform(2, 30) * HOUR
        else:
            scan("out_for_delivery", pickup + transit * 0.95, dest)
            signed = pickup + transit
        scan("signed", signed, dest)
        if rnd.random() < 0.1:
            order("receipt_extended", shipped + 5 * DAY, auto_confirm_deadline=deadline + 5 * DAY)
        if rnd.random() < 0.7:
            order("confirmed", signed + rnd.uniform(1, 72) * HOUR)
        return out

    def events(self, n_parcels: int, start_time: float | None = None,
               until: float | None = None) -> Iterator[Record]:
        """All events of ``n_parcels`` parcels in event-time order; parcels start ``mean_gap`` apart on average."""
        start = self.start_time if start_time is None else start_time
        rnd = random.Random(self.seed)
        heap: list[tuple[float, int, int, Record]] = []
        seq = 0
        t = start
        for i in range(n_parcels):
            t += rnd.expovariate(1 / self.mean_gap)
            for rec in self.lifecycle(i, t):
                if until is None or rec[2].event_time <= until:
                    heapq.heappush(heap, (rec[2].event_time, i, seq, rec))
                    seq += 1
        while heap:
            yield heapq.heappop(heap)[3]


def write_jsonl(path: str | Path, records: Iterator[Record]) -> int:
    count = 0
    with Path(path).open("wb") as fh:
        for kind, key, event in records:
            fh.write(b'{"topic":"' + kind.encode() + b'","key":' + orjson.dumps(key.decode()) + b',"value":'
                     + event.to_json() + b"}\n")
            count += 1
    return count


async def produce(bootstrap: str, records: Iterator[Record], rate: float | None, topics: dict[str, str],
                  allow_future: bool = False, batch: int = 1) -> int:
    """Send records to Kafka; at most ``rate`` events/s, and never ahead of the wall clock
    (an event waits until its time has come) unless ``allow_future``. ``batch`` > 1: batch records
    (delivery/batch_records.py), up to ``batch`` events of one partition to a record, as the ingest side sends them."""
    from aiokafka import AIOKafkaProducer

    from delivery.batch_records import encode_batches, partition_for

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=1024 * 1024)
    await producer.start()
    sent = 0
    started = time.monotonic()
    last_report = started
    pending: list[Any] = []
    groups: dict[tuple[str, int], list[bytes]] = {}  # (topic, partition) -> events not yet sent
    partitions: dict[str, int] = {}

    async def send_group(topic: str, partition: int) -> None:
        for record in encode_batches(groups.pop((topic, partition)), max_events=batch):
            pending.append(await producer.send(topic, value=record, partition=partition))

    async def drain() -> None:
        for topic, partition in list(groups):
            await send_group(topic, partition)
        await asyncio.gather(*pending)
        pending.clear()

    try:
        for kind, key, event in records:
            if not allow_future:
                wait = event.event_time - time.time()
                if wait > 0:
                    await drain()
                    await asyncio.sleep(wait)
            topic = topics[kind]
            if batch > 1:
                if topic not in partitions:
                    partitions[topic] = len(await producer.partitions_for(topic))
                slot = (topic, partition_for(key, partitions[topic]))
                group = groups.setdefault(slot, [])
                group.append(event.to_json())
                if len(group) >= batch:
                    await send_group(*slot)
            else:
                pending.append(await producer.send(topic, value=event.to_json(), key=key))
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0.05:
                    await drain()
                    await asyncio.sleep(ahead)
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                print(f"simulator: {sent} events sent", flush=True)
        await drain()
    finally:
        await producer.stop()
    return sent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parcels", type=int, default=2000, help="parcels to simulate")
    parser.add_argument("--rate", type=float, default=None, help="at most this many events per second")
    parser.add_argument("--days-back", type=float, default=3.0, help="the simulated clock starts this many days ago")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bootstrap", default=None, help="host:port of the broker (default: from config)")
    parser.add_argument("--jsonl", default=None, help="write the events to this JSON Lines file instead of Kafka")
    parser.add_argument("--batch", type=int, default=1,
                        help="send up to this many events of one partition per record (batch records)")


def run(args: argparse.Namespace) -> int:
    import config

    settings = config.load()
    start = time.time() - args.days_back * DAY
    sim = Simulator(seed=args.seed, start_time=start,
                    problem_shares=settings.simulator.problem_shares,
                    mean_gap_seconds=max(1.0, args.days_back * DAY / max(args.parcels, 1)))
    if args.jsonl:
        n = write_jsonl(args.jsonl, sim.events(args.parcels))
        print(f"simulator: wrote {n} events to {args.jsonl}")
        return 0
    bootstrap = args.bootstrap or settings.app.broker.split(";")[0].removeprefix("kafka://")
    topics = {"orders": settings.topics.orders, "tracking": settings.topics.tracking}
    n = asyncio.run(produce(bootstrap, sim.events(args.parcels), args.rate, topics, batch=args.batch))
    print(f"simulator: sent {n} events")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
