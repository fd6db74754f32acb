"""What the gateway benchmarks share: waiting for a started process to answer, and the
traffic they send (a national population lookup with its accountability headers, N
requests from C concurrent workers, latencies kept)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiohttp
import orjson
import yaml

PROVIDER = "000.00.00.G01"
LOOKUP_PATH = f"/r1/{PROVIDER}/csdlqg-dancu/v1/cong-dan/tra-cuu"
BODY = orjson.dumps({"SoDinhDanh": "001099012345"})
HEADERS = {
    "Content-Type": "application/json",
    "X-Officer-Id": "CB-0042",
    "X-Procedure-Code": "1.001234",
}


def sample_policies(directory: Path) -> Path:
    """Copy the sample policies into `directory`, without their rate limits: a benchmark
    measures the gateway, not the province's allowance for one system."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in Path(__file__).resolve().parent.parent.glob("policies/*.yaml"):
        doc = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        doc.pop("rate_limits", None)
        (directory / source.name).write_text(
            yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
    return directory


NATIONAL_SECRET = "bench-national-secret"
PROVINCE = "000.00.00.H49"


def quantile_ms(values: Sequence[float], q: float) -> float:
    """The q-quantile (no interpolation) of latencies in seconds, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_env(work: Path, port: int, ndxp_url: str) -> dict[str, str]:
    """The `LGSP_*` environment of a benchmark gateway: SQLite, keys and spool in `work`,
    the national platform at `ndxp_url`, warnings only."""
    repo = Path(__file__).resolve().parent.parent
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("LGSP_")},
        "LGSP_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'lgsp.db'}",
        "LGSP_KEYS_DIR": str(work / "keys"),
        "LGSP_SCHEMAS_DIR": str(repo / "schemas"),
        "LGSP_AUDIT_SPOOL_DIR": str(work / "spool"),
        "LGSP_PORT": str(port),
        "LGSP_LOG_LEVEL": "WARNING",
        "LGSP_NDXP_URL": ndxp_url,
        "LGSP_NDXP_CLIENT_SECRET": NATIONAL_SECRET,
        "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',  # the upstream on 127.0.0.1
        "PYTHONPATH": str(repo),
    }


def prepare_gateway(policies: Path, env: dict[str, str]) -> str:
    """Apply `policies` to the gateway's store (migrating it) and issue a secret for the
    sample system motcua; returns the secret."""
    lgsp = [sys.executable, "-m", "gateway"]
    subprocess.run(
        [*lgsp, "policy", "apply", str(policies)], env=env, check=True, capture_output=True
    )
    created = subprocess.run(
        [*lgsp, "client", "credential", "motcua"], env=env, check=True, capture_output=True
    )
    return str(orjson.loads(created.stdout)["client_secret"])


async def client_token(base: str, secret: str) -> str:
    """An access token for motcua from the gateway at `base`."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=aiohttp.BasicAuth("motcua", secret),
        ) as r,
    ):
        return str((await r.json())["access_token"])


@contextlib.asynccontextmanager
async def gateway_stack(policies: Path, work: Path) -> AsyncIterator[tuple[str, str]]:
    """`lgsp serve` (SQLite in `work`, the given policies applied) and the national
    simulator as separate processes; yields the gateway's base URL and an access token
    for the sample system motcua. Stops both and removes `work` on the way out."""
    port, sim_port = free_port(), free_port()
    env = gateway_env(work, port, f"http://127.0.0.1:{sim_port}")
    secret = prepare_gateway(policies, env)
    lgsp = [sys.executable, "-m", "gateway"]
    simulator = [sys.executable, "-m", "simulator", "--port", str(sim_port)]
    procs = [
        subprocess.Popen(
            [*simulator, "--client", f"{PROVINCE}:{NATIONAL_SECRET}"],
            env=env,
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen([*lgsp, "serve"], env=env, stderr=subprocess.DEVNULL),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"http://127.0.0.1:{sim_port}/healthz")
        await wait_http(f"{base}/healthz")
        yield base, await client_token(base, secret)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


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
    """Send `n` lookups; return each one's latency (s) and the wall time of the round."""
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    return await send_many(session, "POST", url, headers, BODY, n, concurrency)


async def send_many(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    n: int,
    concurrency: int,
) -> tuple[list[float], float]:
    """Send `n` requests from `concurrency` workers; return each one's latency (s) and
    the wall time of the round. Anything but a 2xx stops the run: a benchmark of errors
    measures nothing."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            t = time.perf_counter()
            async with session.request(method, url, data=body, headers=headers) as r:
                await r.read()
                if not 200 <= r.status < 300:
                    raise RuntimeError(f"{url}: HTTP {r.status}: {await r.text()}")
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started
