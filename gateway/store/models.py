"""SQLAlchemy 2 models. Portable between SQLite (default) and PostgreSQL (production).

Timestamps are stored as timezone-aware UTC. JSON columns hold adapter and upstream
settings that the policy files validate before they get here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. SQLite keeps no zone and hands back naive values,
    which Python would then read as local time: 7 hours off in Vietnam."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Agency(Base):
    """A public body, by its official agency code (Decision 20/2020/QĐ-TTg)."""

    __tablename__ = "agencies"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(35), unique=True)
    # Document-exchange code (QCVN 102:2016), e.g. 000.00.31.H26; systems often carry both.
    doc_code: Mapped[str | None] = mapped_column(String(13))
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    systems: Mapped[list[Client]] = relationship(back_populates="agency")


class Client(Base):
    """A departmental system that calls the gateway (X-Road: a subsystem)."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Administrative roles (administrator, operator, auditor, observer); most systems have none.
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    agency: Mapped[Agency] = relationship(back_populates="systems")
    credentials: Mapped[list[Credential]] = relationship(back_populates="client")


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )


class Credential(Base):
    """A client secret (for the token endpoint), an API key, or a pinned client certificate.
    Only a SHA-256 digest of a secret or key is kept: both are 256-bit random values the
    gateway generated, so a slow hash adds nothing."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "secret" | "api_key" | "certificate"
    # For a certificate: the digest of its pin (gateway/core/tls.py), looked up the same way.
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # A certificate's pin as given ("spki-sha256:<hex>" or "subject:<DN>"): no secret, shown
    # in listings (migration 0023); None for secrets and API keys.
    pin: Mapped[str | None] = mapped_column(String(1024))
    # First characters of the value, to tell credentials apart in listings without exposing it.
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    client: Mapped[Client] = relationship(back_populates="credentials")


class Upstream(Base):
    """A provider's system the gateway forwards to, with how the gateway authenticates to it."""

    __tablename__ = "upstreams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    base_url: Mapped[str] = mapped_column(String(2048))
    # {"type": "none"} or {"type": "oauth2_client_credentials", "token_url", "client_id",
    #  "client_secret_env"}: the secret itself is never stored, only where to read it.
    auth: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Circuit breaker and concurrency limit (policy `circuit_breaker`, `max_concurrency`,
    # `queue_timeout_ms`); server defaults so rows from before migration 0006 get them.
    breaker_failure_threshold: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    breaker_open_seconds: Mapped[float] = mapped_column(Float, default=10.0, server_default="10")
    breaker_half_open_requests: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    max_concurrency: Mapped[int] = mapped_column(Integer, default=100, server_default="100")
    queue_timeout_ms: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Service(Base):
    """A service a provider publishes through the gateway, addressed as
    /r1/{provider agency code}/{service code}/{version}/{endpoint path}."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("provider_id", "code", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("agencies.id", ondelete="RESTRICT"))
    code: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    upstream_id: Mapped[int] = mapped_column(ForeignKey("upstreams.id", ondelete="RESTRICT"))
    upstream_path: Mapped[str] = mapped_column(String(1024), default="")
    adapter: Mapped[str] = mapped_column(String(64), default="passthrough")
    # {"request": {"subject", "version"}, "response": {...}}: validated in the pipeline.
    schemas: Mapped[dict[str, Any]] = mapped_column(default=dict)
    adapter_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    connect_timeout_ms: Mapped[int] = mapped_column(Integer, default=2000)
    timeout_ms: Mapped[int] = mapped_column(Integer, default=10000)
    # Retries of idempotent calls (policy `retries`), within timeout_ms.
    retry_attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    retry_backoff_ms: Mapped[int] = mapped_column(Integer, default=50, server_default="50")
    retry_max_backoff_ms: Mapped[int] = mapped_column(Integer, default=1000, server_default="1000")
    # The answers' statuses that count as the upstream failing (breaker, retries); NULL:
    # the default, 502, 503 and 504 (migration 0013).
    upstream_failure_statuses: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    # SHA-256 of the adapter's mapping files validated when the policy was applied.
    adapter_mappings: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Store-and-forward ({"requests": [{"method", "path"}]}); NULL: synchronous (0021).
    async_delivery: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    max_request_bytes: Mapped[int] = mapped_column(Integer, default=1024 * 1024)
    max_response_bytes: Mapped[int] = mapped_column(Integer, default=10 * 1024 * 1024)
    require_officer: Mapped[bool] = mapped_column(Boolean, default=False)
    require_procedure: Mapped[bool] = mapped_column(Boolean, default=False)
    require_case: Mapped[bool] = mapped_column(Boolean, default=False)
    audit_mode: Mapped[str] = mapped_column(String(16), default="fail_closed")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    provider: Mapped[Agency] = relationship()
    upstream: Mapped[Upstream] = relationship()


class AccessRight(Base):
    """Grants one client or group a service, or one endpoint of it (method + path glob)."""

    __tablename__ = "access_rights"
    __table_args__ = (
        UniqueConstraint("service_id", "subject_kind", "subject_code", "method", "path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    subject_kind: Mapped[str] = mapped_column(String(8))  # "client" | "group"
    subject_code: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16), default="*")
    path: Mapped[str] = mapped_column(String(1024), default="/**")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateLimitRule(Base):
    """A rate limit and/or daily quota (policy `rate_limits`): for a client, a service
    ("provider/code/version"), or the pair. Named by codes, like access rights."""

    __tablename__ = "rate_limits"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_code: Mapped[str | None] = mapped_column(String(64))
    service_key: Mapped[str | None] = mapped_column(String(128))
    rate_requests: Mapped[int | None] = mapped_column(Integer)
    rate_per: Mapped[str | None] = mapped_column(String(8))  # second | minute | hour
    burst: Mapped[int | None] = mapped_column(Integer)
    quota_per_day: Mapped[int | None] = mapped_column(Integer)


class TrustedIssuer(Base):
    """An external token issuer the gateway trusts (policy `issuers`): the national
    platform, say. Its tokens make the caller the client `client_code` (by code, like
    rate limits; the policy checks it exists)."""

    __tablename__ = "trusted_issuers"

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255), unique=True)
    jwks_url: Mapped[str] = mapped_column(String(2048))
    audience: Mapped[str] = mapped_column(String(255))
    algorithms: Mapped[list[str]] = mapped_column(JSON, default=list)
    client_code: Mapped[str] = mapped_column(String(64))
    max_token_lifetime_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    enabled: Mapped[bool] = mapped_column(default=True)


class PolicyVersion(Base):
    """Every version of the declarative configuration: the whole document as applied
    (zlib-compressed canonical JSON), who applied it, why, and what it changed. Files,
    admin API and CLI all make versions here; rollback applies an old document again."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(primary_key=True)  # the policy version number
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(32))  # apply | admin-api | cli | rollback
    comment: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical JSON
    document: Mapped[bytes] = mapped_column(LargeBinary)
    changes: Mapped[list[str]] = mapped_column(JSON, default=list)


