"""How fast the auditors' console answers on a large audit store (PostgreSQL).

A throwaway database is migrated and seeded with N exchanges (COPY, in batches) spread
over the last twelve months: 40 calling agencies, 25 services, 200 procedures, a case
number per exchange, and a personal identification number in the path of every other
exchange (drawn from 50,000 citizens, with the keyed-hash index rows the store writer
makes), plus one "busy" citizen with 300 exchanges. Then the real gateway app is started
in this process, a session opened for an auditor, and each console page is fetched over
HTTP, one at a time, R times: its p50 and p95 are printed.

The export is timed separately: 100,000 records (or all, if fewer) streamed as CSV and
as JSON Lines, with this process's peak RSS before and after (the gateway runs in this
process, so a growing export would show as a growing peak); the client reads and drops
the bytes.

    .venv/bin/python -m bench.console_audit [--exchanges 100000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from bench.audit_store import (
    Batch,
    Gateway,
    copy_batches,
    create_database,
    drop_database,
    fill_rollup,
    start_gateway,
    timed,
)
from gateway.audit.subjects import load_subject_key

BATCH = 50_000
CITIZENS = 50_000
BUSY = "001188000777"


def _citizen(i: int) -> str:
    return f"0{i % 96:02d}0{88 + i % 10:02d}{i:06d}"[:12]


def batches(n: int, keys_dir: Path) -> Iterator[Batch]:
    """N exchanges and their subject rows, BATCH at a time."""
    key = load_subject_key(keys_dir)
    rnd = random.Random(13)  # noqa: S311 (made-up data, reproducible)
    now = datetime.now(UTC)
    span = timedelta(days=365).total_seconds()
    for start in range(0, n, BATCH):
        rows, subjects = [], []
        for i in range(start, min(n, start + BATCH)):
            at = now - timedelta(seconds=span * (n - i) / n)
            citizen = BUSY if i % (n // 300 or 1) == 0 else _citizen(rnd.randrange(CITIZENS))
            path = (
                f"/r1/000.00.00.G01/csdlqg-dancu/v1/cong-dan/{citizen}"
                if i % 2 == 0
                else (f"/r1/000.00.00.H49/echo/v1/ho-so/{i}")
            )
            event_id = str(uuid.UUID(int=rnd.getrandbits(128)))
            rows.append(
                (
                    event_id,
                    f"req-{i}",
                    "seeded-gw",  # not this gateway: its tree log leaves them be
                    f"he-thong-{i % 60}",
                    f"000.00.{i % 40:02d}.H49",
                    "000.00.00.G01",
                    f"dich-vu-{i % 25}",
                    "v1",
                    "GET",
                    path,
                    f"CB-{i % 3000:04d}",
                    f"1.00{i % 200:04d}",
                    f"000.00.{i % 40:02d}.H49-{i:08d}",
                    at,
                    at + timedelta(milliseconds=40),
                    40.0 + i % 100,
                    120,
                    900,
                    200 if i % 20 else 403,
                    i + 1,
                    "0" * 64,
                    f"{i:064x}",
                )
            )
            if i % 2 == 0:
                subjects.append((key.digest(citizen), event_id, at))
        yield rows, subjects


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def export(http: aiohttp.ClientSession, url: str) -> tuple[int, float, float]:
    t0 = time.perf_counter()
    lines = 0
    async with http.get(url) as r:
        assert r.status == 200
        async for chunk in r.content.iter_chunked(1 << 16):
            lines += chunk.count(b"\n")
    return lines, time.perf_counter() - t0, _peak_rss_mb()


async def run(n: int, repeat: int) -> None:
    url = await create_database(prefix="lgsp_bench_console")
    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-console-"))
    gateway: Gateway | None = None
    try:
        seconds = await copy_batches(url, batches(n, work / "keys"))
        print(f"seeded {n:,} exchanges (+{n // 2:,} subject rows) in {seconds:.1f} s")
        seconds = await fill_rollup(url)
        print(f"statistics roll-up filled from them (as migration 0024 does) in {seconds:.1f} s")
        gateway = await start_gateway(url, work)
        port, csrf = gateway.port, gateway.csrf
        base = f"{gateway.base}/console/audit"
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            jar.update_cookies({"lgsp_console": gateway.session_token})
            month = (datetime.now(UTC) - timedelta(days=100)).strftime("%Y-%m")
            year, mon = (int(p) for p in month.split("-"))
            after = f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"  # the next month
            pages = {
                "search, no filter, first page": ("GET", f"{base}/exchanges", {}),
                "search by case number": (
                    "GET", f"{base}/exchanges?case=000.00.07.H49-{n // 2 + 7:08d}", {},
                ),
                "search by agency + procedure + month": (
                    "GET",
                    f"{base}/exchanges?agency=000.00.05.H49&procedure=1.000005"
                    f"&since={month}-01&until={month}-28",
                    {},
                ),
                "search by officer": ("GET", f"{base}/exchanges?officer=CB-0042", {}),
                "search by request id": ("GET", f"{base}/exchanges?request_id=req-{n // 3}", {}),
                "stats by agency, one month (roll-up)": (
                    "GET", f"{base}/stats?by=agency&since={month}-01&until={after}-01", {},
                ),
                "stats by month, one agency (roll-up)": (
                    "GET", f"{base}/stats?by=month&agency=000.00.05.H49", {},
                ),
                "stats by agency, 27 days (roll-up)": (
                    "GET", f"{base}/stats?by=agency&since={month}-01&until={month}-28", {},
                ),
                "stats, 27 days across two months (roll-up)": (
                    "GET", f"{base}/stats?by=month&since={month}-15&until={after}-11", {},
                ),
                "stats, 27 days, one client (records)": (
                    "GET",
                    f"{base}/stats?by=agency&client=he-thong-5"
                    f"&since={month}-01&until={month}-28",
                    {},
                ),
                "record of reads": ("GET", f"{base}/reads", {}),
                "citizen report (busy citizen)": (
                    "POST", f"{base}/citizen", {"data": {"csrf": csrf, "number": BUSY}},
                ),
                "citizen report (typical citizen)": (
                    "POST", f"{base}/citizen", {"data": {"csrf": csrf, "number": _citizen(7)}},
                ),
            }  # fmt: skip
            print(f"\n{'page':42} {'p50 ms':>8} {'p95 ms':>8}   ({repeat} each, sequential)")
            for name, (method, target, kw) in pages.items():
                p50, p95, body = await timed(http, method, target, repeat, **kw)
                print(f"{name:42} {p50:8.1f} {p95:8.1f}")
                if name == "search, no filter, first page":
                    first = body
            # Deep pages: follow the cursor 20 pages on.
            link = re.search(r'id="next" href="([^"]+)"', first)
            deep: list[float] = []
            for _ in range(20):
                assert link is not None
                target = f"http://127.0.0.1:{port}{link.group(1).replace('&amp;', '&')}"
                p50, _, body = await timed(http, "GET", target, 1)
                deep.append(p50)
                link = re.search(r'id="next" href="([^"]+)"', body)
            deep.sort()
            print(f"{'search, next page (20 pages deep)':42} {statistics.median(deep):8.1f} "
                  f"{deep[-1]:8.1f} (max)")  # fmt: skip
            record = re.search(r'href="/console/audit/exchanges/([0-9a-f-]{36})"', first)
            assert record is not None
            p50, p95, _ = await timed(http, "GET", f"{base}/exchanges/{record.group(1)}", repeat)
            print(f"{'record page':42} {p50:8.1f} {p95:8.1f}")

            count = min(n, 100_000)
            recent = (datetime.now(UTC) - timedelta(days=365 * count / n)).strftime("%Y-%m-%d")
            before = _peak_rss_mb()
            print(f"\nexports of the records since {recent} (~{count:,}); peak RSS before "
                  f"{before:.0f} MB")  # fmt: skip
            for fmt in ("csv", "jsonl", "csv"):
                lines, secs, peak = await export(http, f"{base}/export.{fmt}?since={recent}")
                print(f"  {fmt:5} {lines:>9,} lines in {secs:5.1f} s, peak RSS {peak:.0f} MB")
    finally:
        if gateway is not None:
            await gateway.close()
        await drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.exchanges, args.repeat))


if __name__ == "__main__":
    main()
