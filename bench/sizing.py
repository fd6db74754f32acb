"""What an exchange's audit record takes on disk and on the wire, for the sizing guide
(docs/operator.md "Sizing").

N events of a successful population lookup (as bench/audit.py makes them: every field
the pipeline fills, a 27-character case number, the digests of both bodies, different
for each event as for lookups of different citizens) are written
through `AuditLog.write` (hash chain, signed checkpoints every 1000, the transparency
log's tree) into

- a SQLite store (a fresh migrated file; its size after a WAL checkpoint, less the empty
  file's), and
- a PostgreSQL store when one is reachable (a throwaway database; `pg_database_size`
  after `VACUUM ANALYZE`, less the empty database's: tables, indexes and TOAST, not WAL);

and encoded as the Kafka topic holds them, once chained (the wire form, and lz4 batches
of 100 as the producer sends them; ids and digests are random hex, which lz4 barely
shrinks).

    .venv/bin/python -m bench.sizing [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import shutil
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path

from aiokafka.codec import lz4_encode

from bench.audit import PG_ADMIN_URL, lookup_events, national_answer, write_all
from gateway.audit.chain import AuditSigner
from gateway.audit.event import AuditEvent
from gateway.audit.log import AuditLog, StoreDurable
from gateway.audit.store import AuditStore
from gateway.core.logging import configure_logging
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade_async

MIB = 1024 * 1024


async def fill(url: str, keys: Path, events: list[AuditEvent]) -> None:
    engine = create_engine(url)
    audit = AuditLog(
        instance="sizing",
        durable=StoreDurable(AuditStore(session_factory(engine), "gw")),
        signer=AuditSigner(keys, "sizing"),
    )
    try:
        await audit.start()
        await write_all(audit, events, 32)
    finally:
        await audit.close()
        await engine.dispose()


def sqlite_size(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


async def sqlite_bytes(work: Path, events: list[AuditEvent]) -> float:
    path = work / "sizing.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    empty = sqlite_size(path)
    await fill(url, work / "keys-sqlite", events)
    return (sqlite_size(path) - empty) / len(events)


async def postgres_bytes(work: Path, events: list[AuditEvent]) -> tuple[float, str] | str:
    try:
        import asyncpg

        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except Exception as exc:
        return f"skipped: {PG_ADMIN_URL}: {type(exc).__name__}: {exc}"
    database = f"lgsp_sizing_{uuid.uuid4().hex[:10]}"
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
        await upgrade_async(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute("VACUUM ANALYZE")
            empty = await conn.fetchval("SELECT pg_database_size(current_database())")
            await fill(
                url.replace("postgresql://", "postgresql+asyncpg://", 1),
                work / "keys-pg",
                events,
            )
            await conn.execute("VACUUM ANALYZE")
            full = await conn.fetchval("SELECT pg_database_size(current_database())")
            version = str(await conn.fetchval("SHOW server_version")).split()[0]
        finally:
            await conn.close()
        return (full - empty) / len(events), version
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


def events_of_distinct_lookups(n: int) -> list[AuditEvent]:
    """bench/audit.py's events, each for another citizen: its own body digests."""
    events = lookup_events(n, "sizing", national_answer())
    for e in events:
        e.request_sha256 = os.urandom(32).hex()
        e.response_sha256 = os.urandom(32).hex()
    return events


def wire_bytes(events: list[AuditEvent]) -> tuple[float, float]:
    """Bytes per event: the wire form, and lz4 batches of 100."""
    wires = [e.to_wire() for e in events]
    raw = sum(len(w) for w in wires) / len(wires)
    batches = [b"".join(wires[i : i + 100]) for i in range(0, len(wires), 100)]
    compressed = sum(len(lz4_encode(b)) for b in batches) / len(wires)
    return raw, compressed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    args = ap.parse_args()
    configure_logging("WARNING")
    print(f"$ {shlex.join(sys.orig_argv)}")
    print(f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-sizing-"))
    try:
        lite_events = events_of_distinct_lookups(args.events)
        lite = await sqlite_bytes(work, lite_events)
        raw, lz4 = wire_bytes(lite_events)  # chained now: with their hashes
        pg = await postgres_bytes(work, events_of_distinct_lookups(args.events))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.events} audit events of a population lookup; bytes per event, and MiB")
    print("per million events (an exchange of a fail_closed service is two: intent, outcome)")
    head = f"{'where':<44} {'bytes/event':>12} {'MiB/million':>12}"
    print(head)
    print("-" * len(head))
    rows = [("Kafka: wire form (JSON)", raw), ("Kafka: lz4 batches of 100", lz4)]
    rows.append(("store: SQLite (tables + indexes)", lite))
    if isinstance(pg, str):
        print(f"{'store: PostgreSQL':<44} {pg}")
    else:
        rows.append((f"store: PostgreSQL {pg[1]} (tables + indexes)", pg[0]))
    for name, per in rows:
        print(f"{name:<44} {per:>12.0f} {per * 1_000_000 / MIB:>12.0f}")


if __name__ == "__main__":
    asyncio.run(main())
