"""The clock a partition's detectors and sweeps run at: the wall clock live, arrival time while catching up.

A worker that starts behind (after an outage, a restart, a rebalance with lag) works through records
that arrived hours ago. Judged at the wall clock, every parcel in that backlog looks overdue at each of
its intermediate states: the sweep opens an issue, and the parcel's next record in the backlog resolves
it. Staff queues, history, buyer notifications and alert routes all got that noise after every outage
(``bench.records``: 0.78 spurious issue events per input event).

While a partition lags, its clock is the arrival time of the newest record processed on it (the
record's Kafka timestamp: the time the live worker would have seen it), so the backlog is judged as the
live run judged it then; once it has caught up, the wall clock again. A partition lags while it is
processing records that arrived more than ``lag_seconds`` ago; it stops lagging when it processes a
fresh record, or when it has processed nothing for ``quiet_seconds`` (a caught-up partition that is
merely quiet must fire its deadlines on time). A partition's inputs (tracking updates, order facts) lag
separately, and the clock follows the one furthest behind: its state is only as current as that one.

Order facts reach a parcel's partition through a second hop (order events -> the order router -> the
order-facts topic), so a parcel partition cannot see from its own records how far behind the router is.
While the router works through old order events it sends a watermark to every order-facts partition
every half second ("every order event of my partition q that arrived up to t has been routed"): queued
behind the facts it routed, each is one more input of that partition (``orders:q``). A router starved of
fetches looks quiet without having caught up, so these inputs do not end by quiet: the router says when
it has routed everything up to its partition's high watermark (a watermark at the wall clock), and only
a router that vanished is outlived, after ``WATERMARK_HOLD_SECONDS``.

A partition cannot know how far behind an input is before that input has reported at all, so a lagging
partition's clock stays at the first arrival it saw until every ``expected`` input (its tracking, and
every order-router partition ``orders:q``) has reported, for at most ``REPORT_WAIT_SECONDS`` after its
first record (and in any case for ``quiet_seconds`` after start). Without this, the hop through the
router let the tracking backlog (already in the partition) run the clock to the end of the backlog
before the first order facts and watermarks came through: the orders' ship deadlines were then judged
days after the payment, and their shipped facts, still in flight, resolved every one of those issues.
Measuring the wait from the process start did not help: Faust's start-up (group join, table recovery)
took most of it before the first record was processed. A partition whose first record is fresh is live
and does not wait (a live restart must not hold its deadlines): if an input of it then turns out to be
far behind, the clock, already handed out at the wall clock, stays there.

A partition's clock never goes back: an input that starts lagging later (the order router falling
behind after a sweep already ran at a later time) holds the clock where it is instead of pulling it back,
because findings judged at an earlier time than an issue's opening would end that issue for no reason.

The clock never loses a deadline: an earlier clock only defers it to a later sweep (the deadline index
keeps every subject until it is swept at or after its deadline). Record timestamps are producer time
(CreateTime) unless the topic says LogAppendTime: producers' clocks must be synchronised, as Kafka's own
time-based retention assumes; a producer whose clock runs behind by more than ``lag_seconds`` makes its
partitions look lagging (``lagging_partitions`` shows it) and defers their deadlines by that skew.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

WATERMARK_PREFIX = b'{"watermark":'
# A lagging router's watermarks hold a partition's clock at most this long after the last one (a router
# that died mid-backlog must not hold deadlines for ever; its partitions' next owner sends its own).
WATERMARK_HOLD_SECONDS = 300.0
# How long a lagging partition waits (from its first record) for an expected input that has not reported
# at all: an input that is silent (an orders partition with nothing to route, a router on another worker
# that is live and only reports while behind) must not hold the partition's deadlines for ever.
REPORT_WAIT_SECONDS = 60.0


@dataclass(slots=True)
class _Input:
    arrived: float  # the newest arrival time processed (max record timestamp)
    seen_at: float  # wall clock when the last record was processed
    behind: bool  # that record arrived more than lag_seconds before it was processed
    hold: float  # how long after seen_at a behind input still holds the clock


class CatchUpClock:
    """Per partition: the wall clock while live, the arrival time of processed records while lagging."""

    def __init__(self, lag_seconds: float, quiet_seconds: float, started_at: float,
                 expected: Iterable[str] = (), report_wait_seconds: float = REPORT_WAIT_SECONDS) -> None:
        """``lag_seconds`` <= 0 turns catching up off: always the wall clock (the behaviour before it).
        ``expected``: the inputs every partition must hear from before its clock leaves the first arrival."""
        self.lag_seconds = lag_seconds
        self.quiet_seconds = quiet_seconds
        self.started_at = started_at
        self.expected = frozenset(expected)
        self.report_wait_seconds = report_wait_seconds
        self._first: dict[int, float] = {}  # the first arrival seen per partition (held there at start)
        self._first_seen: dict[int, float] = {}  # wall clock of the partition's first record
        self._inputs: dict[int, dict[str, _Input]] = {}
        self._given: dict[int, float] = {}  # the latest clock handed out per partition (it never goes back)

    def observe(self, source: str, partition: int, arrived: float | None, wall: float,
                hold: float | None = None) -> float:
        """Record that a record of ``source`` that arrived at ``arrived`` is processed at ``wall``;
        returns the clock to process it at. ``arrived`` None (no timestamp): treated as live.
        ``hold``: how long a behind input holds the clock without news (default ``quiet_seconds``)."""
        if self.lag_seconds <= 0:
            return wall
        if arrived is None or arrived > wall:
            arrived = wall  # no timestamp, or a producer clock ahead of ours: as good as live
        inputs = self._inputs.get(partition)
        if inputs is None:
            inputs = self._inputs[partition] = {}
            self._first[partition] = arrived
            self._first_seen[partition] = wall
        behind = wall - arrived > self.lag_seconds
        known = inputs.get(source)
        if known is None:
            inputs[source] = _Input(arrived, wall, behind, self.quiet_seconds if hold is None else hold)
        else:
            if arrived > known.arrived:
                known.arrived = arrived
            known.seen_at = wall
            known.behind = behind
        return self.now(partition, wall)

    def now(self, partition: int, wall: float) -> float:
        """The clock of ``partition`` at wall-clock time ``wall``."""
        inputs = self._inputs.get(partition)
        if not inputs:
            return wall
        clock = wall
        for known in inputs.values():
            if known.behind and wall - known.seen_at < known.hold and known.arrived < clock:
                clock = known.arrived
        if (clock < wall and wall - self.started_at < self.quiet_seconds) or self._unheard(partition, inputs, wall):
            clock = min(clock, self._first[partition])  # not every input has reported yet
        given = self._given.get(partition, clock)
        if clock < given:
            return min(given, wall)
        self._given[partition] = clock
        return clock

    def _unheard(self, partition: int, inputs: dict[str, _Input], wall: float) -> bool:
        """``partition`` has seen a record from behind, some expected input has not reported on it yet,
        and that input is still worth waiting for. (Not "the clock is behind": the inputs heard from may
        all have gone quiet already, and a clock handed out at the wall clock never comes back.)"""
        return (wall - self._first[partition] > self.lag_seconds
                and wall - self._first_seen[partition] < self.report_wait_seconds
                and not self.expected.issubset(inputs))

    def lagging_partitions(self, wall: float) -> list[int]:
        """The partitions whose clock is behind the wall clock at ``wall`` (for health and metrics)."""
        return sorted(p for p in self._inputs if self._behind(p, wall))

    def _behind(self, partition: int, wall: float) -> bool:
        return any(known.behind and wall - known.seen_at < known.hold for known in self._inputs[partition].values())


def encode_watermark(source_partition: int, arrived: float) -> bytes:
    """The order router's watermark record for the order-facts topic (see the module docstring)."""
    return WATERMARK_PREFIX + orjson.dumps(arrived) + b',"source":' + str(source_partition).encode() + b"}"


def decode_watermark(raw: bytes) -> tuple[int, float] | None:
    """(source partition, arrival time) of a watermark record; None for any other record."""
    if not raw.startswith(WATERMARK_PREFIX):
        return None
    try:
        doc = orjson.loads(raw)
        return int(doc["source"]), float(doc["watermark"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # not a well-formed watermark: handled (and dead-lettered) as an order-facts record
