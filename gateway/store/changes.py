"""Changes to configuration and credentials. Each one is recorded as an `AdminEvent` in
the same transaction as the change itself: no change without its record.

The id of the newest admin event doubles as the configuration version that running
gateways poll to know when to rebuild their tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.models import (
    AdminEvent,
    ConfigState,
)

# PostgreSQL channel on which committed changes are announced (gateway/edge/reload.py listens).
CONFIG_CHANNEL = "lgsp_config"


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    comment: str | None = None,
) -> None:
    """Record a change and bump the configuration version, in the caller's transaction."""
    await record_all(
        session,
        [
            AdminEvent(
                actor=actor,
                action=action,
                target=target,
                before=before,
                after=after,
                comment=comment,
            )
        ],
    )


async def record_all(session: AsyncSession, events: list[AdminEvent]) -> None:
    """Record changes made in one transaction, with one configuration version bump."""
    session.add_all(events)
    # The row lock serialises admin transactions: versions follow commit order.
    await session.execute(
        update(ConfigState).where(ConfigState.id == 1).values(version=ConfigState.version + 1)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Delivered when (and only if) the transaction commits.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CONFIG_CHANNEL})


async def note(session: AsyncSession, events: list[AdminEvent]) -> None:
    """Record events that change no configuration (a sign-in, a refused second factor) in
    the caller's transaction, without bumping the configuration version: a burst of
    sign-ins must not make every gateway rebuild its tables."""
    session.add_all(events)


async def serialize_changes(session: AsyncSession) -> None:
    """Take the configuration lock now, before reading what the change depends on, so
    concurrent changes (two registrations on one subject, say) run one after the other."""
    await session.execute(
        update(ConfigState).where(ConfigState.id == 1).values(version=ConfigState.version)
    )


async def config_version(session: AsyncSession) -> int:
    return int(await session.scalar(select(ConfigState.version).where(ConfigState.id == 1)) or 0)
