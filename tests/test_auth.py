"""Authentication end to end: the token endpoint, bearer-token verification on an exchange,
revocation, API keys, what reaches the upstream, discovery and the published metadata.

Every test runs against a real gateway on SQLite and on PostgreSQL (see conftest.py).
Tokens that must fail one check are minted here with the gateway's own signing key and
otherwise valid claims, and a control test proves such a minted token is accepted, so each
rejection is caused by the one thing the test changed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import select

import gateway.identity.keys as keys_module
from gateway.admin import credentials as credential_ops
from gateway.edge.app import reload_config
from gateway.identity.credentials import digest
from gateway.identity.keys import KeyStore
from gateway.store import changes as admin
from gateway.store.models import Client, Credential
from tests.conftest import ECHO, Harness

ANYTHING = f"{ECHO}/anything"
PROBLEM = "urn:lgsp:problem:"
ISSUER = "http://gateway.test"


# -- helpers ----------------------------------------------------------------------------------


def assert_problem(
    r: httpx.Response, status: int, slug: str, detail: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this type whose detail names the cause."""
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    assert body["status"] == status
    assert body["request_id"], body
    assert body["request_id"] == r.headers["X-Request-Id"]
    if detail is not None:
        assert detail.lower() in body["detail"].lower(), body["detail"]
    return body


def assert_oauth_error(
    r: httpx.Response, status: int, error: str, slug: str, detail: str | None = None
) -> dict[str, Any]:
    """An RFC 6749 §5.2 error answer: application/json with `error` and
    `error_description`, the RFC 9457 members beside them, and no-store."""
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    assert r.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = r.json()
    assert body["error"] == error, body
    assert body["error_description"] == body["detail"]
    assert body["type"] == PROBLEM + slug, body
    assert body["request_id"] == r.headers["X-Request-Id"]
    if detail is not None:
        assert detail.lower() in body["error_description"].lower(), body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(
    harness: Harness,
    claims: dict[str, Any],
    *,
    key: Any = None,
    alg: str = "EdDSA",
    kid: str | None = None,
) -> str:
    """A JWT signed with the gateway's active key unless another key is given."""
    active = harness.state.keys.active
    return jwt.encode(
        claims,
        active.private if key is None else key,
        algorithm=alg,
        headers={"kid": active.kid if kid is None else kid, "typ": "at+jwt"},
    )


def hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """Hand-made HS256 token (PyJWT refuses to use a public key as an HMAC secret)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    payload = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(mac)}"


def unsigned(claims: dict[str, Any], kid: str) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "at+jwt", "kid": kid}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


async def valid_claims(harness: Harness, client: str = "motcua") -> dict[str, Any]:
    """The claims of a real token for `client`, with a fresh jti: a template to spoil."""
    claims = unverified(await harness.token(client))
    claims["jti"] = "minted-by-test"
    return claims


async def credential_id(harness: Harness, value: str) -> int:
    async with harness.state.sessions() as s:
        found = await s.scalar(
            select(Credential.id).where(Credential.secret_sha256 == digest(value))
        )
    assert found is not None
    return int(found)


async def revoke(harness: Harness, cred_id: int) -> None:
    async with harness.state.sessions() as s, s.begin():
        await credential_ops.revoke(s, credential_id=cred_id, actor="test")


async def assert_audited_401(harness: Harness, r: httpx.Response, error_type: str) -> None:
    [rec] = await harness.audit(r.headers["X-Request-Id"])
    assert rec.status == 401
    assert rec.error_type == error_type
    assert rec.client_code is None
    assert rec.auth_method is None


def is_sqlite(harness: Harness) -> bool:
    return harness.state.settings.database_url.startswith("sqlite")


@contextlib.contextmanager
def local_timezone(tz: str) -> Iterator[None]:
    """Run with the process's local time zone set to `tz` (a POSIX TZ string)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


