"""Hypothesis fuzzing of the push endpoints: random bytes, GBK and other encodings, non-ASCII headers, wrong JSON
types. The adapters alone (fast, many examples), then each endpoint of a live worker: always a 4xx naming the
problem (or a 200 naming each rejected element), never a 500, and the worker keeps running."""

from __future__ import annotations

import codecs
import http.client
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.events import parse_tracking_update
from ingest import BadSignature, Parsed, PushError, aftership, generic, kdniao, kuaidi100, seventeentrack

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
TOKEN = "ingest-token-for-fuzzing-01"
READERS: dict[str, Callable[..., Parsed]] = {
    "kuaidi100": kuaidi100.read, "kdniao": kdniao.read, "aftership": aftership.read, "17track": seventeentrack.read,
    "generic": generic.read,
}
# (Among them Python codecs that are no body charset and fail with a bare UnicodeError, not a decode error.)
CHARSETS = st.sampled_from([None, "utf-8", "gbk", "gb2312", "gb18030", "big5", "utf-16", "latin-1", "shift_jis",
                            "no-such-charset", "中文", "UNDEFINED", "punycode", "idna"])
# The adapters called in process also get a name Python's codec lookup refuses with a ValueError (a NUL in it:
# over HTTP the server refuses such a header before any adapter sees it).
READER_CHARSETS = st.one_of(CHARSETS, st.just("utf-8\x00"))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
HEADER_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\r\n"), max_size=40)


