"""Personal accounts: people who sign in to the console with a password and a TOTP code.

Each change to an account (create, reset, disable, roles) is an admin event naming who
made it, in the transaction of the change; sign-ins, refused factors and lock-outs are
admin events too, recorded without bumping the configuration version (they change no
configuration). After `LockoutPolicy.failures` consecutive failed factors an account is
locked for `LockoutPolicy.seconds`, right password or not; a success resets the count.

Example:
    >>> issued = await create_account(s, name="nva", display_name="Nguyễn Văn A",
    ...                               roles=["administrator"], actor="cli:root@host")
    >>> issued.uri
    'otpauth://totp/LGSP:nva?secret=...&issuer=LGSP'
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.identity import passwords, totp
from gateway.store import changes
from gateway.store.models import Account, AdminEvent, ConsoleSession, utcnow

__all__ = [
    "ROLES",
    "AccountError",
    "Issued",
    "Locked",
    "LockoutPolicy",
    "PasswordRejected",
    "change_password",
    "check_password",
    "check_second_factor",
    "create_account",
    "disable_account",
    "find_account",
    "person",
    "reset_account",
    "set_roles",
    "validate_roles",
]

# The roles of gateway/config/policy.py's Role; "audit:unmask" is a right held beside
# "auditor" (the auditor API unmasks personal identifiers for it).
ROLES = ("administrator", "operator", "auditor", "observer", "audit:unmask")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}\Z")


class AccountError(Exception):
    """A refused account change; `key` names its message in the console's catalogue."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class PasswordRejected(AccountError):
    """The password breaks a rule; `problems` are the catalogue keys of each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("password.rejected", "password refused: " + ", ".join(problems))
        self.problems = problems


class Locked(AccountError):
    """The account is locked until `until` after too many failures."""

    def __init__(self, until: datetime) -> None:
        super().__init__("signin.locked", f"locked until {until.isoformat(timespec='seconds')}")
        self.until = until


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """Lock an account for `seconds` after `failures` consecutive failed factors."""

    failures: int = 5
    seconds: float = 900.0


@dataclass(frozen=True, slots=True)
class Issued:
    """What the person is given once: the password, the TOTP secret and its URI."""

    name: str
    password: str
    totp_secret: str
    uri: str


def person(name: str) -> str:
    """The actor name of a person, as admin events and policy versions record it.

    Example:
        >>> person("nva")
        'person:nva'
    """
    return f"person:{name}"


def validate_roles(roles: list[str]) -> list[str]:
    """The roles, deduplicated and sorted; refused if unknown, or "audit:unmask" without
    "auditor".

    Example:
        >>> validate_roles(["auditor", "audit:unmask"])
        ['audit:unmask', 'auditor']
    """
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise AccountError("account.roles_invalid", f"unknown roles {unknown}; known: {ROLES}")
    if "audit:unmask" in roles and "auditor" not in roles:
        raise AccountError("account.roles_invalid", "'audit:unmask' is held beside 'auditor'")
    if not roles:
        raise AccountError("account.roles_invalid", "an account holds at least one role")
    return sorted(set(roles))


def _public(a: Account) -> dict[str, Any]:
    """What an admin event shows of an account (never a hash or a secret)."""
    return {"name": a.name, "display_name": a.display_name, "roles": a.roles, "enabled": a.enabled}


def _new_password() -> str:
    # 120 random bits in 20 characters, handed out once and meant to be changed.
    return secrets.token_urlsafe(15)


def _checked_password(password: str | None, name: str, min_length: int) -> str:
    if password is None:
        return _new_password()
    problems = passwords.password_problems(password, account=name, min_length=min_length)
    if problems:
        raise PasswordRejected(problems)
    return password


async def find_account(session: AsyncSession, name: str) -> Account | None:
    """The account of that name, or None.

    Example:
        >>> (await find_account(s, "nva")).roles
        ['administrator']
    """
    return await session.scalar(select(Account).where(Account.name == name))


async def _existing(session: AsyncSession, name: str) -> Account:
    account = await find_account(session, name)
    if account is None:
        raise AccountError("account.unknown", f"no account {name!r}")
    return account


async def create_account(
    session: AsyncSession,
    *,
    name: str,
    display_name: str,
    roles: list[str],
    actor: str,
    password: str | None = None,
    min_length: int = passwords.MIN_LENGTH,
    comment: str | None = None,
) -> Issued:
    """A new account, with a new TOTP secret and the given (or a random) password.

    Raises:
        AccountError: the name is taken or not valid, or the roles are not.
        PasswordRejected: the password breaks the rules.

    Example:
        >>> (await create_account(s, name="tta", display_name="Trần Thị A",
        ...                       roles=["auditor"], actor="cli:root@host")).name
        'tta'
    """
    if not _NAME.match(name):
        raise AccountError(
            "account.name_invalid", "a name is 2-64 of a-z, 0-9, '.', '_', '-', from a letter"
        )
    if await find_account(session, name) is not None:
        raise AccountError("account.exists", f"an account {name!r} exists")
    chosen = _checked_password(password, name, min_length)
    secret = totp.new_secret()
    account = Account(
        name=name,
        display_name=display_name,
        roles=validate_roles(roles),
        password_hash=await passwords.ahash_password(chosen),
        totp_secret=secret,
        totp_last_step=0,
        enabled=True,
        failures=0,
        must_change_password=password is None,
    )
    session.add(account)
    await session.flush()
    await changes.record(
        session,
        actor=actor,
        action="account.create",
        target=person(name),
        after=_public(account),
        comment=comment,
    )
    return Issued(name, chosen, secret, totp.provisioning_uri(secret, name))


async def reset_account(
    session: AsyncSession,
    name: str,
    *,
    actor: str,
    password: str | None = None,
    min_length: int = passwords.MIN_LENGTH,
    comment: str | None = None,
) -> Issued:
    """A new password and TOTP secret for a person who lost theirs: the lock lifted, the
    account enabled, every session of it ended.

    Example:
        >>> (await reset_account(s, "nva", actor="cli:root@host")).password
        'q3…'
    """
    account = await _existing(session, name)
    before = _public(account)
    chosen = _checked_password(password, name, min_length)
    secret = totp.new_secret()
    account.password_hash = await passwords.ahash_password(chosen)
    account.totp_secret, account.totp_last_step = secret, 0
    account.failures, account.locked_until, account.enabled = 0, None, True
    account.password_changed_at = utcnow()
    account.must_change_password = password is None
    await end_sessions(session, account.id)
    await changes.record(
        session,
        actor=actor,
        action="account.reset",
        target=person(name),
        before=before,
        after=_public(account),
        comment=comment,
    )
    return Issued(name, chosen, secret, totp.provisioning_uri(secret, name))


async def disable_account(
    session: AsyncSession, name: str, *, actor: str, comment: str | None = None
) -> None:
    """The account may no longer sign in; its sessions end now.

    Example:
        >>> await disable_account(s, "nva", actor="person:admin")
    """
    account = await _existing(session, name)
    before = _public(account)
    account.enabled = False
    await end_sessions(session, account.id)
    await changes.record(
        session,
        actor=actor,
        action="account.disable",
        target=person(name),
        before=before,
        after=_public(account),
        comment=comment,
    )


async def set_roles(
    session: AsyncSession, name: str, roles: list[str], *, actor: str, comment: str | None = None
) -> None:
    """Change the account's roles (its sessions end: they were opened under the old ones).

    Example:
        >>> await set_roles(s, "tta", ["auditor", "audit:unmask"], actor="person:admin")
    """
    account = await _existing(session, name)
    before = _public(account)
    account.roles = validate_roles(roles)
    await end_sessions(session, account.id)
    await changes.record(
        session,
        actor=actor,
        action="account.roles",
        target=person(name),
        before=before,
        after=_public(account),
        comment=comment,
    )


async def change_password(
    session: AsyncSession,
    account: Account,
    current: str,
    new: str,
    *,
    min_length: int = passwords.MIN_LENGTH,
    keep_session: str | None = None,
) -> None:
    """The person replaces their password (the one-time one, or their own): the current
    one is asked again, the new one must pass the rules, and every other session of the
    account ends.

    Raises:
        AccountError: `password.current_wrong` if `current` is not the password.
        PasswordRejected: the new password breaks a rule.

    Example:
        >>> await change_password(s, account, "q3Jm…", "sông Hồng mùa nước nổi")
    """
    if not await passwords.averify_password(account.password_hash, current):
        raise AccountError("password.current_wrong", "the current password is not right")
    problems = passwords.password_problems(new, account=account.name, min_length=min_length)
    if new == current:
        problems.append("password.unchanged")
    if problems:
        raise PasswordRejected(problems)
    account.password_hash = await passwords.ahash_password(new)
    account.password_changed_at, account.must_change_password = utcnow(), False
    ended = delete(ConsoleSession).where(ConsoleSession.account_id == account.id)
    if keep_session is not None:
        ended = ended.where(ConsoleSession.id != keep_session)
    await session.execute(ended)
    await changes.record(
        session, actor=person(account.name), action="account.password", target=person(account.name)
    )


async def end_sessions(session: AsyncSession, account_id: int) -> None:
    """End every console session of the account ("sign out everywhere")."""
    await session.execute(delete(ConsoleSession).where(ConsoleSession.account_id == account_id))


def _event(name: str, action: str, **after: Any) -> AdminEvent:
    return AdminEvent(actor=person(name), action=action, target=person(name), after=after)


async def _failed(
    session: AsyncSession, account: Account, factor: str, policy: LockoutPolicy, address: str
) -> None:
    now = utcnow()
    account.failures += 1
    events = [_event(account.name, "account.sign-in-refused", factor=factor, address=address)]
    if account.failures >= policy.failures:
        account.locked_until = now + timedelta(seconds=policy.seconds)
        account.failures = 0
        events.append(
            _event(
                account.name,
                "account.locked",
                until=account.locked_until.isoformat(timespec="seconds"),
                address=address,
            )
        )
    await changes.note(session, events)


def _refuse_if_locked(account: Account) -> None:
    if account.locked_until is not None and account.locked_until > utcnow():
        raise Locked(account.locked_until)


async def check_password(
    session: AsyncSession, name: str, password: str, *, policy: LockoutPolicy, address: str
) -> Account | None:
    """The first factor: the account if the password is right and it may sign in, None
    otherwise (an unknown name costs the same time as a wrong password).

    Raises:
        Locked: the account is locked, whatever the password.

    Example:
        >>> await check_password(s, "nva", "wrong", policy=LockoutPolicy(), address="::1")
    """
    account = await find_account(session, name)
    if account is None or not account.enabled:
        await passwords.averify_password(None, password)
        return None
    _refuse_if_locked(account)
    if not await passwords.averify_password(account.password_hash, password):
        await _failed(session, account, "password", policy, address)
        return None
    if passwords.needs_rehash(account.password_hash):
        account.password_hash = await passwords.ahash_password(password)
    return account


async def check_second_factor(
    session: AsyncSession, account: Account, code: str, *, policy: LockoutPolicy, address: str
) -> bool:
    """The second factor: is `code` the account's current TOTP code, not used before?
    A success is recorded as the sign-in and resets the failure count.

    Raises:
        Locked: the account is locked.

    Example:
        >>> await check_second_factor(s, account, "123456", policy=LockoutPolicy(), address="::1")
        False
    """
    _refuse_if_locked(account)
    step = totp.matching_step(account.totp_secret, code, after=account.totp_last_step)
    if step is None:
        await _failed(session, account, "totp", policy, address)
        return False
    account.totp_last_step, account.failures, account.locked_until = step, 0, None
    await changes.note(session, [_event(account.name, "account.sign-in", address=address)])
    return True


async def note_second_factor(
    session: AsyncSession,
    account: Account,
    ok: bool,
    *,
    factor: str,
    policy: LockoutPolicy,
    address: str,
) -> None:
    """A second factor checked elsewhere (a passkey, gateway/identity/passkeys.py): a
    success is recorded as the sign-in and resets the failure count, a failure counts
    towards the lock-out as a wrong code does.

    Raises:
        Locked: the account is locked.

    Example:
        >>> await note_second_factor(s, account, True, factor="passkey",
        ...                          policy=LockoutPolicy(), address="::1")
    """
    _refuse_if_locked(account)
    if not ok:
        await _failed(session, account, factor, policy, address)
        return
    account.failures, account.locked_until = 0, None
    event = _event(account.name, "account.sign-in", address=address, factor=factor)
    await changes.note(session, [event])
