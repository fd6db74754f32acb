"""Rate limits and daily quotas as a caller meets them: 429 problems with Retry-After and
the limit that was hit, every refusal audited, and one budget shared by two gateway
processes through real Redis."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as redis
from aiohttp.test_utils import TestServer

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.edge.app import reload_config
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from tests.conftest import (
    ECHO,
    PROVINCE_ID,
    REPO,
    GatewayProcess,
    Harness,
    _unavailable,
    free_port,
)

ECHO_KEY = f"{PROVINCE_ID}/echo/v1"
REDIS_URL = os.environ.get("LGSP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def set_limits(h: Harness, *limits: dict[str, Any]) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["rate_limits"] = list(limits)

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="admin-api")
    await reload_config(h.state)


async def test_rate_limit_on_a_client_at_a_service(gateway: Harness) -> None:
    await set_limits(
        gateway,
        {"client": "motcua", "service": ECHO_KEY, "rate": {"requests": 2, "per": "minute"}},
    )
    motcua = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    legacy = {"Authorization": f"Bearer {await gateway.token('legacy')}"}
    assert [(await gateway.http.get(f"{ECHO}/a", headers=motcua)).status_code for _ in "ab"] == [
        200,
        200,
    ]
    r = await gateway.http.get(f"{ECHO}/a", headers={**motcua, "X-Request-Id": "over-the-limit"})
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    # One token comes back every 30 s at 2 per minute.
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    body = r.json()
    assert body["type"].endswith("rate-limited") and body["request_id"] == "over-the-limit"
    assert body["limit"]["scope"] == "client-service" and body["limit"]["kind"] == "rate"
    assert "2 requests per minute" in body["detail"] and "motcua" in body["detail"]
    # The refusal is on record like any exchange.
    [record] = await gateway.audit("over-the-limit")
    assert (record.status, record.error_type, record.client_code) == (429, "rate-limited", "motcua")
    # The limit is the pair's: another client and another service are not held back.
    assert (await gateway.http.get(f"{ECHO}/a", headers=legacy)).status_code == 200
    other = "/r1/000.00.00.H49/status/v1/200"
    assert (await gateway.http.get(other, headers=motcua)).status_code == 200


async def test_daily_quota_of_a_client(gateway: Harness) -> None:
    await set_limits(gateway, {"client": "legacy", "quota_per_day": 2})
    legacy = {"Authorization": f"Bearer {await gateway.token('legacy')}"}
    for _ in range(2):
        assert (await gateway.http.get(f"{ECHO}/q", headers=legacy)).status_code == 200
    r = await gateway.http.get(f"{ECHO}/q", headers=legacy)
    assert r.status_code == 429 and r.json()["type"].endswith("quota-exhausted")
    # Until midnight, Vietnam time: at most a day away.
    assert 1 <= int(r.headers["Retry-After"]) <= 86400
    assert r.json()["limit"] == {
        "scope": "client",
        "subject": "legacy",
        "kind": "quota",
        "rate_per_second": None,
        "burst": 1,
        "quota_per_day": 2,
    }
    # Lifting the quota takes effect with the reload.
    await set_limits(gateway)
    assert (await gateway.http.get(f"{ECHO}/q", headers=legacy)).status_code == 200


async def test_two_gateway_processes_share_one_budget_through_redis(
    database_url: str, simulator: TestServer, tmp_path: Path
) -> None:
    probe = redis.from_url(REDIS_URL)
    try:
        await probe.ping()
    except (OSError, redis.RedisError) as e:
        _unavailable("Redis", f"{type(e).__name__}: {e}")
    finally:
        await probe.aclose()
    sim_url = str(simulator.make_url("")).rstrip("/")
    client = f"rl{uuid.uuid4().hex[:8]}"  # a fresh budget in a shared Redis
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    await load_bundled(sessions, REPO / "schemas")
    policy = {
        "agencies": [{"code": PROVINCE_ID, "name": "UBND"}],
        "clients": [{"code": client, "agency": PROVINCE_ID, "name": "Rate-limited system"}],
        "upstreams": [{"name": "sim", "base_url": sim_url}],
        "services": [
            {
                "provider": PROVINCE_ID,
                "code": "echo",
                "version": "v1",
                "name": "Echo",
                "upstream": "sim",
                "upstream_path": "/_sim/echo",
                "access": [{"client": client}],
            }
        ],
        "rate_limits": [{"client": client, "rate": {"requests": 4, "per": "minute"}}],
    }
    async with sessions() as s, s.begin():
        await policy_state.commit_policy(
            s, PolicySet.model_validate(policy), actor="test", source="apply"
        )
        secret = await credential_ops.issue(s, client_code=client, kind="secret", actor="t")
    await engine.dispose()

    gateways = []
    try:
        for name in ("gw-a", "gw-b"):
            port = free_port()
            env = {
                **os.environ,
                "LGSP_DATABASE_URL": database_url,
                "LGSP_PORT": str(port),
                "LGSP_KEYS_DIR": str(tmp_path / "keys"),
                "LGSP_INSTANCE_ID": name,
                # Replicas behind one address: one issuer, so either accepts the other's tokens.
                "LGSP_PUBLIC_URL": "http://gateway.test",
                "LGSP_SCHEMAS_DIR": "",
                "LGSP_REDIS_URL": REDIS_URL,
                # Two replicas of one process each (workers are tests/test_serve.py's).
                "LGSP_WORKERS": "1",
                "LGSP_AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
                "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',
            }
            gw = GatewayProcess(env, port, tmp_path / f"{name}.log")
            gateways.append(gw)
            gw.start()
        a, b = gateways
        async with httpx.AsyncClient(timeout=10) as http:
            token = (
                await http.post(
                    a.url + "/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client, secret),
                )
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            statuses = [
                (await http.get(f"{gw.url}{ECHO}/x", headers=auth)).status_code
                for gw in (a, b, a, b, a, b)
            ]
            # Four for the two of them, not four each.
            assert statuses == [200, 200, 200, 200, 429, 429]
            health = (await http.get(a.url + "/healthz")).json()["rate_limits"]
            assert health["backend"] == "redis" and health["degraded"] is False
    finally:
        for gw in gateways:
            gw.terminate()
