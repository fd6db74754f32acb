"""The Confluent Schema Registry REST API, served under `/registry`.

Confluent clients point `url` at `http://gateway/registry` and work unchanged, with a
bearer token or HTTP Basic (`basic.auth.user.info` = client id:secret). Reads need any
authenticated system; writes need the administrator role. Each call runs in one
transaction. Query parameters: gateway/edge/registry_queries.py.

Errors carry Confluent's `error_code` and `message` for its clients, and the RFC 9457
members (`type`, `title`, `status`, `detail`, `request_id`) for everyone else. The media
type is `application/problem+json` unless the caller accepts only the registry's own.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

import orjson
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.problems import PROBLEM_CONTENT_TYPE, Problem, ProblemType, Side
from gateway.core.tls import peer_certificate
from gateway.edge.registry_queries import (
    CompatibilityQuery,
    ConfigQuery,
    DeleteQuery,
    LookupQuery,
    ModeQuery,
    ReferencedByQuery,
    RegisterQuery,
    SchemaQuery,
    SchemaUsesQuery,
    SetModeQuery,
    SubjectsQuery,
    VersionQuery,
    VersionsQuery,
)
from gateway.edge.state import STATE
from gateway.edge.toolkit import Api, Call, Handler, NoQuery, QueryModel, Reply, Route
from gateway.edge.toolkit import add_routes as register
from gateway.identity.authn import authenticate, check_client_secret
from gateway.identity.directory import ClientEntry
from gateway.registry import schema, store
from gateway.registry.store import RegistryError

__all__ = ["CONTENT_TYPE", "PREFIX", "ROUTES", "add_routes"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
PREFIX = "/registry"
ADMIN_ROLE = "administrator"
# Confluent's codes for the gateway's own refusals; others are the HTTP status, as
# Confluent's REST layer answers them.
_CODES = {401: 40101, 403: 40301}


# -- the registry's way of authenticating, refusing and answering errors ----------------------


def _problem(status: int, code: int, message: str) -> Problem:
    ptype = ProblemType(f"registry-{code}", status, "Schema registry error", Side.CALLER)
    return Problem(ptype, message, error_code=code)


def _translate(error: Exception) -> Problem | None:
    if isinstance(error, RegistryError):
        return _problem(error.status, error.code, error.message)
    return None


async def _caller(request: web.Request) -> ClientEntry:
    """A bearer token, an API key, or HTTP Basic with a client id and secret (failed
    secrets counted per client id and address, as at the token endpoint)."""
    state = request.app[STATE]
    config = state.pipeline.config
    authorization = request.headers.get("Authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(authorization[6:], validate=True).decode()
            client_id, _, secret = raw.partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(401, 40101, "Malformed Basic credentials.") from None
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        keys = [f"client:{client_id}", f"addr:{request.remote or '-'}"]
        wait = await state.auth_failures.blocked(keys)
        if wait is not None:
            raise RegistryError(
                429,
                42901,
                f"Too many failed authentications; retry after {max(1, math.ceil(wait))} s.",
            )
        match = check_client_secret(config, client_id, secret)
        if match is None:
            await state.auth_failures.failed(keys)
            raise RegistryError(401, 40101, "Unknown client or wrong secret.")
        return match[0]
    try:
        peer = peer_certificate(request.transport)
        return authenticate(request.headers, config, state.tokens, peer).client
    except Problem as p:
        raise RegistryError(401, 40101, p.detail) from None


def _refuse_writer(client: ClientEntry, roles: tuple[str, ...]) -> Problem:
    return _problem(
        403,
        40301,
        f"Client '{client.code}' may read the registry but writing needs the "
        f"{' or '.join(roles)} role.",
    )


def _render(request: web.Request, problem: Problem, request_id: str, base: str) -> web.Response:
    """Confluent's `error_code`/`message`, with the RFC 9457 members beside them."""
    accept = request.headers.get("Accept", "")
    registry_only = "schemaregistry" in accept and "problem+json" not in accept
    members = {k: v for k, v in problem.extensions.items() if k != "error_code"}
    code = problem.extensions.get("error_code", _CODES.get(problem.status, problem.status))
    body = {
        "error_code": code,
        "message": problem.detail,
        "type": base + problem.ptype.slug,
        "title": problem.ptype.title,
        "status": problem.status,
        "detail": problem.detail,
        "request_id": request_id,
        **members,
    }
    headers = {REQUEST_ID_HEADER: request_id}
    if problem.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="lgsp-registry", Bearer realm="lgsp"'
    return web.Response(
        status=problem.status,
        body=orjson.dumps(body),
        content_type=CONTENT_TYPE if registry_only else PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


REGISTRY = Api(
    PREFIX,
    authenticate=_caller,
    refuse_role=_refuse_writer,
    translate=_translate,
    render=_render,
)
Work = Callable[[Call[Any], AsyncSession], Awaitable[Any]]


def _in_transaction(work: Work) -> Handler:
    """Run the work in one transaction and answer its result in the registry's type."""

    async def run(call: Call[Any]) -> web.StreamResponse:
        async with call.state.sessions() as session, session.begin():
            result = await work(call, session)
        return web.Response(body=orjson.dumps(result), content_type=CONTENT_TYPE)

    return run


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


def _actor(caller: ClientEntry) -> str:
    return f"client:{caller.code}"


def _page(items: list[Any], offset: int, limit: int) -> list[Any]:
    """Confluent's pages: skip `offset`, then at most `limit` (negative: all)."""
    return items[offset:] if limit < 0 else items[offset : offset + limit]


def _version(call: Call[Any]) -> int | None:
    return store.parse_version(call.path["version"])


def _schema_id(call: Call[Any]) -> int:
    value = call.path["id"]
    if not value.isdigit():
        raise RegistryError(404, 40403, f"Schema {value} not found")
    return int(value)


# -- handlers ---------------------------------------------------------------------------------


async def get_subjects(call: Call[SubjectsQuery], s: AsyncSession) -> Any:
    q = call.query
    subjects = await store.list_subjects(s, deleted=q.deleted or q.deleted_only)
    if q.deleted_only:
        live = set(await store.list_subjects(s, deleted=False))
        subjects = [x for x in subjects if x not in live]
    if q.subjectPrefix is not None:
        subjects = [x for x in subjects if x.startswith(q.subjectPrefix)]
    return _page(subjects, q.offset, q.limit)


async def get_versions(call: Call[VersionsQuery], s: AsyncSession) -> Any:
    q, subject = call.query, call.path["subject"]
    versions = await store.list_versions(s, subject, deleted=q.deleted or q.deleted_only)
    if q.deleted_only:
        try:
            live = set(await store.list_versions(s, subject, deleted=False))
        except RegistryError:  # every version is soft-deleted
            live = set()
        versions = [v for v in versions if v not in live]
    return _page(versions, q.offset, q.limit)


async def get_version(call: Call[VersionQuery], s: AsyncSession) -> Any:
    subject = call.path["subject"]
    info = await store.get_version(s, subject, _version(call), deleted=call.query.deleted)
    return info.as_confluent()


async def get_version_schema(call: Call[VersionQuery], s: AsyncSession) -> Any:
    subject = call.path["subject"]
    info = await store.get_version(s, subject, _version(call), deleted=call.query.deleted)
    # The schema itself, not wrapped: a JSON Schema as JSON, an XSD as a JSON string.
    return orjson.loads(info.schema) if info.schema_type == "JSON" else info.schema


async def post_version(call: Call[RegisterQuery], s: AsyncSession) -> Any:
    body = await _body(call.request)
    parsed = store.parse_schema(body.get("schemaType"), body.get("schema"))
    schema_id, _, _ = await store.register(
        s, call.path["subject"], parsed, actor=_actor(call.caller), text=body["schema"]
    )
    return {"id": schema_id}


async def post_lookup(call: Call[LookupQuery], s: AsyncSession) -> Any:
    body = await _body(call.request)
    parsed = store.parse_schema(body.get("schemaType"), body.get("schema"))
    return (await store.lookup(s, call.path["subject"], parsed)).as_confluent()


async def delete_subject(call: Call[DeleteQuery], s: AsyncSession) -> Any:
    return await store.delete_subject(
        s, call.path["subject"], permanent=call.query.permanent, actor=_actor(call.caller)
    )


async def delete_version(call: Call[DeleteQuery], s: AsyncSession) -> Any:
    return await store.delete_version(
        s,
        call.path["subject"],
        _version(call),
        permanent=call.query.permanent,
        actor=_actor(call.caller),
    )


async def get_schema(call: Call[SchemaQuery], s: AsyncSession) -> Any:
    row = await store.schema_by_id(s, _schema_id(call))
    return {"schema": row.schema, "schemaType": row.schema_type}


async def get_schema_text(call: Call[SchemaQuery], s: AsyncSession) -> Any:
    row = await store.schema_by_id(s, _schema_id(call))
    # The schema itself, not wrapped, as for a version's /schema.
    return orjson.loads(row.schema) if row.schema_type == "JSON" else row.schema


async def get_referenced_by(call: Call[ReferencedByQuery], s: AsyncSession) -> Any:
    """The schemas that refer to this version: none, since schema references are refused
    (a schema carries its definitions under $defs); 404 for a version that is not."""
    await store.get_version(s, call.path["subject"], _version(call))
    return []


async def get_root(call: Call[NoQuery], s: AsyncSession) -> Any:
    return {}  # as Confluent's root answers: clients probe it


async def _uses(call: Call[SchemaUsesQuery], s: AsyncSession) -> list[dict[str, Any]]:
    uses = await store.subjects_of_schema(s, _schema_id(call))
    if call.query.subject is not None:
        uses = [u for u in uses if u["subject"] == call.query.subject]
    return uses


async def get_schema_versions(call: Call[SchemaUsesQuery], s: AsyncSession) -> Any:
    return _page(await _uses(call, s), call.query.offset, call.query.limit)


async def get_schema_subjects(call: Call[SchemaUsesQuery], s: AsyncSession) -> Any:
    subjects = sorted({u["subject"] for u in await _uses(call, s)})
    return _page(subjects, call.query.offset, call.query.limit)


async def get_types(call: Call[NoQuery], s: AsyncSession) -> Any:
    return list(schema.SCHEMA_TYPES)


async def post_compatibility(call: Call[CompatibilityQuery], s: AsyncSession) -> Any:
    body = await _body(call.request)
    parsed = store.parse_schema(body.get("schemaType"), body.get("schema"))
    subject = call.path["subject"]
    raw = call.path.get("version")
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
    if call.query.verbose:
        result["messages"] = messages
    return result


async def get_config(call: Call[ConfigQuery], s: AsyncSession) -> Any:
    subject = call.path.get("subject")
    level = await store.get_compatibility(
        s, subject, default_to_global=subject is None or call.query.defaultToGlobal
    )
    if level is None:
        raise RegistryError(
            404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
        )
    return {"compatibilityLevel": level}


async def put_config(call: Call[NoQuery], s: AsyncSession) -> Any:
    body = await _body(call.request)
    level = await store.set_compatibility(
        s, call.path.get("subject"), body.get("compatibility"), actor=_actor(call.caller)
    )
    return {"compatibility": level}


async def delete_config(call: Call[NoQuery], s: AsyncSession) -> Any:
    level = await store.delete_compatibility(s, call.path["subject"], actor=_actor(call.caller))
    return {"compatibilityLevel": level}


async def get_mode(call: Call[ModeQuery], s: AsyncSession) -> Any:
    subject = call.path.get("subject")
    mode = await store.get_mode(
        s, subject, default_to_global=subject is None or call.query.defaultToGlobal
    )
    if mode is None:
        raise RegistryError(404, 40401, f"Subject '{subject}' does not have a mode of its own")
    return {"mode": mode}


async def put_mode(call: Call[SetModeQuery], s: AsyncSession) -> Any:
    body = await _body(call.request)
    mode = await store.set_mode(
        s, call.path.get("subject"), body.get("mode"), actor=_actor(call.caller)
    )
    return {"mode": mode}


async def delete_mode(call: Call[NoQuery], s: AsyncSession) -> Any:
    return {"mode": await store.delete_mode(s, call.path["subject"], actor=_actor(call.caller))}


# -- routes -----------------------------------------------------------------------------------


def _route(
    method: str, path: str, work: Work, summary: str, query: type[QueryModel], *, write: bool
) -> Route:
    return REGISTRY.route(
        method,
        path,
        _in_transaction(work),
        summary,
        reply=Reply(200, "As Confluent's Schema Registry answers."),
        roles=(ADMIN_ROLE,) if write else (),
        query=query,
        path_integers=("id",) if "{id}" in path else (),
    )


def _read(method: str, path: str, work: Work, summary: str, query: type[QueryModel]) -> Route:
    return _route(method, path, work, summary, query, write=False)


def _write(method: str, path: str, work: Work, summary: str, query: type[QueryModel]) -> Route:
    return _route(method, path, work, summary, query, write=True)


_SUBJECT = "/subjects/{subject}"
_VERSION = _SUBJECT + "/versions/{version}"
_COMPATIBILITY = "/compatibility" + _SUBJECT + "/versions"
ROUTES: tuple[Route, ...] = (
    _read("GET", "/", get_root, "The registry's root (answers {})", NoQuery),
    _read("GET", "/subjects", get_subjects, "Subjects", SubjectsQuery),
    _read("GET", _SUBJECT + "/versions", get_versions, "A subject's versions", VersionsQuery),
    _write("POST", _SUBJECT + "/versions", post_version, "Register a schema", RegisterQuery),
    _read("GET", _VERSION, get_version, "One version", VersionQuery),
    _read("GET", _VERSION + "/schema", get_version_schema, "A version's schema", VersionQuery),
    _read(
        "GET", _VERSION + "/referencedby", get_referenced_by, "Who refers to it", ReferencedByQuery
    ),
    _write("DELETE", _VERSION, delete_version, "Delete a version", DeleteQuery),
    _read("POST", _SUBJECT, post_lookup, "Is this schema registered?", LookupQuery),
    _write("DELETE", _SUBJECT, delete_subject, "Delete a subject", DeleteQuery),
    _read("GET", "/schemas/types", get_types, "The schema types", NoQuery),
    _read("GET", "/schemas/ids/{id}", get_schema, "A schema by id", SchemaQuery),
    _read("GET", "/schemas/ids/{id}/schema", get_schema_text, "Its schema, raw", SchemaQuery),
    _read("GET", "/schemas/ids/{id}/versions", get_schema_versions, "Uses", SchemaUsesQuery),
    _read("GET", "/schemas/ids/{id}/subjects", get_schema_subjects, "Subjects", SchemaUsesQuery),
    _read("POST", _COMPATIBILITY, post_compatibility, "Test against all", CompatibilityQuery),
    _read(
        "POST",
        _COMPATIBILITY + "/{version}",
        post_compatibility,
        "Test against a version",
        CompatibilityQuery,
    ),
    _read("GET", "/config", get_config, "The registry-wide compatibility", ConfigQuery),
    _write("PUT", "/config", put_config, "Set the registry-wide compatibility", NoQuery),
    _read("GET", "/config/{subject}", get_config, "A subject's compatibility", ConfigQuery),
    _write("PUT", "/config/{subject}", put_config, "Set a subject's compatibility", NoQuery),
    _write("DELETE", "/config/{subject}", delete_config, "Remove a subject's level", NoQuery),
    _read("GET", "/mode", get_mode, "The registry's mode", ModeQuery),
    _write("PUT", "/mode", put_mode, "Set the registry's mode", SetModeQuery),
    _read("GET", "/mode/{subject}", get_mode, "A subject's mode", ModeQuery),
    _write("PUT", "/mode/{subject}", put_mode, "Set a subject's mode", SetModeQuery),
    _write("DELETE", "/mode/{subject}", delete_mode, "Remove a subject's mode", NoQuery),
)


def add_routes(app: web.Application) -> None:
    register(app, ROUTES)
