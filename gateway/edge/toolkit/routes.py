"""Route declarations and the one runner every endpoint of the gateway's own APIs runs in.

A `Route` says what an endpoint is: method, path, the roles it accepts, a summary, its
query model, its body and its answer. The aiohttp routes and the OpenAPI document are
both made from the same table, so they cannot disagree. An `Api` says what its routes
share: their prefix, how callers authenticate, how a refused role is worded, how errors
look on the wire, and what to do when a request is refused.

The runner, for every request: takes the request id (refusing a malformed one where the
API says so), authenticates the caller and checks its role against the current
configuration tables, parses the query, calls the handler, and renders any problem with
the API's renderer under that same request id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel

from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.logging import log
from gateway.core.problems import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    INVALID_HEADER,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    Problem,
)
from gateway.edge.state import STATE, GatewayState
from gateway.edge.toolkit.auth import Authenticator, RoleRefusal, authenticate_client, refuse_role
from gateway.edge.toolkit.query import NoQuery, QueryModel, parse_query
from gateway.edge.toolkit.responses import ErrorRenderer, problem_from_http, render_problem
from gateway.exchange.accountability import request_id_from
from gateway.identity.directory import ClientEntry

__all__ = [
    "Api",
    "Body",
    "Call",
    "Handler",
    "Reply",
    "Route",
    "add_routes",
    "endpoint",
    "read_json_object",
]

Q = TypeVar("Q", bound=QueryModel)
Handler = Callable[["Call[Any]"], Awaitable[web.StreamResponse]]
# Called with every problem a route answers, before it is rendered (the auditor API
# records refusals of known systems).
ProblemHook = Callable[[web.Request, Problem, str], Awaitable[None]]


def _untranslated(_error: Exception) -> Problem | None:
    return None


@dataclass(frozen=True, slots=True)
class Body:
    """A request body: a model; `optional` fields may be left out (the address names
    them); `patch`: a JSON merge patch (RFC 7396) over the model, every field optional."""

    model: type[BaseModel]
    optional: tuple[str, ...] = ()
    patch: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """A success answer, as documented."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    many: bool = False  # {"items": [model]}
    one_or_many: bool = False  # the list, or one item when the query addresses one
    etag: bool = False  # carries the policy version as its ETag