# -- token endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_token_endpoint_issues_signed_jwt(gateway: Harness, method: str) -> None:
    secret = await gateway.secret("motcua")
    form = {"grant_type": "client_credentials"}
    if method == "client_secret_basic":
        r = await gateway.http.post("/oauth2/token", data=form, auth=("motcua", secret))
    else:
        form |= {"client_id": "motcua", "client_secret": secret}
        r = await gateway.http.post("/oauth2/token", data=form)

    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Request-Id"]
    body = r.json()
    assert body["token_type"] == "Bearer"
    ttl = gateway.state.settings.token_ttl_seconds
    assert body["expires_in"] == ttl == 300

    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("EdDSA", "at+jwt")  # RFC 9068
    jwks = (await gateway.http.get("/.well-known/jwks.json")).json()
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"] and k["alg"] == "EdDSA"]
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["EdDSA"],
        audience=ISSUER,
        issuer=ISSUER,
        options={"require": ["iss", "aud", "sub", "client_id", "exp", "nbf", "iat", "jti"]},
    )
    assert claims["sub"] == claims["client_id"] == "motcua"
    assert claims["exp"] - claims["iat"] == ttl
    assert claims["nbf"] <= time.time() + 1
    assert abs(claims["iat"] - time.time()) < 10
    assert claims["jti"]

    r = await gateway.http.get(ANYTHING, headers=bearer(token))
    assert r.status_code == 200, r.text


async def test_each_token_has_its_own_jti(gateway: Harness) -> None:
    first, second = await gateway.token(), await gateway.token()
    assert unverified(first)["jti"] != unverified(second)["jti"]


@dataclass(frozen=True)
class BadClient:
    id: str
    credentials: Callable[[Harness], Awaitable[tuple[str, str]]]  # -> (client_id, secret)


async def _wrong_secret(h: Harness) -> tuple[str, str]:
    await h.secret("motcua")
    return "motcua", "not-the-secret"


async def _unknown_client(h: Harness) -> tuple[str, str]:
    return "nobody", await h.secret("motcua")


async def _disabled_client(h: Harness) -> tuple[str, str]:
    return "retired", await h.secret("retired")


async def _other_clients_secret(h: Harness) -> tuple[str, str]:
    return "motcua", await h.secret("hotich")


async def _api_key_as_secret(h: Harness) -> tuple[str, str]:
    return "legacy", await h.api_key("legacy")


BAD_CLIENTS = [
    BadClient("wrong-secret", _wrong_secret),
    BadClient("unknown-client", _unknown_client),
    BadClient("disabled-client", _disabled_client),
    BadClient("another-clients-secret", _other_clients_secret),
    BadClient("api-key-as-secret", _api_key_as_secret),
]


@pytest.mark.parametrize("case", BAD_CLIENTS, ids=[c.id for c in BAD_CLIENTS])
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_token_endpoint_refuses_bad_client(
    gateway: Harness, case: BadClient, method: str
) -> None:
    client_id, secret = await case.credentials(gateway)
    form = {"grant_type": "client_credentials"}
    if method == "client_secret_basic":
        r = await gateway.http.post("/oauth2/token", data=form, auth=(client_id, secret))
    else:
        form |= {"client_id": client_id, "client_secret": secret}
        r = await gateway.http.post("/oauth2/token", data=form)

    body = assert_oauth_error(r, 401, "invalid_client", "invalid-client", "client")
    assert body["instance"] == "/oauth2/token"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert "access_token" not in body


async def test_token_endpoint_without_credentials(gateway: Harness) -> None:
    r = await gateway.http.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert_oauth_error(r, 401, "invalid_client", "invalid-client", "authenticate")
    assert "WWW-Authenticate" in r.headers


async def test_token_endpoint_refuses_password_grant(gateway: Harness) -> None:
    secret = await gateway.secret("motcua")
    r = await gateway.http.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "motcua", "password": secret},
        auth=("motcua", secret),
    )
    assert_oauth_error(
        r, 400, "unsupported_grant_type", "unsupported-grant-type", "client_credentials"
    )


