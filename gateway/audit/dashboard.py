"""What the console's dashboard shows of the exchanges: the last hour minute by minute
(by outcome), its error rate and 95th percentile latency, by service and by calling
agency; and the last 24 hours by outcome.

Read from the audit store (with Kafka, what the indexer has stored so far). The hour is
read as rows, newest first and at most `ROW_CAP` of them, and summarised here; the day
is counted in SQL.

Example:
    >>> view = await exchange_dashboard(session, now=utcnow())
    >>> view.hour.total, view.hour.p95_ms
    (1250, 84.0)
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.query import OUTCOMES, AuditFilter
from gateway.store.models import AuditRecord

__all__ = ["ROW_CAP", "Dashboard", "Group", "Summary", "exchange_dashboard", "p95"]

ROW_CAP = 100_000
MINUTES = 60
# The auditor API's outcomes (gateway/audit/query.py), in SQL and in Python.
_OUTCOME = case(
    (AuditRecord.status < 400, "success"),
    (AuditRecord.status < 500, "refused"),
    else_="failed",
)


def _outcome(status: int) -> str:
    return "success" if status < 400 else "refused" if status < 500 else "failed"


def p95(values: list[float]) -> float | None:
    """The 95th percentile, nearest rank (as the auditor API's daily statistics).

    Example:
        >>> p95([float(i) for i in range(1, 101)])
        95.0
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


@dataclass
class Group:
    """Exchanges of one service or one agency in the hour."""

    name: str
    total: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=list)

    @property
    def p95_ms(self) -> float | None:
        return p95(self.durations)


@dataclass
class Summary:
    """The last hour: per-minute counts by outcome (oldest first), and the totals."""

    minutes: list[dict[str, int]]
    by_outcome: dict[str, int]
    by_service: list[Group]
    by_agency: list[Group]
    p95_ms: float | None
    capped: bool

    @property
    def total(self) -> int:
        return sum(self.by_outcome.values())

    @property
    def error_rate(self) -> float:
        return self.by_outcome["failed"] / self.total if self.total else 0.0

    @property
    def per_minute(self) -> float:
        return self.total / MINUTES


@dataclass
class Dashboard:
    hour: Summary
    day_by_outcome: dict[str, int]

    @property
    def day_total(self) -> int:
        return sum(self.day_by_outcome.values())


def _top(groups: dict[str, Group], n: int = 10) -> list[Group]:
    return sorted(groups.values(), key=lambda g: (-g.total, g.name))[:n]


async def _hour(session: AsyncSession, now: datetime) -> Summary:
    since = now - timedelta(minutes=MINUTES)
    f = AuditFilter(since=since, until=now + timedelta(seconds=1))
    rows = (
        await session.execute(
            select(
                AuditRecord.started_at,
                AuditRecord.status,
                AuditRecord.duration_ms,
                AuditRecord.provider_code,
                AuditRecord.service_code,
                AuditRecord.service_version,
                AuditRecord.client_agency_code,
            )
            .where(*f.clauses())
            .order_by(AuditRecord.started_at.desc())
            .limit(ROW_CAP)
        )
    ).all()
    minutes = [dict.fromkeys(OUTCOMES, 0) for _ in range(MINUTES)]
    outcomes: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
    services: dict[str, Group] = defaultdict(lambda: Group(""))
    agencies: dict[str, Group] = defaultdict(lambda: Group(""))
    durations = []
    for at, status, ms, provider, service, version, agency in rows:
        outcome = _outcome(status)
        slot = min(MINUTES - 1, max(0, int((at - since).total_seconds() // 60)))
        minutes[slot][outcome] += 1
        outcomes[outcome] += 1
        durations.append(ms)
        key = f"{provider}/{service}/{version}" if service else "—"
        for groups, name in ((services, key), (agencies, agency or "—")):
            g = groups[name]
            g.name, g.total = name, g.total + 1
            g.failed += outcome == "failed"
            g.durations.append(ms)
    return Summary(
        minutes,
        dict(outcomes),
        _top(services),
        _top(agencies),
        p95(durations),
        capped=len(rows) == ROW_CAP,
    )


async def exchange_dashboard(session: AsyncSession, *, now: datetime) -> Dashboard:
    """The figures of the dashboard at `now`.

    Example:
        >>> (await exchange_dashboard(session, now=utcnow())).day_by_outcome
        {'success': 1200, 'refused': 40, 'failed': 10}
    """
    day = AuditFilter(since=now - timedelta(days=1), until=now + timedelta(seconds=1))
    counted = await session.execute(
        select(_OUTCOME.label("outcome"), func.count()).where(*day.clauses()).group_by("outcome")
    )
    by_outcome = dict.fromkeys(OUTCOMES, 0) | {o: int(n) for o, n in counted.all()}
    return Dashboard(await _hour(session, now), by_outcome)
