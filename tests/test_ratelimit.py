"""Rate limits and daily quotas (gateway/limits/ratelimit.py), against a real Redis and in process.

Redis comes from `LGSP_TEST_REDIS_URL` (default: the local server on 6379); each test uses
its own key prefix and deletes its keys. Time is a fake clock, so no test sleeps to refill.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from structlog.testing import capture_logs

from gateway.core.settings import Settings
from gateway.limits.ratelimit import (
    Limit,
    LimiterUnavailable,
    LocalLimiter,
    RateLimiter,
    RedisLimiter,
    Verdict,
    limiter_from_settings,
)
from tests.conftest import _unavailable

REDIS_URL = os.environ.get("LGSP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused
VIETNAM = timezone(timedelta(hours=7))
SERVICE = "000.00.00.G01/csdlqg-dancu/v1"


class FakeClock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 22, 10, 0, tzinfo=VIETNAM))


@asynccontextmanager
async def redis_namespace() -> AsyncIterator[str]:
    """A key prefix of our own on the test Redis, emptied afterwards."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as e:
        await client.aclose()
        _unavailable("Redis", f"{REDIS_URL}, LGSP_TEST_REDIS_URL: {type(e).__name__}: {e}")
    prefix = f"lgsp-test:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    async with redis_namespace() as prefix:
        yield prefix


@pytest.fixture
async def redis_client(redis_prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


Make = Callable[[], Awaitable[RateLimiter]]


@pytest.fixture(params=["local", "redis"])
async def new_limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Make]:
    """Makes limiters on the fake clock: in process, or Redis "replicas" sharing one prefix."""
    made: list[RateLimiter] = []
    if request.param == "local":

        async def make_local() -> RateLimiter:
            made.append(LocalLimiter(clock))
            return made[-1]

        yield make_local
        return
    async with redis_namespace() as prefix:

        async def make_redis() -> RateLimiter:
            limiter = RedisLimiter(REDIS_URL, clock=clock, key_prefix=prefix, timeout_ms=2000)
            await limiter.start()
            assert limiter.status()["degraded"] is False
            made.append(limiter)
            return limiter

        yield make_redis
        for limiter in made:
            assert limiter.status()["degraded"] is False, limiter.status()
            await limiter.close()


async def allowed_count(limiter: RateLimiter, limits: list[Limit], tries: int) -> int:
    return sum([(await limiter.check(limits)).allowed for _ in range(tries)])


def client_rate(rate: float, burst: int, subject: str = "motcua") -> Limit:
    return Limit("client", subject, rate=rate, burst=burst, quota_per_day=None)


def quota(n: int, scope: Any = "service", subject: str = SERVICE) -> Limit:
    return Limit(scope, subject, rate=None, burst=1, quota_per_day=n)


# -- semantics, the same in Redis and in process ----------------------------------------------


async def test_a_burst_is_allowed_then_refused_until_a_token_refills(new_limiter: Make) -> None:
    limiter = await new_limiter()
    limit = client_rate(rate=2, burst=3)

    assert await allowed_count(limiter, [limit], 3) == 3
    verdict = await limiter.check([limit])

    assert verdict == Verdict(allowed=False, limit=limit, kind="rate", retry_after=0.5)


async def test_tokens_refill_with_the_clock_up_to_the_burst(
    new_limiter: Make, clock: FakeClock
) -> None:
    limiter = await new_limiter()
    limit = client_rate(rate=2, burst=3)
    assert await allowed_count(limiter, [limit], 3) == 3

    clock.advance(0.25)  # half a token
    assert (await limiter.check([limit])).retry_after == pytest.approx(0.25)
    clock.advance(0.25)
    assert (await limiter.check([limit])).allowed
    assert not (await limiter.check([limit])).allowed

    clock.advance(3600)  # a long quiet spell refills the bucket, but only to `burst`
    assert await allowed_count(limiter, [limit], 10) == 3


async def test_a_refused_quota_consumes_no_rate_tokens(new_limiter: Make) -> None:
    limiter = await new_limiter()
    rate = client_rate(rate=0.001, burst=3)
    day = quota(1)

    assert (await limiter.check([rate, day])).allowed
    refused = await limiter.check([rate, day])
    assert (refused.allowed, refused.kind, refused.limit) == (False, "quota", day)

    # The refusal took nothing from the bucket: 2 of its 3 tokens are left.
    assert await allowed_count(limiter, [rate], 5) == 2


