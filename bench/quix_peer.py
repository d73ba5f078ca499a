"""The peer in the benchmarks: parcelwatch's per-event job written on Quix Streams (librdkafka, RocksDB
state), the way a Python team would build it with that framework instead. Started by ``bench.peer`` as
``python -m bench.quix_peer`` (settings in ``BENCH_*`` environment variables); benchmark-only
(``requirements-bench.txt``).

Per input event, as parcelwatch's worker does it:
- parse and validate it with parcelwatch's own parsers (``domain.events``); an invalid event goes to a
  dead-letter topic with the field and the problem;
- read-merge-write the subject's state in Quix's state store (RocksDB, with Quix's changelog topic),
  encoded as the worker encodes it (``ParcelState``; an order's facts as ``OrderFacts``);
- run the five overdue rules (ship, pickup, transit, tracking stale, locker uncollected; parcelwatch's
  own rule functions, against unlearned lane baselines) at the record's time, as the worker judges a
  live record;
- compare the findings with the issues open on the subject and send an issue event (texts rendered)
  for each issue opened or resolved, keyed by subject, to the issues topic.
Quix's at-least-once checkpoint commits offsets only once the issue events and the changelog records
are acknowledged by the broker.

What it does not do (the worker does): order facts re-keyed to the order's parcels, the deadline index
and sweeps, lane baselines, notifications, metrics, the Redis queue. Read its figures with that in mind.

Batch records (``BENCH_BATCHED=1``): parcelwatch's batch records (``delivery/batch_records.py``), keyed
by their partition's name (Quix scopes state to the record's key, so a batch record needs one; every
element of it belongs to that partition), each element processed as if it had come alone.

It stops itself once it has processed ``BENCH_EVENTS`` events, which makes Quix commit its checkpoint
at once; the harness times it from the first event (written to ``BENCH_MARK``: wall time and the
process's CPU seconds) until the group's committed offsets reach the end of the inputs.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import orjson
from quixstreams import Application, State
from quixstreams.models.serializers.json import JSONSerializer
from quixstreams.models.topics import TopicConfig
from quixstreams.state.rocksdb import RocksDBOptions

import config
from delivery.batch_records import decode_batch
from detectors import DetectorContext, LaneBaselines
from detectors.base import Check, Finding, severity
from detectors.rules import locker_uncollected, pickup_overdue, ship_overdue, tracking_stale, transit_overdue
from domain.events import InvalidEvent, format_time, parse_order_event, parse_tracking_update
from domain.state import OrderFacts, ParcelState, order_subject

# Tansu answers DescribeConfigs with only the configs a topic was created with, and Quix derives its
# changelog topics' config from its input topics' ``retention.ms`` (``TopicManager.derive_topic_config``
# reads it unconditionally). So the inputs are created with their retention stated (``bench.peer`` creates
# them with these; ``Application.topic(config=...)`` would create them the same way): -1, keep
# everything, which is what Tansu's memory storage does anyway.
TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}

Issue = dict[str, Any]


class PeerJob:
    """The per-event work, on Quix's ``State`` (scoped to the record's key)."""

    def __init__(self, settings: config.Settings) -> None:
        self.ctx = DetectorContext(settings, LaneBaselines(settings.lanes))
        self.remote = settings.lanes.remote_provinces

    def tracking(self, raw: bytes | dict[str, Any], state: State, now: float) -> list[Issue]:
        try:
            up = parse_tracking_update(raw)
        except InvalidEvent as exc:
            return [_dead_letter("tracking", exc)]
        subject = up.parcel_key
        stored = state.get(subject)
        s = ParcelState.decode(stored) if stored is not None else ParcelState()
        s.apply_tracking(up)
        out = self._judge(subject, s, now, self._parcel_checks(subject, s, now))
        state.set(subject, s.encode())
        return out

    def order(self, raw: bytes | dict[str, Any], state: State, now: float) -> list[Issue]:
        try:
            ev = parse_order_event(raw)
        except InvalidEvent as exc:
            return [_dead_letter("orders", exc)]
        stored = state.get(ev.order_id)
        facts = OrderFacts.from_json(stored) if stored is not None else OrderFacts(ev.order_id, ev.shop, ev.platform)
        facts.apply(ev)
        state.set(ev.order_id, facts.to_json())
        subject = order_subject(ev.order_id)
        stored = state.get(subject)
        s = ParcelState.decode(stored) if stored is not None else ParcelState()
        s.apply_order(facts)
        out = self._judge(subject, s, now, [ship_overdue(s, now, self.ctx)])
        state.set(subject, s.encode())
        return out

    def _parcel_checks(self, subject: str, s: ParcelState, now: float) -> list[Check]:
        if s.signed_at is not None or s.closed_at is not None:
            return []
        ctx = self.ctx
        carrier = subject[: subject.rfind(":")]
        checks = [pickup_overdue(s, now, ctx), transit_overdue(s, now, ctx, carrier)]
        if s.last_scan_at is not None:
            checks.append(tracking_stale(s, now, ctx, carrier))
        if s.at_locker_at is not None:
            checks.append(locker_uncollected(s, now, ctx))
        return checks

    def _judge(self, subject: str, s: ParcelState, now: float, checks: list[Check]) -> list[Issue]:
        """Issue events for the issues the checks open and the open ones they no longer find."""
        found = {c.finding.kind: c.finding for c in checks if c.finding is not None}
        out: list[Issue] = []
        opened = s.open_issues
        for kind in [k for k in opened if k not in found]:
            opened_at = opened.pop(kind)[0]
            out.append({"subject": subject, "kind": kind, "action": "resolved", "shop": s.shop,
                        "opened_at": format_time(opened_at), "at": format_time(now)})
        for kind, f in found.items():
            if kind in opened:
                continue
            dest = s.destination_province
            sev = severity(self.ctx, kind, f, s.order_value, dest is not None and dest in self.remote)
            opened[kind] = [f.since, sev, None, f.since]
            out.append(_opened(subject, s, f, sev))
        return out


def _opened(subject: str, s: ParcelState, f: Finding, sev: str) -> Issue:
    reason, evidence, action, data = f.texts()
    return {"subject": subject, "kind": f.kind, "action": "opened", "shop": s.shop, "platform": s.platform,
            "order_id": s.order_id, "severity": sev, "opened_at": format_time(f.since), "reason": reason,
            "evidence": evidence, "suggested_action": action, "evidence_data": data}


def _dead_letter(topic: str, exc: InvalidEvent) -> Issue:
    return {"subject": None, "dead_letter": topic, "field": exc.field, "problem": exc.reason_code}


def _dumps(value: Any) -> bytes:
    return value if value.__class__ is bytes else orjson.dumps(value)  # type: ignore[no-any-return]


def _loads(raw: bytes) -> bytes:
    return raw


def main() -> None:
    env = os.environ
    expected = int(env["BENCH_EVENTS"])
    batched = env.get("BENCH_BATCHED") == "1"
    mark = env["BENCH_MARK"]
    app = Application(
        broker_address=env["BENCH_BOOTSTRAP"],
        consumer_group=env["BENCH_GROUP"],
        auto_offset_reset="earliest",
        state_dir=env["BENCH_STATE_DIR"],
        loglevel="WARNING",
        processing_guarantee="at-least-once",
        # Values are stored as the worker stores them: its own compact bytes, not JSON over them.
        # (Quix serializes the state keys, and the record key that prefixes them, with the same function.)
        rocksdb_options=RocksDBOptions(dumps=_dumps, loads=_loads),
    )
    partitions = int(env.get("BENCH_PARTITIONS", "4"))
    topic_config = TopicConfig(num_partitions=partitions, replication_factor=1, extra_config=dict(TOPIC_CONFIG))

    def input_topic(name: str) -> Any:
        return app.topic(name, key_deserializer="str", value_deserializer="bytes", config=topic_config)

    issues, dead_letters = (app.topic(name, key_serializer="str", value_serializer=JSONSerializer(dumps=orjson.dumps),
                                      config=topic_config)
                            for name in (env["BENCH_ISSUES_TOPIC"], env.get("BENCH_DEAD_LETTER_TOPIC", "peer-dead-letter")))

    def destination(value: Issue, key: Any, timestamp: int, headers: Any) -> Any:
        return dead_letters if value["subject"] is None else issues
    job = PeerJob(config.load(env={}))
    seen = [0]

    def counted(n: int) -> None:
        if seen[0] == 0:
            with open(mark, "w") as f:
                f.write(f"{time.time()} {time.process_time()}")
        seen[0] += n
        if seen[0] >= expected:
            app.stop()  # ends the poll loop; Quix then commits its checkpoint at once

    for name, handle in ((env["BENCH_TRACKING_TOPIC"], job.tracking), (env["BENCH_ORDERS_TOPIC"], job.order)):
        def process(value: bytes, key: Any, timestamp: int, headers: Any, state: State, handle: Any = handle) -> list[Issue]:
            now = timestamp / 1000.0
            if batched:
                out = []
                elements = decode_batch(value)
                for element in elements:
                    out.extend(handle(element, state, now))
                counted(len(elements))
                return out
            out = handle(value, state, now)
            counted(1)
            return out  # type: ignore[no-any-return]

        sdf = app.dataframe(input_topic(name))
        sdf = sdf.apply(process, stateful=True, expand=True, metadata=True)
        sdf.to_topic(destination, key=lambda issue: issue["subject"] or issue["dead_letter"])
    app.run()
    # Stay up (idle) until the harness has read the committed offsets and this process's CPU time.
    print("STOPPED", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
