"""The Confluent Schema Registry REST API, served under `/registry`.

Confluent clients point `url` at `http://gateway/registry` and work unchanged, with a
bearer token or HTTP Basic (`basic.auth.user.info` = client id:secret). Reads need any
authenticated system; writes need the administrator role.

Errors carry Confluent's `error_code` and `message` for its clients, and the RFC 9457
members (`type`, `title`, `status`, `detail`, `request_id`) for everyone else. The media
type is `application/problem+json` unless the caller accepts only the registry's own.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

import orjson
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.problems import PROBLEM_CONTENT_TYPE, Problem
from gateway.edge.state import STATE
from gateway.exchange.accountability import request_id_from
from gateway.identity.authn import authenticate, check_client_secret
from gateway.identity.directory import ClientEntry
from gateway.registry import schema, store
from gateway.registry.store import RegistryError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
PREFIX = "/registry"
ADMIN_ROLE = "administrator"

Handler = Callable[[web.Request, AsyncSession, ClientEntry], Awaitable[Any]]


def _caller(request: web.Request) -> ClientEntry:
    state = request.app[STATE]
    config = state.pipeline.config
    authorization = request.headers.get("Authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(authorization[6:], validate=True).decode()
            client_id, _, secret = raw.partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(401, 40101, "Malformed Basic credentials.") from None
        match = check_client_secret(config, unquote_plus(client_id), unquote_plus(secret))
        if match is None:
            raise RegistryError(401, 40101, "Unknown client or wrong secret.")
        return match[0]
    try:
        return authenticate(request.headers, config, state.tokens).client
    except Problem as p:
        raise RegistryError(401, 40101, p.detail) from None


def _respond(request: web.Request, data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type=CONTENT_TYPE)


def _error(request: web.Request, err: RegistryError, request_id: str, base: str) -> web.Response:
    accept = request.headers.get("Accept", "")
    registry_only = "schemaregistry" in accept and "problem+json" not in accept
    body = {
        "error_code": err.code,
        "message": err.message,
        "type": f"{base}registry-{err.code}",
        "title": "Schema registry error",
        "status": err.status,
        "detail": err.message,
        "request_id": request_id,
    }
    headers = {REQUEST_ID_HEADER: request_id}
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="lgsp-registry", Bearer realm="lgsp"'
    return web.Response(
        status=err.status,
        body=orjson.dumps(body),
        content_type=CONTENT_TYPE if registry_only else PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def endpoint(
    *, write: bool
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.Response]]]:
    """Authenticate, check the role, run the handler in one transaction, shape the answer."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def run(request: web.Request) -> web.Response:
            state = request.app[STATE]
            request_id, _ = request_id_from(request.headers)
            try:
                caller = _caller(request)
                if write and ADMIN_ROLE not in caller.roles:
                    raise RegistryError(
                        403,
                        40301,
                        f"Client '{caller.code}' may read the registry but writing needs the "
                        f"{ADMIN_ROLE} role.",
                    )
                async with state.sessions() as session, session.begin():
                    result = await handler(request, session, caller)
            except RegistryError as err:
                return _error(request, err, request_id, state.settings.problem_type_base)
            response = _respond(request, result)
            response.headers[REQUEST_ID_HEADER] = request_id
            return response

        return run

    return wrap


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise RegistryError(422, 42201, "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise RegistryError(422, 42201, "The request body must be a JSON object.")
    if body.get("references"):
        raise RegistryError(
            422, 42201, "Schema references are not supported; use $defs within the schema."
        )
    return body


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _actor(caller: ClientEntry) -> str:
    return f"client:{caller.code}"


# -- handlers ---------------------------------------------------------------------------------


@endpoint(write=False)
async def get_subjects(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    return await store.list_subjects(s, deleted=_flag(request, "deleted"))


@endpoint(write=False)
async def get_versions(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    return await store.list_versions(
        s, request.match_info["subject"], deleted=_flag(request, "deleted")
    )


@endpoint(write=False)
async def get_version(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    info = await store.get_version(
        s,
        request.match_info["subject"],
        store.parse_version(request.match_info["version"]),
        deleted=_flag(request, "deleted"),
    )
    return info.as_confluent()


@endpoint(write=False)
async def get_version_schema(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    info = await store.get_version(
        s, request.match_info["subject"], store.parse_version(request.match_info["version"])
    )
    # The schema itself, not wrapped: a JSON Schema as JSON, an XSD as a JSON string.
    return orjson.loads(info.schema) if info.schema_type == "JSON" else info.schema


@endpoint(write=True)
async def post_version(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    body = await _body(request)
    parsed = store.parse_schema(body.get("schemaType"), body.get("schema"))
    schema_id, _, _ = await store.register(
        s, request.match_info["subject"], parsed, actor=_actor(c), text=body["schema"]
    )
    return {"id": schema_id}


@endpoint(write=False)
async def post_lookup(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    body = await _body(request)
    parsed = store.parse_schema(body.get("schemaType"), body.get("schema"))
    return (await store.lookup(s, request.match_info["subject"], parsed)).as_confluent()


@endpoint(write=True)
async def delete_subject(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    return await store.delete_subject(
        s, request.match_info["subject"], permanent=_flag(request, "permanent"), actor=_actor(c)
    )


@endpoint(write=True)
async def delete_version(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    return await store.delete_version(
        s,
        request.match_info["subject"],
        store.parse_version(request.match_info["version"]),
        permanent=_flag(request, "permanent"),
        actor=_actor(c),
    )


@endpoint(write=False)
async def get_schema(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    row = await store.schema_by_id(s, _schema_id(request))
    return {"schema": row.schema, "schemaType": row.schema_type}


@endpoint(write=False)
async def get_schema_versions(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    return await store.subjects_of_schema(s, _schema_id(request))


@endpoint(write=False)
async def get_schema_subjects(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    return sorted({r["subject"] for r in await store.subjects_of_schema(s, _schema_id(request))})


def _schema_id(request: web.Request) -> int:
    value = request.match_info["id"]
    if not value.isdigit():
        raise RegistryError(404, 40403, f"Schema {value} not found")
    return int(value)


@endpoint(write=False)
async def get_types(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    return list(schema.SCHEMA_TYPES)


@endpoint(write=False)
async def post_compatibility(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    body = await _body(request)
    parsed = store.parse_schema(body.get("schemaType"), body.get("schema"))
    subject = request.match_info["subject"]
    raw = request.match_info.get("version")
    version: int | str | None = "all" if raw is None else store.parse_version(raw)
    try:
        messages = await store.test_compatibility(s, subject, version, parsed)
    except RegistryError as err:
        # Testing against a subject with no versions yet: anything is compatible.
        if err.code == 40401 and raw is None:
            messages = []
        else:
            raise
    result: dict[str, Any] = {"is_compatible": not messages}
    if _flag(request, "verbose"):
        result["messages"] = messages
    return result


@endpoint(write=False)
async def get_config(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    subject = request.match_info.get("subject")
    level = await store.get_compatibility(
        s, subject, default_to_global=subject is None or _flag(request, "defaultToGlobal")
    )
    if level is None:
        raise RegistryError(
            404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
        )
    return {"compatibilityLevel": level}


@endpoint(write=True)
async def put_config(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    body = await _body(request)
    level = await store.set_compatibility(
        s, request.match_info.get("subject"), body.get("compatibility"), actor=_actor(c)
    )
    return {"compatibility": level}


@endpoint(write=True)
async def delete_config(request: web.Request, s: AsyncSession, c: ClientEntry) -> Any:
    level = await store.delete_compatibility(s, request.match_info["subject"], actor=_actor(c))
    return {"compatibilityLevel": level}


def add_routes(app: web.Application) -> None:
    r = app.router
    subject = PREFIX + "/subjects/{subject}"
    r.add_get(PREFIX + "/subjects", get_subjects)
    r.add_get(subject + "/versions", get_versions)
    r.add_post(subject + "/versions", post_version)
    r.add_get(subject + "/versions/{version}", get_version)
    r.add_get(subject + "/versions/{version}/schema", get_version_schema)
    r.add_delete(subject + "/versions/{version}", delete_version)
    r.add_post(subject, post_lookup)
    r.add_delete(subject, delete_subject)
    r.add_get(PREFIX + "/schemas/types", get_types)
    r.add_get(PREFIX + "/schemas/ids/{id}", get_schema)
    r.add_get(PREFIX + "/schemas/ids/{id}/versions", get_schema_versions)
    r.add_get(PREFIX + "/schemas/ids/{id}/subjects", get_schema_subjects)
    r.add_post(PREFIX + "/compatibility/subjects/{subject}/versions", post_compatibility)
    r.add_post(PREFIX + "/compatibility/subjects/{subject}/versions/{version}", post_compatibility)
    r.add_get(PREFIX + "/config", get_config)
    r.add_put(PREFIX + "/config", put_config)
    r.add_get(PREFIX + "/config/{subject}", get_config)
    r.add_put(PREFIX + "/config/{subject}", put_config)
    r.add_delete(PREFIX + "/config/{subject}", delete_config)
