"""What schema validation costs per exchange.

Runs the national simulator and `lgsp serve` (SQLite, its own temporary directory) as
separate processes, then sends the same citizen lookup through two services that differ
only in schema validation: `csdlqg-dancu` (request and response validated against the
bundled national schemas) and `csdlqg-dancu-raw` (no schemas). Rounds alternate between
the two so that drift on a noisy machine hits both alike. Also times the two validators
alone on the same messages, which is the cost the end-to-end difference should show.

    .venv/bin/python bench/validation.py [--requests 2000] [--rounds 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from http_load import BODY, PROVIDER, wait_http  # noqa: E402
from http_load import lookups as run_round  # noqa: E402

from gateway.registry.schema import compile_validator, parse  # noqa: E402
from gateway.upstream import basic_authorization  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_policy(directory: Path) -> None:
    """The sample policy plus a copy of the population service without schemas."""
    for f in (REPO / "policies").glob("*.yaml"):
        shutil.copy(f, directory / f.name)
    population = (directory / "population.yaml").read_text(encoding="utf-8")
    start = population.index("  - provider:")
    raw = population[start:].replace("code: csdlqg-dancu", "code: csdlqg-dancu-raw", 1)
    schemas_block = raw[raw.index("    schemas:") : raw.index("    timeouts:")]
    raw = raw.replace(schemas_block, "")
    (directory / "population-raw.yaml").write_text("services:\n" + raw, encoding="utf-8")


def validator_cost(repeat: int = 20000) -> float:
    """Microseconds per exchange to validate one request and one response, alone."""
    schemas = REPO / "schemas" / "population"
    request = compile_validator(
        parse("JSON", (schemas / "citizen-lookup.national.request.json").read_text())
    )
    response = compile_validator(
        parse("JSON", (schemas / "citizen-lookup.national.response.json").read_text())
    )
    citizen = orjson.loads((REPO / "simulator" / "data" / "citizens.json").read_bytes())[0]
    citizen.pop("HanChe", None)
    answer = orjson.dumps({"MaYeuCau": "r", "MaLoi": "0", "MoTaLoi": "ok", "CongDan": citizen})
    t = time.perf_counter()
    for _ in range(repeat):
        assert not request.errors(BODY) and not response.errors(answer)
    return (time.perf_counter() - t) / repeat * 1e6


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="per round and service")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-"))
    policies = work / "policies"
    policies.mkdir()
    write_policy(policies)
    port, sim_port = free_port(), free_port()
    national_secret = "bench-national-secret"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LGSP_")},
        "LGSP_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'lgsp.db'}",
        "LGSP_KEYS_DIR": str(work / "keys"),
        "LGSP_SCHEMAS_DIR": str(REPO / "schemas"),
        "LGSP_PORT": str(port),
        "LGSP_LOG_LEVEL": "WARNING",
        "LGSP_NDXP_URL": f"http://127.0.0.1:{sim_port}",
        "LGSP_NDXP_CLIENT_SECRET": national_secret,
        "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',  # the simulator on 127.0.0.1
        "PYTHONPATH": str(REPO),
    }
    lgsp = [sys.executable, "-m", "gateway"]
    subprocess.run(
        [*lgsp, "policy", "apply", str(policies)], env=env, check=True, capture_output=True
    )
    created = subprocess.run(
        [*lgsp, "client", "credential", "motcua"], env=env, check=True, capture_output=True
    )
    secret = orjson.loads(created.stdout)["client_secret"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                "--port",
                str(sim_port),
                "--client",
                f"000.00.00.H49:{national_secret}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen([*lgsp, "serve"], env=env, stderr=subprocess.DEVNULL),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"http://127.0.0.1:{sim_port}/healthz")
        await wait_http(f"{base}/healthz")
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(
                f"{base}/oauth2/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": basic_authorization("motcua", secret)},
            ) as r:
                token = (await r.json())["access_token"]
            services = {
                "no validation": f"{base}/r1/{PROVIDER}/csdlqg-dancu-raw/v1/cong-dan/tra-cuu",
                "request + response validated": (
                    f"{base}/r1/{PROVIDER}/csdlqg-dancu/v1/cong-dan/tra-cuu"
                ),
            }
            for url in services.values():  # warm up: pools, token, caches
                await run_round(session, url, token, 200, args.concurrency)
            results: dict[str, tuple[list[float], float]] = {k: ([], 0.0) for k in services}
            round_means: dict[str, list[float]] = {k: [] for k in services}
            for _ in range(args.rounds):
                for name, url in services.items():
                    lat, took = await run_round(
                        session, url, token, args.requests, args.concurrency
                    )
                    results[name] = (results[name][0] + lat, results[name][1] + took)
                    round_means[name].append(statistics.fmean(lat) * 1e6)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    alone = validator_cost()
    print(
        f"\n{args.rounds} rounds x {args.requests} requests per service, "
        f"concurrency {args.concurrency}, gateway and simulator on this machine "
        f"({os.cpu_count()} cores)\n"
    )
    print(f"{'exchange':32} {'req/s':>8} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}")
    means = {}
    for name, (lat, took) in results.items():
        means[name] = statistics.fmean(lat) * 1000
        print(
            f"{name:32} {len(lat) / took:8.0f} {means[name]:8.3f} "
            f"{pct(lat, 0.50):8.3f} {pct(lat, 0.99):8.3f}"
        )
    names = list(results)
    diff_us = (means[names[1]] - means[names[0]]) * 1000
    per_round = [b - a for a, b in zip(round_means[names[0]], round_means[names[1]], strict=True)]
    print(
        f"\nvalidation cost per exchange, end to end (mean latency difference): "
        f"{diff_us:+.1f} µs; per round: "
        + ", ".join(f"{d:+.0f}" for d in per_round)
        + " µs (the spread is this machine's noise)"
    )
    print(f"validation cost per exchange, validators alone (parse + validate both): {alone:.1f} µs")


if __name__ == "__main__":
    asyncio.run(main())
