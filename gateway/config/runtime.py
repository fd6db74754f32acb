"""The routing, identity and access tables the request path reads.

Built from the store in one pass (`load_runtime_config`), immutable, and replaced as a
whole, so a request sees one consistent configuration from start to end and nothing on
the request path parses, compiles or queries configuration.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.config.policy import DEFAULT_FAILURE_STATUSES, JobSpec
from gateway.conversion.catalogue import build_adapter, mapping_digest
from gateway.conversion.sdk import Adapter
from gateway.core.logging import log
from gateway.identity.access import Rule, is_allowed
from gateway.identity.directory import ClientEntry, CredentialEntry
from gateway.identity.issuers import IssuerEntry
from gateway.limits.ratelimit import Limit
from gateway.registry.schema import Validator, compile_validator, parse
from gateway.store.jobs import Job
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
    Topic,
    TrustedIssuer,
    Upstream,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 1  # 1: no retry
    backoff_ms: int = 50
    max_backoff_ms: int = 1000


NO_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5  # 0: no breaker
    open_seconds: float = 10.0
    half_open_requests: int = 1


DEFAULT_BREAKER = BreakerPolicy()


DEFAULT_FAILURES = frozenset(DEFAULT_FAILURE_STATUSES)


@dataclass(frozen=True, slots=True)
class UpstreamEntry:
    name: str
    base_url: str
    auth: dict[str, str]
    breaker: BreakerPolicy = DEFAULT_BREAKER
    max_concurrency: int = 100  # per worker process; 0: no limit
    queue_timeout: float = 0.0  # seconds a caller may wait for a slot


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
    # Who is granted what here: rules by client code and by group code.
    client_rights: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    group_rights: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    # Limits on the service as a whole, from every caller.
    limits: tuple[Limit, ...] = ()
    # The compiled adapter (None: passthrough, messages go as they are).
    adapter_impl: Adapter[Any] | None = None
    adapter_error: str | None = None
    # Retries of idempotent calls, within timeout.total.
    retry: RetryPolicy = NO_RETRY
    # Answer statuses that count as the upstream failing (the policy's
    # upstream_failure_statuses); the adapter may still call one a business answer.
    failure_statuses: frozenset[int] = DEFAULT_FAILURES
    # Store-and-forward: the calls (method, endpoint glob) answered 202 and delivered
    # later (policy `async_delivery`); empty: the service is synchronous.
    deferred: tuple[Rule, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.code, self.version)

    def defers(self, method: str, endpoint: str) -> bool:
        """Is this call stored and forwarded (async) rather than forwarded now?"""
        return bool(self.deferred) and is_allowed(self.deferred, method, endpoint)

    def grants(self, client: ClientEntry) -> bool:
        """Does `client` (or one of its groups) hold any right on this service?"""
        return client.code in self.client_rights or any(
            g in self.group_rights for g in client.groups
        )

    def allows(self, client: ClientEntry, method: str, endpoint: str) -> bool:
        """Deny unless a right of the client, or of one of its groups, grants this call."""
        if is_allowed(self.client_rights.get(client.code, ()), method, endpoint):
            return True
        for group in client.groups:
            rules = self.group_rights.get(group)
            if rules is not None and is_allowed(rules, method, endpoint):
                return True
        return False


@dataclass(frozen=True, slots=True)
class TopicEntry:
    """A topic of events as the events API reads it (gateway/events/)."""

    code: str
    name: str
    provider: str
    publishers: frozenset[str]
    max_event_bytes: int
    enabled: bool
    # Who may subscribe or pull: client codes and group codes (deny by default).
    subscriber_clients: frozenset[str] = frozenset()
    subscriber_groups: frozenset[str] = frozenset()
    validator: Validator | None = None
    schema_error: str | None = None  # the schema it names is missing: publishing refused

    def may_publish(self, client: ClientEntry) -> bool:
        """Is `client` one of the topic's publishers?"""
        return client.code in self.publishers

    def may_subscribe(self, client: ClientEntry) -> bool:
        """Does `client`, or one of its groups, hold the right to this topic's events?"""
        return client.code in self.subscriber_clients or not client.groups.isdisjoint(
            self.subscriber_groups
        )


@dataclass(frozen=True, slots=True)
class JobEntry:
    """A scheduled pull as the scheduler and the bulk API read it (gateway/events/jobs.py)."""

    spec: JobSpec
    # Who may download its packages: client codes and group codes (deny by default).
    downloader_clients: frozenset[str] = frozenset()
    downloader_groups: frozenset[str] = frozenset()

    @property
    def code(self) -> str:
        return self.spec.code

    def may_download(self, client: ClientEntry) -> bool:
        """Does `client`, or one of its groups, hold the right to this job's packages?"""
        return client.code in self.downloader_clients or not client.groups.isdisjoint(
            self.downloader_groups
        )