async def test_a_refused_rate_consumes_no_quota(new_limiter: Make, clock: FakeClock) -> None:
    limiter = await new_limiter()
    rate = client_rate(rate=1, burst=1)
    day = quota(2)

    assert (await limiter.check([rate, day])).allowed
    for _ in range(5):  # refused by the rate limit: the quota keeps its second request
        verdict = await limiter.check([rate, day])
        assert (verdict.allowed, verdict.kind, verdict.limit) == (False, "rate", rate)
    clock.advance(1)
    assert (await limiter.check([rate, day])).allowed
    clock.advance(1)
    assert (await limiter.check([rate, day])).kind == "quota"


async def test_when_several_limits_refuse_the_longest_wait_is_reported(
    new_limiter: Make, clock: FakeClock
) -> None:
    limiter = await new_limiter()
    rate = client_rate(rate=1, burst=1)
    day = quota(1)
    assert (await limiter.check([rate, day])).allowed

    verdict = await limiter.check([rate, day])

    # Waiting one second for the token would not help: the quota is gone until midnight.
    midnight = datetime(2026, 11, 23, tzinfo=VIETNAM).timestamp()
    assert (verdict.kind, verdict.limit) == ("quota", day)
    assert verdict.retry_after == pytest.approx(midnight - clock())


async def test_the_quota_resets_at_vietnam_midnight(new_limiter: Make, clock: FakeClock) -> None:
    limiter = await new_limiter()
    clock.now = datetime(2026, 11, 22, 23, 59, 50, tzinfo=VIETNAM).timestamp()
    day = quota(3, "client-service", f"motcua|{SERVICE}")

    assert await allowed_count(limiter, [day], 3) == 3
    verdict = await limiter.check([day])
    assert (verdict.allowed, verdict.kind, verdict.limit) == (False, "quota", day)
    assert verdict.retry_after == pytest.approx(10.0)

    clock.advance(20)  # 00:00:10 on the 23rd: a new day, a new count
    assert await allowed_count(limiter, [day], 5) == 3


async def test_the_quota_day_is_vietnam_time_not_utc(new_limiter: Make, clock: FakeClock) -> None:
    limiter = await new_limiter()
    # 23:59:59 UTC is 06:59:59 in Vietnam: UTC midnight two seconds later resets nothing.
    clock.now = datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC).timestamp()
    day = quota(1)
    assert (await limiter.check([day])).allowed

    clock.advance(2)
    verdict = await limiter.check([day])

    assert (verdict.allowed, verdict.kind) == (False, "quota")
    assert verdict.retry_after == pytest.approx(17 * 3600 - 1)


async def test_each_scope_and_subject_has_its_own_budget(new_limiter: Make) -> None:
    limiter = await new_limiter()
    subjects = ["motcua", "mot:cua", "mot%3Acua", "{motcua}", "một cửa", "a|b/c.d", "", " "]
    limits = [
        Limit(scope, subject, rate=0.001, burst=1, quota_per_day=1)
        for scope in ("client", "service", "client-service")
        for subject in subjects
    ]

    for limit in limits:
        assert (await limiter.check([limit])).allowed, limit
    for limit in limits:
        assert not (await limiter.check([limit])).allowed, limit


async def test_no_limits_means_allowed(new_limiter: Make) -> None:
    limiter = await new_limiter()
    unlimited = Limit("client", "motcua", rate=None, burst=1, quota_per_day=None)

    assert await limiter.check([]) == Verdict(allowed=True)
    assert await allowed_count(limiter, [unlimited], 100) == 100


async def test_a_zero_quota_refuses_everything(new_limiter: Make) -> None:
    limiter = await new_limiter()
    assert (await limiter.check([quota(0)])).kind == "quota"


# -- Redis: shared by replicas ----------------------------------------------------------------


def replica(prefix: str, clock: FakeClock) -> RedisLimiter:
    # A generous timeout: these tests are about counting, not about a slow Redis.
    return RedisLimiter(REDIS_URL, clock=clock, key_prefix=prefix, timeout_ms=2000)


async def test_two_replicas_share_one_budget(redis_prefix: str, clock: FakeClock) -> None:
    replicas = [replica(redis_prefix, clock) for _ in "ab"]
    rate = client_rate(rate=0.001, burst=4)
    day = quota(6)
    try:
        results = [(await replicas[i % 2].check([rate])).allowed for i in range(8)]
        assert results == [True] * 4 + [False] * 4
        results = [(await replicas[i % 2].check([day])).allowed for i in range(8)]
        assert results == [True] * 6 + [False] * 2
    finally:
        for r in replicas:
            await r.close()


