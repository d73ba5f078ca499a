"""The catch-up clock: the wall clock live, arrival time while a partition works through a backlog."""

from __future__ import annotations

import asyncio
import zlib
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

import agents
import config
from core.clock import CatchUpClock, decode_watermark, encode_watermark
from core.notifications import load_rules
from core.orders import OrderRouter, decode_order_facts
from core.processor import Output, Processor
from core.replay import Engine
from detectors import LaneBaselines
from devtools.simulator import Simulator
from domain.events import parse_order_event, parse_tracking_update

WALL = 1_800_000_000.0
HOUR = 3600.0


def make_clock(lag: float = 120.0, quiet: float = 10.0) -> CatchUpClock:
    return CatchUpClock(lag, quiet, started_at=WALL - HOUR)  # a worker up for an hour


def test_live_records_run_at_the_wall_clock() -> None:
    clock = make_clock()
    assert clock.now(0, WALL) == WALL  # nothing seen yet
    assert clock.observe("tracking", 0, WALL - 2, WALL) == WALL
    assert clock.observe("tracking", 0, WALL - 119, WALL) == WALL  # within the lag allowed
    assert clock.lagging_partitions(WALL) == []


def test_a_backlog_runs_at_the_arrival_time_of_the_newest_record_processed() -> None:
    clock = make_clock()
    assert clock.observe("tracking", 0, WALL - 5 * HOUR, WALL) == WALL - 5 * HOUR
    assert clock.observe("tracking", 0, WALL - 4 * HOUR, WALL + 0.1) == WALL - 4 * HOUR
    # An older record (another producer's) does not move the clock back.
    assert clock.observe("tracking", 0, WALL - 4.5 * HOUR, WALL + 0.2) == WALL - 4 * HOUR
    assert clock.now(0, WALL + 1) == WALL - 4 * HOUR
    assert clock.lagging_partitions(WALL + 1) == [0]
    # Other partitions are not held back.
    assert clock.now(1, WALL + 1) == WALL + 1


def test_a_fresh_record_ends_the_catch_up() -> None:
    clock = make_clock()
    clock.observe("tracking", 0, WALL - 5 * HOUR, WALL)
    assert clock.observe("tracking", 0, WALL + 1, WALL + 2) == WALL + 2
    assert clock.now(0, WALL + 3) == WALL + 3


def test_a_quiet_partition_returns_to_the_wall_clock() -> None:
    # The backlog's last record was old and nothing came after it: once quiet for ``quiet`` seconds,
    # deadlines must fire at the wall clock again (a lagging flag must never stick).
    clock = make_clock(quiet=10)
    clock.observe("tracking", 0, WALL - 5 * HOUR, WALL)
    assert clock.now(0, WALL + 9) == WALL - 5 * HOUR
    assert clock.now(0, WALL + 10) == WALL + 10
    assert clock.lagging_partitions(WALL + 10) == []


def test_the_input_furthest_behind_sets_the_clock() -> None:
    # Order facts fresh, tracking still hours behind: the state is only as current as the tracking.
    clock = make_clock()
    clock.observe("tracking", 0, WALL - 3 * HOUR, WALL)
    assert clock.observe("order-facts", 0, WALL - 1, WALL + 0.5) == WALL - 3 * HOUR
    assert clock.observe("order-facts", 0, WALL - 6 * HOUR, WALL + 0.6) == WALL - 3 * HOUR
    # Tracking caught up, but the order facts' newest arrival is behind: theirs now.
    assert clock.observe("tracking", 0, WALL + 0.5, WALL + 0.7) == WALL - 1
    assert clock.observe("order-facts", 0, WALL + 0.7, WALL + 0.8) == WALL + 0.8


def test_the_clock_never_goes_back() -> None:
    # A sweep ran at the tracking's arrival time; then the order facts start arriving from further back.
    clock = make_clock()
    assert clock.observe("tracking", 0, WALL - 2 * HOUR, WALL) == WALL - 2 * HOUR
    assert clock.observe("order-facts", 0, WALL - 5 * HOUR, WALL + 1) == WALL - 2 * HOUR
    assert clock.now(0, WALL + 2) == WALL - 2 * HOUR
    # ... and moves on once the slowest input has passed where it stood.
    clock.observe("tracking", 0, WALL - 1 * HOUR, WALL + 3)
    assert clock.observe("order-facts", 0, WALL - 1.5 * HOUR, WALL + 4) == WALL - 1.5 * HOUR


