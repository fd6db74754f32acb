"""The admin API (`/admin/v1`) against a running gateway, on SQLite and PostgreSQL.

Admin callers are clients holding a role: each call is checked against the route table's
roles, each change becomes one policy version with admin events (before, after, actor,
comment), the gateway's own tables are rebuilt before the answer (a revoked credential
fails on the very next request), and the OpenAPI document matches the routes.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.edge.admin_api import PREFIX, ROUTES
from gateway.edge.app import create_app
from gateway.edge.reload import reload_config
from tests.conftest import ECHO, PROVINCE_ID, Harness

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

PROBLEM = "urn:lgsp:problem:"
ECHO_SERVICE = f"/services/{PROVINCE_ID}/echo/v1"
STATUS_SERVICE = f"/services/{PROVINCE_ID}/status/v1"
# Admin callers, by the role each holds; motcua (a departmental system) holds none.
CALLERS = {
    "quantri": "administrator",
    "vanhanh": "operator",
    "kiemtra": "auditor",
    "giamsat": "observer",
}
EVERYONE = ("motcua", "giamsat", "kiemtra", "vanhanh", "quantri")
READERS = frozenset({"quantri", "vanhanh", "kiemtra", "giamsat"})
OPERATORS = frozenset({"quantri", "vanhanh"})
ADMINS = frozenset({"quantri"})


@dataclass
class Admin:
    """A gateway with admin callers, and their bearer headers by client code."""

    h: Harness
    headers: dict[str, dict[str, str]]

    async def call(
        self, who: str, method: str, path: str, body: Any = None, **kw: Any
    ) -> httpx.Response:
        if body is not None:
            kw["json"] = body
        headers = {**self.headers[who], **kw.pop("headers", {})}
        return await self.h.http.request(method, PREFIX + path, headers=headers, **kw)

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """As the administrator; the answer's JSON, after checking it is a success."""
        r = await self.call("quantri", method, path, body, **kw)
        assert r.is_success, r.text
        return r.json()


@pytest.fixture
async def adm(gateway: Harness) -> Admin:
    async with gateway.state.sessions() as s, s.begin():
        for code, role in CALLERS.items():
            await policy_state.create_client(
                s, code=code, agency_code=PROVINCE_ID, name=code, actor="test", roles=[role]
            )
    await reload_config(gateway.state)
    headers = {code: {"Authorization": f"Bearer {await gateway.token(code)}"} for code in EVERYONE}
    return Admin(gateway, headers)


def assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug
    assert body["status"] == status
    assert body["request_id"] and body["request_id"] == r.headers["X-Request-Id"]
    return body


async def token_for(h: Harness, client: str, secret: str) -> httpx.Response:
    return await h.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client, secret)
    )


# -- the role matrix --------------------------------------------------------------------------


@dataclass
class Context:
    credential_id: int
    document: dict[str, Any]
    version: int
    status_service: dict[str, Any]


Request = tuple[str, str, Any]
MATRIX: dict[str, tuple[frozenset[str], Callable[[Context], Request]]] = {
    "GET clients": (READERS, lambda c: ("GET", "/clients", None)),
    "GET policy diff": (READERS, lambda c: ("POST", "/policy/diff", c.document)),
    "GET changes": (READERS, lambda c: ("GET", "/changes?limit=5", None)),
    "PUT client": (
        ADMINS,
        lambda c: ("PUT", "/clients/newsys", {"agency": "000.00.31.H49", "name": "New system"}),
    ),
    "PATCH service settings": (
        OPERATORS,
        lambda c: ("PATCH", ECHO_SERVICE, {"timeouts": {"total_ms": 5000}}),
    ),
    "PUT service with changed access": (
        ADMINS,
        lambda c: (
            "PUT",
            STATUS_SERVICE,
            {**c.status_service, "access": [*c.status_service["access"], {"client": "hotich"}]},
        ),
    ),
    "PUT service, same access": (
        OPERATORS,
        lambda c: ("PUT", STATUS_SERVICE, {**c.status_service, "name": "Status (renamed)"}),
    ),
    "PUT rate limit": (
        OPERATORS,
        lambda c: ("PUT", "/rate-limits?client=motcua", {"rate": {"requests": 50}}),
    ),
    "GET credentials": (ADMINS, lambda c: ("GET", "/clients/hotich/credentials", None)),
    "POST credential": (
        ADMINS,
        lambda c: ("POST", "/clients/hotich/credentials", {"kind": "secret"}),
    ),
    "DELETE credential": (ADMINS, lambda c: ("DELETE", f"/credentials/{c.credential_id}", None)),
    "PUT whole policy": (
        ADMINS,
        lambda c: (
            "PUT",
            "/policy",
            {**c.document, "groups": [{"code": "tthc", "name": "Thủ tục hành chính"}]},
        ),
    ),
    "rollback": (ADMINS, lambda c: ("POST", f"/policy/versions/{c.version}/rollback", None)),
}


