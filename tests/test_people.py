"""Staff accounts and sessions in a real Redis: hashed passwords, one person per login, sessions that end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from devtools.redis_server import RedisServer
from issue_queue import people as p
from issue_queue.people import Account, AccountError, People, check_password, hash_password
from issue_queue.store import IssueStore

T = TypeVar("T")
NOW = 1_800_000_000.0


def run(redis_server: RedisServer, fn: Callable[[People, Any], Awaitable[T]]) -> T:
    async def go() -> T:
        store = IssueStore.from_url(redis_server.url)
        try:
            return await fn(People(store.redis, store.prefix), store.redis)
        finally:
            await store.redis.aclose()

    return asyncio.run(go())


def test_passwords_are_kept_as_salted_hashes() -> None:
    stored = hash_password("a-long-password")
    assert stored.startswith("scrypt$") and "a-long-password" not in stored
    assert stored != hash_password("a-long-password")  # salted
    assert check_password("a-long-password", stored) and not check_password("another-password", stored)
    assert not check_password("x", "md5$abc") and not check_password("x", "garbage")


@pytest.mark.integration
def test_accounts_sign_in_and_refuse_what_is_wrong(redis_server: RedisServer) -> None:
    async def go(people: People, redis: Any) -> list[Any]:
        await people.add("xiaoli", "小李", ["shop-a", "shop-b"], "agent", "a-long-password")
        with pytest.raises(AccountError, match="login"):
            await people.add("Xiao Li", "小李", ["shop-a"], "agent", "a-long-password")
        with pytest.raises(AccountError, match="role"):
            await people.add("xiaowang", "小王", ["shop-a"], "boss", "a-long-password")
        with pytest.raises(AccountError, match="password"):
            await people.add("xiaowang", "小王", ["shop-a"], "agent", "short")
        raw = await redis.hgetall("pw:account:xiaoli")
        return [await people.authenticate("xiaoli", "a-long-password"), await people.authenticate("XiaoLi ", "a-long-password"),
                await people.authenticate("xiaoli", "wrong-password"), await people.authenticate("nobody", "a-long-password"),
                raw, await people.all()]

    ok, case, wrong, nobody, raw, everyone = run(redis_server, go)
    assert ok == case == Account("xiaoli", "小李", ["shop-a", "shop-b"], "agent")
    assert wrong == nobody == "bad_login"
    assert b"a-long-password" not in b"".join(raw.values())
    assert [a.login for a in everyone] == ["xiaoli"]


@pytest.mark.integration
def test_too_many_failed_sign_ins_lock_the_login_for_a_while(redis_server: RedisServer) -> None:
    async def go(people: People, redis: Any) -> tuple[list[Any], Any, int]:
        await people.add("xiaoli", "小李", ["shop-a"], "agent", "a-long-password")
        answers = [await people.authenticate("xiaoli", "wrong") for _ in range(p.MAX_FAILED_SIGN_INS)]
        return answers, await people.authenticate("xiaoli", "a-long-password"), await redis.ttl("pw:signin_fail:xiaoli")

    answers, after, ttl = run(redis_server, go)
    assert set(answers) == {"bad_login"} and after == "locked" and 0 < ttl <= p.LOCK_SECONDS


@pytest.mark.integration
def test_a_burst_of_guesses_sent_at_once_is_locked_out_like_guesses_in_a_row(redis_server: RedisServer) -> None:
    """Each attempt is counted before its password is checked: of forty wrong guesses sent at once, ten are
    checked and thirty locked out, and the right password after them is locked out too."""
    async def go(people: People, redis: Any) -> tuple[list[Any], Any]:
        await people.add("xiaozhao", "小赵", ["shop-a"], "agent", "a-long-password")
        answers = await asyncio.gather(*(people.authenticate("xiaozhao", f"guess-{i}") for i in range(40)))
        return list(answers), await people.authenticate("xiaozhao", "a-long-password")

    answers, after = run(redis_server, go)
    assert (answers.count("bad_login"), answers.count("locked"), after) == (p.MAX_FAILED_SIGN_INS, 30, "locked")


@pytest.mark.integration
def test_an_account_added_again_ends_its_sessions(redis_server: RedisServer) -> None:
    """``staff add`` of an existing login replaces its password (a leaked one reset): a session of the
    old password must not outlive it, as with ``staff password``."""
    async def go(people: People, redis: Any) -> tuple[Any, Any]:
        account = await people.add("xiaoqian", "小钱", ["shop-a"], "agent", "a-long-password")
        s = await people.start_session(account, NOW)
        other = await people.start_session(await people.add("xiaosun", "小孙", ["shop-a"], "agent", "a-long-password"), NOW)
        await people.add("xiaoqian", "小钱", ["shop-a"], "agent", "another-long-password")
        return await people.session(s.id, NOW), await people.session(other.id, NOW)

    replaced, untouched = run(redis_server, go)
    assert replaced is None and untouched is not None


@pytest.mark.integration
def test_sessions_rotate_end_and_follow_their_account(redis_server: RedisServer) -> None:
    async def go(people: People, redis: Any) -> dict[str, Any]:
        account = await people.add("xiaoli", "小李", ["shop-a"], "agent", "a-long-password")
        s = await people.start_session(account, NOW)
        out: dict[str, Any] = {"kept": [k async for k in redis.scan_iter("pw:session:*")]}
        out["found"] = await people.session(s.id, NOW + 60)
        rotated = await people.rotate(s, NOW + p.ROTATE_SECONDS)
        out["rotated"] = rotated
        out["old_ttl"] = await redis.ttl(f"pw:session:{p._digest(s.id)}")
        out["too_old"] = await people.session(rotated.id, NOW + p.MAX_SECONDS + 1)
        again = await people.start_session(account, NOW)
        await people.end_session(again.id)
        out["ended"] = await people.session(again.id, NOW)
        third = await people.start_session(account, NOW)
        await people.set_password("xiaoli", "another-long-password")  # a new password ends every session
        out["after_password"] = await people.session(third.id, NOW)
        fourth = await people.start_session(account, NOW)
        await people.remove("xiaoli")
        out["after_removal"] = await people.session(fourth.id, NOW)
        out["first_visit"] = await people.previous_visit("someone", NOW)
        out["second_visit"] = await people.previous_visit("someone", NOW + 5)
        return out

    out = run(redis_server, go)
    assert len(out["kept"]) == 1 and b"pw:session:" in out["kept"][0]
    found = out["found"]
    assert found.account.login == "xiaoli" and len(found.csrf) >= 30
    assert found.id.encode() not in out["kept"][0]  # Redis keeps a hash of the id, never the id
    assert out["rotated"].id != found.id and out["rotated"].csrf == found.csrf
    assert 0 < out["old_ttl"] <= p.ROTATED_GRACE_SECONDS
    assert out["too_old"] is None and out["ended"] is None and out["after_password"] is None and out["after_removal"] is None
    assert (out["first_visit"], out["second_visit"]) == (0.0, NOW)
