"""The admin API's route table, and its OpenAPI 3.1 document made from it.

`ROUTES` is the one table of the API: aiohttp's routes and the document served at
`/admin/v1/openapi.json` are both made from it, so they cannot disagree.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.edge.admin_api import (
    collections,
    credentials,
    events,
    jobs,
    messages,
    policy,
    subscriptions,
)
from gateway.edge.admin_api.api import ADMIN, PREFIX
from gateway.edge.toolkit import Call, DocInfo, NoQuery, Reply, Route, build_document

__all__ = ["DOC", "ROUTES", "build_openapi"]

DESCRIPTION = f"""\
The province's gateway configuration (agencies, groups, clients, upstreams, services,
access rights, rate limits) and the clients' credentials.

Every configuration change is committed as one new policy version, each of its changes
recorded (who, when, before, after, comment); `GET {PREFIX}/policy/versions` lists them
and any version can be restored. The gateway applies a change before answering it.

Roles: `administrator` may do everything; `operator` may change services, upstreams and
rate limits (but not a service's access rights); `auditor` and `observer` may read.
Each operation lists the roles it accepts in `x-lgsp-roles`. Errors are RFC 9457
problem details; a refused change (422) names each field in `errors`.
"""
DOC = DocInfo(
    title="LGSP gateway admin API",
    version="1",
    description=DESCRIPTION,
    errors={
        "400": ("BadRequest", "The body is not a JSON object, or a query parameter is wrong."),
        "401": ("Unauthenticated", "No valid token or API key."),
        "403": ("Forbidden", "The caller lacks the role (`required_roles` names it)."),
        "404": ("NotFound", "No such entity."),
        "412": (
            "PreconditionFailed",
            "If-Match names a policy version that is no longer current.",
        ),
        "422": ("InvalidConfiguration", "The change is not valid; `errors` names each field."),
    },
)
_DOCUMENTS: dict[str, bytes] = {}


async def openapi_document(call: Call[NoQuery]) -> web.StreamResponse:
    issuer = call.state.settings.issuer
    if issuer not in _DOCUMENTS:
        _DOCUMENTS[issuer] = orjson.dumps(build_openapi(issuer))
    return web.Response(
        body=_DOCUMENTS[issuer],
        content_type="application/json",
        headers={"Cache-Control": "max-age=300"},
    )


def build_openapi(issuer: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `ROUTES`."""
    return build_document(ROUTES, DOC, issuer)


ROUTES: tuple[Route, ...] = (
    ADMIN.route(
        "GET",
        "/openapi.json",
        openapi_document,
        "This document: the admin API in OpenAPI 3.1",
        reply=Reply(200, "The OpenAPI 3.1.0 document of the admin API."),
        public=True,
    ),
    *policy.ROUTES,
    *collections.crud_routes(collections.AGENCIES),
    *collections.crud_routes(collections.GROUPS),
    *collections.crud_routes(collections.CLIENTS),
    *credentials.ROUTES,
    *collections.crud_routes(collections.UPSTREAMS),
    *collections.crud_routes(collections.SERVICES),
    *collections.crud_routes(collections.RATE_LIMITS),
    *collections.crud_routes(collections.TOPICS),
    *collections.crud_routes(collections.JOBS),
    *jobs.ROUTES,
    *subscriptions.ROUTES,
    *messages.ROUTES,
    *events.ROUTES,
)
