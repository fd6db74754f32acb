"""Step 8c, intent: for a `fail_closed` service, a durable record of the request before
it is forwarded, so "the provider was asked and nobody knows" cannot happen.

The intent is an audit event of its own, chained like any other, holding everything
known before the call (who asks, for what, on which procedure and case, the digest of
the request, the adapter); the outcome event, written at step 10 as for every exchange,
names it in `intent_id`. If the intent cannot be made durable, the exchange is refused
before anything is sent (503 `audit-unavailable`); if the gateway dies after the call,
the intent stays without its outcome, and verification reports it
(gateway/audit/verify.py: `outcome_missing`). `fail_open` services, whose owners chose
availability over the record, are recorded in one event as before.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import timedelta

from gateway.audit import AuditSink, AuditUnavailable
from gateway.core.logging import log
from gateway.core.problems import AUDIT_UNAVAILABLE, Problem
from gateway.exchange.context import Exchange

__all__ = ["INTENT", "OUTCOME", "record_intent"]

INTENT = "intent"
OUTCOME = "outcome"


async def record_intent(x: Exchange, audit: AuditSink) -> None:
    """Make the intent durable, or refuse with 503 before forwarding."""
    service = x.service
    assert service is not None
    if service.audit_mode != "fail_closed":
        return
    elapsed = time.perf_counter() - x.t0
    event = x.event
    intent = dataclasses.replace(
        event,
        event_id=str(uuid.uuid4()),
        phase=INTENT,
        finished_at=event.started_at + timedelta(seconds=elapsed),
        duration_ms=round(elapsed * 1000, 3),
        status=0,  # the provider has not answered yet
    )
    try:
        await audit.write(intent)
    except AuditUnavailable as exc:
        log.error("audit intent not durable", request_id=x.request_id, error=str(exc))
        raise Problem(
            AUDIT_UNAVAILABLE,
            "The request could not be recorded in the audit log before it was sent, so it "
            "was not sent to the provider. Retry later; the operators have been alerted.",
        ) from None
    event.phase, event.intent_id = OUTCOME, intent.event_id