def test_at_start_a_lagging_partition_waits_for_every_input_to_report() -> None:
    # The order router's first watermark comes a moment after the first tracking records: until the
    # inputs had ``quiet`` seconds to report, the clock stays at the first arrival seen.
    clock = CatchUpClock(120, 10, started_at=WALL)
    assert clock.observe("tracking", 0, WALL - 9 * HOUR, WALL + 1) == WALL - 9 * HOUR
    assert clock.observe("tracking", 0, WALL - 8 * HOUR, WALL + 2) == WALL - 9 * HOUR
    assert clock.observe("orders:3", 0, WALL - 8.5 * HOUR, WALL + 3) == WALL - 9 * HOUR
    assert clock.now(0, WALL + 10) == WALL - 8.5 * HOUR  # the router's watermark is the slowest input
    live = CatchUpClock(120, 10, started_at=WALL)
    assert live.observe("tracking", 0, WALL, WALL + 1) == WALL + 1  # live records are not held


def test_a_lagging_partition_waits_for_every_expected_input_to_report() -> None:
    # Live: the tracking backlog already sits in the partition, the order facts come through the router a
    # moment later. The tracking must not run the clock to the end of the backlog meanwhile (the orders'
    # ship deadlines would be judged days late, and their shipped facts, in flight, resolve them). The
    # wait counts from the partition's first record: the worker's start-up may take longer than that.
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, expected=["tracking", "orders:0", "orders:1"])
    assert clock.observe("tracking", 0, WALL - 90 * HOUR, WALL) == WALL - 90 * HOUR
    assert clock.observe("tracking", 0, WALL - 900, WALL + 1) == WALL - 90 * HOUR  # the whole backlog
    assert clock.observe("orders:0", 0, WALL - 80 * HOUR, WALL + 5, hold=300) == WALL - 90 * HOUR  # orders:1 unheard
    # ... even once the inputs heard from have gone quiet (the tracking here, the router's after its hold).
    assert clock.now(0, WALL + 30) == WALL - 90 * HOUR
    assert clock.now(0, WALL + 59) == WALL - 90 * HOUR
    assert clock.observe("orders:1", 0, WALL - 85 * HOUR, WALL + 31, hold=300) == WALL - 85 * HOUR
    # Another partition waits on its own.
    assert clock.observe("tracking", 1, WALL - 900, WALL + 31) == WALL - 900


def test_an_expected_input_that_never_reports_holds_the_clock_only_for_a_while() -> None:
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, expected=["tracking", "orders:0"], report_wait_seconds=60)
    clock.observe("tracking", 0, WALL - 5 * HOUR, WALL)
    assert clock.observe("tracking", 0, WALL - 4 * HOUR, WALL + 59) == WALL - 5 * HOUR
    assert clock.observe("tracking", 0, WALL - 3 * HOUR, WALL + 60) == WALL - 3 * HOUR
    # A live partition is never held.
    assert clock.observe("tracking", 1, WALL + 1, WALL + 2) == WALL + 2


def test_watermark_records() -> None:
    raw = encode_watermark(3, WALL - 5.5)
    assert decode_watermark(raw) == (3, WALL - 5.5)
    assert decode_watermark(b'{"at":1,"facts":{},"subject":"x"}') is None
    assert decode_watermark(b'{"watermark":"soon"}') is None


def test_missing_or_future_timestamps_count_as_live() -> None:
    clock = make_clock()
    assert clock.observe("tracking", 0, None, WALL) == WALL
    assert clock.observe("tracking", 0, WALL + HOUR, WALL) == WALL  # a producer clock ahead of ours
    assert clock.now(0, WALL + 1) == WALL + 1


def test_zero_lag_turns_catching_up_off() -> None:
    clock = make_clock(lag=0)
    assert clock.observe("tracking", 0, WALL - 5 * HOUR, WALL) == WALL
    assert clock.now(0, WALL) == WALL
    assert clock.lagging_partitions(WALL) == []