async def test_token_endpoint_refuses_json_body(gateway: Harness) -> None:
    secret = await gateway.secret("motcua")
    r = await gateway.http.post(
        "/oauth2/token",
        json={"grant_type": "client_credentials", "client_id": "motcua", "client_secret": secret},
    )
    body = assert_oauth_error(r, 400, "invalid_request", "bad-request", "x-www-form-urlencoded")
    assert "access_token" not in body


async def test_token_endpoint_honours_caller_request_id(gateway: Harness) -> None:
    r = await gateway.http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("motcua", "wrong"),
        headers={"X-Request-Id": "req-token-1"},
    )
    body = assert_oauth_error(r, 401, "invalid_client", "invalid-client")
    assert body["request_id"] == "req-token-1"


# -- bearer verification on an exchange -------------------------------------------------------


async def test_minted_token_with_valid_claims_is_accepted(gateway: Harness) -> None:
    """Control for the rejections below: the minting itself is not what they fail on."""
    claims = await valid_claims(gateway)
    r = await gateway.http.get(ANYTHING, headers=bearer(sign(gateway, claims)))
    assert r.status_code == 200, r.text
    [rec] = await gateway.audit(r.headers["X-Request-Id"])
    assert rec.client_code == "motcua" and rec.auth_method == "bearer"


async def test_token_expired_within_clock_skew_is_accepted(gateway: Harness) -> None:
    skew = gateway.state.settings.clock_skew_seconds
    now = int(time.time())
    claims = await valid_claims(gateway)
    claims |= {"iat": now - 300, "nbf": now - 300, "exp": now - skew // 2}
    r = await gateway.http.get(ANYTHING, headers=bearer(sign(gateway, claims)))
    assert r.status_code == 200, r.text


async def test_no_credentials(gateway: Harness) -> None:
    r = await gateway.http.get(ANYTHING)
    assert_problem(r, 401, "unauthenticated", "Bearer")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    await assert_audited_401(gateway, r, "unauthenticated")


async def test_basic_authorization_on_exchange(gateway: Harness) -> None:
    secret = await gateway.secret("motcua")
    basic = base64.b64encode(f"motcua:{secret}".encode()).decode()
    r = await gateway.http.get(ANYTHING, headers={"Authorization": f"Basic {basic}"})
    assert_problem(r, 401, "unauthenticated", "Bearer")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    await assert_audited_401(gateway, r, "unauthenticated")


def _now() -> int:
    return int(time.time())


def _public_pem(h: Harness) -> bytes:
    return h.state.keys.active.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _public_raw(h: Harness) -> bytes:
    return h.state.keys.active.public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


@dataclass(frozen=True)
class BadToken:
    id: str
    make: Callable[[Harness, dict[str, Any]], str]
    detail: str  # what the problem's detail must mention


def _without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != name}


BAD_TOKENS = [
    BadToken("garbage", lambda h, c: "this-is-not-a-jwt", "not a JWT"),
    BadToken(
        "expired",
        lambda h, c: sign(h, c | {"iat": _now() - 900, "nbf": _now() - 900, "exp": _now() - 120}),
        "expired",
    ),
    BadToken(
        "not-yet-valid",
        lambda h, c: sign(h, c | {"nbf": _now() + 600, "exp": _now() + 900}),
        "not valid yet",
    ),
    BadToken("wrong-audience", lambda h, c: sign(h, c | {"aud": "http://other.test"}), "audience"),
    BadToken("wrong-issuer", lambda h, c: sign(h, c | {"iss": "http://evil.test"}), "issuer"),
    BadToken("missing-jti", lambda h, c: sign(h, _without(c, "jti")), "jti"),
    BadToken("missing-exp", lambda h, c: sign(h, _without(c, "exp")), "exp"),
    BadToken("alg-none", lambda h, c: unsigned(c, h.state.keys.active.kid), "not accepted"),
    BadToken(
        "hs256-keyed-with-public-pem",
        lambda h, c: hs256(c, _public_pem(h), h.state.keys.active.kid),
        "'HS256' are not accepted",
    ),
    BadToken(
        "hs256-keyed-with-raw-public-key",
        lambda h, c: hs256(c, _public_raw(h), h.state.keys.active.kid),
        "'HS256' are not accepted",
    ),
    BadToken(
        "other-ed25519-key-with-gateway-kid",
        lambda h, c: sign(h, c, key=ed25519.Ed25519PrivateKey.generate()),
        "signature",
    ),
    BadToken(
        "unknown-kid", lambda h, c: sign(h, c, kid="20200101T000000Z-deadbeef"), "unknown key"
    ),
    BadToken(
        "es256-fresh-p256-key",
        lambda h, c: sign(h, c, key=ec.generate_private_key(ec.SECP256R1()), alg="ES256"),
        "'ES256' are not accepted",
    ),
]


