"""Scheduled pulls' runs over HTTP: a job's state and runs, and a run asked for now (an
admin event naming the caller; gateway/admin/jobs.py). The jobs themselves are the
`/jobs` policy collection (gateway/edge/admin_api/collections.py)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import Field

from gateway.admin import jobs as ops
from gateway.admin.actor import OPERATE, READ
from gateway.edge.admin_api.api import ADMIN, BODY, editor
from gateway.edge.admin_api.models import CommentQuery, _Out
from gateway.edge.toolkit import Body, Call, QueryModel, Reply, Route, WholeNumber
from gateway.edge.toolkit import json_response as respond

__all__ = ["ROUTES"]


class RunOut(_Out):
    job: str
    run_id: str = Field(description="named in each page's request id: job:<job>:<run>:<page>")
    trigger: str = Field(description='"schedule" or "manual"')
    requested_by: str | None
    state: str = Field(description="requested, running, succeeded or failed")
    mode: str
    since: datetime | None = Field(description="the watermark the run asked from")
    as_of: str | None
    pages: int
    records: int
    cursor: str | None = Field(description="where a resumed run goes on")
    latest_change: datetime | None
    attempts: int = Field(description="times taken: more than one, resumed after a crash")
    holder: str | None
    package_id: str | None
    error_type: str | None
    error: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobRunsOut(_Out):
    code: str
    name: str
    enabled: bool
    cron: str = Field(description="5 fields, Vietnam time")
    watermark: datetime | None = Field(description="the next delta run asks for changes since")
    next_due_at: datetime | None
    lease_owner: str | None = Field(description="the replica running it now, if any")
    lease_until: datetime | None
    runs: list[RunOut]


class RunRequested(_Out):
    run_id: str
    state: str


class RunList(_Out):
    items: list[RunOut]


class AllRunsQuery(QueryModel):
    state: Literal["requested", "running", "succeeded", "failed"] | None = Field(
        None, description="Only runs in this state."
    )
    limit: WholeNumber = Field(50, ge=1, le=1000, description="At most this many runs.")


class RunsQuery(QueryModel):
    limit: WholeNumber = Field(20, ge=1, le=500, description="At most this many runs.")


async def list_runs(call: Call[RunsQuery]) -> web.StreamResponse:
    assert call.state.jobs is not None
    view = await ops.runs(
        call.state.jobs, call.state.pipeline.config, call.path["code"], call.query.limit
    )
    return respond(JobRunsOut.model_validate(dataclasses.asdict(view)).model_dump(mode="json"))


async def list_all_runs(call: Call[AllRunsQuery]) -> web.StreamResponse:
    assert call.state.jobs is not None
    views = await ops.all_runs(call.state.jobs, state=call.query.state, limit=call.query.limit)
    items = [RunOut.model_validate(dataclasses.asdict(v)).model_dump(mode="json") for v in views]
    return respond({"items": items})


async def request_run(call: Call[CommentQuery]) -> web.StreamResponse:
    assert call.state.jobs is not None
    run_id = await ops.request_run(
        call.state.jobs,
        call.state.sessions,
        call.state.pipeline.config,
        editor(call).actor,
        call.path["code"],
        await call.json(BODY) if call.request.body_exists else None,
    )
    if call.state.scheduler is not None:
        call.state.scheduler.wake()
    return respond({"run_id": run_id, "state": "requested"}, status=202)


ROUTES: tuple[Route, ...] = (
    ADMIN.route(
        "GET",
        "/job-runs",
        list_all_runs,
        "The latest runs of every scheduled job (the failed ones, say), newest first",
        reply=Reply(200, "Runs of every job, newest first.", RunList),
        roles=READ,
        query=AllRunsQuery,
    ),
    ADMIN.route(
        "GET",
        "/jobs/{code}/runs",
        list_runs,
        "A scheduled job's state (watermark, next due, lease) and its latest runs",
        reply=Reply(200, "The job's state and runs, newest first.", JobRunsOut),
        roles=READ,
        query=RunsQuery,
    ),
    ADMIN.route(
        "POST",
        "/jobs/{code}/runs",
        request_run,
        "Run a scheduled job now (taken by the next replica to look; an admin event)",
        reply=Reply(202, "The run, asked for.", RunRequested),
        roles=OPERATE,
        body=Body(ops.RunIn),
        query=CommentQuery,
    ),
)
