"""Reading the admin events: who changed what in the configuration and credentials,
when, before and after, and why."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.store.models import AdminEvent

__all__ = ["admin_events"]


async def admin_events(
    sessions: async_sessionmaker[AsyncSession], *, limit: int, since_id: int | None = None
) -> list[AdminEvent]:
    """Admin events, oldest first: the last `limit` ones, or the first `limit` after
    `since_id` (a previous page's last id).

    Example:
        >>> [e.action for e in await admin_events(sessions, limit=2)]
        ['policy.service', 'credential.revoke']
    """
    q = select(AdminEvent)
    async with sessions() as s:
        if since_id is None:
            rows = list((await s.scalars(q.order_by(AdminEvent.id.desc()).limit(limit))).all())
            rows.reverse()
            return rows
        q = q.where(AdminEvent.id > since_id).order_by(AdminEvent.id).limit(limit)
        return list((await s.scalars(q)).all())
