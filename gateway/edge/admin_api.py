"""The admin API, under `/admin/v1`: the province's configuration and the systems'
credentials, changed over HTTP by clients that hold an administrative role.

Roles (held by clients, see gateway/roles.py):

    administrator   everything
    operator        services (settings, timeouts, schemas...), upstreams and rate limits;
                    not agencies, groups, clients, credentials, access rights, nor the
                    policy as a whole (apply, rollback)
    auditor         reads
    observer        reads

Every configuration change goes through the versioned policy state
(gateway/store/policy_state.py): the plain policy document is edited, validated as a
whole, and committed as one new policy version whose changes are each recorded as an
admin event with their before and after, under the actor `admin-api:<client>`. Then the
gateway's tables are rebuilt before the answer goes out, so the caller's next request
already sees its change (other replicas pick it up on their own within a second).

`ROUTES` below is the one table of the API: aiohttp's routes and the OpenAPI 3.1
document served at `/admin/v1/openapi.json` are both made from it, so they cannot
disagree. Each entry names its roles, its query parameters (anything else is refused),
its request body model and its answer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import orjson
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.diff import Change, diff, rate_limit_key
from gateway.config.policy import (
    AgencySpec,
    ClientSpec,
    GroupSpec,
    PolicySet,
    RateLimitSpec,
    ServiceSpec,
    UpstreamSpec,
    policy_document,
)
from gateway.core.problems import (
    ACCESS_DENIED,
    BAD_REQUEST,
    CONFLICT,
    INVALID_CONFIGURATION,
    INVALID_PARAMETER,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    PROBLEM_CONTENT_TYPE,
    Problem,
)
from gateway.edge.reload import reload_config
from gateway.edge.roles import require_role
from gateway.edge.state import STATE, GatewayState
from gateway.identity import credentials
from gateway.identity.directory import ClientEntry
from gateway.store import changes as admin
from gateway.store.models import AdminEvent, Client, Credential, PolicyVersion, utcnow
from gateway.upstream.allowlist import OutboundPolicy

PREFIX = "/admin/v1"
OPENAPI_VERSION = "3.1.0"
SOURCE = "admin-api"
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_COMMENT_CHARS = 2000

ADMINISTRATOR = "administrator"
OPERATOR = "operator"
READ = (ADMINISTRATOR, OPERATOR, "auditor", "observer")
OPERATE = (ADMINISTRATOR, OPERATOR)
ADMINISTER = (ADMINISTRATOR,)
# What an operator's change may touch (policy_diff kinds). Access rights, clients,
# groups and agencies are the administrator's.
OPERATOR_KINDS = frozenset({"service", "upstream", "rate_limit"})

M = TypeVar("M", bound=BaseModel)


# -- the models of what goes in and out (also the OpenAPI document's schemas) ----------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(_Out):
    """One reason a change is refused: `field` is a path into the request body
    (`timeouts.total_ms`, `services[2].access[0].client`; empty for the body as a whole)."""

    field: str
    detail: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str
    title: str
    status: int
    detail: str
    side: Literal["caller", "gateway", "upstream"]
    request_id: str
    instance: str | None = None
    errors: list[FieldError] | None = Field(
        None, description="invalid-configuration: each field refused and why"
    )
    client: str | None = Field(None, description="access-denied: the client refused")
    required_roles: list[str] | None = Field(
        None, description="access-denied: a role from this list would have been enough"
    )


class ChangeOut(_Out):
    summary: str
    details: list[str] = Field(description="field by field: `path: old → new`")
    kind: Literal["agency", "group", "client", "upstream", "service", "access", "rate_limit"]
    key: str
    op: Literal["create", "update", "delete"]


class CommitOut(_Out):
    version: int | None = Field(description="the new policy version; null: nothing changed")
    changes: list[ChangeOut]


class DiffOut(_Out):
    changes: list[ChangeOut]


class PolicyOut(_Out):
    version: int | None = Field(description="the policy version this document is")
    document: PolicySet


class VersionOut(_Out):
    version: int
    at: datetime
    actor: str
    source: str
    comment: str | None
    digest: str
    changes: list[str]


class VersionList(_Out):
    items: list[VersionOut]


class AdminEventOut(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    comment: str | None


class AdminEventList(_Out):
    items: list[AdminEventOut]
    last_id: int | None = Field(description="pass as since_id to get the events after these")


class CredentialIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["secret", "api_key"]
    expires_at: AwareDatetime | None = None


class CredentialRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["secret", "api_key"]
    grace_seconds: int = Field(
        0,
        ge=0,
        le=86_400,
        description="0: the others are revoked at once; otherwise they expire this much later",
    )


class CredentialOut(_Out):
    id: int
    client: str
    kind: Literal["secret", "api_key"]
    hint: str = Field(description="the first characters of the value, to tell them apart")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class CredentialList(_Out):
    items: list[CredentialOut]


class IssuedCredential(CredentialOut):
    secret: str = Field(description="the value itself: shown in this answer only, never again")


class RotationOut(_Out):
    issued: IssuedCredential
    revoked: list[CredentialOut]
    expiring: list[CredentialOut]


# -- the route table --------------------------------------------------------------------------


Handler = Callable[[web.Request, "Call"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter."""

    name: str
    description: str
    type: Literal["string", "integer"] = "string"


