"""The store-and-forward worker: delivers async services' requests to their providers
(gateway/events/outbox.py), on the leased-queue loop event delivery uses
(gateway/events/worker.py) and under the same rules: a lease per attempt, exponential
backoff with jitter honouring `Retry-After`, dead after the retry window (an operator can
replay it).

An attempt goes through the upstream client exactly as a synchronous exchange's
forward step does (the province's credentials, timeouts, retries of idempotent calls, the
circuit breaker, the concurrency limit), then the adapter's response hook and the
response schema. What counts as "the provider could not take it", tried again later:
no answer (connection failed, timeout, breaker open, upstream busy) or 429, 502, 503,
504. Any other answer, an error too, is the provider's answer: kept for the caller at the
status URL, as the caller would have had it synchronously (problem+json included).

Every attempt is audited as an exchange event repeating the accepted exchange's fields
(client, officer, procedure, case, digests), with the same `request_id`, its `intent_id`
naming the acceptance's event: `phase` "attempt" for one tried again, "outcome" for the
one that settled it (answered, or dead).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from multidict import CIMultiDict

from gateway.audit import AuditEvent, AuditSink, AuditUnavailable
from gateway.config.runtime import RuntimeConfig, ServiceEntry
from gateway.conversion.mapping.engine import Context
from gateway.core.logging import log
from gateway.core.messages import UpstreamResponse
from gateway.core.problems import (
    ACCESS_DENIED,
    SERVICE_DISABLED,
    UPSTREAM_CIRCUIT_OPEN,
    UPSTREAM_INVALID_MESSAGE,
    Problem,
)
from gateway.events.delivery import DeliveryRules
from gateway.events.leases import Settlement
from gateway.events.outbox import ClaimedMessage, SqlOutbox
from gateway.events.worker import LeasedWorker, again_or_dead
from gateway.store.models import utcnow
from gateway.upstream.client import UpstreamClient

__all__ = ["ATTEMPT", "RETRYABLE_STATUSES", "ForwardWorker"]

ATTEMPT = "attempt"  # audit phase of an attempt tried again later
OUTCOME = "outcome"  # ... and of the attempt that settled the message
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Held messages a crash left behind (SqlOutbox.recover_held): looked for this often, and
# only once older than this, so that an exchange still between its audit and its release
# is left to finish.
HELD_SWEEP_SECONDS = 10.0
HELD_GRACE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int  # what the caller's answer would say (0: nothing to say yet)
    retry: bool  # the provider could not take it: again later
    headers: list[list[str]]
    body: bytes
    upstream_status: int | None = None
    upstream_ms: float | None = None
    error_type: str | None = None
    error: str | None = None
    retry_after: str | None = None


class ForwardWorker(LeasedWorker[ClaimedMessage]):
    """Claims, forwards, audits and settles async messages until closed."""

    name = "store-and-forward"

    def __init__(
        self,
        outbox: SqlOutbox,
        upstream: UpstreamClient,
        audit: AuditSink,
        config: Callable[[], RuntimeConfig],
        *,
        instance: str,
        rules: DeliveryRules,
        type_base: str,
    ) -> None:
        super().__init__(
            concurrency=rules.concurrency,
            per_group=rules.per_subscriber,
            poll_seconds=rules.poll_seconds,
        )
        self.outbox = outbox
        self.upstream = upstream
        self.audit = audit
        self.config = config
        self.instance = instance
        self.rules = rules
        self.type_base = type_base
        self._swept = 0.0

    async def start(self) -> None:
        self.outbox.woken.append(self.wake)
        self.start_loop()

    async def close(self) -> None:
        if self.wake in self.outbox.woken:
            self.outbox.woken.remove(self.wake)
        await self.stop_loop()

    async def claim(self, capacity: int, free: dict[Hashable, int]) -> list[ClaimedMessage]:
        if time.monotonic() - self._swept >= HELD_SWEEP_SECONDS:
            self._swept = time.monotonic()
            await self.sweep_held()
        # A lease outlives the slowest attempt (an async service's timeout, retries
        # within it), or a message still being sent would be taken and sent again.
        longest = max(
            (s.timeout.total or 0.0 for s in self.config().services.values() if s.deferred),
            default=0.0,
        )
        return await self.outbox.claim(
            self.instance,
            lease_seconds=max(self.rules.lease_seconds, 2 * longest + 5),
            limit=capacity,
            free=free,
            default=self.rules.per_subscriber,
        )

    async def sweep_held(self, grace: timedelta = HELD_GRACE) -> tuple[int, int]:
        """Release the held messages whose acceptance is audited (the gateway died before
        releasing them); drop those whose acceptance never arrived in the retry window."""
        released, dropped = await self.outbox.recover_held(
            older_than=grace, give_up_after=max(grace, self.rules.retry.window)
        )
        if released or dropped:
            log.warning(
                "held async messages recovered", released=released, dropped_unaccepted=dropped
            )
        return released, dropped

    def group(self, item: ClaimedMessage) -> Hashable:
        return item.upstream

    async def store_settle(self, settlements: list[Settlement]) -> None:
        await self.outbox.settle(settlements)

    async def run_one(self, item: ClaimedMessage) -> None:
        started = utcnow()
        t0 = time.perf_counter()
        attempt = await self._attempt(item)
        now = utcnow()
        state = "answered"
        due = None
        if attempt.retry:
            due = again_or_dead(
                self.rules.retry, item.attempts + 1, item.since, now, attempt.retry_after
            )
            state = "dead" if due is None else "pending"
        await self._audit(item, started, (time.perf_counter() - t0) * 1000, attempt, state)
        extra: dict[str, Any] = {}
        if state != "pending":  # the answer (or, dead, the last refusal) for the caller
            extra = {
                "answer_status": attempt.status,
                "answer_headers": attempt.headers,
                "answer_body": attempt.body,
            }
        if state == "dead":
            log.warning("async message dead", message=item.message_id, service=item.service)
        try:
            await self.settle(
                Settlement(item, state, attempt.upstream_status, attempt.error, due, extra)
            )
        except Exception as e:  # not settled: the lease runs out and it is sent again
            log.warning("async message not settled", message=item.message_id, error=str(e))

    async def _attempt(self, item: ClaimedMessage) -> _Attempt:
        config = self.config()
        service = config.services.get(item.service)
        client = config.clients.get(item.client)
        endpoint = str(item.exchange.get("endpoint") or "")
        if client is None or not client.enabled or service is None:
            return self._final(
                item,
                Problem(ACCESS_DENIED, "The caller or the service was removed or disabled."),
            )
        if not service.allows(client, item.outbound.method, endpoint):
            return self._final(
                item,
                Problem(
                    ACCESS_DENIED,
                    f"Client {client.code!r} no longer holds a right to "
                    f"{item.outbound.method} {endpoint}.",
                ),
            )
        if not service.enabled:  # maintenance: kept until it is enabled again
            return _Attempt(
                SERVICE_DISABLED.status, True, [], b"", None, None, SERVICE_DISABLED.slug,
                f"{service.name} is disabled for maintenance.",
            )  # fmt: skip
        o = item.outbound
        adapter = service.adapter_impl
        judge = None
        if adapter is not None and adapter.judges_failures:

            def judge(answer: UpstreamResponse) -> bool | None:
                return adapter.upstream_failed(answer, outbound=o)

        try:
            answer = await self.upstream.forward(
                service, o.method, o.path, o.query, CIMultiDict(o.headers), o.body, judge
            )
        except Problem as p:
            retry = p.ptype.status in RETRYABLE_STATUSES
            return self._final(item, p, retry=retry)
        ms = round(answer.elapsed_ms, 3)
        if answer.status in RETRYABLE_STATUSES:
            busy = Problem(
                UPSTREAM_CIRCUIT_OPEN,
                f"{service.name}: the provider answered {answer.status}; the message is "
                "kept and sent again later.",
            )
            got = self._final(item, busy, retry=True, upstream_status=answer.status, upstream_ms=ms)
            return dataclasses.replace(got, retry_after=answer.headers.get("Retry-After"))
        raw = answer.status
        try:
            answer = self._convert(service, item, answer)
        except Problem as p:
            return self._final(item, p, upstream_status=raw, upstream_ms=ms)
        headers = [[str(k), v] for k, v in answer.headers.items() if k.lower() != "content-length"]
        return _Attempt(answer.status, False, headers, answer.body, raw, ms)

    def _convert(
        self, service: ServiceEntry, item: ClaimedMessage, answer: UpstreamResponse
    ) -> UpstreamResponse:
        adapter = service.adapter_impl
        if adapter is not None and item.context is not None:
            answer = adapter.response(answer, item.outbound, Context(**item.context))
        validator = service.response_validator
        if validator is not None and 200 <= answer.status < 300 and answer.status != 204:
            problems = validator.errors(answer.body)
            if problems:
                raise Problem(
                    UPSTREAM_INVALID_MESSAGE,
                    "The provider's answer breaks the response schema: "
                    + "; ".join(f"{e.pointer or '/'}: {e.detail}" for e in problems[:3]),
                )
        return answer

    def _final(
        self,
        item: ClaimedMessage,
        problem: Problem,
        *,
        retry: bool = False,
        upstream_status: int | None = None,
        upstream_ms: float | None = None,
    ) -> _Attempt:
        response = problem.to_response(type_base=self.type_base, request_id=item.request_id)
        body = response.body if isinstance(response.body, bytes) else b""
        headers = [[str(k), v] for k, v in response.headers.items()]
        headers.append(["Content-Type", response.content_type])
        return _Attempt(
            problem.ptype.status,
            retry,
            headers,
            body,
            upstream_status,
            upstream_ms,
            problem.ptype.slug,
            problem.detail,
            problem.headers.get("Retry-After"),
        )

    async def _audit(
        self,
        item: ClaimedMessage,
        started: datetime,
        latency_ms: float,
        attempt: _Attempt,
        state: str,
    ) -> None:
        fields = {k: v for k, v in item.exchange.items() if k != "endpoint"}
        event = AuditEvent(
            event_id=str(uuid.uuid4()),
            request_id=item.request_id,
            instance=self.instance,
            started_at=started.astimezone(UTC),
            finished_at=started.astimezone(UTC) + timedelta(milliseconds=latency_ms),
            duration_ms=round(latency_ms, 3),
            status=attempt.status,
            upstream_status=attempt.upstream_status,
            upstream_ms=attempt.upstream_ms,
            response_bytes=len(attempt.body),
            response_sha256=hashlib.sha256(attempt.body).hexdigest() if attempt.body else None,
            error_type=attempt.error_type,
            error_detail=attempt.error,
            phase=ATTEMPT if state == "pending" else OUTCOME,
            intent_id=item.accept_event_id,
            **fields,
        )
        try:
            await self.audit.write(event)
        except AuditUnavailable as e:
            log.error("async attempt not audited", message=item.message_id, error=str(e))
