"""The audit log as operators and auditors meet it, on SQLite and PostgreSQL: the store
that ingests events and writes down what is wrong with them, the writer that chains and
signs them (straight to the store, or through the local spool when a broker is
configured), retention, the gateway's answer when the log cannot take an event, and the
`lgsp audit` commands.

No broker runs here: the spool tests point the shipper at a closed port, which is what a
gateway sees while Kafka is down (tests/test_audit_kafka.py has a real one).
"""

from __future__ import annotations

import asyncio
import csv
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from gateway.audit.chain import (
    GENESIS,
    AuditSigner,
    Chain,
    Checkpoint,
    event_hash,
    public_key_text,
    verify_instance,
)
from gateway.audit.event import CHECKPOINT_KIND, AuditEvent
from gateway.audit.kafka import KafkaSettings, KafkaShipper
from gateway.audit.log import AuditLog, SpoolDurable, StoreDurable, audit_log_from_settings
from gateway.audit.retention import purge
from gateway.audit.sink import AuditUnavailable
from gateway.audit.spool import HEADER_SIZE, Spool
from gateway.audit.store import AuditStore
from gateway.audit.verify import verify_store
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.core.settings import Settings
from gateway.edge.app import create_app
from gateway.edge.state import STATE
from gateway.ops.cli.main import main as lgsp_main
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.models import (
    AuditCheckpoint,
    AuditFinding,
    AuditPurge,
    AuditRead,
    AuditRecord,
    AuditSigningKey,
)
from tests.conftest import ECHO, PROVINCE_ID, PROVINCE_SECRET, SECRET_ENV, Harness
from tests.conftest import test_policy as policy_for

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

Sessions = async_sessionmaker[AsyncSession]
INSTANCE = "gw-test-1"
T0 = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)
CITIZEN = "001099012345"


# -- helpers ----------------------------------------------------------------------------------


def make_event(i: int, *, instance: str = INSTANCE, **fields: Any) -> AuditEvent:
    started = fields.pop("started_at", T0 + timedelta(minutes=i))
    values: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "request_id": f"req-{i}",
        "instance": instance,
        "method": "GET",
        "path": f"/r1/000.00.00.H49/echo/v1/cong-dan/{CITIZEN}",
        "started_at": started,
        "finished_at": started + timedelta(milliseconds=15),
        "duration_ms": 15.25,
        "status": 200,
        "client_code": "motcua",
        "client_agency_code": "000.00.31.H49",
        "provider_code": "000.00.00.H49",
        "service_code": "echo",
        "service_version": "v1",
        "officer_id": "cb-01",
        "procedure_code": "1.001234",
        "request_bytes": 10,
        "response_bytes": 20,
    }
    values.update(fields)
    return AuditEvent(**values)


def chained(n: int, chain: Chain, **fields: Any) -> list[AuditEvent]:
    events = [make_event(chain.seq + k + 1, instance=chain.instance, **fields) for k in range(n)]
    for e in events:
        chain.link(e)
    return events


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def stored(sessions: Sessions, instance: str = INSTANCE) -> list[AuditRecord]:
    async with sessions() as s:
        q = select(AuditRecord).where(AuditRecord.instance == instance)
        return list((await s.scalars(q.order_by(AuditRecord.seq))).all())


async def audit_findings(sessions: Sessions) -> list[AuditFinding]:
    async with sessions() as s:
        return list((await s.scalars(select(AuditFinding).order_by(AuditFinding.id))).all())


async def stored_checkpoints(sessions: Sessions, instance: str = INSTANCE) -> list[int]:
    async with sessions() as s:
        q = select(AuditCheckpoint.seq).where(AuditCheckpoint.instance == instance)
        return list((await s.scalars(q.order_by(AuditCheckpoint.seq))).all())


async def report_findings(
    sessions: Sessions, instance: str | None = None
) -> list[tuple[str, int | None, int | None]]:
    report = await verify_store(sessions, instance=instance)
    return [(f.kind, f.seq_from, f.seq_to) for f in report.findings]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def store_log(
    sessions: Sessions, keys: Path, *, instance: str = INSTANCE, **options: Any
) -> AuditLog:
    return AuditLog(
        instance=instance,
        durable=StoreDurable(AuditStore(sessions, source="gateway")),
        signer=AuditSigner(keys, instance),
        **options,
    )


def spool_log(
    sessions: Sessions,
    tmp_path: Path,
    *,
    max_bytes: int = 1 << 30,
    segment_bytes: int = 64 << 20,
    instance: str = INSTANCE,
    **options: Any,
) -> tuple[AuditLog, Spool]:
    """The writer as a gateway with a broker configured runs it, the broker being down."""
    spool = Spool(
        tmp_path / "spool" / instance,
        max_bytes=max_bytes,
        segment_bytes=segment_bytes,
        fsync=False,
    )
    shipper = KafkaShipper(
        spool,
        KafkaSettings(
            bootstrap=f"127.0.0.1:{closed_port()}",
            topic="lgsp.audit.test",
            idempotence=False,
            request_timeout_ms=1000,
        ),
        key=instance,
    )
    durable = SpoolDurable(spool, shipper, AuditStore(sessions, source="gateway"), drain_seconds=0)
    log = AuditLog(
        instance=instance,
        durable=durable,
        signer=AuditSigner(tmp_path / "keys", instance),
        **options,
    )
    return log, spool


