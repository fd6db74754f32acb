"""Declarative policy files: the province's agencies, systems, upstreams, services and
access rights as YAML, kept in git and applied to the store.

Every file in the policy directory is read and merged. Unknown fields are errors, and
every reference (a client's agency, a service's provider and upstream, a right's client
or group) must resolve, so a typo fails at validation time rather than at 3 a.m.
String values may use `${VAR}` or `${VAR:-default}` to take deployment-specific values
(addresses, ports) from the environment; secrets are never written in these files.
"""

from __future__ import annotations

import functools
import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from croniter import croniter
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from gateway.config.places import Places
from gateway.conversion.catalogue import adapter_config_errors, mapping_digest
from gateway.core.identifiers import AgencyCode, DocCode, ServiceCode, ServiceKey, Version
from gateway.identity.access import HTTP_METHODS, compile_glob

Code = ServiceCode  # groups and clients share the service codes' shape


class _Strict(BaseModel):
    # Numbers are StrictInt / StrictFloat: `true` is not 1 (an admin API body, a YAML file).
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgencySpec(_Strict):
    code: AgencyCode
    name: str = Field(min_length=1, max_length=255)
    doc_code: DocCode | None = None


class GroupSpec(_Strict):
    code: Code
    name: str = Field(min_length=1, max_length=255)


# "audit:unmask" is a right, not a role: held beside "auditor", it lets the auditor API
# show personal identifiers unmasked (every such read is itself recorded).
Role = Literal["administrator", "operator", "auditor", "observer", "audit:unmask"]


class ClientSpec(_Strict):
    code: Code
    agency: AgencyCode
    name: str = Field(min_length=1, max_length=255)
    groups: list[Code] = []
    roles: list[Role] = []
    enabled: bool = True


class UpstreamAuthSpec(_Strict):
    type: Literal["none", "oauth2_client_credentials"] = "none"
    token_url: str | None = None
    client_id: str | None = None
    client_secret_env: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]*$")] | None = None
    # Mutual TLS to an upstream that requires the gateway's client certificate: PEM files
    # on the gateway's host (paths, never the key itself), and the CA bundle the upstream's
    # own certificate is verified against (the system's CAs when unset).
    client_cert: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    client_key: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    ca_bundle: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> UpstreamAuthSpec:
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("client_cert and client_key go together: set both, or neither")
        if self.type == "oauth2_client_credentials":
            missing = [
                f for f in ("token_url", "client_id", "client_secret_env") if not getattr(self, f)
            ]
            if missing:
                raise ValueError(f"oauth2_client_credentials needs {', '.join(missing)}")
        return self


class CircuitBreakerSpec(_Strict):
    # Consecutive failures (transport errors, timeouts, answers with a status the
    # service lists in upstream_failure_statuses) that open the breaker; 0: no breaker.
    failure_threshold: StrictInt = Field(5, ge=0, le=10_000)
    # How long an open breaker answers 503 without calling, before trial calls.
    open_seconds: StrictFloat = Field(10.0, ge=0.1, le=86_400)
    # Trial calls let through when half-open; as many successes close the breaker.
    half_open_requests: StrictInt = Field(1, ge=1, le=1000)


