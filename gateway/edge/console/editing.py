"""Creating, changing and deleting the policy's entities in the console, for every kind
of entity alike (services, upstreams, systems, groups, rate limits): a form, then a
preview of exactly what will change, then the confirmation with a required comment.

An `Entity` says which collection of the policy document a form edits
(gateway.admin.collections), which fields the form shows and who may change it. The
form only turns what was typed into a JSON body (text, whole numbers, ticks, lists);
every rule is the policy's own, checked by the admin API's operation: a preview is that
operation run with every check and rolled back (`Editor.dry_run`), and a refusal names
the field it is about, shown next to it. The confirmation runs the operation again on
condition that the policy is still at the version the preview saw (If-Match), so a
person never confirms a change other than the one they saw; it is recorded as the
person's (`person:<account>`) with their comment, and the gateway's tables are rebuilt
before the answer.

Example:
    >>> add_routes(app, (UPSTREAMS,))  # /console/new/upstreams, /console/edit/upstreams/x
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from gateway.admin import collections as entities
from gateway.admin.actor import READ
from gateway.admin.refusals import refused
from gateway.config.versions import PolicyCommit
from gateway.core.problems import Problem
from gateway.edge.admin_api.api import changes_out
from gateway.edge.console.i18n import CATALOGUE
from gateway.edge.console.views import COMMENT_MAX, PREFIX, View, page, person_editor, redirect
from gateway.edge.reload import reload_config

__all__ = ["Entity", "Field", "add_routes", "key_path", "parse_key"]

Kind = Literal["text", "int", "bool", "list", "choice"]
Op = Literal["create", "update", "delete"]
OPS: tuple[Op, ...] = ("create", "update", "delete")
NONE = "*"  # an absent key field in a path (a rate limit for every client)


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a form: its dotted path in the entity (also the form field's name),
    its label in the catalogue, how what is typed is read, and whether leaving it empty
    unsets it (`optional`) rather than sending an empty value for the policy to judge."""

    name: str
    label: str
    kind: Kind = "text"
    optional: bool = False
    choices: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.name.replace(".", "-")


@dataclass(frozen=True, slots=True)
class Entity:
    """A kind of entity the console edits: its collection, its URL segment, its title's
    catalogue key, its form, the columns of its list and who may change it. `key_sizes`
    says how many path segments each key field takes (a service key takes three)."""

    slug: str
    collection: entities.Collection
    title: str
    fields: tuple[Field, ...]
    roles: tuple[str, ...]
    columns: tuple[str, ...] = ()
    key_sizes: tuple[int, ...] = ()
    list_url: str = ""

    @property
    def listed_at(self) -> str:
        return self.list_url or f"{PREFIX}/{self.slug}"

    @property
    def noun(self) -> str:
        """The catalogue key of one such entity's name ("kind.rate_limit")."""
        return "kind." + self.collection.label.replace(" ", "_")

    def label_of(self, name: str) -> str:
        return next(f.label for f in self.fields if f.name == name)

    def sizes(self) -> tuple[int, ...]:
        return self.key_sizes or tuple(1 for _ in self.collection.keys)


def key_path(entity: Entity, item: dict[str, Any]) -> str:
    """The entity's key as a URL path ('*' for an absent key field).

    Example:
        >>> key_path(RATE_LIMITS, {"service": "000.00.00.H49/echo/v1"})
        '*/000.00.00.H49/echo/v1'
    """
    return "/".join(str(item.get(k) or NONE) for k in entity.collection.keys)


def parse_key(entity: Entity, path: str) -> entities.Key | None:
    """The key a path names (as `key_path` wrote it), or None if it names none.

    Example:
        >>> parse_key(RATE_LIMITS, "his/*")
        ('his', None)
    """
    parts = path.split("/")
    key: list[str | None] = []
    for size in entity.sizes():
        if parts[:1] == [NONE]:
            key.append(None)
            parts = parts[1:]
            continue
        if len(parts) < size or not all(parts[:size]):
            return None
        key.append("/".join(parts[:size]))
        parts = parts[size:]
    return tuple(key) if not parts and any(key) else None


