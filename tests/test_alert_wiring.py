"""Alert routing wired into a live worker: an issue reaches a webhook on a local receiver; the robots' limits
are counted in the worker's Redis; a message a robot refuses for good goes to the dead-letter topic."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import redis

from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer

from .harness import Worker, consume_all, produce, wait_for
from .test_integration_e2e import scan, shipped

pytestmark = pytest.mark.integration


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()
        # A DingTalk robot with 关键词 security the route was not told about refuses every message.
        refused = self.path.startswith("/refusing")
        self.wfile.write(b'{"errcode": 310000, "errmsg": "keywords not in content"}' if refused else b'{"errcode": 0}')

    def log_message(self, *args: Any) -> None:
        pass


def _worker_with_routes(tmp_path: Path, broker: TansuBroker, redis_server: RedisServer,
                        routes_yaml: Callable[[int], str]) -> tuple[ThreadingHTTPServer, Worker]:
    """A local receiver (its calls in ``Receiver.received``, emptied here) and a worker with the routes
    ``routes_yaml(receiver port)``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received.clear()
    routes = tmp_path / "routes.yaml"
    routes.write_text(routes_yaml(server.server_port), encoding="utf-8")
    return server, Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_ALERT_ROUTES=str(routes)).start()


def _worker_routing_exceptions_to_a_webhook(tmp_path: Path, broker: TansuBroker,
                                            redis_server: RedisServer) -> tuple[ThreadingHTTPServer, Worker]:
    """A worker routing carrier exceptions to a webhook on the local receiver."""
    return _worker_with_routes(tmp_path, broker, redis_server, lambda port: f"""
destinations:
  erp:
    type: webhook
    url: http://127.0.0.1:{port}/issues
routes:
  - name: exceptions-to-erp
    match: {{kinds: [carrier_exception]}}
    destinations: [erp]
""")


def test_carrier_exception_is_routed_to_a_webhook(tmp_path: Path, broker: TansuBroker,
                                                   redis_server: RedisServer) -> None:
    server, worker = _worker_routing_exceptions_to_a_webhook(tmp_path, broker, redis_server)
    try:
        now = time.time()
        produce(broker.bootstrap, [shipped("TBA001", "7810001", now - 3600),
                                   scan("7810001", "exception", now - 60, exception_reason="refused")])
        got = wait_for(lambda: Receiver.received, 40, "the webhook call")
        body = got[0]["body"]
        assert got[0]["path"] == "/issues"
        assert body["kind"] == "carrier_exception" and body["parcel"] == "ZTO:7810001"
        assert body["action"] == "open"
    finally:
        worker.stop()
        server.shutdown()


def test_a_bad_alert_routing_record_is_dead_lettered_and_the_rest_of_its_record_routed(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    server, worker = _worker_routing_exceptions_to_a_webhook(tmp_path, broker, redis_server)
    try:
        good = {"action": "open", "issue_key": "ZTO:7820001|carrier_exception", "subject": "ZTO:7820001",
                "parcel": "ZTO:7820001", "carrier": "ZTO", "kind": "carrier_exception", "shop": "shop-a",
                "severity": "high", "lane": "ZTO 广东→新疆", "opened_at": "2026-11-02T10:00:00+08:00",
                "at": "2026-11-02T10:00:00+08:00"}
        bad = {**good, "issue_key": "ZTO:7820002|carrier_exception", "severity": None}
        produce(broker.bootstrap, [
            ("parcelwatch-alert-routing", None, b"[" + orjson.dumps(bad) + b"," + orjson.dumps(good) + b"]"),
            ("parcelwatch-alert-routing", b"x", b"{not json"),
        ], partitions=[0, 1])
        got = wait_for(lambda: Receiver.received, 40, "the webhook call for the good element")
        assert [r["body"]["issue_key"] for r in got] == ["ZTO:7820001|carrier_exception"]

        def dead() -> dict[bytes | None, Any] | None:
            found = {dict(m.headers).get("pw-batch-index"): m for m in consume_all(broker.bootstrap, "parcelwatch-dead-letter")
                     if dict(m.headers).get("pw-source-topic") == b"parcelwatch-alert-routing"}
            return found if len(found) == 2 else None

        letters = wait_for(dead, 30, "two dead letters from the alert-routing topic")
        assert orjson.loads(letters[b"0"].value) == bad  # the bad element alone
        assert dict(letters[b"0"].headers)["pw-reason"].startswith(b"severity: is required")
        assert letters[None].value == b"{not json"
        assert dict(letters[None].headers)["pw-reason"].startswith(b"$: record is not valid JSON")
    finally:
        worker.stop()
        server.shutdown()


def test_robot_limits_live_in_the_workers_redis_and_refusals_are_dead_lettered(
        tmp_path: Path, broker: TansuBroker, redis_server: RedisServer) -> None:
    server, worker = _worker_with_routes(tmp_path, broker, redis_server, lambda port: f"""
destinations:
  ops:
    type: dingtalk
    url: http://127.0.0.1:{port}/robot/send?access_token=ops
  strict:
    type: dingtalk
    url: http://127.0.0.1:{port}/refusing/robot/send?access_token=strict
routes:
  - name: exceptions
    match: {{kinds: [carrier_exception]}}
    destinations: [ops, strict]
""")
    try:
        now = time.time()
        produce(broker.bootstrap, [shipped("TBA002", "7830001", now - 3600),
                                   scan("7830001", "exception", now - 60, exception_reason="refused")])
        got = wait_for(lambda: len(Receiver.received) >= 2 and Receiver.received, 40, "both robots' requests")
        assert sorted(r["path"].split("?")[0] for r in got) == ["/refusing/robot/send", "/robot/send"]
        client = redis.Redis.from_url(redis_server.url)
        try:
            # One send to each robot, counted in its window in the Redis every worker shares.
            windows = sorted(client.scan_iter(match="pw:alert:*:robot:*"))
            assert len(windows) == 2 and [client.zcard(w) for w in windows] == [1, 1]
        finally:
            client.close()

        def refused() -> list[Any] | None:
            found = [m for m in consume_all(broker.bootstrap, "parcelwatch-dead-letter")
                     if dict(m.headers).get("pw-alert-destination") == b"strict"]
            return found or None

        [letter] = wait_for(refused, 30, "the refused alert in the dead-letter topic")
        headers = dict(letter.headers)
        assert headers["pw-alert-refusal"] == b"keyword" and headers["pw-alert-route"] == b"exceptions"
        assert headers["pw-reason"].startswith(b"destination: dingtalk refused the message: errcode=310000")
        assert orjson.loads(letter.value)["items"][0]["tracking_number"] == "7830001"
        time.sleep(1)
        assert len(Receiver.received) == 2  # refused for good: not retried
    finally:
        worker.stop()
        server.shutdown()
