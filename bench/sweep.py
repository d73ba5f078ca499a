"""Deadline sweep cost: 10k vs 1M tracked parcels with the same number due.

The sweep must cost what is due, not what is tracked: the ratio of the two sweep times should stay
near 1 (target <= 2). Run: ``.venv/bin/python -m bench.sweep [--small 10000] [--large 1000000] [--due 2000]``.
"""

from __future__ import annotations

import argparse
import time

import config
from detectors import LaneBaselines
from models import TrackingUpdate
from processor import Processor

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


def measure(tracked: int, due: int) -> tuple[float, int]:
    proc, sweep_at = build(tracked, due)
    started = time.perf_counter()
    out = proc.on_tick(0, sweep_at)
    return time.perf_counter() - started, out.due


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=2_000)
    args = parser.parse_args(argv)
    small_s, small_due = measure(args.small, args.due)
    large_s, large_due = measure(args.large, args.due)
    print(f"sweep {args.small:>9,} tracked, {small_due:,} due: {small_s * 1000:8.1f} ms")
    print(f"sweep {args.large:>9,} tracked, {large_due:,} due: {large_s * 1000:8.1f} ms")
    print(f"ratio large/small: {large_s / small_s:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
