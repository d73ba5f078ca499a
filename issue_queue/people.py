"""Staff accounts and their sign-in sessions, in Redis: one person per login.

An account is a person (login, display name), the shops they work and a role (``agent`` works issues,
``viewer`` only reads). Passwords are kept as scrypt hashes, never as given. A session is a random id the
browser holds in an HttpOnly cookie; Redis keeps only its SHA-256, so a copy of Redis signs nobody in.
Sessions end after ``IDLE_SECONDS`` without use, after ``MAX_SECONDS`` whatever happens, or at sign-out.

Layout (prefix ``pw:``): ``account:{login}`` HASH (name, shops JSON, role, password, created_at, seen_at);
``accounts`` SET of logins; ``session:{sha256(id)}`` HASH (login, csrf, created, rotated), expiring when idle;
``signin_fail:{login}`` sign-in attempts since the last one that succeeded, kept ``LOCK_SECONDS``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

ROLES = {"agent": ("客服", "Agent"), "viewer": ("只读", "Viewer")}
LOGIN = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,31}$")
IDLE_SECONDS = 12 * 3600
MAX_SECONDS = 7 * 86400
# A page loaded after this long gets a new session id (the old one answers a little longer, for requests
# already on their way).
ROTATE_SECONDS = 3600
ROTATED_GRACE_SECONDS = 60
MAX_FAILED_SIGN_INS = 10
LOCK_SECONDS = 900
# A sign-in attempt is counted before its password is checked (about 50 ms of hashing), in one step with the
# check that the login is not locked: counted after, a burst of guesses sent at once all passed the check.
# A locked attempt is not counted (it does not stretch the lock). Returns the attempt's number, or -1: locked.
_TAKE_ATTEMPT = """
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) then return -1 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return failures + 1
"""
# scrypt's cost: about 16 MiB and a few tens of milliseconds per check.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8


class AccountError(ValueError):
    """An account that cannot be created as asked (bad login, role, shops or password)."""


@dataclass(frozen=True, slots=True)
class Account:
    login: str
    name: str
    shops: list[str]
    role: str

    @property
    def can_write(self) -> bool:
        return self.role == "agent"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    account: Account
    csrf: str
    created: float
    rotated: float


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@functools.cache
def _nobody() -> str:
    """A password checked for a login that does not exist, so that a wrong login costs what a wrong password
    does. Made at the first such sign-in, not at import: a scrypt run is about 50 ms of CPU, which every
    process importing the web package (the worker, each CLI command) paid."""
    return hash_password(secrets.token_urlsafe(16))


def _check_or_nobody(password: str, stored: str) -> bool:
    return check_password(password, stored or _nobody())


class People:
    """Accounts and sessions in the queue's Redis."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "pw:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._any_cached: tuple[float, bool] = (0.0, False)
        self._take_attempt = redis.register_script(_TAKE_ATTEMPT)

    # -- accounts -------------------------------------------------------------------------------------------

    async def add(self, login: str, name: str, shops: list[str], role: str, password: str) -> Account:
        """Create or replace an account (replaced, its sessions end: its password is new)."""
        if not LOGIN.match(login):
            raise AccountError("login: 2-32 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")
        if role not in ROLES:
            raise AccountError(f"role: expected one of {', '.join(ROLES)}")
        shops = [s.strip() for s in shops if s.strip()]
        if not shops:
            raise AccountError("shops: at least one shop (or * for every shop)")
        if not name.strip():
            raise AccountError("name: the person's name as colleagues know it")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password: at least {MIN_PASSWORD} characters")
        hashed = await asyncio.to_thread(hash_password, password)
        key = f"{self.prefix}account:{login}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"name": name.strip(), "shops": orjson.dumps(shops), "role": role, "password": hashed,
                                "created_at": repr(time.time())})
        pipe.sadd(f"{self.prefix}accounts", login)
        _, added = await pipe.execute()
        if not added:
            await self.end_sessions_of(login)
        self._any_cached = (0.0, False)
        return Account(login, name.strip(), shops, role)

    async def set_password(self, login: str, password: str) -> None:
        if await self.get(login) is None:
            raise AccountError(f"no account {login!r}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password: at least {MIN_PASSWORD} characters")
        await self.redis.hset(f"{self.prefix}account:{login}", "password", await asyncio.to_thread(hash_password, password))
        await self.end_sessions_of(login)

    async def remove(self, login: str) -> bool:
        await self.end_sessions_of(login)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(f"{self.prefix}account:{login}")
        pipe.srem(f"{self.prefix}accounts", login)
        removed, _ = await pipe.execute()
        self._any_cached = (0.0, False)
        return bool(removed)

    async def get(self, login: str) -> Account | None:
        return _account(login, await self.redis.hgetall(f"{self.prefix}account:{login}"))

    async def all(self) -> list[Account]:
        logins = sorted(_text(x) for x in await self.redis.smembers(f"{self.prefix}accounts"))
        found = [await self.get(login) for login in logins]
        return [a for a in found if a is not None]

    async def any(self) -> bool:
        """Whether any account exists (cached for a few seconds: asked by every anonymous request)."""
        at, known = self._any_cached
        if time.monotonic() - at < 10:
            return known
        known = bool(await self.redis.scard(f"{self.prefix}accounts"))
        self._any_cached = (time.monotonic(), known)
        return known

    async def authenticate(self, login: str, password: str) -> Account | str:
        """The account, or why not: ``bad_login`` or ``locked`` (too many failures in a row)."""
        login = login.strip().lower()
        fail_key = f"{self.prefix}signin_fail:{login}"
        if int(await self._take_attempt(keys=[fail_key], args=[MAX_FAILED_SIGN_INS, LOCK_SECONDS])) < 0:
            return "locked"
        raw = await self.redis.hgetall(f"{self.prefix}account:{login}") if LOGIN.match(login) else {}
        ok = await asyncio.to_thread(_check_or_nobody, password, _text(raw.get(b"password", b"")))
        account = _account(login, raw) if ok else None
        if account is None:
            return "bad_login"  # (counted already)
        await self.redis.delete(fail_key)
        return account

    async def previous_visit(self, login: str, now: float) -> float:
        """When the person last opened the queue (0: never), and now is the new last visit."""
        key = f"{self.prefix}account:{login}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(key, "seen_at")
        pipe.hset(key, "seen_at", repr(now))
        before, _ = await pipe.execute()
        return float(before) if before else 0.0

    # -- sessions ---------------------------------------------------------------------------------------------

    async def start_session(self, account: Account, now: float) -> Session:
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        await self._store(session_id, account.login, csrf, now, now)
        return Session(session_id, account, csrf, now, now)

    async def _store(self, session_id: str, login: str, csrf: str, created: float, rotated: float) -> None:
        key = f"{self.prefix}session:{_digest(session_id)}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"login": login, "csrf": csrf, "created": repr(created), "rotated": repr(rotated)})
        pipe.expire(key, IDLE_SECONDS)
        pipe.sadd(f"{self.prefix}sessions_of:{login}", _digest(session_id))
        pipe.expire(f"{self.prefix}sessions_of:{login}", MAX_SECONDS)
        await pipe.execute()

    async def session(self, session_id: str | None, now: float) -> Session | None:
        """The live session with this id (its idle timer restarted), or None."""
        if not session_id or len(session_id) > 100:
            return None
        key = f"{self.prefix}session:{_digest(session_id)}"
        raw = await self.redis.hgetall(key)
        if not raw:
            return None
        record = {_text(k): _text(v) for k, v in raw.items()}
        created = float(record.get("created") or 0)
        if now - created > MAX_SECONDS:
            await self.redis.delete(key)
            return None
        account = await self.get(record.get("login", ""))
        if account is None:
            await self.redis.delete(key)
            return None
        if record.get("retired") != "1":
            await self.redis.expire(key, IDLE_SECONDS)
        return Session(session_id, account, record.get("csrf", ""), created, float(record.get("rotated") or created))

    async def rotate(self, session: Session, now: float) -> Session:
        """A new id for the same session (same CSRF token); the old id answers ``ROTATED_GRACE_SECONDS`` more."""
        new_id = secrets.token_urlsafe(32)
        await self._store(new_id, session.account.login, session.csrf, session.created, now)
        old = f"{self.prefix}session:{_digest(session.id)}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(old, "retired", "1")
        pipe.expire(old, ROTATED_GRACE_SECONDS)
        await pipe.execute()
        return Session(new_id, session.account, session.csrf, session.created, now)

    async def end_session(self, session_id: str) -> None:
        await self.redis.delete(f"{self.prefix}session:{_digest(session_id)}")

    async def end_sessions_of(self, login: str) -> None:
        members = await self.redis.smembers(f"{self.prefix}sessions_of:{login}")
        keys = [f"{self.prefix}session:{_text(m)}" for m in members]
        await self.redis.delete(f"{self.prefix}sessions_of:{login}", *keys)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _account(login: str, raw: dict[Any, Any]) -> Account | None:
    if not raw:
        return None
    record = {_text(k): _text(v) for k, v in raw.items()}
    try:
        shops = [str(s) for s in orjson.loads(record.get("shops") or "[]")]
    except orjson.JSONDecodeError:
        shops = []
    role = record.get("role") or ""
    return Account(login, record.get("name") or login, shops, role if role in ROLES else "viewer")
