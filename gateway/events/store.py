"""Where events and their deliveries are kept: the `EventStore` interface, and its
embedded implementation in the gateway's database (`SqlEventStore`).

Publishing writes the event and one pending delivery per matching subscription in one
transaction, before the publisher's 202: nothing is accepted that is not durable. A
delivery worker claims due deliveries with a lease (gateway/events/leases.py, shared with
store-and-forward), delivers, and settles each one: delivered, retried later, or dead
after its retry window. Per subscription and
key only the oldest pending delivery can be claimed, which keeps each key in order.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.events.leases import Queue, Settlement, Taken, settle, take
from gateway.events.model import Publication, envelope, matches
from gateway.store.models import EventDelivery, EventRecord, EventSubscription, utcnow

__all__ = [
    "DELIVERIES",
    "Claimed",
    "EventStore",
    "Published",
    "PulledEvent",
    "Settlement",
    "SqlEventStore",
]


@dataclass(frozen=True, slots=True)
class Published:
    event_id: str
    cursor: int  # the event's place in its topic
    deliveries: int  # subscriptions it was queued for


@dataclass(frozen=True, slots=True)
class PulledEvent:
    cursor: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds the lease of, with what it needs to send it."""

    id: int
    lease: str
    subscription_id: int
    topic: str
    subscriber: str
    callback_url: str
    secret_encrypted: bytes
    event_id: str
    body: bytes
    attempts: int  # before this one
    since: datetime  # start of the retry window


DELIVERIES = Queue(
    EventDelivery,
    EventDelivery.subscription_id,
    order_key=EventDelivery.order_key,
    order_seq=EventDelivery.event_seq,
)


class EventStore(Protocol):
    """What the events API and the delivery worker need of the store."""

    async def start(self) -> None:
        """Connect (the gateway's start)."""
        ...

    async def close(self) -> None: ...

    async def publish(
        self,
        topic: str,
        publisher: str,
        p: Publication,
        may_receive: Callable[[str], bool],
        event_id: str | None = None,
    ) -> Published:
        """Write the event (under `event_id` when given, else a new one), and a delivery
        for each subscription whose filters match and whose subscriber `may_receive`
        (holds a right now), durably; return once committed."""
        ...

    async def read_after(self, topic: str, cursor: int, limit: int) -> list[PulledEvent]:
        """The topic's events after `cursor`, oldest first."""
        ...

    async def claim(
        self, owner: str, *, lease_seconds: float, limit: int, free: dict[int, int], default: int
    ) -> list[Claimed]:
        """Lease up to `limit` due deliveries, at most `free[sub]` (else `default`) per
        subscription, never two of one key."""
        ...

    async def settle(self, settlements: list[Settlement]) -> None:
        """Record attempts' outcomes, in one transaction; one whose lease was taken over
        meanwhile (another worker has it now) is ignored."""
        ...


class SqlEventStore:
    """The embedded event store: tables in the gateway's database (migration 0016)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def start(self) -> None:
        return None  # the store's engine is the gateway's

    async def close(self) -> None:
        return None

    async def publish(
        self,
        topic: str,
        publisher: str,
        p: Publication,
        may_receive: Callable[[str], bool],
        event_id: str | None = None,
    ) -> Published:
        async with self.sessions() as s, s.begin():
            return await self.publish_in(s, topic, publisher, p, may_receive, event_id)

    async def publish_in(
        self,
        s: AsyncSession,
        topic: str,
        publisher: str,
        p: Publication,
        may_receive: Callable[[str], bool],
        event_id: str | None = None,
    ) -> Published:
        """`publish` in the caller's transaction (a scheduled pull writes a page's events
        with the run's progress), under `event_id` when it names one."""
        event_id = event_id or str(uuid.uuid4())
        now = utcnow()
        body = envelope(event_id, topic, p, now)
        if s.get_bind().dialect.name == "postgresql":
            # One publisher at a time per topic: ids then commit in order, so a puller
            # reading `after` a cursor never skips an event committed late.
            lock = zlib.crc32(f"lgsp-events:{topic}".encode())
            await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
        record = EventRecord(
            event_id=event_id,
            topic=topic,
            event_type=p.type,
            key=p.key,
            publisher=publisher,
            published_at=now,
            body=body,
        )
        s.add(record)
        await s.flush()
        subs = await s.execute(
            select(
                EventSubscription.id, EventSubscription.client_code, EventSubscription.filters
            ).where(EventSubscription.topic == topic, EventSubscription.enabled.is_(True))
        )
        rows = [
            EventDelivery(
                subscription_id=sub_id,
                event_seq=record.id,
                order_key=p.key or "",
                since=now,
                next_attempt_at=now,
                state="pending",
                attempts=0,
            )
            for sub_id, client, filters in subs.all()
            if matches(filters or {}, p.type, p.data) and may_receive(client)
        ]
        s.add_all(rows)
        await s.flush()
        return Published(event_id, record.id, len(rows))

    async def read_after(self, topic: str, cursor: int, limit: int) -> list[PulledEvent]:
        async with self.sessions() as s:
            rows = await s.execute(
                select(EventRecord.id, EventRecord.body)
                .where(EventRecord.topic == topic, EventRecord.id > cursor)
                .order_by(EventRecord.id)
                .limit(limit)
            )
            return [PulledEvent(i, b) for i, b in rows.all()]

    async def claim(
        self, owner: str, *, lease_seconds: float, limit: int, free: dict[int, int], default: int
    ) -> list[Claimed]:
        taken = await take(
            self.sessions,
            DELIVERIES,
            owner,
            lease_seconds=lease_seconds,
            limit=limit,
            free=cast(dict[Hashable, int], free),
            default=default,
        )
        return [] if taken is None else await self._claimed(taken)

    async def _claimed(self, taken: Taken) -> list[Claimed]:
        lease = taken.lease
        d, sub, ev = EventDelivery, EventSubscription, EventRecord
        async with self.sessions() as s:
            rows = await s.execute(
                select(
                    d.id,
                    d.subscription_id,
                    sub.topic,
                    sub.client_code,
                    sub.callback_url,
                    sub.secret_encrypted,
                    ev.event_id,
                    ev.body,
                    d.attempts,
                    d.since,
                )
                .join(sub, sub.id == d.subscription_id)
                .join(ev, ev.id == d.event_seq)
                # By id (the primary key), then the lease: lease_owner has no index, and
                # a scan of it cost a walk over every delivery ever made, per claim.
                .where(d.id.in_(taken.ids), d.lease_owner == lease)
                .order_by(d.event_seq)
            )
            return [
                Claimed(
                    id=r[0],
                    lease=lease,
                    subscription_id=r[1],
                    topic=r[2],
                    subscriber=r[3],
                    callback_url=r[4],
                    secret_encrypted=r[5],
                    event_id=r[6],
                    body=r[7],
                    attempts=r[8],
                    since=r[9],
                )
                for r in rows.all()
            ]

    async def settle(self, settlements: list[Settlement]) -> None:
        await settle(self.sessions, DELIVERIES, settlements)
