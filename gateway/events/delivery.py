"""The delivery worker: pushes pending deliveries to subscribers' callbacks.

Each gateway process (`lgsp serve`) runs one, on the leased-queue loop it shares with
store-and-forward (gateway/events/worker.py). It claims due deliveries from the store
with a lease, so replicas share the work; sends each as a Standard Webhooks request
(gateway/events/signing.py) through the outbound allow-list (a callback's address is
judged again at every connection, as an upstream's is); audits every attempt; and
settles it: a 2xx is delivered, anything else is tried again with backoff
(gateway/events/retry.py) until the retry window ends, then it is dead (an operator can
replay it from the admin API).

One slow subscriber cannot hold the others back: a subscription has at most
`per_subscriber` deliveries in flight in a worker, and the worker's other slots go to
the rest. Only the oldest pending delivery of a (subscription, key) can be claimed, so
every key is delivered in order; a delivery whose lease ran out (a worker killed while
sending) is claimed again, which is the "at least once".
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import aiohttp

from gateway.audit import AuditSink, AuditUnavailable
from gateway.config.runtime import RuntimeConfig
from gateway.core.logging import log
from gateway.events.audit import delivery_event
from gateway.events.retry import RetryRules
from gateway.events.secrets import SecretBox
from gateway.events.signing import signed_headers
from gateway.events.store import Claimed, EventStore, Settlement
from gateway.events.worker import LeasedWorker, again_or_dead
from gateway.store.models import utcnow
from gateway.upstream.allowlist import GuardedResolver, OutboundPolicy, address_refused

__all__ = ["DeliveryRules", "DeliveryWorker", "Outcome", "Verdict"]

_ANSWER_BYTES = 64 * 1024  # what is read of a subscriber's answer (then dropped)


@dataclass(frozen=True, slots=True)
class DeliveryRules:
    concurrency: int = 64  # deliveries in flight in one worker
    per_subscriber: int = 16  # of which one subscription may hold
    poll_seconds: float = 0.2  # how often the store is asked when nothing woke the worker
    lease_seconds: float = 60.0  # a claim held longer than this may be taken again
    timeout_seconds: float = 10.0  # one attempt, connection to answer
    retry: RetryRules = field(default_factory=RetryRules)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: the subscriber's status (0: no answer, or not sent)."""

    status: int  # 0: no answer
    error_type: str | None
    error: str | None
    retry_after: str | None = None

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300


