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

    .venv/bin/python -m bench.events [--events 5000]
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
from gateway.events.model import Publication
from gateway.events.secrets import SecretBox, hint, new_secret
from gateway.events.store import SqlEventStore
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
    store = SqlEventStore(sessions)
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
    return engine, store, worker, audit, fast, slow


def event(n: int) -> Publication:
    return Publication(type="bench", key=f"k{n % 64}", data={"n": n, "pad": "x" * 200})


async def throughput(n: int, stuck: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        engine, store, worker, audit, fast, _ = await setup(Path(d), stuck)
        for i in range(n):
            await store.publish("t", "pub", event(i), lambda c: True)
        t0 = time.perf_counter()
        await worker.start()
        while len(fast.got) < n:
            await asyncio.sleep(0.01)
        rate = n / (max(fast.got.values()) - t0)
        await worker.close()
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
        await worker.start()
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
        await worker.close()
        await audit.close()
        await engine.dispose()
        q = statistics.quantiles(fast.latency, n=100)
        return q[49], q[98]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    n = args.events
    base = await baseline(n, 64)
    alone = await throughput(n, stuck=False)
    beside = await throughput(n, stuck=True)
    p50, p99 = await latency(min(n, 2000), alone / 2)
    where = "PostgreSQL" if DATABASE_URL.startswith("postgresql") else "SQLite"
    print(f"events: {n}, one worker, {where} store, signing and auditing every attempt")
    print("| measure | value |")
    print("|---|---|")
    print(f"| baseline: unsigned POSTs, bare aiohttp, 64 at once | {base:,.0f} /s |")
    print(f"| delivery throughput, one worker | {alone:,.0f} events/s |")
    print(f"| the same beside one stuck subscriber | {beside:,.0f} events/s |")
    at = f"{alone / 2:,.0f}/s"
    print(f"| publish-to-delivery latency at {at} | p50 {p50:.1f} ms, p99 {p99:.1f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
