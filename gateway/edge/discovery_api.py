"""Service discovery for callers, under `/discovery/v1`: X-Road's listMethods,
allowedMethods and getOpenAPI.

A departmental system should learn what it can call from the gateway itself, not from
policy files or e-mail. Three answers, all for an authenticated caller:

    GET /discovery/v1/services                      every enabled service, with `may_call`
    GET /discovery/v1/allowed                       only those the caller holds a right on,
        (= /discovery/v1/services?allowed=true)     with the methods and paths granted
    GET /discovery/v1/services/{provider}/{code}/{version}/openapi.json
                                                    an OpenAPI 3.1 document of what the
                                                    caller may call on that one service

A caller sees descriptions only of what it may call: the OpenAPI document of a service it
holds no right on is a 403. Rights are read from the AccessRight rows (the compiled rules
of the request path keep regexes only), schemas from the registry.

How a path glob becomes an OpenAPI path: a literal path is used as is; otherwise each
`*` (one segment) becomes `{segment}` and each `**` (any number of segments, '/'
included, possibly none) becomes `{path}` (numbered when repeated), and the path item
carries `x-lgsp-path-globs` with the glob(s) it stands for, which are what the gateway
enforces. A right for any method (`*`) lists every method the gateway forwards.

Everything here is derived from configuration, so each answer is computed once per
configuration version and caller and then served from memory. Nothing on the exchange
path (`/r1`) reads or waits on this module.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.config.runtime import RuntimeConfig, ServiceEntry
from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.problems import (
    ACCESS_DENIED,
    INVALID_PARAMETER,
    PROBLEM_CONTENT_TYPE,
    UNKNOWN_SERVICE,
    Problem,
    Side,
)
from gateway.edge.http import json_response
from gateway.edge.roles import require_role
from gateway.edge.state import STATE, GatewayState
from gateway.exchange.accountability import FIELD_RE, FIELDS, REQUEST_ID_RE
from gateway.exchange.pipeline import MESSAGE_METHODS, REQUEST_HASH_HEADER
from gateway.identity.access import HTTP_METHODS
from gateway.identity.authn import API_KEY_HEADER, authenticate
from gateway.identity.directory import ClientEntry
from gateway.store import changes as admin
from gateway.store.models import AccessRight, Agency, RegistrySchema, RegistryVersion, Service

PREFIX = "/discovery/v1"
OPENAPI_VERSION = "3.1.0"
# The order operations are listed in; a right for any method expands to all of them.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ANY_METHOD = tuple(m for m in METHOD_ORDER if m in HTTP_METHODS)
# Error statuses an exchange can answer with, all as problem+json.
EXCHANGE_ERRORS: dict[str, str] = {
    "400": "Malformed request, missing or invalid accountability headers, or a message "
    "that breaks the service's request schema.",
    "401": "No valid bearer token or API key.",
    "403": "The caller is not granted this method and path.",
    "413": "The request body exceeds the service's limit.",
    "429": "A rate limit or quota was reached.",
    "502": "The provider's system failed, or answered outside the service's schema.",
    "503": "The service is disabled, a schema it needs is missing, or the audit log "
    "cannot record the exchange.",
    "504": "The provider's system did not answer in time.",
}

ServiceKey = tuple[str, str, str]
Grant = tuple[str, str]  # (method or "*", path glob)


# -- the cache --------------------------------------------------------------------------------


@dataclass
class DiscoveryCache:
    """JSON bodies of one configuration version, by (caller, what was asked). A newer
    version empties it; an answer computed from older tables is not kept."""

    version: int = -1
    bodies: dict[tuple[str, ...], bytes] = field(default_factory=dict)

    def get(self, version: int, key: tuple[str, ...]) -> bytes | None:
        return self.bodies.get(key) if version == self.version else None

    def put(self, version: int, key: tuple[str, ...], body: bytes) -> None:
        if version < self.version:
            return
        if version > self.version:
            self.version, self.bodies = version, {}
        self.bodies[key] = body


CACHE = web.AppKey("discovery_cache", DiscoveryCache)


# -- reading configuration --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """A service's request or response schema, as the registry has it."""

    subject: str
    wanted: int | str  # the version the service names, or "latest"
    version: int | None  # the resolved version; None when the registry lacks it
    schema_type: str | None = None  # "JSON" | "XML"
    document: Any = None  # the JSON Schema, parsed; None for XML


