"""People's console accounts: password rules (NIST SP 800-63B), argon2id, the TOTP second
factor, lock-out, server-side sessions, and every change recorded naming who made it."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.identity import accounts, passwords, totp, websessions
from gateway.identity.accounts import AccountError, Locked, LockoutPolicy, PasswordRejected
from gateway.store.db import create_engine, session_factory
from gateway.store.models import Account, AdminEvent, ConsoleSession, utcnow

from .conftest import lgsp

GOOD = "sông Hồng mùa nước nổi"
POLICY = LockoutPolicy(failures=3, seconds=600)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def _events(db: async_sessionmaker[AsyncSession]) -> list[AdminEvent]:
    async with db() as s:
        return list((await s.scalars(select(AdminEvent).order_by(AdminEvent.id))).all())


async def _create(db: async_sessionmaker[AsyncSession], name: str = "nva") -> accounts.Issued:
    async with db() as s, s.begin():
        return await accounts.create_account(
            s, name=name, display_name="Nguyễn Văn A", roles=["administrator"], actor="cli:root@h"
        )


# -- password rules -------------------------------------------------------------------------


def test_breached_and_short_passwords_are_refused_and_no_composition_rule_applies() -> None:
    assert passwords.password_problems("1qaz2wsx3edc4rfv") == ["password.breached"]
    assert passwords.password_problems("Qwerty123456") == ["password.breached"]
    assert passwords.password_problems("Ab1!") == ["password.too_short"]
    assert passwords.password_problems("x" * 200) == ["password.too_long", "password.repetitive"]
    assert "password.contains_name" in passwords.password_problems("nva-is-my-name", account="nva")
    # Lowercase words and spaces only, 64 characters, Vietnamese: all fine.
    assert passwords.password_problems(GOOD) == []
    assert passwords.password_problems(("lúa chín vàng " * 5)[:64]) == []


def test_passwords_are_stored_as_argon2id_and_checked_after_normalisation() -> None:
    stored = passwords.hash_password("Cà phê sữa đá buổi sáng")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # OWASP's setting
    assert "Cà phê" not in stored
    # The same words typed as decomposed Unicode (a Mac keyboard) still match (NFKC).
    typed = unicodedata.normalize("NFD", "Cà phê sữa đá buổi sáng")
    assert passwords.verify_password(stored, typed)
    assert not passwords.verify_password(stored, "Ca phe sua da buoi sang")


# -- accounts and their record --------------------------------------------------------------


async def test_account_changes_are_recorded_naming_who_made_them(
    db: async_sessionmaker[AsyncSession],
) -> None:
    issued = await _create(db)
    assert issued.uri.startswith("otpauth://totp/LGSP:nva?secret=")
    async with db() as s, s.begin():
        with pytest.raises(AccountError):
            await accounts.create_account(
                s, name="nva", display_name="again", roles=["observer"], actor="cli:root@h"
            )
        with pytest.raises(AccountError):
            await accounts.set_roles(s, "nva", ["audit:unmask"], actor="person:boss")
        await accounts.set_roles(s, "nva", ["auditor", "audit:unmask"], actor="person:boss")
        await accounts.reset_account(s, "nva", actor="person:boss", comment="lost phone")
        await accounts.disable_account(s, "nva", actor="person:boss")
    seen = [(e.actor, e.action, e.target) for e in await _events(db)]
    assert seen == [
        ("cli:root@h", "account.create", "person:nva"),
        ("person:boss", "account.roles", "person:nva"),
        ("person:boss", "account.reset", "person:nva"),
        ("person:boss", "account.disable", "person:nva"),
    ]
    roles = (await _events(db))[1]
    assert roles.before is not None and roles.before["roles"] == ["administrator"]
    assert roles.after is not None and roles.after["roles"] == ["audit:unmask", "auditor"]
    # No event shows a hash or a secret.
    assert issued.totp_secret not in str([(e.before, e.after) for e in await _events(db)])


async def test_a_chosen_password_must_pass_the_rules(db: async_sessionmaker[AsyncSession]) -> None:
    async with db() as s, s.begin():
        with pytest.raises(PasswordRejected) as e:
            await accounts.create_account(
                s, name="ttb", display_name="B", roles=["auditor"], actor="t", password="password1"
            )
    assert e.value.problems == ["password.too_short", "password.breached"]


# -- signing in -----------------------------------------------------------------------------


async def test_password_then_a_totp_code_that_works_once(
    db: async_sessionmaker[AsyncSession],
) -> None:
    issued = await _create(db)
    async with db() as s, s.begin():
        assert await accounts.check_password(s, "nva", "wrong", policy=POLICY, address="a") is None
        assert await accounts.check_password(s, "nobody", "x", policy=POLICY, address="a") is None
        account = await accounts.check_password(
            s, "nva", issued.password, policy=POLICY, address="a"
        )
        assert account is not None
        code = totp.code_at(issued.totp_secret, time.time())
        assert await accounts.check_second_factor(s, account, code, policy=POLICY, address="a")
        # The same code again (a replay, or a shoulder-surfer) is refused.
        assert not await accounts.check_second_factor(s, account, code, policy=POLICY, address="a")
    actions = [e.action for e in await _events(db)]
    assert actions == [
        "account.create",
        "account.sign-in-refused",
        "account.sign-in",
        "account.sign-in-refused",
    ]


async def test_repeated_failures_lock_the_account_even_for_the_right_password(
    db: async_sessionmaker[AsyncSession],
) -> None:
    issued = await _create(db)
    for _ in range(POLICY.failures):
        async with db() as s, s.begin():
            await accounts.check_password(s, "nva", "not it at all", policy=POLICY, address="a")
    async with db() as s, s.begin():
        with pytest.raises(Locked):
            await accounts.check_password(s, "nva", issued.password, policy=POLICY, address="a")
    assert [e.action for e in await _events(db)][-1] == "account.locked"
    async with db() as s, s.begin():  # the administrator resets it: unlocked
        again = await accounts.reset_account(s, "nva", actor="person:boss")
    async with db() as s, s.begin():
        assert await accounts.check_password(s, "nva", again.password, policy=POLICY, address="a")


# -- sessions -------------------------------------------------------------------------------


async def test_sessions_end_on_expiry_idleness_and_sign_out_everywhere(
    db: async_sessionmaker[AsyncSession],
) -> None:
    await _create(db)
    idle = timedelta(minutes=15)
    async with db() as s, s.begin():
        account = await s.scalar(select(Account).where(Account.name == "nva"))
        assert account is not None
        live, _ = await websessions.open_session(
            s, account, websessions.SIGNED_IN, lifetime=timedelta(hours=8)
        )
        other, _ = await websessions.open_session(
            s, account, websessions.SIGNED_IN, lifetime=timedelta(hours=8)
        )
        expired, _ = await websessions.open_session(
            s, account, websessions.SIGNED_IN, lifetime=timedelta(seconds=-1)
        )
        idled, row = await websessions.open_session(
            s, account, websessions.SIGNED_IN, lifetime=timedelta(hours=8)
        )
        row.last_seen_at = utcnow() - timedelta(minutes=16)
    async with db() as s, s.begin():
        found = await websessions.find_session(s, live, idle=idle)
        assert found is not None and found.account.name == "nva"
        assert await websessions.find_session(s, expired, idle=idle) is None
        assert await websessions.find_session(s, idled, idle=idle) is None
        assert await websessions.find_session(s, "made-up", idle=idle) is None
        await accounts.end_sessions(s, account.id)
    async with db() as s:
        assert await websessions.find_session(s, other, idle=idle) is None
        assert (await s.scalars(select(ConsoleSession))).all() == []


def test_lgsp_account_create_prints_the_provisioning_uri(env: dict[str, str]) -> None:
    assert lgsp(env, "migrate").returncode == 0
    out = lgsp(env, "account", "create", "quantri", "--name", "Quản trị", "--role", "administrator")
    assert out.returncode == 0, out.stderr
    assert "otpauth://totp/LGSP:quantri?secret=" in out.stdout
    again = lgsp(env, "account", "create", "quantri", "--role", "administrator")
    assert again.returncode == 2 and "exists" in again.stderr


async def test_a_generated_password_is_for_one_sign_in_and_a_new_one_follows_the_rules(
    db: async_sessionmaker[AsyncSession],
) -> None:
    issued = await _create(db)
    async with db() as s, s.begin():
        account = await accounts.find_account(s, "nva")
        assert account is not None and account.must_change_password
        with pytest.raises(AccountError):
            await accounts.change_password(s, account, "not the current one", GOOD)
        with pytest.raises(PasswordRejected) as e:
            await accounts.change_password(s, account, issued.password, "nva nva nva nva")
        assert e.value.problems == ["password.contains_name"]
        await accounts.change_password(s, account, issued.password, GOOD)
        assert not account.must_change_password
    async with db() as s, s.begin():
        assert await accounts.check_password(s, "nva", GOOD, policy=POLICY, address="a")
    assert [e.action for e in await _events(db)] == ["account.create", "account.password"]


async def test_a_hash_made_with_other_settings_is_redone_at_the_next_sign_in(
    db: async_sessionmaker[AsyncSession],
) -> None:
    from argon2 import PasswordHasher

    await _create(db)
    async with db() as s, s.begin():
        account = await accounts.find_account(s, "nva")
        assert account is not None
        account.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash(GOOD)
    async with db() as s, s.begin():
        assert await accounts.check_password(s, "nva", GOOD, policy=POLICY, address="a")
    async with db() as s:
        account = await accounts.find_account(s, "nva")
        assert account is not None and "m=19456,t=2,p=1" in account.password_hash
