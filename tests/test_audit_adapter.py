"""The audit event names the adapter that converted its exchange and the adapter's VERSION;
a passthrough exchange names none. Both fields are inside the hash chain, and events from
before they existed (the fields absent, or null in the store) still verify."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.population import PopulationAdapter
from gateway.audit.chain import Chain, event_hash
from gateway.audit.event import HASHED_WHEN_SET, AuditEvent
from gateway.audit.query import RECORD_COLUMNS
from gateway.audit.store import AuditStore
from gateway.audit.verify import verify_store
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade_async
from gateway.store.models import AuditRecord
from tests.conftest import ECHO, Harness, add_to_policy
from tests.test_audit_chain import INSTANCE, make_event

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

Sessions = async_sessionmaker[AsyncSession]
POPULATION_V2 = "/r1/000.00.00.G01/csdlqg-dancu/v2"
ACCOUNT = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}


def old_hash(fields: Mapping[str, Any]) -> str:
    """How an event was hashed before the adapter fields existed: every field but `hash`
    and `kind`, keys sorted (an old event has no adapter fields to leave out)."""
    body = {k: v for k, v in fields.items() if k not in ("hash", "kind")}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def old_events(n: int) -> list[AuditEvent]:
    """Events as a gateway from before the fields wrote them (spooled, sent to Kafka):
    their wire form has no adapter fields, their hash is the old rule's."""
    events, head = [], "0" * 64
    for i in range(n):
        wire = orjson.loads(make_event(i).to_wire())
        assert "adapter" not in wire  # null fields are left out: the old wire form
        wire.update(seq=i + 1, prev_hash=head)
        wire["hash"] = head = old_hash(wire)
        events.append(AuditEvent.from_wire(wire))
    return events


def new_events(chain: Chain, converted: tuple[str | None, str | None], n: int) -> list[AuditEvent]:
    events = []
    for _ in range(n):
        event = make_event(chain.seq)
        event.adapter, event.adapter_version = converted  # what the pipeline does
        chain.link(event)
        events.append(event)
    return events


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def findings(sessions: Sessions) -> list[tuple[str, int | None]]:
    report = await verify_store(sessions, instance=INSTANCE)
    return [(f.kind, f.seq_from) for f in report.findings]


# -- the event --------------------------------------------------------------------------------


def test_a_passthrough_event_has_no_adapter_fields_on_the_wire_or_in_its_hash() -> None:
    event = make_event(0)
    Chain(INSTANCE).link(event)
    wire = orjson.loads(event.to_wire())
    assert "adapter" not in wire and "adapter_version" not in wire
    # An offline checker hashing "every field but hash and kind" gets the same hash.
    assert old_hash(wire) == event_hash(wire) == event.hash
    assert event_hash({**wire, "adapter": None, "adapter_version": None}) == event.hash


def test_a_converted_event_carries_and_hashes_the_adapter_and_its_version() -> None:
    event = make_event(0, adapter="population", adapter_version="1.0.0")
    Chain(INSTANCE).link(event)
    wire = orjson.loads(event.to_wire())
    assert (wire["adapter"], wire["adapter_version"]) == ("population", "1.0.0")
    assert event_hash(wire) == event.hash == old_hash(wire)
    assert AuditEvent.from_wire(wire) == event
    for changed in ({"adapter_version": "1.0.1"}, {"adapter": None}, {"adapter_version": None}):
        assert event_hash({**wire, **changed}) != event.hash, changed


# -- the store and its verification -----------------------------------------------------------


def test_the_auditor_api_and_exports_show_the_fields() -> None:
    # Records and CSV/JSONL exports are every column of the store's table, in order: the
    # columns added later come after those exports always had.
    at = RECORD_COLUMNS.index("adapter")
    assert RECORD_COLUMNS[at : at + 2] == ("adapter", "adapter_version")
    assert at > RECORD_COLUMNS.index("hash")


async def test_the_chain_verifies_across_events_from_before_and_after_the_fields(
    sessions: Sessions,
) -> None:
    store = AuditStore(sessions, source="indexer")
    before = old_events(3)
    chain = Chain(INSTANCE, before[-1].seq, before[-1].hash)
    after = [
        *new_events(chain, ("population", "1.0.0"), 2),
        *new_events(chain, (None, None), 2),  # passthrough
        *new_events(chain, ("document_exchange", "1.2.0-rc.1"), 1),
    ]
    result = await store.ingest([*before, *after])
    assert result.inserted == 8 and result.findings == []
    assert await findings(sessions) == []

    async with sessions() as s:
        stored = (await s.execute(select(AuditRecord.seq, AuditRecord.adapter,
                                         AuditRecord.adapter_version)
                                  .where(AuditRecord.instance == INSTANCE)
                                  .order_by(AuditRecord.seq))).all()  # fmt: skip
    assert [tuple(r) for r in stored] == [
        (1, None, None), (2, None, None), (3, None, None),
        (4, "population", "1.0.0"), (5, "population", "1.0.0"),
        (6, None, None), (7, None, None),
        (8, "document_exchange", "1.2.0-rc.1"),
    ]  # fmt: skip

    # The fields are covered: naming an adapter on an old or a passthrough record, or
    # removing or changing one, is an altered record.
    for seq, values in (
        (2, {"adapter": "population", "adapter_version": "1.0.0"}),
        (5, {"adapter_version": "1.0.1"}),
        (6, {"adapter": "population"}),
        (8, {"adapter": None, "adapter_version": None}),
    ):
        async with sessions() as s, s.begin():
            await s.execute(
                update(AuditRecord)
                .where(AuditRecord.instance == INSTANCE, AuditRecord.seq == seq)
                .values(**values)
            )
    assert await findings(sessions) == [("altered", 2), ("altered", 5), ("altered", 6),
                                        ("altered", 8)]  # fmt: skip