async def _grants(
    session: AsyncSession, client: ClientEntry, only: ServiceKey | None = None
) -> dict[ServiceKey, list[Grant]]:
    """The (method, path) rights the client holds, its own and its groups', by service."""
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
    return {key: sorted(grants, key=_grant_order) for key, grants in found.items()}


def _grant_order(grant: Grant) -> tuple[str, int]:
    method, path = grant
    return path, METHOD_ORDER.index(method) if method in METHOD_ORDER else -1


async def _schemas(session: AsyncSession, key: ServiceKey) -> dict[str, SchemaInfo]:
    """The service's request and response schemas, resolved as the runtime resolves them."""
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


# -- listMethods and allowedMethods -----------------------------------------------------------


def address(service: ServiceEntry) -> str:
    return f"/r1/{service.provider}/{service.code}/{service.version}/"


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
        "required_headers": _required_headers(service),
        "may_call": may_call,
        # Only what the caller may call is described.
        "links": {"openapi": issuer + openapi_path(service)} if may_call else {},
    }


def _enabled(config: RuntimeConfig) -> list[ServiceEntry]:
    return sorted((s for s in config.services.values() if s.enabled), key=lambda s: s.key)


@dataclass(frozen=True, slots=True)
class _Asked:
    """One discovery request: the caller, the tables it is answered from, their version."""

    state: GatewayState
    config: RuntimeConfig
    version: int
    client: ClientEntry
    cache: DiscoveryCache


def _asked(request: web.Request) -> _Asked:
    state = request.app[STATE]
    # Tables and their version are read together, with no await between: they match.
    config, version = state.pipeline.config, state.config_version
    client = require_role(request)  # any enabled client; a 401 problem otherwise
    return _Asked(state, config, version, client, request.app[CACHE])


async def list_services(request: web.Request) -> web.Response:
    """listMethods: every enabled service, and whether the caller may call it."""
    asked = _asked(request)
    allowed = request.query.get("allowed", "false").lower()
    if allowed not in ("true", "false"):
        raise Problem(INVALID_PARAMETER, "allowed: use 'true' or 'false'.", parameter="allowed")
    if allowed == "true":
        return await _allowed(asked)
    key = (asked.client.code, "services")
    body = asked.cache.get(asked.version, key)
    if body is None:
        code, issuer = asked.client.code, asked.state.settings.issuer
        services = [_summary(s, s.grants(asked.client), issuer) for s in _enabled(asked.config)]
        body = orjson.dumps({"client": code, "services": services})
        asked.cache.put(asked.version, key, body)
    return _respond(body)


async def allowed_services(request: web.Request) -> web.Response:
    """allowedMethods: the services the caller holds a right on, with what it is granted."""
    return await _allowed(_asked(request))


async def _allowed(asked: _Asked) -> web.Response:
    key = (asked.client.code, "allowed")
    body = asked.cache.get(asked.version, key)
    if body is None:
        async with asked.state.sessions() as session:
            grants = await _grants(session, asked.client)
            current = await admin.config_version(session) == asked.version
        services = []
        for s in _enabled(asked.config):
            if s.grants(asked.client) and s.key in grants:
                entry = _summary(s, True, asked.state.settings.issuer)
                entry["endpoints"] = [{"method": m, "path": p} for m, p in grants[s.key]]
                services.append(entry)
        body = orjson.dumps({"client": asked.client.code, "services": services})
        # Kept only if the store still holds the configuration the tables were built from.
        if current:
            asked.cache.put(asked.version, key, body)
    return _respond(body)


