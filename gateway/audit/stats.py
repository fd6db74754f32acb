"""The statistics roll-up: exchanges per Vietnam-time month, agency, service, procedure
and outcome, with the sum of their durations (table ``audit_stats``, migration 0024).

It is kept where records are written and removed, in the same transaction:
`AuditStore.ingest` adds each new exchange (`add_events`: an upsert that adds counts), and
retention recomputes the months it purged from (`refill`). It counts what the statistics
page counts, one row per exchange: a two-phase exchange's intent while it has no outcome,
and then its outcome instead (`gateway/audit/query.py`).

The statistics page reads it when the filter is made of whole months and the roll-up's
dimensions (`answers`), and groups the records otherwise.

Example::

    if stats.answers(f):
        groups = await stats.grouped(s, f, "agency")
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, String, case, cast, delete, func, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.query import _ONE_ROW_PER_EXCHANGE, VN_TZ, VN_ZONE_NAME, AuditFilter
from gateway.store.models import AuditRecord, AuditStat

__all__ = [
    "DIMENSION_COLUMNS",
    "Key",
    "add_events",
    "answers",
    "grouped",
    "month_column",
    "month_of",
    "months_between",
    "refill",
]

Key = tuple[str, str, str, str, str]  # month, agency, service, procedure, outcome

# The filter's fields the roll-up can answer besides whole-month since/until.
_ANSWERABLE = {"agency": "agency", "service": "service", "procedure": "procedure"}
DIMENSION_COLUMNS = {
    "month": AuditStat.month,
    "agency": AuditStat.agency,
    "service": AuditStat.service,
    "procedure": AuditStat.procedure,
}


def month_column(dialect: str) -> ColumnElement[str]:
    """The Vietnam-time month of a record's `started_at`, YYYY-MM, in the store's SQL."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(VN_ZONE_NAME, AuditRecord.started_at), "YYYY-MM")
    return func.strftime("%Y-%m", AuditRecord.started_at, "+7 hours")


def month_of(at: datetime) -> str:
    """The Vietnam-time month of an instant (naive means UTC, as SQLite returns it)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(VN_TZ).strftime("%Y-%m")


def _month_start(month: str) -> datetime:
    year, mon = (int(p) for p in month.split("-"))
    return datetime(year, mon, 1, tzinfo=VN_TZ).astimezone(UTC)


def _next(month: str) -> str:
    year, mon = (int(p) for p in month.split("-"))
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def months_between(first: str, last: str) -> list[str]:
    """Every month from `first` to `last`, both included.

    Example:
        >>> months_between("2026-11", "2027-01")
        ['2026-11', '2026-12', '2027-01']
    """
    out, month = [], first
    while month <= last:
        out.append(month)
        month = _next(month)
    return out


def _outcome(status: int) -> str:
    return "success" if status < 400 else "refused" if status < 500 else "failed"


def _key_of(row: Mapping[str, Any]) -> Key:
    return (
        month_of(row["started_at"]),
        row.get("client_agency_code") or "",
        row.get("service_code") or "",
        row.get("procedure_code") or "",
        _outcome(int(row["status"])),
    )


def _upsert(s: AsyncSession) -> Any:
    dialect = s.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(AuditStat)
    return stmt.on_conflict_do_update(
        index_elements=["month", "agency", "service", "procedure", "outcome"],
        set_={
            "n": AuditStat.n + stmt.excluded.n,
            "duration_ms": AuditStat.duration_ms + stmt.excluded.duration_ms,
        },
    )


async def add_events(s: AsyncSession, rows: Iterable[Mapping[str, Any]]) -> None:
    """Count newly stored records (dicts of `AuditRecord` columns, already in the session's
    transaction), as the statistics page counts them: an intent that already has an
    outcome is not counted, and an outcome takes its intent's place if that was counted."""
    rows = list(rows)
    if not rows:
        return
    new_ids = {r["event_id"] for r in rows}
    delta: dict[Key, list[float]] = defaultdict(lambda: [0, 0.0])
    intents = [r["event_id"] for r in rows if r.get("phase") == "intent"]
    answered: set[str | None] = set()
    if intents:
        answered = set(
            (
                await s.scalars(
                    select(AuditRecord.intent_id).where(AuditRecord.intent_id.in_(intents))
                )
            ).all()
        )
    for r in rows:
        if r.get("phase") == "intent" and r["event_id"] in answered:
            continue
        d = delta[_key_of(r)]
        d[0] += 1
        d[1] += float(r["duration_ms"])
    # Intents stored before this batch, now answered by an outcome in it, were counted
    # unless an earlier outcome had answered them already: they are taken out.
    asked = {r["intent_id"] for r in rows if r.get("phase") == "outcome" and r.get("intent_id")}
    asked -= new_ids
    if asked:
        earlier = select(AuditRecord.intent_id).where(
            AuditRecord.intent_id.in_(asked), AuditRecord.event_id.not_in(new_ids)
        )
        old = (
            await s.execute(
                select(
                    AuditRecord.started_at,
                    AuditRecord.client_agency_code,
                    AuditRecord.service_code,
                    AuditRecord.procedure_code,
                    AuditRecord.status,
                    AuditRecord.duration_ms,
                ).where(
                    AuditRecord.event_id.in_(asked),
                    AuditRecord.phase == "intent",
                    AuditRecord.event_id.not_in(earlier),
                )
            )
        ).all()
        for o in old:
            d = delta[_key_of(dict(o._mapping))]
            d[0] -= 1
            d[1] -= float(o.duration_ms)
    values = [
        {
            "month": k[0],
            "agency": k[1],
            "service": k[2],
            "procedure": k[3],
            "outcome": k[4],
            "n": int(v[0]),
            "duration_ms": v[1],
        }
        for k, v in sorted(delta.items())  # one order of row locks for every writer
        if v[0] or v[1]
    ]
    if values:
        await s.execute(_upsert(s), values)
    # A row an outcome emptied goes (only those: the table is not scanned per batch).
    for k, v in delta.items():
        if v[0] < 0:
            await s.execute(
                delete(AuditStat).where(
                    AuditStat.month == k[0],
                    AuditStat.agency == k[1],
                    AuditStat.service == k[2],
                    AuditStat.procedure == k[3],
                    AuditStat.outcome == k[4],
                    AuditStat.n <= 0,
                )
            )


