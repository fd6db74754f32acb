"""Access rights in the console, as a matrix: systems (rows) by services (columns). A
ticked cell is the system's right to the whole service; the narrower rights (a method
and path, or through a group) are written in the cell, as the policy holds them.

Everyone with a role reads the matrix; only an administrator changes it, and, as every
change in the console, after a preview of what will change (the real edit, rolled back)
and with a required comment (gateway/admin/grants.py makes the edit).

Example:
    >>> add_routes(app)  # GET /console/access, POST /console/access/preview, .../confirm

A service's column links to its own matrix, systems by the service's endpoints (a method
and a path glob, as its rights name them, and any the administrator adds as a column):
a ticked cell is the system's right to that endpoint only, set the same way
(`grants.set_endpoint_grants`), previewed, commented, administrator only.
"""

from __future__ import annotations

from typing import Any

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


def _key(view: View) -> str:
    m = view.request.match_info
    return f"{m['provider']}/{m['code']}/{m['version']}"


def _columns(view: View, doc: dict[str, Any], key: str) -> list[tuple[str, str]]:
    """The service's endpoints with rights on them, and those the page was asked to add
    (`?method=GET&path=/a`, or the `endpoint` fields a preview carries)."""
    out = grants.endpoints(doc, key)
    asked: list[tuple[str, str]] = []
    q = view.request.query
    if q.get("path"):
        asked.append(((q.get("method") or "*").upper(), q["path"].strip()))
    if view.form is not None:
        for value in view.form.getall("endpoint", []):
            if isinstance(value, str) and " " in value:
                method, _, path = value.partition(" ")
                asked.append((method.upper(), path))
    for e in asked:
        if e not in out and e[1]:
            out.append(e)
    return out


def _chosen_endpoints(view: View) -> set[tuple[str, str, str]]:
    assert view.form is not None
    out = set()
    for value in view.form.getall("grant", []):
        if isinstance(value, str) and value.count(SEPARATOR) >= 2:
            client, _, rest = value.partition(SEPARATOR)
            method, _, path = rest.partition(SEPARATOR)
            out.add((client, method.upper(), path))
    return out


@page(roles=READ)
async def service_matrix(view: View) -> web.StreamResponse:
    """One service's matrix: systems by its endpoints, editable for administrators."""
    doc, version = await edits.current(view.state.sessions)
    key = _key(view)
    if key not in {grants.service_key(s) for s in doc["services"]}:
        return view.render("error.html", status=404, message=view.t("access.no_service"))
    saved = view.request.query.get("saved", "")
    return view.render(
        "access_service.html",
        key=key,
        clients=doc["clients"],
        columns=_columns(view, doc, key),
        held=grants.endpoint_grants(doc, key),
        whole=grants.whole_service_grants(doc),
        others=grants.other_rights(doc),
        version=version or 0,
        may_edit=bool(view.found and set(ADMINISTER) & set(view.found.account.roles)),
        separator=SEPARATOR,
        methods=("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*"),
        saved=view.t("agencies.saved", version=saved) if saved.isdigit() else None,
    )


async def _service_preview(
    view: View, *, comment: str | None, status: int = 200, error: str | None = None
) -> web.Response:
    doc, _ = await edits.current(view.state.sessions)
    key, seen = _key(view), view.field("version")
    columns, chosen = _columns(view, doc, key), _chosen_endpoints(view)
    dry_run = comment is None
    condition = None if dry_run else f'"{seen}"'
    editor = person_editor(view, comment, dry_run=dry_run, if_match=condition)
    try:
        commit = await grants.set_endpoint_grants(
            editor,
            key,
            set(columns),
            chosen,
        )
    except Problem as p:
        return view.render("error.html", status=p.status, message=p.detail)
    if not dry_run:
        await reload_config(view.state)
        return redirect(f"{PREFIX}/access/{key}?saved={commit.version or seen}")
    return view.render(
        "access_preview.html",
        status=status,
        action=f"{PREFIX}/access/{key}/confirm",
        back=f"{PREFIX}/access/{key}",
        changes=changes_out(commit.changes),
        chosen=sorted(SEPARATOR.join(g) for g in chosen),
        endpoints=[f"{m} {p}" for m, p in columns],
        version=int(seen or 0),
        error=error,
    )


@page(roles=ADMINISTER)
async def service_preview(view: View) -> web.StreamResponse:
    """What the ticked endpoints would change; nothing is changed yet."""
    return await _service_preview(view, comment=None)


@page(roles=ADMINISTER)
async def service_confirm(view: View) -> web.StreamResponse:
    """Set the service's endpoint rights, if the policy is still at the version read."""
    comment = view.field("comment").strip()[:COMMENT_MAX]
    if not comment:
        return await _service_preview(view, comment=None, status=422, error=view.t("form.required"))
    return await _service_preview(view, comment=comment)


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/access", matrix)
    app.router.add_post(f"{PREFIX}/access/preview", preview)
    app.router.add_post(f"{PREFIX}/access/confirm", confirm)
    one = f"{PREFIX}/access/{{provider}}/{{code}}/{{version}}"
    app.router.add_get(one, service_matrix)
    app.router.add_post(f"{one}/preview", service_preview)
    app.router.add_post(f"{one}/confirm", service_confirm)