@pytest.mark.parametrize("case", list(MATRIX))
async def test_role_matrix(adm: Admin, case: str) -> None:
    allowed, make = MATRIX[case]
    async with adm.h.state.sessions() as s, s.begin():
        await credential_ops.issue(s, client_code="hotich", kind="secret", actor="test")
    listed = await adm.ok("GET", "/clients/hotich/credentials")
    policy = await adm.ok("GET", "/policy")
    ctx = Context(
        credential_id=listed["items"][-1]["id"],
        document=policy["document"],
        version=policy["version"],
        status_service=await adm.ok("GET", STATUS_SERVICE),
    )
    method, path, body = make(ctx)
    for who in EVERYONE:  # the refused first: a refusal changes nothing
        r = await adm.call(who, method, path, copy.deepcopy(body))
        if who in allowed:
            assert r.is_success, f"{who} ({CALLERS[who]}): {r.text}"
            continue
        problem = assert_problem(r, 403, "access-denied")
        assert problem["client"] == who
        assert "administrator" in problem["required_roles"]
        assert "'administrator'" in problem["detail"], problem["detail"]
        if who == "vanhanh" and case.startswith("PUT service"):
            assert problem["required_roles"] == ["administrator"]
            assert "access" in problem["detail"]  # named: the access list is what it lacks
        if allowed == READERS:
            assert set(problem["required_roles"]) == {
                "administrator",
                "operator",
                "auditor",
                "observer",
            }


async def test_unauthenticated_is_401_and_the_document_is_public(adm: Admin) -> None:
    for method, path in (("GET", "/clients"), ("PUT", "/policy"), ("DELETE", "/credentials/1")):
        r = await adm.h.http.request(method, PREFIX + path)
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await adm.h.http.get(PREFIX + "/clients", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401
    r = await adm.h.http.get(PREFIX + "/openapi.json")
    assert r.status_code == 200
    assert r.json()["openapi"] == "3.1.0"


# -- credentials ------------------------------------------------------------------------------


async def test_revocation_takes_effect_on_the_next_request(adm: Admin) -> None:
    h = adm.h
    issued = await adm.ok("POST", "/clients/motcua/credentials", {"kind": "secret"})
    assert issued["kind"] == "secret" and issued["active"] and issued["revoked_at"] is None
    secret, credential_id = issued["secret"], issued["id"]
    assert issued["hint"] == secret[:4]
    r = await token_for(h, "motcua", secret)
    assert r.status_code == 200, r.text
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await h.http.get(f"{ECHO}/anything", headers=bearer)).status_code == 200

    revoked = await adm.ok("DELETE", f"/credentials/{credential_id}?comment=leaked")
    assert revoked["revoked_at"] is not None and not revoked["active"]
    # No reload, no poll: the very next request is refused.
    r = await h.http.get(f"{ECHO}/anything", headers=bearer)
    assert_problem(r, 401, "invalid-token")
    assert (await token_for(h, "motcua", secret)).status_code == 401

    listed = await adm.ok("GET", "/clients/motcua/credentials")
    [row] = [c for c in listed["items"] if c["id"] == credential_id]
    assert row["revoked_at"] is not None
    assert "secret" not in row and "secret_sha256" not in row
    changes = (await adm.ok("GET", "/changes?limit=5"))["items"]
    assert changes[-1]["action"] == "credential.revoke"
    assert changes[-1]["actor"] == "admin-api:quantri"
    assert changes[-1]["comment"] == "leaked"
    # Revoking again changes nothing and says so; an unknown one is a 404.
    again = await adm.ok("DELETE", f"/credentials/{credential_id}")
    assert again["revoked_at"] == revoked["revoked_at"]
    assert_problem(await adm.call("quantri", "DELETE", "/credentials/999999"), 404, "not-found")
    assert_problem(await adm.call("quantri", "DELETE", "/credentials/x"), 404, "not-found")


