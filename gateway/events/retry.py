"""When a failed delivery is tried again: exponential backoff with full jitter, never
sooner than the subscriber's `Retry-After`, and dead once the retry window is over."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = ["RetryRules", "retry_after_seconds"]


@dataclass(frozen=True, slots=True)
class RetryRules:
    window: timedelta = timedelta(hours=24)  # from publish (or replay) to dead-letter
    initial_seconds: float = 1.0
    max_seconds: float = 3600.0

    def next_attempt(
        self, attempts: int, since: datetime, now: datetime, retry_after: float | None = None
    ) -> datetime | None:
        """When to try again after `attempts` failed attempts; None: the window is over.

        Args:
            attempts: failed attempts so far, this one included (1 after the first).
            since: when the window started.
            now: the current time.
            retry_after: what the subscriber asked for, in seconds (honoured, up to the
                end of the window).

        Returns:
            the time of the next attempt, or None when it would fall after the window.

        Example:
            >>> RetryRules().next_attempt(1, now, now) - now <= timedelta(seconds=1)
            True
        """
        ceiling = min(self.max_seconds, self.initial_seconds * 2 ** min(attempts - 1, 40))
        # Full jitter (AWS architecture blog): subscribers that failed together do not
        # all come back in the same second.
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - not a secret
        if retry_after is not None:
            delay = max(delay, retry_after)
        due = now + timedelta(seconds=delay)
        end = since + self.window
        if now >= end:
            return None
        return min(due, end)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header as seconds from `now` (RFC 9110 §10.2.3: seconds or a date).

    Example:
        >>> retry_after_seconds("120", now)
        120.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 86_400 * 7))
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        return None
    return max(0.0, (at - now).total_seconds())
