"""The simulator: deterministic, valid, ordered, and each problem scenario raises its issue."""

from __future__ import annotations

import time
from collections import Counter

import config
from core.replay import Engine
from devtools.simulator import EXPECTED_KINDS, SCENARIOS, Simulator
from domain.events import OrderEvent, parse_order_event, parse_tracking_update

START = 1_793_500_000.0


def test_same_seed_same_events_and_all_valid_and_ordered() -> None:
    a = list(Simulator(seed=3, start_time=START).events(300))
    b = list(Simulator(seed=3, start_time=START).events(300))
    assert [(k, key, e.to_json()) for k, key, e in a] == [(k, key, e.to_json()) for k, key, e in b]
    times = [e.event_time for _, _, e in a]
    assert times == sorted(times)
    for kind, key, event in a:
        if kind == "orders":
            assert parse_order_event(event.to_json()).order_id == key.decode()
        else:
            assert parse_tracking_update(event.to_json()).parcel_key == key.decode()
    assert len({e.event_id for _, _, e in a}) == len(a)


def test_scenario_shares_are_roughly_respected() -> None:
    sim = Simulator(seed=5, start_time=START)
    for i in range(5000):
        sim.lifecycle(i, START)
    counts = Counter(sim.scenarios.values())
    for name in SCENARIOS:
        share = counts[name] / 5000
        assert abs(share - sim.shares[name]) < 0.012, (name, share)


def test_each_scenario_raises_its_issue_kind() -> None:
    sim = Simulator(seed=9, start_time=START, mean_gap_seconds=60)
    engine = Engine(config.load(env={}))
    records = list(sim.events(1500))
    for _, _, ev in records:
        engine.tick(ev.event_time)
        if isinstance(ev, OrderEvent):
            engine.order(ev, ev.event_time)
        else:
            engine.tracking(ev, ev.event_time)
    engine.tick(records[-1][2].event_time + 30 * 86400)
    raised: dict[str, set[str]] = {}
    for issue in engine.result.issues.values():
        raised.setdefault(issue["order_id"], set()).add(issue["kind"])
    order_of = {}
    for _, _key, ev in records:
        if isinstance(ev, OrderEvent):
            order_of[int(ev.event_id.split("-")[2])] = ev.order_id
    for i, scenario in sim.scenarios.items():
        kinds = raised.get(order_of[i], set())
        for expected in EXPECTED_KINDS[scenario]:
            assert expected in kinds, (i, scenario, kinds)
    ok = [i for i, s in sim.scenarios.items() if s == "ok"]
    clean = sum(1 for i in ok if not raised.get(order_of[i]))
    assert clean / len(ok) > 0.9  # healthy parcels mostly raise nothing


def test_pacing_never_emits_future_event_times() -> None:
    now = time.time()
    sim = Simulator(seed=1, start_time=now - 2 * 86400, mean_gap_seconds=600)
    past = [e for _, _, e in sim.events(200, until=now)]
    assert past and max(e.event_time for e in past) <= now
