"""The auditors' exchange log: search (keyset pages, never OFFSET), one record with its
place in the chain and the signed checkpoint covering it, verifying the chain around it,
unmasking with a reason, and the record of reads.

The same operations as the auditor API (gateway/edge/audit_api.py): `query.search` for
pages, `query.shape` for masking, `verify.verify_store` for the chain, `tlog` and
`proofs` for the checkpoint and the inclusion proof; each read recorded as an
`AuditRead` naming `person:<account>`.

Example:
    >>> add_routes(app)  # GET /console/audit/exchanges, /console/audit/exchanges/{id}, ...
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

from gateway.audit import proofs, query, tlog
from gateway.audit.chain import load_public_key
from gateway.audit.note import ED25519, NoteVerifier
from gateway.audit.verify import verify_store
from gateway.edge.console.audit_common import (
    AUDITORS,
    BASE,
    actor,
    filter_link,
    given,
    inert,
    local_time,
    may_unmask,
    parse_filter,
    reason_of,
    record_read,
    short,
)
from gateway.edge.console.views import View, page
from gateway.store.models import AuditCheckpoint, AuditRead, AuditRecord, AuditSigningKey

__all__ = ["add_routes"]

PAGE = 50
READS_PAGE = 100
AROUND = timedelta(hours=1)  # the stretch of chain "verify" checks around a record
# The columns of the results table, in order.
COLUMNS = (
    "started_at",
    "client_agency_code",
    "client_code",
    "service_code",
    "path",
    "officer_id",
    "procedure_code",
    "case_number",
    "status",
    "request_id",
)


def _helpers(view: View) -> dict[str, Any]:
    return {
        "inert": inert,
        "short": short,
        "local_time": local_time,
        "heading": lambda column: view.t(f"audit.col_{column}"),
    }


async def _search(
    view: View,
    values: dict[str, str],
    *,
    unmask: bool,
    reason: str | None,
    reason_missing: bool = False,
) -> web.Response:
    f, error = parse_filter(given(values))
    cursor = values.get("cursor") or None
    rows: list[dict[str, Any]] = []
    next_link = None
    if error is None:
        try:
            async with view.state.sessions() as s:
                found, next_cursor = await query.search(s, f, limit=PAGE, cursor=cursor)
        except ValueError:
            error, found, next_cursor = view.t("audit.bad_cursor"), [], None
        asked = {**f.as_dict(), **({"cursor": cursor} if cursor else {})}
        await record_read(view, "search", asked, records=len(found), unmasked=unmask, reason=reason)
        rows = query.shape(found, unmask=unmask)
        if next_cursor:
            next_link = filter_link(f"{BASE}/exchanges", given(values), cursor=next_cursor)
    return view.render(
        "audit_search.html",
        status=400 if error else 422 if reason_missing else 200,
        values=given(values),
        reason_error=view.t("audit.reason_required") if reason_missing else None,
        cursor=cursor or "",
        rows=rows,
        columns=COLUMNS,
        error=error,
        unmasked=unmask,
        may_unmask=may_unmask(view),
        next_link=next_link,
        export_csv=filter_link(f"{BASE}/export.csv", given(values)),
        export_jsonl=filter_link(f"{BASE}/export.jsonl", given(values)),
        searched=bool(values),
        **_helpers(view),
    )


@page(roles=AUDITORS)
async def search(view: View) -> web.StreamResponse:
    """The search form and one page of matching exchanges, newest first, masked."""
    values = {k: v for k, v in view.request.query.items() if isinstance(v, str)}
    return await _search(view, values, unmask=False, reason=None)


async def _refused(view: View, what: dict[str, Any]) -> web.Response:
    """Unmasking without the right: refused, and the attempt written down."""
    await record_read(view, "refused", {"unmask": True, **what}, records=0)
    return view.error(403, "audit.unmask_forbidden")


@page(roles=AUDITORS)
async def search_unmasked(view: View) -> web.StreamResponse:
    """The same page unmasked: needs audit:unmask and a reason, both recorded."""
    assert view.form is not None
    values = {k: v for k, v in view.form.items() if isinstance(v, str) and k != "csrf"}
    values.pop("reason", None)
    if not may_unmask(view):
        return await _refused(view, given(values))
    reason = reason_of(view)
    if not reason:
        return await _search(view, values, unmask=False, reason=None, reason_missing=True)
    return await _search(view, values, unmask=True, reason=reason)


# -- one record -------------------------------------------------------------------------------


async def _neighbours(s: Any, row: AuditRecord) -> dict[str, str | None]:
    """The event ids of the links before and after it in its instance's chain."""
    out: dict[str, str | None] = {"before": None, "after": None}
    if row.seq is None:
        return out
    for name, seq in (("before", row.seq - 1), ("after", row.seq + 1)):
        out[name] = await s.scalar(
            select(AuditRecord.event_id).where(
                AuditRecord.instance == row.instance, AuditRecord.seq == seq
            )
        )
    return out


async def _coverage(s: Any, row: AuditRecord) -> dict[str, Any]:
    """The signed tree head of the transparency log covering the record, if one does yet,
    and the chain checkpoint at or after it."""
    out: dict[str, Any] = {"head": None, "checkpoint": None}
    if row.seq is None:
        return out
    head = await tlog.latest_head(s, row.instance)
    if head is not None and head.size >= row.seq:
        out["head"] = {
            "size": head.size,
            "root": head.root,
            "signed_at": local_time(head.signed_at),
            "note": await tlog.signed_note(s, head),
        }
    cp = await s.scalar(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.instance == row.instance, AuditCheckpoint.seq >= row.seq)
        .order_by(AuditCheckpoint.seq)
        .limit(1)
    )
    if cp is not None:
        out["checkpoint"] = {"seq": cp.seq, "hash": cp.hash, "key_id": cp.key_id}
    return out


