"""Credentials of clients: issued (the value shown once, stored as a SHA-256 digest),
certificates pinned (by public key or subject DN, gateway/core/tls.py), revoked, each
recorded as an admin event naming who did it. Shared by every face that changes them:
the admin API, the console and the CLI.

`issue`, `pin` and `revoke` work in the caller's transaction (the CLI's); the operations
below them (`issue_credential`, `pin_certificate`, `rotate`, `revoke_credential`,
`list_credentials`) run their own, for an `Actor`, and answer with `CredentialView`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin.actor import ADMINISTRATOR, Actor
from gateway.admin.refusals import refused
from gateway.core.problems import CONFLICT, NOT_FOUND, Problem
from gateway.core.tls import normalise_pin
from gateway.identity import credentials
from gateway.store.changes import record
from gateway.store.models import (
    Client,
    Credential,
    utcnow,
)

__all__ = [
    "CredentialView",
    "NotFound",
    "Rotation",
    "issue",
    "issue_credential",
    "list_credentials",
    "pin",
    "pin_certificate",
    "revoke",
    "revoke_credential",
    "rotate",
]


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
    comment: str | None = None,
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
                session,
                actor=actor,
                action="credential.revoke",
                target=f"{client_code}#{old.id}",
                comment=comment,
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
        comment=comment,
    )
    return value


async def revoke(
    session: AsyncSession, *, credential_id: int, actor: str, comment: str | None = None
) -> None:
    cred = await session.get(Credential, credential_id)
    if cred is None:
        raise NotFound(f"no credential {credential_id}")
    if cred.revoked_at is None:
        cred.revoked_at = utcnow()
        owner = await session.get(Client, cred.client_id)
        if owner is not None and owner.enabled and ADMINISTRATOR in (owner.roles or ()):
            await session.flush()
            await _keep_an_administrator(session)
        await record(
            session,
            actor=actor,
            action="credential.revoke",
            target=f"#{credential_id}",
            comment=comment,
        )


class LockedOut(ValueError):
    """The change would leave no enabled administrator able to authenticate."""


async def _keep_an_administrator(session: AsyncSession) -> None:
    """The rule that keeps one enabled administrator client in the policy, for its
    credentials: revoking the last active one would answer 401 to every admin caller
    until someone on the host issued a new secret."""
    now = utcnow()
    rows = await session.execute(
        select(Client.roles, Credential.expires_at)
        .join(Credential, Credential.client_id == Client.id)
        .where(Client.enabled.is_(True), Credential.revoked_at.is_(None))
    )
    for roles, expires_at in rows.all():
        if ADMINISTRATOR in (roles or ()) and (expires_at is None or expires_at > now):
            return
    raise LockedOut(
        "this is the last active credential of an enabled administrator: revoking it "
        "would lock every administrator out. Issue another credential first (or rotate "
        "this one)."
    )


# -- operations, each in its own transaction ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CredentialView:
    """A credential as shown: never its value, except `secret` once, when issued."""

    id: int
    client: str
    kind: str
    hint: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool
    secret: str | None = None
    pin: str | None = None  # a certificate's pin (no secret)

    @classmethod
    def of(cls, row: Credential, client: str, secret: str | None = None) -> CredentialView:
        now = utcnow()
        active = row.revoked_at is None and (row.expires_at is None or row.expires_at > now)
        return cls(
            row.id,
            client,
            row.kind,
            row.hint,
            row.created_at,
            row.expires_at,
            row.revoked_at,
            active,
            secret,
            row.pin,
        )


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation: the new credential, and what became of the client's others."""

    issued: CredentialView
    revoked: list[CredentialView]
    expiring: list[CredentialView]


async def _client(session: AsyncSession, code: str) -> Client:
    client = await session.scalar(select(Client).where(Client.code == code))
    if client is None:
        raise Problem(NOT_FOUND, f"No client {code!r}.")
    return client


async def _issue_view(
    session: AsyncSession, actor: Actor, code: str, kind: str, expires_at: datetime | None
) -> CredentialView:
    try:
        secret = await issue(
            session,
            client_code=code,
            kind=kind,
            actor=actor.name,
            expires_at=expires_at,
            comment=actor.comment,
        )
    except NotFound as e:
        raise Problem(NOT_FOUND, f"{str(e).capitalize()}.") from None
    row = await session.scalar(
        select(Credential).where(Credential.secret_sha256 == credentials.digest(secret))
    )
    if row is None:  # pragma: no cover - issue just stored it
        raise RuntimeError("issued credential not found")
    return CredentialView.of(row, code, secret)


async def list_credentials(
    sessions: async_sessionmaker[AsyncSession], code: str
) -> list[CredentialView]:
    """Every credential of a client, active or not, oldest first; 404 for no client.

    Example:
        >>> [c.kind for c in await list_credentials(sessions, "motcua")]
        ['secret', 'api_key']
    """
    async with sessions() as s:
        client = await _client(s, code)
        rows = await s.scalars(
            select(Credential).where(Credential.client_id == client.id).order_by(Credential.id)
        )
        return [CredentialView.of(r, code) for r in rows]


async def issue_credential(
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    code: str,
    kind: str,
    expires_at: datetime | None = None,
) -> CredentialView:
    """A new secret or API key for a client, its value in `secret` (shown this once).

    Raises:
        Problem: 404 for no client; 422 for an `expires_at` in the past.

    Example:
        >>> (await issue_credential(sessions, actor, "motcua", "api_key")).secret[:5]
        'lgsp_'
    """
    if expires_at is not None and expires_at <= utcnow():
        raise refused(
            "The credential request",
            [{"field": "expires_at", "detail": "is in the past; give a time to come"}],
        )
    async with sessions() as s, s.begin():
        return await _issue_view(s, actor, code, kind, expires_at)


