"""The auditor's searches at scale: ten million exchange records in PostgreSQL.

A database of its own (`lgsp_bench_search`, migrated to the real schema) is loaded by COPY
with N generated exchanges (default 10,000,000), then the real gateway app is started in
this process and each search is asked over HTTP, one at a time, R times: through the
auditor API (`/audit/v1`, an auditor system's API key) the searches by time range,
calling agency and service, case number, officer and request id and the daily statistics
for a day and for a month; through the auditors' console (`/console/audit`, an auditor's
session) the search by personal id (the citizen report, on the keyed-hash index: the API
has no such search) and the console's statistics for a day and a month (the roll-up).
The baseline, in the same run, is the plainest read the API has: one record by event id
(a unique-index lookup), so every line's "x base" says what the search costs beyond the
HTTP, authentication and read-recording every request pays.

What is generated, and why that range: a province's ~2,000,000 exchanges a day would make
10M records five days, which has no month boundary, no month to sum and no history for an
index to be deep in. So 40% of the records are the last `--dense-days` days (2) at the
full rate (2,000,000 a day at 10M), and 60% are the `--history-days` (365) before them at
~16,000 a day: every month of a year is there for the monthly figures, and the last days
are as dense as the province's. The spread: 300 calling agencies (Zipf-like weights) with
1 to 3 systems each and 100 officers each, 150 services of 25 providers of which each
agency calls 40 (a few most: Zipf-like again), 7 procedures a service (1,050 procedure
codes), a case number shared by ~3 exchanges of one agency, a random UUID request id and
event id, 4 gateway instances each with its own chain sequence, 94% 2xx / 4.5% 4xx /
1.5% 5xx, durations log-normal (median ~60 ms); 70% of exchanges carry a personal id in
the path, drawn from 1,500,000 citizens (skewed: the busiest has some hundreds of
exchanges, the median citizen a few), with the keyed-hash index rows the store's writer
makes.

Load: the secondary indexes (and unique constraints) of `audit_records` and
`audit_subjects` are dropped after the migrations, the rows COPYed, the indexes built
again from their own definitions, then VACUUM ANALYZE (as autovacuum would), and the
statistics roll-up filled (as migration 0024 does). With `--explain`, each search's SQL,
captured from the query code the API runs, is shown with EXPLAIN (ANALYZE, BUFFERS).

    .venv/bin/python -m bench.audit_search [--exchanges 10000000] [--repeat 20] [--keep]
    .venv/bin/python -m bench.audit_search --reuse [--explain]   # time a kept database again

`--only WORD...` times the baseline and the searches naming a word; `--dense-month`
copies the last full day's roll-up rows into each day of a later month and times the
console's statistics over it (a month's roll-up at the province's rate, which ten million
records do not hold); `--purge` then times retention's purge of the oldest month (it
deletes it). Figures and plans: docs/auditor.md, "Ten million records".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import audit_explain
from bench.audit_store import (
    ADMIN,
    Batch,
    Gateway,
    copy_batches,
    create_database,
    drop_database,
    fill_rollup,
    plain,
    start_gateway,
    timed,
)
from gateway.audit import retention
from gateway.audit.query import VN_TZ
from gateway.audit.subjects import load_subject_key
from gateway.store.db import create_engine, session_factory

DATABASE = "lgsp_bench_search"
BATCH = 50_000
AGENCIES = 300
PROVIDERS = 25
SERVICES = 150
SERVICES_PER_AGENCY = 40  # an agency calls some of the services, a few of them most
PROCEDURES_PER_SERVICE = 7  # the procedures that need a service (1,050 in all)
OFFICERS_PER_AGENCY = 100
CITIZENS = 1_500_000
INSTANCES = 4
BUSY = "001188000777"  # one citizen in 1 of 20,000 exchanges, beside the skew
SEARCH_TARGET_MS = 300.0
MONTH_TARGET_MS = 1000.0


def _zipf(count: int, s: float) -> list[float]:
    """Cumulative weights 1/rank^s, for random.choices."""
    total, out = 0.0, []
    for rank in range(1, count + 1):
        total += 1 / rank**s
        out.append(total)
    return out


def agency_code(a: int) -> str:
    return f"000.{a // 100:02d}.{a % 100:02d}.H49"


def service_of(a: int, rank: int) -> str:
    """The service code of agency `a`'s `rank`-th most called service (rank 0: its top)."""
    return f"dich-vu-{(a * 11 + rank) % SERVICES:03d}"


