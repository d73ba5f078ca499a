"""Small helpers around aiokafka clients shared by the worker's side consumers and the embedded tools."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer``; a CancelledError that aiokafka raises from its own tasks is not ours to obey.

    Measured with aiokafka 0.14: stopping a consumer that never fetched awaits its cancelled
    committed-offsets task and re-raises that task's CancelledError. Left alone, it ends the caller's
    task as if the caller had been cancelled (the live lane-baseline feed died at start-up this way).
    A real cancellation of the calling task is still raised.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


_seek_patched = False


def patch_seek_to_committed() -> None:
    """Make Faust's "seek stream partitions to committed offsets" also rewind partitions with no commit.

    aiokafka's ``seek_to_committed`` seeks only partitions whose committed offset is above 0
    (aio-libs/aiokafka#1003, open). A partition nothing was ever committed on keeps whatever position
    the fetcher reached while Faust held its records back during recovery, and Faust drops those held
    records: seen here as two tracking events lost when they arrived while a second worker joined.
    Rewinding such partitions to the start (Faust's ``consumer_auto_offset_reset`` is "earliest")
    re-reads them; the sinks are idempotent, so a re-read is harmless and a skip is not.
    """
    global _seek_patched
    if _seek_patched:
        return
    from faust.transport.drivers import aiokafka as faust_aiokafka

    async def _seek(consumer: AIOKafkaConsumer, changelogs: set[str]) -> dict[Any, Any]:
        committed: dict[Any, Any] = await consumer.seek_to_committed()
        # Stream partitions only: table changelogs are positioned by Faust's recovery, never committed.
        fresh = [tp for tp, offset in committed.items()
                 if (offset is None or offset <= 0) and tp.topic not in changelogs]
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        return committed

    async def seek_to_committed(self: Any) -> Any:
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return await self.call_thread(self._ensure_consumer().seek_to_committed)
        changelogs = set(self.app.tables.changelog_topics)
        return await self.call_thread(_seek, self._ensure_consumer(), changelogs)

    faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    _seek_patched = True


_resume_patched = False


def patch_seek_before_resuming_streams() -> None:
    """Stream records fetched around a rebalance are neither thrown away nor skipped: two fixes in Faust's
    consumer (faust-streaming 0.15, aiokafka 0.14). Seen here as tracking events lost while a second
    worker joined (4 of 22 runs of the join test lost 1 to 41 events; the new owner processed a
    partition's offset 23, then 29, and dropped the re-fetched 24 to 28 as already read).

    1. ``Recovery.on_recovery_completed`` resumed the stream partitions, awaited the seek to their
       committed offsets, then resumed the app's flow control, which *clears every stream queue*: records
       fetched in between were already handed on (the consumer's read offset past them) and were
       cleared unprocessed; fetched again after the seek, they were dropped as already read, and the
       next commit went past them. Patched: stream partitions it resumes are resumed when it returns,
       after the seek and the flow (Faust fixed the same order in ``_resume_streams``, faust-streaming#216).
    2. Faust hands aiokafka its *live* set of active partitions for a fetch that waits up to a second.
       aiokafka reads an empty set as "every partition": when the set emptied during the wait (the
       changelogs paused at the end of recovery, the streams not yet resumed), records of paused stream
       partitions were returned, their positions moved past them, and Faust dropped them as not active.
       Patched: a fetch asks for the partitions active when it starts (a copy), and for none if none is.
    Any broker.
    """
    global _resume_patched
    if _resume_patched:
        return
    from faust.tables.recovery import Recovery
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    on_recovery_completed = Recovery.on_recovery_completed

    async def seek_then_resume(self: Any, generation_id: int = 0) -> None:
        consumer = self.app.consumer
        held: list[Any] = []
        consumer.resume_partitions = held.extend  # the partitions to resume once the seek is done
        try:
            await on_recovery_completed(self, generation_id)
        finally:
            del consumer.resume_partitions  # the class's own method again
            if held:
                consumer.resume_partitions(held)

    fetch_records = AIOKafkaConsumerThread._fetch_records

    async def fetch_active_records(self: Any, consumer: Any, active_partitions: Any, *args: Any, **kwargs: Any) -> Any:
        if not active_partitions:
            return {}
        return await fetch_records(self, consumer, set(active_partitions), *args, **kwargs)

    Recovery.on_recovery_completed = seek_then_resume  # type: ignore[method-assign]
    AIOKafkaConsumerThread._fetch_records = fetch_active_records  # type: ignore[method-assign]
    _resume_patched = True


def disable_worker_spinner() -> None:
    """Run Faust workers without the terminal progress spinner.

    At a log level of WARN or above, Faust's worker adds a spinner handler and sets the root logger to
    DEBUG so that every record spins it: every aiokafka and Faust debug call then builds a LogRecord.
    Measured with py-spy on a worker at ``-l warn``: 11% of its CPU in ``Logger._log`` for a spinner
    that nobody sees in a service. Without it the root logger keeps the level asked for.
    """
    from faust.worker import Worker

    def on_setup_root_logger(self: Any, logger: Any, level: int) -> None:
        self.spinner = None

    Worker.on_setup_root_logger = on_setup_root_logger  # type: ignore[method-assign]


_flush_patched = False


def patch_producer_buffer_flush() -> None:
    """Make Faust's producer flush wait until its buffer of table writes is really empty.

    Faust writes every table change to the changelog through a buffer (``send_soon``) and flushes the
    producer before it commits consumer offsets: the commit must not get ahead of the state it
    describes. But ``ProducerBuffer.flush`` gives up after 0.1 s without progress and returns with
    records still buffered (under load the buffer holds 100+). An offset could then be committed while
    the state change of that event was still in memory, and a ``kill -9`` lost the change for good: seen
    here as carrier exceptions whose scans were committed but never reached the parcel state. Patched
    flush: wait until the buffer is empty (warning every 10 s while it is not); while the buffer
    service is stopping, Faust's own bounded flush is kept so that shutdown cannot hang.
    """
    global _flush_patched
    if _flush_patched:
        return
    import logging
    import time

    from faust.transport.producer import ProducerBuffer

    log = logging.getLogger("parcelwatch.kafka")
    bounded_flush = ProducerBuffer.flush

    async def flush(self: Any) -> None:
        started = last_warning = time.monotonic()
        while self.size and not self.should_stop:
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                if time.monotonic() - last_warning >= 10:
                    last_warning = time.monotonic()
                    log.warning("producer buffer still holds %d records after %.0f s of flushing",
                                self.size, last_warning - started)
        await bounded_flush(self)

    ProducerBuffer.flush = flush  # type: ignore[method-assign]
    _flush_patched = True


_track_patched = False


def patch_track_produced_topics() -> None:
    """Keep every topic a client produces to in the topics its metadata refreshes ask for.

    aiokafka refreshes metadata only for the topics its client tracks, replaces the cluster's metadata
    with the answer, and tracks a topic only when a send finds its partitions unknown. A topic known
    from the full-metadata response at start-up is therefore dropped by the first refresh after any
    other topic was added (the first send to a topic created later, e.g. deliveries). A batch already
    queued for it then has no leader, the sender refreshes without it for ever, and Faust's pre-commit
    flush (or the changelog writer, waiting on that batch) waits with it: the worker stops committing
    and processing for good (seen in a 60k-event bench run and in the restart test). Tracked from the
    first send, a topic with a queued batch is always in the next refresh. (Kafka's Java producer adds
    the topic of every queued batch the same way.)
    """
    global _track_patched
    if _track_patched:
        return
    from aiokafka.client import AIOKafkaClient

    wait_on_metadata = AIOKafkaClient._wait_on_metadata

    async def _wait_on_metadata(self: Any, topic: str) -> Any:
        self._topics.add(topic)  # no refresh needed now: the next one asks for it too
        return await wait_on_metadata(self, topic)

    AIOKafkaClient._wait_on_metadata = _wait_on_metadata  # type: ignore[method-assign]
    _track_patched = True


class SendFailed(Exception):
    """A record the worker produced was not accepted by the broker: no offset may be committed now."""


# The first failed sends since this process started ("topic: error"), kept for /healthz and the error.
send_failures: list[str] = []
_MAX_KEPT = 10
_send_guard_patched = False


def send_now(producer: Any) -> None:
    """Send every record ``producer`` (an aiokafka producer) holds for its linger now, without waiting
    for the acknowledgements: for a caller about to wait for some of them.

    aiokafka keeps a record up to ``linger_ms`` in case more come for its partition, and its ``flush()``
    waits out that linger (Kafka's Java client's flush sends at once). The parcel agent waits for its
    issue events' acknowledgements before it writes the states: with the app's 5 ms linger that wait was
    about 8 ms a record, 3.8 ms sent at once (``bench.ceiling --warm-up``). The same steps as aiokafka's
    own ``flush_for_commit``: close the open batches (a closed batch is sent at once; a later record
    starts a new one) and wake the sender.
    """
    accumulator = producer._message_accumulator
    for batches in accumulator._batches.values():
        for batch in batches:
            batch._builder.close()
    if not accumulator._waiter_future.done():
        accumulator._waiter_future.set_result(None)


def note_send_failure(failure: str) -> None:
    """Record a record that could not be sent ("topic: error"): from now on no offset is committed."""
    if len(send_failures) < _MAX_KEPT:
        send_failures.append(failure[:300])


def raise_if_a_send_failed() -> None:
    """Refuse to go on committing once any record failed to send (see ``patch_send_failure_guard``)."""
    if send_failures:
        raise SendFailed(f"{len(send_failures)}+ record(s) failed to send, first: {send_failures[0]}; "
                         "offsets are no longer committed, restart the worker to re-process from the last commit")


def patch_send_failure_guard() -> None:
    """Never commit an offset past a record that failed to send.

    Faust only logs a warning when the broker rejects or times out a record sent without waiting
    (``Topic._on_published``): table changelog writes and the order router's order facts are sent that
    way. Its next commit then flushes the producer (the failed batch counts as done) and commits the
    input offsets that record depended on, so the state change or the order facts are lost for good,
    silently. Guarded: a failed send is recorded, every later producer flush (Faust flushes before each
    commit) raises, so nothing is committed any more, and ``/healthz`` turns red so that the worker is
    restarted and re-processes from its last good commit (at-least-once, as everywhere else).
    """
    global _send_guard_patched
    if _send_guard_patched:
        return
    import logging

    from faust.topics import Topic
    from faust.transport.drivers.aiokafka import Producer

    log = logging.getLogger("parcelwatch.kafka")
    on_published = Topic._on_published
    flush = Producer.flush

    def _on_published(self: Any, fut: asyncio.Future[Any], message: Any, producer: Any, state: Any) -> None:
        on_published(self, fut, message, producer, state)
        if fut.cancelled() or fut.exception() is None:
            return
        failure = f"{self.get_topic_name()}: {type(fut.exception()).__name__}: {fut.exception()}"[:300]
        note_send_failure(failure)
        log.error("a record failed to send (%s): offsets are no longer committed; restart the worker", failure)

    async def checked_flush(self: Any) -> None:
        await flush(self)
        # The batches just delivered resolve their futures first and run their send callbacks after:
        # give those callbacks their turn before looking for failures.
        await asyncio.sleep(0)
        raise_if_a_send_failed()

    Topic._on_published = _on_published  # type: ignore[method-assign]
    Producer.flush = checked_flush  # type: ignore[method-assign]
    _send_guard_patched = True
