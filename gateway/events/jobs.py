"""Scheduled bulk and delta pulls (docs/administrator.md "Scheduled pulls"): the scheduler
`lgsp serve` runs in every worker, and the run of one job.

Every few seconds the scheduler looks at each enabled job of the policy: is a run due
(its cron expression, read in Vietnam time, fired), asked for by an operator, or left
unfinished by a holder that died? If so it takes the job's lease in the store
(gateway/events/jobstore.py): of all replicas one runs it, the others pass.

A run pages through the provider's answers. Each page is an exchange, made as the job's
client of the province would make it through `/r1`: that client's right to the service
checked, its accountability fields (the officer, procedure and case the policy states for
the job) sent, the province's credentials at the upstream, the adapter and the response
schema, the upstream client's timeouts, breaker and concurrency limit, and one audit
event in the exchange's form with its own request id, `job:<job>:<run>:<page>`. Then the
page's records are written (published as events of the job's topic, through the same
path as `POST /events/v1/{topic}`, checked against the topic's schema; or added to the
run's bulk package) in one transaction with the run's progress: its next cursor and the
records so far. A crash loses at most the page in flight, which the next holder asks for
again; what was written is written once (exactly once: no record is published or
packaged twice by one run). On the Kafka event store the broker acknowledges a page's
events before the progress commits: a crash between the two publishes them again under
the same ids (at least once).

A run that succeeds moves the watermark (the latest change time it read, or the time it
started) and makes its package downloadable; one that fails leaves the watermark where it
was, so the next run asks for the same changes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import orjson
from croniter import croniter
from multidict import CIMultiDict
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditEvent, AuditSink, AuditUnavailable
from gateway.audit.subjects import in_body
from gateway.config.policy import JobSpec
from gateway.config.runtime import JobEntry, RuntimeConfig, ServiceEntry
from gateway.conversion.mapping.engine import Context
from gateway.core.headers import (
    CASE_HEADER,
    CLIENT_AGENCY_HEADER,
    CLIENT_ID_HEADER,
    OFFICER_HEADER,
    PROCEDURE_HEADER,
    REQUEST_ID_HEADER,
)
from gateway.core.logging import log
from gateway.core.messages import OutboundRequest
from gateway.core.problems import (
    ACCESS_DENIED,
    AUDIT_UNAVAILABLE,
    INTERNAL_ERROR,
    INVALID_EVENT,
    JOB_ANSWER_UNREADABLE,
    JOB_PAGE_LIMIT,
    SERVICE_DISABLED,
    TOPIC_UNAVAILABLE,
    UPSTREAM_INVALID_MESSAGE,
    Problem,
)
from gateway.events.jobstore import Ending, LeaseLost, RunProgress, SqlJobStore
from gateway.events.model import Publication
from gateway.events.store import EventStore, SqlEventStore
from gateway.store.models import utcnow
from gateway.telemetry.metrics import GatewayMetrics
from gateway.upstream.client import UpstreamClient

__all__ = ["VIETNAM", "JobScheduler", "Page", "next_fire", "publisher_of"]

VIETNAM = timezone(timedelta(hours=7), "ICT")  # no daylight saving: a fixed offset is exact
_EVENT_IDS = uuid.UUID("6b1c0f1e-5a53-4c37-9d1a-4c4753502d31")  # uuid5 namespace of job events


def next_fire(cron: str, after: datetime) -> datetime:
    """The first time after `after` the cron expression fires, read in Vietnam time (UTC).

    Example:
        >>> next_fire("0 2 * * *", datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
        datetime.datetime(2026, 12, 4, 19, 0, tzinfo=datetime.timezone.utc)
    """
    at: datetime = croniter(cron, after.astimezone(VIETNAM)).get_next(datetime)
    return at.astimezone(UTC)


def publisher_of(code: str) -> str:
    """The publisher a job's events carry: the gateway itself, for that job."""
    return f"lgsp:job:{code}"[:64]


@dataclass(frozen=True, slots=True)
class Page:
    """One page read: its records (each as JSON bytes too), where to go on, and whether
    it was the last."""

    records: list[dict[str, Any]]
    bodies: list[bytes]
    next_cursor: str | None
    last: bool


class JobScheduler:
    """Runs the policy's jobs, one replica at a time per job, until closed."""

    def __init__(
        self,
        store: SqlJobStore,
        events: EventStore,
        upstream: UpstreamClient,
        audit: AuditSink,
        config: Callable[[], RuntimeConfig],
        *,
        instance: str,
        tick_seconds: float = 15.0,
        lease_seconds: float = 120.0,
        delivered: Callable[[], None] | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.upstream = upstream
        self.audit = audit
        self.config = config
        self.instance = instance
        # One name per process: a lease names the holder, a resumed run its new holder.
        self.owner = f"{instance}:{uuid.uuid4().hex[:12]}"
        self.tick_seconds = tick_seconds
        self.lease_seconds = lease_seconds
        self.delivered = delivered  # wakes the delivery worker after a page of events
        self.metrics = metrics  # each page counted as an exchange of the job's client
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[bool]] = {}
        self._states: dict[str, str] = {}  # jobs whose state row holds this cron already
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Start the loop (`lgsp serve`, in each worker)."""
        self._task = asyncio.create_task(self._loop(), name="lgsp-jobs")

    async def close(self) -> None:
        """Stop the loop and the runs in progress; a run cut short is resumed from its
        last page by the next holder (the lease is given back at once rather than left to
        run out)."""
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._running.clear()

    def wake(self) -> None:
        """Look at the jobs now (an operator asked for a run)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                self._spawn()
            except Exception as e:  # the configuration being swapped, say: next tick
                log.warning("scheduled jobs not looked at", error=str(e))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
            self._wake.clear()

    def _spawn(self) -> None:
        # Each job in a task of its own: a long run of one does not hold the others back,
        # and a job already being looked at in this process is not looked at twice.
        for job in list(self.config().jobs.values()):
            if job.spec.enabled and job.code not in self._running:
                task = asyncio.create_task(self._guarded(job), name=f"lgsp-job-{job.code}")
                self._running[job.code] = task
                task.add_done_callback(functools.partial(self._done, job.code))

    def _done(self, code: str, _: asyncio.Task[bool]) -> None:
        self._running.pop(code, None)

    async def _guarded(self, job: JobEntry) -> bool:
        try:
            return await self.consider(job)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the store unreachable, say: the job is looked at next tick
            log.warning("scheduled job not looked at", job=job.code, error=str(e))
            return False

    async def tick(self) -> int:
        """Look at every enabled job once, at the same time; the runs this process made."""
        jobs = [j for j in self.config().jobs.values() if j.spec.enabled]
        made = await asyncio.gather(*(self._guarded(j) for j in jobs))
        return sum(made)

    async def consider(self, job: JobEntry) -> bool:
        """Run the job if there is something to do and this process wins its lease."""
        spec, now = job.spec, utcnow()
        if self._states.get(spec.code) != spec.cron:  # a write: once per job and cron
            await self.store.ensure_state(spec.code, spec.cron, next_fire(spec.cron, now))
            self._states[spec.code] = spec.cron
        if not await self.store.pending(spec.code, now):
            return False
        if not await self.store.acquire(spec.code, self.owner, self._lease(job)):
            return False
        try:
            return await self._take_and_run(job)
        except LeaseLost:
            log.warning("job lease lost mid-run: another replica goes on", job=spec.code)
            return False
        finally:
            await asyncio.shield(self.store.release(spec.code, self.owner))

    def _lease(self, job: JobEntry) -> float:
        # A lease outlives the slowest page (the service's timeout, retries within it),
        # or a page still being read would be taken over and asked for again.
        service = self.config().services.get(job.spec.service_key)
        slowest = (service.timeout.total or 0.0) if service is not None else 0.0
        return max(self.lease_seconds, 2 * slowest + 5)

    async def _take_and_run(self, job: JobEntry) -> bool:
        spec, now = job.spec, utcnow()
        state = await self.store.state(spec.code)
        due = state is not None and state.next_due_at is not None and state.next_due_at <= now
        run = await self.store.take_run(
            spec.code,
            self.owner,
            self._lease(job),
            due=due,
            mode=spec.mode,
            as_of=spec.as_of.isoformat() if spec.as_of else None,
            start_from=spec.start_from,
            next_due=next_fire(spec.cron, now),
            package=spec.output.package is not None,
        )
        if run is None:
            return False
        log.info("job run", job=spec.code, run=run.run_id, resumed_at_page=run.pages + 1)
        await self.run(job, run)
        return True

    async def run(self, job: JobEntry, run: RunProgress) -> None:
        """Page from where the run got to until the last page, then end it."""
        spec = job.spec
        while True:
            try:
                if run.pages >= spec.paging.max_pages:
                    raise Problem(
                        JOB_PAGE_LIMIT,
                        f"{run.pages} pages read and the provider still gives more: "
                        f"raise paging.max_pages ({spec.paging.max_pages}) or run more often.",
                    )
                page = await self._page(job, run)
                latest = _latest(spec, run.latest_change, page.records)
                write = self._writer(job, run, page)
            except Problem as p:
                await self._finish(job, run, p.ptype.slug, p.detail)
                return
            except Exception as e:  # a bug, not the provider: said so, not retried forever
                log.exception("job run broke", job=spec.code, run=run.run_id)
                await self._finish(job, run, INTERNAL_ERROR.slug, f"{type(e).__name__}: {e}")
                return
            run = await self.store.save_page(
                run,
                self.owner,
                self._lease(job),
                cursor=page.next_cursor,
                records=len(page.records),
                latest_change=latest,
                write=write,
                ending=self._ending(spec, run) if page.last else None,
            )
            if self.delivered is not None and spec.output.topic is not None and page.records:
                self.delivered()
            if page.last:
                log.info("job run succeeded", job=spec.code, run=run.run_id, records=run.records)
                return

    def _ending(self, spec: JobSpec, run: RunProgress) -> Ending:
        keep = spec.output.package.keep if spec.output.package else None
        if spec.mode != "since_last_success":
            return Ending(None, False, keep)  # a snapshot as of a date: no watermark
        if spec.changed_field:
            return Ending(None, True, keep)
        return Ending(run.started_at, False, keep)

    async def _finish(
        self, job: JobEntry, run: RunProgress, error_type: str, error: str | None
    ) -> None:
        """End a failed run: the watermark stays where it was."""
        log.warning("job run failed", job=job.spec.code, run=run.run_id, error=error)
        await self.store.finish(
            run, self.owner, error_type=error_type, error=error, watermark=None,
            keep_packages=None,
        )  # fmt: skip

    # -- writing a page ---------------------------------------------------------------------

    def _writer(
        self, job: JobEntry, run: RunProgress, page: Page
    ) -> Callable[[AsyncSession], Awaitable[None]]:
        """What writes the page's records, in the transaction of the run's progress;
        raises Problem first for records the topic refuses."""
        spec = job.spec
        if spec.output.package is not None:
            package_id = run.package_id
            assert package_id is not None

            async def package(s: AsyncSession) -> None:
                await self.store.add_package_records(s, package_id, run.records, page.bodies)

            return package
        publications = self._publications(spec, page)
        config = self.config()
        topic = config.topics[spec.output.topic or ""]

        def may_receive(code: str) -> bool:
            client = config.clients.get(code)
            return client is not None and client.enabled and topic.may_subscribe(client)

        async def publish(s: AsyncSession) -> None:
            for i, p in enumerate(publications):
                # The same record of the same run has the same event id, whoever writes it.
                event_id = str(uuid.uuid5(_EVENT_IDS, f"{run.run_id}:{run.records + i}"))
                publisher = publisher_of(spec.code)
                if isinstance(self.events, SqlEventStore):  # with the progress: once
                    await self.events.publish_in(s, topic.code, publisher, p, may_receive, event_id)
                else:
                    # Kafka: acknowledged before the progress commits, so a crash between
                    # the two publishes the page again under the same ids (at least once).
                    await self.events.publish(topic.code, publisher, p, may_receive, event_id)

        return publish

    def _publications(self, spec: JobSpec, page: Page) -> list[Publication]:
        topic = self.config().topics.get(spec.output.topic or "")
        if topic is None or not topic.enabled:
            raise Problem(
                TOPIC_UNAVAILABLE, f"The topic {spec.output.topic!r} is gone or disabled."
            )
        if topic.schema_error is not None:
            raise Problem(
                TOPIC_UNAVAILABLE, f"The topic cannot check its events: {topic.schema_error}."
            )
        out = []
        for n, (record, body) in enumerate(zip(page.records, page.bodies, strict=True)):
            if topic.validator is not None:
                problems = topic.validator.errors(body)
                if problems:
                    raise Problem(
                        INVALID_EVENT,
                        f"Record {n} of the page breaks the topic's schema: "
                        + "; ".join(f"/data{e.pointer}: {e.detail}" for e in problems[:3]),
                    )
            key = record.get(spec.key_field) if spec.key_field else None
            out.append(
                Publication(
                    type=spec.output.event_type,
                    key=str(key)[:255] if key not in (None, "") else None,
                    data=record,
                )
            )
        return out

    # -- one page: an exchange --------------------------------------------------------------

    async def _page(self, job: JobEntry, run: RunProgress) -> Page:
        """Ask the provider for the run's next page, audited as an exchange; raises
        Problem when there is no page to use (refused, failed, unreadable, unaudited)."""
        spec = job.spec
        config = self.config()
        service = config.services.get(spec.service_key)
        request_id = f"job:{spec.code}:{run.run_id}:{run.pages + 1}"[:128]
        outbound = self._outbound(spec, run, request_id)
        event = self._event(spec, service, config, request_id, outbound)
        t0 = time.perf_counter()
        body = b""
        try:
            assert_allowed(spec, service, config)
            assert service is not None
            status, body = await self._call(service, spec, outbound, request_id, event)
            event.status = status
            page = _read_page(spec, run, status, body)
        except Problem as p:
            event.status = event.status or p.ptype.status
            event.error_type, event.error_detail = p.ptype.slug, p.detail
            await self._audit(event, t0, body)
            self._count(spec, event, t0)
            raise
        await self._audit(event, t0, body)
        self._count(spec, event, t0)
        return page

    def _count(self, spec: JobSpec, event: AuditEvent, t0: float) -> None:
        if self.metrics is not None:
            outcome = event.error_type or "ok"
            self.metrics.exchange(spec.service_key, spec.client, outcome, time.perf_counter() - t0)

    def _outbound(self, spec: JobSpec, run: RunProgress, request_id: str) -> OutboundRequest:
        query: list[tuple[str, str]] = []
        if run.since is not None:
            query.append((spec.since_param, run.since.astimezone(VIETNAM).isoformat()))
        if run.as_of is not None:
            query.append((spec.as_of_param, run.as_of))
        paging = spec.paging
        if paging.kind == "page":
            query.append((paging.param, run.cursor or "1"))
        elif run.cursor is not None:
            query.append((paging.param, run.cursor))
        if paging.size_param is not None:
            query.append((paging.size_param, str(paging.size)))
        headers: CIMultiDict[str] = CIMultiDict({REQUEST_ID_HEADER: request_id})
        headers["Accept"] = "application/json"
        headers["Accept-Encoding"] = "identity"  # the job reads the page: uncompressed
        who = spec.accountability
        for header, value in (
            (OFFICER_HEADER, who.officer),
            (PROCEDURE_HEADER, who.procedure),
            (CASE_HEADER, who.case),
        ):
            if value is not None:
                headers[header] = value
        return OutboundRequest(spec.method, spec.path, urlencode(query), headers, b"")

    def _event(
        self,
        spec: JobSpec,
        service: ServiceEntry | None,
        config: RuntimeConfig,
        request_id: str,
        o: OutboundRequest,
    ) -> AuditEvent:
        client = config.clients.get(spec.client)
        provider, code, version = spec.service_key
        started = utcnow()
        who = spec.accountability
        return AuditEvent(
            event_id=str(uuid.uuid4()),
            request_id=request_id,
            instance=self.instance,
            method=o.method,
            # The address a caller would have used, and what the job asked for.
            path=f"/r1/{provider}/{code}/{version}{o.path}?{o.query}"[:4096],
            started_at=started,
            finished_at=started,
            duration_ms=0.0,
            status=0,
            client_code=spec.client,
            client_agency_code=client.agency_code if client else None,
            auth_method="job",
            provider_code=provider,
            service_code=code,
            service_version=version,
            officer_id=who.officer,
            procedure_code=who.procedure,
            case_number=who.case,
            adapter=service.adapter_impl.name if service and service.adapter_impl else None,
        )

    async def _call(
        self,
        service: ServiceEntry,
        spec: JobSpec,
        o: OutboundRequest,
        request_id: str,
        event: AuditEvent,
    ) -> tuple[int, bytes]:
        """The provider's answer (status, body after the adapter), as the forward and
        respond steps of an exchange get it."""
        client = self.config().clients[spec.client]
        o.headers[CLIENT_ID_HEADER] = client.code
        o.headers[CLIENT_AGENCY_HEADER] = client.agency_code
        adapter = service.adapter_impl
        context = None
        if adapter is not None:
            who = spec.accountability
            context = Context(
                request_id=request_id, client=client.code, client_agency=client.agency_code,
                officer=who.officer, procedure=who.procedure, case=who.case,
                now=event.started_at.isoformat(), service="/".join(service.key),
            )  # fmt: skip
            event.adapter_version = adapter.VERSION
            o = adapter.request(o, context)
        answer = await self.upstream.forward(
            service, o.method, o.path, o.query, CIMultiDict(o.headers), o.body
        )
        event.upstream_status = answer.status
        event.upstream_ms = round(answer.elapsed_ms, 3)
        event.response_sha256 = hashlib.sha256(answer.body).hexdigest()
        if adapter is not None and context is not None:
            answer = adapter.response(answer, o, context)
        validator = service.response_validator
        if validator is not None and 200 <= answer.status < 300:
            problems = validator.errors(answer.body)
            if problems:
                raise Problem(
                    UPSTREAM_INVALID_MESSAGE,
                    "The provider's answer breaks the response schema: "
                    + "; ".join(f"{e.pointer or '/'}: {e.detail}" for e in problems[:3]),
                )
        return answer.status, answer.body

    async def _audit(self, event: AuditEvent, t0: float, body: bytes) -> None:
        elapsed = time.perf_counter() - t0
        event.duration_ms = round(elapsed * 1000, 3)
        event.finished_at = event.started_at + timedelta(seconds=elapsed)
        event.response_bytes = len(body)
        event.subject_ids = in_body(body)
        try:
            await self.audit.write(event)
        except AuditUnavailable as e:
            # Audited like every exchange: a page that cannot be recorded is not used.
            raise Problem(
                AUDIT_UNAVAILABLE, f"The page's exchange could not be audited ({e}); not used."
            ) from e


def assert_allowed(spec: JobSpec, service: ServiceEntry | None, config: RuntimeConfig) -> None:
    """The checks of an exchange's authorise step, for the job's client: raises Problem."""
    client = config.clients.get(spec.client)
    if client is None or not client.enabled or service is None:
        raise Problem(
            ACCESS_DENIED, f"The job's client {spec.client!r} or its service is gone or disabled."
        )
    if not service.allows(client, spec.method, spec.path or "/"):
        raise Problem(
            ACCESS_DENIED,
            f"Client {client.code!r} holds no right to {spec.method} {spec.path or '/'} "
            f"of {spec.service}.",
        )
    if not service.enabled:
        raise Problem(SERVICE_DISABLED, f"{service.name} is disabled for maintenance.")


def _unreadable(detail: str) -> Problem:
    return Problem(JOB_ANSWER_UNREADABLE, detail)


def _read_page(spec: JobSpec, run: RunProgress, status: int, body: bytes) -> Page:
    """The page in the provider's answer, or Problem (a refusal, an error, a shape the job
    does not know)."""
    if not 200 <= status < 300:
        raise Problem(JOB_ANSWER_UNREADABLE, f"The provider answered {status}: {body[:300]!r}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _unreadable("The provider's page is not JSON.") from None
    items = doc.get(spec.items_field) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _unreadable(f"The page has no list of records at {spec.items_field!r}.")
    paging = spec.paging
    if paging.kind == "page":
        number = int(run.cursor or "1")
        pages = doc.get(paging.pages_field)
        last = not items or (isinstance(pages, int) and number >= pages)
        next_cursor = None if last else str(number + 1)
    else:
        nxt = doc.get(paging.next_field)
        if nxt is not None and not isinstance(nxt, (str, int)):
            raise _unreadable(f"The page's {paging.next_field!r} is not a cursor.")
        next_cursor = None if nxt in (None, "") else str(nxt)
        if next_cursor is not None and next_cursor == run.cursor:
            raise _unreadable("The provider gave the same cursor again: it would never end.")
        last = next_cursor is None
    return Page(items, [orjson.dumps(i) for i in items], next_cursor, last)


def _latest(
    spec: JobSpec, before: datetime | None, records: list[dict[str, Any]]
) -> datetime | None:
    """The latest change time read so far (the watermark a success would keep)."""
    if spec.changed_field is None:
        return before
    latest = before
    for r in records:
        value = r.get(spec.changed_field)
        try:
            at = datetime.fromisoformat(str(value))
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise _unreadable(
                f"A record's {spec.changed_field!r} ({value!r}) is not a time with its offset."
            )
        if latest is None or at > latest:
            latest = at.astimezone(UTC)
    return latest
