"""Faults with input flowing, judged by the whole outcome: the Redis queue against a replay of the same events.

Each run produces simulated events steadily (their arrival time their event time, so the worker's catch-up
clock judges them as a replay does), injects faults at seeded random moments meanwhile, lets the workers
work through everything, then compares every issue in Redis (status, ``opened_at``, ``resolved_at``) with a
replay of the same events until now (``core/replay.py``, what ``app.py replay --until`` runs): they must be
equal, and every delivery the replay reports must be on the deliveries topic. ``bench/soak.py`` runs the
same harness longer, with more faults, and prints its counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import FaultRun

pytestmark = pytest.mark.integration


def test_kill_9_graceful_stop_and_redis_outage_on_one_record_per_event(tmp_path: Path) -> None:
    with FaultRun(tmp_path, seed=1, parcels=320, rate=60) as run:
        run.kill()
        run.graceful_stop()
        run.redis_outage()
        run.kill()
        _compare_with_replay(run)


def test_kill_9_of_either_of_two_workers_on_batch_records(tmp_path: Path) -> None:
    with FaultRun(tmp_path, seed=2, parcels=320, rate=60, batch=25, workers=2) as run:
        for _ in range(3):
            run.kill()
        _compare_with_replay(run)


def test_kill_9_and_graceful_stops_on_the_rocksdb_store(tmp_path: Path) -> None:
    """The production store: the tables' files outlive the worker. After a ``kill -9`` they hold what was
    flushed before it, and the changelog holds the rest (Faust re-reads it from the offset kept with them)."""
    with FaultRun(tmp_path, seed=4, parcels=320, rate=60, batch=10, store="rocksdb://") as run:
        run.kill()
        run.graceful_stop()
        run.kill()
        run.kill()
        _compare_with_replay(run)


def test_a_broker_that_comes_back_empty_is_a_new_lifetime_for_running_workers(tmp_path: Path) -> None:
    """Both workers start again in place (no exit), ``/healthz`` never answers ok from the old lifetime once
    the broker is back, the old lifetime's issues are no longer active (their states are gone), and the new
    lifetime's queue is what a replay of its events gives."""
    with FaultRun(tmp_path, seed=3, parcels=200, rate=60, workers=2, broker_lifetimes=2) as run:
        run.broker_restart()
        _compare_with_replay(run)
        assert run.unhealthy_answers == [], run.unhealthy_answers
        assert run.first_lifetime_active() == []


def test_a_broker_frozen_beyond_the_producer_timeout_while_the_worker_catches_up(tmp_path: Path) -> None:
    """A record the worker sent while the broker was frozen may time out (aiokafka expires it, or a reconnect
    delivers it): if one did, the worker exits (non-zero) and is started again rather than carrying on unable
    to commit. Either way no good record is set aside as a dead letter, and the queue is what a replay of the
    events gives."""
    with FaultRun(tmp_path, seed=5, parcels=240, rate=60, batch=10, producer_request_timeout=4) as run:
        run.broker_freeze()
        _compare_with_replay(run)
        assert all(code != 0 for code in run.exit_codes), run.report()
        assert run.dead_letters() == [], run.report()


def _compare_with_replay(run: FaultRun) -> None:
    """Let the workers finish, then the whole queue must equal a replay of the same events, and no delivery it
    reports may be missing from what the lane baselines read."""
    result = run.finish()
    print(run.report())
    assert result.equal, f"{result.describe()}\n{run.report()}\n{run.diagnostics()}"
    assert run.lost_deliveries() == [], run.report()
