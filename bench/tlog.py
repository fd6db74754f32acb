"""What the transparency log costs: tree maintenance, and proofs at ten million leaves.

1. Hashing alone: leaves per second appended to a `Frontier` (the tree's right edge; one
   leaf hash and on average one node hash each), in memory.
2. Tree maintenance against the store: N chained events ingested into a SQLite file
   (as the gateway stores them), then `TreeLog.advance` grows the tree over all of them
   and signs the head: leaves per second, to compare with the audit log's write rate
   (`bench.audit`): the tree is never on the request path, it must only keep up.
3. Proofs at L leaves (default 10 million): the tree of L synthetic leaves is grown in
   memory, its stored subtrees (>= 256 leaves) and head written to a SQLite file, with
   the records of the few 256-leaf blocks a proof reads (the proven leaves', the tail's,
   the old size's); then inclusion and consistency proofs are made by the same code the
   auditor API runs, timed, sized, and verified offline.

    .venv/bin/python -m bench.tlog [--events 50000] [--leaves 10000000] [--proofs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert

from gateway.audit import merkle
from gateway.audit.chain import AuditSigner, Chain
from gateway.audit.event import AuditEvent
from gateway.audit.note import Checkpoint
from gateway.audit.proofs import verify_bundle
from gateway.audit.store import AuditStore
from gateway.audit.tlog import NODE_LEVEL, TreeLog, consistency_bundle, inclusion_bundles
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade
from gateway.store.models import AuditRecord, AuditTreeHead, AuditTreeNode

INSTANCE = "bench-gw"
ORIGIN = "bench.local/audit/bench-gw"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def event(i: int) -> AuditEvent:
    at = T0 + timedelta(milliseconds=i)
    return AuditEvent(
        event_id=f"{i:036d}",
        request_id=f"req-{i}",
        instance=INSTANCE,
        method="POST",
        path="/r1/000.00.00.G01/csdlqg-dancu/v2/cong-dan/tra-cuu",
        started_at=at,
        finished_at=at + timedelta(milliseconds=12),
        duration_ms=12.0,
        status=200,
    )


def _data(i: int) -> bytes:
    """Leaf i's data: a 32-byte digest, like an event's hash."""
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def hashing(n: int) -> float:
    leaves = [_data(i) for i in range(n)]
    f = merkle.Frontier()
    start = time.perf_counter()
    for leaf in leaves:
        f.append(merkle.leaf_hash(leaf))
    f.root()
    return n / (time.perf_counter() - start)


async def maintenance(tmp: Path, n: int) -> tuple[float, float]:
    url = f"sqlite+aiosqlite:///{tmp / 'maint.db'}"
    engine = create_engine(url)
    sessions = session_factory(engine)
    signer = AuditSigner(tmp / "keys", INSTANCE)
    store = AuditStore(sessions, source="bench")
    chain = Chain(INSTANCE)
    start = time.perf_counter()
    for lo in range(0, n, 500):
        batch = [event(i) for i in range(lo, min(n, lo + 500))]
        for e in batch:
            chain.link(e)
        await store.ingest(batch)
    ingest_rate = n / (time.perf_counter() - start)
    tree = TreeLog(sessions, signer, ORIGIN)
    start = time.perf_counter()
    head = await tree.advance()
    rate = n / (time.perf_counter() - start)
    assert head is not None and head.size == n
    await engine.dispose()
    return ingest_rate, rate


def _record(i: int, digest: bytes) -> dict[str, Any]:
    at = T0 + timedelta(milliseconds=i)
    return {
        "event_id": f"{i:036d}",
        "request_id": f"req-{i}",
        "instance": INSTANCE,
        "method": "POST",
        "path": "/x",
        "started_at": at,
        "finished_at": at,
        "duration_ms": 1.0,
        "status": 200,
        "seq": i + 1,
        "hash": digest.hex(),
    }


async def proofs(tmp: Path, size: int, count: int) -> dict[str, Any]:
    rng = random.Random(9162)  # noqa: S311 (which leaves to prove, not a secret)
    old = size - size // 7
    f = merkle.Frontier()
    old_frontier = merkle.Frontier()
    nodes: list[dict[str, Any]] = []
    start = time.perf_counter()
    for i in range(size):
        if i == old:
            old_frontier = merkle.Frontier(f.size, list(f.hashes))
        for level, position, h in f.append(merkle.leaf_hash(_data(i))):
            if level >= NODE_LEVEL:
                nodes.append(
                    {"instance": INSTANCE, "level": level, "position": position, "hash": h.hex()}
                )
    grow_s = time.perf_counter() - start
    targets = sorted(rng.sample(range(size), count))
    block = 1 << NODE_LEVEL
    blocks = {t // block for t in targets} | {(size - 1) // block, (old - 1) // block, old // block}
    wanted = sorted(i for b in blocks for i in range(b * block, min(size, (b + 1) * block)))
    url = f"sqlite+aiosqlite:///{tmp / 'proofs.db'}"
    engine = create_engine(url)
    sessions = session_factory(engine)
    signer = AuditSigner(tmp / "keys", INSTANCE)
    note = signer.note_signer(ORIGIN)
    async with sessions() as s, s.begin():
        for lo in range(0, len(nodes), 5000):
            await s.execute(insert(AuditTreeNode), nodes[lo : lo + 5000])
        for lo in range(0, len(wanted), 5000):
            await s.execute(
                insert(AuditRecord), [_record(i, _data(i)) for i in wanted[lo : lo + 5000]]
            )
        for fr in (old_frontier, f):
            root = fr.root()
            s.add(
                AuditTreeHead(
                    instance=INSTANCE,
                    origin=ORIGIN,
                    size=fr.size,
                    root=root.hex(),
                    note=note.sign_note(Checkpoint(ORIGIN, fr.size, root).text()),
                    frontier=[h.hex() for h in fr.hashes],
                    key_id=signer.key_id,
                )
            )
    inc_ms, inc_bytes, inc_hashes, verify_ms = [], [], [], []
    key = note.verifier()
    for t in targets:
        start = time.perf_counter()
        async with sessions() as s:
            [bundle] = await inclusion_bundles(s, event_id=f"{t:036d}", with_record=False)
        inc_ms.append((time.perf_counter() - start) * 1000)
        inc_hashes.append(len(bundle["proof"]))
        inc_bytes.append(len(orjson.dumps(bundle["proof"])))
        start = time.perf_counter()
        verify_bundle(bundle, [key])
        verify_ms.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    async with sessions() as s:
        grown = await consistency_bundle(s, INSTANCE, old)
    cons_ms = (time.perf_counter() - start) * 1000
    verify_bundle(grown, [key])
    await engine.dispose()
    return {
        "grow_s": grow_s,
        "nodes": len(nodes),
        "records": len(wanted),
        "inc_ms": inc_ms,
        "inc_hashes": inc_hashes,
        "inc_bytes": inc_bytes,
        "verify_ms": verify_ms,
        "cons_ms": cons_ms,
        "cons_hashes": len(grown["proof"]),
        "old": old,
    }


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tlog", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--leaves", type=int, default=10_000_000)
    p.add_argument("--proofs", type=int, default=20)
    args = p.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("maint", "proofs"):  # the schema first: alembic runs its own loop
            upgrade(f"sqlite+aiosqlite:///{Path(tmp) / name}.db")
        rate = hashing(min(args.leaves, 1_000_000))
        print(f"1. Frontier.append alone: {rate:,.0f} leaves/s")
        ingest_rate, tree_rate = asyncio.run(maintenance(Path(tmp), args.events))
        print(
            f"2. {args.events:,} events in SQLite (ingested at {ingest_rate:,.0f}/s): "
            f"TreeLog.advance grew and signed the tree at {tree_rate:,.0f} leaves/s"
        )
        r = asyncio.run(proofs(Path(tmp), args.leaves, args.proofs))
        print(
            f"3. {args.leaves:,} leaves: grown in memory in {r['grow_s']:.1f} s; "
            f"{r['nodes']:,} stored subtrees, {r['records']:,} records"
        )
        print(
            f"   inclusion proof: {max(r['inc_hashes'])} hashes ({max(r['inc_bytes'])} bytes of "
            f"base64 JSON), made in median {_median(r['inc_ms']):.1f} ms "
            f"(max {max(r['inc_ms']):.1f}) over {args.proofs}, verified offline in median "
            f"{_median(r['verify_ms']):.2f} ms"
        )
        print(
            f"   consistency proof {r['old']:,} -> {args.leaves:,}: {r['cons_hashes']} hashes, "
            f"made in {r['cons_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
