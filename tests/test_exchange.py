"""Exchanges through the running gateway (`/r1/...`), on SQLite and on PostgreSQL.

Every error path is checked the way a caller and an auditor see it: the HTTP status, the
problem type, which side failed, a detail naming the cause, the request id in body and
header, and exactly one audit record for that request id carrying what was known.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest

from gateway.audit import AuditEvent, AuditUnavailable
from gateway.store.models import AuditRecord
from simulator.app import _STATE as SIM_STATE
from simulator.app import LOOKUPS, TOKENS_ISSUED
from tests.conftest import ECHO, POPULATION, PROVINCE_ID, SECRET_ENV, Harness

PROBLEM = "urn:lgsp:problem:"
ACCOUNT = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}
BY_NUMBER = f"{POPULATION}/cong-dan/tra-cuu"
BY_NAME = f"{POPULATION}/cong-dan/tra-cuu-ho-ten"
MOTCUA_AGENCY = "000.00.31.H49"
HOTICH_AGENCY = "000.00.12.H49"
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-[0-9a-f]{16}-01$")
T = TypeVar("T")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def address(service: str, endpoint: str = "") -> str:
    return f"/r1/{PROVINCE_ID}/{service}/v1{endpoint}"


async def bearer(gateway: Harness, client: str = "motcua") -> dict[str, str]:
    return {"Authorization": f"Bearer {await gateway.token(client)}"}


async def raw(
    gateway: Harness, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> httpx.Response:
    """Send the target byte for byte; answer as an httpx response for the same checks."""
    status, hdrs, payload = await gateway.raw(method, target, headers, body)
    return httpx.Response(status, headers=hdrs, content=payload)


async def problem(
    gateway: Harness,
    r: httpx.Response,
    *,
    status: int,
    slug: str,
    side: str,
    detail: str,
) -> tuple[dict[str, Any], AuditRecord]:
    """Check a problem response and its single audit record; return both."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == PROBLEM + slug
    assert body["status"] == status
    assert body["side"] == side
    assert detail in body["detail"], body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]
    records = await gateway.audit(body["request_id"])
    assert len(records) == 1, records
    [rec] = records
    assert rec.status == status
    assert rec.error_type == slug
    assert rec.error_detail == body["detail"]
    assert rec.instance == "test-gw"
    return body, rec


def echoed(r: httpx.Response) -> dict[str, Any]:
    """The simulator echo's answer, with header names lower-cased."""
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    data["headers"] = {k.lower(): v for k, v in data["headers"].items()}
    return data


async def passed_through(gateway: Harness, r: httpx.Response, status: int) -> AuditRecord:
    """An upstream answer passed on as is: not a gateway problem, audited without error."""
    assert r.status_code == status, r.text
    assert not r.headers["content-type"].startswith("application/problem+json")
    [rec] = await gateway.audit(r.headers["x-request-id"])
    assert rec.status == status
    assert rec.upstream_status == status
    assert rec.error_type is None and rec.error_detail is None
    return rec


async def each(cases: Sequence[T], check: Callable[[T], Awaitable[None]]) -> None:
    """Run one check per case against the same gateway; report every failing case.

    Starting a gateway costs more than an exchange, so tables of cases share one.
    """
    failures: list[str] = []
    for case in cases:
        try:
            await check(case)
        except AssertionError as e:
            failures.append(f"{case!r}: {e}")
    assert not failures, "\n".join(failures)


# -- the happy path ---------------------------------------------------------------------------


