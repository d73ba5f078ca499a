"""The pending messages of one (route, destination): in memory up to a bound, then on disk.

A destination that is down for an afternoon must neither grow the worker's memory without limit nor
lose the alerts: past ``memory_limit`` messages, new ones are appended to ``<spool_dir>/<route>@<dest>.jsonl``
(one JSON envelope a line) and read back, oldest first, once memory has room. On shutdown what is still in
memory is written in front of the spool, and the next start sends it. A read offset is kept next to the
file so a long spool is not rewritten on every read-back.

File access is synchronous on purpose: an append of one line costs microseconds, far less than handing it
to a thread, and the stream must not wait on a thread pool either.

A clean shutdown keeps everything. A crash loses what was only in memory (at most ``memory_limit``
messages per destination; the issues themselves are safe in the issue queue) and may send a spooled
message twice; every envelope carries an ``id`` receivers can use to drop duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("parcelwatch.alerting")

Envelope = dict[str, Any]  # {"id", "route", "digest", "created_at", "items": [alert dicts]}
# Past this much already-sent data at the head of a spool, the unread rest is copied to a fresh file.
COMPACT_BYTES = 1 << 20


def _items(envelope: Envelope) -> int:
    items = envelope.get("items")
    return len(items) if isinstance(items, list) else 0


class Outbox:
    def __init__(self, path: Path, memory_limit: int, wakeup: asyncio.Event | None = None) -> None:
        self.path = path
        self.offset_path = path.with_name(path.name + ".offset")
        self.corrupt_path = path.with_name(path.name + ".corrupt")
        self.memory_limit = memory_limit
        self.memory: deque[Envelope] = deque()
        self.spooled = 0  # envelopes in the file past the offset
        self.spooled_items = 0
        self._memory_items = 0
        self._offset = 0
        self._wakeup = wakeup or asyncio.Event()
        self._dir_ready = False
        if path.exists():
            self._recover()

    def __len__(self) -> int:
        """Envelopes waiting (memory and disk)."""
        return len(self.memory) + self.spooled

    @property
    def items(self) -> int:
        """Alerts waiting, counting each issue of a digest."""
        return self._memory_items + self.spooled_items

    def put(self, envelope: Envelope) -> None:
        # Once anything is on disk, newer envelopes go there too, so the order of delivery stays the order of arrival.
        if self.spooled == 0 and len(self.memory) < self.memory_limit:
            self.memory.append(envelope)
            self._memory_items += _items(envelope)
        else:
            try:
                self._append([envelope])
            except (OSError, TypeError) as exc:
                # Disk full, spool dir unwritable (or a value JSON cannot hold): holding it in memory beyond
                # the bound is better than losing it or raising into the stream that submitted it.
                log.error("alert spool %s not writable (%s); holding the message in memory", self.path, exc)
                self.memory.append(envelope)
                self._memory_items += _items(envelope)
        self._wakeup.set()

    def head(self) -> Envelope | None:
        if not self.memory and self.spooled:
            try:
                self._refill()
            except OSError as exc:
                log.error("alert spool %s cannot be read (%s); its %d messages stay there for the next start",
                          self.path, exc, self.spooled)
                self.spooled = self.spooled_items = 0
        return self.memory[0] if self.memory else None

    def pop_head(self) -> None:
        self._memory_items -= _items(self.memory.popleft())

    def requeue_head(self) -> None:
        """Send the head again later, after everything now waiting (it must not hold up the rest forever)."""
        envelope = self.memory.popleft()
        self._memory_items -= _items(envelope)
        self.put(envelope)

    async def wait(self) -> None:
        """Until something is put."""
        self._wakeup.clear()
        if not self.memory and not self.spooled:
            await self._wakeup.wait()

    def persist(self) -> None:
        """Write what is in memory in front of the unread spool (on shutdown), leaving memory empty."""
        if not self.memory:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as out:
            for envelope in self.memory:
                out.write(orjson.dumps(envelope) + b"\n")
            if self.path.exists():
                with self.path.open("rb") as old:
                    old.seek(self._offset)
                    while chunk := old.read(1 << 16):
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self._set_offset(0)
        self.spooled += len(self.memory)
        self.spooled_items += self._memory_items
        self.memory.clear()
        self._memory_items = 0

    # -- the spool file ---------------------------------------------------------------------------------

    def _append(self, envelopes: list[Envelope]) -> None:
        if not self._dir_ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._dir_ready = True
        with self.path.open("ab") as fh:
            fh.write(b"".join(orjson.dumps(e) + b"\n" for e in envelopes))
        self.spooled += len(envelopes)
        self.spooled_items += sum(_items(e) for e in envelopes)

    def _recover(self) -> None:
        """Count what a previous run left; terminate a line a crash cut short so appends do not join it."""
        try:
            self._offset = int(self.offset_path.read_text())
        except (OSError, ValueError):
            self._offset = 0
        size = self.path.stat().st_size
        if not 0 <= self._offset <= size:
            self._offset = 0
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        if data and not data.endswith(b"\n"):
            with self.path.open("ab") as fh:
                fh.write(b"\n")
        for line in data.splitlines():
            if not line.strip():
                continue
            self.spooled += 1
            try:
                self.spooled_items += _items(orjson.loads(line))
            except orjson.JSONDecodeError:
                pass  # reported (and set aside) when it is read back
        if self.spooled:
            log.warning("alert spool %s: %d messages left from a previous run will be sent", self.path, self.spooled)

    def _refill(self) -> None:
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            while len(self.memory) < self.memory_limit and self.spooled:
                line = fh.readline()
                if not line:
                    self.spooled = self.spooled_items = 0  # counts were off (file edited by hand): trust the file
                    break
                if not line.strip():
                    continue
                self.spooled -= 1
                try:
                    envelope = orjson.loads(line)
                    if not isinstance(envelope, dict):
                        raise orjson.JSONDecodeError("not an object", "", 0)
                except orjson.JSONDecodeError:
                    # A line cut short by a crash: set it aside for a person rather than drop it silently.
                    log.error("alert spool %s: unreadable line moved to %s", self.path, self.corrupt_path)
                    with self.corrupt_path.open("ab") as bad:
                        bad.write(line if line.endswith(b"\n") else line + b"\n")
                    continue
                self.spooled_items -= _items(envelope)
                self.memory.append(envelope)
                self._memory_items += _items(envelope)
            offset = fh.tell()
            at_end = not fh.read(1)
        if at_end:
            self.path.unlink()
            self._set_offset(0)
            self.spooled = self.spooled_items = 0
        elif offset >= COMPACT_BYTES:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with self.path.open("rb") as old, tmp.open("wb") as out:
                old.seek(offset)
                while chunk := old.read(1 << 16):
                    out.write(chunk)
            os.replace(tmp, self.path)
            self._set_offset(0)
        else:
            self._set_offset(offset)

    def _set_offset(self, offset: int) -> None:
        self._offset = offset
        if offset == 0:
            self.offset_path.unlink(missing_ok=True)
        else:
            tmp = self.offset_path.with_name(self.offset_path.name + ".tmp")
            tmp.write_text(str(offset))
            os.replace(tmp, self.offset_path)


class PriorityOutbox:
    """The outbox of one (route, destination) in two lanes: urgent messages (lane incidents, critical issues)
    go before routine ones; each lane keeps its arrival order, its memory bound and its own spool
    (``<route>@<dest>.jsonl`` and ``<route>@<dest>.urgent.jsonl``). An envelope is urgent when its
    ``urgent`` field says so."""

    def __init__(self, path: Path, memory_limit: int) -> None:
        self._wakeup = asyncio.Event()
        self.routine = Outbox(path, memory_limit, self._wakeup)
        self.urgent = Outbox(path.with_name(path.stem + ".urgent" + path.suffix), memory_limit, self._wakeup)
        self._head_lane: Outbox = self.routine
        self.urgent_puts = 0  # how many urgent ones were ever put: a waiting sender notices one arriving

    @property
    def lanes(self) -> tuple[Outbox, Outbox]:
        return (self.urgent, self.routine)

    @property
    def path(self) -> Path:
        return self.routine.path

    def __len__(self) -> int:
        return len(self.urgent) + len(self.routine)

    @property
    def items(self) -> int:
        return self.urgent.items + self.routine.items

    @property
    def in_memory(self) -> int:
        return len(self.urgent.memory) + len(self.routine.memory)

    def put(self, envelope: Envelope) -> None:
        if envelope.get("urgent"):
            self.urgent_puts += 1
            self.urgent.put(envelope)
        else:
            self.routine.put(envelope)

    def head(self) -> Envelope | None:
        for lane in self.lanes:
            envelope = lane.head()
            if envelope is not None:
                self._head_lane = lane
                return envelope
        return None

    def pop_head(self) -> None:
        """Take away the envelope ``head`` last returned (a newer urgent one does not take its place)."""
        self._head_lane.pop_head()

    def requeue_head(self) -> None:
        self._head_lane.requeue_head()

    async def wait(self) -> None:
        """Until something is put (at once when something waits)."""
        self._wakeup.clear()
        if not len(self):
            await self._wakeup.wait()

    async def wait_for_urgent(self, timeout: float, seen: int) -> None:
        """Up to ``timeout`` seconds, or until an urgent envelope is put after ``urgent_puts`` was ``seen`` (a
        routine one changes nothing for a sender that is waiting: it would queue behind the head)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.urgent_puts == seen:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)

    def persist(self) -> None:
        for lane in self.lanes:
            lane.persist()
