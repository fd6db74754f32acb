"""Rate limits and daily quotas, shared by every gateway replica through Redis.

Why it is built this way:

- A rate limit is a token bucket (capacity `burst`, refilled at `rate` tokens per second):
  callers may burst after a quiet spell, yet the sustained rate stays bounded.
- A quota counts requests per calendar day in Vietnam (UTC+7, no DST). The counter's key
  carries the date, so at midnight a new key simply starts: that is the reset.
- One check consumes one request from every limit it names, or from none, in one Lua script:
  one round trip, atomic on the server, so replicas never race and a refused quota does not
  eat rate tokens (nor the reverse).
- The time is the gateway's clock passed to the script, not Redis TIME, so tests can move it.
  Replicas' clocks must therefore be NTP-synced; a few ms of skew only shifts refills slightly.
- When Redis cannot be reached, each replica either keeps limiting with its own in-process
  counters (limits become per replica and quotas restart from zero, with one alarm per
  outage) or refuses (`LimiterUnavailable`). A dead Redis costs a request at most
  `timeout_ms`, and is then left alone for a short back-off.
- An outage is one alarm and one "restored", however it flickers: a failure within
  `settle_seconds` of Redis answering again continues the outage it seemed to end.
- The probe that ends an outage drops the pool's connections from before it (dead: each
  would fail one request after the return, and start the alarm and back-off again), opens
  the whole pool afresh and loads the script, all within its timeout: traffic comes back
  to warm connections, not to a pool that every check must reconnect under full load (a
  TCP connect and a HELLO each, then NOSCRIPT and SCRIPT LOAD after a restart, while the
  rest queue behind them and time out).

Redis must be a single server (or a failover-managed primary), not Redis Cluster: one check's
keys are not in one hash slot.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast
from urllib.parse import quote

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.core.logging import log

if TYPE_CHECKING:
    from gateway.core.settings import Settings

Scope = Literal["client", "service", "client-service"]
Kind = Literal["rate", "quota"]

_SCOPES: frozenset[str] = frozenset(("client", "service", "client-service"))
_DAY = 86_400
VIETNAM_UTC_OFFSET = 7 * 3600
# A day's counter outlives its day (so a replica whose clock lags still finds it), then vanishes.
QUOTA_KEY_TTL_MS = 2 * _DAY * 1000
# Bucket keys vanish a little after they would be full again: a missing bucket counts as full.
_BUCKET_TTL_MARGIN_MS = 1000
_MAX_BUCKET_TTL_MS = 7 * _DAY * 1000
# Bytes that stay readable in Redis keys; everything else (':', '{', '%', spaces, non-ASCII)
# is percent-encoded, so any subject gives one unambiguous key without cluster hash tags.
_KEY_SAFE = "/|"


@dataclass(frozen=True, slots=True)
class Limit:
    scope: Scope
    subject: str
    rate: float | None
    burst: int
    quota_per_day: int | None
    # Computed once here, so a check only joins strings: the key suffix, the script's
    # arguments for each kind, and how long an idle bucket is kept.
    _key: str = field(init=False, repr=False, compare=False)
    _rate_argv: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _quota_argv: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _bucket_ttl_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scope not in _SCOPES:
            raise ValueError(f"scope must be one of {sorted(_SCOPES)}, not {self.scope!r}")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second: {self}")
        if self.rate is not None and self.burst < 1:
            raise ValueError(f"burst must be at least 1: {self}")
        if self.quota_per_day is not None and self.quota_per_day < 0:
            raise ValueError(f"quota_per_day must not be negative: {self}")
        ttl_ms = 0
        rate_argv: tuple[str, ...] = ()
        if self.rate is not None:
            full_ms = math.ceil(self.burst / self.rate * 1000) + _BUCKET_TTL_MARGIN_MS
            ttl_ms = min(full_ms, _MAX_BUCKET_TTL_MS)
            rate_argv = ("r", repr(float(self.rate)), str(self.burst), str(ttl_ms))
        quota_argv: tuple[str, ...] = ()
        if self.quota_per_day is not None:
            quota_argv = ("q", str(self.quota_per_day), "0", str(QUOTA_KEY_TTL_MS))
        subject = quote(self.subject, safe=_KEY_SAFE)
        object.__setattr__(self, "_key", f"{self.scope}:{subject}")
        object.__setattr__(self, "_rate_argv", rate_argv)
        object.__setattr__(self, "_quota_argv", quota_argv)
        object.__setattr__(self, "_bucket_ttl_ms", ttl_ms)

    def describe(self) -> str:
        """E.g. "10 requests per second (burst 20) for client motcua"."""
        parts = []
        if self.rate is not None:
            parts.append(f"{_per_period(self.rate)} (burst {self.burst})")
        if self.quota_per_day is not None:
            parts.append(f"{_requests(self.quota_per_day)} per day")
        return f"{' and '.join(parts) or 'no limit'} for {self._whom()}"

    def _whom(self) -> str:
        if self.scope == "client-service":
            client, _, service = self.subject.partition("|")
            return f"client {client} on service {service}"
        return f"{self.scope} {self.subject}"


def _requests(n: float) -> str:
    text = str(int(n)) if float(n).is_integer() else f"{n:g}"
    return f"{text} request{'' if n == 1 else 's'}"


def _per_period(rate: float) -> str:
    # Policies say "per minute" or "per hour"; say it back the same way when it divides evenly.
    for seconds, unit in ((1, "second"), (60, "minute"), (3600, "hour")):
        n = rate * seconds
        if n >= 1 and abs(n - round(n)) < 1e-9:
            return f"{_requests(round(n))} per {unit}"
    return f"{_requests(rate)} per second"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: Limit | None = None  # the limit that refused (None when allowed)
    kind: Kind | None = None
    retry_after: float = 0.0  # seconds until a retry can succeed


_ALLOWED = Verdict(allowed=True)


class LimiterUnavailable(Exception):
    """Redis is unreachable and the gateway is configured to refuse rather than guess."""


class RateLimiter(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def check(self, limits: Sequence[Limit]) -> Verdict: ...
    def status(self) -> dict[str, object]: ...


# -- one check's work, shared by both limiters -------------------------------------------------


@functools.lru_cache(maxsize=4)
def _vietnam_date(day: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(day * _DAY))


@dataclass(slots=True)
class _Plan:
    """Key i is a token bucket ("rate") or a day counter ("quota") of checks[i]'s limit."""

    now: float
    day: int  # Vietnam days since the epoch
    to_midnight: float  # seconds until the next Vietnam midnight
    keys: list[str]
    checks: list[tuple[Limit, Kind]]


