"""The statistics roll-up: exchanges per Vietnam-time day, agency, service, procedure
and outcome, with the sum of their durations (table ``audit_stats``, migration 0024). The
page's months are the first seven characters of its days ('YYYY-MM-DD').

It is kept where records are written and removed, in the same transaction:
`AuditStore.ingest` adds each new exchange (`add_events`: an upsert that adds counts), and
retention recomputes the days it purged from (`refill`). It counts what the statistics
page counts, one row per exchange: a two-phase exchange's intent while it has no outcome,
and then its outcome instead (`gateway/audit/query.py`).

The statistics page reads it when the filter is made of whole days (since and until on
Vietnam midnights, as the form's dates always are) and the roll-up's
dimensions (`answers`), and groups the records otherwise.

Example::

    if stats.answers(f):
        groups = await stats.grouped(s, f, "agency")
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
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
    "day_column",
    "day_of",
    "days_between",
    "grouped",
    "month_column",
    "month_of",
    "refill",
]

Key = tuple[str, str, str, str, str]  # day, agency, service, procedure, outcome

# The filter's fields the roll-up can answer besides whole-day since/until.
_ANSWERABLE = {"agency": "agency", "service": "service", "procedure": "procedure"}
DIMENSION_COLUMNS: dict[str, Any] = {
    "month": func.substr(AuditStat.day, 1, 7),
    "agency": AuditStat.agency,
    "service": AuditStat.service,
    "procedure": AuditStat.procedure,
}


def month_column(dialect: str) -> ColumnElement[str]:
    """The Vietnam-time month of a record's `started_at`, YYYY-MM, in the store's SQL."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(VN_ZONE_NAME, AuditRecord.started_at), "YYYY-MM")
    return func.strftime("%Y-%m", AuditRecord.started_at, "+7 hours")


def day_column(dialect: str) -> ColumnElement[str]:
    """The Vietnam-time day of a record's `started_at`, YYYY-MM-DD, in the store's SQL."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(VN_ZONE_NAME, AuditRecord.started_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", AuditRecord.started_at, "+7 hours")


def _local(at: datetime) -> datetime:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(VN_TZ)


def month_of(at: datetime) -> str:
    """The Vietnam-time month of an instant (naive means UTC, as SQLite returns it)."""
    return _local(at).strftime("%Y-%m")


def day_of(at: datetime) -> str:
    """The Vietnam-time day of an instant (naive means UTC, as SQLite returns it)."""
    return _local(at).strftime("%Y-%m-%d")


def _day_start(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time(), VN_TZ).astimezone(UTC)


def _next(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def days_between(first: str, last: str) -> list[str]:
    """Every day from `first` to `last`, both included.

    Example:
        >>> days_between("2026-11-30", "2026-12-02")
        ['2026-11-30', '2026-12-01', '2026-12-02']
    """
    out, day = [], first
    while day <= last:
        out.append(day)
        day = _next(day)
    return out


def _runs(days: Iterable[str]) -> list[tuple[str, str]]:
    """Consecutive days as (first, last) pairs, so a refill is one statement per run."""
    runs: list[tuple[str, str]] = []
    for day in sorted(set(days)):
        if runs and _next(runs[-1][1]) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _outcome(status: int) -> str:
    return "success" if status < 400 else "refused" if status < 500 else "failed"


def _key_of(row: Mapping[str, Any]) -> Key:
    return (
        day_of(row["started_at"]),
        row.get("client_agency_code") or "",
        row.get("service_code") or "",
        row.get("procedure_code") or "",
        _outcome(int(row["status"])),
    )


def _upsert(s: AsyncSession) -> Any:
    dialect = s.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(AuditStat)
    return stmt.on_conflict_do_update(
        index_elements=["day", "agency", "service", "procedure", "outcome"],
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
            "day": k[0],
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
                    AuditStat.day == k[0],
                    AuditStat.agency == k[1],
                    AuditStat.service == k[2],
                    AuditStat.procedure == k[3],
                    AuditStat.outcome == k[4],
                    AuditStat.n <= 0,
                )
            )


async def refill(s: AsyncSession, days: Iterable[str]) -> None:
    """Recompute the roll-up of `days` from the records (after a purge, or to build it):
    one DELETE and one INSERT ... SELECT ... GROUP BY per run of consecutive days."""
    dialect = s.get_bind().dialect.name
    day = day_column(dialect)
    status = AuditRecord.status
    outcome = case(
        (status < 400, literal("success")), (status < 500, literal("refused")), else_="failed"
    )
    for first, last in _runs(days):
        await s.execute(delete(AuditStat).where(AuditStat.day >= first, AuditStat.day <= last))
        source = (
            select(
                day,
                func.coalesce(AuditRecord.client_agency_code, ""),
                func.coalesce(AuditRecord.service_code, ""),
                func.coalesce(AuditRecord.procedure_code, ""),
                cast(outcome, String),
                func.count(),
                func.sum(AuditRecord.duration_ms),
            )
            .where(
                _ONE_ROW_PER_EXCHANGE,
                AuditRecord.started_at >= _day_start(first),
                AuditRecord.started_at < _day_start(_next(last)),
            )
            .group_by(
                day,
                AuditRecord.client_agency_code,
                AuditRecord.service_code,
                AuditRecord.procedure_code,
                outcome,
            )
        )
        await s.execute(
            insert(AuditStat).from_select(
                ["day", "agency", "service", "procedure", "outcome", "n", "duration_ms"],
                source,
            )
        )


def _whole_day(at: datetime | None) -> bool:
    return at is None or _day_start(day_of(at)) == at.astimezone(UTC)


def answers(f: AuditFilter) -> bool:
    """Whether the roll-up can answer `f`: since/until on Vietnam midnights (or unset: a
    bare date is one), and no field but agency, service, procedure and outcome."""
    for name, value in f.as_dict().items():
        if name in ("since", "until", "outcome"):
            continue
        if name not in _ANSWERABLE or not value:
            return False
    return _whole_day(f.since) and _whole_day(f.until)


async def grouped(s: AsyncSession, f: AuditFilter, dimension: str) -> list[dict[str, Any]]:
    """The statistics page's groups from the roll-up (see `answers`); unsorted."""
    key = DIMENSION_COLUMNS[dimension].label("key")
    where: list[ColumnElement[bool]] = []
    if f.since is not None:
        where.append(AuditStat.day >= day_of(f.since))
    if f.until is not None:
        where.append(AuditStat.day < day_of(f.until))
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
