"""Audit events written to the database, committed in groups.

`write` returns only after the event's transaction has committed, so an answered
exchange is always on disk. Concurrent writers share one transaction: while one batch
commits, the next accumulates, so throughput grows with load and a lone request waits
for a single commit, never for a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import String, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.event import AuditEvent
from gateway.audit.sink import AuditUnavailable
from gateway.logging import log
from gateway.store.models import AuditRecord

_MAX_BATCH = 500
_Pending = tuple[AuditEvent, "asyncio.Future[None]"]


class DatabaseAuditSink:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # None asks the writer to stop after what is already queued.
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-db-writer")

    async def write(self, event: AuditEvent) -> None:
        if self._task is None or self._task.done():
            raise AuditUnavailable("the audit writer is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, done))
        await done

    async def close(self) -> None:
        if self._task is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Pending] = []
            item = await self._queue.get()
            while True:
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
                if len(batch) >= _MAX_BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            await self._insert([e for e, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                log.error("audit write failed", error=str(exc), event_id=batch[0][0].event_id)
                _settle(batch[0][1], exc)
                return
            # One bad event must not cost the others their record: retry them one by one.
            log.warning("audit batch failed, retrying singly", error=str(exc), events=len(batch))
            for item in batch:
                await self._commit([item])
            return
        for _, fut in batch:
            _settle(fut, None)

    async def _insert(self, events: list[AuditEvent]) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(insert(AuditRecord), [_fit(e.as_dict()) for e in events])


# Column widths of the audit table: a value the caller controls (a path, a claimed officer
# id) is cut to fit rather than make its exchange unrecordable.
_WIDTHS = {
    c.name: c.type.length
    for c in AuditRecord.__table__.columns
    if isinstance(c.type, String) and c.type.length is not None
}


def _fit(row: dict[str, Any]) -> dict[str, Any]:
    for name, width in _WIDTHS.items():
        value = row.get(name)
        if isinstance(value, str) and len(value) > width:
            row[name] = value[:width]
    return row


def _settle(fut: asyncio.Future[None], exc: Exception | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(AuditUnavailable(str(exc)))