# -- getOpenAPI -------------------------------------------------------------------------------


async def service_openapi(request: web.Request) -> web.Response:
    """getOpenAPI: the service as this caller may use it, as an OpenAPI 3.1 document."""
    asked = _asked(request)
    client = asked.client
    m = request.match_info
    service_key = (m["provider"], m["code"], m["version"])
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
        async with asked.state.sessions() as session:
            grants = (await _grants(session, client, service_key)).get(service_key, [])
            schemas = await _schemas(session, service_key)
            current = await admin.config_version(session) == asked.version
        issuer = asked.state.settings.issuer
        body = orjson.dumps(build_openapi(service, client, grants, schemas, issuer))
        if current:
            asked.cache.put(asked.version, key, body)
    return _respond(body)


def build_openapi(
    service: ServiceEntry,
    client: ClientEntry,
    grants: list[Grant],
    schemas: dict[str, SchemaInfo],
    issuer: str,
) -> dict[str, Any]:
    components: dict[str, Any] = {
        "schemas": {"Problem": PROBLEM_SCHEMA},
        "parameters": _header_parameters(service),
        "responses": {
            f"Error{status}": {
                "description": text,
                "headers": {REQUEST_ID_HEADER: _RESPONSE_REQUEST_ID},
                "content": {
                    PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
            for status, text in EXCHANGE_ERRORS.items()
        },
        "securitySchemes": {
            "oauth2": {
                "type": "oauth2",
                "description": "Client credentials; send the token as 'Authorization: Bearer'.",
                "flows": {
                    "clientCredentials": {"tokenUrl": f"{issuer}/oauth2/token", "scopes": {}}
                },
            },
            "apiKey": {
                "type": "apiKey",
                "in": "header",
                "name": API_KEY_HEADER,
                "description": "For systems that cannot use OAuth2.",
            },
        },
    }
    request_body = _message(schemas.get("request"), components, issuer, "request")
    answer = _message(schemas.get("response"), components, issuer, "response")
    header_refs = [{"$ref": f"#/components/parameters/{name}"} for name in components["parameters"]]

    paths: dict[str, dict[str, Any]] = {}
    shapes: dict[str, str] = {}  # template with parameter names removed -> template
    operation_ids: set[str] = set()
    for method, glob in grants:
        template, path_params = path_template(glob)
        # `/a/{segment}` and `/a/{path}` are one path to OpenAPI: merged under the first.
        template = shapes.setdefault(re.sub(r"\{[^}]*\}", "{}", template), template)
        item = paths.get(template)
        if item is None:
            item = paths[template] = {"parameters": [*path_params, *header_refs]}
        if path_params or "x-lgsp-path-globs" in item:
            globs = item.setdefault("x-lgsp-path-globs", [])
            if glob not in globs:
                globs.append(glob)
        for m in ANY_METHOD if method == "*" else (method,):
            if m.lower() not in item:
                item[m.lower()] = _operation(m, template, request_body, answer, operation_ids)

    for item in paths.values():
        globs = item.get("x-lgsp-path-globs")
        if globs:
            item["description"] = (
                "Granted by the path glob(s) "
                + ", ".join(f"`{g}`" for g in globs)
                + ": `*` is one path segment, `**` any number of segments ('/' included)."
            )
    description = (
        f"Service `{service.code}` {service.version} of provider {service.provider}, through "
        f"the LGSP gateway at `{address(service)}`. This document lists only what client "
        f"`{client.code}` is granted."
    )
    if service.required_fields:
        description += f" Required headers: {', '.join(_required_headers(service))}."
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": service.name,
            "version": service.version,
            "description": description,
            "x-lgsp-service": {
                "provider": service.provider,
                "code": service.code,
                "version": service.version,
            },
            "x-lgsp-client": client.code,
        },
        "servers": [{"url": issuer + address(service).rstrip("/")}],
        "security": [{"oauth2": []}, {"apiKey": []}],
        "paths": paths,
        "components": components,
    }


