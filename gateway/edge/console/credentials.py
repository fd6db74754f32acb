"""Clients and their credentials in the console, for administrators: the clients, and
one client's credentials (never their values), issued, rotated with a grace period,
revoked. A new value is shown once, on the answer to the form that made it.

The same operations as the admin API's (gateway/admin/credentials.py), acting for the
person (`person:<account>`) with the comment they typed; this gateway's tables are
rebuilt before the answer, so a revoked credential fails on the next request.

Example:
    >>> add_routes(app)  # /console/clients, /console/clients/{code}[/issue|/rotate|/revoke]
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin import collections as entities
from gateway.admin import credentials as ops
from gateway.admin.actor import ADMINISTER, Actor
from gateway.core.problems import Problem
from gateway.edge.console.views import COMMENT_MAX, PREFIX, View, page, redirect
from gateway.edge.reload import reload_config

__all__ = ["add_routes"]

KINDS = ("secret", "api_key")
GRACES = (0, 300, 3600, 86_400)  # the choices of a rotation's grace period, seconds


def _actor(view: View) -> Actor:
    assert view.found is not None
    account = view.found.account
    comment = view.field("comment").strip()[:COMMENT_MAX] or None
    return Actor.person(account.name, frozenset(account.roles), comment)


@page(roles=ADMINISTER)
async def clients(view: View) -> web.StreamResponse:
    """Every client: departmental systems and admin callers."""
    items, _ = await entities.read_all(view.state.sessions, entities.CLIENTS)
    saved = view.request.query.get("saved", "")
    shown = view.t("agencies.saved", version=saved) if saved.isdigit() else None
    return view.render("clients.html", items=items, saved=shown)


async def _page(
    view: View,
    *,
    status: int = 200,
    issued: ops.CredentialView | None = None,
    error: str | None = None,
) -> web.Response:
    code = view.request.match_info["code"]
    try:
        rows = await ops.list_credentials(view.state.sessions, code)
    except Problem:
        return view.error(404, "error.not_found")
    done = view.request.query.get("done", "")
    return view.render(
        "client.html",
        status=status,
        code=code,
        rows=rows,
        kinds=KINDS,
        graces=GRACES,
        issued=issued,
        error=error,
        done=view.t("people.done") if done else None,
    )


@page(roles=ADMINISTER)
async def credentials(view: View) -> web.StreamResponse:
    """One client's credentials, and the forms to issue, rotate and revoke."""
    return await _page(view)


def _kind(view: View) -> str:
    kind = view.field("kind")
    return kind if kind in KINDS else "secret"


@page(roles=ADMINISTER)
async def issue(view: View) -> web.StreamResponse:
    """Issue a credential; its value is on this answer only."""
    try:
        made = await ops.issue_credential(
            view.state.sessions, _actor(view), view.request.match_info["code"], _kind(view)
        )
    except Problem as p:
        return await _page(view, status=p.status, error=p.detail)
    await reload_config(view.state)
    return await _page(view, issued=made)


@page(roles=ADMINISTER)
async def rotate(view: View) -> web.StreamResponse:
    """A new credential; the others of its kind revoked, or expiring after the grace."""
    grace = view.field("grace")
    seconds = int(grace) if grace.isdigit() and int(grace) in GRACES else 0
    try:
        rotation = await ops.rotate(
            view.state.sessions,
            _actor(view),
            view.request.match_info["code"],
            _kind(view),
            grace_seconds=seconds,
        )
    except Problem as p:
        return await _page(view, status=p.status, error=p.detail)
    await reload_config(view.state)
    return await _page(view, issued=rotation.issued)


@page(roles=ADMINISTER)
async def revoke(view: View) -> web.StreamResponse:
    """Revoke one credential now."""
    code, raw = view.request.match_info["code"], view.field("id")
    if not raw.isdigit():
        return await _page(view, status=422, error=view.t("error.stale"))
    ours = {c.id for c in await ops.list_credentials(view.state.sessions, code)}
    if int(raw) not in ours:  # only this client's: the page names the client
        return view.error(404, "error.not_found")
    try:
        await ops.revoke_credential(view.state.sessions, _actor(view), int(raw))
    except Problem as p:
        return await _page(view, status=p.status, error=p.detail)
    await reload_config(view.state)
    return redirect(f"{PREFIX}/clients/{code}?done=revoke")


def add_routes(app: web.Application) -> None:
    one = f"{PREFIX}/clients/{{code}}"
    app.router.add_get(f"{PREFIX}/clients", clients)
    app.router.add_get(one, credentials)
    app.router.add_post(f"{one}/issue", issue)
    app.router.add_post(f"{one}/rotate", rotate)
    app.router.add_post(f"{one}/revoke", revoke)