class UpstreamSpec(_Strict):
    name: Code
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+(?:/[^\s?#]*)?$")]
    auth: UpstreamAuthSpec = UpstreamAuthSpec()
    circuit_breaker: CircuitBreakerSpec = CircuitBreakerSpec()
    # Calls in flight at once, per worker process (0: no limit), so one slow provider
    # cannot hold every connection; callers over it wait up to queue_timeout_ms for a
    # slot (0: refused at once) and then get a 503.
    max_concurrency: StrictInt = Field(100, ge=0, le=1_000_000)
    queue_timeout_ms: StrictInt = Field(0, ge=0, le=600_000)


class TimeoutsSpec(_Strict):
    connect_ms: StrictInt = Field(2000, ge=10, le=60_000)
    total_ms: StrictInt = Field(10_000, ge=10, le=600_000)


class RetriesSpec(_Strict):
    """Retries of idempotent calls (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) after a
    connection failure, a timeout or a 502/503/504, all within `timeouts.total_ms`."""

    attempts: StrictInt = Field(1, ge=1, le=5)  # 1: no retry
    backoff_ms: StrictInt = Field(50, ge=1, le=60_000)
    max_backoff_ms: StrictInt = Field(1000, ge=1, le=600_000)

    @model_validator(mode="after")
    def _ordered(self) -> RetriesSpec:
        if self.max_backoff_ms < self.backoff_ms:
            raise ValueError("max_backoff_ms must be at least backoff_ms")
        return self


class LimitsSpec(_Strict):
    max_request_bytes: StrictInt = Field(1024 * 1024, ge=0, le=1024 * 1024 * 1024)
    max_response_bytes: StrictInt = Field(10 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)


class AccessSpec(_Strict):
    client: Code | None = None
    group: Code | None = None
    method: str = "*"
    path: str = "/**"

    @model_validator(mode="after")
    def _valid(self) -> AccessSpec:
        if (self.client is None) == (self.group is None):
            raise ValueError("an access right names exactly one of 'client' or 'group'")
        if self.method != "*" and self.method.upper() not in HTTP_METHODS:
            raise ValueError(f"method must be '*' or one of {sorted(HTTP_METHODS)}")
        compile_glob(self.path)
        return self


class SchemaRef(_Strict):
    subject: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    version: StrictInt | Literal["latest"] = "latest"


class ServiceSchemas(_Strict):
    request: SchemaRef | None = None
    response: SchemaRef | None = None


# The answers that say the provider's system is failing rather than answering: a gateway
# or proxy in front of it that cannot reach it (502), an overloaded or stopped system
# (503), a timeout behind it (504). A 500 is not among them by default: SOAP services
# answer every fault with 500 (a "no such document" too), and many REST providers a
# business error, so counting it would let one service's refusals stop every service of
# its upstream. Transport errors and timeouts always count.
DEFAULT_FAILURE_STATUSES: tuple[int, ...] = (502, 503, 504)
FailureStatus = Annotated[StrictInt, Field(ge=400, le=599)]


class AsyncRequestSpec(_Strict):
    """Which calls of an async service are stored and forwarded: a method and an
    endpoint path glob, as in an access right."""

    method: str = "POST"
    path: str = "/**"

    @model_validator(mode="after")
    def _valid(self) -> AsyncRequestSpec:
        if self.method != "*" and self.method.upper() not in HTTP_METHODS:
            raise ValueError(f"method must be '*' or one of {sorted(HTTP_METHODS)}")
        compile_glob(self.path)
        return self


class AsyncDeliverySpec(_Strict):
    """Store-and-forward: a matching call is answered `202 Accepted` with a message id
    at once, and delivered to the provider when it can be (docs/developer.md
    "Store-and-forward"); other calls of the service stay synchronous."""

    requests: list[AsyncRequestSpec] = Field([AsyncRequestSpec()], min_length=1, max_length=50)


class ServiceSpec(_Strict):
    provider: AgencyCode
    code: Code
    version: Version
    name: str = Field(min_length=1, max_length=255)
    upstream: Code
    upstream_path: str = ""
    adapter: str = "passthrough"
    adapter_config: dict[str, Any] = {}
    schemas: ServiceSchemas = ServiceSchemas()
    timeouts: TimeoutsSpec = TimeoutsSpec()
    retries: RetriesSpec = RetriesSpec()
    # Answer statuses that count as the upstream failing (its circuit breaker, and for
    # 502/503/504 a retry); the service's adapter may still read such an answer as the
    # provider's business answer (docs/administrator.md "Upstream resilience").
    upstream_failure_statuses: list[FailureStatus] = Field(
        list(DEFAULT_FAILURE_STATUSES), max_length=200
    )
    limits: LimitsSpec = LimitsSpec()
    require: list[Literal["officer", "procedure", "case"]] = []
    audit: Literal["fail_closed", "fail_open"] = "fail_closed"
    enabled: bool = True
    access: list[AccessSpec] = []
    # Set: the service is async (store-and-forward) for the calls it names.
    async_delivery: AsyncDeliverySpec | None = None
    # Set by the gateway, not written in files: the SHA-256 of the adapter's mapping
    # files validated when this configuration was applied (catalogue.mapping_digest),
    # so that editing a mapping is a change `policy apply` makes and a reload picks up.
    adapter_mappings: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.code}/{self.version}"

    @model_validator(mode="after")
    def _adapter_valid(self) -> ServiceSpec:
        # The adapter's own configuration model checks adapter_config, naming the field.
        errors = adapter_config_errors(self.adapter, self.adapter_config)
        if errors:
            raise ValueError("; ".join(errors))
        return self


class TopicAccessSpec(_Strict):
    """Who may subscribe to a topic (or pull its events): one client or one group."""

    client: Code | None = None
    group: Code | None = None

    @model_validator(mode="after")
    def _one(self) -> TopicAccessSpec:
        if (self.client is None) == (self.group is None):
            raise ValueError("a topic's access right names exactly one of 'client' or 'group'")
        return self


class TopicSpec(_Strict):
    """A topic of events (docs/administrator.md "Topics and subscriptions"): who publishes
    to it, the schema of its events' `data`, and who may subscribe (deny by default)."""

    code: Code
    name: str = Field(min_length=1, max_length=255)
    provider: AgencyCode  # the agency whose systems the events come from
    publishers: list[Code] = Field(min_length=1)  # clients that may post events
    # The registry subject the events' `data` is checked against on publish.
    event_schema: SchemaRef | None = None
    # Largest event body a publisher may post.
    max_event_bytes: StrictInt = Field(256 * 1024, ge=64, le=16 * 1024 * 1024)
    enabled: bool = True
    access: list[TopicAccessSpec] = []


# -- scheduled pulls (docs/administrator.md "Scheduled pulls") ------------------------------

_FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
_Param = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
_EventType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class JobPagingSpec(_Strict):
    """How a job pages through the provider's answers: by the cursor each page gives for
    the next (`next_field`, null or absent on the last), or by page number from 1 (the
    last page: `pages_field` reached, or an empty page)."""

    kind: Literal["cursor", "page"] = "cursor"
    param: _Param = "cursor"  # the query parameter carrying the cursor or page number
    next_field: _FieldName = "next"
    pages_field: _FieldName = "pages"
    size_param: _Param | None = "limit"  # None: the provider's own page size
    size: StrictInt = Field(100, ge=1, le=10_000)
    # A bound on one run: a provider that never says "last page" fails the run here.
    max_pages: StrictInt = Field(1000, ge=1, le=1_000_000)


class JobAccountabilitySpec(_Strict):
    """Who asks and why, as the job's exchanges carry them (the gateway's own officer and
    procedure, stated here because no person is behind a scheduled call)."""

    officer: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None
    procedure: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None
    case: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class JobPackageSpec(_Strict):
    """A bulk package per successful run, downloaded over `/bulk/v1/{job}/packages` by a
    client or group granted here (deny by default)."""

    access: list[TopicAccessSpec] = []
    keep: StrictInt = Field(30, ge=1, le=10_000)  # packages kept; older ones are deleted


class JobOutputSpec(_Strict):
    """Where a run's records go: each published as an event of `topic` (type
    `event_type`, key the record's `key_field`), or into a bulk `package`."""

    topic: Code | None = None
    event_type: _EventType = "record.changed"
    package: JobPackageSpec | None = None

    @model_validator(mode="after")
    def _one(self) -> JobOutputSpec:
        if (self.topic is None) == (self.package is None):
            raise ValueError("a job's output names exactly one of 'topic' or 'package'")
        return self


class JobSpec(_Strict):
    """A scheduled bulk or delta pull: when (cron, Vietnam time), which service as which
    client of the province, what (the changes since the last successful run, or the data
    as of a date), how to page, and where the records go."""

    code: Code
    name: str = Field(min_length=1, max_length=255)
    cron: Annotated[str, StringConstraints(min_length=9, max_length=120)]
    client: Code  # the province's system the job acts as: its rights, its audit trail
    service: ServiceKey
    method: Literal["GET", "POST"] = "GET"
    # Under the service's address ("": the address itself), as a caller's endpoint.
    path: Annotated[str, StringConstraints(pattern=r"^(/[^\s?#]*)?$", max_length=1024)] = ""
    mode: Literal["since_last_success", "as_of"] = "since_last_success"
    as_of: date | None = None
    # The first run's "since" (no watermark yet); none: the first run takes everything.
    start_from: AwareDatetime | None = None
    since_param: _Param = "since"
    as_of_param: _Param = "as_of"
    items_field: _FieldName = "items"
    key_field: _FieldName | None = None  # the record's field an event is keyed (ordered) by
    # The record's change time (ISO 8601 with offset): the watermark is the latest one a
    # successful run read; none: the time the run started.
    changed_field: _FieldName | None = None
    paging: JobPagingSpec = JobPagingSpec()
    accountability: JobAccountabilitySpec = JobAccountabilitySpec()
    output: JobOutputSpec
    enabled: bool = True

    @model_validator(mode="after")
    def _valid(self) -> JobSpec:
        if len(self.cron.split()) != 5 or not croniter.is_valid(self.cron):
            raise ValueError(
                f"cron: {self.cron!r} is not a 5-field cron expression "
                "(minute hour day-of-month month day-of-week, Vietnam time)"
            )
        if (self.mode == "as_of") != (self.as_of is not None):
            raise ValueError("mode 'as_of' needs 'as_of: <date>', and only it takes one")
        return self

    @property
    def service_key(self) -> tuple[str, str, str]:
        provider, code, version = self.service.split("/")
        return provider, code, version


class RateSpec(_Strict):
    requests: StrictInt = Field(ge=1, le=1_000_000)
    per: Literal["second", "minute", "hour"] = "second"
    # Requests allowed at once after a quiet period; defaults to `requests`.
    burst: StrictInt | None = Field(None, ge=1, le=1_000_000)


class RateLimitSpec(_Strict):
    """A rate limit and/or daily quota for a client (on all its exchanges), a service (from
    all callers), or one client on one service (both named)."""

    client: Code | None = None
    service: ServiceKey | None = None  # "provider/code/version"
    rate: RateSpec | None = None
    # Exchanges per calendar day, Vietnam time; the count starts again at midnight.
    quota_per_day: StrictInt | None = Field(None, ge=1, le=1_000_000_000)

    @model_validator(mode="after")
    def _meaningful(self) -> RateLimitSpec:
        if self.client is None and self.service is None:
            raise ValueError("a rate limit names a 'client', a 'service', or both")
        if self.rate is None and self.quota_per_day is None:
            raise ValueError("a rate limit sets 'rate', 'quota_per_day', or both")
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.client or "", self.service or "")