def _get(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _shown(field: Field, value: Any) -> Any:
    """A value as its input shows it."""
    if field.kind == "bool":
        return bool(value) if value is not None else True
    if field.kind == "list":
        return ", ".join(value or [])
    return "" if value is None else value


def _typed(view: View, entity: Entity) -> dict[str, Any]:
    """What the person typed, as the inputs show it again."""
    return {
        f.name: (view.field(f.name) == "on") if f.kind == "bool" else view.field(f.name)
        for f in entity.fields
    }


def _read(
    view: View, entity: Entity, op: Op
) -> tuple[dict[str, Any], entities.Key, list[dict[str, str]]]:
    """The JSON body the form asks for, the key it names, and the fields it could not
    read. Unchanged key fields of an update are left to the address."""
    body: dict[str, Any] = {}
    errors = []
    for f in entity.fields:
        raw = view.field(f.name).strip()
        value: Any = raw
        if f.kind == "bool":
            value = raw == "on"
        elif f.kind == "list":
            value = [v for v in re.split(r"[\s,]+", raw) if v]
        elif not raw and f.optional:
            value = None
        elif f.kind == "int":
            if not raw.isdigit():
                errors.append({"field": f.name, "detail": view.t("services.whole_number")})
                continue
            value = int(raw)
        if value is None and op == "create":
            continue
        *parents, last = f.name.split(".")
        target = body
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    key = tuple(body.get(k) or None for k in entity.collection.keys)
    return _unset_empty(body, drop=op == "create"), key, errors


def _unset_empty(body: dict[str, Any], *, drop: bool) -> dict[str, Any]:
    """A part of the body whose every field is unset is itself unset (a rate limit's
    `rate` when only a daily quota is left), rather than left an empty object; `drop`
    (a creation) leaves unset fields out, for their defaults."""
    out: dict[str, Any] = {}
    for k, v in body.items():
        if isinstance(v, dict):
            v = _unset_empty(v, drop=drop)
            v = v if any(x is not None for x in v.values()) else None
        if v is not None or not drop:
            out[k] = v
    return out


def _may_edit(view: View, entity: Entity) -> bool:
    return view.found is not None and bool(set(entity.roles) & set(view.found.account.roles))


def _errors_by_field(entity: Entity, errors: Iterable[dict[str, str]]) -> dict[str, str]:
    names = {f.name for f in entity.fields}
    return {e["field"]: e["detail"] for e in errors if e.get("field") in names}


def _form(
    view: View,
    entity: Entity,
    item: dict[str, Any] | None,
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: list[dict[str, str]] | None = None,
    notice: str | None = None,
) -> web.Response:
    """The form: blank (`item` None, a creation) or the entity's values."""
    if values is None:
        source = item or dict(view.request.query)  # a new system prefilled with its agency
        values = {f.name: _shown(f, _get(source, f.name)) for f in entity.fields}
    return view.render(
        "entity_form.html",
        status=status,
        entity=entity,
        item=item,
        key=key_path(entity, item) if item else "",
        values=values,
        errors=errors or [],
        by_field=_errors_by_field(entity, errors or []),
        may_edit=_may_edit(view, entity),
        notice=notice,
    )


async def _change(
    view: View,
    entity: Entity,
    op: Op,
    key: entities.Key,
    body: dict[str, Any],
    *,
    comment: str | None,
    if_match: str | None = None,
) -> PolicyCommit:
    """The admin API's own operation, for the person; a dry run without `if_match`."""
    editor = person_editor(view, comment, dry_run=if_match is None, if_match=if_match)
    collection = entity.collection
    if op == "delete":
        return await entities.delete(editor, collection, key)
    if op == "update":
        return await entities.patch(editor, collection, key, body)
    items, _ = await entities.read_all(view.state.sessions, collection)
    if any(tuple(i.get(k) for k in collection.keys) == key for i in items):
        named = [k for k, v in zip(collection.keys, key, strict=True) if v is not None]
        raise refused(
            view.t("edit.exists"), [{"field": named[-1], "detail": view.t("edit.exists")}]
        )
    return await entities.put(editor, collection, key, body)


def _entity(view: View, catalogue: dict[str, Entity]) -> Entity | None:
    return catalogue.get(view.request.match_info["slug"])


async def _one(view: View, entity: Entity, path: str) -> tuple[dict[str, Any], int | None] | None:
    key = parse_key(entity, path)
    if key is None:
        return None
    try:
        return await entities.read_one(view.state.sessions, entity.collection, key)
    except Problem:
        return None


def _refusal(view: View, p: Problem) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = p.extensions.get("errors") or [{"field": "", "detail": p.detail}]
    return [{**e, "detail": worded(view, e)} for e in errors]


def worded(view: View, error: dict[str, str]) -> str:
    """The policy's refusal of a field in the person's language: pydantic's error `code`
    worded from the catalogue (`invalid.<code>`, its parameters filled in) where the
    catalogue has it; else the policy's own words (its checks' messages are English)."""
    code = error.get("code")
    key = f"invalid.{code}"
    if code is None or key not in CATALOGUE:
        return error["detail"]
    try:
        return view.t(key, **{k: v for k, v in error.items() if k not in ("field", "detail")})
    except (KeyError, IndexError):
        return error["detail"]


async def _preview_page(
    view: View,
    entity: Entity,
    op: Op,
    item: dict[str, Any] | None,
    body: dict[str, Any],
    key: entities.Key,
    version: int,
    *,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    try:
        commit = await _change(view, entity, op, key, body, comment=None)
    except Problem as p:
        values = _typed(view, entity)
        return _form(view, entity, item, status=p.status, values=values, errors=_refusal(view, p))
    return view.render(
        "entity_preview.html",
        status=status,
        entity=entity,
        op=op,
        key=key_path(entity, dict(zip(entity.collection.keys, key, strict=True))),
        changes=changes_out(commit.changes),
        body=orjson.dumps(body).decode(),
        version=version,
        error=error,
    )


class Pages:
    """The handlers for a catalogue of entities, found by their URL segment."""

    def __init__(self, catalogue: Iterable[Entity]) -> None:
        self.catalogue = {e.slug: e for e in catalogue}

    async def listing(self, view: View) -> web.StreamResponse:
        """Every entity of a kind, each linked to its form."""
        entity = _entity(view, self.catalogue)
        if entity is None:
            return view.error(404, "error.not_found")
        items, _ = await entities.read_all(view.state.sessions, entity.collection)
        saved = view.request.query.get("saved", "")
        rows = [
            {"key": key_path(entity, i), "cells": [_get(i, c) for c in entity.columns]}
            for i in items
        ]
        return view.render(
            "entity_list.html",
            entity=entity,
            rows=rows,
            may_edit=_may_edit(view, entity),
            saved=view.t("agencies.saved", version=saved) if saved.isdigit() else None,
        )

    async def new(self, view: View) -> web.StreamResponse:
        """A blank form (some fields filled from the query: a new system's agency)."""
        entity = _entity(view, self.catalogue)
        if entity is None:
            return view.error(404, "error.not_found")
        if not _may_edit(view, entity):
            return view.error(403, "error.forbidden")
        return _form(view, entity, None)

    async def edit(self, view: View) -> web.StreamResponse:
        """An entity's form (read-only for those who may not change it)."""
        entity = _entity(view, self.catalogue)
        found = entity and await _one(view, entity, view.request.match_info["key"])
        if entity is None or not found:
            return view.error(404, "error.not_found")
        return _form(view, entity, found[0])

    async def _target(
        self, view: View
    ) -> tuple[Entity, Op, dict[str, Any] | None, int] | web.Response:
        """The entity kind, operation and (but for a creation) entity a POST is about."""
        entity = _entity(view, self.catalogue)
        op = view.field("op")
        if entity is None or op not in OPS:
            return view.error(404, "error.not_found")
        if not _may_edit(view, entity):
            return view.error(403, "error.forbidden")
        if op == "create":
            _, version = await entities.read_all(view.state.sessions, entity.collection)
            return entity, op, None, version or 0
        found = await _one(view, entity, view.field("key"))
        if found is None:
            return view.error(404, "error.not_found")
        return entity, op, found[0], found[1] or 0

    async def preview(self, view: View) -> web.StreamResponse:
        """What the form would change, computed by the real operation and rolled back."""
        target = await self._target(view)
        if isinstance(target, web.Response):
            return target
        entity, op, item, version = target
        body, key, errors = _read(view, entity, op) if op != "delete" else ({}, (), [])
        if item is not None:  # an update or a deletion is about the entity it names
            key = tuple(item.get(k) for k in entity.collection.keys)
            body = {k: v for k, v in body.items() if k not in entity.collection.keys}
        if errors:
            return _form(view, entity, item, status=422, values=_typed(view, entity), errors=errors)
        return await _preview_page(view, entity, op, item, body, key, version)

    async def confirm(self, view: View) -> web.StreamResponse:
        """Commit the previewed change, if the policy is still where the preview saw it."""
        target = await self._target(view)
        if isinstance(target, web.Response):
            return target
        entity, op, item, _ = target
        comment = view.field("comment").strip()[:COMMENT_MAX]
        try:
            body = orjson.loads(view.field("body"))
            seen = int(view.field("version"))
        except (orjson.JSONDecodeError, ValueError):
            return view.error(400, "error.stale")
        if not isinstance(body, dict):
            return view.error(400, "error.stale")
        if item is not None:
            key = tuple(item.get(k) for k in entity.collection.keys)
        else:
            key = tuple(body.get(k) or None for k in entity.collection.keys)
        if not comment:
            required = view.t("form.required")
            return await _preview_page(
                view, entity, op, item, body, key, seen, status=422, error=required
            )
        try:
            commit = await _change(
                view, entity, op, key, body, comment=comment, if_match=f'"{seen}"'
            )
        except Problem as p:
            return _form(view, entity, item, status=p.status, notice=p.detail)
        await reload_config(view.state)
        return redirect(f"{entity.listed_at}?saved={commit.version or seen}")


def add_routes(app: web.Application, catalogue: Iterable[Entity]) -> None:
    """The forms of every entity of `catalogue`, and the lists of those listed here
    (`list_url` empty: the console has no other page listing them).

    Example:
        >>> add_routes(web.Application(), (UPSTREAMS,))
    """
    kinds = tuple(catalogue)
    pages = Pages(kinds)
    listed = "|".join(re.escape(e.slug) for e in kinds if not e.list_url)
    if listed:
        app.router.add_get(f"{PREFIX}/{{slug:{listed}}}", page(roles=READ)(pages.listing))
    app.router.add_get(f"{PREFIX}/new/{{slug}}", page(roles=READ)(pages.new))
    app.router.add_get(f"{PREFIX}/edit/{{slug}}/{{key:.+}}", page(roles=READ)(pages.edit))
    app.router.add_post(f"{PREFIX}/edit/{{slug}}/preview", page(roles=READ)(pages.preview))
    app.router.add_post(f"{PREFIX}/edit/{{slug}}/confirm", page(roles=READ)(pages.confirm))