def _plan(limits: Sequence[Limit], now: float, prefix: str) -> _Plan:
    day = int((now + VIETNAM_UTC_OFFSET) // _DAY)
    to_midnight = (day + 1) * _DAY - VIETNAM_UTC_OFFSET - now
    plan = _Plan(now, day, to_midnight, [], [])
    for limit in limits:
        if limit.rate is not None:
            plan.keys.append(f"{prefix}r:{limit._key}")
            plan.checks.append((limit, "rate"))
        if limit.quota_per_day is not None:
            plan.keys.append(f"{prefix}q:{limit._key}:{_vietnam_date(day)}")
            plan.checks.append((limit, "quota"))
    return plan


def _refused(plan: _Plan, index: int, wait: float) -> Verdict:
    limit, kind = plan.checks[index]
    return Verdict(allowed=False, limit=limit, kind=kind, retry_after=wait)


# -- in process -------------------------------------------------------------------------------


class LocalLimiter:
    """Limits counted in this process: the default without Redis, and Redis's fallback.
    The same algorithm as the Lua script below, step for step."""

    _SWEEP_EVERY = 60.0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # tokens, stamp, expires
        self._counts: dict[str, int] = {}  # today's quota counters
        self._counts_day = -1
        self._next_sweep = 0.0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        if not limits:
            return _ALLOWED
        return self._check(_plan(limits, self._clock(), ""))

    def status(self) -> dict[str, object]:
        return {"backend": "local", "degraded": False, "error": None}

    def _check(self, plan: _Plan) -> Verdict:
        now = plan.now
        self._housekeeping(plan)
        # Pass 1 decides without writing; a key listed twice is counted twice.
        tokens: dict[str, float] = {}
        stamps: dict[str, float] = {}
        used: dict[str, int] = {}
        worst, worst_wait = -1, -1.0
        for i, (key, (limit, kind)) in enumerate(zip(plan.keys, plan.checks, strict=True)):
            if kind == "rate":
                rate, burst = limit.rate or 1.0, limit.burst
                if key not in tokens:
                    tokens[key], stamps[key] = _refilled(self._buckets.get(key), burst, rate, now)
                if tokens[key] < 1:
                    wait = (1 - tokens[key]) / rate
                    if wait > worst_wait:
                        worst, worst_wait = i, wait
                tokens[key] -= 1
            else:
                if key not in used:
                    used[key] = self._counts.get(key, 0)
                if used[key] >= (limit.quota_per_day or 0) and plan.to_midnight > worst_wait:
                    worst, worst_wait = i, plan.to_midnight
                used[key] += 1
        if worst >= 0:
            return _refused(plan, worst, worst_wait)
        # Pass 2: everything allowed, so consume from every limit.
        for key, (limit, kind) in zip(plan.keys, plan.checks, strict=True):
            if kind == "rate":
                expires = now + limit._bucket_ttl_ms / 1000
                self._buckets[key] = (tokens[key], stamps[key], expires)
            else:
                self._counts[key] = used[key]
        return _ALLOWED

    def _housekeeping(self, plan: _Plan) -> None:
        if plan.day != self._counts_day:  # midnight: yesterday's counters are done
            self._counts.clear()
            self._counts_day = plan.day
        if plan.now >= self._next_sweep:  # forget buckets that have refilled
            now = plan.now
            self._buckets = {k: v for k, v in self._buckets.items() if v[2] > now}
            self._next_sweep = now + self._SWEEP_EVERY


def _refilled(
    state: tuple[float, float, float] | None, burst: int, rate: float, now: float
) -> tuple[float, float]:
    """(tokens, stamp) of a bucket at `now`: full if it is new or expired, else refilled for
    the time since its stamp."""
    if state is None or state[2] <= now:
        return float(burst), now
    t, ts, _ = state
    if now > ts:  # a clock going back refills nothing
        return min(burst, t + (now - ts) * rate), now
    return t, ts


# -- Redis ------------------------------------------------------------------------------------

# KEYS[i]: a token bucket (hash: t = tokens left, ts = time of last refill) or a day counter.
# ARGV: now, seconds to the next Vietnam midnight, then four per key:
#   "r", rate, burst, ttl_ms   |   "q", quota, 0, ttl_ms
# Returns {0} when allowed, else {i, wait}: the refusing key that frees up last.
_LUA = """
local now = tonumber(ARGV[1])
local to_midnight = tonumber(ARGV[2])
local tokens, stamp, used = {}, {}, {}
local worst, worst_wait = 0, -1
for i, key in ipairs(KEYS) do
  local j = 2 + (i - 1) * 4
  local a = tonumber(ARGV[j + 2])
  if ARGV[j + 1] == 'r' then
    if tokens[key] == nil then
      local h = redis.call('HMGET', key, 't', 'ts')
      local t, ts = tonumber(h[1]), tonumber(h[2])
      local burst = tonumber(ARGV[j + 3])
      if t == nil or ts == nil then
        t, ts = burst, now
      elseif now > ts then  -- a clock behind the last writer's refills nothing
        t, ts = math.min(burst, t + (now - ts) * a), now
      end
      tokens[key], stamp[key] = t, ts
    end
    if tokens[key] < 1 then
      local wait = (1 - tokens[key]) / a
      if wait > worst_wait then worst, worst_wait = i, wait end
    end
    tokens[key] = tokens[key] - 1
  else
    if used[key] == nil then used[key] = tonumber(redis.call('GET', key) or '0') end
    if used[key] >= a and to_midnight > worst_wait then worst, worst_wait = i, to_midnight end
    used[key] = used[key] + 1
  end
end
if worst > 0 then return {worst, string.format('%.17g', worst_wait)} end
for i, key in ipairs(KEYS) do
  local j = 2 + (i - 1) * 4
  if ARGV[j + 1] == 'r' then
    redis.call('HSET', key, 't', string.format('%.17g', tokens[key]),
               'ts', string.format('%.17g', stamp[key]))
    redis.call('PEXPIRE', key, ARGV[j + 4])
  else
    redis.call('SET', key, string.format('%d', used[key]), 'PX', ARGV[j + 4])
  end
end
return {0}
"""

# What "Redis is unreachable" looks like: refused or reset connections, our own timeout,
# and server-side refusals (LOADING, READONLY, OOM) that make it unusable for now.
_REDIS_FAILURES = (RedisError, OSError, TimeoutError)
# Connections per limiter: Redis runs scripts one at a time, so more only adds queueing there.
_POOL_SIZE = 16
# Redis answering this long, without a failure, ends an outage.
_SETTLE_SECONDS = 2.0


class RedisLimiter:
    def __init__(
        self,
        url: str,
        *,
        on_failure: Literal["local", "deny"] = "local",
        timeout_ms: int = 100,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "lgsp:",
        backoff_seconds: float = 1.0,
        settle_seconds: float = _SETTLE_SECONDS,
    ) -> None:
        self._timeout = timeout_ms / 1000
        self._settle = settle_seconds
        self._on_failure = on_failure
        self._clock = clock
        self._prefix = key_prefix
        self._backoff = backoff_seconds
        # A small pool that queues checks rather than opening a connection per concurrent
        # request (redis-py's default pool opens up to 100, slowly, then raises); the timeout
        # covers the wait. No retries inside redis-py: one attempt, then the fallback.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=_POOL_SIZE,
            timeout=None,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._script = self._redis.register_script(_LUA)  # EVALSHA, loading it on NOSCRIPT
        self._local = LocalLimiter(clock)
        self._error: str | None = None  # set while Redis is unreachable
        self._down_since: float | None = None
        self._retry_at = 0.0  # time.monotonic() before which Redis is not tried again
        self._probing = False
        self._settling_since: float | None = None  # time.monotonic() Redis answered again
        self._back_at = 0.0  # the clock's time then

    async def start(self) -> None:
        # Load the script now, so the first exchange does not pay for it; an unreachable
        # Redis does not stop the gateway starting (it degrades or refuses, as configured).
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.script_load(_LUA)
        except _REDIS_FAILURES as e:
            self._failed(e)
        else:
            self._answered()

    async def close(self) -> None:
        await self._redis.aclose()

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        if not limits:
            return _ALLOWED
        plan = _plan(limits, self._clock(), self._prefix)
        if not plan.keys:
            return _ALLOWED
        probe = False
        if self._error is not None:
            # During an outage one request at a time tries Redis, once per back-off.
            if self._probing or time.monotonic() < self._retry_at:
                return self._fallback(plan)
            probe = self._probing = True
        args: list[str | float] = [plan.now, plan.to_midnight]
        for limit, kind in plan.checks:
            args.extend(limit._rate_argv if kind == "rate" else limit._quota_argv)
        try:
            async with asyncio.timeout(self._timeout):
                if probe:
                    await self._warm_pool()
                reply = await self._script(keys=plan.keys, args=args)
        except _REDIS_FAILURES as e:
            self._failed(e)
            return self._fallback(plan)
        finally:
            if probe:
                self._probing = False
        self._answered()
        index = int(reply[0])
        if index == 0:
            return _ALLOWED
        return _refused(plan, index - 1, float(reply[1]))

    async def _warm_pool(self) -> None:
        """Fresh connections, all of them open, and the script loaded (see the module's
        docstring); raises like a check when Redis does not answer."""
        pool = self._redis.connection_pool
        await pool.disconnect(inuse_connections=False)
        connect = cast("Callable[[], Awaitable[Any]]", pool.get_connection)  # untyped in redis-py
        opened: list[Any] = []
        try:
            results = await asyncio.gather(
                *(connect() for _ in range(_POOL_SIZE)), return_exceptions=True
            )
            opened = [c for c in results if not isinstance(c, BaseException)]
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            for conn in opened:
                await pool.release(conn)
        await self._redis.script_load(_LUA)

    def status(self) -> dict[str, object]:
        self._settled()
        return {
            "backend": "redis",
            "degraded": self._error is not None,
            "error": self._error,
            "on_failure": self._on_failure,
            "degraded_since": self._down_since if self._error is not None else None,
        }

    def _fallback(self, plan: _Plan) -> Verdict:
        if self._on_failure == "deny":
            raise LimiterUnavailable(f"rate limits cannot be checked: {self._error}")
        return self._local._check(plan)

    def _failed(self, e: BaseException) -> None:
        self._retry_at = time.monotonic() + self._backoff
        if isinstance(e, TimeoutError) and not str(e):
            error = f"Redis did not answer within {self._timeout * 1000:g} ms"
        else:
            error = f"{type(e).__name__}: {e}"
        # One alarm per outage, not one per request, nor one per flicker of a return.
        first = self._error is None and self._settling_since is None
        self._settling_since = None
        self._error = error
        if first:
            self._down_since = self._clock()
            log.error(
                "RATE LIMITS DEGRADED: Redis is unreachable; "
                + (
                    "limits are counted per replica until it is back"
                    if self._on_failure == "local"
                    else "limited exchanges are refused until it is back"
                ),
                error=error,
                on_failure=self._on_failure,
            )

    def _answered(self) -> None:
        if self._error is not None:
            # Limits are shared again at once; the outage ends once that has lasted.
            self._error = None
            self._settling_since = time.monotonic()
            self._back_at = self._clock()
        self._settled()

    def _settled(self) -> None:
        since = self._settling_since
        if since is None or time.monotonic() - since < self._settle:
            return
        outage = self._back_at - (self._down_since or self._back_at)
        log.warning("rate limits restored: Redis answers again", outage_seconds=round(outage, 3))
        self._settling_since = None
        self._down_since = None


def limiter_from_settings(settings: Settings) -> RateLimiter:
    if not settings.redis_url:
        return LocalLimiter()
    return RedisLimiter(
        settings.redis_url,
        on_failure=settings.ratelimit_on_redis_failure,
        timeout_ms=settings.ratelimit_redis_timeout_ms,
    )
