"""The alert router against a local HTTP receiver on 127.0.0.1: formats on the wire, digests, retries, rate
limits, isolation of a failing destination, spill to disk and re-send, lane incidents.

pytest-asyncio is not a dependency: each test runs its coroutine with ``asyncio.run``. Times are small
(tens of milliseconds) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

import config
from alerting import AlertRouter
from alerting.config import AlertConfig, parse
from issue_queue.store import check_issue_event

from .test_alerting_robots import serve

LABELS = config.load(env={}).labels
FAST_RETRY = {"max_attempts": 3, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.02, "jitter": 0.1}


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Receiver:
    """Records every POST; answers like the platform named by the first path segment."""

    requests: list[Request] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # path -> how many more requests get a 500 (-1: all)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)  # path -> answered once the event is set
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(Request(request.path, dict(request.query), dict(request.headers), orjson.loads(raw), time.monotonic()))
        if request.path in self.hold:
            await self.hold[request.path].wait()
        left = self.fail.get(request.path, 0)
        if left:
            self.fail[request.path] = left - 1 if left > 0 else -1
            return web.Response(status=500, text="boom")
        platform = request.path.split("/")[1]
        if platform in ("dingtalk", "wecom"):
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        if platform == "feishu":
            return web.json_response({"code": 0, "msg": "success", "data": {}})
        if platform == "slack":
            return web.Response(text="ok")
        return web.json_response({"received": True})

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        for event in self.hold.values():
            event.set()  # else the server waits for a held handler at shutdown (a minute) when a test failed
        await self._runner.cleanup()


def issue(n: int = 1, **kw: Any) -> dict[str, Any]:
    number = f"731{n:04d}"
    base = {
        "action": "open", "issue_key": f"ZTO:{number}|pickup_overdue", "kind": "pickup_overdue", "subject": f"ZTO:{number}",
        "parcel": f"ZTO:{number}", "carrier": "ZTO", "tracking_number": number, "order_id": f"TB{n}", "shop": "shop-a",
        "platform": "taobao", "lane": "ZTO 广东→新疆", "origin_province": "广东", "destination_province": "新疆",
        "reason": "no carrier scan 30.0 h after shipping (limit 24 h)", "severity": "high", "evidence": "shipped 2026-11-02 10:00",
        "suggested_action": "push the carrier to collect", "opened_at": "2026-11-03T10:00:00Z", "at": "2026-11-03T10:00:00Z",
        "resolved_at": None, "resolution": None, "order_value": 129.0,
    }
    return {**base, **kw}


def make(rx: Receiver, tmp: Path, destinations: dict[str, dict[str, Any]], routes: list[dict[str, Any]], **top: Any) -> AlertConfig:
    for d in destinations.values():
        if "url" in d:
            d["url"] = rx.url(d["url"])
    return parse({"destinations": destinations, "routes": routes, **top}, env={}, data_dir=tmp)


@dataclass
class Hooks:
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    incidents: Counter[str] = field(default_factory=Counter)

    def wire(self, router: AlertRouter) -> AlertRouter:
        router.on_sent = lambda r, d: self.sent.update([(r, d)])
        router.on_failed = lambda r, d: self.failed.update([(r, d)])
        router.on_incident = lambda c: self.incidents.update([c])
        return router


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


async def deliver_one(handler: Callable[[web.Request], Awaitable[web.Response]], kind: str, tmp: Path,
                      drain_seconds: float = 3) -> None:
    """One issue through a route to one destination of ``kind``, served by ``handler`` on 127.0.0.1, until sent."""
    app = web.Application()
    app.router.add_post("/", handler)
    runner, port = await serve(app)
    cfg = parse({"destinations": {"d": {"type": kind, "url": f"http://127.0.0.1:{port}/"}},
                 "routes": [{"name": "r", "destinations": ["d"], "retry": FAST_RETRY}]}, env={}, data_dir=tmp)
    try:
        async with AlertRouter(cfg, labels=LABELS) as router:
            await router.submit(issue())
            assert await router.drain(drain_seconds)
    finally:
        await runner.cleanup()


def run(test: Callable[[Receiver], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Receiver() as rx:
            await test(rx)

    asyncio.run(main())


# -- formats on the wire --------------------------------------------------------------------------------


def test_each_destination_type_sends_its_format(tmp_path: Path) -> None:
    kafka: list[tuple[str, bytes | None, bytes]] = []

    async def kafka_send(topic: str, key: bytes | None, value: bytes) -> None:
        kafka.append((topic, key, value))

    async def test(rx: Receiver) -> None:
        cfg = make(rx, tmp_path, {
            "hook": {"type": "webhook", "url": "/webhook", "headers": {"Authorization": "Bearer t"}},
            "ding": {"type": "dingtalk", "url": "/dingtalk?access_token=abc", "secret": "SECk"},
            "wx": {"type": "wecom", "url": "/wecom?key=k"},
            "fs": {"type": "feishu", "url": "/feishu/hook", "secret": "fsk"},
            "sl": {"type": "slack", "url": "/slack/T/B/X"},
            "topic": {"type": "kafka", "topic": "parcelwatch-alerts"},
        }, [{"name": "all", "destinations": ["hook", "ding", "wx", "fs", "sl", "topic"]}])
        hooks = Hooks()
        async with hooks.wire(AlertRouter(cfg, labels=LABELS, kafka_send=kafka_send)) as router:
            await router.submit(issue())
            assert await router.drain(3)
        assert hooks.sent == {("all", d): 1 for d in ("hook", "ding", "wx", "fs", "sl", "topic")} and not hooks.failed

        [hook] = rx.at("/webhook")
        assert hook.body == issue() and hook.headers["Authorization"] == "Bearer t"
        assert hook.headers["X-Parcelwatch-Route"] == "all" and len(hook.headers["X-Parcelwatch-Message-Id"]) == 32

        [ding] = rx.at("/dingtalk")
        assert ding.body["msgtype"] == "markdown" and "揽收超时" in ding.body["markdown"]["title"]
        assert ding.query["access_token"] == "abc"
        ts = ding.query["timestamp"]
        assert abs(int(ts) / 1000 - time.time()) < 60
        assert ding.query["sign"] == base64.b64encode(hmac.new(b"SECk", f"{ts}\nSECk".encode(), hashlib.sha256).digest()).decode()

        [wx] = rx.at("/wecom")
        assert wx.body["msgtype"] == "markdown" and "【揽收超时·高】中通快递 7310001" in wx.body["markdown"]["content"]

        [fs] = rx.at("/feishu/hook")
        assert fs.body["msg_type"] == "text" and fs.body["content"]["text"].startswith("【揽收超时·高】")
        key = f"{fs.body['timestamp']}\nfsk".encode()
        assert fs.body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()

        [sl] = rx.at("/slack/T/B/X")
        assert sl.body["text"].startswith("【揽收超时·高】") and sl.body["blocks"][0]["type"] == "header"

        [(topic, k, value)] = kafka
        assert topic == "parcelwatch-alerts" and k == b"ZTO:7310001|pickup_overdue" and orjson.loads(value) == issue()

    run(test)


def test_only_matching_issues_and_actions_are_sent(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        cfg = make(rx, tmp_path, {"a": {"type": "webhook", "url": "/a"}, "b": {"type": "webhook", "url": "/b"}}, [
            {"name": "high", "match": {"min_severity": "high"}, "destinations": ["a"]},
            {"name": "lifecycle", "match": {"kinds": ["carrier_exception"]}, "actions": ["open", "resolve"], "destinations": ["b"]},
        ])
        async with AlertRouter(cfg, labels=LABELS) as router:
            for i in (issue(1), issue(2, severity="low"), issue(3, action="update"), issue(4, kind="carrier_exception", severity="low"),
                      issue(4, kind="carrier_exception", action="update"), issue(4, kind="carrier_exception", action="resolve")):
                await router.submit(i)
            assert await router.drain(3)
        assert [r.body["tracking_number"] for r in rx.at("/a")] == ["7310001"]
        assert [(r.body["tracking_number"], r.body["action"]) for r in rx.at("/b")] == [("7310004", "open"), ("7310004", "resolve")]

    run(test)


# -- digests --------------------------------------------------------------------------------------------


def test_digest_sends_n_issues_as_one_message(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        cfg = make(rx, tmp_path, {"hook": {"type": "webhook", "url": "/hook"}, "ding": {"type": "dingtalk", "url": "/dingtalk"}},
                   [{"name": "d", "destinations": ["hook", "ding"], "digest": {"max_items": 3, "max_seconds": 30}}])
        hooks = Hooks()
        async with hooks.wire(AlertRouter(cfg, labels=LABELS)) as router:
            for n in range(7):
                await router.submit(issue(n))
            await until(lambda: sum(hooks.sent.values()) == 4)
            assert router.pending("d") == 1  # the seventh waits for two more or 30 s
            await asyncio.sleep(0.05)
            assert len(rx.requests) == 4
            await router.close()  # closing flushes the partial digest
        posted = rx.at("/hook")
        assert [[i["tracking_number"] for i in r.body] for r in posted] == [
            ["7310000", "7310001", "7310002"], ["7310003", "7310004", "7310005"], ["7310006"]]
        assert rx.at("/dingtalk")[0].body["markdown"]["title"] == "parcelwatch 问题汇总：3 条（揽收超时 3）"

    run(test)


def test_digest_flushes_after_t_seconds(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        cfg = make(rx, tmp_path, {"hook": {"type": "webhook", "url": "/hook"}},
                   [{"name": "d", "destinations": ["hook"], "digest": {"max_items": 100, "max_seconds": 0.5}}])
        async with AlertRouter(cfg, labels=LABELS) as router:
            start = time.monotonic()
            await router.submit(issue(1))
            # (A window ten times the pause: a loaded test machine can stall this loop past a shorter one.)
            await asyncio.sleep(0.05)
            await router.submit(issue(2))  # within the same window: no new timer
            assert rx.requests == [] and router.pending("d") == 2
            await until(lambda: len(rx.requests) == 1)
            assert 0.45 <= time.monotonic() - start < 3.0
            await router.submit(issue(3))
            await until(lambda: len(rx.requests) == 2)
        assert [len(r.body) for r in rx.requests] == [2, 1]

    run(test)


# -- retries, failures, rate limits ---------------------------------------------------------------------


def test_retried_after_a_500_then_sent(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        rx.fail["/hook"] = 2
        cfg = make(rx, tmp_path, {"hook": {"type": "webhook", "url": "/hook"}}, [{"name": "r", "destinations": ["hook"], "retry": FAST_RETRY}])
        hooks = Hooks()
        async with hooks.wire(AlertRouter(cfg, labels=LABELS)) as router:
            await router.submit(issue())
            assert await router.drain(3)
        attempts = rx.at("/hook")
        assert len(attempts) == 3 and len({a.headers["X-Parcelwatch-Message-Id"] for a in attempts}) == 1
        assert hooks.sent == {("r", "hook"): 1} and not hooks.failed

    run(test)


def test_a_refusal_inside_a_200_is_a_failure_too(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        # -1 "系统繁忙": DingTalk's try-again-later (a refusal for good is set aside instead: test_alerting_robots).
        refusals = [{"errcode": -1, "errmsg": "系统繁忙"}]

        async def ding(request: web.Request) -> web.Response:
            rx.requests.append(Request(request.path, {}, {}, await request.json(), time.monotonic()))
            return web.json_response(refusals.pop() if refusals else {"errcode": 0, "errmsg": "ok"})

        await deliver_one(ding, "dingtalk", tmp_path)
        assert len(rx.requests) == 2

    run(test)


def test_exhausted_retries_are_counted_and_kept_until_the_destination_recovers(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        rx.fail["/hook"] = -1
        cfg = make(rx, tmp_path, {"hook": {"type": "webhook", "url": "/hook"}},
                   [{"name": "r", "destinations": ["hook"], "retry": {**FAST_RETRY, "max_attempts": 2}}])
        hooks = Hooks()
        async with hooks.wire(AlertRouter(cfg, labels=LABELS)) as router:
            await router.submit(issue(1))
            await router.submit(issue(2))
            await until(lambda: hooks.failed[("r", "hook")] >= 3)
            assert router.pending("r") == 2 and not hooks.sent
            rx.fail["/hook"] = 0
            assert await router.drain(3)
        assert hooks.sent == {("r", "hook"): 2}
        delivered = [r.body["tracking_number"] for r in rx.at("/hook")[-2:]]
        assert sorted(delivered) == ["7310001", "7310002"]

    run(test)


def test_rate_limit_is_honoured_per_route_and_per_shared_destination(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        window = 0.2
        cfg = make(rx, tmp_path, {
            "own": {"type": "webhook", "url": "/own"},
            "robot": {"type": "wecom", "url": "/wecom", "rate_limit": {"per_minute": 3, "window_seconds": window}},
        }, [
            {"name": "limited", "destinations": ["own"], "rate_limit": {"per_minute": 2, "window_seconds": window}},
            {"name": "one", "destinations": ["robot"]},
            {"name": "two", "destinations": ["robot"]},
        ])
        async with AlertRouter(cfg, labels=LABELS) as router:
            start = time.monotonic()
            for n in range(5):
                await router.submit(issue(n))
            assert await router.drain(5)
            elapsed = time.monotonic() - start

        def within_limit(arrivals: list[float], per_window: int) -> bool:
            # A request arrives after it was sent, so by any time t at most per_window * (windows begun since
            # start) may have arrived, whatever the latency; without a limit all would arrive at once.
            return all(k + 1 <= per_window * (int((t - start) / window) + 1) for k, t in enumerate(sorted(arrivals)))

        own = [r.at for r in rx.at("/own")]
        assert len(own) == 5 and elapsed >= 2 * window and within_limit(own, 2)
        robot = [r.at for r in rx.at("/wecom")]
        assert len(robot) == 10 and within_limit(robot, 3)  # both routes' messages, 3 a window between them
        assert elapsed >= 3 * window

    run(test)


def test_a_failing_or_slow_destination_blocks_neither_the_stream_nor_the_others(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        rx.fail["/down"] = -1
        rx.hold["/slow"] = asyncio.Event()
        cfg = make(rx, tmp_path, {
            "down": {"type": "webhook", "url": "/down"},
            "slow": {"type": "webhook", "url": "/slow", "timeout_seconds": 5},
            "ok": {"type": "webhook", "url": "/ok"},
            "ok2": {"type": "webhook", "url": "/ok2"},  # (not a chat robot: 200 messages at once are within no limit)
        }, [
            {"name": "mixed", "destinations": ["down", "slow", "ok"], "retry": {**FAST_RETRY, "max_attempts": 100}},
            {"name": "other", "destinations": ["ok2"]},
        ])
        hooks = Hooks()
        router = hooks.wire(AlertRouter(cfg, labels=LABELS))
        await router.start()
        start = time.monotonic()
        for n in range(200):
            await router.submit(issue(n))
        assert time.monotonic() - start < 0.5  # submit never waited on a destination
        await until(lambda: hooks.sent == {("mixed", "ok"): 200, ("other", "ok2"): 200})
        assert len(rx.at("/slow")) == 1  # still on its first message
        assert router.pending("other") == 0
        assert router.pending("mixed") == 2 * 200  # down and slow each still owe all 200
        assert sum(hooks.failed.values()) == 0
        await router.close(timeout=0.05)

    run(test)


# -- spill to disk --------------------------------------------------------------------------------------


def test_spills_past_the_memory_bound_and_sends_everything_in_order_when_back(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        rx.fail["/hook"] = -1
        cfg = make(rx, tmp_path, {"hook": {"type": "webhook", "url": "/hook"}},
                   [{"name": "r", "destinations": ["hook"], "retry": {**FAST_RETRY, "max_attempts": 1000}}],
                   memory_limit=3, spool_dir="spool")
        spool = tmp_path / "spool" / "r@hook.jsonl"
        async with AlertRouter(cfg, labels=LABELS) as router:
            for n in range(10):
                await router.submit(issue(n))
            assert router.pending("r") == 10
            assert len(spool.read_bytes().splitlines()) == 7  # 3 in memory, the rest on disk
            await until(lambda: len(rx.at("/hook")) >= 3)
            rx.fail["/hook"] = 0
            assert await router.drain(3)
        delivered = [r.body["tracking_number"] for r in rx.requests if r.path == "/hook"][-10:]
        assert delivered == [f"731{n:04d}" for n in range(10)]
        assert not spool.exists()

    run(test)


def test_what_is_left_at_shutdown_is_sent_after_a_restart(tmp_path: Path) -> None:
    async def test(rx: Receiver) -> None:
        rx.fail["/hook"] = -1
        cfg = make(rx, tmp_path, {"hook": {"type": "webhook", "url": "/hook"}},
                   [{"name": "r", "destinations": ["hook"], "retry": FAST_RETRY}], memory_limit=2)
        router = AlertRouter(cfg, labels=LABELS)
        await router.start()
        for n in range(5):
            await router.submit(issue(n))
        await until(lambda: len(rx.at("/hook")) >= 1)
        await router.close(timeout=0.05)
        ids = {r.headers["X-Parcelwatch-Message-Id"] for r in rx.at("/hook")}
        spool = tmp_path / "alert-spool" / "r@hook.jsonl"
        assert len(spool.read_bytes().splitlines()) == 5
        # The same route and destination names (so the same spool), now at a URL that answers.
        cfg = make(rx, tmp_path, {"hook": {"type": "webhook", "url": "/back"}},
                   [{"name": "r", "destinations": ["hook"], "retry": FAST_RETRY}], memory_limit=2)
        hooks = Hooks()
        async with hooks.wire(AlertRouter(cfg, labels=LABELS)) as again:
            assert again.pending("r") == 5
            assert await again.drain(3)
        back = rx.at("/back")
        assert sorted(r.body["tracking_number"] for r in back) == [f"731{n:04d}" for n in range(5)]
        assert ids <= {r.headers["X-Parcelwatch-Message-Id"] for r in back}  # same ids: receivers can dedupe
        assert hooks.sent[("r", "hook")] == 5 and not spool.exists()

    run(test)


# -- lane incidents -------------------------------------------------------------------------------------


def test_lane_incident_replaces_single_alerts_on_grouping_routes_only(tmp_path: Path) -> None:
    now = [1_793_700_000.0]

    async def test(rx: Receiver) -> None:
        cfg = make(rx, tmp_path, {"ops": {"type": "dingtalk", "url": "/dingtalk"}, "erp": {"type": "webhook", "url": "/erp"}}, [
            {"name": "ops", "destinations": ["ops"], "lane_incidents": True, "actions": ["open", "resolve"]},
            {"name": "erp", "destinations": ["erp"]},
        ], incidents={"threshold": 5, "window_minutes": 60, "renotify_minutes": 10, "close_below": 2})
        hooks = Hooks()
        router = hooks.wire(AlertRouter(cfg, labels=LABELS, clock=lambda: now[0], incident_tick_seconds=0.01))
        async with router:
            for n in range(100):
                await router.submit(issue(n))
            await router.submit(issue(500, kind="carrier_exception"))  # same lane, another kind: its own alert
            await router.submit(issue(501, destination_province="西藏", lane="ZTO 广东→西藏"))  # another lane
            assert await router.drain(3)
            ops = rx.at("/dingtalk")
            titles = [r.body["markdown"]["title"] for r in ops]
            # The incident is urgent: it goes before the single alerts queued ahead of it.
            assert titles[0] == "【线路异常】中通快递 广东→新疆：5 个包裹"
            assert titles[1:5] == [f"【揽收超时·高】中通快递 731{n:04d}" for n in range(4)]
            assert titles[5:] == ["【物流异常·高】中通快递 7310500", "【揽收超时·高】中通快递 7310501"]
            assert len(rx.at("/erp")) == 102  # the route without grouping got every issue
            assert hooks.incidents == {"ZTO": 1}

            now[0] += 10 * 60  # re-notified with the new count once renotify_minutes passed
            await until(lambda: len(rx.at("/dingtalk")) == 8)
            assert rx.at("/dingtalk")[7].body["markdown"]["title"] == "【线路异常（更新）】中通快递 广东→新疆：100 个包裹"
            for n in range(99):
                await router.submit(issue(n, action="resolve"))
            assert await router.drain(3)
            closing = rx.at("/dingtalk")[8:]
            assert [r.body["markdown"]["title"] for r in closing] == ["【线路异常（已恢复）】中通快递 广东→新疆：1 个包裹"]

    run(test)


# -- hooks and the injected Kafka producer --------------------------------------------------------------


def test_kafka_failures_are_retried_and_broken_hooks_do_not_stop_delivery(tmp_path: Path) -> None:
    calls: list[bytes | None] = []

    async def flaky_send(topic: str, key: bytes | None, value: bytes) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise ConnectionError("broker away")

    def broken_hook(route: str, destination: str) -> None:
        raise RuntimeError("metrics bug")

    async def test() -> None:
        cfg = parse({"destinations": {"t": {"type": "kafka", "topic": "alerts"}},
                     "routes": [{"name": "r", "destinations": ["t"], "retry": FAST_RETRY, "digest": {"max_items": 2, "max_seconds": 9}}]},
                    env={}, data_dir=tmp_path)
        router = AlertRouter(cfg, labels=LABELS, kafka_send=flaky_send)
        router.on_sent = broken_hook
        async with router:
            for n in range(4):
                await router.submit(issue(n))
            assert await router.drain(3)
        assert calls == [b"r", b"r", b"r"]  # a digest is keyed by its route; the first try failed

    asyncio.run(test())


def test_close_ends_a_sender_whose_cancellation_was_lost(tmp_path: Path) -> None:
    """A client library that turns a cancellation into its own error (or 3.11's asyncio.wait_for losing one)
    left the sender retrying for ever, and close(), a worker's graceful stop, waiting on it."""
    lost: list[bool] = []

    async def send_losing_the_first_cancellation(topic: str, key: bytes | None, value: bytes) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost:
                raise
            lost.append(True)
            raise ConnectionError("request cancelled") from None

    async def test() -> None:
        cfg = parse({"destinations": {"t": {"type": "kafka", "topic": "alerts"}},
                     "routes": [{"name": "r", "destinations": ["t"], "retry": FAST_RETRY}]}, env={}, data_dir=tmp_path)
        router = AlertRouter(cfg, labels=LABELS, kafka_send=send_losing_the_first_cancellation)
        await router.start()
        await router.submit(issue(1))
        await asyncio.sleep(0.2)  # the send is under way
        closing = asyncio.ensure_future(router.close(timeout=0.05))
        await asyncio.wait([closing], timeout=5)  # (not wait_for: cancelling close would end the sender itself)
        assert closing.done(), "close() still waits on a sender that retries for ever"
        assert lost == [True]

    asyncio.run(test())


def test_a_kafka_destination_needs_a_send_callable(tmp_path: Path) -> None:
    cfg = parse({"destinations": {"t": {"type": "kafka", "topic": "alerts"}}, "routes": [{"name": "r", "destinations": ["t"]}]},
                env={}, data_dir=tmp_path)
    with pytest.raises(ValueError, match="no kafka_send"):
        AlertRouter(cfg, labels=LABELS)


# -- what the lane re-keying forwards -------------------------------------------------------------------


def test_what_needed_keeps_routes_and_counts_as_the_whole_events_do(tmp_path: Path) -> None:
    now = [1_793_700_000.0]

    async def outcome(rx: Receiver, cut: bool) -> tuple[list[str], Counter[str], dict[str, int]]:
        cfg = make(rx, tmp_path / str(cut), {"vip": {"type": "dingtalk", "url": f"/dingtalk/{cut}"}}, [
            {"name": "vip", "destinations": ["vip"], "match": {"shops": ["shop-b"]}, "actions": ["open", "resolve"]},
        ], incidents={"threshold": 5, "window_minutes": 60, "renotify_minutes": 10, "close_below": 2})
        hooks = Hooks()
        router = hooks.wire(AlertRouter(cfg, labels=LABELS, clock=lambda: now[0], incident_tick_seconds=0.01))
        def shop(n: int) -> str:
            return "shop-b" if n % 4 == 0 else "shop-a"

        events = [issue(n, shop=shop(n)) for n in range(12)]
        events += [issue(100, kind="carrier_exception"), issue(101, origin_province=None)]
        events += [issue(n, action="resolve", shop=shop(n)) for n in range(9)]
        forwarded: dict[str, int] = Counter()
        async with router:
            for event in events:
                needed = router.needed(event) if cut else event
                if needed is None:
                    forwarded["none"] += 1
                    continue
                if needed is not event:
                    check_issue_event(dict(needed))  # still a valid issue event on the alert-routing topic
                    assert "reason" not in needed and "evidence" not in needed  # (nor scans: no texts to carry)
                    forwarded["cut"] += 1
                else:
                    forwarded["whole"] += 1
                await router.submit(dict(needed))
            assert await router.drain(3)
        return [r.body["markdown"]["title"] for r in rx.at(f"/dingtalk/{cut}")], hooks.incidents, forwarded

    async def test(rx: Receiver) -> None:
        whole_sent, whole_incidents, _ = await outcome(rx, False)
        cut_sent, cut_incidents, forwarded = await outcome(rx, True)
        assert cut_sent == whole_sent and len(whole_sent) == 3 + 3  # shop-b's opens and resolves
        assert cut_incidents == whole_incidents == {"ZTO": 1}
        # shop-b's events whole; shop-a's counted by lane incidents only; another kind or no lane: nothing.
        assert forwarded == {"whole": 6, "cut": 15, "none": 2}

    run(test)


def test_a_platform_saying_again_at_once_is_still_given_a_second(tmp_path: Path) -> None:
    """A 429 with ``Retry-After: 0`` is not an attempt, so no backoff slows it: without a floor the sender
    resent the same message thousands of times a second."""
    async def test(rx: Receiver) -> None:
        answers = [web.Response(status=429, headers={"Retry-After": "0"}, text="slow down") for _ in range(2)]

        async def hook(request: web.Request) -> web.Response:
            rx.requests.append(Request(request.path, {}, {}, await request.json(), time.monotonic()))
            return answers.pop(0) if answers else web.json_response({"received": True})

        await deliver_one(hook, "webhook", tmp_path, drain_seconds=5)
        gaps = [b.at - a.at for a, b in zip(rx.requests, rx.requests[1:], strict=False)]
        assert len(rx.requests) == 3 and min(gaps) >= 0.9

    run(test)


def test_a_failed_delivery_logs_no_token_and_no_proxy_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp's errors quote the URL they failed on: a robot's token, a proxy's password. The log keeps the host."""
    async def test(rx: Receiver) -> None:
        async def refuse_tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")  # a CONNECT for the robot's host, with the proxy's credentials
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        proxy = await asyncio.start_server(refuse_tunnel, "127.0.0.1", 0)
        port = proxy.sockets[0].getsockname()[1]
        robot = "https://oapi.dingtalk.com/robot/send?access_token=robot-token-0123"
        cfg = parse({"destinations": {"ding": {"type": "dingtalk", "url": robot,
                                                 "proxy": f"http://corp:proxy-pass-0123@127.0.0.1:{port}"}},
                     "routes": [{"name": "r", "destinations": ["ding"], "retry": {**FAST_RETRY, "max_attempts": 1}}]},
                    env={}, data_dir=tmp_path)
        hooks = Hooks()
        try:
            async with hooks.wire(AlertRouter(cfg, labels=LABELS)) as router:
                await router.submit(issue())
                await until(lambda: hooks.failed[("r", "ding")] >= 1)
        finally:
            proxy.close()
            await proxy.wait_closed()

    with caplog.at_level("WARNING", logger="parcelwatch.alerting"):
        run(test)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "failing after 1 attempts" in logged and "127.0.0.1" in logged
    assert "proxy-pass-0123" not in logged and "robot-token-0123" not in logged and "corp:" not in logged
