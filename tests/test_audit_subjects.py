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
from gateway.audit.store import AuditStore, index_stored
from gateway.audit.subjects import load_subject_key
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditSubject
from tests.conftest import lgsp

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


async def test_records_stored_without_the_index_are_indexed_by_their_paths_once(
    sessions: Any, tmp_path: Path
) -> None:
    key = load_subject_key(tmp_path)
    bare = AuditStore(sessions, source="test")  # as before migration 0020: no index
    chain = Chain("gw-1")
    now = datetime.now(UTC)
    by_path = _event(chain, f"/r1/x/cong-dan/{A}?cmnd=123456789", now)
    in_body = _event(chain, "/r1/x/ho-so", now, subjects=(key.digest(B),))
    plain = _event(chain, "/r1/x/ho-so/1", now)
    assert (await bare.ingest([by_path, in_body, plain])).inserted == 3
    assert await _index(sessions) == set()
    # A record indexed already (by a keyed writer) keeps its rows.
    keyed = AuditStore(sessions, source="test", subject_key=key)
    later = _event(chain, f"/r1/x/cong-dan/{B}", now)
    await keyed.ingest([later])
    assert await index_stored(sessions, key, batch=2) == (4, 2)
    assert await _index(sessions) == {
        (key.digest(A), by_path.event_id),
        (key.digest("123456789"), by_path.event_id),
        (key.digest(B), later.event_id),
    }  # the body's digest (B in `in_body`) was never stored: it cannot be found again
    assert await index_stored(sessions, key) == (4, 0)


async def test_lgsp_audit_index_subjects_indexes_the_stored_paths(env: dict[str, str]) -> None:
    assert lgsp(env, "migrate").returncode == 0
    engine = create_engine(env["LGSP_DATABASE_URL"])
    try:
        sessions = session_factory(engine)
        chain = Chain("gw-1")
        old = _event(chain, f"/r1/x/cong-dan/{A}", datetime.now(UTC))
        await AuditStore(sessions, source="test").ingest([old])
        out = lgsp(env, "audit", "index-subjects")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "read 1 records; 1 index rows added (from their paths)"
        key = load_subject_key(Path(env["LGSP_KEYS_DIR"]))
        assert await _index(sessions) == {(key.digest(A), old.event_id)}
    finally:
        await engine.dispose()
