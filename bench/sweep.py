"""Deadline sweep cost: 10k vs 1M tracked parcels with the same number due.

The sweep must cost what is due, not what is tracked: the ratio of the two sweep times should stay
near 1 (target <= 2). Run: ``.venv/bin/python -m bench.sweep [--small 10000] [--large 1000000] [--due 2000]
[--repeats 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import config
from core.processor import Processor
from detectors import LaneBaselines
from domain.events import TrackingUpdate

T0 = 1_793_500_000.0  # 2026-11-01


def build(tracked: int, due: int) -> tuple[Processor, float]:
    """``tracked`` parcels picked up at T0; ``due`` of them picked up a day earlier so that their
    stale-tracking deadline (48 h) falls in the sweep window, the rest much later."""
    settings = config.load(env={})
    states: dict[str, bytes] = {}
    index: dict[str, bytes] = {}
    proc = Processor(settings, LaneBaselines(settings.lanes), states, index)
    for i in range(tracked):
        t = T0 - 86400 if i < due else T0 + (i % 5000) * 60
        proc.on_tracking(0, TrackingUpdate(f"e{i}", "ZTO", f"73{i:012d}", "picked_up", t), t)
    sweep_at = T0 + 86400 + 60  # past the 48 h stale deadline of the early ones only
    proc.on_tick(0, sweep_at - 3600)  # an earlier tick so the cursor sits just before the window
    return proc, sweep_at


def measure(tracked: int, due: int, repeats: int) -> tuple[list[float], int]:
    """Seconds of ``repeats`` sweeps, each over a fresh copy of the same tables (a sweep removes what
    it swept), and how many subjects each found due. One sweep is tens of milliseconds on a shared
    machine: single runs varied 0.7-2.3x in the large/small ratio, so the medians are compared."""
    proc, sweep_at = build(tracked, due)
    times = []
    found = 0
    for _ in range(repeats):
        fresh = Processor(proc.settings, proc.ctx.baselines, dict(proc.states), dict(proc.index))
        started = time.perf_counter()
        out = fresh.on_tick(0, sweep_at)
        times.append(time.perf_counter() - started)
        found = out.due
    return times, found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    small, small_due = measure(args.small, args.due, args.repeats)
    large, large_due = measure(args.large, args.due, args.repeats)
    for n, times, found in ((args.small, small, small_due), (args.large, large, large_due)):
        print(f"sweep {n:>9,} tracked, {found:,} due: median {statistics.median(times) * 1000:8.1f} ms "
              f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, {len(times)} runs)")
    print(f"ratio large/small (medians): {statistics.median(large) / statistics.median(small):.2f} (target <= 2)")

if __name__ == "__main__":
    main()
