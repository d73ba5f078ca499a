"""parcelwatch: catch problem parcels before customers complain.

The entry point and command line (``python app.py --help``). It builds one worker's stream application from
the validated configuration (``agents.build``), serves its web views (``web.register``) and hands the
command line to Faust, which runs the ``worker`` and the commands below.
"""

from __future__ import annotations

import sys


def _worker_loop_default(argv: list[str]) -> None:
    """uvloop for ``worker`` unless ``-L``/``--loop`` names another loop. Faust reads the loop from
    ``sys.argv`` once, when it is first imported (faust/__init__.py sets the event loop policy then; its
    CLI option is only recorded), so this must run before anything imports faust."""
    args = argv[1:]
    if "worker" in args and "--help" not in args and not any(a in ("-L", "--loop") or a.startswith("--loop=") for a in args):
        argv[1:1] = ["--loop", "uvloop"]  # measured faster than asyncio's loop for this workload


_worker_loop_default(sys.argv)

HELP = """parcelwatch: catch problem parcels before customers complain.

Watches every parcel of an online shop as a stream (tracking updates and order events on Kafka) and raises
each problem early (not picked up, stuck past its lane's normal transit time, confirmed but unsigned, about
to auto-confirm while unsigned, carrier exceptions) into an issue queue in Redis that after-sales staff work.

Usage: python app.py COMMAND [OPTIONS]

Commands:
  worker     run a stream worker: the agents, the deadline timer and the web server
             (queue page /queue, issue API /issues, ingest /ingest/..., /healthz, /metrics)
  queue      print the day's problem-parcel queue as a table, or write it as CSV for Excel
  staff      staff accounts for the queue page (add, list, remove, password)
  replay     replay a JSON Lines file of events in event time through the same detectors
  simulate   send realistic demo orders and tracking updates to the broker, or to a file
  import-orders     read a platform's order export (千牛, 抖店, 拼多多; CSV or XLSX) into order events
  register-parcels  register a shop's past parcels with the tracking aggregator, or the failed ones again

  python app.py COMMAND --help   a command's options
  python app.py --faust-help     Faust's own options and commands (agents, tables, reset, ...)

Everything on embedded defaults: make run. Configuration: config/default.yaml, PARCELWATCH_* variables.
"""

if __name__ == "__main__" and sys.argv[1:] in ([], ["-h"], ["--help"], ["help"]):
    print(HELP, end="")
    sys.exit(0)

import faust  # noqa: F401 - imported now: it sets the event loop policy from sys.argv (see above)
from faust.cli import argument, option

import agents
import config
import web
from delivery.tansu import RESTARTED_IN_PLACE, broker_incarnation, discard_stale_tables_of


def _load_settings() -> config.Settings:
    try:
        return config.load()
    except config.ConfigError as exc:
        sys.exit(f"parcelwatch: {exc}")


settings = _load_settings()
stream = agents.build(settings)
web.register(stream)
app = stream.app


@app.command(
    argument("events"),
    option("--until", default=None, help="Stop the clock at this time (ISO 8601 with offset)."),
    option("--out", default=None, help="Write every issue as JSON Lines to this file."),
)
async def replay(self: object, events: str, until: str | None, out: str | None) -> None:
    """Replay a JSON Lines file of events in event time through the live detectors."""
    from core.replay import main_replay

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
    from issue_queue.cli import print_queue

    redis_url, where = _stack_url("redis", settings.app.redis_url, "PARCELWATCH_REDIS_URL")
    code = await print_queue(settings, redis_url, where, shop=shop, day=day, kind=kind, severity=severity, status=status,
                             order=order, csv_path=csv_path, lang=lang)
    if code:
        sys.exit(code)


@app.command(
    argument("action", type=str),
    argument("login", type=str, required=False),
    option("--name", default=None, help="The person's name as colleagues know it (shown in the history)."),
    option("--shops", default=None, help="Comma-separated shops they work (* = every shop)."),
    option("--role", default="agent", help="agent (works issues) or viewer (reads only)."),
    option("--password-stdin", is_flag=True, default=False, help="Read the password from standard input."),
)
async def staff(self: object, action: str, login: str | None, name: str | None, shops: str | None, role: str,
                password_stdin: bool) -> None:
    """Staff accounts for the queue page: staff add LOGIN --name 小李 --shops shop-a | list | remove LOGIN | password LOGIN."""
    from issue_queue.cli import manage_staff

    redis_url, where = _stack_url("redis", settings.app.redis_url, "PARCELWATCH_REDIS_URL")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    code = await manage_staff(redis_url, where, action, login, name=name, shops=shops, role=role, password=password)
    if code:
        sys.exit(code)