async def spooled(directory: Path) -> tuple[list[dict[str, Any]], list[Checkpoint]]:
    """Every event and checkpoint in a spool directory, read back as the shipper would."""
    spool = Spool(directory, fsync=False)
    await spool.open()
    try:
        payloads = [orjson.loads(p) for _, p in spool.read(0, max_records=1_000_000)]
    finally:
        await spool.close()
    events = [p for p in payloads if p["kind"] != CHECKPOINT_KIND]
    cps = [Checkpoint.from_wire(p) for p in payloads if p["kind"] == CHECKPOINT_KIND]
    return events, cps


def logged(
    entries: Sequence[MutableMapping[str, Any]], event: str
) -> list[MutableMapping[str, Any]]:
    return [e for e in entries if e["event"] == event]


# -- the store: ingest ------------------------------------------------------------------------


async def test_ingest_is_idempotent_on_event_id(sessions: Sessions) -> None:
    store = AuditStore(sessions, source="indexer")
    events = chained(5, Chain(INSTANCE))

    first = await store.ingest(events)
    assert (first.inserted, first.duplicates, first.findings) == (5, 0, [])
    # Kafka delivers at least once; the spool re-sends after a crash.
    again = await store.ingest(events)
    assert (again.inserted, again.duplicates, again.findings) == (0, 5, [])
    doubled = await AuditStore(sessions, source="indexer").ingest([*events[3:], *events[3:]])
    assert (doubled.inserted, doubled.duplicates) == (0, 4)

    assert [r.seq for r in await stored(sessions)] == [1, 2, 3, 4, 5]
    assert await audit_findings(sessions) == []


async def test_ingest_checks_continuity_across_batches(sessions: Sessions) -> None:
    store = AuditStore(sessions, source="indexer")
    chain = Chain(INSTANCE)
    other = Chain("gw-test-2")
    for _ in range(3):
        result = await store.ingest([*chained(3, chain), *chained(2, other)])
        assert result.findings == []
    assert [r.seq for r in await stored(sessions)] == list(range(1, 10))
    assert await audit_findings(sessions) == []
    assert await report_findings(sessions) == []


async def test_a_gap_is_recorded_once_and_resolved_when_the_late_events_arrive(
    sessions: Sessions,
) -> None:
    store = AuditStore(sessions, source="indexer")
    events = chained(7, Chain(INSTANCE))
    await store.ingest(events[:2])
    result = await store.ingest(events[4:6])  # seq 5, 6: 3 and 4 are late
    assert [(f.kind, f.seq_from, f.seq_to) for f in result.findings] == [("missing", 3, 4)]
    await store.ingest(events[4:])  # a re-delivery and seq 7: no second finding

    [gap] = await audit_findings(sessions)
    assert (gap.kind, gap.instance, gap.seq_from, gap.seq_to) == ("missing", INSTANCE, 3, 4)
    assert (gap.source, gap.resolved_at) == ("indexer", None)
    assert await report_findings(sessions) == [("missing", 3, 4)]

    await store.ingest([events[3]])  # seq 4 arrives; 3 still has not
    [gap] = await audit_findings(sessions)
    assert gap.resolved_at is None

    await AuditStore(sessions, source="indexer").ingest([events[2]])  # after a restart, even
    [gap] = await audit_findings(sessions)
    assert gap.resolved_at is not None
    assert await report_findings(sessions) == []


@pytest.mark.parametrize("stored_before", [0, 3])
async def test_a_gap_in_the_first_batch_a_store_ingests_is_recorded(
    sessions: Sessions, stored_before: int
) -> None:
    """An indexer (re)starts, or takes over a partition, and its first batch has a hole."""
    events = chained(8, Chain(INSTANCE))
    if stored_before:
        await AuditStore(sessions, source="indexer").ingest(events[:stored_before])
    fresh = AuditStore(sessions, source="indexer")
    batch = [*events[stored_before : stored_before + 2], *events[stored_before + 4 :]]
    result = await fresh.ingest(batch)
    gap = (stored_before + 3, stored_before + 4)
    assert [(f.kind, f.seq_from, f.seq_to) for f in result.findings] == [("missing", *gap)]
    assert [(f.kind, f.seq_from, f.seq_to) for f in await audit_findings(sessions)] == [
        ("missing", *gap)
    ]


