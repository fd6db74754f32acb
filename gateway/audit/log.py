"""The audit log the pipeline writes to: chain, checkpoint, make durable, then answer.

One writer task takes events in arrival order, in batches (group commit: while one batch
is being made durable the next accumulates, so throughput grows with load and a lone
request waits for one fsync or one commit, never for a timer), links them into the
instance's hash chain, adds a signed checkpoint when one is due, and hands the batch to
a `Durable`:

- `StoreDurable` (the embedded default, no broker): the batch is committed to the
  database through `AuditStore.ingest`, the same code the Kafka indexer uses;
- `SpoolDurable` (a broker is configured): the batch is appended to the local spool and
  fsynced; `KafkaShipper` ships it to Kafka in the background and trims what the broker
  acknowledged.

`write` returns only once its event is durable. A batch that cannot be made durable is
unlinked from the chain (so a failure leaves no false gap) and retried event by event, so
one bad event cannot cost the others their record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.chain import GENESIS, AuditSigner, Chain, Checkpoint, Finding, file_name
from gateway.audit.confirm import StoreConfirmation
from gateway.audit.event import AuditEvent
from gateway.audit.kafka import KafkaSettings, KafkaShipper
from gateway.audit.sink import AuditUnavailable
from gateway.audit.spool import Spool, SpoolDiskFull, SpoolFull
from gateway.audit.store import AuditStore
from gateway.audit.subjects import SubjectKey, load_subject_key
from gateway.audit.tlog import TreeLog, TreeLogTask, log_origin
from gateway.audit.witnessing import Witnessing, parse_witness
from gateway.core.logging import log
from gateway.core.settings import Settings

_MAX_BATCH = 500


class Durable(Protocol):
    store: AuditStore

    async def open(self, instance: str) -> tuple[int, str]:
        """Start; return the instance's chain head (seq, hash) to continue from."""
        ...

    async def persist(
        self, events: Sequence[AuditEvent], checkpoints: Sequence[Checkpoint]
    ) -> None:
        """Return once everything given is durable; raise otherwise."""
        ...

    async def close(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


class StoreDurable:
    def __init__(self, store: AuditStore) -> None:
        self.store = store

    async def open(self, instance: str) -> tuple[int, str]:
        return await self.store.head(instance)

    async def persist(
        self, events: Sequence[AuditEvent], checkpoints: Sequence[Checkpoint]
    ) -> None:
        await self.store.ingest(events, checkpoints)

    async def close(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"mode": "store"}


class SpoolDurable:
    def __init__(
        self,
        spool: Spool,
        shipper: KafkaShipper,
        store: AuditStore,
        *,
        drain_seconds: float,
        confirm: StoreConfirmation | None = None,
    ) -> None:
        self.spool = spool
        self.shipper = shipper
        self.store = store
        self.drain_seconds = drain_seconds
        self.confirm = confirm
        self._task: asyncio.Task[None] | None = None
        self._confirm_task: asyncio.Task[None] | None = None
        self._alarmed = False
        self._disk_alarm: str | None = None  # while appends meet a full disk

    async def open(self, instance: str) -> tuple[int, str]:
        recovery = await self.spool.open()
        if recovery.corruptions:
            findings = [
                Finding(
                    instance,
                    "spool_corrupt",
                    None,
                    None,
                    f"{c.reason} in spool segment {c.segment} at byte {c.byte_offset}: "
                    f"{c.length} bytes moved to {c.quarantine_path}",
                )
                for c in recovery.corruptions
            ]
            for f in findings:
                log.error("audit spool corrupted", instance=instance, detail=f.detail)
            try:
                await self.store.record_findings(findings)
            except Exception as exc:  # reported in the log above either way
                log.error("could not record spool corruption in the store", error=str(exc))
        if recovery.unacked:
            log.info("audit spool replay", records=recovery.unacked)
        head = _head_of(recovery.last_payload)
        if head is None:
            # A new (or emptied) spool: continue the chain from what the store has seen.
            head = await self.store.head(instance)
        self._task = asyncio.create_task(self.shipper.run(), name="audit-shipper")
        if self.confirm is not None:
            self._confirm_task = asyncio.create_task(self.confirm.run(), name="audit-confirm")
        return head

    async def persist(
        self, events: Sequence[AuditEvent], checkpoints: Sequence[Checkpoint]
    ) -> None:
        payloads = [e.to_wire() for e in events] + [c.to_wire() for c in checkpoints]
        try:
            await self.spool.append(payloads)
        except SpoolDiskFull as exc:
            if self._disk_alarm is None:  # one alarm per episode, not one per event
                log.error(
                    "AUDIT SPOOL DISK FULL: fail_closed services are refused until the "
                    "broker has taken what waits and its space is reclaimed",
                    error=str(exc),
                    spool_records=self.spool.depth_records,
                    disk_free_bytes=self.spool.disk_free_bytes,
                )
            self._disk_alarm = str(exc)
            raise
        if self._disk_alarm is not None and not self.spool.disk_full:
            log.warning("audit spool disk has room again", was=self._disk_alarm)
            self._disk_alarm = None
        near = self.spool.near_full
        if near and not self._alarmed:
            log.error(
                "audit spool near its bound: the broker is not taking events",
                depth_bytes=self.spool.depth_bytes,
                max_bytes=self.spool.max_bytes,
            )
        self._alarmed = near

    async def close(self) -> None:
        # Graceful stop: give the shipper a moment to empty the spool; what it cannot
        # ship stays in the spool and goes at the next start.
        if self._confirm_task is not None:
            self._confirm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._confirm_task
        if self._task is not None:
            await self.shipper.drain(self.drain_seconds)
            await self.shipper.stop()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.spool.close()

    def status(self) -> dict[str, Any]:
        disk_full = self.spool.disk_full
        return {
            "mode": "kafka",
            "broker_connected": self.shipper.healthy(),
            "spool_records": self.spool.depth_records,
            "spool_bytes": self.spool.depth_bytes,
            "spool_near_full": self.spool.near_full,
            "spool_disk_full": disk_full,
            "spool_disk_free_bytes": self.spool.disk_free_bytes,
            # What keeps events from being durable, when it is the spool's disk.
            "spool_error": (self._disk_alarm if disk_full else None) or self.shipper.spool_error,
            # Acknowledged by the broker, kept until the store has them.
            "spool_unindexed_records": self.spool.unindexed_records,
            "reshipped": self.shipper.rewinds,
            "last_error": self.shipper.last_error,
        }


def _head_of(payload: bytes | None) -> tuple[int, str] | None:
    if payload is None:
        return None
    data = orjson.loads(payload)
    return int(data["seq"]), str(data["hash"])


_Pending = tuple[AuditEvent, "asyncio.Future[None]"]
_CHECKPOINT = object()  # queued by the timer: sign the head if it moved


class AuditLog:
    """The pipeline's `AuditSink`."""

    def __init__(
        self,
        *,
        instance: str,
        durable: Durable,
        signer: AuditSigner | None,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        tree: TreeLog | None = None,
        witnessing: Witnessing | None = None,
        witness_quorum: int = 0,
        subject_key: SubjectKey | None = None,
    ) -> None:
        self.instance = instance
        # The key of whose-data index (gateway/audit/subjects.py): each event's subject ids
        # are replaced by their keyed hashes before it is chained, spooled or stored.
        self.subject_key = subject_key
        self.durable = durable
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.chain = Chain(instance)
        self._signed_seq = 0
        self._queue: asyncio.Queue[_Pending | object | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self.tree = TreeLogTask(tree) if tree is not None else None
        self.witnessing = witnessing
        self.witness_quorum = witness_quorum
        if tree is not None and witnessing is not None:
            tree.after_round = witnessing.sync

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.signer is not None:
            await self.durable.store.register_key(self.signer)
        seq, head = await self.durable.open(self.instance)
        self.chain = Chain(self.instance, seq, head or GENESIS)
        self._signed_seq = seq
        self._task = asyncio.create_task(self._run(), name="audit-writer")
        if self.signer is not None:
            self._timer = asyncio.create_task(self._tick(), name="audit-checkpoints")
        if self.tree is not None:
            self.tree.start()

    async def write(self, event: AuditEvent) -> None:
        if self._task is None or self._task.done():
            raise AuditUnavailable("the audit writer is not running")
        event.fit()
        if event.subject_ids:
            key = self.subject_key
            if key is not None:
                event.subjects = tuple(sorted({key.digest(i) for i in event.subject_ids}))
            event.subject_ids = frozenset()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, done))
        await done

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._task is not None:
            self._queue.put_nowait(_CHECKPOINT)
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.tree is not None:
            await self.tree.stop()  # after the writer: its last batch is in the head
        await self.durable.close()

    def status(self) -> dict[str, Any]:
        out = {"instance": self.instance, "seq": self.chain.seq, **self.durable.status()}
        if self.witnessing is not None:
            witnesses = self.witnessing.status()
            out["witnesses"] = witnesses
            out["witness_quorum"] = self.witness_quorum
            out["witnesses_cosigning"] = sum(
                1 for w in witnesses.values() if not w["behind"] and not w["last_error"]
            )
        return out

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_seconds)
            self._queue.put_nowait(_CHECKPOINT)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Pending] = []
            sign = False
            item = await self._queue.get()
            while True:
                if item is None:
                    stopping = True
                elif item is _CHECKPOINT:
                    sign = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
                if stopping or len(batch) >= _MAX_BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            try:
                await self._commit(batch, sign)
            except Exception as exc:  # a bug must not leave exchanges waiting forever
                log.exception("audit writer failed on a batch", n=len(batch))
                for _, fut in batch:
                    _settle(fut, exc)

    async def _commit(self, batch: list[_Pending], sign: bool) -> None:
        mark = self.chain.mark()
        checkpoints: list[Checkpoint] = []
        try:
            for event, _ in batch:
                self.chain.link(event)
            checkpoints = self._due(sign)
            if not batch and not checkpoints:
                return
            await self.durable.persist([e for e, _ in batch], checkpoints)
        except Exception as exc:
            self.chain.rewind(mark)
            if len(batch) > 1:
                log.warning("audit batch failed, retrying singly", error=str(exc), n=len(batch))
                for item in batch:
                    await self._commit([item], sign=False)
                return
            if batch:
                event = batch[0][0]
                # The alarm: the pipeline answers fail_closed services with 503, and
                # fail_open ones go on, so the lost event is named here for operators.
                log.error(
                    "AUDIT EVENT NOT DURABLE",
                    error=_describe(exc),
                    event_id=event.event_id,
                    request_id=event.request_id,
                    client=event.client_code,
                    service=event.service_code,
                    status=event.status,
                )
                _settle(batch[0][1], exc)
            else:
                log.warning("audit checkpoint not durable; the next one covers it", error=str(exc))
            return
        if checkpoints:
            self._signed_seq = checkpoints[-1].seq
        for _, fut in batch:
            _settle(fut, None)

    def _due(self, forced: bool) -> list[Checkpoint]:
        if self.signer is None or self.chain.seq <= self._signed_seq:
            return []
        if forced or self.chain.seq - self._signed_seq >= self.checkpoint_every:
            try:
                return [self.signer.checkpoint(self.chain.seq, self.chain.head, datetime.now(UTC))]
            except Exception:
                # The events stay durable and chained; only the signature is missing, and
                # verification will show the stretch as unsigned.
                log.exception("AUDIT CHECKPOINT NOT SIGNED")
        return []


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SpoolFull):
        return "the audit spool is full (the broker has been unreachable for long)"
    if isinstance(exc, SpoolDiskFull):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(AuditUnavailable(_describe(exc)))


