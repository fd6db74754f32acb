"""What counting an exchange costs: `GatewayMetrics.exchange` and `.upstream`, the two
calls the request path makes, in one process and in multi-process mode (mmap files, as
`lgsp serve --workers N` runs them); baseline: an empty call.

    .venv/bin/python bench/metrics.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

N = 200_000
SERVICE = ("000.00.00.G01", "csdlqg-dancu", "v2")


def measure() -> tuple[float, float]:
    from gateway.metrics import GatewayMetrics

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
    return base, cost


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        base, cost = measure()
        print(f"{base:.3f} {cost:.3f}")
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
        rows.append((mode, float(out[0]), float(out[1])))
    print(f"{'mode':<14} {'empty call µs':>14} {'counting µs':>12} {'added µs':>9}")
    for mode, base, cost in rows:
        print(f"{mode:<14} {base:>14.2f} {cost:>12.2f} {cost - base:>9.2f}")


if __name__ == "__main__":
    main()
