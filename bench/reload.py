"""Request latency during a burst of policy reloads, against the same traffic without
reloads, in the same run.

A generated configuration of realistic shape (`--services` services and `--clients`
clients; about 60 agencies and 20 groups, each client in one or two groups, each service
granting two groups and a few clients on method + path globs, a few hundred client rate
limits that never refuse, one upstream: the simulator's `/_sim/echo`) is committed with
`commit_policy` to a fresh database: SQLite in a temporary directory by default, or the
PostgreSQL database `--database-url` names (created and dropped by the benchmark when it
does not exist yet; an existing one must hold no configuration). Then the national
simulator and `lgsp serve` run as separate processes, and `--concurrency` workers send
GETs spread over every service (so route lookups are not all one key) for `--seconds` per
phase, in two phases alternated `--rounds` times (the order flips each round, so machine
drift hits both alike):

- no reloads: the traffic only;
- reload burst: the same traffic while a committer commits a small real policy change
  every `--interval` seconds (in turn: a service's timeout, a client's name, an access
  right added or removed). Each is a new policy version, which makes the gateway rebuild
  all its tables. A commit that takes longer than the interval is followed at once by
  the next (the report gives the rate reached). The committer is a process of its own,
  started by this one, with its own SQLAlchemy engine: it runs `edit_policy` as the
  admin API does, and its CPU work would otherwise stall this process's load loop and
  show up as request latency.

In both phases a side task polls `/healthz` every 10 ms: in the burst it sees when the
gateway serves each new `config_version` (pickup latency: commit done -> version served),
and its own latency shows how long the gateway's event loop stalls. The gateway's
"configuration loaded" log lines give the reloads it made and each table build's time
(`build_ms`). Every non-200 answer (or connection error) is counted as a failure.

Before the gateway starts, the tables are also built in this process, alone on a quiet
machine, with a 1 ms ticker measuring the longest stretch the event loop is held.

    .venv/bin/python -m bench.reload [--services 1000] [--clients 5000] [--seconds 10]
                                     [--rounds 3] [--interval 0.5] [--database-url URL]
                                     [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.http_load import wait_http
from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.config.runtime import load_runtime_config
from gateway.store import changes as admin
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade_async
from gateway.store.models import PolicyVersion
from gateway.upstream.tokens import basic_authorization

REPO = Path(__file__).resolve().parent.parent

PROVINCE = "000.00.00.H49"
CALLER = "bench-caller"
CALLER_AGENCY = "000.00.31.H49"
AGENCIES = 60
GROUPS = 20
RATE_LIMITS = 300
SIM_CLIENT = "000.00.00.H49:bench-national-secret"
POLL_SECONDS = 0.010
WARMUP_SECONDS = 3.0
PICKUP_WAIT_SECONDS = 15.0
BASELINE, BURST = "no reloads", "reload burst"


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile of `values` (no interpolation); nan when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_TICKS = os.sysconf("SC_CLK_TCK")


def proc_memory(pid: int) -> str:
    """Resident memory now and at its peak, from /proc."""
    values = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) // 1024
    return f"{values.get('VmRSS', '?')} MB resident, peak {values.get('VmHWM', '?')} MB"


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


# -- the configuration --------------------------------------------------------------------------


def generate_policy(services: int, clients: int, sim_url: str, seed: int = 7) -> PolicySet:
    """A province of `services` services and `clients` client systems, plus the caller."""
    rng = random.Random(seed)  # noqa: S311 (load shape, not secrets)
    agencies = [{"code": PROVINCE, "name": "UBND tỉnh", "doc_code": PROVINCE}]
    agencies += [
        {"code": f"000.00.{i:02d}.H49", "name": f"Sở/ngành {i:02d}"} for i in range(1, AGENCIES)
    ]
    agency_codes = [a["code"] for a in agencies]
    groups = [{"code": f"nhom-{g:02d}", "name": f"Nhóm hệ thống {g:02d}"} for g in range(GROUPS)]
    group_codes = [g["code"] for g in groups]
    client_docs: list[dict[str, Any]] = [
        {
            "code": f"ht-{c:05d}",
            "agency": rng.choice(agency_codes),
            "name": f"Hệ thống nghiệp vụ {c:05d}",
            "groups": rng.sample(group_codes, rng.choice((1, 1, 2))),
        }
        for c in range(clients)
    ]
    client_docs.append({"code": CALLER, "agency": CALLER_AGENCY, "name": "Benchmark caller"})
    client_codes = [c["code"] for c in client_docs[:-1]]
    globs = [
        ("*", "/**"),
        ("GET", "/**"),
        ("POST", "/ho-so/*"),
        ("GET", "/ho-so/*/trang-thai"),
        ("POST", "/tra-cuu"),
        ("*", "/danh-muc/**"),
        ("GET", "/items/*"),
    ]
    service_docs = []
    for i in range(services):
        access: list[dict[str, str]] = [
            {"group": g, "method": m, "path": p}
            for g, (m, p) in zip(rng.sample(group_codes, 2), rng.sample(globs, 2), strict=True)
        ]
        access += [
            {"client": c, "method": m, "path": p}
            for c, (m, p) in zip(rng.sample(client_codes, 3), rng.choices(globs, k=3), strict=True)
        ]
        access.append({"client": CALLER, "method": "GET", "path": "/items/*"})
        service_docs.append(
            {
                "provider": rng.choice(agency_codes),
                "code": f"dv-{i:04d}",
                "version": "v1",
                "name": f"Dịch vụ {i:04d}",
                "upstream": "sim",
                "upstream_path": "/_sim/echo",
                "access": access,
            }
        )
    limited = [CALLER, *rng.sample(client_codes, min(RATE_LIMITS - 1, len(client_codes)))]
    rate_limits = [{"client": c, "rate": {"requests": 100_000, "per": "second"}} for c in limited]
    return PolicySet.model_validate(
        {
            "agencies": agencies,
            "groups": groups,
            "clients": client_docs,
            "upstreams": [{"name": "sim", "base_url": sim_url}],
            "services": service_docs,
            "rate_limits": rate_limits,
        }
    )


def service_paths(policy: PolicySet) -> list[str]:
    return [f"/r1/{s.provider}/{s.code}/{s.version}" for s in policy.services]


# -- the committer (a process of its own) -------------------------------------------------------


class Edits:
    """Small real changes, in turn: a service's timeout, a client's name, an access right
    added, ... removed. Each is one entity changed, so one new policy version."""

    EXTRA_PATH = "/bench-extra/**"

    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (load shape, not secrets)
        self.n = 0
        self.added: tuple[str, str] | None = None  # (service code, client code)

    def next(self) -> tuple[str, Any]:
        kind = ("timeout", "client name", "right")[self.n % 3]
        self.n += 1
        n, rng = self.n, self.rng

        def edit(doc: dict[str, Any]) -> None:
            if kind == "timeout":
                svc = rng.choice(doc["services"])
                total = svc["timeouts"]["total_ms"]
                svc["timeouts"]["total_ms"] = total + 1 if total < 600_000 else 10_000
            elif kind == "client name":
                client = rng.choice([c for c in doc["clients"] if c["code"] != CALLER])
                client["name"] = f"{client['name'].split(' (', 1)[0]} (sửa {n})"
            elif self.added is None:
                svc = rng.choice(doc["services"])
                client = rng.choice(doc["clients"])["code"]
                svc["access"].append({"client": client, "method": "GET", "path": self.EXTRA_PATH})
                self.added = (svc["code"], client)
            else:
                code, client = self.added
                svc = next(s for s in doc["services"] if s["code"] == code)
                svc["access"] = [
                    r
                    for r in svc["access"]
                    if not (r.get("client") == client and r.get("path") == self.EXTRA_PATH)
                ]
                self.added = None

        return (f"right {'removed' if self.added else 'added'}" if kind == "right" else kind), edit


async def commit_edit(sessions: Any, edits: Edits) -> tuple[int, str]:
    """Commit the next edit as the admin API does; the configuration version it made."""
    kind, edit = edits.next()
    async with sessions() as session, session.begin():
        commit = await policy_state.edit_policy(
            session, edit, actor="bench", source="bench", comment=f"reload bench: {kind}"
        )
        if commit.version is None:
            raise RuntimeError(f"edit {kind!r} changed nothing")
        version = await admin.config_version(session)
    return version, kind


async def _committer(url: str, conn: Connection) -> None:
    engine = create_engine(url)
    sessions = session_factory(engine)
    edits = Edits()
    try:
        while True:
            order = await asyncio.to_thread(conn.recv)
            if order[0] == "stop":
                return
            _, seconds, interval = order
            done: list[tuple[int, str, float, float]] = []  # version, kind, start, end
            start = time.monotonic()
            due = start
            while due < start + seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                t0 = time.monotonic()
                version, kind = await commit_edit(sessions, edits)
                done.append((version, kind, t0, time.monotonic()))
                # Every `interval`; when a commit took longer, the next starts at once.
                due = max(due + interval, time.monotonic())
            conn.send(done)
    finally:
        await engine.dispose()


def committer_main(url: str, conn: Connection) -> None:
    asyncio.run(_committer(url, conn))


# -- traffic and observation ------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    round: int
    seconds: float = 0.0  # of traffic
    span: float = 0.0  # the whole phase: traffic, then waiting for the last pickup
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    polls: list[tuple[float, int, float]] = field(default_factory=list)  # at, version, latency
    commits: list[tuple[int, str, float, float]] = field(default_factory=list)
    reloads: list[dict[str, Any]] = field(default_factory=list)  # the gateway's log lines
    pickups: list[float] = field(default_factory=list)
    missed: int = 0  # commits whose version /healthz never showed
    cpu: dict[str, float] = field(default_factory=dict)


async def traffic(
    session: aiohttp.ClientSession,
    base: str,
    paths: list[str],
    token: str,
    seconds: float,
    concurrency: int,
    phase: Phase,
    seed: int,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        rng = random.Random(seed * 1000 + k)  # noqa: S311
        while time.perf_counter() < deadline:
            url = f"{base}{rng.choice(paths)}/items/{rng.randrange(100_000)}"
            t = time.perf_counter()
            try:
                async with session.get(url, headers=headers) as r:
                    await r.read()
                    status = str(r.status)
            except (aiohttp.ClientError, TimeoutError) as e:
                status = type(e).__name__
            phase.latencies.append(time.perf_counter() - t)
            if status != "200":
                phase.failures[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    phase.seconds = time.perf_counter() - started


async def poll_health(base: str, phase: Phase, stop: asyncio.Event) -> None:
    """/healthz every 10 ms: (when answered, config_version, latency)."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            t = time.monotonic()
            try:
                async with session.get(f"{base}/healthz") as r:
                    version = int((await r.json())["config_version"])
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
                version = -1
            now = time.monotonic()
            phase.polls.append((now, version, now - t))
            await asyncio.sleep(POLL_SECONDS)


