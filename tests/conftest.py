"""Shared fixtures: real databases (SQLite and PostgreSQL), the national simulator as
a real upstream on a TCP port, and a running gateway wired to both.

PostgreSQL comes from `LGSP_TEST_POSTGRES_URL` (default: the local server on 5432).
When it is unreachable, tests that need it fail under CI (`CI` set) and are skipped
with the reason on a laptop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest.mock
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner
from sqlalchemy import or_, select, text

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.core.settings import Settings
from gateway.edge.app import create_app
from gateway.edge.protocol import GatewayRunner
from gateway.edge.reload import reload_config
from gateway.edge.state import STATE, GatewayState
from gateway.ops.cli.main import main as lgsp_main
from gateway.ops.serve import listener_tls
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade
from gateway.store.models import AuditRecord, Base
from simulator.app import create_app as create_simulator

REPO = Path(__file__).resolve().parent.parent
NATIONAL_REQUEST = "population.citizen-lookup.national.request"
NATIONAL_RESPONSE = "population.citizen-lookup.national.response"
PG_ADMIN_URL = os.environ.get(
    "LGSP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PROVINCE_ID = "000.00.00.H49"
PROVINCE_SECRET = "province-secret-for-tests"
SECRET_ENV = "LGSP_UPSTREAM_SECRET_TEST_NDXP"
POPULATION = "/r1/000.00.00.G01/csdlqg-dancu/v1"
ECHO = "/r1/000.00.00.H49/echo/v1"
# The audit records that stand for exchanges, one each: a two-phase exchange's intent is
# the other event of its pair (gateway/exchange/steps/intent.py).
ONE_PER_EXCHANGE = or_(AuditRecord.phase.is_(None), AuditRecord.phase != "intent")


def _unavailable(what: str, why: str) -> None:
    message = f"{what} is not reachable ({why}); start it or set LGSP_TEST_POSTGRES_URL"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI requires it", pytrace=False)
    pytest.skip(message)


# -- databases --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def sqlite_seeded_template(sqlite_template: Path) -> Path:
    """The migrated template with the bundled schemas registered: what a gateway's
    database holds after its first start (registering them costs ~0.1 s a test)."""
    path = sqlite_template.with_name("seeded.db")
    shutil.copy(sqlite_template, path)

    async def seed() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await load_bundled(session_factory(engine), REPO / "schemas")
        await engine.dispose()

    asyncio.run(seed())
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    name = f"lgsp_test_{uuid.uuid4().hex[:10]}"

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        _unavailable("PostgreSQL", f"{type(e).__name__}: {e}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"
    upgrade(url)
    asyncio.run(_seed_postgres(url))
    yield url
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


DIALECTS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that needs a database runs on SQLite (the embedded default), and on both
    dialects where the store is the subject: a module or test marked
    `pytest.mark.dialects("sqlite", "postgresql")` (what the gateway does above the
    store does not depend on the dialect; SQL, locking, NOTIFY and JSON do)."""
    if "database_url" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("dialects")
    dialects = marker.args if marker else ("sqlite",)
    unknown = set(dialects) - set(DIALECTS)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown dialects {unknown}")
    metafunc.parametrize("database_url", dialects, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or the session's PostgreSQL
    database emptied before the test (the dialect: see `pytest_generate_tests`)."""
    if request.param == "sqlite":
        path = tmp_path / "lgsp.db"
        # A running gateway registers the bundled schemas anyway: its database starts so.
        seeded = "gateway" in request.fixturenames
        template = "sqlite_seeded_template" if seeded else "sqlite_template"
        shutil.copy(request.getfixturevalue(template), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_empty_postgres(url, seeded="gateway" in request.fixturenames))
    yield url


async def _seed_postgres(url: str) -> None:
    """Register the bundled schemas once, and keep a copy of every table in schema `seed`:
    what a gateway's database starts with (as SQLite's seeded template)."""
    engine = create_engine(url)
    await load_bundled(session_factory(engine), REPO / "schemas")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA seed"))
        for table in Base.metadata.sorted_tables:
            await conn.execute(text(f"CREATE TABLE seed.{table.name} AS TABLE {table.name}"))
    await engine.dispose()


async def _empty_postgres(url: str, *, seeded: bool) -> None:
    """Every table emptied, or set back to the seeded copy, and every id sequence set to
    follow what is left. DELETE, not TRUNCATE: on tables this small it takes ~3 ms where
    TRUNCATE takes ~150 ms."""
    engine = create_engine(url)
    tables = Base.metadata.sorted_tables
    async with engine.begin() as conn:
        for table in reversed(tables):
            await conn.execute(table.delete())
        for table in tables:
            if seeded or table.name == "config_state":  # its single row: the version
                await conn.execute(text(f"INSERT INTO {table.name} TABLE seed.{table.name}"))
            if table.autoincrement_column is not None and table.autoincrement_column.name == "id":
                # The names are the models' own, not input.
                follow = (
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608
                    f"COALESCE(MAX(id), 0) + 1, false) FROM {table.name}"
                )
                await conn.execute(text(follow))
        if not seeded:
            await conn.execute(text("UPDATE config_state SET version = 0"))
    await engine.dispose()


# -- the test configuration -------------------------------------------------------------------


def test_policy(simulator_url: str, dead_url: str) -> PolicySet:
    def service(code: str, path: str, **extra: Any) -> dict[str, Any]:
        return {
            "provider": PROVINCE_ID,
            "code": code,
            "version": "v1",
            "name": code,
            "upstream": "sim-open",
            "upstream_path": path,
            "access": [{"client": "motcua"}, {"client": "legacy"}],
            **extra,
        }

    return PolicySet.model_validate(
        {
            "agencies": [
                {"code": PROVINCE_ID, "name": "UBND tỉnh", "doc_code": "000.00.00.H49"},
                {"code": "000.00.31.H49", "name": "Trung tâm PVHCC"},
                {"code": "000.00.12.H49", "name": "Sở Tư pháp"},
                {"code": "000.00.00.G01", "name": "Bộ Công an"},
            ],
            "groups": [{"code": "tthc", "name": "TTHC"}],
            "clients": [
                {
                    "code": "motcua",
                    "agency": "000.00.31.H49",
                    "name": "Một cửa",
                    "groups": ["tthc"],
                },
                {
                    "code": "hotich",
                    "agency": "000.00.12.H49",
                    "name": "Hộ tịch",
                    "groups": ["tthc"],
                },
                {"code": "legacy", "agency": "000.00.12.H49", "name": "Old system"},
                {"code": "outsider", "agency": "000.00.12.H49", "name": "No rights"},
                {
                    "code": "retired",
                    "agency": "000.00.12.H49",
                    "name": "Disabled",
                    "enabled": False,
                },
            ],
            "upstreams": [
                {
                    "name": "ndxp",
                    "base_url": simulator_url,
                    "auth": {
                        "type": "oauth2_client_credentials",
                        "token_url": "/oauth2/token",
                        "client_id": PROVINCE_ID,
                        "client_secret_env": SECRET_ENV,
                    },
                },
                {"name": "sim-open", "base_url": simulator_url},
                {"name": "dead", "base_url": dead_url},
            ],
            "services": [
                {
                    "provider": "000.00.00.G01",
                    "code": "csdlqg-dancu",
                    "version": "v1",
                    "name": "Dân cư",
                    "upstream": "ndxp",
                    "upstream_path": "/csdldc/v1",
                    "require": ["officer", "procedure"],
                    "schemas": {
                        "request": {"subject": NATIONAL_REQUEST},
                        "response": {"subject": NATIONAL_RESPONSE},
                    },
                    "access": [
                        {"group": "tthc", "method": "POST", "path": "/cong-dan/tra-cuu"},
                        {"client": "hotich", "method": "POST", "path": "/cong-dan/tra-cuu-ho-ten"},
                        {"client": "legacy", "method": "POST", "path": "/cong-dan/*"},
                    ],
                },
                service(
                    "echo",
                    "/_sim/echo",
                    access=[
                        {"client": "motcua"},
                        {"client": "legacy"},
                        {"client": "hotich", "method": "GET", "path": "/public/**"},
                    ],
                ),
                service("needs-case", "/_sim/echo", require=["officer", "procedure", "case"]),
                service(
                    "small",
                    "/_sim/echo",
                    limits={"max_request_bytes": 100, "max_response_bytes": 400},
                ),
                service("slow", "/_sim/delay", timeouts={"connect_ms": 500, "total_ms": 300}),
                service("status", "/_sim/status"),
                service("off", "/_sim/echo", enabled=False),
                # The echo's answer is not a national lookup answer: a 502 when validated.
                service(
                    "echo-checked",
                    "/_sim/echo",
                    schemas={
                        "request": {"subject": NATIONAL_REQUEST, "version": 1},
                        "response": {"subject": NATIONAL_RESPONSE},
                    },
                ),
                {**service("dead", ""), "upstream": "dead"},
            ],
        }
    )


# -- running gateway --------------------------------------------------------------------------


class GatewayTestServer(TestServer):
    """aiohttp's test server with the gateway's own runner (gateway/edge/protocol.py), so
    tests meet the HTTP server production runs."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        # A test's server stops within seconds, not aiohttp's 60 s per connection a client
        # left open (a library client in a thread, a delivery worker's keep-alive pool).
        kwargs.setdefault("shutdown_timeout", 5.0)
        return GatewayRunner(self.app, **kwargs)


