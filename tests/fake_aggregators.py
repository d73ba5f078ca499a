"""Local stand-ins for the aggregators' registration APIs, on 127.0.0.1, answering as each vendor documents.

Each checks a request the way its vendor does (fields, key, signature, batch size) and answers with the
vendor's own codes (``subscriptions/vendors.py`` cites the documents): kuaidi100 ``/poll``, AfterShip
``/tracking/2025-01/trackings``, 17TRACK ``/track/v2.2/register``, kdniao ``/api/dist``. They remember what
was registered (a second registration gets the vendor's "already" answer) and the time of every request, so
a test can hold the client to the vendor's rate. ``script[number]`` queues forced answers for a number.

The server runs on its own event loop in a thread, so worker processes and in-process tests can both use it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

KUAIDI100_COMPANIES = {"zhongtong", "yuantong", "yunda", "shentong", "shunfeng", "jd", "ems", "youzhengguonei",
                       "jtexpress", "debangkuaidi", "huitongkuaidi", "danniao"}
AFTERSHIP_SLUGS = {"zto-express", "yto", "yunda", "sto", "sf-express", "jd", "china-ems", "china-post", "jtexpress-cn",
                   "deppon", "bestex", "cainiao"}


@dataclass
class Call:
    vendor: str
    at: float
    form: dict[str, str] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def max_in_window(stamps: Iterable[float], window: float = 1.0) -> int:
    """The most of ``stamps`` (seconds) within any ``window`` seconds (closed at both ends)."""
    times = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


class FakeAggregators:
    """All four vendors on one loopback port. ``keys``: the credentials each vendor accepts."""

    def __init__(self, *, kuaidi100_key: str = "kd100-key", aftership_key: str = "as-key", track17_key: str = "17-key",
                 kdniao_business_id: str = "1234567", kdniao_api_key: str = "kdn-key") -> None:
        self.kuaidi100_key = kuaidi100_key
        self.aftership_key = aftership_key
        self.track17_key = track17_key
        self.kdniao = (kdniao_business_id, kdniao_api_key)
        self.calls: list[Call] = []
        self.registered: dict[str, set[str]] = {"kuaidi100": set(), "aftership": set(), "17track": set(), "kdniao": set()}
        self.script: dict[str, deque[Any]] = {}
        self.limits = {"aftership": 20, "17track": 3}  # the vendors that answer 429 past their documented rate
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifetime ---------------------------------------------------------------------------------------------

    def __enter__(self) -> FakeAggregators:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake aggregators did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        self._loop = loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/poll", self.kuaidi100)
        app.router.add_post("/tracking/2025-01/trackings", self.aftership)
        app.router.add_post("/track/v2.2/register", self.track17)
        app.router.add_post("/api/dist", self.kdniao_subscribe)
        self._runner = web.AppRunner(app)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()
        loop.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # -- what tests read --------------------------------------------------------------------------------------

    def calls_of(self, vendor: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.vendor == vendor]

    def max_in_window(self, vendor: str, window: float = 1.0) -> int:
        """The most requests to ``vendor`` within any ``window`` seconds (closed at both ends)."""
        return max_in_window([c.at for c in self.calls_of(vendor)], window)

    def _record(self, call: Call) -> int:
        """Record a call; returns how many calls to this vendor fell within the last second (this one included)."""
        with self._lock:
            self.calls.append(call)
            return sum(1 for c in self.calls if c.vendor == call.vendor and call.at - c.at < 1.0)

    def _scripted(self, number: str) -> Any:
        with self._lock:
            queue = self.script.get(number)
            return queue.popleft() if queue else None

    # -- kuaidi100 --------------------------------------------------------------------------------------------

    async def kuaidi100(self, request: web.Request) -> web.Response:
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode(), keep_blank_values=True).items()}
        self._record(Call("kuaidi100", time.time(), form=form))

        def answer(code: str, message: str) -> web.Response:
            return web.json_response({"result": code == "200", "returnCode": code, "message": message})

        if form.get("schema") != "json":
            return answer("700", "schema must be json")
        try:
            param = json.loads(form.get("param", ""))
        except ValueError:
            return answer("700", "param is not JSON")
        if param.get("key") != self.kuaidi100_key:
            return answer("600", "您不是合法的订阅者")
        parameters = param.get("parameters") or {}
        number, company = str(param.get("number") or ""), str(param.get("company") or "")
        forced = self._scripted(number)
        if forced is not None:
            return answer(*forced)
        if not parameters.get("callbackurl"):
            return answer("700", "回调地址为空")
        if not 6 <= len(number) <= 32:
            return answer("700", "单号长度不符")
        if company not in KUAIDI100_COMPANIES and not (company == "" and parameters.get("autoCom") == "1"):
            return answer("701", "拒绝订阅的快递公司")
        if company == "shunfeng" and not parameters.get("phone"):
            return answer("700", "顺丰单号需提供收、寄件人电话")
        key = f"{company}:{number}"
        with self._lock:
            if key in self.registered["kuaidi100"]:
                return answer("501", "重复订阅")
            self.registered["kuaidi100"].add(key)
        return answer("200", "提交成功")

    # -- AfterShip --------------------------------------------------------------------------------------------

    async def aftership(self, request: web.Request) -> web.Response:
        now = time.time()
        try:
            body = await request.json()
        except ValueError:
            body = None
        recent = self._record(Call("aftership", now, json=body, headers=dict(request.headers)))

        def answer(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
            return web.json_response({"meta": {"code": code, "message": message, "type": "BadRequest"}, "data": {}},
                                     status=status, headers=headers)

        if request.headers.get("as-api-key") != self.aftership_key:
            return answer(401, 401, "Invalid API key.")
        if recent > self.limits["aftership"]:
            return answer(429, 429, "You have exceeded the API call rate limit.", {"Retry-After": "1"})
        if not isinstance(body, dict) or not body.get("tracking_number"):
            return answer(400, 4007, "tracking_number is required.")
        number = str(body["tracking_number"])
        forced = self._scripted(number)
        if forced is not None:
            return answer(*forced)
        slug = body.get("slug")
        if slug is not None and slug not in AFTERSHIP_SLUGS:
            return answer(400, 4010, "The value of slug is invalid.")
        key = f"{slug}:{number}"
        with self._lock:
            if key in self.registered["aftership"]:
                return answer(400, 4003, "Tracking already exists.")
            self.registered["aftership"].add(key)
        return web.json_response({"meta": {"code": 201}, "data": {"tracking_number": number, "slug": slug}}, status=201)

    # -- 17TRACK ----------------------------------------------------------------------------------------------

    async def track17(self, request: web.Request) -> web.Response:
        now = time.time()
        try:
            body = await request.json()
        except ValueError:
            body = None
        recent = self._record(Call("17track", now, json=body, headers=dict(request.headers)))
        if request.headers.get("17token") != self.track17_key:
            return _track17_error(-18010002, "Invalid security key.", status=401)
        if recent > self.limits["17track"]:
            return web.Response(status=429, text="Too Many Requests")
        if not isinstance(body, list):
            return _track17_error(-18010013, "Invalid submitted data.")
        if len(body) > 40:
            return _track17_error(-18010014, "Tracking numbers exceed the 40 limit.")
        accepted, rejected = [], []
        for item in body:
            number = str(item.get("number") or "")
            forced = self._scripted(number)

            def reject(code: int, message: str, number: str = number) -> None:
                rejected.append({"number": number, "error": {"code": code, "message": message}})

            if forced is not None:
                reject(*forced)
            elif not (5 <= len(number) <= 50 and number.isalnum()):
                reject(-18010012, f"The format of data '{number}' is invalid.")
            elif number.startswith("UNDETECT") and "carrier" not in item:
                reject(-18019903, "Carrier cannot be detected.")
            elif number.startswith("SF") and not item.get("param"):
                reject(-18010020, "The 'param' field is required for this tracking. Provide phone number.")
            else:
                with self._lock:
                    if number in self.registered["17track"]:
                        reject(-18019901, f"Tracking number {number} is already registered.")
                        continue
                    self.registered["17track"].add(number)
                accepted.append({"number": number, "carrier": item.get("carrier", 0)})
        return web.json_response({"code": 0, "data": {"accepted": accepted, "rejected": rejected}})

    # -- kdniao -----------------------------------------------------------------------------------------------

    async def kdniao_subscribe(self, request: web.Request) -> web.Response:
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode(), keep_blank_values=True).items()}
        self._record(Call("kdniao", time.time(), form=form))
        business_id, api_key = self.kdniao

        def answer(success: bool, reason: str | None) -> web.Response:
            return web.json_response({"EBusinessID": form.get("EBusinessID"), "UpdateTime": time.strftime("%Y-%m-%d %H:%M:%S"),
                                      "Success": success, "Reason": reason})

        data = form.get("RequestData", "")
        expected = base64.b64encode(hashlib.md5((data + api_key).encode()).hexdigest().encode()).decode()
        if form.get("EBusinessID") != business_id or form.get("DataSign") != expected:
            return answer(False, "用户未认证或签名错误")
        if form.get("RequestType") != "8008" or form.get("DataType") != "2":
            return answer(False, "RequestType 或 DataType 错误")
        doc = json.loads(data)
        number = str(doc.get("LogisticCode") or "")
        forced = self._scripted(number)
        if forced is not None:
            return answer(*forced)
        if not doc.get("ShipperCode"):
            return answer(False, "快递公司编码不能为空")
        if doc["ShipperCode"] == "SF" and not doc.get("CustomerName"):
            return answer(False, "ShipperCode为SF时CustomerName必填")
        with self._lock:
            self.registered["kdniao"].add(f"{doc['ShipperCode']}:{number}")
        return answer(True, None)


def _track17_error(code: int, message: str, status: int = 200) -> web.Response:
    """17TRACK's answer to a request refused whole: the code at the top and in ``data.errors``."""
    return web.json_response({"code": code, "data": {"errors": [{"code": code, "message": message}]}}, status=status)
