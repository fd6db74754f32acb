"""The Kafka event store: events and the delivery queue on Kafka topics, behind the same
`EventStore` interface as the embedded store (gateway/events/store.py); chosen with
`events_store = "kafka"`.

Design (docs/administrator.md "The Kafka event store"):

- **Events.** Every event topic of the policy shares one Kafka topic,
  `<prefix>.events`; an event topic lives whole in one of its partitions (chosen by a
  hash of its code, `partition_of`), keyed by the event's key, with its code, the event
  id and the publisher in headers. One shared topic, not one per policy topic: adding a
  topic to the policy makes no Kafka topic and no consumer-group rebalance (a Tansu
  group takes about 5 s to settle, a real cluster seconds too). Publishing appends the
  envelope (the exact bytes delivered and pulled) and answers 202 only once the broker
  has acknowledged it with `acks=all`. An event topic in one partition is in one order,
  as the embedded store's table is: a pull's cursor is the offset after the event
  (`offset + 1`, so `after=0` reads from the first), one integer as in embedded mode; a
  pull skips the other topics' records in that partition. A provincial topic's rate is
  far below what one partition carries; the work that needs sharing, delivery, is
  spread over the delivery queue's partitions.

- **Fan-out.** A consumer group (`<prefix>.fanout`) of every gateway process reads the
  events topic; for each event and each subscription of its topic whose filters match
  and whose subscriber holds a right now, it appends a delivery to the delivery-queue
  topic `<prefix>.deliveries`, keyed by `<subscription id>:<event key>` (so partitioned
  by hash(subscription, key): one key of one subscriber stays in one partition, in
  order), and commits the events topic's offset only once the broker has acknowledged
  every delivery of the batch. A crash in between fans the batch out again: duplicates,
  with the same webhook-id (the event id), never a loss.

- **Delivery.** A second consumer group (`<prefix>.delivery`) reads the delivery queue:
  gateway/events/kafka_delivery.py. A delivery that fails, or whose subscriber is too
  slow to keep up, is *parked* in the store's `event_deliveries` table (with its event
  in `event_records`), where the embedded machinery retries it with backoff, holds its
  dead letters, and the admin API shows and replays them. The partition's offset is
  committed only past deliveries that are settled: delivered, or parked durably.

- **Bookkeeping in the store.** So the store holds only what is not on the happy path:
  deliveries being retried and dead letters, which is what makes them visible and
  replayable by an operator with the existing admin API. While a (subscription, key)
  has a parked delivery pending, later deliveries of that key are parked behind it, in
  the order they came (the parked queue orders by its own row id), so the key stays in
  order. Kafka has no idempotent producer on the test broker (Tansu), and the producer
  may send twice on a retry; duplicates are harmless: the same webhook-id.

- **Replay since** a time reads the events topic again from that time (the broker's
  time index) and appends the subscription's matching events to the delivery queue.

- **Known gap.** A broker that lost its log (a single, unreplicated broker restarted
  empty) is not noticed: the consumers keep their positions in the old log, whose
  offsets the new one reuses, and skip the new log's first records up to the old
  position. Production runs Kafka replicated; tests/test_events_kafka_crash.py xfails it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.kafka import KafkaSettings
from gateway.config.runtime import RuntimeConfig
from gateway.core.logging import log
from gateway.events.leases import Queue, Settlement, take
from gateway.events.model import Publication, envelope, matches
from gateway.events.store import Claimed, Published, PulledEvent, SqlEventStore
from gateway.store.models import EventDelivery, EventRecord, EventSubscription, utcnow

__all__ = [
    "FETCH_WAIT_MS",
    "PARKED",
    "Fanout",
    "KafkaEventSettings",
    "KafkaEventStore",
    "Parked",
    "Rebalanced",
    "Subscription",
    "Subscriptions",
    "queue_delivery",
]

# The parked deliveries of the Kafka mode: in order per (subscription, key) by their own
# row id (the order they were parked in, which is the delivery partition's order).
PARKED = Queue(
    EventDelivery,
    EventDelivery.subscription_id,
    order_key=EventDelivery.order_key,
    order_seq=EventDelivery.id,
)


# How long the broker may hold a fetch that has nothing yet: what an event waits at most
# between the stages when the queue is idle (Kafka's default, 500 ms, is a latency floor).
FETCH_WAIT_MS = 100


@dataclass(frozen=True, slots=True)
class KafkaEventSettings:
    """Where the event store's topics are, and how it talks to the broker."""

    client: KafkaSettings  # the audit log's connection settings (its `topic` unused)
    prefix: str = "lgsp.events"
    partitions: int = 12  # of the delivery queue
    replication: int = 1

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    def partition_of(self, code: str) -> int:
        """The events topic's partition that holds an event topic (all of it, in order):
        fixed by the topic's code, so a cursor stays valid."""
        return zlib.crc32(code.encode()) % self.partitions

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}.deliveries"

    @property
    def fanout_group(self) -> str:
        return f"{self.prefix}.fanout"

    @property
    def delivery_group(self) -> str:
        return f"{self.prefix}.delivery"

    def producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self.client.client_options(),
            acks="all",
            enable_idempotence=self.client.idempotence,
            compression_type=self.client.compression,
            linger_ms=1,
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    topic: str
    client: str
    callback_url: str
    secret_encrypted: bytes
    filters: dict[str, Any]
    enabled: bool


