"""A service's OpenAPI 3.1 document, built from the gateway's configuration and the
schema registry, covering what one caller may call on it.

How a path glob becomes an OpenAPI path: a literal path is used as is; otherwise each
`*` (one segment) becomes `{segment}` and each `**` (any number of segments, '/'
included, possibly none) becomes `{path}` (numbered when repeated), and the path item
carries `x-lgsp-path-globs` with the glob(s) it stands for, which are what the gateway
enforces. A right for any method (`*`) lists every method the gateway forwards.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import quote

from gateway.config.runtime import ServiceEntry
from gateway.core.headers import REQUEST_HASH_HEADER, REQUEST_ID_HEADER
from gateway.core.problems import PROBLEM_CONTENT_TYPE, Side
from gateway.discovery.grants import METHOD_ORDER, Grant, SchemaInfo
from gateway.exchange.accountability import FIELD_RE, FIELDS, REQUEST_ID_RE
from gateway.exchange.steps.body import MESSAGE_METHODS
from gateway.identity.access import HTTP_METHODS
from gateway.identity.authn import API_KEY_HEADER
from gateway.identity.directory import ClientEntry

__all__ = [
    "EXCHANGE_ERRORS",
    "OPENAPI_VERSION",
    "PROBLEM_SCHEMA",
    "address",
    "build_openapi",
    "path_template",
    "required_headers",
]

OPENAPI_VERSION = "3.1.0"
_RESPONSE_REQUEST_ID = {
    "description": "The request id: yours, or the one the gateway made.",
    "schema": {"type": "string"},
}
# What the provider answers when it is not a success (a 404 "no such citizen", a 409, its
# own 500) is its answer: passed on as it is, in its own media type, never rewritten into
# a problem. Only the gateway's own refusals and failures are problem+json.
PROVIDER_ANSWER: dict[str, Any] = {
    "description": "The provider's own answer when it is not a success, passed on unchanged "
    "(status, media type and body are the provider's; with an adapter, in the provincial "
    "form the adapter gives it). Errors of the gateway's own making are the problem+json "
    "answers listed by status; a problem's `side` says which side failed.",
    "headers": {REQUEST_ID_HEADER: _RESPONSE_REQUEST_ID},
}
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


def address(service: ServiceEntry) -> str:
    """Where callers call the service: `/r1/{provider}/{code}/{version}/`."""
    return f"/r1/{service.provider}/{service.code}/{service.version}/"


def build_openapi(
    service: ServiceEntry,
    client: ClientEntry,
    grants: list[Grant],
    schemas: dict[str, SchemaInfo],
    issuer: str,
) -> dict[str, Any]:
    """The service as `client` may use it, as an OpenAPI 3.1 document.

    Args:
        service: the service, from the configuration tables.
        client: the caller; the document lists only what it is granted.
        grants: its (method, path glob) rights on the service.
        schemas: the service's registered request and response schemas.
        issuer: the gateway's public URL (servers, token URL, registry links).

    Returns:
        the document, as plain data.

    Example:
        >>> doc = build_openapi(echo, motcua, [("*", "/**")], {}, "https://lgsp.example")
        >>> list(doc["paths"])
        ['/{path}']
    """
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
        }
        | {"ProviderAnswer": PROVIDER_ANSWER},
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
        description += f" Required headers: {', '.join(required_headers(service))}."
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


def required_headers(service: ServiceEntry) -> list[str]:
    return [h for name, h, _ in FIELDS if name in service.required_fields]


def path_template(glob: str) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path for a right's path glob, and the path parameters it introduces.

    Example:
        >>> path_template("/cong-dan/*/**")[0]
        '/cong-dan/{segment}/{path}'
    """
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
                "description": "SHA-256 (hex) of the request's message "
                "(decoded, if it came compressed).",
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
            "default": {"$ref": "#/components/responses/ProviderAnswer"},
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
