"""Credentials of clients: issued (the value shown once, stored as a SHA-256 digest),
revoked, each recorded as an admin event naming who did it. Shared by every face that
changes them: the admin API, the console and the CLI."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.identity import credentials
from gateway.store.changes import record
from gateway.store.models import (
    Client,
    Credential,
    utcnow,
)


class NotFound(LookupError):
    pass


async def issue(
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


async def revoke(session: AsyncSession, *, credential_id: int, actor: str) -> None:
    cred = await session.get(Credential, credential_id)
    if cred is None:
        raise NotFound(f"no credential {credential_id}")
    if cred.revoked_at is None:
        cred.revoked_at = utcnow()
        await record(session, actor=actor, action="credential.revoke", target=f"#{credential_id}")