async def test_rotation_with_a_grace_period(adm: Admin) -> None:
    h = adm.h
    old = await adm.ok("POST", "/clients/motcua/credentials", {"kind": "secret"})
    before = datetime.now(UTC)
    rotated = await adm.ok(
        "POST", "/clients/motcua/credentials/rotate", {"kind": "secret", "grace_seconds": 2}
    )
    new = rotated["issued"]
    assert new["secret"] and new["id"] != old["id"]
    assert rotated["revoked"] == []
    # The fixture's token came from a secret too: every active one gets the grace.
    assert old["id"] in {c["id"] for c in rotated["expiring"]}
    [expiring] = [c for c in rotated["expiring"] if c["id"] == old["id"]]
    ends = datetime.fromisoformat(expiring["expires_at"])
    assert before + timedelta(seconds=1) < ends < before + timedelta(seconds=4)
    # Until the grace ends, both secrets work: the system can switch over.
    assert (await token_for(h, "motcua", old["secret"])).status_code == 200
    r = await token_for(h, "motcua", new["secret"])
    assert r.status_code == 200
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    await asyncio.sleep((ends - datetime.now(UTC)).total_seconds() + 0.2)
    assert (await token_for(h, "motcua", old["secret"])).status_code == 401
    assert (await token_for(h, "motcua", new["secret"])).status_code == 200
    assert (await h.http.get(f"{ECHO}/x", headers=bearer)).status_code == 200

    # Without grace, the others are revoked at once, tokens included.
    now = await adm.ok("POST", "/clients/motcua/credentials/rotate", {"kind": "secret"})
    assert [c["id"] for c in now["revoked"]] == [new["id"]]
    assert_problem(await h.http.get(f"{ECHO}/x", headers=bearer), 401, "invalid-token")
    assert (await token_for(h, "motcua", now["issued"]["secret"])).status_code == 200

    # API keys the same way; a bad request names its field.
    key = await adm.ok("POST", "/clients/legacy/credentials", {"kind": "api_key"})
    assert key["secret"].startswith("lgsp_")
    assert (await h.http.get(f"{ECHO}/x", headers={"X-Api-Key": key["secret"]})).status_code == 200
    for body, field in (
        ({"kind": "password"}, "kind"),
        ({"kind": "secret", "grace_seconds": 86_401}, "grace_seconds"),
    ):
        r = await adm.call("quantri", "POST", "/clients/motcua/credentials/rotate", body)
        problem = assert_problem(r, 422, "invalid-configuration")
        assert problem["errors"][0]["field"] == field
    r = await adm.call(
        "quantri",
        "POST",
        "/clients/motcua/credentials",
        {"kind": "secret", "expires_at": "2001-01-01T00:00:00Z"},
    )
    assert assert_problem(r, 422, "invalid-configuration")["errors"][0]["field"] == "expires_at"
    r = await adm.call("quantri", "POST", "/clients/nobody/credentials", {"kind": "secret"})
    assert_problem(r, 404, "not-found")


# -- validation errors name the field ---------------------------------------------------------