async def rotate(
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    code: str,
    kind: str,
    grace_seconds: int = 0,
) -> Rotation:
    """A new credential; the client's other active ones of that kind revoked at once, or
    set to expire after `grace_seconds` so the system can switch over.

    Example:
        >>> rotation = await rotate(sessions, actor, "motcua", "secret", grace_seconds=3600)
        >>> [c.expires_at for c in rotation.expiring]  # an hour from now
    """
    now = utcnow()
    until = now + timedelta(seconds=grace_seconds)
    revoked: list[CredentialView] = []
    expiring: list[CredentialView] = []
    async with sessions() as s, s.begin():
        client = await _client(s, code)
        others = (
            await s.scalars(
                select(Credential)
                .where(
                    Credential.client_id == client.id,
                    Credential.kind == kind,
                    Credential.revoked_at.is_(None),
                )
                .order_by(Credential.id)
            )
        ).all()
        for old in others:
            if old.expires_at is not None and old.expires_at <= now:
                continue  # expired already: nothing to switch over from
            target = f"{code}#{old.id}"
            if grace_seconds == 0:
                old.revoked_at = now
                await record(
                    s,
                    actor=actor.name,
                    action="credential.revoke",
                    target=target,
                    comment=actor.comment,
                )
                revoked.append(CredentialView.of(old, code))
                continue
            if old.expires_at is None or old.expires_at > until:
                before = {"expires_at": old.expires_at.isoformat() if old.expires_at else None}
                old.expires_at = until
                await record(
                    s,
                    actor=actor.name,
                    action="credential.expire",
                    target=target,
                    before=before,
                    after={"expires_at": until.isoformat()},
                    comment=actor.comment,
                )
            expiring.append(CredentialView.of(old, code))
        issued = await _issue_view(s, actor, code, kind, None)
    return Rotation(issued, revoked, expiring)


async def revoke_credential(
    sessions: async_sessionmaker[AsyncSession], actor: Actor, credential_id: int
) -> CredentialView:
    """Revoke a credential now (again: no change); 404 if there is no such credential.

    Example:
        >>> (await revoke_credential(sessions, actor, 9)).active
        False
    """
    async with sessions() as s, s.begin():
        try:
            await revoke(s, credential_id=credential_id, actor=actor.name, comment=actor.comment)
        except NotFound:
            raise Problem(NOT_FOUND, f"No credential {credential_id}.") from None
        except LockedOut as e:
            raise Problem(CONFLICT, f"Credential {credential_id} is not revoked: {e}") from None
        row = await s.get(Credential, credential_id)
        client = await s.get(Client, row.client_id) if row is not None else None
        if row is None or client is None:  # pragma: no cover - revoke found it
            raise Problem(NOT_FOUND, f"No credential {credential_id}.")
        return CredentialView.of(row, client.code)


async def pin(
    session: AsyncSession,
    *,
    client_code: str,
    pin: str,
    actor: str,
    expires_at: datetime | None = None,
    comment: str | None = None,
) -> CredentialView:
    """Pin a client certificate to a system in the caller's transaction (the CLI's);
    `pin_certificate` below runs its own. Raises Problem as it says."""
    fields = []
    try:
        pinned = normalise_pin(pin)
    except ValueError as e:
        fields.append({"field": "pin", "detail": str(e)})
    if expires_at is not None and expires_at <= utcnow():
        fields.append({"field": "expires_at", "detail": "is in the past; give a time to come"})
    if fields:
        raise refused("The certificate pin", fields)
    pin_digest = credentials.digest(pinned)
    client = await _client(session, client_code)
    taken = await session.scalar(select(Credential).where(Credential.secret_sha256 == pin_digest))
    if taken is not None:
        owner = await session.get(Client, taken.client_id)
        raise Problem(
            CONFLICT,
            f"{pinned!r} is pinned already (credential {taken.id} of "
            f"{owner.code if owner else '?'!r}); revoke that one first.",
        )
    cred = Credential(
        client_id=client.id,
        kind="certificate",
        secret_sha256=pin_digest,
        hint=pinned[:16],
        pin=pinned,
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
            "kind": "certificate",
            "pin": pinned,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
        comment=comment,
    )
    return CredentialView.of(cred, client_code)


async def pin_certificate(
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    code: str,
    pin_value: str,
    expires_at: datetime | None = None,
) -> CredentialView:
    """Pin a client certificate to a system: over HTTPS with client certificates, a
    connection presenting it authenticates as the system, and tokens the system gets
    with it are bound to it. `pin_value` is `spki-sha256:<hex>` (the SHA-256 of the
    certificate's SubjectPublicKeyInfo) or `subject:<RFC 4514 DN>`.

    Raises:
        Problem: 404 for no client; 409 when the certificate is pinned already (to this
            or another system); 422 for a malformed pin or an `expires_at` in the past.

    Example:
        >>> (await pin_certificate(sessions, actor, "motcua", "subject:CN=motcua,O=So TTTT")).pin
        'subject:CN=motcua,O=So TTTT'
    """
    async with sessions() as s, s.begin():
        return await pin(
            s,
            client_code=code,
            pin=pin_value,
            actor=actor.name,
            expires_at=expires_at,
            comment=actor.comment,
        )