def served_version(phase: Phase) -> int:
    return max((v for _, v, _ in phase.polls), default=-1)


def reload_lines(log: Path, start: int, end: int) -> list[dict[str, Any]]:
    with log.open("rb") as f:
        f.seek(start)
        chunk = f.read(end - start)
    out = []
    for line in chunk.splitlines():
        with contextlib.suppress(ValueError):
            entry = orjson.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "configuration loaded":
                out.append(entry)
    return out


def match_pickups(phase: Phase) -> None:
    for version, _kind, _t0, t1 in phase.commits:
        seen = next((at for at, v, _ in phase.polls if v >= version), None)
        if seen is None:
            phase.missed += 1
        else:
            phase.pickups.append(max(0.0, seen - t1))


# -- the table build alone --------------------------------------------------------------------


async def build_alone(url: str, times: int = 3) -> list[tuple[float, float]]:
    """(wall s, longest event-loop stall s) of `load_runtime_config`, in this process."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    out = []
    try:
        await load_runtime_config(sessions)  # warm: connections, compiled rules
        for _ in range(times):
            gaps: list[float] = []
            done = asyncio.Event()

            async def ticker(gaps: list[float] = gaps, done: asyncio.Event = done) -> None:
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            tick = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            t = time.perf_counter()
            await load_runtime_config(sessions)
            wall = time.perf_counter() - t
            done.set()
            await tick
            out.append((wall, max(gaps, default=0.0)))
    finally:
        await engine.dispose()
    return out


# -- the database ---------------------------------------------------------------------------


class Database:
    """SQLite in the temporary directory, or the PostgreSQL database of `--database-url`
    (created here, and then dropped at the end, when it does not exist)."""

    def __init__(self, url: str | None, work: Path) -> None:
        self.url = url or f"sqlite+aiosqlite:///{work / 'lgsp.db'}"
        parsed = make_url(self.url)
        self.postgres = parsed.get_backend_name() == "postgresql"
        self.name = parsed.database or ""
        self.admin_dsn = (
            parsed.set(drivername="postgresql", database="postgres").render_as_string(
                hide_password=False
            )
            if self.postgres
            else ""
        )
        self.created = False
        self.describe = "SQLite (file in the temp dir, WAL, synchronous=FULL)"

    async def prepare(self) -> None:
        if self.postgres:
            conn = await asyncpg.connect(self.admin_dsn, timeout=10)
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", self.name
                )
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{self.name}"')
                    self.created = True
                version = await conn.fetchval("SHOW server_version")
            finally:
                await conn.close()
            where = make_url(self.url).render_as_string(hide_password=True)
            made = "created for this run" if self.created else "existing"
            self.describe = f"PostgreSQL {version.split()[0]} ({where}, {made})"
        await upgrade_async(self.url)
        engine = create_engine(self.url)
        try:
            async with session_factory(engine)() as s:
                versions = await s.scalar(select(func.count()).select_from(PolicyVersion))
        finally:
            await engine.dispose()
        if versions:
            raise SystemExit(
                f"{self.url} already holds a configuration ({versions} policy versions); "
                "name a database that does not exist: the benchmark creates and drops it"
            )

    async def drop(self) -> None:
        if not self.created:
            return
        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


# -- the run --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, db: Database) -> None:
        self.args = args
        self.work = work
        self.db = db
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.committer: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.gateway_log = work / "gateway.log"
        self.facts: dict[str, Any] = {}

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "LGSP_DATABASE_URL": self.db.url,
                "LGSP_PORT": str(port),
                "LGSP_KEYS_DIR": str(self.work / "keys"),
                "LGSP_SCHEMAS_DIR": "",
                # The simulator on 127.0.0.1: loopback upstreams are refused by default.
                "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',
                "LGSP_AUDIT_SPOOL_DIR": str(self.work / "spool"),
                "LGSP_INSTANCE_ID": "bench-reload",
                "LGSP_TOKEN_TTL_SECONDS": "3600",
                "LGSP_LOG_LEVEL": "INFO",  # "configuration loaded" lines, with build_ms
            }
        )
        return env

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with (self.work / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                argv, env=env, cwd=self.work, stdout=log, stderr=log
            )

    def check(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            tail = (self.work / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop_all(self) -> None:
        if self.conn is not None and self.committer is not None and self.committer.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(("stop",))
            self.committer.join(10)
            if self.committer.is_alive():
                self.committer.terminate()
                self.committer.join(5)
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def cpu(self) -> dict[str, float]:
        out = {"load gen": time.process_time()}
        for name, proc in self.procs.items():
            out[name] = proc_cpu(proc.pid)
        if self.committer is not None and self.committer.pid is not None:
            out["committer"] = proc_cpu(self.committer.pid)
        return out

    async def setup(self) -> tuple[str, str, list[str]]:
        """Database, configuration, processes; (gateway URL, token, service paths)."""
        args = self.args
        progress(f"database: {self.db.url}")
        await self.db.prepare()
        sim_port, port = free_port(), free_port()
        policy = generate_policy(args.services, args.clients, f"http://127.0.0.1:{sim_port}")
        self.facts["policy"] = policy
        engine = create_engine(self.db.url)
        sessions = session_factory(engine)
        try:
            progress(
                f"committing the initial policy: {len(policy.services)} services, "
                f"{len(policy.clients)} clients"
            )
            t = time.perf_counter()
            async with sessions() as s, s.begin():
                commit = await policy_state.commit_policy(
                    s, policy, actor="bench", source="bench", comment="reload bench: initial"
                )
            self.facts["initial_commit"] = (time.perf_counter() - t, len(commit.changes))
            async with sessions() as s, s.begin():
                secret = await credential_ops.issue(
                    s, client_code=CALLER, kind="secret", actor="bench"
                )
            # One edit, timed alone on a quiet machine (the committer repeats it later).
            t = time.perf_counter()
            await commit_edit(sessions, Edits(seed=3))
            self.facts["edit_alone"] = time.perf_counter() - t
        finally:
            await engine.dispose()
        progress("building the tables in this process, alone")
        self.facts["build_alone"] = await build_alone(self.db.url)

        progress("starting the simulator, the gateway and the committer")
        sim = [sys.executable, "-m", "simulator", "--port", str(sim_port), "--client", SIM_CLIENT]
        self.start("simulator", sim, self.env(port))
        serve = [sys.executable, "-m", "gateway", "serve", "--no-migrate"]
        self.start("gateway", serve, self.env(port))
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.committer = ctx.Process(
            target=committer_main, args=(self.db.url, child), name="committer", daemon=True
        )
        self.committer.start()
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"http://127.0.0.1:{sim_port}/healthz", 30, lambda: self.check("simulator"))
        await wait_http(f"{base}/healthz", 60, lambda: self.check("gateway"))
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{base}/oauth2/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": basic_authorization(CALLER, secret)},
            ) as r:
                if r.status != 200:
                    raise RuntimeError(f"token: HTTP {r.status}: {await r.text()}")
                token = (await r.json())["access_token"]
        return base, token, service_paths(policy)

    async def phase(
        self,
        session: aiohttp.ClientSession,
        base: str,
        token: str,
        paths: list[str],
        phase: Phase,
        *,
        reloads: bool,
        seconds: float,
    ) -> None:
        assert self.conn is not None
        log_start = self.gateway_log.stat().st_size
        began = time.perf_counter()
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_health(base, phase, stop))
        await asyncio.sleep(0.05)
        cpu = self.cpu()
        if reloads:
            self.conn.send(("burst", seconds, self.args.interval))
        await traffic(
            session,
            base,
            paths,
            token,
            seconds,
            self.args.concurrency,
            phase,
            seed=phase.round * 2 + reloads,
        )
        phase.cpu = {k: v - cpu.get(k, 0.0) for k, v in self.cpu().items()}
        if reloads:
            phase.commits = await asyncio.to_thread(self.conn.recv)
            last = max(v for v, *_ in phase.commits)
            deadline = time.monotonic() + PICKUP_WAIT_SECONDS
            while served_version(phase) < last and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECONDS)
        await asyncio.sleep(0.05)  # the last build's log line
        stop.set()
        await poller
        phase.span = time.perf_counter() - began
        phase.reloads = reload_lines(self.gateway_log, log_start, self.gateway_log.stat().st_size)
        match_pickups(phase)

    async def run(self) -> list[Phase]:
        base, token, paths = await self.setup()
        args = self.args
        phases: list[Phase] = []
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            progress(f"warm-up: {WARMUP_SECONDS:.0f} s of traffic with reloads")
            await self.phase(
                session,
                base,
                token,
                paths,
                Phase("warm-up", -1),
                reloads=True,
                seconds=WARMUP_SECONDS,
            )
            for r in range(args.rounds):
                order = [(BASELINE, False), (BURST, True)]
                for name, reloads in order if r % 2 == 0 else order[::-1]:
                    progress(f"round {r + 1}/{args.rounds}: {name}, {args.seconds:.0f} s")
                    phase = Phase(name, r)
                    await self.phase(
                        session, base, token, paths, phase, reloads=reloads, seconds=args.seconds
                    )
                    self.check("gateway")
                    phases.append(phase)
        self.facts["gateway_memory"] = proc_memory(self.procs["gateway"].pid)
        self.facts["load_after"] = os.getloadavg()
        return phases


# -- the report -------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def header(args: argparse.Namespace, bench: Bench) -> None:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    policy: PolicySet = bench.facts["policy"]
    rights = sum(len(s.access) for s in policy.services)
    print(f"\n$ {shlex.join(sys.orig_argv)}")
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    before, after = bench.facts["load_before"][0], bench.facts["load_after"][0]
    print(
        f"load average (1 min) before the run {before:.2f}, after the phases {after:.2f} "
        "(anything else running on this machine shows here)"
    )
    print(f"database: {bench.db.describe}")
    print(
        f"configuration: {len(policy.services)} services, {len(policy.clients)} clients "
        f"({args.clients} + the caller), {len(policy.agencies)} agencies, "
        f"{len(policy.groups)} groups, {rights} access rights, "
        f"{len(policy.rate_limits)} rate limits, 1 upstream (the simulator's /_sim/echo)"
    )
    print(
        f"traffic: GET /r1/<provider>/dv-NNNN/v1/items/<n> over all {len(policy.services)} "
        f"services, {args.concurrency} workers, {args.seconds:g} s per phase, "
        f"{args.rounds} rounds (order flips each round); reloads: a commit every "
        f"{args.interval:g} s"
    )
    took, changes = bench.facts["initial_commit"]
    print(f"initial commit_policy: {took:.1f} s ({changes} changes, one version)")
    print(
        f"one edit_policy commit, alone: {ms(bench.facts['edit_alone'])} ms; "
        "table build (load_runtime_config) alone, in this process, 3 times: "
        + ", ".join(f"{ms(w)}" for w, _ in bench.facts["build_alone"])
        + " ms wall, longest event-loop stall "
        + ", ".join(f"{ms(s)}" for _, s in bench.facts["build_alone"])
        + " ms"
    )


def report(args: argparse.Namespace, bench: Bench, phases: list[Phase]) -> None:
    header(args, bench)
    by_name = {n: [p for p in phases if p.name == n] for n in (BASELINE, BURST)}
    print()
    head = (
        f"{'phase':14} {'requests':>8} {'failed':>6} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'p99.9':>7} {'max ms':>7} {'healthz p99':>11} {'healthz max':>11}"
    )
    print(head)
    print("-" * len(head))
    for name, group in by_name.items():
        lat = [x for p in group for x in p.latencies]
        polls = [x for p in group for _, _, x in p.polls]
        failed = sum(sum(p.failures.values()) for p in group)
        seconds = sum(p.seconds for p in group)
        print(
            f"{name:14} {len(lat):8d} {failed:6d} {len(lat) / seconds:6.0f} "
            f"{ms(pct(lat, 0.5)):>7} {ms(pct(lat, 0.99)):>7} {ms(pct(lat, 0.999)):>7} "
            f"{ms(max(lat)):>7} {ms(pct(polls, 0.99)):>11} {ms(max(polls)):>11}"
        )
    failures = Counter[str]()
    for p in phases:
        failures.update({f"{p.name}: {k}": v for k, v in p.failures.items()})
    if failures:
        print("failures: " + ", ".join(f"{k} x{v}" for k, v in sorted(failures.items())))

    print("\nper round (p50 / p99 / max ms):")
    for r in range(args.rounds):
        cells = []
        for name in (BASELINE, BURST):
            p = next(p for p in phases if p.round == r and p.name == name)
            cells.append(
                f"{name} {ms(pct(p.latencies, 0.5))} / {ms(pct(p.latencies, 0.99))} / "
                f"{ms(max(p.latencies))}"
            )
        print(f"  round {r + 1}: " + "; ".join(cells))

    burst = by_name[BURST]
    commits = [c for p in burst for c in p.commits]
    commit_s = [t1 - t0 for _, _, t0, t1 in commits]
    reloads = [e for p in burst for e in p.reloads]
    builds = [float(e["build_ms"]) / 1000 for e in reloads]
    pickups = [x for p in burst for x in p.pickups]
    missed = sum(p.missed for p in burst)
    seconds = sum(p.seconds for p in burst)
    spans = sum(p.span for p in burst)
    base_reloads = sum(len(p.reloads) for p in by_name[BASELINE])
    kinds = Counter(kind for _, kind, _, _ in commits)
    print(f"\nreload burst, {len(burst)} phases together:")
    print(
        f"  commits {len(commits)} ({len(commits) / seconds:.2f}/s; "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + f"), each in the committer: median {ms(statistics.median(commit_s))} ms, "
        f"max {ms(max(commit_s))} ms"
    )
    print(
        f'  gateway reloads ("configuration loaded" lines) {len(reloads)}; '
        f"in the no-reload phases {base_reloads}"
    )
    if builds:
        print(
            f"  table build (build_ms): median {ms(statistics.median(builds))} ms, "
            f"p90 {ms(pct(builds, 0.9))} ms, max {ms(max(builds))} ms; "
            f"the gateway was building {sum(builds) / spans:.0%} of the time "
            "(from each phase's start until it served the last commit)"
        )
    if pickups:
        print(
            f"  pickup (commit done -> /healthz shows the version; 10 ms polling): "
            f"median {ms(statistics.median(pickups))} ms, p90 {ms(pct(pickups, 0.9))} ms, "
            f"max {ms(max(pickups))} ms" + (f"; {missed} versions never seen" if missed else "")
        )

    print(f"  gateway memory after the phases: {bench.facts['gateway_memory']}")

    print("\nCPU used, in cores (CPU seconds / wall seconds), by process:")
    names = ["gateway", "simulator", "load gen", "committer"]
    head = f"{'phase':14} " + " ".join(f"{n:>9}" for n in names) + f" {'total':>7} {'of':>4}"
    print(head)
    print("-" * len(head))
    cores = os.cpu_count() or 1
    for name, group in by_name.items():
        seconds = sum(p.seconds for p in group)
        used = {n: sum(p.cpu.get(n, 0.0) for p in group) / seconds for n in names}
        print(
            f"{name:14} "
            + " ".join(f"{used[n]:9.2f}" for n in names)
            + f" {sum(used.values()):7.2f} {cores:4d}"
        )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10.0, help="per phase")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between commits")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument(
        "--database-url",
        help="postgresql+asyncpg://user@host:port/NAME (default: SQLite in a temp dir)",
    )
    args = ap.parse_args()

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-reload-"))
    db = Database(args.database_url, work)
    bench = Bench(args, work, db)
    bench.facts["load_before"] = os.getloadavg()
    try:
        phases = await bench.run()
    finally:
        bench.stop_all()
        await db.drop()
        shutil.rmtree(work, ignore_errors=True)
    report(args, bench, phases)
    print(f"\n(whole run: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
