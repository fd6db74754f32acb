"""Upstream resilience, the pure parts: retry backoff, the circuit breaker and the
concurrency limit (bulkhead). No I/O here; the clock and the randomness are injectable,
so the state machines are unit-tested without sleeping. gateway/upstream/client.py wires them
around each exchange.

All of it is per worker process: a breaker opens on the failures its own process saw,
and `max_concurrency` bounds one process's calls (N workers: up to N x the limit).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from gateway.config.runtime import DEFAULT_BREAKER, BreakerPolicy, RetryPolicy
from gateway.core.logging import log

# RFC 9110 §9.2.2: a repeated request has the same effect as one; nothing else is retried.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Answers that say "not now" rather than "no": the gateway may try again.
RETRY_STATUSES = frozenset({502, 503, 504})

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


def backoff_seconds(
    policy: RetryPolicy, retry: int, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry number `retry` (1 = the first retry): "full jitter", uniform in
    [0, min(max_backoff, backoff x 2^(retry-1))], so callers that failed together do not
    come back together."""
    cap = min(policy.max_backoff_ms, policy.backoff_ms * (1 << min(retry - 1, 20)))
    return rand() * cap / 1000


def min_attempt_seconds(total: float, connect: float | None) -> float:
    """The least time a retry must have left to be worth starting: enough to open a new
    connection (the failed one is often gone), but never more than a quarter of the budget
    so services whose connect timeout is close to their total still retry. With less,
    the attempt would most likely end in a timeout, and the caller is better served by
    the real error now."""
    quarter = total / 4
    return quarter if connect is None else min(connect, quarter)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After (RFC 9110 §10.2.3) in seconds: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def next_delay(
    policy: RetryPolicy,
    retry: int,
    remaining: float,
    floor: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """How long to wait before retry number `retry`, or None to stop: the attempts are
    used up, or waiting would leave less than `floor` of the `remaining` budget. A
    provider's Retry-After is honoured when it fits; when it does not, the gateway stops
    rather than call back sooner than asked."""
    if retry >= policy.attempts:
        return None
    delay = retry_after if retry_after is not None else backoff_seconds(policy, retry, rand)
    if remaining - delay < floor:
        return None
    return delay


class CircuitBreaker:
    """Closed -> open after `failure_threshold` consecutive failures; open -> half-open
    after `open_seconds`, letting `half_open_requests` trial calls through; as many
    successes close it, one failure opens it again.

    On the closed path the caller reads `state` (and `failures` after a success) and
    calls nothing else, so a healthy upstream costs two attribute reads per exchange."""

    __slots__ = (
        "clock",
        "failures",
        "name",
        "opened_at",
        "passed",
        "policy",
        "reopened",
        "state",
        "trials",
    )

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy = DEFAULT_BREAKER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy
        self.state = CLOSED
        self.failures = 0  # consecutive, while closed
        self.opened_at = 0.0
        self.reopened = False  # opened by a failed trial, not by a run of failures
        self.trials = 0  # trial calls in flight, while half-open
        self.passed = 0  # trial calls that succeeded, while half-open
        self.clock = clock

    def retry_in(self) -> float:
        """Seconds until the upstream will be tried again (0 when it may be now)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.policy.open_seconds - self.clock())

    def admit(self) -> float | None:
        """For a breaker that is not closed: None lets the call through as a trial (the
        caller must then report it: `success`, `failure` or `abandon`); otherwise the
        seconds after which to come back."""
        if self.state == CLOSED:
            return None
        if self.state == OPEN:
            wait = self.retry_in()
            if wait > 0:
                return wait
            self._to(HALF_OPEN)
        if self.trials + self.passed >= self.policy.half_open_requests:
            # Every trial slot is taken: the verdict is a moment away.
            return min(1.0, self.policy.open_seconds)
        self.trials += 1
        return None

    def success(self, trial: bool) -> None:
        if self.state == CLOSED:
            self.failures = 0
        elif self.state == HALF_OPEN and trial:
            self.trials -= 1
            self.passed += 1
            if self.passed >= self.policy.half_open_requests:
                self._to(CLOSED)
        # Open: a call let through before the breaker opened; its answer changes nothing.

    def failure(self, trial: bool) -> None:
        if self.state == CLOSED:
            self.failures += 1
            threshold = self.policy.failure_threshold
            if threshold and self.failures >= threshold:
                self._to(OPEN)
        elif self.state == HALF_OPEN and trial:
            self._to(OPEN)

    def abandon(self, trial: bool) -> None:
        """A trial ended without a verdict (cancelled, or refused before it was sent)."""
        if trial and self.state == HALF_OPEN:
            self.trials -= 1

    def configure(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        if not policy.failure_threshold and self.state != CLOSED:
            self._to(CLOSED)  # the breaker was switched off

    def _to(self, state: str) -> None:
        previous, self.state = self.state, state
        self.trials = self.passed = 0
        if state == OPEN:
            self.opened_at = self.clock()
            self.reopened = previous == HALF_OPEN
            log.warning(
                "upstream circuit opened",
                upstream=self.name,
                previous=previous,
                failures=self.failures,
                open_seconds=self.policy.open_seconds,
            )
        elif state == HALF_OPEN:
            log.info("upstream circuit half-open", upstream=self.name)
        else:
            log.info("upstream circuit closed", upstream=self.name, previous=previous)
        self.failures = 0


class Bulkhead:
    """At most `limit` calls at once (0: no limit); a caller may wait up to its queue
    timeout for a slot, first come first served. A released slot goes straight to the
    next waiter, so a newcomer cannot overtake the queue."""

    __slots__ = ("_waiters", "in_flight", "limit")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if not self.limit or self.in_flight < self.limit:
            self.in_flight += 1
            return True
        return False

    async def acquire(self, wait_seconds: float) -> bool:
        """A slot within `wait_seconds` (0: only if one is free now)."""
        if self.try_acquire():
            return True
        if wait_seconds <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, wait_seconds)
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            raise
        return True  # the releasing caller's slot is now ours; in_flight is unchanged

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a waiter that timed out or was cancelled is skipped
                waiter.set_result(None)
                return
        self.in_flight -= 1

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())
