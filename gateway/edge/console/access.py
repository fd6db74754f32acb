"""Access rights in the console, as a matrix: systems (rows) by services (columns). A
ticked cell is the system's right to the whole service; the narrower rights (a method
and path, or through a group) are written in the cell, as the policy holds them.

Everyone with a role reads the matrix; only an administrator changes it, and, as every
change in the console, after a preview of what will change (the real edit, rolled back)
and with a required comment (gateway/admin/grants.py makes the edit).

Example:
    >>> add_routes(app)  # GET /console/access, POST /console/access/preview, .../confirm
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin import edits, grants
from gateway.admin.actor import ADMINISTER, READ
from gateway.core.problems import Problem
from gateway.edge.admin_api.api import changes_out
from gateway.edge.console.views import COMMENT_MAX, PREFIX, View, page, person_editor, redirect
from gateway.edge.reload import reload_config

__all__ = ["add_routes"]

SEPARATOR = "|"  # between the client and the service key in a checkbox's value


def _chosen(view: View) -> set[tuple[str, str]]:
    assert view.form is not None
    out = set()
    for value in view.form.getall("grant", []):
        if isinstance(value, str) and SEPARATOR in value:
            client, _, key = value.partition(SEPARATOR)
            out.add((client, key))
    return out


@page(roles=READ)
async def matrix(view: View) -> web.StreamResponse:
    """The matrix, editable for administrators."""
    doc, version = await edits.current(view.state.sessions)
    saved = view.request.query.get("saved", "")
    return view.render(
        "access.html",
        clients=doc["clients"],
        services=[grants.service_key(s) for s in doc["services"]],
        whole=grants.whole_service_grants(doc),
        others=grants.other_rights(doc),
        version=version or 0,
        may_edit=bool(view.found and set(ADMINISTER) & set(view.found.account.roles)),
        separator=SEPARATOR,
        saved=view.t("agencies.saved", version=saved) if saved.isdigit() else None,
    )


async def _preview(
    view: View,
    chosen: set[tuple[str, str]],
    version: int,
    *,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    try:
        commit = await grants.set_whole_service_grants(
            person_editor(view, None, dry_run=True), chosen
        )
    except Problem as p:
        return view.render("error.html", status=p.status, message=p.detail)
    return view.render(
        "access_preview.html",
        status=status,
        changes=changes_out(commit.changes),
        chosen=sorted(f"{c}{SEPARATOR}{k}" for c, k in chosen),
        version=version,
        error=error,
    )


@page(roles=ADMINISTER)
async def preview(view: View) -> web.StreamResponse:
    """What the ticked matrix would change; nothing is changed yet."""
    return await _preview(view, _chosen(view), int(view.field("version") or 0))


@page(roles=ADMINISTER)
async def confirm(view: View) -> web.StreamResponse:
    """Set the rights, if the policy is still at the version the matrix was read at."""
    chosen, seen = _chosen(view), view.field("version")
    comment = view.field("comment").strip()[:COMMENT_MAX]
    if not comment:
        return await _preview(
            view, chosen, int(seen or 0), status=422, error=view.t("form.required")
        )
    try:
        commit = await grants.set_whole_service_grants(
            person_editor(view, comment, dry_run=False, if_match=f'"{seen}"'), chosen
        )
    except Problem as p:
        return view.render("error.html", status=p.status, message=p.detail)
    await reload_config(view.state)
    return redirect(f"{PREFIX}/access?saved={commit.version or seen}")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/access", matrix)
    app.router.add_post(f"{PREFIX}/access/preview", preview)
    app.router.add_post(f"{PREFIX}/access/confirm", confirm)
