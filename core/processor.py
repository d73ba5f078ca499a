"""The stream's core: event in → parcel state → detectors → issue events, plus the deadline index.

``Processor`` is independent of Faust: the live agents hand it the Faust tables (mutable mappings of
bytes) and the replay command hands it dicts, so a replay and a live run execute the same code.

Rules of the road:
- Events update state and may *resolve* issues (at the event's time); they never open one. Opening
  happens in the walk along a subject's timeline, deadline by deadline (``_advance``), so an issue opens
  at its deadline whatever the tick interval and however late the sweep runs: a replay and a live run
  give the same ``opened_at`` and the same text. The deadline sweep walks every due subject to its
  clock; before an event is applied, its subject is walked to the event's own time (no later than the
  clock), as a replay does: ticks are another topic, so an event can overtake the tick that would have
  swept a deadline before it. Without that, whether such an issue opened depended on whether a tick
  happened to come first, and an issue whose opening the state lost (a worker stopped between the
  acknowledged issue event and the state write) was never ended by the event that ends it when that
  event came before the re-delivered tick. Only to the event's time: a burst of a parcel's older scans
  arriving together must not be judged at the clock between its own events.
- The deadline index is lazy: a subject sits in the bucket of the earliest deadline it has had since it
  was last swept; when its deadline moves later nothing is written, the early wake-up re-checks and
  re-files it. A stale index entry is harmless.
- The index is per partition (``core/deadline_index.py``: keys ``"{partition}:{bucket}"``, a crowded bucket
  continued in chunks) so that a tick on partition p touches only subjects of partition p: sweep cost grows
  with what is due, not with what is tracked.
- The index and the state are two tables: a ``kill -9`` can land one write and lose the other. Two
  rules keep a subject from falling out of the index. (1) Each filing records the processor's
  ``epoch`` (new for every worker process); a filing from another epoch is not trusted: the next event
  files the subject again, and a sweep that meets it re-checks it. (2) A sweep's removals (swept
  buckets, the cursor) are written only after its re-filings and states are acknowledged
  (``Output.index_removals``; the live agent flushes the producer in between).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from config import Settings
from detectors import DetectorContext, Evaluation, evaluate, finished_at
from detectors.base import Finding, TransitBaseline
from detectors.rules import autoconfirm_deadline
from domain.events import TrackingUpdate, format_time
from domain.state import ORDER_SUBJECT_PREFIX, OrderFacts, ParcelState
from domain.vocabulary import DAY, HOUR

from .deadline_index import (
    TRANSIT_BUCKET_SECONDS,
    append_to_bucket,
    bucket_chunks,
    bucket_key,
    bucket_of,
    cursor_key,
    refreshed_key,
    rewrite_bucket,
    transit_bucket_of,
    transit_first_key,
    transit_key,
)
from .notifications import NotificationRules

# Guard against a rule whose next_at does not move forward (a bug must not hang the sweep).
MAX_STEPS_PER_SWEEP = 64


@dataclass(slots=True)
class Output:
    """What one event or tick produced, for the caller to send on."""

    issues: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    # (shop, shipped_at, picked_up_at or None): a parcel shipped, or its pickup, each reported once.
    milestones: list[tuple[str | None, float, float | None]] = field(default_factory=list)
    due: int = 0  # subjects re-checked by a sweep
    purged: int = 0  # finished subjects a sweep deleted (their retention ended)
    # (order id, subject) for each subject of an order deleted or ignored as expired: told to the order
    # router (keyed by order id), which deletes the order's facts once all its subjects are gone.
    gone: list[tuple[str, str]] = field(default_factory=list)
    # The event was for a subject no longer (or never) held and lies before the retention horizon: ignored.
    expired: bool = False
    # A parcel shipped, picked up or signed (each once): the shops' logistics health (``_logistics``).
    logistics: list[dict[str, Any]] = field(default_factory=list)
    # Index writes that must wait until everything else this output wrote is durable: the keys of swept
    # buckets (None: delete) and the sweep cursor. ``Processor`` applies them itself when told to.
    index_removals: dict[str, bytes | None] = field(default_factory=dict)


class Processor:
    def __init__(
        self,
        settings: Settings,
        baselines: TransitBaseline,
        states: MutableMapping[str, bytes],
        index: MutableMapping[str, bytes],
        notification_rules: NotificationRules | None = None,
        epoch: int = 0,
        defer_index_removals: bool = False,
    ) -> None:
        self.settings = settings
        self.ctx = DetectorContext(settings, baselines)
        self.states = states
        self.index = index
        self.notification_rules = notification_rules
        self.epoch = epoch
        self.retention_seconds = settings.retention.finished_subject_days * DAY
        # Live: the caller writes ``Output.index_removals`` once the rest is acknowledged. Replay and
        # tests (dicts, no crash between writes): applied at once.
        self.defer_index_removals = defer_index_removals

    # -- events ------------------------------------------------------------------------------------

    def load(self, subject: str) -> tuple[bytes | None, ParcelState]:
        """The stored bytes (None: a new subject) and the state decoded from them."""
        raw = self.states.get(subject)
        return raw, ParcelState() if raw is None else ParcelState.decode(raw)

    # ``now`` is the clock detectors judge at (the live worker's catch-up clock, see clock.py; a replay's
    # event time); ``wall`` (default: ``now``) is the real time a buyer notification would go out at, for
    # its age limit: a worker catching up must not send yesterday's "out for delivery" today.

    def on_tracking(self, partition: int, update: TrackingUpdate, now: float, wall: float | None = None) -> Output:
        subject = update.parcel_key
        raw, state = self.load(subject)
        out = Output()
        wall = now if wall is None else wall
        self._advance(subject, state, min(update.event_time, now), wall, out)  # deadlines before the event first
        state.apply_tracking(update)
        if raw is None and self._before_horizon(subject, state, now):
            out.expired = True
            return out
        self._after_event(partition, subject, state, raw, update.event_time, now, wall, out)
        return out

    def on_order_facts(
        self, partition: int, subject: str, facts: OrderFacts, at: float, now: float, wall: float | None = None
    ) -> Output:
        """Apply an order snapshot to one of its subjects; ``at`` is the event time of the order event."""
        raw, state = self.load(subject)
        out = Output()
        wall = now if wall is None else wall
        self._advance(subject, state, min(at, now), wall, out)  # deadlines before the event first
        state.apply_order(facts)
        if raw is None and self._before_horizon(subject, state, now):
            out.expired = True
            out.gone.append((facts.order_id, subject))  # (facts recreated by a late order event)
            return out
        self._after_event(partition, subject, state, raw, at, now, wall, out)
        return out

    def _after_event(
        self, partition: int, subject: str, state: ParcelState, raw: bytes | None, at: float, now: float, wall: float,
        out: Output,
    ) -> None:
        """``raw``: the stored state the event was applied to (None: a new subject)."""
        ev = evaluate(subject, state, now, self.ctx)
        findings = ev.findings
        open_issues = state.open_issues
        if open_issues:
            for kind in [k for k in open_issues if k not in findings]:
                opened_at = open_issues[kind][0]
                if now < opened_at:
                    # Judged before the issue's opening (a clock behind the sweep that opened it, e.g. a
                    # new leader's): absent there is not ended, and ending it here would be followed by a
                    # re-opening of the same period, which the issue sink drops as a duplicate.
                    continue
                self._resolve(subject, state, kind, max(at, opened_at), out)
        next_at = ev.next_at
        if findings:
            context = _context(state)
            # A new issue is raised when the event made it so: its own time (not the clock that happened to
            # process it, so a replay and a live worker raise it at the same instant), or the finding's if that
            # is later. An open issue's update is due now (walking back from the event's time would report
            # every step since then).
            news = at if at < now else now
            for kind, (finding, sev) in findings.items():
                record = open_issues.get(kind)
                if record is None:
                    due = finding.since if finding.since > news else news
                elif state.finding_time(kind) != finding.since or record[1] != sev or record[2] != context:
                    due = now
                else:
                    continue
                # The next sweep does it, walking from then (issues opened later than that are left alone:
                # absent before their opening is not ended).
                next_at = due if next_at is None or due < next_at else next_at
        is_order = subject.startswith(ORDER_SUBJECT_PREFIX)
        if (
            not state.delivery_reported
            and state.signed_at is not None
            and state.picked_up_at is not None
            # The sample belongs to a lane: wait for the order facts that name it (they travel through
            # the order router and may arrive after the signature).
            and state.destination_province is not None
            and not is_order
        ):
            state.delivery_reported = True
            out.deliveries.append(self._delivery(subject, state))
            out.logistics.append(_logistics("signed", subject, state))
        if not is_order and state.shipped_at is not None:
            if not state.shipment_reported:
                state.shipment_reported = True
                out.milestones.append((state.shop, state.shipped_at, None))
                out.logistics.append(_logistics("shipped", subject, state))
            if not state.pickup_reported and state.pickup_at is not None:
                state.pickup_reported = True
                out.milestones.append((state.shop, state.shipped_at, state.pickup_at))
                out.logistics.append(_logistics("picked_up", subject, state))
        pending = self._notify(subject, state, now, wall, out)
        if pending is not None:
            next_at = pending if next_at is None else min(next_at, pending)
        state.next_check_at = self._with_purge(subject, state, next_at)
        self._file(partition, subject, state, now=now)
        encoded = state.encode()
        if encoded != raw:
            # A re-delivered event that changed nothing is not written again: in the live worker every
            # table write is a changelog record.
            self.states[subject] = encoded

    # -- deadline sweep -----------------------------------------------------------------------------

    def on_tick(self, partition: int, now: float, wall: float | None = None) -> Output:
        """Re-check every subject of ``partition`` whose deadline is at or before ``now``."""
        out = Output()
        if wall is None:
            wall = now
        cursor_at = cursor_key(partition)
        raw_cursor = self.index.get(cursor_at)
        last = bucket_of(now)
        baselines = self.ctx.baselines
        refreshed_at = refreshed_key(partition)
        if raw_cursor is None:
            self.index[cursor_at] = str(last).encode()
            self.index[refreshed_at] = repr(baselines.refreshed_at(now)).encode()
            return out
        cursor = int(raw_cursor)
        if cursor > last:
            return out  # the clock went backwards (another leader's tick); nothing is due
        removals = out.index_removals
        # The lanes' refreshes since the last one this partition acted on, each at its own place among the
        # swept minutes: a refresh that lowers a lane's limit re-checks the parcels it makes due.
        # (None: the partition's first filing set its cursor before any tick: from the refresh in force.)
        raw_refreshed = self.index.get(refreshed_at)
        refreshes: list[float] = []
        refresh = baselines.refreshed_at(now) if raw_refreshed is None else float(raw_refreshed)
        while (following := baselines.next_refresh(refresh)) <= now:
            refreshes.append(following)
            refresh = following
        if refreshes or raw_refreshed is None:
            removals[refreshed_at] = repr(refresh).encode()
        for b in range(cursor, last + 1):
            while refreshes and bucket_of(refreshes[0]) <= b:
                self._recheck_transit(partition, refreshes.pop(0), wall, out)
            key = bucket_key(partition, b)
            chunks = bucket_chunks(self.index, key)
            if not chunks:
                continue
            for chunk_key in reversed(chunks):
                # The first chunk goes last: a crash part-way leaves it (and the tail) to be swept again.
                removals[chunk_key] = None
            filed = b"".join(chunks.values())
            refiled_here = False
            for subject in dict.fromkeys(filed.decode().split("\n")):
                if not subject:
                    continue
                raw_state = self.states.get(subject)
                if raw_state is None:
                    continue
                state = ParcelState.decode(raw_state)
                if state.indexed_bucket != b and state.index_epoch == self.epoch:
                    continue  # filed under another bucket since: that entry is the live one
                state.indexed_bucket = None
                out.due += 1
                if self._purgeable(subject, state, now):
                    del self.states[subject]  # a tombstone in the live worker's changelog
                    out.purged += 1
                    if state.order_id is not None:
                        out.gone.append((state.order_id, subject))
                    continue
                self._advance(subject, state, now, wall, out)
                state.next_check_at = self._with_purge(subject, state, state.next_check_at)
                if self._file(partition, subject, state, cursor=last) == b:
                    refiled_here = True
                encoded = state.encode()
                if encoded != raw_state:
                    self.states[subject] = encoded
            if refiled_here:
                # Subjects re-filed into the bucket being swept (due later this same minute): keep the
                # bucket for the next tick (its swept entries are then stale, skipped or re-checked).
                for chunk_key in chunks:
                    del removals[chunk_key]
        if cursor != last:
            removals[cursor_at] = str(last).encode()
        if not self.defer_index_removals:
            self.apply_index_removals(out)
        return out

    def apply_index_removals(self, out: Output) -> None:
        for key, value in out.index_removals.items():
            if value is None:
                self.index.pop(key, None)
            else:
                self.index[key] = value
        out.index_removals.clear()

    # -- retention ----------------------------------------------------------------------------------

    def _purge_at(self, subject: str, state: ParcelState) -> float | None:
        """When a finished subject's retention ends (None: not finished)."""
        finished = finished_at(subject, state)
        if finished is None and state.paid_at is None and subject.startswith(ORDER_SUBJECT_PREFIX):
            # An unpaid order subject has nothing to watch (ship-overdue counts from the payment): what a
            # late confirmation of an order deleted long ago starts. It leaves a retention after that news
            # unless the payment comes meanwhile (one order's events may arrive in any order). A
            # confirmation or a receipt extension is all it can hold: each sets one of these times.
            news = [t for t in (state.confirmed_at, state.autoconfirm_set_at) if t is not None]
            finished = max(news) if news else None
        return None if finished is None else finished + self.retention_seconds

    def _with_purge(self, subject: str, state: ParcelState, next_at: float | None) -> float | None:
        """``next_at``, or the end of the subject's retention if it is finished and that comes first."""
        purge_at = self._purge_at(subject, state)
        if purge_at is None:
            return next_at
        return purge_at if next_at is None or purge_at < next_at else next_at

    def _purgeable(self, subject: str, state: ParcelState, now: float) -> bool:
        """Finished for the whole retention period, and nothing left open on it."""
        purge_at = self._purge_at(subject, state)
        return purge_at is not None and now >= purge_at and not state.open_issues

    def _before_horizon(self, subject: str, state: ParcelState, now: float) -> bool:
        """A new subject whose own life began before the retention horizon: what a late event for a parcel
        delivered and deleted long ago looks like (a scan, or an order snapshot that would start
        pickup-overdue on it from its old shipping time). Not watched again. The horizon is for finished
        subjects: a parcel that starts now is watched, however long ago its order was paid."""
        earliest = _earliest_time(subject, state)
        return earliest is not None and earliest < now - self.retention_seconds

    def _advance(self, subject: str, state: ParcelState, now: float, wall: float, out: Output) -> None:
        """Walk the subject's timeline from its due time to ``now``, one deadline at a time."""
        t = state.next_check_at
        if t is None or t > now:
            return
        nxt: float | None = None
        for _ in range(MAX_STEPS_PER_SWEEP):
            ev = evaluate(subject, state, t, self.ctx)
            self._reconcile(subject, state, ev, t, out)
            pending = self._notify(subject, state, t, wall, out)
            nxt = ev.next_at if pending is None else pending if ev.next_at is None else min(ev.next_at, pending)
            if nxt is None or nxt > now or nxt <= t:
                break
            t = nxt
        state.next_check_at = nxt if nxt is not None and nxt > t else None

    def _reconcile(self, subject: str, state: ParcelState, ev: Evaluation, t: float, out: Output) -> None:
        for kind in [k for k in state.open_issues if k not in ev.findings]:
            if t >= state.open_issues[kind][0]:
                # (Before its opening the walk has not reached the issue yet: absent there is not ended.)
                self._resolve(subject, state, kind, t, out)
        if not ev.findings:
            return
        context = _context(state)
        for kind, (finding, sev) in ev.findings.items():
            record = state.open_issues.get(kind)
            if record is None:
                # Opened when raised (``t``, the walk's time: the deadline itself, or later when a lower limit
                # or late news made the finding hold only from then); the deadline crossed is the finding's time.
                state.open_issues[kind] = [t, sev, context, finding.since]
                out.issues.append(self._issue("open", subject, state, finding, sev, t, t))
            elif state.finding_time(kind) != finding.since or record[1] != sev or record[2] != context:
                # A new exception reason, a severity step, or order facts that arrived after the opening.
                # The finding's own time is kept too, so the same finding is not reported again.
                state.open_issues[kind] = [record[0], sev, context, finding.since]
                out.issues.append(self._issue("update", subject, state, finding, sev, record[0], t))

    def _file(
        self, partition: int, subject: str, state: ParcelState, cursor: int | None = None, now: float | None = None
    ) -> int | None:
        """Put the subject in the deadline index if its next check is earlier than where it is filed (and a
        parcel waiting for its transit limit where the lanes' refreshes look for it); the bucket it was
        added to, if any."""
        self._file_transit(partition, subject, state)
        next_check_at = state.next_check_at
        if next_check_at is None:
            return None
        target = bucket_of(next_check_at)
        if state.indexed_bucket is not None and state.indexed_bucket <= target and state.index_epoch == self.epoch:
            return None
        if cursor is None:
            raw_cursor = self.index.get(cursor_key(partition))
            if raw_cursor is None:
                # First filing on this partition: the sweep starts from here, and no later than now (a
                # cursor in the future would hold back every earlier deadline filed after this one).
                cursor = target if now is None else min(target, bucket_of(now))
                self.index[cursor_key(partition)] = str(cursor).encode()
            else:
                cursor = int(raw_cursor)
        if target < cursor:
            target = cursor  # already swept past: due at the next tick
        append_to_bucket(self.index, bucket_key(partition, target), subject.encode() + b"\n")
        state.indexed_bucket = target
        state.index_epoch = self.epoch
        return target

    # -- the transit limit's refreshes -------------------------------------------------------------------

    def _file_transit(self, partition: int, subject: str, state: ParcelState) -> None:
        """File a parcel waiting for its transit limit (picked up, in flight, not yet overdue) under its pickup
        hour and lane, once (again after the lane or pickup changed, or by another process: see ``_file``)."""
        pickup = state.picked_up_at if state.picked_up_at is not None else state.first_scan_at
        filed = state.transit_filed
        if (
            pickup is None
            or state.signed_at is not None
            or state.closed_at is not None
            or state.exception_reason == "returned"
            or "transit_overdue" in state.open_issues
        ):
            if filed is not None:
                state.transit_filed = None  # (its line goes at the next refresh that looks at it)
            return
        hour = transit_bucket_of(pickup)
        origin, destination = state.origin_province, state.destination_province
        if (
            filed is not None and filed[0] == hour and filed[1] == origin and filed[2] == destination
            and state.index_epoch == self.epoch
        ):
            return
        line = f"{subject}\t{origin or ''}\t{destination or ''}\n".encode()
        append_to_bucket(self.index, transit_key(partition, hour), line)
        first = self.index.get(transit_first_key(partition))
        if first is None or hour < int(first):
            self.index[transit_first_key(partition)] = str(hour).encode()
        state.transit_filed = [hour, origin, destination]

    def _recheck_transit(self, partition: int, refresh: float, wall: float, out: Output) -> None:
        """At a refresh of the lanes' baselines: the parcels waiting for their transit limit that the new
        limits make due before the next refresh. One due already is walked to the refresh (raised then: a
        lower limit is acted on at once, its ``opened_at`` the refresh); one due later is filed for its new,
        earlier deadline. Only pickup hours that can hold such a parcel under their lane's limit are read
        (a line per parcel, its state only when due): the work is what falls due, not what is in flight.
        Lines of parcels no longer waiting are dropped; the rewrites wait like a sweep's removals."""
        raw_first = self.index.get(transit_first_key(partition))
        if raw_first is None:
            return
        baselines = self.ctx.baselines
        until = baselines.next_refresh(refresh)
        first = int(raw_first)
        last = transit_bucket_of(refresh)
        oldest: int | None = None
        removals = out.index_removals
        for hour in range(first, last + 1):
            key = transit_key(partition, hour)
            chunks = bucket_chunks(self.index, key)
            if not chunks:
                continue
            lines = [ln for ln in dict.fromkeys(b"".join(chunks.values()).split(b"\n")) if ln]
            kept: list[bytes] = []
            earliest_pickup = hour * TRANSIT_BUCKET_SECONDS
            for line in lines:
                subject, origin, destination = line.decode().split("\t")
                lane = (subject[: subject.rfind(":")], origin or None, destination or None)
                limit = baselines.transit_limit(*lane, refresh)[0] * HOUR
                if earliest_pickup + limit >= until:
                    kept.append(line + b"\n")  # nobody of this hour on this lane is due before the next refresh
                    continue
                if self._recheck_parcel(partition, subject, hour, lane, limit, refresh, until, wall, out):
                    kept.append(line + b"\n")
            if len(kept) != len(lines):
                removals.update(rewrite_bucket(key, chunks, kept))
            if kept and oldest is None:
                oldest = hour
        # The oldest hour still holding a parcel; past every hour looked at if none did (later ones may hold some).
        oldest = max(first, last + 1) if oldest is None else oldest
        if oldest != first:
            removals[transit_first_key(partition)] = str(oldest).encode()

    def _recheck_parcel(
        self, partition: int, subject: str, hour: int, lane: tuple[str, str | None, str | None], limit: float,
        refresh: float, until: float, wall: float, out: Output,
    ) -> bool:
        """``_recheck_transit`` for one filed parcel; whether it still waits for its transit limit."""
        raw = self.states.get(subject)
        if raw is None:
            return False
        state = ParcelState.decode(raw)
        filed = state.transit_filed
        if filed is None or filed[0] != hour or filed[1] != lane[1] or filed[2] != lane[2]:
            return False  # filed elsewhere since (or no longer waiting)
        pickup = state.picked_up_at if state.picked_up_at is not None else state.first_scan_at
        assert pickup is not None  # (filed only with one)
        deadline = pickup + limit
        if deadline >= until:
            return True
        if deadline <= refresh:
            # Due under the new limit: walked to the refresh, where the issue is raised.
            out.due += 1
            self._advance(subject, state, refresh, wall, out)
            state.next_check_at = refresh
            self._advance(subject, state, refresh, wall, out)
        elif state.next_check_at is None or deadline < state.next_check_at:
            out.due += 1
            state.next_check_at = deadline  # due before the next refresh, and earlier than filed
        else:
            return True
        state.next_check_at = self._with_purge(subject, state, state.next_check_at)
        self._file(partition, subject, state, cursor=bucket_of(refresh))
        encoded = state.encode()
        if encoded != raw:
            self.states[subject] = encoded
        return state.transit_filed is not None

    # -- buyer notifications ------------------------------------------------------------------------

    def _notify(self, subject: str, state: ParcelState, t: float, now: float, out: Output) -> float | None:
        """Emit each newly reached stage's notification once; returns the earliest deferred send time.

        ``t`` is the time the timeline is evaluated at, ``now`` the wall clock (for the age limit).
        """
        rules = self.notification_rules
        if rules is None or subject.startswith(ORDER_SUBJECT_PREFIX) or state.order_id is None:
            # No order facts yet (they travel through the order router): nobody to tell, and the
            # rules cannot be matched. The stages are notified when the facts arrive.
            return None
        earliest: float | None = None
        notified = state.notified
        for stage, reached in _stages(state):
            if reached is None or reached > t:
                continue
            record = notified.get(stage)
            note = None
            if record is None:
                if state.signed_at is not None or state.closed_at is not None or now - reached > rules.max_age_seconds:
                    notified[stage] = [reached, reached, 1.0]  # too late to be useful: skipped
                    continue
                note = rules.build(subject, stage, reached, _facts(state))
                if note is None:
                    notified[stage] = [reached, reached, 1.0]  # no rule for this parcel
                    continue
                record = notified[stage] = [reached, note["send_at"], 0.0]
            elif record[2]:
                continue
            if record[1] <= t:
                if state.signed_at is not None or state.closed_at is not None:
                    record[2] = 1.0  # delivered while the message waited for quiet hours to end
                    continue
                if note is None:
                    note = rules.build(subject, stage, record[0], _facts(state))
                # (else: built just above from the same stage, time and facts; the same note.)
                if note is not None:
                    out.notifications.append(note)
                record[2] = 1.0
            elif earliest is None or record[1] < earliest:
                earliest = record[1]
        return earliest

    # -- issue events -------------------------------------------------------------------------------

    def _resolve(self, subject: str, state: ParcelState, kind: str, at: float, out: Output) -> None:
        opened_at, sev = state.open_issues.pop(kind)[:2]
        issue = self._base(subject, state)
        resolved = format_time(at)
        issue.update(
            action="resolve",
            issue_key=f"{subject}|{kind}",
            kind=kind,
            severity=sev,
            opened_at=format_time(opened_at),
            at=resolved,
            resolved_at=resolved,
            resolution=_resolution(kind, state),
        )
        out.issues.append(issue)

    def _issue(
        self, action: str, subject: str, state: ParcelState, f: Finding, sev: str, opened_at: float, at: float
    ) -> dict[str, Any]:
        issue = self._base(subject, state)
        reason, evidence, suggested_action, evidence_data = f.texts()
        opened = format_time(opened_at)
        issue.update(
            action=action,
            issue_key=f"{subject}|{f.kind}",
            kind=f.kind,
            reason=reason,
            severity=sev,
            evidence=evidence,
            evidence_data=evidence_data,
            suggested_action=suggested_action,
            exception_reason=f.exception_reason,
            opened_at=opened,
            at=opened if at == opened_at else format_time(at),  # an opening is at its own time
            resolved_at=None,
            resolution=None,
        )
        return issue

    def _base(self, subject: str, state: ParcelState) -> dict[str, Any]:
        if subject.startswith(ORDER_SUBJECT_PREFIX):
            carrier = number = parcel = None
        else:
            carrier, number = subject.rsplit(":", 1)  # an unmapped carrier is "source:code"
            parcel = subject
        lane = (
            f"{carrier} {state.origin_province or '?'}→{state.destination_province or '?'}" if carrier else None
        )
        return {
            "subject": subject,
            "parcel": parcel,
            "carrier": carrier,
            "tracking_number": number,
            "order_id": state.order_id or (subject[len(ORDER_SUBJECT_PREFIX):] if parcel is None else None),
            "shop": state.shop or "unknown",
            "platform": state.platform or "other",
            "lane": lane,
            "origin_province": state.origin_province,
            "destination_province": state.destination_province,
            "destination_city": state.destination_city,
            "order_value": state.order_value,
            # The parcel's story and order facts for staff (the queue keeps them beside the issue).
            "scans": state.scans,
            "autoconfirm_at": autoconfirm_deadline(state, self.ctx),
            "paid_at": state.paid_at,
            "shipped_at": state.shipped_at,
            "category": state.category,
        }

    def _delivery(self, subject: str, state: ParcelState) -> dict[str, Any]:
        return {
            "parcel": subject,  # (with ``signed_at``: how a reader knows a copy sent again after a crash)
            "carrier": subject.rsplit(":", 1)[0],
            "origin_province": state.origin_province,
            "destination_province": state.destination_province,
            "picked_up_at": state.picked_up_at,
            "signed_at": state.signed_at,
            "shop": state.shop,
            # For the carrier's scan cadence (detectors/lanes.py).
            "source": state.source,
            "first_transit_scan_at": state.first_transit_scan_at,
            "last_transit_scan_at": state.last_transit_scan_at,
        }


