"""The routing, identity and access tables the request path reads.

Built from the store in one pass (`load_runtime_config`), immutable, and replaced as a
whole, so a request sees one consistent configuration from start to end and nothing on
the request path parses, compiles or queries configuration.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from gateway.access import Rule
from gateway.ratelimit import Limit
from gateway.registry.schema import Validator, compile_validator, parse
from gateway.store.models import (
    AccessRight,
    Agency,
    Client,
    Credential,
    Group,
    GroupMember,
    RateLimitRule,
    RegistrySchema,
    RegistryVersion,
    Service,
    Upstream,
)


@dataclass(frozen=True, slots=True)
class ClientEntry:
    code: str
    name: str
    agency_code: str
    enabled: bool
    groups: frozenset[str]
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CredentialEntry:
    id: int
    kind: str  # "secret" | "api_key"
    client_code: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class UpstreamEntry:
    name: str
    base_url: str
    auth: dict[str, str]


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    provider: str
    code: str
    version: str
    name: str
    upstream: UpstreamEntry
    upstream_url: str  # base URL + service path; the endpoint path is appended
    adapter: str
    timeout: aiohttp.ClientTimeout
    max_request_bytes: int
    max_response_bytes: int
    required_fields: tuple[str, ...]  # of "officer", "procedure", "case"
    audit_mode: str
    enabled: bool
    request_validator: Validator | None = None
    response_validator: Validator | None = None
    # Set when a schema the service names is missing from the registry: the service then
    # refuses exchanges rather than pass unvalidated messages.
    schema_error: str | None = None
    # Client code -> the rules that grant it something here (group rights expanded).
    rights: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    # Limits on the service as a whole, from every caller.
    limits: tuple[Limit, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.code, self.version)


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    services: dict[tuple[str, str, str], ServiceEntry]
    clients: dict[str, ClientEntry]
    # SHA-256 digest of a secret or API key -> the credential it belongs to (active only).
    credentials: dict[str, CredentialEntry]
    active_credential_ids: frozenset[int]
    # Credential id -> when it expires (epoch seconds), for those that do: a token dies
    # with its credential (a rotation's grace period ends for tokens too).
    credential_expiry: dict[int, float] = field(default_factory=dict)
    # Limits on a client wherever it calls, and on one client at one service.
    client_limits: dict[str, tuple[Limit, ...]] = field(default_factory=dict)
    pair_limits: dict[tuple[str, tuple[str, str, str]], tuple[Limit, ...]] = field(
        default_factory=dict
    )

    @classmethod
    def empty(cls) -> RuntimeConfig:
        return cls({}, {}, {}, frozenset())

    def limits_for(self, client: str, service: ServiceEntry) -> tuple[Limit, ...]:
        """Every limit an exchange of `client` with `service` counts against."""
        return (
            service.limits
            + self.client_limits.get(client, ())
            + self.pair_limits.get((client, service.key), ())
        )


# Compiled validators by schema fingerprint, kept across reloads: compiling is the costly
# part of a reload and a schema text never changes under its fingerprint.
_VALIDATORS: dict[tuple[str, str], Validator] = {}


def _validator(row: RegistrySchema) -> Validator:
    key = (row.schema_type, row.fingerprint)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = compile_validator(parse(row.schema_type, row.schema))
    return _VALIDATORS[key]


async def _registry_versions(
    session: AsyncSession, subjects: set[str]
) -> dict[str, list[tuple[int, RegistrySchema]]]:
    if not subjects:
        return {}
    rows = await session.execute(
        select(RegistryVersion.subject, RegistryVersion.version, RegistrySchema)
        .join(RegistrySchema, RegistrySchema.id == RegistryVersion.schema_id)
        .where(RegistryVersion.subject.in_(subjects), RegistryVersion.deleted.is_(False))
        .order_by(RegistryVersion.version)
    )
    found: dict[str, list[tuple[int, RegistrySchema]]] = defaultdict(list)
    for subject, version, row in rows.all():
        found[subject].append((version, row))
    return found


def _resolve(
    ref: dict[str, Any] | None, versions: dict[str, list[tuple[int, RegistrySchema]]]
) -> tuple[Validator | None, str | None]:
    if not ref:
        return None, None
    subject, wanted = ref["subject"], ref.get("version", "latest")
    available = versions.get(subject, [])
    match = available[-1:] if wanted == "latest" else [a for a in available if a[0] == wanted]
    if not match:
        return None, f"schema {subject} version {wanted} is not in the registry"
    return _validator(match[0][1]), None


@functools.lru_cache(maxsize=65536)
def _rule(method: str, path: str) -> Rule:
    # A regex per right; most reloads change few rights, so keep compiled ones.
    return Rule.compile(method, path)


_PER_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def _limit(r: RateLimitRule) -> Limit:
    rate = r.rate_requests / _PER_SECONDS[r.rate_per or "second"] if r.rate_requests else None
    if r.client_code and r.service_key:
        scope, subject = "client-service", f"{r.client_code}|{r.service_key}"
    elif r.client_code:
        scope, subject = "client", r.client_code
    else:
        scope, subject = "service", r.service_key or ""
    return Limit(
        scope=scope,  # type: ignore[arg-type]
        subject=subject,
        rate=rate,
        burst=r.burst or r.rate_requests or 1,
        quota_per_day=r.quota_per_day,
    )


def _service_key(key: str) -> tuple[str, str, str]:
    provider, code, version = key.split("/")
    return (provider, code, version)


def _join_url(base: str, path: str) -> str:
    path = path.strip("/")
    return base.rstrip("/") + ("/" + path if path else "")


async def load_runtime_config(sessions: async_sessionmaker[AsyncSession]) -> RuntimeConfig:
    async with sessions() as s:
        agencies = {a.id: a for a in (await s.scalars(select(Agency))).all()}
        groups = {g.id: g.code for g in (await s.scalars(select(Group))).all()}
        members = (await s.scalars(select(GroupMember))).all()
        clients_rows = (await s.scalars(select(Client))).all()
        creds = (await s.scalars(select(Credential).where(Credential.revoked_at.is_(None)))).all()
        upstreams = {u.id: u for u in (await s.scalars(select(Upstream))).all()}
        services_rows = (
            await s.scalars(select(Service).options(selectinload(Service.provider)))
        ).all()
        rights = (await s.scalars(select(AccessRight))).all()
        limit_rows = (await s.scalars(select(RateLimitRule))).all()
        schema_subjects = {
            ref["subject"]
            for svc in services_rows
            for ref in (svc.schemas or {}).values()
            if isinstance(ref, dict)
        }
        schema_versions = await _registry_versions(s, schema_subjects)

    client_groups: dict[int, set[str]] = defaultdict(set)
    for m in members:
        client_groups[m.client_id].add(groups[m.group_id])
    clients = {
        c.code: ClientEntry(
            code=c.code,
            name=c.name,
            agency_code=agencies[c.agency_id].code,
            enabled=c.enabled,
            groups=frozenset(client_groups[c.id]),
            roles=frozenset(c.roles or ()),
        )
        for c in clients_rows
    }
    client_code_by_id = {c.id: c.code for c in clients_rows}
    credentials = {
        cr.secret_sha256: CredentialEntry(
            cr.id, cr.kind, client_code_by_id[cr.client_id], cr.expires_at
        )
        for cr in creds
    }
    group_members: dict[str, list[str]] = defaultdict(list)
    for code, entry in clients.items():
        for g in entry.groups:
            group_members[g].append(code)

    rules_by_service: dict[int, dict[str, list[Rule]]] = defaultdict(lambda: defaultdict(list))
    for r in rights:
        rule = _rule(r.method, r.path)
        holders = [r.subject_code] if r.subject_kind == "client" else group_members[r.subject_code]
        for holder in holders:
            rules_by_service[r.service_id][holder].append(rule)

    service_limits: dict[tuple[str, str, str], list[Limit]] = defaultdict(list)
    client_limits: dict[str, list[Limit]] = defaultdict(list)
    pair_limits: dict[tuple[str, tuple[str, str, str]], list[Limit]] = defaultdict(list)
    for row in limit_rows:
        limit = _limit(row)
        if row.client_code and row.service_key:
            pair_limits[(row.client_code, _service_key(row.service_key))].append(limit)
        elif row.client_code:
            client_limits[row.client_code].append(limit)
        elif row.service_key:
            service_limits[_service_key(row.service_key)].append(limit)

    services: dict[tuple[str, str, str], ServiceEntry] = {}
    for svc in services_rows:
        up = upstreams[svc.upstream_id]
        required = tuple(
            name
            for name, flag in (
                ("officer", svc.require_officer),
                ("procedure", svc.require_procedure),
                ("case", svc.require_case),
            )
            if flag
        )
        schemas = svc.schemas or {}
        request_validator, request_error = _resolve(schemas.get("request"), schema_versions)
        response_validator, response_error = _resolve(schemas.get("response"), schema_versions)
        service_entry = ServiceEntry(
            provider=svc.provider.code,
            code=svc.code,
            version=svc.version,
            name=svc.name,
            upstream=UpstreamEntry(up.name, up.base_url, dict(up.auth or {})),
            upstream_url=_join_url(up.base_url, svc.upstream_path),
            adapter=svc.adapter,
            timeout=aiohttp.ClientTimeout(
                total=svc.timeout_ms / 1000, sock_connect=svc.connect_timeout_ms / 1000
            ),
            max_request_bytes=svc.max_request_bytes,
            max_response_bytes=svc.max_response_bytes,
            required_fields=required,
            audit_mode=svc.audit_mode,
            enabled=svc.enabled,
            request_validator=request_validator,
            response_validator=response_validator,
            schema_error=request_error or response_error,
            rights={k: tuple(v) for k, v in rules_by_service[svc.id].items()},
            limits=tuple(service_limits[(svc.provider.code, svc.code, svc.version)]),
        )
        services[service_entry.key] = service_entry
    return RuntimeConfig(
        services=services,
        clients=clients,
        credentials=credentials,
        active_credential_ids=frozenset(c.id for c in credentials.values()),
        credential_expiry={
            c.id: c.expires_at.timestamp() for c in credentials.values() if c.expires_at
        },
        client_limits={k: tuple(v) for k, v in client_limits.items()},
        pair_limits={k: tuple(v) for k, v in pair_limits.items()},
    )
