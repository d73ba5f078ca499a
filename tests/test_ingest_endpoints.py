"""The push endpoints on a live worker (real Tansu broker and Redis on loopback): each vendor's documented push,
what each vendor is answered, per-element rejection, dead letters that can be replayed, authentication."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delivery.batch_records import decode_batch, is_batch
from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer

from .harness import Worker, consume_all, wait_for

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
SECRETS = {
    "PARCELWATCH_KUAIDI100_SALT": "k100-salt",
    "PARCELWATCH_KDNIAO_API_KEY": "56da2cf8-c8a2-44b2-b6fa-476cd7d1ba17",
    "PARCELWATCH_AFTERSHIP_SECRET": "aftership-secret",
    "PARCELWATCH_17TRACK_KEY": "17track-key",
}
INGEST_TOKEN = "ingest-token-for-tests-0001"
STAFF_TOKEN = "staff-token-for-tests-0001"
FORM = "application/x-www-form-urlencoded"


class Live:
    def __init__(self, worker: Worker, broker: TansuBroker) -> None:
        self.worker = worker
        self.broker = broker

    def post(self, path: str, data: bytes, ctype: str = "application/json",
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.worker.url(path), data=data, method="POST",
                                     headers={"Content-Type": ctype, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=25) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def scans(self) -> list[dict[str, Any]]:
        records = consume_all(self.broker.bootstrap, "parcelwatch-tracking", 2)
        return [e for r in records for e in (decode_batch(r.value) if is_batch(r.value) else [json.loads(r.value)])]

    def dead_letters(self) -> list[Any]:
        return consume_all(self.broker.bootstrap, "parcelwatch-dead-letter", 2)

    def metric(self, pattern: str) -> float:
        _, text = self.worker.get("/metrics")
        found = re.findall(pattern.encode(), text)
        return sum(float(v) for v in found)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("ingest")
    with TansuBroker(tmp / "broker") as broker, RedisServer(tmp / "redis") as redis:
        worker = Worker(broker.url, redis.url, tmp, PARCELWATCH_INGEST_TOKENS=INGEST_TOKEN,
                        PARCELWATCH_TOKENS=f"{STAFF_TOKEN}=*", **SECRETS).start()
        try:
            yield Live(worker, broker)
        finally:
            worker.stop()


def kuaidi100_form(param: str, salt: str = SECRETS["PARCELWATCH_KUAIDI100_SALT"]) -> bytes:
    return urllib.parse.urlencode({"param": param, "sign": hashlib.md5((param + salt).encode()).hexdigest()}).encode()


def kdniao_form(request_data: str) -> bytes:
    # kdniao's DataSign: Base64 of the lower-case hex MD5 of RequestData + ApiKey.
    digest = hashlib.md5((request_data + SECRETS["PARCELWATCH_KDNIAO_API_KEY"]).encode()).hexdigest()
    sign = base64.b64encode(digest.encode()).decode()
    return urllib.parse.urlencode({"RequestData": request_data, "DataSign": sign, "RequestType": "101"}).encode()


def aftership_headers(body: bytes) -> dict[str, str]:
    secret = SECRETS["PARCELWATCH_AFTERSHIP_SECRET"].encode()
    return {"aftership-hmac-sha256": base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()}


def seventeentrack_headers(body: bytes) -> dict[str, str]:
    return {"sign": hashlib.sha256(body + b"/" + SECRETS["PARCELWATCH_17TRACK_KEY"].encode()).hexdigest()}


def k100_param(com: str, nu: str, state: str = "0", scans: list[dict[str, Any]] | None = None) -> str:
    scans = scans if scans is not None else [{"context": "快件已到达", "ftime": "2026-11-03 09:00:00", "status": "在途"}]
    return json.dumps({"status": "polling", "lastResult": {"state": state, "com": com, "nu": nu, "data": scans}},
                      ensure_ascii=False)


def test_kuaidi100_unknown_and_international_carriers_are_taken_and_counted(live: Live) -> None:
    before = live.metric(r'parcelwatch_ingest_unknown_carriers_total\{source="kuaidi100"\} ([0-9.]+)')
    for i, com in enumerate(("fedex", "usps", "jtexpress", "jitu", "zhongtongkuaiyun", "fengwang")):
        status, body = live.post("/ingest/kuaidi100", kuaidi100_form(k100_param(com, f"CARR{i:04d}")), FORM)
        assert (status, body) == (200, {"result": True, "returnCode": "200", "message": "成功"})
    carriers = {e["tracking_number"]: e["carrier"] for e in wait_for(
        lambda: (lambda s: s if len({e["tracking_number"] for e in s if e["tracking_number"].startswith("CARR")}) == 6
                 else None)(live.scans()), 30, "the six parcels' scans")}
    assert [carriers[f"CARR{i:04d}"] for i in range(6)] == [
        "FEDEX", "USPS", "JTEXPRESS", "JTEXPRESS", "kuaidi100:zhongtongkuaiyun", "kuaidi100:fengwang"]
    after = live.metric(r'parcelwatch_ingest_unknown_carriers_total\{source="kuaidi100"\} ([0-9.]+)')
    assert after - before == 2
    _, text = live.worker.get("/metrics")
    assert b"zhongtongkuaiyun" not in text and b"fengwang" not in text  # labels by source, never by code


def test_a_reclassified_kuaidi100_scan_is_a_new_event(live: Live) -> None:
    for state in ("0", "2", "14"):
        param = k100_param("yuantong", "YT9000000001", state, [{"context": "快件已到达", "ftime": "2026-11-03 09:00:00"}])
        assert live.post("/ingest/kuaidi100", kuaidi100_form(param), FORM)[0] == 200
    def seen() -> list[tuple[str, str | None]] | None:
        got = [(e["status"], e.get("exception_reason")) for e in live.scans() if e["tracking_number"] == "YT9000000001"]
        return got if len(got) == 3 else None
    assert wait_for(seen, 30, "three classifications of one scan") == [
        ("in_transit", None), ("exception", "problem_parcel"), ("exception", "refused")]


def test_kdniao_push_is_taken_and_answered_in_kdniaos_format(live: Live) -> None:
    request_data = (FIXTURES / "kdniao_push.json").read_text(encoding="utf-8")
    status, body = live.post("/ingest/kdniao", kdniao_form(request_data), FORM + ";charset=utf-8")
    assert status == 200 and body["Success"] is True and body["EBusinessID"] == "1237100" and body["Reason"] == ""
    def parcels() -> set[str] | None:
        keys = {f'{e["carrier"]}:{e["tracking_number"]}' for e in live.scans() if e.get("source") == "kdniao"}
        return keys if len(keys) == 2 else None
    assert wait_for(parcels, 30, "both kdniao parcels") == {"BESTEXP:557012345678", "ZTO:73100098765432"}
    tampered = urllib.parse.urlencode({"RequestData": request_data, "DataSign": "bm90IGl0", "RequestType": "101"})
    status, body = live.post("/ingest/kdniao", tampered.encode(), FORM)
    assert status == 401 and body["Success"] is False  # kdniao pushes again: the key may be changing


def test_aftership_and_17track_documented_pushes(live: Live) -> None:
    expected = {"aftership_fedex.json": 11, "aftership_ups.json": 4, "aftership_usps.json": 3,
                "aftership_expired.json": 1, "aftership_exception.json": 1}
    for name, scans in expected.items():
        body = (FIXTURES / name).read_bytes()
        assert live.post("/ingest/aftership", body, headers=aftership_headers(body)) == (
            200, {"ok": True, "scans": scans, "new": scans}), name
    body = (FIXTURES / "17track_v2_2.json").read_bytes()
    assert live.post("/ingest/17track", body, headers=seventeentrack_headers(body)) == (
        200, {"ok": True, "scans": 6, "new": 6})


def test_17track_v1_push_gets_a_clear_error_and_is_kept(live: Live) -> None:
    body = (FIXTURES / "17track_v1.json").read_bytes()
    status, answer = live.post("/ingest/17track", body, headers=seventeentrack_headers(body))
    assert status == 400 and answer["retry"] is False and "v1 push" in answer["message"]
    dead = wait_for(lambda: [m for m in live.dead_letters() if m.value == body] or None, 30, "the v1 push kept")
    headers = dict(dead[0].headers)
    assert headers["pw-source"] == b"17track" and headers["pw-endpoint"] == b"/ingest/17track"
    assert headers["pw-field"] == b"data.track" and headers["pw-rejected"] == b"push"


def test_bad_elements_are_rejected_alone_named_and_kept_byte_for_byte(live: Live) -> None:
    doc = json.loads((FIXTURES / "aftership_usps.json").read_bytes())
    doc["msg"]["tracking_number"] = "9400111899223197400001"
    doc["msg"]["checkpoints"] += ["not a checkpoint", {"checkpoint_time": "someday", "tag": "InTransit"}]
    body = json.dumps(doc).encode()
    status, answer = live.post("/ingest/aftership", body, headers=aftership_headers(body))
    assert status == 200 and answer["scans"] == 3
    assert answer["rejected"] == ["msg.checkpoints[3]: expected an object, got a string",
                                  "msg.checkpoints[4].checkpoint_time: is not a time (expected e.g. 2026-11-02 10:00:00 or "
                                  "ISO 8601)"]
    (dead,) = wait_for(lambda: [m for m in live.dead_letters() if m.value == body] or None, 30, "the push kept")
    headers = dict(dead.headers)
    assert headers["pw-rejected"] == b"2" and headers["pw-field"] == b"msg.checkpoints[3]"
    assert headers["pw-problems"].decode().splitlines()[1].startswith("msg.checkpoints[4].checkpoint_time")
    assert dead.key == b"USPS:9400111899223197400001"
    # Replaying is posting the value again with the headers it kept: the signature still holds, the same
    # elements are rejected, nothing is stored twice, nothing new is produced.
    replay_headers = {k.removeprefix("pw-http-"): v.decode() for k, v in headers.items() if k.startswith("pw-http-")}
    ctype = replay_headers.pop("content-type")
    assert live.post("/ingest/aftership", dead.value, ctype, replay_headers) == (200, {**answer, "new": 0})
    assert len([m for m in live.dead_letters() if m.value == body]) == 1


def test_no_500_for_non_ascii_signatures_gbk_forms_or_odd_json(live: Live) -> None:
    body = (FIXTURES / "aftership_ups.json").read_bytes()
    cases: list[tuple[str, bytes, str, dict[str, str], int]] = [
        ("/ingest/aftership", body, "application/json", {"aftership-hmac-sha256": "签名"}, 401),
        ("/ingest/17track", body, "application/json", {"sign": "ßîgn"}, 401),
        ("/ingest/kuaidi100", urllib.parse.urlencode({"param": k100_param("zhongtong", "1"), "sign": "签名"}).encode(),
         FORM, {}, 401),
        ("/ingest/kdniao", urllib.parse.urlencode({"RequestData": "{}", "DataSign": "签名"}).encode(), FORM, {}, 401),
        ("/ingest/kuaidi100", "param={\"lastResult\": \"中文\"}".encode("gbk"), FORM, {}, 400),
        ("/ingest/kuaidi100", b"param=%D6%D0", FORM, {}, 400),
        ("/ingest/generic", b'{"carrier": "ZTO"', "application/json", {"Authorization": f"Bearer {INGEST_TOKEN}"}, 400),
        ("/ingest/generic", "[1, \"二\"]".encode("gb18030"), "application/json; charset=gb18030",
         {"Authorization": f"Bearer {INGEST_TOKEN}"}, 200),
        ("/ingest/17track", b'{"data": []}', "application/json", {"sign": "x"}, 401),
        # Python codecs that are no body charset, failing without a decode error's position (the fuzz found them).
        ("/ingest/generic", b"\x00", "application/json; charset=UNDEFINED", {"Authorization": f"Bearer {INGEST_TOKEN}"}, 415),
        ("/ingest/kdniao", b"RequestData=%00", FORM + "; charset=punycode", {}, 415),
    ]
    for path, data, ctype, headers, expected in cases:
        req = urllib.request.Request(live.worker.url(path), data=data, method="POST",
                                     headers={"Content-Type": ctype})
        for name, value in headers.items():
            req.add_header(name, value)  # urllib writes the header as latin-1: raw non-ASCII bytes on the wire
        try:
            with urllib.request.urlopen(req, timeout=25) as resp:
                status, answer = resp.status, json.loads(resp.read())
        except UnicodeEncodeError:
            status, answer = _raw_post(live, path, data, ctype, headers)
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, json.loads(exc.read())
        assert status == expected, (path, answer)
        assert answer.get("message") or answer.get("Reason") or answer.get("ok") or answer.get("result")
    body17 = json.loads((FIXTURES / "17track_v2_2.json").read_bytes())
    body17["data"]["track_info"]["tracking"]["providers"][0]["events"] += ["a string", 7, [1]]
    data = json.dumps(body17).encode()
    status, answer = live.post("/ingest/17track", data, headers=seventeentrack_headers(data))
    assert status == 200 and len(answer["rejected"]) == 3
    assert live.worker.proc is not None and live.worker.proc.poll() is None
    assert live.metric(r'parcelwatch_ingest_requests_total\{outcome="error",source="[a-z0-9]+"\} ([0-9.]+)') == 0


def _raw_post(live: Live, path: str, data: bytes, ctype: str, headers: dict[str, str]) -> tuple[int, Any]:
    """A request with header values sent as UTF-8 bytes, which urllib will not write."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", live.worker.port, timeout=25)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", ctype)
        conn.putheader("Content-Length", str(len(data)))
        for name, value in headers.items():
            conn.putheader(name, value.encode())
        conn.endheaders(data)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_generic_takes_only_an_ingest_token(live: Live) -> None:
    scan = json.dumps({"event_id": "gen-1", "carrier": "ZTO", "tracking_number": "7399000123", "status": "signed",
                       "event_time": "2026-11-03T10:00:00+08:00"}).encode()
    assert live.post("/ingest/generic", scan)[0] == 401
    assert live.post("/ingest/generic", scan, headers={"Authorization": "Bearer not-a-token"})[0] == 401
    status, body = live.post("/ingest/generic", scan, headers={"Authorization": f"Bearer {STAFF_TOKEN}"})
    assert status == 403 and "staff token" in body["message"]
    cookie = live.post("/ingest/generic", scan, headers={"Cookie": f"pw_token={INGEST_TOKEN}"})
    assert cookie[0] == 401  # never a cookie: a page could be made to post with it
    assert live.post("/ingest/generic", scan, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}) == (
        200, {"ok": True, "scans": 1, "new": 1})