def _required_headers(service: ServiceEntry) -> list[str]:
    return [h for name, h, _ in FIELDS if name in service.required_fields]


def path_template(glob: str) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path for a right's path glob, and the path parameters it introduces."""
    if not any(c in glob for c in "*{}"):
        return glob, []
    params: list[dict[str, Any]] = []
    counts = {"segment": 0, "path": 0}

    def parameter(kind: str) -> str:
        counts[kind] += 1
        name = kind if counts[kind] == 1 else f"{kind}{counts[kind]}"
        description = (
            "One path segment (no '/')."
            if kind == "segment"
            else "Any number of path segments, '/' included and possibly none."
        )
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": description,
                "schema": {"type": "string"},
            }
        )
        return "{" + name + "}"

    out: list[str] = []
    # Literal braces would read as templates; as sent on the wire they are percent-encoded.
    for part in re.split(r"(\*\*|\*)", glob.replace("{", "%7B").replace("}", "%7D")):
        if part == "**":
            out.append(parameter("path"))
        elif part == "*":
            out.append(parameter("segment"))
        else:
            out.append(part)
    return "".join(out), params


def _operation(
    method: str,
    template: str,
    request_body: dict[str, Any],
    answer: dict[str, Any],
    operation_ids: set[str],
) -> dict[str, Any]:
    base = f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', template).strip('_') or 'root'}"
    operation_id, n = base, 1
    while operation_id in operation_ids:
        n += 1
        operation_id = f"{base}_{n}"
    operation_ids.add(operation_id)
    ok: dict[str, Any] = {
        "description": "The provider's answer, passed through. Other statuses the provider "
        "answers with are passed through too, as they are.",
        "headers": {
            REQUEST_ID_HEADER: _RESPONSE_REQUEST_ID,
            REQUEST_HASH_HEADER: {
                "description": "SHA-256 (hex) of the request body, as the gateway received it.",
                "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
        },
    }
    if method != "HEAD" and "content" in answer:
        ok["description"] += " " + answer["description"]
        ok["content"] = answer["content"]
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": f"{method} {template}",
        "responses": {
            "200": ok,
            **{s: {"$ref": f"#/components/responses/Error{s}"} for s in EXCHANGE_ERRORS},
        },
    }
    if method in MESSAGE_METHODS:
        operation["requestBody"] = request_body
    return operation


