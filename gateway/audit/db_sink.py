"""Audit events written to the database, committed in groups.

`write` returns only after the event's transaction has committed, so an answered
exchange is always on disk. Concurrent writers share one transaction: while one batch
commits, the next accumulates, so throughput grows with load and a lone request waits
for a single commit, never for a timer.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import insert
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
            async with self._sessions() as session, session.begin():
                await session.execute(insert(AuditRecord), [e.as_dict() for e, _ in batch])
        except Exception as exc:
            log.error("audit write failed", error=str(exc), events=len(batch))
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(AuditUnavailable(str(exc)))
            return
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)
