"""Reading the audit log: filters, keyset pages, export batches, daily statistics, masking.

Pure query logic on an `AsyncSession`, shared by the auditor API and the CLI. Pages are
keyset pages on (time, id), never OFFSET: page 500 of a busy month costs what page 1
costs, and a record committed while an auditor pages through is neither skipped nor
shown twice. Statistics are computed in SQL, with window functions both SQLite (3.25+)
and PostgreSQL have, so a year of records never passes through Python.
"""

from __future__ import annotations

import base64
import binascii
import csv
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, ClassVar, TextIO, TypeVar

import orjson
from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from gateway.store.models import AuditRecord, Base

# Provinces report by local day. Vietnam has kept UTC+7, without daylight saving, since 1975.
VN_TZ = timezone(timedelta(hours=7), "ICT")
VN_ZONE_NAME = "Asia/Ho_Chi_Minh"
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
OUTCOMES = ("success", "refused", "failed")

M = TypeVar("M", bound=Base)


# -- parsing query-string values -------------------------------------------------------------

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# In a query string an unencoded '+' arrives as a space: "...T08:00:00 07:00".
_SPACE_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


def parse_time(value: str) -> datetime:
    """An aware datetime from ISO 8601. A bare date is the start of that day in Vietnam
    time; a date-time without an offset is refused rather than guessed.

    Raises:
        ValueError: saying what is wrong, to follow the parameter's name.
    """
    value = value.strip()
    if _DATE_ONLY.match(value):
        try:
            return datetime.combine(date.fromisoformat(value), time(), VN_TZ).astimezone(UTC)
        except ValueError:
            raise ValueError("not an ISO 8601 date") from None
    try:
        parsed = datetime.fromisoformat(_SPACE_OFFSET.sub(r"\1+\2", value))
    except ValueError:
        raise ValueError("not an ISO 8601 date-time (e.g. 2026-11-21T00:00:00+07:00)") from None
    if parsed.tzinfo is None:
        raise ValueError("give a UTC offset, e.g. 2026-11-21T08:00:00+07:00 or ...Z")
    return parsed.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# -- the filter -------------------------------------------------------------------------------

_OUTCOME_ROW = aliased(AuditRecord)
_ONE_ROW_PER_EXCHANGE: ColumnElement[bool] = or_(
    AuditRecord.phase.is_(None),
    AuditRecord.phase != "intent",
    ~exists().where(_OUTCOME_ROW.intent_id == AuditRecord.event_id),
)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    client: str | None = None
    agency: str | None = None
    provider: str | None = None
    service: str | None = None
    version: str | None = None
    status: int | None = None
    outcome: str | None = None  # success (< 400) | refused (4xx) | failed (5xx)
    officer: str | None = None
    procedure: str | None = None
    case: str | None = None
    request_id: str | None = None
    instance: str | None = None

    # Exact-match parameters and the column each one filters.
    COLUMNS: ClassVar[Mapping[str, InstrumentedAttribute[Any]]] = {
        "client": AuditRecord.client_code,
        "agency": AuditRecord.client_agency_code,
        "provider": AuditRecord.provider_code,
        "service": AuditRecord.service_code,
        "version": AuditRecord.service_version,
        "officer": AuditRecord.officer_id,
        "procedure": AuditRecord.procedure_code,
        "case": AuditRecord.case_number,
        "request_id": AuditRecord.request_id,
        "instance": AuditRecord.instance,
    }

    def as_dict(self) -> dict[str, Any]:
        """The filter as given, JSON-ready, without unset fields (kept with each read)."""
        out: dict[str, Any] = {}
        for fld in fields(self):
            value = getattr(self, fld.name)
            if value is not None:
                out[fld.name] = iso(value) if isinstance(value, datetime) else value
        return out

    def clauses(self) -> list[ColumnElement[bool]]:
        # One row per exchange: a two-phase exchange's intent is shown only while it has
        # no outcome (the gateway died after forwarding: the provider was asked).
        where: list[ColumnElement[bool]] = [_ONE_ROW_PER_EXCHANGE]
        if self.since is not None:
            where.append(AuditRecord.started_at >= self.since)
        if self.until is not None:
            where.append(AuditRecord.started_at < self.until)
        for name, column in self.COLUMNS.items():
            value = getattr(self, name)
            if value is not None:
                where.append(column == value)
        if self.status is not None:
            where.append(AuditRecord.status == self.status)
        if self.outcome == "success":
            where.append(AuditRecord.status < 400)
        elif self.outcome == "refused":
            where.append(and_(AuditRecord.status >= 400, AuditRecord.status < 500))
        elif self.outcome == "failed":
            where.append(AuditRecord.status >= 500)
        return where


# -- keyset pages -----------------------------------------------------------------------------