async def test_validation_errors_name_the_field(adm: Admin, gateway: Harness) -> None:
    r = await adm.call(
        "quantri", "PUT", "/clients/newsys", {"agency": "999.99.99.H99", "name": "New"}
    )
    problem = assert_problem(r, 422, "invalid-configuration")
    assert problem["errors"][0]["field"] == "agency"
    assert "999.99.99.H99" in problem["errors"][0]["detail"]
    assert "agency" in problem["detail"]

    echo = await adm.ok("GET", ECHO_SERVICE)
    too_short = {**echo, "timeouts": {"connect_ms": 100, "total_ms": 1}}
    problem = assert_problem(
        await adm.call("vanhanh", "PUT", ECHO_SERVICE, too_short), 422, "invalid-configuration"
    )
    assert [e["field"] for e in problem["errors"]] == ["timeouts.total_ms"]
    assert "timeouts.total_ms" in problem["detail"]
    r = await adm.call("vanhanh", "PATCH", ECHO_SERVICE, {"timeouts": {"total_ms": 1}})
    problem = assert_problem(r, 422, "invalid-configuration")
    assert problem["errors"][0]["field"] == "timeouts.total_ms"

    # The address names the entity; a body that names another is refused.
    r = await adm.call("quantri", "PUT", "/clients/abc", {"code": "xyz", "agency": PROVINCE_ID})
    assert assert_problem(r, 422, "invalid-configuration")["errors"][0]["field"] == "code"
    # A delete that would leave references dangling names who still refers.
    problem = assert_problem(
        await adm.call("quantri", "DELETE", "/agencies/000.00.31.H49"),
        422,
        "invalid-configuration",
    )
    assert "client 'motcua' still refers to agency '000.00.31.H49'" in problem["detail"]
    assert problem["errors"][0]["field"].startswith("clients[")
    # An upstream outside the allowed networks (the tests allow loopback only).
    r = await adm.call(
        "vanhanh", "PUT", "/upstreams/metadata", {"base_url": "http://169.254.169.254"}
    )
    problem = assert_problem(r, 422, "invalid-configuration")
    assert problem["errors"][0]["field"] == "base_url"
    # A whole document names indexed paths, and which entity they are in.
    policy = (await adm.ok("GET", "/policy"))["document"]
    policy["clients"][0]["agency"] = "999.99.99.H99"
    problem = assert_problem(
        await adm.call("quantri", "PUT", "/policy", policy), 422, "invalid-configuration"
    )
    assert problem["errors"][0]["field"] == "clients[0].agency"
    assert f"client '{policy['clients'][0]['code']}'" in problem["errors"][0]["detail"]
    # The last administrator cannot be taken away.
    r = await adm.call("quantri", "PUT", "/clients/quantri", {"agency": PROVINCE_ID, "name": "q"})
    problem = assert_problem(r, 422, "invalid-configuration")
    assert problem["errors"][0]["field"] == "clients"

    # Malformed requests: 400; unknown entities: 404.
    r = await adm.call("quantri", "PUT", "/groups/x", content=b"{not json")
    assert_problem(r, 400, "bad-request")
    r = await adm.call("quantri", "PUT", "/groups/x", [1, 2])
    assert_problem(r, 400, "bad-request")
    r = await adm.call("quantri", "GET", "/clients?colour=red")
    assert assert_problem(r, 400, "invalid-parameter")["parameter"] == "colour"
    assert_problem(await adm.call("giamsat", "GET", "/clients/nobody"), 404, "not-found")
    assert_problem(await adm.call("quantri", "DELETE", "/groups/nobody"), 404, "not-found")
    assert_problem(await adm.call("giamsat", "GET", "/policy?version=9999"), 404, "not-found")
    r = await adm.call("quantri", "POST", "/policy/versions/9999/rollback")
    assert_problem(r, 404, "not-found")
    # Nothing of the refused changes was stored.
    assert_problem(await adm.call("quantri", "GET", "/clients/newsys"), 404, "not-found")
    assert (await adm.ok("GET", ECHO_SERVICE))["timeouts"]["total_ms"] == echo["timeouts"][
        "total_ms"
    ]


# -- every change is recorded; rollback -------------------------------------------------------


