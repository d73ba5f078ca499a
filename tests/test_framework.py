"""delivery/framework.py: what parcelwatch overrides in Faust and aiokafka, each checked against the failure it
prevents; and aiokafka's own CancelledError on stop is swallowed while a real cancellation is not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import config
from delivery.clients import stop_consumer


class _RaisesOnStop:
    """Stands in for an AIOKafkaConsumer whose stop() re-raises its internal task's cancellation."""

    async def stop(self) -> None:
        raise asyncio.CancelledError


class _SlowStop:
    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def stop(self) -> None:
        self.started.set()
        await asyncio.sleep(30)


def test_aiokafkas_internal_cancellation_does_not_end_the_caller() -> None:
    async def caller() -> str:
        await stop_consumer(_RaisesOnStop())  # type: ignore[arg-type]
        return "still running"

    assert asyncio.run(caller()) == "still running"


def test_a_real_cancellation_of_the_caller_still_propagates() -> None:
    async def main() -> Any:
        consumer = _SlowStop()
        task = asyncio.create_task(stop_consumer(consumer))  # type: ignore[arg-type]
        await consumer.started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(main()) is True


# -- a record that failed to send stops every later commit ------------------------------------------------


def _installed(app_id: str = "test-overrides") -> Any:
    """An app with a checkpoint, and the worker's overrides installed in this process as a worker does."""
    import faust

    from delivery import framework
    from delivery.checkpoint import Checkpoint

    checkpoint = Checkpoint(faust.App(app_id, broker="kafka://127.0.0.1:9", store="memory://"))
    framework.install(checkpoint)
    return checkpoint


@pytest.fixture
def guarded() -> Any:
    return _installed("test-send-guard")


async def _published(topic: Any, error: BaseException | None) -> Any:
    """Run Faust's send callback the way aiokafka's delivery does, with a result or an error."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
    message = topic.as_future_message(key=b"ZTO:1", value=b"{}")
    topic._on_published(fut, message, producer=None, state=None)
    return message


class _Buffer:
    async def flush(self) -> None:
        return None


class _ProducerStub:
    """What Faust's aiokafka Producer.flush touches: its app, its buffer, no aiokafka producer yet."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.buffer = _Buffer()
        self._producer = None
        self._transaction_producers: dict[str, Any] = {}


def test_a_failed_send_makes_every_later_flush_refuse_so_nothing_is_committed(guarded: Any) -> None:
    from aiokafka.errors import KafkaTimeoutError
    from faust.transport.drivers.aiokafka import Producer

    from delivery.checkpoint import SendFailed

    async def scenario() -> None:
        app = guarded.app
        topic = app.topic("parcelwatch-order-facts", key_type=bytes, value_type=bytes)

        await _published(topic, None)
        await Producer.flush(_ProducerStub(app))  # type: ignore[arg-type]  # all delivered: commits go ahead
        assert guarded.failures.first == []

        failed = await _published(topic, KafkaTimeoutError("batch expired"))
        assert isinstance(failed.exception(), KafkaTimeoutError)  # Faust's own handling is kept
        assert len(guarded.failures.first) == 1
        assert guarded.failures.first[0].startswith("parcelwatch-order-facts: KafkaTimeoutError")
        for _ in range(2):  # not once: every commit after the failure is refused
            with pytest.raises(SendFailed, match="parcelwatch-order-facts"):
                await Producer.flush(_ProducerStub(app))  # type: ignore[arg-type]

    asyncio.run(scenario())