def citizen_number(c: int) -> str:
    """A 12-digit personal id for citizen `c` (province code, sex/century digit, serial)."""
    return f"0{1 + c % 96:02d}{c % 2}{c:08d}"


@dataclass(frozen=True)
class Shape:
    """Where the records fall in time: `sparse` over the history, `dense` at the end."""

    n: int
    history_days: int
    dense_days: int
    end: datetime

    @property
    def dense(self) -> int:
        return self.n * 2 // 5

    @property
    def sparse(self) -> int:
        return self.n - self.dense

    @property
    def dense_start(self) -> datetime:
        return self.end - timedelta(days=self.dense_days)

    @property
    def start(self) -> datetime:
        return self.dense_start - timedelta(days=self.history_days)

    def at(self, i: int) -> datetime:
        if i < self.sparse:
            span = timedelta(days=self.history_days) * (i / self.sparse)
            return self.start + span
        return self.dense_start + timedelta(days=self.dense_days) * ((i - self.sparse) / self.dense)


def batches(shape: Shape, keys_dir: Path) -> Iterator[Batch]:
    """The exchanges in time order (as the gateway writes them), BATCH at a time."""
    key = load_subject_key(keys_dir)
    rnd = random.Random(20)  # noqa: S311 (made-up data, reproducible)
    agency_w = _zipf(AGENCIES, 0.9)
    service_w = _zipf(SERVICES_PER_AGENCY, 1.0)
    procedure_w = _zipf(PROCEDURES_PER_SERVICE, 1.0)
    # Services belong to providers; national ones (the first few) are the busiest.
    provider_of = [f"000.00.00.G{1 + s % PROVIDERS:02d}" for s in range(SERVICES)]
    agencies = range(AGENCIES)
    services = range(SERVICES_PER_AGENCY)
    procedures = range(PROCEDURES_PER_SERVICE)
    seqs = [0] * INSTANCES
    digests: dict[str, str] = {}
    case_left: dict[int, tuple[str, int]] = {}  # agency -> (open case, exchanges left)
    cases = 0
    for start in range(0, shape.n, BATCH):
        size = min(shape.n, start + BATCH) - start
        a_draw = rnd.choices(agencies, cum_weights=agency_w, k=size)
        s_draw = rnd.choices(services, cum_weights=service_w, k=size)
        p_draw = rnd.choices(procedures, cum_weights=procedure_w, k=size)
        rows, subjects = [], []
        for j in range(size):
            i = start + j
            at = shape.at(i)
            a = a_draw[j]
            svc = (a * 11 + s_draw[j]) % SERVICES
            agency = agency_code(a)
            open_case = case_left.get(a)
            if open_case is None or open_case[1] == 0:
                cases += 1
                open_case = (f"{agency}-{cases:09d}", rnd.randint(1, 5))
            case_number = open_case[0]
            case_left[a] = (case_number, open_case[1] - 1)
            u = rnd.random()
            citizen: str | None = None
            if i % 20_000 == 7:
                citizen = BUSY
            elif u < 0.7:
                citizen = citizen_number(int(CITIZENS * (u / 0.7) ** 1.5))
            provider = provider_of[svc]
            service = f"dich-vu-{svc:03d}"
            path = (
                f"/r1/{provider}/{service}/v1/cong-dan/{citizen}"
                if citizen is not None
                else f"/r1/{provider}/{service}/v1/ho-so/{case_number}"
            )
            r = rnd.random()
            status = 200 if r < 0.94 else 403 if r < 0.965 else 404 if r < 0.985 else 504
            duration = min(30_000.0, rnd.lognormvariate(4.1, 0.6))
            inst = i % INSTANCES
            seqs[inst] += 1
            event_id = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
            rows.append(
                (
                    event_id,
                    str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                    f"seeded-gw-{inst + 1}",  # not this gateway: its tree log leaves them be
                    f"{agency}-ht{a % 3 if a % 2 else 0}",
                    agency,
                    provider,
                    service,
                    "v1",
                    "GET",
                    path,
                    f"CB-{a:03d}-{rnd.randrange(OFFICERS_PER_AGENCY):03d}",
                    f"1.{svc * PROCEDURES_PER_SERVICE + p_draw[j]:06d}",
                    case_number,
                    at,
                    at + timedelta(milliseconds=duration),
                    round(duration, 1),
                    rnd.randint(80, 600),
                    rnd.randint(300, 6000),
                    status,
                    seqs[inst],
                    "0" * 64,
                    f"{i:064x}",
                )
            )
            if citizen is not None:
                digest = digests.get(citizen)
                if digest is None:
                    digest = digests[citizen] = key.digest(citizen)
                subjects.append((digest, event_id, at))
        yield rows, subjects


