"""Local fake chat robots that check every request as DingTalk, WeCom, Feishu and Slack document it, and the
tests that hold the fakes to those rules.

The rules (sources in ``alerting/vendors.py``): the signature recomputed from the secret, the JSON shape of
each message type, the size limit, the keyword, the rate limits with their answer codes and penalties
(DingTalk locks a robot for 10 minutes after the 21st message of a minute, ``lock_seconds`` here so a test
need not wait that long). A robot answers as the platform does: HTTP 200 with a non-zero code for most
refusals, HTTP 4xx for Slack. Where a platform's code for a refusal is not in the pages we could read, the
fake's code is marked as its own: the router treats every code it does not know as a refusal for good.

Other test files import ``FakeRobots``; a forward proxy (``FakeProxy``) stands for allow-listed egress.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

import config
from alerting.config import DestinationConfig, parse
from alerting.destinations import DingTalkDestination, FeishuDestination, SlackDestination, WeComDestination

from .test_alerting_formats import issue as formats_issue

LABELS = config.load(env={}).labels
OK_DINGTALK = {"errcode": 0, "errmsg": "ok"}


@dataclass
class Seen:
    """One request as the robot saw it, and its answer."""

    at: float  # time.monotonic() at arrival
    size: int  # bytes of the request body
    body: Any
    query: dict[str, str]
    status: int
    answer: Any

    @property
    def accepted(self) -> bool:
        if self.status != 200:
            return False
        if isinstance(self.answer, dict):
            return self.answer.get("errcode", self.answer.get("code", 0)) == 0
        return self.answer == "ok"

    @property
    def code(self) -> Any:
        if isinstance(self.answer, dict):
            return self.answer.get("errcode", self.answer.get("code"))
        return self.answer


@dataclass
class Robot:
    """One robot's settings and what it saw. ``windows``: (limit, seconds) pairs, all of which must hold."""

    vendor: str
    secret: str | None = None
    keyword: str | None = None
    windows: tuple[tuple[int, float], ...] = ()
    lock_seconds: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    _times: dict[float, deque[float]] = field(default_factory=dict)
    locked_until: float = 0.0

    @property
    def accepted(self) -> list[Any]:
        return [s.body for s in self.seen if s.accepted]

    @property
    def refused(self) -> list[Seen]:
        return [s for s in self.seen if not s.accepted]

    def over_limit(self, now: float) -> bool:
        """True when one more message now would break a window (the message is not counted then)."""
        if now < self.locked_until:
            return True
        for limit, seconds in self.windows:
            times = self._times.setdefault(seconds, deque())
            while times and now - times[0] >= seconds:
                times.popleft()
            if len(times) >= limit:
                self.locked_until = max(self.locked_until, now + self.lock_seconds)
                return True
        for _, seconds in self.windows:
            self._times[seconds].append(now)
        return False

    def max_in_any_window(self, seconds: float) -> int:
        """The most accepted messages that arrived within any ``seconds`` (what the platform would count)."""
        times = sorted(s.at for s in self.seen if s.accepted)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """``app`` on a free loopback port: its runner (to clean up) and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class FakeRobots:
    """DingTalk, WeCom, Feishu and Slack robots on one loopback server."""

    def __init__(self) -> None:
        self.robots: dict[tuple[str, str], Robot] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- robots ---------------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def dingtalk(self, token: str, *, secret: str | None = None, keyword: str | None = None, lock_seconds: float = 600.0) -> str:
        # "每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟"
        self.robots[("dingtalk", token)] = Robot("dingtalk", secret, keyword, ((20, 60.0),), lock_seconds)
        return self.url(f"/robot/send?access_token={token}")

    def wecom(self, key: str) -> str:
        self.robots[("wecom", key)] = Robot("wecom", windows=((20, 60.0),))
        return self.url(f"/cgi-bin/webhook/send?key={key}")

    def feishu(self, token: str, *, secret: str | None = None, keyword: str | None = None) -> str:
        self.robots[("feishu", token)] = Robot("feishu", secret, keyword, ((5, 1.0), (100, 60.0)))
        return self.url(f"/open-apis/bot/v2/hook/{token}")

    def slack(self, path: str) -> str:
        self.robots[("slack", path)] = Robot("slack", windows=((1, 1.0),))
        return self.url(f"/services/{path}")

    def __getitem__(self, key: tuple[str, str]) -> Robot:
        return self.robots[key]

    # -- the platforms' rules ---------------------------------------------------------------------------------

    async def _dingtalk(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        robot = self.robots.get(("dingtalk", request.query.get("access_token", "")))
        if robot is None:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})  # (the fake's own code)
        return self._answer(robot, request, raw, self._dingtalk_verdict(robot, request, raw))

    def _dingtalk_verdict(self, robot: Robot, request: web.Request, raw: bytes) -> dict[str, Any]:
        if time.monotonic() < robot.locked_until:
            return {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
        if not request.content_type == "application/json" or request.charset not in (None, "utf-8"):
            return {"errcode": 40035, "errmsg": "缺少参数 json"}  # (the fake's own code)
        if robot.secret is not None:
            ts, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
            expected = base64.b64encode(hmac.new(robot.secret.encode(), f"{ts}\n{robot.secret}".encode(), hashlib.sha256).digest()).decode()
            if not ts.isdigit() or abs(int(ts) - time.time() * 1000) > 3600_000 or sign != expected:
                return {"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}
        if len(raw) > 20_000:
            return {"errcode": 460101, "errmsg": "message too long, exceed 20000 bytes"}  # (the fake's own code)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"errcode": 40035, "errmsg": "缺少参数 json"}
        text = self._dingtalk_shape(body)
        if text is None:
            return {"errcode": 40035, "errmsg": "缺少参数 json"}
        if robot.keyword is not None and robot.keyword not in text:
            return {"errcode": 310000, "errmsg": "keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}
        if robot.over_limit(time.monotonic()):
            return {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
        return OK_DINGTALK

    @staticmethod
    def _dingtalk_shape(body: Any) -> str | None:
        """The text DingTalk shows (and checks the keyword in), or None when the JSON is not a robot message."""
        if not isinstance(body, dict):
            return None
        at = body.get("at", {})
        if not isinstance(at, dict) or not _strings(at.get("atMobiles", [])) or not _strings(at.get("atUserIds", [])) \
                or not isinstance(at.get("isAtAll", False), bool):
            return None
        kind = body.get("msgtype")
        if kind == "text":
            content = body.get("text", {}).get("content") if isinstance(body.get("text"), dict) else None
            return content if isinstance(content, str) and content else None
        if kind == "markdown":
            md = body.get("markdown")
            if not isinstance(md, dict) or not isinstance(md.get("title"), str) or not isinstance(md.get("text"), str) \
                    or not md["title"] or not md["text"]:
                return None
            return md["title"] + "\n" + md["text"]
        return None

    async def _wecom(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        robot = self.robots.get(("wecom", request.query.get("key", "")))
        if robot is None:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})  # (the fake's own code)
        return self._answer(robot, request, raw, self._wecom_verdict(robot, raw))

    def _wecom_verdict(self, robot: Robot, raw: bytes) -> dict[str, Any]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"errcode": 40008, "errmsg": "invalid message type"}
        kind = body.get("msgtype") if isinstance(body, dict) else None
        part = body.get(kind) if isinstance(body, dict) and isinstance(kind, str) else None
        if kind not in ("text", "markdown") or not isinstance(part, dict) or not isinstance(part.get("content"), str):
            return {"errcode": 40008, "errmsg": "invalid message type"}
        limit = 2048 if kind == "text" else 4096  # "最长不超过2048个字节" / "最长不超过4096个字节"
        if len(part["content"].encode()) > limit:
            return {"errcode": 40058, "errmsg": f"{kind}.content exceed max length {limit}"}  # (the fake's own code)
        if kind == "text" and not _strings(part.get("mentioned_list", [])):
            return {"errcode": 40058, "errmsg": "mentioned_list invalid"}
        if robot.over_limit(time.monotonic()):
            return {"errcode": 45009, "errmsg": "api freq out of limit"}
        return {"errcode": 0, "errmsg": "ok"}

    async def _feishu(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        robot = self.robots.get(("feishu", request.match_info["token"]))
        if robot is None:
            return web.json_response({"code": 19001, "msg": "param invalid: incoming webhook access token invalid"})
        return self._answer(robot, request, raw, self._feishu_verdict(robot, raw))

    def _feishu_verdict(self, robot: Robot, raw: bytes) -> dict[str, Any]:
        bad = {"code": 9499, "msg": "Bad Request", "data": {}}
        if len(raw) > 20_000:  # "请求体的数据大小不能超过 20 KB"
            return bad
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return bad
        if not isinstance(body, dict):
            return bad
        if robot.secret is not None:
            ts = str(body.get("timestamp", ""))
            key = f"{ts}\n{robot.secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            if not ts.isdigit() or abs(int(ts) - time.time()) > 3600 or body.get("sign") != expected:
                return {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time", "data": {}}
        if not self._feishu_shape(body):
            return bad
        shown = orjson.dumps(body.get("content") or body.get("card")).decode()
        if robot.keyword is not None and robot.keyword not in shown:
            return {"code": 19024, "msg": "Key Words Not Found", "data": {}}
        if robot.over_limit(time.monotonic()):
            return {"code": 11232, "msg": "frequency limited psm[lark.oapi.app_platform_runtime]appID[0]", "data": {}}
        return {"code": 0, "msg": "success", "data": {}}

    @staticmethod
    def _feishu_shape(body: dict[str, Any]) -> bool:
        kind, content = body.get("msg_type"), body.get("content")
        if kind == "text":
            return isinstance(content, dict) and isinstance(content.get("text"), str) and bool(content["text"])
        if kind == "post":
            post = content.get("post") if isinstance(content, dict) else None
            if not isinstance(post, dict) or not post:
                return False
            for lang in post.values():
                rows = lang.get("content") if isinstance(lang, dict) else None
                if not isinstance(lang.get("title", ""), str) or not isinstance(rows, list):
                    return False
                if not all(isinstance(r, list) and all(isinstance(e, dict) and isinstance(e.get("tag"), str) for e in r) for r in rows):
                    return False
            return True
        if kind == "interactive":
            card = body.get("card")
            return isinstance(card, dict) and isinstance(card.get("elements", []), list)
        return False

    async def _slack(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        robot = self.robots.get(("slack", request.match_info["path"]))
        if robot is None:
            return web.Response(status=404, text="no_service")
        status, text = self._slack_verdict(robot, raw)
        seen = Seen(time.monotonic(), len(raw), _loads(raw), dict(request.query), status, text)
        robot.seen.append(seen)
        return web.Response(status=status, text=text, headers={"Retry-After": "1"} if status == 429 else None)

    def _slack_verdict(self, robot: Robot, raw: bytes) -> tuple[int, str]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 400, "invalid_payload"
        if not isinstance(body, dict) or not (isinstance(body.get("text"), str) or isinstance(body.get("blocks"), list)):
            return 400, "invalid_payload"
        blocks = body.get("blocks", [])
        if len(blocks) > 50:
            return 400, "invalid_blocks"
        total = 0
        for b in blocks:
            text = b.get("text") if isinstance(b, dict) else None
            if not isinstance(text, dict) or not isinstance(text.get("text"), str):
                return 400, "invalid_blocks"
            limit = 150 if b.get("type") == "header" else 3000
            if b.get("type") not in ("header", "section") or len(text["text"]) > limit:
                return 400, "invalid_blocks"
            if b["type"] == "header" and text.get("type") != "plain_text":
                return 400, "invalid_blocks"
            total += len(text["text"])
        if total > 13_000:  # refused around 13,200 characters of blocks (slackapi/bolt-js#2509)
            return 400, "msg_blocks_too_long"
        if robot.over_limit(time.monotonic()):
            return 429, "rate_limited"
        return 200, "ok"

    def _answer(self, robot: Robot, request: web.Request, raw: bytes, verdict: dict[str, Any]) -> web.StreamResponse:
        robot.seen.append(Seen(time.monotonic(), len(raw), _loads(raw), dict(request.query), 200, verdict))
        return web.json_response(verdict)

    # -- the server -----------------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeRobots:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/open-apis/bot/v2/hook/{token}", self._feishu)
        app.router.add_post("/services/{path:.+}", self._slack)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


class FakeProxy:
    """A forward HTTP proxy on loopback: what an allow-listed egress host does, recording what it forwarded."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        target = str(request.url)  # absolute-form request target: the proxy is told where to go
        self.forwarded.append(target)
        assert self._session is not None
        async with self._session.request(request.method, target, data=await request.read(),
                                         headers={"Content-Type": request.headers.get("Content-Type", "")}) as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type=resp.content_type)

    async def __aenter__(self) -> FakeProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()


