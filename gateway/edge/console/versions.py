"""Policy versions in the console: the history (who, when, from where, why), what
changed between any two versions, and an administrator's rollback to an earlier one.

A rollback is previewed first: the admin API's own restore, run with every check and
rolled back (`Editor.dry_run`), shows what it would change; the confirmation, with a
required comment, restores it on condition that the policy has not moved since.

Example:
    >>> add_routes(app)  # /console/versions, /console/versions/compare, .../{n}/rollback
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin import edits
from gateway.admin.actor import ADMINISTER, READ
from gateway.core.problems import Problem
from gateway.edge.admin_api.api import changes_out
from gateway.edge.console.views import COMMENT_MAX, PREFIX, View, page, person_editor, redirect
from gateway.edge.reload import reload_config

__all__ = ["add_routes"]

SHOWN = 50


def _may_restore(view: View) -> bool:
    return view.found is not None and bool(set(ADMINISTER) & set(view.found.account.roles))


@page(roles=READ)
async def history(view: View) -> web.StreamResponse:
    """The newest policy versions, and the form to compare two."""
    rows = await edits.history(view.state.sessions, SHOWN)
    restored = view.request.query.get("restored", "")
    return view.render(
        "versions.html",
        rows=rows,
        may_restore=_may_restore(view),
        restored=view.t("versions.restored", version=restored) if restored.isdigit() else None,
    )


def _number(view: View, name: str) -> int | None:
    raw = view.request.query.get(name, "")
    return int(raw) if raw.isdigit() else None


@page(roles=READ)
async def compare(view: View) -> web.StreamResponse:
    """What changed from version `a` to version `b`, field by field."""
    old, new = _number(view, "a"), _number(view, "b")
    if old is None or new is None:
        return view.error(400, "versions.pick_two")
    try:
        changes = await edits.compare(view.state.sessions, old, new)
    except Problem:
        return view.error(404, "error.not_found")
    return view.render("versions_compare.html", a=old, b=new, changes=changes_out(changes))


async def _preview(
    view: View, n: int, *, status: int = 200, error: str | None = None
) -> web.Response:
    _, current = await edits.current(view.state.sessions)
    try:
        commit = await edits.restore(person_editor(view, None, dry_run=True), n)
    except Problem as p:
        return view.render("error.html", status=p.status, message=p.detail)
    return view.render(
        "versions_rollback.html",
        status=status,
        n=n,
        current=current or 0,
        changes=changes_out(commit.changes),
        error=error,
    )


@page(roles=ADMINISTER)
async def rollback_preview(view: View) -> web.StreamResponse:
    """What restoring version n would change; nothing is changed yet."""
    return await _preview(view, int(view.request.match_info["n"]))


@page(roles=ADMINISTER)
async def rollback(view: View) -> web.StreamResponse:
    """Restore version n, if the policy is still where the preview saw it."""
    n = int(view.request.match_info["n"])
    comment = view.field("comment").strip()[:COMMENT_MAX]
    if not comment:
        return await _preview(view, n, status=422, error=view.t("form.required"))
    seen = view.field("current")
    try:
        commit = await edits.restore(
            person_editor(view, comment, dry_run=False, if_match=f'"{seen}"'), n
        )
    except Problem as p:
        return view.render("error.html", status=p.status, message=p.detail)
    await reload_config(view.state)
    return redirect(f"{PREFIX}/versions?restored={commit.version or n}")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/versions", history)
    app.router.add_get(f"{PREFIX}/versions/compare", compare)
    app.router.add_post(f"{PREFIX}/versions/{{n:\\d+}}/rollback/preview", rollback_preview)
    app.router.add_post(f"{PREFIX}/versions/{{n:\\d+}}/rollback", rollback)
