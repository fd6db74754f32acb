"""Which HTTP client should hold the gateway's upstream connections? The candidates
among well-kept libraries, each sending the same national lookup to the same canned
nginx upstream (bench/upstream_nginx.py) from this one process, over keep-alive
connections, N requests at a fixed concurrency; measured: requests/s and CPU time of
this process per request (what a gateway worker would spend in the client).

    .venv/bin/python -m bench.upstream_clients [--requests 20000] [--concurrency 16]

Rounds alternate the clients; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from bench.http_load import free_port, wait_http
from bench.upstream_nginx import (
    LOOKUP_PATH,
    Nginx,
    find_nginx,
    national_answer,
    national_lookup_body,
    upstream_conf,
)

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer x"}

Send = Callable[[], Awaitable[int]]


async def run(send: Send, n: int, concurrency: int) -> tuple[float, float]:
    """(requests/s, CPU µs per request) for `n` requests from `concurrency` workers."""
    left = iter(range(n))

    async def worker() -> None:
        for _ in left:
            status = await send()
            if status != 200:
                raise RuntimeError(f"upstream answered {status}")

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = find_nginx()
    if binary is None:
        raise SystemExit("nginx is needed: apt-get install nginx-light")
    upstream = Nginx(binary, "clients-upstream")
    port = free_port()
    upstream.write(upstream_conf(upstream.prefix, port, await national_answer()))
    upstream.start([])
    url = f"http://127.0.0.1:{port}{LOOKUP_PATH}"
    body = national_lookup_body()
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        aio = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=30),
            auto_decompress=False,
        )
        hx = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        )

        async def send_aiohttp() -> int:
            async with aio.post(url, data=body, headers=HEADERS) as r:
                await r.read()
                return r.status

        async def send_httpx() -> int:
            r = await hx.post(url, content=body, headers=HEADERS)
            return r.status_code

        clients: dict[str, Send] = {
            f"aiohttp {aiohttp.__version__}": send_aiohttp,
            f"httpx {httpx.__version__}": send_httpx,
        }
        best: dict[str, tuple[float, float]] = {}
        for r in range(args.rounds):
            order = list(clients.items())
            for name, send in order if r % 2 == 0 else reversed(order):
                await run(send, min(2000, args.requests), args.concurrency)  # warm up
                rps, cpu = await run(send, args.requests, args.concurrency)
                if name not in best or rps > best[name][0]:
                    best[name] = (rps, cpu)
        await aio.close()
        await hx.aclose()
    finally:
        upstream.stop()
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"{args.requests} lookups, concurrency {args.concurrency}, event loop {loop}")
    print(f"{'client':<16} {'req/s':>8} {'CPU µs/req':>11}")
    for name, (rps, cpu) in best.items():
        print(f"{name:<16} {rps:>8.0f} {cpu:>11.0f}")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
