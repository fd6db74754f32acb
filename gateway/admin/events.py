"""Reading the admin events: who changed what in the configuration and credentials,
when, before and after, and why."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.store.models import AdminEvent

__all__ = ["admin_events", "without_credential_hints"]


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


def without_credential_hints(event: dict[str, Any]) -> dict[str, Any]:
    """An admin event as one who may not read credentials sees it: the hint of a
    credential (its first characters, which tell issued values apart) left out, as the
    admin API leaves credentials out for everyone but the administrator.

    Example:
        >>> without_credential_hints({"action": "credential.issue", "after": {"hint": "lgsp_ab"}})
        {'action': 'credential.issue', 'after': {}}
    """
    if not str(event.get("action", "")).startswith("credential."):
        return event
    shown = dict(event)
    for side in ("before", "after"):
        value = shown.get(side)
        if isinstance(value, dict) and "hint" in value:
            shown[side] = {k: v for k, v in value.items() if k != "hint"}
    return shown