class AuditRecord(Base):
    """One exchange, whatever its outcome. Accountability fields follow docs/domain.md §3."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_started_at", "started_at"),
        Index("ix_audit_request_id", "request_id"),
        Index("ix_audit_client_started", "client_code", "started_at"),
        Index("ix_audit_service_started", "provider_code", "service_code", "started_at"),
        Index("ix_audit_instance_seq", "instance", "seq"),
        Index("ix_audit_records_intent_id", "intent_id"),
        # The auditors' console searches by these (migration 0020; bench/console_audit.py).
        Index("ix_audit_case_started", "case_number", "started_at"),
        Index("ix_audit_officer_started", "officer_id", "started_at"),
        Index("ix_audit_agency_started", "client_agency_code", "started_at"),
        # The auditor API's search by agency and service (migration 0026; bench/audit_search.py).
        Index(
            "ix_audit_agency_service_started", "client_agency_code", "service_code", "started_at"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    request_id: Mapped[str] = mapped_column(String(128))
    trace_id: Mapped[str | None] = mapped_column(String(32))
    instance: Mapped[str] = mapped_column(String(128))
    client_code: Mapped[str | None] = mapped_column(String(64))
    client_agency_code: Mapped[str | None] = mapped_column(String(35))
    auth_method: Mapped[str | None] = mapped_column(String(16))
    provider_code: Mapped[str | None] = mapped_column(String(35))
    service_code: Mapped[str | None] = mapped_column(String(64))
    service_version: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    officer_id: Mapped[str | None] = mapped_column(String(64))
    procedure_code: Mapped[str | None] = mapped_column(String(64))
    case_number: Mapped[str | None] = mapped_column(String(128))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime] = mapped_column()
    duration_ms: Mapped[float] = mapped_column()
    upstream_ms: Mapped[float | None] = mapped_column()
    request_bytes: Mapped[int] = mapped_column(Integer, default=0)
    response_bytes: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer)
    upstream_status: Mapped[int | None] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    response_sha256: Mapped[str | None] = mapped_column(String(64))
    # The instance's hash chain (gateway/audit/chain.py); null only on rows from before it.
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    # The adapter that converted the exchange and its VERSION (migration 0007, last so that
    # exports keep the columns they had in their places); null for passthrough.
    adapter: Mapped[str | None] = mapped_column(String(64))
    adapter_version: Mapped[str | None] = mapped_column(String(32))
    # Two-phase exchanges (migration 0008): "intent" or "outcome", and the outcome's intent.
    phase: Mapped[str | None] = mapped_column(String(8))
    intent_id: Mapped[str | None] = mapped_column(String(36))
    # The external issuer of the caller's token (migration 0015); null for the gateway's
    # own tokens and API keys.
    issuer: Mapped[str | None] = mapped_column(String(255))
    # A converted exchange's other side (migration 0018): what went to the provider after
    # conversion and what the caller received; null for passthrough.
    provider_request_sha256: Mapped[str | None] = mapped_column(String(64))
    caller_response_sha256: Mapped[str | None] = mapped_column(String(64))


class AuditSubject(Base):
    """Whose data an exchange touched, as a keyed hash (gateway/audit/subjects.py): one
    row per personal identifier an exchange carried, never the identifier itself."""

    __tablename__ = "audit_subjects"
    __table_args__ = (
        Index("ix_audit_subjects_subject_started", "subject", "started_at"),
        # Retention deletes a purged record's rows by it (migration 0026).
        Index("ix_audit_subjects_event_id", "event_id"),
    )

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)  # HMAC-SHA256, hex
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    started_at: Mapped[datetime] = mapped_column()


class AuditStat(Base):
    """The statistics roll-up (gateway/audit/stats.py, migration 0024): exchanges and the
    sum of their durations per Vietnam-time day, agency, service, procedure and outcome,
    kept with the records in the transaction that writes or purges them. A missing code
    is ''."""

    __tablename__ = "audit_stats"
    # A month's statistics from the index alone on PostgreSQL (migration 0026).
    __table_args__ = (
        Index(
            "ix_audit_stats_day_covering",
            "day",
            postgresql_include=["agency", "service", "procedure", "outcome", "n", "duration_ms"],
        ),
    )

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC+7
    agency: Mapped[str] = mapped_column(String(35), primary_key=True)
    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    procedure: Mapped[str] = mapped_column(String(64), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(8), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[float] = mapped_column()  # the sum, for the mean


class AuditCheckpoint(Base):
    """A gateway instance's signed statement that its chain reached `seq` with `hash`."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (UniqueConstraint("instance", "seq", "key_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column()
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class AuditTreeHead(Base):
    """A signed tlog checkpoint over an instance's Merkle tree (gateway/audit/tlog.py):
    the C2SP note as signed, and the tree's right edge so the next one grows from it."""

    __tablename__ = "audit_tree_heads"
    __table_args__ = (UniqueConstraint("instance", "size"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance: Mapped[str] = mapped_column(String(128))
    origin: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(64))  # hex
    note: Mapped[str] = mapped_column(Text)  # the checkpoint with the log's signature
    frontier: Mapped[list[str]] = mapped_column(JSON)  # hex, largest subtree first
    key_id: Mapped[str] = mapped_column(String(64))  # the AuditSigningKey that signed
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditTreeNode(Base):
    """A complete subtree of 2**level leaves (level >= 8) of an instance's tree, starting
    at leaf position * 2**level: proofs at ten million leaves read these, not leaves."""

    __tablename__ = "audit_tree_nodes"

    instance: Mapped[str] = mapped_column(String(128), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))  # hex


