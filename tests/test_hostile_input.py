"""Hostile and huge input against a real worker: never a crash, never a silent loss, never buyer data echoed.

Records of about a megabyte, event times from the future, a record on a partition its parcel does not hash
to: each is dead-lettered (or re-routed) with a reason, counted, shown by ``/healthz``, and the worker goes on.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from delivery.batch_records import partition_for
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer

from .harness import Worker, all_issues, consume_all, produce, wait_for
from .test_integration_e2e import ORDERS, TRACKING, iso, scan, shipped

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
def worker(tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> Iterator[Worker]:
    started = Worker(broker.url, redis_server.url, tmp_path).start()
    yield started
    started.stop()


def metric(worker: Worker, name: str) -> float:
    text = worker.get("/metrics")[1].decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_records_of_a_megabyte_are_dead_lettered_in_a_bounded_form_and_the_worker_goes_on(
        worker: Worker, broker: TansuBroker, redis_server: RedisServer) -> None:
    now = time.time()
    # About a megabyte as UTF-8: a record the broker takes (the producer's limit is 1,048,576 bytes), and
    # more than the worker's producer sends again (1,000,000 bytes).
    huge = "噪" * 336_700
    big: list[tuple[str, bytes | None, bytes]] = [
        (TRACKING, b"ZTO:7900001", json.dumps({"event_id": f"big-{i}", "carrier": "ZTO", "tracking_number": "7900001",
                                                "status": "in_transit", "event_time": iso(now - 60), "raw_text": huge},
                                               ensure_ascii=False).encode())
        for i in range(4)
    ]
    big.append((ORDERS, b"TBBIG", json.dumps({"event_id": "o", "order_id": "TBBIG", "shop": "s", "platform": "taobao",
                                              "kind": "paid", "event_time": iso(now - 60), "category": huge},
                                             ensure_ascii=False).encode()))
    # One batch record whose second element alone is about a megabyte.
    element = {"event_id": "big-b", "carrier": "ZTO", "tracking_number": "7900002", "status": "in_transit",
               "event_time": iso(now - 60), "raw_text": huge}
    ok = {"event_id": "ok-b", "carrier": "ZTO", "tracking_number": "7900003", "status": "in_transit",
          "event_time": iso(now - 60)}
    batch = json.dumps([ok, element], ensure_ascii=False).encode()
    big.append((TRACKING, None, batch))
    sizes = [len(v) for _, _, v in big]
    assert 1_000_000 < min(sizes) and max(sizes) < 1_048_576 - 1000, sizes
    produce(broker.bootstrap, big, partitions=[partition_for(k or b"ZTO:7900003", PARTITIONS) for _, k, _ in big])
    # Good events after them still flow: the agents did not crash.
    produce(broker.bootstrap, [shipped("TB7901", "7901000", now - 3600),
                               scan("7901000", "exception", now - 30, exception_reason="lost")])
    wait_for(lambda: any(i["kind"] == "carrier_exception" for i in all_issues(redis_server.url)), 60,
             "the good parcel's issue after the huge records")
    dead = wait_for(lambda: (lambda d: d if len(d) >= 6 else None)(
        consume_all(broker.bootstrap, "parcelwatch-dead-letter", timeout=4)), 60, "six dead letters")
    assert len(dead) == 6
    sources = {(m.topic, m.partition, m.offset): m for m in consume_all(broker.bootstrap, TRACKING)}
    sources |= {(m.topic, m.partition, m.offset): m for m in consume_all(broker.bootstrap, ORDERS)}
    for letter in dead:
        headers = dict(letter.headers)
        assert len(letter.value) < 2000
        stand_in = orjson.loads(letter.value)
        where = stand_in["source"]
        assert (where["topic"], where["partition"], where["offset"]) == (
            headers["pw-source-topic"].decode(), int(headers["pw-source-partition"]), int(headers["pw-source-offset"]))
        original = sources[(where["topic"], where["partition"], where["offset"])].value
        if "batch_index" in where:
            assert where["batch_index"] == 1
            original = orjson.dumps(orjson.loads(original)[1])
        # Where it says the original is, the original is.
        assert hashlib.sha256(original).hexdigest() == stand_in["sha256"]
        assert int(headers["pw-value-omitted"]) == stand_in["bytes"] == len(original)
        assert headers["pw-reason"].decode() in {"raw_text: is longer than 2000 characters (336700)",
                                                  "category: is longer than 40 characters (336700)"}
    assert metric(worker, "parcelwatch_dead_letter_values_omitted_total{") == 6
    assert metric(worker, "parcelwatch_dead_letters_total{") == 6
    status, health = worker.get("/healthz")
    assert status == 200, health
    assert health["checks"]["dead_letters"]["values_omitted"] == 6
    assert health["checks"]["dead_letters"]["failed"] == 0
    assert worker.proc is not None and worker.proc.poll() is None
    assert "Agent crashed" not in worker.log_tail(1_000_000)


def test_event_times_from_the_future_are_dead_lettered_with_their_reason(
        worker: Worker, broker: TansuBroker, redis_server: RedisServer) -> None:
    now = time.time()
    produce(broker.bootstrap, [
        shipped("TB7910", "7910000", now - 3 * 86400),
        scan("7910000", "picked_up", now - 3 * 86400 + 3600),  # then silent: tracking_stale opens
        scan("7911000", "exception", now + 86400, exception_reason="lost"),  # dated tomorrow
        shipped("TB7912", "7912000", now + 2 * 3600),  # an order event two hours ahead
    ])
    wait_for(lambda: any(i["kind"] == "tracking_stale" for i in all_issues(redis_server.url)), 60, "tracking_stale")
    # A scan dated 30 days ahead must not end it (resolved_at in the future).
    produce(broker.bootstrap, [scan("7910000", "in_transit", now + 30 * 86400)])
    dead = wait_for(lambda: (lambda d: d if len(d) >= 3 else None)(
        consume_all(broker.bootstrap, "parcelwatch-dead-letter", timeout=3)), 60, "three dead letters")
    reasons = sorted(dict(m.headers)["pw-reason"].decode() for m in dead)
    assert all(r.startswith("event_time: is ") and "in the future; at most 1.0 h ahead is accepted" in r
               for r in reasons), reasons
    spans = sorted(r.split(" in the future")[0].removeprefix("event_time: is ") for r in reasons)
    # (A day ahead of an arrival a moment after the event was made: "24.0 h" or "1.0 d".)
    assert spans in (["1.0 d", "2.0 h", "30.0 d"], ["2.0 h", "24.0 h", "30.0 d"]), spans
    issues = all_issues(redis_server.url)
    assert [(i["kind"], i["status"]) for i in issues] == [("tracking_stale", "open")]


def test_a_single_record_on_the_wrong_partition_is_rerouted_to_its_parcels_partition(
        worker: Worker, broker: TansuBroker, redis_server: RedisServer) -> None:
    now = time.time()
    number = "7920000"
    home = partition_for(f"ZTO:{number}", PARTITIONS)
    wrong = (home + 1) % PARTITIONS
    produce(broker.bootstrap, [shipped("TB7920", number, now - 3600)])
    # A producer that picks partitions itself (or keys by something else) sends the exception elsewhere.
    produce(broker.bootstrap, [scan(number, "exception", now - 60, exception_reason="lost")], partitions=[wrong])
    wait_for(lambda: any(i["kind"] == "carrier_exception" for i in all_issues(redis_server.url)), 60,
             "the issue of the re-routed scan")
    rerouted = [m for m in consume_all(broker.bootstrap, TRACKING) if m.key == f"ZTO:{number}".encode()]
    assert sorted(m.partition for m in rerouted) == sorted([wrong, home])
    # The parcel's state lives on one changelog partition only: its own.
    states = [m for m in consume_all(broker.bootstrap, "parcelwatch-parcel-state-changelog")
              if m.key == f"ZTO:{number}".encode()]
    assert states and {m.partition for m in states} == {home}
    assert metric(worker, 'parcelwatch_events_consumed_total{outcome="rerouted",topic="parcelwatch-tracking"}') == 1
