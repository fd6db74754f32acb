"""What the audit-store benches share: a throwaway PostgreSQL database migrated to the real
schema, records loaded into it by COPY, the statistics roll-up filled from them, the
gateway started in this process with an auditor's console session and an auditor system's
API key, and a request timed R times.

Used by bench/console_audit.py (the console's pages) and bench/audit_search.py (the
auditor API's searches at ten million records).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from sqlalchemy import func, select, text

from gateway.admin import credentials as credential_ops
from gateway.audit import stats as rollup
from gateway.audit.stats import day_of
from gateway.config import versions as policy_state
from gateway.core.settings import Settings
from gateway.edge.app import create_app
from gateway.identity import accounts
from gateway.identity.websessions import SIGNED_IN, open_session
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade_async
from gateway.store.models import AuditRecord

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
COLUMNS = (
    "event_id",
    "request_id",
    "instance",
    "client_code",
    "client_agency_code",
    "provider_code",
    "service_code",
    "service_version",
    "method",
    "path",
    "officer_id",
    "procedure_code",
    "case_number",
    "started_at",
    "finished_at",
    "duration_ms",
    "request_bytes",
    "response_bytes",
    "status",
    "seq",
    "prev_hash",
    "hash",
)
SUBJECT_COLUMNS = ("subject", "event_id", "started_at")
AUDITOR_AGENCY = "000.00.99.H49"
AUDITOR_CLIENT = "thanh-tra-bench"

Batch = tuple[Sequence[tuple[Any, ...]], Sequence[tuple[Any, ...]]]  # records, subject rows


def plain(url: str) -> str:
    """asyncpg's URL of a SQLAlchemy one."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def create_database(name: str | None = None, prefix: str = "lgsp_bench") -> str:
    """A new, migrated database (named, or `prefix` and a random tail); its SQLAlchemy URL."""
    database = name or f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    await upgrade_async(url)
    return url


async def drop_database(url: str) -> None:
    database = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


async def copy_batches(url: str, batches: Iterable[Batch]) -> float:
    """COPY each batch's records and subject rows, then ANALYZE; seconds taken."""
    conn = await asyncpg.connect(plain(url))
    t0 = time.perf_counter()
    try:
        for rows, subjects in batches:
            await conn.copy_records_to_table("audit_records", records=rows, columns=COLUMNS)
            if subjects:
                await conn.copy_records_to_table(
                    "audit_subjects", records=subjects, columns=SUBJECT_COLUMNS
                )
        await conn.execute("ANALYZE audit_records; ANALYZE audit_subjects")
    finally:
        await conn.close()
    return time.perf_counter() - t0


async def fill_rollup(url: str) -> float:
    """The statistics roll-up of the COPYed records (COPY goes around the store writer
    that keeps it); seconds taken."""
    engine = create_engine(url)
    t0 = time.perf_counter()
    try:
        async with session_factory(engine)() as s, s.begin():
            first, last = (
                await s.execute(
                    select(func.min(AuditRecord.started_at), func.max(AuditRecord.started_at))
                )
            ).one()
            await rollup.refill(s, rollup.days_between(day_of(first), day_of(last)))
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE audit_stats"))
    finally:
        await engine.dispose()
    return time.perf_counter() - t0


@dataclass
class Gateway:
    """The gateway app serving on 127.0.0.1:`port`, with an auditor's credentials."""

    runner: web.AppRunner
    port: int
    session_token: str  # the console cookie of an account with the auditor role
    csrf: str
    api_key: str  # X-Api-Key of a system with the auditor role

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_gateway(url: str, work: Path) -> Gateway:
    """The real app on `url` (keys, spool under `work`), an auditor account signed in to
    the console and an auditor system with an API key."""
    settings = Settings(
        database_url=url,
        keys_dir=work / "keys",
        schemas_dir=Path(""),
        instance_id="bench-gw",
        console_secure_cookies=False,
        audit_spool_dir=work / "spool",
        events_delivery_enabled=False,
    )
    tail = uuid.uuid4().hex[:6]  # new names each time: a kept database is started again
    account_name, client, agency_code = f"ktv-{tail}", f"{AUDITOR_CLIENT}-{tail}", AUDITOR_AGENCY
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as s, s.begin():
            await accounts.create_account(
                s, name=account_name, display_name="ktv", roles=["auditor"], actor="bench",
                password="sông Hồng mùa nước nổi",  # noqa: S106 (a throwaway database)
            )  # fmt: skip
            account = await accounts.find_account(s, account_name)
            assert account is not None
            token, row = await open_session(s, account, SIGNED_IN, lifetime=timedelta(hours=8))
            csrf = row.csrf

        def agency(doc: dict[str, Any]) -> None:
            if not any(a["code"] == agency_code for a in doc["agencies"]):
                doc["agencies"].append({"code": agency_code, "name": "Thanh tra tỉnh (bench)"})

        async with session_factory(engine)() as s, s.begin():
            await policy_state.edit_policy(s, agency, actor="bench", source="bench")
        async with session_factory(engine)() as s, s.begin():
            await policy_state.create_client(
                s, code=client, agency_code=agency_code, name="bench auditor",
                actor="bench", roles=["auditor"],
            )  # fmt: skip
        async with session_factory(engine)() as s, s.begin():
            key = await credential_ops.issue(s, client_code=client, kind="api_key", actor="bench")
    finally:
        await engine.dispose()
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return Gateway(runner, port, token, csrf, key)


def p95(times: Sequence[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


async def timed(
    http: aiohttp.ClientSession, method: str, url: str, repeat: int, **kw: Any
) -> tuple[float, float, str]:
    """The request `repeat` times, one at a time: p50 and p95 in ms, and the last body."""
    times = []
    body = ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        async with http.request(method, url, **kw) as r:
            body = await r.text()
            assert r.status == 200, (url, r.status, body[:500])
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), p95(times), body
