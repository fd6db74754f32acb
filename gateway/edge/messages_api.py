"""The status URLs of async services' messages (store-and-forward), under `/messages/v1`
(docs/developer.md "Store-and-forward"):

    GET /messages/v1/{id}           the message's state: pending, answered or dead
    GET /messages/v1/{id}/answer    the provider's answer, as a synchronous call gets it

Only the client that sent the message may read it (another client is told there is no
such message); every read, and every refusal, is audited like an exchange, naming the
message's service and request id.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from gateway.audit import AuditUnavailable
from gateway.core.logging import log
from gateway.core.problems import (
    AUDIT_UNAVAILABLE,
    MESSAGES_UNAVAILABLE,
    NOT_ANSWERED,
    NOT_FOUND,
    Problem,
)
from gateway.edge.state import STATE
from gateway.edge.toolkit import Api, Call, Reply, Route
from gateway.edge.toolkit import add_routes as _add
from gateway.events.audit import request_event
from gateway.events.outbox import MessageView
from gateway.exchange.steps.defer import MESSAGES_PREFIX
from gateway.identity.directory import ClientEntry

__all__ = ["ROUTES", "add_routes"]

_CALLER_KEY = web.RequestKey("lgsp.messages.caller", ClientEntry)
_STARTED_KEY = web.RequestKey("lgsp.messages.started", tuple[datetime, float])
_MESSAGE_KEY = web.RequestKey("lgsp.messages.message", MessageView)
# A message's answer is the provider's: these of its headers are not repeated.
_NOT_REPEATED = frozenset({"content-length", "transfer-encoding", "connection", "server", "date"})


async def _audit(request: web.Request, request_id: str, status: int, **fields: Any) -> None:
    started, t0 = request.get(_STARTED_KEY) or (datetime.now(UTC), time.perf_counter())
    event = request_event(
        request_id=request_id,
        instance=request.app[STATE].settings.instance_id,
        method=request.method[:16],
        path=request.raw_path,
        started_at=started,
        remote_addr=request.remote,
    )
    event.service_version = None
    message = request.get(_MESSAGE_KEY)
    if message is not None:
        event.provider_code, event.service_code, event.service_version = message.service
    caller = request.get(_CALLER_KEY)
    if caller is not None:
        event.client_code, event.client_agency_code = caller.code, caller.agency_code
    for name, value in fields.items():
        setattr(event, name, value)
    event.duration_ms = round((time.perf_counter() - t0) * 1000, 3)
    event.finished_at = started + timedelta(milliseconds=event.duration_ms)
    event.status = status
    await request.app[STATE].audit.write(event)


async def _refused(request: web.Request, problem: Problem, request_id: str) -> None:
    try:
        await _audit(
            request,
            request_id,
            problem.status,
            error_type=problem.ptype.slug,
            error_detail=problem.detail,
        )
    except AuditUnavailable as e:
        log.error("message status refusal not audited", request_id=request_id, error=str(e))


MESSAGES = Api(MESSAGES_PREFIX, on_problem=_refused)


async def _message(call: Call[Any]) -> MessageView:
    call.request[_STARTED_KEY] = (datetime.now(UTC), time.perf_counter())
    caller = call.caller
    call.request[_CALLER_KEY] = caller
    message_id = call.path["id"]
    outbox = call.state.outbox
    if outbox is None:
        raise Problem(MESSAGES_UNAVAILABLE, "This gateway keeps no messages.")
    try:
        found = await outbox.read(message_id[:64])
    except Exception as e:
        raise Problem(MESSAGES_UNAVAILABLE, "The message store cannot be read; retry.") from e
    # Only its sender reads a message: to anyone else it does not exist.
    if found is None or found.client != caller.code:
        raise Problem(NOT_FOUND, f"No message {message_id!r} sent by client {caller.code!r}.")
    call.request[_MESSAGE_KEY] = found
    return found


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


async def _write(call: Call[Any], status: int, body: bytes) -> None:
    try:
        await _audit(call.request, call.request_id, status, response_bytes=len(body))
    except AuditUnavailable as e:
        raise Problem(
            AUDIT_UNAVAILABLE,
            "The read could not be recorded in the audit log, so its answer is withheld; "
            "retry later.",
        ) from e


async def status(call: Call[Any]) -> web.StreamResponse:
    m = await _message(call)
    url = f"{MESSAGES_PREFIX}/{m.message_id}"
    doc = {
        "messageId": m.message_id,
        "requestId": m.request_id,
        "service": "/".join(m.service),
        "state": m.state,
        "attempts": m.attempts,
        "acceptedAt": _iso(m.accepted_at),
        "nextAttemptAt": _iso(m.next_attempt_at),
        "lastStatus": m.last_status,
        "lastError": m.last_error,
        "settledAt": _iso(m.settled_at),
        "answer": None
        if m.answer_status is None
        else {"status": m.answer_status, "href": f"{url}/answer"},
    }
    body = orjson.dumps(doc)
    await _write(call, 200, body)
    return web.Response(body=body, content_type="application/json")


async def answer(call: Call[Any]) -> web.StreamResponse:
    m = await _message(call)
    if m.answer_status is None:
        raise Problem(
            NOT_ANSWERED,
            f"The message {m.message_id} is {m.state}: the provider has not answered yet "
            f"({m.attempts} attempt(s) so far). Ask again later.",
            headers={"Retry-After": "5"},
        )
    body = m.answer_body or b""
    await _write(call, m.answer_status, body)
    headers = CIMultiDict(
        (k, v) for k, v in (m.answer_headers or []) if k.lower() not in _NOT_REPEATED
    )
    headers["X-Message-Id"] = m.message_id
    headers["X-Message-State"] = m.state
    return web.Response(status=m.answer_status, body=body, headers=headers)


ROUTES: tuple[Route, ...] = (
    MESSAGES.route(
        "GET",
        "/{id}",
        status,
        "The state of a message sent to an async service (its sender only)",
        reply=Reply(200, "The message's state, and where its answer is once there is one."),
    ),
    MESSAGES.route(
        "GET",
        "/{id}/answer",
        answer,
        "The provider's answer to a message sent to an async service (its sender only)",
        reply=Reply(200, "The provider's answer, with its own status, headers and body."),
    ),
)


def add_routes(app: web.Application) -> None:
    _add(app, ROUTES)
