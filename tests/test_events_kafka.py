"""Events on the Kafka event store (gateway/events/kafka_store.py), against the real
Tansu broker of the dev dependencies (under CI=true a missing broker fails, not skips),
with the store's bookkeeping on SQLite and PostgreSQL.

The end-to-end tests of the embedded store (tests/test_events.py) run here again, in
Kafka mode: delivered signed and audited; a subscriber down then back gets every event
in order per key; a slow or failing subscriber does not hold the others back; dead
letters after the retry window, replayed; pulling after a cursor; a right withdrawn.
Then what only Kafka mode has: two delivery consumers in one group (two replicas)
share the queue's partitions and lose nothing; an operator's "replay since" reads the
topic again from a time. The crash and broker tests: tests/test_events_kafka_crash.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.core.settings import Settings
from gateway.edge.app import delivery_rules
from gateway.events.delivery import DeliveryWorker
from gateway.events.kafka_delivery import KafkaDelivery
from gateway.events.kafka_store import KafkaEventStore
from gateway.upstream.allowlist import OutboundPolicy
from tests.conftest import REPO, Harness
from tests.fault_rig import Broker
from tests.test_events import (
    Receiver,
    auth,
    eventually,
    publish,
    subscribe,
    test_a_delivery_is_dead_after_the_retry_window_and_replayable,
    test_a_published_event_is_delivered_signed_and_audited,
    test_a_slow_or_failing_subscriber_does_not_hold_the_others_back,
    test_a_subscriber_down_for_a_while_gets_every_event_in_order_per_key,
    test_a_subscriber_that_takes_no_callbacks_pulls_after_a_cursor,
    test_a_subscriber_whose_right_is_withdrawn_is_sent_nothing_more,
    with_topic,
)

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

__all__ = [
    "test_a_delivery_is_dead_after_the_retry_window_and_replayable",
    "test_a_published_event_is_delivered_signed_and_audited",
    "test_a_slow_or_failing_subscriber_does_not_hold_the_others_back",
    "test_a_subscriber_down_for_a_while_gets_every_event_in_order_per_key",
    "test_a_subscriber_that_takes_no_callbacks_pulls_after_a_cursor",
    "test_a_subscriber_whose_right_is_withdrawn_is_sent_nothing_more",
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker.running(tmp_path_factory.mktemp("tansu")) as b:
        yield b


@pytest.fixture
def retry_window() -> float:
    return 60.0


@pytest.fixture
def settings(database_url: str, tmp_path: Path, retry_window: float, broker: Broker) -> Settings:
    return Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        public_url="http://gateway.test",
        instance_id="test-gw",
        schemas_dir=REPO / "schemas",
        token_ttl_seconds=300,
        upstream_allowed_networks=["loopback"],
        events_retry_window_seconds=retry_window,
        events_backoff_initial_seconds=0.05,
        events_backoff_max_seconds=0.3,
        events_poll_seconds=0.05,
        events_delivery_timeout_seconds=20,
        events_subscriber_concurrency=2,
        events_store="kafka",
        events_kafka_bootstrap=broker.bootstrap,
        # Topics and groups of their own: tests share the broker, not its state.
        events_kafka_prefix=f"t{uuid.uuid4().hex[:10]}",
        events_kafka_partitions=4,
        events_kafka_idempotence=False,  # Tansu has no idempotent producer
    )


@pytest.fixture
async def gateway(gateway: Harness) -> AsyncIterator[Harness]:
    """The gateway once its Kafka consumers hold their partitions (a group's first join
    takes Tansu about 5 s; a test's first event would wait that long)."""
    await eventually(
        lambda: all(p.assigned() for p in gateway.state.event_pumps),
        "the Kafka consumers joined their groups",
    )
    yield gateway


@pytest.fixture
async def receivers(gateway: Harness) -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    """As tests/test_events.py's, the Kafka consumers stopped first too."""
    made: list[Receiver] = []

    async def make() -> Receiver:
        r = Receiver()
        app = web.Application()
        app.router.add_post("/hooks/lgsp", r.handle)
        r.server = TestServer(app, host="127.0.0.1")
        await r.server.start_server()
        made.append(r)
        return r

    yield make
    for pump in reversed(gateway.state.event_pumps):
        await pump.close()
    gateway.state.event_pumps = []
    if gateway.state.delivery is not None:
        await gateway.state.delivery.close()
    for r in made:
        if r.hold is not None:
            r.hold.set()
        assert r.server is not None
        await r.server.close()


def in_order(rcv: Receiver, sent: dict[str, list[str]]) -> None:
    """Each key's events first accepted in the order published."""
    accepted = list(dict.fromkeys(rcv.accepted_ids()))
    for key, ids in sent.items():
        assert [i for i in accepted if i in ids] == ids, key


async def test_two_replicas_in_one_group_share_the_deliveries_and_lose_none(
    gateway: Harness, receivers: Callable[[], Awaitable[Receiver]], settings: Settings
) -> None:
    h = gateway
    assert isinstance(h.state.events, KafkaEventStore)
    [_fanout, first] = h.state.event_pumps
    assert isinstance(first, KafkaDelivery)
    # A second replica's delivery worker and consumer: the same store, the same group.
    worker = DeliveryWorker(
        h.state.events,
        h.state.secrets,
        OutboundPolicy.from_settings(settings),
        h.state.audit,
        lambda: h.state.pipeline.config,
        instance="test-gw-2",
        rules=delivery_rules(settings),
    )
    await worker.start()
    second = KafkaDelivery(h.state.events, worker)
    second.start()
    try:
        await with_topic(h)
        admin, publisher = await auth(h, "quantri"), await auth(h, "dancu")
        rcv = await receivers()
        await subscribe(h, admin, "motcua", rcv.url)
        await eventually(
            lambda: (
                first.assigned()
                and second.assigned()
                and len(first.assigned() | second.assigned()) == 4
            ),
            "the queue's four partitions shared by the two consumers",
        )
        keys = [f"k{n}" for n in range(12)]
        sent: dict[str, list[str]] = {k: [] for k in keys}
        for n in range(120):
            key = keys[n % len(keys)]
            sent[key].append(await publish(h, publisher, key, n))
        every = {i for ids in sent.values() for i in ids}
        await eventually(lambda: set(rcv.accepted_ids()) == every, "every event delivered")
        in_order(rcv, sent)
        # Both replicas delivered a share; together each event once (no rebalance
        # happened after the partitions were shared, so no repeat either).
        assert first.delivered > 0 and second.delivered > 0
        assert first.delivered + second.delivered == len(every)
        assert Counter(rcv.accepted_ids()).most_common(1)[0][1] == 1
    finally:
        await second.close()
        await worker.close()


async def test_replay_since_reads_the_topic_again_from_that_time(
    gateway: Harness, receivers: Callable[[], Awaitable[Receiver]]
) -> None:
    h = gateway
    await with_topic(h)
    admin, publisher = await auth(h, "quantri"), await auth(h, "dancu")
    operator = await auth(h, "vanhanh")
    rcv = await receivers()
    sub = await subscribe(h, admin, "motcua", rcv.url)
    early = [await publish(h, publisher, "k", n) for n in range(3)]
    await eventually(lambda: rcv.accepted_ids() == early, "the first three delivered")
    await asyncio.sleep(0.05)  # the broker's clock is in milliseconds
    since = datetime.now(UTC)
    late = [await publish(h, publisher, "k", n) for n in range(3, 6)]
    await eventually(lambda: rcv.accepted_ids() == early + late, "all six delivered")
    r = await h.http.post(
        f"/admin/v1/subscriptions/{sub['id']}/replay",
        json={"since": since.isoformat()},
        headers=operator,
    )
    assert r.status_code == 200 and r.json() == {"queued": 3}, r.text
    # Delivered again, in order, with their first webhook-ids; the earlier ones not.
    await eventually(lambda: rcv.accepted_ids() == early + late + late, "the three replayed")
    await asyncio.sleep(0.5)
    assert rcv.accepted_ids() == early + late + late
