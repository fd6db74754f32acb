"""Changes to configuration and credentials. Each one is recorded as an `AdminEvent` in
the same transaction as the change itself: no change without its record.

The id of the newest admin event doubles as the configuration version that running
gateways poll to know when to rebuild their tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import credentials
from gateway.policy import PolicySet
from gateway.store.models import (
    AccessRight,
    AdminEvent,
    Agency,
    Client,
    ConfigState,
    Credential,
    Group,
    GroupMember,
    RegistryVersion,
    Service,
    Upstream,
    utcnow,
)


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
    session.add(
        AdminEvent(
            actor=actor,
            action=action,
            target=target,
            before=before,
            after=after,
            comment=comment,
        )
    )
    # The row lock serialises admin transactions: versions follow commit order.
    await session.execute(
        update(ConfigState).where(ConfigState.id == 1).values(version=ConfigState.version + 1)
    )


async def serialize_changes(session: AsyncSession) -> None:
    """Take the configuration lock now, before reading what the change depends on, so
    concurrent changes (two registrations on one subject, say) run one after the other."""
    await session.execute(
        update(ConfigState).where(ConfigState.id == 1).values(version=ConfigState.version)
    )


async def config_version(session: AsyncSession) -> int:
    return int(await session.scalar(select(ConfigState.version).where(ConfigState.id == 1)) or 0)


async def _upsert(
    session: AsyncSession, model: type[Any], key: dict[str, Any], values: dict[str, Any]
) -> tuple[Any, dict[str, Any] | None]:
    """Create or update one row; return it and its previous values (None if created)."""
    row = await session.scalar(select(model).filter_by(**key))
    if row is None:
        row = model(**key, **values)
        session.add(row)
        await session.flush()
        return row, None
    before = {k: getattr(row, k) for k in values}
    for k, v in values.items():
        setattr(row, k, v)
    await session.flush()
    return row, before


async def apply_policy(
    session: AsyncSession, policy: PolicySet, *, actor: str, comment: str | None = None
) -> list[str]:
    """Create or update everything the policy set declares. Access rights of a declared
    service are replaced by the declared ones: the files own those services' rights.
    Returns a line per change made."""
    changes: list[str] = []

    async def note(
        kind: str, key: str, before: dict[str, Any] | None, after: dict[str, Any]
    ) -> None:
        if before is None:
            changes.append(f"created {kind} {key}")
        elif before != after:
            changes.append(f"updated {kind} {key}")
        else:
            return
        await record(
            session,
            actor=actor,
            action=f"policy.{kind}",
            target=key,
            before=_jsonable(before),
            after=_jsonable(after),
            comment=comment,
        )

    await serialize_changes(session)
    await _check_schema_refs(session, policy)
    agencies: dict[str, Agency] = {}
    for a in policy.agencies:
        values: dict[str, Any] = {"name": a.name, "doc_code": a.doc_code}
        agencies[a.code], before = await _upsert(session, Agency, {"code": a.code}, values)
        await note("agency", a.code, before, values)
    groups: dict[str, Group] = {}
    for g in policy.groups:
        values = {"name": g.name}
        groups[g.code], before = await _upsert(session, Group, {"code": g.code}, values)
        await note("group", g.code, before, values)
    for c in policy.clients:
        values = {
            "name": c.name,
            "agency_id": agencies[c.agency].id,
            "enabled": c.enabled,
            "roles": sorted(c.roles),
        }
        client, before = await _upsert(session, Client, {"code": c.code}, values)
        await note("client", c.code, before, values)
        await session.execute(delete(GroupMember).where(GroupMember.client_id == client.id))
        for g_code in c.groups:
            session.add(GroupMember(group_id=groups[g_code].id, client_id=client.id))
    upstreams: dict[str, Upstream] = {}
    for u in policy.upstreams:
        values = {"base_url": u.base_url, "auth": u.auth.model_dump(exclude_none=True)}
        upstreams[u.name], before = await _upsert(session, Upstream, {"name": u.name}, values)
        await note("upstream", u.name, before, values)
    for s in policy.services:
        values = {
            "name": s.name,
            "upstream_id": upstreams[s.upstream].id,
            "upstream_path": s.upstream_path,
            "adapter": s.adapter,
            "adapter_config": s.adapter_config,
            "schemas": s.schemas.model_dump(exclude_none=True),
            "connect_timeout_ms": s.timeouts.connect_ms,
            "timeout_ms": s.timeouts.total_ms,
            "max_request_bytes": s.limits.max_request_bytes,
            "max_response_bytes": s.limits.max_response_bytes,
            "require_officer": "officer" in s.require,
            "require_procedure": "procedure" in s.require,
            "require_case": "case" in s.require,
            "audit_mode": s.audit,
            "enabled": s.enabled,
        }
        key = {"provider_id": agencies[s.provider].id, "code": s.code, "version": s.version}
        service, before = await _upsert(session, Service, key, values)
        label = f"{s.provider}/{s.code}/{s.version}"
        await note("service", label, before, values)
        old_rights = sorted(
            (r.subject_kind, r.subject_code, r.method, r.path)
            for r in await session.scalars(
                select(AccessRight).where(AccessRight.service_id == service.id)
            )
        )
        new_rights = sorted(
            ("client" if a.client else "group", a.client or a.group or "", a.method.upper(), a.path)
            for a in s.access
        )
        if old_rights != new_rights:
            await session.execute(delete(AccessRight).where(AccessRight.service_id == service.id))
            for kind, subject, method, path in new_rights:
                session.add(
                    AccessRight(
                        service_id=service.id,
                        subject_kind=kind,
                        subject_code=subject,
                        method=method,
                        path=path,
                    )
                )
            changes.append(f"replaced access rights of {label}")
            await record(
                session,
                actor=actor,
                action="policy.access",
                target=label,
                before={"rights": [list(r) for r in old_rights]},
                after={"rights": [list(r) for r in new_rights]},
                comment=comment,
            )
    return changes


async def _check_schema_refs(session: AsyncSession, policy: PolicySet) -> None:
    missing = []
    for i, svc in enumerate(policy.services):
        for kind in ("request", "response"):
            ref = getattr(svc.schemas, kind)
            if ref is None:
                continue
            q = select(RegistryVersion.version).where(
                RegistryVersion.subject == ref.subject, RegistryVersion.deleted.is_(False)
            )
            if ref.version != "latest":
                q = q.where(RegistryVersion.version == ref.version)
            if await session.scalar(q.limit(1)) is None:
                missing.append(
                    f"services[{i}].schemas.{kind}: {ref.subject} version {ref.version} is not "
                    "in the registry (lgsp schema load / lgsp schema register)"
                )
    if missing:
        raise NotFound("; ".join(missing))


async def create_client(
    session: AsyncSession,
    *,
    code: str,
    agency_code: str,
    name: str,
    actor: str,
    roles: list[str] | None = None,
) -> Client:
    agency = await session.scalar(select(Agency).where(Agency.code == agency_code))
    if agency is None:
        raise NotFound(f"no agency {agency_code!r}; load the policies that declare it first")
    client = Client(code=code, agency_id=agency.id, name=name, roles=sorted(roles or []))
    session.add(client)
    await session.flush()
    await record(
        session,
        actor=actor,
        action="client.create",
        target=code,
        after={"agency": agency_code, "name": name, "roles": sorted(roles or [])},
    )
    return client


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


def _jsonable(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}
