"""RecordBatcher (delivery/record_batcher.py): grouping by partition, splitting, order, linger, failures and
cancellation, with an injected send function in place of the Faust topic (pure logic, no broker).

pytest-asyncio is not a dependency: each test runs its coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from delivery import record_batcher as rb
from delivery.batch_records import decode_batch, is_batch, partition_for

PARTITIONS = 4


def keys_on(partition: int, n: int, start: int = 0) -> list[str]:
    """``n`` parcel keys that hash to ``partition``."""
    out: list[str] = []
    i = start
    while len(out) < n:
        key = f"ZTO:7310{i:08d}"
        if partition_for(key, PARTITIONS) == partition:
            out.append(key)
        i += 1
    return out


def event(key: str, seq: int = 0) -> bytes:
    carrier, number = key.split(":")
    return orjson.dumps({"event_id": f"{key}#{seq}", "carrier": carrier, "tracking_number": number, "seq": seq})


class FakeTopic:
    """Records what the batcher sends; each record's acknowledgement is a future the test may settle
    (``auto_ack``: acknowledged as soon as it is sent)."""

    def __init__(self, auto_ack: bool = True, fail_partitions: frozenset[int] = frozenset(),
                 yield_per_send: bool = False) -> None:
        self.auto_ack = auto_ack
        self.fail_partitions = fail_partitions
        self.yield_per_send = yield_per_send
        self.records: list[tuple[int, str | None, bytes]] = []
        self.acks: list[asyncio.Future[object]] = []
        self.sent_at: list[float] = []

    async def send(self, partition: int, key: str | None, value: bytes) -> asyncio.Future[object]:
        if self.yield_per_send:
            await asyncio.sleep(0)  # as the producer may: other flushes and callers run meanwhile
        if partition in self.fail_partitions:
            raise ConnectionError(f"partition {partition} unavailable")
        self.records.append((partition, key, value))
        self.sent_at.append(time.monotonic())
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.auto_ack:
            ack.set_result(("metadata", partition))
        self.acks.append(ack)
        return ack

    def elements(self, partition: int) -> list[dict[str, Any]]:
        """Every event sent to ``partition``, in send order, whatever record format carried it."""
        out: list[dict[str, Any]] = []
        for p, _key, value in self.records:
            if p == partition:
                out.extend(decode_batch(value) if is_batch(value) else [orjson.loads(value)])
        return out


def test_items_are_grouped_into_one_record_per_partition_and_a_lone_item_keeps_the_old_format() -> None:
    async def run() -> FakeTopic:
        topic = FakeTopic()
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.01)
        k0, k2 = keys_on(0, 3), keys_on(2, 1)
        items = [(k0[0], event(k0[0])), (k2[0], event(k2[0])), (k0[1], event(k0[1])), (k0[2], event(k0[2]))]
        await batcher.send(items)
        assert batcher.pending() == 0
        return topic

    topic = asyncio.run(run())
    assert sorted(p for p, _, _ in topic.records) == [0, 2]
    by_partition = {p: (key, value) for p, key, value in topic.records}
    key, value = by_partition[0]
    assert key is None and is_batch(value)  # a batch record: no key, placed by its explicit partition
    assert [e["event_id"].split("#")[0] for e in decode_batch(value)] == keys_on(0, 3)
    key, value = by_partition[2]
    assert key == keys_on(2, 1)[0] and value == event(key)  # a lone item: byte-identical to a single record
    for p, _, value in topic.records:  # every element belongs to the partition its record is on
        for e in decode_batch(value) if is_batch(value) else [orjson.loads(value)]:
            assert partition_for(f"{e['carrier']}:{e['tracking_number']}", PARTITIONS) == p


def test_concurrent_callers_share_records() -> None:
    async def run() -> FakeTopic:
        topic = FakeTopic()
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.02)
        keys = [k for p in range(PARTITIONS) for k in keys_on(p, 10)]
        await asyncio.gather(*(batcher.send([(k, event(k))]) for k in keys))
        return topic

    topic = asyncio.run(run())
    assert len(topic.records) == PARTITIONS  # 40 pushes of one scan each: 4 records
    assert all(key is None and len(decode_batch(value)) == 10 for _, key, value in topic.records)


def test_a_partition_is_split_by_event_count_and_full_records_go_without_waiting_for_the_linger() -> None:
    async def run() -> tuple[FakeTopic, float]:
        topic = FakeTopic()
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=30.0, max_events=3)
        keys = keys_on(1, 7)
        started = time.monotonic()
        sending = asyncio.ensure_future(batcher.send([(k, event(k)) for k in keys]))
        for _ in range(20):
            await asyncio.sleep(0)
        assert [len(decode_batch(v)) for _, _, v in topic.records] == [3, 3]  # sealed chunks: at once
        assert not sending.done()  # its 7th item is still waiting for the linger (30 s)
        assert batcher.pending() == 1
        await batcher.flush()
        await sending
        return topic, time.monotonic() - started

    topic, seconds = asyncio.run(run())
    assert seconds < 5
    assert [(p, k) for p, k, _ in topic.records][:2] == [(1, None), (1, None)]
    last_partition, last_key, last_value = topic.records[2]
    assert (last_partition, last_key) == (1, keys_on(1, 7)[6]) and not is_batch(last_value)
    assert [e["event_id"].split("#")[0] for e in topic.elements(1)] == keys_on(1, 7)


def test_a_partition_is_split_by_bytes_and_a_large_element_travels_alone() -> None:
    async def run() -> FakeTopic:
        topic = FakeTopic()
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.001, max_bytes=300)
        keys = keys_on(3, 6)
        items = [(k, event(k)) for k in keys[:3]]  # about 90 bytes each: 3 fit in 300
        items.append((keys[3], orjson.dumps({"event_id": keys[3], "pad": "x" * 400})))  # over max_bytes alone
        items += [(k, event(k)) for k in keys[4:]]
        await batcher.send(items)
        return topic

    topic = asyncio.run(run())
    sizes = [len(decode_batch(v)) if is_batch(v) else 1 for _, _, v in topic.records]
    assert sizes == [3, 1, 2]
    assert all(len(v) <= 300 for _, _, v in topic.records if is_batch(v))
    assert topic.records[1][1] == keys_on(3, 6)[3]  # the large one, alone and keyed
    assert len(topic.elements(3)) == 6


def test_order_within_a_partition_is_the_order_of_the_calls() -> None:
    async def run() -> FakeTopic:
        topic = FakeTopic(yield_per_send=True)
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.002, max_events=7)
        keys = {p: keys_on(p, 5) for p in range(PARTITIONS)}
        seq = 0

        async def caller(c: int) -> None:
            nonlocal seq
            for round_ in range(5):
                items = []
                for p in range(PARTITIONS):
                    key = keys[p][(c + round_) % 5]
                    seq += 1
                    items.append((key, event(key, seq)))
                await batcher.send(items)
                await asyncio.sleep(0.001 * (c % 3))

        await asyncio.gather(*(caller(c) for c in range(30)))
        return topic

    topic = asyncio.run(run())
    assert len(topic.records) < 30 * 5 * PARTITIONS  # it did batch
    for p in range(PARTITIONS):
        seqs = [e["seq"] for e in topic.elements(p)]
        assert len(seqs) == 30 * 5
        assert seqs == sorted(seqs), f"partition {p} out of order"


def test_items_wait_for_the_linger_and_the_caller_for_the_acknowledgement() -> None:
    async def run() -> None:
        topic = FakeTopic(auto_ack=False)
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.1)
        key = keys_on(0, 1)[0]
        started = time.monotonic()
        sending = asyncio.ensure_future(batcher.send([(key, event(key))]))
        await asyncio.sleep(0.05)
        assert topic.records == []  # the linger has not elapsed
        await asyncio.sleep(0.1)
        assert len(topic.records) == 1 and topic.sent_at[0] - started >= 0.09
        assert not sending.done()  # sent, not acknowledged yet
        topic.acks[0].set_result(None)
        await asyncio.wait_for(sending, 1)

    asyncio.run(run())


def test_the_linger_starts_with_the_first_pending_item() -> None:
    async def run() -> list[float]:
        topic = FakeTopic()
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.2)
        k = keys_on(0, 3)
        started = time.monotonic()
        first = asyncio.ensure_future(batcher.send([(k[0], event(k[0]))]))
        await asyncio.sleep(0.12)
        second = asyncio.ensure_future(batcher.send([(k[1], event(k[1]))]))  # joins the first's record
        await asyncio.gather(first, second)
        await batcher.send([(k[2], event(k[2]))])  # a new linger: its own record
        return [t - started for t in topic.sent_at]

    sent = asyncio.run(run())
    # From the first item: 0.2 s (from the second it would be 0.32 s); then a new linger for the third.
    assert len(sent) == 2 and 0.19 <= sent[0] < 0.31 and sent[1] - sent[0] >= 0.19


def test_a_failed_send_fails_exactly_the_callers_whose_items_it_carried() -> None:
    async def run() -> None:
        topic = FakeTopic(fail_partitions=frozenset({2}))
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.01)
        (a,), (b,), (c,) = keys_on(0, 1), keys_on(1, 1), keys_on(2, 1)
        results = await asyncio.gather(
            batcher.send([(a, event(a))]),
            batcher.send([(a, event(a, 1)), (c, event(c))]),  # one item on the failing partition
            batcher.send([(b, event(b))]),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], ConnectionError)
        assert sorted(p for p, _, _ in topic.records) == [0, 1]
        topic.fail_partitions = frozenset()
        await batcher.send([(c, event(c))])  # the next flush is not affected
        assert [p for p, _, _ in topic.records][-1] == 2

    asyncio.run(run())


def test_a_failed_acknowledgement_is_raised_to_every_caller_of_that_record() -> None:
    async def run() -> None:
        topic = FakeTopic(auto_ack=False)
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.005)
        k0, k1 = keys_on(0, 2), keys_on(1, 1)
        first = asyncio.ensure_future(batcher.send([(k0[0], event(k0[0]))]))
        second = asyncio.ensure_future(batcher.send([(k0[1], event(k0[1])), (k1[0], event(k1[0]))]))
        while len(topic.acks) < 2:
            await asyncio.sleep(0.005)
        for (p, _, _), ack in zip(topic.records, topic.acks, strict=True):
            if p == 0:
                ack.set_exception(TimeoutError("request timed out"))
            else:
                ack.set_result(None)
        for fut in (first, second):
            with pytest.raises(TimeoutError):
                await fut

    asyncio.run(run())


def test_a_cancelled_caller_does_not_cancel_the_record_it_shares() -> None:
    async def run() -> None:
        topic = FakeTopic(auto_ack=False)
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.01)
        k = keys_on(0, 2)
        leaving = asyncio.ensure_future(batcher.send([(k[0], event(k[0]))]))
        staying = asyncio.ensure_future(batcher.send([(k[1], event(k[1]))]))
        while not topic.acks:
            await asyncio.sleep(0.005)
        leaving.cancel()  # the client went away while its push waited for the acknowledgement
        await asyncio.sleep(0)
        assert leaving.cancelled() and not topic.acks[0].cancelled()
        topic.acks[0].set_result(None)
        await asyncio.wait_for(staying, 1)
        assert len(decode_batch(topic.records[0][2])) == 2

        # Cancelled before its items were sent: they are sent all the same (the source retries anyway).
        leaving = asyncio.ensure_future(batcher.send([(k[0], event(k[0], 1))]))
        await asyncio.sleep(0)
        leaving.cancel()
        staying = asyncio.ensure_future(batcher.send([(k[1], event(k[1], 1))]))
        while len(topic.acks) < 2:
            await asyncio.sleep(0.005)
        topic.acks[1].set_result(None)
        await asyncio.wait_for(staying, 1)

    asyncio.run(run())


async def _callbacks_run() -> None:
    """Let the chain of done callbacks run (the record's ack, then the chunk's)."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_unsettled_counts_items_until_their_record_is_acknowledged_or_failed() -> None:
    async def run() -> None:
        topic = FakeTopic(auto_ack=False, fail_partitions=frozenset({3}))
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.005)
        k0, k1, (k3,) = keys_on(0, 3), keys_on(1, 2), keys_on(3, 1)
        waiting = asyncio.ensure_future(batcher.send([(k, event(k)) for k in (*k0, *k1)]))
        failing = asyncio.ensure_future(batcher.send([(k3, event(k3))]))
        await asyncio.sleep(0)
        assert batcher.unsettled() == 6 and batcher.pending() == 6  # nothing handed to the producer yet
        while len(topic.acks) < 2:
            await asyncio.sleep(0.005)
        with pytest.raises(ConnectionError):
            await failing  # a failed send settles its items too
        # Handed to the producer, not acknowledged: no longer pending here, still unsettled.
        assert batcher.pending() == 0 and batcher.unsettled() == 5
        waiting.cancel()  # a caller that gave up does not settle the records that carry its items
        await asyncio.sleep(0)
        assert batcher.unsettled() == 5
        by_partition = {p: ack for (p, _, _), ack in zip(topic.records, topic.acks, strict=True)}
        by_partition[0].set_result(None)
        await _callbacks_run()
        assert batcher.unsettled() == 2
        by_partition[1].set_exception(TimeoutError("request timed out"))
        await _callbacks_run()
        assert batcher.unsettled() == 0

    asyncio.run(run())


