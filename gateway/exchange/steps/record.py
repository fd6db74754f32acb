"""Steps 10 and 11, audit and count: always, whatever happened before.

One audit event per exchange through the `AuditSink`; if it cannot be made durable, a
`fail_closed` service (the default) answers 503 `audit-unavailable` instead of its answer,
and a `fail_open` one answers and the failure is logged. Then the outcome and time are
counted, per service, client and outcome, for /metrics, and, when traces are exported,
the exchange's spans are handed to the exporter (gateway/telemetry/tracing.py), each
refusal a span event.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

from aiohttp import web

from gateway.audit import AuditSink, AuditUnavailable
from gateway.audit.subjects import in_body
from gateway.core.logging import log
from gateway.core.problems import AUDIT_UNAVAILABLE, Problem
from gateway.exchange.context import Exchange
from gateway.telemetry.metrics import GatewayMetrics

__all__ = ["problem_response", "record"]


def problem_response(x: Exchange, problem: Problem, type_base: str) -> web.Response:
    """The problem+json answer for a refusal, noted in the event."""
    event = x.event
    event.error_type = problem.ptype.slug
    event.error_detail = problem.detail
    if x.span is not None:
        ptype = problem.ptype
        x.span.refused(ptype.slug, ptype.status, ptype.side)
    response = problem.to_response(type_base=type_base, request_id=x.request_id)
    if event.upstream_status is None and isinstance(response.body, bytes):
        event.response_bytes = len(response.body)  # no provider answer: ours
    return response


async def record(
    x: Exchange,
    response: web.Response,
    audit: AuditSink,
    metrics: GatewayMetrics,
    type_base: str,
) -> web.Response:
    """Audit the exchange, then count it; the answer to send (503 when a fail_closed
    exchange could not be recorded)."""
    event, service = x.event, x.service
    event.status = response.status
    if event.adapter is not None and isinstance(response.body, bytes):
        # A converted exchange: what the caller received is not what the provider answered.
        event.caller_response_sha256 = hashlib.sha256(response.body).hexdigest()
    elapsed = time.perf_counter() - x.t0
    event.duration_ms = round(elapsed * 1000, 3)
    event.finished_at = event.started_at + timedelta(seconds=elapsed)
    # Whose data it asked for or returned: the identifiers in the request body and in the
    # answer the caller gets (hashed under the index key by the audit log's writer).
    answer = response.body if isinstance(response.body, bytes) else b""
    event.subject_ids = in_body(x.body) | in_body(answer)
    outcome: str | None = None
    try:
        await audit.write(event)
    except AuditUnavailable as exc:
        log.error("audit event not durable", request_id=event.request_id, error=str(exc))
        metrics.audit_failures.inc()
        already = event.error_type == AUDIT_UNAVAILABLE.slug  # the intent failed: not sent
        if (service is None or service.audit_mode == "fail_closed") and not already:
            response = Problem(
                AUDIT_UNAVAILABLE,
                "The exchange could not be recorded in the audit log, so its answer is "
                "withheld. Retry later; the operators have been alerted.",
            ).to_response(type_base=type_base, request_id=event.request_id)
            if x.span is not None:
                x.span.refused(AUDIT_UNAVAILABLE.slug, 503, AUDIT_UNAVAILABLE.side)
        if service is None or service.audit_mode == "fail_closed":
            outcome = AUDIT_UNAVAILABLE.slug

    if outcome is None:
        outcome = event.error_type or (
            "ok" if response.status < 400 else f"upstream-{response.status // 100}xx"
        )
    metrics.exchange(
        service.key if service is not None else None,
        event.client_code if service is not None else None,
        outcome,
        time.perf_counter() - x.t0,
    )
    if x.span is not None:
        x.span.end(
            method=event.method,
            status=response.status,
            outcome=outcome,
            service="/".join(service.key) if service is not None else None,
            client=event.client_code,
            agency=event.client_agency_code,
            request_id=event.request_id,
        )
    return response