@pytest.mark.integration
def test_once_a_send_failed_the_checkpoint_is_stopped_and_nothing_is_dead_lettered(guarded: Any) -> None:
    """After a failed send every record is processed again once the worker has started again: a dead letter now
    would set a good record aside (its own sends were what failed) or repeat the one that will come then."""
    from types import SimpleNamespace

    from aiokafka.errors import KafkaTimeoutError

    from delivery.dead_letters import DeadLetters
    from telemetry.recorder import Recorder

    app = guarded.app
    dead_letters = DeadLetters(app.topic("parcelwatch-dead-letter", key_type=bytes, value_type=bytes),
                               Recorder(config.load(env={})))
    record = SimpleNamespace(message=SimpleNamespace(topic="parcelwatch-tracking", partition=2, offset=41, key=b"ZTO:1",
                                                     value=b'{"carrier": "ZTO"}'))

    async def scenario() -> None:
        assert not guarded.stopped
        await _published(app.topic("parcelwatch-issues", key_type=bytes, value_type=bytes),
                         KafkaTimeoutError("batch expired"))
        assert guarded.stopped  # (the agents skip every record from here on)
        assert await dead_letters.reject(record, KafkaTimeoutError("batch expired")) is None  # type: ignore[arg-type]

    asyncio.run(scenario())
    # Not sent, and not tried: a send on this app (never started) would have failed and been counted.
    assert (dead_letters.counts.sent, dead_letters.counts.failed) == (0, 0)


def test_a_topic_produced_to_stays_in_the_producers_metadata(broker: Any) -> None:
    """aiokafka asks a metadata refresh for its tracked topics only and replaces what it knew with the
    answer; a topic it learnt at start-up and sends to without ever tracking it vanished at the next
    refresh (the first send to a newer topic), stranding whatever was queued for it."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    _installed()

    async def create(*names: str) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, 2, 1) for n in names])
        finally:
            await admin.close()

    async def scenario() -> None:
        await create("kt-early")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()  # start-up metadata: every topic, "kt-early" included
        try:
            assert producer.client.cluster.partitions_for_topic("kt-early")
            await (await producer.send("kt-early", b"1", partition=0))
            await create("kt-late")
            await (await producer.send("kt-late", b"2", partition=0))  # tracks "kt-late": a refresh for it
            await producer.client.force_metadata_update()
            assert producer.client.cluster.partitions_for_topic("kt-early"), "kt-early fell out of the metadata"
            await asyncio.wait_for(await producer.send("kt-early", b"3", partition=1), 10)
        finally:
            await producer.stop()

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_fetch_answer_says_nothing_once_the_broker_has_not_answered_for_a_while(broker: Any) -> None:
    """The catch-up clock and the order router take a partition for caught up when its last fetch answer said
    "nothing more". A broker that stops answering leaves that answer standing while records may still be
    arriving on it: after ``FETCH_ANSWER_FRESH_SECONDS`` without an answer the high watermark is unknown."""
    import os
    import signal

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from delivery.framework import FETCH_ANSWER_FRESH_SECONDS, fetched_highwater

    tp = TopicPartition("kt-answers", 0)

    async def answered(consumer: AIOKafkaConsumer, timeout: float) -> int | None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (highwater := fetched_highwater(consumer, tp)) is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        return highwater

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        try:
            for value in (b"1", b"2", b"3"):
                await (await producer.send(tp.topic, value, partition=0))
            await consumer.start()
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got = 0
            while got < 3:  # (taken, as a worker takes them: aiokafka fetches a partition again once they are)
                got += sum(len(records) for records in (await consumer.getmany(timeout_ms=10_000)).values())
            assert await answered(consumer, 10) == 3  # (fetched on its own since, records or none)
            os.kill(broker.proc.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(FETCH_ANSWER_FRESH_SECONDS + 1.5)
                assert consumer.highwater(tp) == 3  # aiokafka's last answer stands ...
                assert fetched_highwater(consumer, tp) is None  # ... and says nothing any more
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)
            assert await answered(consumer, 60) == 3  # answering again
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(scenario())


@pytest.mark.integration
def test_send_now_sends_what_waits_for_its_linger_and_later_records_still_go(broker: Any) -> None:
    """With a linger of a minute the record waits; ``send_now`` sends it at once, and a record sent
    after it starts a new batch, which lingers again until the next ``send_now``."""
    from aiokafka import AIOKafkaProducer

    from delivery.framework import send_now

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=60_000)
        await producer.start()
        try:
            first = await producer.send("kt-now", b"1", partition=0)
            await asyncio.sleep(1.0)
            assert not first.done(), "held for the linger"
            send_now(producer)
            assert (await asyncio.wait_for(first, 10)).offset == 0
            second = await producer.send("kt-now", b"2", partition=0)
            await asyncio.sleep(1.0)
            assert not second.done()
            send_now(producer)
            assert (await asyncio.wait_for(second, 10)).offset == 1
        finally:
            await producer.stop()

    asyncio.run(scenario())


@pytest.mark.integration
def test_acknowledged_waits_for_what_the_producer_holds_not_for_what_is_sent_later(broker: Any) -> None:
    """What the changelog writer waits for before each batch (``Checkpoint._produced_before``): every record
    the producer holds, lingering ones sent at once; a record sent during the wait is not waited for."""
    from aiokafka import AIOKafkaProducer

    from delivery.framework import acknowledged

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=60_000)
        await producer.start()
        try:
            held = [await producer.send("kt-acked", b"%d" % p, partition=p) for p in (0, 1)]
            waiting = asyncio.ensure_future(acknowledged(producer))
            await asyncio.sleep(0)  # the wait has begun: its records are the ones held until now
            later = await producer.send("kt-acked", b"later", partition=0)
            await asyncio.wait_for(waiting, 10)
            assert [f.result().offset for f in held] == [0, 0]
            await asyncio.sleep(1.0)
            assert not later.done(), "a record sent after the wait began lingers as usual"
            await asyncio.wait_for(acknowledged(producer), 10)
            assert later.result().offset == 1
        finally:
            await producer.stop()

    asyncio.run(scenario())


# -- recovery seeks the stream partitions before it fetches them -------------------------------------------


class _RecordingConsumer:
    """Stands in for Faust's consumer: records the calls Faust's end of recovery makes, in order."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def assignment(self) -> set[str]:
        return {"tracking-0", "parcel-state-changelog-0"}

    def resume_partitions(self, tps: Any) -> None:
        self.calls.append(f"resume {sorted(tps)}")

    async def perform_seek(self) -> None:
        self.calls.append("seek")

    def resume_flow(self) -> None:
        self.calls.append("flow")


