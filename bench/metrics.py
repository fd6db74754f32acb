"""What counting an exchange costs: `GatewayMetrics.exchange` and `.upstream`, the two
calls the request path makes, in one process and in multi-process mode (mmap files, as
`lgsp serve --workers N` runs them); baselines: an empty call, and the same two
observations made straight on prometheus_client's histograms (what the gateway avoids by
counting in its own lists and flushing once a second).

    .venv/bin/python -m bench.metrics
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

N = 200_000
SERVICE = ("000.00.00.G01", "csdlqg-dancu", "v2")


def measure() -> tuple[float, float, float]:
    from gateway.telemetry.metrics import GatewayMetrics

    m = GatewayMetrics("bench")

    def nothing(*_: object) -> None:
        return None

    def per_call(work: object) -> float:
        started = time.perf_counter()
        for _ in range(N):
            work()  # type: ignore[operator]
        return (time.perf_counter() - started) / N * 1e6

    base = per_call(lambda: nothing(SERVICE, "motcua", "ok", 0.003))
    cost = per_call(
        lambda: (m.exchange(SERVICE, "motcua", "ok", 0.003), m.upstream("ndxp", 200, 0.002))
    )
    exchange = m.exchange_seconds.labels("000.00.00.G01/csdlqg-dancu/v2", "motcua", "ok")
    upstream = m.upstream_seconds.labels("ndxp", "2xx")
    direct = per_call(lambda: (exchange.observe(0.003), upstream.observe(0.002)))
    return base, cost, direct


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        base, cost, direct = measure()
        print(f"{base:.3f} {cost:.3f} {direct:.3f}")
        return
    rows = []
    for mode in ("one process", "multi-process"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory() as directory:
            if mode == "multi-process":
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            out = subprocess.run(
                [sys.executable, __file__, "--child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
        rows.append((mode, float(out[0]), float(out[1]), float(out[2])))
    print("µs per exchange (an empty call subtracted)")
    print(f"{'mode':<14} {'gateway':>8} {'prometheus_client directly':>27}")
    for mode, base, cost, direct in rows:
        print(f"{mode:<14} {cost - base:>8.2f} {direct - base:>27.2f}")


if __name__ == "__main__":
    main()
