"""The fault soak: ``tests/test_fault_replay.py``'s harness run longer, with more faults, and its counts printed.

Each scenario starts its own embedded broker, Redis (with its append-only file) and workers, produces simulated
events steadily (each record's arrival time its event time: the worker's catch-up clock judges them as a replay
does), injects faults at seeded random moments for as long as the input flows, lets the workers work through
everything, then compares every issue in the Redis queue (status, ``opened_at``, ``resolved_at``) with a replay
of the same events (``core/replay.py``; the run's events are also written as JSON Lines and replayed by
``app.py replay --until`` itself once, as an operator would). Prints one row per scenario: the events, the
faults injected, the issues in the queue and in the replay, and what differs; asserts nothing. The run
directory of a scenario that did not come out equal is kept (its path is printed).

  single   one worker, one record per event: kill -9, graceful stops, a Redis outage
  batch    two workers, batch records: kill -9 of either
  broker   two workers: the memory-only broker restarted empty between two traffics (the second traffic's
           queue against its replay; none of the first traffic's issues may stay active)
  rocksdb  one worker on the RocksDB store (``rocksdb://``, the tables' files kept across its restarts), batch
           records of 10: kill -9 and graceful stops
  freeze   two workers, batch records of 10, a producer request timeout of 4 s: the broker frozen (SIGSTOP) for
           12-16 s, and kill -9; a worker whose send failed exits and is started again, and no record may
           be dead-lettered

Run: ``.venv/bin/python -m bench.soak [--scenarios single,batch,broker,rocksdb,freeze] [--parcels 1200] [--rate 60] [--seed 7]``;
``--docs`` also writes the table into ``docs/reliability.md``. Several minutes a scenario.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from tests.harness import ROOT, Comparison, FaultRun, jsonl_line

SCENARIOS = ("single", "batch", "broker", "rocksdb", "freeze")
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


@dataclass
class Row:
    scenario: str
    events: int
    faults: str
    comparison: Comparison | None
    cli_equal: bool | None
    left_active: int | None = None
    healthz_from_old_lifetime: int | None = None
    exits: list[int] | None = None  # freeze: exit codes of the workers that exited by themselves
    dead_letters: int | None = None  # freeze: records dead-lettered (the traffic holds no bad event)
    seconds: float = 0.0
    error: str | None = None  # the scenario could not finish (a worker exited, a wait timed out)

    @property
    def passed(self) -> bool:
        return (self.error is None and self.comparison is not None and self.comparison.equal
                and self.cli_equal is not False and not self.left_active and not self.healthz_from_old_lifetime
                and not self.dead_letters and 0 not in (self.exits or []))


def run_scenario(name: str, parcels: int, rate: float, seed: int, run_dir: Path) -> Row:
    started = time.monotonic()
    workers = 1 if name in ("single", "rocksdb") else 2
    batch = {"batch": 25, "rocksdb": 10, "freeze": 10}.get(name, 1)
    with FaultRun(run_dir, seed=seed, parcels=parcels if name != "broker" else parcels // 2, rate=rate, batch=batch,
                  workers=workers, broker_lifetimes=2 if name == "broker" else 1,
                  store="rocksdb://" if name == "rocksdb" else "memory://",
                  producer_request_timeout=4 if name == "freeze" else None) as run:
        assert run.producer is not None
        row = Row(name, len(run.records), "", None, None)
        try:
            if name == "broker":
                run.kill()
                run.broker_restart()
                run.kill()
            else:
                while not run.producer.done:
                    roll = run.rng.random()
                    if name in ("single", "rocksdb") and roll < 0.15:
                        run.graceful_stop()
                    elif name == "single" and roll < 0.3:
                        run.redis_outage()
                    elif name == "freeze" and roll < 0.6:
                        run.broker_freeze()
                    else:
                        run.kill()
            row.comparison = run.finish(timeout=300)
            row.cli_equal = _replayed_by_the_cli(run)
            if name == "broker":
                row.left_active = len(run.first_lifetime_active())
                row.healthz_from_old_lifetime = len(run.unhealthy_answers)
            if name == "freeze":
                row.exits = run.exit_codes
                row.dead_letters = len(run.dead_letters())
        except (RuntimeError, TimeoutError, AssertionError) as exc:
            row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            print(f"{name}: {exc}", file=sys.stderr)
        row.faults = ", ".join(f"{n} {what}" for what, n in run.faults.items())
        print(run.report(), file=sys.stderr)
    row.seconds = time.monotonic() - started
    return row


def _replayed_by_the_cli(run: FaultRun) -> bool | None:
    """``app.py replay --until <now> --out`` on the run's events (the second lifetime's after a broker restart)
    gives what the in-process replay the comparison used gives. None when the command failed."""
    from tests.harness import replayed_outcome

    records = run.records[run.first_lifetime:] if run.restarted_broker else run.records
    events = run.run_dir / "events.jsonl"
    events.write_bytes(b"\n".join(jsonl_line(kind, key, event) for kind, key, event in records) + b"\n")
    out = run.run_dir / "replayed.jsonl"
    until = time.time()
    done = subprocess.run(
        [sys.executable, "app.py", "replay", str(events), "--until", dt.datetime.fromtimestamp(until, dt.UTC).isoformat(),
         "--out", str(out)],
        cwd=ROOT, capture_output=True, env={**os.environ, "PARCELWATCH_CONFIG": str(run.run_dir / "config.yaml")},
        timeout=300)
    if done.returncode != 0:
        print(done.stderr.decode()[-2000:], file=sys.stderr)
        return None
    latest: dict[str, tuple[str, str, str | None]] = {}
    for line in out.read_bytes().splitlines():  # (in opened_at order: the last line of an issue is its latest period)
        issue = orjson.loads(line)
        latest[issue["issue_key"]] = ("open" if issue["resolved_at"] is None else "auto_resolved", issue["opened_at"],
                                      issue["resolved_at"])
    return latest == replayed_outcome(records, until, run.settings)


def table(rows: list[Row]) -> str:
    lines = ["| scenario | events | faults injected | issues in Redis / replay | lost | extra (still open) | wrong state "
             "| result |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        c = r.comparison
        if c is None:
            lines.append(f"| {r.scenario} | {r.events:,} | {r.faults} | | | | | did not finish: {r.error} |")
            continue
        notes = []
        if r.left_active is not None:
            notes.append(f"{r.left_active} of the lost lifetime's issues left active")
        if r.healthz_from_old_lifetime is not None:
            notes.append(f"{r.healthz_from_old_lifetime} healthy answers from the lost lifetime")
        if r.exits is not None:
            notes.append(f"{len(r.exits)} worker exits after a failed send (codes {', '.join(map(str, sorted(set(r.exits)))) or 'none'}); "
                         f"{r.dead_letters} dead letters")
        if r.cli_equal is not None:
            notes.append("`app.py replay` agrees" if r.cli_equal else "`app.py replay` differs")
        result = ("equal" if r.passed else "DIFFERENT") + (f" ({'; '.join(notes)})" if notes else "")
        lines.append(f"| {r.scenario} | {r.events:,} | {r.faults} | {c.live} / {c.replayed} | {len(c.lost)} | "
                     f"{len(c.extra)} ({c.extra_open}) | {len(c.wrong)} | {result} |")
    return "\n".join(lines)


def write_docs(rows: list[Row], argv: list[str]) -> None:
    text = DOC.read_text()
    command = " ".join(["python -m bench.soak", *(a for a in argv if a != "--docs")])
    block = f"{BEGIN}\n{table(rows)}\n\nPrinted by `{command}` (seeded).\n{END}"
    DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--parcels", type=int, default=1200, help="simulated parcels a scenario (broker: half before, half after)")
    parser.add_argument("--rate", type=float, default=60, help="events produced a second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--docs", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    rows = []
    for i, name in enumerate(args.scenarios.split(",")):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; expected some of {', '.join(SCENARIOS)}")
        run_dir = Path(tempfile.mkdtemp(prefix=f"soak-{name}-"))
        row = run_scenario(name, args.parcels, args.rate, args.seed + i, run_dir)
        rows.append(row)
        if row.passed:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:  # (the workers' logs, the broker's and Redis's, for a look)
            print(f"{name}: kept {run_dir}", file=sys.stderr)
        print(f"{name}: {row.seconds:.0f} s", file=sys.stderr)
    print(table(rows))
    if args.docs:
        write_docs(rows, [a for a in argv if a != "--docs"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