# -- a backlog through the processor: what a worker catching up after an outage raises ----------------

PARTITIONS = 4


def _partition(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


def _catch_up(records: list[Any], wall: float, lag_seconds: float,
              restart_after: int | None = None) -> dict[tuple[str, float], dict[str, Any]]:
    """Every issue (open or resolved) a worker raises working through ``records`` at wall clock ``wall``,
    their arrival time being their event time; a sweep on every partition every 50 events. ``restart_after``:
    the worker restarts after that many records (its tables kept, as the changelogs keep them; a new clock
    told which inputs still have records waiting), and every partition gets a tick before its next record."""
    settings = config.load(env={})
    states: dict[str, bytes] = {}
    index: dict[str, bytes] = {}
    baselines = LaneBaselines(settings.lanes)
    processor = Processor(settings, baselines, states, index, load_rules(), epoch=1)
    router = OrderRouter({})
    clock = CatchUpClock(lag_seconds, quiet_seconds=10, started_at=wall - 60)
    issues: dict[tuple[str, float], dict[str, Any]] = {}
    processing = wall

    def collect(out: Output) -> None:
        for d in out.deliveries:
            baselines.add_delivery(
                d["carrier"], d["origin_province"], d["destination_province"], d["picked_up_at"], d["signed_at"])
        for ev in out.issues:
            key = (ev["issue_key"], ev["opened_at"])
            if ev["action"] == "open":
                issues[key] = {"resolved_at": None}
            elif ev["action"] == "resolve":
                issues[key]["resolved_at"] = ev["resolved_at"]

    rest: set[tuple[str, int]] = set()  # (input, partition) with records waiting after the restart

    def sweep(p: int) -> None:
        swept_at = clock.now(p, processing)
        if swept_at is not None:  # (None: the partition's backlog not begun, its time unknown)
            collect(processor.on_tick(p, swept_at, processing))

    for i, (kind, _key, event) in enumerate(records, 1):
        if i - 1 == restart_after:
            processing += 30
            rest.update(("tracking", _partition(key.decode())) for k, key, _ in records[i - 1:] if k == "tracking")
            rest.update(("order-facts", p) for p in range(PARTITIONS))  # (the router's facts: some on every partition)
            clock = CatchUpClock(lag_seconds, quiet_seconds=10, started_at=processing, local=["tracking", "order-facts"],
                                 waiting=lambda source, partition: (source, partition) in rest)
            for p in range(PARTITIONS):
                sweep(p)
        processing += 0.001  # a thousand events a second
        if kind == "orders":
            for _subject, record in router.route(parse_order_event(event.to_json())):
                s, facts, at = decode_order_facts(record)
                p = _partition(s)
                now = clock.observe("order-facts", p, event.event_time, processing)
                collect(processor.on_order_facts(p, s, facts, at, now, processing))
        else:
            update = parse_tracking_update(event.to_json())
            p = _partition(update.parcel_key)
            now = clock.observe("tracking", p, update.event_time, processing)
            collect(processor.on_tracking(p, update, now, processing))
        if i % 50 == 0:
            for p in range(PARTITIONS):
                sweep(p)
    # Caught up and quiet: the next ticks run at the wall clock.
    processing += 60
    rest.clear()
    for p in range(PARTITIONS):
        sweep(p)
    return issues


@pytest.fixture(scope="module")
def backlog() -> tuple[list[Any], float]:
    sim = Simulator(seed=23, start_time=WALL - 6 * 86400, mean_gap_seconds=600)
    records = list(sim.events(400, until=WALL - 3600))
    return records, WALL


def _replayed(records: list[Any], until: float) -> dict[tuple[str, str], dict[str, Any]]:
    engine = Engine(config.load(env={}))
    for kind, _key, event in records:
        t = event.event_time
        engine.tick(t)
        if kind == "orders":
            engine.order(parse_order_event(event.to_json()), t)
        else:
            engine.tracking(parse_tracking_update(event.to_json()), t)
    engine.tick(until)
    return engine.result.issues


def test_a_backlog_caught_up_raises_no_issue_that_live_never_had(backlog: tuple[list[Any], float]) -> None:
    records, wall = backlog
    replayed = _replayed(records, wall + 60)
    caught_up = _catch_up(records, wall, lag_seconds=120)
    spurious = sorted(set(caught_up) - set(replayed))
    assert not spurious, f"{len(spurious)} issues the event-time replay never raised, e.g. {spurious[:3]}"
    # The parcels that are really in trouble are raised, at the same instants as in the replay.
    open_now = {k for k, v in caught_up.items() if v["resolved_at"] is None}
    assert open_now == {k for k, v in replayed.items() if v["resolved_at"] is None}
    assert len(open_now) >= 10


def test_the_wall_clock_raises_spurious_pairs_on_the_same_backlog(backlog: tuple[list[Any], float]) -> None:
    # What the catch-up clock removes (and proof that the test above can fail).
    records, wall = backlog
    replayed = _replayed(records, wall + 60)
    at_wall_clock = _catch_up(records, wall, lag_seconds=0)
    spurious = set(at_wall_clock) - set(replayed)
    resolved = [k for k in spurious if at_wall_clock[k]["resolved_at"] is not None]
    assert len(resolved) > 50


# -- after a start or a rebalance: no clock before the backlog's first record ------------------------------


def waiting_on(*inputs: tuple[str, int]) -> Any:
    """A ``waiting`` callable: records wait on exactly these (input, partition) pairs."""
    waiting = set(inputs)
    return lambda source, partition: (source, partition) in waiting


def test_a_partition_with_records_waiting_and_none_processed_has_no_clock_yet() -> None:
    # A restarted worker: a tick can come before any record of the partition's backlog. Handed the wall
    # clock, the sweep ran days ahead of the backlog, opening issues its own scans could no longer end.
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, local=["tracking", "facts"],
                         waiting=waiting_on(("tracking", 0), ("facts", 1)))
    assert not clock.known(0, WALL)  # (what /healthz shows, asked without handing a clock out)
    assert clock.now(0, WALL) is None
    assert clock.now(1, WALL) is None  # (an order-facts backlog is one too)
    assert clock.now(2, WALL) == WALL  # nothing waiting: live
    assert clock.known(2, WALL)
    assert clock.observe("tracking", 0, WALL - 50 * HOUR, WALL + 1) == WALL - 50 * HOUR
    assert clock.now(0, WALL + 2) == WALL - 50 * HOUR


