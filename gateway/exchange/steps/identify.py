"""Step 1, identify: the request id (the caller's `X-Request-Id`, or a new one), the W3C
trace context (gateway/telemetry/tracecontext.py), named for the log lines, the
exchange's span when traces are exported (gateway/telemetry/tracing.py), and the audit
event the other steps fill in.

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
from gateway.core.logging import bind_trace
from gateway.core.problems import INVALID_HEADER, Problem
from gateway.core.text import storable, undecodable
from gateway.exchange.accountability import request_id_from
from gateway.exchange.context import Exchange
from gateway.telemetry.spans import Tracer
from gateway.telemetry.tracecontext import TraceContext

__all__ = ["check_headers", "identify"]

CLAIMED_MAX_CHARS = 64  # what the audit keeps of a claimed value before it is checked
# Headers of which a second copy would be ambiguous: who is asking, for whom, and what the
# body is. (Host and Content-Length twins are refused by the HTTP parser itself.)
SINGLE_HEADERS: tuple[str, ...] = (
    "Authorization",
    "X-Api-Key",
    REQUEST_ID_HEADER,
    OFFICER_HEADER,
    PROCEDURE_HEADER,
    CASE_HEADER,
    "Content-Type",
    "Content-Encoding",
    "Transfer-Encoding",
)


def identify(
    request: web.Request, config: RuntimeConfig, instance: str, tracing: Tracer | None = None
) -> Exchange:
    """The exchange for `request`, under the tables `config`; never refuses."""
    t0 = time.perf_counter()
    started = datetime.now(UTC)
    request_id, bad_request_id = request_id_from(request.headers)
    trace = TraceContext.from_headers(
        request.headers.getall("traceparent", ()), request.headers.getall("tracestate", ())
    )
    span = None
    if tracing is not None:
        trace, span = tracing.start(trace)
    bind_trace(trace)
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
        trace_id=trace.trace_id,
        remote_addr=request.remote,
        officer_id=_claimed(request, OFFICER_HEADER),
        procedure_code=_claimed(request, PROCEDURE_HEADER),
        case_number=_claimed(request, CASE_HEADER),
    )
    return Exchange(request, config, t0, request_id, trace, event, bad_request_id, span=span)


def check_headers(x: Exchange) -> None:
    """400 naming the header when the caller's request id was malformed (the exchange has
    a new one), a header holds bytes that are not UTF-8, or a header that says who is
    asking, or what the body is, is given twice (which one would count?)."""
    if x.bad_request_id is not None:
        raise Problem(INVALID_HEADER, x.bad_request_id, header=REQUEST_ID_HEADER)
    headers = x.request.headers
    for name, value in headers.items():
        if undecodable(value) or undecodable(name):
            shown = storable(name)
            raise Problem(
                INVALID_HEADER,
                f"The {shown} header holds bytes that are not UTF-8 text ({storable(value)[:80]}"
                "); send header values as ASCII (or UTF-8).",
                header=shown,
            )
    for name in SINGLE_HEADERS:
        if len(headers.getall(name, ())) > 1:
            raise Problem(
                INVALID_HEADER,
                f"The {name} header is given more than once; send it once.",
                header=name,
            )


def _claimed(request: web.Request, header: str) -> str | None:
    value = request.headers.get(header)
    return value[:CLAIMED_MAX_CHARS] if value is not None else None
