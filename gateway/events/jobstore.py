"""Where scheduled pulls keep their state (gateway/store/jobs.py, migration 0025): one
job's lease, its watermark and next due time, its runs and their progress, and its bulk
packages.

The lease is a compare-and-set on the job's `job_states` row, as a leased queue's claim
is on a delivery (gateway/events/leases.py): `UPDATE ... WHERE lease_until IS NULL OR
lease_until < now`, so of replicas sharing the store one wins, and a holder that dies
leaves a lease that runs out. It is renewed in the transaction that writes each page, and
that transaction writes nothing unless this process still holds it: a holder that stalled
past its lease cannot write a page over the one that took over.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.store.jobs import BulkPackage, BulkPackageRecord, JobRun, JobState
from gateway.store.models import utcnow

__all__ = ["Ending", "LeaseLost", "RunProgress", "SqlJobStore"]

REQUESTED, RUNNING, SUCCEEDED, FAILED = "requested", "running", "succeeded", "failed"


@dataclass(frozen=True, slots=True)
class Ending:
    """How a successful run ends: the watermark it leaves (`watermark_is_latest`: the
    latest change time read, known only with the last page), the packages kept."""

    watermark: datetime | None
    watermark_is_latest: bool
    keep_packages: int | None


class LeaseLost(Exception):
    """Another replica holds the job's lease now: this one stops without writing."""


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A run as its runner needs it: where it starts from and how far it got."""

    run_id: str
    job_code: str
    since: datetime | None
    as_of: str | None
    cursor: str | None
    pages: int
    records: int
    latest_change: datetime | None
    started_at: datetime
    package_id: str | None
    attempts: int


def _progress(r: JobRun) -> RunProgress:
    assert r.started_at is not None
    return RunProgress(
        r.run_id, r.job_code, r.since, r.as_of, r.cursor, r.pages, r.records,
        r.latest_change, r.started_at, r.package_id, r.attempts,
    )  # fmt: skip


class SqlJobStore:
    """Scheduled pulls' state in the gateway's database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def state(self, code: str) -> JobState | None:
        """The job's state row, if it has one yet."""
        async with self.sessions() as s:
            return await s.get(JobState, code)

    async def ensure_state(self, code: str, cron: str, next_due: datetime) -> JobState:
        """The job's state row, made (due at `next_due`) when the job is new, and due
        again from `next_due` when its cron expression changed."""
        async with self.sessions() as s, s.begin():
            row = await s.get(JobState, code)
            if row is None:
                dialect = s.get_bind().dialect.name
                make = pg_insert if dialect == "postgresql" else sqlite_insert
                # Two replicas may both see no row: one insert wins, the other does nothing.
                await s.execute(
                    make(JobState)
                    .values(job_code=code, cron=cron, next_due_at=next_due, updated_at=utcnow())
                    .on_conflict_do_nothing()
                )
                row = await s.get(JobState, code)
                assert row is not None
            elif row.cron != cron:
                row.cron, row.next_due_at, row.updated_at = cron, next_due, utcnow()
            return row

    async def pending(self, code: str, now: datetime) -> bool:
        """Is there something to do: a run to resume or one asked for, or a due time
        passed?"""
        async with self.sessions() as s:
            open_run = await s.scalar(
                select(JobRun.id)
                .where(JobRun.job_code == code, JobRun.state.in_((REQUESTED, RUNNING)))
                .limit(1)
            )
            due = await s.scalar(select(JobState.next_due_at).where(JobState.job_code == code))
        return open_run is not None or (due is not None and due <= now)

    async def acquire(self, code: str, owner: str, lease_seconds: float) -> bool:
        """Take the job's lease if nobody holds it (or a holder's ran out)."""
        now = utcnow()
        async with self.sessions() as s, s.begin():
            result = await s.execute(
                update(JobState)
                .where(
                    JobState.job_code == code,
                    (JobState.lease_until.is_(None)) | (JobState.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            )
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def release(self, code: str, owner: str) -> None:
        """Give the lease back (if still held), so another replica need not wait."""
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(JobState)
                .where(JobState.job_code == code, JobState.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    async def _renew(self, s: AsyncSession, code: str, owner: str, lease_seconds: float) -> None:
        result = await s.execute(
            update(JobState)
            .where(JobState.job_code == code, JobState.lease_owner == owner)
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
        if int(getattr(result, "rowcount", 0) or 0) != 1:
            raise LeaseLost(code)

    async def request_run(
        self,
        code: str,
        mode: str,
        by: str | None,
        *,
        since: datetime | None = None,
        as_of: str | None = None,
    ) -> str | None:
        """Ask for a run now (an operator), from `since` or as of `as_of` rather than the
        job's own (watermark, date) when given; its id, or None when one is already asked
        for and not yet taken."""
        async with self.sessions() as s, s.begin():
            waiting = await s.scalar(
                select(JobRun.run_id).where(JobRun.job_code == code, JobRun.state == REQUESTED)
            )
            if waiting is not None:
                return None
            run_id = str(uuid.uuid4())
            run = _new_run(run_id, code, "manual", by, mode, REQUESTED)
            run.since, run.as_of = since, as_of  # set: the operator's, kept when taken
            s.add(run)
        return run_id

    async def take_run(
        self,
        code: str,
        owner: str,
        lease_seconds: float,
        *,
        due: bool,
        mode: str,
        as_of: str | None,
        start_from: datetime | None,
        next_due: datetime,
        package: bool,
    ) -> RunProgress | None:
        """The run to do now, under the lease: the one a dead holder left running (to
        resume from its last page), else the oldest asked for, else a new scheduled one
        when `due`. Taking a scheduled fire moves the due time to `next_due`."""
        async with self.sessions() as s, s.begin():
            await self._renew(s, code, owner, lease_seconds)
            run = await s.scalar(
                select(JobRun)
                .where(JobRun.job_code == code, JobRun.state.in_((RUNNING, REQUESTED)))
                .order_by(JobRun.state.desc(), JobRun.id)  # "running" before "requested"
                .limit(1)
            )
            if due:
                await s.execute(
                    update(JobState).where(JobState.job_code == code).values(next_due_at=next_due)
                )
            if run is None and not due:
                return None
            if run is None:
                run = _new_run(str(uuid.uuid4()), code, "schedule", None, mode, REQUESTED)
                s.add(run)
            if run.state == REQUESTED:
                state = await s.get(JobState, code)
                run.state, run.started_at, run.mode = RUNNING, utcnow(), mode
                run.as_of = run.as_of or as_of
                if mode == "as_of":
                    run.since = None
                elif run.since is None:
                    run.since = (state.watermark if state else None) or start_from
                if package:
                    run.package_id = str(uuid.uuid4())
                    s.add(_new_package(run))
            run.attempts += 1
            run.holder = owner
            await s.flush()
            return _progress(run)

    async def save_page(
        self,
        run: RunProgress,
        owner: str,
        lease_seconds: float,
        *,
        cursor: str | None,
        records: int,
        latest_change: datetime | None,
        write: Any = None,
        ending: Ending | None = None,
    ) -> RunProgress:
        """Record one page done: `write(session)` writes its records (events, a package's
        rows), in the same transaction as the run's new cursor, so a page is either all
        there with its progress or not at all. The last page's transaction also ends the
        run (`ending`): no run is left finished but not marked so."""
        async with self.sessions() as s, s.begin():
            await self._renew(s, run.job_code, owner, lease_seconds)
            if write is not None:
                await write(s)
            pages, total = run.pages + 1, run.records + records
            await s.execute(
                update(JobRun)
                .where(JobRun.run_id == run.run_id)
                .values(cursor=cursor, pages=pages, records=total, latest_change=latest_change)
            )
            if ending is not None:
                watermark = ending.watermark
                if watermark is None and ending.watermark_is_latest:
                    watermark = latest_change
                await _finish_in(s, run.job_code, run.run_id, run.package_id, total, None, None,
                                 watermark, ending.keep_packages)  # fmt: skip
        return RunProgress(
            run.run_id, run.job_code, run.since, run.as_of, cursor, pages, total,
            latest_change, run.started_at, run.package_id, run.attempts,
        )  # fmt: skip

    async def add_package_records(
        self, s: AsyncSession, package_id: str, first: int, bodies: list[bytes]
    ) -> None:
        """A page's records into a package (in the page's transaction)."""
        if bodies:
            await s.execute(
                insert(BulkPackageRecord),
                [
                    {"package_id": package_id, "seq": first + i, "body": b}
                    for i, b in enumerate(bodies)
                ],
            )

    async def finish(
        self,
        run: RunProgress,
        owner: str,
        *,
        error_type: str | None,
        error: str | None,
        watermark: datetime | None,
        keep_packages: int | None,
    ) -> None:
        """End the run: succeeded (the watermark moved to `watermark`, its package made
        downloadable, packages beyond `keep_packages` deleted) or failed (the watermark
        left where it was, its package marked failed)."""
        async with self.sessions() as s, s.begin():
            await self._renew(s, run.job_code, owner, 0)
            await _finish_in(s, run.job_code, run.run_id, run.package_id, run.records,
                             error_type, error, watermark, keep_packages)  # fmt: skip

    async def runs(self, code: str | None, limit: int, *, state: str | None = None) -> list[JobRun]:
        """The latest runs of the job (of every job: `code` None), newest first; only
        those in `state` when it is given."""
        q = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
        if code is not None:
            q = q.where(JobRun.job_code == code)
        if state is not None:
            q = q.where(JobRun.state == state)
        async with self.sessions() as s:
            return list(await s.scalars(q))

    async def packages(self, code: str, limit: int) -> list[BulkPackage]:
        """The job's downloadable packages, newest first."""
        async with self.sessions() as s:
            rows = await s.scalars(
                select(BulkPackage)
                .where(BulkPackage.job_code == code, BulkPackage.state == "complete")
                .order_by(BulkPackage.created_at.desc(), BulkPackage.id)
                .limit(limit)
            )
            return list(rows)

    async def package(self, code: str, package_id: str) -> BulkPackage | None:
        """A downloadable package of the job, or None."""
        async with self.sessions() as s:
            p = await s.get(BulkPackage, package_id)
        if p is None or p.job_code != code or p.state != "complete":
            return None
        return p

    async def package_chunks(
        self, package_id: str, *, chunk: int = 1000
    ) -> AsyncIterator[list[bytes]]:
        """A package's records in order, `chunk` at a time: a large package is never
        all in memory."""
        after = -1
        while True:
            async with self.sessions() as s:
                rows = (
                    await s.execute(
                        select(BulkPackageRecord.seq, BulkPackageRecord.body)
                        .where(
                            BulkPackageRecord.package_id == package_id,
                            BulkPackageRecord.seq > after,
                        )
                        .order_by(BulkPackageRecord.seq)
                        .limit(chunk)
                    )
                ).all()
            if not rows:
                return
            after = rows[-1][0]
            yield [body for _, body in rows]


async def _finish_in(
    s: AsyncSession,
    code: str,
    run_id: str,
    package_id: str | None,
    records: int,
    error_type: str | None,
    error: str | None,
    watermark: datetime | None,
    keep_packages: int | None,
) -> None:
    now = utcnow()
    ok = error_type is None
    await s.execute(
        update(JobRun)
        .where(JobRun.run_id == run_id)
        .values(
            state=SUCCEEDED if ok else FAILED,
            finished_at=now,
            error_type=error_type,
            error=error[:4000] if error else None,
        )
    )
    if ok and watermark is not None:
        # Forward only: a backfill from an earlier time leaves a later watermark as it was.
        await s.execute(
            update(JobState)
            .where(
                JobState.job_code == code,
                or_(JobState.watermark.is_(None), JobState.watermark < watermark),
            )
            .values(watermark=watermark, updated_at=now)
        )
    if package_id is not None:
        await s.execute(
            update(BulkPackage)
            .where(BulkPackage.id == package_id)
            .values(state="complete" if ok else "failed", records=records, completed_at=now)
        )
        if ok and keep_packages is not None:
            await _prune(s, code, keep_packages)


def _new_run(run_id: str, code: str, trigger: str, by: str | None, mode: str, state: str) -> JobRun:
    return JobRun(
        run_id=run_id, job_code=code, trigger=trigger, requested_by=by, state=state,
        mode=mode, pages=0, records=0, attempts=0, requested_at=utcnow(),
    )  # fmt: skip


def _new_package(run: JobRun) -> BulkPackage:
    assert run.package_id is not None
    return BulkPackage(
        id=run.package_id, job_code=run.job_code, run_id=run.run_id, state="building",
        mode=run.mode, since=run.since, as_of=run.as_of, records=0, created_at=utcnow(),
    )  # fmt: skip


async def _prune(s: AsyncSession, code: str, keep: int) -> None:
    # The newest `keep` complete packages stay; older ones go (their records cascade).
    kept = (
        select(BulkPackage.id)
        .where(BulkPackage.job_code == code, BulkPackage.state == "complete")
        .order_by(BulkPackage.created_at.desc())
        .limit(keep)
    )
    old = list(
        await s.scalars(
            select(BulkPackage.id).where(
                BulkPackage.job_code == code,
                BulkPackage.state.in_(("complete", "failed")),
                BulkPackage.id.not_in(kept),
            )
        )
    )
    if old:
        await s.execute(delete(BulkPackageRecord).where(BulkPackageRecord.package_id.in_(old)))
        await s.execute(delete(BulkPackage).where(BulkPackage.id.in_(old)))
