"""/readyz when the audit path cannot make events durable (gateway/edge/health.py): not
ready while a fail_closed service would refuse every call, degraded when only fail_open
services are configured. The full disk itself, through real processes, is in
tests/test_spool_disk_full.py; here the audit path's status is set as a full disk
reports it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import versions as policy_state
from gateway.edge.reload import reload_config
from tests.conftest import Harness

DISK_FULL = {
    "mode": "kafka",
    "broker_connected": True,
    "spool_records": 0,
    "spool_bytes": 0,
    "spool_near_full": False,
    "spool_disk_full": True,
    "spool_disk_free_bytes": 0,
    "spool_error": "the audit spool's disk is full",
    "last_error": None,
}


@pytest.fixture
def disk_full(gateway: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.state.audit, "status", lambda: dict(DISK_FULL))


async def test_not_ready_while_the_spool_disk_is_full_and_a_service_is_fail_closed(
    gateway: Harness, disk_full: None
) -> None:
    r = await gateway.http.get("/readyz")
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert "disk is full" in r.json()["checks"]["audit"]
    assert "audit:" in r.json()["detail"]
    # /healthz says why, and stays 200: the process is alive.
    h = await gateway.http.get("/healthz")
    assert h.status_code == 200
    assert h.json()["audit"]["spool_disk_full"] is True
    assert h.json()["audit"]["broker_connected"] is True  # the broker is not the cause


async def test_only_degraded_when_every_service_is_fail_open(
    gateway: Harness, disk_full: None
) -> None:
    def all_fail_open(doc: dict[str, Any]) -> None:
        for service in doc["services"]:
            service["audit"] = "fail_open"

    async with gateway.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, all_fail_open, actor="test", source="test")
    await reload_config(gateway.state)

    r = await gateway.http.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "degraded"
    assert "no fail_closed service" in r.json()["checks"]["audit"]
