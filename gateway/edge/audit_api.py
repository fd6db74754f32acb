"""The auditor API, under `/audit/v1`: search, read, export and summarise the audit log,
see its integrity findings, retention purges and admin changes, and verify its chain.

Every endpoint needs the "auditor" role, but `/receipts/{request_id}`, which any caller
may ask of its own exchanges. Personal identifiers (citizen ids, query-string
values) are masked unless the caller asks `unmask=true` and holds the "audit:unmask"
right. Every read is itself recorded (`AuditRead`: who, what query, how many records,
masked or not) in its own transaction, before anything is disclosed: a read that
cannot be recorded is not served. A known system refused (no auditor role, unmasking
without the right) is recorded too. Query parameters: gateway/edge/audit_queries.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import orjson
from aiohttp import web
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from gateway.admin.events import without_credential_hints
from gateway.audit import query, tlog
from gateway.audit.chain import load_public_key
from gateway.audit.note import ED25519, NoteVerifier
from gateway.audit.verify import verify_store
from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.logging import log
from gateway.core.problems import ACCESS_DENIED, NOT_FOUND, Problem
from gateway.edge.audit_queries import (
    AdminEventsQuery,
    ExportQuery,
    FindingsQuery,
    PurgesQuery,
    ReceiptQuery,
    RecordQuery,
    SearchQuery,
    StatsQuery,
    TreeConsistencyQuery,
    TreeHeadQuery,
    TreeInclusionQuery,
    VerifyQuery,
)
from gateway.edge.state import STATE
from gateway.edge.toolkit import Api, Call, Handler, QueryModel, Reply, Route, json_response
from gateway.edge.toolkit import add_routes as register
from gateway.store.models import (
    AdminEvent,
    AuditFinding,
    AuditPurge,
    AuditRead,
    AuditRecord,
    AuditSigningKey,
    AuditTreeHead,
)

__all__ = ["PREFIX", "ROUTES", "add_routes"]

PREFIX = "/audit/v1"
AUDITOR = "auditor"
UNMASK = "audit:unmask"
EXPORT_BATCH = 1000
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


async def _record_refusal(request: web.Request, problem: Problem, request_id: str) -> None:
    """A known system refused (no auditor role, or unmasking without the right): who
    tried to look is as much the auditors' business as who looked."""
    if problem.status != 403 or "client" not in problem.extensions:
        return
    client = str(problem.extensions["client"])
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


# A malformed X-Request-Id is refused: the read is recorded under the id the caller gave.
AUDIT = Api(PREFIX, check_request_id=True, on_problem=_record_refusal)


def _unmask(call: Call[Any]) -> bool:
    unmask: bool = call.query.unmask
    if unmask and UNMASK not in call.caller.roles:
        raise Problem(
            ACCESS_DENIED,
            f"Client '{call.caller.code}' may read the audit log masked only; showing "
            f"personal identifiers needs the '{UNMASK}' right.",
            client=call.caller.code,
            required_roles=[UNMASK],
        )
    return unmask


async def _record_read(
    call: Call[Any], action: str, asked: dict[str, Any], *, records: int, unmasked: bool = False
) -> int:
    """Write down the read in its own transaction; return its id."""
    async with call.state.sessions() as s, s.begin():
        read = AuditRead(
            at=datetime.now(UTC),
            actor=call.caller.code,
            action=action,
            query=asked,
            unmasked=unmasked,
            records=records,
            request_id=call.request_id,
        )
        s.add(read)
        await s.flush()
        return read.id


def _session(call: Call[Any]) -> AsyncSession:
    return call.state.sessions()


# -- exchanges --------------------------------------------------------------------------------


async def search_exchanges(call: Call[SearchQuery]) -> web.StreamResponse:
    f, limit, cursor = call.query.audit_filter(), call.query.limit, call.query.cursor
    unmask = _unmask(call)
    async with _session(call) as s:
        rows, next_cursor = await query.search(s, f, limit=limit, cursor=cursor)
    asked = {**f.as_dict(), "limit": limit, **({"cursor": cursor} if cursor else {})}
    await _record_read(call, "search", asked, records=len(rows), unmasked=unmask)
    return json_response({"items": query.shape(rows, unmask=unmask), "next_cursor": next_cursor})