def _recovery_end(calls: list[str]) -> Any:
    """What ``Recovery.on_recovery_completed`` reads of its service and app, with a recording consumer."""
    from types import SimpleNamespace

    async def nothing(*_: Any, **__: Any) -> None:
        return None

    async def wait(coro: Any, timeout: float | None = None) -> None:
        await coro

    app = SimpleNamespace(
        consumer=_RecordingConsumer(calls), consumer_generation_id=3,
        on_rebalance_complete=SimpleNamespace(send=nothing), conf=SimpleNamespace(broker_request_timeout=5),
        flow_control=SimpleNamespace(resume=lambda: calls.append("flow control")),
        _fetcher=SimpleNamespace(maybe_start=nothing), assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        on_rebalance_end=lambda: None,
    )
    return SimpleNamespace(
        app=app, log=SimpleNamespace(info=lambda *a: None, dev=lambda *a: None), tables={},
        _set_recovery_ended=lambda: None, _is_changelog_tp=lambda tp: "changelog" in tp, _wait=wait,
        completed=SimpleNamespace(set=lambda: None),
        actives_for_table={}, standbys_for_table={},
    )


def test_recovery_seeks_the_stream_partitions_before_it_resumes_them() -> None:
    """Faust's own method, patched: nothing is fetched from a stream partition before the seek to its
    committed offset, and the flow (whose resumption clears the stream queues) is resumed before any of
    its records is handed on."""
    from faust.tables.recovery import Recovery

    _installed()
    calls: list[str] = []
    recovery = _recovery_end(calls)
    recovery.tables = type("Tables", (dict,), {"on_actives_ready": lambda self: None, "on_standbys_ready": lambda self: None})()
    asyncio.run(Recovery.on_recovery_completed(recovery, 3))
    assert calls == ["seek", "flow control", "flow", "resume ['tracking-0']"]
    assert "resume_partitions" not in vars(recovery.app.consumer)  # the consumer's own method again