def test_an_input_with_records_waiting_and_none_processed_holds_the_clock() -> None:
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, local=["tracking", "facts"],
                         waiting=waiting_on(("tracking", 0)))
    # The order facts come first; the tracking backlog waits: its time is not known yet.
    assert clock.observe("facts", 0, WALL - 20 * HOUR, WALL) == WALL - 20 * HOUR
    assert clock.now(0, WALL + 1) is None


def test_a_watermark_processed_first_does_not_make_a_lagging_partition_live() -> None:
    # The router's caught-up watermark (at the wall clock, before the crash) is delivered again first: it says
    # nothing of the partition's own backlog, which must not be swept at the wall clock.
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, local=["tracking", "facts"],
                         expected=["tracking", "orders:0"], waiting=waiting_on(("tracking", 0)))
    clock.observe("orders:0", 0, WALL - 1, WALL, hold=300)
    assert clock.now(0, WALL + 1) is None
    assert clock.observe("tracking", 0, WALL - 30 * HOUR, WALL + 2) == WALL - 30 * HOUR
    assert clock.now(0, WALL + 3) == WALL - 30 * HOUR


def test_a_partition_waiting_for_its_scans_after_a_rebalance_counts_as_lagging() -> None:
    # After a rebalance: the partition's scans were all processed by its previous owner, its order facts
    # still come from behind. Its sweeps wait for a scan (or the report wait) as for any input not heard
    # from; metrics and /healthz said it was caught up meanwhile, and a fault test compared the queue while
    # the partition's due subjects were still unswept.
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, local=["tracking", "facts"],
                         expected=["tracking", "orders:0"], report_wait_seconds=60, waiting=waiting_on())
    assert clock.observe("facts", 0, WALL - 30 * HOUR, WALL + 1) == WALL - 30 * HOUR
    clock.observe("orders:0", 0, WALL + 1, WALL + 2, hold=300)  # its router is live
    for t in (5, 12, 60):  # the facts behind, then quiet, then only the scans unheard
        assert clock.now(0, WALL + t) == WALL - 30 * HOUR
        assert clock.lagging_partitions(WALL + t) == [0]
    assert clock.now(0, WALL + 62) == WALL + 62
    assert clock.lagging_partitions(WALL + 62) == []


