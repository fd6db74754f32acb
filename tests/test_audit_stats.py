"""The statistics roll-up (gateway/audit/stats.py) equals a GROUP BY over the records: after
a mix of exchanges (days on either side of a Vietnam-time midnight that is also a month
boundary, missing codes, every outcome, two-phase exchanges in and out of order, events
delivered twice), after a retention run, and as migration 0024 fills it; and the
statistics page's figures from it equal those from the records, for whole months and for
day ranges (27 days, across a month boundary). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select

from gateway.audit import stats
from gateway.audit.chain import Chain
from gateway.audit.event import AuditEvent
from gateway.audit.query import AuditFilter
from gateway.audit.retention import purge
from gateway.audit.store import AuditStore
from gateway.edge.console.audit_reports import _from_records, grouped
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import alembic_config, upgrade_async
from gateway.store.models import AuditRecord, AuditStat

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

# 2026-10-31T17:30Z is 00:30 on 1 November in Vietnam: November's, not October's.
OCT = datetime(2026, 10, 20, 3, 0, tzinfo=UTC)
EDGE = datetime(2026, 10, 31, 17, 30, tzinfo=UTC)
NOV = datetime(2026, 11, 12, 9, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(database_url: str):  # type: ignore[no-untyped-def]
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def _event(chain: Chain, at: datetime, status: int = 200, **fields: Any) -> AuditEvent:
    e = AuditEvent(
        str(uuid.uuid4()), "r", chain.instance, "GET", "/r1/x", at, at, 10.0 + status % 7, status
    )
    for name, value in {
        "client_agency_code": "000.00.01.H49",
        "service_code": "ho-tich",
        "procedure_code": "1.001234",
        **fields,
    }.items():
        setattr(e, name, value)
    chain.link(e)
    return e


async def _rollup(sessions: Any) -> dict[tuple[str, ...], tuple[int, float]]:
    async with sessions() as s:
        rows = (await s.execute(select(AuditStat))).scalars().all()
    return {
        (r.day, r.agency, r.service, r.procedure, r.outcome): (r.n, round(r.duration_ms, 6))
        for r in rows
    }


async def _from_the_records(sessions: Any) -> dict[tuple[str, ...], tuple[int, float]]:
    """The reference: a GROUP BY over the records the statistics page counts."""
    async with sessions() as s:
        day = stats.day_column(s.get_bind().dialect.name)
        cols = (
            day,
            AuditRecord.client_agency_code,
            AuditRecord.service_code,
            AuditRecord.procedure_code,
            AuditRecord.status,
        )
        q = select(*cols, func.count(), func.sum(AuditRecord.duration_ms))
        rows = (await s.execute(q.where(*AuditFilter().clauses()).group_by(*cols))).all()
    out: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0, 0.0])
    for m, agency, service, procedure, status, n, total in rows:
        outcome = "success" if status < 400 else "refused" if status < 500 else "failed"
        acc = out[(m, agency or "", service or "", procedure or "", outcome)]
        acc[0] += n
        acc[1] += total
    return {k: (int(v[0]), round(v[1], 6)) for k, v in out.items()}


def _mix(chain: Chain) -> list[list[AuditEvent]]:
    """Batches as an indexer might get them."""
    first = [
        _event(chain, OCT),
        _event(chain, OCT + timedelta(hours=1), 403),
        _event(chain, OCT + timedelta(hours=2), 502, service_code="thue"),
        _event(chain, EDGE, 200, client_agency_code=None, procedure_code=None),
        _event(chain, NOV, 404, client_agency_code="000.00.02.H49"),
        _event(chain, NOV + timedelta(days=1), 200, service_code=None),
    ]
    # A two-phase exchange answered in a later batch: its intent counts until then.
    waiting = _event(chain, NOV, 200, phase="intent")
    first.append(waiting)
    # One answered in the same batch; one whose outcome arrives before its intent.
    asked = _event(chain, OCT, 200, phase="intent")
    told = _event(chain, OCT, 201, phase="outcome", intent_id=asked.event_id)
    late_intent = _event(chain, EDGE, 200, phase="intent", service_code="thue")
    early_outcome = _event(
        chain, EDGE, 503, phase="outcome", intent_id=late_intent.event_id, service_code="thue"
    )
    unanswered = _event(chain, NOV, 200, phase="intent", procedure_code="2.000001")
    second = [asked, told, early_outcome, unanswered, first[0]]  # first[0] again: a duplicate
    answer = _event(chain, NOV + timedelta(minutes=1), 500, phase="outcome")
    answer.intent_id = waiting.event_id
    third = [late_intent, answer, answer]
    return [first, second, third]


async def test_the_rollup_follows_the_records_in_and_out(sessions: Any) -> None:
    store = AuditStore(sessions, source="test")
    chain = Chain("gw-1")
    batches = _mix(chain)
    for i, batch in enumerate(batches):
        await store.ingest(batch)
        assert await _rollup(sessions) == await _from_the_records(sessions), f"batch {i}"
    rollup = await _rollup(sessions)
    assert rollup[("2026-11-01", "", "ho-tich", "", "success")][0] == 1  # 00:30 on 1 November
    assert ("2026-11-12", "000.00.01.H49", "ho-tich", "1.001234", "failed") in rollup  # answer
    assert sum(n for n, _ in rollup.values()) == 10  # 13 records, 3 intents answered
    # Retention, cutting into 20 October: that day's roll-up is recomputed from what is left.
    done = await purge(sessions, cutoff=OCT + timedelta(minutes=90), actor="test")
    assert done is not None and done.count >= 2
    assert await _rollup(sessions) == await _from_the_records(sessions)
    done = await purge(sessions, cutoff=NOV + timedelta(days=30), actor="test")
    assert done is not None
    assert await _rollup(sessions) == await _from_the_records(sessions) == {}


async def test_the_page_counts_the_same_from_the_rollup_as_from_the_records(
    sessions: Any,
) -> None:
    store = AuditStore(sessions, source="test")
    chain = Chain("gw-1")
    for batch in _mix(chain):
        await store.ingest(batch)
    nov = datetime(2026, 10, 31, 17, 0, tzinfo=UTC)  # 1 November, Vietnam time
    dec = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    filters = [
        AuditFilter(),
        AuditFilter(since=nov),
        AuditFilter(since=nov, until=dec, agency="000.00.01.H49"),
        AuditFilter(until=nov, service="thue", outcome="failed"),
        AuditFilter(procedure="1.001234", outcome="success"),
    ]
    async with sessions() as s:
        for f in filters:
            assert stats.answers(f), f
            for dimension in ("month", "agency", "service", "procedure"):
                from_rollup, rolled_up = await grouped(s, f, dimension)
                assert rolled_up
                by_records = await _from_records(s, f, dimension)
                key = (dimension, f)
                assert sorted(from_rollup, key=str) == sorted(by_records, key=str), key
        # Anything else is counted from the records.
        for other in (
            AuditFilter(since=nov + timedelta(hours=3)),
            AuditFilter(until=nov + timedelta(days=3, minutes=1)),
            AuditFilter(client="he-thong-1"),
            AuditFilter(status=200),
            AuditFilter(case="HS-1"),
        ):
            assert not stats.answers(other)
            assert (await grouped(s, other, "month"))[1] is False


async def test_the_migration_fills_the_rollup_from_the_records_stored_before_it(
    sessions: Any, database_url: str
) -> None:
    store = AuditStore(sessions, source="test")
    chain = Chain("gw-1")
    for batch in _mix(chain):
        await store.ingest(batch)
    expected = await _from_the_records(sessions)
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0023")
    try:
        await upgrade_async(database_url)
    finally:
        await upgrade_async(database_url)  # the session's database goes back to head
    assert await _rollup(sessions) == expected and expected


async def test_day_ranges_are_answered_by_the_rollup_as_by_the_records(sessions: Any) -> None:
    """Since/until on Vietnam midnights (what the form's dates give) are the roll-up's,
    whatever the span: 27 days inside a month, and days across a month boundary."""
    store = AuditStore(sessions, source="test")
    chain = Chain("gw-1")
    for batch in _mix(chain):
        await store.ingest(batch)
    # Every day from 15 October to 20 November, at 23:59 Vietnam time (16:59Z), and one at
    # 00:00 exactly: the first and last minutes of a day are that day's.
    day0 = datetime(2026, 10, 14, 17, 0, tzinfo=UTC)  # 00:00 on 15 October, Vietnam time
    await store.ingest(
        [_event(chain, day0 + timedelta(days=d, hours=23, minutes=59), 200 + d) for d in range(37)]
        + [_event(chain, day0 + timedelta(days=5), 404, service_code="thue")]
    )
    midnight = datetime(2026, 10, 31, 17, 0, tzinfo=UTC)  # 1 November, Vietnam time
    ranges = [
        (day0, day0 + timedelta(days=27)),  # 15 October to 10 November: across the month
        (midnight, midnight + timedelta(days=27)),  # 27 days of November
        (day0 + timedelta(days=5), day0 + timedelta(days=6)),  # one day
        (midnight - timedelta(days=1), midnight + timedelta(days=1)),  # 31 Oct, 1 Nov
    ]
    async with sessions() as s:
        for since, until in ranges:
            for f in (
                AuditFilter(since=since, until=until),
                AuditFilter(since=since, until=until, service="thue"),
                AuditFilter(since=since, agency="000.00.01.H49", outcome="success"),
            ):
                assert stats.answers(f), f
                for dimension in ("month", "agency", "service", "procedure"):
                    from_rollup, rolled_up = await grouped(s, f, dimension)
                    assert rolled_up
                    by_records = await _from_records(s, f, dimension)
                    assert sorted(from_rollup, key=str) == sorted(by_records, key=str), (
                        dimension,
                        f,
                    )
        # The cross-month range counts on both sides: the 17 October days and the 10
        # November ones, each with its exchange at 23:59, and the EDGE ones of 1 November.
        months, _ = await grouped(
            s, AuditFilter(since=day0, until=day0 + timedelta(days=27)), "month"
        )
        by_month = {g["key"]: g["count"] for g in months}
        assert set(by_month) == {"2026-10", "2026-11"}
        assert by_month["2026-10"] >= 17 and by_month["2026-11"] >= 10
