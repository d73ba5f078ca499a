"""Detector core in process (no broker): events/s through validation, state update and every detector.

The same pipeline the worker and replay run (``replay.Engine``: processor with dict tables), fed with
simulator traffic. Two figures: from JSON bytes (decode + validate + process, what a worker does per
event) and from already-parsed events. Target: >= 200k events/s on one core.
Run: ``.venv/bin/python -m bench.detector_core [--parcels 20000]``.
"""

from __future__ import annotations

import argparse
import time

import config
from models import OrderEvent, parse_order_event, parse_tracking_update
from replay import Engine
from simulator import Simulator

START = 1_793_500_000.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=20_000)
    args = parser.parse_args(argv)
    records = list(Simulator(seed=21, start_time=START, mean_gap_seconds=30).events(args.parcels))
    raw = [(kind, event.to_json(), event.event_time) for kind, _, event in records]
    settings = config.load(env={})

    engine = Engine(settings)
    started = time.perf_counter()
    for kind, body, t in raw:
        if kind == "orders":
            engine.order(parse_order_event(body), t)
        else:
            engine.tracking(parse_tracking_update(body), t)
    engine.tick(raw[-1][2])
    from_bytes = time.perf_counter() - started

    engine = Engine(settings)
    events = [event for _, _, event in records]
    started = time.perf_counter()
    for event in events:
        if isinstance(event, OrderEvent):
            engine.order(event, event.event_time)
        else:
            engine.tracking(event, event.event_time)
    engine.tick(events[-1].event_time)
    parsed = time.perf_counter() - started

    n = len(raw)
    print(f"detector core: {n:,} simulated events, {len(engine.result.issues):,} issues")
    print(f"  from JSON bytes (decode + validate + state + detectors): {n / from_bytes:10,.0f} events/s")
    print(f"  from parsed events (state + detectors)                  : {n / parsed:10,.0f} events/s")


if __name__ == "__main__":
    main()
