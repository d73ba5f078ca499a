"""Lane incidents: one alert for a lane in trouble instead of one per parcel.

When a carrier stops collecting in a province, or a sorting centre is flooded, hundreds of parcels on
the same lane (carrier, origin province, destination province) go overdue within an hour. Staff need one
message naming the lane and the count, not hundreds. Pure logic with ``now`` injected:

* a parcel counts on its lane when one of its issues of the configured kinds *opens*, for ``window``
  minutes or until that issue resolves (an issue key is counted once, whatever redelivery does);
* at ``threshold`` the incident opens (one ``open`` alert); while it is open, the lane's issues of those
  kinds are marked ``suppress`` so routes that opt into grouping leave them out;
* a changed count is re-notified (``update``) at most every ``renotify`` minutes;
* below ``close_below`` it closes (``resolve``). The gap between the two stops a count wobbling around the
  threshold from opening and closing the incident with every parcel.

Nothing is taken out of the input: the router still gives every issue to the routes that do not group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.events import format_time

from .config import IncidentSettings
from .render import INCIDENT_KIND

MAX_SAMPLE = 5
MAX_SHOPS = 20

LaneKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class _Member:
    at: float
    kind: str
    shop: str | None
    platform: str | None
    tracking_number: str | None


@dataclass(slots=True)
class _Lane:
    # issue_key -> member, in the order they were counted (oldest first), so expiry stops at the first young one.
    members: dict[str, _Member] = field(default_factory=dict)
    opened_at: float | None = None
    notified_at: float = 0.0
    notified_count: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """``suppress``: the issue is covered by an open lane incident; ``alerts``: incident messages to route now."""

    suppress: bool
    alerts: tuple[dict[str, Any], ...] = ()


NOT_COVERED = Verdict(False)

# What ``observe`` reads of an issue event (with ``kind`` and ``action``), beside what every issue event has.
COUNTED_FIELDS = ("carrier", "origin_province", "destination_province", "shop", "platform", "tracking_number")


class LaneIncidents:
    def __init__(self, settings: IncidentSettings) -> None:
        self.settings = settings
        self._window = settings.window_minutes * 60
        self._renotify = settings.renotify_minutes * 60
        self._lanes: dict[LaneKey, _Lane] = {}

    @staticmethod
    def lane_of(issue: Mapping[str, Any]) -> LaneKey | None:
        carrier, origin, dest = issue.get("carrier"), issue.get("origin_province"), issue.get("destination_province")
        if not (carrier and origin and dest):
            return None  # an unknown province is no lane: "ZTO ?→新疆" would lump unrelated parcels together
        return (str(carrier), str(origin), str(dest))

    def counts(self, issue: Mapping[str, Any]) -> bool:
        """Whether ``observe`` looks at this issue event at all (of a counted kind, on a known lane)."""
        return issue.get("kind") in self.settings.kinds and self.lane_of(issue) is not None

    def observe(self, issue: Mapping[str, Any], now: float) -> Verdict:
        if issue.get("kind") not in self.settings.kinds:
            return NOT_COVERED
        key = self.lane_of(issue)
        if key is None:
            return NOT_COVERED
        lane = self._lanes.get(key)
        action = issue.get("action")
        issue_key = str(issue.get("issue_key") or "")
        if action == "open":
            if lane is None:
                lane = self._lanes[key] = _Lane()
            # Pop first so a re-opened key moves to the young end and the dict stays in time order.
            lane.members.pop(issue_key, None)
            lane.members[issue_key] = _Member(
                now, str(issue["kind"]), issue.get("shop"), issue.get("platform"), issue.get("tracking_number")
            )
        elif action == "resolve" and lane is not None:
            lane.members.pop(issue_key, None)
        if lane is None:
            return NOT_COVERED
        was_open = lane.opened_at is not None
        alerts = self._evaluate(key, lane, now)
        covered = was_open or lane.opened_at is not None
        if lane.opened_at is None and not lane.members:
            del self._lanes[key]
        return Verdict(covered, tuple(alerts))

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Age counts out of the window, re-notify changed counts, close what fell: call every few seconds."""
        alerts: list[dict[str, Any]] = []
        for key in list(self._lanes):
            lane = self._lanes[key]
            alerts.extend(self._evaluate(key, lane, now))
            if lane.opened_at is None and not lane.members:
                del self._lanes[key]
        return alerts

    def active(self) -> list[dict[str, Any]]:
        """The open incidents as they stand (for a status page)."""
        return [self._alert("update", k, lane, lane.notified_at) for k, lane in self._lanes.items() if lane.opened_at is not None]

    def _evaluate(self, key: LaneKey, lane: _Lane, now: float) -> list[dict[str, Any]]:
        cutoff = now - self._window
        while lane.members:
            oldest = next(iter(lane.members))
            if lane.members[oldest].at >= cutoff:
                break
            del lane.members[oldest]
        count = len(lane.members)
        s = self.settings
        if lane.opened_at is None:
            if count < s.threshold:
                return []
            lane.opened_at = now
            action = "open"
        elif count < s.close_below:
            alert = self._alert("resolve", key, lane, now)
            lane.opened_at = None
            return [alert]
        elif count != lane.notified_count and now - lane.notified_at >= self._renotify:
            action = "update"
        else:
            return []
        lane.notified_at, lane.notified_count = now, count
        return [self._alert(action, key, lane, now)]

    def _alert(self, action: str, key: LaneKey, lane: _Lane, now: float) -> dict[str, Any]:
        carrier, origin, dest = key
        members = list(lane.members.values())
        count = len(members)
        shops = sorted({m.shop for m in members if m.shop})
        lane_name = f"{carrier} {origin}→{dest}"
        window = self.settings.window_minutes
        reason = (f"{lane_name}：{count} 个包裹在 {window:g} 分钟内出现问题" if action != "resolve"
                  else f"{lane_name}：问题包裹降至 {count} 个")
        ident = f"lane:{carrier}|{origin}|{dest}"
        return {
            "action": action,
            "issue_key": ident,
            "kind": INCIDENT_KIND,
            "subject": ident,
            "parcel": None,
            "carrier": carrier,
            "tracking_number": None,
            "order_id": None,
            "shop": shops[0] if len(shops) == 1 else None,
            "shops": shops[:MAX_SHOPS],
            "platforms": sorted({m.platform for m in members if m.platform}),
            "lane": lane_name,
            "origin_province": origin,
            "destination_province": dest,
            "count": count,
            "kinds": dict(Counter(m.kind for m in members)),
            # The most recent ones: the parcels staff can still act on first.
            "sample": [m.tracking_number for m in members[-MAX_SAMPLE:] if m.tracking_number][::-1],
            "window_minutes": window,
            "severity": self.settings.severity,
            "reason": reason,
            "opened_at": format_time(lane.opened_at),
            "at": format_time(now),
            "resolved_at": format_time(now) if action == "resolve" else None,
        }
