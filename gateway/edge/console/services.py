"""Services in the console: the list, with each service's upstream, timeout and state.
A service is created, changed and deleted through the forms every entity shares
(editing.py, with a preview and a required comment); operators and administrators may
change services, and a service's access rights are the administrator's (access.py).

Example:
    >>> add_routes(app)  # /console/services, /console/services/{p}/{c}/{v}
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin import collections as entities
from gateway.admin.actor import OPERATE, READ
from gateway.edge.console.views import PREFIX, View, page, redirect

__all__ = ["add_routes"]


@page(roles=READ)
async def services(view: View) -> web.StreamResponse:
    """Every service, with its upstream, timeout and state."""
    items, _ = await entities.read_all(view.state.sessions, entities.SERVICES)
    saved = view.request.query.get("saved", "")
    return view.render(
        "services.html",
        items=items,
        may_edit=view.found is not None and bool(set(OPERATE) & set(view.found.account.roles)),
        saved=view.t("agencies.saved", version=saved) if saved.isdigit() else None,
    )


@page(roles=READ)
async def to_form(view: View) -> web.StreamResponse:
    """A service's earlier address: its form is now where every entity's is."""
    m = view.request.match_info
    return redirect(f"{PREFIX}/edit/services/{m['provider']}/{m['code']}/{m['version']}")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/services", services)
    app.router.add_get(f"{PREFIX}/services/{{provider}}/{{code}}/{{version}}", to_form)