def encode_cursor(at: datetime, row_id: int) -> str:
    raw = orjson.dumps([at.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (time, id) a cursor of `page` stands for; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = orjson.loads(raw)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(row_id, int) or isinstance(row_id, bool):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ValueError("not a cursor this API returned") from None
    return parsed, row_id


async def page(
    session: AsyncSession,
    stmt: Select[M],
    at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[int],
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> tuple[list[M], str | None]:
    """One page of `stmt`, newest first on (at, id), and the cursor of the next page."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor is not None:
        last_at, last_id = decode_cursor(cursor)
        stmt = stmt.where(or_(at < last_at, and_(at == last_at, row_id < last_id)))
    stmt = stmt.order_by(at.desc(), row_id.desc()).limit(limit + 1)
    rows = list((await session.scalars(stmt)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor(getattr(last, at.key), getattr(last, row_id.key))


async def search(
    session: AsyncSession,
    f: AuditFilter,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> tuple[list[AuditRecord], str | None]:
    """Matching records, newest first."""
    stmt = select(AuditRecord).where(*f.clauses())
    return await page(
        session, stmt, AuditRecord.started_at, AuditRecord.id, limit=limit, cursor=cursor
    )


async def count(session: AsyncSession, f: AuditFilter) -> int:
    stmt = select(func.count()).select_from(AuditRecord).where(*f.clauses())
    return int(await session.scalar(stmt) or 0)


async def iterate(
    session: AsyncSession, f: AuditFilter, batch: int = 1000
) -> AsyncIterator[list[AuditRecord]]:
    """All matching records, oldest first, as lists of up to `batch`: memory stays bounded
    however large the range, and each batch is one indexed range query."""
    after: tuple[datetime, int] | None = None
    while True:
        stmt = select(AuditRecord).where(*f.clauses())
        if after is not None:
            at, row_id = after
            stmt = stmt.where(
                or_(
                    AuditRecord.started_at > at,
                    and_(AuditRecord.started_at == at, AuditRecord.id > row_id),
                )
            )
        stmt = stmt.order_by(AuditRecord.started_at, AuditRecord.id).limit(batch)
        rows = list((await session.scalars(stmt)).all())
        if rows:
            yield rows
        if len(rows) < batch:
            return
        # Rows already yielded are not kept: the session's identity map holds them weakly.
        after = (rows[-1].started_at, rows[-1].id)


# -- daily statistics -------------------------------------------------------------------------


def _local_day(dialect: str) -> ColumnElement[str]:
    """The Vietnam-time calendar day of `started_at`, as YYYY-MM-DD, in the store's SQL."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(VN_ZONE_NAME, AuditRecord.started_at), "YYYY-MM-DD")
    if dialect == "sqlite":
        # Stored as UTC text "YYYY-MM-DD HH:MM:SS.ffffff"; Vietnam has no DST to mind.
        return func.date(AuditRecord.started_at, "+7 hours")
    # The store runs on these two only (gateway/store/db.py).
    raise ValueError(f"the audit store is SQLite or PostgreSQL, not {dialect}")


_OUTCOME = case(
    (AuditRecord.status < 400, "success"),
    (AuditRecord.status < 500, "refused"),
    else_="failed",
)
_GROUP_KEYS = ("agency", "provider", "service", "version", "outcome")


async def daily_stats(session: AsyncSession, f: AuditFilter) -> list[dict[str, Any]]:
    """Counts per local day, with per (agency, provider, service, version, outcome) groups
    carrying the count, mean and 95th percentile (nearest rank) of duration_ms."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # As the console's statistics from the records: a full day of a province passes
        # jit_above_cost, and compiling took 1.6 s of a 3.1 s answer (bench/audit_search.py).
        await session.execute(text("SET LOCAL jit = off"))
    by: dict[str, ColumnElement[Any] | InstrumentedAttribute[Any]] = {
        "day": _local_day(dialect),
        "agency": AuditRecord.client_agency_code,
        "provider": AuditRecord.provider_code,
        "service": AuditRecord.service_code,
        "version": AuditRecord.service_version,
        "outcome": _OUTCOME,
    }
    partition = list(by.values())
    ranked = (
        select(
            *(expr.label(name) for name, expr in by.items()),
            AuditRecord.duration_ms.label("ms"),
            func.row_number()
            .over(partition_by=partition, order_by=AuditRecord.duration_ms)
            .label("rank"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(*f.clauses())
        .subquery()
    )
    c = ranked.c
    nearest_rank = (c.n * 95 + 99) // 100  # ceil(0.95 n) in integer arithmetic
    grouped = select(
        c.day,
        c.agency,
        c.provider,
        c.service,
        c.version,
        c.outcome,
        func.count().label("count"),
        func.avg(c.ms).label("mean"),
        func.max(case((c.rank == nearest_rank, c.ms))).label("p95"),
    ).group_by(c.day, c.agency, c.provider, c.service, c.version, c.outcome)
    rows = (await session.execute(grouped)).all()
    # Sorted here: the dialects disagree on where NULLs go.
    rows = sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r[:6]))
    days: dict[str, dict[str, Any]] = {}
    for row in rows:
        r = row._mapping  # not attributes: a Row is a tuple, and tuple.count exists
        day = days.setdefault(
            r["day"],
            {"day": r["day"], "count": 0, "by_outcome": dict.fromkeys(OUTCOMES, 0), "groups": []},
        )
        count = int(r["count"])
        day["count"] += count
        day["by_outcome"][r["outcome"]] += count
        group = {k: r[k] for k in _GROUP_KEYS}
        group.update(
            count=count,
            mean_ms=None if r["mean"] is None else round(float(r["mean"]), 3),
            p95_ms=None if r["p95"] is None else float(r["p95"]),
        )
        day["groups"].append(group)
    return list(days.values())


# -- shaping and masking ----------------------------------------------------------------------


def _columns(model: type[Base]) -> tuple[str, ...]:
    return tuple(c.key for c in model.__table__.columns)


_ROW_COLUMNS: dict[type[Base], tuple[str, ...]] = {}


def row_dict(row: Base) -> dict[str, Any]:
    """Every column of a stored row, JSON-ready (datetimes as ISO 8601 strings)."""
    model = type(row)
    names = _ROW_COLUMNS.get(model)
    if names is None:
        names = _ROW_COLUMNS[model] = _columns(model)
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(row, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


RECORD_COLUMNS: tuple[str, ...] = _columns(AuditRecord)


def record_dict(row: AuditRecord) -> dict[str, Any]:
    return row_dict(row)


# A citizen id: 12 digits (CCCD / personal id) or 9 (old CMND), and the runs between.
_CITIZEN_ID = re.compile(r"(?<!\d)(\d{3})(\d{4,7})(\d{2})(?!\d)")
_QUERY_VALUE = re.compile(r"(?<=[?&])([^&=]*)(=[^&]*)?")


def _mask_id(m: re.Match[str]) -> str:
    return m[1] + "*" * len(m[2]) + m[3]


def _mask_query_part(m: re.Match[str]) -> str:
    name, value = m[1], m[2]
    if value is not None:
        return _CITIZEN_ID.sub(_mask_id, name) + ("=***" if len(value) > 1 else "=")
    # A bare token ("?001099012345") is a value too.
    return "***" if name else ""


def mask_ids(text: str) -> str:
    return _CITIZEN_ID.sub(_mask_id, text)


def mask_path(path: str) -> str:
    """Citizen ids in the path masked, query-string values replaced by ***."""
    base, sep, query = path.partition("?")
    base = _CITIZEN_ID.sub(_mask_id, base)
    if not sep:
        return base
    return base + _QUERY_VALUE.sub(_mask_query_part, "?" + query)


# Every field whose text the caller chooses (a request id, an officer id shaped like a
# personal id...), not only those meant to carry identifiers.
_MASKERS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("path", mask_path),
    ("error_detail", mask_ids),
    ("case_number", mask_ids),
    ("officer_id", mask_ids),
    ("procedure_code", mask_ids),
    ("request_id", mask_ids),
)


def mask_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a record dict with personal identifiers masked; other fields unchanged."""
    out = dict(record)
    for name, mask in _MASKERS:
        value = out.get(name)
        if isinstance(value, str):
            out[name] = mask(value)
    return out


def shape(rows: Sequence[AuditRecord], *, unmask: bool) -> list[dict[str, Any]]:
    if unmask:
        return [record_dict(r) for r in rows]
    return [mask_record(record_dict(r)) for r in rows]


# -- export files -----------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "jsonl")
# OWASP's CSV injection guidance: a cell a spreadsheet would read as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value for a CSV cell: empty for null, and text that a spreadsheet would run as a
    formula (a caller can put `=HYPERLINK(...)` in a header) prefixed with `'`, so it is
    shown as text. JSON Lines exports keep the raw value."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class ExportWriter:
    """Record dicts to a text stream as CSV (a header row of every column first, empty
    cells for nulls) or JSON Lines; the API and the CLI write the same files."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"export format {fmt!r}; use csv or jsonl")
        self._out = out
        self._csv = csv.writer(out, lineterminator="\r\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(RECORD_COLUMNS)

    def write(self, docs: Iterable[Mapping[str, Any]]) -> None:
        if self._csv is not None:
            self._csv.writerows([csv_cell(d[c]) for c in RECORD_COLUMNS] for d in docs)
        else:
            self._out.write("".join(orjson.dumps(d).decode() + "\n" for d in docs))
