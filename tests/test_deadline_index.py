"""The deadline index's chunked buckets: bounded writes when thousands of subjects fall due in one minute."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

import config
from core.deadline_index import CHUNK_SUBJECTS, bucket_of
from core.processor import Processor
from detectors import LaneBaselines
from domain.events import TrackingUpdate

S = config.load(env={})
T0 = 1_793_584_800.0  # 2026-11-02T02:00:00Z


class RecordingTable(MutableMapping[str, bytes]):
    """A dict that records the size of every value written (a Faust table writes each whole value)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.written: list[tuple[str, int]] = []

    def __getitem__(self, key: str) -> bytes:
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.written.append((key, len(value)))
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def exception_scan(i: int, t: float) -> TrackingUpdate:
    return TrackingUpdate(f"e{i}", "ZTO", f"7{i:09d}", "exception", t, exception_reason="lost")


def backlog(n: int, epoch: int = 1) -> tuple[Processor, dict[str, bytes], RecordingTable]:
    """``n`` parcels whose carrier exceptions all come due in the same minute (a backlog catching up)."""
    states: dict[str, bytes] = {}
    index = RecordingTable()
    proc = Processor(S, LaneBaselines(S.lanes), states, index, epoch=epoch)
    proc.on_tick(0, T0)
    for i in range(n):
        proc.on_tracking(0, exception_scan(i, T0 - 3600), T0)
    return proc, states, index


def test_a_crowded_bucket_is_written_in_chunks_of_bounded_size() -> None:
    n = 3 * CHUNK_SUBJECTS + 5
    _, _, index = backlog(n)
    bucket = f"0:{bucket_of(T0)}"
    subject_lines = [k for k in index.data if k.startswith(bucket) and not k.endswith(":tail")]
    assert sorted(subject_lines) == sorted([bucket, f"{bucket}:1", f"{bucket}:2", f"{bucket}:3"])
    assert index.data[f"{bucket}:tail"] == b"3"
    filed = b"".join(index.data[k] for k in subject_lines).decode().split()
    assert sorted(filed) == sorted(f"ZTO:7{i:09d}" for i in range(n))
    # No write is larger than one full chunk: filing cost does not grow with the bucket.
    largest_chunk = max(len(index.data[k]) for k in subject_lines)
    assert max(size for key, size in index.written if key.startswith(bucket)) <= largest_chunk
    # (Besides its deadline, each parcel in flight is filed once under its pickup hour for the lanes' refreshes.)
    assert sum(1 for key, _ in index.written if ":transit" not in key) < 2 * n


def test_a_sweep_opens_every_subject_of_every_chunk_once_and_removes_the_chunks() -> None:
    n = 2 * CHUNK_SUBJECTS + 1
    proc, _, index = backlog(n)
    out = proc.on_tick(0, T0 + 120)
    opened = [i["subject"] for i in out.issues if i["action"] == "open"]
    assert sorted(opened) == sorted(f"ZTO:7{i:09d}" for i in range(n))
    assert out.due == n
    swept = f"0:{bucket_of(T0)}"
    assert not [key for key in index.data if key == swept or key.startswith(swept + ":")]  # head, chunks, tail
    # Every parcel is filed again, for its tracking-stale deadline (48 h after the exception scan).
    stale = f"0:{bucket_of(T0 - 3600 + 48 * 3600)}"
    assert index.data[f"{stale}:tail"] == b"2"
    assert proc.on_tick(0, T0 + 180).issues == []


def test_a_chunk_written_without_its_tail_pointer_is_stepped_over() -> None:
    # kill -9 between the chunk write and the tail write: the event is processed again after the restart.
    n = 2 * CHUNK_SUBJECTS
    proc, states, index = backlog(n)
    bucket = f"0:{bucket_of(T0)}"
    assert index.data[f"{bucket}:tail"] == b"1"
    index.data[f"{bucket}:2"] = b"ZTO:lost-tail\n"  # chunk 2 landed, its pointer did not
    proc = Processor(S, LaneBaselines(S.lanes), states, index, epoch=2)
    proc.on_tracking(0, exception_scan(n, T0 - 3600), T0)
    assert index.data[f"{bucket}:tail"] == b"2"
    assert index.data[f"{bucket}:2"].decode().split() == ["ZTO:lost-tail", f"ZTO:7{n:09d}"]
    out = proc.on_tick(0, T0 + 120)
    assert len([i for i in out.issues if i["action"] == "open"]) == n + 1


def test_a_crowded_bucket_refilled_while_it_is_swept_is_kept_whole() -> None:
    proc, _, index = backlog(CHUNK_SUBJECTS + 3)
    bucket = f"0:{bucket_of(T0)}"
    before = dict(index.data)
    # Subjects due later in the minute being swept are re-filed into it: nothing of it may go.
    proc.on_tracking(0, TrackingUpdate("late", "ZTO", "late", "exception", T0 + 50, exception_reason="lost"), T0 + 40)
    out = proc.on_tick(0, T0 + 45)
    assert not any(key.startswith(bucket) for key in out.index_removals)
    assert all(key in index.data for key in before)
    assert len([i for i in proc.on_tick(0, T0 + 60).issues if i["action"] == "open"]) == 1