# -- the bulk load ----------------------------------------------------------------------------


async def load(url: str, shape: Shape, keys_dir: Path) -> dict[str, float]:
    """COPY with the secondary indexes dropped, then build them; seconds per step."""
    conn = await asyncpg.connect(plain(url))
    try:
        indexes = await conn.fetch(
            """
            SELECT i.indexrelid::regclass::text AS name, t.relname AS tab,
                   pg_get_indexdef(i.indexrelid) AS def, c.conname, c.contype,
                   pg_get_constraintdef(c.oid) AS condef
            FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
            LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = t.oid
            WHERE t.relname IN ('audit_records', 'audit_subjects')
              AND NOT (t.relname = 'audit_records' AND i.indisprimary)
            """
        )
        for ix in indexes:
            if ix["conname"]:
                await conn.execute(f'ALTER TABLE {ix["tab"]} DROP CONSTRAINT "{ix["conname"]}"')
            else:
                await conn.execute(f"DROP INDEX {ix['name']}")
    finally:
        await conn.close()
    took = {"copy": await copy_batches(url, batches(shape, keys_dir))}
    conn = await asyncpg.connect(plain(url))
    try:
        t0 = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 2")
        for ix in indexes:
            if ix["conname"]:
                await conn.execute(
                    f'ALTER TABLE {ix["tab"]} ADD CONSTRAINT "{ix["conname"]}" {ix["condef"]}'
                )
            else:
                await conn.execute(ix["def"])
        took["indexes"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE audit_records")
        await conn.execute("VACUUM ANALYZE audit_subjects")
        took["vacuum"] = time.perf_counter() - t0
    finally:
        await conn.close()
    took["rollup"] = await fill_rollup(url)
    conn = await asyncpg.connect(plain(url))
    try:  # as autovacuum would: the roll-up's index-only scans need its visibility map
        await conn.execute("VACUUM ANALYZE audit_stats")
    finally:
        await conn.close()
    return took


async def storage(url: str) -> list[tuple[str, int]]:
    """(relation, bytes) of the audit tables and each of their indexes."""
    conn = await asyncpg.connect(plain(url))
    try:
        rows = await conn.fetch(
            """
            SELECT c.relname, pg_total_relation_size(c.oid) AS total,
                   pg_relation_size(c.oid) AS heap, pg_indexes_size(c.oid) AS ix
            FROM pg_class c
            WHERE c.relname IN ('audit_records', 'audit_subjects', 'audit_stats')
            UNION ALL
            SELECT '  ' || i.relname, pg_relation_size(i.oid), 0, 0
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relname IN ('audit_records', 'audit_subjects')
            ORDER BY 1
            """
        )
    finally:
        await conn.close()
    out = []
    for r in rows:
        out.append((r["relname"], int(r["total"])))
        if not r["relname"].startswith(" "):
            out.append((f"{r['relname']} (heap + toast)", int(r["total"]) - int(r["ix"])))
    return out


# -- the searches -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    name: str
    via: str  # "api" or "console"
    method: str
    target: str  # path and query
    target_ms: float
    data: dict[str, str] | None = None
    repeat: int | None = None  # None: --repeat


async def samples(url: str, shape: Shape) -> dict[str, str]:
    """Values to search for, read from the loaded records (ids are 1..N in load order)."""
    conn = await asyncpg.connect(plain(url))
    try:
        mid = await conn.fetchrow(
            "SELECT request_id, case_number, officer_id, event_id, started_at FROM audit_records"
            " WHERE id = $1",
            shape.sparse + shape.dense // 2,
        )
        old = await conn.fetchrow(
            "SELECT request_id, case_number FROM audit_records WHERE id = $1", shape.sparse // 3
        )
        n = await conn.fetchval("SELECT count(*) FROM audit_records")
    finally:
        await conn.close()
    assert mid is not None and old is not None
    return {**{k: str(v) for k, v in mid.items()}, "old_request_id": old["request_id"],
            "old_case": old["case_number"], "rows": str(n)}  # fmt: skip


def searches(shape: Shape, s: dict[str, str], csrf: str, stats_repeat: int) -> list[Search]:
    day = shape.end.astimezone(VN_TZ).date() - timedelta(days=1)  # the last whole dense day
    next_day = day + timedelta(days=1)
    hour = f"since={day}T10:00:00%2B07:00&until={day}T11:00:00%2B07:00"
    month_start = (shape.dense_start.astimezone(VN_TZ) - timedelta(days=75)).date().replace(day=1)
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    month = f"since={month_start}&until={month_end}"
    top, mid, rare = agency_code(0), agency_code(40), agency_code(250)
    mid10 = service_of(40, 10)
    assert service_of(40, 60) not in {service_of(40, r) for r in range(SERVICES_PER_AGENCY)}
    api, console = "/audit/v1", "/console/audit"
    x = SEARCH_TARGET_MS
    return [
        Search("baseline: one record by event id", "api", "GET",
               f"{api}/exchanges/{s['event_id']}", x),
        Search("time range: one hour of a full day", "api", "GET", f"{api}/exchanges?{hour}", x),
        Search("time range: a whole day", "api", "GET",
               f"{api}/exchanges?since={day}&until={next_day}", x),
        Search("agency + service (busiest agency, top service)", "api", "GET",
               f"{api}/exchanges?agency={top}&service={service_of(0, 0)}", x),
        Search("agency + service (mid agency, its 10th service)", "api", "GET",
               f"{api}/exchanges?agency={mid}&service={service_of(40, 10)}", x),
        Search("agency + service (a service the agency never calls)", "api", "GET",
               f"{api}/exchanges?agency={mid}&service={service_of(40, 60)}", x),
        Search("agency + service (rare agency, its 30th service)", "api", "GET",
               f"{api}/exchanges?agency={rare}&service={service_of(250, 30)}", x),
        Search("agency + service + one day", "api", "GET",
               f"{api}/exchanges?agency={mid}&service={mid10}&since={day}&until={next_day}",
               x),
        Search("case number (recent)", "api", "GET", f"{api}/exchanges?case={s['case_number']}", x),
        Search("case number (a year old)", "api", "GET", f"{api}/exchanges?case={s['old_case']}",
               x),
        Search("officer", "api", "GET", f"{api}/exchanges?officer={s['officer_id']}", x),
        Search("officer + one month", "api", "GET",
               f"{api}/exchanges?officer={s['officer_id']}&{month}", x),
        Search("request id (recent)", "api", "GET",
               f"{api}/exchanges?request_id={s['request_id']}", x),
        Search("request id (a year old)", "api", "GET",
               f"{api}/exchanges?request_id={s['old_request_id']}", x),
        Search("personal id: busy citizen (console report)", "console", "POST",
               f"{console}/citizen", x, {"csrf": csrf, "number": BUSY}),
        Search("personal id: typical citizen (console report)", "console", "POST",
               f"{console}/citizen", x, {"csrf": csrf, "number": citizen_number(CITIZENS // 2)}),
        Search("API daily statistics, one full day", "api", "GET",
               f"{api}/stats/daily?since={day}&until={next_day}", x, repeat=stats_repeat),
        Search("API daily statistics, one month", "api", "GET",
               f"{api}/stats/daily?{month}", MONTH_TARGET_MS, repeat=stats_repeat),
        Search("console statistics by agency, one day (roll-up)", "console", "GET",
               f"{console}/stats?by=agency&since={day}&until={next_day}", x),
        Search("console statistics by agency, one month (roll-up)", "console", "GET",
               f"{console}/stats?by=agency&{month}", MONTH_TARGET_MS),
        Search("console statistics by service, one month (roll-up)", "console", "GET",
               f"{console}/stats?by=service&{month}", MONTH_TARGET_MS),
    ]  # fmt: skip


async def time_searches(
    gateway: Gateway, found: list[Search], repeat: int
) -> list[tuple[Search, float, float]]:
    out = []
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as http:
        jar.update_cookies({"lgsp_console": gateway.session_token})
        key = {"X-Api-Key": gateway.api_key}
        for q in found:
            kw: dict[str, Any] = {"data": q.data} if q.data else {"headers": key}
            await timed(http, q.method, gateway.base + q.target, 1, **kw)  # warm once
            p50, p95, _ = await timed(http, q.method, gateway.base + q.target, q.repeat or repeat,
                                      **kw)  # fmt: skip
            out.append((q, p50, p95))
            print(f"  {q.name}: {p50:.1f} / {p95:.1f} ms", flush=True)
    return out


def report(results: list[tuple[Search, float, float]], repeat: int) -> None:
    base = results[0][2]
    print(f"\n{'search':52} {'p50 ms':>8} {'p95 ms':>8} {'target':>7} {'met':>4} "
          f"{'x base':>7}   ({repeat} each unless said; base: line 1's p95)")  # fmt: skip
    for q, p50, p95 in results:
        met = "yes" if p95 <= q.target_ms else "NO"
        runs = f"  ({q.repeat} runs)" if q.repeat else ""
        print(f"{q.name:52} {p50:8.1f} {p95:8.1f} {q.target_ms:7.0f} {met:>4} "
              f"{p95 / base:7.1f}{runs}")  # fmt: skip


async def dense_month(url: str, shape: Shape) -> list[Search]:
    """The last full day's roll-up rows (the province's rate) copied into each day of the
    month after the records, with no record behind them: what the console's month
    statistics read at 2,000,000 exchanges a day. The console searches over that month."""
    day = shape.end.astimezone(VN_TZ).date() - timedelta(days=1)
    first = (day.replace(day=1) + timedelta(days=62)).replace(day=1)
    after = (first + timedelta(days=32)).replace(day=1)
    conn = await asyncpg.connect(plain(url))
    try:
        await conn.execute(
            """
            INSERT INTO audit_stats (day, agency, service, procedure, outcome, n, duration_ms)
            SELECT to_char(d, 'YYYY-MM-DD'), agency, service, procedure, outcome, n, duration_ms
            FROM audit_stats, generate_series($2::date, $3::date - 1, interval '1 day') AS d
            WHERE day = $1
            ON CONFLICT DO NOTHING
            """,
            day.isoformat(), first, after,
        )  # fmt: skip
        # Past days are all-visible once autovacuum has been by: the index-only scan of
        # the covering index (0026) needs no heap fetch. Without this it took 3.3 s, not 1.
        await conn.execute("VACUUM ANALYZE audit_stats")
        rows = await conn.fetchval(
            "SELECT count(*) FROM audit_stats WHERE day >= $1 AND day < $2",
            first.isoformat(), after.isoformat(),
        )  # fmt: skip
    finally:
        await conn.close()
    print(f"roll-up of {day} copied into every day of {first:%Y-%m}: {rows:,} rows")
    month = f"since={first}&until={after}"
    return [
        Search(f"console statistics by {by}, a month at 2M a day (roll-up copied)", "console",
               "GET", f"/console/audit/stats?by={by}&{month}", MONTH_TARGET_MS)
        for by in ("agency", "service")
    ]  # fmt: skip


async def time_purge(url: str, shape: Shape) -> None:
    """Retention's purge (the real one) of the oldest month: what a monthly DELETE costs."""
    cutoff = (shape.start.astimezone(VN_TZ) + timedelta(days=32)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    engine = create_engine(url)
    try:
        t0 = time.perf_counter()
        done = await retention.purge(session_factory(engine), cutoff=cutoff, actor="bench")
        took = time.perf_counter() - t0
    finally:
        await engine.dispose()
    count = 0 if done is None else done.count
    print(f"\nretention purge before {cutoff:%Y-%m-%d} (the oldest month): {count:,} records "
          f"in {took:.1f} s ({count / took if took else 0:,.0f} records/s)")  # fmt: skip


async def database_url(name: str) -> str | None:
    admin = await asyncpg.connect(ADMIN)
    try:
        found = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}" if found else None


async def run(args: argparse.Namespace) -> None:
    # The keys directory must outlive a kept database: the citizen index is keyed by it.
    work = Path(args.work or Path(tempfile.gettempdir()) / f"{args.database}-work")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    url = await database_url(args.database) if args.reuse else None
    keep = args.keep or args.reuse
    fresh = url is None
    gateway: Gateway | None = None
    if url is not None:
        conn = await asyncpg.connect(plain(url))
        try:
            n = int(await conn.fetchval("SELECT count(*) FROM audit_records"))
            last = await conn.fetchval("SELECT max(started_at) FROM audit_records")
        finally:
            await conn.close()
        shape = Shape(n, args.history_days, args.dense_days, last)
        print(f"reusing {args.database}: {n:,} records up to {last}")
    else:
        end = datetime.now(UTC).replace(microsecond=0)
        shape = Shape(args.exchanges, args.history_days, args.dense_days, end)
        shutil.rmtree(work, ignore_errors=True)
        url = await create_database(args.database)
    try:
        if fresh:
            print(f"generating {shape.n:,} exchanges: {shape.sparse:,} over {shape.history_days}"
                  f" days from {shape.start:%Y-%m-%d}, {shape.dense:,} over the last "
                  f"{shape.dense_days} days to {shape.end:%Y-%m-%d %H:%M} UTC "
                  f"({shape.dense / shape.dense_days:,.0f} a day)", flush=True)  # fmt: skip
            took = await load(url, shape, work / "keys")
            total = sum(took.values())
            print("loaded in " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items())
                  + f": {total:.0f} s ({total / 60:.1f} min)")  # fmt: skip
        sizes = await storage(url)
        print(f"\nstorage ({shape.n:,} records)")
        for rel, size in sizes:
            per = f"{size / shape.n:8.1f} B/record" if not rel.startswith(" ") else ""
            print(f"  {rel:44} {size / 2**20:10.1f} MB {per}")
        s = await samples(url, shape)
        gateway = await start_gateway(url, work)
        found = searches(shape, s, gateway.csrf, args.stats_repeat)
        if args.dense_month:
            found += await dense_month(url, shape)
        if args.only:  # the baseline, and the searches whose name has one of these words
            found = found[:1] + [q for q in found[1:] if any(w in q.name for w in args.only)]
        if args.explain:
            await audit_explain.explain_all(url, found, work / "keys")
        print(f"\nload average before timing: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        results = await time_searches(gateway, found, args.repeat)
        print(f"load average after timing: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        report(results, args.repeat)
        if args.purge:
            await time_purge(url, shape)
    finally:
        if gateway is not None:
            await gateway.close()
        if not keep:
            await drop_database(url)
            print(f"dropped {args.database}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--stats-repeat", type=int, default=5, help="runs of the API's stats")
    parser.add_argument("--history-days", type=int, default=365)
    parser.add_argument("--dense-days", type=int, default=2)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--reuse", action="store_true", help="time a kept database, no load")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN (ANALYZE, BUFFERS)")
    parser.add_argument(
        "--dense-month",
        action="store_true",
        help="copy a full day's roll-up into a month and time its statistics",
    )
    parser.add_argument("--purge", action="store_true", help="then time purging a month")
    parser.add_argument("--only", nargs="*", help="time only the searches naming these words")
    parser.add_argument("--work", help="keys and spool directory (give it again with --reuse)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