# Asymmetric JWS algorithms an external issuer may sign with: never "none" nor an HMAC
# (HS*), whose key would be a secret shared between the platforms.
IssuerAlgorithm = Literal["RS256", "PS256", "ES256", "ES384", "EdDSA", "Ed25519"]
_HTTP_URL = r"^https?://[^\s/?#]+(?:/[^\s?#]*)?$"


class IssuerSpec(_Strict):
    """An external token issuer the gateway trusts (the national platform's, say): tokens
    it signs are verified with the keys its JWKS URL publishes, and the caller is the
    policy client `client` (that client's rights, limits and audit apply)."""

    issuer: Annotated[str, StringConstraints(pattern=_HTTP_URL, max_length=255)]
    jwks_url: Annotated[str, StringConstraints(pattern=_HTTP_URL, max_length=2048)]
    audience: str = Field(min_length=1, max_length=255)
    algorithms: list[IssuerAlgorithm] = Field(["RS256", "ES256", "EdDSA"], min_length=1)
    client: Code
    # The longest lifetime (exp - iat) a token of this issuer may claim.
    max_token_lifetime_seconds: StrictInt = Field(3600, ge=60, le=86_400)
    enabled: bool = True


class PolicySet(_Strict):
    agencies: list[AgencySpec] = []
    groups: list[GroupSpec] = []
    clients: list[ClientSpec] = []
    upstreams: list[UpstreamSpec] = []
    services: list[ServiceSpec] = []
    rate_limits: list[RateLimitSpec] = []
    topics: list[TopicSpec] = []
    issuers: list[IssuerSpec] = []
    jobs: list[JobSpec] = []
    # Where each entity was written, when read from files (load_policy_dir).
    _places: Places | None = PrivateAttr(default=None)

    def located(self, message: str) -> str:
        """A validator's message (`services[3].upstream: ...`) naming files and entities
        when the policy was read from files; unchanged otherwise (the admin API)."""
        return message if self._places is None else self._places.rewrite(message)

    @model_validator(mode="after")
    def _references_resolve(self) -> PolicySet:
        errors: list[str] = []
        agencies = _unique("agency", [a.code for a in self.agencies], errors)
        groups = _unique("group", [g.code for g in self.groups], errors)
        clients = _unique("client", [c.code for c in self.clients], errors)
        upstreams = _unique("upstream", [u.name for u in self.upstreams], errors)
        services = _unique("service", [s.key for s in self.services], errors)
        _unique("rate limit", [r.key for r in self.rate_limits], errors)
        _unique("topic", [t.code for t in self.topics], errors)
        errors += _client_references(self.clients, agencies, groups)
        errors += _service_references(self.services, agencies, upstreams, clients, groups)
        errors += _rate_limit_references(self.rate_limits, clients, services)
        _unique("issuer", [i.issuer for i in self.issuers], errors)
        errors += _issuer_references(self.issuers, self.clients)
        errors += _topic_references(self.topics, agencies, clients, groups)
        _unique("job", [j.code for j in self.jobs], errors)
        errors += _job_references(self, clients, groups)
        if errors:
            raise ValueError("; ".join(errors))
        return self