def test_a_cancelled_flush_fails_its_callers_and_loses_nothing_else() -> None:
    async def run() -> None:
        gate = asyncio.Event()
        topic = FakeTopic()

        async def stalling_send(partition: int, key: str | None, value: bytes) -> asyncio.Future[object]:
            await gate.wait()  # the producer's buffer is full
            return await topic.send(partition, key, value)

        batcher = rb.RecordBatcher(stalling_send, PARTITIONS, linger=0.005)
        a, b = keys_on(0, 1)[0], keys_on(1, 1)[0]
        first = asyncio.ensure_future(batcher.send([(a, event(a))]))
        while not batcher._tasks:  # the linger elapsed: a flush is stuck handing over the record
            await asyncio.sleep(0.002)
        (stuck,) = batcher._tasks
        await asyncio.sleep(0.01)
        later = asyncio.ensure_future(batcher.send([(b, event(b))]))  # pending behind the stuck flush
        await asyncio.sleep(0.02)
        assert len(batcher._tasks) == 2  # its linger elapsed too: the next flush waits for its turn
        stuck.cancel()
        with pytest.raises(rb.FlushCancelled):
            await first
        gate.set()
        await asyncio.wait_for(later, 1)  # not the cancelled flush's: sent by the next one
        assert [p for p, _, _ in topic.records] == [1]

    asyncio.run(run())


