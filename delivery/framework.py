"""Everything parcelwatch changes in, or reads from inside, Faust and aiokafka: in one place, in one order.

faust-streaming 0.15, mode-streaming 0.7 and aiokafka 0.14 are pinned as a set (requirements.txt): each
override below names what it replaces, and an upgrade must re-check every one. ``install`` applies them
once per process, in this order (the order matters only where a later one says so):

1. **Never-committed partitions are re-read** (``_seek_to_committed``, aio-libs/aiokafka#1003).
2. **No stream record is lost around a rebalance** (``_seek_before_resuming_streams``).
3. **No produced topic falls out of the producer's metadata** (``_track_produced_topics``).
4. **A record that failed to send is recorded** (``_record_failed_sends``), in the app's checkpoint.
5. **Faust's producer buffer flush drains it** (``_drain_producer_buffer``).
6. **Back-pressure counts the changelog writer** (``_back_pressure``): after Faust's own check.
7. **The producer flush before an offset commit is the checkpoint's commit** (``_commit_order``): the one
   override of ``Producer.flush``; it calls the original flush (which drains the buffer, 5) in its step 8.
8. **No terminal spinner on workers** (``_no_worker_spinner``).
9. **RocksDB tables write without their own write-ahead log** (``_state_stores_without_wal``).
10. **A fetched message is handed to the streams without four tasks** (``_deliver_without_tasks``).
11. On the embedded Tansu broker only, its differences (``delivery/tansu.py``): true high watermarks and a
   short fetch wait.

The app's ``Checkpoint`` (``delivery/checkpoint.py``) is attached to the Faust app by ``install``; the
overrides that need it find it there. Private internals are read here and nowhere else: aiokafka's message
accumulator (``send_now``, ``acknowledged``), its fetcher's per-partition positions (``stream_positions``), the
aiokafka producer, consumer and offsets under Faust's (``aiokafka_producer``, ``aiokafka_consumer``,
``committed_offsets``), and the cluster's metadata asked by a client's own connection (``cluster_metadata``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer

log = logging.getLogger("parcelwatch.kafka")

class SendFailed(Exception):
    """A record the worker produced was not accepted by the broker: no offset may be committed now."""


# What follows a record that failed to send, for the logs.
AFTER_A_FAILED_SEND = ("no offset is committed past it: the worker exits at its next commit and, started again by its "
                       "supervisor, processes everything from its last commit")


class SendFailures:
    """The first records the broker refused or timed out since the worker started ("topic: error"). One is
    enough to stop every commit; the first few are kept for ``/healthz`` and the error."""

    KEPT = 10

    def __init__(self) -> None:
        self.first: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.first)

    def note(self, failure: str) -> None:
        if len(self.first) < self.KEPT:
            self.first.append(failure[:300])

    def error(self, failure: str) -> SendFailed:
        return SendFailed(failure[:300])

    def raise_if_any(self) -> None:
        if self.first:
            raise SendFailed(f"{len(self.first)}+ record(s) failed to send, first: {self.first[0]}; {AFTER_A_FAILED_SEND}")


class CommitOrder(Protocol):
    """What the overrides need of an app's ``delivery.checkpoint.Checkpoint``."""

    app: Any
    failures: SendFailures
    best_effort: set[str]

    @property
    def stopped(self) -> bool: ...

    async def commit(self, flush_producer: Callable[[], Awaitable[None]]) -> None: ...

    async def wait_until_ebb(self) -> None: ...

    async def send_held(self) -> None: ...


# Overrides already applied in this process (each is process-wide: a class attribute of Faust or aiokafka).
_applied: set[str] = set()


def install(checkpoint: CommitOrder, tansu_bootstrap: str | None = None) -> None:
    """Attach ``checkpoint`` to its app and apply every override (once per process), in the documented
    order. ``tansu_bootstrap``: the embedded broker's host:port when the app runs on it (12), else None."""
    checkpoint.app.parcelwatch_checkpoint = checkpoint  # type: ignore[attr-defined]
    steps = [
        _seek_to_committed,
        _seek_before_resuming_streams,
        _track_produced_topics,
        _record_failed_sends,
        _drain_producer_buffer,
        _back_pressure,
        _commit_order,
        _no_worker_spinner,
        _state_stores_without_wal,
        _deliver_without_tasks,
        _send_held_before_waiting_for_streams,
    ]
    for step in steps:
        _once(step)
    if tansu_bootstrap is not None:
        from .tansu import patch_fetch_wait, patch_highwaters

        patch_highwaters(tansu_bootstrap)
        patch_fetch_wait()