async def test_an_event_not_matching_its_hash_is_recorded_as_altered_and_kept(
    sessions: Sessions,
) -> None:
    store = AuditStore(sessions, source="indexer")
    chain = Chain(INSTANCE)
    events = chained(6, chain)
    events[2].status = 500  # changed after it was hashed
    events[4].prev_hash = "c" * 64  # re-hashed after its link was changed
    events[4].hash = event_hash(events[4].as_dict())
    events[5].prev_hash = events[4].hash
    events[5].hash = event_hash(events[5].as_dict())

    await store.ingest(events[:2])
    result = await store.ingest(events[2:])
    assert result.inserted == 4
    expected = [("altered", 3, 3), ("broken_link", 5, 5)]
    assert [(f.kind, f.seq_from, f.seq_to) for f in result.findings] == expected
    rows = await audit_findings(sessions)
    assert [(f.kind, f.seq_from, f.seq_to) for f in rows] == expected
    assert "does not match" in rows[0].detail or "not matching" in rows[0].detail
    # The auditor sees what arrived, not a tidied version.
    kept = await stored(sessions)
    assert [r.seq for r in kept] == [1, 2, 3, 4, 5, 6]
    assert kept[2].status == 500
    assert await report_findings(sessions) == expected


async def test_head_after_a_restart_continues_the_chain(sessions: Sessions) -> None:
    first = AuditStore(sessions, source="gateway")
    assert await first.head(INSTANCE) == (0, GENESIS)
    chain = Chain(INSTANCE)
    events = chained(5, chain)
    await first.ingest(events[:3])
    await first.ingest(events[3:])
    await first.ingest(chained(2, Chain("gw-other")))

    restarted = AuditStore(sessions, source="gateway")
    head = await restarted.head(INSTANCE)
    assert head == (5, events[-1].hash)
    more = chained(3, Chain(INSTANCE, *head))
    assert [e.seq for e in more] == [6, 7, 8]
    result = await restarted.ingest(more)
    assert result.findings == []
    assert await restarted.head(INSTANCE) == (8, more[-1].hash)
    assert await report_findings(sessions) == []


# -- the writer, straight to the store --------------------------------------------------------


async def test_concurrent_writes_are_stored_in_one_chain_without_gaps(
    sessions: Sessions, tmp_path: Path
) -> None:
    log = store_log(sessions, tmp_path / "keys", checkpoint_every=50)
    await log.start()
    events = [make_event(i) for i in range(200)]
    # Caller-controlled text longer than its column is cut before it is hashed.
    events[17].officer_id = "x" * 300
    events[18].request_id = "r" * 500
    await asyncio.gather(*(log.write(e) for e in events))
    assert log.status()["seq"] == 200
    await log.close()

    rows = await stored(sessions)
    assert [r.seq for r in rows] == list(range(1, 201))
    assert {r.event_id for r in rows} == {e.event_id for e in events}
    assert len(next(r for r in rows if r.event_id == events[17].event_id).officer_id or "") == 64
    cps = await stored_checkpoints(sessions)
    assert cps and cps[-1] == 200
    report = await verify_store(sessions)
    assert report.ok, report.as_dict()
    assert (report.instances[0].events, report.instances[0].checkpoints) == (200, len(cps))


async def test_a_checkpoint_is_signed_every_n_events_and_on_close(
    sessions: Sessions, tmp_path: Path
) -> None:
    log = store_log(sessions, tmp_path / "keys", checkpoint_every=10)
    await log.start()
    for i in range(25):
        await log.write(make_event(i))
    assert await stored_checkpoints(sessions) == [10, 20]
    await log.close()
    assert await stored_checkpoints(sessions) == [10, 20, 25]

    assert log.signer is not None
    async with sessions() as s:
        [key] = (await s.scalars(select(AuditSigningKey))).all()
        cps = (await s.scalars(select(AuditCheckpoint))).all()
        hashes = {seq: h for seq, h in await s.execute(select(AuditRecord.seq, AuditRecord.hash))}
    assert (key.key_id, key.instance) == (log.signer.key_id, INSTANCE)
    assert all(c.key_id == key.key_id and c.hash == hashes[c.seq] for c in cps)
    report = await verify_store(sessions)
    assert report.ok and report.instances[0].checkpoints == 3


async def test_a_checkpoint_is_signed_when_its_interval_passes(
    sessions: Sessions, tmp_path: Path
) -> None:
    log = store_log(sessions, tmp_path / "keys", checkpoint_every=1000, checkpoint_seconds=0.05)
    await log.start()
    try:
        for i in range(3):
            await log.write(make_event(i))
        deadline = time.monotonic() + 5
        while (await stored_checkpoints(sessions))[-1:] != [3]:
            assert time.monotonic() < deadline, "no checkpoint after the interval"
            await asyncio.sleep(0.05)
        signed = await stored_checkpoints(sessions)
        await asyncio.sleep(0.2)  # an idle chain is not signed again
        assert await stored_checkpoints(sessions) == signed
    finally:
        await log.close()


