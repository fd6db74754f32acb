"""Two provinces through the national platform: a system of province A calls a service
that province B provides.

Province A's gateway (the `gateway` fixture, 000.00.00.H49) forwards to the national
platform's routing (the simulator's relay, simulator/relay.py) with A's own platform
token; the platform calls province B's gateway (a second gateway, its own database,
settings and signing key, 000.00.00.H48) with a token it signs itself, which B verifies
as a trusted issuer; B forwards to its provider. Each gateway audits its half, and the
two records are matched by request id and request digest.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.core.settings import Settings
from gateway.edge.app import create_app
from gateway.edge.reload import reload_config
from gateway.edge.state import STATE
from gateway.store.db import create_engine, session_factory
from simulator.national_issuer import ISSUER
from simulator.relay import RELAY
from tests.conftest import (
    PROVINCE_ID,
    REPO,
    SECRET_ENV,
    GatewayTestServer,
    Harness,
)

PROVINCE_B = "000.00.00.H48"
JUSTICE_B = "000.00.12.H48"  # province B's Department of Justice, the provider
NDXP_AGENCY = "000.00.00.G22"  # the national platform, as B's policy names it
AUDIENCE_B = f"urn:lgsp:{PROVINCE_B}"
SERVICE = f"/r1/{JUSTICE_B}/ho-tich-lien-tinh/v1"


def _policy_b(simulator_url: str) -> PolicySet:
    return PolicySet.model_validate(
        {
            "agencies": [
                {"code": PROVINCE_B, "name": "UBND tỉnh B"},
                {"code": JUSTICE_B, "name": "Sở Tư pháp tỉnh B"},
                {"code": NDXP_AGENCY, "name": "Nền tảng NDXP"},
            ],
            "clients": [
                # Who B's gateway sees calling: the national platform, relaying.
                {"code": "ndxp-lienthong", "agency": NDXP_AGENCY, "name": "NDXP, liên tỉnh"},
                {
                    "code": "quantri-b",
                    "agency": PROVINCE_B,
                    "name": "admin",
                    "roles": ["administrator"],
                },
            ],
            # B's civil-status registry: the simulator's echo, which shows what B sent on.
            "upstreams": [{"name": "hotich-b", "base_url": simulator_url + "/_sim/echo"}],
            "services": [
                {
                    "provider": JUSTICE_B,
                    "code": "ho-tich-lien-tinh",
                    "version": "v1",
                    "name": "Tra cứu hộ tịch liên tỉnh",
                    "upstream": "hotich-b",
                    "require": ["officer", "procedure"],
                    "access": [{"client": "ndxp-lienthong", "method": "POST"}],
                }
            ],
            "issuers": [
                {
                    "issuer": ISSUER,
                    "jwks_url": simulator_url + "/.well-known/jwks.json",
                    "audience": AUDIENCE_B,
                    "algorithms": ["RS256"],
                    "client": "ndxp-lienthong",
                }
            ],
        }
    )


@pytest.fixture
async def province_b(
    gateway: Harness, sqlite_seeded_template: Path, tmp_path: Path
) -> AsyncIterator[Harness]:
    """Province B's gateway, beside A's (the `gateway` fixture) and the same simulator."""
    db = tmp_path / "province-b.db"
    shutil.copy(sqlite_seeded_template, db)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        keys_dir=tmp_path / "keys-b",
        public_url="http://gateway-b.test",
        instance_id="gw-b",
        schemas_dir=REPO / "schemas",
        audit_spool_dir=tmp_path / "spool-b",
        upstream_allowed_networks=["loopback"],
    )
    engine = create_engine(settings.database_url)
    async with session_factory(engine)() as s, s.begin():
        await policy_state.apply_policy(s, _policy_b(gateway.simulator_url), actor="test")
    await engine.dispose()
    server = GatewayTestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    gateway.simulator[RELAY].register(PROVINCE_B, url, AUDIENCE_B)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Harness(
            url,
            http,
            server.app[STATE],
            gateway.simulator,
            "127.0.0.1",
            server.port or 0,
            gateway.simulator_url,
        )
    await server.close()


async def _route_to_b(a: Harness) -> None:
    """Province A's policy: B's department as an agency, and its service reached through
    the platform's routing with A's platform credentials (as every national service is)."""

    def change(doc: dict[str, Any]) -> None:
        doc["agencies"].append({"code": JUSTICE_B, "name": "Sở Tư pháp tỉnh B"})
        doc["upstreams"].append(
            {
                "name": "ndxp-tinh-b",
                "base_url": f"{a.simulator_url}/ndxp/{PROVINCE_B}/r1/{JUSTICE_B}/"
                "ho-tich-lien-tinh/v1",
                "auth": {
                    "type": "oauth2_client_credentials",
                    "token_url": f"{a.simulator_url}/oauth2/token",
                    "client_id": PROVINCE_ID,
                    "client_secret_env": SECRET_ENV,
                },
            }
        )
        doc["services"].append(
            {
                "provider": JUSTICE_B,
                "code": "ho-tich-lien-tinh",
                "version": "v1",
                "name": "Hộ tịch tỉnh B (qua NDXP)",
                "upstream": "ndxp-tinh-b",
                "require": ["officer", "procedure"],
                "access": [{"client": "motcua"}],
            }
        )

    async with a.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="test")
    await reload_config(a.state)


async def test_a_system_of_province_a_calls_a_service_of_province_b_through_the_platform(
    gateway: Harness, province_b: Harness
) -> None:
    a, b = gateway, province_b
    await _route_to_b(a)
    body = orjson.dumps({"soDinhDanh": "048225000777", "loaiGiayTo": "khai-sinh"})
    headers = {
        "Authorization": f"Bearer {await a.token('motcua')}",
        "Content-Type": "application/json",
        "X-Request-Id": "lien-tinh-0001",
        "X-Officer-Id": "CB-DN-0042",
        "X-Procedure-Code": "1.001612",
    }
    r = await a.http.post(f"{SERVICE}/tra-cuu", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == "lien-tinh-0001"
    echoed = r.json()
    # What B's provider got: the very body, from B's gateway, for the platform's client,
    # under the request id A's system gave, with the officer and procedure it named.
    assert echoed["body"] == body.decode()
    sent = {k.lower(): v for k, v in echoed["headers"].items()}
    assert sent["x-client-id"] == "ndxp-lienthong"
    assert sent["x-request-id"] == "lien-tinh-0001"
    assert sent["x-officer-id"] == "CB-DN-0042" and sent["x-procedure-code"] == "1.001612"
    assert "authorization" not in sent  # neither platform's token reaches the provider
    assert echoed["path"] == "/_sim/echo/tra-cuu"

    # Each gateway audited its half; the two match by request id and request digest.
    [half_a] = await a.audit("lien-tinh-0001")
    [half_b] = await b.audit("lien-tinh-0001")
    digest = hashlib.sha256(body).hexdigest()
    assert half_a.request_sha256 == half_b.request_sha256 == digest
    assert (half_a.instance, half_b.instance) == ("test-gw", "gw-b")
    assert (half_a.client_code, half_a.auth_method, half_a.issuer) == ("motcua", "bearer", None)
    assert (half_b.client_code, half_b.auth_method, half_b.issuer) == (
        "ndxp-lienthong",
        "issuer",
        ISSUER,
    )
    for half in (half_a, half_b):
        assert half.status == 200 and half.upstream_status == 200
        assert (half.provider_code, half.service_code) == (JUSTICE_B, "ho-tich-lien-tinh")
        assert half.officer_id == "CB-DN-0042" and half.procedure_code == "1.001612"
    assert half_a.response_sha256 == half_b.response_sha256
    relayed = a.simulator[RELAY].relayed
    assert relayed[-1] == {
        "request_id": "lien-tinh-0001",
        "province": PROVINCE_B,
        "path": f"{SERVICE}/tra-cuu",
        "status": 200,
    }


async def test_province_b_refuses_what_the_platform_does_not_sign_and_both_audit_it(
    gateway: Harness, province_b: Harness
) -> None:
    """A call that reaches B's gateway without the platform's token (straight from A's
    network, say) is refused there; through the platform, a right B did not grant is
    refused by B, and A records B's refusal as its upstream's answer."""
    a, b = gateway, province_b
    r = await b.http.post(
        f"{SERVICE}/tra-cuu",
        content=b"{}",
        headers={"Content-Type": "application/json", "X-Request-Id": "straight-to-b"},
    )
    assert r.status_code == 401 and r.json()["type"] == "urn:lgsp:problem:unauthenticated"
    [refused] = await b.audit("straight-to-b")
    assert refused.status == 401

    await _route_to_b(a)
    headers = {
        "Authorization": f"Bearer {await a.token('motcua')}",
        "X-Request-Id": "lien-tinh-get",
        "X-Officer-Id": "CB-DN-0042",
        "X-Procedure-Code": "1.001612",
    }
    # A lets motcua call B's service with any method; B grants the platform POST only.
    r = await a.http.get(f"{SERVICE}/tra-cuu", headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["type"] == "urn:lgsp:problem:access-denied"  # B's problem, passed on
    [half_a] = await a.audit("lien-tinh-get")
    [half_b] = await b.audit("lien-tinh-get")
    assert half_b.client_code == "ndxp-lienthong" and half_b.error_type == "access-denied"
    assert half_a.client_code == "motcua" and half_a.upstream_status == 403
    assert half_a.status == half_b.status == 403
