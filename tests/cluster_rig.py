"""Hosts on one machine for tests/test_cluster.py: network namespaces on a bridge, a
relay to the machine's shared services, processes inside the hosts, HAProxy in front.

- `Network` makes one Linux bridge in the root namespace (`10.213.<n>.1/24`, a private
  range nothing else here uses) and, per host, a network namespace joined to it by a
  veth pair (`eth0` inside, `10.213.<n>.11`, `.12`, ...). Each host has its own network
  stack: its own loopback, its own port 8080, and only the bridge to reach anything.
  `<n>` is chosen per run (a subnet already on an interface is skipped, and a lock file
  per subnet keeps two runs, such as two xdist workers, from taking the same one); the
  names carry a random run id. `down()` removes it all, and is safe to call twice.
- `Relay` runs tests/relay.py on the bridge address for the services that listen on
  127.0.0.1 only (PostgreSQL, Redis): a host cannot reach the root namespace's loopback.
- `HostProcess` is one program started with `ip netns exec <host>`: `ip` execs it, so the
  process's pid is the program's own and SIGKILL and SIGTERM reach it directly.
- `Balancer` is HAProxy in the root namespace: round robin over the hosts, an active
  health check of `GET /readyz` every 250 ms (down after 2 failures, up after 2
  successes; a check may take 3 s, more than /readyz's own 2 s deadline), a failed
  connect retried on another host, one connection per request to
  the hosts (`http-server-close`), and per request a log line with the caller's
  `X-Request-Id`, the host that took it, the status and HAProxy's termination state; each
  answer carries `X-Served-By` (the host).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

import pytest

__all__ = [
    "Balancer",
    "HostProcess",
    "LbEntry",
    "Network",
    "Relay",
    "cannot_run",
    "require_haproxy",
    "require_namespaces",
]

REPO = Path(__file__).resolve().parent.parent
SUBNETS = "10.213"  # 10.213.<n>.0/24: the test's own private range
HAPROXY = "/usr/sbin/haproxy"


def cannot_run(why: str) -> NoReturn:
    """Skip with the reason on a laptop; fail under CI, which must run the cluster."""
    message = f"the cluster test cannot run here: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI requires it (.ci/run runs it as root)", pytrace=False)
    pytest.skip(message)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def require_namespaces() -> None:
    """Root and a working `ip netns`, or skip (fail under CI) saying which is missing."""
    if os.geteuid() != 0:
        cannot_run("making network namespaces and veth pairs needs root")
    if shutil.which("ip") is None:
        cannot_run("iproute2's `ip` is not installed (apt-get install iproute2)")
    probe = f"lgsp-probe-{secrets.token_hex(3)}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        cannot_run(f"`ip netns add` failed: {r.stderr.strip()}")
    _ip("netns", "del", probe, check=False)


def require_haproxy() -> str:
    if not os.access(HAPROXY, os.X_OK):
        cannot_run(f"HAProxy is not installed at {HAPROXY} (apt-get install haproxy)")
    return HAPROXY


# -- the network ------------------------------------------------------------------------------


@dataclass
class Network:
    """A bridge in the root namespace and one namespace per host, joined by veth pairs."""

    hosts: list[str]
    run: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: int = -1
    _lock: IO[bytes] | None = None
    _made: list[str] = field(default_factory=list)  # namespaces made, for down()
    _bridge_made: bool = False

    @property
    def bridge(self) -> str:
        return f"lgb{self.run}"

    @property
    def root_address(self) -> str:
        """The root namespace's address on the bridge: where the shared services are."""
        return f"{SUBNETS}.{self.subnet}.1"

    def address(self, host: str) -> str:
        return f"{SUBNETS}.{self.subnet}.{11 + self.hosts.index(host)}"

    def namespace(self, host: str) -> str:
        return f"lgsp-{self.run}-{host}"

    def argv(self, host: str, argv: list[str]) -> list[str]:
        """`argv` run inside `host`'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def up(self) -> None:
        self._take_subnet()
        _ip("link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        _ip("addr", "add", f"{self.root_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, host in enumerate(self.hosts):
            ns, veth = self.namespace(host), f"lgv{self.run}{i}"
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        """Remove the namespaces (their veth ends go with them) and the bridge. The
        processes inside must have been stopped first: a namespace outlives `ip netns del`
        while a process still runs in it."""
        for ns in reversed(self._made):
            _ip("netns", "del", ns, check=False)
        self._made.clear()
        if self._bridge_made:
            _ip("link", "del", self.bridge, check=False)
            self._bridge_made = False
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _take_subnet(self) -> None:
        used = {
            str(ipaddress.ip_interface(m).network)
            for m in re.findall(r"inet (\S+)", _ip("-4", "-o", "addr", "show").stdout)
        }
        start = secrets.randbelow(200)
        for k in range(200):
            n = 20 + (start + k) % 200
            if f"{SUBNETS}.{n}.0/24" in used:
                continue
            lock = Path(tempfile.gettempdir()) / f"lgsp-cluster-{SUBNETS}.{n}.lock"
            f = lock.open("wb")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self.subnet, self._lock = n, f
            return
        raise RuntimeError(f"no free subnet in {SUBNETS}.20-219.0/24")


# -- processes --------------------------------------------------------------------------------


@dataclass
class HostProcess:
    """One program, in a host's namespace or (argv as given) in the root namespace."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdout=log, stderr=log)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def exited(self, seconds: float) -> int:
        """The exit code, waiting up to `seconds` without blocking the event loop."""
        assert self.proc is not None
        deadline = time.monotonic() + seconds
        while (rc := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {seconds} s")
            await asyncio.sleep(0.05)
        return rc

    def stop(self, seconds: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `seconds`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self.kill()

    @staticmethod
    def stop_all(processes: list[HostProcess], seconds: float = 15) -> None:
        """SIGTERM to all at once (each drains in parallel), then SIGKILL what is left."""
        running = [p for p in processes if p.running]
        for p in running:
            assert p.proc is not None
            p.proc.send_signal(signal.SIGCONT)
            p.proc.terminate()
        deadline = time.monotonic() + seconds
        for p in running:
            assert p.proc is not None
            try:
                p.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Relay(HostProcess):
    """tests/relay.py in the root namespace: `listen` -> `target`, each host:port."""

    def __init__(self, pairs: dict[str, str], log: Path) -> None:
        argv = [sys.executable, "-m", "tests.relay", *(f"{a}={b}" for a, b in pairs.items())]
        super().__init__("relay", argv, {**os.environ, "PYTHONPATH": str(REPO)}, log)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=REPO, stdout=subprocess.PIPE, stderr=log
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # nothing else is written there
        if line.strip() != b"ready":
            self.kill()
            raise RuntimeError(f"the relay did not start: {line!r}\n{self.tail()}")


# -- the load balancer ------------------------------------------------------------------------


@dataclass(frozen=True)
class LbEntry:
    """One request as HAProxy logged it."""

    request_id: str
    server: str  # the host that took it; <NOSRV> if none did
    status: int  # what HAProxy answered the caller (-1: nothing)
    termination: str  # HAProxy's two-letter termination state; "--" is a normal end
    retries: int  # connection retries (a "+" prefix in HAProxy's log: redispatched)


_CONFIG = """\
global
    log stdout format raw local0 info
    stats socket {socket} mode 600 level admin
    maxconn 2000

defaults
    mode http
    log global
    option http-server-close
    option redispatch 1
    retries 3
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 10s
    # Longer than /readyz's own deadline (the store must answer within 2 s): the host's
    # verdict decides, not the balancer's patience. A dead host is seen at once anyway
    # (its connects are refused); a slow check must not take the last host out.
    timeout check 3s

frontend lgsp
    bind 127.0.0.1:{port}
    capture request header X-Request-Id len 128
    log-format "lgsp-request %[capture.req.hdr(0)] %s %ST %ts %rc"
    http-after-response set-header X-Served-By %s
    default_backend gateways

backend gateways
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 250ms fastinter 250ms downinter 250ms fall 2 rise 2
{servers}
"""


class Balancer:
    """HAProxy in front of `servers` (name -> host:port), listening on 127.0.0.1:`port`."""

    def __init__(self, servers: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self._dir = Path(tempfile.mkdtemp(prefix="lgsp-lb-"))  # short: a unix socket path
        self.socket = self._dir / "stats.sock"
        config = _CONFIG.format(
            socket=self.socket,
            port=port,
            servers="\n".join(f"    server {n} {a}" for n, a in servers.items()),
        )
        self.config = self._dir / "haproxy.cfg"
        self.config.write_text(config)
        self.process = HostProcess(
            "haproxy", [require_haproxy(), "-db", "-f", str(self.config)], dict(os.environ), log
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        check = subprocess.run(
            [HAPROXY, "-c", "-f", str(self.config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejects its configuration: {check.stderr}")
        self.process.start()

    async def states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it (UP, DOWN, ...)."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        writer.write(b"show stat\n")
        await writer.drain()
        text = (await reader.read()).decode()
        writer.close()
        lines = text.splitlines()
        header = lines[0].lstrip("# ").split(",")
        col = {name: i for i, name in enumerate(header)}
        out = {}
        for line in lines[1:]:
            cells = line.split(",")
            if len(cells) > col["status"] and cells[0] == "gateways":
                if cells[1] not in ("BACKEND", "FRONTEND"):
                    out[cells[1]] = cells[col["status"]]
        return out

    async def wait_state(self, server: str, status: str, seconds: float) -> float:
        """Seconds until HAProxy says `server` is `status` (UP, DOWN)."""
        t0 = time.monotonic()
        while True:
            with contextlib.suppress(OSError):
                if (await self.states()).get(server, "").startswith(status):
                    return time.monotonic() - t0
            if time.monotonic() - t0 > seconds:
                raise TimeoutError(f"HAProxy did not see {server} {status} within {seconds} s")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        """A soft stop (SIGUSR1: finish what runs), so every request is logged."""
        p = self.process.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGUSR1)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def entries(self) -> list[LbEntry]:
        out = []
        for line in self.process.log.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) != 6 or parts[0] != "lgsp-request":
                continue
            _, rid, server, status, termination, retries = parts
            out.append(
                LbEntry(rid, server, int(status), termination, int(retries.lstrip("+") or 0))
            )
        return out

    def events(self) -> list[str]:
        """HAProxy's own lines: servers going down and up, with the check's reason."""
        return [
            line
            for line in self.process.log.read_text(errors="replace").splitlines()
            if line.startswith(("Server ", "backend "))
        ]
