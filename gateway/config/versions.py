"""The province's configuration as one versioned state.

Policy files (`lgsp policy apply`), the admin API and the CLI's client commands all end
here, in `commit_policy`: the desired policy is compared with the current one, only the
differences are written, each change is recorded as an admin event (before and after),
and the whole document becomes a new policy version, in one transaction. Rollback is a
commit of an earlier version's document. Credentials are not policy: they are issued and
revoked on their own (gateway/admin/credentials.py) and never written to files.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.config.diff import Change, diff_documents
from gateway.config.policy import (
    DEFAULT_FAILURE_STATUSES,
    PolicySet,
    policy_document,
    with_mapping_digests,
)
from gateway.config.schema_refs import unregistered_schemas
from gateway.core.tls import client_context
from gateway.store.changes import config_version, record_all, serialize_changes
from gateway.store.jobs import Job
from gateway.store.models import (
    AccessRight,
    AdminEvent,
    Agency,
    Client,
    Credential,
    Group,
    GroupMember,
    PolicyVersion,
    RateLimitRule,
    Service,
    Topic,
    TrustedIssuer,
    Upstream,
)


class OutboundRules(Protocol):
    """What upstreams may reach and read (gateway.upstream.allowlist.OutboundPolicy)."""

    def check_url(self, url: str) -> None:
        """Raise ValueError saying what to change when `url` may not be called."""
        ...

    def secret_refusal(self, name: str) -> str | None:
        """Why an upstream may not read the variable `name` as its secret, or None."""
        ...


class PolicyRejected(ValueError):
    """The change cannot be made as asked; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class PolicyCommit:
    version: int | None  # None: nothing changed, no version made
    changes: list[Change]


# -- reading the current state ----------------------------------------------------------------


async def current_policy(session: AsyncSession) -> PolicySet:
    # Core rows, not ORM objects: a province's configuration has thousands of entities.
    agency_code = dict((await session.execute(select(Agency.id, Agency.code))).all())
    group_code = dict((await session.execute(select(Group.id, Group.code))).all())
    members: dict[int, list[str]] = defaultdict(list)
    for client_id, group_id in await session.execute(
        select(GroupMember.client_id, GroupMember.group_id)
    ):
        members[client_id].append(group_code[group_id])
    upstreams = (await session.execute(select(Upstream.__table__))).all()
    upstream_name = {u.id: u.name for u in upstreams}
    rights: dict[int, list[dict[str, str]]] = defaultdict(list)
    for service_id, kind, subject, method, path in await session.execute(
        select(
            AccessRight.service_id,
            AccessRight.subject_kind,
            AccessRight.subject_code,
            AccessRight.method,
            AccessRight.path,
        )
    ):
        rights[service_id].append({kind: subject, "method": method, "path": path})
    doc: dict[str, list[Any]] = {
        "agencies": [
            {"code": a.code, "name": a.name, "doc_code": a.doc_code}
            if a.doc_code
            else {"code": a.code, "name": a.name}
            for a in await session.execute(select(Agency.__table__))
        ],
        "groups": [
            {"code": g.code, "name": g.name} for g in await session.execute(select(Group.__table__))
        ],
        "clients": [
            {
                "code": c.code,
                "agency": agency_code[c.agency_id],
                "name": c.name,
                "groups": sorted(members[c.id]),
                "roles": sorted(c.roles or []),
                "enabled": c.enabled,
            }
            for c in await session.execute(select(Client.__table__))
        ],
        "upstreams": [_upstream_doc(u) for u in upstreams],
        "services": [
            {
                "provider": agency_code[s.provider_id],
                "code": s.code,
                "version": s.version,
                "name": s.name,
                "upstream": upstream_name[s.upstream_id],
                "upstream_path": s.upstream_path,
                "adapter": s.adapter,
                "adapter_config": dict(s.adapter_config or {}),
                "schemas": dict(s.schemas or {}),
                "timeouts": {"connect_ms": s.connect_timeout_ms, "total_ms": s.timeout_ms},
                "retries": {
                    "attempts": s.retry_attempts,
                    "backoff_ms": s.retry_backoff_ms,
                    "max_backoff_ms": s.retry_max_backoff_ms,
                },
                "upstream_failure_statuses": (
                    s.upstream_failure_statuses
                    if s.upstream_failure_statuses is not None
                    else list(DEFAULT_FAILURE_STATUSES)
                ),
                "limits": {
                    "max_request_bytes": s.max_request_bytes,
                    "max_response_bytes": s.max_response_bytes,
                },
                "require": [
                    name
                    for name, flag in (
                        ("officer", s.require_officer),
                        ("procedure", s.require_procedure),
                        ("case", s.require_case),
                    )
                    if flag
                ],
                "audit": s.audit_mode,
                "enabled": s.enabled,
                "access": rights[s.id],
                "adapter_mappings": s.adapter_mappings,
                "async_delivery": s.async_delivery,
            }
            for s in await session.execute(select(Service.__table__))
        ],
        "rate_limits": [
            _rate_limit_doc(r) for r in await session.execute(select(RateLimitRule.__table__))
        ],
        "issuers": [_issuer_doc(i) for i in await session.execute(select(TrustedIssuer.__table__))],
        "topics": [dict(d) for d in await session.scalars(select(Topic.document))],
        "jobs": [dict(d) for d in await session.scalars(select(Job.document))],
    }
    return PolicySet.model_validate(doc)