def _job(doc: dict[str, Any]) -> JobEntry:
    spec = JobSpec.model_validate(doc)
    access = spec.output.package.access if spec.output.package else []
    return JobEntry(
        spec,
        frozenset(a.client for a in access if a.client),
        frozenset(a.group for a in access if a.group),
    )


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
    # External token issuers the gateway trusts, by their `iss`.
    issuers: dict[str, IssuerEntry] = field(default_factory=dict)
    topics: dict[str, TopicEntry] = field(default_factory=dict)
    jobs: dict[str, JobEntry] = field(default_factory=dict)

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


def _deferred(spec: dict[str, Any] | None) -> tuple[Rule, ...]:
    if not spec:
        return ()
    return tuple(_rule(r.get("method", "POST"), r.get("path", "/**")) for r in spec["requests"])


@functools.lru_cache(maxsize=65536)
def _rule(method: str, path: str) -> Rule:
    # A regex per right; most reloads change few rights, so keep compiled ones.
    return Rule.compile(method, path)


_PER_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def _limit(r: Any) -> Limit:
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


def _adapter(svc: Any, digests: dict[str, str | None]) -> tuple[Adapter[Any] | None, str | None]:
    """The service's adapter, built from its mapping files as they are now (read once per
    adapter and reload: `digests`), so an edited mapping is compiled again."""
    name = svc.adapter
    if name not in digests:
        try:
            digests[name] = mapping_digest(name)
        except OSError as e:
            return None, f"adapter {name!r}: its mapping files cannot be read: {e}"
    digest = digests[name]
    if svc.adapter_mappings is not None and digest != svc.adapter_mappings:
        # Files changed on this host since `policy apply` validated them (or this host
        # has others): they still compile here, but say so.
        log.warning(
            "adapter mapping files differ from those validated by policy apply",
            adapter=name,
            service=f"{svc.code}/{svc.version}",
            validated=svc.adapter_mappings[:12],
            found=(digest or "none")[:12],
        )
    try:
        return build_adapter(name, svc.adapter_config or {}, digest), None
    except Exception as e:  # a service with a broken adapter refuses; the rest still load
        return None, f"adapter {name!r} could not be loaded: {e}"


def _join_url(base: str, path: str) -> str:
    path = path.strip("/")
    return base.rstrip("/") + ("/" + path if path else "")


def _upstream_entry(u: Any) -> UpstreamEntry:
    return UpstreamEntry(
        u.name,
        u.base_url,
        dict(u.auth or {}),
        breaker=BreakerPolicy(
            failure_threshold=u.breaker_failure_threshold,
            open_seconds=float(u.breaker_open_seconds),
            half_open_requests=u.breaker_half_open_requests,
        ),
        max_concurrency=u.max_concurrency,
        queue_timeout=u.queue_timeout_ms / 1000,
    )


def _retry(svc: Any) -> RetryPolicy:
    if svc.retry_attempts <= 1:
        return NO_RETRY  # shared: most services never retry
    return RetryPolicy(svc.retry_attempts, svc.retry_backoff_ms, svc.retry_max_backoff_ms)


def _failure_statuses(statuses: list[int] | None) -> frozenset[int]:
    if statuses is None:
        return DEFAULT_FAILURES  # shared: most services keep the default
    found = frozenset(statuses)
    return DEFAULT_FAILURES if found == DEFAULT_FAILURES else found


# Yield to the event loop this often while building, so a big configuration never holds
# requests up for more than a few milliseconds at a time.
_YIELD_EVERY = 200


