"""The kinds of entity the console creates, changes and deletes (editing.py), each with
its form: agencies, services, upstreams, systems (clients), groups and rate limits. Who may change
each is who may through the admin API (gateway/edge/admin_api/collections.py).

Example:
    >>> [e.slug for e in CATALOGUE]
    ['agencies', 'services', 'upstreams', 'clients', 'groups', 'rate-limits']
"""

from __future__ import annotations

from gateway.admin import collections as entities
from gateway.admin.actor import ADMINISTER, OPERATE
from gateway.edge.console.editing import Entity, Field
from gateway.edge.console.views import PREFIX

__all__ = ["AGENCIES", "CATALOGUE", "CLIENTS", "GROUPS", "RATE_LIMITS", "SERVICES", "UPSTREAMS"]

# Listed and edited on the agency pages (pages.py), which also show an agency's systems;
# created here. Deleting one goes through the admin API (its systems must go first).
AGENCIES = Entity(
    "agencies",
    entities.AGENCIES,
    "agencies.title",
    (
        Field("code", "agencies.code"),
        Field("name", "agencies.name"),
        Field("doc_code", "agencies.doc_code", optional=True),
    ),
    ADMINISTER,
    list_url=f"{PREFIX}/agencies",
)
SERVICES = Entity(
    "services",
    entities.SERVICES,
    "services.title",
    (
        Field("provider", "services.provider"),
        Field("code", "services.code"),
        Field("version", "services.version"),
        Field("name", "services.name"),
        Field("upstream", "services.upstream"),
        Field("upstream_path", "services.upstream_path"),
        Field("adapter", "services.adapter", optional=True),
        Field("enabled", "services.enabled", "bool"),
        Field("timeouts.connect_ms", "services.connect_ms", "int", optional=True),
        Field("timeouts.total_ms", "services.total_ms", "int", optional=True),
        Field("retries.attempts", "services.attempts", "int", optional=True),
        Field("schemas.request.subject", "services.request_schema", optional=True),
        Field("schemas.response.subject", "services.response_schema", optional=True),
        Field("require", "services.require", "list"),
        Field("audit", "services.audit", "choice", choices=("fail_closed", "fail_open")),
    ),
    OPERATE,
    key_sizes=(1, 1, 1),
    list_url=f"{PREFIX}/services",
)
UPSTREAMS = Entity(
    "upstreams",
    entities.UPSTREAMS,
    "upstreams.title",
    (
        Field("name", "upstreams.name"),
        Field("base_url", "upstreams.base_url"),
        Field("max_concurrency", "upstreams.max_concurrency", "int", optional=True),
        Field("queue_timeout_ms", "upstreams.queue_timeout_ms", "int", optional=True),
        Field(
            "circuit_breaker.failure_threshold", "upstreams.failure_threshold", "int", optional=True
        ),
        Field(
            "auth.type",
            "upstreams.auth_type",
            "choice",
            optional=True,
            choices=("none", "oauth2_client_credentials"),
        ),
        Field("auth.token_url", "upstreams.token_url", optional=True),
        Field("auth.client_id", "upstreams.client_id", optional=True),
        Field("auth.client_secret_env", "upstreams.client_secret_env", optional=True),
    ),
    OPERATE,
    columns=("name", "base_url", "max_concurrency", "circuit_breaker.failure_threshold"),
)
CLIENTS = Entity(
    "clients",
    entities.CLIENTS,
    "clients.title",
    (
        Field("code", "clients.code"),
        Field("agency", "clients.agency"),
        Field("name", "clients.name"),
        Field("groups", "clients.groups", "list"),
        Field("roles", "home.roles", "list"),
        Field("enabled", "services.enabled", "bool"),
    ),
    ADMINISTER,
    list_url=f"{PREFIX}/clients",
)
GROUPS = Entity(
    "groups",
    entities.GROUPS,
    "groups.title",
    (Field("code", "groups.code"), Field("name", "groups.name")),
    ADMINISTER,
    columns=("code", "name"),
)
RATE_LIMITS = Entity(
    "rate-limits",
    entities.RATE_LIMITS,
    "limits.title",
    (
        Field("client", "limits.client", optional=True),
        Field("service", "limits.service", optional=True),
        Field("rate.requests", "limits.requests", "int", optional=True),
        Field(
            "rate.per", "limits.per", "choice", optional=True, choices=("second", "minute", "hour")
        ),
        Field("rate.burst", "limits.burst", "int", optional=True),
        Field("quota_per_day", "limits.quota_per_day", "int", optional=True),
    ),
    OPERATE,
    columns=("client", "service", "rate.requests", "rate.per", "quota_per_day"),
    key_sizes=(1, 3),
)
CATALOGUE = (AGENCIES, SERVICES, UPSTREAMS, CLIENTS, GROUPS, RATE_LIMITS)
