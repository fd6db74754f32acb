"""What the broker loses, the gateway still has: the spool keeps events until the *store*
has them, and sends again what a broker lost after acknowledging it.

A broker's acknowledgement is not the end of an event's journey: a Kafka cluster can lose
acknowledged records (an unclean leader election, a topic deleted or re-created, a
retention shorter than an indexer outage), and the in-memory test broker loses all of
them when it is replaced. So, as X-Road keeps its message log until it is archived, the
gateway keeps each spooled event until the audit store, which the gateway reads anyway,
holds it. `StoreConfirmation` runs beside the shipper:

* every `every` seconds it reads the spooled records after the spool's `indexed`
  position (up to what the broker acknowledged), asks the store which of this
  instance's sequence numbers it holds, and releases the leading run it holds (the spool
  may then delete those segments);
* a broker reset is recognised three ways: the broker acknowledges at offsets below those
  it used before (`BrokerLogReset`, seen by the shipper); the store holds a later event of
  this instance than one it lacks, for `gap_seconds` (the indexer reads a partition in
  order, so the broker has lost the earlier one); or the store has not moved for
  `stall_seconds` while the broker holds acknowledged events (a broker that lost records
  while nothing new was sent). Then the shipper sends again from the store's position;
  the indexer stores an event once whatever it is sent (by event id), and a gap it had
  seen is marked resolved when filled.

Repeated re-sends without progress (an indexer that is down, not a broker that lost
anything) back off, doubling up to an hour. The spool's bound still holds: records kept
for the store give way to new ones (see `Spool`), and that is logged as an alarm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from gateway.audit.event import CHECKPOINT_KIND
from gateway.audit.kafka import KafkaShipper
from gateway.audit.spool import Spool
from gateway.audit.store import AuditStore
from gateway.core.logging import log

__all__ = ["StoreConfirmation"]

_BATCH = 2000
_MAX_BATCHES = 20  # per check: up to 40,000 records released a second
_MAX_BACKOFF_SECONDS = 3600.0


class StoreConfirmation:
    """Releases from the spool what the store holds; re-ships what the broker lost.

    Example::

        confirm = StoreConfirmation(spool, shipper, store, "gw-1")
        task = asyncio.create_task(confirm.run())
    """

    def __init__(
        self,
        spool: Spool,
        shipper: KafkaShipper,
        store: AuditStore,
        instance: str,
        *,
        every: float = 1.0,
        gap_seconds: float = 3.0,
        stall_seconds: float = 120.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.spool = spool
        self.shipper = shipper
        self.store = store
        self.instance = instance
        self.every = every
        self.gap_seconds = gap_seconds
        self.stall_seconds = stall_seconds
        self._clock = clock
        self.reships = 0
        self.last_error: str | None = None
        self._progress_at: float | None = None
        self._gap: tuple[int, float] | None = None  # (sequence number missing, since when)
        self._fruitless = 0  # re-ships since the store last moved
        self._reshipped_at = 0.0
        self._released_seen = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.check()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store away: keep everything, try again
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:
                    log.warning(
                        "audit store position unreadable; the spool keeps events", error=error
                    )
                self.last_error = error
            self._alarm_released()

    async def check(self) -> None:
        """One look at the store: release what it holds, re-ship if the broker lost some."""
        now = self._clock() if self._clock else asyncio.get_running_loop().time()
        if self._progress_at is None:
            self._progress_at = now
        missing, highest = None, 0
        for _ in range(_MAX_BATCHES):
            missing, highest, full = await self._release_held(now)
            if missing is not None or not full:
                break
        if missing is None:
            self._gap = None
            if self.spool.unindexed_records == 0:
                self._progress_at = now  # nothing waits for the store
            return
        if highest <= missing:
            self._gap = None
        elif self._gap is None or self._gap[0] != missing:
            self._gap = (missing, now)
        backoff = min(_MAX_BACKOFF_SECONDS, 2.0**self._fruitless)
        if now - self._reshipped_at < self.gap_seconds * backoff:
            return
        if self._gap is not None and now - self._gap[1] >= self.gap_seconds:
            why = f"the store holds seq {highest} but not seq {missing}"
        elif now - self._progress_at >= self.stall_seconds * backoff:
            why = f"the store has not moved for {now - self._progress_at:.0f} s"
        else:
            return
        self._reship(now, why)

    async def _release_held(self, now: float) -> tuple[int | None, int, bool]:
        """Release the leading run of records the store holds; return the first sequence
        number it lacks (None if it has them all), its highest one, and whether a whole
        batch was released (there may be more)."""
        spool = self.spool
        after, acked = spool.indexed, spool.acked
        records = [r for r in spool.read(after, max_records=_BATCH) if r[0] <= acked]
        if not records:
            return None, 0, False
        entries = [_entry(payload) for _, payload in records]
        seqs = [seq for _, seq in entries if seq is not None]
        if not seqs:
            await spool.release(records[-1][0])
            return None, 0, len(records) == _BATCH
        events, checkpoints, highest = await self.store.indexed(self.instance, min(seqs), max(seqs))
        released, missing = after, None
        for (offset, _), (kind, seq) in zip(records, entries, strict=True):
            if seq is not None and seq not in (checkpoints if kind == CHECKPOINT_KIND else events):
                missing = seq
                break
            released = offset
        if released > after:
            await spool.release(released)
            self._progress_at = now
            self._fruitless = 0
        return missing, highest, missing is None and len(records) == _BATCH

    def _reship(self, now: float, why: str) -> None:
        self._reshipped_at = now
        self._fruitless += 1
        self._gap = None
        self.reships += 1
        log.warning(
            "audit events the broker acknowledged are not in the store: sending them again",
            reason=why,
            records=self.spool.unindexed_records,
            instance=self.instance,
        )
        self.shipper.request_rewind(self.spool.indexed)

    def _alarm_released(self) -> None:
        released = self.spool.released_unindexed
        if released > self._released_seen:
            log.error(
                "AUDIT SPOOL FULL OF EVENTS THE STORE HAS NOT INDEXED: the oldest were dropped "
                "from the spool and are on the broker only",
                records=released - self._released_seen,
                instance=self.instance,
            )
            self._released_seen = released


def _entry(payload: bytes) -> tuple[str | None, int | None]:
    """(kind, sequence number) of a spooled record; (None, None) if it has neither."""
    try:
        data: Any = orjson.loads(payload)
        seq = data.get("seq")
        return data.get("kind"), int(seq) if seq is not None else None
    except (ValueError, TypeError, AttributeError):
        return None, None