# -- the checks of PolicySet._references_resolve, each naming the place it found a problem ----


def _unique(kind: str, keys: list[Any], errors: list[str]) -> set[Any]:
    """The keys as a set; each one defined twice is added to `errors`."""
    seen: set[Any] = set()
    for k in keys:
        if k in seen:
            errors.append(f"{kind} {k!r} is defined twice")
        seen.add(k)
    return seen


def _client_references(
    clients: list[ClientSpec], agencies: set[Any], groups: set[Any]
) -> list[str]:
    errors: list[str] = []
    for i, c in enumerate(clients):
        if c.agency not in agencies:
            errors.append(f"clients[{i}].agency: no agency {c.agency!r}")
        errors += [f"clients[{i}].groups: no group {g!r}" for g in c.groups if g not in groups]
    return errors


def _service_references(
    services: list[ServiceSpec],
    agencies: set[Any],
    upstreams: set[Any],
    clients: set[Any],
    groups: set[Any],
) -> list[str]:
    errors: list[str] = []
    for i, s in enumerate(services):
        if s.provider not in agencies:
            errors.append(f"services[{i}].provider: no agency {s.provider!r}")
        if s.upstream not in upstreams:
            errors.append(f"services[{i}].upstream: no upstream {s.upstream!r}")
        for j, a in enumerate(s.access):
            if a.client is not None and a.client not in clients:
                errors.append(f"services[{i}].access[{j}].client: no client {a.client!r}")
            if a.group is not None and a.group not in groups:
                errors.append(f"services[{i}].access[{j}].group: no group {a.group!r}")
    return errors