async def test_changes_are_recorded_and_can_be_rolled_back(adm: Admin, gateway: Harness) -> None:
    start = await adm.ok("GET", "/policy")
    last_id = (await adm.ok("GET", "/changes?limit=1"))["last_id"]

    commit = await adm.ok(
        "PATCH",
        ECHO_SERVICE + "?comment=provider%20is%20slow",
        {"timeouts": {"total_ms": 5000}, "enabled": False},
    )
    assert commit["version"] == start["version"] + 1
    [change] = commit["changes"]
    assert change["summary"] == f"updated service {PROVINCE_ID}/echo/v1"
    assert change["kind"] == "service" and change["op"] == "update"
    assert "timeouts.total_ms: 10000 → 5000" in change["details"]
    # The caller's next exchange already runs under the change.
    motcua = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    assert_problem(await gateway.http.get(f"{ECHO}/x", headers=motcua), 503, "service-disabled")

    events = (await adm.ok("GET", f"/changes?since_id={last_id}"))["items"]
    [event] = [e for e in events if e["action"] == "policy.service"]
    assert event["actor"] == "admin-api:quantri"
    assert event["target"] == f"{PROVINCE_ID}/echo/v1"
    assert event["before"]["timeouts"]["total_ms"] == 10_000
    assert event["after"]["timeouts"]["total_ms"] == 5000
    assert event["before"]["enabled"] is True and event["after"]["enabled"] is False
    assert event["comment"] == "provider is slow"

    [latest, *_] = (await adm.ok("GET", "/policy/versions?limit=3"))["items"]
    assert latest["version"] == commit["version"]
    assert latest["actor"] == "admin-api:quantri"
    assert latest["source"] == "admin-api"
    assert latest["comment"] == "provider is slow"
    assert latest["changes"] == [change["summary"]]
    now = await adm.ok("GET", "/policy")
    assert now["version"] == commit["version"] and now["document"] != start["document"]
    earlier = await adm.ok("GET", f"/policy?version={start['version']}")
    assert earlier["document"] == start["document"]

    # The same change again is no change at all: no version.
    again = await adm.ok("PATCH", ECHO_SERVICE, {"timeouts": {"total_ms": 5000}})
    assert again == {"version": None, "changes": []}

    back = await adm.ok("POST", f"/policy/versions/{start['version']}/rollback?comment=undo")
    assert back["version"] == commit["version"] + 1
    restored = await adm.ok("GET", "/policy")
    assert restored["document"] == start["document"]
    assert (await gateway.http.get(f"{ECHO}/x", headers=motcua)).status_code == 200
    [latest, *_] = (await adm.ok("GET", "/policy/versions"))["items"]
    assert latest["source"] == "rollback"
    assert latest["comment"] == f"rollback to version {start['version']}: undo"


# -- collections ------------------------------------------------------------------------------


async def test_collections(adm: Admin, gateway: Harness) -> None:
    # agencies and groups (administrator)
    await adm.ok("PUT", "/agencies/000.00.45.H49", {"name": "Sở Y tế"})
    assert await adm.ok("GET", "/agencies/000.00.45.H49") == {
        "code": "000.00.45.H49",
        "name": "Sở Y tế",
    }
    await adm.ok("PUT", "/groups/y-te", {"code": "y-te", "name": "Y tế"})
    # clients
    await adm.ok(
        "PUT", "/clients/his", {"agency": "000.00.45.H49", "name": "HIS", "groups": ["y-te"]}
    )
    his = await adm.ok("GET", "/clients/his")
    assert his == {
        "code": "his",
        "agency": "000.00.45.H49",
        "name": "HIS",
        "groups": ["y-te"],
        "roles": [],
        "enabled": True,
    }
    codes = [c["code"] for c in (await adm.ok("GET", "/clients"))["items"]]
    assert "his" in codes and "motcua" in codes
    # upstreams and services (an operator may), without their key fields in the body
    await adm.call("vanhanh", "PUT", "/upstreams/his-up", {"base_url": gateway.simulator_url})
    service = {"name": "Hồ sơ", "upstream": "his-up", "upstream_path": "/_sim/echo"}
    r = await adm.call("vanhanh", "PUT", "/services/000.00.45.H49/ho-so/v1", service)
    assert r.status_code == 200, r.text
    assert [c["summary"] for c in r.json()["changes"]] == ["created service 000.00.45.H49/ho-so/v1"]
    # ... but the rights on it are the administrator's
    granted = {**service, "access": [{"group": "y-te", "method": "GET"}]}
    r = await adm.call("vanhanh", "PUT", "/services/000.00.45.H49/ho-so/v1", granted)
    assert "granted access rights" in assert_problem(r, 403, "access-denied")["detail"]
    r = await adm.call("vanhanh", "PATCH", "/services/000.00.45.H49/ho-so/v1", {"access": []})
    assert r.status_code == 200  # the same (empty) list: no change of rights
    commit = await adm.ok("PUT", "/services/000.00.45.H49/ho-so/v1", granted)
    assert [c["summary"] for c in commit["changes"]] == [
        "granted access rights of 000.00.45.H49/ho-so/v1"
    ]
    assert commit["changes"][0]["details"] == ["+ GET /** (group y-te)"]
    # rate limits, addressed by the query
    r = await adm.call(
        "vanhanh",
        "PUT",
        "/rate-limits?client=his&service=000.00.45.H49/ho-so/v1",
        {"rate": {"requests": 10, "per": "minute"}, "quota_per_day": 1000},
    )
    assert r.status_code == 200, r.text
    one = await adm.ok("GET", "/rate-limits?client=his&service=000.00.45.H49/ho-so/v1")
    assert one["quota_per_day"] == 1000 and one["rate"]["per"] == "minute"
    assert len((await adm.ok("GET", "/rate-limits"))["items"]) == 1
    assert_problem(await adm.call("giamsat", "GET", "/rate-limits?client=his"), 404, "not-found")
    # deletes, in the order references allow
    r = await adm.call("vanhanh", "DELETE", "/services/000.00.45.H49/ho-so/v1")
    problem = assert_problem(r, 422, "invalid-configuration")
    assert "rate limit for client his on 000.00.45.H49/ho-so/v1 still refers" in problem["detail"]
    await adm.call("vanhanh", "DELETE", "/rate-limits?client=his&service=000.00.45.H49/ho-so/v1")
    r = await adm.call("vanhanh", "DELETE", "/services/000.00.45.H49/ho-so/v1")
    assert r.status_code == 200, r.text  # its rights go with it, even for an operator
    r = await adm.call("vanhanh", "DELETE", "/upstreams/his-up")
    assert r.status_code == 200, r.text
    await adm.ok("DELETE", "/clients/his")
    await adm.ok("DELETE", "/groups/y-te")
    await adm.ok("DELETE", "/agencies/000.00.45.H49")
    assert_problem(await adm.call("quantri", "GET", "/agencies/000.00.45.H49"), 404, "not-found")


