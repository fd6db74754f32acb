"""Rate-limit check latency before, during and after a Redis outage (issue 21, point 5:
"after Redis came back, p99 rose to ~250 ms for a while against 31 ms before").

`RedisLimiter` (gateway/limits/ratelimit.py) in this process, as a gateway worker runs
it, against the local Redis (`LGSP_TEST_REDIS_URL`, default 127.0.0.1:6379) reached
through a relay in a process of its own (`python -m tests.relay`) that is cut (every connection
reset, new ones refused) for `--outage` seconds and given back. C concurrent callers
check one limit in a closed loop for the whole run; each check's latency is kept with the
time it started, and reported per window of `--window` seconds: checks, p50, p99, max,
and how many were decided in process (the outage's fallback). One row per window shows
whether the return costs anything, and for how long.

    .venv/bin/python -m bench.redis_return [--concurrency 32] [--before 3] [--outage 2]
                                           [--after 6] [--window 0.5] [--timeout-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

from gateway.limits.ratelimit import Limit, RedisLimiter

__all__ = ["main"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(args: argparse.Namespace) -> None:
    url = os.environ.get("LGSP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    target = urlsplit(url)
    port = _free_port()
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.relay",
            f"127.0.0.1:{port}={target.hostname or '127.0.0.1'}:{target.port or 6379}",
        ],
        stdout=subprocess.PIPE,
    )
    assert relay.stdout is not None
    relay.stdout.readline()  # "ready"
    db = target.path.lstrip("/") or "0"
    limiter = RedisLimiter(
        f"redis://127.0.0.1:{port}/{db}",
        timeout_ms=args.timeout_ms,
        key_prefix=f"bench:{uuid.uuid4().hex[:8]}:",
    )
    limit = Limit("client", "bench", rate=1e6, burst=1_000_000, quota_per_day=None)
    samples: list[tuple[float, float, bool]] = []  # started (s from t0), took (ms), local
    stop = asyncio.Event()
    await limiter.start()
    t0 = time.perf_counter()

    async def caller() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await limiter.check([limit])
            took = time.perf_counter() - started
            samples.append((started - t0, took * 1000, bool(limiter.status()["degraded"])))
            await asyncio.sleep(0)  # a check decided in process awaits nothing

    callers = [asyncio.create_task(caller()) for _ in range(args.concurrency)]
    await asyncio.sleep(args.before)
    cut_at = time.perf_counter() - t0
    relay.send_signal(signal.SIGUSR1)
    await asyncio.sleep(args.outage)
    back_at = time.perf_counter() - t0
    relay.send_signal(signal.SIGUSR2)
    await asyncio.sleep(args.after)
    stop.set()
    await asyncio.gather(*callers)
    await limiter.close()
    relay.kill()
    relay.wait()

    print(
        f"concurrency {args.concurrency}, timeout {args.timeout_ms} ms; Redis cut at "
        f"{cut_at:.2f} s, back at {back_at:.2f} s"
    )
    print(f"{'window':>13} {'checks':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'local':>6}")
    end = max(s[0] for s in samples)
    w = 0.0
    while w < end:
        rows = [s for s in samples if w <= s[0] < w + args.window]
        took = [s[1] for s in rows]
        mark = " cut" if w <= cut_at < w + args.window else ""
        mark = " back" if w <= back_at < w + args.window else mark
        print(
            f"{w:5.1f}-{w + args.window:5.1f} s {len(rows):7d} {_pct(took, 0.5):8.2f} "
            f"{_pct(took, 0.99):8.2f} {max(took, default=float('nan')):8.2f} "
            f"{sum(s[2] for s in rows):6d}{mark}"
        )
        w += args.window
    before = [s[1] for s in samples if s[0] < cut_at]
    after = [s[1] for s in samples if s[0] >= back_at + 1.0]
    print(
        f"before the cut: p50 {statistics.median(before):.2f} ms, p99 {_pct(before, 0.99):.2f} ms;"
        f" from 1 s after the return: p50 {statistics.median(after):.2f} ms,"
        f" p99 {_pct(after, 0.99):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--outage", type=float, default=2.0)
    parser.add_argument("--after", type=float, default=6.0)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--timeout-ms", type=int, default=100)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
