"""An OpenAPI 3.1 document made from a route table.

Paths, methods, roles (`x-lgsp-roles`), query parameters (from the routes' query models,
with their bounds, patterns and enums), request bodies and answers (from the pydantic
models, with the limits the server enforces), and the error answers each route can give:
400 when it takes a body or parameters, 401/403 unless public, 404 when its address can
name nothing, 412 and 422 when it changes the policy.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.problems import PROBLEM_CONTENT_TYPE
from gateway.edge.toolkit.query import query_parameters
from gateway.edge.toolkit.routes import Body, Reply, Route

__all__ = [
    "OPENAPI_VERSION",
    "DocInfo",
    "FieldError",
    "ProblemDetails",
    "build_document",
    "gateway_security_schemes",
    "operation_id",
]

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"
_SECURITY: list[dict[str, list[str]]] = [{"oauth2": []}, {"bearer": []}, {"apiKey": []}]


class FieldError(BaseModel):
    """One reason a change is refused: `field` is a path into the request body
    (`timeouts.total_ms`, `services[2].access[0].client`; empty for the body as a whole)."""

    model_config = ConfigDict(extra="forbid")

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


@dataclass(frozen=True, slots=True)
class DocInfo:
    """The document's `info`, its error answers (status -> component name, description)
    and its security schemes (a function of the issuer URL)."""

    title: str
    version: str
    description: str
    errors: Mapping[str, tuple[str, str]]
    security_schemes: Callable[[str], dict[str, Any]] | None = None
    security: tuple[dict[str, list[str]], ...] = tuple(_SECURITY)


def gateway_security_schemes(issuer: str) -> dict[str, Any]:
    """How callers authenticate to the gateway: OAuth2 client credentials, the bearer
    token it issues, or an API key.

    Args:
        issuer: the gateway's public URL (the token endpoint is under it).

    Returns:
        the `components.securitySchemes` object.

    Example:
        >>> sorted(gateway_security_schemes("https://lgsp.example"))
        ['apiKey', 'bearer', 'oauth2']
    """
    return {
        "oauth2": {
            "type": "oauth2",
            "description": "Client credentials grant; the token is a signed JWT.",
            "flows": {"clientCredentials": {"tokenUrl": f"{issuer}/oauth2/token", "scopes": {}}},
        },
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    }


def operation_id(route: Route) -> str:
    """`getClientsByCode` for GET /clients/{code}: the method and the path's words.

    Example:
        >>> operation_id(route)  # POST /policy/versions/{n}/rollback
        'postPolicyVersionsByNRollback'
    """
    words = re.findall(r"[A-Za-z0-9]+", route.path.replace("{", "by_").replace(".json", ""))
    return route.method.lower() + "".join(w[:1].upper() + w[1:] for w in words)


class _Schemas:
    """`components.schemas`, filled as models are referred to."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        name = str(model.model_config.get("title") or model.__name__)
        if name not in self.schemas:
            schema = model.model_json_schema(ref_template=_REF)
            for def_name, definition in schema.pop("$defs", {}).items():
                self.schemas.setdefault(def_name, definition)
            self.schemas[name] = schema
        return {"$ref": _REF.format(model=name)}

    def body(self, body: Body) -> dict[str, Any]:
        """The body's schema: the model itself, or a variant with the address's keys
        optional, or every field optional and nullable for a merge patch."""
        self.ref(body.model)
        if not body.optional and not body.patch:
            return self.ref(body.model)
        base = body.model.__name__
        name = base + ("Patch" if body.patch else "Body")
        schema = copy.deepcopy(self.schemas[base])
        schema["title"] = name
        if body.patch:
            schema.pop("required", None)
            schema["properties"] = {
                k: {"anyOf": [v, {"type": "null"}]} for k, v in schema["properties"].items()
            }
            schema["description"] = (
                f"A JSON merge patch (RFC 7396) over {base}: the fields given "
                "replace the current ones (objects merge), null resets a field to its default."
            )
        else:
            required = [f for f in schema.get("required", []) if f not in body.optional]
            schema["required"] = required
            if not required:
                schema.pop("required")
            schema["description"] = (
                f"{base}; {', '.join(body.optional)} may be left out (the "
                "address names them) or must equal the address."
            )
        self.schemas[name] = schema
        return {"$ref": _REF.format(model=name)}

    def reply(self, reply: Reply) -> dict[str, Any]:
        if reply.model is None:
            return {"type": "object"}
        many = {
            "type": "object",
            "properties": {"items": {"type": "array", "items": self.ref(reply.model)}},
            "required": ["items"],
            "additionalProperties": False,
        }
        if reply.one_or_many:
            return {"oneOf": [many, self.ref(reply.model)]}
        return many if reply.many else self.ref(reply.model)


def _parameters(route: Route, path_params: list[str]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if name in route.path_integers else "string"},
        }
        for name in path_params
    ]
    parameters += query_parameters(route.query)
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
    return parameters


def _error_codes(route: Route, path_params: list[str]) -> list[str]:
    codes = []
    if route.body is not None or route.query.model_fields:
        codes.append("400")
    if not route.public:
        codes.append("401")
    if route.roles:
        codes.append("403")
    if path_params or route.addressed:
        codes.append("404")
    if route.versioned:
        codes.append("412")
    if route.versioned or route.body is not None:
        codes.append("422")
    return codes


def _operation(route: Route, schemas: _Schemas, info: DocInfo) -> dict[str, Any]:
    path_params = re.findall(r"\{(\w+)\}", route.path)
    success: dict[str, Any] = {
        "description": route.reply.description,
        "content": {"application/json": {"schema": schemas.reply(route.reply)}},
    }
    if route.reply.etag:
        success["headers"] = {
            "ETag": {
                "description": "The policy version the answer reflects, for If-Match.",
                "schema": {"type": "string"},
            }
        }
    responses: dict[str, Any] = {str(route.reply.status): success}
    for code in _error_codes(route, path_params):
        responses[code] = {"$ref": f"#/components/responses/{info.errors[code][0]}"}
    operation: dict[str, Any] = {
        "operationId": operation_id(route),
        "summary": route.summary,
        "tags": [route.path.strip("/").split("/")[0].removesuffix(".json")],
        "x-lgsp-roles": list(route.roles),
        "security": [] if route.public else list(info.security),
        "responses": responses,
    }
    if route.description:
        operation["description"] = route.description
    parameters = _parameters(route, path_params)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = schemas.body(route.body)
        media = (
            ("application/merge-patch+json", "application/json")
            if route.body.patch
            else ("application/json",)
        )
        operation["requestBody"] = {
            "required": True,
            "content": {m: {"schema": schema} for m in media},
        }
    return operation


def build_document(routes: Iterable[Route], info: DocInfo, issuer: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a route table.

    Args:
        routes: the API's routes, in the order the document lists them.
        info: title, version, description, error answers and security schemes.
        issuer: the gateway's public URL: the server, and where tokens come from.

    Returns:
        the document, as plain data (orjson serialises it).

    Example:
        >>> build_document(ROUTES, ADMIN_DOC, "https://lgsp.example")["openapi"]
        '3.1.0'
    """
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.url, {})[route.method.lower()] = _operation(route, schemas, info)
    schemas.ref(ProblemDetails)
    schemes = (info.security_schemes or gateway_security_schemes)(issuer)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": info.title, "version": info.version, "description": info.description},
        "servers": [{"url": issuer}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.schemas.items())),
            "responses": {
                name: {
                    "description": description,
                    "content": {
                        PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}
                    },
                }
                for name, description in info.errors.values()
            },
            "securitySchemes": schemes,
        },
    }
