"""Subscriptions to topics over HTTP: list, create (the signing secret shown once),
read, delete; their dead letters, and replaying them (or everything since a time). Each
change is an admin event naming the caller (gateway/admin/subscriptions.py).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from gateway.admin import subscriptions as ops
from gateway.admin.actor import ADMINISTER, OPERATE, READ
from gateway.edge.admin_api.api import ADMIN, BODY, editor
from gateway.edge.admin_api.models import CommentQuery, _Out
from gateway.edge.toolkit import NO_STORE, Body, Call, OptionalText, QueryModel, Reply, Route
from gateway.edge.toolkit import json_response as respond
from gateway.events.kafka_store import KafkaEventStore
from gateway.upstream.allowlist import OutboundPolicy

__all__ = ["ROUTES"]


class SubscriptionOut(_Out):
    id: int
    topic: str
    client: str
    callback_url: str
    filters: dict[str, Any]
    enabled: bool
    secret_hint: str = Field(description="the last characters of the signing secret")
    created_at: datetime
    created_by: str
    pending: int = Field(description="deliveries not yet made (retrying included)")
    dead: int = Field(description="deliveries given up after the retry window: replayable")


class CreatedSubscription(SubscriptionOut):
    secret: str = Field(
        description="the Standard Webhooks signing secret (whsec_...): shown in this answer "
        "only, never again"
    )


class SubscriptionList(_Out):
    items: list[SubscriptionOut]


class DeadLetterOut(_Out):
    id: int
    subscription_id: int
    event_id: str = Field(description="the webhook-id every attempt carried")
    event_type: str
    key: str | None
    attempts: int
    last_status: int | None = Field(description="the subscriber's last answer; null: none")
    last_error: str | None
    since: datetime = Field(description="when its retry window started")
    dead_at: datetime | None


class DeadLetterList(_Out):
    items: list[DeadLetterOut]


class ReplayOut(_Out):
    queued: int


class TopicQuery(QueryModel):
    topic: OptionalText = Field(None, max_length=64, description="Only this topic's.")


def _out(view: ops.SubscriptionView) -> dict[str, Any]:
    fields = dataclasses.asdict(view)
    secret = fields.pop("secret")
    if secret is None:
        return SubscriptionOut.model_validate(fields).model_dump(mode="json")
    return CreatedSubscription.model_validate({**fields, "secret": secret}).model_dump(mode="json")


async def list_subscriptions(call: Call[TopicQuery]) -> web.StreamResponse:
    views = await ops.list_subscriptions(call.state.sessions, topic=call.query.topic)
    return respond({"items": [_out(v) for v in views]})


async def create_subscription(call: Call[CommentQuery]) -> web.StreamResponse:
    settings = call.state.settings
    own = ops.own_origins(settings.public_url, settings.host, settings.port, call.request.host)
    view = await ops.create(
        call.state.sessions,
        call.state.secrets,
        editor(call).actor,
        await call.json(BODY),
        config=call.state.pipeline.config,
        outbound=OutboundPolicy.from_settings(settings),
        own=own,
    )
    return respond(_out(view), status=201, headers=NO_STORE)


async def read_subscription(call: Call[Any]) -> web.StreamResponse:
    return respond(_out(await ops.read(call.state.sessions, call.path_int("id", "subscription"))))


async def delete_subscription(call: Call[CommentQuery]) -> web.StreamResponse:
    sub_id = call.path_int("id", "subscription")
    return respond(_out(await ops.delete(call.state.sessions, editor(call).actor, sub_id)))


async def list_dead_letters(call: Call[Any]) -> web.StreamResponse:
    letters = await ops.dead_letters(call.state.sessions, call.path_int("id", "subscription"))
    items = [DeadLetterOut.model_validate(dataclasses.asdict(d)) for d in letters]
    return respond({"items": [i.model_dump(mode="json") for i in items]})


async def replay(call: Call[CommentQuery]) -> web.StreamResponse:
    sub_id = call.path_int("id", "subscription")
    events = call.state.events
    queued = await ops.replay(
        call.state.sessions,
        editor(call).actor,
        sub_id,
        await call.json(BODY),
        requeue=events.replay_since if isinstance(events, KafkaEventStore) else None,
    )
    if call.state.delivery is not None:
        call.state.delivery.wake()
    return respond({"queued": queued})


_ONE = "/subscriptions/{id}"
ROUTES: tuple[Route, ...] = (
    ADMIN.route(
        "GET",
        "/subscriptions",
        list_subscriptions,
        "List subscriptions to topics, with their pending and dead deliveries",
        reply=Reply(200, "Every subscription (of the topic named).", SubscriptionList),
        roles=READ,
        query=TopicQuery,
    ),
    ADMIN.route(
        "POST",
        "/subscriptions",
        create_subscription,
        "Subscribe a client to a topic (its callback must be one the gateway may call)",
        reply=Reply(
            201,
            "The subscription, with its signing secret: shown this once only.",
            CreatedSubscription,
        ),
        roles=ADMINISTER,
        body=Body(ops.SubscriptionIn),
        query=CommentQuery,
    ),
    ADMIN.route(
        "GET",
        _ONE,
        read_subscription,
        "Read a subscription",
        reply=Reply(200, "The subscription.", SubscriptionOut),
        roles=READ,
        path_integers=("id",),
    ),
    ADMIN.route(
        "DELETE",
        _ONE,
        delete_subscription,
        "Delete a subscription and its deliveries not yet made",
        reply=Reply(200, "The subscription, deleted.", SubscriptionOut),
        roles=ADMINISTER,
        query=CommentQuery,
        path_integers=("id",),
    ),
    ADMIN.route(
        "GET",
        _ONE + "/dead-letters",
        list_dead_letters,
        "A subscription's dead letters: deliveries given up after the retry window",
        reply=Reply(200, "The dead deliveries, oldest event first.", DeadLetterList),
        roles=READ,
        path_integers=("id",),
    ),
    ADMIN.route(
        "POST",
        _ONE + "/replay",
        replay,
        "Deliver again: the dead letters (or those named), or every event since a time",
        reply=Reply(200, "How many deliveries were queued again.", ReplayOut),
        roles=OPERATE,
        body=Body(ops.ReplayIn),
        query=CommentQuery,
        path_integers=("id",),
    ),
)
