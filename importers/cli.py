"""``python app.py import-orders`` / ``python -m importers``: a platform's order export -> order events.

    python -m importers ExportOrderList202611.csv --platform taobao --shop shop-a --dry-run
    python -m importers 抖店订单.xlsx --platform douyin --shop shop-b                  # to the broker
    python -m importers 订单.csv --mapping my-erp.yaml --shop shop-c --url http://worker:6066 --token T

The events go to the orders topic (``--bootstrap``, else a running ``make run``'s broker, else the config's);
the app's topics are created first if missing, as a starting worker creates them. Or with ``--url`` and an
ingest ``--token`` to a worker's ``POST /ingest/orders``. ``--dry-run`` prints them (JSON Lines) instead.
Errors name the row and column, never a cell's content; the orders with an error are left out and the others
sent. Exit 0: all imported; 1: some orders left out; 2: nothing could be read or sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import config
from domain.events import InvalidEvent, OrderEvent, parse_time
from domain.vocabulary import normalise_province

from .convert import Converter, Report
from .layouts import BUILT_IN, FIELDS, Binding, Layout, LayoutError, load_mapping
from .read import FileError, open_export

if TYPE_CHECKING:
    from delivery.topics import TopicSpec

MAX_ERRORS_SHOWN = 50
HTTP_CHUNK = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="export files (CSV or XLSX)")
    parser.add_argument("--platform", choices=sorted(BUILT_IN), help="the export's platform (its built-in layout)")
    parser.add_argument("--mapping", help="a YAML mapping file for an export whose columns differ (docs/接入你的店铺.md)")
    parser.add_argument("--shop", required=True, help="the shop these orders belong to (as in the queue and tokens)")
    parser.add_argument("--origin-province", help="the province the shop ships from, e.g. 广东")
    parser.add_argument("--exported-at", help="when the file was exported (ISO 8601 with offset; default: the file's time); "
                                              "dates a close or refund the file gives no time for")
    parser.add_argument("--dry-run", action="store_true", help="print the events (JSON Lines) instead of sending them")
    parser.add_argument("--bootstrap", help="host:port of the broker (default: a running `make run`'s, else config)")
    parser.add_argument("--url", help="send to this worker's POST /ingest/orders instead of the broker")
    parser.add_argument("--token", help="the order token for --url (or PARCELWATCH_ORDER_TOKEN)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def convert(args: argparse.Namespace, progress: TextIO | None) -> tuple[list[OrderEvent], Report]:
    """Read every file into one converter; FileError / LayoutError / ValueError for what cannot be read."""
    layout = _layout(args)
    paths = [Path(f) for f in args.files]
    exported_at = parse_time(args.exported_at, "--exported-at") if args.exported_at else \
        max((p.stat().st_mtime for p in paths if p.is_file()), default=time.time())
    origin = None
    if args.origin_province:
        origin = normalise_province(args.origin_province)
        if origin is None:
            raise ValueError("--origin-province: not a province of China (write e.g. 广东)")
    converter = Converter(layout, args.shop, exported_at=exported_at, origin_province=origin)
    for path in paths:
        sheet = open_export(path, layout.headers("order_id"))
        binding = Binding.of(layout, sheet.header)
        missing = [name for name in ("paid_at", "shipped_at", "status") if name not in binding.columns]
        if progress is not None:
            found = ", ".join(f"{name}={binding.columns[name][0][1]}" for name in FIELDS if name in binding.columns)
            progress.write(f"{path.name}: header in row {sheet.header_row}; {found}\n")
            if missing:
                progress.write(f"{path.name}: no column for {', '.join(missing)} (not in the file, or named differently)\n")
        bar = Bar(progress, sheet.total_rows, path.name)
        for number, cells in sheet.rows:
            converter.add_row(binding, number, cells)
            bar.step()
        bar.done()
    return converter.events(), converter.report


def _layout(args: argparse.Namespace) -> Layout:
    if args.mapping:
        layout = load_mapping(args.mapping)
        if args.platform and args.platform != layout.platform:
            raise LayoutError("platform", f"the mapping file says {layout.platform}, --platform says {args.platform}")
        return layout
    if not args.platform:
        raise LayoutError("--platform", "is required without --mapping (taobao, tmall, douyin or pinduoduo)")
    return BUILT_IN[args.platform]


class Bar:
    """Rows read, on stderr, redrawn at most five times a second."""

    def __init__(self, out: TextIO | None, total: int | None, label: str) -> None:
        self.out, self.total, self.label = out, total, label
        self.n = 0
        self._drawn = 0.0

    def step(self) -> None:
        self.n += 1
        if self.out is not None and time.monotonic() - self._drawn > 0.2:
            self.draw()

    def draw(self) -> None:
        assert self.out is not None
        self._drawn = time.monotonic()
        if self.total:
            width, share = 30, min(1.0, self.n / self.total)
            self.out.write(f"\r{self.label} [{'#' * int(width * share)}{'.' * (width - int(width * share))}] {self.n}/{self.total} rows")
        else:
            self.out.write(f"\r{self.label}: {self.n} rows")
        self.out.flush()

    def done(self) -> None:
        if self.out is not None:
            self.total = self.n
            self.draw()
            self.out.write("\n")


def summary(report: Report) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.events.items())) or "none"
    lines = [f"rows read: {report.rows}; orders: {report.orders}, left out for errors: {report.skipped_orders}; "
             f"events: {kinds}"]
    lines += [f"  {what}: {n}" for what, n in sorted(report.notes.items()) if n]
    return "\n".join(lines)


async def produce(bootstrap: str, topic: str, events: list[OrderEvent]) -> None:
    """Batch records per partition (``delivery/batch_records.py``), keyed by order id; returns once the broker
    acknowledged every one."""
    from aiokafka import AIOKafkaProducer

    from delivery.batch_records import batch_records

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=1 << 20)
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(topic))
        futures = [await producer.send(topic, value=record, partition=partition)
                   for partition, record in batch_records([(ev.order_id, ev.to_json()) for ev in events], partitions)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def post(url: str, token: str, events: list[OrderEvent], tries: int = 5) -> None:
    """To ``POST /ingest/orders`` in chunks, retrying what the worker asks to retry (503)."""
    endpoint = url.rstrip("/") + "/ingest/orders"
    for start in range(0, len(events), HTTP_CHUNK):
        body = b"[" + b",".join(ev.to_json() for ev in events[start : start + HTTP_CHUNK]) + b"]"
        for attempt in range(tries):
            request = urllib.request.Request(endpoint, data=body, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=60) as resp:
                    answer = json.loads(resp.read())
                    if answer.get("rejected"):
                        raise RuntimeError(f"{endpoint} rejected {len(answer['rejected'])} events: {answer['rejected'][:3]}")
                    break
            except urllib.error.HTTPError as exc:
                if exc.code != 503 or attempt == tries - 1:
                    raise RuntimeError(f"{endpoint} answered {exc.code}: {exc.read()[:300].decode(errors='replace')}") from None
                time.sleep(min(30.0, float(exc.headers.get("Retry-After") or 5)))


def run(args: argparse.Namespace, *, bootstrap: str | None = None, topics: Sequence[TopicSpec] | None = None,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``topics``: the app's topics (``Topology.specs()``), created before sending if missing (default: from the
    configuration)."""
    try:
        events, report = convert(args, None if args.no_progress else err)
    except (FileError, LayoutError, InvalidEvent, ValueError) as exc:
        err.write(f"import-orders: {exc}\n")
        return 2
    for error in report.errors[:MAX_ERRORS_SHOWN]:
        err.write(f"{error}\n")
    if len(report.errors) > MAX_ERRORS_SHOWN:
        err.write(f"... and {len(report.errors) - MAX_ERRORS_SHOWN} more errors\n")
    err.write(summary(report) + "\n")
    if args.dry_run:
        for ev in events:
            out.write(ev.to_json().decode() + "\n")
        err.write(f"dry run: {len(events)} events printed, none sent\n")
    elif events:
        settings = config.load()
        if args.url:
            token = args.token or os.environ.get("PARCELWATCH_ORDER_TOKEN")
            if not token:
                err.write("import-orders: --url needs an order --token (or PARCELWATCH_ORDER_TOKEN)\n")
                return 2
            post(args.url, token, events)
            err.write(f"sent {len(events)} events to {args.url}/ingest/orders\n")
        else:
            target = args.bootstrap or bootstrap or _running_broker() or settings.app.broker.split(";")[0].removeprefix("kafka://")
            from delivery.topics import create_topics_before_sending

            refused = create_topics_before_sending(target, _app_topics(settings) if topics is None else topics)
            if refused:
                err.write(f"import-orders: {refused}; nothing sent\n")
                return 2
            asyncio.run(produce(target, settings.topics.orders, events))
            err.write(f"sent {len(events)} events to {settings.topics.orders} on {target}\n")
    return 1 if report.errors else 0


def _app_topics(settings: config.Settings) -> list[TopicSpec]:
    from agents import build

    return build(settings).topology.specs()


def _running_broker() -> str | None:
    if os.environ.get("PARCELWATCH_BROKER_URL"):
        return None
    from devtools.stack import running_stack

    stack = running_stack()
    return stack["broker"].removeprefix("kafka://") if stack and stack.get("broker") else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m importers", description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
