"""Redis sink: issue events written per second through the idempotent Lua script, pipelined in batches
of 500 (what the issue sink agent does), against a real Redis server started for the run; and the memory
Redis takes per issue, over the processor's issue events for simulated traffic (``--parcels``, as
``bench.alert_path`` makes them: each carries its parcel's scans and order facts, as the worker's do).
Redis keeps every issue, closed ones too: this is what its memory grows by.

Run: ``.venv/bin/python -m bench.redis_sink [--issues 50000] [--parcels 10000]``. Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import config
from devtools.redis_server import RedisServer
from domain.events import format_time
from issue_queue.store import IssueStore

from .alert_path import issue_events

T0 = 1_793_500_000.0
KINDS = ("pickup_overdue", "transit_overdue", "tracking_stale", "carrier_exception")


def events(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        subject = f"ZTO:73{i:012d}"
        opened = format_time(T0 + i)
        out.append({
            "action": "open", "issue_key": f"{subject}|{kind}", "kind": kind, "subject": subject,
            "parcel": subject, "carrier": "ZTO", "tracking_number": subject[4:], "order_id": f"TB{i:012d}",
            "shop": f"shop-{i % 20}", "platform": "taobao", "lane": "ZTO 广东→浙江", "origin_province": "广东",
            "destination_province": "浙江", "destination_city": "杭州市", "order_value": 88.0,
            "reason": "no carrier scan 24.0 h after shipping (limit 24 h)", "severity": "medium",
            "evidence": "shipped 2026-11-02 10:00, pickup window 24 h, no scan as of 2026-11-03 10:00",
            "evidence_data": {"shipped_at": T0, "window_hours": 24}, "suggested_action": "push the carrier",
            "exception_reason": None, "opened_at": opened, "at": opened, "resolved_at": None, "resolution": None,
        })
    return out


async def run(url: str, evs: list[dict[str, Any]], batch: int) -> list[tuple[float, float]]:
    """(wall seconds, this process's CPU seconds) for the new issues, then for all of them again."""
    store = IssueStore.from_url(url)
    phases = []
    try:
        for _ in ("new", "redelivered"):  # at-least-once redelivery: the second pass is all duplicates
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(evs), batch):
                await store.apply_events(evs[i : i + batch])
            phases.append((time.perf_counter() - started, time.process_time() - cpu))
        return phases
    finally:
        await store.redis.aclose()


async def memory_per_issue(url: str, evs: list[dict[str, Any]], batch: int) -> tuple[int, int, int]:
    """(issues in Redis, those closed, bytes of memory they added) after applying ``evs``."""
    store = IssueStore.from_url(url)
    try:
        before = int((await store.redis.info("memory"))["used_memory"])
        for i in range(0, len(evs), batch):
            await store.apply_events(evs[i : i + batch])
        after = int((await store.redis.info("memory"))["used_memory"])
        issues = closed = 0
        counts: dict[bytes, bytes] = await store.redis.hgetall(f"{store.prefix}counts")  # type: ignore[assignment,misc]
        for field, count in counts.items():  # {shop}|{kind}|{status} -> issues
            issues += int(count)
            closed += int(count) if field.rsplit(b"|", 1)[1] in (b"resolved", b"auto_resolved") else 0
        return issues, closed, after - before
    finally:
        await store.redis.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--parcels", type=int, default=10_000, help="simulated parcels for the memory per issue")
    args = parser.parse_args(argv)
    evs = events(args.issues)
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        (new_s, new_cpu), (dup_s, dup_cpu) = asyncio.run(run(server.url, evs, args.batch))
    simulated = issue_events(config.load(env={}), args.parcels)
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        issues, closed, grown = asyncio.run(memory_per_issue(server.url, simulated, args.batch))
    # The client's CPU is what the issue sink costs the worker (Redis runs the script on its own core).
    print(f"redis sink: {args.issues:,} new issues in {new_s:.2f} s = {args.issues / new_s:,.0f} issues/s "
          f"(pipelines of {args.batch}); client CPU {new_cpu:.2f} s")
    print(f"redis sink: {args.issues:,} redelivered duplicates = {args.issues / dup_s:,.0f} events/s; "
          f"client CPU {dup_cpu:.2f} s")
    print(f"redis memory: {issues:,} issues of {args.parcels:,} simulated parcels ({closed:,} closed) in "
          f"{grown / 2**20:.1f} MiB = {grown / max(1, issues) / 1024:.1f} KiB per issue, its parcel's scans and "
          "order facts included")


if __name__ == "__main__":
    main()
