"""The loop every leased-queue worker runs (gateway/events/leases.py): event delivery
(gateway/events/delivery.py) and store-and-forward (gateway/events/forward.py).

It claims due items up to its concurrency, at most `per_group` in flight for one group
(a subscription, an upstream) so that one slow receiver cannot hold the others back,
runs each in a task, and settles outcomes in batches (a group commit). Woken when
something is queued, it otherwise asks the store every `poll_seconds`, and less often
while it finds nothing and holds nothing (up to `IDLE_POLL_SECONDS`): a claim costs the
event loop a few milliseconds of statement building, and two workers asking five times a
second were most of an idle gateway's CPU (38 ms a second, measured with py-spy) and a
steady interruption of the exchanges served beside them. What the back-off delays is
only what no wake announces: another replica's item, a retry coming due, a lease run
out. Closing cancels what is in flight: those leases run out and the items are claimed
again (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar

from gateway.core.logging import log
from gateway.events.leases import Settlement
from gateway.events.retry import RetryRules, retry_after_seconds

__all__ = ["CLOSE_SECONDS", "LeasedWorker", "again_or_dead"]

CLOSE_SECONDS = 10.0  # how long close() waits for cancelled items to end
IDLE_POLL_SECONDS = 2.0  # the longest wait between claims that found nothing

C = TypeVar("C")


class LeasedWorker(Generic[C]):
    """Claims, runs and settles items until closed; subclasses say how."""

    name = "leased-worker"

    def __init__(self, *, concurrency: int, per_group: int, poll_seconds: float) -> None:
        self.concurrency = concurrency
        self.per_group = per_group
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], Hashable] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._settling: list[tuple[Settlement, asyncio.Future[None]]] = []
        self._settler: asyncio.Task[None] | None = None

    # -- what a subclass provides ---------------------------------------------------------

    async def claim(self, capacity: int, free: dict[Hashable, int]) -> list[C]:
        """Lease up to `capacity` due items, at most `free[group]` (else `per_group`)."""
        raise NotImplementedError

    def group(self, item: C) -> Hashable:
        raise NotImplementedError

    async def run_one(self, item: C) -> None:
        raise NotImplementedError

    async def store_settle(self, settlements: list[Settlement]) -> None:
        raise NotImplementedError

    # -- the loop -------------------------------------------------------------------------

    def in_flight(self, group: Hashable) -> int:
        """Items of a group in flight in this worker."""
        return sum(1 for g in self._inflight.values() if g == group)

    def start_loop(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Look for due items now (one was just queued)."""
        self._wake.set()

    async def stop_loop(self) -> None:
        """Stop claiming; items in flight are cancelled (their leases run out and another
        worker, or this one after a restart, takes them again)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            # Bounded: a stop must not wait on an item that does not end when cancelled.
            _, stuck = await asyncio.wait(set(self._inflight), timeout=CLOSE_SECONDS)
            if stuck:
                log.warning(f"{self.name}: items did not stop when cancelled", count=len(stuck))

    async def _run(self) -> None:
        wait = self.poll_seconds
        while True:
            claimed = 0
            capacity = self.concurrency - len(self._inflight)
            if capacity > 0:
                claimed = await self._claim(capacity)
            if claimed and claimed >= capacity:
                await asyncio.sleep(0)  # more may be due: ask again at once
                continue
            if claimed or self._inflight:
                wait = self.poll_seconds
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                if not self._inflight:  # nothing found, nothing held: ask less often
                    wait = min(wait * 2, max(IDLE_POLL_SECONDS, self.poll_seconds))
            else:
                wait = self.poll_seconds

    async def _claim(self, capacity: int) -> int:
        busy = Counter(self._inflight.values())
        free = {group: self.per_group - n for group, n in busy.items()}
        try:
            items = await self.claim(capacity, free)
        except Exception as e:  # the store is down: try again at the next poll
            log.warning(f"{self.name}: nothing could be claimed", error=str(e))
            return 0
        for item in items:
            task = asyncio.create_task(self.run_one(item), name=f"{self.name}-item")
            self._inflight[task] = self.group(item)
            task.add_done_callback(self._done)
        return len(items)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()  # a slot is free, and the next item of that key may be due

    # -- settling -------------------------------------------------------------------------

    async def settle(self, settlement: Settlement) -> None:
        """Settle, in a batch with whatever else settles meanwhile (a group commit);
        return once it is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settling.append((settlement, done))
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._settle_batches(), name=f"{self.name}-settle")
        await done

    async def _settle_batches(self) -> None:
        while self._settling:
            batch, self._settling = self._settling, []
            try:
                await self.store_settle([x for x, _ in batch])
            except Exception as e:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(e)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


def again_or_dead(
    rules: RetryRules,
    attempts: int,
    since: datetime,
    now: datetime,
    retry_after: str | None,
) -> datetime | None:
    """When a failed attempt (the `attempts`-th) is tried again, honouring Retry-After;
    None: the retry window is over, the item is dead."""
    return rules.next_attempt(attempts, since, now, retry_after_seconds(retry_after, now))
