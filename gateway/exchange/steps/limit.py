"""Step 5, limit: the rate limits and daily quotas of the client, of the service and of
the pair, all taken or none (gateway/limits/ratelimit.py); shared by replicas through
Redis when it is configured."""

from __future__ import annotations

import math

from gateway.core.problems import QUOTA_EXHAUSTED, RATE_LIMIT_UNAVAILABLE, RATE_LIMITED, Problem
from gateway.exchange.context import Exchange
from gateway.limits.ratelimit import LimiterUnavailable, RateLimiter, Verdict
from gateway.telemetry.metrics import GatewayMetrics

__all__ = ["limit"]


async def limit(x: Exchange, limiter: RateLimiter, metrics: GatewayMetrics) -> None:
    """429 with Retry-After when a limit is reached; 503 when limits cannot be checked
    and the settings say to refuse then."""
    assert x.service is not None and x.caller is not None
    limits = x.config.limits_for(x.caller.client.code, x.service)
    if not limits:
        return
    try:
        verdict = await limiter.check(limits)
    except LimiterUnavailable as exc:
        raise Problem(
            RATE_LIMIT_UNAVAILABLE,
            f"Rate limits cannot be checked ({exc}); retry shortly.",
            headers={"Retry-After": "1"},
        ) from None
    if not verdict.allowed:
        if verdict.limit is not None:
            metrics.rate_limit_rejection(verdict.limit.scope, verdict.kind or "rate")
        raise _limited(verdict)


def _limited(verdict: Verdict) -> Problem:
    retry = max(1, math.ceil(verdict.retry_after))
    limit = verdict.limit
    what = limit.describe() if limit is not None else "a limit"
    if verdict.kind == "quota":
        ptype, detail = QUOTA_EXHAUSTED, f"The daily quota is used up: {what}."
    else:
        ptype, detail = RATE_LIMITED, f"Too many requests: {what}."
    return Problem(
        ptype,
        f"{detail} Retry after {retry} s.",
        headers={"Retry-After": str(retry)},
        limit={
            "scope": limit.scope if limit else None,
            "subject": limit.subject if limit else None,
            "kind": verdict.kind,
            "rate_per_second": limit.rate if limit else None,
            "burst": limit.burst if limit else None,
            "quota_per_day": limit.quota_per_day if limit else None,
        },
        retry_after=retry,
    )
