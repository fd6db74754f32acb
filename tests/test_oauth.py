"""The token endpoint as a standard OAuth2 client and a hostile one see it: RFC 6749's
rules exactly, RFC 8414 metadata with registered names only, RFC 9068 access tokens, and
failed authentications throttled per client id and per address (shared through Redis)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import time
import uuid
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis

from gateway.core.settings import Settings
from gateway.limits.failures import Budget, RedisFailureThrottle
from tests.conftest import ECHO, Harness
from tests.test_auth import assert_oauth_error, sign, valid_claims

TOKEN = "/oauth2/token"
GRANT = {"grant_type": "client_credentials"}
REDIS_URL = os.environ.get("LGSP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FAILURES = 3  # the per-client budget of this module's gateway


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"auth_failures_per_client": FAILURES, "auth_failures_per_address": 3 * FAILURES}
    )


def basic(client: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()}


def form(**fields: str) -> str:
    return "&".join(f"{k}={v}" for k, v in fields.items())


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_a_parameter_given_twice_is_invalid_request(gateway: Harness) -> None:
    secret = await gateway.secret("motcua")
    r = await gateway.http.post(
        TOKEN,
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={**FORM, **basic("motcua", secret)},
    )
    assert_oauth_error(r, 400, "invalid_request", "bad-request", "more than once")


async def test_a_missing_grant_type_is_invalid_request(gateway: Harness) -> None:
    secret = await gateway.secret("motcua")
    r = await gateway.http.post(TOKEN, content="a=b", headers=FORM, auth=("motcua", secret))
    assert_oauth_error(r, 400, "invalid_request", "bad-request", "grant_type is missing")


async def test_two_authentication_methods_in_one_request_are_refused(gateway: Harness) -> None:
    secret = await gateway.secret("motcua")
    r = await gateway.http.post(
        TOKEN,
        data={**GRANT, "client_id": "motcua", "client_secret": secret},
        auth=("motcua", secret),
    )
    assert_oauth_error(r, 400, "invalid_request", "bad-request", "one client authentication")


async def test_a_scope_is_refused_rather_than_ignored(gateway: Harness) -> None:
    secret = await gateway.secret("motcua")
    r = await gateway.http.post(TOKEN, data={**GRANT, "scope": "admin"}, auth=("motcua", secret))
    assert_oauth_error(r, 400, "invalid_scope", "bad-request", "no scopes")


async def test_an_oversized_form_is_refused_whatever_its_framing(gateway: Harness) -> None:
    async def chunks() -> Any:  # 10 MB, chunked: no Content-Length to refuse it by
        yield b"grant_type=client_credentials&x="
        for _ in range(160):
            yield b"a" * 65536

    r = await gateway.http.post(TOKEN, content=chunks(), headers=FORM)
    assert_oauth_error(r, 413, "invalid_request", "payload-too-large", "8192")
    compressed = gzip.compress(form(grant_type="client_credentials").encode())
    r = await gateway.http.post(
        TOKEN, content=compressed, headers={**FORM, "Content-Encoding": "gzip"}
    )
    assert_oauth_error(r, 400, "invalid_request", "bad-request", "uncompressed")


async def test_problem_json_when_the_caller_accepts_only_that(gateway: Harness) -> None:
    r = await gateway.http.post(
        TOKEN, data=GRANT, auth=("motcua", "wrong"), headers={"Accept": "application/problem+json"}
    )
    assert r.status_code == 401
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["error"] == "invalid_client"


async def test_metadata_uses_registered_names_only(gateway: Harness) -> None:
    r = await gateway.http.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    meta = r.json()
    assert set(meta) == {
        "issuer",
        "token_endpoint",
        "jwks_uri",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "response_types_supported",
        "scopes_supported",
    }
    assert meta["response_types_supported"] == [] and meta["scopes_supported"] == []
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert meta["token_endpoint"] == meta["issuer"] + TOKEN


# -- access tokens ----------------------------------------------------------------------------


async def test_a_jwt_that_is_not_an_access_token_is_refused(gateway: Harness) -> None:
    claims = await valid_claims(gateway)
    key = gateway.state.keys.active
    for typ in ("JWT", None):
        headers = {"kid": key.kid} | ({"typ": typ} if typ else {})
        token = jwt.encode(claims, key.private, algorithm="EdDSA", headers=headers)
        r = await gateway.http.get(f"{ECHO}/x", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
        assert "not an access token" in r.json()["detail"]


async def test_a_token_living_longer_than_issued_ones_is_refused(gateway: Harness) -> None:
    claims = await valid_claims(gateway)
    now = int(time.time())
    for spoiled, words in (
        ({"iat": now, "nbf": now, "exp": now + 365 * 86400}, "issues tokens for"),
        ({"iat": now + 3600, "nbf": now, "exp": now + 3700}, "not valid yet"),
    ):
        token = sign(gateway, claims | spoiled)
        r = await gateway.http.get(f"{ECHO}/x", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
        assert words in r.json()["detail"]


async def test_a_token_signed_under_the_rfc_9864_name_is_accepted(gateway: Harness) -> None:
    token = sign(gateway, await valid_claims(gateway), alg="Ed25519")
    r = await gateway.http.get(f"{ECHO}/x", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


# -- failed authentications -------------------------------------------------------------------


async def test_a_refused_token_request_is_a_security_event_in_the_audit_log(
    gateway: Harness,
) -> None:
    secret = await gateway.secret("motcua")
    ok = await gateway.http.post(TOKEN, data=GRANT, auth=("motcua", secret))
    bad = await gateway.http.post(TOKEN, data=GRANT, auth=("hotich", "guess"))
    assert await gateway.audit(ok.headers["X-Request-Id"]) == []  # an issued token: no exchange
    [refused] = await gateway.audit(bad.headers["X-Request-Id"])
    assert (refused.path, refused.status, refused.error_type) == (TOKEN, 401, "invalid-client")
    assert refused.client_code is None  # not authenticated: the id tried is in the detail
    assert refused.auth_method == "secret_basic"
    assert "'hotich'" in (refused.error_detail or "")


async def test_failed_authentications_are_throttled_per_client(gateway: Harness) -> None:
    secret = await gateway.secret("hotich")
    for _ in range(FAILURES):
        r = await gateway.http.post(TOKEN, data=GRANT, auth=("hotich", "guess"))
        assert r.status_code == 401
    # Over the budget: refused even with the right secret, until the window ends.
    r = await gateway.http.post(TOKEN, data=GRANT, auth=("hotich", secret))
    body = assert_oauth_error(
        r, 429, "temporarily_unavailable", "authentication-throttled", "retry after"
    )
    assert int(r.headers["Retry-After"]) >= 1
    [record] = await gateway.audit(body["request_id"])
    assert record.error_type == "authentication-throttled"
    # Another client is not held back by hotich's failures.
    motcua = await gateway.secret("motcua")
    assert (await gateway.http.post(TOKEN, data=GRANT, auth=("motcua", motcua))).status_code == 200


async def test_failed_authentications_are_throttled_per_address(gateway: Harness) -> None:
    for i in range(3 * FAILURES):  # each a different made-up client id, one address
        r = await gateway.http.post(TOKEN, data=GRANT, auth=(f"guess-{i}", "x"))
        assert r.status_code == 401
    secret = await gateway.secret("motcua")
    r = await gateway.http.post(TOKEN, data=GRANT, auth=("motcua", secret))
    assert r.status_code == 429, r.text


async def test_the_failure_budget_is_one_for_every_replica_through_redis() -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as e:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is not reachable ({e}) — CI requires it")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable ({e}); set LGSP_TEST_REDIS_URL")
    finally:
        await client.aclose()
    budgets = [Budget("client:", 2, 5.0), Budget("addr:", 100, 5.0)]
    one, two = RedisFailureThrottle(REDIS_URL, budgets), RedisFailureThrottle(REDIS_URL, budgets)
    key = f"client:test-{uuid.uuid4().hex}"
    try:
        assert await two.blocked([key]) is None
        await one.failed([key])
        await one.failed([key])
        wait = await two.blocked([key])  # the other replica sees one's failures
        assert wait is not None and 0 < wait <= 5.0
        await asyncio.sleep(0)
    finally:
        await one.close()
        await two.close()


async def test_guessing_through_the_registrys_basic_auth_spends_the_same_budget(
    gateway: Harness,
) -> None:
    """The schema registry takes HTTP Basic as Confluent's clients send it: another door
    to try secrets at, throttled by the same per-client budget as the token endpoint."""
    for _ in range(FAILURES):
        r = await gateway.http.get("/registry/subjects", auth=("hotich", "guess"))
        assert r.status_code == 401
    secret = await gateway.secret("hotich")
    r = await gateway.http.get("/registry/subjects", auth=("hotich", secret))
    assert (r.status_code, r.json()["error_code"]) == (429, 42901), r.text
    r = await gateway.http.post(TOKEN, data=GRANT, auth=("hotich", secret))
    assert r.status_code == 429, r.text