class _WaitingFetcher:
    """Stands in for aiokafka's fetcher: waits for records, then reads the partitions it was asked for."""

    def __init__(self) -> None:
        import contextlib

        self._closed = False
        self._subscriptions = type("Subscriptions", (), {"fetch_context": lambda self: contextlib.nullcontext()})()
        self.asked: list[set[str]] = []
        self.waiting = asyncio.Event()
        self.records_arrive = asyncio.Event()

    async def fetched_records(self, partitions: set[str], timeout: float = 0, max_records: int | None = None) -> dict[str, list[int]]:
        self.waiting.set()
        await self.records_arrive.wait()
        self.asked.append(set(partitions))
        # aiokafka's own rule: no partitions given means every partition with buffered records.
        return {tp: [1] for tp in ("tracking-0", "tracking-1") if not partitions or tp in partitions}


def test_a_fetch_asks_for_the_partitions_active_when_it_started() -> None:
    """Faust's live set of active partitions emptied during a waiting fetch must not turn into "every
    partition" (records of paused partitions drained and then dropped); an empty set fetches nothing."""
    from types import SimpleNamespace

    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _installed()
    thread = SimpleNamespace(consumer=SimpleNamespace(flow_active=True))
    fetcher = _WaitingFetcher()
    consumer = SimpleNamespace(_fetcher=fetcher, _closed=False)

    async def main() -> tuple[Any, Any]:
        active = {"tracking-1"}
        fetch = asyncio.create_task(AIOKafkaConsumerThread._fetch_records(thread, consumer, active, timeout=1.0))  # type: ignore[arg-type]
        await fetcher.waiting.wait()
        active.clear()  # paused while the fetch waits
        fetcher.records_arrive.set()
        during = await fetch
        nothing_active = await AIOKafkaConsumerThread._fetch_records(thread, consumer, set(), timeout=1.0)  # type: ignore[arg-type]
        return during, nothing_active

    during, nothing_active = asyncio.run(main())
    assert during == {"tracking-1": [1]}
    assert nothing_active == {}
    assert fetcher.asked == [{"tracking-1"}]


def test_on_the_embedded_broker_faust_long_polls_briefly() -> None:
    """Tansu answers a fetch over several partitions about 0.55 s late when a record arrives for one of
    them (delivery/tansu.py): Faust's consumer must ask for a short wait, not its fixed 1500 ms."""
    import faust

    from delivery.tansu import FETCH_MAX_WAIT_MS, patch_fetch_wait

    async def created() -> int:
        app = faust.App("test-fetch-wait", broker="kafka://127.0.0.1:9", store="memory://")
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
        return int(consumer._fetch_max_wait_ms)

    patch_fetch_wait()
    assert asyncio.run(created()) == FETCH_MAX_WAIT_MS < 1500


