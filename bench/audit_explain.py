"""EXPLAIN (ANALYZE, BUFFERS) of the SQL each of bench/audit_search.py's searches runs.

The SQL is not written here: the query code the API and console run (`query.search`,
`query.daily_stats`, `stats.grouped`; the citizen report's statement as the console
builds it) is run once on an engine that captures what it sends, and each captured
SELECT is then sent again with EXPLAIN in front, with the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from sqlalchemy import event, select

from bench.audit_store import plain
from gateway.audit import query
from gateway.audit import stats as rollup
from gateway.audit.query import AuditFilter
from gateway.audit.subjects import load_subject_key
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditRecord, AuditSubject

if TYPE_CHECKING:
    from bench.audit_search import Search

_NAMES = {"agency", "service", "case", "officer", "request_id", "procedure", "client"}


def _filter(params: dict[str, str]) -> AuditFilter:
    kw: dict[str, Any] = {k: v for k, v in params.items() if k in _NAMES}
    for k in ("since", "until"):
        if k in params:
            kw[k] = query.parse_time(params[k])
    return AuditFilter(**kw)


async def _run(s: Any, q: Search, keys_dir: Path) -> None:
    """Run the search's query code once (its SQL is captured)."""
    parts = urlsplit(q.target)
    params = dict(parse_qsl(parts.query))
    if parts.path.startswith("/audit/v1/exchanges/"):
        event_id = parts.path.rsplit("/", 1)[1]
        await s.scalar(select(AuditRecord).where(AuditRecord.event_id == event_id))
    elif parts.path == "/audit/v1/exchanges":
        await query.search(s, _filter(params), limit=query.DEFAULT_LIMIT)
    elif parts.path == "/audit/v1/stats/daily":
        await query.daily_stats(s, _filter(params))
    elif parts.path.endswith("/stats"):
        await rollup.grouped(s, _filter(params), params["by"])
    elif parts.path.endswith("/citizen"):
        assert q.data is not None
        subject = load_subject_key(keys_dir).digest(q.data["number"])
        # As gateway/edge/console/audit_reports.py's citizen() builds it.
        stmt = (
            select(AuditRecord)
            .join(AuditSubject, AuditSubject.event_id == AuditRecord.event_id)
            .where(AuditSubject.subject == subject, *AuditFilter().clauses())
            .order_by(AuditSubject.started_at.desc(), AuditRecord.id.desc())
            .limit(1001)
        )
        await s.scalars(stmt)
    else:
        raise ValueError(q.target)


_KEEP = ("->", "Limit", "Sort", "Index", "Seq Scan", "Bitmap", "Nested", "Hash", "Merge",
         "Aggregate", "WindowAgg", "Subquery", "Gather", "Append", "Incremental", "Unique",
         "Planning Time", "Execution Time", "Buffers", "Rows Removed", "Heap Fetches",
         "Index Cond", "Filter", "Recheck", "Workers", "Sort Method", "Presorted", "JIT",
         "Timing", "Functions")  # fmt: skip


def trim(lines: Sequence[str]) -> list[str]:
    """The plan's useful lines: nodes, conditions, rows removed, buffers, timings."""
    return [ln for ln in lines if any(k in ln for k in _KEEP)]


async def explain_all(url: str, found: Sequence[Search], keys_dir: Path) -> None:
    engine = create_engine(url)
    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    conn = await asyncpg.connect(plain(url))
    try:
        for q in found:
            captured.clear()
            async with session_factory(engine)() as s, s.begin():
                await _run(s, q, keys_dir)
            print(f"\n### {q.name}  ({q.method} {q.target.split('?')[0]})")
            async with conn.transaction():
                for statement, parameters in list(captured):
                    args = tuple(parameters or ())
                    if not statement.lstrip().upper().startswith("SELECT"):
                        await conn.execute(statement, *args)
                        continue
                    print(" ".join(statement.split())[:600])
                    plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *args)
                    for line in trim([r[0] for r in plan]):
                        print("    " + line)
    finally:
        await conn.close()
        await engine.dispose()
