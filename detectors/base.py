"""Shared types of the detectors: what a rule found, when to look again, and how severe it is.

Detectors are pure: they read a ``ParcelState``, an injected ``now`` (UTC epoch seconds) and a
``DetectorContext`` (thresholds and lane baselines), and never touch a clock, a socket or a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from config import Settings
from domain.vocabulary import HOUR, SEVERITIES

if TYPE_CHECKING:
    from .lanes import Baseline


# What a deferred finding's texts are rendered from: a rule's text function and the values it read.
Texts = tuple[str, str, str, dict[str, Any]]  # reason, evidence, suggested_action, evidence_data
TextRenderer = Callable[[tuple[Any, ...]], Texts]


class Finding:
    """One problem a detector sees on a subject right now.

    ``kind``, ``since``, ``late_hours`` and ``exception_reason`` are plain values. The texts (``reason``,
    ``evidence``, ``suggested_action``, ``evidence_data``) may be deferred (``Finding.deferred``): most
    findings only decide whether an issue is due (kind, time, severity), and an issue event is built for
    few of them, so a rule hands over the values it read and the texts are rendered on first access.
    """

    __slots__ = ("_args", "_render", "_texts", "exception_reason", "kind", "late_hours", "since", "steps")

    def __init__(
        self,
        kind: str,
        # When the condition began (a deadline, or the event that caused it). Derived from the data, never
        # from the clock, so a replay and a live run open the issue at the same instant.
        since: float,
        reason: str,
        evidence: str,
        suggested_action: str,
        # Hours past the threshold at ``now``; drives severity escalation.
        late_hours: float = 0.0,
        # Structured evidence for tools: the times and the baseline used.
        evidence_data: dict[str, Any] | None = None,
        exception_reason: str | None = None,
    ) -> None:
        self.kind = kind
        self.since = since
        self.late_hours = late_hours
        self.exception_reason = exception_reason
        self.steps: int | None = None
        self._texts: Texts | None = (reason, evidence, suggested_action, {} if evidence_data is None else evidence_data)
        self._render: TextRenderer | None = None
        self._args: tuple[Any, ...] = ()

    @classmethod
    def deferred(
        cls, kind: str, since: float, render: TextRenderer, args: tuple[Any, ...], exception_reason: str | None = None
    ) -> Finding:
        """A finding whose texts are ``render(args)``, computed when first read. ``args`` must hold values
        (never the mutable parcel state), so the texts are those of the moment the rule ran."""
        f = cls.__new__(cls)
        f.kind = kind
        f.since = since
        f.late_hours = 0.0
        f.exception_reason = exception_reason
        f.steps = None
        f._texts = None
        f._render = render
        f._args = args
        return f

    def texts(self) -> Texts:
        texts = self._texts
        if texts is None:
            assert self._render is not None
            texts = self._texts = self._render(self._args)
        return texts

    @property
    def reason(self) -> str:
        return self.texts()[0]

    @property
    def evidence(self) -> str:
        return self.texts()[1]

    @property
    def suggested_action(self) -> str:
        return self.texts()[2]

    @property
    def evidence_data(self) -> dict[str, Any]:
        return self.texts()[3]

    def _key(self) -> tuple[Any, ...]:
        return (self.kind, self.since, *self.texts(), self.late_hours, self.exception_reason, self.steps)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Finding)
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    def __repr__(self) -> str:
        reason, evidence, action, data = self.texts()
        return (
            f"Finding(kind={self.kind!r}, since={self.since!r}, reason={reason!r}, evidence={evidence!r}, "
            f"suggested_action={action!r}, late_hours={self.late_hours!r}, evidence_data={data!r}, "
            f"exception_reason={self.exception_reason!r})"
        )


@dataclass(slots=True)
class Check:
    """A detector's answer: the finding now (if any) and the next moment its answer could change."""

    finding: Finding | None = None
    next_at: float | None = None