def test_the_worker_opens_rocksdb_tables_without_a_write_ahead_log(tmp_path: Any) -> None:
    """Faust's own options log every put in the database's WAL; the override's databases log none, and what
    a clean close flushed is all there when the database is opened again."""
    from pathlib import Path

    import rocksdict
    from faust.stores.rocksdb import RocksDBOptions

    from delivery import framework

    def wal_bytes(path: Path) -> int:
        return sum(f.stat().st_size for f in path.glob("*.log"))

    faust_db = rocksdict.Rdict(str(tmp_path / "faust"), options=RocksDBOptions().as_options())
    for i in range(200):
        faust_db[f"k{i}".encode()] = b"v" * 100
    assert wal_bytes(tmp_path / "faust") > 200 * 100  # (the control: Faust's options keep a WAL)
    faust_db.close()

    framework._once(framework._state_stores_without_wal)
    db = RocksDBOptions().open(tmp_path / "worker")
    for i in range(200):
        db[f"k{i}".encode()] = b"v" * 100
    assert wal_bytes(tmp_path / "worker") == 0
    db.close()
    reopened = rocksdict.Rdict(str(tmp_path / "worker"), access_type=rocksdict.AccessType.read_only())
    try:
        assert [reopened.get(f"k{i}".encode()) for i in (0, 199)] == [b"v" * 100] * 2
    finally:
        reopened.close()


class _Consumer:
    """What ``deliver`` uses of Faust's consumer: ``wait_first`` (mode's own) and the flow's suspension."""

    def __init__(self) -> None:
        from mode import Service

        self.service = Service()
        self.suspend_flow = asyncio.Event()

    async def wait_first(self, *coros: Any) -> Any:
        return await self.service.wait_first(*coros)


def test_a_delivery_that_needs_no_wait_runs_to_its_end_without_a_task() -> None:
    from delivery.framework import deliver

    async def main() -> list[Any]:
        seen: list[Any] = []

        async def callback(message: str) -> None:
            seen.append((message, asyncio.current_task()))

        consumer = _Consumer()
        before = len(asyncio.all_tasks())
        await deliver(consumer, callback("m1"))
        assert len(asyncio.all_tasks()) == before
        return [(message, task is asyncio.current_task()) for message, task in seen]

    assert asyncio.run(main()) == [("m1", True)]  # (run in the fetcher's own task)


def test_a_delivery_that_waits_goes_on_after_its_wait_with_what_it_awaited() -> None:
    from delivery.framework import deliver

    async def main() -> list[Any]:
        steps: list[Any] = []
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        queue.put_nowait("older")  # full: the delivery must wait for room

        async def callback(message: str) -> None:
            steps.append("putting")
            await queue.put(message)
            steps.append(await asyncio.sleep(0, result="slept"))
            try:
                raise KeyError("inside")
            except KeyError:
                steps.append("caught its own error")

        async def consume() -> None:
            await asyncio.sleep(0.01)
            steps.append(queue.get_nowait())

        consumer = _Consumer()
        await asyncio.gather(deliver(consumer, callback("m1")), consume())
        steps.append(queue.get_nowait())
        return steps

    assert asyncio.run(main()) == ["putting", "older", "slept", "caught its own error", "m1"]


def test_a_waiting_delivery_is_given_up_when_the_flow_is_suspended_as_faust_does() -> None:
    from delivery.framework import deliver

    async def main() -> tuple[bool, bool]:
        cancelled = asyncio.Event()
        never = asyncio.Event()

        async def callback(message: str) -> None:
            try:
                await never.wait()  # (a full buffer that never drains)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        consumer = _Consumer()
        delivering = asyncio.ensure_future(deliver(consumer, callback("m1")))
        await asyncio.sleep(0.01)
        assert not delivering.done()
        consumer.suspend_flow.set()  # a rebalance
        await asyncio.wait_for(delivering, 2)
        return cancelled.is_set(), never.is_set()

    assert asyncio.run(main()) == (True, False)


def test_an_error_of_a_delivery_reaches_the_fetcher_loop_whether_or_not_it_waited() -> None:
    from delivery.framework import deliver

    async def main(wait: bool) -> str:
        async def callback(message: str) -> None:
            if wait:
                await asyncio.sleep(0)
            raise ValueError(message)

        try:
            await deliver(_Consumer(), callback("bad"))
        except ValueError as exc:
            return str(exc)
        return "no error"

    assert [asyncio.run(main(wait)) for wait in (False, True)] == ["bad", "bad"]
