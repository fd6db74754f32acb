"""Where events and their deliveries are kept: the `EventStore` interface, and its
embedded implementation in the gateway's database (`SqlEventStore`).

Publishing writes the event and one pending delivery per matching subscription in one
transaction, before the publisher's 202: nothing is accepted that is not durable. A
delivery worker claims due deliveries with a lease (a compare-and-set on the row, so
replicas sharing the database share the work and one claim wins), delivers, and settles
each one: delivered, retried later, or dead after its retry window. Per subscription and
key only the oldest pending delivery can be claimed, which keeps each key in order.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, cast

from sqlalchemy import Table, bindparam, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from gateway.events.model import Publication, envelope, matches
from gateway.store.models import EventDelivery, EventRecord, EventSubscription, utcnow

__all__ = ["Claimed", "EventStore", "Published", "PulledEvent", "Settlement", "SqlEventStore"]


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


@dataclass(frozen=True, slots=True)
class Settlement:
    """An attempt's outcome: "delivered", "pending" (again at `next_attempt_at`) or "dead"."""

    claim: Claimed
    state: str
    status: int | None
    error: str | None
    next_attempt_at: datetime | None = None


class EventStore(Protocol):
    """What the events API and the delivery worker need of the store."""

    async def publish(
        self, topic: str, publisher: str, p: Publication, may_receive: Callable[[str], bool]
    ) -> Published:
        """Write the event, and a delivery for each subscription whose filters match and
        whose subscriber `may_receive` (holds a right now), durably; return once
        committed."""
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

    async def publish(
        self, topic: str, publisher: str, p: Publication, may_receive: Callable[[str], bool]
    ) -> Published:
        event_id = str(uuid.uuid4())
        now = utcnow()
        body = envelope(event_id, topic, p, now)
        async with self.sessions() as s, s.begin():
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
        now = utcnow()
        d, e = EventDelivery, aliased(EventDelivery)
        earlier = exists().where(
            e.subscription_id == d.subscription_id,
            e.order_key == d.order_key,
            e.state == "pending",
            e.event_seq < d.event_seq,
        )
        full = [sub for sub, n in free.items() if n <= 0]
        q = (
            select(d.id, d.subscription_id)
            .where(
                d.state == "pending",
                d.next_attempt_at <= now,
                (d.lease_until.is_(None)) | (d.lease_until < now),
                ~earlier,
            )
            .order_by(d.next_attempt_at, d.id)
            .limit(limit * 4)
        )
        if full:
            q = q.where(d.subscription_id.not_in(full))
        async with self.sessions() as s:
            candidates = (await s.execute(q)).all()
        chosen: list[int] = []
        taken: dict[int, int] = {}
        for delivery_id, sub in candidates:
            if taken.get(sub, 0) >= free.get(sub, default) or len(chosen) >= limit:
                continue
            taken[sub] = taken.get(sub, 0) + 1
            chosen.append(delivery_id)
        if not chosen:
            return []
        lease = f"{owner}:{uuid.uuid4().hex[:12]}"
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(d)
                .where(
                    d.id.in_(chosen),
                    d.state == "pending",
                    (d.lease_until.is_(None)) | (d.lease_until < now),
                )
                .values(lease_owner=lease, lease_until=utcnow() + timedelta(seconds=lease_seconds))
            )
        return await self._claimed(lease)

    async def _claimed(self, lease: str) -> list[Claimed]:
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
                .where(d.lease_owner == lease)
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
        now = utcnow()
        rows = [
            {
                "b_id": x.claim.id,
                "b_lease": x.claim.lease,
                "b_state": x.state,
                "b_status": x.status,
                "b_error": x.error[:2000] if x.error else None,
                "b_next": (x.next_attempt_at or now) if x.state == "pending" else None,
                "b_settled": None if x.state == "pending" else now,
            }
            for x in settlements
        ]
        t = cast(Table, EventDelivery.__table__)
        # One statement for many rows, in one transaction (the worker's group commit):
        # SQLite has one writer, shared with the audit log, and a commit per delivery
        # kept the others waiting.
        stmt = (
            update(t)
            .where(t.c.id == bindparam("b_id"), t.c.lease_owner == bindparam("b_lease"))
            .values(
                state=bindparam("b_state"),
                attempts=t.c.attempts + 1,
                last_status=bindparam("b_status"),
                last_error=bindparam("b_error"),
                lease_owner=None,
                lease_until=None,
                next_attempt_at=func.coalesce(
                    bindparam("b_next", type_=t.c.next_attempt_at.type), t.c.next_attempt_at
                ),
                settled_at=bindparam("b_settled", type_=t.c.settled_at.type),
            )
        )
        async with self.sessions() as s, s.begin():
            await s.execute(stmt, rows)