def _logistics(kind: str, subject: str, state: ParcelState) -> dict[str, Any]:
    """A parcel's milestone for its shop's logistics health: ``shipped``, ``picked_up`` or ``signed``."""
    return {
        "kind": kind, "parcel": subject, "shop": state.shop, "platform": state.platform, "carrier": subject.rsplit(":", 1)[0],
        "origin_province": state.origin_province, "destination_province": state.destination_province,
        "shipped_at": state.shipped_at, "picked_up_at": state.pickup_at, "signed_at": state.signed_at,
    }


def _earliest_time(subject: str, state: ParcelState) -> float | None:
    """The earliest time known of the subject's own life (None: none known): for a parcel, its shipping and
    scans (the order's payment may lie weeks before: a pre-sale, goods made to order); for an order, any."""
    own = [state.shipped_at, state.info_received_at, state.first_scan_at, state.signed_at, state.exception_at,
           state.closed_at]
    if subject.startswith(ORDER_SUBJECT_PREFIX):
        own += (state.paid_at, state.confirmed_at)
    times = [t for t in own if t is not None]
    if not times:
        times = [t for t in (state.paid_at, state.confirmed_at) if t is not None]
    return min(times) if times else None


def _stages(state: ParcelState) -> tuple[tuple[str, float | None], ...]:
    """Each notification stage and when the parcel reached it (None: not reached)."""
    issues = state.open_issues
    delayed: float | None = None
    locker: float | None = None
    if issues:
        transit = issues.get("transit_overdue")
        stale = issues.get("tracking_stale")
        if transit is not None:
            # the earlier of the two openings
            delayed = stale[0] if stale is not None and stale[0] < transit[0] else transit[0]
        elif stale is not None:
            delayed = stale[0]
        record = issues.get("locker_uncollected")
        if record is not None:
            locker = record[0]
    return (
        ("picked_up", state.picked_up_at if state.picked_up_at is not None else state.first_scan_at),
        ("arrived_city", state.arrived_city_at),
        ("out_for_delivery", state.out_for_delivery_at),
        ("exception", state.exception_at),
        ("delayed", delayed),
        ("locker_uncollected", locker),
    )