NO_CHECK = Check()


class TransitBaseline(Protocol):
    """What the transit and tracking-stale detectors need from the learned baselines (detectors/lanes.py)."""

    def transit_limit(
        self, carrier: str, origin: str | None, destination: str | None, now: float
    ) -> tuple[float, str, int]:
        """(limit in hours, source label, deliveries behind it) for the lane as of ``now``."""
        ...

    def baseline(self, carrier: str, origin: str | None, destination: str | None, now: float) -> Baseline:
        """The lane's whole baseline as of ``now`` (the same limit), for a finding's severity and evidence."""
        ...

    def stale_limit_hours(self, carrier: str, source: str | None, configured_hours: float, now: float) -> float | None:
        """How long a parcel may go without a scan in transit (None: its source reports no such scans)."""
        ...

    def refreshed_at(self, now: float) -> float:
        """The refresh of the baselines in force at ``now`` (answers do not move between refreshes)."""
        ...

    def next_refresh(self, now: float) -> float:
        """The first refresh after ``now``."""
        ...


@dataclass(slots=True)
class DetectorContext:
    settings: Settings
    baselines: TransitBaseline
    # The thresholds the rules' deadlines (and ``earliest_deadline``, for nearly every event) count with, in
    # seconds, made once from ``settings``.
    pickup_seconds: float = field(init=False)
    pickup_seconds_by_category: dict[str, float] = field(init=False)
    stale_hours: float = field(init=False)
    stale_seconds: float = field(init=False)
    stale_out_for_delivery_seconds: float = field(init=False)
    autoconfirm_seconds_by_platform: dict[str, float] = field(init=False)
    autoconfirm_warning_seconds: float = field(init=False)
    locker_seconds: float = field(init=False)

    def __post_init__(self) -> None:
        th = self.settings.thresholds
        self.pickup_seconds = th.pickup_overdue_hours * HOUR
        self.pickup_seconds_by_category = {k: v * HOUR for k, v in th.pickup_overdue_hours_by_category.items()}
        self.stale_hours = th.tracking_stale_hours
        self.stale_seconds = th.tracking_stale_hours * HOUR
        self.stale_out_for_delivery_seconds = th.tracking_stale_out_for_delivery_hours * HOUR
        self.autoconfirm_seconds_by_platform = {k: v * 24 * HOUR for k, v in th.autoconfirm_default_days.items()}
        self.autoconfirm_warning_seconds = th.autoconfirm_warning_hours * HOUR
        self.locker_seconds = th.locker_uncollected_hours * HOUR


def hours(seconds: float) -> str:
    h = seconds / HOUR
    return f"{h / 24:.1f} d" if h >= 48 else f"{h:.1f} h"


def severity(ctx: DetectorContext, kind: str, finding: Finding, order_value: float | None, remote: bool) -> str:
    """Base severity per kind, one level up for a high-value order, for how late (the levels the rule gives,
    ``Finding.steps``: transit_overdue's percentile steps; else one when very late), for remote regions."""
    rules = ctx.settings.severity
    level = _SEVERITY_LEVEL[rules.base[kind]]
    if order_value is not None and order_value >= rules.high_value_order:
        level += 1
    steps = finding.steps
    if steps is not None:
        level += steps
    elif finding.late_hours >= rules.very_late_hours:
        level += 1
    if remote:
        level += rules.remote_region_step
    return SEVERITIES[max(0, min(level, _TOP_LEVEL))]


# Level of each severity name (a dict lookup: this runs for every finding of every event).
_SEVERITY_LEVEL = {name: level for level, name in enumerate(SEVERITIES)}
_TOP_LEVEL = len(SEVERITIES) - 1


def severity_escalation_at(ctx: DetectorContext, finding: Finding, deadline: float) -> float:
    """When a finding past ``deadline`` becomes very late (its severity may rise then)."""
    return deadline + ctx.settings.severity.very_late_hours * HOUR
