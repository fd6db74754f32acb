"""The events API, under `/events/v1` (docs/developer.md "Events"):

    POST /events/v1/{topic}             a publisher posts an event: 202 once it is stored
    GET  /events/v1/{topic}?after=<c>   a subscriber pulls the events after a cursor

A publisher is a client the topic names in `publishers`; a puller holds a right in the
topic's `access` (the same right a push subscription needs). Each event's `data` is
checked against the topic's schema in the registry before it is stored. Every call,
accepted or refused, is audited in the exchange event's form (gateway/events/audit.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from pydantic import Field, ValidationError

from gateway.audit import AuditEvent, AuditUnavailable
from gateway.config.runtime import TopicEntry
from gateway.core.logging import log
from gateway.core.problems import (
    ACCESS_DENIED,
    AUDIT_UNAVAILABLE,
    BAD_REQUEST,
    EVENTS_UNAVAILABLE,
    INVALID_EVENT,
    PAYLOAD_TOO_LARGE,
    TOPIC_UNAVAILABLE,
    UNKNOWN_TOPIC,
    Problem,
)
from gateway.edge.state import STATE
from gateway.edge.toolkit import Api, Call, QueryModel, Reply, Route, WholeNumber
from gateway.edge.toolkit import add_routes as _add
from gateway.events.audit import request_event
from gateway.events.model import Publication
from gateway.identity.directory import ClientEntry

__all__ = ["PREFIX", "ROUTES", "add_routes"]

PREFIX = "/events/v1"
_CALLER_KEY = web.RequestKey("lgsp.events.caller", ClientEntry)
_STARTED_KEY = web.RequestKey("lgsp.events.started", tuple[datetime, float])


async def _refused(request: web.Request, problem: Problem, request_id: str) -> None:
    """Every refusal is audited too, with the caller when it was known."""
    event = _event(request, request_id)
    caller = request.get(_CALLER_KEY)
    if caller is not None:
        event.client_code, event.client_agency_code = caller.code, caller.agency_code
    event.error_type, event.error_detail = problem.ptype.slug, problem.detail
    try:
        await _write(request, event, problem.status)
    except AuditUnavailable as e:
        log.error("events API refusal not audited", request_id=request_id, error=str(e))


EVENTS = Api(PREFIX, on_problem=_refused)


class PullQuery(QueryModel):
    after: WholeNumber = Field(0, ge=0, description="The cursor of the last event already read.")
    limit: WholeNumber = Field(100, ge=1, le=1000, description="At most this many events.")


def _event(request: web.Request, request_id: str) -> AuditEvent:
    started, t0 = request.get(_STARTED_KEY) or (datetime.now(UTC), time.perf_counter())
    event = request_event(
        request_id=request_id,
        instance=request.app[STATE].settings.instance_id,
        method=request.method[:16],
        path=request.raw_path,
        started_at=started,
        remote_addr=request.remote,
    )
    event.duration_ms = round((time.perf_counter() - t0) * 1000, 3)
    event.finished_at = started + timedelta(milliseconds=event.duration_ms)
    topic = request.app[STATE].pipeline.config.topics.get(request.match_info.get("topic", ""))
    event.service_code = request.match_info.get("topic", "")[:64] or None
    event.provider_code = topic.provider if topic else None
    return event


async def _write(request: web.Request, event: AuditEvent, status: int) -> None:
    event.status = status
    await request.app[STATE].audit.write(event)


def _topic(call: Call[Any], caller: ClientEntry) -> TopicEntry:
    call.request[_CALLER_KEY] = caller
    code = call.path["topic"]
    topic = call.state.pipeline.config.topics.get(code)
    if topic is None:
        raise Problem(UNKNOWN_TOPIC, f"No topic {code!r}; GET /admin/v1/topics lists them.")
    if not topic.enabled:
        raise Problem(TOPIC_UNAVAILABLE, f"The topic {code!r} is disabled by the administrator.")
    return topic


async def _body(request: web.Request, limit: int) -> bytes:
    too_large = f"An event of this topic is at most {limit} bytes."
    if (request.content_length or 0) > limit:
        raise Problem(PAYLOAD_TOO_LARGE, too_large)
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise Problem(PAYLOAD_TOO_LARGE, too_large)
    return raw


def _publication(raw: bytes, topic: TopicEntry) -> Publication:
    try:
        p = Publication.model_validate_json(raw)
    except ValidationError as e:
        errors = [
            {"field": ".".join(str(x) for x in err["loc"]) or "/", "detail": err["msg"]}
            for err in e.errors(include_url=False)
        ]
        raise Problem(
            BAD_REQUEST,
            'An event is a JSON object {"type": ..., "key": ..., "data": {...}}: '
            + "; ".join(f"{x['field']}: {x['detail']}" for x in errors[:3]),
            errors=errors,
        ) from None
    if topic.validator is not None:
        problems = topic.validator.errors(orjson.dumps(p.data))
        if problems:
            raise Problem(
                INVALID_EVENT,
                f"The event's data breaks the topic's schema in {len(problems)} place(s): "
                + "; ".join(f"/data{e.pointer}: {e.detail}" for e in problems[:3]),
                errors=[{"pointer": "/data" + e.pointer, "detail": e.detail} for e in problems],
            )
    return p


def _receivers(call: Call[Any], topic: TopicEntry) -> Callable[[str], bool]:
    """Who may be sent the topic's events now: an enabled client holding a right."""
    clients = call.state.pipeline.config.clients

    def may_receive(code: str) -> bool:
        client = clients.get(code)
        return client is not None and client.enabled and topic.may_subscribe(client)

    return may_receive