async def test_both_sides_digests_travel_the_wire_into_the_store_inside_the_chain(
    sessions: Sessions,
) -> None:
    """A converted exchange's provider-side request and caller-side answer digests: in the
    wire form (the bytes the spool keeps and Kafka carries), read back by the indexer,
    stored, verified, and covered by the hash (changed in the store: altered)."""
    chain = Chain(INSTANCE)
    sides = {
        "provider_request_sha256": hashlib.sha256(b"<TraCuuThuaDat/>").hexdigest(),
        "caller_response_sha256": hashlib.sha256(b'{"parcel": {}}').hexdigest(),
    }
    converted = make_event(0, adapter="land_registry", adapter_version="1.0.0", **sides)
    chain.link(converted)
    passthrough = make_event(1)
    chain.link(passthrough)
    wires = [orjson.loads(e.to_wire()) for e in (converted, passthrough)]
    assert {k: wires[0][k] for k in sides} == sides
    assert not set(sides) & set(wires[1])  # null: left out, as before the fields
    shipped = [AuditEvent.from_wire(w) for w in wires]  # what the indexer reads
    result = await AuditStore(sessions, source="indexer").ingest(shipped)
    assert result.inserted == 2 and result.findings == []
    assert await findings(sessions) == []
    async with sessions() as s:
        row = await s.scalar(
            select(AuditRecord).where(AuditRecord.instance == INSTANCE, AuditRecord.seq == 1)
        )
    assert row is not None
    assert (row.provider_request_sha256, row.caller_response_sha256) == tuple(sides.values())
    async with sessions() as s, s.begin():
        await s.execute(
            update(AuditRecord)
            .where(AuditRecord.instance == INSTANCE, AuditRecord.seq == 1)
            .values(caller_response_sha256="ab" * 32)
        )
    assert await findings(sessions) == [("altered", 1)]


async def test_records_stored_before_the_migration_verify_after_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await upgrade_async(url, "0006")
    before = old_events(3)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:  # the columns 0006 has, and only those
            await conn.execute(
                AuditRecord.__table__.insert(),
                [
                    {k: v for k, v in e.as_dict().items() if k not in HASHED_WHEN_SET}
                    for e in before
                ],
            )
            assert "adapter" not in await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("audit_records")}
            )
    finally:
        await engine.dispose()
    await upgrade_async(url)  # 0007 on: the adapter (and later) columns, null on old rows
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        chain = Chain(INSTANCE, before[-1].seq, before[-1].hash)
        store = AuditStore(sessions, source="gateway")
        result = await store.ingest(new_events(chain, ("population", "1.0.0"), 2))
        assert result.findings == []
        report = await verify_store(sessions, instance=INSTANCE)
        assert report.ok and report.instances[0].events == 5
    finally:
        await engine.dispose()


# -- through the gateway ----------------------------------------------------------------------


def population_service() -> dict[str, Any]:
    return {
        "provider": "000.00.00.G01",
        "code": "csdlqg-dancu",
        "version": "v2",
        "name": "Dân cư (dạng chuẩn)",
        "upstream": "ndxp",
        "upstream_path": "/csdldc/v1",
        "adapter": "population",
        "adapter_config": {"agency_code": "000.00.00.H49"},
        "require": ["officer", "procedure"],
        "access": [{"group": "tthc", "method": "POST", "path": "/cong-dan/tra-cuu"}],
    }


async def test_a_converted_exchange_names_its_adapter_and_a_passthrough_one_none(
    gateway: Harness,
) -> None:
    await add_to_policy(gateway, [population_service()])
    auth = {"Authorization": f"Bearer {await gateway.token()}"}
    converted = await gateway.http.post(
        POPULATION_V2 + "/cong-dan/tra-cuu",
        json={"personalId": "001099012345"},
        headers={**auth, **ACCOUNT, "X-Request-Id": "converted-1"},
    )
    passed = await gateway.http.post(
        ECHO + "/x", json={"a": 1}, headers={**auth, "X-Request-Id": "passthrough-1"}
    )
    assert converted.status_code == 200 and passed.status_code == 200
    [record] = await gateway.audit("converted-1")
    assert (record.adapter, record.adapter_version) == ("population", PopulationAdapter.VERSION)
    [record] = await gateway.audit("passthrough-1")
    assert (record.adapter, record.adapter_version) == (None, None)
    report = await verify_store(gateway.state.sessions)
    assert report.ok, report.findings