@dataclass
class Harness:
    url: str
    http: httpx.AsyncClient
    state: GatewayState
    simulator: web.Application
    host: str
    port: int
    simulator_url: str = ""

    async def secret(self, client: str) -> str:
        async with self.state.sessions() as s, s.begin():
            value = await credential_ops.issue(s, client_code=client, kind="secret", actor="test")
        await reload_config(self.state)
        return value

    async def api_key(self, client: str) -> str:
        async with self.state.sessions() as s, s.begin():
            value = await credential_ops.issue(s, client_code=client, kind="api_key", actor="test")
        await reload_config(self.state)
        return value

    async def token(self, client: str = "motcua") -> str:
        secret = await self.secret(client)
        r = await self.http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client, secret)
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    async def audit(
        self, request_id: str | None = None, *, intents: bool = False
    ) -> list[AuditRecord]:
        """The audit records, one per exchange: a two-phase exchange's intent only with
        `intents` (its outcome stands for the exchange, as auditors see it)."""
        async with self.state.sessions() as s:
            q = select(AuditRecord).order_by(AuditRecord.id)
            if request_id is not None:
                q = q.where(AuditRecord.request_id == request_id)
            if not intents:
                q = q.where(ONE_PER_EXCHANGE)
            return list((await s.scalars(q)).all())

    async def raw(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request target byte for byte, as an attacker would (no normalisation)."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {self.host}",
            "Connection: close",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        data = await reader.read()
        writer.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        hdrs = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return int(status_line.split()[1]), hdrs, payload


async def add_to_policy(
    h: Harness, services: list[dict[str, Any]], upstreams: list[dict[str, Any]] | None = None
) -> None:
    """Add services (and upstreams) to the running gateway's configuration, reloaded."""

    def change(doc: dict[str, Any]) -> None:
        doc["upstreams"].extend(upstreams or [])
        doc["services"].extend(services)

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="test")
    await reload_config(h.state)