async def test_concurrent_checks_on_two_replicas_never_overspend(
    redis_prefix: str, clock: FakeClock
) -> None:
    replicas = [replica(redis_prefix, clock) for _ in "ab"]
    limits = [client_rate(rate=0.001, burst=10), quota(25)]
    try:
        verdicts = await asyncio.gather(*(replicas[i % 2].check(limits) for i in range(60)))
        assert sum(v.allowed for v in verdicts) == 10
        verdicts = await asyncio.gather(*(replicas[i % 2].check(limits[1:]) for i in range(60)))
        assert sum(v.allowed for v in verdicts) == 15  # the 10 above counted against it
        assert [r.status()["degraded"] for r in replicas] == [False, False]
    finally:
        for r in replicas:
            await r.close()


async def test_more_concurrent_checks_than_connections_wait_their_turn(
    redis_prefix: str, clock: FakeClock
) -> None:
    limiter = replica(redis_prefix, clock)
    limit = client_rate(rate=0.001, burst=100)
    try:
        verdicts = await asyncio.gather(*(limiter.check([limit]) for _ in range(300)))
    finally:
        await limiter.close()
    assert limiter.status()["degraded"] is False, limiter.status()["error"]
    assert sum(v.allowed for v in verdicts) == 100


async def test_keys_are_escaped_dated_and_expire(
    redis_prefix: str, redis_client: Redis, clock: FakeClock
) -> None:
    limiter = replica(redis_prefix, clock)
    limit = Limit("client-service", f"{{mot:cua}}|{SERVICE}", rate=10, burst=20, quota_per_day=5)
    try:
        assert (await limiter.check([limit])).allowed
    finally:
        await limiter.close()

    keys = sorted([k.decode() async for k in redis_client.scan_iter(match=redis_prefix + "*")])
    subject = f"%7Bmot%3Acua%7D|{SERVICE}"
    assert keys == [
        f"{redis_prefix}q:client-service:{subject}:20261122",
        f"{redis_prefix}r:client-service:{subject}",
    ]
    # An idle bucket goes once it would be full again (2 s here, plus a margin) ...
    assert 2000 < await redis_client.pttl(keys[1]) <= 3000
    # ... and a day's counter after about two days.
    assert 47 * 3600 < await redis_client.ttl(keys[0]) <= 48 * 3600


# -- Redis unreachable ------------------------------------------------------------------------


def alarms(entries: list[dict[str, Any]], level: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["log_level"] == level]


async def test_with_redis_down_local_mode_keeps_limiting_in_process_with_one_alarm(
    clock: FakeClock,
) -> None:
    limiter = RedisLimiter(DEAD_URL, on_failure="local", clock=clock, timeout_ms=100)
    limit = client_rate(rate=1, burst=2)
    with capture_logs() as entries:
        await limiter.start()
        started = time.perf_counter()
        results = [(await limiter.check([limit])).allowed for _ in range(4)]
        elapsed = time.perf_counter() - started
        clock.advance(1)
        assert (await limiter.check([limit])).allowed
    await limiter.close()

    assert results == [True, True, False, False]
    assert elapsed < 0.5
    status = limiter.status()
    assert status["backend"] == "redis"
    assert status["degraded"] is True
    assert "ConnectionError" in str(status["error"])
    [alarm] = alarms(entries, "error")
    assert alarm["event"].startswith("RATE LIMITS DEGRADED")
    assert alarm["on_failure"] == "local"


async def test_with_redis_down_deny_mode_refuses_to_guess(clock: FakeClock) -> None:
    limiter = RedisLimiter(DEAD_URL, on_failure="deny", clock=clock, timeout_ms=100)
    with capture_logs() as entries:
        for _ in range(3):
            with pytest.raises(LimiterUnavailable, match="ConnectionError"):
                await limiter.check([client_rate(rate=1, burst=2)])
        assert (await limiter.check([])).allowed  # nothing to count: nothing to refuse
    await limiter.close()

    assert limiter.status()["degraded"] is True
    assert len(alarms(entries, "error")) == 1


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers: a hung Redis, or one behind a black hole."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    server.close()


