"""Subscriptions of departmental systems to topics, and their dead letters: created,
listed, deleted and replayed, each change an admin event naming who made it. Shared by
every face that changes them (the admin API today, the console later).

A subscription is not policy: like a credential it holds a secret, so it lives in its
own table and is never written to the policy files. When one is made the gateway checks
that the subscriber holds a right in the topic's `access`, and that its callback URL is
one the gateway may call: the outbound allow-list of upstreams (scheme, network; names
are judged again when resolved, at every delivery) and never the gateway itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from gateway.admin.actor import Actor
from gateway.admin.refusals import parse, refused
from gateway.config.runtime import RuntimeConfig
from gateway.core.problems import CALLBACK_REFUSED, NOT_FOUND, Problem
from gateway.events.model import Filters
from gateway.events.secrets import SecretBox, hint, new_secret
from gateway.store.changes import record
from gateway.store.models import EventDelivery, EventRecord, EventSubscription, utcnow
from gateway.upstream.allowlist import OutboundPolicy

__all__ = [
    "DeadLetter",
    "ReplayIn",
    "SubscriptionIn",
    "SubscriptionView",
    "create",
    "dead_letters",
    "delete",
    "list_subscriptions",
    "own_origins",
    "read",
    "replay",
]


class SubscriptionIn(BaseModel):
    """A subscription as an administrator asks for it."""

    model_config = ConfigDict(extra="forbid")

    topic: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    client: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    callback_url: Annotated[str, StringConstraints(min_length=8, max_length=2048)]
    filters: Filters = Filters()
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: int
    topic: str
    client: str
    callback_url: str
    filters: dict[str, Any]
    enabled: bool
    secret_hint: str
    created_at: datetime
    created_by: str
    pending: int
    dead: int
    secret: str | None = None  # only in the answer that created it


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    key: str | None
    attempts: int
    last_status: int | None
    last_error: str | None
    since: datetime
    dead_at: datetime | None


def own_origins(public_url: str, host: str, port: int, request_host: str | None) -> set[str]:
    """The gateway's own addresses as `host:port` (callers' and its listener's), which no
    callback may name: a subscription must not make the gateway call itself.

    Example:
        >>> sorted(own_origins("https://lgsp.example.vn", "10.0.0.2", 8080, None))
        ['10.0.0.2:8080', 'lgsp.example.vn:443']
    """
    found = {f"{host.lower()}:{port}"}
    if host in ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):
        # Listening on every address, or on loopback: each loopback name reaches it.
        found |= {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "::1")}
    if public_url:
        u = URL(public_url)
        found.add(f"{(u.host or '').lower()}:{u.port}")
    if request_host:
        u = URL(f"http://{request_host}")
        found.add(f"{(u.host or '').lower()}:{u.port}")
        found.add(f"{(u.host or '').lower()}:443")  # the same name behind TLS
    return found


def _check_callback(url: str, outbound: OutboundPolicy, own: set[str]) -> None:
    try:
        parsed = URL(url)
    except (TypeError, ValueError) as e:
        raise _callback_refused(f"{url!r} is not a URL: {e}") from None
    if not parsed.is_absolute() or parsed.raw_user or parsed.raw_password:
        raise _callback_refused("a callback is an absolute http(s) URL without user or password")
    if f"{(parsed.host or '').lower()}:{parsed.port}" in own:
        raise _callback_refused(
            f"{parsed.host}:{parsed.port} is this gateway itself: a subscription must not make "
            "the gateway call its own APIs"
        )
    try:
        outbound.check_url(url)
    except ValueError as e:
        raise _callback_refused(str(e).replace("Upstream URL", "The callback URL")) from None


def _callback_refused(detail: str) -> Problem:
    return Problem(
        CALLBACK_REFUSED,
        f"The callback URL is refused: {detail}",
        errors=[{"field": "callback_url", "detail": detail}],
    )


def _check_subscriber(asked: SubscriptionIn, config: RuntimeConfig) -> None:
    topic = config.topics.get(asked.topic)
    client = config.clients.get(asked.client)
    errors = []
    if topic is None:
        errors.append({"field": "topic", "detail": f"no topic {asked.topic!r}"})
    if client is None:
        errors.append({"field": "client", "detail": f"no client {asked.client!r}"})
    elif topic is not None and not topic.may_subscribe(client):
        errors.append(
            {
                "field": "client",
                "detail": f"client {asked.client!r} holds no right to topic {asked.topic!r}; "
                "grant one in the topic's `access` (deny by default)",
            }
        )
    if errors:
        raise refused("The subscription is not valid", errors)


async def create(
    sessions: async_sessionmaker[AsyncSession],
    box: SecretBox,
    actor: Actor,
    body: dict[str, Any],
    *,
    config: RuntimeConfig,
    outbound: OutboundPolicy,
    own: set[str],
) -> SubscriptionView:
    """Make a subscription; the answer carries its signing secret, this once only.

    Example:
        >>> view = await create(sessions, box, actor, {"topic": "cu-tru", "client":
        ...     "motcua", "callback_url": "https://motcua.example/hooks"}, config=config,
        ...     outbound=outbound, own=set())
        >>> view.secret.startswith("whsec_")
        True
    """
    asked = parse(SubscriptionIn, body, "The subscription")
    _check_subscriber(asked, config)
    _check_callback(asked.callback_url, outbound, own)
    secret = new_secret()
    async with sessions() as s, s.begin():
        row = EventSubscription(
            topic=asked.topic,
            client_code=asked.client,
            callback_url=asked.callback_url,
            filters=asked.filters.model_dump(mode="json", exclude_defaults=True),
            secret_encrypted=b"",
            secret_hint=hint(secret),
            enabled=asked.enabled,
            created_at=utcnow(),
            created_by=actor.name,
        )
        s.add(row)
        await s.flush()
        row.secret_encrypted = box.seal(secret, row.id)  # the id is bound into it
        await record(
            s,
            actor=actor.name,
            action="subscription.create",
            target=f"subscription#{row.id}",
            after={
                "topic": row.topic,
                "client": row.client_code,
                "callback_url": row.callback_url,
                "filters": row.filters,
                "enabled": row.enabled,
                "secret_hint": row.secret_hint,
            },
            comment=actor.comment,
        )
    return _view(row, 0, 0, secret)


def _view(row: EventSubscription, pending: int, dead: int, secret: str | None) -> SubscriptionView:
    return SubscriptionView(
        id=row.id,
        topic=row.topic,
        client=row.client_code,
        callback_url=row.callback_url,
        filters=dict(row.filters or {}),
        enabled=row.enabled,
        secret_hint=row.secret_hint,
        created_at=row.created_at,
        created_by=row.created_by,
        pending=pending,
        dead=dead,
        secret=secret,
    )


async def _counts(s: AsyncSession) -> dict[tuple[int, str], int]:
    rows = await s.execute(
        select(EventDelivery.subscription_id, EventDelivery.state, func.count())
        .where(EventDelivery.state.in_(("pending", "dead")))
        .group_by(EventDelivery.subscription_id, EventDelivery.state)
    )
    return {(sub, state): n for sub, state, n in rows.all()}


async def list_subscriptions(
    sessions: async_sessionmaker[AsyncSession], *, topic: str | None = None
) -> list[SubscriptionView]:
    """Every subscription (of one topic), with its pending and dead deliveries.

    Example:
        >>> [v.client for v in await list_subscriptions(sessions, topic="cu-tru")]
        ['motcua']
    """
    async with sessions() as s:
        q = select(EventSubscription).order_by(EventSubscription.id)
        if topic is not None:
            q = q.where(EventSubscription.topic == topic)
        rows = list(await s.scalars(q))
        counts = await _counts(s)
    return [
        _view(r, counts.get((r.id, "pending"), 0), counts.get((r.id, "dead"), 0), None)
        for r in rows
    ]


async def read(sessions: async_sessionmaker[AsyncSession], sub_id: int) -> SubscriptionView:
    """One subscription; 404 if there is none."""
    for view in await list_subscriptions(sessions):
        if view.id == sub_id:
            return view
    raise Problem(NOT_FOUND, f"No subscription {sub_id}.")


async def delete(
    sessions: async_sessionmaker[AsyncSession], actor: Actor, sub_id: int
) -> SubscriptionView:
    """Delete a subscription and its deliveries (pending ones are not sent)."""
    view = await read(sessions, sub_id)
    async with sessions() as s, s.begin():
        row = await s.get(EventSubscription, sub_id)
        if row is None:
            raise Problem(NOT_FOUND, f"No subscription {sub_id}.")
        await s.delete(row)
        await record(
            s,
            actor=actor.name,
            action="subscription.delete",
            target=f"subscription#{sub_id}",
            before={"topic": view.topic, "client": view.client, "callback_url": view.callback_url},
            comment=actor.comment,
        )
    return view


async def dead_letters(
    sessions: async_sessionmaker[AsyncSession], sub_id: int, *, limit: int = 100
) -> list[DeadLetter]:
    """The subscription's dead deliveries, oldest event first."""
    await read(sessions, sub_id)
    d, ev = EventDelivery, EventRecord
    async with sessions() as s:
        rows = await s.execute(
            select(
                d.id,
                d.subscription_id,
                ev.event_id,
                ev.event_type,
                ev.key,
                d.attempts,
                d.last_status,
                d.last_error,
                d.since,
                d.settled_at,
            )
            .join(ev, ev.id == d.event_seq)
            .where(d.subscription_id == sub_id, d.state == "dead")
            .order_by(d.event_seq)
            .limit(limit)
        )
        return [
            DeadLetter(
                id=r[0],
                subscription_id=r[1],
                event_id=r[2],
                event_type=r[3],
                key=r[4],
                attempts=r[5],
                last_status=r[6],
                last_error=r[7],
                since=r[8],
                dead_at=r[9],
            )
            for r in rows.all()
        ]