def disable_worker_spinner() -> None:
    """Only override 8, for a Faust app that is not parcelwatch's (the benchmarks' bare agent)."""
    _once(_no_worker_spinner)


def _once(step: Any) -> None:
    if step.__name__ not in _applied:
        step()
        _applied.add(step.__name__)


def checkpoint_of(app: Any) -> CommitOrder | None:
    """The checkpoint ``install`` attached to ``app`` (None: an app without one)."""
    return getattr(app, "parcelwatch_checkpoint", None)


# -- 1. never-committed partitions are re-read ----------------------------------------------------------------


def _seek_to_committed() -> None:
    """Make Faust's "seek stream partitions to committed offsets" also rewind partitions with no commit.

    aiokafka's ``seek_to_committed`` seeks only partitions whose committed offset is above 0
    (aio-libs/aiokafka#1003, open). A partition nothing was ever committed on keeps whatever position
    the fetcher reached while Faust held its records back during recovery, and Faust drops those held
    records: seen as tracking events lost when they arrived while a second worker joined. Rewinding such
    partitions to the start (Faust's ``consumer_auto_offset_reset`` is "earliest") re-reads them; the
    sinks are idempotent, so a re-read is harmless and a skip is not.
    """
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


# -- 2. no stream record is lost around a rebalance -----------------------------------------------------------


def _seek_before_resuming_streams() -> None:
    """Stream records fetched around a rebalance are neither thrown away nor skipped: two fixes in Faust's
    consumer. Seen as tracking events lost while a second worker joined (the new owner processed a
    partition's offset 23, then 29, and dropped the re-fetched 24 to 28 as already read).

    1. ``Recovery.on_recovery_completed`` resumed the stream partitions, awaited the seek to their
       committed offsets, then resumed the app's flow control, which *clears every stream queue*: records
       fetched in between were already handed on (the consumer's read offset past them) and were cleared
       unprocessed; fetched again after the seek, they were dropped as already read, and the next commit
       went past them. Here the stream partitions it resumes are resumed when it returns, after the seek
       and the flow (Faust fixed the same order in ``_resume_streams``, faust-streaming#216).
    2. Faust hands aiokafka its *live* set of active partitions for a fetch that waits up to a second.
       aiokafka reads an empty set as "every partition": when the set emptied during the wait (the
       changelogs paused at the end of recovery, the streams not yet resumed), records of paused stream
       partitions were returned, their positions moved past them, and Faust dropped them as not active.
       Here a fetch asks for the partitions active when it starts (a copy), and for none if none is.
    """
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


# -- 3. no produced topic falls out of the producer's metadata --------------------------------------------------


def _track_produced_topics() -> None:
    """Keep every topic a client produces to in the topics its metadata refreshes ask for.

    aiokafka refreshes metadata only for the topics its client tracks, replaces the cluster's metadata
    with the answer, and tracks a topic only when a send finds its partitions unknown. A topic known
    from an earlier answer (on Tansu, the start-up one names every topic) is therefore dropped by the
    first refresh after any other topic was added (the first send to a topic created later, e.g.
    deliveries). A batch already queued for it then has no leader, the sender refreshes without it for
    ever, and the pre-commit flush (or the changelog writer, waiting on that batch) waits with it: the
    worker stops committing and processing for good. Tracked from the first send, a topic with a queued batch is always in the next
    refresh (Kafka's Java producer adds the topic of every queued batch the same way).
    """
    from aiokafka.client import AIOKafkaClient

    wait_on_metadata = AIOKafkaClient._wait_on_metadata

    async def _wait_on_metadata(self: Any, topic: str) -> Any:
        self._topics.add(topic)  # no refresh needed now: the next one asks for it too
        return await wait_on_metadata(self, topic)

    AIOKafkaClient._wait_on_metadata = _wait_on_metadata  # type: ignore[method-assign]


# -- 4. a record that failed to send is recorded ------------------------------------------------------------------