@dataclass(frozen=True, slots=True)
class Api:
    """What the routes of one API share.

    `prefix` is prepended to every route's path. `translate` turns the API's own
    exceptions into problems (the registry's `RegistryError`); `render` draws them.
    `check_request_id`: a malformed X-Request-Id is a 400 rather than replaced.
    """

    prefix: str
    authenticate: Authenticator = authenticate_client
    refuse_role: RoleRefusal = refuse_role
    translate: Callable[[Exception], Problem | None] = _untranslated
    render: ErrorRenderer = render_problem
    on_problem: ProblemHook | None = None
    check_request_id: bool = False
    max_body_bytes: int = 10 * 1024 * 1024

    def route(self, method: str, path: str, handler: Handler, summary: str, **kw: Any) -> Route:
        """A route of this API (keywords as `Route`'s).

        Example:
            >>> ADMIN.route("GET", "/clients", list_clients, "List clients", roles=READ).url
            '/admin/v1/clients'
        """
        return Route(self, method, path, handler, summary, **kw)


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: what it takes, who may call it, what it answers."""

    api: Api
    method: str
    path: str  # under the API's prefix; aiohttp and OpenAPI templates alike
    handler: Handler
    summary: str
    reply: Reply = Reply(200, "The answer.")
    roles: tuple[str, ...] = ()  # empty: any authenticated client (unless public)
    public: bool = False  # no credentials needed
    query: type[QueryModel] = NoQuery
    body: Body | None = None
    versioned: bool = False  # changes the policy: takes If-Match, may answer 412 and 422
    addressed: bool = False  # its query names one entity, so it may answer 404
    path_integers: tuple[str, ...] = ()  # path parameters that are numbers
    description: str | None = None

    @property
    def url(self) -> str:
        return self.api.prefix + self.path


@dataclass(frozen=True, slots=True)
class Call(Generic[Q]):
    """One call of a route: the request, the gateway, the caller, the parsed query."""

    request: web.Request
    route: Route
    state: GatewayState
    client: ClientEntry | None  # None on public routes only
    query: Q
    request_id: str

    @property
    def caller(self) -> ClientEntry:
        if self.client is None:
            raise RuntimeError(f"{self.route.url} is public: there is no caller")
        return self.client

    @property
    def path(self) -> Mapping[str, str]:
        return self.request.match_info

    def path_int(self, name: str, what: str) -> int:
        """A numbered path parameter; anything else names nothing (404).

        Example:
            >>> call.path_int("id", "credential")  # DELETE .../credentials/17
            17
        """
        raw = self.request.match_info[name]
        if not raw.isdigit() or len(raw) > 18:
            raise Problem(NOT_FOUND, f"No {what} {raw!r}: {what}s are numbered.")
        return int(raw)

    async def json(self, label: str = "A request body") -> dict[str, Any]:
        """The body as a JSON object, at most the API's `max_body_bytes`.

        Example:
            >>> await call.json()  # body {"kind": "secret"}
            {'kind': 'secret'}
        """
        return await read_json_object(self.request, self.route.api.max_body_bytes, label)


async def read_json_object(request: web.Request, max_bytes: int, label: str) -> dict[str, Any]:
    """A request body that must be one JSON object, refused with 400 or 413 otherwise.

    Args:
        request: the request.
        max_bytes: the largest body accepted; checked on Content-Length first.
        label: names the body in the 413's detail ("An admin request body").

    Returns:
        the parsed object.

    Example:
        >>> await read_json_object(request, 1024, "A request body")
        {'name': 'Sở Y tế'}
    """
    too_large = f"{label} is at most {max_bytes} bytes."
    if (request.content_length or 0) > max_bytes:
        raise Problem(PAYLOAD_TOO_LARGE, too_large)
    raw = await request.read()
    if len(raw) > max_bytes:
        raise Problem(PAYLOAD_TOO_LARGE, too_large)
    if not raw.strip():
        raise Problem(BAD_REQUEST, "This endpoint takes a JSON object as its request body.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Problem(BAD_REQUEST, f"The request body is not JSON: {e}.") from None
    if not isinstance(body, dict):
        raise Problem(BAD_REQUEST, "The request body must be a JSON object.")
    return body


def endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler that runs `route`.

    Args:
        route: the route to serve.

    Returns:
        a coroutine function for `app.router.add_route`.

    Example:
        >>> app.router.add_route(route.method, route.url, endpoint(route))
    """
    api = route.api

    async def run(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        request_id, complaint = request_id_from(request.headers)
        try:
            if complaint is not None and api.check_request_id:
                raise Problem(INVALID_HEADER, complaint, header=REQUEST_ID_HEADER)
            client = None
            if not route.public:
                client = await api.authenticate(request)
                if route.roles and client.roles.isdisjoint(route.roles):
                    raise api.refuse_role(client, route.roles)
            query = parse_query(route.query, request)
            response = await route.handler(Call(request, route, state, client, query, request_id))
        except web.HTTPRedirection:
            raise
        except Exception as e:  # rendered below; CancelledError is not an Exception
            problem = _as_problem(api, e, request, request_id)
            if api.on_problem is not None:
                await api.on_problem(request, problem, request_id)
            return api.render(request, problem, request_id, state.settings.problem_type_base)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return run


def _as_problem(api: Api, e: Exception, request: web.Request, request_id: str) -> Problem:
    if isinstance(e, Problem):
        return e
    translated = api.translate(e)
    if translated is not None:
        return translated
    if isinstance(e, web.HTTPException) and e.status >= 400:
        return problem_from_http(e)
    log.exception("unhandled error", path=request.path, request_id=request_id)
    return Problem(INTERNAL_ERROR, "Unexpected error; quote the request id.")


def add_routes(app: web.Application, routes: tuple[Route, ...]) -> None:
    """Register every route of a table with the application.

    Example:
        >>> add_routes(app, ROUTES)
    """
    for route in routes:
        app.router.add_route(route.method, route.url, endpoint(route))
