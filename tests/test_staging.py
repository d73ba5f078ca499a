"""StagedWrites (delivery/staging.py): table writes held back until flushed, read through before that, and
rolled back to a mark (one bad element of a batch record drops its own writes, not its record's)."""

from __future__ import annotations

from delivery.staging import StagedWrites


def test_staged_writes_are_read_through_and_reach_the_table_only_when_flushed() -> None:
    table = {"a": b"1", "b": b"2"}
    staged = StagedWrites(table)
    staged["a"] = b"10"
    del staged["b"]
    staged["c"] = b"3"
    assert (staged["a"], staged.get("b"), staged.get("c")) == (b"10", None, b"3")
    assert table == {"a": b"1", "b": b"2"}
    staged.flush()
    assert table == {"a": b"10", "c": b"3"}


def test_a_rollback_drops_only_what_was_staged_since_the_mark() -> None:
    table = {"a": b"1", "b": b"2", "d": b"4"}
    staged = StagedWrites(table)
    staged.mark()  # the first element of a record
    staged["a"] = b"10"
    del staged["b"]
    staged.mark()  # the second: it rewrites a, restores b, deletes d, adds c, then fails
    staged["a"] = b"11"
    staged["a"] = b"12"
    staged["b"] = b"20"
    del staged["d"]
    staged["c"] = b"3"
    staged.rollback()
    assert (staged["a"], staged.get("b"), staged["d"], staged.get("c")) == (b"10", None, b"4", None)
    staged.mark()  # the third element stands as well
    staged["e"] = b"5"
    staged.flush()
    assert table == {"a": b"10", "d": b"4", "e": b"5"}


def test_a_rollback_without_a_mark_drops_everything_and_a_flush_ends_the_mark() -> None:
    table: dict[str, bytes] = {}
    staged = StagedWrites(table)
    staged["a"] = b"1"
    staged.rollback()
    assert staged.get("a") is None
    staged.mark()
    staged["a"] = b"1"
    staged.flush()
    staged["b"] = b"2"  # after the flush: no mark, so a rollback drops it like discard
    staged.rollback()
    staged.flush()
    assert table == {"a": b"1"}


def test_each_partition_stages_on_its_own_and_is_flushed_or_discarded_alone() -> None:
    """The parcel agent goes on with other partitions' records while one partition's writes wait for
    their issue events' acknowledgements: their staged writes must neither mix nor end each other's."""
    table = {"p0-old": b"0"}
    staged = StagedWrites(table)
    staged.select(0)
    staged["p0"] = b"1"
    del staged["p0-old"]
    staged.select(1)  # partition 0 still waiting
    assert staged.get("p0") is None  # (a key lives in one partition: 1 never reads 0's writes)
    staged.mark()
    staged["p1"] = b"2"
    staged.flush(0)  # partition 0's acknowledgements arrive meanwhile
    assert table == {"p0": b"1"}
    staged.mark()  # partition 1's mark survived partition 0's flush: its next element can roll back
    staged["p1-bad"] = b"x"
    staged.rollback()
    staged.select(2)
    staged["p2"] = b"3"
    staged.discard(1)  # partition 1's record failed: only its writes go
    staged.flush()  # the selected partition's
    assert table == {"p0": b"1", "p2": b"3"}
    staged.flush(1)
    assert table == {"p0": b"1", "p2": b"3"}
