"""Leased work queues in the store: what event deliveries and store-and-forward messages
share (gateway/events/store.py, gateway/events/outbox.py).

A queue is a table whose rows carry `state`, `next_attempt_at`, `lease_owner`,
`lease_until`, `attempts`, `last_status`, `last_error` and `settled_at`. A worker takes
due rows with a lease (a compare-and-set on the row, so replicas sharing the database
share the work and one claim wins), at most so many per concurrency group (a
subscription, an upstream), and settles each attempt: done, pending again later, or
dead. A row whose lease ran out (its worker died mid-attempt) is due again: at least once.
Optionally a queue is ordered per key: only the oldest pending row of a (group, key) can
be taken, which keeps a key in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute, aliased

from gateway.store.models import Base, utcnow

__all__ = ["Leased", "Queue", "Settlement", "Taken", "settle", "take"]


class Leased(Protocol):
    """A claimed row: its id and the lease it is held under."""

    @property
    def id(self) -> int: ...

    @property
    def lease(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Settlement:
    """An attempt's outcome: "delivered"/"answered" (done), "pending" (again at
    `next_attempt_at`) or "dead"; `extra` sets the queue's own columns too."""

    claim: Leased
    state: str
    status: int | None
    error: str | None
    next_attempt_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Taken:
    """What `take` leased: the lease's name, and the rows it asked for (those another
    worker won meanwhile do not carry the lease: read them back by id *and* lease)."""

    lease: str
    ids: list[int]


@dataclass(frozen=True, slots=True)
class Queue:
    """A table used as a leased queue."""

    model: type[Base]
    group: InstrumentedAttribute[Any]  # the concurrency group a worker limits
    order_key: InstrumentedAttribute[Any] | None = None  # in order per (group, key) ...
    order_seq: InstrumentedAttribute[Any] | None = None  # ... by this column
    extra: tuple[str, ...] = ()  # columns a settlement may set besides the common ones

    def column(self, name: str) -> Any:
        return getattr(self.model, name)


async def take(
    sessions: async_sessionmaker[AsyncSession],
    q: Queue,
    owner: str,
    *,
    lease_seconds: float,
    limit: int,
    free: Mapping[Hashable, int],
    default: int,
) -> Taken | None:
    """Lease up to `limit` due rows, at most `free[group]` (else `default`) per group;
    the lease and the rows asked for, or None when nothing was due."""
    now = utcnow()
    c = q.column
    due = [
        c("state") == "pending",
        c("next_attempt_at") <= now,
        (c("lease_until").is_(None)) | (c("lease_until") < now),
    ]
    if q.order_key is not None and q.order_seq is not None:
        e: Any = aliased(q.model)
        earlier = exists().where(
            getattr(e, q.group.key) == q.group,
            getattr(e, q.order_key.key) == q.order_key,
            e.state == "pending",
            getattr(e, q.order_seq.key) < q.order_seq,
        )
        due.append(~earlier)
    stmt = (
        select(c("id"), q.group)
        .where(*due)
        .order_by(c("next_attempt_at"), c("id"))
        .limit(limit * 4)
    )
    full = [g for g, n in free.items() if n <= 0]
    if full:
        stmt = stmt.where(q.group.not_in(full))
    async with sessions() as s:
        candidates = (await s.execute(stmt)).all()
    chosen: list[int] = []
    taken: dict[Hashable, int] = {}
    for row_id, group in candidates:
        if taken.get(group, 0) >= free.get(group, default) or len(chosen) >= limit:
            continue
        taken[group] = taken.get(group, 0) + 1
        chosen.append(row_id)
    if not chosen:
        return None
    lease = f"{owner}:{uuid.uuid4().hex[:12]}"
    async with sessions() as s, s.begin():
        await s.execute(
            update(q.model)
            .where(c("id").in_(chosen), *due[:1], due[2])
            .values(lease_owner=lease, lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
    return Taken(lease, chosen)


async def settle(
    sessions: async_sessionmaker[AsyncSession], q: Queue, settlements: list[Settlement]
) -> None:
    """Record attempts' outcomes in one statement and one transaction (a group commit:
    SQLite has one writer, shared with the audit log); one whose lease was taken over
    meanwhile (another worker has it now) is ignored."""
    if not settlements:
        return
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
            **{f"b_{name}": x.extra.get(name) for name in q.extra},
        }
        for x in settlements
    ]
    t = cast(Table, q.model.__table__)
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
            **{name: bindparam(f"b_{name}", type_=t.c[name].type) for name in q.extra},
        )
    )
    async with sessions() as s, s.begin():
        await s.execute(stmt, rows)