async def test_population_lookup_is_forwarded_answered_and_audited(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    sent = json.dumps({"SoDinhDanh": "001099012345"}).encode()
    r = await gateway.http.post(
        BY_NUMBER,
        content=sent,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Case-Number": "H49.22-240101-0001",
            **ACCOUNT,
        },
    )

    assert r.status_code == 200, r.text
    assert "utf-8" in r.headers["content-type"].lower()
    citizen = r.json()["CongDan"]
    assert (citizen["Ho"], citizen["ChuDem"], citizen["Ten"]) == ("Nguyễn", "Văn", "An")
    assert citizen["QueQuan"]["TenXa"] == "Xã Sóc Sơn"
    assert "Nguyễn".encode() in r.content
    request_id = r.headers["x-request-id"]
    assert UUID_RE.match(request_id)
    assert r.headers["x-request-sha256"] == hashlib.sha256(sent).hexdigest()

    [rec] = await gateway.audit(request_id)
    assert (rec.client_code, rec.client_agency_code, rec.auth_method) == (
        "motcua",
        MOTCUA_AGENCY,
        "bearer",
    )
    assert (rec.provider_code, rec.service_code, rec.service_version) == (
        "000.00.00.G01",
        "csdlqg-dancu",
        "v1",
    )
    assert (rec.method, rec.path) == ("POST", BY_NUMBER)
    assert (rec.officer_id, rec.procedure_code, rec.case_number) == (
        "CB-0042",
        "1.001234",
        "H49.22-240101-0001",
    )
    assert (rec.status, rec.upstream_status, rec.error_type) == (200, 200, None)
    assert rec.request_bytes == len(sent)
    assert rec.request_sha256 == hashlib.sha256(sent).hexdigest()
    assert rec.response_bytes == len(r.content)
    assert rec.response_sha256 == hashlib.sha256(r.content).hexdigest()
    assert rec.instance == "test-gw"
    assert rec.remote_addr == "127.0.0.1"
    assert rec.started_at <= rec.finished_at
    assert rec.duration_ms > 0
    assert rec.upstream_ms is not None and 0 < rec.upstream_ms <= rec.duration_ms

    # What the provider saw: who asks and why, and the gateway's own credentials.
    [lookup] = gateway.simulator[LOOKUPS]
    seen = lookup["headers"]
    assert seen["X-Request-Id"] == request_id
    m = TRACEPARENT_RE.match(seen["traceparent"])
    assert m and m.group(1) == rec.trace_id
    assert (seen["X-Officer-Id"], seen["X-Procedure-Code"]) == ("CB-0042", "1.001234")
    assert seen["X-Case-Number"] == "H49.22-240101-0001"
    assert (seen["X-Client-Id"], seen["X-Client-Agency"]) == ("motcua", MOTCUA_AGENCY)
    scheme, _, upstream_token = seen["Authorization"].partition(" ")
    assert scheme == "Bearer"
    assert upstream_token != token
    assert upstream_token in gateway.simulator[SIM_STATE].tokens
    assert lookup["body"] == {"SoDinhDanh": "001099012345"}


async def test_one_upstream_token_serves_many_calls(gateway: Harness) -> None:
    headers = {**await bearer(gateway), **ACCOUNT}
    responses = await asyncio.gather(
        *(
            gateway.http.post(BY_NUMBER, json={"SoDinhDanh": "001099012345"}, headers=headers)
            for _ in range(3)
        )
    )
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert gateway.simulator[TOKENS_ISSUED] == 1
    tokens = {lookup["headers"]["Authorization"] for lookup in gateway.simulator[LOOKUPS]}
    assert len(tokens) == 1


async def test_upstream_token_forgotten_by_provider_is_fetched_again(gateway: Harness) -> None:
    headers = {**await bearer(gateway), **ACCOUNT}
    body = {"SoDinhDanh": "001099012345"}
    assert (await gateway.http.post(BY_NUMBER, json=body, headers=headers)).status_code == 200
    gateway.simulator[SIM_STATE].tokens.clear()  # the provider restarts, forgetting tokens

    r = await gateway.http.post(BY_NUMBER, json=body, headers=headers)

    assert r.status_code == 200, r.text
    assert gateway.simulator[TOKENS_ISSUED] == 2
    rec = await passed_through(gateway, r, 200)
    assert rec.upstream_status == 200


async def test_api_key_caller_is_forwarded_without_its_key(gateway: Harness) -> None:
    key = await gateway.api_key("legacy")
    r = await gateway.http.post(
        BY_NUMBER,
        json={"SoDinhDanh": "001099012345"},
        headers={"X-Api-Key": key, **ACCOUNT},
    )
    rec = await passed_through(gateway, r, 200)
    assert (rec.client_code, rec.auth_method) == ("legacy", "api_key")
    [lookup] = gateway.simulator[LOOKUPS]
    assert "X-Api-Key" not in lookup["headers"]
    assert lookup["headers"]["X-Client-Id"] == "legacy"
    assert lookup["headers"]["Authorization"].startswith("Bearer ")


# -- request id and trace context -------------------------------------------------------------


async def test_caller_request_id_is_used_echoed_and_forwarded(gateway: Harness) -> None:
    auth = await bearer(gateway)

    async def check(request_id: str) -> None:
        r = await gateway.http.get(
            address("echo", "/x"), headers={**auth, "X-Request-Id": request_id}
        )
        assert r.headers["x-request-id"] == request_id
        assert echoed(r)["headers"]["x-request-id"] == request_id
        [rec] = await gateway.audit(request_id)
        assert rec.status == 200

    await each(["req-2026.11:abc_1", "x", "A" * 128], check)


