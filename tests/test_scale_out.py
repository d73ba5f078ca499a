"""Two workers in one consumer group on the same broker and Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import config
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer

from .harness import Worker, all_issues, explain_subjects, produce, wait_for
from .test_integration_e2e import scan, shipped

pytestmark = pytest.mark.integration

PARTITIONS = config.load(env={}).app.partitions  # what the workers here run with (the defaults)


def partitions_held(worker: Worker) -> float:
    """The worker's ``parcelwatch_partitions_held`` gauge, as Prometheus scrapes it."""
    text = worker.get("/metrics")[1].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("parcelwatch_partitions_held "))


def test_two_workers_split_partitions_raise_each_issue_once_and_take_over(
    tmp_path: Path, broker: TansuBroker, redis_server: RedisServer
) -> None:
    w1 = Worker(broker.url, redis_server.url, tmp_path, name="w1").start()
    w2 = Worker(broker.url, redis_server.url, tmp_path, name="w2").start()
    try:
        # Both serve a share of the partitions once the group has settled: disjoint, together all of them.
        def split() -> bool:
            tables = [w.get("/healthz")[1]["checks"]["tables"] for w in (w1, w2)]
            held = [set(t["partitions"]) for t in tables]
            return (all(t["subjects"] > 0 for t in tables) and all(held) and not held[0] & held[1]
                    and held[0] | held[1] == set(range(PARTITIONS)))

        now = time.time()
        records = [shipped(f"TB8{i:03d}", f"781{i:04d}", now - 3600) for i in range(80)]
        records += [scan(f"781{i:04d}", "exception", now - 60, exception_reason="refused") for i in range(80)]
        produce(broker.bootstrap, records)
        try:
            wait_for(lambda: sum(i["kind"] == "carrier_exception" for i in all_issues(redis_server.url)) == 80,
                     90, "80 exception issues from two workers")
        except TimeoutError:
            raised = {i["parcel"] for i in all_issues(redis_server.url)}
            print(explain_subjects(broker.bootstrap, {f"ZTO:781{i:04d}" for i in range(80)} - raised))
            raise
        wait_for(split, 30, "both workers to own parcels")
        shares = [w.get("/healthz")[1]["checks"]["tables"]["partitions"] for w in (w1, w2)]
        assert [partitions_held(w) for w in (w1, w2)] == [float(len(share)) for share in shares]
        issues = all_issues(redis_server.url)
        assert len(issues) == 80
        assert all([h["action"] for h in i["history"]] == ["opened"] for i in issues)

        # Stop one: the other takes over its partitions, recovers their state from the changelogs and
        # keeps raising (and resolving) the right issues for every parcel.
        w1.stop()
        now = time.time()
        produce(broker.bootstrap,
                [scan(f"781{i:04d}", "signed", now) for i in range(40)]
                + [shipped(f"TB9{i:03d}", f"791{i:04d}", now - 3600) for i in range(40)]
                + [scan(f"791{i:04d}", "exception", now - 5, exception_reason="lost") for i in range(40)])

        def settled() -> list[dict] | None:
            got = all_issues(redis_server.url)
            resolved = sum(1 for i in got if i["status"] == "auto_resolved")
            return got if len(got) == 120 and resolved == 40 else None

        try:
            issues = wait_for(settled, 120, "takeover: 40 resolved, 40 new")
        except TimeoutError:
            got = all_issues(redis_server.url)
            print("issues:", len(got), "resolved:", sorted(i["parcel"] for i in got if i["status"] == "auto_resolved"))
            print("open:", sorted(i["parcel"] for i in got if i["status"] != "auto_resolved"))
            print(explain_subjects(broker.bootstrap, {f"ZTO:781{i:04d}" for i in range(40)}
                                   - {i["parcel"] for i in got if i["status"] == "auto_resolved"}))
            # Seen in 1 of 8 runs before core/processor.py walked a subject's timeline before each event: w1 was
            # stopped after its sweep's issue events were acknowledged and before the states recording them
            # were written; w2 took the signatures before the re-delivered tick, and three issues stayed open.
            # What the changelogs say of each parcel still open, and how w1 ended, tell a new cause apart.
            print("--- end of the stopped worker w1's log\n" + w1.log_tail(6000))
            raise
        assert {i["resolution"] for i in issues if i["status"] == "auto_resolved"} == {"signed"}
        tables = w2.get("/healthz")[1]["checks"]["tables"]
        assert tables["subjects"] >= 80 + 40 + 80  # all parcels + orders
        assert tables["partitions"] == list(range(PARTITIONS))  # w1's share taken over
        assert partitions_held(w2) == PARTITIONS
    finally:
        w1.stop()
        w2.stop()


def test_events_arriving_while_a_worker_joins_are_all_processed(
    tmp_path: Path, broker: TansuBroker, redis_server: RedisServer
) -> None:
    """Traffic keeps coming while a second worker joins and the partitions move: every carrier exception
    becomes an issue. Without the seek before resuming streams (delivery/framework.py), 4 of 22 runs of this test
    lost 1 to 41 events (records handed on before the seek and cleared, or drained for paused partitions
    and dropped, their offsets committed); with its first fix alone, 1 of 9; with both, none of 14."""
    w1 = Worker(broker.url, redis_server.url, tmp_path, name="w1").start()
    w2 = Worker(broker.url, redis_server.url, tmp_path, name="w2")
    numbers: list[str] = []

    def wave(parcels: int) -> None:
        now = time.time()
        records = []
        for _ in range(parcels):
            number = f"77{len(numbers):05d}"
            numbers.append(number)
            records += [shipped(f"TB7{len(numbers):05d}", number, now - 3600),
                        scan(number, "exception", now - 60, exception_reason="refused")]
        produce(broker.bootstrap, records)

    try:
        wave(20)
        w2.start(wait=False)
        started = time.monotonic()
        while time.monotonic() - started < 30:  # through the join: revoke, assignment, recovery, seek
            wave(5)
            time.sleep(0.2)
        w2.wait_healthy()
        w1.wait_healthy()
        wave(20)

        def raised() -> set[str]:
            return {i["tracking_number"] for i in all_issues(redis_server.url) if i["kind"] == "carrier_exception"}

        try:
            wait_for(lambda: len(raised()) == len(numbers), 90, f"{len(numbers)} exception issues")
        except TimeoutError:
            missing = sorted(set(numbers) - raised())
            print("missing:", missing)
            print(explain_subjects(broker.bootstrap, {f"ZTO:{n}" for n in missing}))
            raise
    finally:
        w2.stop()
        w1.stop()
