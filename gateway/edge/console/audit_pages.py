"""The auditors' side of the console, under /console/audit: the exchange log and its
records (audit_search.py), exports (audit_exports.py), statistics, the citizen report
and verification (audit_reports.py). Every page needs the "auditor" role.

Example:
    >>> add_routes(app)  # the one call pages.py makes
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from gateway.edge.console import audit_exports, audit_reports, audit_search
from gateway.edge.console.audit_common import BASE
from gateway.edge.console.views import SECURITY_HEADERS, redirect

__all__ = ["add_routes"]

_CSS = resources.files("gateway.edge.console").joinpath("static/audit.css").read_bytes()


async def stylesheet(request: web.Request) -> web.StreamResponse:
    """The auditors' pages' stylesheet, with the print rules."""
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"}
    return web.Response(body=_CSS, content_type="text/css", charset="utf-8", headers=headers)


async def to_search(request: web.Request) -> web.StreamResponse:
    """/console/audit: the exchange log (which checks the role)."""
    return redirect(f"{BASE}/exchanges")


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, to_search)
    app.router.add_get(f"{BASE}/static/audit.css", stylesheet)
    audit_search.add_routes(app)
    audit_exports.add_routes(app)
    audit_reports.add_routes(app)