@app.command(
    option("--parcels", type=int, default=2000, help="Parcels to simulate."),
    option("--rate", type=float, default=None, help="At most this many events per second."),
    option("--days-back", type=float, default=3.0, help="The simulated clock starts this many days ago."),
    option("--seed", type=int, default=7, help="Random seed (same seed, same traffic)."),
    option("--bootstrap", default=None, help="host:port of the broker (default: a running `make run`'s, else config)."),
    option("--jsonl", default=None, help="Write the events to this JSON Lines file instead of the broker."),
    option("--batch", type=int, default=1, help="Up to this many events of one partition per record (batch records)."),
)
async def simulate(self: object, parcels: int, rate: float | None, days_back: float, seed: int,
                   bootstrap: str | None, jsonl: str | None, batch: int) -> None:
    """Demo traffic: realistic orders and tracking updates with a share of problem parcels."""
    import argparse
    import asyncio

    from devtools import simulator

    if bootstrap is None and jsonl is None:
        broker, _ = _stack_url("broker", settings.app.broker.split(";")[0], "PARCELWATCH_BROKER_URL")
        bootstrap = broker.removeprefix("kafka://")
    args = argparse.Namespace(parcels=parcels, rate=rate, days_back=days_back, seed=seed, bootstrap=bootstrap,
                              jsonl=jsonl, batch=batch)
    loop = asyncio.get_running_loop()  # (the simulator and the topic creation run event loops of their own)
    if bootstrap is not None:
        from delivery.topics import create_topics_before_sending

        refused = await loop.run_in_executor(None, create_topics_before_sending, bootstrap, stream.topology.specs())
        if refused:
            sys.exit(f"simulate: {refused}; nothing sent")
    await loop.run_in_executor(None, simulator.run, args)


@app.command(
    argument("files", nargs=-1, required=True),
    option("--platform", default=None, help="taobao, tmall, douyin or pinduoduo (the export's built-in layout)."),
    option("--mapping", default=None, help="A YAML mapping file for an export whose columns differ."),
    option("--shop", required=True, help="The shop these orders belong to."),
    option("--origin-province", default=None, help="The province the shop ships from, e.g. 广东."),
    option("--exported-at", default=None, help="When the file was exported (ISO 8601; default: the file's time)."),
    option("--dry-run", is_flag=True, default=False, help="Print the events (JSON Lines) instead of sending them."),
    option("--bootstrap", default=None, help="host:port of the broker (default: a running `make run`'s, else config)."),
    option("--url", default=None, help="Send to this worker's POST /ingest/orders instead of the broker."),
    option("--token", default=None, help="The order token for --url (or PARCELWATCH_ORDER_TOKEN)."),
    option("--no-progress", is_flag=True, default=False, help="No progress bar."),
)
async def import_orders(self: object, files: tuple[str, ...], **options: object) -> None:
    """Read order exports (千牛, 抖店, 拼多多, or any through a mapping file) into paid / shipped / confirmed /
    refunded / closed order events."""
    import argparse
    import asyncio

    from importers import cli

    args = argparse.Namespace(files=list(files), **options)
    broker, _ = _stack_url("broker", settings.app.broker.split(";")[0], "PARCELWATCH_BROKER_URL")
    # The producer runs its own event loop; keep it off Faust's.
    topics = stream.topology.specs()
    code = await asyncio.get_running_loop().run_in_executor(
        None, lambda: cli.run(args, bootstrap=broker.removeprefix("kafka://"), topics=topics))
    if code:
        sys.exit(code)


@app.command(
    argument("files", nargs=-1, required=False),
    option("--platform", default=None, help="With export files: taobao, tmall, douyin or pinduoduo."),
    option("--mapping", default=None, help="With export files: a YAML mapping file."),
    option("--shop", default=None, help="Only this shop's parcels (required with export files)."),
    option("--since", default=None, help="Only parcels shipped since this day (YYYY-MM-DD, China time) or time."),
    option("--retry-failed", is_flag=True, default=False, help="File the parcels that could not be registered again."),
    option("--status", is_flag=True, default=False, help="Counts and the latest failures."),
    option("--dry-run", is_flag=True, default=False, help="List the parcels instead of filing them."),
)
async def register_parcels(self: object, files: tuple[str, ...], **options: object) -> None:
    """Register a shop's past parcels with the tracking aggregator (subscriptions.aggregator), in bulk."""
    from subscriptions.cli import namespace
    from subscriptions.cli import register_parcels as run

    redis_url, where = _stack_url("redis", settings.app.redis_url, "PARCELWATCH_REDIS_URL")
    code = await run(settings, redis_url, where, namespace(files=list(files), **options))
    if code:
        sys.exit(code)


def _stack_url(name: str, configured: str, variable: str) -> tuple[str, str]:
    """The URL a command-line tool should use for ``name`` ("redis", "broker"), and where it came from: the
    environment variable when set, else the running ``make run`` stack's (which may have moved to a free
    port), else the configuration."""
    import os

    if os.environ.get(variable):
        return configured, variable
    from devtools.stack import running_stack

    stack = running_stack()
    if stack is not None and stack.get(name):
        return stack[name], "the running `make run`"
    return configured, "config app." + ("redis_url" if name == "redis" else "broker")


