"""Changes to configuration and credentials. Each one is recorded as an `AdminEvent` in
the same transaction as the change itself: no change without its record.

The id of the newest admin event doubles as the configuration version that running
gateways poll to know when to rebuild their tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.identity import credentials
from gateway.store.models import (
    AdminEvent,
    Client,
    ConfigState,
    Credential,
    utcnow,
)

# PostgreSQL channel on which committed changes are announced (gateway/reload.py listens).
CONFIG_CHANNEL = "lgsp_config"


class NotFound(LookupError):
    pass


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


async def serialize_changes(session: AsyncSession) -> None:
    """Take the configuration lock now, before reading what the change depends on, so
    concurrent changes (two registrations on one subject, say) run one after the other."""
    await session.execute(
        update(ConfigState).where(ConfigState.id == 1).values(version=ConfigState.version)
    )


async def config_version(session: AsyncSession) -> int:
    return int(await session.scalar(select(ConfigState.version).where(ConfigState.id == 1)) or 0)


async def issue_credential(
    session: AsyncSession,
    *,
    client_code: str,
    kind: str,
    actor: str,
    expires_at: datetime | None = None,
    revoke_others: bool = False,
) -> str:
    """Create a client secret or API key and return it: the only time it is visible."""
    client = await session.scalar(select(Client).where(Client.code == client_code))
    if client is None:
        raise NotFound(f"no client {client_code!r}")
    if revoke_others:
        for old in await session.scalars(
            select(Credential).where(
                Credential.client_id == client.id,
                Credential.kind == kind,
                Credential.revoked_at.is_(None),
            )
        ):
            old.revoked_at = utcnow()
            await record(
                session, actor=actor, action="credential.revoke", target=f"{client_code}#{old.id}"
            )
    value = credentials.new_api_key() if kind == "api_key" else credentials.new_client_secret()
    cred = Credential(
        client_id=client.id,
        kind=kind,
        secret_sha256=credentials.digest(value),
        hint=credentials.hint(value),
        expires_at=expires_at,
    )
    session.add(cred)
    await session.flush()
    await record(
        session,
        actor=actor,
        action="credential.issue",
        target=f"{client_code}#{cred.id}",
        after={
            "kind": kind,
            "hint": cred.hint,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return value


async def revoke_credential(session: AsyncSession, *, credential_id: int, actor: str) -> None:
    cred = await session.get(Credential, credential_id)
    if cred is None:
        raise NotFound(f"no credential {credential_id}")
    if cred.revoked_at is None:
        cred.revoked_at = utcnow()
        await record(session, actor=actor, action="credential.revoke", target=f"#{credential_id}")