def fixture_doc(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def mutate(doc: Any, path: list[Any], value: Any) -> Any:
    """``doc`` with the value at ``path`` (keys or indexes, as far as they go) replaced by ``value``."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict) and isinstance(head, str):
        return {**doc, head: mutate(doc.get(head), rest, value)}
    if isinstance(doc, list) and isinstance(head, int) and doc:
        i = head % len(doc)
        return [*doc[:i], mutate(doc[i], rest, value), *doc[i + 1:]]
    return value


# Where the documented pushes hold their fields: wrong JSON types are put at these places.
PLACES: dict[str, list[list[Any]]] = {
    "kuaidi100": [["lastResult"], ["lastResult", "data"], ["lastResult", "data", 0], ["lastResult", "data", 1, "ftime"],
                  ["lastResult", "com"], ["lastResult", "nu"], ["lastResult", "state"], ["autoCheck"], ["comNew"],
                  ["lastResult", "data", 0, "statusCode"], ["lastResult", "data", 2, "areaName"]],
    "kdniao": [["Data"], ["Data", 0], ["Data", 0, "Traces"], ["Data", 1, "Traces", 0], ["Data", 0, "ShipperCode"],
               ["Data", 0, "LogisticCode"], ["Data", 1, "Traces", 2, "AcceptTime"], ["Data", 0, "StateEx"], ["PushTime"]],
    "aftership": [["msg"], ["msg", "checkpoints"], ["msg", "checkpoints", 0], ["msg", "checkpoints", 3, "checkpoint_time"],
                  ["msg", "slug"], ["msg", "tracking_number"], ["msg", "tag"], ["ts"], ["msg", "checkpoints", 1, "country_iso3"]],
    "17track": [["data"], ["data", "track_info"], ["data", "track_info", "tracking", "providers"],
                ["data", "track_info", "tracking", "providers", 0, "events", 2], ["data", "carrier"], ["data", "number"],
                ["data", "track_info", "latest_status"], ["data", "track_info", "tracking", "providers", 0, "events", 1, "time_utc"]],
    "generic": [[0], [0, "carrier"], [0, "event_time"], [0, "status"], [1, "tracking_number"], []],
}
DOCS: dict[str, Any] = {
    "kuaidi100": fixture_doc("kuaidi100_advanced_zto.json"), "kdniao": fixture_doc("kdniao_push.json"),
    "aftership": fixture_doc("aftership_fedex.json"), "17track": fixture_doc("17track_v2_2.json"),
    "generic": [{"event_id": f"g{i}", "carrier": "ZTO", "tracking_number": "7310001", "status": "in_transit",
                 "event_time": "2026-11-03T10:00:00+08:00"} for i in range(2)],
}


def envelope(source: str, doc: Any, charset: str | None = None) -> bytes:
    """``doc`` as the vendor sends it: a form for kuaidi100 (param) and kdniao (RequestData), else JSON."""
    text = json.dumps(doc, ensure_ascii=False)
    try:
        encoding = codecs.lookup(charset or "utf-8").name
        "{}".encode(encoding, errors="replace")
    except (LookupError, ValueError):  # (UnicodeError is a ValueError)
        encoding = "utf-8"  # the declared charset names nothing, or nothing writes in it: the body is UTF-8 anyway
    if source == "kuaidi100":
        return urllib.parse.urlencode({"param": text}, encoding=encoding, errors="replace").encode()
    if source == "kdniao":
        return urllib.parse.urlencode({"RequestData": text, "RequestType": "101"}, encoding=encoding,
                                      errors="replace").encode()
    return text.encode(encoding, errors="replace")


def checked(parsed: Parsed) -> None:
    """What an adapter hands on is what the parcel agent accepts, and every rejection names a place."""
    for update in parsed.updates:
        assert parse_tracking_update(update.to_json()) == update
    assert all(r.path and r.problem for r in parsed.rejected)


def read(source: str, body: bytes, headers: dict[str, str], charset: str | None) -> None:
    try:
        checked(READERS[source](body, headers, None, charset, 1.8e9))
    except (PushError, BadSignature) as exc:
        assert str(exc)


SOURCES = st.sampled_from(sorted(READERS))


@settings(max_examples=400, deadline=None)
@given(source=SOURCES, body=st.binary(max_size=300), charset=READER_CHARSETS)
def test_adapters_take_random_bytes(source: str, body: bytes, charset: str | None) -> None:
    read(source, body, {}, charset)


@settings(max_examples=600, deadline=None)
@given(source=SOURCES, where=st.data(), value=JSON, charset=READER_CHARSETS)
def test_adapters_take_wrong_json_types_anywhere(source: str, where: st.DataObject, value: Any, charset: str | None) -> None:
    path = where.draw(st.sampled_from(PLACES[source]))
    read(source, envelope(source, mutate(DOCS[source], path, value), charset), {}, charset)


@settings(max_examples=200, deadline=None)
@given(source=st.sampled_from(["aftership", "17track", "kuaidi100", "kdniao"]), sign=HEADER_TEXT)
def test_signatures_take_any_header_text(source: str, sign: str) -> None:
    body = envelope(source, DOCS[source])
    headers = {"aftership-hmac-sha256": sign, "sign": sign}
    if source in ("kuaidi100", "kdniao"):
        body += b"&sign=" + urllib.parse.quote(sign).encode() + b"&DataSign=" + urllib.parse.quote(sign).encode()
    try:
        READERS[source](body, headers, "a-secret", None, 1.8e9)
    except BadSignature:
        return
    raise AssertionError("a random signature was accepted")


# -- a live worker ----------------------------------------------------------------------------------------------


class Endpoint:
    def __init__(self, port: int) -> None:
        self.port = port

    def post(self, path: str, body: bytes, headers: dict[str, bytes]) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest("POST", path)
            conn.putheader("Content-Length", str(len(body)))
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
        finally:
            conn.close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Endpoint, Any]]:
    from devtools.broker import TansuBroker
    from devtools.redis_server import RedisServer

    from .harness import Worker

    tmp = tmp_path_factory.mktemp("fuzz")
    with TansuBroker(tmp / "broker") as broker, RedisServer(tmp / "redis") as redis:
        # No vendor secrets (a developer's loopback): every body reaches the parsers.
        worker = Worker(broker.url, redis.url, tmp, PARCELWATCH_INGEST_TOKENS=TOKEN).start()
        try:
            yield Endpoint(worker.port), worker
        finally:
            worker.stop()


def problem_named(source: str, status: int, answer: Any) -> bool:
    if not isinstance(answer, dict):
        return False
    if source == "kuaidi100":
        return bool(answer.get("message"))
    if source == "kdniao":
        return status == 200 or bool(answer.get("Reason"))
    return status == 200 or bool(answer.get("message"))


CONTENT_TYPES = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""]).flatmap(
    lambda base: st.one_of(st.just(base), HEADER_TEXT.map(lambda cs: f"{base}; charset={cs}")))


@pytest.mark.integration
def test_every_endpoint_answers_garbage_with_a_4xx_never_a_500(endpoint: tuple[Endpoint, Any]) -> None:
    ep, worker = endpoint
    auth = {"Authorization": f"Bearer {TOKEN}".encode()}

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(source=SOURCES, body=st.binary(max_size=400), ctype=CONTENT_TYPES, extra=HEADER_TEXT)
    def random_bodies(source: str, body: bytes, ctype: str, extra: str) -> None:
        headers = {"Content-Type": ctype.encode(), "sign": extra.encode(), "aftership-hmac-sha256": extra.encode(),
                   "X-Anything": extra.encode("gbk", "replace"), **auth}
        status, answer = ep.post(f"/ingest/{source}", body, headers)
        assert 400 <= status < 500 or status == 200, (source, status, answer)
        assert problem_named(source, status, answer), (source, status, answer)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(source=SOURCES, where=st.data(), value=JSON, charset=CHARSETS)
    def wrong_types(source: str, where: st.DataObject, value: Any, charset: str | None) -> None:
        path = where.draw(st.sampled_from(PLACES[source]))
        body = envelope(source, mutate(DOCS[source], path, value), charset)
        base = "application/x-www-form-urlencoded" if source in ("kuaidi100", "kdniao") else "application/json"
        ctype = f"{base}; charset={charset}" if charset else base
        status, answer = ep.post(f"/ingest/{source}", body, {"Content-Type": ctype.encode(), **auth})
        assert 400 <= status < 500 or status == 200, (source, status, answer)
        assert problem_named(source, status, answer), (source, status, answer)

    random_bodies()
    wrong_types()
    assert worker.proc is not None and worker.proc.poll() is None
    _, metrics = worker.get("/metrics")
    errors = re.findall(rb'parcelwatch_ingest_requests_total\{outcome="error",source="[^"]+"\} ([0-9.]+)', metrics)
    assert sum(float(v) for v in errors) == 0
    assert worker.get("/healthz")[0] == 200