class AuditCosignature(Base):
    """A witness's cosignature line on a tree head (c2sp.org/tlog-cosignature)."""

    __tablename__ = "audit_cosignatures"
    __table_args__ = (UniqueConstraint("tree_head_id", "witness"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tree_head_id: Mapped[int] = mapped_column(ForeignKey("audit_tree_heads.id"))
    witness: Mapped[str] = mapped_column(String(255))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditSigningKey(Base):
    """Public keys that audit checkpoints may be signed with, registered by each instance
    at start. Verification trusts these (or keys the auditor supplies)."""

    __tablename__ = "audit_signing_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(String(128))  # raw Ed25519, base64url
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditFinding(Base):
    """Something wrong with the audit trail: a gap, a broken link, an altered record, a bad
    signature, a corrupted spool. Findings are never deleted; a gap later filled by a late
    event is marked resolved."""

    __tablename__ = "audit_findings"
    __table_args__ = (Index("ix_audit_findings_instance", "instance", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    found_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(32))  # indexer | gateway | verify
    instance: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    seq_from: Mapped[int | None] = mapped_column(BigInteger)
    seq_to: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column()


class AuditPurge(Base):
    """What retention removed: how many records, which time range, and for each instance
    the last purged link of its chain, from which verification of the rest starts."""

    __tablename__ = "audit_purges"

    id: Mapped[int] = mapped_column(primary_key=True)
    purged_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    cutoff: Mapped[datetime] = mapped_column()
    count: Mapped[int] = mapped_column(BigInteger)
    first_started_at: Mapped[datetime | None] = mapped_column()
    last_started_at: Mapped[datetime | None] = mapped_column()
    # {instance: {"seq": n, "hash": "..."}}
    heads: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuditRead(Base):
    """Every read of the audit log through the auditor API: who looked at what, and
    whether personal identifiers were shown unmasked."""

    __tablename__ = "audit_reads"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))  # search | record | export | stats | verify
    query: Mapped[dict[str, Any]] = mapped_column(default=dict)
    unmasked: Mapped[bool] = mapped_column(Boolean, default=False)
    records: Mapped[int] = mapped_column(Integer, default=0)
    request_id: Mapped[str | None] = mapped_column(String(128))


class ConfigState(Base):
    """One row: the configuration version. Every admin transaction increments it; the row
    lock makes versions follow commit order, so a gateway that polls it never misses a
    change committed out of order."""

    __tablename__ = "config_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class AdminEvent(Base):
    """Every change to configuration or credentials: who, when, what, before and after."""

    __tablename__ = "admin_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(Text)


class RegistrySchema(Base):
    """A schema text, registry-wide: the same schema under two subjects has one id."""

    __tablename__ = "registry_schemas"
    __table_args__ = (UniqueConstraint("schema_type", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    schema_type: Mapped[str] = mapped_column(String(16))  # "JSON" | "XML"
    schema: Mapped[str] = mapped_column(Text)
    # SHA-256 of the canonical form, so reformatting a schema does not make a new one.
    fingerprint: Mapped[str] = mapped_column(String(64))


class RegistryVersion(Base):
    """Version N of a subject. Soft-deleted versions stay until deleted permanently."""

    __tablename__ = "registry_versions"
    __table_args__ = (UniqueConstraint("subject", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer)
    schema_id: Mapped[int] = mapped_column(ForeignKey("registry_schemas.id", ondelete="RESTRICT"))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistryMode(Base):
    """Read-write or read-only, registry-wide (subject "") or for one subject (Confluent's
    /mode; migration 0009)."""

    __tablename__ = "registry_modes"

    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    mode: Mapped[str] = mapped_column(String(32))


class RegistryConfig(Base):
    """Compatibility level, registry-wide (subject "") or for one subject."""

    __tablename__ = "registry_config"

    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    compatibility: Mapped[str] = mapped_column(String(32))


class Account(Base):
    """A person who signs in to the console (migration 0011): an argon2id password hash,
    a TOTP secret (RFC 6238), the roles the admin API knows, and the lock-out state."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str] = mapped_column(String(64))
    # The last TOTP time step accepted: a code is good once (RFC 6238 §5.2).
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed sign-ins
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A password the gateway generated (create, reset) is for one sign-in: then the
    # person chooses their own.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # Signed in through the province's OpenID provider (migration 0019): "<issuer> <sub>",
    # the only thing an IdP's sign-in is matched on (never the name); None for local ones.
    external_subject: Mapped[str | None] = mapped_column(String(512), unique=True, default=None)


class ConsoleSession(Base):
    """A console session, server-side: the cookie carries a random token whose SHA-256 is
    `id`. `stage` is "password" between the two factors, "signed-in" after both."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_account", "account_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(16))
    csrf: Mapped[str] = mapped_column(String(64))  # the synchronizer token of its forms
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The WebAuthn challenge the session's page was given (migration 0019), good once.
    challenge: Mapped[str | None] = mapped_column(String(128), nullable=True, default=None)


class Passkey(Base):
    """A WebAuthn credential (a passkey) of an account, a second factor beside TOTP
    (migration 0019): its id, its COSE public key, and the authenticator's counter."""

    __tablename__ = "passkeys"
    __table_args__ = (Index("ix_passkeys_account", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True, default=None)


# -- events: topics, published events, subscriptions and their deliveries (migration 0016) --


class Topic(Base):
    """A topic of events, as the policy declares it (gateway/config/policy.py TopicSpec):
    the entity's whole policy form, kept as one document."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventRecord(Base):
    """One published event. `id` orders a topic's events: it is the pull cursor."""

    __tablename__ = "event_records"
    __table_args__ = (Index("ix_event_records_topic_id", "topic", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    topic: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(128))
    key: Mapped[str | None] = mapped_column(String(255))
    publisher: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The event as delivered (the webhook body): JSON bytes, signed as they are.
    body: Mapped[bytes] = mapped_column(LargeBinary)


class EventSubscription(Base):
    """A departmental system's subscription to a topic: where to push, what to push."""

    __tablename__ = "event_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(64), index=True)
    client_code: Mapped[str] = mapped_column(String(64))
    callback_url: Mapped[str] = mapped_column(String(2048))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The signing secret, AES-GCM encrypted with the gateway's events key
    # (gateway/events/secrets.py): shown once when created, usable for signing, never read back.
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    secret_hint: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


class EventDelivery(Base):
    """One event to one subscription: pending until delivered, or dead after the retry
    window. A worker claims one by setting its lease; per (subscription, key) only the
    oldest pending delivery is claimable, so each key is delivered in order."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        Index("ix_event_deliveries_due", "state", "next_attempt_at"),
        # With `state`: "is an earlier delivery of this key still pending?" is one index
        # seek, not a walk over the key's whole delivered history (migration 0021).
        Index(
            "ix_event_deliveries_pending_order",
            "subscription_id",
            "order_key",
            "state",
            "event_seq",
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("event_subscriptions.id", ondelete="CASCADE")
    )
    event_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("event_records.id", ondelete="CASCADE"),
    )
    order_key: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="pending")  # delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the retry window started: at publish, or at an operator's replay.
    since: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column()
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    settled_at: Mapped[datetime | None] = mapped_column()


class DeferredMessage(Base):
    """A call to an async service (store-and-forward): accepted with 202, kept until the
    provider has answered (or its retry window is over), with the answer for the caller.

    `state`: held (accepted, its audit record not yet durable: never sent), pending (to
    be sent; leased like an event delivery), answered (the provider's answer is kept),
    dead (the retry window ended without an answer). The request is kept as the gateway
    would have forwarded it (converted, the caller's identity headers added)."""

    __tablename__ = "deferred_messages"
    __table_args__ = (Index("ix_deferred_messages_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    request_id: Mapped[str] = mapped_column(String(128))
    accept_event_id: Mapped[str] = mapped_column(String(36))  # the audit event of the 202
    provider: Mapped[str] = mapped_column(String(35))
    service_code: Mapped[str] = mapped_column(String(64))
    service_version: Mapped[str] = mapped_column(String(16))
    upstream: Mapped[str] = mapped_column(String(64))  # concurrency group of the worker
    client_code: Mapped[str] = mapped_column(String(64))
    # What the audit events of the attempts repeat: the accepted exchange's fields.
    exchange: Mapped[dict[str, Any]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(4096))
    query: Mapped[str] = mapped_column(Text, default="")
    headers: Mapped[list[Any]] = mapped_column(JSON)  # [[name, value], ...]
    body: Mapped[bytes] = mapped_column(LargeBinary)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="held")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    since: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column()
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    settled_at: Mapped[datetime | None] = mapped_column()
    # The answer as the caller would have had it synchronously (problem+json included).
    answer_status: Mapped[int | None] = mapped_column(Integer)
    answer_headers: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    answer_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