CHROMIUM = Path("/usr/bin/chromium")


def _no_browser(why: str) -> None:
    message = f"the console's browser tests need Chromium at {CHROMIUM} ({why})"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI requires it (.ci/run installs it)", pytrace=False)
    pytest.skip(message + "; apt-get install chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        _no_browser("not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError as e:  # pragma: no cover - a dev dependency
        _no_browser(f"playwright not importable: {e}")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        await b.close()


@pytest.fixture
async def simulator() -> AsyncIterator[TestServer]:
    server = TestServer(create_simulator({PROVINCE_ID: PROVINCE_SECRET}), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        public_url="http://gateway.test",
        instance_id="test-gw",
        schemas_dir=REPO / "schemas",
        token_ttl_seconds=300,
        upstream_allowed_networks=["loopback"],
    )


@pytest.fixture
async def gateway(
    settings: Settings, simulator: TestServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    monkeypatch.setenv(SECRET_ENV, PROVINCE_SECRET)
    # A port nobody listens on, held (bound, never listening) for the whole test: a
    # closed one could be handed to the next server the test starts, the gateway itself.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    engine = create_engine(settings.database_url)  # seeded: the bundled schemas are there
    async with session_factory(engine)() as s, s.begin():
        await policy_state.apply_policy(
            s,
            test_policy(str(simulator.make_url("")).rstrip("/"), f"http://127.0.0.1:{dead_port}"),
            actor="test",
        )
    await engine.dispose()
    server = GatewayTestServer(create_app(settings), host="127.0.0.1")
    # HTTPS when the settings say so (tests/test_mtls.py): the listener `lgsp serve` makes.
    await server.start_server(ssl=listener_tls(settings))
    url = str(server.make_url("")).rstrip("/")
    # Over HTTPS the harness's client trusts the test CA and presents no certificate.
    verify: Any = True
    if settings.tls:
        verify = ssl.create_default_context(
            cafile=settings.tls_client_ca_file or settings.tls_cert_file
        )
    async with httpx.AsyncClient(base_url=url, timeout=10, verify=verify) as http:
        yield Harness(
            url,
            http,
            server.app[STATE],
            simulator.app,
            "127.0.0.1",
            server.port or 0,
            str(simulator.make_url("")).rstrip("/"),
        )
    closing = asyncio.ensure_future(server.close())
    try:
        await asyncio.wait_for(asyncio.shield(closing), 20)
    except TimeoutError:
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise
    dead.close()


# -- the lgsp command, as a separate process ------------------------------------------------

LGSP = [sys.executable, "-m", "gateway"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
    e.update(
        LGSP_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'lgsp.db'}",
        LGSP_KEYS_DIR=str(tmp_path / "keys"),
        LGSP_PORT=str(free_port()),
        # The sample policy's national upstream is the simulator on 127.0.0.1.
        LGSP_UPSTREAM_ALLOWED_NETWORKS='["loopback"]',
        PYTHONPATH=str(REPO),
    )
    return e


def lgsp(
    env: dict[str, str], *args: str, cwd: Path | None = None, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """The `lgsp` command with `args`, its environment exactly `env`: run in this process
    (the same parser and commands; ~2 s of interpreter start saved a call), or as a
    separate process with `process=True` (the smoke tests of the installed command)."""
    if process:
        return subprocess.run(
            [*LGSP, *args],
            env=env,
            cwd=cwd or REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    # A thread of its own: the commands call asyncio.run, which an async test's loop forbids.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_lgsp_in_process, env, list(args), cwd or REPO).result(timeout=120)


def _lgsp_in_process(
    env: dict[str, str], args: list[str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    logging_before = structlog.get_config()
    configure = structlog.configure

    def uncached(**settings: Any) -> None:
        # The command configures logging as for a process of its own; here a logger
        # cached on first use would keep the command's stderr and processors for the
        # rest of this worker's tests.
        configure(**{**settings, "cache_logger_on_first_use": False})

    try:
        with (
            contextlib.chdir(cwd),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            unittest.mock.patch.object(structlog, "configure", uncached),
        ):
            try:
                lgsp_main(args)
                code = 0
            except SystemExit as e:
                # sys.exit("message") prints the message and exits 1, as the interpreter does.
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
        # As it was, the same processors list included: loggers bound before the command
        # hold that list, which `capture_logs` fills in place.
        structlog.configure(**logging_before)
    return subprocess.CompletedProcess([*LGSP, *args], code, out.getvalue(), err.getvalue())


@dataclass
class GatewayProcess:
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*LGSP, "serve", "--no-migrate"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"the gateway did not start; see {self.log}:\n{self.log.read_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- what a test reports ----------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the counts a test recorded with `record_property("summary", text)` (the
    cluster test's, tests/test_cluster.py), passed or failed, after the run: its own
    output is captured, and under xdist a worker's output is not shown at all, but the
    recorded properties travel with the test's report."""
    shown: set[str] = set()
    for category in ("passed", "failed"):
        for report in terminalreporter.stats.get(category, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "summary" and report.nodeid not in shown:
                    shown.add(report.nodeid)
                    terminalreporter.write_sep("-", f"{report.nodeid} ({category})")
                    terminalreporter.write_line(str(value))
