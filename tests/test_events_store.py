"""The embedded event store and the delivery rules, below the HTTP API: claims by
several workers (replicas) never overlap, a key is claimed in order, a crashed worker's
lease runs out and its delivery is claimed again, a late settle is ignored; filters,
backoff with Retry-After, and secrets bound to their subscription."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.events.model import Publication, matches
from gateway.events.retry import RetryRules, retry_after_seconds
from gateway.events.secrets import KEY_FILE, SecretBox
from gateway.events.store import Settlement, SqlEventStore
from gateway.store.db import create_engine, session_factory
from gateway.store.models import EventSubscription


def everyone(client: str) -> bool:
    return True


NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def subscription(sessions: async_sessionmaker[AsyncSession], **filters: object) -> int:
    async with sessions() as s, s.begin():
        row = EventSubscription(
            topic="t",
            client_code="motcua",
            callback_url="http://127.0.0.1:9/hooks",
            filters=dict(filters),
            secret_encrypted=b"x",
            secret_hint="…xxxx",
            enabled=True,
            created_by="test",
        )
        s.add(row)
        await s.flush()
        return row.id


def event(key: str, n: int, kind: str = "moved") -> Publication:
    return Publication(type=kind, key=key, data={"n": n, "province": "49"})


@pytest.mark.dialects("sqlite", "postgresql")
async def test_replicas_claiming_together_never_share_a_delivery_and_keep_keys_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = SqlEventStore(sessions)
    await subscription(sessions)
    for n in range(12):
        await store.publish("t", "dancu", event(f"k{n % 3}", n), everyone)
    claims = await asyncio.gather(
        *(store.claim(f"gw{i}", lease_seconds=60, limit=50, free={}, default=50) for i in range(4))
    )
    got = [c for batch in claims for c in batch]
    # One per key at a time (the oldest), and never one delivery to two workers.
    assert len(got) == 3 and len({c.id for c in got}) == 3
    assert sorted(orjson_n(c.body) for c in got) == [0, 1, 2]
    # Settled, the next of each key becomes claimable.
    await store.settle([Settlement(c, "delivered", 204, None) for c in got])
    nxt = await store.claim("gw0", lease_seconds=60, limit=50, free={}, default=50)
    assert sorted(orjson_n(c.body) for c in nxt) == [3, 4, 5]


def orjson_n(body: bytes) -> int:
    import orjson

    return int(orjson.loads(body)["data"]["n"])


@pytest.mark.dialects("sqlite", "postgresql")
async def test_a_crashed_workers_delivery_is_claimed_again_and_its_late_settle_ignored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = SqlEventStore(sessions)
    await subscription(sessions)
    published = await store.publish("t", "dancu", event("k", 1), everyone)
    [first] = await store.claim("gw-a", lease_seconds=2, limit=10, free={}, default=10)
    assert await store.claim("gw-b", lease_seconds=60, limit=10, free={}, default=10) == []
    # gw-a "died" mid-delivery: once its lease runs out, gw-b claims the delivery.
    again = None
    for _ in range(100):
        claims = await store.claim("gw-b", lease_seconds=60, limit=10, free={}, default=10)
        if claims:
            [again] = claims
            break
        await asyncio.sleep(0.1)
    assert again is not None, "the delivery was not claimed again"
    assert again.id == first.id and again.event_id == first.event_id == published.event_id
    await store.settle([Settlement(first, "dead", None, "late")])  # gw-a comes back
    await store.settle([Settlement(again, "delivered", 200, None)])
    assert await store.claim("gw-c", lease_seconds=60, limit=10, free={}, default=10) == []


@pytest.mark.dialects("sqlite", "postgresql")
async def test_filters_choose_the_events_a_subscription_receives(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    store = SqlEventStore(sessions)
    await subscription(sessions, event_types=["moved"], equals={"province": "49"})
    assert (await store.publish("t", "dancu", event("a", 1), everyone)).deliveries == 1
    assert (await store.publish("t", "dancu", event("a", 2, kind="died"), everyone)).deliveries == 0
    other = Publication(type="moved", data={"province": "01"})
    assert (await store.publish("t", "dancu", other, everyone)).deliveries == 0
    # A subscriber without a right (now) is queued nothing.
    assert (await store.publish("t", "dancu", event("a", 3), lambda c: False)).deliveries == 0
    # A pull sees every event of the topic, whatever the subscriptions filter.
    assert len(await store.read_after("t", 0, 10)) == 4


def test_filters_compare_types_as_well_as_values() -> None:
    assert matches({"equals": {"a.b": 1}}, "x", {"a": {"b": 1}})
    assert not matches({"equals": {"a.b": 1}}, "x", {"a": {"b": True}})
    assert not matches({"equals": {"a.b": "1"}}, "x", {"a": {"b": 1}})
    assert not matches({"equals": {"a.c": 1}}, "x", {"a": {"b": 1}})
    assert matches({}, "anything", {})


def test_backoff_grows_with_jitter_honours_retry_after_and_ends_with_the_window() -> None:
    rules = RetryRules(window=timedelta(hours=24), initial_seconds=1, max_seconds=3600)
    delays = [(rules.next_attempt(n, NOW, NOW) or NOW) - NOW for n in (1, 5, 30)]
    assert timedelta(seconds=0.5) <= delays[0] <= timedelta(seconds=1)
    assert timedelta(seconds=8) <= delays[1] <= timedelta(seconds=16)
    assert timedelta(minutes=30) <= delays[2] <= timedelta(hours=1)
    asked = rules.next_attempt(1, NOW, NOW, retry_after=600)
    assert asked is not None and asked - NOW >= timedelta(seconds=600)
    late = NOW + timedelta(hours=23, minutes=59)
    assert rules.next_attempt(30, NOW, late) == NOW + timedelta(hours=24)  # one last try
    assert rules.next_attempt(1, NOW, NOW + timedelta(hours=24)) is None  # dead


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("120", NOW) == 120.0
    assert retry_after_seconds("Thu, 03 Dec 2026 07:05:00 GMT", NOW) == 300.0
    assert retry_after_seconds("soon", NOW) is None
    assert retry_after_seconds(None, NOW) is None


def test_secrets_are_kept_encrypted_bound_to_their_subscription(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "keys")
    sealed = box.seal("whsec_c2VjcmV0", 7)
    assert b"whsec" not in sealed
    assert box.open(sealed, 7) == "whsec_c2VjcmV0"
    assert SecretBox(tmp_path / "keys").open(sealed, 7) == "whsec_c2VjcmV0"  # a replica
    with pytest.raises(InvalidTag):
        box.open(sealed, 8)  # copied onto another subscription's row
    mode = stat.S_IMODE(os.stat(tmp_path / "keys" / KEY_FILE).st_mode)
    assert mode == 0o600
    with pytest.raises(InvalidTag):
        SecretBox(tmp_path / "other").open(sealed, 7)  # another gateway's key
