"""Lane incidents, pure: open at the threshold, suppress, re-notify at most every X minutes, close when the count falls."""

from __future__ import annotations

from typing import Any

from alerting.config import IncidentSettings
from alerting.incidents import LaneIncidents

T0 = 1_800_000_000.0
MIN = 60.0
SETTINGS = IncidentSettings(threshold=5, window_minutes=60, renotify_minutes=10, close_below=3, severity="high")


def issue(n: int, *, action: str = "open", kind: str = "pickup_overdue", carrier: str = "ZTO", origin: str | None = "广东",
          dest: str | None = "新疆", shop: str = "shop-a") -> dict[str, Any]:
    number = f"73{n:05d}"
    return {
        "action": action, "issue_key": f"{carrier}:{number}|{kind}", "kind": kind, "carrier": carrier, "tracking_number": number,
        "origin_province": origin, "destination_province": dest, "shop": shop, "platform": "taobao", "severity": "low",
    }


def feed(inc: LaneIncidents, issues: list[dict[str, Any]], now: float) -> list[tuple[bool, list[dict[str, Any]]]]:
    out = []
    for i in issues:
        v = inc.observe(i, now)
        out.append((v.suppress, list(v.alerts)))
    return out


def test_opens_at_the_threshold_and_then_suppresses_the_lane() -> None:
    inc = LaneIncidents(SETTINGS)
    results = feed(inc, [issue(n) for n in range(8)], T0)
    assert [s for s, _ in results] == [False] * 4 + [True] * 4
    assert [len(a) for _, a in results] == [0, 0, 0, 0, 1, 0, 0, 0]
    alert = results[4][1][0]
    assert alert["action"] == "open" and alert["kind"] == "lane_incident"
    assert alert["lane"] == "ZTO 广东→新疆" and alert["count"] == 5 and alert["carrier"] == "ZTO"
    assert alert["kinds"] == {"pickup_overdue": 5} and alert["severity"] == "high"
    assert alert["sample"][0] == "7300004"  # the newest parcel first
    assert alert["issue_key"] == "lane:ZTO|广东|新疆" and alert["opened_at"] == alert["at"]
    # Updates of the lane's issues are covered too; other kinds and other lanes are not.
    assert inc.observe(issue(1, action="update"), T0).suppress
    assert not inc.observe(issue(1, kind="carrier_exception"), T0).suppress
    assert not inc.observe(issue(1, dest="西藏"), T0).suppress
    assert not inc.observe(issue(1, carrier="YTO"), T0).suppress


def test_what_does_not_count() -> None:
    inc = LaneIncidents(SETTINGS)
    # Redelivered duplicates of one issue, kinds outside the list, unknown provinces, updates: none add up.
    batch = [issue(1)] * 10 + [issue(n, kind="carrier_exception") for n in range(10)]
    batch += [issue(n, origin=None) for n in range(10)] + [issue(n + 100, action="update") for n in range(10)]
    assert all(not s and not a for s, a in feed(inc, batch, T0))
    assert inc.active() == []


def test_renotified_with_the_new_count_at_most_every_x_minutes() -> None:
    inc = LaneIncidents(SETTINGS)
    feed(inc, [issue(n) for n in range(5)], T0)
    assert feed(inc, [issue(n) for n in range(5, 9)], T0 + 1 * MIN) == [(True, [])] * 4  # counted, not re-sent yet
    assert inc.tick(T0 + 9 * MIN) == []
    [update] = inc.tick(T0 + 10 * MIN)
    assert update["action"] == "update" and update["count"] == 9
    assert inc.tick(T0 + 25 * MIN) == []  # no change, no message
    _, [again] = feed(inc, [issue(9)], T0 + 25 * MIN)[0]
    assert again["count"] == 10
    assert inc.active()[0]["count"] == 10


def test_closes_when_the_count_falls_below_close_below_and_can_open_again() -> None:
    inc = LaneIncidents(SETTINGS)
    feed(inc, [issue(n) for n in range(6)], T0)
    resolved = feed(inc, [issue(n, action="resolve") for n in range(4)], T0 + MIN)
    # 5, 4, 3 are above close_below (3): a wobble around the threshold does not close it; 2 does.
    assert [a[0]["action"] if a else None for _, a in resolved] == [None, None, None, "resolve"]
    assert all(s for s, _ in resolved)  # the closing resolve was covered by the incident too
    closing = resolved[-1][1][0]
    assert closing["count"] == 2 and closing["resolved_at"] is not None
    assert inc.active() == []
    assert not inc.observe(issue(50), T0 + 2 * MIN).suppress
    out = feed(inc, [issue(n) for n in range(51, 53)], T0 + 2 * MIN)
    assert out[-1][1][0]["action"] == "open" and out[-1][1][0]["count"] == 5


def test_counts_age_out_of_the_window_and_the_incident_closes() -> None:
    inc = LaneIncidents(SETTINGS)
    feed(inc, [issue(n) for n in range(3)], T0)
    feed(inc, [issue(n) for n in range(3, 6)], T0 + 30 * MIN)
    assert inc.active()[0]["count"] == 6
    [update] = inc.tick(T0 + 61 * MIN)  # the first three left the window
    assert update["action"] == "update" and update["count"] == 3
    [closed] = inc.tick(T0 + 91 * MIN)
    assert closed["action"] == "resolve" and closed["count"] == 0
    assert inc.tick(T0 + 200 * MIN) == [] and inc._lanes == {}  # nothing is kept for a quiet lane


def test_parcels_spread_over_more_than_the_window_never_open_an_incident() -> None:
    inc = LaneIncidents(SETTINGS)
    for n in range(20):
        v = inc.observe(issue(n), T0 + n * 16 * MIN)  # at most 4 within any hour
        assert not v.suppress and not v.alerts


def test_incident_lists_shops_and_kinds() -> None:
    inc = LaneIncidents(SETTINGS)
    batch = [issue(1, shop="shop-b"), issue(2, kind="tracking_stale"), issue(3), issue(4, kind="transit_overdue"), issue(5)]
    alert = feed(inc, batch, T0)[-1][1][0]
    assert alert["shops"] == ["shop-a", "shop-b"] and alert["shop"] is None and alert["platforms"] == ["taobao"]
    assert alert["kinds"] == {"pickup_overdue": 3, "tracking_stale": 1, "transit_overdue": 1}