async def test_invalid_request_id_is_refused(gateway: Harness) -> None:
    auth = await bearer(gateway)

    async def check(bad_id: str) -> None:
        r = await gateway.http.get(address("echo", "/x"), headers={**auth, "X-Request-Id": bad_id})
        body, rec = await problem(
            gateway, r, status=400, slug="invalid-header", side="caller", detail="X-Request-Id"
        )
        assert body["header"] == "X-Request-Id"
        # The gateway names the exchange itself, so the refusal can still be quoted and found.
        assert UUID_RE.match(body["request_id"])
        assert rec.client_code is None and rec.upstream_status is None
        assert await gateway.audit(bad_id) == []

    await each(["has spaces", "A" * 200, "A" * 129, "id/with/slash", "a,b", "id;x", ""], check)


async def test_the_gateway_joins_the_callers_trace_with_a_span_of_its_own(
    gateway: Harness,
) -> None:
    """W3C Trace Context: the provider's parent is the gateway's span, not the caller's;
    the trace id, the sampled flag and tracestate go on."""
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {
        **await bearer(gateway),
        "traceparent": traceparent,
        "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    }
    r = await gateway.http.get(address("echo", "/x"), headers=headers)
    seen = echoed(r)["headers"]
    m = TRACEPARENT_RE.match(seen["traceparent"])
    assert m, seen["traceparent"]
    assert m.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert seen["traceparent"] != traceparent  # a new parent id: the gateway's span
    assert seen["traceparent"].endswith("-01")
    assert seen["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    [rec] = await gateway.audit(r.headers["x-request-id"])
    assert rec.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_a_future_traceparent_version_is_read_by_its_known_fields(gateway: Harness) -> None:
    auth = await bearer(gateway)
    for given in (
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-the-future-holds",
    ):
        r = await gateway.http.get(address("echo", "/x"), headers={**auth, "traceparent": given})
        forwarded = echoed(r)["headers"]["traceparent"]
        # Sent on as version 00, the version the gateway speaks, with the same trace.
        assert forwarded.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-"), forwarded
        assert forwarded.endswith("-00")


async def test_missing_or_invalid_traceparent_starts_a_trace(gateway: Harness) -> None:
    auth = await bearer(gateway)

    async def check(given: str | None) -> None:
        headers = dict(auth) if given is None else {**auth, "traceparent": given}
        r = await gateway.http.get(address("echo", "/x"), headers=headers)
        forwarded = echoed(r)["headers"]["traceparent"]
        m = TRACEPARENT_RE.match(forwarded)
        assert m, forwarded
        assert forwarded != given
        [rec] = await gateway.audit(r.headers["x-request-id"])
        assert rec.trace_id == m.group(1)

    await each(
        [
            None,
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  # no "-" after
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # 00 is 55 long
        ],
        check,
    )


# -- upstream answers pass through ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pin", "status", "code"),
    [("000000000000", 404, "201"), ("079203000111", 403, "202")],
    ids=["not-found", "restricted"],
)
async def test_upstream_lookup_outcomes_pass_through(
    gateway: Harness, pin: str, status: int, code: str
) -> None:
    headers = {**await bearer(gateway), **ACCOUNT}
    r = await gateway.http.post(BY_NUMBER, json={"SoDinhDanh": pin}, headers=headers)
    rec = await passed_through(gateway, r, status)
    assert r.json()["MaLoi"] == code
    assert r.json()["MaYeuCau"] == r.headers["x-request-id"]
    assert rec.client_code == "motcua"
    assert rec.response_sha256 == hashlib.sha256(r.content).hexdigest()


async def test_upstream_503_passes_through(gateway: Harness) -> None:
    r = await gateway.http.get(address("status", "/503"), headers=await bearer(gateway))
    rec = await passed_through(gateway, r, 503)
    assert r.json() == {"MaLoi": "503"}
    assert "type" not in r.json()
    assert rec.client_code == "motcua"


# -- refused before routing or authentication -------------------------------------------------


async def test_unknown_service(gateway: Harness) -> None:
    headers = {**await bearer(gateway), **ACCOUNT}

    async def check(case: tuple[str, str]) -> None:
        target, what = case
        r = await gateway.http.get(target, headers=headers)
        _, rec = await problem(
            gateway, r, status=404, slug="unknown-service", side="caller", detail=what
        )
        provider, service, version = target.split("/")[2:5]
        assert (rec.provider_code, rec.service_code, rec.service_version) == (
            provider,
            service,
            version,
        )
        # Routing comes before authentication: the caller is not known yet, only its claims.
        assert rec.client_code is None
        assert rec.officer_id == "CB-0042"
        assert rec.upstream_status is None

    await each(
        [
            (f"/r1/{PROVINCE_ID}/nope/v1/x", "nope/v1"),
            (f"/r1/{PROVINCE_ID}/echo/v2/x", "echo/v2"),
            ("/r1/000.00.00.G01/echo/v1/x", "echo/v1 is published by 000.00.00.G01"),
        ],
        check,
    )


async def test_malformed_service_address(gateway: Harness) -> None:
    headers = await bearer(gateway)

    async def check(case: tuple[str, str]) -> None:
        target, detail = case
        r = await gateway.http.get(target, headers=headers)
        _, rec = await problem(
            gateway, r, status=400, slug="invalid-service-address", side="caller", detail=detail
        )
        assert rec.path == target
        assert rec.provider_code is None and rec.client_code is None

    await each(
        [
            ("/r1/000.00.00.h49/echo/v1/x", "not an agency code"),
            (f"/r1/{PROVINCE_ID}/Echo/v1/x", "not a valid service code"),
            (f"/r1/{PROVINCE_ID}/echo/1/x", "not a service version"),
            (f"/r1/{PROVINCE_ID}/echo", "/r1/{provider agency code}"),
        ],
        check,
    )


ATTACKS: list[tuple[str, str]] = [
    ("/public/../private", "Dot segments"),
    ("/public/./x", "Dot segments"),
    ("/public/x/../../private", "Dot segments"),
    ("/public/%2e%2e/private", "Encoded"),
    ("/public/%2E%2e/private", "Encoded"),
    ("/public/.%2e/private", "Encoded"),
    ("/public%2F..%2Fprivate", "Encoded"),
    ("/public/..%2fprivate", "Encoded"),
    ("/public/..%5Cprivate", "Encoded"),
    ("/public/..\\private", "Backslashes"),
    ("/public/x%00.json", "Encoded"),
    ("/public/%252e%252e/private", "Encoded"),
    ("/public/..%252Fprivate", "Encoded"),
    ("/public/%zz", "malformed percent-encoding"),
    ("/public/x%", "malformed percent-encoding"),
    ("/public//x", "Empty path segments"),
    ("/public/a%7fb", "Control characters"),
]


# Requests that try to leave /r1/ altogether.
ESCAPES: list[tuple[str, str]] = [
    ("/r1/../healthz", "Dot segments"),
    ("/r1/%2e%2e/oauth2/token", "Encoded"),
    (f"http://x{ECHO}/public/x", "must be an absolute path"),
]


async def test_path_attacks_are_refused_before_the_upstream(gateway: Harness) -> None:
    # hotich may GET /public/** on echo: each target tries to reach something else.
    headers = await bearer(gateway, "hotich")

    async def check(case: tuple[str, str]) -> None:
        target, cause = case
        r = await raw(gateway, "GET", target, headers)
        _, rec = await problem(
            gateway, r, status=400, slug="invalid-path", side="caller", detail=cause
        )
        assert rec.path == target
        assert rec.provider_code is None and rec.client_code is None
        assert rec.upstream_status is None and rec.upstream_ms is None

    cases = [(ECHO + endpoint, cause) for endpoint, cause in ATTACKS] + ESCAPES
    await each(cases, check)
    exchanges = [r for r in await gateway.audit() if r.path != "/oauth2/token"]
    assert len(exchanges) == len(cases)  # (the token request is an audit event of its own)


async def test_encoded_newline_in_path_is_refused_and_audited(gateway: Harness) -> None:
    r = await raw(gateway, "GET", ECHO + "/a%0ab", await bearer(gateway))
    await problem(
        gateway, r, status=400, slug="invalid-path", side="caller", detail="Control characters"
    )


async def test_overlong_version_is_answered_and_audited(
    gateway: Harness, request: pytest.FixtureRequest
) -> None:
    target = f"/r1/{PROVINCE_ID}/echo/v{'1' * 20}/x"
    r = await gateway.http.get(target, headers=await bearer(gateway))
    assert r.status_code in (400, 404), r.text
    slug = "unknown-service" if r.status_code == 404 else "invalid-service-address"
    await problem(gateway, r, status=r.status_code, slug=slug, side="caller", detail="v111")


# -- authentication and access rights ---------------------------------------------------------


async def test_unauthenticated_call_is_refused(gateway: Harness) -> None:
    r = await gateway.http.get(address("echo", "/x"), headers=ACCOUNT)
    _, rec = await problem(
        gateway, r, status=401, slug="unauthenticated", side="caller", detail="Bearer"
    )
    assert rec.service_code == "echo" and rec.client_code is None
    assert rec.officer_id == "CB-0042"


async def test_client_without_rights_is_denied(gateway: Harness) -> None:
    r = await gateway.http.get(address("echo", "/x"), headers=await bearer(gateway, "outsider"))
    _, rec = await problem(
        gateway,
        r,
        status=403,
        slug="access-denied",
        side="caller",
        detail=f"Client 'outsider' is not granted GET /x on {PROVINCE_ID}/echo/v1",
    )
    assert (rec.client_code, rec.client_agency_code, rec.auth_method) == (
        "outsider",
        HOTICH_AGENCY,
        "bearer",
    )
    assert (rec.provider_code, rec.service_code, rec.service_version) == (
        PROVINCE_ID,
        "echo",
        "v1",
    )
    assert rec.upstream_status is None


async def test_endpoint_right_is_per_client(gateway: Harness) -> None:
    body = {"HoVaTen": "Nguyễn Văn An", "NgayThangNamSinh": "1999-03-15"}

    denied = await gateway.http.post(
        BY_NAME, json=body, headers={**await bearer(gateway, "motcua"), **ACCOUNT}
    )
    _, rec = await problem(
        gateway,
        denied,
        status=403,
        slug="access-denied",
        side="caller",
        detail="'motcua' is not granted POST /cong-dan/tra-cuu-ho-ten",
    )
    assert (rec.client_code, rec.officer_id, rec.procedure_code) == (
        "motcua",
        "CB-0042",
        "1.001234",
    )
    assert gateway.simulator[LOOKUPS] == []

    allowed = await gateway.http.post(
        BY_NAME, json=body, headers={**await bearer(gateway, "hotich"), **ACCOUNT}
    )
    rec = await passed_through(gateway, allowed, 200)
    [found] = allowed.json()["DanhSachCongDan"]
    assert found["SoDinhDanh"] == "001099012345"
    assert (rec.client_code, rec.client_agency_code) == ("hotich", HOTICH_AGENCY)
    assert len(gateway.simulator[LOOKUPS]) == 1


async def test_endpoint_right_grants_get_below_its_path(gateway: Harness) -> None:
    headers = await bearer(gateway, "hotich")

    async def check(endpoint: str) -> None:
        r = await gateway.http.get(ECHO + endpoint, headers=headers)
        assert echoed(r)["path"] == "/_sim/echo" + endpoint
        rec = await passed_through(gateway, r, 200)
        assert rec.client_code == "hotich"

    await each(["/public", "/public/", "/public/x", "/public/x/y"], check)


async def test_endpoint_right_denies_other_methods_and_paths(gateway: Harness) -> None:
    headers = await bearer(gateway, "hotich")

    async def check(case: tuple[str, str]) -> None:
        method, endpoint = case
        r = await gateway.http.request(method, ECHO + endpoint, headers=headers)
        _, rec = await problem(
            gateway,
            r,
            status=403,
            slug="access-denied",
            side="caller",
            detail=f"'hotich' is not granted {method} {endpoint} on",
        )
        assert rec.client_code == "hotich" and rec.upstream_status is None

    await each(
        [
            ("POST", "/public/x/y"),
            ("DELETE", "/public/x"),
            ("GET", "/private"),
            ("GET", "/publicx"),
            ("GET", "/Public/x"),
            ("GET", "/"),
        ],
        check,
    )


async def test_head_is_not_granted_by_a_get_right(gateway: Harness) -> None:
    r = await gateway.http.head(ECHO + "/public/x", headers=await bearer(gateway, "hotich"))
    assert r.status_code == 403
    [rec] = await gateway.audit(r.headers["x-request-id"])  # a HEAD answer has no body
    assert (rec.status, rec.error_type, rec.method) == (403, "access-denied", "HEAD")


# -- accountability ---------------------------------------------------------------------------


async def test_missing_accountability_fields(gateway: Harness) -> None:
    auth = await bearer(gateway)

    async def check(case: tuple[dict[str, str], list[str]]) -> None:
        sent, missing = case
        r = await gateway.http.post(
            BY_NUMBER, json={"SoDinhDanh": "001099012345"}, headers={**auth, **sent}
        )
        body, rec = await problem(
            gateway,
            r,
            status=400,
            slug="missing-accountability-fields",
            side="caller",
            detail=", ".join(missing),
        )
        assert body["missing"] == missing
        assert rec.client_code == "motcua"
        assert rec.officer_id == sent.get("X-Officer-Id")
        assert rec.procedure_code == sent.get("X-Procedure-Code")

    await each(
        [
            ({}, ["X-Officer-Id", "X-Procedure-Code"]),
            ({"X-Officer-Id": "CB-0042"}, ["X-Procedure-Code"]),
            ({"X-Procedure-Code": "1.001234"}, ["X-Officer-Id"]),
        ],
        check,
    )
    assert gateway.simulator[LOOKUPS] == []


async def test_service_may_require_case_number(gateway: Harness) -> None:
    headers = {**await bearer(gateway), **ACCOUNT}
    r = await gateway.http.get(address("needs-case", "/x"), headers=headers)
    body, rec = await problem(
        gateway,
        r,
        status=400,
        slug="missing-accountability-fields",
        side="caller",
        detail="X-Case-Number",
    )
    assert body["missing"] == ["X-Case-Number"]
    assert (rec.officer_id, rec.procedure_code, rec.case_number) == ("CB-0042", "1.001234", None)

    r = await gateway.http.get(
        address("needs-case", "/x"), headers={**headers, "X-Case-Number": "H49-0001"}
    )
    assert echoed(r)["headers"]["x-case-number"] == "H49-0001"
    rec = await passed_through(gateway, r, 200)
    assert rec.case_number == "H49-0001"


async def test_invalid_accountability_field(gateway: Harness) -> None:
    auth = await bearer(gateway)

    async def check(case: tuple[str, str, str]) -> None:
        header, value, limit = case
        r = await gateway.http.post(
            BY_NUMBER,
            json={"SoDinhDanh": "001099012345"},
            headers={**auth, **ACCOUNT, header: value},
        )
        body, rec = await problem(
            gateway, r, status=400, slug="invalid-header", side="caller", detail=f"{header} must be"
        )
        assert limit in body["detail"]
        assert body["header"] == header
        assert rec.client_code == "motcua"
        # What the caller claimed is kept for the auditors (up to 64 characters), refused or not.
        claimed = {
            "X-Officer-Id": rec.officer_id,
            "X-Procedure-Code": rec.procedure_code,
            "X-Case-Number": rec.case_number,
        }
        assert claimed[header] == value[:64]

    await each(
        [
            ("X-Officer-Id", "C" * 21, "1-20"),
            ("X-Officer-Id", "CB 0042", "1-20"),
            ("X-Officer-Id", "CB,0042", "1-20"),
            ("X-Procedure-Code", "1" * 21, "1-20"),
            ("X-Case-Number", "H" * 65, "1-64"),
        ],
        check,
    )
    assert gateway.simulator[LOOKUPS] == []


# -- service state and limits -----------------------------------------------------------------


async def test_disabled_service(gateway: Harness) -> None:
    r = await gateway.http.get(address("off", "/x"), headers=await bearer(gateway))
    _, rec = await problem(
        gateway, r, status=503, slug="service-disabled", side="gateway", detail="disabled"
    )
    assert (rec.client_code, rec.service_code) == ("motcua", "off")
    assert rec.upstream_status is None


async def test_request_body_over_limit_with_content_length(gateway: Harness) -> None:
    r = await gateway.http.post(
        address("small", "/x"), content=b"x" * 101, headers=await bearer(gateway)
    )
    body, rec = await problem(
        gateway,
        r,
        status=413,
        slug="payload-too-large",
        side="caller",
        detail="(101 bytes) exceeds this service's limit of 100 bytes",
    )
    assert body["limit"] == 100
    assert rec.client_code == "motcua" and rec.service_code == "small"
    assert rec.upstream_status is None


async def test_request_body_over_limit_chunked(gateway: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 50

    r = await gateway.http.post(
        address("small", "/x"), content=chunks(), headers=await bearer(gateway)
    )
    body, rec = await problem(
        gateway,
        r,
        status=413,
        slug="payload-too-large",
        side="caller",
        detail="exceeds this service's limit of 100 bytes",
    )
    assert body["limit"] == 100
    assert rec.upstream_status is None


async def test_chunked_body_within_limit_is_forwarded_with_a_length(gateway: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"a" * 30, b"b" * 30):
            yield part

    r = await gateway.http.post(
        address("echo", "/x"), content=chunks(), headers=await bearer(gateway)
    )
    echo = echoed(r)
    assert echo["body"] == "a" * 30 + "b" * 30
    assert echo["headers"]["content-length"] == "60"
    assert "transfer-encoding" not in echo["headers"]
    rec = await passed_through(gateway, r, 200)
    assert rec.request_bytes == 60


async def test_request_body_at_limit_is_accepted(gateway: Harness) -> None:
    # 100 bytes pass the request limit; the echo's answer then exceeds the 400-byte one.
    r = await gateway.http.post(
        address("small", "/x"), content=b"z" * 100, headers=await bearer(gateway)
    )
    _, rec = await problem(
        gateway,
        r,
        status=502,
        slug="upstream-response-too-large",
        side="upstream",
        detail="limit of 400 bytes",
    )
    assert rec.request_bytes == 100
    assert rec.request_sha256 == hashlib.sha256(b"z" * 100).hexdigest()


async def test_upstream_response_over_limit(gateway: Harness) -> None:
    # No request body; the echo of a long query makes the answer exceed 400 bytes.
    r = await gateway.http.get(
        address("small", "/x"), params={"pad": "p" * 400}, headers=await bearer(gateway)
    )
    _, rec = await problem(
        gateway,
        r,
        status=502,
        slug="upstream-response-too-large",
        side="upstream",
        detail=f"{PROVINCE_ID}/small/v1",
    )
    assert "limit of 400 bytes" in rec.error_detail  # type: ignore[operator]
    assert rec.client_code == "motcua"


async def test_slow_upstream_times_out(gateway: Harness) -> None:
    headers = await bearer(gateway)
    started = time.perf_counter()
    r = await gateway.http.get(address("slow", "/1000"), headers=headers)
    elapsed = time.perf_counter() - started
    _, rec = await problem(
        gateway,
        r,
        status=504,
        slug="upstream-timeout",
        side="upstream",
        detail="did not answer within 0.3 s",
    )
    assert 0.29 <= elapsed < 0.9
    assert rec.client_code == "motcua" and rec.service_code == "slow"
    assert rec.upstream_status is None
    assert 290 <= rec.duration_ms < 900


async def test_unreachable_upstream(gateway: Harness) -> None:
    r = await gateway.http.get(address("dead", "/x"), headers=await bearer(gateway))
    _, rec = await problem(
        gateway,
        r,
        status=502,
        slug="upstream-connection-failed",
        side="upstream",
        detail=f"Could not connect to {PROVINCE_ID}/dead/v1 at 127.0.0.1:",
    )
    assert rec.client_code == "motcua" and rec.upstream_status is None


async def test_upstream_refuses_gateway_credentials(
    gateway: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "not-the-province-secret")
    r = await gateway.http.post(
        BY_NUMBER,
        json={"SoDinhDanh": "001099012345"},
        headers={**await bearer(gateway), **ACCOUNT},
    )
    _, rec = await problem(
        gateway,
        r,
        status=502,
        slug="upstream-authentication-failed",
        side="upstream",
        detail="'ndxp' refused the gateway's credentials (HTTP 401)",
    )
    assert (rec.client_code, rec.officer_id, rec.procedure_code) == (
        "motcua",
        "CB-0042",
        "1.001234",
    )
    assert rec.upstream_status is None
    assert gateway.simulator[TOKENS_ISSUED] == 0
    assert gateway.simulator[LOOKUPS] == []


async def test_missing_upstream_secret(gateway: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    r = await gateway.http.post(
        BY_NUMBER,
        json={"SoDinhDanh": "001099012345"},
        headers={**await bearer(gateway), **ACCOUNT},
    )
    await problem(
        gateway,
        r,
        status=502,
        slug="upstream-authentication-failed",
        side="upstream",
        detail=SECRET_ENV,
    )


# -- what is forwarded ------------------------------------------------------------------------


async def test_hop_by_hop_and_caller_credentials_are_not_forwarded(gateway: Harness) -> None:
    headers = {
        **await bearer(gateway),
        "X-Api-Key": "lgsp_not-a-real-key",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "Proxy-Connection": "keep-alive",
        "X-Custom": "1",
        "X-Client-Id": "spoofed",
        "X-Client-Agency": "000.00.00.G01",
    }
    r = await gateway.http.get(
        address("echo", "/a/b?x=1&y=%2F&z=..&q=Nguy%E1%BB%85n&e="), headers=headers
    )
    echo = echoed(r)
    seen = echo["headers"]
    for name in (
        "x-secret-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "authorization",
        "x-api-key",
    ):
        assert name not in seen, name
    assert "x-secret-hop" not in seen.get("connection", "").lower()
    assert seen["x-custom"] == "1"
    assert (seen["x-client-id"], seen["x-client-agency"]) == ("motcua", MOTCUA_AGENCY)
    assert echo["path"] == "/_sim/echo/a/b"
    assert echo["query"] == "x=1&y=%2F&z=..&q=Nguy%E1%BB%85n&e="
    await passed_through(gateway, r, 200)


async def test_percent_encoded_path_is_forwarded_as_received(gateway: Harness) -> None:
    r = await raw(gateway, "GET", ECHO + "/ho%20ten/Nguy%E1%BB%85n", await bearer(gateway))
    assert echoed(r)["path"] == "/_sim/echo/ho%20ten/Nguy%E1%BB%85n"


@pytest.mark.parametrize(
    "method",
    [
        "POST",
        "PUT",
    ],
)
async def test_method_and_body_pass_through(gateway: Harness, method: str) -> None:
    sent = "Hộ tịch: khai sinh".encode()
    r = await gateway.http.request(
        method,
        address("echo", "/ho-so"),
        content=sent,
        headers={**await bearer(gateway), "Content-Type": "text/plain; charset=utf-8"},
    )
    echo = echoed(r)
    assert echo["method"] == method
    assert echo["body"] == sent.decode()
    assert echo["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert echo["headers"]["content-length"] == str(len(sent))
    assert r.headers["x-request-sha256"] == hashlib.sha256(sent).hexdigest()
    rec = await passed_through(gateway, r, 200)
    assert (rec.method, rec.request_bytes) == (method, len(sent))


# -- audit that cannot be written -------------------------------------------------------------


class FailingAuditSink:
    """An audit log that fails; with `intents_pass`, it takes the intents of two-phase
    exchanges and fails only the outcomes (the store went down during the call)."""

    def __init__(self, *, intents_pass: bool = False) -> None:
        self.attempted: list[AuditEvent] = []
        self.intents_pass = intents_pass

    async def start(self) -> None:
        pass

    async def write(self, event: AuditEvent) -> None:
        self.attempted.append(event)
        if self.intents_pass and event.phase == "intent":
            return
        raise AuditUnavailable("database is down")

    async def close(self) -> None:
        pass


async def test_fail_closed_service_withholds_answer_when_audit_fails(
    gateway: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await bearer(gateway)
    sink = FailingAuditSink(intents_pass=True)  # recorded the intent, then failed
    monkeypatch.setattr(gateway.state.pipeline, "audit", sink)

    r = await gateway.http.get(address("echo", "/x"), headers=headers)

    assert r.status_code == 503
    body = r.json()
    assert body["type"] == PROBLEM + "audit-unavailable"
    assert body["side"] == "gateway"
    assert "withheld" in body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert "x-request-sha256" not in r.headers  # nothing of the upstream answer leaks
    # The upstream did answer; that answer is what was withheld. The intent made before
    # the call names the exchange: the provider was asked, on the record.
    intent, outcome = sink.attempted
    assert (intent.phase, intent.status, intent.upstream_status) == ("intent", 0, None)
    assert (outcome.request_id, outcome.status, outcome.upstream_status) == (
        body["request_id"],
        200,
        200,
    )
    assert (outcome.phase, outcome.intent_id) == ("outcome", intent.event_id)
    assert await gateway.audit(body["request_id"]) == []


async def test_a_fail_closed_exchange_is_not_forwarded_when_its_intent_cannot_be_recorded(
    gateway: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two-phase audit: the provider is asked only once the request is on the record,
    so "the national database answered and nobody knows" cannot happen."""
    headers = {**await bearer(gateway), **ACCOUNT}
    lookups = len(gateway.simulator[LOOKUPS])
    sink = FailingAuditSink()
    monkeypatch.setattr(gateway.state.pipeline, "audit", sink)
    r = await gateway.http.post(BY_NUMBER, json={"SoDinhDanh": "001099012345"}, headers=headers)
    assert r.status_code == 503, r.text
    assert r.json()["type"] == PROBLEM + "audit-unavailable"
    assert "was not sent to the provider" in r.json()["detail"]
    assert len(gateway.simulator[LOOKUPS]) == lookups  # the national database never asked
    assert [e.phase for e in sink.attempted] == ["intent", None]  # then the refusal itself


async def test_audit_failure_without_a_service_is_fail_closed(
    gateway: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = FailingAuditSink()
    monkeypatch.setattr(gateway.state.pipeline, "audit", sink)

    r = await gateway.http.get(f"/r1/{PROVINCE_ID}/nope/v1/x")

    assert r.status_code == 503
    body = r.json()
    assert (body["type"], body["side"]) == (PROBLEM + "audit-unavailable", "gateway")
    assert body["request_id"] == r.headers["x-request-id"]
    [event] = sink.attempted
    assert (event.status, event.error_type) == (404, "unknown-service")


def _event(request_id: str, version: str) -> AuditEvent:
    now = datetime.now(UTC)
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        request_id=request_id,
        instance="test-gw",
        method="GET",
        path=f"/r1/{PROVINCE_ID}/echo/{version}/x",
        started_at=now,
        finished_at=now,
        duration_ms=1.0,
        status=404,
        provider_code=PROVINCE_ID,
        service_code="echo",
        service_version=version,
    )


async def test_unrecordable_event_does_not_cost_concurrent_exchanges_their_audit(
    gateway: Harness, request: pytest.FixtureRequest
) -> None:
    sink = gateway.state.audit
    # Two exchanges finishing together are committed in one batch.
    results = await asyncio.gather(
        sink.write(_event("innocent", "v1")),
        sink.write(_event("attacker", "v" + "1" * 20)),
        return_exceptions=True,
    )
    assert results[0] is None, results[0]
    [rec] = await gateway.audit("innocent")
    assert rec.service_version == "v1"
