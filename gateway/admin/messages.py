"""Async services' messages (store-and-forward) for operators: those not delivered
(pending or dead) listed, and dead ones queued again with a fresh retry window, each
replay an admin event naming who made it. Shared by every face that shows them (the admin
API today).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin.actor import Actor
from gateway.admin.refusals import parse
from gateway.store.changes import record
from gateway.store.models import DeferredMessage, utcnow

__all__ = ["MessageReplayIn", "UndeliveredMessage", "replay", "undelivered"]


@dataclass(frozen=True, slots=True)
class UndeliveredMessage:
    message_id: str
    request_id: str
    service: str
    client: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    since: datetime
    next_attempt_at: datetime | None


async def undelivered(
    sessions: async_sessionmaker[AsyncSession], *, state: str | None = None, limit: int = 100
) -> list[UndeliveredMessage]:
    """Messages not answered: pending (retrying) and dead, oldest first.

    Example:
        >>> [m.state for m in await undelivered(sessions, state="dead")]
        ['dead']
    """
    m = DeferredMessage
    q = select(m).where(m.state.in_((state,) if state else ("pending", "dead")))
    async with sessions() as s:
        rows = await s.scalars(q.order_by(m.id).limit(limit))
        return [
            UndeliveredMessage(
                message_id=r.message_id,
                request_id=r.request_id,
                service=f"{r.provider}/{r.service_code}/{r.service_version}",
                client=r.client_code,
                state=r.state,
                attempts=r.attempts,
                last_status=r.last_status,
                last_error=r.last_error,
                since=r.since,
                next_attempt_at=r.next_attempt_at if r.state == "pending" else None,
            )
            for r in rows
        ]


class MessageReplayIn(BaseModel):
    """Which dead messages to send again: those named, or every dead one (none named)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[str] = Field([], max_length=1000)


async def replay(
    sessions: async_sessionmaker[AsyncSession], actor: Actor, body: dict[str, Any]
) -> int:
    """Queue dead messages again, each with a fresh retry window; the count queued."""
    asked = parse(MessageReplayIn, body, "The replay")
    m = DeferredMessage
    now = utcnow()
    q = update(m).where(m.state == "dead")
    if asked.messages:
        q = q.where(m.message_id.in_(asked.messages))
    async with sessions() as s, s.begin():
        result = await s.execute(
            q.values(
                state="pending",
                attempts=0,
                since=now,
                next_attempt_at=now,
                settled_at=None,
                answer_status=None,
                answer_headers=None,
                answer_body=None,
            )
        )
        count = int(getattr(result, "rowcount", 0) or 0)
        await record(
            s,
            actor=actor.name,
            action="messages.replay",
            target="messages",
            after={"messages": asked.messages or None, "queued": count},
            comment=actor.comment,
        )
    return count
