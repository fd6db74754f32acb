"""Kafka transport for the audit log: the shipper that empties the spool onto the audit
topic, and the client settings the indexer shares with it.

Every record of an instance is keyed by the instance id, so one instance's events land
in one partition, in order. The shipper sends from the spool's acknowledged position,
waits for the broker's `acks=all` acknowledgement of the whole batch, then acknowledges
the spool. If anything fails it starts again from the acknowledged position: a record
may be delivered twice (consumers dedupe by event id), never skipped. The spool keeps
what the broker acknowledged until the store has it (gateway/audit/confirm.py); when the
broker is found to have lost records, `request_rewind` makes the shipper send again from
the store's position.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from gateway.audit.spool import Spool
from gateway.core.logging import log


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str
    topic: str
    partitions: int = 6
    replication: int = 1
    compression: str | None = "lz4"
    # On by default for Apache Kafka (no broker-side duplicates on retry); the Tansu test
    # broker has no idempotent-producer support, so tests turn it off.
    idempotence: bool = True
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    request_timeout_ms: int = 10_000

    def client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": self.security_protocol,
            # A restarted or replaced broker is found again within seconds.
            "metadata_max_age_ms": 5000,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile)
        return options


class BrokerLogReset(Exception):
    """The broker acknowledged at an offset it had already used: its log began anew."""


class SpoolAckFailed(Exception):
    """The broker took a batch but the spool could not record it: a fault of the spool's
    disk, not of the broker (the batch is sent again; consumers dedupe)."""


# Records waiting this long with no live connection to any broker: the broker is gone,
# whatever the producer's retries still hope (they go on for the request timeout).
_NO_CONNECTION_GRACE_SECONDS = 0.5


async def ensure_topic(settings: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(settings.topic, settings.partitions, settings.replication)]
        )
        log.info("audit topic created", topic=settings.topic, partitions=settings.partitions)
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


class KafkaShipper:
    def __init__(
        self,
        spool: Spool,
        settings: KafkaSettings,
        *,
        key: str,
        batch_records: int = 2000,
        batch_bytes: int = 4 << 20,
    ) -> None:
        self.spool = spool
        self.settings = settings
        self.key = key.encode()
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.connected = False
        self.last_error: str | None = None
        self.shipped = 0
        self.last_ack: float | None = None  # loop time of the broker's last acknowledgement
        self.spool_error: str | None = None  # set while the spool cannot record acks
        self._waiting_since: float | None = None  # loop time records began to wait
        self._producer: AIOKafkaProducer | None = None
        self._stopping = False
        self._highs: dict[int, int] = {}  # partition -> highest offset acknowledged
        self._rewind_to: int | None = None
        self.rewinds = 0

    def request_rewind(self, offset: int) -> None:
        """Send again everything after ``offset``: the broker lost it (applied between
        batches, by the shipper's own task)."""
        self._rewind_to = offset if self._rewind_to is None else min(offset, self._rewind_to)

    async def _apply_rewind(self) -> None:
        offset, self._rewind_to = self._rewind_to, None
        if offset is None:
            return
        before = self.spool.acked
        now = await self.spool.rewind(offset)
        if now < before:
            self.rewinds += 1
            log.warning("audit events sent again", after=now, records=before - now)

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                if self._producer is None:
                    await self._connect()
                await self._apply_rewind()
                batch = self.spool.read(
                    self.spool.acked, max_records=self.batch_records, max_bytes=self.batch_bytes
                )
                if not batch:
                    self._waiting_since = None
                    await self.spool.maintain()  # a full disk frees itself, traffic or not
                    await self.spool.wait(self.spool.acked, timeout=1.0)
                    continue
                if self._waiting_since is None:
                    self._waiting_since = asyncio.get_running_loop().time()
                await self._send(batch)
                failures = 0
            except asyncio.CancelledError:
                raise
            except SpoolAckFailed as exc:
                # The broker is fine: keep the connection, say what is wrong, try again.
                failures += 1
                if self.spool_error is None:
                    log.error("AUDIT SPOOL CANNOT RECORD ACKNOWLEDGEMENTS", error=str(exc))
                self.spool_error = str(exc)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
            except Exception as exc:
                failures += 1
                self._failed(exc, failures)
                await self._disconnect()
                # Exponential backoff with jitter, capped: a returning broker is not
                # stampeded by every gateway at the same instant.
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)) * random.uniform(0.5, 1))  # noqa: S311

    async def _connect(self) -> None:
        s = self.settings
        await ensure_topic(s)
        producer = AIOKafkaProducer(
            **s.client_options(),
            acks="all",
            enable_idempotence=s.idempotence,
            compression_type=s.compression,
            linger_ms=5,
            max_batch_size=1 << 20,
            max_request_size=8 << 20,
        )
        try:
            await producer.start()
        except Exception:
            await producer.stop()
            raise
        self._producer = producer
        if not self.connected:
            log.info(
                "audit broker connected", bootstrap=s.bootstrap, depth=self.spool.depth_records
            )
        self.connected = True

    async def _send(self, batch: list[tuple[int, bytes]]) -> None:
        assert self._producer is not None
        topic = self.settings.topic
        # A batch the broker does not take within twice the request timeout is re-sent.
        async with asyncio.timeout(2 * self.settings.request_timeout_ms / 1000):
            futures = [await self._producer.send(topic, p, key=self.key) for _, p in batch]
            acks = await asyncio.gather(*futures)
        # A partition's offsets only grow. An acknowledgement at or below one already seen
        # means the broker's log started again (a replaced broker, an unclean leader
        # election; the Tansu test broker even acknowledges writes to a topic it does not
        # have): treat the batch as not delivered and send it again after reconnecting.
        highs = dict(self._highs)
        for md in acks:
            if md.offset <= highs.get(md.partition, -1):
                self._highs.clear()
                # What it acknowledged before may be gone too: from the store's position.
                self.request_rewind(self.spool.indexed)
                raise BrokerLogReset(
                    f"partition {md.partition} acknowledged offset {md.offset} after "
                    f"{highs[md.partition]}: the broker's log was reset"
                )
            highs[md.partition] = md.offset
        self._highs = highs
        try:
            await self.spool.ack(batch[-1][0])
        except OSError as exc:
            raise SpoolAckFailed(f"{type(exc).__name__}: {exc}") from exc
        if self.spool_error is not None:
            log.info("audit spool records acknowledgements again")
            self.spool_error = None
        self.shipped += len(batch)
        self.last_ack = self._waiting_since = asyncio.get_running_loop().time()

    def _failed(self, exc: Exception, failures: int) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.connected or failures == 1:
            log.error(
                "audit broker unreachable; events stay in the spool",
                error=self.last_error,
                spool_records=self.spool.depth_records,
            )
        self.connected = False

    async def _disconnect(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:
                log.debug("producer stop failed", error=str(exc))

    def healthy(self, stall_seconds: float = 5.0) -> bool:
        """Connected, and either nothing waits or the broker takes it: records that have
        waited ``stall_seconds`` (a broker that accepts connections but takes nothing), or
        half a second with no live connection to any broker (a broker that died, while
        the producer's retries run out), mean it is not healthy."""
        if not self.connected:
            return False
        if self.spool.depth_records == 0:
            return True
        since = self._waiting_since
        if since is None:
            return True  # appended this instant; the shipper has not read it yet
        waited = asyncio.get_running_loop().time() - since
        if waited >= stall_seconds:
            return False
        return waited < _NO_CONNECTION_GRACE_SECONDS or self._broker_reachable()

    def _broker_reachable(self) -> bool:
        """Whether the producer holds a live connection to a broker. aiokafka has no
        public call for it: its client's connection table is read, and if that is not
        there (another aiokafka version) the stall rule alone decides."""
        client = getattr(self._producer, "client", None)
        conns = getattr(client, "_conns", None)
        if not isinstance(conns, dict):
            return self._producer is not None
        return any(conn.connected() for conn in conns.values())

    async def drain(self, seconds: float) -> bool:
        """Wait until the broker has everything in the spool, or the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.spool.acked < self.spool.end:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self) -> None:
        self._stopping = True
        await self._disconnect()
