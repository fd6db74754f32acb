"""Operational endpoints: /metrics in Prometheus text format, /healthz and /readyz."""

from __future__ import annotations

import httpx
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.networks import NetworkAllowList
from gateway.core.settings import Settings
from gateway.edge.app import create_app
from tests.conftest import ECHO, Harness

ECHO_LABEL = "000.00.00.H49/echo/v1"
COUNT = "lgsp_exchange_duration_seconds_count"  # the number of exchanges


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def test_exchanges_are_counted_by_service_client_and_outcome(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    auth = {"Authorization": f"Bearer {token}"}
    before = (await gateway.http.get("/metrics")).text
    for _ in range(3):
        assert (await gateway.http.get(f"{ECHO}/x", headers=auth)).status_code == 200
    assert (await gateway.http.get(f"{ECHO}/x")).status_code == 401
    assert (await gateway.http.get("/r1/000.00.00.H49/nope/v1/x", headers=auth)).status_code == 404

    r = await gateway.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    ok = {"service": ECHO_LABEL, "client": "motcua", "outcome": "ok"}
    assert value(text, COUNT, **ok) - value(before, COUNT, **ok) == pytest.approx(3)
    # Each falls in a bucket: the +Inf bucket (cumulative) holds all three.
    assert value(text, "lgsp_exchange_duration_seconds_bucket", **ok, le="+Inf") == pytest.approx(3)
    assert value(text, "lgsp_exchange_duration_seconds_sum", **ok) > 0
    # Who is unknown is not a label value: an unauthenticated caller is "-".
    assert value(
        text,
        COUNT,
        service=ECHO_LABEL,
        client="-",
        outcome="unauthenticated",
    ) == pytest.approx(1)
    # An address nobody configured never becomes a label (callers choose addresses).
    assert value(
        text,
        COUNT,
        service="-",
        client="-",
        outcome="unknown-service",
    ) == pytest.approx(1)
    assert "nope" not in text
    assert value(text, "lgsp_upstream_duration_seconds_count", upstream="sim-open", status="2xx")
    assert value(text, "lgsp_audit_spool_records", instance="test-gw") == 0
    assert value(text, "lgsp_config_version", instance="test-gw") >= 1


async def test_counts_are_counters_and_the_process_is_described(gateway: Harness) -> None:
    """Prometheus conventions: cumulative counts are counters named *_total, and the
    standard process_* series are there (CPU, memory, file descriptors)."""
    text = (await gateway.http.get("/metrics")).text
    for counter in (
        "lgsp_rate_limit_rejections",
        "lgsp_audit_write_failures",
        "lgsp_upstream_retries",
    ):
        assert f"# TYPE {counter}_total counter" in text or f"# TYPE {counter} counter" in text
    assert "process_cpu_seconds_total" in text
    assert "process_resident_memory_bytes" in text
    types = [ln.split()[2:4] for ln in text.splitlines() if ln.startswith("# TYPE")]
    assert all(not name.endswith("_total") or kind == "counter" for name, kind in types), types


async def test_breaker_state_is_a_metric(gateway: Harness) -> None:
    text = (await gateway.http.get("/metrics")).text
    # Every configured upstream shows its breaker, closed (0) while nothing failed.
    key = frozenset({("upstream", "sim-open"), ("instance", "test-gw")})
    assert ("lgsp_upstream_circuit_state", key) in samples(text)
    assert value(text, "lgsp_upstream_circuit_state", upstream="sim-open", instance="test-gw") == 0


async def test_metrics_refused_outside_the_allowed_networks(settings: Settings) -> None:
    # The test client connects from 127.0.0.1, outside 10.0.0.0/8.
    app = create_app(settings.model_copy(update={"metrics_allowed_networks": ["10.0.0.0/8"]}))
    async with TestServer(app, host="127.0.0.1") as server:
        async with httpx.AsyncClient(base_url=str(server.make_url(""))) as http:
            r = await http.get("/metrics")
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("metrics-forbidden")
    assert "127.0.0.1" in r.json()["detail"]


def test_network_allow_list() -> None:
    allowed = NetworkAllowList(["loopback", "private", "203.0.113.0/24"])
    assert allowed.allows("127.0.0.1")
    assert allowed.allows("::1")
    assert allowed.allows("10.1.2.3")
    assert allowed.allows("::ffff:192.168.1.1")
    assert allowed.allows("203.0.113.9")
    assert not allowed.allows("8.8.8.8")
    assert not allowed.allows(None)
    assert not allowed.allows("not an address")
    with pytest.raises(ValueError, match="METRICS_ALLOWED_NETWORKS"):
        NetworkAllowList(["everywhere"])


async def test_readyz_reports_its_checks_and_refuses_while_draining(gateway: Harness) -> None:
    r = await gateway.http.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"
    assert r.json()["checks"] == {
        "store": "ok",
        "keys": "ok",
        "audit": "ok",
        "configuration": "ok",
    }
    gateway.state.draining = True
    try:
        r = await gateway.http.get("/readyz", headers={"X-Request-Id": "ready-check-1"})
        assert r.status_code == 503
        problem = r.json()
        assert problem["type"].endswith("not-ready")
        assert "draining" in problem["detail"]
        assert problem["request_id"] == "ready-check-1"
        # Alive all the same: /healthz is about the process, not about taking traffic.
        assert (await gateway.http.get("/healthz")).status_code == 200
        # And answers close their connections, so callers move to an instance that stays.
        token = await gateway.token("motcua")
        r = await gateway.http.get(f"{ECHO}/x", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert r.headers["connection"] == "close"
    finally:
        gateway.state.draining = False


async def test_readyz_fails_when_the_store_is_unreachable(gateway: Harness) -> None:
    await gateway.state.engine.dispose()
    real = gateway.state.engine
    from sqlalchemy.ext.asyncio import create_async_engine

    # A PostgreSQL address nothing listens on.
    gateway.state.engine = create_async_engine("postgresql+asyncpg://x@127.0.0.1:9/none")
    try:
        r = await gateway.http.get("/readyz")
    finally:
        await gateway.state.engine.dispose()
        gateway.state.engine = real
    assert r.status_code == 503
    assert r.json()["checks"]["store"].startswith("unreachable")
    assert r.headers["retry-after"] == "1"
