"""The queue API on a live worker: token scoping, lifecycle over HTTP, error codes, CSV export."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from domain.vocabulary import ISSUE_KINDS
from issue_queue.store import IssueStore, issue_id

from .harness import Worker
from .test_issue_store import START, event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("api")
    with TansuBroker(tmp / "broker") as broker, RedisServer(tmp / "redis") as redis_server:
        async def seed() -> None:
            store = IssueStore.from_url(redis_server.url)
            await store.apply_events([
                event("open", START + 60, key="ZTO:1001|pickup_overdue", shop="shop-a", severity="high"),
                event("open", START + 120, key="ZTO:1002|carrier_exception", shop="shop-a", severity="critical"),
                event("open", START + 180, key="ZTO:2001|tracking_stale", shop="shop-b"),
                event("open", START + 240, key="ZTO:1003|tracking_stale", shop="shop-a"),
            ])
            await store.apply_events([event("resolve", START + 240, START + 300, key="ZTO:1003|tracking_stale")])
            await store.redis.aclose()

        asyncio.run(seed())
        worker = Worker(broker.url, redis_server.url, Path(tmp),
                        PARCELWATCH_TOKENS="tok-a=shop-a;tok-all=*").start()
        yield worker
        worker.stop()


def call(worker: Worker, method: str, path: str, token: str | None = None, body: Any = None,
         raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(worker.url(path), data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            payload = resp.read()
            headers = dict(resp.headers)
            status = resp.status
    except urllib.error.HTTPError as exc:
        payload, headers, status = exc.read(), dict(exc.headers), exc.code
    if "json" in headers.get("Content-Type", ""):
        return status, json.loads(payload), headers
    return status, payload, headers


def test_reads_need_a_token_and_see_only_their_shops(api: Worker) -> None:
    assert call(api, "GET", "/issues")[0] == 401
    assert call(api, "GET", "/issues", token="nope")[0] == 401
    status, body, _ = call(api, "GET", "/issues", token="tok-a")
    assert status == 200 and {i["shop"] for i in body["issues"]} == {"shop-a"}
    assert [i["kind"] for i in body["issues"]] == ["carrier_exception", "pickup_overdue"]  # priority order
    assert call(api, "GET", "/issues?shop=shop-b", token="tok-a")[1]["issues"] == []
    assert call(api, "GET", "/issues?shop=shop-b", token="tok-all")[1]["total"] == 1
    foreign = issue_id("ZTO:2001|tracking_stale")
    assert call(api, "GET", f"/issues/{foreign}", token="tok-a")[0] == 404
    assert call(api, "GET", f"/issues/{foreign}", token="tok-all")[1]["shop"] == "shop-b"


def test_lifecycle_over_http_and_error_codes(api: Worker) -> None:
    iid = issue_id("ZTO:1001|pickup_overdue")
    assert call(api, "POST", f"/issues/{iid}/acknowledge")[0] == 401
    assert call(api, "POST", f"/issues/{iid}/acknowledge", token="tok-a", body={"by": "xiaoli"})[1]["status"] == "acknowledged"
    assert call(api, "POST", f"/issues/{iid}/assign", token="tok-a", body={"assignee": "xiaoli"})[0] == 200
    status, body, _ = call(api, "POST", f"/issues/{iid}/resolve", token="tok-a", body={"resolution_code": "bogus"})
    assert status == 422 and body["field"] == "resolution_code"
    status, body, _ = call(api, "POST", f"/issues/{iid}/assign", token="tok-a", raw=b"{not json")
    assert status == 422 and body["field"] == "$"
    status, body, _ = call(api, "POST", f"/issues/{iid}/assign", token="tok-a", body={})
    assert status == 422 and body["field"] == "assignee"
    ok = call(api, "POST", f"/issues/{iid}/resolve", token="tok-a",
              body={"resolution_code": "extended_receipt", "note": "延长收货 5 天"})
    assert ok[0] == 200 and ok[1]["status"] == "resolved"
    auto = issue_id("ZTO:1003|tracking_stale")
    status, body, _ = call(api, "POST", f"/issues/{auto}/resolve", token="tok-a", body={"resolution_code": "other"})
    assert status == 409 and body["current_status"] == "auto_resolved"
    assert call(api, "POST", "/issues/ffffffffffffffff/acknowledge", token="tok-a")[0] == 404
    foreign = issue_id("ZTO:2001|tracking_stale")
    assert call(api, "POST", f"/issues/{foreign}/acknowledge", token="tok-a")[0] == 404
    doc = call(api, "GET", f"/issues/{iid}", token="tok-a")[1]
    assert doc["note"] == "延长收货 5 天" and doc["assignee"] == "xiaoli"
    assert [h["action"] for h in doc["history"]] == ["opened", "acknowledge", "assign", "resolve"]


def test_bulk_acknowledge_reports_per_id(api: Worker) -> None:
    mine = issue_id("ZTO:1002|carrier_exception")
    foreign = issue_id("ZTO:2001|tracking_stale")
    status, body, _ = call(api, "POST", "/bulk/acknowledge", token="tok-a", body={"ids": [mine, foreign]})
    assert status == 200 and body["results"] == {mine: "acknowledged", foreign: "not_found"}
    assert call(api, "POST", "/bulk/acknowledge", token="tok-a", body={"ids": []})[0] == 422


def test_csv_export_and_bad_query(api: Worker) -> None:
    status, body, headers = call(api, "GET", "/issues.csv?status=open,acknowledged,resolved,auto_resolved",
                                 token="tok-a")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("问题编号,店铺")
    assert len(text.strip().splitlines()) == 1 + 3  # header + shop-a's three issues, none of shop-b
    status, err, _ = call(api, "GET", "/issues?limit=100000", token="tok-a")
    assert status == 422 and err["field"] == "limit"
    assert call(api, "GET", "/issues?date=2026-13-01", token="tok-a")[1]["field"] == "date"
    assert call(api, "GET", "/issues?kind=nope", token="tok-a")[1]["field"] == "kind"


def test_texts_come_in_the_callers_language_and_a_machine_is_named_by_its_token(api: Worker) -> None:
    status, body, headers = call(api, "GET", "/issues?kind=carrier_exception", token="tok-a")
    assert status == 200 and headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    issue = body["issues"][0]
    assert (issue["kind_label"], issue["platform_label"], issue["carrier_label"]) == ("物流异常", "淘宝", "中通快递")
    assert issue["reason"] == "物流异常：其他异常" and issue["detector_texts"]["reason"] == "no carrier scan 24.0 h after shipping"
    assert call(api, "GET", "/issues?kind=carrier_exception&lang=en", token="tok-a")[1]["issues"][0]["kind_label"] == "Carrier exception"
    assert call(api, "GET", "/issues?kind=nope", token="tok-a")[1]["error"] == "问题类型填写有误：不认识 'nope'，可选：" + "、".join(
        ISSUE_KINDS)
    assert call(api, "GET", "/issues?kind=nope&lang=en", token="tok-a")[1]["error"].startswith("kind: unknown value")
    iid = issue_id("ZTO:1002|carrier_exception")
    status, body, _ = call(api, "POST", f"/issues/{iid}/assign", token="tok-a", body={"assignee": "小王", "by": "erp"})
    assert status == 200
    entry = call(api, "GET", f"/issues/{iid}", token="tok-a")[1]["history"][-1]
    assert entry["by"].startswith("token:") and entry["on_behalf_of"] == "erp" and entry["text"] == "分配给 小王"
    assert entry["actor"].startswith("接口令牌 ")
    # No session, no token: a person is asked to sign in (in Chinese), a machine to send its token.
    status, body, _ = call(api, "GET", "/issues")
    assert status == 401 and body["error"] == "请先登录"


def test_search_counts_and_pages(api: Worker) -> None:
    status, body, _ = call(api, "GET", "/issues?q=1001&status=open,acknowledged,resolved,auto_resolved", token="tok-all")
    assert status == 200 and [i["tracking_number"] for i in body["issues"]] == ["1001"]
    status, body, _ = call(api, "GET", "/issues?limit=1", token="tok-all")
    assert body["total"] >= 2 and len(body["issues"]) == 1
    assert set(body["by_shop"]) <= {"shop-a", "shop-b"} and sum(body["by_severity"].values()) == body["total"]