def _message(
    info: SchemaInfo | None, components: dict[str, Any], issuer: str, what: str
) -> dict[str, Any]:
    """A request body (or the parts of a 200 response) for the service's schema."""
    if info is None:
        return {
            "description": f"No {what} schema: the message is passed on unchecked.",
            "content": {"*/*": {"schema": {}}},
        }
    if info.version is None:
        return {
            "description": f"The {what} schema {info.subject} (version {info.wanted}) is not "
            "in the registry: the gateway refuses exchanges on this service until it is.",
            "content": {"*/*": {"schema": {}}},
            "x-lgsp-schema": {"subject": info.subject, "version": info.wanted},
        }
    link = (
        f"{issuer}/registry/subjects/{quote(info.subject, safe='')}/versions/{info.version}/schema"
    )
    described = {
        "description": f"Checked against schema registry subject `{info.subject}` version "
        f"{info.version} ({info.schema_type}; {link}).",
        "x-lgsp-schema": {
            "subject": info.subject,
            "version": info.version,
            "schemaType": info.schema_type,
        },
    }
    if info.schema_type != "JSON":
        # XML Schema has no place in an OpenAPI document: referenced, not embedded.
        return {
            **described,
            "content": {
                "application/xml": {
                    "schema": {"description": f"An XML document valid against {link}."}
                }
            },
        }
    name = re.sub(r"[^A-Za-z0-9._-]", "_", info.subject) + f".v{info.version}"
    components["schemas"][name] = _embed(info.document, f"#/components/schemas/{name}")
    return {
        **described,
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


def _embed(schema: Any, at: str) -> Any:
    """A registered JSON Schema placed at `at` in the document: its local references
    (`#/$defs/...`) are rebased there, so any OpenAPI tool resolves them."""
    schema = copy.deepcopy(schema)
    if isinstance(schema, dict):
        schema.pop("$id", None)  # references are now relative to the OpenAPI document

    def rebase(node: Any, top: bool) -> None:
        if isinstance(node, dict):
            if "$id" in node and not top:
                return  # an embedded resource of its own: its references stay its own
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                node["$ref"] = at + ref[1:]
            for value in node.values():
                rebase(value, False)
        elif isinstance(node, list):
            for value in node:
                rebase(value, False)

    rebase(schema, True)
    return schema


def _header_parameters(service: ServiceEntry) -> dict[str, Any]:
    params: dict[str, Any] = {
        "RequestId": {
            "name": REQUEST_ID_HEADER,
            "in": "header",
            "required": False,
            "description": "Your id for this request; made up by the gateway when absent. "
            "It is in the answer, the audit log and what the provider receives.",
            "schema": {"type": "string", "pattern": REQUEST_ID_RE.pattern},
        }
    }
    what = {
        "officer": "The officer (MaCanBo) the request is made for.",
        "procedure": "The administrative procedure code (MaDVC) the request serves.",
        "case": "The case/dossier number the request belongs to.",
    }
    for name, header, max_length in FIELDS:
        required = name in service.required_fields
        params[header.removeprefix("X-").replace("-", "")] = {
            "name": header,
            "in": "header",
            "required": required,
            "description": what[name]
            + (" Required by this service." if required else " Optional; audited when sent."),
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": max_length,
                "pattern": FIELD_RE.pattern,
            },
        }
    return params


_RESPONSE_REQUEST_ID = {
    "description": "The request id: yours, or the one the gateway made.",
    "schema": {"type": "string"},
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details. `side` says where the failure lies: "
    "`caller` (fix the request), `gateway`, or `upstream` (the provider's system).",
    "properties": {
        "type": {"type": "string", "description": "The problem type URI; ends in a stable slug."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "side": {"type": "string", "enum": [s.value for s in Side]},
        "request_id": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail", "side", "request_id"],
}


# -- routes -----------------------------------------------------------------------------------


def _respond(body: bytes) -> web.Response:
    # The answer depends on who asks: shared caches must not keep it.
    return web.Response(
        body=body,
        content_type="application/json",
        headers={"Cache-Control": "private, no-cache", "Vary": f"Authorization, {API_KEY_HEADER}"},
    )


def add_routes(app: web.Application) -> None:
    app[CACHE] = DiscoveryCache()
    # The first listing, kept for callers written against it: GET /discovery/v1/allowed
    # says the same with the rights granted.
    app.router.add_get("/services", granted_services)
    app.router.add_get(PREFIX + "/services", list_services)
    app.router.add_get(PREFIX + "/allowed", allowed_services)
    app.router.add_get(
        PREFIX + "/services/{provider}/{code}/{version}/openapi.json", service_openapi
    )


async def granted_services(request: web.Request) -> web.Response:
    """The services the authenticated caller is granted something on."""
    state = request.app[STATE]
    config = state.pipeline.config
    caller = authenticate(request.headers, config, state.tokens)
    return json_response(
        {
            "client": caller.client.code,
            "services": [
                {
                    "provider": s.provider,
                    "code": s.code,
                    "version": s.version,
                    "name": s.name,
                    "address": f"/r1/{s.provider}/{s.code}/{s.version}/",
                    "requires": list(s.required_fields),
                    "enabled": s.enabled,
                }
                for s in config.services.values()
                if s.grants(caller.client)
            ],
        }
    )