async def test_diff_and_if_match(adm: Admin) -> None:
    current = await adm.call("kiemtra", "GET", "/policy")
    etag, policy = current.headers["ETag"], current.json()
    assert etag == f'"{policy["version"]}"'
    document = copy.deepcopy(policy["document"])
    document["groups"].append({"code": "moi", "name": "Mới"})
    diff = (await adm.call("giamsat", "POST", "/policy/diff", document)).json()
    assert [c["summary"] for c in diff["changes"]] == ["created group moi"]
    assert (await adm.ok("GET", "/policy"))["version"] == policy["version"]  # nothing committed
    # The envelope GET answers is not a document, and the refusal says so.
    r = await adm.call("quantri", "PUT", "/policy", policy)
    assert "not the envelope" in assert_problem(r, 422, "invalid-configuration")["detail"]

    first = await adm.ok("PUT", "/policy", document, headers={"If-Match": etag})
    assert first["version"] == policy["version"] + 1
    r = await adm.call("quantri", "PUT", "/groups/moi", {"name": "x"}, headers={"If-Match": etag})
    problem = assert_problem(r, 412, "precondition-failed")  # RFC 9110 §13.1.1
    assert problem["current_version"] == first["version"]
    await adm.ok("PUT", "/groups/moi", {"name": "x"}, headers={"If-Match": f'"{first["version"]}"'})


async def test_a_misspelt_schema_subject_or_version_is_refused_naming_the_field(
    adm: Admin,
) -> None:
    """Otherwise every call of the service would fail 503 schema-unavailable."""
    policy = (await adm.ok("GET", "/policy"))["document"]
    index = next(i for i, s in enumerate(policy["services"]) if s["code"] == "csdlqg-dancu")
    service = policy["services"][index]
    key = f"{service['provider']}/{service['code']}/{service['version']}"
    right = service["schemas"]["request"]["subject"]
    service["schemas"]["request"]["subject"] = right.replace("population", "populaton")
    service["schemas"]["response"]["version"] = 99
    r = await adm.call("quantri", "PUT", "/policy", policy)
    problem = assert_problem(r, 422, "invalid-configuration")
    request, response = problem["errors"]
    assert request["field"] == f"services[{index}].schemas.request"
    assert f"service {key}" in request["detail"] and f"did you mean {right!r}" in request["detail"]
    assert response["field"] == f"services[{index}].schemas.response"
    assert "version 99" in response["detail"] and "it has version 1" in response["detail"]
    # Nothing was applied: the service still answers with its schemas.
    assert (await adm.ok("GET", "/policy"))["document"]["services"][index]["schemas"]["request"][
        "subject"
    ] == right