async def test_a_restarted_writer_continues_the_chain_from_the_store(
    sessions: Sessions, tmp_path: Path
) -> None:
    first = store_log(sessions, tmp_path / "keys", checkpoint_every=10)
    await first.start()
    await asyncio.gather(*(first.write(make_event(i)) for i in range(30)))
    await first.close()

    second = store_log(sessions, tmp_path / "keys", checkpoint_every=10)
    await second.start()
    assert second.status()["seq"] == 30
    for i in range(30, 35):
        await second.write(make_event(i))
    await second.close()

    rows = await stored(sessions)
    assert [r.seq for r in rows] == list(range(1, 36))
    assert rows[30].prev_hash == rows[29].hash
    report = await verify_store(sessions)
    assert report.ok, report.as_dict()
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(AuditSigningKey)) == 1


class _Poisoned(StoreDurable):
    """A store that cannot take one particular event."""

    async def persist(
        self, events: Sequence[AuditEvent], checkpoints: Sequence[Checkpoint]
    ) -> None:
        if any(e.path.endswith("/poison") for e in events):
            raise RuntimeError("value out of range")
        await super().persist(events, checkpoints)


async def test_an_event_that_cannot_be_stored_costs_no_other_event_its_record(
    sessions: Sessions, tmp_path: Path
) -> None:
    log = AuditLog(
        instance=INSTANCE,
        durable=_Poisoned(AuditStore(sessions, source="gateway")),
        signer=AuditSigner(tmp_path / "keys", INSTANCE),
    )
    await log.start()
    events = [make_event(i) for i in range(20)]
    events[7].path = "/r1/000.00.00.H49/echo/v1/poison"
    with capture_logs() as entries:
        results = await asyncio.gather(*(log.write(e) for e in events), return_exceptions=True)
    await log.close()

    assert isinstance(results[7], AuditUnavailable)
    assert [r for i, r in enumerate(results) if i != 7] == [None] * 19
    [alarm] = logged(entries, "AUDIT EVENT NOT DURABLE")
    assert alarm["log_level"] == "error"
    assert (alarm["event_id"], alarm["request_id"]) == (events[7].event_id, "req-7")
    assert "value out of range" in alarm["error"]
    # The refused event left no hole: the others are numbered 1..19.
    assert [r.seq for r in await stored(sessions)] == list(range(1, 20))
    assert (await verify_store(sessions)).ok


# -- the writer, through the spool (broker down) ----------------------------------------------


async def test_with_the_broker_down_events_are_durable_in_the_spool_and_survive_a_restart(
    sessions: Sessions, tmp_path: Path
) -> None:
    log, spool = spool_log(sessions, tmp_path)
    await log.start()
    for i in range(5):
        await log.write(make_event(i))  # returns: the event is in the spool
    status = log.status()
    assert (status["mode"], status["seq"], status["spool_records"]) == ("kafka", 5, 5)
    assert status["broker_connected"] is False
    grown = spool.depth_bytes
    await log.write(make_event(5))
    assert spool.depth_bytes > grown
    await log.close()

    # A restart: new objects on the same spool directory.
    log, spool = spool_log(sessions, tmp_path)
    await log.start()
    assert log.status()["seq"] == 6
    for i in range(6, 9):
        await log.write(make_event(i))
    await log.close()

    events, cps = await spooled(tmp_path / "spool" / INSTANCE)
    assert [e["seq"] for e in events] == list(range(1, 10))
    assert [cp.seq for cp in cps] == [6, 9]  # one signed at each close
    keys = {log.signer.key_id: log.signer.public_key} if log.signer else {}
    assert verify_instance(INSTANCE, events, cps, keys).findings == []
    assert await stored(sessions) == []  # nothing reached the store without the broker


async def test_an_empty_spool_continues_from_the_store_head(
    sessions: Sessions, tmp_path: Path
) -> None:
    """A gateway that ran without a broker is given one: its chain goes on."""
    before = chained(4, Chain(INSTANCE))
    await AuditStore(sessions, source="gateway").ingest(before)
    log, _ = spool_log(sessions, tmp_path)
    await log.start()
    await log.write(make_event(4))
    await log.close()
    events, _ = await spooled(tmp_path / "spool" / INSTANCE)
    assert (events[0]["seq"], events[0]["prev_hash"]) == (5, before[-1].hash)


