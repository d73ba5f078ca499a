"""Alert routing wired into a live worker: an issue reaches a webhook on a local receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

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
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def _worker_routing_exceptions_to_a_webhook(tmp_path: Path, broker: TansuBroker,
                                            redis_server: RedisServer) -> tuple[ThreadingHTTPServer, Worker]:
    """A local webhook receiver (its calls in ``Receiver.received``, emptied here) and a worker routing
    carrier exceptions to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received.clear()
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""
destinations:
  erp:
    type: webhook
    url: http://127.0.0.1:{server.server_port}/issues
routes:
  - name: exceptions-to-erp
    match: {{kinds: [carrier_exception]}}
    destinations: [erp]
""", encoding="utf-8")
    return server, Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_ALERT_ROUTES=str(routes)).start()


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