@dataclass(frozen=True, slots=True)
class Body:
    """A request body: a model; `optional` fields may be left out (the path names them);
    `patch`: a JSON merge patch (RFC 7396) over the model, every field optional."""

    model: type[BaseModel]
    optional: tuple[str, ...] = ()
    patch: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    description: str
    model: type[BaseModel] | None = None
    many: bool = False  # {"items": [model]}
    one_or_many: bool = False  # the list, or one item when the query addresses one
    etag: bool = False  # carries the policy version as its ETag


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # under PREFIX, aiohttp and OpenAPI templates alike
    handler: Handler
    roles: tuple[str, ...]  # empty: public
    summary: str
    reply: Reply
    body: Body | None = None
    query: tuple[Param, ...] = ()
    versioned: bool = False  # changes the policy: takes If-Match, may answer 409 and 422

    @property
    def url(self) -> str:
        return PREFIX + self.path


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a route: the route, the gateway, and the admin caller."""

    route: Route
    state: GatewayState
    client: ClientEntry | None  # None on the public route only

    @property
    def caller(self) -> ClientEntry:
        if self.client is None:
            raise RuntimeError(f"{self.route.path} is public: there is no caller")
        return self.client

    @property
    def actor(self) -> str:
        return f"admin-api:{self.caller.code}"

    def check_url(self, url: str) -> None:
        OutboundPolicy.from_settings(self.state.settings).check_url(url)


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def run(request: web.Request) -> web.StreamResponse:
        client = require_role(request, *route.roles) if route.roles else None
        _check_query(request, route.query)
        return await route.handler(request, Call(route, request.app[STATE], client))

    return run


def _check_query(request: web.Request, params: Iterable[Param]) -> None:
    """Refuse unknown query parameters: a misspelt one must not be silently ignored."""
    known = {p.name for p in params}
    for name in request.query:
        if name not in known:
            takes = ", ".join(sorted(known)) or "none"
            raise Problem(
                INVALID_PARAMETER,
                f"'{name}' is not a parameter of {request.method} {request.path} "
                f"(it takes: {takes}).",
                parameter=name,
            )
        if len(request.query.getall(name)) > 1:
            raise Problem(INVALID_PARAMETER, f"'{name}' is given more than once.", parameter=name)


# -- answers and request parts ----------------------------------------------------------------


def _respond(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


def _etag(version: int | None) -> dict[str, str]:
    return {"ETag": f'"{version or 0}"'}


async def _json_body(request: web.Request) -> dict[str, Any]:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise Problem(
            PAYLOAD_TOO_LARGE, f"An admin request body is at most {MAX_BODY_BYTES} bytes."
        )
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise Problem(
            PAYLOAD_TOO_LARGE, f"An admin request body is at most {MAX_BODY_BYTES} bytes."
        )
    if not raw.strip():
        raise Problem(BAD_REQUEST, "This endpoint takes a JSON object as its request body.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Problem(BAD_REQUEST, f"The request body is not JSON: {e}.") from None
    if not isinstance(body, dict):
        raise Problem(BAD_REQUEST, "The request body must be a JSON object.")
    return body


def _comment(request: web.Request) -> str | None:
    comment = request.query.get("comment")
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise Problem(
            INVALID_PARAMETER,
            f"'comment' is at most {MAX_COMMENT_CHARS} characters.",
            parameter="comment",
        )
    return comment or None


def _int_param(
    request: web.Request, name: str, default: int | None, low: int, high: int
) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Problem(
            INVALID_PARAMETER,
            f"'{name}' is a whole number from {low} to {high}, not {raw!r}.",
            parameter=name,
        )
    return int(raw)


def _path_int(request: web.Request, name: str, what: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise Problem(NOT_FOUND, f"No {what} {raw!r}: {what}s are numbered.")
    return int(raw)


# -- validation errors, named by field --------------------------------------------------------

_SECTIONS = {
    "agencies": "agency",
    "groups": "group",
    "clients": "client",
    "upstreams": "upstream",
    "services": "service",
    "rate_limits": "rate limit",
}
_DOC_PATH = r"(?:agencies|groups|clients|upstreams|services|rate_limits)(?:\[\d+\][\w.\[\]-]*)?"
_DOC_ITEM = re.compile(rf"^({_DOC_PATH}): (.+)$", re.S)
_DOC_SPLIT = re.compile(rf"; (?={_DOC_PATH}: )")
_ENTITY = re.compile(r"^(\w+)\[(\d+)\]")
# Pydantic names the member of a union it tried (`int`, `literal['latest']`); not a field.
_UNION_TAGS = frozenset({"int", "str", "float", "bool", "none", "list", "dict"})


def _field_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or re.search(r"[^\w-]", part):
            continue
        else:
            out += ("." if out else "") + part
    return out


def _message_errors(message: str) -> list[dict[str, str]]:
    """Split a whole-document message ("clients[3].agency: no agency 'X'; services[1]...")
    into one error per field it names."""
    errors = []
    for part in _DOC_SPLIT.split(message):
        m = _DOC_ITEM.match(part)
        errors.append({"field": m[1], "detail": m[2]} if m else {"field": "", "detail": part})
    return errors


def _validation_errors(e: ValidationError) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    for err in e.errors(include_url=False):
        detail = str(err["msg"]).removeprefix("Value error, ")
        path = _field_path(err["loc"])
        if path:
            errors.append({"field": path, "detail": detail})
        else:  # a check of the whole: its message names the fields
            errors += _message_errors(detail)
    # One entry per field: a union's members each add their own complaint.
    merged: dict[str, dict[str, str]] = {}
    for item in errors:
        if item["field"] and item["field"] in merged:
            merged[item["field"]]["detail"] += f"; or: {item['detail']}"
        else:
            merged[item["field"] or f"#{len(merged)}"] = item
    return list(merged.values())


def _entity_name(doc: dict[str, Any] | None, path: str) -> str | None:
    """`clients[3].agency` -> "client 'motcua'", looked up in the document it points into."""
    m = _ENTITY.match(path)
    if doc is None or m is None or m[1] not in _SECTIONS:
        return None
    items = doc.get(m[1])
    if not isinstance(items, list) or int(m[2]) >= len(items):
        return None
    item = items[int(m[2])]
    if not isinstance(item, dict):
        return None
    if m[1] == "rate_limits":
        return f"rate limit for {rate_limit_key(item.get('client'), item.get('service'))}"
    if m[1] == "services":
        key = f"{item.get('provider')}/{item.get('code')}/{item.get('version')}"
    else:
        key = str(item.get("name" if m[1] == "upstreams" else "code"))
    return f"{_SECTIONS[m[1]]} {key!r}"


def _refused(
    what: str,
    errors: list[dict[str, str]],
    *,
    doc: dict[str, Any] | None = None,
    focus: str | None = None,
    deleting: str | None = None,
) -> Problem:
    """The 422 answer. Errors inside the entity the call is about (`focus`, e.g.
    "clients[5]") are named relative to it, as the caller's body is; others keep their
    document path and say which entity they are in."""
    named: list[dict[str, str]] = []
    for err in errors:
        field, detail = err["field"], err["detail"]
        if focus and (field == focus or field.startswith(focus + ".")):
            field = field[len(focus) + 1 :]
        elif deleting and detail.startswith("no ") and (who := _entity_name(doc, field)):
            detail = f"{who} still refers to {deleting}"
        elif who := _entity_name(doc, field):
            detail = f"{detail} (in {who})"
        named.append({"field": field, "detail": detail})
    lines = "; ".join(f"{e['field']}: {e['detail']}" if e["field"] else e["detail"] for e in named)
    return Problem(INVALID_CONFIGURATION, f"{what}: {lines}", errors=named)


def _parse(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _refused(what, _validation_errors(e)) from None


# -- committing -------------------------------------------------------------------------------


def _changes(changes: Iterable[Change]) -> list[dict[str, Any]]:
    return [
        ChangeOut.model_validate(
            {
                "summary": c.summary,
                "details": c.details(),
                "kind": c.kind,
                "key": c.key,
                "op": c.op,
            }
        ).model_dump(mode="json")
        for c in changes
    ]


async def _begin_change(session: AsyncSession, request: web.Request) -> None:
    """Take the configuration lock before reading anything the change depends on, so two
    admins' edits apply one after the other instead of one undoing the other; then honour
    If-Match (the policy version an ETag of this API named)."""
    await admin.serialize_changes(session)
    expected = request.headers.get("If-Match")
    if expected is None:
        return
    current = await session.scalar(select(func.max(PolicyVersion.id))) or 0
    tags = {t.strip().removeprefix("W/").strip('"') for t in expected.split(",")}
    if "*" not in tags and str(current) not in tags:
        raise Problem(
            CONFLICT,
            f"The policy is now at version {current}, not {expected}: someone changed it since "
            f"you read it. Read it again (GET {PREFIX}/policy) and redo the change.",
            current_version=current,
        )


def _operator_may(call: Call, changes: list[Change]) -> None:
    """An operator's change may not reach beyond services, upstreams and rate limits (a
    service's rights go with the service when it is deleted)."""
    if ADMINISTRATOR in call.caller.roles:
        return
    deleted = {c.key for c in changes if c.kind == "service" and c.op == "delete"}
    beyond = [
        c
        for c in changes
        if c.kind not in OPERATOR_KINDS
        and not (c.kind == "access" and c.op == "delete" and c.key in deleted)
    ]
    if beyond:
        what = "; ".join(c.summary for c in beyond)
        access = (
            " Access rights (a service's `access` list) are"
            if any(c.kind == "access" for c in beyond)
            else " This is"
        )
        raise Problem(
            ACCESS_DENIED,
            f"Client '{call.caller.code}' holds the 'operator' role, which changes services, "
            f"upstreams and rate limits, but this change also {what}.{access} the "
            f"'{ADMINISTRATOR}' role's to change; leave them as they are or ask an "
            "administrator.",
            client=call.caller.code,
            required_roles=[ADMINISTRATOR],
            changes=[c.summary for c in beyond],
        )


