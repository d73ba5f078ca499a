"""The queue page's reads at scale: 10,000 open issues across 20 shops (each with its parcel's story), the
first page, a filter change and a search, as the page asks for them. Against a real Redis started for the
run; with ``--http`` also through a real worker's API (a Tansu broker and the worker started too).

Targets (the workbench issue): first page and a filter change each under 100 ms, a search under 50 ms.

Run: ``.venv/bin/python -m bench.queue_page [--issues 10000 --shops 20 --repeat 15 --http]``. Prints the median and
the slowest of the repeats; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import config
from devtools.redis_server import RedisServer
from domain.events import format_time
from domain.vocabulary import ISSUE_KINDS, SEVERITIES
from issue_queue.store import IssueStore
from issue_queue.views import label_issue

T0 = time.time() - 10 * 86400
CARRIERS = ("ZTO", "YTO", "YUNDA", "STO", "JTEXPRESS", "SF", "JD", "EMS")
PLATFORMS = ("taobao", "tmall", "douyin", "pinduoduo", "jd")


def events(n: int, shops: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        kind = ISSUE_KINDS[i % len(ISSUE_KINDS)]
        carrier = CARRIERS[i % len(CARRIERS)]
        subject = f"{carrier}:73{i:012d}"
        opened = T0 + i * 60
        scans = [[opened - 30 * 3600 + h * 3600, "in_transit", f"【广州市】快件已到达 广州转运中心（{h}）", "广州市", None] for h in range(8)]
        out.append({
            "action": "open", "issue_key": f"{subject}|{kind}", "kind": kind, "subject": subject, "parcel": subject,
            "carrier": carrier, "tracking_number": subject.split(":")[1], "order_id": f"TB{i:012d}",
            "shop": f"shop-{i % shops:02d}", "platform": PLATFORMS[i % len(PLATFORMS)], "lane": f"{carrier} 广东→浙江",
            "origin_province": "广东", "destination_province": "浙江", "destination_city": "杭州市", "order_value": 88.0,
            "reason": "no carrier scan 30.0 h after shipping (limit 24 h)", "severity": SEVERITIES[i % len(SEVERITIES)],
            "evidence": "shipped 2026-11-02 10:00, pickup window 24 h", "suggested_action": "push the carrier",
            "evidence_data": {"shipped_at": opened - 86400, "window_hours": 24.0, "deadline": opened}, "exception_reason": None,
            "opened_at": format_time(opened), "at": format_time(opened), "resolved_at": None, "resolution": None,
            "scans": scans, "autoconfirm_at": opened + 7 * 86400, "paid_at": opened - 90000, "shipped_at": opened - 86400,
        })
    return out


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """(median, slowest) milliseconds of ``repeat`` calls, after one warm-up."""
    await fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


async def in_process(url: str, n: int, shops: int, repeat: int) -> list[tuple[str, float, float, float]]:
    settings = config.load(env={})
    store = IssueStore.from_url(url)
    try:
        evs = events(n, shops)
        for i in range(0, len(evs), 500):
            await store.apply_events(evs[i : i + 500])
        all_shops = await store.shops()

        async def page(**filters: Any) -> None:
            # What GET /issues does for the page: the query with each row's newest scan, then the texts.
            result = await store.query(shops=all_shops, limit=50, stories=True, since=T0 + n * 30, **filters)
            [label_issue(i, settings, "zh") for i in result.issues]

        rows = [
            ("first page (50 of all open, priority order)", lambda: page(), 100.0),
            ("filter change: kind", lambda: page(kind="carrier_exception"), 100.0),
            ("filter change: severity + carrier", lambda: page(severity="high", carrier="YTO"), 100.0),
            ("filter change: one shop", lambda: page(shop="shop-07"), 100.0),
            ("next page (offset 5000)", lambda: page(offset=5000), 100.0),
            ("search: order id", lambda: page(search=f"TB{n // 2:012d}", statuses=None), 50.0),
            ("search: tracking number", lambda: page(search=f"73{n // 3:012d}", statuses=None), 50.0),
        ]
        return [(name, *(await timed(fn, repeat)), target) for name, fn, target in rows]
    finally:
        await store.redis.aclose()


def over_http(redis_url: str, run_dir: Path, repeat: int, n: int) -> list[tuple[str, float, float, float]]:
    """The same through a real worker's ``GET /issues`` (the page's own request, with its token)."""
    from devtools.broker import TansuBroker
    from tests.harness import Worker

    with TansuBroker(run_dir / "broker") as broker:
        worker = Worker(broker.url, redis_url, run_dir, PARCELWATCH_TOKENS="bench=*").start()
        try:
            def get(query: str) -> None:
                req = urllib.request.Request(worker.url(f"/issues?limit=50&lang=zh&{query}"), headers={"Authorization": "Bearer bench"})
                with urllib.request.urlopen(req, timeout=10) as resp:
                    json.loads(resp.read())

            rows = [("HTTP first page", "", 100.0), ("HTTP filter change: kind", "kind=carrier_exception", 100.0),
                    ("HTTP filter change: one shop", "shop=shop-07", 100.0), ("HTTP search: order id", f"q=TB{n // 2:012d}", 50.0)]
            out = []
            for name, query, target in rows:
                get(query)
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    get(query)
                    times.append((time.perf_counter() - started) * 1000)
                out.append((name, statistics.median(times), max(times), target))
            return out
        finally:
            worker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--http", action="store_true", help="also through a real worker's API")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        rows = asyncio.run(in_process(server.url, args.issues, args.shops, args.repeat))
        if args.http:
            rows += over_http(server.url, Path(tmp), args.repeat, args.issues)
    print(f"queue page: {args.issues:,} open issues across {args.shops} shops, 50 a page; median / slowest of {args.repeat}")
    for name, median, slowest, target in rows:
        print(f"  {name:<46} {median:7.1f} ms / {slowest:7.1f} ms   (target < {target:.0f} ms)")


if __name__ == "__main__":
    main()
