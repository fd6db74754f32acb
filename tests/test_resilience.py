"""The resilience state machines on their own (gateway/upstream/resilience.py): the circuit
breaker with a clock the test moves, the concurrency limit, and the retry decisions
(backoff with full jitter, the time budget, Retry-After)."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import pytest

from gateway.config.runtime import BreakerPolicy, RetryPolicy
from gateway.upstream.resilience import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Bulkhead,
    CircuitBreaker,
    backoff_seconds,
    min_attempt_seconds,
    next_delay,
    retry_after_seconds,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(**policy: float) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    values = {"failure_threshold": 3, "open_seconds": 10.0, "half_open_requests": 1, **policy}
    return CircuitBreaker("agency", BreakerPolicy(**values), clock), clock  # type: ignore[arg-type]


# -- circuit breaker ----------------------------------------------------------------------------


def test_consecutive_failures_open_the_breaker_and_a_success_resets_the_count() -> None:
    b, _ = breaker()
    b.failure(False)
    b.failure(False)
    b.success(False)  # not consecutive any more
    b.failure(False)
    b.failure(False)
    assert b.state == CLOSED
    b.failure(False)
    assert b.state == OPEN


def test_an_open_breaker_refuses_until_open_seconds_have_passed() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure(False)
    assert b.admit() == pytest.approx(10.0)
    clock.now += 9.5
    assert b.admit() == pytest.approx(0.5)
    assert b.state == OPEN
    clock.now += 0.5
    assert b.admit() is None  # the trial call
    assert b.state == HALF_OPEN
    # Only one trial at a time; the others are told to come back shortly.
    assert b.admit() == pytest.approx(1.0)


def test_a_successful_trial_closes_the_breaker() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure(False)
    clock.now += 10
    assert b.admit() is None
    b.success(True)
    assert b.state == CLOSED and b.failures == 0
    assert b.admit() is None


def test_a_failed_trial_opens_the_breaker_again_for_open_seconds() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure(False)
    clock.now += 10
    assert b.admit() is None
    clock.now += 2  # the trial took two seconds
    b.failure(True)
    assert b.state == OPEN
    assert b.retry_in() == pytest.approx(10.0)  # counted from the failed trial


def test_several_trials_must_all_succeed_to_close() -> None:
    b, clock = breaker(half_open_requests=2)
    for _ in range(3):
        b.failure(False)
    clock.now += 10
    assert b.admit() is None
    assert b.admit() is None
    assert b.admit() is not None  # both trial slots taken
    b.success(True)
    assert b.state == HALF_OPEN
    assert b.admit() is not None  # one passed, one still out: no third trial
    b.success(True)
    assert b.state == CLOSED


def test_answers_of_calls_that_were_not_trials_do_not_decide_a_half_open_breaker() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure(False)
    b.success(False)  # a call let through before it opened, answering late
    assert b.state == OPEN
    clock.now += 10
    assert b.admit() is None
    b.success(False)
    b.failure(False)
    assert b.state == HALF_OPEN
    b.success(True)
    assert b.state == CLOSED


def test_an_abandoned_trial_frees_its_slot() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure(False)
    clock.now += 10
    assert b.admit() is None
    assert b.admit() is not None
    b.abandon(True)  # the caller went away
    assert b.admit() is None
    assert b.state == HALF_OPEN


def test_a_zero_threshold_switches_the_breaker_off() -> None:
    b, _ = breaker(failure_threshold=0)
    for _ in range(100):
        b.failure(False)
    assert b.state == CLOSED
    # ... and switching it off closes one that is open.
    b2, _ = breaker()
    for _ in range(3):
        b2.failure(False)
    b2.configure(BreakerPolicy(failure_threshold=0))
    assert b2.state == CLOSED and b2.admit() is None


def test_a_new_policy_applies_to_the_breaker_as_it_stands() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure(False)
    b.configure(BreakerPolicy(failure_threshold=3, open_seconds=2.0))
    assert b.state == OPEN  # a reload does not forget that the upstream is failing
    clock.now += 2
    assert b.admit() is None


# -- concurrency limit --------------------------------------------------------------------------


async def test_the_limit_refuses_at_once_without_a_queue_timeout() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.try_acquire() and bulkhead.try_acquire()
    assert not await bulkhead.acquire(0)
    assert bulkhead.in_flight == 2
    bulkhead.release()
    assert await bulkhead.acquire(0)


async def test_a_waiting_caller_gets_the_next_free_slot_before_newcomers() -> None:
    bulkhead = Bulkhead(1)
    assert bulkhead.try_acquire()
    waiter = asyncio.create_task(bulkhead.acquire(5))
    await asyncio.sleep(0)
    assert bulkhead.waiting == 1
    bulkhead.release()  # handed to the waiter, not freed
    assert not bulkhead.try_acquire()
    assert await waiter
    assert bulkhead.in_flight == 1
    bulkhead.release()
    assert bulkhead.in_flight == 0


async def test_a_caller_that_waits_too_long_is_refused_and_leaves_no_trace() -> None:
    bulkhead = Bulkhead(1)
    assert bulkhead.try_acquire()
    assert not await bulkhead.acquire(0.01)
    assert bulkhead.waiting == 0
    bulkhead.release()
    assert bulkhead.in_flight == 0


async def test_a_cancelled_waiter_does_not_take_a_slot() -> None:
    bulkhead = Bulkhead(1)
    assert bulkhead.try_acquire()
    waiter = asyncio.create_task(bulkhead.acquire(5))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    bulkhead.release()
    assert bulkhead.in_flight == 0


def test_zero_means_no_limit() -> None:
    bulkhead = Bulkhead(0)
    assert all(bulkhead.try_acquire() for _ in range(10_000))
    assert bulkhead.in_flight == 10_000


# -- retries ------------------------------------------------------------------------------------

POLICY = RetryPolicy(attempts=4, backoff_ms=100, max_backoff_ms=300)


def test_backoff_grows_exponentially_up_to_its_cap_with_full_jitter() -> None:
    top = [backoff_seconds(POLICY, retry, rand=lambda: 1.0) for retry in (1, 2, 3, 4)]
    assert top == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert backoff_seconds(POLICY, 3, rand=lambda: 0.0) == 0.0
    assert backoff_seconds(POLICY, 2, rand=lambda: 0.5) == pytest.approx(0.1)


def test_no_retry_past_the_attempts() -> None:
    assert next_delay(POLICY, 3, remaining=10, floor=0.1, rand=lambda: 0.5) is not None
    assert next_delay(POLICY, 4, remaining=10, floor=0.1, rand=lambda: 0.5) is None
    assert next_delay(RetryPolicy(), 1, remaining=10, floor=0.1) is None


def test_no_retry_that_would_not_leave_time_for_an_attempt() -> None:
    # 0.05 s of backoff, then at least 0.1 s must remain for the attempt itself.
    assert next_delay(POLICY, 1, remaining=0.16, floor=0.1, rand=lambda: 0.5) == 0.05
    assert next_delay(POLICY, 1, remaining=0.14, floor=0.1, rand=lambda: 0.5) is None
    assert next_delay(POLICY, 1, remaining=0.0, floor=0.1, rand=lambda: 0.0) is None


def test_retry_after_is_honoured_when_it_fits_and_ends_the_retries_when_not() -> None:
    assert next_delay(POLICY, 1, remaining=5, floor=0.5, retry_after=2.0) == 2.0
    assert next_delay(POLICY, 1, remaining=5, floor=0.5, retry_after=4.8) is None


def test_the_least_time_for_an_attempt() -> None:
    assert min_attempt_seconds(10.0, 2.0) == 2.0  # time to connect
    assert min_attempt_seconds(1.0, 2.0) == 0.25  # a quarter of a short budget
    assert min_attempt_seconds(1.0, None) == 0.25


def test_retry_after_values() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    now = 1_800_000_000.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now=now) == 0.0
