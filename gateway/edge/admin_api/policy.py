"""The policy as a whole: read it (or an earlier version), replace it, preview a
replacement, list its versions, restore one."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.admin import edits
from gateway.admin.actor import ADMINISTER, READ
from gateway.admin.refusals import refused, validation_errors
from gateway.config.policy import PolicySet
from gateway.edge.admin_api.api import ADMIN, BODY, PREFIX, changes_out, committed, editor, etag
from gateway.edge.admin_api.models import (
    CommentQuery,
    CommitOut,
    DiffOut,
    PolicyOut,
    PolicyQuery,
    VersionList,
    VersionOut,
    VersionsQuery,
)
from gateway.edge.toolkit import Body, Call, NoQuery, Reply, Route, json_response

__all__ = ["COMMIT", "ROUTES"]

COMMIT = Reply(
    200,
    "The change, committed as one new policy version (`version` null: nothing changed).",
    CommitOut,
)


async def get_policy(call: Call[PolicyQuery]) -> web.StreamResponse:
    version = call.query.version
    if version is None:
        doc, current = await edits.current(call.state.sessions)
        return json_response({"version": current, "document": doc}, headers=etag(current))
    doc = await edits.document_at(call.state.sessions, version)
    return json_response({"version": version, "document": doc})


def _whole(body: dict[str, Any]) -> PolicySet:
    what = "The policy document is not valid"
    if set(body) == {"version", "document"}:
        what += f" (send the document itself, not the envelope GET {PREFIX}/policy answers)"
    try:
        return PolicySet.model_validate(body)
    except ValidationError as e:
        raise refused(what, validation_errors(e), doc=body) from None


async def put_policy(call: Call[CommentQuery]) -> web.StreamResponse:
    body = await call.json(BODY)
    commit = await edits.replace(editor(call), _whole(body), body)
    return json_response(await committed(call, commit))


async def diff_policy(call: Call[NoQuery]) -> web.StreamResponse:
    policy = _whole(await call.json(BODY))
    return json_response({"changes": changes_out(await edits.preview(call.state.sessions, policy))})


async def list_versions(call: Call[VersionsQuery]) -> web.StreamResponse:
    rows = await edits.history(call.state.sessions, call.query.limit)
    items = [
        VersionOut(
            version=r.id,
            at=r.at,
            actor=r.actor,
            source=r.source,
            comment=r.comment,
            digest=r.digest,
            changes=list(r.changes or []),
        ).model_dump(mode="json")
        for r in rows
    ]
    return json_response({"items": items})


async def rollback_policy(call: Call[CommentQuery]) -> web.StreamResponse:
    commit = await edits.restore(editor(call), call.path_int("n", "policy version"))
    return json_response(await committed(call, commit))


ROUTES: tuple[Route, ...] = (
    ADMIN.route(
        "GET",
        "/policy",
        get_policy,
        "The current policy document, or an earlier version of it",
        reply=Reply(200, "The document and its policy version (the ETag).", PolicyOut, etag=True),
        roles=READ,
        query=PolicyQuery,
        addressed=True,
    ),
    ADMIN.route(
        "PUT",
        "/policy",
        put_policy,
        "Replace the whole policy (what `lgsp policy apply` does)",
        reply=COMMIT,
        roles=ADMINISTER,
        body=Body(PolicySet),
        query=CommentQuery,
        versioned=True,
    ),
    ADMIN.route(
        "POST",
        "/policy/diff",
        diff_policy,
        "What replacing the policy with this document would change (nothing is committed)",
        reply=Reply(200, "The changes, in the order they would be made.", DiffOut),
        roles=READ,
        body=Body(PolicySet),
    ),
    ADMIN.route(
        "GET",
        "/policy/versions",
        list_versions,
        "Policy versions, newest first",
        reply=Reply(
            200, "Who made each version, when, from where, why, and what it changed.", VersionList
        ),
        roles=READ,
        query=VersionsQuery,
    ),
    ADMIN.route(
        "POST",
        "/policy/versions/{n}/rollback",
        rollback_policy,
        "Restore an earlier policy version (as a new version)",
        reply=COMMIT,
        roles=ADMINISTER,
        query=CommentQuery,
        versioned=True,
        path_integers=("n",),
    ),
)
