"""A hostile caller cannot make a gateway process spend memory: the RSS of `lgsp serve`,
read from /proc, stays within 50 MiB under 16 parallel compression bombs (each ~60 KB on
the wire, 60 MiB inflated) and 20 oversized, chunked token forms (10 MB each)."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.store.db import create_engine, session_factory
from tests.conftest import PROVINCE_ID, GatewayProcess, free_port

BOMB = gzip.compress(b"\0" * (60 * 1024 * 1024), mtime=0)
MIB = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.dialects("sqlite")
async def test_compression_bombs_and_huge_token_forms_keep_memory_flat(
    database_url: str, tmp_path: Path, simulator: TestServer
) -> None:
    sim_url = str(simulator.make_url("")).rstrip("/")
    policy = {
        "agencies": [{"code": PROVINCE_ID, "name": "UBND"}],
        "clients": [{"code": "motcua", "agency": PROVINCE_ID, "name": "Một cửa"}],
        "upstreams": [{"name": "sim", "base_url": sim_url}],
        "services": [
            {
                "provider": PROVINCE_ID,
                "code": "echo",
                "version": "v1",
                "name": "Echo",
                "upstream": "sim",
                "upstream_path": "/_sim/echo",
                "limits": {"max_request_bytes": 64 * 1024},
                "access": [{"client": "motcua"}],
            }
        ],
    }
    engine = create_engine(database_url)
    async with session_factory(engine)() as s, s.begin():
        await policy_state.commit_policy(
            s, PolicySet.model_validate(policy), actor="test", source="apply"
        )
        secret = await credential_ops.issue(s, client_code="motcua", kind="secret", actor="t")
    await engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "LGSP_DATABASE_URL": database_url,
        "LGSP_PORT": str(port),
        "LGSP_KEYS_DIR": str(tmp_path / "keys"),
        "LGSP_SCHEMAS_DIR": "",
        "LGSP_WORKERS": "1",
        "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',
        "LGSP_LOG_LEVEL": "WARNING",
    }
    gw = GatewayProcess(env, port, tmp_path / "gateway.log")
    gw.start()
    try:
        assert gw.proc is not None
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            token = (
                await http.post(
                    "/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=("motcua", secret),
                )
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"}
            # Warm up: the first exchange and refusal allocate what every later one reuses.
            await http.post(f"/r1/{PROVINCE_ID}/echo/v1/x", content=b"{}")
            await http.post(f"/r1/{PROVINCE_ID}/echo/v1/x", content=BOMB, headers=headers)
            before = rss(gw.proc.pid)

            async def bomb() -> int:
                r = await http.post(f"/r1/{PROVINCE_ID}/echo/v1/x", content=BOMB, headers=headers)
                return r.status_code

            async def form() -> int:
                async def chunks() -> AsyncIterator[bytes]:
                    yield b"grant_type=client_credentials&x="
                    for _ in range(160):
                        yield b"a" * 65536

                r = await http.post(
                    "/oauth2/token",
                    content=chunks(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                return r.status_code

            statuses = await asyncio.gather(
                *(bomb() for _ in range(16)), *(form() for _ in range(20))
            )
            after = rss(gw.proc.pid)
        assert statuses.count(413) == 36, statuses
        grown = (after - before) / MIB
        print(f"RSS {before / MIB:.1f} MiB -> {after / MIB:.1f} MiB (+{grown:.1f})")
        assert grown < 50, f"RSS grew {grown:.1f} MiB under the bombs"
    finally:
        gw.terminate()
