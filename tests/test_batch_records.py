"""Batch records (delivery/batch_records.py): many events of one partition in one record, each processed as if alone.

A real worker on a real broker gets the simulator's events packed into batch records per partition
(tracking by parcel, orders by order id); it must leave the same open queue as a replay of the same
events, send its order facts as batch records, dead-letter a bad element alone (the rest of its record
processed), and re-route an element batched onto the wrong partition instead of losing or splitting it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import config
from core.replay import replay
from delivery.batch_records import (
    SharedDecodes,
    batch_records,
    decode_batch,
    encode_batches,
    is_batch,
    keyed_records,
    partition_for,
    record_events,
)
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from devtools.simulator import Simulator, write_jsonl
from domain.events import InvalidEvent, OrderEvent

from .harness import Worker, consume_all, open_issue_times, produce, replayed_open_times, wait_for

PARTITIONS = config.load(env={}).app.partitions


# -- the format ------------------------------------------------------------------------------------------


def test_partition_for_is_the_producers_default_partitioner() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(PARTITIONS))
    for key in ("ZTO:73100012345678", "order:TB1", "SF:1", "京东:JD0001", ""):
        assert partition_for(key, PARTITIONS) == DefaultPartitioner()(key.encode(), partitions, partitions)


def test_encode_batches_splits_by_count_and_size_and_keeps_order() -> None:
    elements = [orjson.dumps({"n": i, "pad": "x" * (i % 7)}) for i in range(23)]
    records = encode_batches(elements, max_events=5, max_bytes=10_000)
    assert [len(decode_batch(r)) for r in records] == [5, 5, 5, 5, 3]
    assert [e["n"] for r in records for e in decode_batch(r)] == list(range(23))
    small = encode_batches(elements, max_events=100, max_bytes=60)
    assert all(len(r) <= 60 or len(decode_batch(r)) == 1 for r in small)
    assert [e["n"] for r in small for e in decode_batch(r)] == list(range(23))
    assert encode_batches([]) == []


def test_a_batch_is_an_array_and_a_broken_one_names_the_problem() -> None:
    assert is_batch(b' [{"a":1}]') and not is_batch(b'{"a":1}') and not is_batch(b"") and not is_batch(None)
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        decode_batch(b"[{")


def test_keyed_records_send_a_lone_event_keyed_and_several_as_batches_per_partition() -> None:
    keys = [f"ZTO:{n}" for n in range(7310000000000, 7310000000040)]
    events = [(key, orjson.dumps({"subject": key, "n": i})) for i, key in enumerate(keys)]
    records = keyed_records(events, PARTITIONS, max_events=500)
    seen = []
    for key, partition, record in records:
        docs = record_events(record)
        assert all(partition_for(d["subject"], PARTITIONS) == partition for d in docs)
        assert (key is None) == is_batch(record) and (key is None or key == docs[0]["subject"])
        seen += [d["n"] for d in docs]
    assert sorted(seen) == list(range(40)) and len(records) == PARTITIONS  # 40 keys cover every partition
    for partition in range(PARTITIONS):  # in their order within a partition
        mine = [d["n"] for _, p, r in records if p == partition for d in record_events(r)]
        assert mine == sorted(mine)
    lone = keyed_records(events[:1], PARTITIONS)
    assert lone == [(keys[0], partition_for(keys[0], PARTITIONS), events[0][1])]


def test_record_events_reads_single_and_batch_records_and_names_a_broken_one() -> None:
    assert record_events(b'{"a": 1}') == [{"a": 1}]
    assert record_events(b'[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]
    with pytest.raises(InvalidEvent, match=r"^\$: record is not valid JSON"):
        record_events(b"{not json")
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        record_events(None)


# -- a live worker on batch records -----------------------------------------------------------------------


def _batched(records: list[tuple[str, bytes, Any]], size: int) -> list[tuple[str, bytes | None, bytes, int]]:
    """(topic, key, value, partition): each topic's events grouped by the partition of their key, in
    event order, ``size`` to a record."""
    out: list[tuple[str, bytes | None, bytes, int]] = []
    for kind in ("orders", "tracking"):
        mine = [(key, ev.to_json()) for k, key, ev in records if k == kind]
        out += [(f"parcelwatch-{kind}", None, record, p) for p, record in batch_records(mine, PARTITIONS, size)]
    return out


def test_shared_decodes_decode_a_record_once_for_its_readers_and_a_new_record_again() -> None:
    decodes = SharedDecodes(readers=2)
    raw = b'[{"a": 1}, {"a": 2}]'
    first = decodes.events(raw)
    assert first == [{"a": 1}, {"a": 2}]
    assert decodes.events(raw) is first  # the second reader gets the same decoding
    # Both readers had it: the entry is gone, a third read (a record delivered again) decodes afresh.
    again = decodes.events(raw)
    assert again == first and again is not first
    # An equal record that is another object (a redelivery) is decoded on its own.
    other = bytes(bytearray(raw))
    assert decodes.events(other) is not again
    # A broken record raises for each reader, with the field and the problem.
    broken = b"[{"
    for _ in range(2):
        with pytest.raises(InvalidEvent) as info:
            decodes.events(broken)
        assert info.value.field == "$"


def test_shared_decodes_keep_a_bounded_number_of_records_waiting_for_a_reader() -> None:
    decodes = SharedDecodes(readers=2, keep=3)
    records = [orjson.dumps([{"n": i}]) for i in range(10)]
    firsts = [decodes.events(r) for r in records]  # the other reader never comes
    assert len(decodes._entries) == 3
    assert decodes.events(records[-1]) is firsts[-1]  # the newest still wait
    assert decodes.events(records[0]) is not firsts[0]  # the oldest were let go: decoded again


@pytest.mark.integration
def test_a_worker_on_batch_records_leaves_the_queue_a_replay_leaves(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    now = time.time()
    sim = Simulator(seed=23, start_time=now - 3 * 86400, mean_gap_seconds=900)
    records = list(sim.events(250, until=now - 60))
    # One tracking update and one order event batched onto the wrong partition, each beside a bad
    # element: the strays must be re-routed (not lost, not split), the bad elements dead-lettered alone.
    _, stray_key, stray = next(r for r in records if r[0] == "tracking")
    _, stray_order_key, stray_order = next(r for r in records if isinstance(r[2], OrderEvent) and r[2].kind == "shipped")
    batches = _batched([r for r in records if r[2] is not stray and r[2] is not stray_order], 25)
    wrong = (partition_for(stray_key, PARTITIONS) + 1) % PARTITIONS
    wrong_order = (partition_for(stray_order_key, PARTITIONS) + 1) % PARTITIONS
    bad = {"event_id": "bad-1", "carrier": "ZTO", "tracking_number": "7310000000001", "status": "teleported",
           "event_time": "2026-11-02T10:00:00+08:00"}
    bad_order = {"event_id": "bad-2", "order_id": "TBBAD", "shop": "s", "platform": "amazon", "kind": "paid",
                 "event_time": "2026-11-02T10:00:00+08:00"}
    # Before the bad element, in the same record, a good one: its state must be written although the
    # record's writes wait for its end (agents/parcels.py) and the bad element's are dropped.
    number = next(n for n in range(7310000000002, 7310000001000) if partition_for(f"ZTO:{n}", PARTITIONS) == wrong)
    good = {**bad, "event_id": "good-1", "tracking_number": str(number), "status": "in_transit",
            "event_time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 3600))}
    batches.append(("parcelwatch-tracking", None,
                    b"[" + orjson.dumps(good) + b"," + orjson.dumps(bad) + b"," + stray.to_json() + b"]", wrong))
    batches.append(("parcelwatch-orders", None, b"[" + stray_order.to_json() + b"," + orjson.dumps(bad_order) + b"]",
                    wrong_order))
    batches.append(("parcelwatch-tracking", None, b"[{not json", 0))
    # The issues topic carries batch records too (the parcel agent's): a foreign one with a valid issue
    # event beside an invalid one, and a record that is no JSON at all. The sink must apply the valid
    # event and dead-letter the others alone, without holding up the pipeline they came with.
    injected = {"action": "open", "issue_key": "ZTO:INJECTED|carrier_exception", "subject": "ZTO:INJECTED",
                "parcel": "ZTO:INJECTED", "carrier": "ZTO", "kind": "carrier_exception", "shop": "shop-x",
                "severity": "high", "opened_at": "2026-11-02T10:00:00+08:00", "at": "2026-11-02T10:00:00+08:00"}
    batches.append(("parcelwatch-issues", None,
                    b"[" + orjson.dumps(injected) + b"," + orjson.dumps({**injected, "action": "explode"}) + b"]", 0))
    batches.append(("parcelwatch-issues", None, b"{not json", 1))
    worker = Worker(broker.url, redis_server.url, tmp_path).start()
    try:
        produce(broker.bootstrap, [(t, k, v) for t, k, v, _ in batches], partitions=[p for *_, p in batches])
        path = tmp_path / "events.jsonl"
        write_jsonl(path, iter(records))

        def live_open() -> dict[str, str] | None:
            return open_issue_times(redis_server.url) or None

        time.sleep(25)
        live = wait_for(live_open, 60, "open issues in the live queue")
        with path.open("rb") as fh:
            result = replay(config.load(env={}), fh, until=time.time())
        replayed = replayed_open_times(result)
        assert len(replayed) >= 10
        assert live.pop(injected["issue_key"]) == injected["opened_at"]
        assert live == replayed

        dead = {(dict(m.headers)["pw-source-topic"], dict(m.headers).get("pw-batch-index")): m
                for m in consume_all(broker.bootstrap, "parcelwatch-dead-letter")}
        assert set(dead) == {(b"parcelwatch-tracking", b"1"), (b"parcelwatch-orders", b"1"),
                             (b"parcelwatch-tracking", None), (b"parcelwatch-issues", b"1"),
                             (b"parcelwatch-issues", None)}, list(dead)
        assert dict(dead[(b"parcelwatch-issues", b"1")].headers)["pw-reason"].startswith(b"action: must be one of")
        assert dead[(b"parcelwatch-issues", None)].value == b"{not json"
        element = dead[(b"parcelwatch-tracking", b"1")]
        assert orjson.loads(element.value) == bad  # the bad element alone, not its record
        assert element.key == b"ZTO:7310000000001"  # its own key, as if it had come alone
        headers = dict(element.headers)
        assert headers["pw-reason"].startswith(b"status: unknown status;")
        assert headers["pw-source-partition"] == str(wrong).encode()
        element = dead[(b"parcelwatch-orders", b"1")]
        assert orjson.loads(element.value) == bad_order and element.key == b"TBBAD"
        assert dict(element.headers)["pw-reason"].startswith(b"platform: unknown platform;")
        whole = dead[(b"parcelwatch-tracking", None)]  # the record that was no batch at all
        assert whole.value == b"[{not json"
        assert dict(whole.headers)["pw-reason"].startswith(b"$: batch record is not valid JSON")

        states = {m.key for m in consume_all(broker.bootstrap, "parcelwatch-parcel-state-changelog")}
        assert f"ZTO:{number}".encode() in states  # the good element before the bad one stands

        for topic, key, event in (("parcelwatch-tracking", stray_key, stray),
                                  ("parcelwatch-orders", stray_order_key, stray_order)):
            rerouted = [m for m in consume_all(broker.bootstrap, topic) if m.key == key]
            assert len(rerouted) == 1 and orjson.loads(rerouted[0].value) == orjson.loads(event.to_json())
            assert rerouted[0].partition == partition_for(key, PARTITIONS)

        facts = [m for m in consume_all(broker.bootstrap, "parcelwatch-order-facts") if is_batch(m.value)]
        assert facts, "the order router sent no batch records"
        for m in facts:
            for doc in decode_batch(m.value):
                assert partition_for(doc["subject"], PARTITIONS) == m.partition
        # The worker's own issue events: one record per partition and input record or sweep, each event on
        # its subject's partition; the lane re-keying forwards them likewise, each on its lane's partition.
        issue_records = [m for m in consume_all(broker.bootstrap, "parcelwatch-issues")
                         if is_batch(m.value) and b"INJECTED" not in m.value]
        assert issue_records, "the parcel agent sent no batch records of issue events"
        for m in issue_records:
            for doc in decode_batch(m.value):
                assert partition_for(doc["subject"], PARTITIONS) == m.partition
        routed = [m for m in consume_all(broker.bootstrap, "parcelwatch-alert-routing") if is_batch(m.value)]
        assert routed, "the lane re-keying sent no batch records"
        for m in routed:
            for doc in decode_batch(m.value):
                assert partition_for(doc.get("lane") or f"subject:{doc['subject']}", PARTITIONS) == m.partition

        def applied() -> dict[str, float]:
            return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
                    for line in worker.get("/metrics")[1].decode().splitlines()
                    if line.startswith("parcelwatch_issue_events_applied_total{")}

        def all_applied() -> bool:  # every issue event on the topic (the sweeps go on sending) applied once
            sent = sum(len(decode_batch(m.value)) if is_batch(m.value) else 1
                       for m in consume_all(broker.bootstrap, "parcelwatch-issues"))
            return sum(applied().values()) == sent

        wait_for(all_applied, 30, "every issue event on the topic to be applied")
        assert applied()["invalid"] == 2  # the bad element of the batch, and the record that is no JSON
        metrics = worker.get("/metrics")[1].decode()
        assert 'parcelwatch_events_consumed_total{outcome="rerouted",topic="parcelwatch-tracking"} 1.0' in metrics
        assert 'parcelwatch_events_consumed_total{outcome="rerouted",topic="parcelwatch-orders"} 1.0' in metrics
    finally:
        worker.stop()


@pytest.mark.integration
def test_the_simulator_sends_batch_records_of_one_partition_each(broker: TansuBroker) -> None:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from devtools.simulator import produce as simulate

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("sim-orders", "sim-tracking")])
        finally:
            await admin.close()

    asyncio.run(create())
    records = list(Simulator(seed=5, start_time=time.time() - 86400).events(40, until=time.time() - 60))
    sent = asyncio.run(simulate(broker.bootstrap, iter(records), None,
                                {"orders": "sim-orders", "tracking": "sim-tracking"}, batch=7))
    assert sent == len(records)
    got: dict[str, list[bytes]] = {}
    for topic, kind in (("sim-orders", "orders"), ("sim-tracking", "tracking")):
        messages = consume_all(broker.bootstrap, topic)
        assert messages and all(is_batch(m.value) for m in messages)
        assert max(len(decode_batch(m.value)) for m in messages) == 7
        for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
            for element in decode_batch(m.value):
                key = element["order_id"] if kind == "orders" else f"{element['carrier']}:{element['tracking_number']}"
                assert partition_for(key, PARTITIONS) == m.partition
                got.setdefault(key, []).append(orjson.dumps(element))
    # Every event once, and each key's events in the order they were simulated.
    want: dict[str, list[bytes]] = {}
    for _, key, ev in records:
        want.setdefault(key.decode() if isinstance(key, bytes) else key, []).append(ev.to_json())
    assert {k: [orjson.loads(v) for v in vs] for k, vs in got.items()} == \
        {k: [orjson.loads(v) for v in vs] for k, vs in want.items()}
