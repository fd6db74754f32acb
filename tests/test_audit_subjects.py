"""The whose-data index in the store: written with the records it points at (the path's
ids and the keyed hashes an event brought of its bodies' ids), once however often an
event arrives, and removed with them by retention. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.audit.chain import Chain
from gateway.audit.event import AuditEvent
from gateway.audit.retention import purge
from gateway.audit.store import AuditStore
from gateway.audit.subjects import load_subject_key
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditSubject

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

A, B = "001099012345", "079088001234"


@pytest.fixture
async def sessions(database_url: str):  # type: ignore[no-untyped-def]
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def _event(chain: Chain, path: str, at: datetime, subjects: tuple[str, ...] = ()) -> AuditEvent:
    e = AuditEvent(str(uuid.uuid4()), "r", "gw-1", "GET", path, at, at, 1.0, 200)
    e.subjects = subjects
    chain.link(e)
    return e


async def _index(sessions: Any) -> set[tuple[str, str]]:
    async with sessions() as s:
        rows = (await s.execute(select(AuditSubject.subject, AuditSubject.event_id))).all()
    return {(r[0], r[1]) for r in rows}


async def test_the_index_follows_the_records_in_and_out(sessions: Any, tmp_path: Path) -> None:
    key = load_subject_key(tmp_path)
    store = AuditStore(sessions, source="test", subject_key=key)
    chain = Chain("gw-1")
    old_at = datetime.now(UTC) - timedelta(days=40)
    old = _event(chain, f"/r1/x/cong-dan/{A}", old_at, subjects=(key.digest(B),))
    new = _event(chain, f"/r1/x/ho-so?so_dinh_danh={A}", datetime.now(UTC))
    plain = _event(chain, "/r1/x/ho-so/1", datetime.now(UTC))
    result = await store.ingest([old, new, plain])
    assert result.inserted == 3 and not result.findings
    expected = {
        (key.digest(A), old.event_id),
        (key.digest(B), old.event_id),
        (key.digest(A), new.event_id),
    }
    assert await _index(sessions) == expected
    # Delivered again (at least once): the index does not grow.
    assert (await store.ingest([old, new])).duplicates == 2
    assert await _index(sessions) == expected
    # Without a key (an older indexer), records go in and the index is left alone.
    bare = AuditStore(sessions, source="test")
    later = _event(chain, f"/r1/x/cong-dan/{B}", datetime.now(UTC))
    assert (await bare.ingest([later])).inserted == 1
    assert await _index(sessions) == expected
    # Retention takes the old record's rows with it.
    done = await purge(sessions, cutoff=datetime.now(UTC) - timedelta(days=30), actor="test")
    assert done is not None and done.count == 1
    assert await _index(sessions) == {(key.digest(A), new.event_id)}
