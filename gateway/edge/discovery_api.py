"""Service discovery for callers, under `/discovery/v1`: X-Road's listMethods,
allowedMethods and getOpenAPI, for any authenticated client (the answers are built in
gateway/discovery/).

    GET /discovery/v1/services                      every enabled service, with `may_call`
    GET /discovery/v1/allowed                       only those the caller holds a right on,
        (= /discovery/v1/services?allowed=true)     with the methods and paths granted
    GET /discovery/v1/services/{provider}/{code}/{version}/openapi.json
                                                    an OpenAPI 3.1 document of what the
                                                    caller may call on that one service
    GET /services                                   the first listing, kept for callers
                                                    written against it
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from gateway.discovery import catalogue
from gateway.discovery.cache import DiscoveryCache
from gateway.discovery.catalogue import PREFIX, Asked
from gateway.edge.toolkit import Api, Call, Flag, NoQuery, QueryModel, Reply, Route
from gateway.edge.toolkit import add_routes as register
from gateway.edge.toolkit import json_response as json_answer
from gateway.identity.authn import API_KEY_HEADER

__all__ = ["CACHE", "PREFIX", "ROUTES", "add_routes"]

CACHE = web.AppKey("discovery_cache", DiscoveryCache)
DISCOVERY = Api("")


class ServicesQuery(QueryModel):
    allowed: Flag = Field(
        False, description="true: only the services the caller holds a right on (allowedMethods)."
    )


def _asked(call: Call[Any]) -> Asked:
    state = call.state
    # Tables and their version are read together, with no await between: they match.
    config, version = state.pipeline.config, state.config_version
    return Asked(
        config, version, call.caller, state.settings.issuer, state.sessions, call.request.app[CACHE]
    )


def _respond(body: bytes) -> web.Response:
    # The answer depends on who asks: shared caches must not keep it.
    return web.Response(
        body=body,
        content_type="application/json",
        headers={"Cache-Control": "private, no-cache", "Vary": f"Authorization, {API_KEY_HEADER}"},
    )


async def list_services(call: Call[ServicesQuery]) -> web.StreamResponse:
    """listMethods (or allowedMethods, with `allowed=true`)."""
    asked = _asked(call)
    if call.query.allowed:
        return _respond(await catalogue.allowed_methods(asked))
    return _respond(await catalogue.list_methods(asked))


async def allowed_services(call: Call[NoQuery]) -> web.StreamResponse:
    """allowedMethods: the services the caller holds a right on, with what it is granted."""
    return _respond(await catalogue.allowed_methods(_asked(call)))


async def service_openapi(call: Call[NoQuery]) -> web.StreamResponse:
    """getOpenAPI: the service as this caller may use it, as an OpenAPI 3.1 document."""
    key = (call.path["provider"], call.path["code"], call.path["version"])
    return _respond(await catalogue.service_openapi(_asked(call), key))


async def granted_services(call: Call[NoQuery]) -> web.StreamResponse:
    """The services the authenticated caller is granted something on."""
    return json_answer(catalogue.granted_services(call.state.pipeline.config, call.caller))


ROUTES: tuple[Route, ...] = (
    DISCOVERY.route(
        "GET",
        "/services",
        granted_services,
        "The services the caller is granted something on (the first listing)",
        reply=Reply(200, "The caller and its services, disabled ones included."),
    ),
    DISCOVERY.route(
        "GET",
        PREFIX + "/services",
        list_services,
        "listMethods: every enabled service, with whether the caller may call it",
        reply=Reply(200, "The caller and every enabled service, with `may_call`."),
        query=ServicesQuery,
    ),
    DISCOVERY.route(
        "GET",
        PREFIX + "/allowed",
        allowed_services,
        "allowedMethods: the services the caller holds a right on, with what it is granted",
        reply=Reply(200, "The caller's services, each with its `endpoints`."),
    ),
    DISCOVERY.route(
        "GET",
        PREFIX + "/services/{provider}/{code}/{version}/openapi.json",
        service_openapi,
        "getOpenAPI: one service as the caller may use it",
        reply=Reply(200, "An OpenAPI 3.1 document of what the caller may call on the service."),
    ),
)


def add_routes(app: web.Application) -> None:
    app[CACHE] = DiscoveryCache()
    register(app, ROUTES)