def _upstream_doc(u: Any) -> dict[str, Any]:
    return {
        "name": u.name,
        "base_url": u.base_url,
        "auth": dict(u.auth or {}),
        "circuit_breaker": {
            "failure_threshold": u.breaker_failure_threshold,
            "open_seconds": u.breaker_open_seconds,
            "half_open_requests": u.breaker_half_open_requests,
        },
        "max_concurrency": u.max_concurrency,
        "queue_timeout_ms": u.queue_timeout_ms,
    }


def _upstream_values(c: Change) -> dict[str, Any]:
    after = c.after or {}
    breaker = after.get("circuit_breaker") or {}
    return {
        "name": c.key,
        "base_url": after["base_url"],
        "auth": _auth(after),
        "breaker_failure_threshold": breaker["failure_threshold"],
        "breaker_open_seconds": breaker["open_seconds"],
        "breaker_half_open_requests": breaker["half_open_requests"],
        "max_concurrency": after["max_concurrency"],
        "queue_timeout_ms": after["queue_timeout_ms"],
    }


def _issuer_doc(i: Any) -> dict[str, Any]:
    return {
        "issuer": i.issuer,
        "jwks_url": i.jwks_url,
        "audience": i.audience,
        "algorithms": list(i.algorithms or []),
        "client": i.client_code,
        "max_token_lifetime_seconds": i.max_token_lifetime_seconds,
        "enabled": i.enabled,
    }


def _issuer_values(c: Change) -> dict[str, Any]:
    after = c.after or {}
    return {
        "issuer": c.key,
        "jwks_url": after["jwks_url"],
        "audience": after["audience"],
        "algorithms": sorted(after["algorithms"]),
        "client_code": after["client"],
        "max_token_lifetime_seconds": after["max_token_lifetime_seconds"],
        "enabled": after["enabled"],
    }


