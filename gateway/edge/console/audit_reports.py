"""The auditors' reports: statistics per agency, service, procedure or month (a table and
a chart drawn on the server, printable); "who accessed this citizen's data" from the
keyed-hash subject index (gateway/audit/subjects.py); and verification of the chain over
a range, with the integrity findings the store has recorded.

Example:
    >>> add_routes(app)  # GET /console/audit/stats, /console/audit/citizen, /console/audit/verify
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import case, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import query
from gateway.audit import stats as rollup
from gateway.audit.subjects import identifiers, load_subject_key
from gateway.audit.verify import verify_store
from gateway.edge.console.audit_common import (
    AUDITORS,
    BASE,
    given,
    inert,
    local_time,
    parse_filter,
    record_read,
    short,
)
from gateway.edge.console.views import View, page
from gateway.store.models import AuditFinding, AuditRecord, AuditSubject

__all__ = ["DIMENSIONS", "add_routes", "chart"]

DIMENSIONS = ("month", "agency", "service", "procedure")
CITIZEN_LIMIT = 1000  # exchanges a citizen report lists (it says when there are more)
FINDINGS_SHOWN = 200
BAR_H, GAP, LABEL_W, CHART_W = 22, 6, 220, 640


def _key(dimension: str, dialect: str) -> Any:
    return {
        "month": rollup.month_column(dialect),
        "agency": AuditRecord.client_agency_code,
        "service": AuditRecord.service_code,
        "procedure": AuditRecord.procedure_code,
    }[dimension]


async def grouped(
    s: AsyncSession, f: query.AuditFilter, dimension: str
) -> tuple[list[dict[str, Any]], bool]:
    """Exchanges per value of `dimension`, by outcome, with the mean duration, and whether
    they came from the roll-up: it answers a filter of whole Vietnam-time days, agency,
    service, procedure and outcome (gateway/audit/stats.py); any other filter is one SQL
    GROUP BY over its records (the API's filter, `AuditFilter.clauses`)."""
    if rollup.answers(f):
        return _sorted(await rollup.grouped(s, f, dimension), dimension), True
    return _sorted(await _from_records(s, f, dimension), dimension), False


def _sorted(out: list[dict[str, Any]], dimension: str) -> list[dict[str, Any]]:
    if dimension == "month":
        return sorted(out, key=lambda g: g["key"])
    return sorted(out, key=lambda g: (-g["count"], g["key"]))


async def _from_records(
    s: AsyncSession, f: query.AuditFilter, dimension: str
) -> list[dict[str, Any]]:
    dialect = s.get_bind().dialect.name
    key = _key(dimension, dialect).label("key")
    if dialect == "postgresql":
        # The planner's cost for a month of a large store passes jit_above_cost, and
        # compiling the query took ~1.2 s of a 1.5 s answer (bench/console_audit.py).
        await s.execute(text("SET LOCAL jit = off"))
    stmt = (
        select(
            key,
            func.count().label("n"),
            func.sum(case((AuditRecord.status < 400, 1), else_=0)).label("success"),
            func.sum(
                case(((AuditRecord.status >= 400) & (AuditRecord.status < 500), 1), else_=0)
            ).label("refused"),
            func.sum(case((AuditRecord.status >= 500, 1), else_=0)).label("failed"),
            func.avg(AuditRecord.duration_ms).label("mean"),
        )
        .where(*f.clauses())
        .group_by(key)
    )
    rows = [r._mapping for r in (await s.execute(stmt)).all()]
    return [
        {
            "key": "" if r["key"] is None else str(r["key"]),
            "count": int(r["n"]),
            "success": int(r["success"] or 0),
            "refused": int(r["refused"] or 0),
            "failed": int(r["failed"] or 0),
            "mean_ms": None if r["mean"] is None else round(float(r["mean"]), 1),
        }
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class Bar:
    y: int
    label: str
    segments: list[tuple[float, float, str, str]]  # x, width, css class, title
    total: int
    end: float  # where the bar ends, for its total beside it


def chart(groups: list[dict[str, Any]]) -> tuple[list[Bar], int]:
    """Horizontal stacked bars (success, refused, failed) and the chart's height.

    Example:
        >>> chart([{"key": "2026-11", "count": 2, "success": 2, "refused": 0, "failed": 0}])[1]
        34
    """
    top = max([g["count"] for g in groups] + [1])
    scale = (CHART_W - LABEL_W - 60) / top
    bars = []
    for i, g in enumerate(groups):
        x = float(LABEL_W)
        segments = []
        for outcome in query.OUTCOMES:
            w = g[outcome] * scale
            if w:
                segments.append((x, w, f"bar-{outcome}", f"{outcome}: {g[outcome]}"))
                x += w
        label = short(g["key"] or "—")[:32]
        bars.append(Bar(GAP + i * (BAR_H + GAP), label, segments, g["count"], x))
    return bars, GAP + len(groups) * (BAR_H + GAP) + GAP


@page(roles=AUDITORS)
async def stats(view: View) -> web.StreamResponse:
    """Statistics of the filter's exchanges by one dimension: a table and its chart."""
    values = given(view.request.query)
    dimension = view.request.query.get("by", "month")
    if dimension not in DIMENSIONS:
        dimension = "month"
    f, error = parse_filter(values)
    groups: list[dict[str, Any]] = []
    rolled_up = False
    if error is None:
        async with view.state.sessions() as s:
            groups, rolled_up = await grouped(s, f, dimension)
        total = sum(g["count"] for g in groups)
        await record_read(view, "stats", {**f.as_dict(), "by": dimension}, records=total)
    bars, height = chart(groups)
    return view.render(
        "audit_stats.html",
        status=400 if error else 200,
        error=error,
        values=values,
        dimension=dimension,
        dimensions=DIMENSIONS,
        groups=groups,
        rolled_up=rolled_up,
        total=sum(g["count"] for g in groups),
        bars=bars,
        height=height,
        width=CHART_W,
        label_w=LABEL_W,
        bar_h=BAR_H,
        filter_text=", ".join(f"{k}={v}" for k, v in f.as_dict().items()),
        made_at=local_time(datetime.now(UTC)),
        inert=inert,
        heading=lambda key: view.t(f"audit.{key}"),
    )


# -- who accessed this citizen's data ---------------------------------------------------------


@page(roles=AUDITORS)
async def citizen_form(view: View) -> web.StreamResponse:
    """The form: a personal identification number (sent by POST, never in a URL)."""
    return view.render("audit_citizen.html", rows=None, number="", error=None)


@page(roles=AUDITORS)
async def citizen(view: View) -> web.StreamResponse:
    """Every exchange whose request carried the number: who, when, procedure, case."""
    raw = "".join(view.field("number").split())
    number = raw if identifiers(raw) == {raw} else ""
    if not number:
        return view.render(
            "audit_citizen.html", status=422, rows=None, number="", error=view.t("audit.id_bad")
        )
    subject = load_subject_key(view.state.settings.keys_dir).digest(number)
    # The empty filter's clauses: one row an exchange (not a two-phase pair's intent too).
    stmt = (
        select(AuditRecord)
        .join(AuditSubject, AuditSubject.event_id == AuditRecord.event_id)
        .where(AuditSubject.subject == subject, *query.AuditFilter().clauses())
        .order_by(AuditSubject.started_at.desc(), AuditRecord.id.desc())
        .limit(CITIZEN_LIMIT + 1)
    )
    async with view.state.sessions() as s:
        found = list((await s.scalars(stmt)).all())
    more = len(found) > CITIZEN_LIMIT
    found = found[:CITIZEN_LIMIT]
    # The read names the keyed hash, never the number.
    await record_read(view, "citizen", {"subject": subject}, records=len(found))
    return view.render(
        "audit_citizen.html",
        rows=query.shape(found, unmask=False),
        number=query.mask_ids(number),
        more=more,
        limit=CITIZEN_LIMIT,
        made_at=local_time(datetime.now(UTC)),
        error=None,
        inert=inert,
        short=short,
        local_time=local_time,
    )


# -- verification -----------------------------------------------------------------------------


async def _findings(view: View) -> list[dict[str, Any]]:
    async with view.state.sessions() as s:
        rows = (
            await s.scalars(
                select(AuditFinding)
                .order_by(AuditFinding.resolved_at.is_not(None), AuditFinding.id.desc())
                .limit(FINDINGS_SHOWN)
            )
        ).all()
    return [
        {
            "found_at": local_time(r.found_at),
            "source": r.source,
            "instance": r.instance,
            "kind": r.kind,
            "seqs": f"{r.seq_from}–{r.seq_to}" if r.seq_from is not None else "",
            "detail": r.detail,
            "resolved": local_time(r.resolved_at) if r.resolved_at else "",
        }
        for r in rows
    ]


@page(roles=AUDITORS)
async def verification(view: View) -> web.StreamResponse:
    """The findings the store recorded, and the form to verify a range."""
    return view.render(
        "audit_verify.html", findings=await _findings(view), report=None, error=None, values={}
    )


@page(roles=AUDITORS)
async def run_verification(view: View) -> web.StreamResponse:
    """Verify the chain over the range (verify.verify_store, as `lgsp audit verify`)."""
    assert view.form is not None
    values = given({k: v for k, v in view.form.items() if isinstance(v, str)})
    values = {k: v for k, v in values.items() if k in ("since", "until")}
    instance = view.field("instance").strip() or None
    f, error = parse_filter(values)
    report = None
    if error is None:
        result = await verify_store(
            view.state.sessions, since=f.since, until=f.until, instance=instance
        )
        report = result.as_dict()
        await record_read(
            view,
            "verify",
            {**f.as_dict(), **({"instance": instance} if instance else {})},
            records=int(report["events"]),
        )
    return view.render(
        "audit_verify.html",
        status=400 if error else 200,
        findings=await _findings(view),
        report=report,
        error=error,
        values={**values, **({"instance": instance} if instance else {})},
        inert=inert,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{BASE}/stats", stats)
    app.router.add_get(f"{BASE}/citizen", citizen_form)
    app.router.add_post(f"{BASE}/citizen", citizen)
    app.router.add_get(f"{BASE}/verify", verification)
    app.router.add_post(f"{BASE}/verify", run_verification)
