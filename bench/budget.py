"""The gateway's CPU per exchange, split by part: py-spy's samples of a worker under load,
each given to the part its innermost recognised frame belongs to, times the worker's CPU
seconds per exchange over the same window (/proc). Printed by `python -m bench.proxies`
after its table, so the next person sees where an exchange's time goes without reading a
flame graph.

A sample goes to the first rule that matches walking from the leaf to the root: a frame
of the population adapter inside a pipeline step counts as mapping, a frame of aiohttp's
client inside the upstream module as the upstream client. Frames every part shares
(asyncio's, aiohttp's streams and helpers, multidict, yarl) match no rule, so the walk goes
on to the frame that called them; a sample with no recognised frame is the event loop's.

Example::

    parts = split(Path("profile.txt").read_text())
    for line in table(parts, cpu_us_per_exchange=1200.0):
        print(line)

    budget = await measure(run_load, worker_pid, seconds=10, pin=["taskset", "-c", "0"])
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.processes import cpu_seconds
from bench.py_spy import frame_name, idle_sites, py_spy

__all__ = ["PARTS", "Budget", "measure", "part_of", "split", "table"]

# (part, a regular expression over `func (short/path.py)`), in the order the walk tries
# them at each frame. The first group is checked at every frame before the broader ones.
PARTS: tuple[tuple[str, str], ...] = (
    ("mapping (adapter, mapping engine)", r"\((adapters/|gateway/conversion/)"),
    ("validation (schemas)", r"\((gateway/registry/|jsonschema)"),
    ("audit shipper (Kafka)", r"\((gateway/audit/kafka|aiokafka/|kafka/)"),
    ("audit (event, chain, spool, store)", r"\((gateway/audit/|aiosqlite/|sqlalchemy/)"),
    ("upstream client", r"\((gateway/upstream/|aiohttp/client|aiohttp/connector)"),
    ("pipeline steps", r"\((gateway/exchange/|gateway/identity/|gateway/limits/)"),
    ("metrics, traces", r"\((gateway/telemetry/|prometheus_client/)"),
    ("server (aiohttp, edge)", r"\((aiohttp/web|aiohttp/http_writer|gateway/edge/)"),
    ("logging", r"\((structlog/|logging/)"),
)
EVENT_LOOP = "event loop, other"
_RULES = tuple((name, re.compile(pattern)) for name, pattern in PARTS)


def part_of(frames: list[str]) -> str:
    """The part a sample belongs to: `frames` root first, as py-spy writes them, each
    already shortened by `frame_name`."""
    for frame in reversed(frames):
        for name, rule in _RULES:
            if rule.search(frame):
                return name
    return EVENT_LOOP


def split(raw: str) -> Counter[str]:
    """Samples per part from py-spy's collapsed stacks (`--format raw`), idle pool
    threads left out."""
    idle = idle_sites()
    out: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1] in idle:
            continue
        out[part_of([frame_name(f) for f in frames])] += int(count)
    return out


def table(parts: Counter[str], cpu_us_per_exchange: float) -> Iterable[str]:
    """Lines of the budget: each part's share of the samples and its µs per exchange."""
    total = sum(parts.values()) or 1
    yield f"{'part':<38} {'share':>6} {'µs/exchange':>12}"
    order = [name for name, _ in PARTS] + [EVENT_LOOP]
    for name in sorted(order, key=lambda n: -parts.get(n, 0)):
        share = parts.get(name, 0) / total
        yield f"{name:<38} {share:>6.1%} {share * cpu_us_per_exchange:>12.0f}"
    yield f"{'all (worker CPU / exchanges answered)':<38} {'100%':>6} {cpu_us_per_exchange:>12.0f}"


@dataclass(frozen=True)
class Budget:
    parts: Counter[str]  # py-spy samples per part
    cpu_us_per_exchange: float  # the worker's user + system CPU over the load's answers
    exchanges: int


async def measure(
    run_load: Callable[[float], Awaitable[int]],
    worker_pid: int,
    seconds: float,
    pin: list[str],
) -> Budget:
    """Sample `worker_pid` with py-spy while `run_load(seconds)` loads it.

    Parameters: `run_load` runs the load for the given seconds and returns the number of
    exchanges answered; `worker_pid` is the gateway worker (not `lgsp serve`'s parent);
    `pin` places py-spy (a `taskset` prefix, or empty) off the worker's core.
    Returns the samples per part and the worker's CPU per exchange over the load.
    """
    spy = py_spy()
    with tempfile.TemporaryDirectory(prefix="lgsp-budget-") as tmp:
        raw = Path(tmp) / "profile.txt"
        before = cpu_seconds(worker_pid)
        load = asyncio.ensure_future(run_load(seconds))
        await asyncio.sleep(0.5)  # py-spy inside the load's window
        record = await asyncio.create_subprocess_exec(
            *pin, spy, "record", "--pid", str(worker_pid), "--duration",
            str(max(1, round(seconds - 1))), "--format", "raw", "--output", str(raw),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        text, _ = await record.communicate()
        exchanges = await load
        after = cpu_seconds(worker_pid)
        if record.returncode != 0:
            raise RuntimeError(f"py-spy failed:\n{text.decode(errors='replace')}")
        parts = split(raw.read_text(errors="replace"))
    if before is None or after is None or exchanges <= 0:
        raise RuntimeError("the worker exited or answered nothing while it was sampled")
    return Budget(parts, (after - before) / exchanges * 1e6, exchanges)