async def test_a_hung_redis_costs_a_request_at_most_the_timeout(
    silent_server: str, clock: FakeClock
) -> None:
    limiter = RedisLimiter(silent_server, clock=clock, timeout_ms=150)
    limit = client_rate(rate=1, burst=5)
    with capture_logs():
        started = time.perf_counter()
        first = await limiter.check([limit])
        first_took = time.perf_counter() - started
        started = time.perf_counter()
        second = await limiter.check([limit])  # within the back-off: Redis is not tried
        second_took = time.perf_counter() - started
    await limiter.close()

    assert first.allowed and second.allowed
    assert 0.14 <= first_took < 0.6
    assert second_took < 0.05
    assert limiter.status()["error"] == "Redis did not answer within 150 ms"


class Proxy:
    """A TCP relay to the test Redis that can be cut and restored on the same port."""

    def __init__(self) -> None:
        target = urlsplit(REDIS_URL)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0  # connections the limiter opened through it

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


BACKOFF = 0.2


async def test_when_redis_returns_the_limiter_recovers_after_the_back_off(
    redis_prefix: str, redis_client: Redis, clock: FakeClock
) -> None:
    proxy = Proxy()
    await proxy.start()
    limiter = RedisLimiter(
        f"redis://127.0.0.1:{proxy.port}/0",
        clock=clock,
        key_prefix=redis_prefix,
        timeout_ms=500,
        backoff_seconds=BACKOFF - 0.05,
        settle_seconds=0,  # "restored" at the first answer (the flicker rule is tested apart)
    )
    limit = client_rate(rate=0.001, burst=10)
    bucket = f"{redis_prefix}r:client:motcua"
    with capture_logs() as entries:
        await limiter.start()
        assert (await limiter.check([limit])).allowed
        assert float(await redis_client.hget(bucket, "t") or -1) == pytest.approx(9)

        await proxy.stop()
        for _ in range(3):  # each check tries Redis again, one back-off after the last
            assert (await limiter.check([limit])).allowed  # counted in process meanwhile
            assert limiter.status()["degraded"] is True
            await asyncio.sleep(BACKOFF)
        assert (await limiter.check([limit])).allowed  # failed again: a new back-off

        await proxy.start()
        assert (await limiter.check([limit])).allowed  # still backing off: in process
        assert float(await redis_client.hget(bucket, "t") or -1) == pytest.approx(9)
        await asyncio.sleep(BACKOFF)
        assert (await limiter.check([limit])).allowed  # back on Redis
    await limiter.close()
    await proxy.stop()

    assert float(await redis_client.hget(bucket, "t") or -1) == pytest.approx(8)
    assert limiter.status() == {
        "backend": "redis",
        "degraded": False,
        "error": None,
        "on_failure": "local",
        "degraded_since": None,
    }
    assert len(alarms(entries, "error")) == 1  # one alarm for the whole outage
    [restored] = alarms(entries, "warning")
    assert restored["event"].startswith("rate limits restored")