class Subscriptions:
    """The subscriptions, read from the store at most every `max_age` seconds (they are
    few, and change by an administrator's hand)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_age: float = 1.0) -> None:
        self.sessions = sessions
        self.max_age = max_age
        self._by_id: dict[int, Subscription] = {}
        self._read_at = -1e9
        self._lock = asyncio.Lock()

    async def _refresh(self, force: bool = False) -> None:
        async with self._lock:
            now = time.monotonic()
            if not force and now - self._read_at < self.max_age:
                return
            s_ = EventSubscription
            async with self.sessions() as s:
                rows = await s.execute(
                    select(
                        s_.id,
                        s_.topic,
                        s_.client_code,
                        s_.callback_url,
                        s_.secret_encrypted,
                        s_.filters,
                        s_.enabled,
                    )
                )
                self._by_id = {
                    r[0]: Subscription(r[0], r[1], r[2], r[3], r[4], r[5] or {}, r[6])
                    for r in rows.all()
                }
            self._read_at = now

    async def of_topic(self, topic: str) -> list[Subscription]:
        await self._refresh()
        return [x for x in self._by_id.values() if x.topic == topic]

    async def get(self, sub_id: int) -> Subscription | None:
        await self._refresh()
        if sub_id not in self._by_id:
            await self._refresh(force=time.monotonic() - self._read_at > 0.2)
        return self._by_id.get(sub_id)


@dataclass(frozen=True, slots=True)
class Parked:
    """A delivery taken off the Kafka queue into the store: to retry (`pending`), dead,
    or queued behind an earlier parked delivery of its key (`pending`, attempts 0)."""

    subscription_id: int
    event_id: str
    topic: str
    key: str | None
    published_at: datetime
    body: bytes
    publisher: str
    state: str  # pending | dead
    attempts: int
    since: datetime
    next_attempt_at: datetime
    last_status: int | None = None
    last_error: str | None = None


def _header(headers: Any, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return bytes(v).decode()
    return None


class KafkaEventStore:
    """Events on Kafka; parked deliveries (retries, dead letters) in the store."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: KafkaEventSettings
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.subscriptions = Subscriptions(sessions)
        self._sql = SqlEventStore(sessions)
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._read_lock = asyncio.Lock()
        self._topics: set[str] = set()
        self._topic_lock = asyncio.Lock()
        self._park_lock = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect; the delivery queue topic is made if missing. A broker that is down
        at start is retried by each publish (which fails, 503, meanwhile)."""
        try:
            await self._connect()
            await self.ensure_topics()
        except Exception as e:
            log.error("event broker unavailable at start", error=f"{type(e).__name__}: {e}")

    async def _connect(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self.settings.producer()
            await producer.start()
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        for client in (self._producer, self._reader):
            if client is not None:
                await client.stop()
        self._producer = self._reader = None

    def forget_topics(self) -> None:
        """Check the topics again before the next use (after a broker error)."""
        self._topics.clear()

    async def ensure_topics(self) -> None:
        """Make the events topic and the delivery queue if missing."""
        ks = self.settings
        for name in (ks.events, ks.deliveries):
            if name in self._topics:
                continue
            async with self._topic_lock:
                if name in self._topics:
                    continue
                admin = AIOKafkaAdminClient(**ks.client.client_options())
                await admin.start()
                try:
                    await admin.create_topics([NewTopic(name, ks.partitions, ks.replication)])
                    log.info("event topic created", topic=name, partitions=ks.partitions)
                except TopicAlreadyExistsError:
                    pass
                finally:
                    await admin.close()
                self._topics.add(name)

    # -- the EventStore interface ---------------------------------------------------------

    async def publish(
        self,
        topic: str,
        publisher: str,
        p: Publication,
        may_receive: Callable[[str], bool],
        event_id: str | None = None,
    ) -> Published:
        event_id = event_id or str(uuid.uuid4())
        now = utcnow()
        body = envelope(event_id, topic, p, now)
        producer = await self._connect()
        await self.ensure_topics()
        try:
            sent = await self._send(producer, topic, body, p, event_id, publisher)
        except Exception:
            self.forget_topics()  # a broker that lost its topics: made again next time
            raise
        subs = await self.subscriptions.of_topic(topic)
        queued = sum(
            1
            for x in subs
            if x.enabled and matches(x.filters, p.type, p.data) and may_receive(x.client)
        )
        return Published(event_id, sent.offset + 1, queued)

    async def _send(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        body: bytes,
        p: Publication,
        event_id: str,
        publisher: str,
    ) -> Any:
        return await producer.send_and_wait(
            self.settings.events,
            value=body,
            key=(p.key or "").encode(),
            partition=self.settings.partition_of(topic),
            headers=[
                ("topic", topic.encode()),
                ("event-id", event_id.encode()),
                ("publisher", publisher.encode()),
            ],
        )

    async def _reading(self) -> AIOKafkaConsumer:
        """The consumer pulls and replays read with (no group: positions its own)."""
        if self._reader is None:
            reader = AIOKafkaConsumer(
                **self.settings.client.client_options(),
                group_id=None,
                enable_auto_commit=False,
            )
            await reader.start()
            self._reader = reader
        return self._reader

    async def read_after(self, topic: str, cursor: int, limit: int) -> list[PulledEvent]:
        await self.ensure_topics()
        tp = TopicPartition(self.settings.events, self.settings.partition_of(topic))
        async with self._read_lock:
            reader = await self._reading()
            reader.assign([tp])
            end = (await reader.end_offsets([tp]))[tp]
            if cursor >= end:
                return []
            reader.seek(tp, max(cursor, 0))
            got: list[PulledEvent] = []
            position = cursor
            # To the end as it was, or `limit` events of the topic (the partition may hold
            # other topics' events too: skipped).
            while len(got) < limit and position < end:
                batch = await reader.getmany(tp, timeout_ms=1000, max_records=500)
                for m in batch.get(tp, []):
                    position = m.offset + 1
                    if _header(m.headers, "topic") == topic and len(got) < limit:
                        got.append(PulledEvent(m.offset + 1, bytes(m.value)))
            return got

    async def replay_since(self, sub_id: int, since: datetime) -> int:
        """Queue again, for one subscription, every event of its topic published since a
        time, delivered or not ("replay since"): the events topic is read again from
        that time (the broker's time index); the count queued."""
        sub = await self.subscriptions.get(sub_id)
        if sub is None:
            return 0
        await self.ensure_topics()
        producer = await self._connect()
        tp = TopicPartition(self.settings.events, self.settings.partition_of(sub.topic))
        at = int(since.timestamp() * 1000)
        sent: list[asyncio.Future[Any]] = []
        async with self._read_lock:
            reader = await self._reading()
            reader.assign([tp])
            end = (await reader.end_offsets([tp]))[tp]
            try:
                found = (await reader.offsets_for_times({tp: at}))[tp]
                start = end if found is None else found.offset
            except Exception:  # a broker without a time index: from the first, by time
                start = 0
            if start >= end:
                return 0
            reader.seek(tp, start)
            position = start
            while position < end:
                batch = await reader.getmany(tp, timeout_ms=1000, max_records=500)
                for m in batch.get(tp, []):
                    position = m.offset + 1
                    if m.timestamp < at or _header(m.headers, "topic") != sub.topic:
                        continue
                    ev = orjson.loads(m.value)
                    if matches(sub.filters, str(ev.get("type")), ev.get("data") or {}):
                        sent.append(await queue_delivery(producer, self.settings, sub, m, ev))
        await asyncio.gather(*sent)
        return len(sent)

    async def claim(
        self, owner: str, *, lease_seconds: float, limit: int, free: dict[int, int], default: int
    ) -> list[Claimed]:
        taken = await take(
            self.sessions,
            PARKED,
            owner,
            lease_seconds=lease_seconds,
            limit=limit,
            free=cast(dict[Hashable, int], free),
            default=default,
        )
        return [] if taken is None else await self._sql._claimed(taken)

    async def settle(self, settlements: list[Settlement]) -> None:
        await self._sql.settle(settlements)

    # -- parking --------------------------------------------------------------------------

    async def parked_keys(self, pairs: set[tuple[int, str]]) -> set[tuple[int, str]]:
        """Of these (subscription, key) pairs, those with a parked delivery pending."""
        if not pairs:
            return set()
        d = EventDelivery
        subs = {s for s, _ in pairs}
        keys = {k for _, k in pairs}
        async with self.sessions() as s:
            rows = await s.execute(
                select(d.subscription_id, d.order_key)
                .where(d.state == "pending", d.subscription_id.in_(subs), d.order_key.in_(keys))
                .distinct()
            )
            return {(a, b) for a, b in rows.all()} & pairs

    async def park(self, items: list[Parked]) -> None:
        """Write deliveries into the store, in this order, in one transaction; one already
        there (the same event to the same subscription, parked before a crash) is not
        written twice, nor one of a subscription deleted meanwhile."""
        if not items:
            return
        # One at a time in a process: two chains parking one event (to two subscribers)
        # would both insert its record. Across replicas the loser retries, and finds it.
        async with self._park_lock, self.sessions() as s, s.begin():
            subs = set(
                await s.scalars(
                    select(EventSubscription.id).where(
                        EventSubscription.id.in_({x.subscription_id for x in items})
                    )
                )
            )
            ids = {x.event_id for x in items}
            seqs: dict[str, int] = dict(
                (
                    await s.execute(
                        select(EventRecord.event_id, EventRecord.id).where(
                            EventRecord.event_id.in_(ids)
                        )
                    )
                ).all()
            )
            records = {}
            for x in items:
                if x.event_id not in seqs and x.event_id not in records:
                    ev = orjson.loads(x.body)
                    records[x.event_id] = EventRecord(
                        event_id=x.event_id,
                        topic=x.topic,
                        event_type=str(ev.get("type", "")),
                        key=x.key,
                        publisher=x.publisher,
                        published_at=x.published_at,
                        body=x.body,
                    )
            if records:
                s.add_all(records.values())
                await s.flush()
                seqs |= {k: r.id for k, r in records.items()}
            there: set[tuple[int, int]] = set(
                (a, b)
                for a, b in (
                    await s.execute(
                        select(EventDelivery.subscription_id, EventDelivery.event_seq).where(
                            EventDelivery.event_seq.in_(set(seqs.values()))
                        )
                    )
                ).all()
            )
            for x in items:
                pair = (x.subscription_id, seqs[x.event_id])
                if x.subscription_id not in subs or pair in there:
                    continue
                there.add(pair)
                s.add(
                    EventDelivery(
                        subscription_id=x.subscription_id,
                        event_seq=pair[1],
                        order_key=x.key or "",
                        since=x.since,
                        next_attempt_at=x.next_attempt_at,
                        state=x.state,
                        attempts=x.attempts,
                        last_status=x.last_status,
                        last_error=x.last_error[:2000] if x.last_error else None,
                        settled_at=utcnow() if x.state == "dead" else None,
                    )
                )
            # Inserted in the order added (the unit of work keeps it): ids in the key's
            # order, which is the parked queue's.


async def queue_delivery(
    producer: AIOKafkaProducer,
    ks: KafkaEventSettings,
    sub: Subscription,
    m: Any,
    ev: dict[str, Any],
) -> asyncio.Future[Any]:
    """Append an event (the events topic's record `m`, `ev` parsed) to the delivery
    queue for a subscription; the broker's acknowledgement to await."""
    published = datetime.fromtimestamp(m.timestamp / 1000, UTC).isoformat()
    headers = [
        ("sub", str(sub.id).encode()),
        ("publisher", (_header(m.headers, "publisher") or "").encode()),
        ("event-id", str(ev["id"]).encode()),
        ("topic", sub.topic.encode()),
        ("published", published.encode()),
    ]
    key = f"{sub.id}:{ev.get('key', '')}".encode()
    future: asyncio.Future[Any] = await producer.send(
        ks.deliveries, value=m.value, key=key, headers=headers
    )
    return future


class Rebalanced(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls the consumer's owner back when partitions are revoked."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class Fanout:
    """Reads the event topics in the fan-out group, and appends a delivery per matching
    subscription to the delivery queue; commits after the broker acknowledged them."""

    def __init__(
        self, store: KafkaEventStore, config: Callable[[], RuntimeConfig], *, batch: int = 1000
    ) -> None:
        self.store = store
        self.config = config
        self.batch = batch
        self.fanned = 0  # deliveries appended to the queue
        self._task: asyncio.Task[None] | None = None
        self.consumer: AIOKafkaConsumer | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-fanout")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _may_receive(self, topic: str, client: str) -> bool:
        config = self.config()
        t, c = config.topics.get(topic), config.clients.get(client)
        return t is not None and c is not None and c.enabled and t.may_subscribe(c)

    async def _run(self) -> None:
        ks = self.store.settings
        failures = 0
        while True:
            consumer: AIOKafkaConsumer | None = None
            try:
                producer = await self.store._connect()
                await self.store.ensure_topics()
                consumer = AIOKafkaConsumer(
                    **ks.client.client_options(),
                    group_id=ks.fanout_group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=FETCH_WAIT_MS,
                )
                self.consumer = consumer
                consumer.subscribe([ks.events], listener=Rebalanced(self))
                await consumer.start()
                failures = 0
                await self._consume(consumer, producer)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                self.store.forget_topics()
                log.error("event fan-out error; reconnecting", error=f"{type(e).__name__}: {e}")
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
            finally:
                self.consumer = None
                if consumer is not None:
                    await asyncio.gather(consumer.stop(), return_exceptions=True)

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=self.batch)
            if batches:
                await self._fan(producer, batches)
                await consumer.commit()

    async def revoked(self, partitions: set[Any]) -> None:
        return None  # a batch is committed as soon as it is fanned out

    def assigned(self) -> set[TopicPartition]:
        """The events topic's partitions this fan-out holds now."""
        return set(self.consumer.assignment()) if self.consumer is not None else set()

    async def _fan(self, producer: AIOKafkaProducer, batches: dict[Any, list[Any]]) -> None:
        ks = self.store.settings
        sent: list[asyncio.Future[Any]] = []
        for messages in batches.values():
            for m in messages:
                code = _header(m.headers, "topic") or ""
                subs = await self.store.subscriptions.of_topic(code)
                ev = orjson.loads(m.value)
                for sub in subs:
                    if not (
                        sub.enabled
                        and matches(sub.filters, str(ev.get("type")), ev.get("data") or {})
                        and self._may_receive(code, sub.client)
                    ):
                        continue
                    sent.append(await queue_delivery(producer, ks, sub, m, ev))
        if sent:
            await asyncio.gather(*sent)
            self.fanned += len(sent)