async def _commit_edit(
    request: web.Request,
    call: Call,
    what: str,
    edit: Callable[[dict[str, Any]], str | None],
    *,
    deleting: str | None = None,
) -> web.Response:
    """One edit of the policy document as one new policy version; `edit` returns the path
    of the entity it is about (e.g. "clients[5]"), to name errors relative to it."""
    seen: dict[str, Any] = {}

    def run(doc: dict[str, Any]) -> None:
        seen["doc"] = doc
        seen["focus"] = edit(doc)

    state = call.state
    async with state.sessions() as s, s.begin():
        await _begin_change(s, request)
        try:
            commit = await policy_state.edit_policy(
                s,
                run,
                actor=call.actor,
                source=SOURCE,
                comment=_comment(request),
                check_url=call.check_url,
            )
        except ValidationError as e:
            errors = _validation_errors(e)
            raise _refused(
                what, errors, doc=seen.get("doc"), focus=seen.get("focus"), deleting=deleting
            ) from None
        except policy_state.PolicyRejected as e:
            raise _refused(
                what,
                _message_errors(str(e)),
                doc=seen.get("doc"),
                focus=seen.get("focus"),
                deleting=deleting,
            ) from None
        _operator_may(call, commit.changes)
    await reload_config(state)
    return _respond({"version": commit.version, "changes": _changes(commit.changes)})


async def _current(state: GatewayState) -> tuple[dict[str, Any], int | None]:
    """The current policy document and its version (read first: an ETag never claims a
    newer version than the document it comes with)."""
    async with state.sessions() as s:
        version = await s.scalar(select(func.max(PolicyVersion.id)))
        policy = await policy_state.current_policy(s)
    return policy_document(policy), version


# -- the policy as a whole --------------------------------------------------------------------


async def get_policy(request: web.Request, call: Call) -> web.StreamResponse:
    version = _int_param(request, "version", None, 1, 2**62)
    if version is None:
        doc, current = await _current(call.state)
        return _respond({"version": current, "document": doc}, headers=_etag(current))
    async with call.state.sessions() as s:
        try:
            policy = await policy_state.version_policy(s, version)
        except policy_state.PolicyRejected as e:
            raise Problem(NOT_FOUND, str(e)) from None
    return _respond({"version": version, "document": policy_document(policy)})


def _whole(body: dict[str, Any]) -> PolicySet:
    what = "The policy document is not valid"
    if set(body) == {"version", "document"}:
        what += f" (send the document itself, not the envelope GET {PREFIX}/policy answers)"
    try:
        return PolicySet.model_validate(body)
    except ValidationError as e:
        raise _refused(what, _validation_errors(e), doc=body) from None