def run(test: Callable[[FakeRobots], Awaitable[None]]) -> None:
    async def main() -> None:
        async with FakeRobots() as robots:
            await test(robots)

    asyncio.run(main())


# -- the fakes hold to the platforms' rules ---------------------------------------------------------------------


def issue(n: int = 1, **kw: Any) -> dict[str, Any]:
    """An issue event as the stream emits it: the detectors' English texts beside the values they came from."""
    data = {"shipped_at": 1793584800.0, "window_hours": 24.0, "deadline": 1793671200.0}
    return formats_issue(n, **{"evidence_data": data, **kw})


def envelope(*items: dict[str, Any]) -> dict[str, Any]:
    return {"id": "m1", "route": "r", "digest": len(items) > 1, "created_at": 0.0, "items": list(items)}


async def post(url: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as r:
        text = await r.text()
        return r.status, _loads(text.encode()) if r.content_type == "application/json" else text


def test_dingtalk_checks_signature_keyword_shape_size_and_locks_after_twenty() -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.dingtalk("t1", secret="SECk", keyword="告警", lock_seconds=0.5)
        now = time.time()
        good = DingTalkDestination(DestinationConfig("d", "dingtalk", url=url, secret="SECk", keyword="告警"), LABELS, aiohttp.ClientSession)
        body = good.body(envelope(issue()), now)
        assert (await post(good.url(now), body))[1] == OK_DINGTALK
        assert (await post(url, body))[1]["errcode"] == 310000  # no signature
        wrong = DingTalkDestination(DestinationConfig("d", "dingtalk", url=url, secret="other"), LABELS, aiohttp.ClientSession)
        assert (await post(wrong.url(now), body))[1]["errmsg"].startswith("sign not match")
        no_keyword = DingTalkDestination(DestinationConfig("d", "dingtalk", url=url, secret="SECk"), LABELS, aiohttp.ClientSession)
        assert (await post(good.url(now), no_keyword.body(envelope(issue()), now)))[1]["errmsg"].startswith("keywords not in content")
        assert (await post(good.url(now), {"msgtype": "markdown", "markdown": {"title": "告警"}}))[1]["errcode"] == 40035
        huge = {**body, "markdown": {"title": "告警", "text": "告警" + "x" * 20_000}}
        assert (await post(good.url(now), huge))[1]["errcode"] == 460101
        for _ in range(19):
            assert (await post(good.url(now), body))[1] == OK_DINGTALK
        assert (await post(good.url(now), body))[1]["errcode"] == 130101  # the 21st of the minute: locked
        await asyncio.sleep(0.6)
        assert (await post(good.url(now), body))[1]["errcode"] == 130101  # the minute's 20 still count after the lock

    run(test)


def test_wecom_checks_shape_size_and_twenty_a_minute() -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.wecom("k1")
        assert (await post(url, {"msgtype": "markdown", "markdown": {"content": "x" * 4097}}))[1]["errcode"] == 40058
        assert (await post(url, {"msgtype": "text", "text": {"content": "好" * 683}}))[1]["errcode"] == 40058  # 2049 bytes
        assert (await post(url, {"msgtype": "news", "news": {}}))[1]["errcode"] == 40008
        answers = [(await post(url, {"msgtype": "markdown", "markdown": {"content": "ok"}}))[1]["errcode"] for _ in range(21)]
        assert answers == [0] * 20 + [45009]

    run(test)


def test_feishu_checks_signature_keyword_size_and_both_windows() -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.feishu("h1", secret="fsk", keyword="告警")
        now = time.time()
        dest = FeishuDestination(DestinationConfig("f", "feishu", url=url, secret="fsk", keyword="告警", format="post"), LABELS,
                                 aiohttp.ClientSession)
        body = dest.body(envelope(issue()), now)
        start = time.monotonic()
        assert (await post(url, body))[1]["code"] == 0
        assert (await post(url, {**body, "sign": "x"}))[1]["code"] == 19021
        plain = FeishuDestination(DestinationConfig("f", "feishu", url=url, secret="fsk"), LABELS, aiohttp.ClientSession)
        assert (await post(url, plain.body(envelope(issue()), now)))[1]["code"] == 19024
        big = {**body, "content": {"post": {"zh_cn": {"title": "告警", "content": [[{"tag": "text", "text": "x" * 20_000}]]}}}}
        assert (await post(url, big))[1]["code"] == 9499
        answers = [(await post(url, body))[1]["code"] for _ in range(5)]
        assert set(answers) <= {0, 11232} and robots[("feishu", "h1")].max_in_any_window(1.0) <= 5
        if time.monotonic() - start < 0.9:  # six within a second (the one above too): the sixth is throttled
            assert answers == [0, 0, 0, 0, 11232]

    run(test)


def test_slack_checks_blocks_and_one_a_second() -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.slack("T1/B1/X1")
        slack = SlackDestination(DestinationConfig("s", "slack", url=url), LABELS, aiohttp.ClientSession)
        assert await post(url, slack.body(envelope(issue()), time.time())) == (200, "ok")
        assert await post(url, {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]}) == (400, "invalid_blocks")
        assert await post(url, {"nothing": 1}) == (400, "invalid_payload")
        assert (await post(url, {"text": "again"}))[0] == 429
        assert robots[("slack", "T1/B1/X1")].refused[-1].status == 429

    run(test)


def test_wecom_markdown_from_the_destination_is_accepted() -> None:
    async def test(robots: FakeRobots) -> None:
        url = robots.wecom("k2")
        wecom = WeComDestination(parse({"destinations": {"w": {"type": "wecom", "url": url}}}, env={}).destinations["w"], LABELS,
                                 aiohttp.ClientSession)
        digest = wecom.body(envelope(*[issue(n) for n in range(300)]), time.time())
        assert (await post(url, digest))[1] == {"errcode": 0, "errmsg": "ok"}

    run(test)
