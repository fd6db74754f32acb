"""Failed authentications counted per key (a client id, a source address) in a fixed
window, so that guessing a secret is slowed to a handful of tries per window instead of
thousands per second. Shared by replicas through Redis when `LGSP_REDIS_URL` is set (one
budget for the whole cluster), per process otherwise, and per process again while Redis
is away (a guesser gains nothing from an outage but a replica's own budget).

Only failures count: a client that authenticates correctly never spends anything, and a
key over its budget is refused, right secret or not, until its window ends.

Example:
    >>> throttle = failure_throttle_from_settings(settings)
    >>> wait = await throttle.blocked(["client:motcua", "addr:10.0.0.7"])
    >>> if wait is None and not secret_ok:
    ...     await throttle.failed(["client:motcua", "addr:10.0.0.7"])
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.core.logging import log
from gateway.core.settings import Settings

__all__ = [
    "FailureThrottle",
    "LocalFailureThrottle",
    "RedisFailureThrottle",
    "failure_throttle_from_settings",
]

_REDIS_FAILURES = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Budget:
    """At most `failures` failures of one key per `window` seconds; `prefix` picks the key
    kind it applies to ("client:" or "addr:")."""

    prefix: str
    failures: int
    window: float


class FailureThrottle(Protocol):
    async def blocked(self, keys: Sequence[str]) -> float | None:
        """Seconds to wait when a key is over its budget, else None."""
        ...

    async def failed(self, keys: Sequence[str]) -> None:
        """Count one failure against each key."""
        ...

    async def start(self) -> None: ...
    async def close(self) -> None: ...


def _budget(budgets: Sequence[Budget], key: str) -> Budget | None:
    for b in budgets:
        if key.startswith(b.prefix):
            return b
    return None


@dataclass
class LocalFailureThrottle:
    budgets: Sequence[Budget]
    clock: Callable[[], float] = time.monotonic
    _counts: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (n, ends)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def blocked(self, keys: Sequence[str]) -> float | None:
        now = self.clock()
        wait = None
        for key in keys:
            budget = _budget(self.budgets, key)
            count, ends = self._counts.get(key, (0, now))
            if budget is not None and ends > now and count >= budget.failures:
                wait = max(wait or 0.0, ends - now)
        return wait

    async def failed(self, keys: Sequence[str]) -> None:
        now = self.clock()
        if len(self._counts) > 100_000:  # a flood of made-up ids: forget ended windows
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        for key in keys:
            budget = _budget(self.budgets, key)
            if budget is None:
                continue
            count, ends = self._counts.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + budget.window
            self._counts[key] = (count + 1, ends)


class RedisFailureThrottle:
    def __init__(self, url: str, budgets: Sequence[Budget], *, timeout_ms: int = 100) -> None:
        self._timeout = timeout_ms / 1000
        self.budgets = budgets
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=4,
            timeout=None,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._local = LocalFailureThrottle(budgets)
        self._down = False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._redis.aclose()

    def _key(self, key: str) -> str:
        return "lgsp:authfail:" + key

    async def blocked(self, keys: Sequence[str]) -> float | None:
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    pipe.get(self._key(key))
                    pipe.pttl(self._key(key))
                answers = await pipe.execute()
        except _REDIS_FAILURES as e:
            self._failing(e)
            return await self._local.blocked(keys)
        self._answered()
        wait = None
        for i, key in enumerate(keys):
            budget = _budget(self.budgets, key)
            count, ttl = answers[2 * i], answers[2 * i + 1]
            if budget is not None and count is not None and int(count) >= budget.failures:
                wait = max(wait or 0.0, max(int(ttl), 1000) / 1000)
        return wait

    async def failed(self, keys: Sequence[str]) -> None:
        await self._local.failed(keys)  # also counted here, for an outage to come
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    budget = _budget(self.budgets, key)
                    if budget is None:
                        continue
                    pipe.incr(self._key(key))
                    pipe.pexpire(self._key(key), int(budget.window * 1000), nx=True)
                await pipe.execute()
        except _REDIS_FAILURES as e:
            self._failing(e)
        else:
            self._answered()

    def _failing(self, e: BaseException) -> None:
        if not self._down:
            self._down = True
            log.error("authentication throttle: Redis unreachable, counting locally", error=str(e))

    def _answered(self) -> None:
        if self._down:
            self._down = False
            log.info("authentication throttle: Redis reachable again")


def failure_throttle_from_settings(settings: Settings) -> FailureThrottle:
    budgets = (
        Budget("client:", settings.auth_failures_per_client, settings.auth_failure_window_seconds),
        Budget("addr:", settings.auth_failures_per_address, settings.auth_failure_window_seconds),
    )
    if settings.redis_url:
        return RedisFailureThrottle(
            settings.redis_url, budgets, timeout_ms=settings.ratelimit_redis_timeout_ms
        )
    return LocalFailureThrottle(budgets)