async def publish(call: Call[Any]) -> web.StreamResponse:
    call.request[_STARTED_KEY] = (datetime.now(UTC), time.perf_counter())
    caller = call.caller
    topic = _topic(call, caller)
    if not topic.may_publish(caller):
        raise Problem(
            ACCESS_DENIED,
            f"Client '{caller.code}' may not publish to topic '{topic.code}': the topic's "
            "`publishers` do not name it.",
            client=caller.code,
        )
    if topic.schema_error is not None:
        raise Problem(
            TOPIC_UNAVAILABLE, f"The topic cannot check its events: {topic.schema_error}."
        )
    raw = await _body(call.request, topic.max_event_bytes)
    p = _publication(raw, topic)
    try:
        published = await call.state.events.publish(
            topic.code, caller.code, p, _receivers(call, topic)
        )
    except Exception as e:
        log.error("event not stored", topic=topic.code, error=str(e))
        raise Problem(EVENTS_UNAVAILABLE, "The event store cannot be written; retry later.") from e
    if call.state.delivery is not None:
        call.state.delivery.wake()
    answer = {"id": published.event_id, "topic": topic.code, "cursor": str(published.cursor)}
    event = _event(call.request, call.request_id)
    event.client_code, event.client_agency_code = caller.code, caller.agency_code
    event.request_bytes = len(raw)
    try:
        await _write(call.request, event, 202)
    except AuditUnavailable as e:
        log.error("event publication not audited", event_id=published.event_id, error=str(e))
        raise Problem(
            AUDIT_UNAVAILABLE,
            f"The event {published.event_id} is stored and will be delivered, but its "
            "publication could not be recorded in the audit log; do not send it again.",
            event_id=published.event_id,
        ) from e
    return web.json_response(answer, status=202, dumps=lambda o: orjson.dumps(o).decode())


async def pull(call: Call[PullQuery]) -> web.StreamResponse:
    call.request[_STARTED_KEY] = (datetime.now(UTC), time.perf_counter())
    caller = call.caller
    topic = _topic(call, caller)
    if not topic.may_subscribe(caller):
        raise Problem(
            ACCESS_DENIED,
            f"Client '{caller.code}' holds no right to the events of topic '{topic.code}'.",
            client=caller.code,
        )
    events = await call.state.events.read_after(topic.code, call.query.after, call.query.limit)
    cursor = events[-1].cursor if events else call.query.after
    items = b",".join(b'{"cursor":"%d","event":%s}' % (e.cursor, e.body) for e in events)
    body = b'{"items":[' + items + b'],"next":"%d"}' % cursor
    event = _event(call.request, call.request_id)
    event.client_code, event.client_agency_code = caller.code, caller.agency_code
    event.response_bytes = len(body)
    try:
        await _write(call.request, event, 200)
    except AuditUnavailable as e:
        raise Problem(
            AUDIT_UNAVAILABLE,
            "The read could not be recorded in the audit log, so its answer is withheld; "
            "retry later.",
        ) from e
    return web.Response(body=body, content_type="application/json")


ROUTES: tuple[Route, ...] = (
    EVENTS.route(
        "POST",
        "/{topic}",
        publish,
        "Publish an event to a topic (the topic's publishers only)",
        reply=Reply(202, "Stored, and queued for every matching subscription."),
    ),
    EVENTS.route(
        "GET",
        "/{topic}",
        pull,
        "Pull the topic's events after a cursor (subscribers that take no callbacks)",
        reply=Reply(200, "The events after `after`, oldest first, and the cursor to go on."),
        query=PullQuery,
    ),
)


def add_routes(app: web.Application) -> None:
    _add(app, ROUTES)
