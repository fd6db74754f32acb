"""The console's pages for administrators: agencies (list, edit) and the change log.

An edit goes through the admin API's own operation (gateway.admin.collections), with the
person as the actor (`person:<account>`) and the comment they typed, so the policy
version and the admin event name them; the gateway's tables are rebuilt before the
answer, as after an admin API change.

Example:
    >>> add_routes(app)  # GET /console, /console/agencies, /console/agencies/{code}, ...
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin import collections as entities
from gateway.admin.actor import ADMINISTER, READ
from gateway.admin.events import admin_events, without_credential_hints
from gateway.core.problems import Problem
from gateway.edge.console import audit_pages
from gateway.edge.console.views import COMMENT_MAX, PREFIX, View, page, person_editor, redirect
from gateway.edge.reload import reload_config

__all__ = ["add_routes"]

EVENTS_SHOWN = 100


def _may_edit(view: View) -> bool:
    return view.found is not None and bool(set(ADMINISTER) & set(view.found.account.roles))


@page(roles=READ)
async def agencies(view: View) -> web.StreamResponse:
    """Every agency of the policy."""
    items, version = await entities.read_all(view.state.sessions, entities.AGENCIES)
    saved = view.request.query.get("saved")
    return view.render(
        "agencies.html",
        items=items,
        version=version,
        may_edit=_may_edit(view),
        saved=view.t("agencies.saved", version=saved) if saved and saved.isdigit() else None,
    )


async def _agency(view: View) -> dict[str, Any] | None:
    try:
        item, _ = await entities.read_one(
            view.state.sessions, entities.AGENCIES, (view.request.match_info["code"],)
        )
    except Problem:
        return None
    return item


@page(roles=READ)
async def agency_form(view: View) -> web.StreamResponse:
    """One agency's form (read-only for those who may not edit it)."""
    item = await _agency(view)
    if item is None:
        return view.error(404, "error.not_found")
    clients, _ = await entities.read_all(view.state.sessions, entities.CLIENTS)
    systems = [c for c in clients if c["agency"] == item["code"]]  # its systems, to edit
    return view.render(
        "agency.html", item=item, errors=[], comment="", may_edit=_may_edit(view), systems=systems
    )


@page(roles=ADMINISTER)
async def agency_save(view: View) -> web.StreamResponse:
    """Save an agency: the same merge patch the admin API's PATCH applies, by the person."""
    item = await _agency(view)
    if item is None:
        return view.error(404, "error.not_found")
    name, doc_code = view.field("name").strip(), view.field("doc_code").strip()
    comment = view.field("comment").strip()[:COMMENT_MAX]
    edited = {**item, "name": name, "doc_code": doc_code or None}
    errors = []
    if not comment:
        errors.append({"field": "comment", "detail": view.t("form.required")})
    if not name:
        errors.append({"field": "name", "detail": view.t("form.required")})
    if not errors:
        try:
            commit = await entities.patch(
                person_editor(view, comment),
                entities.AGENCIES,
                (item["code"],),
                {"name": name, "doc_code": doc_code or None},
            )
        except Problem as p:
            errors = p.extensions.get("errors") or [{"field": "", "detail": p.detail}]
        else:
            await reload_config(view.state)
            if commit.version is None:
                return redirect(f"{PREFIX}/agencies")
            return redirect(f"{PREFIX}/agencies?saved={commit.version}")
    return view.render(
        "agency.html", status=422, item=edited, errors=errors, comment=comment, may_edit=True
    )


@page(roles=READ)
async def events(view: View) -> web.StreamResponse:
    """The newest admin events, newest first: who changed what, when, and why."""
    rows = await admin_events(view.state.sessions, limit=EVENTS_SHOWN)
    shown = [
        without_credential_hints(
            {
                "at": e.at.isoformat(timespec="seconds"),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "comment": e.comment or "",
            }
        )
        for e in reversed(rows)
    ]
    return view.render("events.html", events=shown)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX, to_home)
    app.router.add_get(f"{PREFIX}/agencies", agencies)
    app.router.add_get(f"{PREFIX}/agencies/{{code}}", agency_form)
    app.router.add_post(f"{PREFIX}/agencies/{{code}}", agency_save)
    app.router.add_get(f"{PREFIX}/events", events)
    audit_pages.add_routes(app)  # the auditors' pages, /console/audit/...


async def to_home(request: web.Request) -> web.StreamResponse:
    """/console without its slash: the home page."""
    return redirect(f"{PREFIX}/")
