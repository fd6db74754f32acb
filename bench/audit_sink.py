"""How fast the database audit sink makes events durable: group commits at 1, 8 and 64
concurrent exchanges, on SQLite (a temporary file) and, when reachable, PostgreSQL.

    .venv/bin/python bench/audit_sink.py [--postgres postgresql+asyncpg://postgres@127.0.0.1/DB]

The PostgreSQL database must exist and be empty or already migrated.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.audit.db_sink import DatabaseAuditSink
from gateway.audit.event import AuditEvent
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade


def event() -> AuditEvent:
    now = datetime.now(UTC)
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        request_id="bench",
        instance="bench",
        method="POST",
        path="/r1/x",
        started_at=now,
        finished_at=now,
        duration_ms=1.0,
        status=200,
    )


async def run(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    sink = DatabaseAuditSink(session_factory(engine))
    await sink.start()
    for concurrency, total in ((1, 400), (8, 800), (64, 2048)):
        t = time.perf_counter()
        for _ in range(total // concurrency):
            await asyncio.gather(*(sink.write(event()) for _ in range(concurrency)))
        took = time.perf_counter() - t
        print(
            f"{url.split(':')[0]:20} {concurrency:>11} {total / took:>10.0f} "
            f"{took / (total // concurrency) * 1000:>12.2f}"
        )
    await sink.close()
    await engine.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", help="an async PostgreSQL URL to include")
    args = ap.parse_args()
    print(f"{'database':20} {'concurrency':>11} {'events/s':>10} {'ms/commit':>12}")
    with tempfile.TemporaryDirectory() as d:
        await run(f"sqlite+aiosqlite:///{d}/audit.db")
    if args.postgres:
        await run(args.postgres)


if __name__ == "__main__":
    asyncio.run(main())
