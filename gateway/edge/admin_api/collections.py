"""The entities of the policy document over HTTP, each kind from one description: its
routes (list, read, create or replace, merge-patch where allowed, delete), their roles,
summaries, bodies and answers are all generated from a `Resource`.

An entity is addressed by its path (`/clients/{code}`) or, for rate limits, whose key
fields are both optional, by the query (`/rate-limits?client=&service=`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.admin import collections as entities
from gateway.admin.actor import ADMINISTER, OPERATE, READ
from gateway.admin.collections import Collection, Key
from gateway.core.problems import INVALID_PARAMETER, Problem
from gateway.edge.admin_api.api import ADMIN, BODY, committed, editor, etag
from gateway.edge.admin_api.models import CommentQuery, RateLimitAddress, RateLimitChange
from gateway.edge.admin_api.policy import COMMIT
from gateway.edge.toolkit import Body, Call, Handler, NoQuery, QueryModel, Reply, Route
from gateway.edge.toolkit import json_response as respond

__all__ = [
    "AGENCIES",
    "CLIENTS",
    "GROUPS",
    "JOBS",
    "RATE_LIMITS",
    "SERVICES",
    "TOPICS",
    "UPSTREAMS",
    "Resource",
]


@dataclass(frozen=True, slots=True)
class Resource:
    """One collection, as the admin API serves it.

    `item` is the path of one entity under `path` ("/{code}"; empty when the query
    addresses it). Summaries are made from the label ("List agencies", "Read an
    agency"...); a `*_note` adds to one, a `*_summary` replaces it.
    """

    entities: Collection
    path: str
    plural: str
    writers: tuple[str, ...]
    item: str = ""
    article: str = "a"
    patch_summary: str | None = None  # set: the entities may be merge-patched
    list_note: str = ""
    put_note: str = ""
    delete_note: str = ""
    list_summary: str | None = None
    put_summary: str | None = None
    delete_summary: str | None = None

    @property
    def by_query(self) -> bool:
        return not self.item

    @property
    def named_in(self) -> str:
        return "query" if self.by_query else "path"

    def key(self, call: Call[Any]) -> Key:
        """The key the request names (in its path, or its query)."""
        keys = self.entities.keys
        if not self.by_query:
            return tuple(call.path[k] for k in keys)
        key = tuple(getattr(call.query, k) for k in keys)
        if not any(key):
            names = " and/or ".join(f"'{k}'" for k in keys)
            raise Problem(
                INVALID_PARAMETER,
                f"Name the {self.entities.label} with {names}.",
                parameter=keys[0],
            )
        return key


def _read_all(r: Resource) -> Handler:
    read_one = _read_one(r)  # a rate limit's listing reads one when the query names it

    async def read_all(call: Call[Any]) -> web.StreamResponse:
        if r.by_query and any(getattr(call.query, k) for k in r.entities.keys):
            return await read_one(call)
        items, version = await entities.read_all(call.state.sessions, r.entities)
        return respond({"items": items}, headers=etag(version))

    return read_all


def _read_one(r: Resource) -> Handler:
    async def read_one(call: Call[Any]) -> web.StreamResponse:
        item, version = await entities.read_one(call.state.sessions, r.entities, r.key(call))
        return respond(item, headers=etag(version))

    return read_one


def _put(r: Resource) -> Handler:
    async def put(call: Call[Any]) -> web.StreamResponse:
        key = r.key(call)
        body = await call.json(BODY)
        commit = await entities.put(editor(call), r.entities, key, body, named_in=r.named_in)
        return respond(await committed(call, commit))

    return put


def _patch(r: Resource) -> Handler:
    async def patch(call: Call[Any]) -> web.StreamResponse:
        key = r.key(call)
        body = await call.json(BODY)
        commit = await entities.patch(editor(call), r.entities, key, body, named_in=r.named_in)
        return respond(await committed(call, commit))

    return patch


def _delete(r: Resource) -> Handler:
    async def delete(call: Call[Any]) -> web.StreamResponse:
        commit = await entities.delete(editor(call), r.entities, r.key(call))
        return respond(await committed(call, commit))

    return delete


def crud_routes(r: Resource) -> tuple[Route, ...]:
    """The routes of one collection, in the order the OpenAPI document lists them.

    Example:
        >>> [f"{x.method} {x.path}" for x in crud_routes(GROUPS)]
        ['GET /groups', 'GET /groups/{code}', 'PUT /groups/{code}', 'DELETE /groups/{code}']
    """
    label, model, one = r.entities.label, r.entities.model, r.path + r.item
    address: type[QueryModel] = RateLimitAddress if r.by_query else NoQuery
    change: type[QueryModel] = RateLimitChange if r.by_query else CommentQuery
    everything = "Every entity of this kind, as in the policy document."
    reply = (
        Reply(
            200, "Every rate limit; or the one the query names.", model, one_or_many=True, etag=True
        )
        if r.by_query
        else Reply(200, everything, model, many=True, etag=True)
    )
    routes = [
        ADMIN.route(
            "GET",
            r.path,
            _read_all(r),
            r.list_summary or f"List {r.plural}{r.list_note}",
            reply=reply,
            roles=READ,
            query=address,
            addressed=r.by_query,
        )
    ]
    if not r.by_query:
        routes.append(
            ADMIN.route(
                "GET",
                one,
                _read_one(r),
                f"Read {r.article} {label}",
                reply=Reply(200, "The entity, as in the policy document.", model, etag=True),
                roles=READ,
            )
        )
    writes: dict[str, Any] = {"roles": r.writers, "reply": COMMIT, "versioned": True}
    writes["query"], writes["addressed"] = change, r.by_query
    routes.append(
        ADMIN.route(
            "PUT",
            one,
            _put(r),
            r.put_summary or f"Create or replace {r.article} {label}{r.put_note}",
            body=Body(model, optional=r.entities.keys),
            **writes,
        )
    )
    if r.patch_summary is not None:
        routes.append(
            ADMIN.route(
                "PATCH", one, _patch(r), r.patch_summary, body=Body(model, patch=True), **writes
            )
        )
    routes.append(
        ADMIN.route(
            "DELETE",
            one,
            _delete(r),
            r.delete_summary or f"Delete {r.article} {label}{r.delete_note}",
            **writes,
        )
    )
    return tuple(routes)


AGENCIES = Resource(
    entities.AGENCIES,
    "/agencies",
    "agencies",
    ADMINISTER,
    item="/{code}",
    article="an",
    delete_note=" (refused while clients or services refer to it)",
)
GROUPS = Resource(
    entities.GROUPS,
    "/groups",
    "groups",
    ADMINISTER,
    item="/{code}",
    delete_note=" (refused while clients or access rights refer to it)",
)
CLIENTS = Resource(
    entities.CLIENTS,
    "/clients",
    "clients",
    ADMINISTER,
    item="/{code}",
    list_note=" (departmental systems and admin callers)",
    put_note=" (its groups, roles, enabled flag)",
    delete_note=" and its credentials (refused while rights or limits refer to it)",
)
UPSTREAMS = Resource(
    entities.UPSTREAMS,
    "/upstreams",
    "upstreams",
    OPERATE,
    item="/{name}",
    article="an",
    put_note=" (its address must be in the allowed networks)",
    delete_note=" (refused while services use it)",
)
SERVICES = Resource(
    entities.SERVICES,
    "/services",
    "services",
    OPERATE,
    item="/{provider}/{code}/{version}",
    list_note=", with their access rights",
    put_note=" (changing its `access` list needs the administrator role)",
    patch_summary="Change a service's settings (JSON merge patch: timeouts, limits, require, "
    "audit, schemas, adapter_config, enabled...)",
    delete_note=" and its access rights (refused while rate limits refer to it)",
)
RATE_LIMITS = Resource(
    entities.RATE_LIMITS,
    "/rate-limits",
    "rate limits",
    OPERATE,
    list_summary="List rate limits and quotas, or read one (name it with client and/or service)",
    put_summary="Create or replace the rate limit the query names",
    delete_summary="Delete the rate limit the query names",
)
TOPICS = Resource(
    entities.TOPICS,
    "/topics",
    "topics",
    ADMINISTER,
    item="/{code}",
    list_note=" of events, with who publishes and who may subscribe",
    put_note=" (its publishers, event schema and subscribers' rights)",
    delete_note=" (its events and subscriptions stay in the store)",
)
JOBS = Resource(
    entities.JOBS,
    "/jobs",
    "jobs",
    ADMINISTER,
    item="/{code}",
    list_note=" (scheduled pulls): what each calls, when, and where its records go",
    put_note=" (its schedule, service, paging and output)",
    delete_note=" (its runs, watermark and packages stay in the store)",
)
