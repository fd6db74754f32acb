"""The database audit store: where events become queryable.

`AuditStore.ingest` is the one way in, used by the gateway itself when no broker is
configured and by `lgsp audit-indexer` when one is. It is idempotent on event id (Kafka
delivers at least once; the spool re-sends after a crash) and checks each instance's
chain as it goes: an event whose hash does not match, a link that does not join, or a
jump in sequence numbers is written down as a finding, and the event is stored anyway,
because an auditor needs to see what arrived, not a tidied version of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit import stats
from gateway.audit.chain import (
    GENESIS,
    AuditSigner,
    Checkpoint,
    Finding,
    event_hash,
    public_key_text,
)
from gateway.audit.event import AuditEvent
from gateway.audit.subjects import SubjectKey, identifiers, index_rows
from gateway.store.models import (
    AuditCheckpoint,
    AuditFinding,
    AuditRecord,
    AuditSigningKey,
    AuditSubject,
)


@dataclass
class IngestResult:
    inserted: int = 0
    duplicates: int = 0
    checkpoints: int = 0
    findings: list[Finding] = field(default_factory=list)


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class AuditStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        source: str,
        subject_key: SubjectKey | None = None,
    ) -> None:
        self._sessions = sessions
        self.source = source
        # With a key, the personal identifiers of each stored event are indexed as keyed
        # hashes in the same transaction (gateway/audit/subjects.py).
        self._subject_key = subject_key
        # The newest link stored per instance, so continuity is checked without a query
        # per batch. Forgotten on `forget()` (e.g. a Kafka rebalance moved the partition).
        self._heads: dict[str, tuple[int, str]] = {}

    def forget(self) -> None:
        self._heads.clear()

    async def head(self, instance: str) -> tuple[int, str]:
        async with self._sessions() as s:
            return await self._load_head(s, instance)

    async def _load_head(self, s: AsyncSession, instance: str) -> tuple[int, str]:
        q = select(AuditRecord.seq, AuditRecord.hash).where(
            AuditRecord.instance == instance, AuditRecord.seq.is_not(None)
        )
        row = (await s.execute(q.order_by(AuditRecord.seq.desc()).limit(1))).first()
        if row is None or row[0] is None:
            return 0, GENESIS
        return int(row[0]), str(row[1])

    async def indexed(self, instance: str, lo: int, hi: int) -> tuple[set[int], set[int], int]:
        """What the store holds of ``instance``: the sequence numbers of its events and of
        its checkpoints in [lo, hi], and its highest event sequence number (0 if none).

        Example::

            events, checkpoints, highest = await store.indexed("gw-1", 101, 200)
        """
        async with self._sessions() as s:
            mine = AuditRecord.instance == instance
            events = await s.scalars(
                select(AuditRecord.seq).where(mine, AuditRecord.seq >= lo, AuditRecord.seq <= hi)
            )
            checkpoints = await s.scalars(
                select(AuditCheckpoint.seq).where(
                    AuditCheckpoint.instance == instance,
                    AuditCheckpoint.seq >= lo,
                    AuditCheckpoint.seq <= hi,
                )
            )
            highest = await s.scalar(select(func.max(AuditRecord.seq)).where(mine))
        return (
            {int(n) for n in events.all() if n is not None},
            {int(n) for n in checkpoints.all()},
            int(highest or 0),
        )

    async def ingest(
        self, events: Sequence[AuditEvent], checkpoints: Sequence[Checkpoint] = ()
    ) -> IngestResult:
        result = IngestResult()
        heads = dict(self._heads)
        async with self._sessions() as s, s.begin():
            # Heads are read before the batch goes in, or the batch would look stored.
            for instance in {e.instance for e in events} - heads.keys():
                heads[instance] = await self._load_head(s, instance)
            if events:
                stmt = (
                    _insert(s, AuditRecord)
                    .on_conflict_do_nothing(index_elements=["event_id"])
                    .returning(AuditRecord.event_id)
                )
                docs = [e.as_dict() for e in events]
                inserted = set((await s.scalars(stmt, docs)).all())
                # The statistics roll-up counts them in this transaction (gateway/audit/stats.py).
                await stats.add_events(
                    s, {d["event_id"]: d for d in docs if d["event_id"] in inserted}.values()
                )
                result.inserted = len(inserted)
                result.duplicates = len(events) - len(inserted)
                if self._subject_key is not None and inserted:
                    new = {e.event_id: e for e in events if e.event_id in inserted}
                    rows = index_rows(self._subject_key, new.values())
                    if rows:
                        await s.execute(
                            _insert(s, AuditSubject).on_conflict_do_nothing(
                                index_elements=["subject", "event_id"]
                            ),
                            rows,
                        )
                for event in events:
                    if event.event_id in inserted:
                        inserted.discard(event.event_id)  # a batch may repeat an event
                        await self._check(s, event, heads, result.findings)
            if checkpoints:
                stmt = _insert(s, AuditCheckpoint).on_conflict_do_nothing(
                    index_elements=["instance", "seq", "key_id"]
                )
                await s.execute(
                    stmt,
                    [
                        {
                            "instance": c.instance,
                            "seq": c.seq,
                            "hash": c.hash,
                            "signed_at": c.signed_at,
                            "key_id": c.key_id,
                            "signature": c.signature,
                        }
                        for c in checkpoints
                    ],
                )
                result.checkpoints = len(checkpoints)
            if result.findings:
                # A gap may have been filled later in the same batch (events sent again
                # after a broker lost them arrive behind newer ones): it is written down,
                # as resolved.
                filled = [await self._complete(s, f) for f in result.findings]
                s.add_all(self._rows(result.findings, filled))
        self._heads = heads
        return result

    async def _check(
        self,
        s: AsyncSession,
        event: AuditEvent,
        heads: dict[str, tuple[int, str]],
        findings: list[Finding],
    ) -> None:
        instance, seq = event.instance, event.seq
        if event_hash(event.as_dict()) != event.hash:
            findings.append(
                Finding(
                    instance,
                    "altered",
                    seq,
                    seq,
                    f"event {event.event_id} (seq {seq}) arrived not matching its own hash",
                )
            )
        last_seq, last_hash = heads[instance]
        if seq == last_seq + 1:
            if event.prev_hash != last_hash:
                findings.append(
                    Finding(
                        instance,
                        "broken_link",
                        seq,
                        seq,
                        f"seq {seq} does not link to the stored hash of seq {last_seq}",
                    )
                )
        elif seq > last_seq + 1:
            findings.append(
                Finding(
                    instance,
                    "missing",
                    last_seq + 1,
                    seq - 1,
                    f"{seq - last_seq - 1} event(s) between seq {last_seq} and {seq} have not "
                    "arrived",
                )
            )
        else:
            await self._fill(s, instance, seq)
            return
        heads[instance] = (seq, event.hash)

    async def _fill(self, s: AsyncSession, instance: str, seq: int) -> None:
        """A late event: if it completes a recorded gap, mark that gap resolved."""
        gaps = (
            await s.scalars(
                select(AuditFinding).where(
                    AuditFinding.instance == instance,
                    AuditFinding.kind == "missing",
                    AuditFinding.resolved_at.is_(None),
                    AuditFinding.seq_from <= seq,
                    AuditFinding.seq_to >= seq,
                )
            )
        ).all()
        for gap in gaps:
            assert gap.seq_from is not None and gap.seq_to is not None
            if await self._present(s, instance, gap.seq_from, gap.seq_to):
                await s.execute(
                    update(AuditFinding)
                    .where(AuditFinding.id == gap.id)
                    .values(resolved_at=datetime.now(UTC))
                )

    async def _present(self, s: AsyncSession, instance: str, seq_from: int, seq_to: int) -> bool:
        """Whether every event from ``seq_from`` to ``seq_to`` is stored."""
        present = await s.scalar(
            select(func.count(func.distinct(AuditRecord.seq))).where(
                AuditRecord.instance == instance, AuditRecord.seq.between(seq_from, seq_to)
            )
        )
        return present == seq_to - seq_from + 1

    async def _complete(self, s: AsyncSession, f: Finding) -> bool:
        if f.kind != "missing" or f.seq_from is None or f.seq_to is None:
            return False
        return await self._present(s, f.instance, f.seq_from, f.seq_to)

    def _rows(
        self, findings: Sequence[Finding], resolved: Sequence[bool] = ()
    ) -> list[AuditFinding]:
        now = datetime.now(UTC)
        done = list(resolved) + [False] * (len(findings) - len(resolved))
        return [
            AuditFinding(
                source=self.source,
                instance=f.instance,
                kind=f.kind,
                seq_from=f.seq_from,
                seq_to=f.seq_to,
                detail=f.detail,
                resolved_at=now if fixed else None,
            )
            for f, fixed in zip(findings, done, strict=True)
        ]

    async def record_findings(self, findings: Sequence[Finding]) -> None:
        async with self._sessions() as s, s.begin():
            s.add_all(self._rows(findings))

    async def register_key(self, signer: AuditSigner) -> None:
        async with self._sessions() as s, s.begin():
            await s.execute(
                _insert(s, AuditSigningKey)
                .values(
                    key_id=signer.key_id,
                    instance=signer.instance,
                    public_key=public_key_text(signer.public_key),
                    registered_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing(index_elements=["key_id"])
            )


async def index_stored(
    sessions: async_sessionmaker[AsyncSession], key: SubjectKey, *, batch: int = 1000
) -> tuple[int, int]:
    """Index the identifiers in the paths of records already stored (those stored before
    migration 0020, or by a writer without the key): (records read, index rows added).
    Safe to run again: a row already there is left as it is. The identifiers of bodies
    cannot be found this way (a record keeps their digests, not the bodies).

    Example::

        read, added = await index_stored(sessions, load_subject_key(settings.keys_dir))
    """
    last, read, added = 0, 0, 0
    while True:
        async with sessions() as s, s.begin():
            got = (
                await s.execute(
                    select(
                        AuditRecord.id,
                        AuditRecord.event_id,
                        AuditRecord.path,
                        AuditRecord.started_at,
                    )
                    .where(AuditRecord.id > last)
                    .order_by(AuditRecord.id)
                    .limit(batch)
                )
            ).all()
            if not got:
                return read, added
            last, read = got[-1].id, read + len(got)
            rows = [
                {"subject": key.digest(found), "event_id": r.event_id, "started_at": r.started_at}
                for r in got
                for found in sorted(identifiers(r.path))
            ]
            if rows:
                stmt = (
                    _insert(s, AuditSubject)
                    .on_conflict_do_nothing(index_elements=["subject", "event_id"])
                    .returning(AuditSubject.event_id)
                )
                added += len((await s.scalars(stmt, rows)).all())
