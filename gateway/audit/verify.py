"""Verify the stored audit trail over a time range: hashes, links, gaps, checkpoints.

The range selects which instances and which part of their chains to check: for each
instance, every event from the first to the last sequence number that falls in the
range, plus the link just before it (the stored predecessor, or the head a retention
purge recorded), plus the signed checkpoints over that stretch and any beyond the
stored end (which is how a deleted tail shows). Events are streamed, so a year of
records is checked in bounded memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from gateway.audit.chain import (
    GENESIS,
    ChainVerifier,
    Checkpoint,
    Finding,
    InstanceReport,
    load_public_key,
)
from gateway.audit.event import FIELD_NAMES
from gateway.store.models import AuditCheckpoint, AuditPurge, AuditRecord, AuditSigningKey

_COLUMNS = [getattr(AuditRecord, name) for name in FIELD_NAMES]


@dataclass
class VerificationReport:
    since: datetime | None
    until: datetime | None
    verified_at: datetime
    instances: list[InstanceReport] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.instances for f in r.findings]

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "verified_at": self.verified_at.isoformat(),
            "ok": self.ok,
            "events": sum(r.events for r in self.instances),
            "instances": [
                {
                    "instance": r.instance,
                    "first_seq": r.first_seq,
                    "last_seq": r.last_seq,
                    "events": r.events,
                    "checkpoints": r.checkpoints,
                    "head": r.head,
                    "findings": [f.as_dict() for f in r.findings],
                }
                for r in self.instances
            ],
        }


async def trusted_keys(session: AsyncSession) -> dict[str, Ed25519PublicKey]:
    rows = (await session.execute(select(AuditSigningKey.key_id, AuditSigningKey.public_key))).all()
    return {key_id: load_public_key(text) for key_id, text in rows}


async def verify_store(
    sessions: async_sessionmaker[AsyncSession],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    instance: str | None = None,
    keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> VerificationReport:
    """`keys`: the checkpoint keys to trust; by default those instances registered in
    the store. An auditor who does not trust the store passes the keys they hold."""
    report = VerificationReport(since, until, datetime.now(UTC))
    async with sessions() as s:
        if keys is None:
            keys = await trusted_keys(s)
        spans = select(
            AuditRecord.instance, func.min(AuditRecord.seq), func.max(AuditRecord.seq)
        ).where(AuditRecord.seq.is_not(None))
        if since is not None:
            spans = spans.where(AuditRecord.started_at >= since)
        if until is not None:
            spans = spans.where(AuditRecord.started_at < until)
        if instance is not None:
            spans = spans.where(AuditRecord.instance == instance)
        for name, first, last in (await s.execute(spans.group_by(AuditRecord.instance))).all():
            if first is not None and last is not None:
                report.instances.append(await _verify_span(s, name, first, last, keys))
        await _pair_intents(s, report, instance)
    report.instances.sort(key=lambda r: r.instance)
    return report


# An intent younger than this may be an exchange still in flight (its service's timeout,
# retries included, is at most a few minutes); older without its outcome, it is a finding.
INTENT_GRACE = timedelta(minutes=15)


async def _pair_intents(s: AsyncSession, report: VerificationReport, instance: str | None) -> None:
    """Each intent of a two-phase exchange must have its outcome: an intent alone means
    the provider was asked and the answer was never recorded (the gateway died, or the
    outcome was deleted)."""
    outcome = aliased(AuditRecord)
    stmt = select(AuditRecord.instance, AuditRecord.seq, AuditRecord.request_id).where(
        AuditRecord.phase == "intent",
        AuditRecord.started_at < report.verified_at - INTENT_GRACE,
        ~exists().where(outcome.intent_id == AuditRecord.event_id),
    )
    if report.since is not None:
        stmt = stmt.where(AuditRecord.started_at >= report.since)
    if report.until is not None:
        stmt = stmt.where(AuditRecord.started_at < report.until)
    if instance is not None:
        stmt = stmt.where(AuditRecord.instance == instance)
    by_instance = {r.instance: r for r in report.instances}
    for name, seq, request_id in (await s.execute(stmt.order_by(AuditRecord.seq))).all():
        target = by_instance.get(name)
        if target is None:
            target = by_instance[name] = InstanceReport(name)
            report.instances.append(target)
        target.findings.append(
            Finding(
                name,
                "outcome_missing",
                seq,
                seq,
                f"request {request_id}: the intent is recorded (the provider was asked) but "
                "its outcome is not",
            )
        )


async def _verify_span(
    s: AsyncSession,
    instance: str,
    first: int,
    last: int,
    keys: Mapping[str, Ed25519PublicKey],
) -> InstanceReport:
    anchor = await _anchor(s, instance, first)
    stored_end = await s.scalar(
        select(func.max(AuditRecord.seq)).where(AuditRecord.instance == instance)
    )
    cp_filter: ColumnElement[bool] = AuditCheckpoint.seq.between(first, last)
    if stored_end == last:
        cp_filter = or_(cp_filter, AuditCheckpoint.seq > last)
    checkpoints = [
        Checkpoint(c.instance, c.seq, c.hash, c.signed_at, c.key_id, c.signature)
        for c in await s.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.instance == instance, cp_filter)
            .order_by(AuditCheckpoint.seq)
        )
    ]
    rows = await s.stream(
        select(*_COLUMNS)
        .where(AuditRecord.instance == instance, AuditRecord.seq.between(first, last))
        .order_by(AuditRecord.seq, AuditRecord.id)
        .execution_options(yield_per=2000)
    )
    verifier = ChainVerifier(instance, checkpoints, keys, anchor=anchor)
    async for row in rows:
        verifier.add(dict(row._mapping))
    return verifier.finish()


async def _anchor(s: AsyncSession, instance: str, first: int) -> tuple[int, str]:
    """The nearest link before `first`: the stored predecessor or a purge's recorded
    head, whichever is later; genesis if there is neither. Anything between it and
    `first` is then reported missing by the verifier."""
    best = (0, GENESIS)
    row = (
        await s.execute(
            select(AuditRecord.seq, AuditRecord.hash)
            .where(AuditRecord.instance == instance, AuditRecord.seq < first)
            .order_by(AuditRecord.seq.desc())
            .limit(1)
        )
    ).first()
    if row is not None and row[0] is not None and row[1] is not None:
        best = (int(row[0]), str(row[1]))
    for heads in await s.scalars(select(AuditPurge.heads)):
        head = heads.get(instance)
        if head and best[0] < int(head["seq"]) < first:
            best = (int(head["seq"]), str(head["hash"]))
    return best
