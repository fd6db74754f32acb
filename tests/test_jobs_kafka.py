"""A scheduled pull's topic output on the Kafka event store (the Tansu broker of the dev
dependencies; under CI=true a missing broker fails): the run's records are published
through the broker, pullable in the feed's order and pushed signed to a subscriber, each
under the id made from the run and the record's place — the ids a resumed run would
publish again (at least once on Kafka: docs/administrator.md "Scheduled pulls").
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.core.settings import Settings
from gateway.events.jobs import _EVENT_IDS
from tests.conftest import REPO, Harness
from tests.fault_rig import Broker
from tests.test_events import eventually
from tests.test_jobs import _ask, _auth, _declare, _feeds, _receiver, _runs, _scheduler, _subscribe


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker.running(tmp_path_factory.mktemp("tansu")) as b:
        yield b


@pytest.fixture
def settings(database_url: str, tmp_path: Path, broker: Broker) -> Settings:
    return Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        public_url="http://gateway.test",
        instance_id="test-gw",
        schemas_dir=REPO / "schemas",
        token_ttl_seconds=300,
        upstream_allowed_networks=["loopback"],
        jobs_enabled=False,
        events_poll_seconds=0.05,
        events_store="kafka",
        events_kafka_bootstrap=broker.bootstrap,
        events_kafka_prefix=f"t{uuid.uuid4().hex[:10]}",
        events_kafka_partitions=4,
        events_kafka_idempotence=False,  # Tansu has no idempotent producer
    )


@pytest.fixture
async def gateway(gateway: Harness) -> AsyncIterator[Harness]:
    await eventually(
        lambda: all(p.assigned() for p in gateway.state.event_pumps),
        "the Kafka consumers joined their groups",
    )
    yield gateway
    for pump in reversed(gateway.state.event_pumps):
        await pump.close()
    gateway.state.event_pumps = []


async def test_a_topic_run_on_kafka_publishes_each_record_under_its_run_id(
    gateway: Harness,
) -> None:
    h = gateway
    await _declare(h)
    admin = await _auth(h, "quantri")
    receiver, got = await _receiver()
    try:
        hook = await _subscribe(h, admin, receiver)
        await _ask(h, admin, "cu-tru-su-kien")
        await _scheduler(h).tick()
        (run,) = await _runs(h, "cu-tru-su-kien")
        assert (run.state, run.records) == ("succeeded", 24)

        motcua = await _auth(h, "motcua")
        r = await h.http.get("/events/v1/thay-doi-cu-tru?after=0&limit=100", headers=motcua)
        assert r.status_code == 200, r.text
        events = [i["event"] for i in r.json()["items"]]
        feed = [x["MaThayDoi"] for x in _feeds(h).residence]
        assert [e["data"]["MaThayDoi"] for e in events] == feed
        ids = {e["id"] for e in events}
        # The ids a resumed run would publish again: made from the run and the place.
        assert [e["id"] for e in events] == [
            str(uuid.uuid5(_EVENT_IDS, f"{run.run_id}:{i}")) for i in range(24)
        ]

        deadline = time.monotonic() + 30
        while len({hd["webhook-id"] for hd, _ in got}) < 24 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert {hd["webhook-id"] for hd, _ in got} == ids
        for headers, payload in got:
            hook.verify(payload, headers)
    finally:
        await receiver.close()
