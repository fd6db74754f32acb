"""Console sessions, held by the server: the browser's cookie carries a random token,
the store its SHA-256 (a copy of the table signs nobody in), the stage reached, the
synchronizer token of the session's forms, and when it ends.

A session ends at `expires_at` (absolute), or after `idle` without a request, or when
the person signs out (here, or everywhere). Reaching the next stage opens a new session
and ends the old one, so a token planted before sign-in is worth nothing after it
(session fixation).

Example:
    >>> token, row = await open_session(s, account, SIGNED_IN, lifetime=timedelta(hours=8))
    >>> found = await find_session(s, token, idle=timedelta(minutes=15))
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.models import Account, ConsoleSession, utcnow

__all__ = [
    "PASSWORD_DONE",
    "SIGNED_IN",
    "Found",
    "close_session",
    "find_session",
    "open_session",
]

PASSWORD_DONE = "password"  # noqa: S105 (a stage name): the first factor given
SIGNED_IN = "signed-in"
# A session's last-seen time is written at most this often: not one write per page.
_TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Found:
    session: ConsoleSession
    account: Account


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(
    session: AsyncSession,
    account: Account,
    stage: str,
    *,
    lifetime: timedelta,
    address: str | None = None,
) -> tuple[str, ConsoleSession]:
    """A new session of `account` at `stage`: the token for the cookie, and the row.

    Example:
        >>> five = timedelta(minutes=5)
        >>> token, row = await open_session(s, account, PASSWORD_DONE, lifetime=five)
    """
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = ConsoleSession(
        id=_digest(token),
        account_id=account.id,
        stage=stage,
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
        address=address,
    )
    session.add(row)
    await session.flush()
    return token, row


async def find_session(session: AsyncSession, token: str, *, idle: timedelta) -> Found | None:
    """The live session the token opens, its last-seen time moved on; None (and the row
    deleted) if it expired, idled out, or its account was disabled.

    Example:
        >>> (await find_session(s, token, idle=timedelta(minutes=15))).account.name
        'nva'
    """
    if not token or len(token) > 128:
        return None
    row = await session.get(ConsoleSession, _digest(token))
    if row is None:
        return None
    now = utcnow()
    account = await session.scalar(select(Account).where(Account.id == row.account_id))
    if (
        account is None
        or not account.enabled
        or row.expires_at <= now
        or row.last_seen_at + idle <= now
    ):
        await session.delete(row)
        return None
    if now - row.last_seen_at >= _TOUCH_EVERY:
        row.last_seen_at = now
    return Found(row, account)


async def close_session(session: AsyncSession, token: str) -> None:
    """End the session the token opens (signing out), if any.

    Example:
        >>> await close_session(s, token)
    """
    await session.execute(delete(ConsoleSession).where(ConsoleSession.id == _digest(token)))
