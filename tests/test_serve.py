"""`lgsp serve --workers N` and graceful drain, with the gateway as real processes.

- Two workers share the port, the store and the token signing key; each keeps its own
  audit chain under its own instance id, and /metrics sums them both.
- SIGTERM under load: callers that stop sending when /readyz says so (as a load balancer
  does) get an answer to every request they sent, exchanges in flight finish, and every
  answered exchange reaches the audit store through spool and broker exactly once.
- An exchange still running past the drain timeout is cancelled, and audited as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from gateway.admin import credentials as credential_ops
from gateway.audit.indexer import Indexer
from gateway.audit.kafka import KafkaSettings
from gateway.audit.store import AuditStore
from gateway.audit.verify import VerificationReport, verify_store
from gateway.config import versions as policy_state
from gateway.config.policy import ServiceSpec
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditRecord
from simulator.app import create_app as create_simulator
from tests.conftest import (
    ECHO,
    ONE_PER_EXCHANGE,
    PROVINCE_ID,
    PROVINCE_SECRET,
    REPO,
    SECRET_ENV,
    free_port,
)
from tests.conftest import test_policy as policy_for
from tests.test_audit_kafka import Broker, broker

__all__ = ["broker"]  # the fixture, shared with the audit tests

SLEEPY = f"/r1/{PROVINCE_ID}/sleepy/v1"
BASE_INSTANCE = "gw-serve"


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    database_url: str
    token: str = ""
    answered: dict[str, int] = field(default_factory=dict)  # request id -> status

    def wait_ready(self, seconds: float = 40) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"the gateway did not become ready; see {self.log}:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the gateway did not stop on SIGTERM; see {self.log}:\n{self.tail()}")

    async def stored(self) -> Counter[str]:
        engine = create_engine(self.database_url)
        try:
            async with session_factory(engine)() as s:
                query = select(AuditRecord.request_id).where(ONE_PER_EXCHANGE)
                ids = (await s.scalars(query)).all()
        finally:
            await engine.dispose()
        return Counter(ids)

    async def instances(self) -> set[str]:
        engine = create_engine(self.database_url)
        try:
            async with session_factory(engine)() as s:
                return set((await s.scalars(select(AuditRecord.instance).distinct())).all())
        finally:
            await engine.dispose()


@contextlib.asynccontextmanager
async def serve(
    database_url: str, tmp_path: Path, workers: int, **settings: str
) -> AsyncIterator[Served]:
    """The test policy plus a service whose answers take as long as the caller asks, and
    `lgsp serve --workers N` on it; yields once every worker would answer."""
    simulator = TestServer(create_simulator({PROVINCE_ID: PROVINCE_SECRET}), host="127.0.0.1")
    await simulator.start_server()
    sim_url = str(simulator.make_url("")).rstrip("/")
    policy = policy_for(sim_url, "http://127.0.0.1:9")
    policy.services.append(
        ServiceSpec.model_validate(
            {
                "provider": PROVINCE_ID,
                "code": "sleepy",
                "version": "v1",
                "name": "Answers after /{ms}",
                "upstream": "sim-open",
                "upstream_path": "/_sim/delay",
                "timeouts": {"connect_ms": 1000, "total_ms": 20_000},
                "access": [{"client": "motcua"}],
            }
        )
    )
    engine = create_engine(database_url)
    await load_bundled(session_factory(engine), REPO / "schemas")
    async with session_factory(engine)() as s, s.begin():
        await policy_state.apply_policy(s, policy, actor="test")
        secret = await credential_ops.issue(s, client_code="motcua", kind="secret", actor="t")
    await engine.dispose()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LGSP_")},
        "LGSP_DATABASE_URL": database_url,
        "LGSP_PORT": str(port),
        "LGSP_KEYS_DIR": str(tmp_path / "keys"),
        "LGSP_INSTANCE_ID": BASE_INSTANCE,
        "LGSP_SCHEMAS_DIR": "",
        "LGSP_AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',  # the simulator on 127.0.0.1
        "PYTHONPATH": str(REPO),
        SECRET_ENV: PROVINCE_SECRET,
        **{f"LGSP_{k.upper()}": v for k, v in settings.items()},
    }
    log = tmp_path / "gateway.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--no-migrate", "--workers", str(workers)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=out,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", log, database_url)
    try:
        await asyncio.to_thread(served.wait_ready)
        async with httpx.AsyncClient(base_url=served.url) as http:
            r = await http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("motcua", secret),
            )
            assert r.status_code == 200, r.text
            served.token = r.json()["access_token"]
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await simulator.close()


async def _verify(database_url: str) -> VerificationReport:
    engine = create_engine(database_url)
    try:
        return await verify_store(session_factory(engine))
    finally:
        await engine.dispose()


def _fresh_connections() -> httpx.AsyncClient:
    # A new connection per request: the kernel picks a worker for each.
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)


def _echo_count(metrics: str) -> float:
    """The count of answered echo exchanges in a Prometheus scrape (0 before the first)."""
    for line in metrics.splitlines():
        if (
            line.startswith("lgsp_exchange_duration_seconds_count{")
            and 'service="000.00.00.H49/echo/v1"' in line
            and 'outcome="ok"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.dialects("postgresql")
async def test_two_workers_share_the_port_each_with_its_own_audit_chain(
    database_url: str, tmp_path: Path
) -> None:
    async with serve(database_url, tmp_path, workers=2) as gw:
        auth = {"Authorization": f"Bearer {gw.token}"}
        async with _fresh_connections() as http:
            seen = set()
            for _ in range(40):
                # A token issued by one worker is good at the other: one signing key.
                r = await http.get(f"{gw.url}{ECHO}/x", headers=auth)
                assert r.status_code == 200, r.text
                seen.add(r.headers["X-Request-Id"])
                health = (await http.get(f"{gw.url}/healthz")).json()
                assert health["instance"] in {f"{BASE_INSTANCE}-1", f"{BASE_INSTANCE}-2"}
            # Each worker hands its counts to the shared files once a second.
            deadline = time.monotonic() + 10
            while True:
                metrics = (await http.get(f"{gw.url}/metrics")).text
                if _echo_count(metrics) == 40 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        assert gw.stop() == 0, gw.tail()

    # Both workers served, each under its own instance id, each chain whole.
    assert await gw.instances() == {f"{BASE_INSTANCE}-1", f"{BASE_INSTANCE}-2"}
    stored = await gw.stored()
    assert all(stored[r] == 1 for r in seen)
    report = await _verify(database_url)
    assert report.ok, report.as_dict()
    assert len(report.instances) == 2
    # Whichever worker answered the scrape, it counted both workers' exchanges.
    assert _echo_count(metrics) == 40, metrics
    # Each worker's own process series, labelled with its instance (prometheus_client
    # cannot merge process metrics across processes).
    for n in (1, 2):
        assert f'process_resident_memory_bytes{{instance="{BASE_INSTANCE}-{n}"}}' in metrics
        assert f'process_cpu_seconds_total{{instance="{BASE_INSTANCE}-{n}"}}' in metrics


@pytest.mark.dialects("postgresql")
async def test_sigterm_under_load_loses_no_request_and_no_audit_event(
    database_url: str, tmp_path: Path, broker: Broker
) -> None:
    topic = "lgsp.audit.drain"
    async with serve(
        database_url,
        tmp_path,
        workers=2,
        audit_kafka_bootstrap=broker.bootstrap,
        audit_kafka_topic=topic,
        audit_kafka_partitions="2",
        audit_kafka_idempotence="false",
        drain_delay_seconds="0.5",
        drain_timeout_seconds="20",
    ) as gw:
        auth = {"Authorization": f"Bearer {gw.token}"}
        draining = asyncio.Event()
        sigterm_at: list[float] = []
        finished_after_sigterm: list[str] = []
        failures: list[str] = []

        async def caller(http: httpx.AsyncClient) -> None:
            # Each exchange takes 1.5 s upstream, longer than the drain delay: those in
            # flight when the listener closes must still be finished.
            while not draining.is_set():
                try:
                    r = await http.post(f"{gw.url}{SLEEPY}/1500", headers=auth, content=b"{}")
                except httpx.HTTPError as e:
                    failures.append(f"{type(e).__name__}: {e}")
                    continue
                gw.answered[r.headers["X-Request-Id"]] = r.status_code
                if sigterm_at and time.monotonic() > sigterm_at[0]:
                    finished_after_sigterm.append(r.headers["X-Request-Id"])

        async def load_balancer(http: httpx.AsyncClient) -> None:
            # Takes the instance out of rotation once /readyz says it is stopping.
            while True:
                try:
                    r = await http.get(f"{gw.url}/readyz", timeout=1)
                    if r.status_code == 503 and r.json().get("type", "").endswith("not-ready"):
                        draining.set()
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)

        async with _fresh_connections() as http:
            load = [asyncio.create_task(caller(http)) for _ in range(12)]
            await asyncio.sleep(2.5)
            sigterm_at.append(time.monotonic())
            gw.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(load_balancer(http), 10)
            await asyncio.wait_for(asyncio.gather(*load), 30)
        code = await asyncio.to_thread(gw.proc.wait, 60)
        assert code == 0, gw.tail()

    assert not failures, failures[:5]
    assert len(gw.answered) >= 24
    assert set(gw.answered.values()) == {200}, Counter(gw.answered.values())
    # The exchanges in flight when SIGTERM came were finished, not cut off.
    assert len(finished_after_sigterm) >= 12

    # Every answered exchange went through a worker's spool to the broker (flushed at
    # stop): an indexer now takes all of it into the store, exactly once.
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    indexer = Indexer(
        AuditStore(sessions, source="indexer"),
        KafkaSettings(bootstrap=broker.bootstrap, topic=topic, partitions=2, idempotence=False),
        group="test-drain-indexer",
    )
    task = asyncio.create_task(indexer.run())
    try:
        deadline = time.monotonic() + 60
        while True:
            stored = await gw.stored()
            if all(stored[r] for r in gw.answered) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        report = await verify_store(sessions)
    finally:
        indexer.stop()
        await asyncio.wait([task], timeout=10)
        await engine.dispose()
    missing = [r for r in gw.answered if not stored[r]]
    assert not missing, f"{len(missing)} answered exchanges were not audited"
    assert not [r for r, n in stored.items() if n > 1]
    assert report.ok, report.as_dict()
    assert {i.instance for i in report.instances} == {f"{BASE_INSTANCE}-1", f"{BASE_INSTANCE}-2"}
    # Nobody was cut off: no exchange was cancelled by the shutdown.
    async with session_factory(create_engine(database_url))() as s:
        cancelled = (
            await s.scalars(
                select(AuditRecord.request_id).where(AuditRecord.error_type == "exchange-cancelled")
            )
        ).all()
    assert not cancelled


@pytest.mark.dialects("sqlite")
async def test_exchange_past_the_drain_timeout_is_cancelled_and_audited(
    database_url: str, tmp_path: Path
) -> None:
    async with serve(database_url, tmp_path, workers=1, drain_timeout_seconds="1") as gw:
        auth = {"Authorization": f"Bearer {gw.token}", "X-Request-Id": "slow-at-shutdown"}
        async with httpx.AsyncClient(timeout=30) as http:
            slow = asyncio.create_task(http.post(f"{gw.url}{SLEEPY}/8000", headers=auth))
            await asyncio.sleep(0.5)
            started = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            with pytest.raises(httpx.HTTPError):
                await slow  # the caller is cut off: the connection closes unanswered
            code = await asyncio.to_thread(gw.proc.wait, 30)
        assert code == 0, gw.tail()
        # Stopped after the drain timeout, not after the 8 s the exchange wanted.
        assert time.monotonic() - started < 6

    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as s:
            intent, record = (
                await s.scalars(
                    select(AuditRecord)
                    .where(AuditRecord.request_id == "slow-at-shutdown")
                    .order_by(AuditRecord.seq)
                )
            ).all()
    finally:
        await engine.dispose()
    # The provider was asked (the intent), and the exchange ended cancelled (its outcome).
    assert (intent.phase, record.phase, record.intent_id) == ("intent", "outcome", intent.event_id)
    assert record.error_type == "exchange-cancelled"
    assert record.client_code == "motcua"
    assert record.service_code == "sleepy"


def _workers(parent: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{parent}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return children


@pytest.mark.dialects("sqlite")
async def test_a_worker_that_dies_is_replaced_under_the_same_instance(
    database_url: str, tmp_path: Path
) -> None:
    async with serve(database_url, tmp_path, workers=2) as gw:
        # Both workers listening (one that dies before it ever listened stops the gateway:
        # that is a configuration error, not a crash).
        seen: set[str] = set()
        async with _fresh_connections() as http:
            deadline = time.monotonic() + 30
            while len(seen) < 2 and time.monotonic() < deadline:
                seen.add((await http.get(f"{gw.url}/healthz")).json()["instance"])
        first = sorted(_workers(gw.proc.pid))
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        # The parent starts another in its place; meanwhile the other worker serves.
        auth = {"Authorization": f"Bearer {gw.token}"}
        async with _fresh_connections() as http:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = sorted(_workers(gw.proc.pid))
                if len(now) == 2 and first[0] not in now:
                    break
                await asyncio.sleep(0.2)
            replaced = sorted(_workers(gw.proc.pid))
            assert len(replaced) == 2 and first[0] not in replaced, gw.tail()
            # Every exchange is answered, by the survivor until the new worker listens.
            instances = set()
            deadline = time.monotonic() + 30
            while len(instances) < 2 and time.monotonic() < deadline:
                r = await http.get(f"{gw.url}{ECHO}/x", headers=auth)
                assert r.status_code == 200, r.text
                instances.add((await http.get(f"{gw.url}/healthz")).json()["instance"])
        # Still two instances, the same two: the new worker took over the dead one's
        # id, so its audit chain goes on where the other left it.
        assert instances == {f"{BASE_INSTANCE}-1", f"{BASE_INSTANCE}-2"}
        assert gw.stop() == 0, gw.tail()
    report = await _verify(database_url)
    assert report.ok, report.as_dict()


@pytest.mark.dialects("sqlite")
async def test_workers_stop_when_their_parent_is_killed(database_url: str, tmp_path: Path) -> None:
    async with serve(database_url, tmp_path, workers=2) as gw:
        deadline = time.monotonic() + 20
        while len(_workers(gw.proc.pid)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        workers = _workers(gw.proc.pid)
        assert len(workers) == 2
        gw.proc.kill()
        gw.proc.wait()
        # No parent to restart or stop them: they notice and exit, freeing the port.
        deadline = time.monotonic() + 20
        while any(_running(pid) for pid in workers):
            assert time.monotonic() < deadline, f"orphaned workers still run: {workers}"
            await asyncio.sleep(0.2)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan waits for whoever adopted it to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_serve_refuses_a_port_in_use(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = {**env, "LGSP_PORT": str(holder.getsockname()[1]), "LGSP_SCHEMAS_DIR": ""}
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--workers", "2"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert "already in use" in done.stderr


def test_serve_makes_every_key_hosts_must_share_before_its_workers_start(tmp_path: Path) -> None:
    """The token-signing key, the events key (webhook secrets) and the whose-data index
    key, made once at start: a keys directory copied from there serves every host."""
    from gateway.audit.subjects import KEY_FILE as SUBJECTS_KEY
    from gateway.core.settings import Settings
    from gateway.events.secrets import KEY_FILE as EVENTS_KEY
    from gateway.ops.serve import prepare

    keys = tmp_path / "keys"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}", keys_dir=keys, schemas_dir=""
    )
    prepare(settings)
    made = {p.name: p.stat().st_mode & 0o777 for p in keys.iterdir() if p.is_file()}
    assert made[EVENTS_KEY] == 0o600 and made[SUBJECTS_KEY] == 0o600
    assert any(name.endswith(".pem") for name in made)
    before = {name: (keys / name).read_bytes() for name in made}
    prepare(settings)  # a second start keeps them
    assert {name: (keys / name).read_bytes() for name in made} == before
