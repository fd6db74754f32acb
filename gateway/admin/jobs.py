"""Scheduled pulls as operators see and drive them: each job's state (watermark, next
due time, who holds its lease) and runs, and a run asked for now, an admin event naming
who asked. Shared by every face (the admin API today, the console later).

The jobs themselves are policy (`jobs:` in the policy files, /admin/v1/jobs); their
state and runs are not, and live in their own tables (gateway/store/jobs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin.actor import Actor
from gateway.admin.refusals import parse, refused
from gateway.config.runtime import RuntimeConfig
from gateway.core.problems import CONFLICT, UNKNOWN_JOB, Problem
from gateway.events.jobs import next_fire
from gateway.events.jobstore import SqlJobStore
from gateway.store.changes import note
from gateway.store.jobs import JobRun
from gateway.store.models import AdminEvent, utcnow

__all__ = ["JobView", "RunIn", "RunView", "all_runs", "job_view", "request_run", "runs"]


class RunIn(BaseModel):
    """A run asked for now, as the job declares it (no body), or from another point: a
    delta job's changes `since` a time (a backfill; the watermark never moves back), an
    as-of job's data `as_of` another date."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = None
    as_of: date | None = None


@dataclass(frozen=True, slots=True)
class RunView:
    job: str
    run_id: str
    trigger: str
    requested_by: str | None
    state: str
    mode: str
    since: datetime | None
    as_of: str | None
    pages: int
    records: int
    cursor: str | None
    latest_change: datetime | None
    attempts: int
    holder: str | None
    package_id: str | None
    error_type: str | None
    error: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobView:
    code: str
    name: str
    enabled: bool
    cron: str
    watermark: datetime | None
    next_due_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    runs: list[RunView]


def _job(config: RuntimeConfig, code: str) -> None:
    if code not in config.jobs:
        raise Problem(UNKNOWN_JOB, f"No scheduled job {code!r}; GET /admin/v1/jobs lists them.")


async def job_view(
    store: SqlJobStore, config: RuntimeConfig, code: str, *, limit: int = 20
) -> JobView:
    """The job's state and its latest `limit` runs, newest first.

    Example:
        >>> (await job_view(store, config, "thay-doi-cu-tru")).runs[0].state
        'succeeded'
    """
    _job(config, code)
    spec = config.jobs[code].spec
    state = await store.state(code)
    rows = await store.runs(code, limit)
    lease_live = (
        state is not None and state.lease_until is not None and state.lease_until > utcnow()
    )
    return JobView(
        code=code,
        name=spec.name,
        enabled=spec.enabled,
        cron=spec.cron,
        watermark=state.watermark if state else None,
        next_due_at=state.next_due_at if state else next_fire(spec.cron, utcnow()),
        lease_owner=state.lease_owner if state and lease_live else None,
        lease_until=state.lease_until if state and lease_live else None,
        runs=[_view(r) for r in rows],
    )


def _view(r: JobRun) -> RunView:
    return RunView(
        r.job_code,
        r.run_id,
        r.trigger,
        r.requested_by,
        r.state,
        r.mode,
        r.since,
        r.as_of,
        r.pages,
        r.records,
        r.cursor,
        r.latest_change,
        r.attempts,
        r.holder,
        r.package_id,
        r.error_type,
        r.error,
        r.requested_at,
        r.started_at,
        r.finished_at,
    )


async def runs(store: SqlJobStore, config: RuntimeConfig, code: str, limit: int) -> JobView:
    """`job_view` with `limit` runs (the admin API's runs listing)."""
    return await job_view(store, config, code, limit=limit)


async def all_runs(store: SqlJobStore, *, state: str | None, limit: int) -> list[RunView]:
    """The latest runs of every job, newest first (only those in `state` if given): what
    an operator looks at for failed runs.

    Example:
        >>> [r.job for r in await all_runs(store, state="failed", limit=10)]
        ['thay-doi-cu-tru']
    """
    return [_view(r) for r in await store.runs(None, limit, state=state)]


async def request_run(
    store: SqlJobStore,
    sessions: async_sessionmaker[AsyncSession],
    config: RuntimeConfig,
    actor: Actor,
    code: str,
    body: dict[str, Any] | None = None,
) -> str:
    """Ask for a run of the job now (the next replica to look takes it), as `body`
    (`RunIn`) says; its run id. An admin event names who asked. 409 when one is already
    asked for and not yet taken; 422 for a `since` on an as-of job or the other way.

    Example:
        >>> await request_run(store, sessions, config, actor, "thay-doi-cu-tru")
        '6f0c...'
    """
    _job(config, code)
    spec = config.jobs[code].spec
    if not spec.enabled:
        raise Problem(CONFLICT, f"The job {code!r} is disabled: enable it in the policy first.")
    asked = parse(RunIn, body or {}, "The run")
    wrong = "since" if asked.since and spec.mode == "as_of" else None
    if asked.as_of and spec.mode != "as_of":
        wrong = "as_of"
    if wrong is not None:
        raise refused(
            "The run",
            [{"field": wrong, "detail": f"the job's mode is {spec.mode}: it takes no {wrong}"}],
        )
    as_of = asked.as_of.isoformat() if asked.as_of else None
    run_id = await store.request_run(code, spec.mode, actor.name, since=asked.since, as_of=as_of)
    if run_id is None:
        raise Problem(CONFLICT, f"A run of {code!r} is already asked for and not yet started.")
    async with sessions() as s, s.begin():
        # A run asked for changes no configuration: noted without a version bump.
        await note(
            s,
            [
                AdminEvent(
                    actor=actor.name,
                    action="job.run",
                    target=f"job {code}",
                    after={
                        "run_id": run_id,
                        **({"since": asked.since.isoformat()} if asked.since else {}),
                        **({"as_of": as_of} if as_of else {}),
                    },
                    comment=actor.comment,
                )
            ],
        )
    return run_id
