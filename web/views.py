"""What every view of the worker's web server shares: routing a path to a handler, the caller's token, and
request parsing that names the field a malformed query or body got wrong (422)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson
from faust import web

# (view, request, **path parameters) -> response: the view builds responses (json, bytes).
Handler = Callable[..., Awaitable[web.Response]]


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


class BadRequest(ValueError):
    """A malformed query or body (422): ``field`` names where, ``problem`` what was wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def token_of(request: web.Request) -> str | None:
    """The caller's API token: ``Authorization: Bearer <token>``, else the queue page's cookie."""
    header = request.headers.get("Authorization", "")  # type: ignore[attr-defined]
    if header.startswith("Bearer "):
        return str(header[7:].strip())
    cookie = request.cookies.get("pw_token")  # type: ignore[attr-defined]
    return str(cookie) if cookie else None


def int_param(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(name, f"expected a whole number, got {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(name, f"must be between {lo} and {hi}, got {value}")
    return value


def choice(query: Any, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    raw = query.get(name) or default
    if raw is not None and raw not in allowed:
        raise BadRequest(name, f"unknown value {raw[:30]!r}; expected one of {', '.join(allowed)}")
    return raw  # type: ignore[no-any-return]


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()  # type: ignore[attr-defined]
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("$", "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("$", "body must be a JSON object")
    return body


def text(body: dict[str, Any], name: str, max_len: int, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(name, "is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(name, "must be a non-empty string" if required else "must be a string")
    if len(value) > max_len:
        raise BadRequest(name, f"is longer than {max_len} characters")
    return value
