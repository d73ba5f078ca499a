"""Ingest load on loopback: kuaidi100 pushes against a live worker (embedded broker and Redis), bounded
in count and time. Prints pushes/s and scans/s, the tracking records the scans travelled in (batch
records, delivery/record_batcher.py) and the worker's CPU seconds from the first push until it had
processed every scan; asserts nothing.
Run: ``.venv/bin/python -m bench.ingest_load [--pushes 2000] [--concurrency 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import psutil

from bench.ceiling import _consumed
from delivery.batch_records import decode_batch, is_batch
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from domain.vocabulary import CHINA_TZ
from tests.harness import Worker, consume_all, wait_for


def push(i: int) -> bytes:
    now = datetime.now(CHINA_TZ)
    data = [{"context": "运输中", "ftime": (now - timedelta(hours=h)).strftime("%Y-%m-%d %H:%M:%S"), "statusCode": code}
            for h, code in ((20, "103"), (10, "0"), (2, "1001"))]
    param = json.dumps({"status": "polling", "lastResult": {"state": "0", "com": "zhongtong", "nu": f"7300{i:08d}",
                                                            "data": data}}, ensure_ascii=False)
    return urllib.parse.urlencode({"param": param}).encode()


async def fire(url: str, n: int, concurrency: int, time_cap: float) -> tuple[int, float]:
    bodies = [push(i) for i in range(n)]
    done = 0
    started = time.perf_counter()
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def one(body: bytes) -> None:
            nonlocal done
            if time.perf_counter() - started > time_cap:
                return
            async with sem, session.post(url, data=body,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
                await resp.read()
                if resp.status == 200:
                    done += 1
        await asyncio.gather(*(one(b) for b in bodies))
    return done, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--time-cap", type=float, default=60.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        with TansuBroker(run / "b") as broker, RedisServer(run / "r") as redis:
            worker = Worker(broker.url, redis.url, run).start()
            try:
                assert worker.proc is not None
                proc = psutil.Process(worker.proc.pid)
                cpu_before = sum(proc.cpu_times()[:2])
                ok, seconds = asyncio.run(fire(worker.url("/ingest/kuaidi100"), args.pushes, args.concurrency,
                                               args.time_cap))
                wait_for(lambda: _consumed(worker.port).get("parcelwatch-tracking", 0.0) >= 3 * ok, 120,
                         "every acknowledged scan processed")
                cpu = sum(proc.cpu_times()[:2]) - cpu_before
                records = consume_all(broker.bootstrap, "parcelwatch-tracking")
            finally:
                worker.stop()
    scans = sum(len(decode_batch(m.value)) if is_batch(m.value) else 1 for m in records)
    print(f"ingest: {ok:,} kuaidi100 pushes acknowledged in {seconds:.1f} s = {ok / seconds:,.0f} pushes/s, "
          f"{3 * ok / seconds:,.0f} scans/s (3 scans a push, concurrency {args.concurrency})")
    print(f"  {scans:,} scans in {len(records):,} tracking records; worker CPU {cpu:.1f} s from the first push "
          "until every scan was processed")



if __name__ == "__main__":
    main()