async def put_policy(request: web.Request, call: Call) -> web.StreamResponse:
    body = await _json_body(request)
    policy = _whole(body)
    async with call.state.sessions() as s, s.begin():
        await _begin_change(s, request)
        try:
            commit = await policy_state.commit_policy(
                s,
                policy,
                actor=call.actor,
                source=SOURCE,
                comment=_comment(request),
                check_url=call.check_url,
            )
        except policy_state.PolicyRejected as e:
            raise _refused("The policy is refused", _message_errors(str(e)), doc=body) from None
    await reload_config(call.state)
    return _respond({"version": commit.version, "changes": _changes(commit.changes)})


async def diff_policy(request: web.Request, call: Call) -> web.StreamResponse:
    policy = _whole(await _json_body(request))
    async with call.state.sessions() as s:
        current = await policy_state.current_policy(s)
    return _respond({"changes": _changes(diff(current, policy))})


async def list_versions(request: web.Request, call: Call) -> web.StreamResponse:
    limit = _int_param(request, "limit", 50, 1, 1000) or 50
    async with call.state.sessions() as s:
        rows = await policy_state.history(s, limit=limit)
    items = [
        VersionOut(
            version=r.id,
            at=r.at,
            actor=r.actor,
            source=r.source,
            comment=r.comment,
            digest=r.digest,
            changes=list(r.changes or []),
        ).model_dump(mode="json")
        for r in rows
    ]
    return _respond({"items": items})


async def rollback_policy(request: web.Request, call: Call) -> web.StreamResponse:
    version = _path_int(request, "n", "policy version")
    async with call.state.sessions() as s, s.begin():
        await _begin_change(s, request)
        if await s.get(PolicyVersion, version) is None:
            raise Problem(NOT_FOUND, f"No policy version {version} (GET {PREFIX}/policy/versions).")
        try:
            commit = await policy_state.rollback(
                s, version, actor=call.actor, comment=_comment(request), check_url=call.check_url
            )
        except policy_state.PolicyRejected as e:
            raise _refused(
                f"Version {version} cannot be restored", _message_errors(str(e))
            ) from None
    await reload_config(call.state)
    return _respond({"version": commit.version, "changes": _changes(commit.changes)})


# -- collections: one kind of entity of the policy document -----------------------------------


@dataclass(frozen=True, slots=True)
class Collection:
    section: str  # of the policy document
    label: str
    model: type[BaseModel]
    keys: tuple[str, ...]  # the fields that name an entity
    in_query: bool = False  # keys come from the query string (rate limits), not the path

    def address(self, request: web.Request) -> tuple[str | None, ...]:
        if self.in_query:
            key = tuple(request.query.get(k) or None for k in self.keys)
            if not any(key):
                names = " and/or ".join(f"'{k}'" for k in self.keys)
                raise Problem(
                    INVALID_PARAMETER,
                    f"Name the {self.label} with {names}.",
                    parameter=self.keys[0],
                )
            return key
        return tuple(request.match_info[k] for k in self.keys)

    def name(self, key: tuple[str | None, ...]) -> str:
        if self.in_query:
            return f"{self.label} for {rate_limit_key(*key)}"
        return f"{self.label} {'/'.join(k or '' for k in key)!r}"

    def find(self, doc: dict[str, Any], key: tuple[str | None, ...]) -> int | None:
        for i, item in enumerate(doc[self.section]):
            if tuple(item.get(k) for k in self.keys) == key:
                return i
        return None

    def _missing(self, key: tuple[str | None, ...]) -> Problem:
        return Problem(NOT_FOUND, f"No {self.name(key)}.")

    def _body_keys(self, body: dict[str, Any], key: tuple[str | None, ...]) -> dict[str, Any]:
        """The body with its key fields: absent ones taken from the address, differing
        ones refused (renaming is a delete and a create)."""
        errors = [
            {
                "field": k,
                "detail": f"the {'query' if self.in_query else 'path'} names "
                f"{'no ' + k if v is None else repr(v)} but the body {body[k]!r}; an entity is "
                "renamed by deleting it and creating the new one",
            }
            for k, v in zip(self.keys, key, strict=True)
            if k in body and body[k] != v
        ]
        if errors:
            raise _refused(f"The {self.name(key)} is not valid", errors)
        return {**body, **{k: v for k, v in zip(self.keys, key, strict=True) if v is not None}}

    async def read_all(self, request: web.Request, call: Call) -> web.StreamResponse:
        doc, version = await _current(call.state)
        if self.in_query and any(request.query.get(k) for k in self.keys):
            return await self.read_one(request, call)
        return _respond({"items": doc[self.section]}, headers=_etag(version))

    async def read_one(self, request: web.Request, call: Call) -> web.StreamResponse:
        key = self.address(request)
        doc, version = await _current(call.state)
        i = self.find(doc, key)
        if i is None:
            raise self._missing(key)
        return _respond(doc[self.section][i], headers=_etag(version))

    async def put(self, request: web.Request, call: Call) -> web.StreamResponse:
        key = self.address(request)
        body = self._body_keys(await _json_body(request), key)
        what = f"The {self.name(key)} is not valid"
        item = _parse(self.model, body, what).model_dump(mode="json", exclude_none=True)

        def put(doc: dict[str, Any]) -> str:
            items = doc[self.section]
            i = self.find(doc, key)
            if i is None:
                items.append(item)
                i = len(items) - 1
            else:
                items[i] = item
            return f"{self.section}[{i}]"

        return await _commit_edit(request, call, what, put)

    async def patch(self, request: web.Request, call: Call) -> web.StreamResponse:
        key = self.address(request)
        patch = self._body_keys(await _json_body(request), key)
        what = f"The {self.name(key)} is not valid"

        def merge(doc: dict[str, Any]) -> str:
            i = self.find(doc, key)
            if i is None:
                raise self._missing(key)
            merged = merge_patch(copy.deepcopy(doc[self.section][i]), patch)
            spec = _parse(self.model, merged, what)
            doc[self.section][i] = spec.model_dump(mode="json", exclude_none=True)
            return f"{self.section}[{i}]"

        return await _commit_edit(request, call, what, merge)

    async def delete(self, request: web.Request, call: Call) -> web.StreamResponse:
        key = self.address(request)
        name = self.name(key)

        def remove(doc: dict[str, Any]) -> None:
            i = self.find(doc, key)
            if i is None:
                raise self._missing(key)
            del doc[self.section][i]

        return await _commit_edit(
            request, call, f"The {name} cannot be deleted", remove, deleting=name
        )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