def _record_failed_sends() -> None:
    """Faust only logs a warning when the broker rejects or times out a record sent without waiting
    (``Topic._on_published``): table changelog writes and the order router's order facts are sent that
    way. Its next commit would then flush the producer (the failed batch counts as done) and commit the
    input offsets that record depended on, losing the state change or the order facts silently. Here the
    failure goes into the app's checkpoint, whose commit then refuses (step 10 of the commit order).
    Topics in the checkpoint's ``best_effort`` (the ticks: the next one comes an interval later and carries
    nothing an offset depends on) are only logged."""
    from faust.topics import Topic

    on_published = Topic._on_published

    def _on_published(self: Any, fut: asyncio.Future[Any], message: Any, producer: Any, state: Any) -> None:
        on_published(self, fut, message, producer, state)
        if fut.cancelled() or fut.exception() is None:
            return
        topic = self.get_topic_name()
        failure = f"{topic}: {type(fut.exception()).__name__}: {fut.exception()}"
        checkpoint = checkpoint_of(self.app)
        if checkpoint is not None and topic in checkpoint.best_effort:
            log.warning("a record failed to send (%s); nothing depends on it", failure[:300])
            return
        if checkpoint is not None:
            checkpoint.failures.note(failure)
        log.error("a record failed to send (%s): %s", failure[:300], AFTER_A_FAILED_SEND)

    Topic._on_published = _on_published  # type: ignore[method-assign]


def note_send_failure(app: Any, failure: str) -> None:
    """Record a record that could not be sent (a send that raised): from now on no offset is committed."""
    checkpoint = checkpoint_of(app)
    if checkpoint is not None:
        checkpoint.failures.note(failure)


def commits_stopped(app: Any) -> bool:
    """``Checkpoint.stopped`` of ``app``'s checkpoint, for code that holds only the app (False without one)."""
    checkpoint = checkpoint_of(app)
    return checkpoint is not None and checkpoint.stopped


# -- 5. Faust's producer buffer flush drains it -------------------------------------------------------------------


def _drain_producer_buffer() -> None:
    """Faust writes every ``table[key] = value`` and ``send_soon`` through a buffer and flushes the producer
    before it commits; but ``ProducerBuffer.flush`` gives up after 0.1 s without progress and returns with
    records still buffered (under load 100+). An offset could then be committed while the state change of
    that event was still in memory, and a ``kill -9`` lost it for good. Here the flush waits until the
    buffer is empty (warning every 10 s while it is not); while the buffer service is stopping, Faust's own
    bounded flush is kept so that shutdown cannot hang."""
    from faust.transport.producer import ProducerBuffer

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


# -- 6. back-pressure counts the changelog writer -----------------------------------------------------------------


def _back_pressure() -> None:
    """Before each message is delivered to the streams Faust waits while its producer buffer is too full;
    the changelog writer's unacknowledged records count too, so a slow broker cannot grow memory."""
    from faust.transport.producer import ProducerBuffer

    buffer_ebb = ProducerBuffer.wait_until_ebb

    async def wait_until_ebb(self: Any) -> None:  # per message delivered: keep it cheap
        await buffer_ebb(self)
        checkpoint = checkpoint_of(self.app)
        if checkpoint is not None:
            await checkpoint.wait_until_ebb()

    ProducerBuffer.wait_until_ebb = wait_until_ebb  # type: ignore[method-assign]


# -- 7. the producer flush before an offset commit is the checkpoint's commit ---------------------------------------


def _commit_order() -> None:
    """Faust flushes its producer before every offset commit, on rebalance and on shutdown: for an app with
    a checkpoint that flush is ``Checkpoint.commit`` (held writes, changelog, this flush, failures)."""
    from faust.transport.drivers.aiokafka import Producer

    producer_flush = Producer.flush

    async def flush(self: Any) -> None:
        checkpoint = checkpoint_of(self.app)
        if checkpoint is None:
            await producer_flush(self)
        else:
            await checkpoint.commit(lambda: producer_flush(self))

    Producer.flush = flush  # type: ignore[method-assign]


# -- 8. no terminal spinner on workers -----------------------------------------------------------------------------


def _no_worker_spinner() -> None:
    """At a log level of WARN or above, Faust's worker adds a spinner handler and sets the root logger to
    DEBUG so that every record spins it: every aiokafka and Faust debug call then builds a LogRecord (11%
    of a worker's CPU at ``-l warn``, py-spy) for a spinner nobody sees in a service."""
    from faust.worker import Worker

    def on_setup_root_logger(self: Any, logger: Any, level: int) -> None:
        self.spinner = None

    Worker.on_setup_root_logger = on_setup_root_logger  # type: ignore[method-assign]


# -- 9. RocksDB tables write without their own write-ahead log ---------------------------------------------------------


