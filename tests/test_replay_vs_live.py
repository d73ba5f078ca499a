"""Replay and the live worker run the same code: given the same events, the queue they leave is the same."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import config
from core.replay import replay
from delivery.batch_records import record_events
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from devtools.simulator import Simulator, write_jsonl

from .harness import Worker, all_issues, consume_all, explain_subjects, open_issue_times, produce, replayed_open_times, wait_for

pytestmark = pytest.mark.integration


def test_open_queue_after_the_same_events_matches_replay(tmp_path: Path, broker: TansuBroker,
                                                         redis_server: RedisServer) -> None:
    now = time.time()
    sim = Simulator(seed=17, start_time=now - 3 * 86400, mean_gap_seconds=900)
    records = [r for r in sim.events(250, until=now - 60)]
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        produce(broker.bootstrap, [(f"parcelwatch-{kind}", key, ev.to_json()) for kind, key, ev in records])
        path = tmp_path / "events.jsonl"
        write_jsonl(path, iter(records))

        def live_open() -> dict[str, str] | None:
            return open_issue_times(redis_server.url) or None

        # Let the worker consume everything and sweep a few times (ticks every second in tests).
        time.sleep(25)
        live = wait_for(live_open, 60, "open issues in the live queue")
        clock = time.time()
        with path.open("rb") as fh:
            result = replay(config.load(env={}), fh, until=clock)
        replayed = replayed_open_times(result)
        assert len(replayed) >= 10
        # Same open issues, opened at the same instants (deadlines, not processing times).
        assert live == replayed
    finally:
        worker.stop()


def test_a_worker_catching_up_on_a_backlog_judges_it_at_arrival_time(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    """Days of events that arrived while no worker ran (Kafka timestamps = arrival = event time).

    The wiring of the catch-up clock (clock.py; its effect on issues is tested in tests/test_clock.py):
    the arrival times survive the broker and the order router, the router sends its watermarks, the
    worker reports its partitions as
    catching up while it works through the backlog and as live once it is done, and the queue it then
    holds is the event-time replay's.
    """
    now = time.time()
    sim = Simulator(seed=29, start_time=now - 4 * 86400, mean_gap_seconds=400)
    records = [r for r in sim.events(600, until=now - 600)]
    produce(broker.bootstrap, [(f"parcelwatch-{kind}", key, ev.to_json()) for kind, key, ev in records],
            arrived=[ev.event_time for _, _, ev in records])
    path = tmp_path / "events.jsonl"
    write_jsonl(path, iter(records))
    # Default SLAs only: learned lane baselines reach a live worker asynchronously (through the deliveries
    # topic) and a replay at once, which moves transit deadlines apart for reasons other than the clock.
    overrides = tmp_path / "config.yaml"
    overrides.write_text("lanes:\n  refresh_minutes: 1000000000\n")  # (the refresh in force: before any delivery)
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_CONFIG=str(overrides),
                    PARCELWATCH_TICK_INTERVAL="0.25").start()
    tracking_events = sum(kind == "tracking" for kind, _, _ in records)
    seen_catching_up = 0.0

    def metric(text: str, name: str, label: str = "") -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and label in line)

    def caught_up() -> bool:
        nonlocal seen_catching_up
        text = worker.get("/metrics")[1].decode()
        catching_up = metric(text, "parcelwatch_partitions_catching_up ")
        seen_catching_up = max(seen_catching_up, catching_up)
        consumed = metric(text, "parcelwatch_events_consumed_total{", 'topic="parcelwatch-tracking"')
        return consumed >= tracking_events and catching_up == 0

    try:
        wait_for(caught_up, 120, "the worker to work through the backlog and catch up", interval=0.3)
        assert seen_catching_up >= 1, "the backlog's partitions were never reported as catching up"
        # The order router gave the order facts their order event's arrival time, not its own clock's.
        routed = consume_all(broker.bootstrap, "parcelwatch-order-facts")
        # (a batch record of several facts has no key: delivery/batch_records.py)
        facts = [m for m in routed if not (m.key or b"").startswith(b"watermark:")]
        assert facts and max(m.timestamp for m in facts) / 1000 < now - 600
        # ... and told every parcel partition how far it got while behind (core/clock.py).
        assert {m.partition for m in routed if (m.key or b"").startswith(b"watermark:")} == {0, 1, 2, 3}
        with path.open("rb") as fh:
            result = replay(config.load(overrides, env={}), fh, until=time.time())
        replayed = replayed_open_times(result)
        assert len(replayed) >= 10

        def live_open() -> dict[str, str]:
            return open_issue_times(redis_server.url)

        # The sweeps at the wall clock run on the next ticks after the catch-up ends.
        try:
            wait_for(lambda: live_open() == replayed, 20, "the open queue to equal the replay's")
        except TimeoutError:
            live_now = live_open()
            differ = sorted(set(live_now.items()) ^ set(replayed.items()))
            subjects = {k.split("|")[0] for k, _ in differ}
            events = [e for m in consume_all(broker.bootstrap, "parcelwatch-issues") for e in record_events(m.value)]
            history = "\n".join(f"  {e['subject']} {e['action']} {e['kind']} opened {e['opened_at']} at {e['at']}"
                                for e in events if e["subject"] in subjects)
            docs = {i["issue_key"]: i for i in all_issues(redis_server.url)}
            first = [docs[k] for k, _ in differ[:2] if k in docs]
            pytest.fail(f"redis documents: {[(d['issue_key'], d['status'], d['history']) for d in first]}\n"
                        f"only live: {sorted(set(live_now.items()) - set(replayed.items()))[:10]}\n"
                        f"only replay: {sorted(set(replayed.items()) - set(live_now.items()))[:10]}\n"
                        f"issue events of those subjects:\n{history}\n{explain_subjects(broker.bootstrap, subjects)}")
    finally:
        worker.stop()