async def test_a_full_spool_refuses_events_and_leaves_no_gap(
    sessions: Sessions, tmp_path: Path
) -> None:
    log, spool = spool_log(sessions, tmp_path, max_bytes=64 * 1024, segment_bytes=8 * 1024)
    await log.start()
    with capture_logs() as entries:
        events = [make_event(i) for i in range(150)]
        results = await asyncio.gather(*(log.write(e) for e in events), return_exceptions=True)
        accepted = [e for e, r in zip(events, results, strict=True) if r is None]
        refused = [r for r in results if r is not None]
        assert refused and all(isinstance(r, AuditUnavailable) for r in refused)
        assert "spool is full" in str(refused[0])
        with pytest.raises(AuditUnavailable):
            await log.write(make_event(999))

    k = len(accepted)
    assert 0 < k < 150
    assert spool.depth_bytes <= 64 * 1024
    # The events that were accepted are numbered 1..k, in one unbroken chain.
    assert sorted(e.seq for e in accepted) == list(range(1, k + 1))
    assert log.status()["seq"] == k
    alarms = logged(entries, "AUDIT EVENT NOT DURABLE")
    assert len(alarms) == len(refused) + 1
    assert {a["event_id"] for a in alarms} >= {e.event_id for e in events if e not in accepted}
    assert len(logged(entries, "audit spool near its bound: the broker is not taking events")) == 1

    # The broker comes back and takes everything: the next event follows on.
    await spool.ack(spool.end)
    late = make_event(1000)
    await log.write(late)
    assert (late.seq, late.prev_hash) == (k + 1, max(accepted, key=lambda e: e.seq).hash)
    await log.close()

    everything = sorted([*accepted, late], key=lambda e: e.seq)
    assert verify_instance(INSTANCE, [e.as_dict() for e in everything], [], {}).findings == []
    # What is left on disk (acknowledged segments were trimmed) ends in a signed head.
    on_disk, cps = await spooled(tmp_path / "spool" / INSTANCE)
    first = on_disk[0]["seq"]
    assert [e["seq"] for e in on_disk] == list(range(first, k + 2))
    assert [cp.seq for cp in cps] == [k + 1]
    keys = {log.signer.key_id: log.signer.public_key} if log.signer else {}
    anchor = (first - 1, everything[first - 2].hash)
    assert verify_instance(INSTANCE, on_disk, cps, keys, anchor=anchor).findings == []


async def test_a_spool_whose_broker_keeps_up_does_not_fill_with_acknowledged_events(
    sessions: Sessions, database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        instance_id=INSTANCE,
        audit_kafka_bootstrap=f"127.0.0.1:{closed_port()}",
        audit_kafka_idempotence=False,
        audit_spool_dir=tmp_path / "spool",
        audit_spool_max_bytes=1 << 20,  # the smallest bound the settings allow
        audit_drain_seconds=0,
    )
    log = audit_log_from_settings(settings, sessions)
    assert isinstance(log.durable, SpoolDurable)
    spool = log.durable.spool
    await log.start()
    try:
        big = "/r1/000.00.00.H49/echo/v1/" + "a" * 16_000
        for i in range(80):  # 1.3 MiB in all, each taken by the broker at once
            await log.write(make_event(i, path=big))
            await spool.ack(spool.end)
        assert spool.depth_records == 0
        await log.write(make_event(80, path=big))  # on its way to the broker...
        await log.write(make_event(81, path=big))  # ...when the next exchange ends
        assert spool.depth_records == 2
    finally:
        await log.close()


async def test_a_corrupted_spool_segment_is_written_down_as_a_finding(
    sessions: Sessions, tmp_path: Path
) -> None:
    log, _ = spool_log(sessions, tmp_path)
    await log.start()
    for i in range(5):
        await log.write(make_event(i))
    await log.close()

    # Between runs, a bit rots in the third record's payload.
    directory = tmp_path / "spool" / INSTANCE
    [segment] = directory.glob("*.seg")
    data = bytearray(segment.read_bytes())
    pos = 0
    for _ in range(2):
        pos += HEADER_SIZE + int.from_bytes(data[pos + 12 : pos + 16], "big")
    data[pos + HEADER_SIZE + 30] ^= 0xFF
    segment.write_bytes(bytes(data))

    log, _ = spool_log(sessions, tmp_path)
    with capture_logs() as entries:
        await log.start()
    try:
        [finding] = await audit_findings(sessions)
        assert (finding.kind, finding.instance, finding.source) == (
            "spool_corrupt",
            INSTANCE,
            "gateway",
        )
        assert segment.name in finding.detail and "bad checksum" in finding.detail
        [error] = logged(entries, "audit spool corrupted")
        assert error["log_level"] == "error" and error["instance"] == INSTANCE
        assert list((directory / "quarantine").iterdir())
        # The chain goes on from the newest good record.
        extra = make_event(5)
        await log.write(extra)
        assert extra.seq == 6
    finally:
        await log.close()
    events, _ = await spooled(directory)
    assert [e["seq"] for e in events] == [1, 2, 4, 5, 6]


# -- through the gateway ----------------------------------------------------------------------