async def get_exchange(call: Call[RecordQuery]) -> web.StreamResponse:
    event_id = call.path["event_id"]
    unmask = _unmask(call)
    async with _session(call) as s:
        row = await s.scalar(select(AuditRecord).where(AuditRecord.event_id == event_id))
    asked = {"event_id": event_id}
    await _record_read(call, "record", asked, records=int(row is not None), unmasked=unmask)
    if row is None:
        raise Problem(NOT_FOUND, f"No audit record with event id '{event_id}'.")
    return json_response(query.shape([row], unmask=unmask)[0])


def _stamp(at: datetime | None) -> str:
    return at.strftime("%Y%m%dT%H%M%SZ") if at is not None else "start"


async def export(call: Call[ExportQuery]) -> web.StreamResponse:
    """The matching records, oldest first, streamed as they are read. Without `until`
    the export ends at the time it was asked, so it is a fixed range, named in the file."""
    fmt, f = call.query.format, call.query.audit_filter()
    if f.until is None:
        # Rounded up to the second, so that the range the file name states is exact.
        now = datetime.now(UTC)
        f = dataclasses.replace(f, until=now.replace(microsecond=0) + timedelta(seconds=1))
    unmask = _unmask(call)
    asked = {**f.as_dict(), "format": fmt}
    read_id = await _record_read(call, "export", asked, records=0, unmasked=unmask)

    filename = f"audit_{_stamp(f.since)}_{_stamp(f.until)}.{fmt}"
    response = web.StreamResponse(
        headers={
            "Content-Type": MEDIA_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="{filename}"',
            REQUEST_ID_HEADER: call.request_id,
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(call.request)
    written = 0
    try:
        buffer = io.StringIO()
        writer = query.ExportWriter(buffer, fmt)  # the CSV header, if any
        async with _session(call) as s:
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
        if call.request.transport is not None:
            call.request.transport.close()
    finally:
        # What was actually handed out, even if the transfer broke off. The read itself
        # is already on record; a failure here must not write a problem into the body.
        try:
            async with _session(call) as s, s.begin():
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


async def daily_stats(call: Call[StatsQuery]) -> web.StreamResponse:
    f = call.query.audit_filter()
    async with _session(call) as s:
        days = await query.daily_stats(s, f)
    total = sum(int(d["count"]) for d in days)
    await _record_read(call, "stats", f.as_dict(), records=total)
    return json_response({"timezone": query.VN_ZONE_NAME, "days": days})


# -- findings, purges, admin events -----------------------------------------------------------


async def _listing(
    call: Call[Any],
    action: str,
    stmt: Select[Any],
    at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[int],
    asked: dict[str, Any],
    shown: Callable[[dict[str, Any]], dict[str, Any]] = lambda doc: doc,
) -> web.Response:
    """One page of rows, newest first, with its read recorded; `shown` is what the caller
    may see of each."""
    limit: int = call.query.limit
    async with _session(call) as s:
        rows, next_cursor = await query.page(
            s, stmt, at, row_id, limit=limit, cursor=call.query.cursor
        )
    await _record_read(call, action, {"limit": limit, **asked}, records=len(rows))
    items = [shown(query.row_dict(r)) for r in rows]
    return json_response({"items": items, "next_cursor": next_cursor})


def _where_equal(
    call: Call[Any], stmt: Select[Any], model: Any, names: tuple[str, ...], asked: dict[str, Any]
) -> Select[Any]:
    for name in names:
        value = getattr(call.query, name)
        if value is not None:
            stmt = stmt.where(getattr(model, name) == value)
            asked[name] = value
    return stmt


async def findings(call: Call[FindingsQuery]) -> web.StreamResponse:
    asked: dict[str, Any] = {}
    stmt = _where_equal(call, select(AuditFinding), AuditFinding, ("instance", "kind"), asked)
    if call.query.unresolved:
        stmt = stmt.where(AuditFinding.resolved_at.is_(None))
        asked["unresolved"] = True
    return await _listing(call, "findings", stmt, AuditFinding.found_at, AuditFinding.id, asked)


async def purges(call: Call[PurgesQuery]) -> web.StreamResponse:
    stmt = select(AuditPurge)
    return await _listing(call, "purges", stmt, AuditPurge.purged_at, AuditPurge.id, {})


async def admin_events(call: Call[AdminEventsQuery]) -> web.StreamResponse:
    stmt = select(AdminEvent)
    asked: dict[str, Any] = {}
    since, until = call.query.since, call.query.until
    if since is not None:
        stmt = stmt.where(AdminEvent.at >= since)
        asked["since"] = since.isoformat()
    if until is not None:
        stmt = stmt.where(AdminEvent.at < until)
        asked["until"] = until.isoformat()
    stmt = _where_equal(call, stmt, AdminEvent, ("actor", "action", "target"), asked)
    # Auditors read credential changes but not the credentials' hints.
    return await _listing(
        call, "admin-events", stmt, AdminEvent.at, AdminEvent.id, asked, without_credential_hints
    )


# -- verification -----------------------------------------------------------------------------


async def verify(call: Call[VerifyQuery]) -> web.StreamResponse:
    """Verify the stored chain over a range and sign the report with the gateway's token
    key, so the auditor can show it later and anyone can check it against the JWKS."""
    state = call.state
    since, until, instance = call.query.since, call.query.until, call.query.instance
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
    await _record_read(call, "verify", asked, records=events if isinstance(events, int) else 0)
    return json_response({"report": body, "signature": signature})


# -- the transparency log ---------------------------------------------------------------------


def _unavailable(e: tlog.ProofUnavailable) -> Problem:
    """No such head or event, or one not yet covered by a head (the message says when to
    ask again): no proof to give."""
    return Problem(NOT_FOUND, str(e) + ".")


async def _log_key(s: AsyncSession, head: AuditTreeHead) -> str | None:
    """The log's verifier key, for convenience: an auditor checks it against the one
    they were given out of band (`lgsp audit keys`), never trusts it from here."""
    text = await s.scalar(
        select(AuditSigningKey.public_key).where(AuditSigningKey.key_id == head.key_id)
    )
    return (
        None if text is None else NoteVerifier(head.origin, load_public_key(text), ED25519).vkey()
    )


async def tree_head(call: Call[TreeHeadQuery]) -> web.StreamResponse:
    instance = call.query.instance or call.state.settings.instance_id
    async with _session(call) as s:
        try:
            head = await tlog.head_at(s, instance, call.query.size)
        except tlog.ProofUnavailable as e:
            raise _unavailable(e) from None
        body = tlog.head_dict(head, await tlog.signed_note(s, head), await _log_key(s, head))
    asked = {"instance": instance, **({"size": call.query.size} if call.query.size else {})}
    await _record_read(call, "tree-head", asked, records=0)
    return json_response(dict(body))


async def tree_inclusion(call: Call[TreeInclusionQuery]) -> web.StreamResponse:
    """With `unmask`, each proof carries the record itself (it hashes to the leaf only
    unmasked); without, its hash."""
    q = call.query
    unmask = _unmask(call)
    asked = {
        k: v
        for k, v in {"event_id": q.event_id, "request_id": q.request_id, "size": q.size}.items()
        if v is not None
    }
    async with _session(call) as s:
        try:
            proofs = await tlog.inclusion_bundles(
                s, event_id=q.event_id, request_id=q.request_id, size=q.size, with_record=unmask
            )
        except tlog.ProofUnavailable as e:
            await _record_read(call, "tree-inclusion", asked, records=0, unmasked=unmask)
            raise _unavailable(e) from None
    await _record_read(call, "tree-inclusion", asked, records=len(proofs), unmasked=unmask)
    return json_response({"proofs": proofs})


async def tree_consistency(call: Call[TreeConsistencyQuery]) -> web.StreamResponse:
    q = call.query
    instance = q.instance or call.state.settings.instance_id
    async with _session(call) as s:
        try:
            bundle = await tlog.consistency_bundle(s, instance, q.old, q.new)
        except tlog.ProofUnavailable as e:
            raise _unavailable(e) from None
    asked = {"instance": instance, "old": q.old, **({"new": q.new} if q.new else {})}
    await _record_read(call, "tree-consistency", asked, records=0)
    return json_response(bundle)


async def receipt(call: Call[ReceiptQuery]) -> web.StreamResponse:
    """A caller's receipt for its own exchange: the inclusion proof of each of its events
    (its record included: the caller sent what it holds) against the latest checkpoint,
    so a department can later show an inspector what it asked and when. Any
    authenticated client, for exchanges it made; another's request id is not found."""
    request_id, client = call.path["request_id"], call.caller.code
    asked = {"request_id": request_id}
    async with _session(call) as s:
        try:
            proofs = await tlog.inclusion_bundles(
                s, request_id=request_id, client=client, size=call.query.size
            )
        except tlog.ProofUnavailable as e:
            await _record_read(call, "receipt", asked, records=0)
            raise _unavailable(e) from None
    await _record_read(call, "receipt", asked, records=len(proofs), unmasked=True)
    return json_response({"proofs": proofs})


def _route(
    path: str, handler: Handler, summary: str, query_model: type[QueryModel], reply: str
) -> Route:
    return AUDIT.route(
        "GET", path, handler, summary, reply=Reply(200, reply), roles=(AUDITOR,), query=query_model
    )


ROUTES: tuple[Route, ...] = (
    _route(
        "/exchanges",
        search_exchanges,
        "Search the exchanges, newest first",
        SearchQuery,
        "A page of records (`next_cursor` for the next).",
    ),
    _route(
        "/exchanges/{event_id}",
        get_exchange,
        "One exchange's record in full",
        RecordQuery,
        "The record.",
    ),
    _route(
        "/export",
        export,
        "The matching records, oldest first, as CSV or JSON Lines",
        ExportQuery,
        "The records, streamed.",
    ),
    _route(
        "/stats/daily",
        daily_stats,
        "Counts per local day, agency, service and outcome",
        StatsQuery,
        "The days (Asia/Ho_Chi_Minh), with mean and p95 duration per group.",
    ),
    _route(
        "/findings",
        findings,
        "Integrity findings, newest first",
        FindingsQuery,
        "A page of findings.",
    ),
    _route("/purges", purges, "Retention purges, newest first", PurgesQuery, "A page of purges."),
    _route(
        "/admin-events",
        admin_events,
        "Configuration and credential changes, newest first",
        AdminEventsQuery,
        "A page of admin events.",
    ),
    _route(
        "/verify",
        verify,
        "Verify the chain over a range, with a signed report",
        VerifyQuery,
        "The report and its JWS signature.",
    ),
    _route(
        "/tree",
        tree_head,
        "The transparency log's signed checkpoint (C2SP tlog-checkpoint), with cosignatures",
        TreeHeadQuery,
        "The checkpoint note, its size and root, and the log's verifier key.",
    ),
    _route(
        "/tree/inclusion",
        tree_inclusion,
        "An inclusion proof of an exchange's record against a checkpoint",
        TreeInclusionQuery,
        "One proof per event, each checkable offline by `lgsp audit verify-proof`.",
    ),
    _route(
        "/tree/consistency",
        tree_consistency,
        "A consistency proof between two checkpoints: the log was only appended to",
        TreeConsistencyQuery,
        "The proof and both checkpoints, checkable offline by `lgsp audit verify-proof`.",
    ),
    AUDIT.route(
        "GET",
        "/receipts/{request_id}",
        receipt,
        "A caller's receipt for its own exchange: inclusion proofs against a checkpoint",
        reply=Reply(200, "One proof per event of the exchange, with its record."),
        query=ReceiptQuery,
    ),
)


def add_routes(app: web.Application) -> None:
    register(app, ROUTES)
