"""What schema validation costs per exchange.

Runs the national simulator and `lgsp serve` (SQLite, its own temporary directory) as
separate processes, then sends the same citizen lookup through two services that differ
only in schema validation: `csdlqg-dancu` (request and response validated against the
bundled national schemas) and `csdlqg-dancu-raw` (no schemas). Rounds alternate between
the two so that drift on a noisy machine hits both alike. Also times the two validators
alone on the same messages, which is the cost the end-to-end difference should show.

    .venv/bin/python -m bench.validation [--requests 2000] [--rounds 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import yaml

from bench.http_load import BODY, PROVIDER, gateway_stack, sample_policies
from bench.http_load import lookups as run_round
from bench.http_load import quantile_ms as pct
from gateway.registry.schema import compile_validator, parse

REPO = Path(__file__).resolve().parent.parent


def write_policy(directory: Path) -> None:
    """The sample policy plus a copy of the population service without schemas."""
    sample_policies(directory)
    doc = yaml.safe_load((directory / "population.yaml").read_text(encoding="utf-8"))
    raw = {**doc["services"][0], "code": "csdlqg-dancu-raw"}
    raw.pop("schemas")
    (directory / "population-raw.yaml").write_text(
        yaml.safe_dump({"services": [raw]}, allow_unicode=True), encoding="utf-8"
    )


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
    async with gateway_stack(policies, work) as (base, token):
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
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
