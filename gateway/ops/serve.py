"""`lgsp serve`: one gateway process, or a parent and N worker processes on one port.

Each worker is a whole gateway with its own instance id (`<instance_id>-<n>`), hence its
own audit chain, spool and signing key; workers share the store, Redis and the broker.
They bind the port with SO_REUSEPORT, so the kernel spreads connections across them. The
parent prepares what must happen once (schema migration, the token signing key, bundled
schemas), starts the workers, restarts one that dies, and on SIGTERM or SIGINT passes the
signal on and waits for every worker to drain.

Draining, in each worker: /readyz answers 503 at once and every answer says
`Connection: close`, serving goes on for `drain_delay_seconds` (time for a load balancer
to notice), then the listener closes (serving what the kernel had already accepted), the
connections get `drain_timeout_seconds` to end between requests (an idle one is closed,
a busy one closes after its answer; see gateway/edge/protocol.py), what still runs then is
cancelled and audited, and the audit log is flushed before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

from aiohttp import web

from gateway.audit.subjects import load_subject_key
from gateway.core.logging import log
from gateway.core.settings import Settings
from gateway.core.tls import server_context
from gateway.edge.app import create_app
from gateway.edge.protocol import GatewayRunner
from gateway.edge.state import STATE
from gateway.events.secrets import SecretBox
from gateway.identity.keys import KeyStore
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.telemetry.metrics import MULTIPROC_ENV, worker_exited

RESTART_BACKOFF_MAX_SECONDS = 30.0
# A worker says it listens by writing to this inherited pipe; one that dies before it
# ever did failed to start (the configuration is wrong: restarting would repeat it).
READY_FD_ENV = "LGSP_WORKER_READY_FD"
PARENT_PID_ENV = "LGSP_WORKER_PARENT_PID"


def worker_count(settings: Settings, requested: int | None) -> int:
    """`--workers`, else LGSP_WORKERS, else one per core when limits are shared in Redis."""
    n = requested if requested is not None else settings.workers
    if n > 1 and not settings.redis_url:
        log.warning(
            "rate limits and quotas are counted per worker without LGSP_REDIS_URL: a client "
            "may get up to the number of workers times its limit",
            workers=n,
        )
    if n > 0:
        return n
    if settings.redis_url:
        return os.cpu_count() or 1
    log.info(
        "serving with 1 worker: without LGSP_REDIS_URL each worker would count rate limits "
        "and quotas on its own; set it, or pass --workers N to accept that"
    )
    return 1


def run(loop_main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop where it is installed (Linux, macOS): a faster event loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(loop_main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(loop_main())


# -- once, before serving ---------------------------------------------------------------------


def prepare(settings: Settings) -> None:
    """What every worker would otherwise race to do (the schema is migrated before)."""
    # The HTTPS files are read here once, so a wrong path or key fails the start with
    # its reason rather than as workers that cannot start.
    checked_tls(settings)
    # Workers must verify each other's tokens: the signing key is made once, here.
    KeyStore(settings.keys_dir, settings.key_passphrase, settings.token_algorithms[0]).load()
    # So are the keys beside it: the events key (webhook secrets sealed by one host open on
    # another) and the whose-data index key (every host and the indexer digest a number
    # alike). Made lazily, each host of a cluster would have made its own.
    SecretBox(settings.keys_dir).ensure_key()
    load_subject_key(settings.keys_dir)
    if settings.schemas_dir.parts:

        async def register() -> None:
            engine = create_engine(settings.database_url)
            try:
                for line in await load_bundled(session_factory(engine), settings.schemas_dir):
                    log.info("schemas", change=line)
            finally:
                await engine.dispose()

        asyncio.run(register())


def listener_tls(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS listener's TLS context (gateway/core/tls.py), None for plain HTTP."""
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    return server_context(
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_client_ca_file,
        settings.tls_client_auth,
    )


def checked_tls(settings: Settings) -> ssl.SSLContext | None:
    """`listener_tls`, or the start refused with the reason (a missing file, a key that
    does not match its certificate)."""
    try:
        return listener_tls(settings)
    except (OSError, ValueError) as e:
        raise SystemExit(f"lgsp serve: the TLS settings cannot be used: {e}") from None


# -- one worker -------------------------------------------------------------------------------


async def serve_worker(settings: Settings, *, reuse_port: bool) -> int:
    tls = checked_tls(settings)
    app = create_app(settings)
    state = app[STATE]
    runner = GatewayRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.drain_timeout_seconds
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphaned = asyncio.create_task(_stop_when_orphaned(stop)) if reuse_port else None
    try:
        site = web.TCPSite(
            runner,
            settings.host,
            settings.port,
            reuse_port=reuse_port or None,
            ssl_context=tls,
        )
        await site.start()
        _tell_parent_ready()
        log.info(
            "gateway listening",
            address=f"{'https' if settings.tls else 'http'}://{settings.host}:{settings.port}",
            client_certificates=settings.tls_client_auth,
            instance=settings.instance_id,
            pid=os.getpid(),
        )
        await stop.wait()
        state.draining = True
        log.info("draining", instance=settings.instance_id, delay=settings.drain_delay_seconds)
        # Serves for the delay, then stops listening; connections end between requests.
        left = await runner.drain(settings.drain_delay_seconds, settings.drain_timeout_seconds)
        log.info("listener closed; connections ended", instance=settings.instance_id, left=left)
    finally:
        if orphaned is not None:
            orphaned.cancel()
        # Cancels what still runs (audited as cancelled), then flushes the audit log (the
        # app's cleanup closes the audit sink last).
        await runner.cleanup()
    log.info("stopped", instance=settings.instance_id)
    return 0


