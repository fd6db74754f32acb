"""What discovery reads from the store: the rights a client holds (the compiled rules of
the request path keep regexes only, not the globs), and a service's registered schemas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.identity.directory import ClientEntry
from gateway.store.models import AccessRight, Agency, RegistrySchema, RegistryVersion, Service

__all__ = ["METHOD_ORDER", "Grant", "SchemaInfo", "ServiceKey", "grants", "schemas"]

# The order operations are listed in; a right for any method expands to all of them.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

ServiceKey = tuple[str, str, str]
Grant = tuple[str, str]  # (method or "*", path glob)


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """A service's request or response schema, as the registry has it."""

    subject: str
    wanted: int | str  # the version the service names, or "latest"
    version: int | None  # the resolved version; None when the registry lacks it
    schema_type: str | None = None  # "JSON" | "XML"
    document: Any = None  # the JSON Schema, parsed; None for XML


async def grants(
    session: AsyncSession, client: ClientEntry, only: ServiceKey | None = None
) -> dict[ServiceKey, list[Grant]]:
    """The (method, path) rights the client holds, its own and its groups', by service.

    Example:
        >>> (await grants(session, motcua))[("000.00.31.H49", "echo", "v1")]
        [('*', '/**')]
    """
    query = (
        select(AccessRight.method, AccessRight.path, Agency.code, Service.code, Service.version)
        .join(Service, Service.id == AccessRight.service_id)
        .join(Agency, Agency.id == Service.provider_id)
        .where(
            or_(
                and_(AccessRight.subject_kind == "client", AccessRight.subject_code == client.code),
                and_(
                    AccessRight.subject_kind == "group",
                    AccessRight.subject_code.in_(sorted(client.groups)),
                ),
            )
        )
    )
    if only is not None:
        query = query.where(
            Agency.code == only[0], Service.code == only[1], Service.version == only[2]
        )
    found: dict[ServiceKey, set[Grant]] = {}
    for method, path, provider, code, version in (await session.execute(query)).all():
        found.setdefault((provider, code, version), set()).add((method.upper(), path))
    return {key: sorted(rights, key=_grant_order) for key, rights in found.items()}


def _grant_order(grant: Grant) -> tuple[str, int]:
    method, path = grant
    return path, METHOD_ORDER.index(method) if method in METHOD_ORDER else -1


async def schemas(session: AsyncSession, key: ServiceKey) -> dict[str, SchemaInfo]:
    """The service's request and response schemas, resolved as the runtime resolves them.

    Example:
        >>> (await schemas(session, population))["request"].subject
        'population.citizen-lookup.national.request'
    """
    refs = await session.scalar(
        select(Service.schemas)
        .join(Agency, Agency.id == Service.provider_id)
        .where(Agency.code == key[0], Service.code == key[1], Service.version == key[2])
    )
    found: dict[str, SchemaInfo] = {}
    for part, ref in (refs or {}).items():
        if not isinstance(ref, dict) or "subject" not in ref:
            continue
        subject, wanted = ref["subject"], ref.get("version", "latest")
        rows = (
            await session.execute(
                select(RegistryVersion.version, RegistrySchema.schema_type, RegistrySchema.schema)
                .join(RegistrySchema, RegistrySchema.id == RegistryVersion.schema_id)
                .where(RegistryVersion.subject == subject, RegistryVersion.deleted.is_(False))
                .order_by(RegistryVersion.version)
            )
        ).all()
        match = rows[-1:] if wanted == "latest" else [r for r in rows if r[0] == wanted]
        if not match:
            found[part] = SchemaInfo(subject, wanted, None)
            continue
        version, schema_type, text = match[0]
        document = orjson.loads(text) if schema_type == "JSON" else None
        found[part] = SchemaInfo(subject, wanted, version, schema_type, document)
    return found