async def _record(
    view: View,
    *,
    unmask: bool = False,
    reason: str | None = None,
    finding: dict[str, Any] | None = None,
    status: int = 200,
    reason_missing: bool = False,
) -> web.Response:
    event_id = view.request.match_info["event_id"]
    async with view.state.sessions() as s:
        row = await s.scalar(select(AuditRecord).where(AuditRecord.event_id == event_id))
        around = await _neighbours(s, row) if row is not None else {}
        coverage = await _coverage(s, row) if row is not None else {}
    await record_read(
        view,
        "record",
        {"event_id": event_id},
        records=int(row is not None),
        unmasked=unmask,
        reason=reason,
    )
    if row is None:
        return view.error(404, "error.not_found")
    return view.render(
        "audit_record.html",
        status=status,
        record=query.shape([row], unmask=unmask)[0],
        columns=query.RECORD_COLUMNS,
        around=around,
        coverage=coverage,
        unmasked=unmask,
        may_unmask=may_unmask(view),
        finding=finding,
        reason_error=view.t("audit.reason_required") if reason_missing else None,
        **_helpers(view),
    )


@page(roles=AUDITORS)
async def record(view: View) -> web.StreamResponse:
    """Every field of one exchange, masked; its chain links and covering checkpoint."""
    return await _record(view)


@page(roles=AUDITORS)
async def record_unmasked(view: View) -> web.StreamResponse:
    """The record unmasked, for audit:unmask and a reason."""
    if not may_unmask(view):
        return await _refused(view, {"event_id": view.request.match_info["event_id"]})
    reason = reason_of(view)
    if not reason:
        return await _record(view, status=422, reason_missing=True)
    return await _record(view, unmask=True, reason=reason)


async def _inclusion(view: View, event_id: str) -> tuple[bool | None, str]:
    """The record's inclusion proof against the latest signed tree head, checked as an
    auditor offline would (proofs.verify_bundle); None when no head covers it yet."""
    async with view.state.sessions() as s:
        try:
            (bundle,) = await tlog.inclusion_bundles(s, event_id=event_id, with_record=True)
        except tlog.ProofUnavailable as e:
            return None, str(e)
        head = await tlog.latest_head(s, str(bundle["instance"]))
        assert head is not None
        key = await s.scalar(
            select(AuditSigningKey.public_key).where(AuditSigningKey.key_id == head.key_id)
        )
    if key is None:
        return False, f"no registered key {head.key_id}"
    verifier = NoteVerifier(head.origin, load_public_key(key), ED25519)
    try:
        return True, proofs.verify_bundle(bundle, [verifier]).statement
    except proofs.ProofFailed as e:
        return False, str(e)


@page(roles=AUDITORS)
async def verify(view: View) -> web.StreamResponse:
    """Verify the chain around the record (hashes, links, checkpoints an hour either
    side, as `lgsp audit verify` does) and its inclusion in the signed tree."""
    event_id = view.request.match_info["event_id"]
    async with view.state.sessions() as s:
        row = await s.scalar(select(AuditRecord).where(AuditRecord.event_id == event_id))
    if row is None:
        return view.error(404, "error.not_found")
    since, until = row.started_at - AROUND, row.started_at + AROUND
    report = await verify_store(
        view.state.sessions, since=since, until=until, instance=row.instance
    )
    included, statement = await _inclusion(view, event_id)
    body = report.as_dict()
    await record_read(
        view,
        "verify",
        {"event_id": event_id, "since": since.isoformat(), "until": until.isoformat()},
        records=int(body["events"]),
    )
    finding = {
        "ok": report.ok and included is not False,
        "events": body["events"],
        "findings": [f.as_dict() for f in report.findings],
        "included": included,
        "statement": statement,
        "since": local_time(since),
        "until": local_time(until),
    }
    return await _record(view, finding=finding)


# -- the record of reads ----------------------------------------------------------------------


@page(roles=AUDITORS)
async def reads(view: View) -> web.StreamResponse:
    """Who read the audit log, newest first: the API's reads and the console's, each
    unmasking with its reason."""
    cursor = view.request.query.get("cursor") or None
    only_unmasked = view.request.query.get("unmasked") == "1"
    stmt = select(AuditRead)
    if only_unmasked:
        stmt = stmt.where(AuditRead.unmasked.is_(True))
    try:
        async with view.state.sessions() as s:
            rows, next_cursor = await query.page(
                s, stmt, AuditRead.at, AuditRead.id, limit=READS_PAGE, cursor=cursor
            )
    except ValueError:
        return view.error(400, "audit.bad_cursor")
    shown = [
        {
            "at": local_time(r.at),
            "actor": r.actor,
            "action": r.action,
            "unmasked": r.unmasked,
            "records": r.records,
            "reason": (r.query or {}).get("reason", ""),
            "asked": {k: v for k, v in (r.query or {}).items() if k not in ("reason", "via")},
        }
        for r in rows
    ]
    more = {"unmasked": "1"} if only_unmasked else {}
    return view.render(
        "audit_reads.html",
        reads=shown,
        only_unmasked=only_unmasked,
        me=actor(view),
        next_link=filter_link(f"{BASE}/reads", more, cursor=next_cursor) if next_cursor else None,
        **_helpers(view),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{BASE}/exchanges", search)
    app.router.add_post(f"{BASE}/exchanges", search_unmasked)
    app.router.add_get(f"{BASE}/exchanges/{{event_id}}", record)
    app.router.add_post(f"{BASE}/exchanges/{{event_id}}/unmask", record_unmasked)
    app.router.add_post(f"{BASE}/exchanges/{{event_id}}/verify", verify)
    app.router.add_get(f"{BASE}/reads", reads)
