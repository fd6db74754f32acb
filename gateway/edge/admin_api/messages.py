"""Async services' messages over HTTP, for operators: those not delivered, and replaying
dead ones (gateway/admin/messages.py)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import Field

from gateway.admin import messages as ops
from gateway.admin.actor import OPERATE, READ
from gateway.edge.admin_api.api import ADMIN, BODY, editor
from gateway.edge.admin_api.models import CommentQuery, _Out
from gateway.edge.toolkit import Body, Call, QueryModel, Reply, Route
from gateway.edge.toolkit import json_response as respond

__all__ = ["ROUTES"]


class MessageOut(_Out):
    message_id: str
    request_id: str = Field(description="the request id of the caller's 202, in every attempt")
    service: str
    client: str
    state: str = Field(description="pending (being retried) or dead (the window ended)")
    attempts: int
    last_status: int | None = Field(description="the provider's last answer; null: none")
    last_error: str | None
    since: datetime = Field(description="when its retry window started")
    next_attempt_at: datetime | None


class MessageList(_Out):
    items: list[MessageOut]


class MessageReplayOut(_Out):
    queued: int


class StateQuery(QueryModel):
    state: Literal["pending", "dead"] | None = Field(None, description="Only these.")


async def list_messages(call: Call[StateQuery]) -> web.StreamResponse:
    found = await ops.undelivered(call.state.sessions, state=call.query.state)
    items = [MessageOut.model_validate(dataclasses.asdict(m)) for m in found]
    return respond({"items": [i.model_dump(mode="json") for i in items]})


async def replay(call: Call[CommentQuery]) -> web.StreamResponse:
    queued = await ops.replay(call.state.sessions, editor(call).actor, await call.json(BODY))
    if call.state.forwarder is not None:
        call.state.forwarder.wake()
    return respond({"queued": queued})


ROUTES: tuple[Route, ...] = (
    ADMIN.route(
        "GET",
        "/messages",
        list_messages,
        "Async services' messages not delivered: pending (retrying) and dead",
        reply=Reply(200, "The messages, oldest first (at most 100).", MessageList),
        roles=READ,
        query=StateQuery,
    ),
    ADMIN.route(
        "POST",
        "/messages/replay",
        replay,
        "Send dead messages again (those named, or every one), with a fresh retry window",
        reply=Reply(200, "How many messages were queued again.", MessageReplayOut),
        roles=OPERATE,
        body=Body(ops.MessageReplayIn),
        query=CommentQuery,
    ),
)
