"""The bulk API, under `/bulk/v1` (docs/developer.md "Bulk packages"):

    GET /bulk/v1/{job}/packages        the job's downloadable packages, newest first
    GET /bulk/v1/{job}/packages/{id}   one package: its records, one JSON object a line

A package is what one successful run of a scheduled pull with `output: package` read
(gateway/events/jobs.py). A caller is a client of the province holding a right in the
job's `output.package.access` (deny by default). Every call, served or refused, is
audited in the exchange event's form, as the events API's are.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from pydantic import Field

from gateway.audit import AuditEvent, AuditUnavailable
from gateway.config.runtime import JobEntry
from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.logging import log
from gateway.core.problems import (
    ACCESS_DENIED,
    AUDIT_UNAVAILABLE,
    NOT_FOUND,
    UNKNOWN_JOB,
    Problem,
)
from gateway.edge.state import STATE
from gateway.edge.toolkit import Api, Call, QueryModel, Reply, Route, WholeNumber
from gateway.edge.toolkit import add_routes as _add
from gateway.events.audit import request_event
from gateway.identity.directory import ClientEntry

__all__ = ["PREFIX", "ROUTES", "add_routes"]

PREFIX = "/bulk/v1"
BULK_VERSION = "bulk"  # the audit event's service_version, as "events" is the events API's
_CALLER_KEY = web.RequestKey("lgsp.bulk.caller", ClientEntry)
_STARTED_KEY = web.RequestKey("lgsp.bulk.started", tuple[datetime, float])


def _event(request: web.Request, request_id: str) -> AuditEvent:
    started, t0 = request.get(_STARTED_KEY) or (datetime.now(UTC), time.perf_counter())
    event = request_event(
        request_id=request_id,
        instance=request.app[STATE].settings.instance_id,
        method=request.method[:16],
        path=request.raw_path,
        started_at=started,
        remote_addr=request.remote,
    )
    event.service_version = BULK_VERSION
    event.duration_ms = round((time.perf_counter() - t0) * 1000, 3)
    event.finished_at = started + timedelta(milliseconds=event.duration_ms)
    code = request.match_info.get("job", "")
    job = request.app[STATE].pipeline.config.jobs.get(code)
    event.service_code = code[:64] or None
    event.provider_code = job.spec.service_key[0] if job else None
    caller = request.get(_CALLER_KEY)
    if caller is not None:
        event.client_code, event.client_agency_code = caller.code, caller.agency_code
    return event


async def _refused(request: web.Request, problem: Problem, request_id: str) -> None:
    """Every refusal is audited too, with the caller when it was known."""
    event = _event(request, request_id)
    event.error_type, event.error_detail = problem.ptype.slug, problem.detail
    event.status = problem.status
    try:
        await request.app[STATE].audit.write(event)
    except AuditUnavailable as e:
        log.error("bulk API refusal not audited", request_id=request_id, error=str(e))


BULK = Api(PREFIX, on_problem=_refused)


class PackagesQuery(QueryModel):
    limit: WholeNumber = Field(50, ge=1, le=500, description="At most this many packages.")


def _job(call: Call[Any]) -> JobEntry:
    """The job the path names, if the caller may download its packages."""
    call.request[_STARTED_KEY] = (datetime.now(UTC), time.perf_counter())
    caller = call.caller
    call.request[_CALLER_KEY] = caller
    code = call.path["job"]
    job = call.state.pipeline.config.jobs.get(code)
    if job is None or job.spec.output.package is None:
        raise Problem(UNKNOWN_JOB, f"No scheduled job {code!r} makes bulk packages.")
    if not job.may_download(caller):
        raise Problem(
            ACCESS_DENIED,
            f"Client '{caller.code}' holds no right to the packages of job '{code}': the "
            "job's `output.package.access` does not name it or its groups.",
            client=caller.code,
        )
    return job


async def _audited(call: Call[Any], size: int, digest: str) -> None:
    """The served call's audit event, before its answer goes: withheld if it cannot be."""
    event = _event(call.request, call.request_id)
    event.status = 200
    event.response_bytes = size
    event.response_sha256 = digest
    try:
        await call.state.audit.write(event)
    except AuditUnavailable as e:
        raise Problem(
            AUDIT_UNAVAILABLE,
            "The download could not be recorded in the audit log, so it is withheld; retry later.",
        ) from e


def _package_out(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "job": p.job_code,
        "run_id": p.run_id,
        "mode": p.mode,
        "since": p.since.isoformat() if p.since else None,
        "as_of": p.as_of,
        "records": p.records,
        "created_at": p.created_at.isoformat(),
        "completed_at": p.completed_at.isoformat() if p.completed_at else None,
    }


async def list_packages(call: Call[PackagesQuery]) -> web.StreamResponse:
    job = _job(call)
    assert call.state.jobs is not None
    packages = await call.state.jobs.packages(job.code, call.query.limit)
    body = orjson.dumps({"items": [_package_out(p) for p in packages]})
    await _audited(call, len(body), hashlib.sha256(body).hexdigest())
    return web.Response(body=body, content_type="application/json")


async def download(call: Call[Any]) -> web.StreamResponse:
    job = _job(call)
    store = call.state.jobs
    assert store is not None
    package = await store.package(job.code, call.path["id"])
    if package is None:
        raise Problem(NOT_FOUND, f"Job '{job.code}' has no complete package {call.path['id']!r}.")
    # Two passes over the records, a chunk at a time: the digest and size first, so the
    # download is audited (or withheld) before a byte goes; then the records themselves.
    digest, size = hashlib.sha256(), 0
    async for chunk in store.package_chunks(package.id):
        for body in chunk:
            digest.update(body + b"\n")
            size += len(body) + 1
    await _audited(call, size, digest.hexdigest())
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "X-Package-Records": str(package.records),
            "X-Package-Run": package.run_id,
            "X-Package-Sha256": digest.hexdigest(),
            REQUEST_ID_HEADER: call.request_id,
        }
    )
    response.content_length = size
    await response.prepare(call.request)
    async for chunk in store.package_chunks(package.id):
        await response.write(b"".join(b + b"\n" for b in chunk))
    await response.write_eof()
    return response


ROUTES: tuple[Route, ...] = (
    BULK.route(
        "GET",
        "/{job}/packages",
        list_packages,
        "List a scheduled job's bulk packages (clients granted by the job only)",
        reply=Reply(200, "The job's complete packages, newest first."),
        query=PackagesQuery,
    ),
    BULK.route(
        "GET",
        "/{job}/packages/{id}",
        download,
        "Download a bulk package: its records, one JSON object a line (NDJSON)",
        reply=Reply(200, "The package's records in the order the provider gave them."),
    ),
)


def add_routes(app: web.Application) -> None:
    _add(app, ROUTES)
