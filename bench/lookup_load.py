"""The traffic every gateway benchmark sends: a national population lookup with its
accountability headers, N requests from C concurrent workers, latencies kept."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

PROVIDER = "000.00.00.G01"
LOOKUP_PATH = f"/r1/{PROVIDER}/csdlqg-dancu/v1/cong-dan/tra-cuu"
BODY = orjson.dumps({"SoDinhDanh": "001099012345"})
HEADERS = {
    "Content-Type": "application/json",
    "X-Officer-Id": "CB-0042",
    "X-Procedure-Code": "1.001234",
}


async def lookups(
    session: aiohttp.ClientSession, url: str, token: str, n: int, concurrency: int
) -> tuple[list[float], float]:
    """Send `n` lookups; return each one's latency (s) and the wall time of the round.
    Anything but a 200 stops the run: a benchmark of errors measures nothing."""
    latencies: list[float] = []
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            t = time.perf_counter()
            async with session.post(url, data=BODY, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: HTTP {r.status}: {await r.text()}")
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started
