"""Services in the console: the list, and a service's settings (name, enabled, timeouts,
retries) changed in two steps, a preview of exactly what will change, then the
confirmation with a required comment.

The preview is the admin API's own merge patch run with every check and rolled back
(`Editor.dry_run`); the confirmation runs it again on condition that the policy is still
at the version the preview was made from (If-Match), so a person never confirms a change
other than the one they saw. Operators and administrators may change services; a
service's access rights are shown, and are the administrator's to change.

Example:
    >>> add_routes(app)  # /console/services, /console/services/{p}/{c}/{v}[/preview|/confirm]
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.admin import collections as entities
from gateway.admin.actor import OPERATE, READ
from gateway.core.problems import Problem
from gateway.edge.admin_api.api import changes_out
from gateway.edge.console.views import COMMENT_MAX, PREFIX, View, page, person_editor, redirect
from gateway.edge.reload import reload_config

__all__ = ["add_routes"]

# The settings the form edits: (form field, path in the service, kind).
FIELDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("name", ("name",), "text"),
    ("enabled", ("enabled",), "bool"),
    ("timeouts.connect_ms", ("timeouts", "connect_ms"), "int"),
    ("timeouts.total_ms", ("timeouts", "total_ms"), "int"),
    ("retries.attempts", ("retries", "attempts"), "int"),
)


def _key(view: View) -> tuple[str, str, str]:
    m = view.request.match_info
    return (m["provider"], m["code"], m["version"])


def _value(item: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        item = item.get(part, {}) if isinstance(item, dict) else {}
    return item


def _may_edit(view: View) -> bool:
    return view.found is not None and bool(set(OPERATE) & set(view.found.account.roles))


def _patch(view: View) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The merge patch the form asks for, and the fields it could not read."""
    body: dict[str, Any] = {}
    errors = []
    for name, path, kind in FIELDS:
        raw = view.field(name).strip()
        value: Any = raw
        if kind == "bool":
            value = raw == "on"
        elif kind == "int":
            if not raw.isdigit():
                errors.append({"field": name, "detail": view.t("services.whole_number")})
                continue
            value = int(raw)
        target = body
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return body, errors


@page(roles=READ)
async def services(view: View) -> web.StreamResponse:
    """Every service, with its upstream, timeout and state."""
    items, _ = await entities.read_all(view.state.sessions, entities.SERVICES)
    saved = view.request.query.get("saved", "")
    return view.render(
        "services.html",
        items=items,
        saved=view.t("agencies.saved", version=saved) if saved.isdigit() else None,
    )


async def _service(view: View) -> tuple[dict[str, Any], int | None] | None:
    try:
        return await entities.read_one(view.state.sessions, entities.SERVICES, _key(view))
    except Problem:
        return None


def _form(
    view: View,
    item: dict[str, Any],
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: list[dict[str, str]] | None = None,
    notice: str | None = None,
) -> web.Response:
    shown = values or {name: _value(item, path) for name, path, _ in FIELDS}
    return view.render(
        "service.html",
        status=status,
        item=item,
        values=shown,
        errors=errors or [],
        by_field={e["field"]: e["detail"] for e in errors or []},
        may_edit=_may_edit(view),
        notice=notice,
    )


@page(roles=READ)
async def service_form(view: View) -> web.StreamResponse:
    """A service's settings (read-only for those who may not change them)."""
    found = await _service(view)
    if found is None:
        return view.error(404, "error.not_found")
    return _form(view, found[0])


def _typed(view: View) -> dict[str, Any]:
    return {name: view.field(name) for name, _, _ in FIELDS} | {
        "enabled": view.field("enabled") == "on"
    }


async def _preview_page(
    view: View,
    item: dict[str, Any],
    body: dict[str, Any],
    version: int,
    *,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    try:
        commit = await entities.patch(
            person_editor(view, None, dry_run=True), entities.SERVICES, _key(view), body
        )
    except Problem as p:
        refusal = p.extensions.get("errors") or [{"field": "", "detail": p.detail}]
        return _form(view, item, status=p.status, values=_typed(view), errors=refusal)
    return view.render(
        "service_preview.html",
        status=status,
        item=item,
        changes=changes_out(commit.changes),
        patch=orjson.dumps(body).decode(),
        version=version,
        error=error,
    )


@page(roles=OPERATE)
async def preview(view: View) -> web.StreamResponse:
    """What the form would change, computed by the real operation and rolled back."""
    found = await _service(view)
    if found is None:
        return view.error(404, "error.not_found")
    item, version = found
    body, errors = _patch(view)
    if errors:
        return _form(view, item, status=422, values=_typed(view), errors=errors)
    return await _preview_page(view, item, body, version or 0)


@page(roles=OPERATE)
async def confirm(view: View) -> web.StreamResponse:
    """Commit the previewed change, if the policy is still where the preview saw it."""
    found = await _service(view)
    if found is None:
        return view.error(404, "error.not_found")
    item, _ = found
    comment = view.field("comment").strip()[:COMMENT_MAX]
    try:
        body = orjson.loads(view.field("patch"))
        seen = int(view.field("version"))
    except (orjson.JSONDecodeError, ValueError):
        return view.error(400, "error.stale")
    if not isinstance(body, dict):
        return view.error(400, "error.stale")
    if not comment:
        return await _preview_page(
            view, item, body, seen, status=422, error=view.t("form.required")
        )
    try:
        commit = await entities.patch(
            person_editor(view, comment, if_match=f'"{seen}"'), entities.SERVICES, _key(view), body
        )
    except Problem as p:
        return _form(view, item, status=p.status, notice=p.detail)
    await reload_config(view.state)
    return redirect(f"{PREFIX}/services?saved={commit.version or seen}")


def add_routes(app: web.Application) -> None:
    one = f"{PREFIX}/services/{{provider}}/{{code}}/{{version}}"
    app.router.add_get(f"{PREFIX}/services", services)
    app.router.add_get(one, service_form)
    app.router.add_post(f"{one}/preview", preview)
    app.router.add_post(f"{one}/confirm", confirm)
