"""The HTTP toolkit every API of the gateway is written with: route declarations, the
one endpoint runner, query models, JSON and problem answers, and OpenAPI 3.1 documents
made from the route tables.

    ADMIN = Api(PREFIX)
    ROUTES = (
        ADMIN.route("GET", "/changes", list_changes, "Admin events", roles=READ,
                    query=ChangesQuery, reply=Reply(200, "Who changed what.", EventList)),
    )
    add_routes(app, ROUTES)
    build_document(ROUTES, DOC_INFO, issuer)
"""

from gateway.edge.toolkit.auth import Authenticator, RoleRefusal, authenticate_client, refuse_role
from gateway.edge.toolkit.middleware import problem_middleware
from gateway.edge.toolkit.openapi import DocInfo, ProblemDetails, build_document
from gateway.edge.toolkit.query import (
    Flag,
    NoQuery,
    OptionalText,
    QueryModel,
    WholeNumber,
    invalid_parameter,
    parse_query,
    query_parameters,
)
from gateway.edge.toolkit.responses import (
    NO_STORE,
    ErrorRenderer,
    json_response,
    render_problem,
)
from gateway.edge.toolkit.routes import (
    Api,
    Body,
    Call,
    Handler,
    Reply,
    Route,
    add_routes,
    endpoint,
    read_json_object,
)

__all__ = [
    "NO_STORE",
    "Api",
    "Authenticator",
    "Body",
    "Call",
    "DocInfo",
    "ErrorRenderer",
    "Flag",
    "Handler",
    "NoQuery",
    "OptionalText",
    "ProblemDetails",
    "QueryModel",
    "Reply",
    "RoleRefusal",
    "Route",
    "WholeNumber",
    "add_routes",
    "authenticate_client",
    "build_document",
    "endpoint",
    "invalid_parameter",
    "json_response",
    "parse_query",
    "problem_middleware",
    "query_parameters",
    "read_json_object",
    "refuse_role",
    "render_problem",
]
