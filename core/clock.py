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
it has routed everything up to its partition's high watermark (a watermark at the wall clock). A router
newly assigned the partition says so too, even with nothing to route: the watermarks its predecessor left
(read again after a kill, from uncommitted offsets) hold until the partition's owner reports. Only a router
that vanished with no owner reporting after it is outlived, after ``WATERMARK_HOLD_SECONDS``.

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

A partition's clock is only handed out once it is known. After a start or a rebalance a partition has
processed nothing yet: if records are waiting on its own inputs (``waiting``, read from the consumer's high
watermarks against what the agent processed; an answer the broker gave more than a few seconds ago counts
as records waiting), their arrival times are unknown, so there is no clock and no sweep runs on it until
its first record; with nothing waiting it is live. Handing out the wall clock
there swept every subject days ahead of its unprocessed backlog after a restart: issues opened at the
wall clock that the backlog's own scans, judged at an earlier clock, could no longer end. For the same
reason a behind input goes quiet only when nothing is waiting on it: a partition whose records merely
wait their turn (a rebalance, a busy worker), or whose broker has stopped answering (its last answer said
nothing more, while its producers went on), is not caught up.

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

from collections.abc import Callable, Iterable
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
                 expected: Iterable[str] = (), report_wait_seconds: float = REPORT_WAIT_SECONDS,
                 local: Iterable[str] = (), waiting: Callable[[str, int], bool] | None = None) -> None:
        """``lag_seconds`` <= 0 turns catching up off: always the wall clock (the behaviour before it).
        ``expected``: the inputs every partition must hear from before its clock leaves the first arrival.
        ``local``: the inputs that are topics of the partition itself (tracking, order facts), and
        ``waiting(input, partition)``: whether records of that topic partition wait to be processed (True
        when it cannot tell yet). Without ``waiting`` nothing is ever known to wait (the clock as before)."""
        self.lag_seconds = lag_seconds
        self.quiet_seconds = quiet_seconds
        self.started_at = started_at
        self.expected = frozenset(expected)
        self.report_wait_seconds = report_wait_seconds
        self.local = tuple(local)
        self._local_set = frozenset(self.local)
        self._waiting = waiting
        self._first: dict[int, float] = {}  # the first arrival seen per partition (held there at start)
        self._first_seen: dict[int, float] = {}  # wall clock of the partition's first record
        self._inputs: dict[int, dict[str, _Input]] = {}
        self._given: dict[int, float] = {}  # the latest clock handed out per partition (it never goes back)

    def observe(self, source: str, partition: int, arrived: float | None, wall: float,
                hold: float | None = None, progress: bool = False) -> float:
        """Record that a record of ``source`` that arrived at ``arrived`` is processed at ``wall``;
        returns the clock to process it at. ``arrived`` None (no timestamp): treated as live.
        ``hold``: how long a behind input holds the clock without news (default ``quiet_seconds``).
        ``progress``: ``arrived`` is how far the source has come (a router's watermark): the latest report
        stands, even one further back (the router fell behind again), instead of the newest arrival seen."""
        if self.lag_seconds <= 0:
            return wall
        if arrived is None or arrived > wall:
            arrived = wall  # no timestamp, or a producer clock ahead of ours: as good as live
        inputs = self._inputs.get(partition)
        if inputs is None:
            inputs = self._inputs[partition] = {}
        if partition not in self._first and (source in self.local or not self.local):
            # (The first record of the partition's own: a watermark of the router's progress is not one.)
            self._first[partition] = arrived
            self._first_seen[partition] = wall
        behind = wall - arrived > self.lag_seconds
        known = inputs.get(source)
        if known is None:
            inputs[source] = _Input(arrived, wall, behind, self.quiet_seconds if hold is None else hold)
        else:
            if arrived > known.arrived or progress:
                known.arrived = arrived
            known.seen_at = wall
            known.behind = behind
        clock = self._clock(partition, inputs, wall)
        if clock is None:  # another input of the partition has records waiting, none processed yet
            first = self._first.get(partition, arrived)
            return max(first, self._given.get(partition, first))
        return clock

    def event_now(self, partition: int, source: str, clock: float, event_time: float, wall: float) -> float:
        """The time an event of ``source`` at ``event_time`` is judged at: the partition's ``clock`` (what
        ``observe`` returned), or the event's own time when that is later and its subject's other input allows.

        A replay walks a subject to each event's own time before applying it. Judged at a clock behind the
        event (held while an input has not reported, held by the order router's hop), a deadline between the
        clock and the event never fired, and an event that ends the problem (a signature three hours after the
        transit deadline) left no issue where the replay opened and resolved one: every restart mid-backlog
        lost some. The holds protect the sweeps, which judge every subject at once; an event judges its own.
        A parcel's scans are first-hand (``local[0]``, its own partition's topic, in order): a scan walks its
        parcel to its own time. Order facts come second-hand through the router and may overtake the
        parcel's scans still waiting here: they walk no further than the scans have come (else the facts of a
        confirmation walk an unsigned parcel past its transit deadline while its signature waits in the
        backlog)."""
        if self.lag_seconds <= 0 or not self.local or event_time <= clock:
            return clock
        limit = wall if source == self.local[0] else self._first_hand_bound(partition, wall)
        return max(clock, min(event_time, limit))

    def _first_hand_bound(self, partition: int, wall: float) -> float:
        """How far the partition's scans have come (the wall clock once nothing of them waits)."""
        first_hand = self.local[0]
        known = (self._inputs.get(partition) or {}).get(first_hand)
        if known is None:
            if self._waiting is not None and self._waiting(first_hand, partition):
                return self._first.get(partition, wall)
            return wall
        if known.behind and self._holds(first_hand, partition, known, wall):
            return known.arrived
        return wall

    def now(self, partition: int, wall: float) -> float | None:
        """The clock of ``partition`` at wall-clock time ``wall``; None while it is not known (records wait on
        an input of the partition of which nothing was processed yet): no sweep may run on it."""
        if self.lag_seconds <= 0:
            return wall
        return self._clock(partition, self._inputs.get(partition) or {}, wall)

    def known(self, partition: int, wall: float) -> bool:
        """Whether ``partition`` has a clock at ``wall`` (``now`` without handing one out: for health)."""
        return self.lag_seconds <= 0 or self._held_at(partition, self._inputs.get(partition) or {}, wall) is not None

    def _clock(self, partition: int, inputs: dict[str, _Input], wall: float) -> float | None:
        clock = self._held_at(partition, inputs, wall)
        if clock is None or partition not in self._first:
            return clock  # (no clock yet, or live before any record of its own: nothing handed out to keep)
        given = self._given.get(partition, clock)
        if clock < given:
            return min(given, wall)
        self._given[partition] = clock
        return clock

    def _held_at(self, partition: int, inputs: dict[str, _Input], wall: float) -> float | None:
        """The clock the partition's inputs allow at ``wall`` (before "it never goes back"), without changing it."""
        waiting = self._waiting
        if waiting is not None and not self._local_set.issubset(inputs) and any(
                source not in inputs and waiting(source, partition) for source in self.local):
            return None
        if partition not in self._first:
            return wall  # nothing of its own processed, nothing waiting: live
        clock = wall
        for source, known in inputs.items():
            if known.behind and known.arrived < clock and self._holds(source, partition, known, wall):
                clock = known.arrived
        if (clock < wall and wall - self.started_at < self.quiet_seconds) or self._unheard(partition, inputs, wall):
            clock = min(clock, self._first[partition])  # not every input has reported yet
        return clock

    def _holds(self, source: str, partition: int, known: _Input, wall: float) -> bool:
        """A behind input holds the clock until it has been quiet for its hold, and a local one for as long
        as records wait on it too."""
        if wall - known.seen_at < known.hold:
            return True
        return self._waiting is not None and source in self.local and self._waiting(source, partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked from this worker: what their inputs showed is stale once they come back (another
        worker may have processed them meanwhile). The clock handed out is kept: it never goes back."""
        for partition in partitions:
            self._inputs.pop(partition, None)
            self._first.pop(partition, None)
            self._first_seen.pop(partition, None)

    def _unheard(self, partition: int, inputs: dict[str, _Input], wall: float) -> bool:
        """``partition`` has seen a record from behind, some expected input has not reported on it yet,
        and that input is still worth waiting for. (Not "the clock is behind": the inputs heard from may
        all have gone quiet already, and a clock handed out at the wall clock never comes back.)"""
        return (wall - self._first[partition] > self.lag_seconds
                and wall - self._first_seen[partition] < self.report_wait_seconds
                and not self.expected.issubset(inputs))

    def lagging_partitions(self, wall: float) -> list[int]:
        """The partitions whose clock is behind the wall clock at ``wall`` (for health and metrics): held by
        a behind input or by one not heard from yet, as the next sweep would see it."""
        if self.lag_seconds <= 0:
            return []
        lagging = []
        for partition, inputs in self._inputs.items():
            clock = self._held_at(partition, inputs, wall)
            if clock is not None and max(clock, self._given.get(partition, clock)) < wall:
                lagging.append(partition)
        return sorted(lagging)


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
