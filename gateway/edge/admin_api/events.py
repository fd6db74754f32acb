"""The admin events over HTTP: who changed what, when, before and after, and why."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.actor import ADMINISTRATOR, READ
from gateway.admin.events import admin_events, without_credential_hints
from gateway.edge.admin_api.api import ADMIN
from gateway.edge.admin_api.models import AdminEventList, AdminEventOut, ChangesQuery
from gateway.edge.toolkit import Call, Reply, Route, json_response

__all__ = ["ROUTES"]


async def list_changes(call: Call[ChangesQuery]) -> web.StreamResponse:
    """Admin events, oldest first: the last `limit` ones, or those after `since_id`."""
    since_id = call.query.since_id
    rows = await admin_events(call.state.sessions, limit=call.query.limit, since_id=since_id)
    items = [
        AdminEventOut.model_validate(r, from_attributes=True).model_dump(mode="json") for r in rows
    ]
    if ADMINISTRATOR not in call.caller.roles:
        items = [without_credential_hints(i) for i in items]
    return json_response({"items": items, "last_id": rows[-1].id if rows else since_id})


ROUTES: tuple[Route, ...] = (
    ADMIN.route(
        "GET",
        "/changes",
        list_changes,
        "Admin events (configuration and credential changes), oldest first",
        reply=Reply(200, "Who changed what, when, before and after, and why.", AdminEventList),
        roles=READ,
        query=ChangesQuery,
    ),
)
