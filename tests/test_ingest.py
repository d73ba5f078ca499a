"""Ingest adapters: mapping tables, signatures, China time, and the endpoints on a live worker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import signal
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import config
from delivery.batch_records import decode_batch, is_batch, partition_for
from delivery.dead_letters import MAX_PUSH_BYTES
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from ingest import BadSignature, PushError, aftership, kuaidi100, seventeentrack

from .harness import Worker, consume_all, wait_for

CN = timezone(timedelta(hours=8))
TOKEN = "ingest-token-for-tests-0001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def k100_param(scans: list[tuple[str, str, str]], com: str = "zhongtong", nu: str = "73100012345678",
               state: str = "", **top: Any) -> str:
    data = [{"context": text, "ftime": t, "time": t, "statusCode": code, "areaName": "杭州市"}
            for t, code, text in scans]
    return json.dumps({"status": "polling", "message": "", **top,
                       "lastResult": {"state": state, "ischeck": "0", "com": com, "nu": nu, "data": data}},
                      ensure_ascii=False)


def test_kuaidi100_states_map_and_times_are_china_time() -> None:
    param = k100_param([
        ("2026-11-03 09:00:00", "501", "已投柜，取件码 1234"),
        ("2026-11-02 20:00:00", "1001", "到达杭州"),
        ("2026-11-01 10:00:00", "103", "已揽收"),
        ("2026-11-02 22:00:00", "207", "超区，请自提"),
    ], state="")
    parsed = kuaidi100.parse(param)
    statuses = [(u.status, u.exception_reason) for u in parsed.updates]
    assert statuses == [("picked_up", None), ("arrived_city", None), ("exception", "out_of_area"), ("at_locker", None)]
    first = parsed.updates[0]
    assert first.carrier == "ZTO" and first.raw_code == "103" and first.source == "kuaidi100"
    assert first.event_time == datetime(2026, 11, 1, 10, tzinfo=CN).timestamp()  # China time, no zone given
    assert kuaidi100.parse(param).updates[0].event_id == first.event_id  # stable ids


def test_free_text_never_decides_signed_and_unknown_codes_are_counted() -> None:
    seen: list[tuple[str, str]] = []
    parsed = kuaidi100.parse(k100_param([("2026-11-03 09:00:00", "999", "无法签收，已签收请勿理会")]),
                             lambda s, c: seen.append((s, c)))
    assert parsed.updates[0].status == "in_transit"
    assert seen == [("kuaidi100", "999")] and parsed.unknown_codes == ["999"]


def test_kuaidi100_signature_and_a_bad_time_rejected_alone() -> None:
    param = k100_param([("2026-11-03 09:00:00", "0", "在途")])
    sign = hashlib.md5((param + "salt").encode()).hexdigest().upper()
    kuaidi100.verify(param, sign, "salt")
    with pytest.raises(BadSignature):
        kuaidi100.verify(param, "0" * 32, "salt")
    with pytest.raises(BadSignature):
        kuaidi100.verify(param, None, "salt")
    parsed = kuaidi100.parse(k100_param([("yesterday", "0", "x"), ("2026-11-03 09:00:00", "0", "在途")]))
    assert [r.path for r in parsed.rejected] == ["param.lastResult.data[0].ftime"] and len(parsed.updates) == 1
    with pytest.raises(PushError) as err:
        kuaidi100.parse(k100_param([], nu="73 1000"))
    assert err.value.field == "param.lastResult.nu"


def test_aftership_and_17track() -> None:
    body = json.dumps({"event": "tracking_update", "msg": {"tracking_number": "SF1234567890123", "slug": "sf-express",
                       "checkpoints": [
                           {"checkpoint_time": "2026-11-02T10:00:00+08:00", "tag": "InTransit", "subtag": "InTransit_002"},
                           {"checkpoint_time": "2026-11-03T10:00:00+08:00", "tag": "Exception", "subtag": "Exception_013"},
                       ]}}).encode()
    secret = "s3cret"
    header = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    aftership.verify(body, header, secret)
    with pytest.raises(BadSignature):
        aftership.verify(body + b" ", header, secret)
    ups = aftership.parse(body).updates
    assert [(u.carrier, u.status, u.exception_reason) for u in ups] == [("SF", "picked_up", None), ("SF", "exception", "lost")]
    body17 = json.dumps({"event": "TRACKING_UPDATED", "data": {"number": "73100012345678", "carrier": 190455,
                         "track_info": {"tracking": {"providers": [{"events": [
                             {"time_iso": "2026-11-03T10:00:00+08:00", "sub_status": "Exception_Rejected"},
                             {"time_iso": "2026-11-02T10:00:00+08:00", "sub_status": "InTransit_PickedUp"}]}]}}}}).encode()
    seventeentrack.verify(body17, hashlib.sha256(body17 + b"/key").hexdigest(), "key")
    ups = seventeentrack.parse(body17).updates
    assert [(u.carrier, u.status, u.exception_reason) for u in ups] == [("ZTO", "picked_up", None), ("ZTO", "exception", "refused")]


def post(url: str, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": ctype, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=25) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.integration
def test_ingest_endpoints_on_a_live_worker(tmp_path: Path, broker: TansuBroker, redis_server: RedisServer,
                                           settings: config.Settings) -> None:
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_KUAIDI100_SALT="salt",
                    PARCELWATCH_INGEST_TOKENS=TOKEN).start()
    try:
        now = datetime.now(CN)
        scans = [((now - timedelta(hours=h)).strftime("%Y-%m-%d %H:%M:%S"), code, text)
                 for h, code, text in ((30, "103", "已揽收"), (5, "0", "运输中"), (1, "209", "包裹破损"))]
        param = k100_param(scans, nu="7399000001")
        form = urllib.parse.urlencode({"param": param, "sign": hashlib.md5((param + "salt").encode()).hexdigest()})
        url = worker.url("/ingest/kuaidi100")
        status, body = post(url, form.encode(), "application/x-www-form-urlencoded")
        assert (status, body) == (200, {"result": True, "returnCode": "200", "message": "成功"})
        assert post(url, form.encode(), "application/x-www-form-urlencoded")[0] == 200  # duplicate push
        bad = urllib.parse.urlencode({"param": param, "sign": "0" * 32}).encode()
        assert post(url, bad, "application/x-www-form-urlencoded")[0] == 401
        status, body = post(url, urllib.parse.urlencode({"param": "{oops", "sign": "x"}).encode(),
                            "application/x-www-form-urlencoded")
        assert status == 401 and body["result"] is False
        assert post(worker.url("/ingest/generic"), b"x" * (2 << 20), "application/json", AUTH)[0] == 413
        # The largest push taken, refused for its content, fits the dead-letter topic whole (not a 503 for ever).
        status, body = post(worker.url("/ingest/generic"), b"x" * MAX_PUSH_BYTES, "application/json", AUTH)
        assert status == 400 and "not valid JSON" in str(body), (status, body)
        status, body = post(worker.url("/ingest/generic"), b'{"carrier": "ZTO"}', "application/json", AUTH)
        assert status == 200 and body["scans"] == 0 and body["rejected"][0].startswith("[0].event_id")
        got = wait_for(lambda: consume_all(broker.bootstrap, "parcelwatch-tracking", 2), 20, "the push's record on the topic")
        # The push's three scans of one parcel: one batch record on the parcel's partition (delivery/record_batcher.py);
        # the duplicate push produced nothing new.
        assert len(got) == 1
        record = got[0]
        assert record.partition == partition_for("ZTO:7399000001", settings.app.partitions) and record.key is None
        elements = decode_batch(record.value)
        assert [(e["event_id"], e["raw_code"]) for e in elements] == [(u.event_id, u.raw_code) for u in kuaidi100.parse(param).updates]
        assert [e["raw_code"] for e in elements] == ["103", "0", "209"]
        found = wait_for(lambda: worker.get("/issues?kind=carrier_exception")[1]["issues"], 40, "the exception issue")
        assert found[0]["parcel"] == "ZTO:7399000001" and found[0]["exception_reason"] == "damaged"
    finally:
        worker.stop()


@pytest.mark.integration
def test_a_push_gets_503_when_the_broker_stops_answering_and_goes_through_when_it_answers_again(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    """The broker process frozen (SIGSTOP: connections stay open, nothing is answered) is the outage in
    which a push used to wait for the producer's 20-minute request timeout."""
    override = tmp_path / "override.yaml"
    override.write_text("app:\n  ingest_ack_timeout_seconds: 2\n  ingest_max_unacked_scans: 2\n")
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_CONFIG=str(override),
                    PARCELWATCH_INGEST_TOKENS=TOKEN).start()
    now = datetime.now(CN)

    def scan(n: int, status: str = "in_transit") -> dict[str, Any]:
        return {"event_id": f"outage-{n}", "carrier": "ZTO", "tracking_number": "7399000077", "status": status,
                "event_time": (now - timedelta(hours=10 - n)).isoformat()}

    url = worker.url("/ingest/generic")
    assert broker.proc is not None
    try:
        assert post(url, json.dumps([scan(0, "picked_up")]).encode(), "application/json", AUTH) == (
            200, {"ok": True, "scans": 1, "new": 1})
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            # Answered 503 after the configured 2 s (``post`` gives up after 25 s: a hung push fails here).
            status, body = post(url, json.dumps([scan(1), scan(2)]).encode(), "application/json", AUTH)
            assert status == 503 and body == {"ok": False, "retry": True, "message": "temporarily unavailable, retry"}
            # Its two scans still wait for the broker: the limit (2) is reached, the next push is refused at
            # once instead of piling more up.
            status, body = post(url, json.dumps([scan(3)]).encode(), "application/json", AUTH)
            assert status == 503 and body == {"ok": False, "retry": True,
                                              "message": "the broker is not keeping up, retry later"}
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        # The sources retry: once the broker answers again the pushes go through.
        for retried in ([scan(1), scan(2)], [scan(3)]):
            wait_for(lambda retried=retried: post(url, json.dumps(retried).encode(), "application/json", AUTH)[0] == 200, 60,
                     "a retried push accepted after the broker answers again")

        def scans_on_topic() -> set[str]:
            records = consume_all(broker.bootstrap, "parcelwatch-tracking", 2)
            return {e["event_id"] for r in records for e in (decode_batch(r.value) if is_batch(r.value) else [json.loads(r.value)])}

        wait_for(lambda: scans_on_topic() >= {"outage-0", "outage-1", "outage-2", "outage-3"}, 30, "every scan on the tracking topic")
        _, metrics_text = worker.get("/metrics")
        refused = {outcome: float(value) for outcome, value in re.findall(
            rb'parcelwatch_ingest_requests_total\{outcome="(timeout|overloaded)",source="generic"\} ([0-9.]+)', metrics_text)}
        # (Retries right after the broker resumed may be refused again while the earlier records settle.)
        assert refused[b"timeout"] >= 1 and refused[b"overloaded"] >= 1
    finally:
        worker.stop()
