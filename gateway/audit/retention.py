"""Retention: purge exchange records older than the retention period, and say so.

Each instance's chain is cut at one point, never with holes: everything up to the last
event before the cutoff goes (an event that started before the cutoff but was chained
after a newer one stays). The purge is recorded with its count, time range and, per
instance, the last purged link, from which verification of what remains starts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit import stats
from gateway.core.logging import log
from gateway.store.models import AuditPurge, AuditRecord, AuditSubject

PURGE_INTERVAL_SECONDS = 3600.0


async def purge(
    sessions: async_sessionmaker[AsyncSession], *, cutoff: datetime, actor: str
) -> AuditPurge | None:
    """Remove records that started before `cutoff`; None if there was nothing to remove."""
    async with sessions() as s, s.begin():
        heads: dict[str, dict[str, object]] = {}
        conditions = [and_(AuditRecord.seq.is_(None), AuditRecord.started_at < cutoff)]
        old = select(AuditRecord.instance).where(AuditRecord.started_at < cutoff).distinct()
        for instance in (await s.scalars(old)).all():
            kept_from = await s.scalar(
                select(func.min(AuditRecord.seq)).where(
                    AuditRecord.instance == instance, AuditRecord.started_at >= cutoff
                )
            )
            before = select(func.max(AuditRecord.seq)).where(AuditRecord.instance == instance)
            if kept_from is not None:
                before = before.where(AuditRecord.seq < kept_from)
            last = await s.scalar(before)
            if last is None:
                continue
            head = await s.scalar(
                select(AuditRecord.hash).where(
                    AuditRecord.instance == instance, AuditRecord.seq == last
                )
            )
            heads[instance] = {"seq": last, "hash": head}
            conditions.append(and_(AuditRecord.instance == instance, AuditRecord.seq <= last))
        doomed = or_(*conditions)
        count, first, latest = (
            await s.execute(
                select(
                    func.count(AuditRecord.id),
                    func.min(AuditRecord.started_at),
                    func.max(AuditRecord.started_at),
                ).where(doomed)
            )
        ).one()
        if not count:
            return None
        # The subject index goes with the records it points at (gateway/audit/subjects.py).
        gone = select(AuditRecord.event_id).where(doomed)
        # The statistics roll-up is recomputed for the days the purge touched: those of
        # the purged records, and of intents whose purged outcome stood in for them.
        days = set(stats.days_between(stats.day_of(first), stats.day_of(latest)))
        freed = select(AuditRecord.started_at).where(
            AuditRecord.phase == "intent",
            AuditRecord.event_id.in_(select(AuditRecord.intent_id).where(doomed)),
        )
        days |= {stats.day_of(at) for at in (await s.scalars(freed)).all()}
        await s.execute(delete(AuditSubject).where(AuditSubject.event_id.in_(gone)))
        await s.execute(delete(AuditRecord).where(doomed))
        await stats.refill(s, days)
        record = AuditPurge(
            actor=actor,
            cutoff=cutoff,
            count=count,
            first_started_at=first,
            last_started_at=latest,
            heads=heads,
        )
        s.add(record)
    log.info("audit records purged", count=count, cutoff=cutoff.isoformat(), actor=actor)
    return record


async def retention_loop(
    sessions: async_sessionmaker[AsyncSession], *, days: int, actor: str
) -> None:
    """Purge hourly. Several processes may run it: a second purge finds nothing to do."""
    while True:
        try:
            await purge(sessions, cutoff=datetime.now(UTC) - timedelta(days=days), actor=actor)
        except Exception as exc:
            log.error("audit retention purge failed", error=str(exc))
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)