async def _stop_when_orphaned(stop: asyncio.Event, every: float = 1.0) -> None:
    """A worker whose parent died (SIGKILL, OOM) drains and exits rather than hold the
    port forever: it notices by being handed to another parent. The parent's pid comes
    from the parent, so a death while this worker was still starting is noticed too."""
    parent = int(os.environ.get(PARENT_PID_ENV) or os.getppid())
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells of a parent's death
        await asyncio.sleep(every)
    log.error("the lgsp serve parent is gone; this worker stops", parent=parent)
    stop.set()


def _tell_parent_ready() -> None:
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
            os.close(int(fd))


# -- the parent of N workers ------------------------------------------------------------------


def _check_port_free(host: str, port: int) -> None:
    # Workers bind with SO_REUSEPORT, which would also let them share the port with
    # another gateway left running: refuse that here, where a plain bind can tell.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR (as every server sets it): connections of a previous run left in
        # TIME_WAIT do not count; a listener, with or without SO_REUSEPORT, still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise SystemExit(
                    f"lgsp serve: {host}:{port} is already in use; stop what listens there "
                    "or set LGSP_PORT."
                ) from None
            raise


class Supervisor:
    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.count = workers
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started: dict[int, float] = {}
        self.ready_pipes: dict[int, int] = {}  # read ends, until the worker said "ready"
        self.ever_ready: set[int] = set()
        self.restarts: dict[int, int] = {}
        self.stopping = False
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="lgsp-metrics-"))

    def _env(self, n: int, ready_fd: int) -> dict[str, str]:
        s = self.settings
        return {
            READY_FD_ENV: str(ready_fd),
            PARENT_PID_ENV: str(os.getpid()),
            **os.environ,
            "LGSP_INSTANCE_ID": f"{s.instance_id}-{n}",
            "LGSP_HOST": s.host,
            "LGSP_PORT": str(s.port),
            "LGSP_DATABASE_URL": s.database_url,
            "LGSP_PUBLIC_URL": s.issuer,  # tokens from any worker name the same issuer
            "LGSP_SCHEMAS_DIR": "",  # registered once, by prepare()
            MULTIPROC_ENV: str(self.metrics_dir),
        }

    def _spawn(self, n: int) -> None:
        command = [sys.executable, "-m", "gateway", "serve", "--worker"]
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        try:
            self.procs[n] = subprocess.Popen(  # noqa: S603
                command, env=self._env(n, write_end), pass_fds=(write_end,)
            )
        finally:
            os.close(write_end)
        self._forget_pipe(n)
        self.ready_pipes[n] = read_end
        self.started[n] = time.monotonic()
        log.info("worker started", worker=n, pid=self.procs[n].pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping workers", signal=signal.Signals(signum).name)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        _check_port_free(self.settings.host, self.settings.port)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            for n in range(1, self.count + 1):
                self._spawn(n)
            while not self.stopping:
                failure = self._watch()
                if failure is not None:
                    self._on_signal(signal.SIGTERM, None)
                    self._wait_all()
                    return failure
                time.sleep(0.2)
            return self._wait_all()
        finally:
            for n in list(self.ready_pipes):
                self._forget_pipe(n)
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _forget_pipe(self, n: int) -> None:
        fd = self.ready_pipes.pop(n, None)
        if fd is not None:
            os.close(fd)

    def _check_ready(self, n: int) -> None:
        fd = self.ready_pipes.get(n)
        if fd is None:
            return
        with contextlib.suppress(BlockingIOError):
            if os.read(fd, 1):
                self.ever_ready.add(n)
                self._forget_pipe(n)

    def _watch(self) -> int | None:
        """Restart workers that died; the exit code if one could not start at all."""
        for n, proc in list(self.procs.items()):
            self._check_ready(n)
            code = proc.poll()
            if code is None or self.stopping:
                continue
            self._check_ready(n)  # it may have said so just before dying
            self._forget_pipe(n)
            worker_exited(proc.pid, self.metrics_dir)
            uptime = time.monotonic() - self.started[n]
            if n not in self.ever_ready:
                log.error("worker could not start", worker=n, exit_code=code)
                return code or 1
            self.restarts[n] = self.restarts.get(n, 0) + 1
            # Back off on a worker that keeps dying; one that ran a while starts at once.
            delay = (
                0.0 if uptime > 60 else min(RESTART_BACKOFF_MAX_SECONDS, 2.0 ** self.restarts[n])
            )
            log.error("worker died; restarting", worker=n, exit_code=code, after_seconds=delay)
            time.sleep(delay)
            if not self.stopping:
                self._spawn(n)
        return None

    def _wait_all(self) -> int:
        s = self.settings
        deadline = (
            time.monotonic()
            + s.drain_delay_seconds
            + s.drain_timeout_seconds
            + s.audit_drain_seconds
            + 15
        )
        code = 0
        for n, proc in self.procs.items():
            try:
                result = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing it", worker=n, pid=proc.pid)
                proc.kill()
                result = proc.wait()
            with contextlib.suppress(Exception):
                worker_exited(proc.pid, self.metrics_dir)
            code = code or result
        log.info("all workers stopped", exit_code=code)
        return code