def _rate_limit_references(
    rate_limits: list[RateLimitSpec], clients: set[Any], services: set[Any]
) -> list[str]:
    errors: list[str] = []
    for i, r in enumerate(rate_limits):
        if r.client is not None and r.client not in clients:
            errors.append(f"rate_limits[{i}].client: no client {r.client!r}")
        if r.service is not None and r.service not in services:
            errors.append(f"rate_limits[{i}].service: no service {r.service!r}")
    return errors


def _issuer_references(issuers: list[IssuerSpec], clients: list[ClientSpec]) -> list[str]:
    by_code = {c.code: c for c in clients}
    errors: list[str] = []
    for i, spec in enumerate(issuers):
        client = by_code.get(spec.client)
        if client is None:
            errors.append(f"issuers[{i}].client: no client {spec.client!r}")
        elif client.roles:
            # Another platform's tokens exchange data; they never administer this gateway.
            errors.append(
                f"issuers[{i}].client: {spec.client!r} holds roles {sorted(client.roles)}; "
                "an external issuer speaks as a client without roles"
            )
    return errors


def _topic_references(
    topics: list[TopicSpec], agencies: set[Any], clients: set[Any], groups: set[Any]
) -> list[str]:
    errors: list[str] = []
    for i, t in enumerate(topics):
        if t.provider not in agencies:
            errors.append(f"topics[{i}].provider: no agency {t.provider!r}")
        errors += [
            f"topics[{i}].publishers: no client {c!r}" for c in t.publishers if c not in clients
        ]
        for j, a in enumerate(t.access):
            if a.client is not None and a.client not in clients:
                errors.append(f"topics[{i}].access[{j}].client: no client {a.client!r}")
            if a.group is not None and a.group not in groups:
                errors.append(f"topics[{i}].access[{j}].group: no group {a.group!r}")
    return errors


