"""Replay: run a file of normalised events through the same code as the live worker, in event time.

Input is JSON Lines, one event per line, either wrapped as ``{"topic": "orders"|"tracking", "key": ...,
"value": {...}}`` (what ``python app.py simulate --jsonl`` writes) or a bare event in the README formats
(an order event has ``order_id`` and ``kind``; a tracking update has ``tracking_number`` and ``status``).

The clock follows event time: before each event at time t, every deadline at or before t fires (the
same sweep the live worker runs on a tick), then the event is applied with ``now = t``. ``--until T``
stops the clock at T: what would the queue have looked like then?
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from config import Settings
from core.notifications import load_rules
from core.orders import OrderRouter, decode_order_facts
from core.processor import Output, Processor
from detectors import LaneBaselines
from domain.events import InvalidEvent, OrderEvent, TrackingUpdate, check_not_ahead, parse_order_event, parse_tracking_update

# One in-process partition: the index and cursor are per partition, and a replay needs only one.
PARTITION = 0


@dataclass(slots=True)
class ReplayResult:
    issues: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    clock: float | None = None


class Engine:
    """The live worker's pipeline with dicts for tables and a clock driven by the caller."""

    def __init__(self, settings: Settings, tables: Callable[[str], MutableMapping[str, bytes]] | None = None) -> None:
        """``tables``: the table of a name (``parcel-state``, ``deadline-index``, ``orders``); default: dicts."""
        self.settings = settings
        self.baselines = LaneBaselines(settings.lanes)
        make = tables or _memory_table
        self.states = make("parcel-state")
        self.index = make("deadline-index")
        self.orders = make("orders")
        self.processor = Processor(settings, self.baselines, self.states, self.index, load_rules())
        self.router = OrderRouter(self.orders)
        self.result = ReplayResult()

    def tick(self, now: float) -> None:
        self._collect(self.processor.on_tick(PARTITION, now))
        self.result.clock = now

    def tracking(self, update: TrackingUpdate, now: float) -> None:
        self._collect(self.processor.on_tracking(PARTITION, update, now))

    def order(self, ev: OrderEvent, now: float) -> None:
        for _subject, record in self.router.route(ev):
            subject, facts, at = decode_order_facts(record)
            self._collect(self.processor.on_order_facts(PARTITION, subject, facts, at, now))

    def _collect(self, out: Output) -> None:
        self.result.notifications.extend(out.notifications)
        for order_id, subject in out.gone:
            self.router.forget(order_id, subject)
        for d in out.deliveries:
            self.baselines.add_record(d)
        for ev in out.issues:
            key = (ev["issue_key"], ev["opened_at"])
            if ev["action"] == "open":
                self.result.issues[key] = {
                    "issue_key": ev["issue_key"],
                    "kind": ev["kind"],
                    "reason": ev["reason"],
                    "parcel": ev["parcel"],
                    "order_id": ev["order_id"],
                    "shop": ev["shop"],
                    "platform": ev["platform"],
                    "lane": ev["lane"],
                    "opened_at": ev["opened_at"],
                    "resolved_at": None,
                    "resolution": None,
                    "severity": ev["severity"],
                    "evidence": ev["evidence"],
                    "suggested_action": ev["suggested_action"],
                }
            elif key in self.result.issues:
                issue = self.result.issues[key]
                if ev["action"] == "update":
                    issue.update(severity=ev["severity"], reason=ev["reason"], evidence=ev["evidence"])
                else:
                    issue.update(resolved_at=ev["resolved_at"], resolution=ev["resolution"])


def _memory_table(name: str) -> MutableMapping[str, bytes]:
    return {}