def _state_stores_without_wal() -> None:
    """Open every RocksDB table database (``rocksdb://``) with its write-ahead log off (``without_wal``)."""
    from faust.stores.rocksdb import RocksDBOptions

    open_db = RocksDBOptions.open

    def open_without_wal(self: Any, path: Any, *, read_only: bool = False) -> Any:
        db = open_db(self, path, read_only=read_only)
        return without_wal(db) if self.use_rocksdict and not read_only else db

    RocksDBOptions.open = open_without_wal  # type: ignore[method-assign]


def without_wal(db: Any) -> Any:
    """Make a rocksdict database's writes skip its write-ahead log; returns ``db``.

    A table's changelog topic is its durable log: Faust recovers a table by re-reading the changelog from
    the offset its RocksDB database keeps (``Store.set_persisted_offset``, written after the writes it
    covers). A WAL would log every write a second time, and cost most of a write. Without it, a ``kill -9``
    loses what the database had not yet flushed, that offset included: the database comes back as it was
    at its last flush, a consistent earlier point, and recovery re-reads the changelog from there. A clean
    stop closes the databases, which flushes them. (Kafka Streams runs its RocksDB stores without a WAL for the same reason.)"""
    import rocksdict

    options = rocksdict.WriteOptions()
    options.disable_wal = True  # type: ignore[assignment]  # (a property at run time; the stub says a method)
    db.set_write_options(options)
    return db


# -- 10. a fetched message is handed to the streams without four tasks -----------------------------------------------


def _deliver_without_tasks() -> None:
    """Faust's fetcher loop (``Consumer._drain_messages``) hands each fetched message to the streams with
    ``await self.wait_first(callback(message), self.suspend_flow.wait())``: four tasks per message (the
    callback, and waits for a suspended flow, a stop and a crash), three of them cancelled again, about a
    tenth of a worker's CPU on one record per event (py-spy). The callback nearly always finishes at once
    (it puts the message into the streams' buffers); ``deliver`` runs it to its first wait, and only a
    callback that must wait (a full buffer) goes on under Faust's ``wait_first``, which still gives it up
    when the flow is suspended for a rebalance or the consumer stops. The loop is Faust's own otherwise
    (faust-streaming 0.15: re-check on upgrade)."""
    from faust.transport import consumer as faust_consumer

    async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - Faust's loop but the hand-over
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await deliver(self, callback(message))  # (Faust: ``await self.wait_first(...)``)
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)

    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


async def deliver(consumer: Any, delivery: Coroutine[Any, Any, Any]) -> None:
    """Run ``delivery`` (the streams' callback for one message) to its end, or to its first wait; one that
    waits goes on as Faust runs it: under ``consumer.wait_first`` with the flow's suspension, which gives it
    up (cancelled) if the flow is suspended or the consumer stops first."""
    try:
        waiting_on = delivery.send(None)
    except StopIteration:
        return  # done without waiting: nearly every message
    await consumer.wait_first(_Resumed(delivery, waiting_on), consumer.suspend_flow.wait())