@pytest.mark.parametrize("case", BAD_TOKENS, ids=[c.id for c in BAD_TOKENS])
async def test_bad_bearer_token_is_refused(gateway: Harness, case: BadToken) -> None:
    claims = await valid_claims(gateway)
    r = await gateway.http.get(ANYTHING, headers=bearer(case.make(gateway, claims)))
    assert_problem(r, 401, "invalid-token", case.detail)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    await assert_audited_401(gateway, r, "invalid-token")


# -- revocation and disabling -----------------------------------------------------------------


async def test_revoked_credential_kills_its_tokens(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    assert (await gateway.http.get(ANYTHING, headers=bearer(token))).status_code == 200

    await revoke(gateway, int(unverified(token)["cred"]))
    await reload_config(gateway.state)

    r = await gateway.http.get(ANYTHING, headers=bearer(token))
    assert_problem(r, 401, "invalid-token", "revoked")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # The client's other credentials are untouched.
    fresh = await gateway.token("motcua")
    assert (await gateway.http.get(ANYTHING, headers=bearer(fresh))).status_code == 200


async def test_running_gateway_picks_up_revocation_by_itself(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    assert (await gateway.http.get(ANYTHING, headers=bearer(token))).status_code == 200

    await revoke(gateway, int(unverified(token)["cred"]))  # no reload_config: the poller's job

    deadline = time.monotonic() + 5
    while True:
        r = await gateway.http.get(ANYTHING, headers=bearer(token))
        if r.status_code != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert_problem(r, 401, "invalid-token", "revoked")


async def _disable(harness: Harness, code: str) -> None:
    async with harness.state.sessions() as s, s.begin():
        client = await s.scalar(select(Client).where(Client.code == code))
        assert client is not None
        client.enabled = False
        await admin.record(
            s,
            actor="test",
            action="client.disable",
            target=code,
            before={"enabled": True},
            after={"enabled": False},
        )
    await reload_config(harness.state)


async def test_disabling_a_client_kills_its_tokens(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    assert (await gateway.http.get(ANYTHING, headers=bearer(token))).status_code == 200

    await _disable(gateway, "motcua")

    r = await gateway.http.get(ANYTHING, headers=bearer(token))
    assert_problem(r, 401, "invalid-token", "disabled")
    [rec] = await gateway.audit(r.headers["X-Request-Id"])
    assert rec.status == 401 and rec.error_type == "invalid-token"


async def test_disabled_client_token_401_has_www_authenticate(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    await _disable(gateway, "motcua")
    r = await gateway.http.get(ANYTHING, headers=bearer(token))
    assert_problem(r, 401, "invalid-token", "disabled")
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


# SQLite serialises writers, so two admin transactions interleave only on PostgreSQL.
@pytest.mark.dialects("postgresql")
async def test_revocation_committed_after_a_later_change_takes_effect(gateway: Harness) -> None:
    """Two admin changes in flight: the later one queues behind the earlier (the config
    version row is locked), so a poll can never record a version whose changes it missed."""
    token = await gateway.token("motcua")
    cred = int(unverified(token)["cred"])

    async def later_change() -> None:
        async with gateway.state.sessions() as fast, fast.begin():
            await credential_ops.issue(fast, client_code="hotich", kind="secret", actor="b")

    async with gateway.state.sessions() as slow, slow.begin():
        await credential_ops.revoke(slow, credential_id=cred, actor="admin-a")
        await slow.flush()  # admin-a holds the version row; its transaction is still open
        fast = asyncio.create_task(later_change())
        await asyncio.sleep(0.3)
        assert not fast.done(), "a later admin change committed before an earlier one"
        await reload_config(gateway.state)  # a poll while admin-a is still open
    await fast
    await reload_config(gateway.state)

    r = await gateway.http.get(ANYTHING, headers=bearer(token))
    assert_problem(r, 401, "invalid-token", "revoked")


async def test_running_gateway_signs_with_key_rotated_by_cli(
    gateway: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = gateway.state.settings
    started_with = gateway.state.keys.active.kid

    class Later(datetime):  # the CLI runs a minute after start-up
        @classmethod
        def now(cls, tz: Any = None) -> Later:
            return cls.fromtimestamp(time.time() + 60, tz)

    # What `lgsp keys rotate` does, in its own process.
    with monkeypatch.context() as m:
        m.setattr(keys_module, "datetime", Later)
        cli = KeyStore(settings.keys_dir, settings.key_passphrase, settings.token_algorithms[0])
        cli.load()
        new = cli.rotate(
            retire_after_seconds=settings.token_ttl_seconds + settings.clock_skew_seconds
        )
    async with gateway.state.sessions() as s, s.begin():
        await admin.record(s, actor="cli", action="keys.rotate", target=new.kid)
    await reload_config(gateway.state)
    assert new.kid != started_with

    token = await gateway.token()
    assert jwt.get_unverified_header(token)["kid"] == new.kid
    jwks = (await gateway.http.get("/.well-known/jwks.json")).json()
    assert new.kid in {k["kid"] for k in jwks["keys"]}


# -- API keys ---------------------------------------------------------------------------------


async def test_api_key_works(gateway: Harness) -> None:
    key = await gateway.api_key("legacy")
    r = await gateway.http.get(ANYTHING, headers={"X-Api-Key": key})
    assert r.status_code == 200, r.text
    [rec] = await gateway.audit(r.headers["X-Request-Id"])
    assert rec.status == 200
    assert rec.auth_method == "api_key"
    assert rec.client_code == "legacy"


@pytest.mark.parametrize(
    "key", ["lgsp_" + "A" * 43, "definitely-not-a-key"], ids=["well-formed", "malformed"]
)
async def test_unknown_api_key_is_refused(gateway: Harness, key: str) -> None:
    await gateway.api_key("legacy")  # a real key exists; this one is not it
    r = await gateway.http.get(ANYTHING, headers={"X-Api-Key": key})
    assert_problem(r, 401, "invalid-api-key", "unknown")
    await assert_audited_401(gateway, r, "invalid-api-key")


async def test_client_secret_is_not_an_api_key(gateway: Harness) -> None:
    secret = await gateway.secret("legacy")
    r = await gateway.http.get(ANYTHING, headers={"X-Api-Key": secret})
    assert_problem(r, 401, "invalid-api-key")


async def test_expired_api_key_is_refused(gateway: Harness) -> None:
    async with gateway.state.sessions() as s, s.begin():
        key = await credential_ops.issue(
            s,
            client_code="legacy",
            kind="api_key",
            actor="test",
            expires_at=datetime.now(UTC) - timedelta(minutes=5),
        )
    await reload_config(gateway.state)
    r = await gateway.http.get(ANYTHING, headers={"X-Api-Key": key})
    assert_problem(r, 401, "invalid-api-key", "expired")


async def test_revoked_api_key_is_refused(gateway: Harness) -> None:
    key = await gateway.api_key("legacy")
    assert (await gateway.http.get(ANYTHING, headers={"X-Api-Key": key})).status_code == 200

    await revoke(gateway, await credential_id(gateway, key))
    await reload_config(gateway.state)

    r = await gateway.http.get(ANYTHING, headers={"X-Api-Key": key})
    assert_problem(r, 401, "invalid-api-key", "revoked")


async def test_api_key_401_has_www_authenticate(gateway: Harness) -> None:
    r = await gateway.http.get(ANYTHING, headers={"X-Api-Key": "lgsp_" + "A" * 43})
    assert_problem(r, 401, "invalid-api-key")
    assert "WWW-Authenticate" in r.headers


async def test_api_key_expiring_later_works_in_vietnam_time_zone(
    gateway: Harness, request: pytest.FixtureRequest
) -> None:
    async with gateway.state.sessions() as s, s.begin():
        key = await credential_ops.issue(
            s,
            client_code="legacy",
            kind="api_key",
            actor="test",
            expires_at=datetime.now(UTC) + timedelta(hours=2),
        )
    await reload_config(gateway.state)
    with local_timezone("ICT-7"):  # Asia/Ho_Chi_Minh, where the gateway is deployed
        r = await gateway.http.get(ANYTHING, headers={"X-Api-Key": key})
    assert r.status_code == 200, r.text


# -- caller's credentials stay at the gateway -------------------------------------------------


async def test_bearer_token_is_not_forwarded_upstream(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    r = await gateway.http.get(ANYTHING, headers=bearer(token))
    assert r.status_code == 200, r.text
    seen = {k.lower(): v for k, v in r.json()["headers"].items()}
    assert seen["x-client-id"] == "motcua"  # these are the headers the upstream received
    assert "authorization" not in seen
    assert all(token not in v for v in seen.values())


async def test_api_key_is_not_forwarded_upstream(gateway: Harness) -> None:
    key = await gateway.api_key("legacy")
    r = await gateway.http.get(ANYTHING, headers={"X-Api-Key": key})
    assert r.status_code == 200, r.text
    seen = {k.lower(): v for k, v in r.json()["headers"].items()}
    assert seen["x-client-id"] == "legacy"
    assert "x-api-key" not in seen
    assert "authorization" not in seen
    assert all(key not in v for v in seen.values())


# -- discovery and metadata -------------------------------------------------------------------


async def test_services_lists_what_the_caller_may_call(gateway: Harness) -> None:
    r = await gateway.http.get("/services", headers=bearer(await gateway.token("motcua")))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["client"] == "motcua"
    codes = {s["code"] for s in body["services"]}
    assert {"csdlqg-dancu", "echo"} <= codes
    [echo] = [s for s in body["services"] if s["code"] == "echo"]
    assert echo["address"] == f"{ECHO}/"


async def test_services_is_empty_for_a_client_without_rights(gateway: Harness) -> None:
    r = await gateway.http.get("/services", headers=bearer(await gateway.token("outsider")))
    assert r.status_code == 200, r.text
    assert r.json() == {"client": "outsider", "services": []}


async def test_services_requires_authentication(gateway: Harness) -> None:
    r = await gateway.http.get("/services")
    body = assert_problem(r, 401, "unauthenticated")
    assert body["instance"] == "/services"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_authorization_server_metadata(gateway: Harness) -> None:
    r = await gateway.http.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    meta = r.json()
    assert meta["issuer"] == gateway.state.settings.issuer == ISSUER
    assert meta["token_endpoint"] == f"{ISSUER}/oauth2/token"
    assert meta["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


async def test_jwks_publishes_public_keys_only(gateway: Harness) -> None:
    r = await gateway.http.get("/.well-known/jwks.json")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert keys
    for jwk in keys:
        assert jwk["kty"] == "OKP"
        assert jwk["crv"] == "Ed25519"
        assert jwk["use"] == "sig"
        assert jwk["kid"] and jwk["x"]
        assert "d" not in jwk
    # Each key under both names (RFC 9864's "Ed25519" and the older "EdDSA"), one kid.
    active = gateway.state.keys.active.kid
    assert {k["alg"] for k in keys if k["kid"] == active} == {"EdDSA", "Ed25519"}
