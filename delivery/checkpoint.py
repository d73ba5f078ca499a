"""The commit order: what makes "acknowledged before committed" true, step by step, in one place.

Processing is at least once (Kafka without idempotent producers, and the embedded Tansu broker): after a
crash, every input record whose offset was not committed is processed again, and every sink is idempotent.
That is only safe if nothing the worker derived from a record can be lost once its offset is committed,
and nothing a record implies can be recorded as done before it has really gone out. ``Checkpoint`` holds
that order for the parcel agent's records and for every offset commit:

For each input record of a partition (``begin`` -> processing -> ``settle``):

1. **begin**: the partition's previous record has finished writing (step 5), and a waiting sweep's index
   removals (step 6) are applied, so a record always reads what the records before it wrote.
2. **stage**: processing stages its state and deadline-index writes in ``StagedWrites`` (``staged``); the
   tables are not touched yet.
3. **send**: the agent sends what the record produced: issue events, buyer notifications, order-purge
   notices (the records the rest of the product sees).
4. **acknowledged**: ``settle`` waits for the broker to acknowledge every one of them (in a task, while the
   agent goes on with other partitions' records).
5. **write**: only then the record's deliveries and milestones are sent (not waited for: step 9 is), and
   the staged writes go to the ``ChangelogWriter`` (one changelog record per key until it seals them; a
   memory store written at once, a RocksDB store when they are sent). A ``kill -9`` before this point
   repeats the record's issue events (the Redis sink ignores duplicates) instead of recording issues
   nobody heard of.
6. **remove**: a sweep's index removals (its swept buckets and cursor) wait until step 5's writes are
   acknowledged themselves (``remove_after_acknowledged``): a crash between must never leave a subject
   filed nowhere.

An agent may hold back what its records produced, to send it together with what the records queued behind
them produce (the order router's order facts): it acknowledges those records to Faust only once it has sent
it, so no commit passes them. Faust clears the streams' queues at a rebalance and at a stop, then waits for
every record taken to be acknowledged: ``send_held`` sends what is held first (``delivery/framework.py``).

Before every offset commit (``commit``; Faust calls its producer's flush before it commits, on rebalance
and on shutdown, and ``delivery/framework.py`` routes that flush here):

7. **held**: wait for step 5 of every record Faust already considers processed.
8. **producer**: drain Faust's own producer buffer and aiokafka's batches (the order facts, deliveries,
   dead letters and other records sent without waiting).
9. **changelog**: seal and send every pending changelog write and wait for the broker's acknowledgement.
   Not only here: a changelog batch the writer sends on its own between commits goes out the same way,
   once every record produced before it is acknowledged and none ever failed (``_produced_before``). So
   a state is in the changelog only after the deliveries and milestones step 5 sent before it, and never
   after a record that was lost.
10. **failures**: if any record the worker produced was ever refused or timed out, raise ``SendFailed``:
    nothing is committed past it (``/healthz`` is red), Faust's commit fails and the worker exits; started
    again by its supervisor, it re-processes from the last commit. Nothing is dead-lettered meanwhile
    (``dead_letters.py``). (Not the ticks, ``best_effort``: a lost tick is made good by the next one.)
11. Faust commits the offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.types import AppT

from .changelog import MAX_PENDING_RECORDS, ChangelogWriter
from .framework import SendFailed, SendFailures, acknowledged, aiokafka_producer, send_now
from .staging import StagedWrites

__all__ = ["Checkpoint", "SendFailed", "SendFailures"]

log = logging.getLogger("parcelwatch.checkpoint")


class Checkpoint:
    """The commit order of one app (see the module docstring for the steps, which its methods follow)."""

    def __init__(self, app: AppT, *, linger: float | None = None, max_pending_records: int = MAX_PENDING_RECORDS) -> None:
        self.app = app
        self.failures = SendFailures()
        # Topics whose failed sends stop no commit: nothing any offset depends on goes there (the ticks).
        self.best_effort: set[str] = set()
        self.writer = ChangelogWriter(app, self.failures, linger=linger, max_pending_records=max_pending_records,
                                      follows=self._produced_before)
        self._staged: list[StagedWrites] = []
        # Per partition: its last record's write (step 5), running once its sends are acknowledged.
        self._writing: dict[int, asyncio.Future[None]] = {}
        # Per partition: a sweep's index removals (step 6) with the wait for the writes they follow.
        self._removals: dict[int, tuple[asyncio.Future[None], Callable[[], None]]] = {}
        # Writes of records Faust already considers processed (step 7 waits for them).
        self._held: set[asyncio.Future[Any]] = set()
        # What sends each agent's held-back records (``send_held``).
        self._holders: list[Callable[[], Awaitable[None]]] = []

    @property
    def stopped(self) -> bool:
        """A record the worker produced failed to send (step 10): nothing is committed past it, and the worker
        exits at its next commit. A record processed meanwhile could read a state that a failed record of its
        partition left out (its staged writes dropped, step 5) and send what no replay sends: the agents
        leave every record from then on to be processed again once the worker has started again."""
        return bool(self.failures)

    def staged(self, table: Any) -> StagedWrites:
        """A staged view of ``table`` (a Faust table) whose writes follow this commit order (step 2)."""
        view = StagedWrites(table, self.writer)
        self._staged.append(view)
        return view

    # -- 1. begin -------------------------------------------------------------------------------------------

    async def begin(self, partition: int) -> None:
        """Before a record of ``partition`` is processed."""
        writing = self._writing.pop(partition, None)
        if writing is not None and not writing.done():
            await asyncio.wait((writing,))  # (its failure is handled where it runs)
        for view in self._staged:
            view.select(partition)
        if partition in self._removals:
            await self._remove(partition)

    # -- 3-5. send, acknowledged, write -----------------------------------------------------------------------

    async def settle(
        self, partition: int, acks: list[Awaitable[Any]], write: Callable[[], Awaitable[None]],
        on_failure: Callable[[Exception], Awaitable[None]], *, wait: bool = False,
    ) -> None:
        """Once every send in ``acks`` is acknowledged, ``write()`` the record's staged writes (step 5).

        Without ``wait`` that happens in a task: the agent goes on with other partitions' records, the next
        record of ``partition`` waits for it (``begin``) and so does every commit (``commit``). ``on_failure``
        handles a send or write that failed (the record goes to the dead-letter topic)."""
        if not acks:
            await write()
            return
        send_now(aiokafka_producer(self.app))  # (waited for: aiokafka's linger would only delay them)
        if wait:
            await asyncio.gather(*acks)
            await write()
            return
        # (A task copies the current event's context: the writes go to this partition's changelog.)
        task = asyncio.ensure_future(self._write_when_acknowledged(acks, write, on_failure))
        self._writing[partition] = task
        self.hold(task)

    def hold(self, writes: asyncio.Future[Any]) -> None:
        """Make every commit wait for ``writes`` first (step 7): writes made after Faust considers their
        record processed. Their failure is the holder's to handle; a commit only waits for them to end."""
        self._held.add(writes)
        writes.add_done_callback(self._held.discard)

    async def _write_when_acknowledged(
        self, acks: list[Awaitable[Any]], write: Callable[[], Awaitable[None]],
        on_failure: Callable[[Exception], Awaitable[None]],
    ) -> None:
        try:
            await asyncio.gather(*acks)
            await write()
        except Exception as exc:  # noqa: BLE001 - e.g. an issue event the broker refused
            await on_failure(exc)

    def write_staged(self, partition: int) -> None:
        """Step 5 for the staged tables: their writes of ``partition`` into the stores and the changelog."""
        for view in self._staged:
            view.flush(partition)

    def discard_staged(self, partition: int | None = None) -> None:
        """Drop what a failed record staged (``partition``: default the selected one)."""
        for view in self._staged:
            view.discard(partition)

    # -- 6. remove ------------------------------------------------------------------------------------------

    def remove_after_acknowledged(self, partition: int, removals: Callable[[], None]) -> None:
        """Apply a sweep's index ``removals`` once every write made so far to the staged tables is
        acknowledged: before the partition's next record (each partition gets a tick every interval), so
        the agent never idles on the wait. Nothing writes the partition's index keys in between, so the
        removals, computed from the index as the sweep left it, still hold. A crash or a rebalance drops
        them: the buckets are swept again, which finds nothing new."""
        tables: list[Any] = [view.base for view in self._staged]  # (Faust tables, staged)
        acked = asyncio.ensure_future(self.writer.wait_acked(*tables))
        acked.add_done_callback(_retrieve)
        self._removals[partition] = (acked, removals)

    async def _remove(self, partition: int) -> None:
        acked, removals = self._removals.pop(partition)
        try:
            await acked
            removals()
        except Exception:
            for view in self._staged:
                view.discard()
            log.exception("the swept buckets of partition %s stay: the sweep's writes were not acknowledged", partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked from this worker: never write their index again (another worker may hold
        them now); their waiting removals go, and their buckets are swept again by the next owner."""
        for partition in partitions:
            pending = self._removals.pop(partition, None)
            if pending is not None:
                pending[0].cancel()

    # -- records held back --------------------------------------------------------------------------------------

    def add_holder(self, send_held: Callable[[], Awaitable[None]]) -> None:
        """An agent that holds back what its records produced: ``send_held`` sends it, between records."""
        self._holders.append(send_held)

    async def send_held(self) -> None:
        """Before Faust waits for its streams (a rebalance, a stop): what every agent holds back goes out."""
        for send_held in self._holders:
            await send_held()

    # -- 7-10. before every offset commit -----------------------------------------------------------------------

    async def commit(self, flush_producer: Callable[[], Awaitable[None]]) -> None:
        """Everything an offset commit must follow; raises ``SendFailed`` to stop the commit."""
        while self._held:  # 7. held
            await asyncio.wait(list(self._held))
        await flush_producer()  # 8. producer
        await self.writer.flush()  # 9. changelog (raises on a failed changelog batch)
        # The batches just delivered resolve their futures first and run their send callbacks after: give
        # those callbacks their turn before looking for failures.
        await asyncio.sleep(0)
        self.failures.raise_if_any()  # 10. failures

    async def _produced_before(self) -> None:
        """What every changelog batch follows (step 9): the records produced before it acknowledged, and
        no failed one (``SendFailed`` otherwise: the batch is not sent)."""
        await acknowledged(aiokafka_producer(self.app))
        await asyncio.sleep(0)  # (as in ``commit``: the send callbacks that record failures run after the futures)
        self.failures.raise_if_any()

    async def wait_until_ebb(self) -> None:
        """Back-pressure before each message is delivered to the streams: not too many unacknowledged writes."""
        await self.writer.wait_until_ebb()


def _retrieve(done: asyncio.Future[None]) -> None:
    """Read a dropped wait's failure (a failed write is already recorded in ``SendFailures``)."""
    if not done.cancelled():
        done.exception()
