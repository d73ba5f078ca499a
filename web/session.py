"""Who is calling: a person signed in to a server-side session (the queue page), or a machine with an API
token (``access.tokens``); and the sign-in, sign-out and CSRF rules of the page.

- The session id lives in an HttpOnly cookie, ``Secure`` when the page is served over HTTPS (directly or
  behind a proxy that says ``X-Forwarded-Proto: https``), ``SameSite=Lax`` so that a link from a chat
  alert opens the queue signed in. Sign-in gives a new id (nothing chosen before sign-in survives it), a
  page load after ``ROTATE_SECONDS`` another; sign-out deletes the session in Redis, not just the cookie.
- Every state-changing request a session makes carries its CSRF token (``X-CSRF-Token``, or the form's
  ``csrf`` field) and, when the browser sends one, an ``Origin`` of this server. The sign-in form has its
  own token, in a cookie and the form (double submit), since there is no session yet.
- A token never touches a cookie and needs no CSRF token: a browser never sends it by itself.
- History records the signed-in person; a machine's history entry names its token (``by`` in its body is
  kept as whom it says it acts for, unverified).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from faust import web

from issue_queue.access import Access
from issue_queue.people import ROTATE_SECONDS, Account, People, Session

SESSION_COOKIE = "pw_session"
SIGNIN_COOKIE = "pw_signin"


class Unauthorized(Exception):
    """401: no session or token, or one that is not (or no longer) valid. ``code`` names which."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Forbidden(Exception):
    """403: a valid caller that may not do this (a read-only account, a missing or wrong CSRF token)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from and what they may see."""

    shops: list[str]
    account: Account | None = None
    session: Session | None = None
    token: str | None = None

    @property
    def by(self) -> str:
        """What the issue history records as the actor."""
        if self.account is not None:
            return self.account.name
        return Access.label(self.token or "")

    def actor(self) -> dict[str, Any]:
        """The history fields of a staff action by this caller."""
        if self.account is not None:
            return {"by": self.account.name, "by_login": self.account.login}
        return {"by": self.by}


def is_https(request: web.Request) -> bool:
    if request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https":  # type: ignore[attr-defined]
        return True
    return bool(getattr(request, "secure", False))


def session_id_of(request: web.Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)  # type: ignore[attr-defined]
    return str(raw) if raw else None


def bearer_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")  # type: ignore[attr-defined]
    return str(header[7:].strip()) if header.startswith("Bearer ") else None


def same_origin(request: web.Request) -> bool:
    """False when the browser names another site as the origin of a state-changing request."""
    origin = request.headers.get("Origin")  # type: ignore[attr-defined]
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("X-Forwarded-Host") or request.headers.get("Host", "")  # type: ignore[attr-defined]
    return urlsplit(origin).netloc == host.split(",")[0].strip()


class Callers:
    """Resolves the caller of a request: a token (API), else the session cookie (the page)."""

    def __init__(self, access: Access, people: People) -> None:
        self.access = access
        self.people = people

    async def resolve(self, request: web.Request, *, write: bool = False, form_csrf: str | None = None) -> Caller:
        token = bearer_of(request)
        if token is not None:
            shops = self.access.shops_for(token)
            if shops is None:
                raise Unauthorized("token")
            return Caller(shops, token=token)
        session = await self.people.session(session_id_of(request), time.time())
        if session is not None:
            if write:
                sent = request.headers.get("X-CSRF-Token") or form_csrf or ""  # type: ignore[attr-defined]
                if not hmac.compare_digest(sent.encode(), session.csrf.encode()) or not same_origin(request):
                    raise Forbidden("csrf")
                if not session.account.can_write:
                    raise Forbidden("read_only")
            return Caller(session.account.shops, account=session.account, session=session)
        if session_id_of(request):
            raise Unauthorized("session_expired")
        if write:
            raise Unauthorized("token" if self.access.enabled else "no_tokens")
        # A developer's loopback: no tokens and no accounts anywhere, so reads are open.
        if not self.access.enabled and not await self.people.any():
            return Caller(["*"])
        raise Unauthorized("sign_in")

    async def rotate_if_due(self, session: Session) -> Session | None:
        """A new id for a session whose id is older than ``ROTATE_SECONDS`` (None: not due)."""
        now = time.time()
        if now - session.rotated < ROTATE_SECONDS:
            return None
        return await self.people.rotate(session, now)


def set_session_cookie(response: web.Response, request: web.Request, session_id: str) -> None:
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="Lax", secure=is_https(request),  # type: ignore[attr-defined]
                        path="/")


def clear_session_cookie(response: web.Response, request: web.Request) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")  # type: ignore[attr-defined]


def new_signin_token(request: web.Request | None = None) -> str:
    """A sign-in form's CSRF token: in the form and in a cookie (``set_signin_cookie``), which must match
    (double submit: a page elsewhere can read neither). The browser's current one is kept, so that a
    refused request from elsewhere does not spoil the form the person has open."""
    current = str(request.cookies.get(SIGNIN_COOKIE) or "") if request is not None else ""  # type: ignore[attr-defined]
    if len(current) == 32 and all(c.isalnum() or c in "-_" for c in current):
        return current
    return secrets.token_urlsafe(24)


def set_signin_cookie(response: web.Response, request: web.Request, token: str) -> None:
    response.set_cookie(SIGNIN_COOKIE, token, httponly=True, samesite="Strict", secure=is_https(request),  # type: ignore[attr-defined]
                        path="/queue", max_age=3600)


def signin_token_ok(request: web.Request, sent: str | None) -> bool:
    cookie = request.cookies.get(SIGNIN_COOKIE) or ""  # type: ignore[attr-defined]
    return bool(cookie) and hmac.compare_digest(str(cookie).encode(), (sent or "").encode()) and same_origin(request)