# -- the OpenAPI document ---------------------------------------------------------------------


async def test_openapi_document_matches_the_routes(gateway: Harness) -> None:
    r = await gateway.http.get(PREFIX + "/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    issuer = gateway.state.settings.issuer
    flow = doc["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == f"{issuer}/oauth2/token"
    assert "Problem" in doc["components"]["schemas"]

    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    app = create_app(gateway.state.settings)
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith(PREFIX + "/")
    }
    assert served == documented
    for route in ROUTES:
        operation = doc["paths"][route.url][route.method.lower()]
        assert operation["x-lgsp-roles"] == list(route.roles)
        assert operation["security"] == ([] if not route.roles else operation["security"])
        if route.roles:
            assert {"401", "403"} <= set(operation["responses"])
        if route.body is not None:
            ref = next(iter(operation["requestBody"]["content"].values()))["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]


# -- query parameters and body types ----------------------------------------------------------


async def test_query_parameters_are_checked_against_each_route(adm: Admin) -> None:
    """Unknown, repeated, ill-typed or out of bounds: a 400 naming the parameter and what
    it takes, on reads and changes alike; a refused change commits nothing."""
    before = (await adm.ok("GET", "/policy"))["version"]
    cases: list[tuple[str, str, str, list[str]]] = [
        ("GET", "/clients?colour=red", "colour", ["GET /admin/v1/clients", "no parameters"]),
        ("GET", "/changes?limits=5", "limits", ["it takes limit, since_id"]),
        ("GET", "/changes?limit=5&limit=6", "limit", ["more than once"]),
        ("GET", "/changes?limit=0", "limit", ["a whole number from 1 to 1000", "'0'"]),
        ("GET", "/changes?since_id=-3", "since_id", ["a whole number from 0 to"]),
        ("GET", "/policy?version=true", "version", ["a whole number"]),
        ("GET", "/policy/versions?limit=1.5", "limit", ["a whole number"]),
        ("PATCH", ECHO_SERVICE + "?comment=" + "x" * 2001, "comment", ["at most 2000"]),
        ("PUT", "/rate-limits?client=Not%20A%20Code", "client", ["text matching"]),
        ("DELETE", "/rate-limits?service=echo", "service", ["text matching"]),
        ("POST", "/clients/hotich/credentials?comments=x", "comments", ["it takes comment"]),
    ]
    failures = []
    for method, path, name, words in cases:
        body = {"timeouts": {"total_ms": 5000}} if method == "PATCH" else {}
        r = await adm.call("quantri", method, path, body if method != "GET" else None)
        try:
            problem = assert_problem(r, 400, "invalid-parameter")
            assert problem["parameter"] == name, problem
            assert problem["detail"].startswith(f"{name}: "), problem["detail"]
            for word in words:
                assert word in problem["detail"], problem["detail"]
        except AssertionError as e:
            failures.append(f"{method} {path[:60]}: {e}")
    assert not failures, "\n".join(failures)
    assert (await adm.ok("GET", "/policy"))["version"] == before
    # The role is checked before the query: a caller without it learns nothing more.
    r = await adm.call("motcua", "GET", "/clients?colour=red")
    assert_problem(r, 403, "access-denied")


async def test_booleans_are_not_numbers_in_bodies(adm: Admin, gateway: Harness) -> None:
    """`true` used to be stored as 1; now each such field is refused by name."""
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        (
            "PUT",
            "/upstreams/flagged",
            {"base_url": gateway.simulator_url, "max_concurrency": True},
            "max_concurrency",
        ),
        ("PATCH", ECHO_SERVICE, {"timeouts": {"total_ms": True}}, "timeouts.total_ms"),
        ("PATCH", ECHO_SERVICE, {"retries": {"attempts": False}}, "retries.attempts"),
        ("PUT", "/rate-limits?client=motcua", {"rate": {"requests": True}}, "rate.requests"),
        (
            "POST",
            "/clients/motcua/credentials/rotate",
            {"kind": "secret", "grace_seconds": True},
            "grace_seconds",
        ),
    ]
    for method, path, body, field in cases:
        r = await adm.call("quantri", method, path, body)
        problem = assert_problem(r, 422, "invalid-configuration")
        assert [e["field"] for e in problem["errors"]] == [field], problem
    assert_problem(await adm.call("quantri", "GET", "/upstreams/flagged"), 404, "not-found")
    # Numbers still do.
    await adm.ok(
        "PUT", "/upstreams/flagged", {"base_url": gateway.simulator_url, "max_concurrency": 7}
    )
    assert (await adm.ok("GET", "/upstreams/flagged"))["max_concurrency"] == 7


# -- what no admin caller can do (issue 14, points 6, 7 and 8) ---------------------------------


async def test_an_operator_may_not_touch_an_upstreams_credentials(adm: Admin) -> None:
    """An operator edits upstreams, but not their credentials nor where they are sent:
    whoever may do that may have the province's secret sent to an address of theirs."""
    ndxp = await adm.ok("GET", "/upstreams/ndxp")
    for change in (
        {"auth": {**ndxp["auth"], "token_url": "http://127.0.0.1:9/steal"}},
        {"auth": {**ndxp["auth"], "client_secret_env": "LGSP_UPSTREAM_SECRET_OTHER"}},
        {"base_url": "http://127.0.0.1:9"},  # the relative token URL would follow it
    ):
        r = await adm.call("vanhanh", "PUT", "/upstreams/ndxp", {**ndxp, **change})
        problem = assert_problem(r, 403, "access-denied")
        assert "credentials" in problem["detail"]
        assert problem["required_roles"] == ["administrator"]
    # Its other settings are the operator's to change.
    r = await adm.call("vanhanh", "PUT", "/upstreams/ndxp", {**ndxp, "max_concurrency": 50})
    assert r.status_code == 200, r.text


async def test_an_undeclared_secret_variable_is_refused_when_the_change_is_made(
    adm: Admin,
) -> None:
    ndxp = await adm.ok("GET", "/upstreams/ndxp")
    for variable in ("LGSP_DATABASE_URL", "LGSP_KEY_PASSPHRASE", "HOME"):
        auth = {**ndxp["auth"], "client_secret_env": variable}
        r = await adm.call("quantri", "PUT", "/upstreams/ndxp", {**ndxp, "auth": auth})
        problem = assert_problem(r, 422, "invalid-configuration")
        [error] = problem["errors"]
        assert error["field"] == "auth.client_secret_env", error
        assert variable in error["detail"]


async def test_the_last_credential_of_the_last_administrator_cannot_be_revoked(
    adm: Admin,
) -> None:
    [credential] = (await adm.ok("GET", "/clients/quantri/credentials"))["items"]
    r = await adm.call("quantri", "DELETE", f"/credentials/{credential['id']}")
    problem = assert_problem(r, 409, "conflict")
    assert "lock every administrator out" in problem["detail"]
    # Still an administrator: the refusal did not half-happen.
    assert (await adm.call("quantri", "GET", "/clients")).status_code == 200
    # With a second credential issued first, the old one may go.
    issued = await adm.ok("POST", "/clients/quantri/credentials", {"kind": "secret"})
    r = await adm.call("quantri", "DELETE", f"/credentials/{credential['id']}")
    assert r.status_code == 200, r.text
    assert issued["id"] != credential["id"]


async def test_credential_hints_are_shown_to_administrators_only(adm: Admin) -> None:
    await adm.ok("POST", "/clients/motcua/credentials", {"kind": "api_key"})
    for who, sees in (("quantri", True), ("vanhanh", False), ("kiemtra", False)):
        r = await adm.call(who, "GET", "/changes?limit=1000")
        issued = [e for e in r.json()["items"] if e["action"] == "credential.issue"]
        assert issued
        assert all(("hint" in (e["after"] or {})) is sees for e in issued), (who, issued)
