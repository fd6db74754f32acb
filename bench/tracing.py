"""What traces cost: the gateway's CPU per exchange with OTLP export off and on.

The national simulator, an OTLP/HTTP receiver (in this process: it counts the spans it
is sent, decoding each request) and three `lgsp serve` processes on the sample policies,
each its own SQLite database and keys:

- off: no `LGSP_OTEL_TRACES_ENDPOINT` (the default; the baseline);
- on: every exchange recorded and exported (a server and a client span each);
- on-10pct: `LGSP_OTEL_SAMPLE_RATIO=0.1`, a production-like ratio.

The same national population lookup is sent to each gateway in turn, in rounds whose
order rotates so that machine noise hits all three alike; only one gateway has traffic at
a time. A gateway's CPU (user + system, of its whole process tree, from /proc) is read
before a round and after it, once its spans have arrived at the receiver (the exporter's
thread encodes and sends them after the exchange, and that work counts), plus the same
settling time for every gateway. CPU per exchange is that difference over the round's
exchanges; the idle cost of the settling time is in every column alike.

Before that, in this process and without HTTP, what the tracing code itself costs per
exchange (one server span, one client span): noting it while the exchange runs and
building its spans at the end (on the event loop), then encoding them as OTLP protobuf
(in the exporter's thread); CPU time of this thread, so that the load of a shared machine
matters less than wall time would.

    .venv/bin/python -m bench.tracing [--requests 2000] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.http_load import (
    LOOKUP_PATH,
    NATIONAL_SECRET,
    PROVINCE,
    client_token,
    free_port,
    gateway_env,
    lookups,
    prepare_gateway,
    quantile_ms,
    sample_policies,
    wait_http,
)

SETTLE_SECONDS = 0.6  # after the spans have arrived: the same for every gateway
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Gateway:
    name: str
    extra_env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    cpu_us: list[float] = field(default_factory=list)  # per exchange, per round
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Receiver:
    """OTLP/HTTP traces: counts the spans each gateway (by port's instance id) sent."""

    def __init__(self) -> None:
        self.spans: dict[str, int] = {}

    async def handle(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for rs in message.resource_spans:
            attributes = {a.key: a.value.string_value for a in rs.resource.attributes}
            instance = attributes.get("service.instance.id", "?")
            n = sum(len(ss.spans) for ss in rs.scope_spans)
            self.spans[instance] = self.spans.get(instance, 0) + n
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and every process under it, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


async def start(gw: Gateway, work: Path, ndxp_url: str, policies: Path) -> None:
    gw.port = free_port()
    (work / gw.name).mkdir()
    env = {**gateway_env(work / gw.name, gw.port, ndxp_url), **gw.extra_env}
    env["LGSP_INSTANCE_ID"] = gw.name
    try:
        secret = await asyncio.to_thread(prepare_gateway, policies, env)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{gw.name}: {shlex.join(e.cmd)}: {e.stderr.decode()}") from None
    gw.proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--no-migrate"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    await wait_http(gw.url + "/readyz", 60)
    gw.token = await client_token(gw.url, secret)


async def one_round(
    session: aiohttp.ClientSession, gw: Gateway, receiver: Receiver, n: int, concurrency: int
) -> None:
    assert gw.proc is not None
    before_spans = receiver.spans.get(gw.name, 0)
    cpu0 = tree_cpu_seconds(gw.proc.pid)
    latencies, wall = await lookups(session, gw.url + LOOKUP_PATH, gw.token, n, concurrency)
    if gw.extra_env.get("LGSP_OTEL_SAMPLE_RATIO") is None and gw.extra_env:
        # Every exchange is recorded: wait for its two spans each.
        deadline = time.monotonic() + 30
        while receiver.spans.get(gw.name, 0) - before_spans < 2 * n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{gw.name}: spans missing after 30 s")
            await asyncio.sleep(0.05)
    else:
        await asyncio.sleep(0.5)  # the sampled exporter's batch: at most its delay (0.2 s)
    await asyncio.sleep(SETTLE_SECONDS)
    cpu = tree_cpu_seconds(gw.proc.pid) - cpu0
    gw.cpu_us.append(cpu / n * 1e6)
    gw.rps.append(n / wall)
    gw.p50.append(quantile_ms(latencies, 0.5))


class _Drop:
    """A span exporter that keeps nothing (the processor's thread still runs)."""

    def export(self, spans: object) -> object:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def in_process(n: int = 20_000) -> tuple[float, float]:
    """µs per exchange: noting and building its two spans; encoding them (OTLP)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import ReadableSpan

    from gateway.telemetry.otlp import OtlpTracer
    from gateway.telemetry.tracecontext import TraceContext

    built: list[ReadableSpan] = []
    tracer = OtlpTracer(_Drop(), service_name="lgsp-gateway", instance="bench")  # type: ignore[arg-type]
    tracer._processor.on_end = built.append  # type: ignore[method-assign]
    caller = ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
    started = time.thread_time()
    for _ in range(n):
        trace, span = tracer.start(TraceContext.from_headers(caller, []))
        assert span is not None
        attempt = span.client_span("POST", "ndxp")
        attempt.traceparent(trace)
        attempt.answered(200)
        span.end(
            method="POST", status=200, outcome="ok", service="000.00.00.G01/csdlqg-dancu/v1",
            client="motcua", agency="000.00.31.H49", request_id="0f8fad5b-d9cb-469f-a165",
        )  # fmt: skip
    noted = (time.thread_time() - started) / n * 1e6
    # TraceContext.from_headers is made with traces off too: not the tracing's cost.
    started = time.thread_time()
    for _ in range(n):
        TraceContext.from_headers(caller, [])
    noted -= (time.thread_time() - started) / n * 1e6
    started = time.thread_time()
    for i in range(0, len(built), 512):  # the processor's batch size
        encode_spans(built[i : i + 512]).SerializeToString()
    encoded = (time.thread_time() - started) / n * 1e6
    tracer.close()
    return noted, encoded


def header(args: argparse.Namespace) -> None:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    print(f"$ {shlex.join(sys.orig_argv)}")
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"requests {args.requests} per round and gateway, rounds {args.rounds} (+1 warm-up), "
        f"concurrency {args.concurrency}; the national population lookup (sample policies)"
    )


def report(gateways: list[Gateway]) -> None:
    base = statistics.median(gateways[0].cpu_us)
    head = (
        f"{'gateway':<12} {'CPU µs/exchange':>16} {'added':>8} {'added %':>8} "
        f"{'exchanges/s':>12} {'p50 ms':>7}   per round (CPU µs)"
    )
    print("\nMedians over the rounds; added: vs off, in the same run, the median of each")
    print("round's difference (the gateways of a round run back to back, under the same load)")
    print(head)
    print("-" * len(head))
    for gw in gateways:
        cpu = statistics.median(gw.cpu_us)
        rounds = ", ".join(f"{c:.0f}" for c in gw.cpu_us)
        added = statistics.median(a - b for a, b in zip(gw.cpu_us, gateways[0].cpu_us, strict=True))
        print(
            f"{gw.name:<12} {cpu:>16.0f} {added:>+8.0f} {added / base * 100:>+7.1f}% "
            f"{statistics.median(gw.rps):>12.0f} {statistics.median(gw.p50):>7.2f}   {rounds}"
        )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="per round and gateway")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    header(args)
    noted, encoded = in_process()
    print(
        "\nIn process, per exchange (a server and a client span): "
        f"{noted:.1f} µs noting and building them on the event loop, "
        f"{encoded:.1f} µs encoding them (OTLP protobuf, exporter thread)"
    )

    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-tracing-"))
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    otlp_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", otlp_port).start()
    endpoint = f"http://127.0.0.1:{otlp_port}/v1/traces"
    on = {"LGSP_OTEL_TRACES_ENDPOINT": endpoint, "LGSP_OTEL_EXPORT_DELAY_SECONDS": "0.2"}
    gateways = [
        Gateway("off", {}),
        Gateway("on", dict(on)),
        Gateway("on-10pct", {**on, "LGSP_OTEL_SAMPLE_RATIO": "0.1"}),
    ]
    sim_port = free_port()
    simulator = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", str(sim_port),
         "--client", f"{PROVINCE}:{NATIONAL_SECRET}"],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )  # fmt: skip
    try:
        await wait_http(f"http://127.0.0.1:{sim_port}/healthz")
        policies = sample_policies(work / "policies")
        for gw in gateways:
            await start(gw, work, f"http://127.0.0.1:{sim_port}", policies)
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for gw in gateways:  # warm-up: pools, tokens, caches
                await lookups(session, gw.url + LOOKUP_PATH, gw.token, 200, args.concurrency)
            for r in range(args.rounds):
                k = r % len(gateways)
                for gw in gateways[k:] + gateways[:k]:
                    print(f"... round {r + 1}: {gw.name}", file=sys.stderr, flush=True)
                    await one_round(session, gw, receiver, args.requests, args.concurrency)
        report(gateways)
        print(f"\nspans received: {receiver.spans}")
    finally:
        for gw in gateways:
            if gw.proc is not None:
                gw.proc.terminate()
                gw.proc.wait(timeout=30)
        simulator.terminate()
        simulator.wait(timeout=10)
        await runner.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
