"""The auditors' exports: the records a filter matches, as CSV or JSON Lines, streamed in
keyset batches (`query.iterate`: memory stays flat however many), written by the same
`query.ExportWriter` as the auditor API and `lgsp audit export`, so a cell a spreadsheet
would run as a formula (= + - @) is neutralised in CSV.

The file says what it holds before the records: for CSV a first line holding one cell,
"# lgsp audit export", then the filter as JSON; for JSON Lines a first line
`{"kind": "lgsp.audit.export", "filter": {...}, ...}`. Exports are masked; unmasked ones
(POST) need audit:unmask and a reason, like every unmasking.

Example:
    >>> add_routes(app)  # GET /console/audit/export.csv, /console/audit/export.jsonl
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import update

from gateway.audit import query
from gateway.core.logging import log
from gateway.edge.console.audit_common import (
    AUDITORS,
    BASE,
    actor,
    given,
    may_unmask,
    parse_filter,
    reason_of,
    record_read,
)
from gateway.edge.console.views import SECURITY_HEADERS, View, page
from gateway.store.models import AuditRead

__all__ = ["BATCH", "add_routes", "preamble"]

BATCH = 1000
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
MARK = "# lgsp audit export"


def preamble(fmt: str, meta: dict[str, Any]) -> str:
    """The file's first line: what it holds and by which filter.

    Example:
        >>> preamble("jsonl", {"filter": {}}).startswith('{"kind":"lgsp.audit.export"')
        True
    """
    if fmt == "jsonl":
        return orjson.dumps({"kind": "lgsp.audit.export", **meta}).decode() + "\n"
    out = io.StringIO()
    # One cell, quoted by the writer (the JSON holds commas), starting with "#": a reader
    # skipping comment lines skips it, and no spreadsheet reads it as a formula.
    csv.writer(out, lineterminator="\r\n").writerow([f"{MARK} {orjson.dumps(meta).decode()}"])
    return out.getvalue()


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


async def _export(
    view: View, values: dict[str, str], *, unmask: bool, reason: str | None
) -> web.StreamResponse:
    fmt = view.request.match_info["fmt"]
    f, error = parse_filter(values)
    if error is not None:
        return view.render("error.html", status=400, message=error)
    if f.until is None:  # a fixed range, as the API's exports: up to the second asked
        now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        f = dataclasses.replace(f, until=now)
    asked = {**f.as_dict(), "format": fmt}
    read_id = await record_read(view, "export", asked, records=0, unmasked=unmask, reason=reason)
    meta = {
        "filter": f.as_dict(),
        "masked": not unmask,
        "exported_by": actor(view),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "read_id": read_id,
    }
    stamp = f.until.strftime("%Y%m%dT%H%M%SZ") if f.until else "now"
    response = web.StreamResponse(
        headers={
            **SECURITY_HEADERS,
            "Content-Type": MEDIA_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="audit_{stamp}.{fmt}"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(view.request)
    written = 0
    try:
        buffer = io.StringIO()
        buffer.write(preamble(fmt, meta))
        writer = query.ExportWriter(buffer, fmt)
        async with view.state.sessions() as s:
            async for rows in query.iterate(s, f, BATCH):
                writer.write(query.shape(rows, unmask=unmask))
                await response.write(_drain(buffer))
                written += len(rows)
        await response.write(_drain(buffer))
    except Exception as e:
        # The status is sent: a broken transfer is the only honest signal left.
        if not isinstance(e, ConnectionError):
            log.exception("console audit export failed", read_id=read_id, written=written)
        if view.request.transport is not None:
            view.request.transport.close()
    finally:
        try:
            async with view.state.sessions() as s, s.begin():
                await s.execute(
                    update(AuditRead).where(AuditRead.id == read_id).values(records=written)
                )
        except Exception:
            log.exception("audit read count not updated", read_id=read_id, records=written)
    return response


@page(roles=AUDITORS)
async def export(view: View) -> web.StreamResponse:
    """The filter's records, masked, oldest first."""
    values = {k: v for k, v in view.request.query.items() if isinstance(v, str)}
    return await _export(view, given(values), unmask=False, reason=None)


@page(roles=AUDITORS)
async def export_unmasked(view: View) -> web.StreamResponse:
    """Unmasked, for audit:unmask and a reason (both recorded)."""
    assert view.form is not None
    values = given({k: v for k, v in view.form.items() if isinstance(v, str)})
    reason = reason_of(view)
    if not may_unmask(view):
        await record_read(view, "refused", {"unmask": True, **values}, records=0)
        return view.error(403, "audit.unmask_forbidden")
    if not reason:
        return view.render("error.html", status=422, message=view.t("audit.reason_required"))
    return await _export(view, values, unmask=True, reason=reason)


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE + "/export.{fmt:csv|jsonl}", export)
    app.router.add_post(BASE + "/export.{fmt:csv|jsonl}", export_unmasked)
