"""What the admin API's handlers share: the API itself, the caller as an actor, and the
answers to a change (the commit) and to a read (with the policy version as its ETag)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.admin.actor import Actor
from gateway.admin.edits import Editor
from gateway.config.diff import Change
from gateway.config.versions import PolicyCommit
from gateway.edge.admin_api.models import ChangeOut
from gateway.edge.reload import reload_config
from gateway.edge.toolkit import Api, Call
from gateway.upstream.allowlist import OutboundPolicy

__all__ = ["ADMIN", "BODY", "PREFIX", "changes_out", "committed", "editor", "etag"]

PREFIX = "/admin/v1"
ADMIN = Api(PREFIX)
BODY = "An admin request body"


def editor(call: Call[Any]) -> Editor:
    """The caller as the one making a change: `admin-api:<client>`, with its roles, the
    `?comment=` it gave, and the If-Match it sent."""
    comment = getattr(call.query, "comment", None)
    actor = Actor.client(call.caller.code, call.caller.roles, comment)
    return Editor(
        call.state.sessions,
        actor,
        outbound=OutboundPolicy.from_settings(call.state.settings),
        if_match=call.request.headers.get("If-Match"),
    )


def changes_out(changes: Iterable[Change]) -> list[dict[str, Any]]:
    return [
        ChangeOut.model_validate(
            {
                "summary": c.summary,
                "details": c.details(),
                "kind": c.kind,
                "key": c.key,
                "op": c.op,
            }
        ).model_dump(mode="json")
        for c in changes
    ]


async def committed(call: Call[Any], commit: PolicyCommit) -> dict[str, Any]:
    """The answer to a change, once this gateway's tables are rebuilt: the caller's next
    request already runs under it."""
    await reload_config(call.state)
    return {"version": commit.version, "changes": changes_out(commit.changes)}


def etag(version: int | None) -> dict[str, str]:
    return {"ETag": f'"{version or 0}"'}
