"""Delivery from the Kafka delivery queue (gateway/events/kafka_store.py): the consumer
group every gateway process joins, so replicas share the queue's partitions.

Each partition is read in order, but not delivered one record at a time: its records
are sorted into chains, one per (subscription, key), and the chains run side by side.
A chain sends its records one after another (the key stays in order), at most
`per_subscriber` of one subscription in flight in the process (counted together with
the store's retry worker, gateway/events/delivery.py), at most `concurrency` in all.

A partition's offset is committed only up to the first record that is not *settled*:
delivered (a 2xx, audited), or *parked* in the store (`KafkaEventStore.park`), durably.
A record is parked when

- its attempt failed: it is queued in the store for a retry at its backoff (Retry-After
  honoured), or dead if the retry window is already over; the chain's later records
  are parked behind it (`attempts` 0), in order, until the chain is empty again;
- it waited `spill_seconds` in its chain while its subscriber had attempts in flight
  and none ended (the subscriber is stuck), or the process holds `max_buffer` unsettled
  records and its subscriber holds the most of them, others waiting too: parking drains
  a slow subscriber into the store so the partition goes on for the others, and memory
  stays bounded;
- the store already holds a pending parked delivery of its (subscription, key), looked
  up when a chain starts (after a restart or a rebalance, the store is the truth).

What is in flight at a crash or a rebalance was not committed: it is read again by
whoever owns the partition next, and sent again with the same webhook-id (at least
once). When partitions are revoked their chains are cancelled first, so that two
processes never send one key at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.core.logging import log
from gateway.events.delivery import DeliveryWorker, Verdict
from gateway.events.kafka_store import (
    FETCH_WAIT_MS,
    KafkaEventStore,
    Parked,
    Rebalanced,
)
from gateway.events.store import Claimed
from gateway.store.models import utcnow

__all__ = ["KafkaDelivery"]

_COMMIT_SECONDS = 0.2  # how often settled offsets are committed


@dataclass(slots=True)
class _Item:
    tp: TopicPartition
    offset: int
    subscription_id: int
    key: str
    event_id: str
    topic: str
    publisher: str
    published_at: datetime
    body: bytes
    arrived: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Chain:
    pair: tuple[int, str]
    queue: deque[_Item] = field(default_factory=deque)
    parked: bool = False  # everything from here on is parked behind the store's
    sending: bool = False
    task: asyncio.Task[None] | None = None


class _Offsets:
    """A partition's records in flight, and the offset that may be committed."""

    def __init__(self) -> None:
        self.open: deque[int] = deque()
        self.done: set[int] = set()
        self.high = -1  # the next offset after the last one read
        self.committed = -1

    def add(self, offset: int) -> None:
        self.open.append(offset)
        self.high = offset + 1

    def finish(self, offset: int) -> None:
        self.done.add(offset)

    def position(self) -> int:
        while self.open and self.open[0] in self.done:
            self.done.discard(self.open.popleft())
        return self.open[0] if self.open else self.high


def _headers(m: Any) -> dict[str, str]:
    return {k: bytes(v).decode() for k, v in m.headers or ()}


