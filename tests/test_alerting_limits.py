"""The platforms' limits held across workers: routers sharing one Redis, sending to the fake robots of
``test_alerting_robots`` (which refuse and lock exactly as the platforms document).

Each robot's documented limits apply with no ``rate_limit`` configured; two routers (two workers) on one
Redis count together; a throttling answer's penalty holds for every worker; a message refused for good is
set aside at once, counted and kept, and takes no further slot; a request that never reached the robot
gives its slot back. Only a few seconds of sending each: the limits are checked on what the robot saw.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from alerting import AlertRouter
from alerting.config import AlertConfig, parse
from alerting.router import REFUSED_FILE
from devtools.process import closed_port
from devtools.redis_server import RedisServer

from .test_alerting_robots import LABELS, FakeRobots, issue, run
from .test_alerting_router import until

pytestmark = pytest.mark.integration

FAST_RETRY = {"max_attempts": 3, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "jitter": 0.1}


@dataclass
class Hooks:
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    throttled: Counter[tuple[str, str]] = field(default_factory=Counter)

    def wire(self, router: AlertRouter) -> AlertRouter:
        router.on_sent = lambda r, d: self.sent.update([(r, d)])
        router.on_failed = lambda r, d: self.failed.update([(r, d)])
        router.on_refused = lambda r, d, why: self.refused.update([(r, d, why)])
        router.on_throttled = lambda r, d: self.throttled.update([(r, d)])
        return router


def config(tmp: Path, destination: dict[str, Any], **route: Any) -> AlertConfig:
    return parse({"destinations": {"robot": destination}, "routes": [{"name": "r", "destinations": ["robot"], **route}]},
                 env={}, data_dir=tmp)


@asynccontextmanager
async def routers(redis_url: str, *configs: AlertConfig, hooks: Hooks | None = None) -> AsyncIterator[list[AlertRouter]]:
    """One router per config (one per worker), all on the same Redis, started; closed with a short drain."""
    clients = [aioredis.from_url(redis_url) for _ in configs]
    made = [AlertRouter(c, labels=LABELS, redis=r) for c, r in zip(configs, clients, strict=True)]
    if hooks is not None:
        for router in made:
            hooks.wire(router)
    for router in made:
        await router.start()
    try:
        yield made
    finally:
        for router in made:
            await router.close(timeout=0.05)
        for client in clients:
            await client.aclose()


# -- each platform's documented limits, by default ----------------------------------------------------------------


@pytest.mark.parametrize(("vendor", "messages", "window", "limit"), [
    ("dingtalk", 25, 60.0, 20),  # 20 a minute, then a 10-minute lock (130101)
    ("wecom", 25, 60.0, 20),  # 20 a minute (45009)
])
def test_a_minute_limit_holds_with_no_rate_limit_configured(tmp_path: Path, redis_server: RedisServer, vendor: str,
                                                             messages: int, window: float, limit: int) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.dingtalk("t") if vendor == "dingtalk" else robots.wecom("t")
        async with routers(redis_server.url, config(tmp_path, {"type": vendor, "url": url})) as (router,):
            for n in range(messages):
                await router.submit(issue(n))
            robot = robots[(vendor, "t")]
            await until(lambda: len(robot.seen) >= 18)
            await asyncio.sleep(0.5)  # time for a 19th, 20th, 21st ... to go out if nothing held them
            assert not robot.refused, [s.answer for s in robot.refused]
            # Routine alerts leave 2 of the 20 to urgent ones; the rest wait for the window, none is lost.
            assert len(robot.accepted) == limit - limit // 10 and router.pending("r") == messages - len(robot.accepted)

    run(test)


def test_feishu_five_a_second_and_slack_one_a_second_hold(tmp_path: Path, redis_server: RedisServer) -> None:
    async def test(robots: FakeRobots) -> None:
        fs = config(tmp_path / "f", {"type": "feishu", "url": robots.feishu("h")})
        sl = config(tmp_path / "s", {"type": "slack", "url": robots.slack("T/B/X")})
        async with routers(redis_server.url, fs, sl) as (feishu, slack):
            for n in range(12):
                await feishu.submit(issue(n))
            for n in range(3):
                await slack.submit(issue(n))
            assert await feishu.drain(6) and await slack.drain(6)
        f, s = robots[("feishu", "h")], robots[("slack", "T/B/X")]
        assert not f.refused and not s.refused, ([x.answer for x in f.refused], [x.answer for x in s.refused])
        assert len(f.accepted) == 12 and f.max_in_any_window(1.0) <= 5
        assert len(s.accepted) == 3 and s.max_in_any_window(1.0) <= 1

    run(test)


# -- across workers --------------------------------------------------------------------------------------------


def test_two_workers_share_one_robot_and_an_urgent_alert_still_finds_a_slot(tmp_path: Path, redis_server: RedisServer) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.dingtalk("shared")
        # Two workers, each with its own copy of the same routes (as every worker of a deployment has).
        a, b = config(tmp_path / "a", {"type": "dingtalk", "url": url}), config(tmp_path / "b", {"type": "dingtalk", "url": url})
        async with routers(redis_server.url, a, b) as (one, two):
            for n in range(15):
                await one.submit(issue(n))
                await two.submit(issue(100 + n))
            robot = robots[("dingtalk", "shared")]
            await until(lambda: len(robot.seen) >= 18)
            await asyncio.sleep(0.5)
            assert not robot.refused and len(robot.accepted) == 18  # 30 routine alerts: 18 of the minute's 20
            await two.submit(issue(999, severity="critical"))
            await until(lambda: len(robot.seen) == 19)
            assert not robot.refused and "7310999" in robot.accepted[-1]["markdown"]["title"]

    run(test)


def test_a_throttling_answer_is_waited_out_by_every_worker(tmp_path: Path, redis_server: RedisServer) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.dingtalk("busy", lock_seconds=2.0)
        robot = robots[("dingtalk", "busy")]
        robot.locked_until = time.monotonic() + 2.0  # another system tripped the robot's limit a moment ago
        dest = {"type": "dingtalk", "url": url, "throttle_penalty_seconds": 2.0}
        hooks = Hooks()
        # A 0.05 s backoff cap: the penalty is the platform's, not the route's backoff.
        a, b = config(tmp_path / "a", dest, retry=FAST_RETRY), config(tmp_path / "b", dest, retry=FAST_RETRY)
        async with routers(redis_server.url, a, b, hooks=hooks) as (one, two):
            await one.submit(issue(1))
            await until(lambda: len(robot.seen) == 1)
            await two.submit(issue(2))
            await asyncio.sleep(1.0)
            assert [s.code for s in robot.seen] == [130101]  # the other worker waits out the penalty too
            await until(lambda: len(robot.accepted) == 2)
        assert [s.code for s in robot.seen] == [130101, 0, 0]
        assert not hooks.failed and sum(hooks.throttled.values()) == 1

    run(test)


def test_dingtalk_throttling_holds_the_robot_for_its_ten_minutes(tmp_path: Path, redis_server: RedisServer) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.dingtalk("locked")
        robot = robots[("dingtalk", "locked")]
        robot.locked_until = time.monotonic() + 3600
        async with routers(redis_server.url, config(tmp_path, {"type": "dingtalk", "url": url}, retry=FAST_RETRY)) as (router,):
            await router.submit(issue(1))
            await until(lambda: len(robot.seen) == 1)
            await asyncio.sleep(0.5)
            assert len(robot.seen) == 1 and router.pending("r") == 1
            client = aioredis.from_url(redis_server.url)
            try:
                keys = [k async for k in client.scan_iter(match="pw:alert:*:penalty")]
                assert len(keys) == 1 and 590_000 < await client.pttl(keys[0]) <= 600_000
            finally:
                await client.aclose()

    run(test)


# -- refusals and slots --------------------------------------------------------------------------------------------


def test_refused_messages_are_set_aside_at_once_counted_and_kept(tmp_path: Path, redis_server: RedisServer) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.dingtalk("kw", keyword="告警")  # the robot's 关键词 security; the route was not told
        hooks = Hooks()
        async with routers(redis_server.url, config(tmp_path, {"type": "dingtalk", "url": url}, retry=FAST_RETRY), hooks=hooks) as (router,):
            for n in range(3):
                await router.submit(issue(n))
            await until(lambda: router.pending("r") == 0)
            await asyncio.sleep(0.3)
            client = aioredis.from_url(redis_server.url)
            try:
                windows = [k async for k in client.scan_iter(match="pw:alert:*:robot:*")]
                assert len(windows) == 1 and await client.zcard(windows[0]) == 3  # one slot a request, none for retries
            finally:
                await client.aclose()
        robot = robots[("dingtalk", "kw")]
        assert [s.code for s in robot.seen] == [310000] * 3
        assert hooks.refused == {("r", "robot", "keyword"): 3} and not hooks.failed and not hooks.sent
        kept = [orjson.loads(line) for line in (tmp_path / "alert-spool" / REFUSED_FILE).read_bytes().splitlines()]
        assert [k["reason"] for k in kept] == ["keyword"] * 3
        assert sorted(k["envelope"]["items"][0]["tracking_number"] for k in kept) == ["7310000", "7310001", "7310002"]

    run(test)


def test_a_request_that_never_reached_the_robot_gives_its_slot_back(tmp_path: Path, redis_server: RedisServer) -> None:
    async def test(robots: FakeRobots) -> None:
        closed = f"http://127.0.0.1:{port}/robot/send?access_token=gone"
        hooks = Hooks()
        async with routers(redis_server.url, config(tmp_path, {"type": "dingtalk", "url": closed}, retry=FAST_RETRY),
                           hooks=hooks) as (router,):
            await router.submit(issue(1))
            await until(lambda: hooks.failed[("r", "robot")] >= 1)
            client = aioredis.from_url(redis_server.url)
            try:
                windows = [k async for k in client.scan_iter(match="pw:alert:*:robot:*")]
                assert [await client.zcard(k) for k in windows] in ([], [0])
            finally:
                await client.aclose()
            assert router.pending("r") == 1  # kept for when the robot is back

    with closed_port() as port:
        run(test)


def test_without_redis_the_limits_hold_per_worker(tmp_path: Path) -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.wecom("alone")
        unreachable = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2)
        router = AlertRouter(config(tmp_path, {"type": "wecom", "url": url}), labels=LABELS, redis=unreachable)
        async with router:
            for n in range(20):
                await router.submit(issue(n))
            robot = robots[("wecom", "alone")]
            await until(lambda: len(robot.seen) >= 18)
            await asyncio.sleep(0.5)
            assert len(robot.accepted) == 18 and not robot.refused
            await router.close(timeout=0.05)
        await unreachable.aclose()

    with closed_port() as port:
        run(test)
