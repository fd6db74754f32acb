"""Where async services' requests are kept (store-and-forward): `SqlOutbox`, a leased
queue (gateway/events/leases.py) in the gateway's database, the same machinery event
deliveries use.

A message is written *held* when the caller's request is accepted, released to
*pending* once the acceptance is in the audit log, then claimed with a lease by a
forward worker (gateway/events/forward.py), and settled: *answered* (the provider's
answer kept for the caller), pending again later, or *dead* once the retry window is
over. Messages are grouped by upstream for the worker's concurrency, and are not ordered
among themselves (one letter stuck does not hold the next).

A gateway that dies between auditing an acceptance and releasing its message leaves it
held although the caller had its 202: `recover_held` releases such a message once its
acceptance is in the audit store (in Kafka mode, once the indexer has it), and drops one
whose acceptance never arrived within the retry window (its caller got no 202).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from multidict import CIMultiDict
from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.messages import DeferredRequest, OutboundRequest
from gateway.events.leases import Queue, Settlement, settle, take
from gateway.store.models import AuditRecord, DeferredMessage, utcnow

__all__ = ["MESSAGES", "ClaimedMessage", "MessageView", "SqlOutbox"]

MESSAGES = Queue(
    DeferredMessage,
    DeferredMessage.upstream,
    extra=("answer_status", "answer_headers", "answer_body"),
)


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message a forward worker holds the lease of."""

    id: int
    lease: str
    message_id: str
    request_id: str
    accept_event_id: str
    service: tuple[str, str, str]
    upstream: str
    client: str
    exchange: dict[str, Any]
    outbound: OutboundRequest
    context: dict[str, Any] | None
    attempts: int  # before this one
    since: datetime


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as its status URL shows it."""

    message_id: str
    request_id: str
    client: str
    service: tuple[str, str, str]
    state: str
    attempts: int
    accepted_at: datetime
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    settled_at: datetime | None
    answer_status: int | None
    answer_headers: list[list[str]] | None
    answer_body: bytes | None


class SqlOutbox:
    """The embedded message store: the `deferred_messages` table (migration 0021)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.woken: list[Any] = []  # callables to wake workers when a message is released

    async def hold(self, request: DeferredRequest) -> None:
        now = utcnow()
        o = request.outbound
        async with self.sessions() as s, s.begin():
            s.add(
                DeferredMessage(
                    message_id=request.message_id,
                    request_id=request.request_id,
                    accept_event_id=request.accept_event_id,
                    provider=request.service[0],
                    service_code=request.service[1],
                    service_version=request.service[2],
                    upstream=request.upstream,
                    client_code=request.client,
                    exchange=_jsonable(request.exchange),
                    method=o.method,
                    path=o.path,
                    query=o.query,
                    headers=[[str(k), v] for k, v in o.headers.items()],
                    body=o.body,
                    context=request.context,
                    state="held",
                    attempts=0,
                    since=now,
                    next_attempt_at=now,
                )
            )

    async def release(self, message_id: str) -> None:
        now = utcnow()
        m = DeferredMessage
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(m)
                .where(m.message_id == message_id, m.state == "held")
                .values(state="pending", since=now, next_attempt_at=now)
            )
        for wake in self.woken:
            wake()

    async def recover_held(
        self, *, older_than: timedelta, give_up_after: timedelta
    ) -> tuple[int, int]:
        """Release held messages older than `older_than` whose acceptance is in the audit
        store; drop those held longer than `give_up_after` whose acceptance is not.
        Returns (released, dropped)."""
        now = utcnow()
        m = DeferredMessage
        accepted = exists().where(AuditRecord.event_id == m.accept_event_id)
        async with self.sessions() as s, s.begin():
            released = await s.execute(
                update(m)
                .where(m.state == "held", m.since < now - older_than, accepted)
                .values(state="pending", since=now, next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
            dropped = await s.execute(
                delete(m)
                .where(m.state == "held", m.since < now - give_up_after, ~accepted)
                .execution_options(synchronize_session=False)
            )
        counts = (int(released.rowcount or 0), int(dropped.rowcount or 0))  # type: ignore[attr-defined]
        if counts[0]:
            for wake in self.woken:
                wake()
        return counts

    async def discard(self, message_id: str) -> None:
        m = DeferredMessage
        async with self.sessions() as s, s.begin():
            await s.execute(delete(m).where(m.message_id == message_id, m.state == "held"))

    async def claim(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int,
        free: dict[Hashable, int],
        default: int,
    ) -> list[ClaimedMessage]:
        taken = await take(
            self.sessions,
            MESSAGES,
            owner,
            lease_seconds=lease_seconds,
            limit=limit,
            free=free,
            default=default,
        )
        if taken is None:
            return []
        lease = taken.lease
        async with self.sessions() as s:
            rows = await s.scalars(
                select(DeferredMessage)
                .where(DeferredMessage.id.in_(taken.ids), DeferredMessage.lease_owner == lease)
                .order_by(DeferredMessage.id)
            )
            return [
                ClaimedMessage(
                    id=r.id,
                    lease=lease,
                    message_id=r.message_id,
                    request_id=r.request_id,
                    accept_event_id=r.accept_event_id,
                    service=(r.provider, r.service_code, r.service_version),
                    upstream=r.upstream,
                    client=r.client_code,
                    exchange=dict(r.exchange),
                    outbound=OutboundRequest(
                        r.method, r.path, r.query, CIMultiDict(r.headers), r.body
                    ),
                    context=r.context,
                    attempts=r.attempts,
                    since=r.since,
                )
                for r in rows
            ]

    async def settle(self, settlements: list[Settlement]) -> None:
        await settle(self.sessions, MESSAGES, settlements)

    async def read(self, message_id: str) -> MessageView | None:
        """The message, or None when there is none (or it was never released)."""
        m = DeferredMessage
        async with self.sessions() as s:
            r = await s.scalar(select(m).where(m.message_id == message_id, m.state != "held"))
            if r is None:
                return None
            return MessageView(
                message_id=r.message_id,
                request_id=r.request_id,
                client=r.client_code,
                service=(r.provider, r.service_code, r.service_version),
                state=r.state,
                attempts=r.attempts,
                accepted_at=r.since,
                next_attempt_at=r.next_attempt_at if r.state == "pending" else None,
                last_status=r.last_status,
                last_error=r.last_error,
                settled_at=r.settled_at,
                answer_status=r.answer_status,
                answer_headers=r.answer_headers,
                answer_body=r.answer_body,
            )


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}