def _job_references(policy: PolicySet, clients: set[Any], groups: set[Any]) -> list[str]:
    services = {s.key: s for s in policy.services}
    topics = {t.code: t for t in policy.topics}
    client_groups = {c.code: set(c.groups) for c in policy.clients}
    errors: list[str] = []
    for i, j in enumerate(policy.jobs):
        if j.client not in clients:
            errors.append(f"jobs[{i}].client: no client {j.client!r}")
        service = services.get(j.service)
        if service is None:
            errors.append(f"jobs[{i}].service: no service {j.service!r}")
        elif j.client in clients and not _granted(service, j, client_groups[j.client]):
            errors.append(
                f"jobs[{i}].service: client {j.client!r} holds no right to "
                f"{j.method} {j.path or '/'} of {j.service}"
            )
        elif service is not None:
            given = {k for k in ("officer", "procedure", "case") if getattr(j.accountability, k)}
            errors += [
                f"jobs[{i}].accountability.{k}: the service requires it"
                for k in sorted(set(service.require) - given)
            ]
        topic = topics.get(j.output.topic) if j.output.topic is not None else None
        if j.output.topic is not None and topic is None:
            errors.append(f"jobs[{i}].output.topic: no topic {j.output.topic!r}")
        elif topic is not None and service is not None and topic.provider != service.provider:
            # A topic says whose events it carries: a job may not pass others' off as them.
            errors.append(
                f"jobs[{i}].output.topic: topic {topic.code!r} carries events of agency "
                f"{topic.provider}, not of the service's provider {service.provider}"
            )
        for k, a in enumerate(j.output.package.access if j.output.package else []):
            if a.client is not None and a.client not in clients:
                errors.append(
                    f"jobs[{i}].output.package.access[{k}].client: no client {a.client!r}"
                )
            if a.group is not None and a.group not in groups:
                errors.append(f"jobs[{i}].output.package.access[{k}].group: no group {a.group!r}")
    return errors


def _granted(service: ServiceSpec, job: JobSpec, groups: set[str]) -> bool:
    """Does one of the service's rights let the job's client make the job's call?"""
    for a in service.access:
        if a.client != job.client and a.group not in groups:
            continue
        pattern = compile_glob(a.path)
        endpoint = job.path or "/"
        if a.method in ("*", job.method) and (pattern is None or pattern.fullmatch(endpoint)):
            return True
    return False


