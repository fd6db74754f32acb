"""Service discovery (`/discovery/v1`): listMethods, allowedMethods and getOpenAPI, as a
departmental system sees them, on SQLite and on PostgreSQL.

The test policy (tests/conftest.py) gives motcua and hotich the population lookup by
number through the group tthc, hotich also the lookup by name, legacy `POST /cong-dan/*`;
motcua holds all of echo, hotich only `GET /public/**` of it; outsider holds nothing.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from openapi_spec_validator import validate
from sqlalchemy import select

from gateway.store.models import AccessRight, Agency, Service
from tests.conftest import NATIONAL_REQUEST, NATIONAL_RESPONSE, PROVINCE_ID, REPO, Harness

PROBLEM = "urn:lgsp:problem:"
ISSUER = "http://gateway.test"
POPULATION = ("000.00.00.G01", "csdlqg-dancu", "v1")
ENABLED = {"csdlqg-dancu", "echo", "needs-case", "small", "slow", "status", "echo-checked", "dead"}
ALL_METHODS = {"get", "head", "post", "put", "patch", "delete", "options"}


def openapi_url(provider: str, code: str, version: str = "v1") -> str:
    return f"/discovery/v1/services/{provider}/{code}/{version}/openapi.json"


async def get(
    gateway: Harness, path: str, client: str | None = None, **headers: str
) -> httpx.Response:
    if client is not None:
        headers["Authorization"] = f"Bearer {await gateway.token(client)}"
    return await gateway.http.get(path, headers=headers)


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"]
    return r.json()


def assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug
    assert body["status"] == status
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def by_code(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["code"]: s for s in body["services"]}


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON Pointer reference, as an OpenAPI tool would."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in all_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in all_refs(v)]
    return []


def checked_openapi(r: httpx.Response) -> dict[str, Any]:
    """The document, valid OpenAPI 3.1, with every reference resolving."""
    doc: dict[str, Any] = ok(r)
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    for ref in all_refs(doc):
        resolve(doc, ref)
    return doc


# -- listMethods ------------------------------------------------------------------------------


async def test_list_methods_shows_every_enabled_service_with_may_call(gateway: Harness) -> None:
    motcua = by_code(ok(await get(gateway, "/discovery/v1/services", "motcua")))
    hotich = by_code(ok(await get(gateway, "/discovery/v1/services", "hotich")))
    outsider = ok(await get(gateway, "/discovery/v1/services", "outsider"))

    assert set(motcua) == set(hotich) == set(by_code(outsider)) == ENABLED  # not "off"
    assert all(s["may_call"] for s in motcua.values())
    assert {c for c, s in hotich.items() if s["may_call"]} == {"csdlqg-dancu", "echo"}
    assert outsider["client"] == "outsider"
    assert not any(s["may_call"] or s["links"] for s in outsider["services"])

    population = motcua["csdlqg-dancu"]
    assert population == {
        "provider": "000.00.00.G01",
        "code": "csdlqg-dancu",
        "version": "v1",
        "name": "Dân cư",
        "address": "/r1/000.00.00.G01/csdlqg-dancu/v1/",
        "requires": ["officer", "procedure"],
        "required_headers": ["X-Officer-Id", "X-Procedure-Code"],
        "may_call": True,
        "links": {"openapi": ISSUER + openapi_url(*POPULATION)},
    }
    assert motcua["needs-case"]["required_headers"] == [
        "X-Officer-Id",
        "X-Procedure-Code",
        "X-Case-Number",
    ]
    assert hotich["status"]["links"] == {}
    # The link works for the caller it was given to.
    link = population["links"]["openapi"].removeprefix(ISSUER)
    checked_openapi(await get(gateway, link, "motcua"))


# -- allowedMethods ---------------------------------------------------------------------------


async def test_allowed_methods_per_caller(gateway: Harness) -> None:
    motcua = ok(await get(gateway, "/discovery/v1/allowed", "motcua"))
    hotich = ok(await get(gateway, "/discovery/v1/allowed", "hotich"))
    outsider = ok(await get(gateway, "/discovery/v1/allowed", "outsider"))

    granted = {c: s["endpoints"] for c, s in by_code(motcua).items()}
    assert set(granted) == ENABLED
    # motcua holds the lookup through its group, and echo for any method and path.
    assert granted["csdlqg-dancu"] == [{"method": "POST", "path": "/cong-dan/tra-cuu"}]
    assert granted["echo"] == [{"method": "*", "path": "/**"}]
    assert all(s["may_call"] for s in motcua["services"])

    assert {c: s["endpoints"] for c, s in by_code(hotich).items()} == {
        "csdlqg-dancu": [
            {"method": "POST", "path": "/cong-dan/tra-cuu"},
            {"method": "POST", "path": "/cong-dan/tra-cuu-ho-ten"},
        ],
        "echo": [{"method": "GET", "path": "/public/**"}],
    }
    assert outsider == {"client": "outsider", "services": []}


async def test_allowed_true_on_services_is_allowed_methods(gateway: Harness) -> None:
    token = await gateway.token("hotich")
    headers = {"Authorization": f"Bearer {token}"}
    both = [
        ok(await gateway.http.get(path, headers=headers))
        for path in ("/discovery/v1/allowed", "/discovery/v1/services?allowed=true")
    ]
    assert both[0] == both[1]
    assert set(by_code(both[0])) == {"csdlqg-dancu", "echo"}
    every = ok(await gateway.http.get("/discovery/v1/services?allowed=false", headers=headers))
    assert set(by_code(every)) == ENABLED

    r = await gateway.http.get("/discovery/v1/services?allowed=yes", headers=headers)
    assert assert_problem(r, 400, "invalid-parameter")["parameter"] == "allowed"
    # Each route takes what it declares, once: a misspelt or repeated one is refused.
    for path, name, words in (
        ("/discovery/v1/services?alowed=true", "alowed", ["it takes allowed"]),
        ("/discovery/v1/services?allowed=true&allowed=false", "allowed", ["more than once"]),
        ("/discovery/v1/services?allowed=1", "allowed", ["true or false", "'1'"]),
        ("/discovery/v1/allowed?allowed=true", "allowed", ["no parameters"]),
        ("/services?page=2", "page", ["no parameters"]),
    ):
        problem = assert_problem(
            await gateway.http.get(path, headers=headers), 400, "invalid-parameter"
        )
        assert problem["parameter"] == name
        assert all(word in problem["detail"] for word in words), problem["detail"]


async def test_discovery_accepts_an_api_key(gateway: Harness) -> None:
    key = await gateway.api_key("legacy")
    body = ok(await gateway.http.get("/discovery/v1/allowed", headers={"X-Api-Key": key}))
    assert by_code(body)["csdlqg-dancu"]["endpoints"] == [{"method": "POST", "path": "/cong-dan/*"}]


# -- getOpenAPI -------------------------------------------------------------------------------


async def test_openapi_of_the_population_service(gateway: Harness) -> None:
    doc = checked_openapi(await get(gateway, openapi_url(*POPULATION), "motcua"))

    assert doc["servers"] == [{"url": f"{ISSUER}/r1/000.00.00.G01/csdlqg-dancu/v1"}]
    assert doc["info"]["x-lgsp-client"] == "motcua"
    # Only what motcua is granted: the lookup by number, by POST.
    assert list(doc["paths"]) == ["/cong-dan/tra-cuu"]
    item = doc["paths"]["/cong-dan/tra-cuu"]
    assert set(item) & ALL_METHODS == {"post"}
    post = item["post"]

    # The registered national request schema, embedded.
    body = post["requestBody"]
    assert body["required"] is True
    assert body["x-lgsp-schema"] == {
        "subject": NATIONAL_REQUEST,
        "version": 1,
        "schemaType": "JSON",
    }
    request_schema = resolve(doc, body["content"]["application/json"]["schema"]["$ref"])
    national = json.loads(
        (REPO / "schemas/population/citizen-lookup.national.request.json").read_text("utf-8")
    )
    assert request_schema["properties"]["SoDinhDanh"] == {
        "type": "string",
        "pattern": "^[0-9]{12}$",
    }
    assert request_schema["properties"] == national["properties"]
    assert request_schema["anyOf"] == national["anyOf"]

    # The response schema too, its $defs references rebased so that they resolve here.
    ok_response = post["responses"]["200"]
    response_ref = ok_response["content"]["application/json"]["schema"]["$ref"]
    assert NATIONAL_RESPONSE in response_ref
    response_schema = resolve(doc, response_ref)
    citizen = resolve(doc, response_schema["properties"]["CongDan"]["$ref"])
    assert "SoDinhDanh" in citizen["properties"]
    assert {"X-Request-Id", "X-Request-Sha256"} <= set(ok_response["headers"])

    # Accountability headers: required as the service says; the request id optional.
    headers = {p["name"]: p for p in (resolve(doc, ref["$ref"]) for ref in item["parameters"])}
    assert headers["X-Officer-Id"]["required"] is True
    assert headers["X-Procedure-Code"]["required"] is True
    assert headers["X-Case-Number"]["required"] is False
    assert headers["X-Request-Id"]["required"] is False
    assert all(p["in"] == "header" for p in headers.values())

    # Errors are problem+json with the Problem schema.
    for status in ("400", "401", "403", "502", "503", "504"):
        error = resolve(doc, post["responses"][status]["$ref"])
        schema_ref = error["content"]["application/problem+json"]["schema"]["$ref"]
        assert schema_ref == "#/components/schemas/Problem"
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "status", "detail", "side", "request_id"} <= set(problem["required"])

    schemes = doc["components"]["securitySchemes"]
    assert schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"] == f"{ISSUER}/oauth2/token"
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "X-Api-Key")
    assert doc["security"] == [{"oauth2": []}, {"apiKey": []}]


async def test_openapi_differs_by_caller_and_renders_globs(gateway: Harness) -> None:
    hotich = checked_openapi(await get(gateway, openapi_url(*POPULATION), "hotich"))
    assert set(hotich["paths"]) == {"/cong-dan/tra-cuu", "/cong-dan/tra-cuu-ho-ten"}

    # legacy: `POST /cong-dan/*`, one segment.
    legacy = checked_openapi(await get(gateway, openapi_url(*POPULATION), "legacy"))
    [(path, item)] = legacy["paths"].items()
    assert path == "/cong-dan/{segment}"
    assert item["x-lgsp-path-globs"] == ["/cong-dan/*"]
    assert set(item) & ALL_METHODS == {"post"}
    segment = next(p for p in item["parameters"] if p.get("in") == "path")
    assert (segment["name"], segment["required"]) == ("segment", True)

    # hotich on echo: `GET /public/**`; echo names no schema, so any answer.
    echo = checked_openapi(await get(gateway, openapi_url(PROVINCE_ID, "echo"), "hotich"))
    [(path, item)] = echo["paths"].items()
    assert (path, item["x-lgsp-path-globs"]) == ("/public/{path}", ["/public/**"])
    assert set(item) & ALL_METHODS == {"get"}
    assert list(item["get"]["responses"]["200"]["content"]) == ["*/*"]

    # motcua on echo: any method, any path.
    echo = checked_openapi(await get(gateway, openapi_url(PROVINCE_ID, "echo"), "motcua"))
    [(path, item)] = echo["paths"].items()
    assert (path, item["x-lgsp-path-globs"]) == ("/{path}", ["/**"])
    assert set(item) & ALL_METHODS == ALL_METHODS
    assert "requestBody" in item["post"] and "requestBody" not in item["get"]
    assert list(item["post"]["requestBody"]["content"]) == ["*/*"]


async def test_openapi_is_refused_for_a_service_the_caller_may_not_call(gateway: Harness) -> None:
    for client, service in (
        ("outsider", POPULATION),
        ("hotich", (PROVINCE_ID, "needs-case", "v1")),
    ):
        r = await get(gateway, openapi_url(*service), client, **{"X-Request-Id": "disc-403"})
        body = assert_problem(r, 403, "access-denied")
        assert body["request_id"] == "disc-403"
        assert body["client"] == client
        assert body["side"] == "caller"
        assert "components" not in body and "paths" not in body


async def test_openapi_of_an_unknown_or_disabled_service_is_404(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    for service in (
        (PROVINCE_ID, "nope", "v1"),
        (PROVINCE_ID, "echo", "v9"),
        (PROVINCE_ID, "off", "v1"),
    ):
        r = await gateway.http.get(
            openapi_url(*service), headers={"Authorization": f"Bearer {token}"}
        )
        body = assert_problem(r, 404, "unknown-service")
        assert body["instance"] == openapi_url(*service)


# -- authentication ---------------------------------------------------------------------------


async def test_discovery_requires_authentication(gateway: Harness) -> None:
    for path in (
        "/discovery/v1/services",
        "/discovery/v1/services?allowed=maybe",  # who asks is checked first
        "/discovery/v1/allowed",
        openapi_url(*POPULATION),
    ):
        r = await gateway.http.get(path, headers={"X-Request-Id": "disc-401"})
        body = assert_problem(r, 401, "unauthenticated")
        assert body["request_id"] == "disc-401"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")

    r = await gateway.http.get("/discovery/v1/allowed", headers={"X-Api-Key": "lgsp_wrong"})
    assert_problem(r, 401, "invalid-api-key")
    r = await gateway.http.get("/discovery/v1/services", headers={"Authorization": "Bearer x.y.z"})
    assert_problem(r, 401, "invalid-token")


# -- caching ----------------------------------------------------------------------------------


async def test_answers_are_cached_per_configuration_version(gateway: Harness) -> None:
    """A right written to the store behind the gateway's back is not seen until the
    configuration version changes: the answers come from memory, not the store."""
    headers = {"Authorization": f"Bearer {await gateway.token('hotich')}"}
    echo_doc = openapi_url(PROVINCE_ID, "echo")
    before_allowed = ok(await gateway.http.get("/discovery/v1/allowed", headers=headers))
    before_doc = ok(await gateway.http.get(echo_doc, headers=headers))
    assert list(before_doc["paths"]) == ["/public/{path}"]

    async with gateway.state.sessions() as s, s.begin():
        echo_id = await s.scalar(
            select(Service.id)
            .join(Agency, Agency.id == Service.provider_id)
            .where(Agency.code == PROVINCE_ID, Service.code == "echo")
        )
        assert echo_id is not None
        s.add(
            AccessRight(
                service_id=echo_id,
                subject_kind="client",
                subject_code="hotich",
                method="POST",
                path="/public/forms",
            )
        )

    assert ok(await gateway.http.get("/discovery/v1/allowed", headers=headers)) == before_allowed
    assert ok(await gateway.http.get(echo_doc, headers=headers)) == before_doc

    await gateway.secret("outsider")  # any admin change: a new version, and a reload
    after_allowed = ok(await gateway.http.get("/discovery/v1/allowed", headers=headers))
    assert by_code(after_allowed)["echo"]["endpoints"] == [
        {"method": "GET", "path": "/public/**"},
        {"method": "POST", "path": "/public/forms"},
    ]
    after_doc = checked_openapi(await gateway.http.get(echo_doc, headers=headers))
    assert set(after_doc["paths"]) == {"/public/{path}", "/public/forms"}
    assert set(after_doc["paths"]["/public/forms"]) & ALL_METHODS == {"post"}
