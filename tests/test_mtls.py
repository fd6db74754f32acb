"""Mutual TLS, through the running gateway over real TLS sockets.

- The gateway serves HTTPS itself: TLS 1.2 at least, ECDHE with AEAD ciphers, no
  compression; client certificates asked for (`optional`) or required of every connection.
- A system authenticates by a certificate pinned in its credentials (by subject DN or by
  the SHA-256 of its public key), pinned through the admin API like any credential.
- A token issued to a certificate-authenticated system is bound to that certificate
  (RFC 8705 `cnf.x5t#S256`): from a connection with another certificate, or none, it is
  refused as `token-binding-mismatch`, and the refusal is audited.
- An upstream may require the gateway's client certificate (and be verified against its
  own CA bundle).
- `lgsp serve` serves HTTPS from the settings.

Certificates are made by the tests (tests/tls_rig.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from gateway.core.settings import Settings
from gateway.store.models import AdminEvent
from tests.conftest import ECHO, PROVINCE_ID, REPO, Harness, add_to_policy, free_port, lgsp
from tests.tls_rig import Issued, Pki

PROBLEM = "urn:lgsp:problem:"
# A refused handshake: an alert (SSLError) or the connection reset.
REFUSED = (ssl.SSLError, ConnectionError)
CREDENTIALS = "/admin/v1/clients/{}/credentials"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path / "pki")


@pytest.fixture
def settings(settings: Settings, pki: Pki, request: pytest.FixtureRequest) -> Settings:
    """The conftest's settings, serving HTTPS with client certificates asked for (or
    required, under `pytest.mark.client_auth("required")`)."""
    marker = request.node.get_closest_marker("client_auth")
    server = pki.issue("gateway", server=True)
    return Settings.model_validate(
        {
            **settings.model_dump(),
            "tls_cert_file": str(server.cert),
            "tls_key_file": str(server.key),
            "tls_client_ca_file": str(pki.ca_file),
            "tls_client_auth": marker.args[0] if marker else "optional",
        }
    )


def assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    assert body["request_id"] == r.headers["X-Request-Id"]
    return body


@contextlib.asynccontextmanager
async def client(h: Harness, pki: Pki, cert: Issued | None) -> AsyncIterator[httpx.AsyncClient]:
    """A client over its own TLS connections, presenting `cert` (or none)."""
    async with httpx.AsyncClient(base_url=h.url, verify=pki.verify(cert), timeout=10) as c:
        yield c


async def admin(h: Harness, code: str = "quantri", role: str = "administrator") -> dict[str, str]:
    """Bearer headers of a new admin client (an administrator unless `role` says)."""
    from gateway.config import versions as policy_state
    from gateway.edge.reload import reload_config

    async with h.state.sessions() as s, s.begin():
        await policy_state.create_client(
            s,
            code=code,
            agency_code=PROVINCE_ID,
            name=code,
            actor="test",
            roles=[role],
        )
    await reload_config(h.state)
    return {"Authorization": f"Bearer {await h.token(code)}"}


async def pin(h: Harness, headers: dict[str, str], code: str, value: str) -> dict[str, Any]:
    r = await h.http.post(
        CREDENTIALS.format(code), json={"kind": "certificate", "pin": value}, headers=headers
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def bound_token(c: httpx.AsyncClient, code: str) -> str:
    r = await c.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": code})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


# -- the listener -----------------------------------------------------------------------------


async def _handshake(port: int, ctx: ssl.SSLContext) -> ssl.SSLObject:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        obj = writer.get_extra_info("ssl_object")
        assert isinstance(obj, ssl.SSLObject)
        return obj
    finally:
        writer.close()


async def test_https_listener_speaks_tls_1_2_or_later_with_aead_ciphers_only(
    gateway: Harness, pki: Pki
) -> None:
    assert gateway.url.startswith("https://")
    assert (await gateway.http.get("/healthz")).status_code == 200

    old = pki.verify()
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: what the test is about
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ValueError):  # an OpenSSL that still has SHA-1 suites
        old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(REFUSED):
        await _handshake(gateway.port, old)

    # TLS 1.2 offering everything: the gateway picks forward secrecy and an AEAD cipher.
    tls12 = pki.verify()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    tls12.set_ciphers("ALL")
    obj = await _handshake(gateway.port, tls12)
    name, version, _ = obj.cipher() or ("", "", 0)
    assert version == "TLSv1.2"
    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name
    assert obj.compression() is None

    # A TLS 1.2 client offering only CBC or RSA key exchange gets no connection.
    weak = pki.verify()
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA256:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA256")
    with pytest.raises(REFUSED):
        await _handshake(gateway.port, weak)

    modern = await _handshake(gateway.port, pki.verify())
    assert modern.version() == "TLSv1.3"


@pytest.mark.client_auth("required")
async def test_required_client_certificates_refuse_a_connection_without_one(
    gateway: Harness, pki: Pki
) -> None:
    with pytest.raises(httpx.HTTPError):
        async with client(gateway, pki, None) as c:
            await c.get("/healthz")
    # A certificate of another CA is refused as well.
    stranger = Pki.make(pki.directory / "other", "Other CA").issue("motcua")
    ctx = pki.verify()
    ctx.load_cert_chain(stranger.cert, stranger.key)
    with pytest.raises(httpx.HTTPError):
        async with httpx.AsyncClient(base_url=gateway.url, verify=ctx) as c:
            await c.get("/healthz")
    async with client(gateway, pki, pki.issue("motcua")) as c:
        assert (await c.get("/healthz")).status_code == 200


# -- certificate credentials and bound tokens -------------------------------------------------


async def test_a_certificate_authenticated_system_gets_a_token_bound_to_its_certificate(
    gateway: Harness, pki: Pki
) -> None:
    h = gateway
    headers = await admin(h)
    motcua = pki.issue("motcua", org="So Thong tin va Truyen thong")
    shown = await pin(h, headers, "motcua", f"subject:{motcua.subject}")
    assert shown["kind"] == "certificate" and shown["pin"] == f"subject:{motcua.subject}"
    assert "secret" not in shown
    r = await h.http.get(CREDENTIALS.format("motcua"), headers=headers)
    assert [c["pin"] for c in r.json()["items"] if c["kind"] == "certificate"] == [shown["pin"]]

    async with client(h, pki, motcua) as c:
        # The metadata says so (RFC 8705 §3.3).
        meta = (await c.get("/.well-known/oauth-authorization-server")).json()
        assert "tls_client_auth" in meta["token_endpoint_auth_methods_supported"]
        assert meta["tls_client_certificate_bound_access_tokens"] is True

        token = await bound_token(c, "motcua")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["cnf"] == {"x5t#S256": motcua.x5t}
        bearer = {"Authorization": f"Bearer {token}", "X-Request-Id": "bound-ok"}
        r = await c.get(f"{ECHO}/x", headers=bearer)
        assert r.status_code == 200, r.text
        # The certificate alone is not another system's: another client id is refused.
        r = await c.post(
            "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "hotich"}
        )
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text

    # The same token over a connection without a certificate, and over one with another
    # certificate of the same CA: refused, and audited.
    for cert, request_id in ((None, "bound-none"), (pki.issue("motcua"), "bound-other")):
        async with client(h, pki, cert) as c:
            r = await c.get(
                f"{ECHO}/x",
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
            )
        problem = assert_problem(r, 401, "token-binding-mismatch")
        assert ("no client certificate" in problem["detail"]) == (cert is None), problem
        assert "invalid_token" in r.headers["WWW-Authenticate"]
        [record] = await h.audit(request_id)
        assert record.status == 401 and record.error_type == "token-binding-mismatch"
    [ok] = await h.audit("bound-ok")
    assert ok.status == 200 and ok.client_code == "motcua" and ok.auth_method == "bearer"


async def test_a_secret_token_is_not_bound_and_an_unpinned_certificate_gets_none(
    gateway: Harness, pki: Pki
) -> None:
    h = gateway
    secret = await h.secret("motcua")
    unpinned = pki.issue("motcua")
    async with client(h, pki, unpinned) as c:
        r = await c.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("motcua", secret)
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        assert "cnf" not in jwt.decode(token, options={"verify_signature": False})
        r = await c.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": "motcua"},
            headers={"X-Request-Id": "unpinned-token"},
        )
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
        # Direct certificate authentication of an unpinned certificate: refused.
        r = await c.get(f"{ECHO}/x", headers={"X-Request-Id": "unpinned-call"})
        assert_problem(r, 401, "invalid-certificate")
    [refused] = await h.audit("unpinned-token")
    assert refused.path == "/oauth2/token" and refused.auth_method == "tls_client_auth"
    # An unbound token works from anywhere, with a certificate or without.
    r = await h.http.get(f"{ECHO}/x", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


async def test_an_spki_pin_survives_a_renewal_and_authenticates_calls_directly(
    gateway: Harness, pki: Pki
) -> None:
    h = gateway
    headers = await admin(h)
    first = pki.issue("hotich-2026")
    shown = await pin(h, headers, "motcua", f"spki-sha256:{first.spki_sha256.upper()}")
    assert shown["pin"] == f"spki-sha256:{first.spki_sha256}"  # stored normalised
    # A renewal with the same key (another subject, serial and thumbprint) still matches.
    private = serialization.load_pem_private_key(first.key.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    renewed = pki.issue("motcua-renewed", key=private)
    assert renewed.x5t != first.x5t and renewed.spki_sha256 == first.spki_sha256
    async with client(h, pki, renewed) as c:
        r = await c.get(f"{ECHO}/x", headers={"X-Request-Id": "by-certificate"})
        assert r.status_code == 200, r.text
        token = await bound_token(c, "motcua")
    [record] = await h.audit("by-certificate")
    assert record.client_code == "motcua" and record.auth_method == "certificate"
    # The token is bound to the renewed certificate, not to the key: the first one, with
    # the same key, does not carry it.
    async with client(h, pki, first) as c:
        r = await c.get(f"{ECHO}/x", headers={"Authorization": f"Bearer {token}"})
        assert_problem(r, 401, "token-binding-mismatch")

    # Revoked: neither the certificate nor the token bound to it is accepted any more.
    r = await h.http.delete(f"/admin/v1/credentials/{shown['id']}", headers=headers)
    assert r.status_code == 200, r.text
    async with client(h, pki, renewed) as c:
        assert_problem(await c.get(f"{ECHO}/x"), 401, "invalid-certificate")
        r = await c.get(f"{ECHO}/x", headers={"Authorization": f"Bearer {token}"})
        assert_problem(r, 401, "invalid-token")


@pytest.mark.dialects("sqlite", "postgresql")
async def test_pins_are_checked_recorded_and_unique(gateway: Harness, pki: Pki) -> None:
    h = gateway
    headers = await admin(h)
    url = CREDENTIALS.format("motcua")
    for body, field in (
        ({"kind": "certificate", "pin": "spki-sha256:abc"}, "pin"),
        ({"kind": "certificate", "pin": "subject:not a dn"}, "pin"),
        ({"kind": "certificate", "pin": "sha1:00"}, "pin"),
        ({"kind": "certificate"}, None),
        ({"kind": "secret", "pin": "subject:CN=x"}, None),
    ):
        r = await h.http.post(url, json=body, headers=headers)
        problem = assert_problem(r, 422, "invalid-configuration")
        if field:
            assert [e["field"] for e in problem["errors"]] == [field], problem
    cert = pki.issue("motcua")
    await pin(h, headers, "motcua", f"subject:  {cert.subject}")
    # The same certificate cannot be pinned to another system too.
    r = await h.http.post(
        CREDENTIALS.format("hotich"),
        json={"kind": "certificate", "pin": f"subject:{cert.subject}"},
        headers=headers,
    )
    assert "'motcua'" in assert_problem(r, 409, "conflict")["detail"]
    async with h.state.sessions() as s:
        events = list(
            await s.scalars(select(AdminEvent).where(AdminEvent.action == "credential.issue"))
        )
    pinned = [e for e in events if (e.after or {}).get("kind") == "certificate"]
    assert len(pinned) == 1 and pinned[0].actor == "admin-api:quantri"
    assert pinned[0].after["pin"] == f"subject:{cert.subject}"


# -- an upstream that requires the gateway's client certificate -------------------------------


@pytest.fixture
async def mtls_upstream(pki: Pki) -> AsyncIterator[tuple[str, Pki]]:
    """An https upstream with its own CA, requiring client certificates of `pki`'s CA;
    it answers with the subject of the certificate the caller presented."""
    own = Pki.make(pki.directory / "upstream", "Upstream CA")
    cert = own.issue("upstream", server=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)
    ctx.load_verify_locations(cafile=pki.ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED

    async def who(request: web.Request) -> web.Response:
        obj = request.transport.get_extra_info("ssl_object") if request.transport else None
        peer = obj.getpeercert() if obj is not None else None
        subject = dict(x[0] for x in (peer or {}).get("subject", ()))
        return web.json_response({"subject": subject})

    app = web.Application()
    app.router.add_get("/who/{tail:.*}", who)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=ctx)
    yield str(server.make_url("")).rstrip("/"), own
    await server.close()


async def test_an_upstream_requiring_the_gateways_client_certificate(
    gateway: Harness, pki: Pki, mtls_upstream: tuple[str, Pki]
) -> None:
    url, upstream_ca = mtls_upstream
    mine = pki.issue("lgsp-h49")
    services = [
        {
            "provider": PROVINCE_ID,
            "code": code,
            "version": "v1",
            "name": code,
            "upstream": code,
            "upstream_path": "/who",
            "access": [{"client": "motcua"}],
        }
        for code in ("mtls-ok", "mtls-nocert", "mtls-wrongca")
    ]
    upstreams = [
        {
            "name": "mtls-ok",
            "base_url": url,
            "auth": {
                "client_cert": str(mine.cert),
                "client_key": str(mine.key),
                "ca_bundle": str(upstream_ca.ca_file),
            },
        },
        {"name": "mtls-nocert", "base_url": url, "auth": {"ca_bundle": str(upstream_ca.ca_file)}},
        {
            "name": "mtls-wrongca",
            "base_url": url,
            "auth": {"client_cert": str(mine.cert), "client_key": str(mine.key)},
        },
    ]
    await add_to_policy(gateway, services, upstreams)
    bearer = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.get(f"/r1/{PROVINCE_ID}/mtls-ok/v1/a", headers=bearer)
    assert r.status_code == 200, r.text
    assert r.json()["subject"]["commonName"] == "lgsp-h49"
    # A renewed certificate, written over the files, is used from the next call on.
    renewed = pki.issue("lgsp-h49-2027")
    mine.cert.write_bytes(renewed.cert.read_bytes())
    mine.key.write_bytes(renewed.key.read_bytes())
    r = await gateway.http.get(f"/r1/{PROVINCE_ID}/mtls-ok/v1/a", headers=bearer)
    assert r.status_code == 200, r.text
    assert r.json()["subject"]["commonName"] == "lgsp-h49-2027"
    # With the system's CAs instead of the upstream's bundle, the gateway refuses the
    # upstream's certificate in the handshake.
    r = await gateway.http.get(f"/r1/{PROVINCE_ID}/mtls-wrongca/v1/a", headers=bearer)
    problem = assert_problem(r, 502, "upstream-connection-failed")
    assert "TLS with" in problem["detail"] and "certificate" in problem["detail"], problem
    # Without the gateway's certificate the upstream refuses it; under TLS 1.3 the
    # client learns that after its side of the handshake, as the connection closing.
    r = await gateway.http.get(f"/r1/{PROVINCE_ID}/mtls-nocert/v1/a", headers=bearer)
    assert r.status_code == 502, r.text
    assert r.json()["type"] in (
        PROBLEM + "upstream-connection-failed",
        PROBLEM + "upstream-bad-response",
    )


async def test_an_operator_may_not_give_an_upstream_the_gateways_client_certificate(
    gateway: Harness, pki: Pki
) -> None:
    """The province's client certificate is a credential: an administrator's to hand to
    an upstream, as its secrets are."""
    administrator = await admin(gateway)
    operator = await admin(gateway, "vanhanh", "operator")
    mine = pki.issue("lgsp-h49")
    body = {
        "base_url": "https://127.0.0.1:9",
        "auth": {"client_cert": str(mine.cert), "client_key": str(mine.key)},
    }
    r = await gateway.http.put("/admin/v1/upstreams/mtls-x", json=body, headers=operator)
    problem = assert_problem(r, 403, "access-denied")
    assert "credentials" in problem["detail"]
    r = await gateway.http.put("/admin/v1/upstreams/mtls-x", json=body, headers=administrator)
    assert r.status_code in (200, 201), r.text
    # Once there, the operator may change its other settings, not the certificate.
    r = await gateway.http.put(
        "/admin/v1/upstreams/mtls-x", json={**body, "max_concurrency": 5}, headers=operator
    )
    assert r.status_code == 200, r.text
    other = pki.issue("elsewhere")
    changed = {**body, "auth": {"client_cert": str(other.cert), "client_key": str(other.key)}}
    r = await gateway.http.put("/admin/v1/upstreams/mtls-x", json=changed, headers=operator)
    assert_problem(r, 403, "access-denied")


async def test_upstream_tls_files_that_do_not_load_are_refused_at_apply(
    gateway: Harness, tmp_path: Path
) -> None:
    from gateway.config.versions import PolicyRejected

    service = {
        "provider": PROVINCE_ID,
        "code": "mtls-missing",
        "version": "v1",
        "name": "x",
        "upstream": "mtls-missing",
        "access": [{"client": "motcua"}],
    }
    upstream = {
        "name": "mtls-missing",
        "base_url": "https://127.0.0.1:9",
        "auth": {"client_cert": str(tmp_path / "no.pem"), "client_key": str(tmp_path / "no")},
    }
    with pytest.raises(PolicyRejected, match=r"upstreams\[\d+\]\.auth: the TLS files"):
        await add_to_policy(gateway, [service], [upstream])


# -- lgsp serve ---------------------------------------------------------------------------------


def test_lgsp_serve_serves_https_with_client_certificates(
    env: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    server = pki.issue("gateway", server=True)
    port = free_port()
    env = {
        **env,
        "LGSP_PORT": str(port),
        "LGSP_TLS_CERT_FILE": str(server.cert),
        "LGSP_TLS_KEY_FILE": str(server.key),
        "LGSP_TLS_CLIENT_CA_FILE": str(pki.ca_file),
        "LGSP_TLS_CLIENT_AUTH": "required",
        "LGSP_SCHEMAS_DIR": "",
        "LGSP_AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
    }
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--workers", "1"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=out,
        )
    url = f"https://127.0.0.1:{port}"
    try:
        answer = None
        deadline = time.monotonic() + 60
        with httpx.Client(verify=pki.verify(pki.issue("ops")), timeout=2) as c:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    answer = c.get(url + "/healthz")
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            assert answer is not None and answer.status_code == 200, log.read_text()[-3000:]
            meta = c.get(url + "/.well-known/oauth-authorization-server").json()
            assert meta["issuer"] == url and "tls_client_auth" in str(meta)
        # Without a client certificate: no connection.
        with httpx.Client(verify=pki.verify(), timeout=2) as c, pytest.raises(httpx.HTTPError):
            c.get(url + "/healthz")
        assert "https://127.0.0.1" in log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert os.path.exists(log)


def test_lgsp_client_pin_pins_a_certificate_from_its_file(env: dict[str, str], pki: Pki) -> None:
    assert lgsp(env, "migrate").returncode == 0
    assert lgsp(env, "policy", "apply", "policies").returncode == 0
    cert = pki.issue("motcua", org="So TTTT")
    out = lgsp(env, "client", "pin", "motcua", "--cert", str(cert.cert), "--by", "subject")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pin"] == f"subject:{cert.subject}"
    out = lgsp(env, "client", "pin", "hotich", "--cert", str(cert.cert))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pin"] == f"spki-sha256:{cert.spki_sha256}"
    # Pinned already, malformed, neither or both: refused, saying why.
    again = lgsp(env, "client", "pin", "yte", f"spki-sha256:{cert.spki_sha256}")
    assert again.returncode == 2 and "pinned already" in again.stderr
    bad = lgsp(env, "client", "pin", "motcua", "spki-sha256:zz")
    assert bad.returncode == 2 and "error" in bad.stderr
    assert lgsp(env, "client", "pin", "motcua").returncode == 2


def test_tls_settings_are_checked_whole(pki: Pki, env: dict[str, str], tmp_path: Path) -> None:
    server = pki.issue("gateway", server=True)
    for partial, error in (
        ({"tls_cert_file": str(server.cert)}, "go together"),
        ({"tls_key_file": str(server.key)}, "go together"),
        (
            {
                "tls_cert_file": str(server.cert),
                "tls_key_file": str(server.key),
                "tls_client_auth": "optional",
            },
            "tls_client_ca_file",
        ),
        ({"tls_client_auth": "required", "tls_client_ca_file": str(pki.ca_file)}, "HTTPS"),
    ):
        with pytest.raises(ValueError, match=error):
            Settings.model_validate(partial)
    # A key that is not the certificate's: lgsp serve refuses to start, saying why.
    other = pki.issue("other", server=True)
    env = {**env, "LGSP_TLS_CERT_FILE": str(server.cert), "LGSP_TLS_KEY_FILE": str(other.key)}
    out = lgsp(env, "serve", "--workers", "1")
    assert out.returncode == 1
    assert "the TLS settings cannot be used" in out.stderr, out.stderr