def _policy_with_a_fail_open_service(simulator_url: str, dead_url: str) -> PolicySet:
    policy = policy_for(simulator_url, dead_url)
    [echo] = [s for s in policy.services if s.code == "echo"]
    assert echo.audit == "fail_closed"
    open_echo = echo.model_copy(update={"code": "echo-open", "audit": "fail_open"})
    return PolicySet.model_validate(
        {
            **policy.model_dump(),
            "services": [s.model_dump() for s in [*policy.services, open_echo]],
        }
    )


@pytest.fixture
async def full_spool_gateway(
    settings: Settings,
    simulator: TestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Harness, AuditLog, Spool]]:
    monkeypatch.setenv(SECRET_ENV, PROVINCE_SECRET)
    simulator_url = str(simulator.make_url("")).rstrip("/")
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    await load_bundled(sessions, settings.schemas_dir)
    async with sessions() as s, s.begin():
        await policy_state.apply_policy(
            s,
            _policy_with_a_fail_open_service(simulator_url, f"http://127.0.0.1:{closed_port()}"),
            actor="test",
        )
    log, spool = spool_log(sessions, tmp_path, max_bytes=64 * 1024, instance="test-gw")
    server = TestServer(create_app(settings, audit=log), host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    url = str(server.make_url("")).rstrip("/")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield (
                Harness(
                    url,
                    http,
                    server.app[STATE],
                    simulator.app,
                    "127.0.0.1",
                    server.port,
                    simulator_url,
                ),
                log,
                spool,
            )
    finally:
        await server.close()
        await engine.dispose()


async def test_with_the_audit_log_full_fail_closed_services_answer_503_and_fail_open_ones_go_on(
    full_spool_gateway: tuple[Harness, AuditLog, Spool],
) -> None:
    h, log, spool = full_spool_gateway
    auth = {"Authorization": f"Bearer {await h.token('motcua')}"}
    r = await h.http.get(f"{ECHO}/ho-so/1", headers=auth)
    assert r.status_code == 200, r.text  # while the spool has room
    assert log.status()["seq"] == 2  # a fail_closed exchange: its intent, then its outcome

    # The broker stays away and the spool reaches its bound.
    for i in range(1000):
        try:
            await log.write(make_event(i, instance="test-gw"))
        except AuditUnavailable:
            break
    else:
        pytest.fail("the spool never filled")
    seq = log.status()["seq"]

    with capture_logs() as entries:
        closed = await h.http.get(
            f"{ECHO}/ho-so/2", headers={**auth, "X-Request-Id": "closed-when-full"}
        )
        opened = await h.http.get(
            f"/r1/{PROVINCE_ID}/echo-open/v1/ho-so/3",
            headers={**auth, "X-Request-Id": "open-when-full"},
        )

    assert closed.status_code == 503
    assert closed.headers["Content-Type"].startswith("application/problem+json")
    problem = closed.json()
    assert problem["type"] == "urn:lgsp:problem:audit-unavailable"
    assert problem["status"] == 503
    assert closed.headers["X-Request-Id"] == "closed-when-full"

    assert opened.status_code == 200, opened.text
    alarms = logged(entries, "AUDIT EVENT NOT DURABLE")
    assert {a["request_id"] for a in alarms} == {"closed-when-full", "open-when-full"}
    assert all(a["log_level"] == "error" for a in alarms)
    [open_alarm] = [a for a in alarms if a["request_id"] == "open-when-full"]
    assert open_alarm["service"] == "echo-open" and open_alarm["client"] == "motcua"

    health = (await h.http.get("/healthz")).json()["audit"]
    assert health["spool_near_full"] is True and health["broker_connected"] is False
    # Neither refused exchange took a seq: the chain has no hole.
    assert log.status()["seq"] == seq
    assert spool.depth_records == seq


# -- retention --------------------------------------------------------------------------------


CUTOFF = T0 + timedelta(minutes=5, seconds=30)


async def _two_chains_across_the_cutoff(
    sessions: Sessions, tmp_path: Path
) -> tuple[list[AuditEvent], list[AuditEvent]]:
    """Instance 1: seq n started at T0 + n minutes, except seq 7, a slow exchange that
    started before the cutoff and was chained after seq 6. Instance 2: seq 1-4 before the
    cutoff, 5-6 at it. Checkpoints over instance 1 at seq 3 and 10."""
    store = AuditStore(sessions, source="gateway")
    signer = AuditSigner(tmp_path / "keys", INSTANCE)
    await store.register_key(signer)
    a = chained(6, Chain(INSTANCE))
    a.append(make_event(7, started_at=CUTOFF - timedelta(minutes=2)))
    a += [make_event(n) for n in (8, 9, 10)]
    chain = Chain(INSTANCE, 6, a[5].hash)
    for e in a[6:]:
        chain.link(e)
    b = chained(4, Chain("gw-test-2"), started_at=CUTOFF - timedelta(seconds=1))
    b += chained(2, Chain("gw-test-2", 4, b[-1].hash), started_at=CUTOFF)
    cps = [signer.checkpoint(s, a[s - 1].hash, T0 + timedelta(hours=1)) for s in (3, 10)]
    await store.ingest([*a, *b], cps)
    assert await report_findings(sessions) == []
    return a, b


async def test_purge_cuts_each_chain_at_one_point_and_verification_goes_on_from_there(
    sessions: Sessions, tmp_path: Path
) -> None:
    a, b = await _two_chains_across_the_cutoff(sessions, tmp_path)

    record = await purge(sessions, cutoff=CUTOFF, actor="test")
    assert record is not None
    assert record.count == 5 + 4
    assert record.heads == {
        INSTANCE: {"seq": 5, "hash": a[4].hash},
        "gw-test-2": {"seq": 4, "hash": b[3].hash},
    }
    assert record.first_started_at == a[0].started_at
    assert record.last_started_at == b[0].started_at
    async with sessions() as s:
        [row] = (await s.scalars(select(AuditPurge))).all()
    assert (row.count, row.actor, row.cutoff, row.heads) == (9, "test", CUTOFF, record.heads)

    # Seq 7 started before the cutoff but stays: taking it would leave a hole at 6.
    assert [r.seq for r in await stored(sessions)] == [6, 7, 8, 9, 10]
    assert [r.seq for r in await stored(sessions, "gw-test-2")] == [5, 6]
    report = await verify_store(sessions)
    assert report.ok, report.as_dict()
    assert [(r.instance, r.first_seq, r.checkpoints) for r in report.instances] == [
        ("gw-test-1", 6, 1),
        ("gw-test-2", 5, 0),
    ]
    # A second run has nothing to do.
    assert await purge(sessions, cutoff=CUTOFF, actor="test") is None

    # A record removed any other way is not accounted for.
    async with sessions() as s, s.begin():
        await s.execute(
            delete(AuditRecord).where(AuditRecord.instance == INSTANCE, AuditRecord.seq == 8)
        )
    assert await report_findings(sessions) == [("missing", 8, 8)]


async def test_a_record_removed_right_after_a_purge_is_the_only_one_reported_missing(
    sessions: Sessions, tmp_path: Path
) -> None:
    await _two_chains_across_the_cutoff(sessions, tmp_path)
    assert await purge(sessions, cutoff=CUTOFF, actor="test") is not None
    async with sessions() as s, s.begin():
        await s.execute(
            delete(AuditRecord).where(AuditRecord.instance == INSTANCE, AuditRecord.seq == 6)
        )
    assert await report_findings(sessions, INSTANCE) == [("missing", 6, 6)]


# -- the `lgsp audit` commands (SQLite) -------------------------------------------------------


@pytest.fixture
def cli_db(sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    yield f"sqlite+aiosqlite:///{path}"


def _fill(url: str, keys: Path, n: int = 12) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            log = store_log(session_factory(engine), keys, checkpoint_every=5)
            await log.start()
            for i in range(n):
                path = f"/r1/000.00.00.H49/echo/v1/cong-dan/{CITIZEN}" if i % 3 == 0 else "/x"
                await log.write(make_event(i, path=path))
            await log.close()
        finally:
            await engine.dispose()

    asyncio.run(run())


def _sql(url: str, *statements: Any) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as s, s.begin():
                for stmt in statements:
                    await s.execute(stmt)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _count(url: str) -> int:
    async def run() -> int:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as s:
                return int(await s.scalar(select(func.count()).select_from(AuditRecord)) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _reads(url: str) -> list[tuple[str, bool, int]]:
    async def run() -> list[tuple[str, bool, int]]:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as s:
                reads = (await s.scalars(select(AuditRead).order_by(AuditRead.id))).all()
                return [(r.action, r.unmasked, r.records) for r in reads]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def lgsp(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        lgsp_main(["--database-url", url, *argv])
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def test_cli_verify_says_intact_then_names_the_altered_record(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(cli_db, tmp_path / "keys")
    code, out, _ = lgsp(capsys, cli_db, "audit", "verify")
    assert code == 0, out
    assert f"{INSTANCE}: seq 1..12, 12 events, 3 signed checkpoints: ok" in out
    assert "intact" in out

    _sql(
        cli_db,
        update(AuditRecord).where(AuditRecord.seq == 4).values(status=204),
    )
    code, out, _ = lgsp(capsys, cli_db, "audit", "verify")
    assert code == 1
    assert "altered:" in out and "(seq 4)" in out
    assert "NOT INTACT" in out

    code, out, _ = lgsp(capsys, cli_db, "audit", "verify", "--json")
    assert code == 1
    report = orjson.loads(out)
    assert report["ok"] is False
    [finding] = report["instances"][0]["findings"]
    assert (finding["kind"], finding["seq_from"], finding["seq_to"]) == ("altered", 4, 4)


def test_cli_verify_trusts_the_keys_an_auditor_exported(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(cli_db, tmp_path / "keys")
    code, out, _ = lgsp(capsys, cli_db, "audit", "keys")
    assert code == 0
    exported = orjson.loads(out)
    [key] = exported["keys"]
    assert key["instance"] == INSTANCE and key["key_id"].startswith("ed25519:")
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(out)
    code, out, _ = lgsp(capsys, cli_db, "audit", "verify", "--keys", str(keys_file))
    assert code == 0, out
    assert "intact" in out

    # Keys from somewhere else: every checkpoint is signed by a key the auditor does not hold.
    stranger = AuditSigner(tmp_path / "stranger", INSTANCE)
    doc = {
        "keys": [
            {
                **key,
                "key_id": stranger.key_id,
                "public_key": public_key_text(stranger.public_key),
            }
        ]
    }
    other_file = tmp_path / "other-keys.json"
    other_file.write_bytes(orjson.dumps(doc))
    code, out, _ = lgsp(capsys, cli_db, "audit", "verify", "--keys", str(other_file), "--json")
    assert code == 1
    found = orjson.loads(out)["instances"][0]["findings"]
    assert [(f["kind"], f["seq_from"]) for f in found] == [
        ("unknown_key", 5),
        ("unknown_key", 10),
        ("unknown_key", 12),
    ]
    code, out, _ = lgsp(capsys, cli_db, "audit", "verify", "--keys", str(other_file))
    assert code == 1 and out.count("unknown_key:") == 3


def test_cli_export_masks_identifiers_unless_told_and_records_the_read(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(cli_db, tmp_path / "keys")
    masked = tmp_path / "out.csv"
    code, _, err = lgsp(capsys, cli_db, "audit", "export", str(masked), "--quiet")
    assert code == 0
    assert f"12 records written to {masked} (csv)" in err
    with masked.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert sorted(int(r["seq"]) for r in rows) == list(range(1, 13))
    personal = [r["path"] for r in rows if "cong-dan" in r["path"]]
    assert personal == ["/r1/000.00.00.H49/echo/v1/cong-dan/001*******45"] * 4
    assert CITIZEN not in masked.read_text(encoding="utf-8")

    clear = tmp_path / "clear.csv"
    code, _, _ = lgsp(capsys, cli_db, "audit", "export", str(clear), "--quiet", "--unmask")
    assert code == 0
    assert clear.read_text(encoding="utf-8").count(CITIZEN) == 4
    assert _reads(cli_db) == [("export", False, 12), ("export", True, 12)]


def test_cli_purge_reports_what_it_removed(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(cli_db, tmp_path / "keys")  # seq n started at T0 + (n - 1) minutes
    cutoff = T0 + timedelta(minutes=4, seconds=30)
    code, out, _ = lgsp(capsys, cli_db, "audit", "purge", "--before", cutoff.isoformat())
    assert code == 0
    assert "purged 5 records (2025-06-02T01:00:00+00:00 .. 2025-06-02T01:04:00+00:00)" in out
    assert f'"{INSTANCE}":{{"seq":5,"hash":"' in out
    assert _count(cli_db) == 7

    code, out, _ = lgsp(capsys, cli_db, "audit", "purge", "--before", cutoff.isoformat())
    assert code == 0 and "nothing started before" in out
    code, out, _ = lgsp(capsys, cli_db, "audit", "verify")
    assert code == 0, out
    assert f"{INSTANCE}: seq 6..12, 7 events" in out

    # A time without a zone is Vietnam time, as an auditor means it: 08:06 ICT is 01:06 UTC.
    code, out, _ = lgsp(capsys, cli_db, "audit", "purge", "--before", "2025-06-02T08:06:00")
    assert code == 0 and "purged 1 records" in out
    assert _count(cli_db) == 6


async def test_a_failing_signer_costs_checkpoints_not_events(
    database_url: str, tmp_path: Path
) -> None:
    """Events are what must be durable; a broken checkpoint key must not refuse them."""

    class BrokenSigner(AuditSigner):
        def checkpoint(self, seq: int, head: str, at: datetime) -> Checkpoint:
            raise OSError("key store unreadable")

    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        log = AuditLog(
            instance=INSTANCE,
            durable=StoreDurable(AuditStore(sessions, source="gateway")),
            signer=BrokenSigner(tmp_path, INSTANCE),
            checkpoint_every=1,
        )
        await log.start()
        with capture_logs() as logs:
            for n in range(3):
                await asyncio.wait_for(log.write(make_event(n + 1)), 5)
            await log.close()
        report = await verify_store(sessions, instance=INSTANCE)
        assert report.ok and report.instances[0].events == 3
        assert report.instances[0].checkpoints == 0
        assert any(e["event"] == "AUDIT CHECKPOINT NOT SIGNED" for e in logs)
    finally:
        await engine.dispose()
