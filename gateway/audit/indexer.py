"""`lgsp audit-indexer`: the Kafka consumer group that fills the audit store.

It reads the audit topic from the group's committed offsets, writes each batch through
`AuditStore.ingest` (idempotent on event id, checking every instance's chain as it
goes), and commits the offsets only after the store has committed, so a crash re-reads
rather than skips. A broker that goes away is waited for; when a chain shows a gap, the
partition is re-read from the start once, in case our position skipped records (a
replaced broker whose topic began anew). A record that is not an audit record is kept as a
finding, with its partition and offset, and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from gateway.audit.chain import Checkpoint, Finding
from gateway.audit.event import CHECKPOINT_KIND, EVENT_KIND, AuditEvent
from gateway.audit.kafka import KafkaSettings, ensure_topic
from gateway.audit.store import AuditStore
from gateway.core.logging import log


class _Forget(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions moved: another indexer may have written since; reload chain heads."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.store.forget()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.store.forget()


def decode(
    messages: list[Any],
) -> tuple[list[AuditEvent], list[Checkpoint], list[Finding]]:
    events: list[AuditEvent] = []
    checkpoints: list[Checkpoint] = []
    bad: list[Finding] = []
    for m in messages:
        try:
            data = orjson.loads(m.value)
            kind = data.get("kind")
            if kind == EVENT_KIND:
                events.append(AuditEvent.from_wire(data))
            elif kind == CHECKPOINT_KIND:
                checkpoints.append(Checkpoint.from_wire(data))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            key = m.key.decode(errors="replace") if m.key else "?"
            bad.append(
                Finding(
                    key,
                    "malformed",
                    None,
                    None,
                    f"{m.topic}[{m.partition}]@{m.offset} is not an audit record: {exc}",
                )
            )
    return events, checkpoints, bad


class Indexer:
    def __init__(self, store: AuditStore, kafka: KafkaSettings, *, group: str) -> None:
        self.store = store
        self.kafka = kafka
        self.group = group
        self.indexed = 0
        self._rewound: set[tuple[str, int | None]] = set()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            consumer: AIOKafkaConsumer | None = None
            try:
                await ensure_topic(self.kafka)
                consumer = AIOKafkaConsumer(
                    **self.kafka.client_options(),
                    group_id=self.group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_partition_fetch_bytes=4 << 20,
                )
                consumer.subscribe([self.kafka.topic], listener=_Forget(self.store))
                await consumer.start()
                log.info("audit indexer consuming", topic=self.kafka.topic, group=self.group)
                failures = 0
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.error("audit indexer error; reconnecting", error=f"{type(exc).__name__}: {exc}")
                backoff = min(5.0, 0.2 * 2 ** min(failures, 5)) * random.uniform(0.5, 1)  # noqa: S311
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff)
            finally:
                self.store.forget()
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if not batches:
                continue
            messages = [m for msgs in batches.values() for m in msgs]
            events, checkpoints, bad = decode(messages)
            result = await self.store.ingest(events, checkpoints)
            if bad:
                await self.store.record_findings(bad)
            for f in [*result.findings, *bad]:
                log.warning(
                    "audit integrity finding", instance=f.instance, kind=f.kind, detail=f.detail
                )
            await consumer.commit()
            self.indexed += result.inserted
            await self._look_back(consumer, messages, result.findings)

    async def _look_back(
        self, consumer: AIOKafkaConsumer, messages: list[Any], findings: list[Finding]
    ) -> None:
        """A gap in a chain may mean our position skipped records, not that they are lost:
        a replaced broker (or an unclean leader election) starts the partition's log anew
        while we keep our old position. Re-read that instance's partitions from the start,
        once per gap; duplicates are ignored by event id, and a gap filled is resolved."""
        rewind = set()
        for f in findings:
            if f.kind != "missing" or (f.instance, f.seq_from) in self._rewound:
                continue
            self._rewound.add((f.instance, f.seq_from))
            key = f.instance.encode()
            rewind |= {TopicPartition(m.topic, m.partition) for m in messages if m.key == key}
        if rewind:
            log.warning(
                "audit chain gap: re-reading partitions from the start",
                partitions=sorted(tp.partition for tp in rewind),
            )
            self.store.forget()
            await consumer.seek_to_beginning(*rewind)