AGENCIES = Collection("agencies", "agency", AgencySpec, ("code",))
GROUPS = Collection("groups", "group", GroupSpec, ("code",))
CLIENTS = Collection("clients", "client", ClientSpec, ("code",))
UPSTREAMS = Collection("upstreams", "upstream", UpstreamSpec, ("name",))
SERVICES = Collection("services", "service", ServiceSpec, ("provider", "code", "version"))
RATE_LIMITS = Collection(
    "rate_limits", "rate limit", RateLimitSpec, ("client", "service"), in_query=True
)


# -- credentials ------------------------------------------------------------------------------


def _credential(row: Credential, client: str, secret: str | None = None) -> dict[str, Any]:
    now = utcnow()
    fields: dict[str, Any] = {
        "id": row.id,
        "client": client,
        "kind": row.kind,
        "hint": row.hint,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "active": row.revoked_at is None and (row.expires_at is None or row.expires_at > now),
    }
    if secret is None:
        return CredentialOut.model_validate(fields).model_dump(mode="json")
    return IssuedCredential.model_validate({**fields, "secret": secret}).model_dump(mode="json")


async def _client_row(session: AsyncSession, code: str) -> Client:
    client = await session.scalar(select(Client).where(Client.code == code))
    if client is None:
        raise Problem(NOT_FOUND, f"No client {code!r}.")
    return client


def _annotate(session: AsyncSession, comment: str | None) -> None:
    """Put the caller's comment on every admin event this session records from now on
    (the credential functions of gateway/store/admin.py take no comment themselves)."""
    if comment is None:
        return

    def added(_session: Session, obj: object) -> None:
        if isinstance(obj, AdminEvent) and obj.comment is None:
            obj.comment = comment

    event.listen(session.sync_session, "transient_to_pending", added)


async def _issue(
    session: AsyncSession, call: Call, code: str, kind: str, expires_at: datetime | None
) -> dict[str, Any]:
    try:
        secret = await credential_ops.issue(
            session, client_code=code, kind=kind, actor=call.actor, expires_at=expires_at
        )
    except credential_ops.NotFound as e:
        raise Problem(NOT_FOUND, f"{str(e).capitalize()}.") from None
    row = await session.scalar(
        select(Credential).where(Credential.secret_sha256 == credentials.digest(secret))
    )
    if row is None:  # pragma: no cover - issue_credential just stored it
        raise RuntimeError("issued credential not found")
    return _credential(row, code, secret)


NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def list_credentials(request: web.Request, call: Call) -> web.StreamResponse:
    code = request.match_info["code"]
    async with call.state.sessions() as s:
        client = await _client_row(s, code)
        rows = await s.scalars(
            select(Credential).where(Credential.client_id == client.id).order_by(Credential.id)
        )
        items = [_credential(r, code) for r in rows]
    return _respond({"items": items})


async def issue_credential(request: web.Request, call: Call) -> web.StreamResponse:
    code = request.match_info["code"]
    asked = _parse(CredentialIssue, await _json_body(request), "The credential request")
    if asked.expires_at is not None and asked.expires_at <= utcnow():
        raise _refused(
            "The credential request",
            [{"field": "expires_at", "detail": "is in the past; give a time to come"}],
        )
    async with call.state.sessions() as s, s.begin():
        _annotate(s, _comment(request))
        issued = await _issue(s, call, code, asked.kind, asked.expires_at)
    await reload_config(call.state)
    return _respond(issued, status=201, headers=NO_STORE)


async def rotate_credential(request: web.Request, call: Call) -> web.StreamResponse:
    """A new credential; the client's other active ones of that kind revoked at once, or
    set to expire after the grace period so the system can switch over."""
    code = request.match_info["code"]
    asked = _parse(CredentialRotate, await _json_body(request), "The rotation request")
    now = utcnow()
    until = now + timedelta(seconds=asked.grace_seconds)
    revoked: list[dict[str, Any]] = []
    expiring: list[dict[str, Any]] = []
    async with call.state.sessions() as s, s.begin():
        _annotate(s, _comment(request))
        client = await _client_row(s, code)
        others = (
            await s.scalars(
                select(Credential)
                .where(
                    Credential.client_id == client.id,
                    Credential.kind == asked.kind,
                    Credential.revoked_at.is_(None),
                )
                .order_by(Credential.id)
            )
        ).all()
        for old in others:
            if old.expires_at is not None and old.expires_at <= now:
                continue  # expired already: nothing to switch over from
            if asked.grace_seconds == 0:
                old.revoked_at = now
                await admin.record(
                    s, actor=call.actor, action="credential.revoke", target=f"{code}#{old.id}"
                )
                revoked.append(_credential(old, code))
            else:
                if old.expires_at is None or old.expires_at > until:
                    before = {"expires_at": old.expires_at.isoformat() if old.expires_at else None}
                    old.expires_at = until
                    await admin.record(
                        s,
                        actor=call.actor,
                        action="credential.expire",
                        target=f"{code}#{old.id}",
                        before=before,
                        after={"expires_at": until.isoformat()},
                    )
                expiring.append(_credential(old, code))
        issued = await _issue(s, call, code, asked.kind, None)
    await reload_config(call.state)
    return _respond(
        {"issued": issued, "revoked": revoked, "expiring": expiring}, status=201, headers=NO_STORE
    )


