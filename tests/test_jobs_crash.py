"""`lgsp serve` SIGKILLed in the middle of a scheduled pull, then started again on the
same store: once the dead process's lease runs out the new one resumes the run from its
last page written, and every record is published exactly once (not merely at least
once: a page's events and the run's progress commit together)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.store.db import create_engine, session_factory
from gateway.store.jobs import JobRun, JobState
from gateway.store.models import AuditRecord, EventRecord
from simulator.app import create_app as create_simulator
from simulator.feeds import FEEDS
from tests.conftest import PROVINCE_ID, PROVINCE_SECRET, SECRET_ENV, GatewayProcess, free_port

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

BCA = "000.00.00.G01"


def _policy(simulator_url: str) -> PolicySet:
    return PolicySet.model_validate(
        {
            "agencies": [{"code": PROVINCE_ID, "name": "UBND"}, {"code": BCA, "name": "BCA"}],
            "clients": [
                {"code": "lgsp-lich", "agency": PROVINCE_ID, "name": "Scheduled pulls"},
                {"code": "motcua", "agency": PROVINCE_ID, "name": "Subscriber"},
                {"code": "quantri", "agency": PROVINCE_ID, "name": "Admin", "roles": ["operator"]},
            ],
            "upstreams": [
                {
                    "name": "ndxp",
                    "base_url": simulator_url,
                    "auth": {
                        "type": "oauth2_client_credentials",
                        "token_url": "/oauth2/token",
                        "client_id": PROVINCE_ID,
                        "client_secret_env": SECRET_ENV,
                    },
                }
            ],
            "services": [
                {
                    "provider": BCA,
                    "code": "thay-doi-cu-tru",
                    "version": "v1",
                    "name": "Residence changes",
                    "upstream": "ndxp",
                    "upstream_path": "/csdldc/v1/thay-doi-cu-tru",
                    # The lease is at least twice this plus 5 s: 7 s to wait out.
                    "timeouts": {"total_ms": 1000},
                    "access": [{"client": "lgsp-lich", "method": "GET"}],
                }
            ],
            "topics": [
                {
                    "code": "cu-tru",
                    "name": "Residence changes",
                    "provider": BCA,
                    "publishers": ["lgsp-lich"],
                    "access": [{"client": "motcua"}],
                }
            ],
            "jobs": [
                {
                    "code": "cu-tru",
                    "name": "Residence changes, as events",
                    "cron": "0 3 1 1 *",
                    "client": "lgsp-lich",
                    "service": f"{BCA}/thay-doi-cu-tru/v1",
                    "accountability": {"officer": "lgsp", "procedure": "LGSP-DONGBO"},
                    "changed_field": "ThoiDiemCapNhat",
                    "key_field": "SoDinhDanh",
                    "paging": {"size": 4},
                    "output": {"topic": "cu-tru"},
                }
            ],
        }
    )


async def _run(database_url: str) -> JobRun | None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as s:
            return await s.scalar(select(JobRun).where(JobRun.job_code == "cu-tru"))
    finally:
        await engine.dispose()


async def test_a_run_killed_mid_way_resumes_from_its_last_page(
    database_url: str, tmp_path: Path
) -> None:
    simulator = TestServer(create_simulator({PROVINCE_ID: PROVINCE_SECRET}), host="127.0.0.1")
    await simulator.start_server()
    feeds = simulator.app[FEEDS]
    feeds.gate, feeds.gate_from_page = asyncio.Event(), 3  # pages 1 and 2 pass, 3 waits
    engine = create_engine(database_url)
    async with session_factory(engine)() as s, s.begin():
        url = str(simulator.make_url("")).rstrip("/")
        await policy_state.commit_policy(s, _policy(url), actor="test", source="apply")
        secret = await credential_ops.issue(s, client_code="quantri", kind="secret", actor="t")
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
        "LGSP_JOBS_TICK_SECONDS": "0.2",
        "LGSP_JOBS_LEASE_SECONDS": "3",
        SECRET_ENV: PROVINCE_SECRET,
    }
    gw = GatewayProcess(env, port, tmp_path / "gateway.log")
    gw.start()
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            r = await http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("quantri", secret),
            )
            admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
            r = await http.post("/admin/v1/jobs/cu-tru/runs", headers=admin)
            assert r.status_code == 202, r.text
            run_id = r.json()["run_id"]
        deadline = time.monotonic() + 30
        while feeds.waiting < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert feeds.waiting >= 1, f"the run never reached page 3; see {gw.log}"
        before = await _run(database_url)
        assert before is not None and (before.state, before.pages, before.records) == (
            "running",
            2,
            8,
        )
        gw.kill()  # SIGKILL, page 3 in flight
        feeds.gate_from_page = None
        feeds.gate.set()
        gw.start()  # the same store, a new process: it waits out the dead one's lease
        deadline = time.monotonic() + 60
        run = await _run(database_url)
        while (run is None or run.state == "running") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            run = await _run(database_url)
        assert run is not None and run.run_id == run_id
        assert (run.state, run.pages, run.records, run.attempts) == ("succeeded", 6, 24, 2)
        assert run.holder is not None and run.holder != before.holder

        engine = create_engine(database_url)
        async with session_factory(engine)() as s:
            bodies = list(await s.scalars(select(EventRecord.body).order_by(EventRecord.id)))
            pages = list(
                await s.scalars(
                    select(AuditRecord.request_id).where(
                        AuditRecord.request_id.like(f"job:cu-tru:{run_id}:%")
                    )
                )
            )
            state = await s.get(JobState, "cu-tru")
        await engine.dispose()

        changes = [orjson.loads(b)["data"]["MaThayDoi"] for b in bodies]
        # Exactly once: every change, none twice, in the feed's order.
        assert changes == [x["MaThayDoi"] for x in feeds.residence]
        # Pages 1-2 by the first process, 3-6 by the second: page 3's first asking died
        # unanswered with its process, so it was never audited as an answered exchange.
        assert sorted(pages, key=lambda p: int(p.rsplit(":", 1)[1])) == [
            f"job:cu-tru:{run_id}:{n}" for n in range(1, 7)
        ]
        assert state is not None and state.watermark is not None
    finally:
        gw.kill()
        if feeds.gate is not None:
            feeds.gate.set()
        await simulator.close()
