"""Table writes held back until the issue events they imply are acknowledged by the broker.

Without this, a ``kill -9`` could leave the parcel state's changelog saying "issue open" while the issue
event itself never reached the broker: after the restart the state would not raise it again and the
queue would miss it (seen in the kill -9 fault test). With it, the order is: issue events sent and
acknowledged, then the state written. A crash in between re-processes the event (its offset was not
committed) and re-sends the issue, which the Redis sink ignores as a duplicate.

The writes are kept per partition (``select``): while one partition's record waits for its
acknowledgements, the parcel agent goes on with other partitions' records, whose keys are disjoint
from it (a subject, and each deadline-index key, lives in one partition), and flushes each partition's
writes on their own (``flush(partition)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from delivery.changelog import ChangelogWriter

_DELETED = object()
_ABSENT = object()
# What ``_of`` gives for a partition never selected: empty, and only ever cleared.
_NOTHING_STAGED: dict[str, object] = {}


class StagedWrites(MutableMapping[str, bytes]):
    """A view of ``base`` whose writes and deletes are kept aside until ``flush`` (or ``discard``)."""

    def __init__(self, base: MutableMapping[str, bytes], writer: ChangelogWriter | None = None) -> None:
        """``writer``: a ``changelog_writer.ChangelogWriter`` that ``base`` (a Faust table) is written
        through; None writes ``base`` directly (dicts in tests)."""
        self.base = base
        self.writer = writer
        # ``base.get`` (None when absent); through a writer, its one-lookup read of the Faust table.
        self._read: Callable[[str], bytes | None] = writer.reader(base) if writer is not None else base.get  # type: ignore[arg-type]
        # The staged writes of each partition (None: callers that never ``select``), and the selected one's.
        self._by_partition: dict[int | None, dict[str, object]] = {}
        self._pending: dict[str, object] = self._by_partition.setdefault(None, {})
        # Since ``mark``: each key written, with what was pending for it before (_ABSENT: nothing).
        self._undo: dict[str, object] | None = None

    def __getitem__(self, key: str) -> bytes:
        value = self._pending.get(key)
        if value is _DELETED:
            raise KeyError(key)
        if value is not None:
            return value  # type: ignore[return-value]
        stored = self._read(key)
        if stored is None:
            raise KeyError(key)
        return stored

    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        value = self._pending.get(key)
        if value is _DELETED:
            return default
        if value is not None:
            return value  # type: ignore[return-value]
        stored = self._read(key)
        return default if stored is None else stored

    def __setitem__(self, key: str, value: bytes) -> None:
        undo = self._undo
        if undo is not None and key not in undo:
            undo[key] = self._pending.get(key, _ABSENT)
        self._pending[key] = value

    def __delitem__(self, key: str) -> None:
        undo = self._undo
        if undo is not None and key not in undo:
            undo[key] = self._pending.get(key, _ABSENT)
        self._pending[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)

    def select(self, partition: int) -> None:
        """Stage into and read through ``partition``'s writes from now on (a new record: no mark)."""
        pending = self._by_partition.get(partition)
        if pending is None:
            pending = self._by_partition[partition] = {}
        self._pending = pending
        self._undo = None

    def _of(self, partition: int | None) -> dict[str, object]:
        if partition is None:
            return self._pending
        pending = self._by_partition.get(partition)
        return _NOTHING_STAGED if pending is None else pending

    def flush(self, partition: int | None = None) -> None:
        """Write the staged writes of ``partition`` (default: the selected one). A Faust table's
        changelog takes the partition of the current event: flush within an event of that partition."""
        # Each write is one changelog record (reassign, never mutate: a Faust table lesson).
        pending = self._of(partition)
        writer = self.writer
        table: Any = self.base  # a Faust table whenever a writer is given
        for key, value in pending.items():
            if writer is not None:
                if value is _DELETED:
                    writer.delete(table, key)
                else:
                    writer.set(table, key, value)
            elif value is _DELETED:
                self.base.pop(key, None)
            else:
                self.base[key] = value  # type: ignore[assignment]
        self._end(pending)

    def discard(self, partition: int | None = None) -> None:
        """Drop the staged writes of ``partition`` (default: the selected one)."""
        self._end(self._of(partition))

    def _end(self, pending: dict[str, object]) -> None:
        pending.clear()
        if pending is self._pending:  # another partition's flush leaves the selected record's mark
            self._undo = None

    def mark(self) -> None:
        """Remember the staged writes as they are now: ``rollback`` returns to this point (the writes
        of one element of a batch record, whose earlier elements' writes must stay)."""
        if self._undo is None:
            self._undo = {}
        else:
            self._undo.clear()  # (once per element: no new dict each time)

    def rollback(self) -> None:
        """Drop the writes and deletes staged since ``mark`` (all of them without a mark)."""
        undo = self._undo
        if undo is None:
            self._pending.clear()
            return
        for key, before in undo.items():
            if before is _ABSENT:
                del self._pending[key]
            else:
                self._pending[key] = before
        undo.clear()