def test_the_wall_clock_given_before_a_partitions_first_record_is_not_kept() -> None:
    # A router's watermark before any record of the partition's own, nothing waiting: live for now, but the
    # backlog that comes next runs at its own time (kept, the wall clock would sweep it days ahead).
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, local=["tracking", "facts"],
                         expected=["tracking", "orders:0"], waiting=waiting_on())
    assert clock.observe("orders:0", 0, WALL - 1, WALL, hold=300) == WALL
    assert clock.observe("facts", 0, WALL - 30 * HOUR, WALL + 1) == WALL - 30 * HOUR


def test_a_partition_held_for_an_unheard_input_counts_as_lagging() -> None:
    # What health and metrics report must be what the sweeps run at: a partition waiting for an order
    # router that has not reported is catching up, even with every input it heard from quiet.
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, expected=["tracking", "orders:0"], report_wait_seconds=60)
    clock.observe("tracking", 0, WALL - 5 * HOUR, WALL)
    assert clock.now(0, WALL + 30) == WALL - 5 * HOUR
    assert clock.lagging_partitions(WALL + 30) == [0]
    assert clock.now(0, WALL + 61) == WALL + 61  # the router outwaited
    assert clock.lagging_partitions(WALL + 61) == []


def test_a_behind_input_with_records_waiting_is_not_quiet() -> None:
    # Its records merely wait their turn (a rebalance, a busy worker): quiet only once nothing waits.
    waiting = {("tracking", 0)}
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, local=["tracking"],
                         waiting=lambda source, partition: (source, partition) in waiting)
    clock.observe("tracking", 0, WALL - 5 * HOUR, WALL)
    assert clock.now(0, WALL + 60) == WALL - 5 * HOUR
    assert clock.lagging_partitions(WALL + 60) == [0]
    waiting.clear()
    assert clock.now(0, WALL + 61) == WALL + 61


def test_a_revoked_partition_starts_again_unknown() -> None:
    waiting = {("tracking", 0)}
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, local=["tracking"],
                         waiting=lambda source, partition: (source, partition) in waiting)
    clock.observe("tracking", 0, WALL - 5 * HOUR, WALL)
    clock.forget([0])
    assert clock.now(0, WALL + 1) is None  # another worker may have gone on meanwhile


def test_an_event_is_judged_at_its_own_time_when_the_clock_is_held_behind_it() -> None:
    # Just started: the sweeps hold at the first arrival until every input had its say. A scan of the
    # backlog walks its own parcel to its own time: held at the first arrival, a deadline between it and a
    # scan that ends the problem fired neither before nor after the scan.
    clock = CatchUpClock(120, 10, started_at=WALL, local=["tracking", "facts"], expected=["tracking", "orders:0"])
    held = clock.observe("tracking", 0, WALL - 9 * HOUR, WALL + 1)
    held = clock.observe("tracking", 0, WALL - 6 * HOUR, WALL + 2)
    assert held == WALL - 9 * HOUR  # the sweeps' clock
    assert clock.event_now(0, "tracking", held, WALL - 6.5 * HOUR, WALL + 2) == WALL - 6.5 * HOUR
    assert clock.event_now(0, "tracking", held, WALL - 10 * HOUR, WALL + 2) == held  # older: the clock
    # Order facts come through the router and may overtake the parcel's scans: no further than those.
    facts = clock.observe("facts", 0, WALL - 5 * HOUR, WALL + 3)
    assert clock.event_now(0, "facts", facts, WALL - 5.5 * HOUR, WALL + 3) == WALL - 6 * HOUR
    assert clock.event_now(0, "facts", facts, WALL - 8 * HOUR, WALL + 3) == max(facts, WALL - 8 * HOUR)
    # Nothing lies ahead of the wall clock, and catching up turned off judges everything at the wall clock.
    assert clock.event_now(0, "tracking", held, WALL + HOUR, WALL + 3) == WALL + 3
    off = CatchUpClock(0, 10, started_at=WALL, local=["tracking"])
    assert off.event_now(0, "tracking", WALL, WALL - HOUR, WALL) == WALL


