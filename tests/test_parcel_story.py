"""The parcel's story kept with its state: the newest scans with the carrier's own words, bounded, the same
whatever order or how often the scans arrive, and without the phone numbers or names a carrier writes."""

from __future__ import annotations

import itertools

from domain.events import TrackingUpdate
from domain.state import SCANS_KEPT, ParcelState

T0 = 1_793_584_800.0


def scan(k: int, status: str = "in_transit", text: str | None = None, reason: str | None = None) -> TrackingUpdate:
    return TrackingUpdate(f"e{k}", "ZTO", "1", status, T0 + k * 3600, exception_reason=reason, city="杭州市",
                          raw_text=text)


def story(updates: list[TrackingUpdate]) -> list[tuple[object, ...]]:
    s = ParcelState()
    for up in updates:
        s.apply_tracking(up)
    assert ParcelState.decode(s.encode()) == s
    return [tuple(x) for x in s.scans]


def test_the_newest_scans_whatever_order_and_however_often_they_come() -> None:
    updates = [scan(0, "picked_up", "【广州市】已揽收"), scan(1), scan(2, text="【兰州市】到达兰州转运中心"), scan(3),
               scan(4, "exception", "超区，请联系收件人自提", "out_of_area"), scan(5, "arrived_city"), scan(6, "out_for_delivery")]
    expected = story(updates)
    assert len(expected) == SCANS_KEPT and expected[-1] == (T0 + 6 * 3600, "out_for_delivery", None, "杭州市")
    assert (T0 + 4 * 3600, "exception", "超区，请联系收件人自提", None, "out_of_area") in expected
    for order in itertools.islice(itertools.permutations(updates), 0, 5000, 97):
        assert story(list(order) + list(order[:3])) == expected


def test_numbers_and_signers_are_masked_and_texts_clipped() -> None:
    [kept] = story([scan(0, "signed", "【北京市】已签收，签收人：王先生，有问题请联系 13812345678 或 010-88886666")])
    assert kept[2] == "【北京市】已签收，签收人：*，有问题请联系 138****5678 或 010-****"
    [long] = story([scan(0, text="快" * 200)])
    assert len(str(long[2])) <= 48
