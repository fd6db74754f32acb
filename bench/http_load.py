"""What the gateway benchmarks share: waiting for a started process to answer, and the
traffic they send (a national population lookup with its accountability headers, N
requests from C concurrent workers, latencies kept)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

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


async def wait_http(
    url: str, seconds: float = 30, proc_check: Callable[[], None] | None = None
) -> None:
    """Until `url` answers 200; `proc_check` raises if the process behind it has died."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as s:
        while True:
            if proc_check is not None:
                proc_check()
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


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
