"""parcelwatch: the Faust app and its command line.

    python app.py worker -l info      the stream worker (agents, timer, web server on :6066)
    python app.py simulate ...        demo traffic from the simulator into the broker
    python app.py replay EVENTS.jsonl [--until T] [--out ISSUES.jsonl]
    python app.py queue ...           today's problem-parcel queue in the terminal, or as CSV

Importing ``agents`` builds the app from the validated configuration and registers every agent, table,
timer and web view on it.
"""

from __future__ import annotations

import sys


def _worker_loop_default(argv: list[str]) -> None:
    """uvloop for ``worker`` unless ``-L``/``--loop`` names another loop. Faust reads the loop from
    ``sys.argv`` once, when it is first imported (faust/__init__.py sets the event loop policy then; its
    CLI option is only recorded), so this must run before anything imports faust: inserted later, as up
    to 2026-12-02, the worker silently ran on asyncio's own loop."""
    args = argv[1:]
    if "worker" in args and "--help" not in args and not any(a in ("-L", "--loop") or a.startswith("--loop=") for a in args):
        argv[1:1] = ["--loop", "uvloop"]  # measured faster than asyncio's loop for this workload


_worker_loop_default(sys.argv)

from faust.cli import argument, option

import agents.alerts
import agents.ingest
import agents.notify
import agents.orders
import agents.page
import agents.parcels
import agents.sinks
import agents.web  # noqa: F401 - importing registers the views
from agents import app, settings
from kafka_tools import disable_worker_spinner


@app.command(
    argument("events"),
    option("--until", default=None, help="Stop the clock at this time (ISO 8601 with offset)."),
    option("--out", default=None, help="Write every issue as JSON Lines to this file."),
)
async def replay(self: object, events: str, until: str | None, out: str | None) -> None:
    """Replay a JSON Lines file of events in event time through the live detectors."""
    from replay import main_replay

    code = main_replay(settings, events, until, out)
    if code:
        sys.exit(code)


@app.command(
    option("--shop", default=None, help="Only this shop (default: every shop)."),
    option("--date", "day", default=None, help="The queue of this day, YYYY-MM-DD in China time (default: today)."),
    option("--kind", default=None, help="Only this issue kind."),
    option("--severity", default=None, help="Only this severity."),
    option("--status", default=None, help="Comma-separated statuses (default: every status of the day)."),
    option("--order", default="priority", help="priority (severity, then age) or age."),
    option("--csv", "csv_path", default=None, help="Write the queue as Excel-friendly CSV to this file."),
    option("--lang", default="zh", help="zh or en labels."),
)
async def queue(
    self: object, shop: str | None, day: str | None, kind: str | None, severity: str | None,
    status: str | None, order: str, csv_path: str | None, lang: str,
) -> None:
    """Print the day's problem-parcel queue as a table, or export it as CSV."""
    import time
    from pathlib import Path

    from issue_queue import day_bounds, parse_day, table, to_csv, today
    from issue_store import STATUSES, IssueStore

    try:
        the_day = parse_day(day) if day else today(time.time())
    except ValueError as exc:
        sys.exit(f"queue: --date: {exc}")
    statuses = tuple(s for s in (status or "").split(",") if s) or None
    for s in statuses or ():
        if s not in STATUSES:
            sys.exit(f"queue: --status: unknown status {s!r}; expected one of {', '.join(STATUSES)}")
    if lang not in ("zh", "en"):
        sys.exit("queue: --lang: expected zh or en")
    store = IssueStore.from_url(settings.app.redis_url)
    shops = [shop] if shop else await store.shops()
    result = await store.query(
        shops=shops, statuses=statuses, day=day_bounds(the_day), kind=kind, severity=severity,
        order=order, limit=1_000_000,
    )
    if csv_path:
        Path(csv_path).write_bytes(to_csv(result.issues, settings, lang))
        print(f"wrote {result.total} issues to {csv_path}")
    else:
        print(f"{the_day.isoformat()}  {', '.join(shops) or '(no shops yet)'}  {result.total} issues")
        print(table(result.issues, settings, lang))
    await store.redis.aclose()


@app.command(
    option("--parcels", type=int, default=2000, help="Parcels to simulate."),
    option("--rate", type=float, default=None, help="At most this many events per second."),
    option("--days-back", type=float, default=3.0, help="The simulated clock starts this many days ago."),
    option("--seed", type=int, default=7, help="Random seed (same seed, same traffic)."),
    option("--bootstrap", default=None, help="host:port of the broker (default: from config)."),
    option("--jsonl", default=None, help="Write the events to this JSON Lines file instead of the broker."),
    option("--batch", type=int, default=1, help="Up to this many events of one partition per record (batch records)."),
)
async def simulate(self: object, parcels: int, rate: float | None, days_back: float, seed: int,
                   bootstrap: str | None, jsonl: str | None, batch: int) -> None:
    """Demo traffic: realistic orders and tracking updates with a share of problem parcels."""
    import argparse
    import asyncio

    import simulator

    args = argparse.Namespace(parcels=parcels, rate=rate, days_back=days_back, seed=seed, bootstrap=bootstrap,
                              jsonl=jsonl, batch=batch)
    # The simulator runs its own event loop (aiokafka producer); keep it off Faust's loop.
    await asyncio.get_running_loop().run_in_executor(None, simulator.run, args)


def main() -> None:
    argv = sys.argv[1:]
    if "worker" in argv and "--help" not in argv:
        if settings.app.broker_kind == "embedded":
            _discard_stale_tables()
        disable_worker_spinner()
    app.main()


def _discard_stale_tables() -> None:
    """The embedded broker keeps nothing across its restarts: local tables built against an older
    broker lifetime would disagree with the (now empty) changelogs, so they go first."""
    import time
    from pathlib import Path

    from aiokafka.errors import KafkaConnectionError

    from embedded.tansu_compat import discard_stale_tables

    bootstrap = settings.app.broker.split(";")[0].removeprefix("kafka://")
    deadline = time.monotonic() + 30
    while True:
        try:
            discard_stale_tables(bootstrap, Path(settings.app.data_dir))
            return
        except KafkaConnectionError:
            if time.monotonic() > deadline:
                sys.exit(f"parcelwatch: cannot reach the broker at {bootstrap} (is it running? `make run` starts one)")
            time.sleep(1)


if __name__ == "__main__":
    main()
