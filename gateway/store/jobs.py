"""Models of scheduled pulls (migration 0025), beside gateway/store/models.py and on its
`Base` (the package registers them: gateway/store/__init__.py).

    jobs                  a job as the policy declares it (JobSpec), one document
    job_states            per job: its watermark, when it is next due, and the lease that
                          lets one replica at a time run it
    job_runs              each run: what it asked, how far it got (the page cursor and the
                          records so far, written after each page), how it ended
    bulk_packages         a run's records kept for download, one package per run
    bulk_package_records  the records of a package, in the order read
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.models import Base, utcnow

__all__ = ["BulkPackage", "BulkPackageRecord", "Job", "JobRun", "JobState"]


class Job(Base):
    """A scheduled pull as the policy declares it (gateway/config/policy.py JobSpec)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)


class JobState(Base):
    """What outlives one run of a job: not policy, kept when the job is redeclared."""

    __tablename__ = "job_states"

    job_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The latest change time a successful run read (or its start): the next "since".
    watermark: Mapped[datetime | None] = mapped_column()
    # The next time the cron expression fires, after the last one acted on.
    next_due_at: Mapped[datetime | None] = mapped_column()
    cron: Mapped[str | None] = mapped_column(String(120))  # what next_due_at was made from
    # One replica at a time: a compare-and-set of these two, renewed after each page; a
    # holder that died leaves a lease that runs out, and the next taker resumes its run.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRun(Base):
    """One run of a job. `state`: requested (by an operator, not yet taken), running,
    succeeded, failed."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_state", "job_code", "state"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(String(36), unique=True)
    job_code: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))  # "schedule" or "manual"
    requested_by: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(32))
    since: Mapped[datetime | None] = mapped_column()  # the watermark it started from
    as_of: Mapped[str | None] = mapped_column(String(10))
    # Where to go on: the provider's next cursor, or the next page number; pages and
    # records done so far. Written with each page's records, in one transaction.
    cursor: Mapped[str | None] = mapped_column(String(2048))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    records: Mapped[int] = mapped_column(Integer, default=0)
    latest_change: Mapped[datetime | None] = mapped_column()
    # Times the run was taken: more than one means it was resumed after its holder died.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str | None] = mapped_column(String(128))
    package_id: Mapped[str | None] = mapped_column(String(36))
    error_type: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class BulkPackage(Base):
    """A run's records for download. `state`: building, complete (downloadable), failed."""

    __tablename__ = "bulk_packages"
    __table_args__ = (Index("ix_bulk_packages_job_created", "job_code", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_code: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(32))
    since: Mapped[datetime | None] = mapped_column()
    as_of: Mapped[str | None] = mapped_column(String(10))
    records: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()


class BulkPackageRecord(Base):
    """One record of a package, as the provider gave it (JSON bytes)."""

    __tablename__ = "bulk_package_records"
    __table_args__ = (UniqueConstraint("package_id", "seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    package_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("bulk_packages.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