class _Resumed:
    """Awaiting it goes on with ``coro``, already run up to the wait that yielded ``waiting_on``: as if the
    awaiting task had run ``coro`` from its start (the same steps ``await`` takes for a coroutine)."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting_on = self.coro, self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown in (a cancellation): the coroutine's to handle
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


# -- 11. records held back go out before Faust waits for its streams ------------------------------------------------


def _send_held_before_waiting_for_streams() -> None:
    """At a rebalance and at a stop Faust clears the streams' queues, then waits until every record a stream
    took is acknowledged. An agent that acknowledges its records only once it has sent what they produced,
    holding that back while more records are queued (the order router's order facts), would wait there for a
    next record that never comes: the checkpoint's ``send_held`` sends it first."""
    from faust.app.base import App

    consumer_wait_empty = App._consumer_wait_empty

    async def wait_empty(self: Any, consumer: Any, logger: Any) -> None:
        checkpoint = checkpoint_of(self)
        if checkpoint is not None:
            await checkpoint.send_held()
        await consumer_wait_empty(self, consumer, logger)

    App._consumer_wait_empty = wait_empty  # type: ignore[method-assign]


# -- private internals, read here only ------------------------------------------------------------------------------


def aiokafka_producer(app: Any) -> Any:
    """The aiokafka producer under Faust's ``app.producer`` (started with the app)."""
    return app.producer._ensure_producer()


def send_now(producer: Any) -> None:
    """Send every record an aiokafka ``producer`` holds for its linger now, without waiting for the
    acknowledgements: for a caller about to wait for some of them.

    aiokafka keeps a record up to ``linger_ms`` in case more come for its partition, and its ``flush()``
    waits out that linger (Kafka's Java client's flush sends at once). The parcel agent waits for its issue
    events' acknowledgements before it writes the states: with the app's 5 ms linger that wait was about
    8 ms a record, 3.8 ms sent at once. The same steps as aiokafka's own ``flush_for_commit``: close the
    open batches (a closed batch is sent at once; a later record starts a new one) and wake the sender.
    """
    accumulator = producer._message_accumulator
    for batches in accumulator._batches.values():
        for batch in batches:
            batch._builder.close()
    if not accumulator._waiter_future.done():
        accumulator._waiter_future.set_result(None)


async def acknowledged(producer: Any) -> None:
    """Wait until every record an aiokafka ``producer`` holds now (lingering, or sent and not yet answered)
    has its broker's answer, sending the lingering ones at once; records sent later are not waited for.
    aiokafka's own ``flush_for_commit``; a failed record is the sender's callback to report."""
    await producer._message_accumulator.flush_for_commit()


def stream_positions(app: Any, topics: set[str]) -> list[dict[str, Any]] | None:
    """For each assigned partition of ``topics`` with records waiting: fetch position, high watermark,
    whether paused, when last fetched (epoch seconds), committed and read offsets. None while the consumer
    is not started or rebalancing."""
    consumer: Any = app.consumer
    try:
        assignment = aiokafka_consumer(app)._fetcher._subscriptions.subscription.assignment
    except Exception:  # noqa: BLE001 - not started / rebalancing: nothing to report
        return None
    if assignment is None:
        return None
    out: list[dict[str, Any]] = []
    for tp in sorted(consumer.assignment()):
        if tp.topic not in topics:
            continue
        state = assignment.state_value(tp)
        if state is None or state.highwater is None or not state.has_valid_position:
            continue
        if state.position >= state.highwater:
            continue
        out.append({
            "topic": tp.topic, "partition": tp.partition, "position": state.position, "highwater": state.highwater,
            "paused": state.paused, "last_fetch": state.timestamp / 1000 if state.timestamp else None,
            "committed": consumer._committed_offset.get(tp), "read": consumer._read_offset.get(tp),
        })
    return out


async def cluster_metadata(client: Any) -> Any:
    """Every topic's metadata, asked of the cluster now (a null topic list) through the aiokafka client
    under ``client`` (a consumer or an admin client): what ``AIOKafkaConsumer.topics()`` asks, keeping the
    partitions it drops."""
    return await client._client.fetch_all_metadata()


# A fetch answer older than this says nothing about a partition's high watermark any more: a consumer that
# is fetching hears from the broker about twice a second (aiokafka's fetch wait) even with nothing new.
FETCH_ANSWER_FRESH_SECONDS = 5.0


def aiokafka_consumer(app: Any) -> Any:
    """The aiokafka consumer under Faust's ``app.consumer`` (in its consumer thread, started with the app)."""
    return app.consumer._thread._ensure_consumer()


def fetched_highwater(consumer: Any, tp: Any) -> int | None:
    """The high watermark of ``tp`` (assigned to the aiokafka ``consumer``: aiokafka asserts it) as the last
    fetch answer gave it, if that answer came within ``FETCH_ANSWER_FRESH_SECONDS``; else None, as before the
    first fetch. A broker that stops answering (frozen, cut off; on Kafka, the one leading that partition)
    leaves the last answer standing while records go on arriving on it: a partition whose last answer said
    "nothing more" is not known to be caught up then. (Faust's ``Consumer.highwater`` is that answer at any age.)"""
    highwater = consumer.highwater(tp)
    polled = consumer.last_poll_timestamp(tp)
    if highwater is None or polled is None or time.time() - polled / 1000 > FETCH_ANSWER_FRESH_SECONDS:
        return None
    return int(highwater)


def committed_offsets(app: Any) -> dict[Any, int]:
    """The offsets Faust last committed, per topic partition."""
    return dict(getattr(app.consumer, "_committed_offset", {}))


def records_queued(stream: Any) -> bool:
    """Whether records already delivered to ``stream`` (an agent's Faust stream) wait in its channel's
    queue: what its next iteration takes without waiting."""
    return not stream.channel.queue.empty()