def document_key(section: str, item: dict[str, Any]) -> str:
    """The key of one entity of a policy document section (as in `policy_document`)."""
    if section == "services":
        return f"{item['provider']}/{item['code']}/{item['version']}"
    if section == "rate_limits":
        return f"{item.get('client') or ''}|{item.get('service') or ''}"
    if section == "issuers":
        return str(item["issuer"])
    return str(item["name" if section == "upstreams" else "code"])


def policy_document(policy: PolicySet, *, exclude_defaults: bool = False) -> dict[str, Any]:
    """The policy as plain data, every section sorted by its key: a stable form to hash,
    store and export, whatever order the files listed things in."""
    # One serialiser call for the whole set: per-entity calls cost 10x more at the size
    # of a province (thousands of clients).
    raw = policy.model_dump(mode="json", exclude_defaults=exclude_defaults, exclude_none=True)
    doc: dict[str, Any] = {}
    for section in PolicySet.model_fields:
        items = [_canonical(i) for i in raw.get(section, [])]
        doc[section] = sorted(items, key=functools.partial(document_key, section))
    return doc


def _canonical(item: dict[str, Any]) -> dict[str, Any]:
    # Lists that are sets in meaning: sorted, so their order in a file is no change.
    for name in (
        "groups",
        "roles",
        "require",
        "upstream_failure_statuses",
        "algorithms",
        "publishers",
    ):
        if name in item:
            item[name] = sorted(set(item[name]))
    package = (item.get("output") or {}).get("package")
    if package and package.get("access"):  # a job's downloaders: a set too
        package["access"] = sorted(
            package["access"], key=lambda r: (r.get("client") or "", r.get("group") or "")
        )
    if "access" in item:
        for right in item["access"]:
            if "method" in right:
                right["method"] = right["method"].upper()
        item["access"] = sorted(
            item["access"],
            key=lambda r: (
                r.get("client") or "",
                r.get("group") or "",
                r.get("method", "*"),
                r.get("path", "/**"),
            ),
        )
    return item


def with_mapping_digests(policy: PolicySet) -> PolicySet:
    """The policy with each service's `adapter_mappings` set to the digest of its
    adapter's mapping files as they are now (None for passthrough): what `policy apply`
    validated, and so records."""
    digests: dict[str, str | None] = {}
    services = []
    for s in policy.services:
        if s.adapter not in digests:
            digests[s.adapter] = mapping_digest(s.adapter)
        digest = digests[s.adapter]
        services.append(
            s if s.adapter_mappings == digest else s.model_copy(update={"adapter_mappings": digest})
        )
    return policy.model_copy(update={"services": services})


def policy_yaml(policy: PolicySet, *, header: str = "") -> str:
    """A policy file that `load_policy_dir` reads back as the same policy (without the
    mapping digests, which the gateway sets when it is applied)."""
    doc = {k: v for k, v in policy_document(policy, exclude_defaults=True).items() if v}
    for service in doc.get("services", []):
        service.pop("adapter_mappings", None)
    body = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=100)
    return header + body


_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, source: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ValueError(f"{source}: environment variable {name} is not set")

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_interpolate(v, source) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, source) for k, v in value.items()}
    return value


def load_policy_dir(directory: Path) -> PolicySet:
    """Read and merge every `*.yaml` / `*.yml` file of a policy directory, then validate.

    Raises:
        ValueError: a file cannot be read as policy, or the policy is not valid; one line
            per problem, naming the file, the entity (`service <provider/code/version>`)
            and the field.
    """
    merged: dict[str, list[Any]] = {}
    origins: dict[str, list[str]] = {}
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise ValueError(f"no policy files (*.yaml) in {directory}")
    for path in files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: a policy file is a mapping of sections")
        for section, items in _interpolate(doc, str(path)).items():
            if not isinstance(items, list):
                raise ValueError(f"{path}: section {section!r} must be a list")
            merged.setdefault(section, []).extend(items)
            origins.setdefault(section, []).extend([str(path)] * len(items))
    places = Places(origins, merged)
    try:
        policy = PolicySet.model_validate(merged)
    except ValidationError as e:
        raise ValueError(places.errors(e)) from None
    policy._places = places
    return policy
