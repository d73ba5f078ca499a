"""The per-destination outbox, without a network: memory bound, spool order, read-back, crash leftovers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from alerting import outbox as outbox_module
from alerting.outbox import Outbox, PriorityOutbox


def env(n: int, items: int = 1) -> dict[str, Any]:
    return {"id": f"m{n}", "route": "r", "digest": items > 1, "created_at": 0.0, "items": [{"n": n}] * items}


def drain(box: Outbox | PriorityOutbox) -> list[str]:
    out = []
    while (head := box.head()) is not None:
        out.append(head["id"])
        box.pop_head()
    return out


def test_memory_bound_spill_order_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "s" / "r@d.jsonl", memory_limit=2)
    for n in range(5):
        box.put(env(n, items=2))
    assert (len(box), box.items, box.spooled) == (5, 10, 3)
    assert len(box.path.read_bytes().splitlines()) == 3
    box.requeue_head()  # m0 failed for good: behind everything else, on disk since the spool is in use
    assert drain(box) == ["m1", "m2", "m3", "m4", "m0"]
    assert (len(box), box.items) == (0, 0) and not box.path.exists() and not box.offset_path.exists()


def take(box: Outbox | PriorityOutbox, n: int) -> list[str]:
    out = []
    for _ in range(n):
        head = box.head()
        assert head is not None
        out.append(head["id"])
        box.pop_head()
    return out


def test_a_long_spool_is_read_back_in_chunks_with_a_saved_offset_then_compacted(tmp_path: Path, monkeypatch: Any) -> None:
    box = Outbox(tmp_path / "r@d.jsonl", memory_limit=3)
    for n in range(10):
        box.put(env(n))
    assert take(box, 3) == ["m0", "m1", "m2"]
    head = box.head()  # memory is empty: m3..m5 are read back from disk
    assert head is not None and head["id"] == "m3" and len(box.memory) == 3
    offset = int(box.offset_path.read_text())
    # A restart now would resume after what was already read back.
    assert [orjson.loads(line)["id"] for line in box.path.read_bytes()[offset:].splitlines()] == ["m6", "m7", "m8", "m9"]
    monkeypatch.setattr(outbox_module, "COMPACT_BYTES", 1)
    assert take(box, 4) == ["m3", "m4", "m5", "m6"]
    assert not box.offset_path.exists() and len(box.path.read_bytes().splitlines()) == 1  # only m9 left on disk
    assert drain(box) == ["m7", "m8", "m9"]


def test_leftovers_of_a_crash_are_sent_and_a_cut_line_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "r@d.jsonl"
    path.write_bytes(orjson.dumps(env(1)) + b"\n" + b'{"id": "m2", "ite' + b"\n" + orjson.dumps(env(3)) + b"\n" + b'{"id": "m4"')
    box = Outbox(path, memory_limit=10)
    assert len(box) == 4 and box.items == 2  # the two cut lines are counted as messages, with unknown items
    box.put(env(5))  # appended after the cut line, not glued to it
    assert drain(box) == ["m1", "m3", "m5"]
    assert box.corrupt_path.read_bytes().splitlines() == [b'{"id": "m2", "ite', b'{"id": "m4"']


def test_persist_puts_memory_in_front_of_the_unread_spool(tmp_path: Path) -> None:
    path = tmp_path / "r@d.jsonl"
    box = Outbox(path, memory_limit=2)
    for n in range(5):
        box.put(env(n))
    box.pop_head()
    box.persist()
    assert box.memory == type(box.memory)() and len(box) == 4
    again = Outbox(path, memory_limit=2)
    assert drain(again) == ["m1", "m2", "m3", "m4"]


def test_an_unwritable_spool_keeps_messages_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    box = Outbox(blocker / "r@d.jsonl", memory_limit=1)
    for n in range(3):
        box.put(env(n))  # no exception into the caller
    assert drain(box) == ["m0", "m1", "m2"]


def test_urgent_envelopes_go_first_each_lane_in_order_with_its_own_spool(tmp_path: Path) -> None:
    box = PriorityOutbox(tmp_path / "r@d.jsonl", memory_limit=2)
    for n in range(4):
        box.put(env(n))
    box.put({**env(10), "urgent": True})
    head = box.head()
    assert head is not None and head["id"] == "m10"
    box.put({**env(11), "urgent": True})  # arrives while m10 is being sent: m10 is still the one taken away
    box.pop_head()
    routine_head = box.head()
    assert routine_head is not None and routine_head["id"] == "m11"
    box.pop_head()
    assert (len(box), box.items, box.urgent_puts) == (4, 4, 2)
    assert box.routine.path.name == "r@d.jsonl" and len(box.routine.path.read_bytes().splitlines()) == 2  # past the bound
    box.put({**env(12), "urgent": True})
    box.persist()
    again = PriorityOutbox(tmp_path / "r@d.jsonl", memory_limit=2)
    assert again.urgent.path.name == "r@d.urgent.jsonl"
    assert drain(again) == ["m12", "m0", "m1", "m2", "m3"]