class KafkaDelivery:
    """Consumes the delivery queue, sends through the worker's `attempt`, parks what
    cannot be sent now, and commits settled offsets."""

    def __init__(
        self,
        store: KafkaEventStore,
        worker: DeliveryWorker,
        *,
        max_buffer: int = 4096,
        spill_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.worker = worker
        self.concurrency = worker.rules.concurrency
        self.per_subscriber = worker.rules.per_subscriber
        self.max_buffer = max_buffer
        self.spill_seconds = spill_seconds
        self.delivered = 0  # counted for tests and the bench
        self.parked = 0
        self._chains: dict[tuple[int, str], _Chain] = {}
        self._offsets: dict[TopicPartition, _Offsets] = {}
        self._buffered = 0
        self._sending = 0
        self._freed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self._no_commit = False
        self._progress: dict[int, float] = {}  # subscription -> when an attempt last ended
        self._audits: set[asyncio.Task[None]] = set()  # delivered, audit records going

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-delivery-kafka")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def assigned(self) -> set[TopicPartition]:
        """The delivery queue's partitions this consumer holds now."""
        return set(self.consumer.assignment()) if self.consumer is not None else set()

    # -- the consumer ---------------------------------------------------------------------

    async def _run(self) -> None:
        ks = self.store.settings
        failures = 0
        while True:
            consumer: AIOKafkaConsumer | None = None
            helpers: list[asyncio.Task[None]] = []
            reset = False
            try:
                await self.store.ensure_topics()
                consumer = AIOKafkaConsumer(
                    **ks.client.client_options(),
                    group_id=ks.delivery_group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=FETCH_WAIT_MS,
                )
                self.consumer = consumer
                consumer.subscribe([ks.deliveries], listener=Rebalanced(self))
                await consumer.start()
                failures = 0
                helpers = [
                    asyncio.create_task(self._commit_loop(consumer), name="event-commit"),
                    asyncio.create_task(self._relieve_loop(), name="event-spill"),
                ]
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                # After an error nothing is committed on the way out: the broker may be
                # a new one, where an offset of the old log would skip the new one's.
                reset = True
                self.store.forget_topics()
                log.error(
                    "event delivery consumer error; reconnecting",
                    error=f"{type(e).__name__}: {e}",
                )
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
            finally:
                for t in helpers:
                    t.cancel()
                # A log that began anew is not committed to: the next consumer reads
                # from what the group holds.
                self._no_commit = reset
                await self._drop(set(self._offsets), consumer)
                if consumer is not None:
                    await asyncio.gather(consumer.stop(), return_exceptions=True)
                self.consumer = None
                self._no_commit = False

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            while self._buffered >= self.max_buffer:
                self._relieve(pressure=True)
                self._freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), 0.1)
            room = min(1000, self.max_buffer - self._buffered)
            batches = await consumer.getmany(timeout_ms=200, max_records=room)
            items = [self._item(tp, m) for tp, msgs in batches.items() for m in msgs]
            if not items:
                continue
            # Whether the store holds a parked delivery of a key that has no chain now.
            # Asked again for keys whose chain ended during the question (it parked and
            # was done): no await between the last answer and the chains made below.
            pairs = {(i.subscription_id, i.key) for i in items}
            asked: set[tuple[int, str]] = set()
            parked: set[tuple[int, str]] = set()
            while fresh := pairs - set(self._chains) - asked:
                parked |= await self.store.parked_keys(fresh)
                asked |= fresh
            for item in items:
                self._offsets.setdefault(item.tp, _Offsets()).add(item.offset)
                self._buffered += 1
                chain = self._chains.get((item.subscription_id, item.key))
                if chain is None:
                    pair = (item.subscription_id, item.key)
                    chain = self._chains[pair] = _Chain(pair, parked=pair in parked)
                chain.queue.append(item)
                if chain.task is None:
                    chain.task = asyncio.create_task(self._run_chain(chain), name="event-chain")

    def _item(self, tp: TopicPartition, m: Any) -> _Item:
        h = _headers(m)
        key = m.key.decode().split(":", 1)[1] if m.key else ""
        return _Item(
            tp=tp,
            offset=m.offset,
            subscription_id=int(h["sub"]),
            key=key,
            event_id=h["event-id"],
            topic=h["topic"],
            publisher=h.get("publisher", ""),
            published_at=datetime.fromisoformat(h["published"]),
            body=bytes(m.value),
        )

    # -- chains ---------------------------------------------------------------------------

    async def _run_chain(self, chain: _Chain) -> None:
        try:
            while chain.queue:
                try:
                    await self._step(chain)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the store is down: the chain waits, keeps its place
                    log.error("event chain waits", error=f"{type(e).__name__}: {e}")
                    await asyncio.sleep(1.0)
        finally:
            if self._chains.get(chain.pair) is chain:
                del self._chains[chain.pair]

    async def _step(self, chain: _Chain) -> None:
        """Send (or park) the chain's first record, or park all it holds."""
        if chain.parked:
            items = list(chain.queue)
            await self._park([self._behind(i) for i in items])
            for _ in items:
                self._settled(chain.queue.popleft())
            return
        if not await self._acquire(chain):
            return  # parked while it waited
        item = chain.queue[0]
        sub = item.subscription_id
        if self.worker.elsewhere[sub] == 1:
            self._progress[sub] = time.monotonic()  # the first in flight: the clock starts
        try:
            attempted = await self._attempt(item)
        finally:
            self._progress[sub] = time.monotonic()
            self._release(chain)
        if attempted is None:  # the subscription was deleted: nothing to send
            self._settled(chain.queue.popleft())
            return
        verdict, audited = attempted
        if verdict.state == "delivered":
            # The key's next event goes at once; this one is settled (its offset may be
            # committed) once its audit record is durable.
            self.delivered += 1
            chain.queue.popleft()
            task = asyncio.create_task(self._settle_audited(item, audited))
            self._audits.add(task)
            task.add_done_callback(self._audits.discard)
            return
        await asyncio.shield(audited)
        await self._park([self._after(item, verdict)])
        chain.parked = verdict.state == "pending"
        self._settled(chain.queue.popleft())

    async def _settle_audited(self, item: _Item, audited: asyncio.Task[None]) -> None:
        try:
            await asyncio.shield(audited)
        except Exception as e:  # logged by the audit; settled all the same, as the store's
            log.error("delivery attempt not audited", error=f"{type(e).__name__}: {e}")
        self._settled(item)

    async def _attempt(self, item: _Item) -> tuple[Verdict, asyncio.Task[None]] | None:
        sub = await self.store.subscriptions.get(item.subscription_id)
        if sub is None:
            return None  # deleted: its deliveries are not sent
        claim = Claimed(
            id=0,
            lease=f"kafka:{item.tp.partition}:{item.offset}",
            subscription_id=sub.id,
            topic=item.topic,
            subscriber=sub.client,
            callback_url=sub.callback_url,
            secret_encrypted=sub.secret_encrypted,
            event_id=item.event_id,
            body=item.body,
            attempts=0,
            since=item.published_at,
        )
        return await self.worker.attempt_audited_later(claim)

    def _parked(self, item: _Item, **what: Any) -> Parked:
        return Parked(
            subscription_id=item.subscription_id,
            event_id=item.event_id,
            topic=item.topic,
            key=item.key or None,
            published_at=item.published_at,
            body=item.body,
            publisher=item.publisher,
            since=item.published_at,
            **what,
        )

    def _behind(self, item: _Item) -> Parked:
        return self._parked(item, state="pending", attempts=0, next_attempt_at=utcnow())

    def _after(self, item: _Item, v: Verdict) -> Parked:
        return self._parked(
            item,
            state=v.state,
            attempts=1,
            next_attempt_at=v.next_attempt_at or utcnow(),
            last_status=v.status,
            last_error=v.error,
        )

    async def _park(self, items: list[Parked]) -> None:
        while True:
            try:
                await self.store.park(items)
                break
            except Exception as e:
                log.warning("deliveries not parked yet", error=f"{type(e).__name__}: {e}")
                await asyncio.sleep(1.0)
        self.parked += len(items)
        self.worker.wake()

    def _settled(self, item: _Item) -> None:
        track = self._offsets.get(item.tp)
        if track is not None:
            track.finish(item.offset)
        self._buffered -= 1
        self._freed.set()

    async def _acquire(self, chain: _Chain) -> bool:
        sub = chain.pair[0]
        while True:
            if chain.parked:
                return False
            if self._sending < self.concurrency and self.worker.busy(sub) < self.per_subscriber:
                self._sending += 1
                self.worker.elsewhere[sub] += 1
                chain.sending = True
                return True
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), 0.05)

    def _release(self, chain: _Chain) -> None:
        self._sending -= 1
        self.worker.elsewhere[chain.pair[0]] -= 1
        chain.sending = False
        self._freed.set()

    # -- spilling a slow subscriber into the store ----------------------------------------

    async def _relieve_loop(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, self.spill_seconds / 4))
            self._relieve(pressure=False)

    def _relieve(self, *, pressure: bool) -> None:
        now = time.monotonic()
        waiting: Counter[int] = Counter()
        for chain in self._chains.values():
            if chain.parked:
                continue
            queued = len(chain.queue) - (1 if chain.sending else 0)
            if queued <= 0:
                continue
            sub = chain.pair[0]
            head = chain.queue[1 if chain.sending else 0]
            # Stuck: the subscriber has had attempts in flight and none has ended for
            # `spill_seconds` (a backlog alone, behind a subscriber that answers, is not).
            stalled = self.worker.busy(sub) > 0 and now - self._progress.get(sub, now) > (
                self.spill_seconds
            )
            if stalled and now - head.arrived > self.spill_seconds:
                chain.parked = True
            else:
                waiting[sub] += queued
        # Under pressure (the buffer full, nothing more read), the subscriber holding most
        # of it is parked, if another is waiting behind it: one subscriber alone with a
        # backlog holds no one back, and drains fastest from Kafka.
        if pressure and len(waiting) > 1:
            [(slowest, _)] = waiting.most_common(1)
            for chain in self._chains.values():
                if chain.pair[0] == slowest:
                    chain.parked = True
        self._freed.set()

    # -- offsets --------------------------------------------------------------------------

    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await asyncio.sleep(_COMMIT_SECONDS)
            try:
                await self._commit(consumer)
            except Exception as e:  # a rebalance under way: the next round commits
                log.info("event offsets not committed yet", error=f"{type(e).__name__}: {e}")

    async def _commit(self, consumer: AIOKafkaConsumer, only: set[Any] | None = None) -> None:
        if self._no_commit:
            return
        offsets = {}
        for tp, track in self._offsets.items():
            if only is not None and tp not in only:
                continue
            position = track.position()
            if position > track.committed and position >= 0:
                offsets[tp] = position
        if offsets:
            await consumer.commit(offsets)
            for tp, position in offsets.items():
                self._offsets[tp].committed = position

    async def _drop(self, partitions: set[Any], consumer: AIOKafkaConsumer | None) -> None:
        """Stop the chains of these partitions (revoked, or the consumer stopping), commit
        what they settled, and forget them: what was not settled is read again by the
        partition's next owner. Stopped first, so that two processes never send one key
        at once."""
        chains = [c for c in self._chains.values() if c.queue and c.queue[0].tp in partitions]
        for chain in chains:
            if chain.task is not None:
                chain.task.cancel()
        await asyncio.gather(*(c.task for c in chains if c.task), return_exceptions=True)
        if self._audits:  # delivered: settled once audited, which is a moment
            await asyncio.wait(set(self._audits), timeout=5)
        if consumer is not None:
            with contextlib.suppress(Exception):
                await self._commit(consumer, only=partitions)
        for chain in chains:
            self._buffered -= len(chain.queue)
            chain.queue.clear()
            self._chains.pop(chain.pair, None)
        for tp in partitions:
            self._offsets.pop(tp, None)

    async def revoked(self, partitions: set[Any]) -> None:
        await self._drop(partitions, self.consumer)
