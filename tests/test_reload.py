"""Hot reload: a change committed anywhere reaches the running gateway by itself, and
traffic flowing during reloads loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from gateway.config import versions as policy_state
from gateway.core.settings import Settings
from tests.conftest import ECHO, Harness

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")


@pytest.fixture
def settings(settings: Settings, database_url: str) -> Settings:
    # On PostgreSQL, poll so rarely that only LISTEN/NOTIFY can explain a quick pickup.
    poll = 30.0 if database_url.startswith("postgresql") else 0.25
    return settings.model_copy(update={"config_poll_seconds": poll})


async def edit(h: Harness, change: Any, comment: str = "test") -> int | None:
    async with h.state.sessions() as s, s.begin():
        commit = await policy_state.edit_policy(
            s, change, actor="test", source="admin-api", comment=comment
        )
    return commit.version


def set_service(code: str, **fields: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        svc = next(s for s in doc["services"] if s["code"] == code)
        svc.update(fields)

    return change


async def test_a_change_committed_elsewhere_is_picked_up_by_itself(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await gateway.http.get(f"{ECHO}/x", headers=headers)).status_code == 200

    # Committed through another connection, as `lgsp policy apply` on another host would.
    await edit(gateway, set_service("echo", enabled=False), "maintenance")
    committed = time.monotonic()
    while (r := await gateway.http.get(f"{ECHO}/x", headers=headers)).status_code == 200:
        assert time.monotonic() - committed < 3, "the change was not picked up"
        await asyncio.sleep(0.02)
    assert r.status_code == 503 and r.json()["type"].endswith("service-disabled")


async def test_no_request_fails_while_the_configuration_reloads(gateway: Harness) -> None:
    token = await gateway.token("motcua")
    headers = {"Authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    done = asyncio.Event()

    async def caller() -> None:
        while not done.is_set():
            r = await gateway.http.post(f"{ECHO}/ping", headers=headers, content=b"{}")
            statuses[r.status_code] += 1

    workers = [asyncio.create_task(caller()) for _ in range(8)]
    start_version = gateway.state.config_version
    try:
        for i in range(15):
            # Each change rebuilds every table: routes, rights, credentials, limits.
            await edit(gateway, set_service("slow", name=f"slow {i}"))
            await edit(
                gateway, set_service("echo", timeouts={"connect_ms": 1000 + i, "total_ms": 5000})
            )
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 5
        while gateway.state.config_version < start_version + 30:
            assert time.monotonic() < deadline, "the gateway did not catch up"
            await asyncio.sleep(0.05)
    finally:
        done.set()
        await asyncio.gather(*workers)
    assert sum(statuses.values()) > 100
    assert statuses == Counter({200: sum(statuses.values())})