def test_a_flush_cancelled_before_its_turn_fails_what_it_would_have_sent() -> None:
    async def run() -> None:
        topic = FakeTopic()
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=0.005)
        a = keys_on(2, 1)[0]
        await batcher._lock.acquire()  # another flush is handing over its records
        sending = asyncio.ensure_future(batcher.send([(a, event(a))]))
        while not batcher._tasks:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0)
        next(iter(batcher._tasks)).cancel()
        with pytest.raises(rb.FlushCancelled):
            await asyncio.wait_for(sending, 1)
        batcher._lock.release()
        assert batcher.pending() == 0
        await asyncio.wait_for(batcher.send([(a, event(a, 1))]), 1)  # and the batcher goes on
        assert len(topic.records) == 1

    asyncio.run(run())


def test_nothing_to_send_returns_at_once() -> None:
    async def run() -> None:
        topic = FakeTopic()
        batcher = rb.RecordBatcher(topic.send, PARTITIONS, linger=10.0)
        await asyncio.wait_for(batcher.send([]), 0.5)
        await batcher.flush()
        assert topic.records == [] and not batcher._tasks

    asyncio.run(run())


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="partitions"):
        rb.RecordBatcher(FakeTopic().send, 0)
    with pytest.raises(ValueError, match="linger"):
        rb.RecordBatcher(FakeTopic().send, 4, linger=-1)