async def load_runtime_config(sessions: async_sessionmaker[AsyncSession]) -> RuntimeConfig:
    # Core rows, not ORM objects: a province has thousands of clients, and the build
    # runs on the loop that serves requests.
    async with sessions() as s:
        agency_code = dict((await s.execute(select(Agency.id, Agency.code))).all())
        group_code = dict((await s.execute(select(Group.id, Group.code))).all())
        members = (await s.execute(select(GroupMember.client_id, GroupMember.group_id))).all()
        clients_rows = (await s.execute(select(Client.__table__))).all()
        creds = (
            await s.execute(
                select(
                    Credential.id,
                    Credential.kind,
                    Credential.client_id,
                    Credential.secret_sha256,
                    Credential.expires_at,
                ).where(Credential.revoked_at.is_(None))
            )
        ).all()
        upstreams = {u.id: u for u in (await s.execute(select(Upstream.__table__))).all()}
        services_rows = (await s.execute(select(Service.__table__))).all()
        rights = (
            await s.execute(
                select(
                    AccessRight.service_id,
                    AccessRight.subject_kind,
                    AccessRight.subject_code,
                    AccessRight.method,
                    AccessRight.path,
                )
            )
        ).all()
        limit_rows = (await s.execute(select(RateLimitRule.__table__))).all()
        issuer_rows = (await s.execute(select(TrustedIssuer.__table__))).all()
        topic_docs = list(await s.scalars(select(Topic.document)))
        job_docs = list(await s.scalars(select(Job.document)))
        schema_subjects = {
            ref["subject"]
            for svc in services_rows
            for ref in (svc.schemas or {}).values()
            if isinstance(ref, dict)
        } | {d["event_schema"]["subject"] for d in topic_docs if d.get("event_schema")}
        schema_versions = await _registry_versions(s, schema_subjects)

    client_groups: dict[int, set[str]] = defaultdict(set)
    for client_id, group_id in members:
        client_groups[client_id].add(group_code[group_id])
    clients: dict[str, ClientEntry] = {}
    for i, c in enumerate(clients_rows):
        clients[c.code] = ClientEntry(
            code=c.code,
            name=c.name,
            agency_code=agency_code[c.agency_id],
            enabled=c.enabled,
            groups=frozenset(client_groups[c.id]),
            roles=frozenset(c.roles or ()),
        )
        if i % (_YIELD_EVERY * 10) == 0:
            await asyncio.sleep(0)
    client_code_by_id = {c.id: c.code for c in clients_rows}
    credentials = {
        cr.secret_sha256: CredentialEntry(
            cr.id, cr.kind, client_code_by_id[cr.client_id], cr.expires_at
        )
        for cr in creds
    }

    # Rights stay keyed by who holds them (a client or a group): expanding group rights
    # per member would multiply them by the group sizes.
    rules_by_service: dict[int, tuple[dict[str, list[Rule]], dict[str, list[Rule]]]] = defaultdict(
        lambda: (defaultdict(list), defaultdict(list))
    )
    for service_id, kind, subject, method, path in rights:
        by_client, by_group = rules_by_service[service_id]
        (by_client if kind == "client" else by_group)[subject].append(_rule(method, path))

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
    digests: dict[str, str | None] = {}  # adapter -> its mapping files' digest, this build
    upstream_entries = {i: _upstream_entry(u) for i, u in upstreams.items()}
    for i, svc in enumerate(services_rows):
        if i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        up = upstream_entries[svc.upstream_id]
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
        provider = agency_code[svc.provider_id]
        by_client, by_group = rules_by_service.get(svc.id, ({}, {}))
        adapter_impl, adapter_error = _adapter(svc, digests)
        service_entry = ServiceEntry(
            provider=provider,
            code=svc.code,
            version=svc.version,
            name=svc.name,
            upstream=up,
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
            client_rights={k: tuple(v) for k, v in by_client.items()},
            group_rights={k: tuple(v) for k, v in by_group.items()},
            limits=tuple(service_limits[(provider, svc.code, svc.version)]),
            adapter_impl=adapter_impl,
            adapter_error=adapter_error,
            retry=_retry(svc),
            failure_statuses=_failure_statuses(svc.upstream_failure_statuses),
            deferred=_deferred(svc.async_delivery),
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
        issuers={
            i.issuer: IssuerEntry(
                issuer=i.issuer,
                jwks_url=i.jwks_url,
                audience=i.audience,
                algorithms=tuple(i.algorithms or ()),
                client_code=i.client_code,
                max_lifetime=i.max_token_lifetime_seconds,
                enabled=i.enabled,
            )
            for i in issuer_rows
        },
        topics={d["code"]: _topic(d, schema_versions) for d in topic_docs},
        jobs={d["code"]: _job(d) for d in job_docs},
    )


def _topic(
    doc: dict[str, Any], versions: dict[str, list[tuple[int, RegistrySchema]]]
) -> TopicEntry:
    validator, error = _resolve(doc.get("event_schema"), versions)
    access = doc.get("access") or []
    return TopicEntry(
        code=doc["code"],
        name=doc["name"],
        provider=doc["provider"],
        publishers=frozenset(doc.get("publishers") or ()),
        max_event_bytes=int(doc.get("max_event_bytes") or 256 * 1024),
        enabled=bool(doc.get("enabled", True)),
        subscriber_clients=frozenset(a["client"] for a in access if a.get("client")),
        subscriber_groups=frozenset(a["group"] for a in access if a.get("group")),
        validator=validator,
        schema_error=error,
    )