async def refill(s: AsyncSession, months: Iterable[str]) -> None:
    """Recompute the roll-up of `months` from the records (after a purge, or to build it)."""
    dialect = s.get_bind().dialect.name
    month = month_column(dialect)
    status = AuditRecord.status
    outcome = case(
        (status < 400, literal("success")), (status < 500, literal("refused")), else_="failed"
    )
    for m in sorted(set(months)):
        await s.execute(delete(AuditStat).where(AuditStat.month == m))
        source = (
            select(
                month,
                func.coalesce(AuditRecord.client_agency_code, ""),
                func.coalesce(AuditRecord.service_code, ""),
                func.coalesce(AuditRecord.procedure_code, ""),
                cast(outcome, String),
                func.count(),
                func.sum(AuditRecord.duration_ms),
            )
            .where(
                _ONE_ROW_PER_EXCHANGE,
                AuditRecord.started_at >= _month_start(m),
                AuditRecord.started_at < _month_start(_next(m)),
            )
            .group_by(
                month,
                AuditRecord.client_agency_code,
                AuditRecord.service_code,
                AuditRecord.procedure_code,
                outcome,
            )
        )
        await s.execute(
            insert(AuditStat).from_select(
                ["month", "agency", "service", "procedure", "outcome", "n", "duration_ms"],
                source,
            )
        )


def _whole_month(at: datetime | None) -> bool:
    return at is None or _month_start(month_of(at)) == at.astimezone(UTC)


def answers(f: AuditFilter) -> bool:
    """Whether the roll-up can answer `f`: since/until on Vietnam-time month starts (or
    unset), and no field but agency, service, procedure and outcome."""
    for name, value in f.as_dict().items():
        if name in ("since", "until", "outcome"):
            continue
        if name not in _ANSWERABLE or not value:
            return False
    return _whole_month(f.since) and _whole_month(f.until)


async def grouped(s: AsyncSession, f: AuditFilter, dimension: str) -> list[dict[str, Any]]:
    """The statistics page's groups from the roll-up (see `answers`); unsorted."""
    key = DIMENSION_COLUMNS[dimension].label("key")
    where: list[ColumnElement[bool]] = []
    if f.since is not None:
        where.append(AuditStat.month >= month_of(f.since))
    if f.until is not None:
        where.append(AuditStat.month < month_of(f.until))
    for name, column in _ANSWERABLE.items():
        value = getattr(f, name)
        if value is not None:
            where.append(getattr(AuditStat, column) == value)
    if f.outcome is not None:
        where.append(AuditStat.outcome == f.outcome)

    def of(outcome: str) -> Any:
        return func.sum(case((AuditStat.outcome == outcome, AuditStat.n), else_=0))

    stmt = (
        select(
            key,
            func.sum(AuditStat.n).label("n"),
            of("success").label("success"),
            of("refused").label("refused"),
            of("failed").label("failed"),
            func.sum(AuditStat.duration_ms).label("total_ms"),
        )
        .where(*where)
        .group_by(key)
    )
    out = []
    for r in (await s.execute(stmt)).all():
        n = int(r.n)
        if n <= 0:
            continue
        out.append(
            {
                "key": str(r.key),
                "count": n,
                "success": int(r.success or 0),
                "refused": int(r.refused or 0),
                "failed": int(r.failed or 0),
                "mean_ms": round(float(r.total_ms) / n, 1),
            }
        )
    return out