class ReplayIn(BaseModel):
    """What to deliver again: the dead letters (none given), or every event published
    since a time, delivered or not ("replay since")."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = None
    deliveries: list[int] = Field([], max_length=1000)


async def replay(
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    sub_id: int,
    body: dict[str, Any],
    *,
    requeue: Callable[[int, datetime], Awaitable[int]] | None = None,
) -> int:
    """Queue deliveries again, each with a fresh retry window; the count queued.

    `requeue`: how the event store queues again every event since a time (the Kafka
    store reads its topic again: delivered events are not rows there); without it,
    the store's delivery rows are queued again.

    Example:
        >>> await replay(sessions, actor, 3, {})  # every dead letter of subscription 3
        2
    """
    asked = parse(ReplayIn, body, "The replay")
    await read(sessions, sub_id)
    d = EventDelivery
    now = utcnow()
    q = update(d).where(d.subscription_id == sub_id, d.lease_owner.is_(None))
    if asked.since is not None:
        published = select(EventRecord.id).where(EventRecord.published_at >= asked.since)
        q = q.where(d.state.in_(("dead", "delivered")), d.event_seq.in_(published))
    else:
        q = q.where(d.state == "dead")
    if asked.deliveries:
        q = q.where(d.id.in_(asked.deliveries))
    async with sessions() as s, s.begin():
        if requeue is not None and asked.since is not None and not asked.deliveries:
            count = await requeue(sub_id, asked.since)
        else:
            result = await s.execute(
                q.values(
                    state="pending", attempts=0, since=now, next_attempt_at=now, settled_at=None
                )
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        await record(
            s,
            actor=actor.name,
            action="subscription.replay",
            target=f"subscription#{sub_id}",
            after={
                "since": asked.since.isoformat() if asked.since else None,
                "deliveries": asked.deliveries or None,
                "queued": count,
            },
            comment=actor.comment,
        )
    return count
