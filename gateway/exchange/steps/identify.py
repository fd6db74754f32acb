"""Step 1, identify: the request id (the caller's `X-Request-Id`, or a new one), the W3C
trace context, and the audit event the other steps fill in.

The event is made before anything is checked, with what the caller *claims* (officer,
procedure, case), so that a refused call is recorded with who tried, not only who
succeeded.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from aiohttp import web

from gateway.audit import AuditEvent
from gateway.config.runtime import RuntimeConfig
from gateway.core.headers import CASE_HEADER, OFFICER_HEADER, PROCEDURE_HEADER, REQUEST_ID_HEADER
from gateway.core.problems import INVALID_HEADER, Problem
from gateway.exchange.accountability import request_id_from, traceparent_from
from gateway.exchange.context import Exchange

__all__ = ["check_request_id", "identify"]

CLAIMED_MAX_CHARS = 64  # what the audit keeps of a claimed value before it is checked


def identify(request: web.Request, config: RuntimeConfig, instance: str) -> Exchange:
    """The exchange for `request`, under the tables `config`; never refuses."""
    t0 = time.perf_counter()
    started = datetime.now(UTC)
    request_id, bad_request_id = request_id_from(request.headers)
    traceparent, trace_id = traceparent_from(request.headers)
    event = AuditEvent(
        event_id=str(uuid.uuid4()),
        request_id=request_id,
        instance=instance,
        method=request.method[:16],
        path=request.raw_path[:4096],
        started_at=started,
        finished_at=started,
        duration_ms=0.0,
        status=0,
        trace_id=trace_id,
        remote_addr=request.remote,
        officer_id=_claimed(request, OFFICER_HEADER),
        procedure_code=_claimed(request, PROCEDURE_HEADER),
        case_number=_claimed(request, CASE_HEADER),
    )
    return Exchange(request, config, t0, request_id, traceparent, event, bad_request_id)


def check_request_id(x: Exchange) -> None:
    """400 when the caller's request id was malformed (the exchange has a new one)."""
    if x.bad_request_id is not None:
        raise Problem(INVALID_HEADER, x.bad_request_id, header=REQUEST_ID_HEADER)


def _claimed(request: web.Request, header: str) -> str | None:
    value = request.headers.get(header)
    return value[:CLAIMED_MAX_CHARS] if value is not None else None
