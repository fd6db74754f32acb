"""The failure table's Redis row, through real processes (issue 21): two gateway
processes (two replicas, one worker each) share a rate limit through Redis, reached
through a relay that is cut (every connection reset, every new one refused) and given
back. Counted per request id: what each caller was answered before, during and after
the outage, that every exchange is audited once with the status its caller saw (a 429 or
503 refusal too), the alarms each replica logged, and that the budget is shared again
afterwards, exactly.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import ECHO, _unavailable
from tests.fault_rig import (
    Answer,
    Relay,
    gateway_env,
    logged,
    process,
    seed,
    send,
    statuses,
    token,
    until,
    upstream,
)

pytestmark = pytest.mark.dialects("postgresql")  # two processes share the store

REDIS_URL = os.environ.get("LGSP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BUDGET = 40  # the limited client's burst; it refills by one an hour


async def _redis_reachable() -> None:
    probe = aioredis.from_url(REDIS_URL)
    try:
        await probe.ping()
    except (OSError, aioredis.RedisError) as e:
        _unavailable("Redis", f"{REDIS_URL}, LGSP_TEST_REDIS_URL: {type(e).__name__}: {e}")
    finally:
        await probe.aclose()


def _health(url: str) -> dict[str, Any]:
    limits: dict[str, Any] = httpx.get(url + "/healthz", timeout=10).json()["rate_limits"]
    return limits


@pytest.mark.parametrize("on_failure", ["local", "deny"])
async def test_a_redis_outage_with_two_replicas(
    database_url: str, tmp_path: Path, on_failure: str
) -> None:
    await _redis_reachable()
    target = urlsplit(REDIS_URL)
    relay = Relay(target.hostname or "127.0.0.1", target.port or 6379)
    relay.restore()
    db = target.path.lstrip("/") or "0"
    suffix = uuid.uuid4().hex[:8]  # fresh budgets in a shared Redis
    limited, prober = f"rl{suffix}", f"pr{suffix}"
    limits = [
        {"client": limited, "rate": {"requests": 1, "per": "hour", "burst": BUDGET}},
        # The prober's checks go to Redis too: they end the outage without spending the
        # limited client's budget.
        {"client": prober, "rate": {"requests": 1000, "per": "second"}},
    ]
    answers: dict[str, list[Answer]] = {"before": [], "during": [], "probes": [], "after": []}
    try:
        async with upstream() as sim:
            secrets = await seed(
                database_url, sim.url, rate_limits=limits, clients=(limited, prober)
            )
            replicas = []
            for name in ("gw-redis-a", "gw-redis-b"):
                env = gateway_env(
                    database_url,
                    tmp_path,
                    name,
                    redis_url=f"redis://127.0.0.1:{relay.port}/{db}",
                    ratelimit_on_redis_failure=on_failure,
                    # Generous: this test counts; a loaded machine must not make a slow
                    # answer an outage (what a hung Redis costs: tests/test_ratelimit.py).
                    ratelimit_redis_timeout_ms="1000",
                    workers="1",
                    public_url="http://gateway.test",  # one issuer for both replicas
                )
                replicas.append(process(env, tmp_path / f"{name}.log"))
            try:
                await asyncio.gather(*(asyncio.to_thread(gw.start) for gw in replicas))
                a = replicas[0]
                bearer = await token(a, secrets[limited], limited)
                probe_bearer = await token(a, secrets[prober], prober)

                async def each(n: int, phase: str) -> None:
                    for got in await asyncio.gather(
                        *(send(gw.url, bearer, f"{ECHO}/r", n, prefix=phase) for gw in replicas)
                    ):
                        answers[phase] += got

                async def probed(phase: str) -> None:
                    for gw in replicas:
                        answers[phase] += await send(
                            gw.url, probe_bearer, f"{ECHO}/p", 2, prefix=phase
                        )

                async def on_redis() -> bool:
                    await probed("probes")
                    return not any(_health(gw.url)["degraded"] for gw in replicas)

                await until(on_redis, 60, "both replicas to count in Redis")
                marks = [gw.log.stat().st_size for gw in replicas]
                await each(10, "before")
                relay.cut()
                await each(30, "during")
                degraded = [_health(gw.url) for gw in replicas]
                relay.restore()

                async def back() -> bool:
                    await probed("probes")
                    return all(
                        logged(gw.log, "rate limits restored", mark)
                        and not _health(gw.url)["degraded"]
                        for gw, mark in zip(replicas, marks, strict=True)
                    )

                await until(back, 60, "both replicas to say rate limits restored")
                await each(BUDGET // 2, "after")
            finally:
                for gw in replicas:
                    gw.terminate()
        stored = await statuses(database_url)
    finally:
        relay.close()

    count = {phase: Counter((a.status, a.problem) for a in got) for phase, got in answers.items()}
    # Before: 20 of the budget of 40, shared by the two replicas.
    assert count["before"] == {(200, None): 20}
    # During: fail open, each replica counting on its own (30 each, under its own 40),
    # or refusing every limited exchange with a 503 it names.
    if on_failure == "local":
        assert count["during"] == {(200, None): 60}, count
    else:
        assert count["during"] == {(503, "rate-limit-unavailable"): 60}, count
    assert all(h["degraded"] is True and h["on_failure"] == on_failure for h in degraded), degraded
    # After: shared again, exactly: the 20 left of the 40, however the two replicas
    # split them; what the replicas counted on their own during the outage is not owed.
    assert count["after"] == {(200, None): BUDGET // 2, (429, "rate-limited"): BUDGET // 2}, count
    # The prober's exchanges that ended the outage (in deny mode, those that came before
    # its replica tried Redis again were refused).
    assert set(count["probes"]) <= {(200, None), (503, "rate-limit-unavailable")}, count
    # Every exchange audited once, with the status its caller got.
    every = [x for got in answers.values() for x in got]
    wrong = [
        (x.request_id, x.status, stored.get(x.request_id))
        for x in every
        if stored.get(x.request_id) != [x.status]
    ]
    assert wrong == [], wrong[:5]
    # Each replica told its operator once that the outage began, and once that it ended.
    for gw, mark in zip(replicas, marks, strict=True):
        assert len(logged(gw.log, "RATE LIMITS DEGRADED", mark)) == 1, gw.log
        assert len(logged(gw.log, "rate limits restored", mark)) == 1, gw.log
    print(on_failure, {p: dict(c) for p, c in count.items()}, f"{len(every)} audited once")
