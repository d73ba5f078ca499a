"""``python app.py queue``: the day's queue in the terminal, or as CSV for Excel."""

from __future__ import annotations

import time
from pathlib import Path

from redis.exceptions import RedisError

from config import Settings, without_secrets
from domain.vocabulary import STATUSES, china_date, china_day_bounds

from .store import IssueStore
from .views import parse_day, table, to_csv


async def print_queue(
    settings: Settings, redis_url: str, where: str, *, shop: str | None, day: str | None, kind: str | None,
    severity: str | None, status: str | None, order: str, csv_path: str | None, lang: str,
) -> int:
    """Print (or write as CSV) the queue of ``day`` from the Redis at ``redis_url`` (``where``: where that
    URL came from, named in the one-line error when it cannot be reached). Returns the exit code."""
    try:
        the_day = parse_day(day) if day else china_date(time.time())
    except ValueError as exc:
        return _fail(f"--date: {exc}")
    statuses = tuple(s for s in (status or "").split(",") if s) or None
    for s in statuses or ():
        if s not in STATUSES:
            return _fail(f"--status: unknown status {s!r}; expected one of {', '.join(STATUSES)}")
    if lang not in ("zh", "en"):
        return _fail("--lang: expected zh or en")
    store = IssueStore.from_url(redis_url)
    try:
        shops = [shop] if shop else await store.shops()
        result = await store.query(
            shops=shops, statuses=statuses, day=china_day_bounds(the_day), kind=kind, severity=severity,
            order=order, limit=1_000_000, stories=bool(csv_path),
        )
    except (RedisError, OSError) as exc:
        return _fail(f"cannot read the queue from Redis at {without_secrets(redis_url)} (from {where}): "
                     f"{type(exc).__name__}: {without_secrets(str(exc)).rstrip('.')}. Is `make run` (or your Redis) running? "
                     "Set PARCELWATCH_REDIS_URL to point at another.")
    finally:
        await store.redis.aclose()
    if csv_path:
        Path(csv_path).write_bytes(to_csv(result.issues, settings, lang))
        print(f"已导出 {result.total} 条问题到 {csv_path}" if lang == "zh" else f"wrote {result.total} issues to {csv_path}")
    else:
        if lang == "zh":
            print(f"{the_day.isoformat()}  {'、'.join(shops) or '（还没有店铺）'}  共 {result.total} 条问题  (Redis {without_secrets(redis_url)})")
        else:
            print(f"{the_day.isoformat()}  {', '.join(shops) or '(no shops yet)'}  {result.total} issues  (Redis {without_secrets(redis_url)})")
        print(table(result.issues, settings, lang))
    return 0


def _fail(message: str) -> int:
    import sys

    print(f"queue: {message}", file=sys.stderr)
    return 2


async def manage_staff(
    redis_url: str, where: str, action: str, login: str | None, *, name: str | None, shops: str | None, role: str,
    password: str | None,
) -> int:
    """``python app.py staff add|list|remove|password``: staff accounts in the queue's Redis. ``password``:
    the new password (None: asked for on the terminal). Returns the exit code."""
    from .people import AccountError, People

    if action not in ("add", "list", "remove", "password"):
        return _fail_staff("the action is one of add, list, remove, password")
    if action != "list" and not login:
        return _fail_staff(f"{action} needs the account's login")
    store = IssueStore.from_url(redis_url)
    people = People(store.redis, store.prefix)
    try:
        if action == "list":
            for a in await people.all():
                print(f"{a.login}\t{a.name}\t{a.role}\t{','.join(a.shops)}")
            return 0
        assert login is not None
        if action == "remove":
            print(f"removed {login}" if await people.remove(login) else f"no account {login}")
            return 0
        secret = password if password is not None else _ask_password()
        if action == "password":
            await people.set_password(login, secret)
            print(f"new password set for {login}; their sessions are ended")
            return 0
        account = await people.add(login, name or login, (shops or "").split(","), role, secret)
        print(f"account {account.login} ({account.name}, {account.role}) for {', '.join(account.shops)}")
        return 0
    except AccountError as exc:
        return _fail_staff(str(exc))
    except (RedisError, OSError) as exc:
        return _fail_staff(f"cannot reach Redis at {without_secrets(redis_url)} (from {where}): "
                           f"{type(exc).__name__}: {without_secrets(str(exc))}")
    finally:
        await store.redis.aclose()


def _ask_password() -> str:
    import getpass

    from .people import AccountError

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("password: the two entries differ")
    return first


def _fail_staff(message: str) -> int:
    import sys

    print(f"staff: {message}", file=sys.stderr)
    return 2