def test_a_watermark_reports_progress_which_may_go_back() -> None:
    # A router caught up (a watermark at the wall clock), then behind again (a producer sending old events):
    # its latest report stands, not the newest.
    clock = CatchUpClock(120, 10, started_at=WALL - HOUR, local=["tracking"], expected=["tracking", "orders:0"])
    clock.observe("tracking", 0, WALL - 9 * HOUR, WALL)
    clock.observe("orders:0", 0, WALL, WALL + 1, hold=300, progress=True)
    clock.observe("tracking", 0, WALL - 2 * HOUR, WALL + 2)
    assert clock.now(0, WALL + 2) == WALL - 2 * HOUR
    clock.observe("orders:0", 0, WALL - 3 * HOUR, WALL + 3, hold=300, progress=True)
    assert clock.now(0, WALL + 3) == WALL - 2 * HOUR  # (never back: held where it stood)
    clock.observe("tracking", 0, WALL - HOUR, WALL + 4)
    assert clock.now(0, WALL + 4) == WALL - 2 * HOUR  # the router's report holds it


def test_a_worker_restarted_mid_backlog_raises_no_issue_that_live_never_had(backlog: tuple[list[Any], float]) -> None:
    # Restarted two thirds of the way through: every partition gets a tick before any record of the rest.
    records, wall = backlog
    replayed = _replayed(records, wall + 60)
    caught_up = _catch_up(records, wall, lag_seconds=120, restart_after=2 * len(records) // 3)
    spurious = sorted(set(caught_up) - set(replayed))
    assert not spurious, f"{len(spurious)} issues the event-time replay never raised, e.g. {spurious[:3]}"
    open_now = {k for k, v in caught_up.items() if v["resolved_at"] is None}
    assert open_now == {k for k, v in replayed.items() if v["resolved_at"] is None}


def test_the_parcel_agent_asks_whether_records_wait_once_per_record_and_afresh_after_it() -> None:
    """The clock asks for every event whether records wait on an input; the parcel agent asks the consumer
    once per record (a batch record's elements share the answer), and never keeps an answer past its record:
    health and metrics read the clock between records, and a stale "nothing waits" would pass for live."""
    stream = agents.build(config.load(env={}))
    parcels = stream.parcels
    assert parcels is not None
    consumer_answers: list[bool] = []
    waiting = {"answer": True}

    def ask_the_consumer(topic: str, partition: int) -> bool:
        consumer_answers.append(waiting["answer"])
        return waiting["answer"]

    seen: list[list[bool]] = []

    async def process(event: Any) -> None:  # what the clock does: ask for each element
        answers = [parcels._records_waiting("parcelwatch-order-facts", 0) for _ in range(3)]
        waiting["answer"] = not waiting["answer"]  # a fetch lands while the record is processed
        answers.append(parcels._records_waiting("parcelwatch-order-facts", 0))
        seen.append(answers)

    async def events() -> Any:
        for offset in range(2):
            yield SimpleNamespace(message=SimpleNamespace(tp=TP("parcelwatch-tracking", 0), offset=offset, partition=0,
                                                          topic="parcelwatch-tracking"), value=b"{}")

    async def begin(partition: int) -> None:
        return None

    parcels._records_waiting_now = ask_the_consumer  # type: ignore[method-assign]
    parcels._process_record = process  # type: ignore[method-assign]
    parcels.checkpoint.begin = begin  # type: ignore[method-assign]
    parcels.feed.ready.set()  # (the lane baselines have read the deliveries topic: the agent takes records)
    asyncio.run(parcels.run(SimpleNamespace(events=events)))  # type: ignore[arg-type]
    assert seen == [[True] * 4, [False] * 4]  # one answer per record, each the one its record started with
    assert consumer_answers == [True, False]
    # Between records (a health check, a scrape): asked afresh each time.
    assert parcels._records_waiting("parcelwatch-order-facts", 0) is True
    assert parcels._records_waiting("parcelwatch-order-facts", 0) is True
    assert consumer_answers == [True, False, True, True]