def _facts(state: ParcelState) -> dict[str, Any]:
    delay = None
    if "transit_overdue" in state.open_issues or "tracking_stale" in state.open_issues:
        delay = "晚到"
    return {
        "order_id": state.order_id, "shop": state.shop, "platform": state.platform, "order_value": state.order_value,
        "city": state.destination_city or state.last_city, "province": state.destination_province,
        "exception_reason": state.exception_reason, "expected_delay": delay,
    }


def _context(state: ParcelState) -> str:
    """The order facts an open issue shows; when they change, the issue is updated."""
    return f"{state.order_id}|{state.shop}|{state.platform}|{state.order_value}|{state.origin_province}|{state.destination_province}"


def _resolution(kind: str, state: ParcelState) -> str:
    """Why an issue ended by itself, in words staff can filter on."""
    if state.closed_at is not None:
        return f"order_{state.closed_kind or 'closed'}"
    if state.signed_at is not None:
        return "signed"
    if kind == "ship_overdue" and state.shipped_at is not None:
        return "shipped"
    if kind == "pickup_overdue" and state.first_scan_at is not None:
        return "picked_up"
    if kind == "tracking_stale":
        return "scanned_again"
    if kind == "transit_overdue" and state.returned:
        return "returned"
    if kind == "autoconfirm_imminent":
        if state.confirmed_at is not None:
            return "order_confirmed"
        return "deadline_moved_or_passed"
    if kind == "locker_uncollected":
        return "collected"
    return "condition_ended"
