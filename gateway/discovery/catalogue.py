"""The discovery answers, each computed once per configuration version and caller:

    list_methods      every enabled service, and whether the caller may call it
    allowed_methods   the services the caller holds a right on, with the rights granted
    service_openapi   one service as the caller may use it, an OpenAPI 3.1 document

A caller sees descriptions only of what it may call: the document of a service it holds
no right on is refused. Rights are read from the store, schemas from the registry; an
answer is kept only if the store still holds the configuration its tables were built
from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.config.runtime import RuntimeConfig, ServiceEntry
from gateway.core.problems import ACCESS_DENIED, UNKNOWN_SERVICE, Problem
from gateway.discovery import grants as store
from gateway.discovery.cache import DiscoveryCache
from gateway.discovery.grants import ServiceKey
from gateway.discovery.openapi import address, build_openapi, required_headers
from gateway.identity.directory import ClientEntry
from gateway.store import changes as admin

__all__ = [
    "PREFIX",
    "Asked",
    "allowed_methods",
    "granted_services",
    "list_methods",
    "openapi_path",
    "service_openapi",
]

# Where the discovery API is served: its answers link to the documents under it.
PREFIX = "/discovery/v1"


@dataclass(frozen=True, slots=True)
class Asked:
    """One discovery request: the caller, the tables it is answered from, their version
    (read together, with no await between, so that they match)."""

    config: RuntimeConfig
    version: int
    client: ClientEntry
    issuer: str
    sessions: async_sessionmaker[AsyncSession]
    cache: DiscoveryCache


def openapi_path(service: ServiceEntry) -> str:
    return f"{PREFIX}/services/{service.provider}/{service.code}/{service.version}/openapi.json"


def _summary(service: ServiceEntry, may_call: bool, issuer: str) -> dict[str, Any]:
    return {
        "provider": service.provider,
        "code": service.code,
        "version": service.version,
        "name": service.name,
        "address": address(service),
        "requires": list(service.required_fields),
        "required_headers": required_headers(service),
        "may_call": may_call,
        # Only what the caller may call is described.
        "links": {"openapi": issuer + openapi_path(service)} if may_call else {},
    }


def _enabled(config: RuntimeConfig) -> list[ServiceEntry]:
    return sorted((s for s in config.services.values() if s.enabled), key=lambda s: s.key)


async def list_methods(asked: Asked) -> bytes:
    """listMethods: every enabled service, and whether the caller may call it.

    Returns:
        the JSON answer `{"client", "services": [...]}`.

    Example:
        >>> orjson.loads(await list_methods(asked))["services"][0]["may_call"]
        True
    """
    key = (asked.client.code, "services")
    body = asked.cache.get(asked.version, key)
    if body is None:
        services = [
            _summary(s, s.grants(asked.client), asked.issuer) for s in _enabled(asked.config)
        ]
        body = orjson.dumps({"client": asked.client.code, "services": services})
        asked.cache.put(asked.version, key, body)
    return body


async def allowed_methods(asked: Asked) -> bytes:
    """allowedMethods: the services the caller holds a right on, each with `endpoints`,
    the (method, path glob) rights granted.

    Example:
        >>> orjson.loads(await allowed_methods(asked))["services"][0]["endpoints"]
        [{'method': '*', 'path': '/**'}]
    """
    key = (asked.client.code, "allowed")
    body = asked.cache.get(asked.version, key)
    if body is None:
        async with asked.sessions() as session:
            rights = await store.grants(session, asked.client)
            current = await admin.config_version(session) == asked.version
        services = []
        for s in _enabled(asked.config):
            if s.grants(asked.client) and s.key in rights:
                entry = _summary(s, True, asked.issuer)
                entry["endpoints"] = [{"method": m, "path": p} for m, p in rights[s.key]]
                services.append(entry)
        body = orjson.dumps({"client": asked.client.code, "services": services})
        # Kept only if the store still holds the configuration the tables were built from.
        if current:
            asked.cache.put(asked.version, key, body)
    return body


async def service_openapi(asked: Asked, service_key: ServiceKey) -> bytes:
    """getOpenAPI: the service as this caller may use it, as an OpenAPI 3.1 document.

    Raises:
        Problem: 404 `unknown-service` for no such enabled service; 403 `access-denied`
            for a service the caller holds no right on (it is not described to it).

    Example:
        >>> orjson.loads(await service_openapi(asked, ("000.00.31.H49", "echo", "v1")))["openapi"]
        '3.1.0'
    """
    client = asked.client
    service = asked.config.services.get(service_key)
    if service is None or not service.enabled:
        raise Problem(
            UNKNOWN_SERVICE,
            f"No enabled service {'/'.join(service_key)}; {PREFIX}/services lists them.",
        )
    if not service.grants(client):
        raise Problem(
            ACCESS_DENIED,
            f"Client '{client.code}' holds no right on {'/'.join(service_key)}, so it is "
            "not described to it; ask the provider for access.",
            client=client.code,
        )
    key = (client.code, "openapi", *service_key)
    body = asked.cache.get(asked.version, key)
    if body is None:
        async with asked.sessions() as session:
            rights = (await store.grants(session, client, service_key)).get(service_key, [])
            schemas = await store.schemas(session, service_key)
            current = await admin.config_version(session) == asked.version
        body = orjson.dumps(build_openapi(service, client, rights, schemas, asked.issuer))
        if current:
            asked.cache.put(asked.version, key, body)
    return body


def granted_services(config: RuntimeConfig, client: ClientEntry) -> dict[str, Any]:
    """The first listing (`GET /services`): the services the caller is granted something
    on, disabled ones included, kept for callers written against it.

    Example:
        >>> granted_services(config, outsider)
        {'client': 'outsider', 'services': []}
    """
    return {
        "client": client.code,
        "services": [
            {
                "provider": s.provider,
                "code": s.code,
                "version": s.version,
                "name": s.name,
                "address": address(s),
                "requires": list(s.required_fields),
                "enabled": s.enabled,
            }
            for s in config.services.values()
            if s.grants(client)
        ],
    }
