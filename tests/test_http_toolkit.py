"""The HTTP toolkit (gateway/edge/toolkit/): query models that refuse what they do not
declare, with strict types, and OpenAPI documents whose parameters carry the bounds the
server enforces. No gateway runs here; the APIs' own tests call them over HTTP.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import validate
from pydantic import Field, ValidationError

from gateway.config.policy import CircuitBreakerSpec, RateSpec, SchemaRef, UpstreamSpec
from gateway.core.problems import Problem
from gateway.edge import (
    admin_api,
    audit_api,
    bulk_api,
    discovery_api,
    events_api,
    registry_api,
)
from gateway.edge.toolkit import (
    DocInfo,
    Flag,
    OptionalText,
    QueryModel,
    WholeNumber,
    build_document,
    parse_query,
    query_parameters,
)
from gateway.edge.toolkit.routes import Route

ISSUER = "https://lgsp.example.gov.vn"


class Listing(QueryModel):
    limit: WholeNumber = Field(50, ge=1, le=1000, description="At most this many.")
    after: WholeNumber | None = Field(None, ge=0, le=99)
    full: Flag = False
    order: Literal["asc", "desc"] = "asc"
    comment: OptionalText = Field(None, max_length=10)
    client: OptionalText = Field(None, pattern=r"^[a-z]+$")


def parsed(query: str) -> Listing:
    return parse_query(Listing, make_mocked_request("GET", "/things?" + query))


def refusal(query: str) -> Problem:
    with pytest.raises(Problem) as caught:
        parsed(query)
    problem = caught.value
    assert problem.status == 400 and problem.ptype.slug == "invalid-parameter"
    return problem


def test_a_query_is_parsed_with_its_defaults_and_types() -> None:
    assert parsed("") == Listing()
    q = parsed("limit=20&after=0&full=TRUE&order=desc&comment=why&client=motcua")
    assert (q.limit, q.after, q.full, q.order, q.comment, q.client) == (
        20,
        0,
        True,
        "desc",
        "why",
        "motcua",
    )
    # An empty value is no value.
    assert parsed("comment=&client=").comment is None


@pytest.mark.parametrize(
    ("query", "name", "words"),
    [
        ("colour=red", "colour", ["not a parameter of GET /things", "limit, order"]),
        ("limit=1&limit=2", "limit", ["more than once"]),
        ("limit=0", "limit", ["a whole number from 1 to 1000", "'0'"]),
        ("limit=1001", "limit", ["from 1 to 1000"]),
        ("limit=4.0", "limit", ["a whole number"]),
        ("limit=1e3", "limit", ["a whole number"]),
        ("limit=", "limit", ["a whole number"]),
        ("after=-1", "after", ["from 0 to 99"]),
        ("full=yes", "full", ["true or false", "'yes'"]),
        ("full=1", "full", ["true or false"]),
        ("order=up", "order", ["one of asc, desc"]),
        ("comment=" + "x" * 11, "comment", ["at most 10 characters"]),
        ("client=Mot%20Cua", "client", ["^[a-z]+$"]),
    ],
)
def test_a_wrong_parameter_is_a_400_that_names_it(query: str, name: str, words: list[str]) -> None:
    problem = refusal(query)
    assert problem.extensions == {"parameter": name}
    assert problem.detail.startswith(f"{name}: "), problem.detail
    for word in words:
        assert word in problem.detail, problem.detail


def test_an_unknown_parameter_is_reported_before_a_wrong_value() -> None:
    assert refusal("limit=0&colour=red").extensions == {"parameter": "colour"}


def test_query_parameters_carry_the_bounds_the_model_enforces() -> None:
    by_name = {p["name"]: p for p in query_parameters(Listing)}
    assert list(by_name) == ["limit", "after", "full", "order", "comment", "client"]
    assert by_name["limit"] == {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "At most this many.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
    }
    # Optional ones are described by their type, without null, with their bounds.
    assert by_name["after"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 99}
    assert by_name["full"]["schema"] == {"type": "boolean", "default": False}
    assert by_name["order"]["schema"]["enum"] == ["asc", "desc"]
    assert by_name["comment"]["schema"] == {"type": "string", "maxLength": 10}
    assert by_name["client"]["schema"] == {"type": "string", "pattern": "^[a-z]+$"}


# -- the six APIs' route tables --------------------------------------------------------------


TABLES: dict[str, tuple[Route, ...]] = {
    "admin": admin_api.ROUTES,
    "audit": audit_api.ROUTES,
    "registry": registry_api.ROUTES,
    "discovery": discovery_api.ROUTES,
    "events": events_api.ROUTES,
    "bulk": bulk_api.ROUTES,
}
ERRORS = {
    code: (name, name)
    for code, name in {
        "400": "BadRequest",
        "401": "Unauthenticated",
        "403": "Forbidden",
        "404": "NotFound",
        "412": "PreconditionFailed",
        "422": "Invalid",
    }.items()
}


@pytest.mark.parametrize("api", list(TABLES))
def test_every_route_table_makes_a_valid_openapi_document(api: str) -> None:
    doc = build_document(TABLES[api], DocInfo(api, "1", api, ERRORS), ISSUER)
    validate(doc)
    operations = [op for item in doc["paths"].values() for op in item.values()]
    assert len(operations) == len(TABLES[api])
    ids = [op["operationId"] for op in operations]
    assert len(set(ids)) == len(ids)


def _parameter(doc: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    [found] = [p for p in doc["paths"][path][method]["parameters"] if p["name"] == name]
    return found


def test_the_admin_document_carries_the_limits_the_server_enforces() -> None:
    doc = admin_api.build_openapi(ISSUER)
    p = "/admin/v1"
    assert _parameter(doc, p + "/changes", "get", "limit")["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert _parameter(doc, p + "/changes", "get", "since_id")["schema"]["minimum"] == 0
    assert _parameter(doc, p + "/policy", "get", "version")["schema"]["minimum"] == 1
    assert _parameter(doc, p + "/policy", "put", "comment")["schema"]["maxLength"] == 2000
    client = _parameter(doc, p + "/rate-limits", "put", "client")["schema"]
    assert client["pattern"].startswith("^[a-z0-9]")
    service = _parameter(doc, p + "/rate-limits", "delete", "service")["schema"]
    assert "/" in service["pattern"]
    # Bodies: the models' bounds and patterns.
    schemas = doc["components"]["schemas"]
    upstream = schemas["UpstreamSpec"]["properties"]
    assert upstream["max_concurrency"]["minimum"] == 0
    assert upstream["max_concurrency"]["maximum"] == 1_000_000
    assert upstream["base_url"]["pattern"].startswith("^https?://")
    grace = schemas["CredentialRotate"]["properties"]["grace_seconds"]
    assert (grace["minimum"], grace["maximum"]) == (0, 86_400)


def test_the_other_apis_describe_their_parameters() -> None:
    audit = build_document(audit_api.ROUTES, DocInfo("a", "1", "a", ERRORS), ISSUER)
    search = {
        p["name"]: p["schema"] for p in audit["paths"]["/audit/v1/exchanges"]["get"]["parameters"]
    }
    assert search["status"] == {"type": "integer", "minimum": 100, "maximum": 599}
    assert search["limit"]["maximum"] == 1000
    assert search["outcome"]["enum"] == ["success", "refused", "failed"]
    export = _parameter(audit, "/audit/v1/export", "get", "format")
    assert export["schema"]["enum"] == ["csv", "jsonl"]
    registry = build_document(registry_api.ROUTES, DocInfo("r", "1", "r", ERRORS), ISSUER)
    limit = _parameter(registry, "/registry/subjects", "get", "limit")["schema"]
    assert (limit["minimum"], limit["default"]) == (-1, -1)
    discovery = build_document(discovery_api.ROUTES, DocInfo("d", "1", "d", ERRORS), ISSUER)
    allowed = _parameter(discovery, "/discovery/v1/services", "get", "allowed")
    assert allowed["schema"] == {"type": "boolean", "default": False}


# -- booleans are not numbers in the policy ---------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (
            UpstreamSpec,
            {"name": "x", "base_url": "http://a", "max_concurrency": True},
            "max_concurrency",
        ),
        (CircuitBreakerSpec, {"open_seconds": True}, "open_seconds"),
        (CircuitBreakerSpec, {"failure_threshold": False}, "failure_threshold"),
        (SchemaRef, {"subject": "s", "version": True}, "version"),
        (RateSpec, {"requests": True}, "requests"),
    ],
)
def test_a_boolean_is_not_a_number_in_the_policy(
    model: Any, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    assert caught.value.errors()[0]["loc"][0] == field
    # Whole numbers still do for a float, as YAML writes them.
    assert CircuitBreakerSpec.model_validate({"open_seconds": 5}).open_seconds == 5.0