async def revoke_credential(request: web.Request, call: Call) -> web.StreamResponse:
    credential_id = _path_int(request, "id", "credential")
    async with call.state.sessions() as s, s.begin():
        _annotate(s, _comment(request))
        try:
            await credential_ops.revoke(s, credential_id=credential_id, actor=call.actor)
        except credential_ops.NotFound:
            raise Problem(NOT_FOUND, f"No credential {credential_id}.") from None
        row = await s.get(Credential, credential_id)
        client = await s.get(Client, row.client_id) if row is not None else None
        if row is None or client is None:  # pragma: no cover - revoke_credential found it
            raise Problem(NOT_FOUND, f"No credential {credential_id}.")
        answer = _credential(row, client.code)
    await reload_config(call.state)
    return _respond(answer)


# -- admin events -----------------------------------------------------------------------------


async def list_changes(request: web.Request, call: Call) -> web.StreamResponse:
    """Admin events, oldest first: the last `limit` ones, or those after `since_id`."""
    limit = _int_param(request, "limit", 100, 1, 1000) or 100
    since_id = _int_param(request, "since_id", None, 0, 2**62)
    q = select(AdminEvent)
    async with call.state.sessions() as s:
        if since_id is None:
            rows = list((await s.scalars(q.order_by(AdminEvent.id.desc()).limit(limit))).all())
            rows.reverse()
        else:
            q = q.where(AdminEvent.id > since_id).order_by(AdminEvent.id).limit(limit)
            rows = list((await s.scalars(q)).all())
    items = [
        AdminEventOut.model_validate(r, from_attributes=True).model_dump(mode="json") for r in rows
    ]
    return _respond({"items": items, "last_id": rows[-1].id if rows else since_id})


# -- the OpenAPI document ---------------------------------------------------------------------


async def openapi_document(request: web.Request, call: Call) -> web.StreamResponse:
    issuer = call.state.settings.issuer
    if issuer not in _OPENAPI_CACHE:
        _OPENAPI_CACHE[issuer] = orjson.dumps(build_openapi(issuer))
    return web.Response(
        body=_OPENAPI_CACHE[issuer],
        content_type="application/json",
        headers={"Cache-Control": "max-age=300"},
    )


_OPENAPI_CACHE: dict[str, bytes] = {}

COMMENT = Param("comment", "Why: recorded with the change (policy version, admin events).")
COMMIT = Reply(
    200,
    "The change, committed as one new policy version (`version` null: nothing changed).",
    CommitOut,
)


def _one(model: type[BaseModel]) -> Reply:
    return Reply(200, "The entity, as in the policy document.", model, etag=True)


def _all(model: type[BaseModel]) -> Reply:
    return Reply(
        200, "Every entity of this kind, as in the policy document.", model, many=True, etag=True
    )


