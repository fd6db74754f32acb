"""The auditor API, under `/audit/v1`: search, read, export and summarise the audit log,
see its integrity findings, retention purges and admin changes, and verify its chain.

Every endpoint needs the "auditor" role. Personal identifiers (citizen ids, query-string
values) are masked unless the caller asks `unmask=true` and holds the "audit:unmask"
right. Every read is itself recorded (`AuditRead`: who, what query, how many records,
masked or not) in its own transaction, before anything is disclosed: a read that
cannot be recorded is not served.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import orjson
from aiohttp import web
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from gateway.audit import query
from gateway.audit.query import AuditFilter, invalid
from gateway.audit.verify import verify_store
from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.logging import log
from gateway.core.problems import ACCESS_DENIED, INVALID_HEADER, NOT_FOUND, Problem
from gateway.edge.roles import require_role
from gateway.edge.state import STATE
from gateway.exchange.accountability import request_id_from
from gateway.identity.directory import ClientEntry
from gateway.store.models import AdminEvent, AuditFinding, AuditPurge, AuditRead, AuditRecord

PREFIX = "/audit/v1"
AUDITOR = "auditor"
UNMASK = "audit:unmask"
EXPORT_BATCH = 1000
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

_PAGE = frozenset({"limit", "cursor"})
_RECORDS = AuditFilter.PARAMS | {"unmask"}


@dataclass(frozen=True, slots=True)
class Call:
    """One authorised auditor call: who, under which request id."""

    client: ClientEntry
    request_id: str


Handler = Callable[[web.Request, Call], Awaitable[web.StreamResponse]]


def _endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Check the request id and the auditor role; render problems with the same request id
    the read is recorded under (the app's middleware would make up its own)."""

    async def run(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        request_id, complaint = request_id_from(request.headers)
        try:
            if complaint is not None:
                raise Problem(INVALID_HEADER, complaint, header=REQUEST_ID_HEADER)
            call = Call(require_role(request, AUDITOR), request_id)
            response = await handler(request, call)
        except Problem as p:
            if p.status == 403 and "client" in p.extensions:
                await _record_refusal(request, str(p.extensions["client"]), request_id)
            return p.to_response(
                type_base=state.settings.problem_type_base,
                request_id=request_id,
                instance=request.path,
            )
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return run


# -- helpers ----------------------------------------------------------------------------------


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _only(request: web.Request, allowed: Iterable[str]) -> None:
    """Refuse unknown parameters: a misspelt filter must not silently widen a search."""
    allowed = frozenset(allowed)
    for name in request.query:
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise invalid(name, f"not a parameter of this endpoint; it takes {known}")
        if len(request.query.getall(name)) > 1:
            raise invalid(name, "given more than once; each parameter takes one value")


def _unmask(request: web.Request, call: Call) -> bool:
    unmask = query.parse_flag("unmask", request.query.get("unmask"))
    if unmask and UNMASK not in call.client.roles:
        raise Problem(
            ACCESS_DENIED,
            f"Client '{call.client.code}' may read the audit log masked only; showing "
            f"personal identifiers needs the '{UNMASK}' right.",
            client=call.client.code,
            required_roles=[UNMASK],
        )
    return unmask


async def _record_read(
    request: web.Request,
    call: Call,
    action: str,
    asked: dict[str, Any],
    *,
    records: int,
    unmasked: bool = False,
) -> int:
    """Write down the read in its own transaction; return its id."""
    async with request.app[STATE].sessions() as s, s.begin():
        read = AuditRead(
            at=datetime.now(UTC),
            actor=call.client.code,
            action=action,
            query=asked,
            unmasked=unmasked,
            records=records,
            request_id=call.request_id,
        )
        s.add(read)
        await s.flush()
        return read.id


async def _record_refusal(request: web.Request, client: str, request_id: str) -> None:
    """A known system refused (no auditor role, or unmasking without the right): who
    tried to look is as much the auditors' business as who looked."""
    try:
        async with request.app[STATE].sessions() as s, s.begin():
            s.add(
                AuditRead(
                    at=datetime.now(UTC),
                    actor=client,
                    action="refused",
                    query={"path": request.path, **request.query},
                    unmasked=False,
                    records=0,
                    request_id=request_id,
                )
            )
    except Exception as exc:  # the refusal stands either way
        log.error("could not record a refused audit read", error=str(exc), client=client)


def _session(request: web.Request) -> AsyncSession:
    return request.app[STATE].sessions()


# -- exchanges --------------------------------------------------------------------------------


@_endpoint
async def search_exchanges(request: web.Request, call: Call) -> web.StreamResponse:
    _only(request, _RECORDS | _PAGE)
    f = AuditFilter.from_query(request.query)
    limit = query.parse_limit(request.query.get("limit"))
    cursor = request.query.get("cursor")
    unmask = _unmask(request, call)
    async with _session(request) as s:
        rows, next_cursor = await query.search(s, f, limit=limit, cursor=cursor)
    asked = {**f.as_dict(), "limit": limit, **({"cursor": cursor} if cursor else {})}
    await _record_read(request, call, "search", asked, records=len(rows), unmasked=unmask)
    return _json({"items": query.shape(rows, unmask=unmask), "next_cursor": next_cursor})


@_endpoint
async def get_exchange(request: web.Request, call: Call) -> web.StreamResponse:
    _only(request, {"unmask"})
    event_id = request.match_info["event_id"]
    unmask = _unmask(request, call)
    async with _session(request) as s:
        row = await s.scalar(select(AuditRecord).where(AuditRecord.event_id == event_id))
    asked = {"event_id": event_id}
    await _record_read(
        request, call, "record", asked, records=int(row is not None), unmasked=unmask
    )
    if row is None:
        raise Problem(NOT_FOUND, f"No audit record with event id '{event_id}'.")
    return _json(query.shape([row], unmask=unmask)[0])


def _stamp(at: datetime | None) -> str:
    return at.strftime("%Y%m%dT%H%M%SZ") if at is not None else "start"


@_endpoint
async def export(request: web.Request, call: Call) -> web.StreamResponse:
    """The matching records, oldest first, streamed as they are read. Without `until`
    the export ends at the time it was asked, so it is a fixed range, named in the file."""
    _only(request, _RECORDS | {"format"})
    fmt = request.query.get("format", "csv")
    if fmt not in MEDIA_TYPES:
        raise invalid("format", "csv or jsonl")
    f = AuditFilter.from_query(request.query)
    if f.until is None:
        # Rounded up to the second, so that the range the file name states is exact.
        now = datetime.now(UTC)
        f = dataclasses.replace(f, until=now.replace(microsecond=0) + timedelta(seconds=1))
    unmask = _unmask(request, call)
    asked = {**f.as_dict(), "format": fmt}
    read_id = await _record_read(request, call, "export", asked, records=0, unmasked=unmask)

    filename = f"audit_{_stamp(f.since)}_{_stamp(f.until)}.{fmt}"
    response = web.StreamResponse(
        headers={
            "Content-Type": MEDIA_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="{filename}"',
            REQUEST_ID_HEADER: call.request_id,
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    written = 0
    try:
        buffer = io.StringIO()
        writer = query.ExportWriter(buffer, fmt)  # the CSV header, if any
        async with _session(request) as s:
            async for rows in query.iterate(s, f, EXPORT_BATCH):
                writer.write(query.shape(rows, unmask=unmask))
                await response.write(_drain(buffer))
                written += len(rows)
        await response.write(_drain(buffer))
    except Exception as e:
        # The status line is sent: the only honest signal left is an unterminated body,
        # so the auditor's client sees a broken transfer, not a short but whole-looking file.
        if not isinstance(e, ConnectionError):
            log.exception("audit export failed", request_id=call.request_id, written=written)
        if request.transport is not None:
            request.transport.close()
    finally:
        # What was actually handed out, even if the transfer broke off. The read itself
        # is already on record; a failure here must not write a problem into the body.
        try:
            async with _session(request) as s, s.begin():
                done = update(AuditRead).where(AuditRead.id == read_id).values(records=written)
                await s.execute(done)
        except Exception:
            log.exception("audit read count not updated", read_id=read_id, records=written)
    # aiohttp ends the chunked body (write_eof) once the handler returns.
    return response


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


@_endpoint
async def daily_stats(request: web.Request, call: Call) -> web.StreamResponse:
    _only(request, AuditFilter.PARAMS)
    f = AuditFilter.from_query(request.query)
    async with _session(request) as s:
        days = await query.daily_stats(s, f)
    total = sum(int(d["count"]) for d in days)
    await _record_read(request, call, "stats", f.as_dict(), records=total)
    return _json({"timezone": query.VN_ZONE_NAME, "days": days})


# -- findings, purges, admin events -----------------------------------------------------------


async def _listing(
    request: web.Request,
    call: Call,
    action: str,
    stmt: Select[Any],
    at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[int],
    asked: dict[str, Any],
) -> web.Response:
    """One page of rows, newest first, with its read recorded."""
    limit = query.parse_limit(request.query.get("limit"))
    async with _session(request) as s:
        rows, next_cursor = await query.page(
            s, stmt, at, row_id, limit=limit, cursor=request.query.get("cursor")
        )
    await _record_read(request, call, action, {"limit": limit, **asked}, records=len(rows))
    return _json({"items": [query.row_dict(r) for r in rows], "next_cursor": next_cursor})


def _where_equal(
    request: web.Request, stmt: Select[Any], model: Any, names: Iterable[str], asked: dict[str, Any]
) -> Select[Any]:
    for name in names:
        if name in request.query:
            stmt = stmt.where(getattr(model, name) == request.query[name])
            asked[name] = request.query[name]
    return stmt


@_endpoint
async def findings(request: web.Request, call: Call) -> web.StreamResponse:
    _only(request, {"instance", "kind", "unresolved"} | _PAGE)
    asked: dict[str, Any] = {}
    stmt = _where_equal(request, select(AuditFinding), AuditFinding, ("instance", "kind"), asked)
    if query.parse_flag("unresolved", request.query.get("unresolved")):
        stmt = stmt.where(AuditFinding.resolved_at.is_(None))
        asked["unresolved"] = True
    return await _listing(
        request, call, "findings", stmt, AuditFinding.found_at, AuditFinding.id, asked
    )


@_endpoint
async def purges(request: web.Request, call: Call) -> web.StreamResponse:
    _only(request, _PAGE)
    return await _listing(
        request, call, "purges", select(AuditPurge), AuditPurge.purged_at, AuditPurge.id, {}
    )


@_endpoint
async def admin_events(request: web.Request, call: Call) -> web.StreamResponse:
    _only(request, {"since", "until", "actor", "action", "target"} | _PAGE)
    stmt = select(AdminEvent)
    asked: dict[str, Any] = {}
    if "since" in request.query:
        since = query.parse_time("since", request.query["since"])
        stmt = stmt.where(AdminEvent.at >= since)
        asked["since"] = since.isoformat()
    if "until" in request.query:
        until = query.parse_time("until", request.query["until"])
        stmt = stmt.where(AdminEvent.at < until)
        asked["until"] = until.isoformat()
    stmt = _where_equal(request, stmt, AdminEvent, ("actor", "action", "target"), asked)
    return await _listing(request, call, "admin-events", stmt, AdminEvent.at, AdminEvent.id, asked)


# -- verification -----------------------------------------------------------------------------


@_endpoint
async def verify(request: web.Request, call: Call) -> web.StreamResponse:
    """Verify the stored chain over a range and sign the report with the gateway's token
    key, so the auditor can show it later and anyone can check it against the JWKS."""
    _only(request, {"since", "until", "instance"})
    state = request.app[STATE]
    since = until = None
    if "since" in request.query:
        since = query.parse_time("since", request.query["since"])
    if "until" in request.query:
        until = query.parse_time("until", request.query["until"])
    instance = request.query.get("instance")
    report = await verify_store(state.sessions, since=since, until=until, instance=instance)
    # Through JSON and back, so the digest is of exactly what the auditor receives.
    body: dict[str, Any] = orjson.loads(orjson.dumps(report.as_dict()))
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    key = state.keys.active
    signature = jwt.encode(
        {"report_sha256": digest, "iss": state.settings.issuer, "iat": int(time.time())},
        key.private,
        algorithm=key.alg,
        headers={"kid": key.kid},
    )
    asked = {
        k: v
        for k, v in {
            "since": query.iso(since),
            "until": query.iso(until),
            "instance": instance,
        }.items()
        if v is not None
    }
    events = body.get("events")
    await _record_read(
        request, call, "verify", asked, records=events if isinstance(events, int) else 0
    )
    return _json({"report": body, "signature": signature})


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/exchanges", search_exchanges)
    app.router.add_get(f"{PREFIX}/exchanges/{{event_id}}", get_exchange)
    app.router.add_get(f"{PREFIX}/export", export)
    app.router.add_get(f"{PREFIX}/stats/daily", daily_stats)
    app.router.add_get(f"{PREFIX}/findings", findings)
    app.router.add_get(f"{PREFIX}/purges", purges)
    app.router.add_get(f"{PREFIX}/admin-events", admin_events)
    app.router.add_get(f"{PREFIX}/verify", verify)
