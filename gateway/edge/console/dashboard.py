"""The console's home page: who is signed in, and the dashboard a person reads at a
glance: exchanges per minute over the last hour (an SVG chart drawn on the server, with
the same figures as a table), error rate and 95th percentile latency, by service and by
calling agency, the last 24 hours by outcome, the upstreams' circuit breakers and calls
in flight, the audit pipeline, and the configuration version. With `?auto=1` it
refreshes by itself every `REFRESH_SECONDS` (a meta refresh: no script), which the
person turns on and off with a link: a page that reloads unasked fails WCAG 2.2.1.

Example:
    >>> add_routes(app)  # GET /console/
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.audit.dashboard import MINUTES, Summary, exchange_dashboard
from gateway.audit.query import OUTCOMES
from gateway.edge.console.views import PREFIX, View, page
from gateway.store.models import utcnow

__all__ = ["add_routes"]

REFRESH_SECONDS = 30
CHART_W, CHART_H, BAR_W = 600, 120, 10
COLOURS = {"success": "#1d5e2b", "refused": "#b45309", "failed": "#9b1c1c"}


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: float
    height: float
    colour: str
    title: str


def bars(hour: Summary) -> tuple[list[Bar], int]:
    """The stacked bars of the per-minute chart, and the scale's top (exchanges a minute).

    Example:
        >>> bars(summary)[1]
        42
    """
    top = max([sum(m.values()) for m in hour.minutes] + [1])
    out = []
    for i, minute in enumerate(hour.minutes):
        y = float(CHART_H)
        for outcome in OUTCOMES:
            n = minute[outcome]
            if not n:
                continue
            h = CHART_H * n / top
            y -= h
            ago = MINUTES - i
            out.append(
                Bar(
                    i * BAR_W,
                    round(y, 2),
                    round(h, 2),
                    COLOURS[outcome],
                    f"-{ago} min: {n} {outcome}",
                )
            )
    return out, top


def _pipeline(status: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in sorted(status.items())]


@page()
async def home(view: View) -> web.StreamResponse:
    """Who is signed in, and the dashboard."""
    assert view.found is not None
    state = view.state
    async with state.sessions() as s:
        figures = await exchange_dashboard(s, now=utcnow())
    chart, top = bars(figures.hour)
    notice = view.t("password.saved") if view.request.query.get("m") == "password" else None
    return view.render(
        "home.html",
        notice=notice,
        version=state.config_version,
        session_ends=view.found.session.expires_at.isoformat(timespec="minutes"),
        figures=figures,
        chart=chart,
        top=top,
        chart_w=CHART_W,
        chart_h=CHART_H,
        colours=COLOURS,
        breakers=state.upstream.breaker_states(),
        in_flight=state.upstream.in_flight(),
        pipeline=_pipeline(state.audit.status()),
        refresh=REFRESH_SECONDS if view.request.query.get("auto") == "1" else None,
        refresh_seconds=REFRESH_SECONDS,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/", home)
