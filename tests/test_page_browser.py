"""The queue page end to end in headless Chromium against a live worker and real Redis."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import expect

from devtools.broker import TansuBroker
from devtools.redis_server import RedisServer
from issue_queue.store import IssueStore, issue_id

from .harness import Worker, wait_for
from .test_issue_store import START, event

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Worker, str]]:
    tmp = tmp_path_factory.mktemp("page")
    with TansuBroker(tmp / "broker") as broker, RedisServer(tmp / "redis") as redis_server:
        async def seed() -> None:
            store = IssueStore.from_url(redis_server.url)
            await store.apply_events([
                event("open", START + 60, key="ZTO:73100001|pickup_overdue", shop="shop-a", severity="high"),
                event("open", START + 120, key="YTO:YT1000002|carrier_exception", shop="shop-a",
                      severity="critical", reason="carrier exception: Lost"),
                event("open", START + 180, key="STO:77100003|tracking_stale", shop="shop-b"),
            ])
            await store.redis.aclose()

        asyncio.run(seed())
        worker = Worker(broker.url, redis_server.url, Path(tmp), PARCELWATCH_TOKENS="tok-a=shop-a").start()
        yield worker, redis_server.url
        worker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def signed_in(browser: Any, worker: Worker, token: str = "tok-a") -> Any:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(worker.url("/queue"))
    page.get_by_label("店铺令牌").fill(token)
    page.get_by_role("button", name="登录").click()
    return page


def test_wrong_token_is_refused(live: tuple[Worker, str], browser: Any) -> None:
    worker, _ = live
    page = signed_in(browser, worker, "not-a-token")
    assert page.get_by_role("alert").inner_text() == "令牌无效，请重新输入。"
    page.close()


def test_page_lists_filters_resolves_and_switches_language(live: tuple[Worker, str], browser: Any) -> None:
    worker, redis_url = live
    page = signed_in(browser, worker)
    rows = page.locator("#rows tr")
    rows.first.wait_for()
    text = page.locator("#rows").inner_text()
    assert "TB1" in text and "73100001" in text and "YT1000002" in text
    assert "77100003" not in text  # shop-b is not this token's
    assert rows.nth(0).inner_text().find("物流异常") >= 0  # critical first
    # The README's picture is taken only when asked: every test run rewrote the tracked file, and a
    # machine without CJK fonts drew the page's Chinese as empty boxes.
    shot = os.environ.get("PARCELWATCH_SCREENSHOT")
    if shot:
        page.screenshot(path=shot)  # e.g. PARCELWATCH_SCREENSHOT=$PWD/docs/queue-page.png

    page.get_by_label("问题类型").select_option("pickup_overdue")
    # (The page's CSP forbids eval, so waits use locators, not wait_for_function.)
    expect(page.locator("#rows tr")).to_have_count(1)
    assert "揽收超时" in page.locator("#rows").inner_text()

    page.get_by_label("我的名字").fill("小李")
    page.get_by_role("button", name="详情").click()
    page.get_by_label("处理结果").select_option("extended_receipt")
    page.get_by_label("备注").fill("已延长收货 5 天")
    page.get_by_role("button", name="解决").click()
    iid = issue_id("ZTO:73100001|pickup_overdue")

    def doc() -> dict[str, Any] | None:  # sync client: Playwright's sync API owns this thread's loop
        raw = redis.Redis.from_url(redis_url).get(f"pw:issue:{iid}")
        return json.loads(raw) if raw else None

    resolved = wait_for(lambda: (lambda d: d if d and d["status"] == "resolved" else None)(doc()),
                        15, "the resolution in Redis")
    assert resolved["resolution_code"] == "extended_receipt" and resolved["note"] == "已延长收货 5 天"
    assert resolved["history"][-1]["by"] == "小李"

    page.goto(worker.url("/queue?lang=en"))
    page.locator("#rows tr").first.wait_for()
    assert "Carrier exception" in page.locator("#rows").inner_text()
    page.close()