def _rate_limit_doc(r: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if r.client_code:
        doc["client"] = r.client_code
    if r.service_key:
        doc["service"] = r.service_key
    if r.rate_requests:
        doc["rate"] = {"requests": r.rate_requests, "per": r.rate_per or "second"}
        if r.burst:
            doc["rate"]["burst"] = r.burst
    if r.quota_per_day:
        doc["quota_per_day"] = r.quota_per_day
    return doc


# -- versions -----------------------------------------------------------------------------------


def encode_document(policy: PolicySet) -> tuple[bytes, str]:
    return _encode(policy_document(policy))


def _encode(doc: dict[str, Any]) -> tuple[bytes, str]:
    canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return zlib.compress(canonical, 6), hashlib.sha256(canonical).hexdigest()


def decode_document(blob: bytes) -> PolicySet:
    return PolicySet.model_validate(orjson.loads(zlib.decompress(blob)))


async def version_policy(session: AsyncSession, version: int) -> PolicySet:
    row = await session.get(PolicyVersion, version)
    if row is None:
        latest = await session.scalar(select(func.max(PolicyVersion.id)))
        raise PolicyRejected(
            f"no policy version {version}; versions run from 1 to {latest or 0} "
            "(lgsp policy history)"
        )
    return decode_document(row.document)


async def history(session: AsyncSession, *, limit: int = 50) -> list[PolicyVersion]:
    rows = await session.scalars(
        select(PolicyVersion).order_by(PolicyVersion.id.desc()).limit(limit)
    )
    return list(rows.all())


# -- committing a change ------------------------------------------------------------------------


async def commit_policy(
    session: AsyncSession,
    new: PolicySet,
    *,
    actor: str,
    source: str,
    comment: str | None = None,
    outbound: OutboundRules | None = None,
) -> PolicyCommit:
    """Make the stored configuration equal to `new`, as one new policy version.

    Things the current state has and `new` lacks are deleted (a client's credentials
    with it): the policy is the whole configuration, as decK and ADC treat theirs.
    `outbound` (the outbound allow-list) refuses upstream addresses the gateway may
    not call. Run inside the caller's transaction; nothing is written on refusal.
    """
    return await _commit(
        session,
        lambda _current: new,
        actor=actor,
        source=source,
        comment=comment,
        outbound=outbound,
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    current: PolicySet
    new: PolicySet
    changes: list[Change]
    document: bytes  # compressed canonical JSON of `new`
    digest: str


async def _plan(session: AsyncSession, desired: Callable[[PolicySet], PolicySet]) -> _Plan:
    # Everything costly happens here, before the lock: reading, validating, diffing and
    # compressing a province's configuration is ~1 s of CPU at 1000 services.
    current = await current_policy(session)
    # Stamped with the digests of the mapping files as they are now: an edited mapping
    # is a change of its services, recorded and reloaded like any other.
    new = with_mapping_digests(desired(current))
    new_doc = policy_document(new)
    changes = diff_documents(policy_document(current), new_doc)
    blob, digest = _encode(new_doc) if changes else (b"", "")
    return _Plan(current, new, changes, blob, digest)


async def _commit(
    session: AsyncSession,
    desired: Callable[[PolicySet], PolicySet],
    *,
    actor: str,
    source: str,
    comment: str | None,
    outbound: OutboundRules | None,
) -> PolicyCommit:
    # Read and diff before taking the configuration lock (on SQLite, the database's write
    # lock, which the audit writer needs too); take it only to write, and start over
    # under the lock if someone committed in between.
    seen = await config_version(session)
    plan = await _plan(session, desired)
    if plan.changes:
        await _check(session, plan.current, plan.new, outbound)
    await serialize_changes(session)
    if await config_version(session) != seen:
        plan = await _plan(session, desired)
        if plan.changes:
            await _check(session, plan.current, plan.new, outbound)
    changes = plan.changes
    if not changes:
        return PolicyCommit(None, [])
    await _write(session, plan.new, changes)
    await record_all(
        session,
        [
            AdminEvent(
                actor=actor,
                action=f"policy.{change.kind}",
                target=change.key,
                before=change.before,
                after=change.after,
                comment=comment,
            )
            for change in changes
        ],
    )
    version = PolicyVersion(
        actor=actor,
        source=source,
        comment=comment,
        digest=plan.digest,
        document=plan.document,
        changes=[c.summary for c in changes],
    )
    session.add(version)
    await session.flush()
    return PolicyCommit(version.id, changes)


async def rollback(
    session: AsyncSession,
    version: int,
    *,
    actor: str,
    comment: str | None = None,
    outbound: OutboundRules | None = None,
) -> PolicyCommit:
    """Return to an earlier version, as a new version (history only grows). The old
    document passes today's checks (schemas, addresses, an administrator left)."""
    target = await version_policy(session, version)
    note = f"rollback to version {version}" + (f": {comment}" if comment else "")
    return await commit_policy(
        session, target, actor=actor, source="rollback", comment=note, outbound=outbound
    )


async def _check(
    session: AsyncSession,
    old: PolicySet,
    new: PolicySet,
    outbound: OutboundRules | None,
) -> None:
    problems: list[str] = []
    if _administrators(old) and not _administrators(new):
        problems.append(
            "clients: the change leaves no enabled client with the administrator role; "
            "keep one (lgsp admin create makes one) so the gateway stays manageable"
        )
    if outbound is not None:
        problems += refused_upstreams(new, outbound)
    problems += unloadable_tls(new)
    problems += await unregistered_schemas(session, new)
    if problems:
        raise PolicyRejected("; ".join(problems))


def unloadable_tls(new: PolicySet) -> list[str]:
    """The upstreams whose client certificate, key or CA bundle cannot be loaded here."""
    problems: list[str] = []
    for i, u in enumerate(new.upstreams):
        if u.auth.client_cert or u.auth.ca_bundle:
            try:
                client_context(u.auth.client_cert, u.auth.client_key, u.auth.ca_bundle)
            except (OSError, ValueError) as e:
                problems.append(f"upstreams[{i}].auth: the TLS files could not be loaded: {e}")
    return problems


def refused_upstreams(new: PolicySet, outbound: OutboundRules) -> list[str]:
    """The upstream addresses (and absolute token URLs) and secret variables the
    outbound rules refuse."""
    problems: list[str] = []
    for i, u in enumerate(new.upstreams):
        urls = [("base_url", u.base_url)]
        if u.auth.token_url and not u.auth.token_url.startswith("/"):
            urls.append(("auth.token_url", u.auth.token_url))
        for field, url in urls:
            try:
                outbound.check_url(url)
            except ValueError as e:
                problems.append(f"upstreams[{i}].{field}: {e}")
        if u.auth.client_secret_env:
            refusal = outbound.secret_refusal(u.auth.client_secret_env)
            if refusal is not None:
                problems.append(f"upstreams[{i}].auth.client_secret_env: {refusal}")
    # An issuer's keys are fetched by the gateway: the same rules as any upstream call.
    for i, issuer in enumerate(new.issuers):
        try:
            outbound.check_url(issuer.jwks_url)
        except ValueError as e:
            problems.append(f"issuers[{i}].jwks_url: {e}")
    return problems


def _administrators(policy: PolicySet) -> list[str]:
    return [c.code for c in policy.clients if c.enabled and "administrator" in c.roles]


async def _ids(session: AsyncSession, model: Any, key: str) -> dict[str, int]:
    rows = await session.execute(select(getattr(model, key), model.id))
    return {k: i for k, i in rows.all()}


async def _service_ids(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Agency.code, Service.code, Service.version, Service.id).join(
            Agency, Agency.id == Service.provider_id
        )
    )
    return {f"{p}/{c}/{v}": i for p, c, v, i in rows.all()}


async def _put_rows(
    session: AsyncSession,
    model: Any,
    changes: list[Change],
    values: Callable[[Change], dict[str, Any]],
    ids: Callable[[], Any],
) -> dict[str, int]:
    """Insert the created rows in one statement, update the changed ones; return the
    key -> id map afterwards. One flush per kind, not per row: a first apply of a
    province's configuration is thousands of rows."""
    known: dict[str, int] = await ids()
    created = [values(c) for c in changes if c.key not in known]
    if created:
        await session.execute(insert(model), created)
    for c in changes:
        if c.key in known:
            await session.execute(update(model).where(model.id == known[c.key]).values(values(c)))
    return await ids() if created else known


async def _write(session: AsyncSession, new: PolicySet, changes: list[Change]) -> None:
    """Write the changes: creates and updates kind by kind (what others refer to first),
    then deletes in reverse order, as `diff` ordered them."""
    upserts: dict[str, list[Change]] = defaultdict(list)
    for ch in changes:
        if ch.op != "delete":
            upserts[ch.kind].append(ch)
    client_specs = {c.code: c for c in new.clients}
    service_specs = {s.key: s for s in new.services}

    agencies = await _put_rows(
        session,
        Agency,
        upserts["agency"],
        lambda c: {
            "code": c.key,
            "name": (c.after or {})["name"],
            "doc_code": (c.after or {}).get("doc_code"),
        },
        lambda: _ids(session, Agency, "code"),
    )
    groups = await _put_rows(
        session,
        Group,
        upserts["group"],
        lambda c: {"code": c.key, "name": (c.after or {})["name"]},
        lambda: _ids(session, Group, "code"),
    )

    def client_values(c: Change) -> dict[str, Any]:
        spec = client_specs[c.key]
        return {
            "code": spec.code,
            "agency_id": agencies[spec.agency],
            "name": spec.name,
            "enabled": spec.enabled,
            "roles": sorted(set(spec.roles)),
        }

    clients = await _put_rows(
        session, Client, upserts["client"], client_values, lambda: _ids(session, Client, "code")
    )
    written = [clients[c.key] for c in upserts["client"]]
    if written:
        await session.execute(delete(GroupMember).where(GroupMember.client_id.in_(written)))
        members = [
            {"group_id": groups[g], "client_id": clients[c.key]}
            for c in upserts["client"]
            for g in sorted(set(client_specs[c.key].groups))
        ]
        if members:
            await session.execute(insert(GroupMember), members)
    upstreams = await _put_rows(
        session,
        Upstream,
        upserts["upstream"],
        _upstream_values,
        lambda: _ids(session, Upstream, "name"),
    )

    def service_values(c: Change) -> dict[str, Any]:
        s = service_specs[c.key]
        return {
            "provider_id": agencies[s.provider],
            "code": s.code,
            "version": s.version,
            "name": s.name,
            "upstream_id": upstreams[s.upstream],
            "upstream_path": s.upstream_path,
            "adapter": s.adapter,
            "adapter_config": s.adapter_config,
            "schemas": s.schemas.model_dump(exclude_none=True),
            "connect_timeout_ms": s.timeouts.connect_ms,
            "timeout_ms": s.timeouts.total_ms,
            "retry_attempts": s.retries.attempts,
            "retry_backoff_ms": s.retries.backoff_ms,
            "retry_max_backoff_ms": s.retries.max_backoff_ms,
            "upstream_failure_statuses": sorted(set(s.upstream_failure_statuses)),
            "max_request_bytes": s.limits.max_request_bytes,
            "max_response_bytes": s.limits.max_response_bytes,
            "require_officer": "officer" in s.require,
            "require_procedure": "procedure" in s.require,
            "require_case": "case" in s.require,
            "audit_mode": s.audit,
            "enabled": s.enabled,
            "adapter_mappings": s.adapter_mappings,
            "async_delivery": (
                None if s.async_delivery is None else s.async_delivery.model_dump(mode="json")
            ),
        }

    services = await _put_rows(
        session, Service, upserts["service"], service_values, lambda: _service_ids(session)
    )
    rewritten = [services[c.key] for c in upserts["access"]]
    if rewritten:
        await session.execute(delete(AccessRight).where(AccessRight.service_id.in_(rewritten)))
        await session.execute(
            insert(AccessRight),
            [
                {
                    "service_id": services[c.key],
                    "subject_kind": kind,
                    "subject_code": subject,
                    "method": method,
                    "path": path,
                }
                for c in upserts["access"]
                for kind, subject, method, path in (c.after or {})["rights"]
            ],
        )
    limits = []
    for c in upserts["rate_limit"]:
        after = c.after or {}
        await _delete_rate_limit(session, after.get("client"), after.get("service"))
        rate = after.get("rate") or {}
        limits.append(
            {
                "client_code": after.get("client"),
                "service_key": after.get("service"),
                "rate_requests": rate.get("requests"),
                "rate_per": rate.get("per"),
                "burst": rate.get("burst"),
                "quota_per_day": after.get("quota_per_day"),
            }
        )
    if limits:
        await session.execute(insert(RateLimitRule), limits)
    await _put_rows(
        session,
        TrustedIssuer,
        upserts["issuer"],
        _issuer_values,
        lambda: _ids(session, TrustedIssuer, "issuer"),
    )
    topic_specs = {t.code: t for t in new.topics}
    await _put_rows(
        session,
        Topic,
        upserts["topic"],
        lambda c: {"code": c.key, "document": topic_specs[c.key].model_dump(mode="json")},
        lambda: _ids(session, Topic, "code"),
    )
    job_specs = {j.code: j for j in new.jobs}
    await _put_rows(
        session,
        Job,
        upserts["job"],
        lambda c: {"code": c.key, "document": job_specs[c.key].model_dump(mode="json")},
        lambda: _ids(session, Job, "code"),
    )
    for ch in changes:
        if ch.op == "delete":
            await _delete(session, ch, agencies, groups, clients, upstreams, services)
    await session.flush()


def _auth(upstream: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (upstream.get("auth") or {}).items() if v is not None}


async def _delete_rate_limit(
    session: AsyncSession, client: str | None, service: str | None
) -> None:
    await session.execute(
        delete(RateLimitRule).where(
            RateLimitRule.client_code.is_(None)
            if client is None
            else RateLimitRule.client_code == client,
            RateLimitRule.service_key.is_(None)
            if service is None
            else RateLimitRule.service_key == service,
        )
    )


async def _delete(
    session: AsyncSession,
    ch: Change,
    agencies: dict[str, int],
    groups: dict[str, int],
    clients: dict[str, int],
    upstreams: dict[str, int],
    services: dict[str, int],
) -> None:
    # Core deletes, so the database's ON DELETE CASCADE removes dependants (a client's
    # credentials and memberships, a service's rights) in the same statement.
    before = ch.before or {}
    if ch.kind == "issuer":
        await session.execute(delete(TrustedIssuer).where(TrustedIssuer.issuer == ch.key))
    elif ch.kind == "topic":
        await session.execute(delete(Topic).where(Topic.code == ch.key))
    elif ch.kind == "job":  # its state, runs and packages stay: history, not policy
        await session.execute(delete(Job).where(Job.code == ch.key))
    elif ch.kind == "rate_limit":
        await _delete_rate_limit(session, before.get("client"), before.get("service"))
    elif ch.kind == "access":
        await session.execute(delete(AccessRight).where(AccessRight.service_id == services[ch.key]))
    elif ch.kind == "service":
        await session.execute(delete(AccessRight).where(AccessRight.service_id == services[ch.key]))
        await session.execute(delete(Service).where(Service.id == services.pop(ch.key)))
    elif ch.kind == "upstream":
        await session.execute(delete(Upstream).where(Upstream.id == upstreams.pop(ch.key)))
    elif ch.kind == "client":
        client_id = clients.pop(ch.key)
        await session.execute(delete(Credential).where(Credential.client_id == client_id))
        await session.execute(delete(GroupMember).where(GroupMember.client_id == client_id))
        await session.execute(delete(Client).where(Client.id == client_id))
    elif ch.kind == "group":
        group_id = groups.pop(ch.key)
        await session.execute(delete(GroupMember).where(GroupMember.group_id == group_id))
        await session.execute(delete(Group).where(Group.id == group_id))
    elif ch.kind == "agency":
        await session.execute(delete(Agency).where(Agency.id == agencies.pop(ch.key)))


# -- conveniences over commit_policy ----------------------------------------------------------


async def apply_policy(
    session: AsyncSession,
    policy: PolicySet,
    *,
    actor: str,
    comment: str | None = None,
    source: str = "apply",
    outbound: OutboundRules | None = None,
) -> list[str]:
    """Commit a policy (from files, usually); return a line per change."""
    commit = await commit_policy(
        session, policy, actor=actor, source=source, comment=comment, outbound=outbound
    )
    return [c.summary for c in commit.changes]


async def edit_policy(
    session: AsyncSession,
    edit: Callable[[dict[str, Any]], None],
    *,
    actor: str,
    source: str,
    comment: str | None = None,
    outbound: OutboundRules | None = None,
) -> PolicyCommit:
    """Change one thing: `edit` modifies the current policy document in place; the result
    is validated as a whole (references, unknown fields) and committed as a new version.
    `edit` may run twice (again on fresh state if another change landed meanwhile)."""

    def edited(current: PolicySet) -> PolicySet:
        doc = policy_document(current)
        edit(doc)
        return PolicySet.model_validate(doc)

    return await _commit(
        session, edited, actor=actor, source=source, comment=comment, outbound=outbound
    )


async def create_client(
    session: AsyncSession,
    *,
    code: str,
    agency_code: str,
    name: str,
    actor: str,
    roles: list[str] | None = None,
    source: str = "cli",
) -> PolicyCommit:
    """Add a departmental system (or an admin caller, with roles) to the configuration."""

    def add(doc: dict[str, Any]) -> None:
        if not any(a["code"] == agency_code for a in doc["agencies"]):
            raise PolicyRejected(
                f"no agency {agency_code!r}; declare it in the policy files and apply them"
            )
        if any(c["code"] == code for c in doc["clients"]):
            raise PolicyRejected(f"client {code!r} already exists")
        doc["clients"].append(
            {"code": code, "agency": agency_code, "name": name, "roles": sorted(set(roles or []))}
        )

    return await edit_policy(session, add, actor=actor, source=source)
