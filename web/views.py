"""What every view of the worker's web server shares: routing a path to a handler, request parsing that
names the field a malformed query or body got wrong (422), JSON answers with their headers, and errors in
the caller's language (``lang=``, Chinese by default), including a Redis that does not answer (503, fast).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson
from faust import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from issue_queue.access import AccessDenied
from issue_queue.texts import error_text

from .session import Forbidden, Unauthorized

# (view, request, **path parameters) -> response: the view builds responses (json, bytes).
Handler = Callable[..., Awaitable[web.Response]]

# Every JSON or CSV answer: never sniffed as something else, never kept in a cache (they hold a shop's queue).
DATA_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
# How long a view waits for Redis before answering 503: a page's reads take milliseconds, so a Redis that
# has not answered by then is hung, and staff should hear so at once (the client's own timeout is 5 s).
REDIS_WAIT_SECONDS = 1.5


def route(app: faust.App, path: str, name: str, *, get: Handler | None = None, post: Handler | None = None) -> None:
    """Serve ``path`` with these handlers (each ``async (view, request, **path parameters)``)."""
    methods: dict[str, Any] = {}
    if get is not None:
        methods["get"] = _method(get)
    if post is not None:
        methods["post"] = _method(post)
    view = type(name, (web.View,), methods)
    app.page(path, name=name)(view)


def _method(handler: Handler) -> Callable[..., Awaitable[web.Response]]:
    async def method(self: web.View, request: web.Request, **params: Any) -> web.Response:
        return await handler(self, request, **params)

    return method


def lang_of(request: web.Request) -> str:
    """The language a caller reads: ``lang=en`` for English, Chinese otherwise."""
    return "en" if request.query.get("lang") == "en" else "zh"  # type: ignore[attr-defined]


def reply(view: web.View, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with the data headers."""
    return view.json(body, status=status, headers={**DATA_HEADERS, **(headers or {})})


class BadRequest(ValueError):
    """A malformed query or body (422): ``field`` names where, ``problem`` what was wrong (``problem_zh`` the
    same in Chinese)."""

    def __init__(self, field: str, problem: str, problem_zh: str | None = None) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.problem_zh = problem_zh or problem


class QueueUnavailable(Exception):
    """Redis did not answer in time, or refused: 503 naming the cause (``timeout``, ``down`` or ``error``)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


# Field names as staff read them, for 422 messages.
FIELD_NAMES = {
    "limit": "每页条数", "offset": "起始位置", "date": "日期", "kind": "问题类型", "severity": "严重程度",
    "status": "状态", "order": "排序", "resolution_code": "处理结果", "note": "备注", "assignee": "处理人",
    "ids": "问题编号", "$": "请求内容", "lang": "语言", "q": "搜索内容", "shop": "店铺", "platform": "平台",
    "carrier": "快递公司", "days": "天数", "by": "处理人",
}


def failure(view: web.View, exc: Exception, lang: str) -> web.Response:
    """The JSON answer for an error a handler raised, in ``lang``: ``error`` to show, ``code`` for tools."""
    if isinstance(exc, Unauthorized):
        return reply(view, {"error": error_text(exc.code, lang), "code": exc.code}, 401, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, AccessDenied):  # (the API token's own check)
        return reply(view, {"error": error_text("token", lang), "code": "token"}, 401, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Forbidden):
        return reply(view, {"error": error_text(exc.code, lang), "code": exc.code}, 403)
    if isinstance(exc, BadRequest):
        if lang == "zh":
            text = error_text("bad_field", "zh", field=FIELD_NAMES.get(exc.field, exc.field), problem=exc.problem_zh)
        else:
            text = str(exc)
        return reply(view, {"error": text, "field": exc.field, "code": "bad_field"}, 422)
    if isinstance(exc, QueueUnavailable):
        cause = error_text(f"redis_{exc.cause}", lang)
        return reply(view, {"error": error_text("redis", lang, cause=cause), "code": "redis_unavailable", "cause": exc.cause},
                     503, {"Retry-After": "5"})
    raise exc


def redis_cause(exc: BaseException) -> str | None:
    """Why Redis failed a request (None: not a Redis failure)."""
    if isinstance(exc, (asyncio.TimeoutError, RedisTimeoutError)):
        return "timeout"
    if isinstance(exc, (RedisConnectionError, ConnectionError)):
        return "down"
    if isinstance(exc, (RedisError, OSError)):
        return "error"
    return None


def guarded(handler: Handler, wait: float = REDIS_WAIT_SECONDS) -> Handler:
    """``handler`` answering its errors as JSON in the caller's language, and a Redis that does not answer
    within ``wait`` seconds (or refuses) as 503 naming the cause, instead of a bare 500 after the client's
    own timeout."""

    @functools.wraps(handler)
    async def run(view: web.View, request: web.Request, **params: Any) -> web.Response:
        lang = lang_of(request)
        try:
            return await asyncio.wait_for(handler(view, request, **params), wait)
        except (Unauthorized, Forbidden, BadRequest, AccessDenied) as exc:
            return failure(view, exc, lang)
        except Exception as exc:
            cause = redis_cause(exc)
            if cause is None:
                raise
            return failure(view, QueueUnavailable(cause), lang)

    return run


def int_param(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(name, f"expected a whole number, got {raw[:20]!r}", f"应为整数，收到 {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(name, f"must be between {lo} and {hi}, got {value}", f"应在 {lo} 到 {hi} 之间，收到 {value}")
    return value


def choice(query: Any, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    raw = query.get(name) or default
    if raw is not None and raw not in allowed:
        raise BadRequest(name, f"unknown value {raw[:30]!r}; expected one of {', '.join(allowed)}",
                         f"不认识 {raw[:30]!r}，可选：{'、'.join(allowed)}")
    return raw  # type: ignore[no-any-return]


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()  # type: ignore[attr-defined]
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("$", "body is not valid JSON", "不是有效的 JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("$", "body must be a JSON object", "应为 JSON 对象")
    return body


def text(body: dict[str, Any], name: str, max_len: int, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(name, "is required", "不能为空")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(name, "must be a non-empty string" if required else "must be a string",
                         "应为非空文字" if required else "应为文字")
    if len(value) > max_len:
        raise BadRequest(name, f"is longer than {max_len} characters", f"超过 {max_len} 个字")
    return value