RATE_LIMIT_ADDRESS = (
    Param("client", "The client the rate limit applies to (omit for a service's limit)."),
    Param("service", "The service (`provider/code/version`) it applies to."),
)
SERVICE_PATH = "/services/{provider}/{code}/{version}"

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/openapi.json",
        openapi_document,
        (),
        "This document: the admin API in OpenAPI 3.1",
        Reply(200, "The OpenAPI 3.1.0 document of the admin API."),
    ),
    # the policy as a whole
    Route(
        "GET",
        "/policy",
        get_policy,
        READ,
        "The current policy document, or an earlier version of it",
        Reply(200, "The document and its policy version (the ETag).", PolicyOut, etag=True),
        query=(Param("version", "An earlier policy version to show.", "integer"),),
    ),
    Route(
        "PUT",
        "/policy",
        put_policy,
        ADMINISTER,
        "Replace the whole policy (what `lgsp policy apply` does)",
        COMMIT,
        body=Body(PolicySet),
        query=(COMMENT,),
        versioned=True,
    ),
    Route(
        "POST",
        "/policy/diff",
        diff_policy,
        READ,
        "What replacing the policy with this document would change (nothing is committed)",
        Reply(200, "The changes, in the order they would be made.", DiffOut),
        body=Body(PolicySet),
    ),
    Route(
        "GET",
        "/policy/versions",
        list_versions,
        READ,
        "Policy versions, newest first",
        Reply(
            200, "Who made each version, when, from where, why, and what it changed.", VersionList
        ),
        query=(Param("limit", "At most this many (1-1000, default 50).", "integer"),),
    ),
    Route(
        "POST",
        "/policy/versions/{n}/rollback",
        rollback_policy,
        ADMINISTER,
        "Restore an earlier policy version (as a new version)",
        COMMIT,
        query=(COMMENT,),
        versioned=True,
    ),
    # agencies
    Route("GET", "/agencies", AGENCIES.read_all, READ, "List agencies", _all(AgencySpec)),
    Route("GET", "/agencies/{code}", AGENCIES.read_one, READ, "Read an agency", _one(AgencySpec)),
    Route(
        "PUT",
        "/agencies/{code}",
        AGENCIES.put,
        ADMINISTER,
        "Create or replace an agency",
        COMMIT,
        body=Body(AgencySpec, optional=("code",)),
        query=(COMMENT,),
        versioned=True,
    ),
    Route(
        "DELETE",
        "/agencies/{code}",
        AGENCIES.delete,
        ADMINISTER,
        "Delete an agency (refused while clients or services refer to it)",
        COMMIT,
        query=(COMMENT,),
        versioned=True,
    ),
    # groups
    Route("GET", "/groups", GROUPS.read_all, READ, "List groups", _all(GroupSpec)),
    Route("GET", "/groups/{code}", GROUPS.read_one, READ, "Read a group", _one(GroupSpec)),
    Route(
        "PUT",
        "/groups/{code}",
        GROUPS.put,
        ADMINISTER,
        "Create or replace a group",
        COMMIT,
        body=Body(GroupSpec, optional=("code",)),
        query=(COMMENT,),
        versioned=True,
    ),
    Route(
        "DELETE",
        "/groups/{code}",
        GROUPS.delete,
        ADMINISTER,
        "Delete a group (refused while clients or access rights refer to it)",
        COMMIT,
        query=(COMMENT,),
        versioned=True,
    ),
    # clients
    Route(
        "GET",
        "/clients",
        CLIENTS.read_all,
        READ,
        "List clients (departmental systems and admin callers)",
        _all(ClientSpec),
    ),
    Route("GET", "/clients/{code}", CLIENTS.read_one, READ, "Read a client", _one(ClientSpec)),
    Route(
        "PUT",
        "/clients/{code}",
        CLIENTS.put,
        ADMINISTER,
        "Create or replace a client (its groups, roles, enabled flag)",
        COMMIT,
        body=Body(ClientSpec, optional=("code",)),
        query=(COMMENT,),
        versioned=True,
    ),
    Route(
        "DELETE",
        "/clients/{code}",
        CLIENTS.delete,
        ADMINISTER,
        "Delete a client and its credentials (refused while rights or limits refer to it)",
        COMMIT,
        query=(COMMENT,),
        versioned=True,
    ),
    # credentials
    Route(
        "GET",
        "/clients/{code}/credentials",
        list_credentials,
        ADMINISTER,
        "A client's credentials (never their values)",
        Reply(200, "Every credential of the client, active or not.", CredentialList),
    ),
    Route(
        "POST",
        "/clients/{code}/credentials",
        issue_credential,
        ADMINISTER,
        "Issue a client secret or API key",
        Reply(201, "The new credential, with its value: shown this once only.", IssuedCredential),
        body=Body(CredentialIssue),
        query=(COMMENT,),
    ),
    Route(
        "POST",
        "/clients/{code}/credentials/rotate",
        rotate_credential,
        ADMINISTER,
        "Issue a new credential and retire the client's others of that kind",
        Reply(
            201,
            "The new credential (with its value, shown once) and what became of the others.",
            RotationOut,
        ),
        body=Body(CredentialRotate),
        query=(COMMENT,),
    ),
    Route(
        "DELETE",
        "/credentials/{id}",
        revoke_credential,
        ADMINISTER,
        "Revoke a credential (and the tokens issued for it) at once",
        Reply(200, "The credential, revoked.", CredentialOut),
        query=(COMMENT,),
    ),
    # upstreams
    Route("GET", "/upstreams", UPSTREAMS.read_all, READ, "List upstreams", _all(UpstreamSpec)),
    Route(
        "GET", "/upstreams/{name}", UPSTREAMS.read_one, READ, "Read an upstream", _one(UpstreamSpec)
    ),
    Route(
        "PUT",
        "/upstreams/{name}",
        UPSTREAMS.put,
        OPERATE,
        "Create or replace an upstream (its address must be in the allowed networks)",
        COMMIT,
        body=Body(UpstreamSpec, optional=("name",)),
        query=(COMMENT,),
        versioned=True,
    ),
    Route(
        "DELETE",
        "/upstreams/{name}",
        UPSTREAMS.delete,
        OPERATE,
        "Delete an upstream (refused while services use it)",
        COMMIT,
        query=(COMMENT,),
        versioned=True,
    ),
    # services
    Route(
        "GET",
        "/services",
        SERVICES.read_all,
        READ,
        "List services, with their access rights",
        _all(ServiceSpec),
    ),
    Route("GET", SERVICE_PATH, SERVICES.read_one, READ, "Read a service", _one(ServiceSpec)),
    Route(
        "PUT",
        SERVICE_PATH,
        SERVICES.put,
        OPERATE,
        "Create or replace a service (changing its `access` list needs the administrator role)",
        COMMIT,
        body=Body(ServiceSpec, optional=("provider", "code", "version")),
        query=(COMMENT,),
        versioned=True,
    ),
    Route(
        "PATCH",
        SERVICE_PATH,
        SERVICES.patch,
        OPERATE,
        "Change a service's settings (JSON merge patch: timeouts, limits, require, audit, "
        "schemas, adapter_config, enabled...)",
        COMMIT,
        body=Body(ServiceSpec, patch=True),
        query=(COMMENT,),
        versioned=True,
    ),
    Route(
        "DELETE",
        SERVICE_PATH,
        SERVICES.delete,
        OPERATE,
        "Delete a service and its access rights (refused while rate limits refer to it)",
        COMMIT,
        query=(COMMENT,),
        versioned=True,
    ),
    # rate limits
    Route(
        "GET",
        "/rate-limits",
        RATE_LIMITS.read_all,
        READ,
        "List rate limits and quotas, or read one (name it with client and/or service)",
        Reply(
            200,
            "Every rate limit; or the one the query names.",
            RateLimitSpec,
            one_or_many=True,
            etag=True,
        ),
        query=RATE_LIMIT_ADDRESS,
    ),
    Route(
        "PUT",
        "/rate-limits",
        RATE_LIMITS.put,
        OPERATE,
        "Create or replace the rate limit the query names",
        COMMIT,
        body=Body(RateLimitSpec, optional=("client", "service")),
        query=(*RATE_LIMIT_ADDRESS, COMMENT),
        versioned=True,
    ),
    Route(
        "DELETE",
        "/rate-limits",
        RATE_LIMITS.delete,
        OPERATE,
        "Delete the rate limit the query names",
        COMMIT,
        query=(*RATE_LIMIT_ADDRESS, COMMENT),
        versioned=True,
    ),
    # admin events
    Route(
        "GET",
        "/changes",
        list_changes,
        READ,
        "Admin events (configuration and credential changes), oldest first",
        Reply(200, "Who changed what, when, before and after, and why.", AdminEventList),
        query=(
            Param("limit", "At most this many (1-1000, default 100).", "integer"),
            Param(
                "since_id", "Only events after this id (`last_id` of a previous page).", "integer"
            ),
        ),
    ),
)


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.url, _endpoint(route))