def _web_bind(argv: list[str], configured: str) -> str:
    """The address the worker's web server binds to: ``--web-bind`` / ``-b`` when given (Faust applies it
    at the start), else the app's (``app.web_host``, or Faust's ``WEB_BIND``)."""
    for i, arg in enumerate(argv):
        if arg in ("-b", "--web-bind") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--web-bind="):
            return arg.split("=", 1)[1]
        if arg.startswith("-b") and len(arg) > 2:
            return arg[2:]
    return configured


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--faust-help"]:
        sys.argv[1:] = ["--help"]
    elif "worker" in argv and "--help" not in argv:
        try:
            # A worker reachable from other machines takes no unsigned pushes.
            config.check_ingest_secrets(settings, bind=_web_bind(argv, app.conf.web_bind))
        except config.ConfigError as exc:
            sys.exit(f"parcelwatch: {exc}")
        if settings.app.broker_kind == "embedded":
            _discard_stale_tables()
        _create_topics()
        _set_up_collector()
    app.main()


# The cyclic collector's first threshold: container objects allocated (net) between its young collections.
# Python's default, 700, is a few events' worth here: every young collection promoted whatever was still in
# flight (the batch being processed, pending sends): the collector took about 6% of a worker's CPU on a
# backlog, three quarters of it in the older generations' passes over those promoted objects. At 20,000 most
# of it has died before a collection (about 3%, most of it young collections).
YOUNG_COLLECTION_THRESHOLD = 20_000


def _set_up_collector() -> None:
    """Everything start-up made (modules, the app, its agents and tables) lives as long as the worker: moved
    out of the cyclic garbage collector's generations, its full collections stop walking it again and again.
    And the young generation collects every ``YOUNG_COLLECTION_THRESHOLD`` allocations, the middle one
    every 20 of those (the default thresholds collected the objects of records in flight again and again)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 20, 10)


def _create_topics() -> None:
    """The app's topics, created before the worker starts with the partitions, replicas and retention it needs
    (``delivery/topics.py``); an existing topic with the wrong partition count stops it here, named. Waits for
    the broker as long as it takes, saying so every 30 s (a worker may start before its Kafka)."""
    import asyncio
    import time

    from aiokafka.errors import KafkaConnectionError, KafkaError

    from delivery.topics import TopicMismatch, create_topics, refusal

    bootstrap = settings.app.bootstrap_servers
    started = time.monotonic()
    said = 0
    while True:
        try:
            prepared = asyncio.run(create_topics(bootstrap, stream.topology.specs()))
        except KafkaConnectionError:
            waited = time.monotonic() - started
            if waited >= said + 30:
                said += 30
                print(f"parcelwatch: waiting for the broker at {bootstrap} ({waited:.0f} s)", file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        except (TopicMismatch, KafkaError) as exc:
            sys.exit(f"parcelwatch: {refusal(exc)}")
        if prepared.created:
            print(f"parcelwatch: created {len(prepared.created)} topics with {settings.app.partitions} partitions each",
                  file=sys.stderr, flush=True)
        for short in prepared.short_retention:  # (it runs; what it learns from after a restart is cut short)
            print(f"parcelwatch: warning: {short}", file=sys.stderr, flush=True)
        return


def _discard_stale_tables() -> None:
    """The embedded broker keeps nothing across its restarts: local tables built against an older broker
    lifetime would disagree with the (now empty) changelogs, so they go first. The lifetime read is the one
    the worker watches (it starts again in place when the broker comes back empty) and the one its issue
    sink reconciles the Redis queue with (issues whose parcel state went with an older lifetime)."""
    import asyncio
    import os
    import time
    from pathlib import Path

    from aiokafka.errors import KafkaConnectionError

    bootstrap = settings.app.broker.split(";")[0].removeprefix("kafka://")
    # A worker that restarted itself because the broker went away waits for it as long as it takes.
    restarted = bool(os.environ.get(RESTARTED_IN_PLACE))
    started = time.monotonic()
    while True:
        try:
            incarnation = asyncio.run(broker_incarnation(bootstrap))
            discard_stale_tables_of(incarnation, Path(settings.app.data_dir))
            stream.broker_lifetime = incarnation
            return
        except KafkaConnectionError:
            waited = time.monotonic() - started
            if not restarted and waited > 30:
                sys.exit(f"parcelwatch: cannot reach the broker at {bootstrap} (is it running? `make run` starts one)")
            if restarted and int(waited) % 30 == 0:
                print(f"parcelwatch: waiting for the broker at {bootstrap} ({waited:.0f} s)", file=sys.stderr, flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main()