def read_events(lines: Iterable[bytes]) -> Iterator[tuple[int, OrderEvent | TrackingUpdate | InvalidEvent]]:
    """(line number, parsed event or the validation error) for each non-blank line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
            if not isinstance(doc, dict):
                raise InvalidEvent("$", "expected a JSON object per line")
            topic = doc.get("topic")
            value = doc.get("value", doc) if topic is not None else doc
            if not isinstance(value, dict):
                raise InvalidEvent("value", f"expected a JSON object, got {type(value).__name__}")
            if topic is None:
                topic = "orders" if "order_id" in value and "kind" in value else "tracking"
            if topic in ("orders", "order"):
                yield n, parse_order_event(value)
            elif topic == "tracking":
                yield n, parse_tracking_update(value)
            else:
                raise InvalidEvent("topic", f"unknown topic {str(topic)[:40]!r}; expected orders or tracking")
        except orjson.JSONDecodeError as exc:
            yield n, InvalidEvent("$", f"not valid JSON: {exc}")
        except InvalidEvent as exc:
            yield n, exc


def replay(
    settings: Settings,
    lines: Iterable[bytes],
    until: float | None = None,
    progress: TextIO | None = None,
    total_bytes: int | None = None,
) -> ReplayResult:
    """Process events in event-time order (stable for equal times) with a clock that follows them."""
    engine = Engine(settings)
    events: list[OrderEvent | TrackingUpdate] = []
    numbers: list[int] = []
    wall = time.time()
    for n, ev in read_events(lines):
        if not isinstance(ev, InvalidEvent):
            try:  # as the live worker refuses it (its arrival is not in the file: now stands for it)
                check_not_ahead(ev.event_time, wall, settings.app.future_event_tolerance_seconds)
            except InvalidEvent as exc:
                ev = exc
        if isinstance(ev, InvalidEvent):
            engine.result.invalid.append((n, str(ev)))
        else:
            events.append(ev)
            numbers.append(n)
    return play(engine, events, until, progress, numbers)


def play(
    engine: Engine, events: list[OrderEvent | TrackingUpdate], until: float | None = None, progress: TextIO | None = None,
    numbers: list[int] | None = None,
) -> ReplayResult:
    """Run ``events`` through ``engine`` in event-time order (stable for equal times: the order given), the
    clock following them: before each event every deadline at or before its time fires; ``until`` stops the
    clock (default: at the last event). An order event the live router refuses (another shop's order) is
    an invalid line, at its place in ``numbers`` (default: its place in ``events``, from 1)."""
    parsed = sorted(enumerate(events), key=lambda x: (x[1].event_time, x[0]))
    total = len(parsed)
    step = max(1, total // 100)
    for i, (n, ev) in enumerate(parsed):
        t = ev.event_time
        if until is not None and t > until:
            break
        engine.tick(t)
        if isinstance(ev, OrderEvent):
            try:
                engine.order(ev, t)
            except InvalidEvent as exc:  # (dead-lettered by the live worker)
                engine.result.invalid.append((numbers[n] if numbers is not None else n + 1, str(exc)))
                continue
        else:
            engine.tracking(ev, t)
        engine.result.events += 1
        if progress is not None and total >= 10_000 and i % step == 0:
            _bar(progress, i, total)
    end = until if until is not None else (parsed[-1][1].event_time if parsed else None)
    if end is not None:
        engine.tick(end)
    if progress is not None and total >= 10_000:
        _bar(progress, total, total)
        progress.write("\n")
    return engine.result


def _bar(out: TextIO, done: int, total: int) -> None:
    width = 40
    filled = width * done // max(total, 1)
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events")
    out.flush()


def write_issues(result: ReplayResult, path: Path) -> None:
    with path.open("wb") as fh:
        for issue in sorted(result.issues.values(), key=lambda i: (i["opened_at"], i["issue_key"])):
            fh.write(orjson.dumps(issue) + b"\n")


def summary(result: ReplayResult, settings: Settings) -> str:
    from domain.vocabulary import IssueKind

    rows = []
    for kind in IssueKind:
        items = [i for i in result.issues.values() if i["kind"] == kind.value]
        still_open = sum(1 for i in items if i["resolved_at"] is None)
        rows.append((kind.value, settings.labels.kind(kind.value, "zh"), len(items), still_open, len(items) - still_open))
    lines = [f"{'kind':<22}{'中文':<12}{'raised':>8}{'open':>8}{'resolved':>10}"]
    for kind_name, zh, raised, open_, resolved in rows:
        # Pad the Chinese label by display width (two columns a character).
        pad = max(0, 12 - 2 * len(zh))
        lines.append(f"{kind_name:<22}{zh}{' ' * pad}{raised:>8}{open_:>8}{resolved:>10}")
    total = len(result.issues)
    lines.append(f"{'total':<34}{total:>8}{sum(1 for i in result.issues.values() if i['resolved_at'] is None):>8}")
    stages: dict[str, int] = {}
    for n in result.notifications:
        stages[n["stage"]] = stages.get(n["stage"], 0) + 1
    if stages:
        lines.append("buyer notifications: " + ", ".join(f"{k} {v}" for k, v in sorted(stages.items())))
    lines.append(f"events processed: {result.events}; invalid lines: {len(result.invalid)}")
    return "\n".join(lines)


def main_replay(settings: Settings, path: str, until: str | None, out: str | None) -> int:
    from domain.events import format_time, parse_time

    try:
        until_ts = parse_time(until, "--until") if until else None
    except InvalidEvent as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    src = Path(path)
    if not src.is_file():
        print(f"replay: {path}: no such file", file=sys.stderr)
        return 2
    with src.open("rb") as fh:
        result = replay(settings, fh, until=until_ts, progress=sys.stderr)
    for n, problem in result.invalid[:20]:
        print(f"replay: line {n}: {problem}", file=sys.stderr)
    if len(result.invalid) > 20:
        print(f"replay: ... {len(result.invalid) - 20} more invalid lines", file=sys.stderr)
    if out:
        write_issues(result, Path(out))
    print(summary(result, settings))
    if result.clock is not None:
        print(f"clock stopped at {format_time(result.clock)}")
    return 0