DESCRIPTION = """\
The province's gateway configuration (agencies, groups, clients, upstreams, services,
access rights, rate limits) and the clients' credentials.

Every configuration change is committed as one new policy version, each of its changes
recorded (who, when, before, after, comment); `GET /admin/v1/policy/versions` lists them
and any version can be restored. The gateway applies a change before answering it.

Roles: `administrator` may do everything; `operator` may change services, upstreams and
rate limits (but not a service's access rights); `auditor` and `observer` may read.
Each operation lists the roles it accepts in `x-lgsp-roles`. Errors are RFC 9457
problem details; a refused change (422) names each field in `errors`.
"""
_REF = "#/components/schemas/{model}"
_ADDRESSING = frozenset({"version", "client", "service"})  # query parameters that may 404
_SECURITY: list[dict[str, list[str]]] = [{"oauth2": []}, {"bearer": []}, {"apiKey": []}]
_ERRORS = {
    "400": ("BadRequest", "The body is not a JSON object, or a query parameter is wrong."),
    "401": ("Unauthenticated", "No valid token or API key."),
    "403": ("Forbidden", "The caller lacks the role (`required_roles` names it)."),
    "404": ("NotFound", "No such entity."),
    "409": ("Conflict", "If-Match names a policy version that is no longer current."),
    "422": ("InvalidConfiguration", "The change is not valid; `errors` names each field."),
}


def build_openapi(issuer: str) -> dict[str, Any]:  # noqa: C901 - being split (issue 13)
    """The OpenAPI 3.1 document of `ROUTES`."""
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        name = "Problem" if model is ProblemDetails else model.__name__
        if name not in schemas:
            schema = model.model_json_schema(ref_template=_REF)
            for def_name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(def_name, definition)
            schemas[name] = schema
        return {"$ref": _REF.format(model=name)}

    def body_schema(body: Body) -> dict[str, Any]:
        ref(body.model)
        if not body.optional and not body.patch:
            return ref(body.model)
        name = body.model.__name__ + ("Patch" if body.patch else "Body")
        schema = copy.deepcopy(schemas[body.model.__name__])
        schema["title"] = name
        if body.patch:
            schema.pop("required", None)
            schema["properties"] = {
                k: {"anyOf": [v, {"type": "null"}]} for k, v in schema["properties"].items()
            }
            schema["description"] = (
                f"A JSON merge patch (RFC 7396) over {body.model.__name__}: the fields given "
                "replace the current ones (objects merge), null resets a field to its default."
            )
        else:
            required = [f for f in schema.get("required", []) if f not in body.optional]
            schema["required"] = required
            if not required:
                schema.pop("required")
            schema["description"] = (
                f"{body.model.__name__}; {', '.join(body.optional)} may be left out (the "
                "address names them) or must equal the address."
            )
        schemas[name] = schema
        return {"$ref": _REF.format(model=name)}

    def reply_schema(reply: Reply) -> dict[str, Any]:
        if reply.model is None:
            return {"type": "object"}
        many = {
            "type": "object",
            "properties": {"items": {"type": "array", "items": ref(reply.model)}},
            "required": ["items"],
            "additionalProperties": False,
        }
        if reply.one_or_many:
            return {"oneOf": [many, ref(reply.model)]}
        return many if reply.many else ref(reply.model)

    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        path_params = re.findall(r"\{(\w+)\}", route.path)
        parameters: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if name in ("n", "id") else "string"},
            }
            for name in path_params
        ]
        parameters += [
            {
                "name": p.name,
                "in": "query",
                "required": False,
                "description": p.description,
                "schema": {"type": p.type},
            }
            for p in route.query
        ]
        if route.versioned:
            parameters.append(
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": "The ETag of a read (the policy version): the change is "
                    "made only if the policy is still at that version.",
                    "schema": {"type": "string"},
                }
            )
        success: dict[str, Any] = {
            "description": route.reply.description,
            "content": {"application/json": {"schema": reply_schema(route.reply)}},
        }
        if route.reply.etag:
            success["headers"] = {
                "ETag": {
                    "description": "The policy version the answer reflects, for If-Match.",
                    "schema": {"type": "string"},
                }
            }
        responses: dict[str, Any] = {str(route.reply.status): success}
        codes = []
        if route.body is not None or route.query:
            codes.append("400")
        if route.roles:
            codes += ["401", "403"]
        if path_params or any(p.name in _ADDRESSING for p in route.query):
            codes.append("404")
        if route.versioned:
            codes.append("409")
        if route.versioned or route.body is not None:
            codes.append("422")
        for code in codes:
            responses[code] = {"$ref": f"#/components/responses/{_ERRORS[code][0]}"}
        operation: dict[str, Any] = {
            "operationId": _operation_id(route),
            "summary": route.summary,
            "tags": [route.path.strip("/").split("/")[0].removesuffix(".json")],
            "x-lgsp-roles": list(route.roles),
            "security": _SECURITY if route.roles else [],
            "responses": responses,
        }
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            schema = body_schema(route.body)
            media = (
                ("application/merge-patch+json", "application/json")
                if route.body.patch
                else ("application/json",)
            )
            operation["requestBody"] = {
                "required": True,
                "content": {m: {"schema": schema} for m in media},
            }
        paths.setdefault(route.url, {})[route.method.lower()] = operation

    ref(ProblemDetails)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "LGSP gateway admin API",
            "version": "1",
            "description": DESCRIPTION,
        },
        "servers": [{"url": issuer}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "responses": {
                name: {
                    "description": description,
                    "content": {
                        PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}
                    },
                }
                for name, description in _ERRORS.values()
            },
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "description": "Client credentials grant; the token is a signed JWT.",
                    "flows": {
                        "clientCredentials": {"tokenUrl": f"{issuer}/oauth2/token", "scopes": {}}
                    },
                },
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    }


def _operation_id(route: Route) -> str:
    words = re.findall(r"[A-Za-z0-9]+", route.path.replace("{", "by_").replace(".json", ""))
    return route.method.lower() + "".join(w[:1].upper() + w[1:] for w in words)
