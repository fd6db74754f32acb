"""The two-phase audit of fail_closed exchanges: an intent made durable before the request
goes to the provider, an outcome naming it after; verification pairs them, and an intent
left alone (the gateway died after forwarding) is a finding, never silence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.chain import Chain
from gateway.audit.query import AuditFilter, search
from gateway.audit.store import AuditStore
from gateway.audit.verify import INTENT_GRACE, verify_store
from gateway.store.db import create_engine, session_factory
from tests.conftest import ECHO, Harness, add_to_policy
from tests.test_audit_chain import INSTANCE, make_event

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def test_a_fail_closed_exchange_is_recorded_as_an_intent_and_its_outcome(
    gateway: Harness,
) -> None:
    r = await gateway.http.get(
        f"{ECHO}/x", headers={"Authorization": f"Bearer {await gateway.token()}"}
    )
    assert r.status_code == 200, r.text
    intent, outcome = await gateway.audit(r.headers["X-Request-Id"], intents=True)
    assert (intent.phase, intent.status, intent.upstream_status) == ("intent", 0, None)
    assert (outcome.phase, outcome.intent_id, outcome.status) == ("outcome", intent.event_id, 200)
    # Everything known before the call is in the intent: who, for what, the request.
    for field in ("client_code", "provider_code", "service_code", "path", "request_sha256"):
        assert getattr(intent, field) == getattr(outcome, field), field
    assert intent.seq is not None and outcome.seq is not None and intent.seq < outcome.seq
    report = await verify_store(gateway.state.sessions)
    assert report.ok, report.as_dict()


async def test_a_fail_open_exchange_is_one_event(gateway: Harness) -> None:
    await add_to_policy(
        gateway,
        [
            {
                "provider": "000.00.00.H49",
                "code": "echo-available",
                "version": "v1",
                "name": "echo, fail open",
                "upstream": "sim-open",
                "upstream_path": "/_sim/echo",
                "audit": "fail_open",
                "access": [{"client": "motcua"}],
            }
        ],
    )
    r = await gateway.http.get(
        "/r1/000.00.00.H49/echo-available/v1/x",
        headers={"Authorization": f"Bearer {await gateway.token()}"},
    )
    assert r.status_code == 200, r.text
    [only] = await gateway.audit(r.headers["X-Request-Id"], intents=True)
    assert (only.phase, only.intent_id) == (None, None)


async def test_an_intent_without_its_outcome_is_a_finding_once_it_cannot_be_in_flight(
    sessions: Sessions,
) -> None:
    old = datetime.now(UTC) - INTENT_GRACE - timedelta(minutes=1)
    chain = Chain(INSTANCE)
    asked = make_event(0, phase="intent", status=0, started_at=old, finished_at=old)
    answered_intent = make_event(1, phase="intent", status=0, started_at=old, finished_at=old)
    answered = make_event(2, phase="outcome", intent_id=answered_intent.event_id, started_at=old)
    recent = make_event(3, phase="intent", status=0)  # make_event's time: long ago too
    recent.started_at = recent.finished_at = datetime.now(UTC)
    events = [asked, answered_intent, answered, recent]
    for e in events:
        e.fit()
        chain.link(e)
    await AuditStore(sessions, source="test").ingest(events)

    report = await verify_store(sessions, instance=INSTANCE)
    findings = [(f.kind, f.seq_from) for f in report.findings]
    # The first was asked and never answered on the record; the second has its outcome;
    # the last may still be in flight.
    assert findings == [("outcome_missing", asked.seq)], findings
    assert "req-0" in report.findings[0].detail

    # Auditors see one row per exchange: an intent only while it has no outcome.
    async with sessions() as s:
        rows, _ = await search(s, AuditFilter(), limit=100)
    assert {r.event_id for r in rows} == {asked.event_id, answered.event_id, recent.event_id}