def audit_log_from_settings(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AuditLog:
    """The audit log a gateway process runs with: straight to the store, or through the
    spool to Kafka when a broker is configured."""
    subject_key = load_subject_key(settings.keys_dir)
    store = AuditStore(sessions, source="gateway", subject_key=subject_key)
    durable: Durable
    if settings.audit_kafka_bootstrap:
        spool = Spool(
            settings.audit_spool_dir / file_name(settings.instance_id),
            max_bytes=settings.audit_spool_max_bytes,
            # The spool frees space a whole segment at a time: keep segments small
            # against the bound, or acknowledged events would count as waiting.
            segment_bytes=min(64 << 20, settings.audit_spool_max_bytes // 16),
            keep_until_indexed=settings.audit_keep_until_indexed,
        )
        shipper = KafkaShipper(spool, kafka_settings(settings), key=settings.instance_id)
        confirm = (
            StoreConfirmation(
                spool,
                shipper,
                store,
                settings.instance_id,
                stall_seconds=settings.audit_reship_after_seconds,
            )
            if settings.audit_keep_until_indexed
            else None
        )
        durable = SpoolDurable(
            spool, shipper, store, drain_seconds=settings.audit_drain_seconds, confirm=confirm
        )
    else:
        durable = StoreDurable(store)
    signer = AuditSigner(settings.keys_dir, settings.instance_id, settings.key_passphrase)
    origin = settings.audit_log_origin or log_origin(settings.issuer, settings.instance_id)
    return AuditLog(
        instance=settings.instance_id,
        durable=durable,
        signer=signer,
        checkpoint_every=settings.audit_checkpoint_every,
        checkpoint_seconds=settings.audit_checkpoint_seconds,
        tree=TreeLog(sessions, signer, origin, interval=settings.audit_checkpoint_seconds),
        witnessing=Witnessing(
            sessions, settings.instance_id, [parse_witness(w) for w in settings.audit_witnesses]
        )
        if settings.audit_witnesses
        else None,
        witness_quorum=settings.audit_witness_quorum,
        subject_key=subject_key,
    )


def kafka_settings(settings: Settings) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=settings.audit_kafka_bootstrap,
        topic=settings.audit_kafka_topic,
        partitions=settings.audit_kafka_partitions,
        replication=settings.audit_kafka_replication,
        compression=None
        if settings.audit_kafka_compression == "none"
        else settings.audit_kafka_compression,
        idempotence=settings.audit_kafka_idempotence,
        security_protocol=settings.audit_kafka_security_protocol,
        sasl_mechanism=settings.audit_kafka_sasl_mechanism,
        sasl_username=settings.audit_kafka_sasl_username,
        sasl_password=settings.audit_kafka_sasl_password,
        ssl_cafile=settings.audit_kafka_ssl_cafile,
    )
