"""``make eval``: how well the transit detectors put the right parcels in front of staff, and how early.

For each scenario of ``bench/scenarios.py`` (shops' histories with the promise the platform made each buyer,
never given to parcelwatch), the events run through the worker's own code in event time (``core/replay.py``:
the processor, the learned baselines, the deadline sweeps). A parcel is flagged by a detector when the
detector raises its issue (the issue's ``opened_at``, the moment it was raised). Ground truth: late = signed
after the promise, or never delivered (refused parcels are left out: that is not a delivery time).

Per detector: parcels flagged, precision (flagged that were late), recall (late that were flagged) and the
median lead (the promise minus the flag time, over the late parcels flagged; negative: flagged after the
promise had passed). Beside it, every fixed threshold a seller could configure in an ERP ("not signed K days
after pickup", K in half days), and which of them dominate the detector (at least as good on all three,
better on one). Prints figures only; nothing is asserted.

Run: ``.venv/bin/python -m bench.eval [--scale 0.5] [--only dense marketplace ...] [--config override.yaml]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import config
from core.replay import Engine, play
from domain.events import parse_time
from domain.vocabulary import DAY

from .scenarios import SCENARIOS, Scenario, Truth, describe

DETECTORS = ("transit_overdue", "tracking_stale")
# The target the issue sets, where the data allows it.
TARGET_RECALL, TARGET_PRECISION, TARGET_LEAD_DAYS = 0.93, 0.80, 3.0


@dataclass(frozen=True)
class Score:
    rule: str
    flagged: int
    precision: float
    recall: float
    lead_days: float | None

    def dominates(self, other: Score) -> bool:
        mine, theirs = self._triple(), other._triple()
        return all(a >= b for a, b in zip(mine, theirs, strict=True)) and mine != theirs

    def _triple(self) -> tuple[float, float, float]:
        return self.precision, self.recall, -1e9 if self.lead_days is None else self.lead_days

    def row(self) -> str:
        lead = "-" if self.lead_days is None else f"{self.lead_days:.1f} d"
        return f"  {self.rule:<40}{self.flagged:>9,}{self.precision:>11.0%}{self.recall:>9.0%}{lead:>12}"


def score(rule: str, parcels: Sequence[Truth], flag_at: dict[str, float]) -> Score:
    late = [p for p in parcels if p.late]
    flagged = [p for p in parcels if p.subject in flag_at]
    hits = [p for p in flagged if p.late]
    leads = [(p.promise - flag_at[p.subject]) / DAY for p in hits]
    return Score(rule, len(flagged), len(hits) / len(flagged) if flagged else 0.0, len(hits) / len(late) if late else 0.0,
                 statistics.median(leads) if leads else None)


def fixed(k_days: float, parcels: Sequence[Truth]) -> dict[str, float]:
    """"Not signed ``k_days`` after pickup": flagged then, if the parcel was still in flight."""
    return {p.subject: p.picked_up_at + k_days * DAY for p in parcels if p.ended_at > p.picked_up_at + k_days * DAY}


def detector_flags(scenario: Scenario, settings: config.Settings) -> dict[str, dict[str, float]]:
    """kind -> parcel -> when its first issue of that kind was raised."""
    engine = Engine(settings)
    result = play(engine, scenario.events, until=scenario.end)
    flags: dict[str, dict[str, float]] = {kind: {} for kind in DETECTORS}
    for issue in result.issues.values():
        kind = issue["kind"]
        if kind in flags and issue["parcel"] is not None:
            t = parse_time(issue["opened_at"], "opened_at")
            seen = flags[kind].get(issue["parcel"])
            flags[kind][issue["parcel"]] = t if seen is None else min(seen, t)
    return flags


def evaluate(scenario: Scenario, settings: config.Settings) -> list[str]:
    started = time.perf_counter()
    flags = detector_flags(scenario, settings)
    seconds = time.perf_counter() - started
    parcels = [p for p in scenario.parcels if p.scored and p.promise < scenario.end]
    lines = [f"== {scenario.name}: {scenario.title}", *(f"   {d}" for d in describe(scenario)),
             f"   replayed in {seconds:.0f} s ({len(scenario.events) / seconds:,.0f} events/s)",
             f"  {'rule':<40}{'flagged':>9}{'precision':>11}{'recall':>9}{'median lead':>12}"]
    detectors = [score(f"parcelwatch {kind}", parcels, flags[kind]) for kind in DETECTORS]
    lines += [d.row() for d in detectors]
    frontier: list[Score] = []
    k = 0.5
    while True:
        s = score(f"fixed: not signed {k:g} d after pickup", parcels, fixed(k, parcels))
        if s.flagged == 0 or s.recall < 0.05:
            break
        frontier.append(s)
        k += 0.5
    transit = detectors[0]
    # The fixed rules around the detector's operating point and the ERP-style ones, not all of them.
    shown = [s for s in frontier if s.recall >= 0.5 or s.precision >= 0.5]
    lines += [s.row() for s in shown]
    if len(shown) < len(frontier):
        lines.append(f"  ({len(frontier) - len(shown)} more fixed thresholds, each with precision and recall under 50%)")
    for kind, detector in zip(DETECTORS, detectors, strict=True):
        dominating = [s.rule.split(": ")[1].removeprefix("not signed ").removesuffix(" after pickup")
                      for s in frontier if s.dominates(detector)]
        lines.append(f"  {kind} dominated by: " + (", ".join(dominating) if dominating else "none"))
    lead = transit.lead_days
    missed = [f"{name} {value}" for name, value, ok in (
        ("recall", f"{transit.recall:.1%}", transit.recall >= TARGET_RECALL),
        ("precision", f"{transit.precision:.1%}", transit.precision >= TARGET_PRECISION),
        ("median lead", "none" if lead is None else f"{lead:.2f} d", lead is not None and lead >= TARGET_LEAD_DAYS),
    ) if not ok]
    lines.append(f"  target (recall >= {TARGET_RECALL:.0%} at precision >= {TARGET_PRECISION:.0%}, median lead >= "
                 f"{TARGET_LEAD_DAYS:g} d): {'met' if not missed else 'not met: ' + ', '.join(missed)}")
    best = max(frontier, key=lambda s: 2 * s.precision * s.recall / (s.precision + s.recall or 1), default=None)
    if best is not None:
        lines.append(f"  best fixed threshold by F1: {best.rule.split(': ')[1]}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="volume of the shops (the marketplace keeps its size)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="scenarios to run (default: all)")
    parser.add_argument("--config", help="a config override file (as PARCELWATCH_CONFIG)")
    args = parser.parse_args(argv)
    settings = config.load(args.config, env={})
    for name in args.only or list(SCENARIOS):
        scenario = SCENARIOS[name](scale=1.0 if name == "marketplace" else args.scale)
        for line in evaluate(scenario, settings):
            print(line)
        print()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