_Outcome = Outcome


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of a delivery after an attempt: "delivered", "pending" again at
    `next_attempt_at`, or "dead"."""

    state: str
    status: int | None
    error: str | None
    next_attempt_at: datetime | None = None


class DeliveryWorker(LeasedWorker[Claimed]):
    """Claims, sends, audits and settles deliveries until closed."""

    name = "event-delivery"

    def __init__(
        self,
        store: EventStore,
        box: SecretBox,
        outbound: OutboundPolicy,
        audit: AuditSink,
        config: Callable[[], RuntimeConfig],
        *,
        instance: str,
        rules: DeliveryRules,
    ) -> None:
        super().__init__(
            concurrency=rules.concurrency,
            per_group=rules.per_subscriber,
            poll_seconds=rules.poll_seconds,
        )
        self.store = store
        self.box = box
        self.outbound = outbound
        self.audit = audit
        self.config = config
        self.instance = instance
        self.rules = rules
        self._http: aiohttp.ClientSession | None = None
        # Deliveries in flight outside this loop (the Kafka consumer's, which sends through
        # `attempt`), per subscription: counted against `per_subscriber` here too.
        self.elsewhere: Counter[Hashable] = Counter()

    def busy(self, subscription_id: int) -> int:
        """Deliveries of a subscription in flight in this process, on either path."""
        return self.elsewhere[subscription_id] + self.in_flight(subscription_id)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.outbound),
            limit=self.rules.concurrency,
            limit_per_host=0,
        )
        self._http = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        self.start_loop()

    async def close(self) -> None:
        """Stop claiming; deliveries in flight are cancelled (their leases run out and
        another worker, or this one after a restart, sends them again)."""
        await self.stop_loop()
        if self._http is not None:
            await self._http.close()

    async def claim(self, capacity: int, free: dict[Hashable, int]) -> list[Claimed]:
        limit = self.rules.per_subscriber
        for group, n in self.elsewhere.items():
            if n > 0:
                free[group] = free.get(group, limit) - n
        return await self.store.claim(
            self.instance,
            lease_seconds=self.rules.lease_seconds,
            limit=capacity,
            free=cast(dict[int, int], free),
            default=limit,
        )

    def group(self, item: Claimed) -> Hashable:
        return item.subscription_id

    async def run_one(self, item: Claimed) -> None:
        await self._deliver(item)

    async def store_settle(self, settlements: list[Settlement]) -> None:
        await self.store.settle(settlements)

    def _permitted(self, claim: Claimed) -> bool:
        # Deny by default at every attempt too: a subscriber disabled, or whose right on
        # the topic was withdrawn, after the event was queued is not sent it.
        config = self.config()
        client, topic = config.clients.get(claim.subscriber), config.topics.get(claim.topic)
        return (
            client is not None
            and client.enabled
            and topic is not None
            and topic.may_subscribe(client)
        )

    async def attempt(self, claim: Claimed) -> Verdict:
        """One attempt at a delivery, audited, and what becomes of it (not settled: the
        caller records the verdict in its queue, the store's or Kafka's)."""
        verdict, audited = await self.attempt_audited_later(claim)
        await audited
        return verdict

    async def attempt_audited_later(self, claim: Claimed) -> tuple[Verdict, asyncio.Task[None]]:
        """As `attempt`, returning as soon as the subscriber has answered, with the audit
        write still going (a group commit shared with others): what the Kafka path uses to
        send a key's next event while this one's audit record is made durable. Settle
        only once `audited` is done."""
        started = utcnow()
        t0 = time.perf_counter()
        if not self._permitted(claim):
            detail = "the subscriber no longer holds a right to the topic, or is disabled"
            outcome = _Outcome(0, "subscriber-not-permitted", detail)
            return Verdict("dead", None, detail), self._audit_task(claim, started, 0.0, outcome)
        outcome = await self._send(claim, started)
        latency_ms = (time.perf_counter() - t0) * 1000
        audited = self._audit_task(claim, started, latency_ms, outcome)
        if outcome.delivered:
            return Verdict("delivered", outcome.status, None), audited
        due = again_or_dead(
            self.rules.retry, claim.attempts + 1, claim.since, utcnow(), outcome.retry_after
        )
        error = outcome.error or f"the subscriber answered {outcome.status}"
        if due is None:
            log.warning("event delivery dead", delivery=claim.id, subscriber=claim.subscriber)
            return Verdict("dead", outcome.status, error), audited
        return Verdict("pending", outcome.status, error, due), audited

    def _audit_task(
        self, claim: Claimed, started: datetime, latency_ms: float, outcome: Outcome
    ) -> asyncio.Task[None]:
        return asyncio.create_task(
            self._audit(claim, started, latency_ms, outcome), name="event-delivery-audit"
        )

    async def _deliver(self, claim: Claimed) -> None:
        verdict = await self.attempt(claim)
        try:
            await self.settle(
                Settlement(
                    claim, verdict.state, verdict.status, verdict.error, verdict.next_attempt_at
                )
            )
        except Exception as e:  # not settled: the lease runs out and it is sent again
            log.warning("event delivery not settled", delivery=claim.id, error=str(e))

    async def _send(self, claim: Claimed, at: datetime) -> _Outcome:
        assert self._http is not None
        try:
            self.outbound.check_url(claim.callback_url)
            secret = self.box.open(claim.secret_encrypted, claim.subscription_id)
        except ValueError as e:
            return _Outcome(0, "callback-refused", str(e))
        except Exception as e:  # the events key changed: nothing can be signed
            return _Outcome(
                0, "secret-unavailable", f"{type(e).__name__}: the secret cannot be read"
            )
        headers = signed_headers(secret, claim.event_id, claim.body, at)
        timeout = aiohttp.ClientTimeout(total=self.rules.timeout_seconds)
        try:
            async with self._http.post(
                claim.callback_url,
                data=claim.body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,  # a redirect could lead anywhere: not followed
            ) as r:
                await r.content.read(_ANSWER_BYTES)
                return _Outcome(r.status, None, None, r.headers.get("Retry-After"))
        except TimeoutError:
            return _Outcome(0, "timeout", f"no answer within {self.rules.timeout_seconds:g} s")
        except aiohttp.ClientError as e:
            refused = address_refused(e)
            if refused is not None:
                return _Outcome(0, "callback-refused", refused.message)
            return _Outcome(0, "connect-failed", f"{type(e).__name__}: {e}")

    async def _audit(
        self, claim: Claimed, started: datetime, latency_ms: float, outcome: _Outcome
    ) -> None:
        config = self.config()
        client = config.clients.get(claim.subscriber)
        topic = config.topics.get(claim.topic)
        failed = not 200 <= outcome.status < 300
        event = delivery_event(
            instance=self.instance,
            webhook_id=claim.event_id,
            topic=claim.topic,
            provider=topic.provider if topic else None,
            subscriber=claim.subscriber,
            subscriber_agency=client.agency_code if client else None,
            callback_url=claim.callback_url,
            started_at=started,
            latency_ms=latency_ms,
            status=outcome.status,
            body=claim.body,
            error_type=(outcome.error_type or "subscriber-refused") if failed else None,
            error_detail=outcome.error if failed else None,
        )
        try:
            await self.audit.write(event)
        except AuditUnavailable as e:
            log.error("delivery attempt not audited", delivery=claim.id, error=str(e))