async def test_one_outage_is_one_alarm_even_when_the_return_flickers(
    redis_prefix: str, clock: FakeClock
) -> None:
    """Redis cut, back, then gone again for an instant as the first requests after the
    return meet connections from before: one alarm and one "restored" for the outage."""
    proxy = Proxy()
    await proxy.start()
    limiter = RedisLimiter(
        f"redis://127.0.0.1:{proxy.port}/0",
        clock=clock,
        key_prefix=redis_prefix,
        timeout_ms=500,
        backoff_seconds=0.05,
        settle_seconds=0.5,
    )
    limit = client_rate(rate=1000, burst=1000)

    async def checks(n: int) -> None:
        assert all(
            v.allowed for v in await asyncio.gather(*(limiter.check([limit]) for _ in range(n)))
        )

    async def until(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 10
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await checks(8)
            await asyncio.sleep(0.02)

    with capture_logs() as entries:
        await limiter.start()
        await checks(8)  # several pooled connections, idle between checks
        await proxy.stop()
        await until(lambda: limiter.status()["degraded"] is True, "the outage to be seen")
        await proxy.start()
        await until(lambda: limiter.status()["degraded"] is False, "Redis to answer again")
        await proxy.stop()  # a flicker: gone again for an instant
        await until(lambda: limiter.status()["degraded"] is True, "the flicker to be seen")
        await proxy.start()
        await until(lambda: limiter.status()["degraded"] is False, "Redis to answer again")
        restored = [e for e in alarms(entries, "warning") if e["event"].startswith("rate")]
        assert not restored  # not yet: Redis has answered for less than settle_seconds
        await asyncio.sleep(0.5)
        await checks(1)
    await limiter.close()
    await proxy.stop()

    assert [e["event"][:21] for e in alarms(entries, "error")] == ["RATE LIMITS DEGRADED:"]
    [restored_entry] = alarms(entries, "warning")
    assert restored_entry["event"].startswith("rate limits restored")


async def test_after_an_outage_traffic_returns_to_a_warm_pool(
    redis_prefix: str, redis_client: Redis, clock: FakeClock
) -> None:
    """The probe that ends an outage opens the pool afresh, so the returning traffic does
    not reconnect under load (each check a connect and a HELLO, queued behind the rest)."""
    proxy = Proxy()
    await proxy.start()
    limiter = RedisLimiter(
        f"redis://127.0.0.1:{proxy.port}/0",
        clock=clock,
        key_prefix=redis_prefix,
        timeout_ms=500,
        backoff_seconds=0.05,
        settle_seconds=0,
    )
    limit = client_rate(rate=0.001, burst=1000)
    bucket = f"{redis_prefix}r:client:motcua"

    async def until_degraded(degraded: bool) -> None:
        deadline = time.monotonic() + 10
        while limiter.status()["degraded"] is not degraded:
            assert time.monotonic() < deadline, f"timed out waiting for degraded={degraded}"
            await limiter.check([limit])  # one at a time: the probe, when one is due
            await asyncio.sleep(0.02)

    with capture_logs():
        await limiter.start()
        await asyncio.gather(*(limiter.check([limit]) for _ in range(16)))
        await proxy.stop()
        await until_degraded(True)
        await proxy.start()
        await until_degraded(False)
        opened = proxy.accepted
        tokens = float(await redis_client.hget(bucket, "t") or -1)
        for _ in range(3):
            verdicts = await asyncio.gather(*(limiter.check([limit]) for _ in range(16)))
            assert all(v.allowed for v in verdicts)
        assert limiter.status()["degraded"] is False
    await limiter.close()
    await proxy.stop()

    assert proxy.accepted == opened  # no connection opened under the returning traffic
    assert float(await redis_client.hget(bucket, "t") or -1) == pytest.approx(tokens - 48)


# -- the limit itself, and settings -----------------------------------------------------------


def test_limits_describe_themselves_for_error_messages() -> None:
    assert client_rate(10, 20).describe() == "10 requests per second (burst 20) for client motcua"
    assert (
        client_rate(30 / 60, 5).describe() == "30 requests per minute (burst 5) for client motcua"
    )
    assert client_rate(1 / 3600, 1).describe() == "1 request per hour (burst 1) for client motcua"
    assert quota(1000).describe() == f"1000 requests per day for service {SERVICE}"
    assert client_rate(0.3, 1).describe() == "18 requests per minute (burst 1) for client motcua"
    assert (
        client_rate(1 / 7, 1).describe()
        == "0.142857 requests per second (burst 1) for client motcua"
    )
    both = Limit("client-service", f"motcua|{SERVICE}", rate=2, burst=5, quota_per_day=1)
    assert both.describe() == (
        "2 requests per second (burst 5) and 1 request per day"
        f" for client motcua on service {SERVICE}"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tenant", "x", 1.0, 1, None), "scope"),
        (("client", "x", 0.0, 1, None), "rate"),
        (("client", "x", float("inf"), 1, None), "rate"),
        (("client", "x", 1.0, 0, None), "burst"),
        (("client", "x", None, 1, -1), "quota"),
    ],
)
def test_nonsense_limits_are_refused(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limit(*args)


def test_limits_compare_by_their_fields() -> None:
    assert client_rate(1, 2) == client_rate(1, 2)
    assert hash(client_rate(1, 2)) == hash(client_rate(1, 2))
    assert client_rate(1, 2) != client_rate(1, 3)


async def test_the_limiter_follows_the_settings() -> None:
    assert isinstance(limiter_from_settings(Settings(redis_url="")), LocalLimiter)
    limiter = limiter_from_settings(Settings(redis_url=DEAD_URL, ratelimit_on_redis_failure="deny"))
    assert isinstance(limiter, RedisLimiter)
    assert limiter.status()["on_failure"] == "deny"
    await limiter.close()
