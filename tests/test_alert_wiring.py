"""Alert routing wired into a live worker: an issue reaches a webhook on a local receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from embedded.broker import TansuBroker
from embedded.redis_server import RedisServer

from .harness import Worker, produce, wait_for
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


def test_carrier_exception_is_routed_to_a_webhook(tmp_path: Path, broker: TansuBroker,
                                                   redis_server: RedisServer) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
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
    worker = Worker(broker.url, redis_server.url, tmp_path, PARCELWATCH_ALERT_ROUTES=str(routes)).start()
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
