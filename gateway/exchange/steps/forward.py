"""Step 8, forward: what goes to the provider (hop-by-hop headers and the caller's own
credentials stripped, who is asking added, as X-Road's `X-Road-Client` does), then the
call itself through the upstream client: pooled connections, the province's credentials
for the upstream, timeouts, retries of idempotent calls, a circuit breaker and a
concurrency limit per upstream (gateway/upstream/)."""

from __future__ import annotations

import functools
import hashlib

from gateway.core.headers import (
    CASE_HEADER,
    CLIENT_AGENCY_HEADER,
    CLIENT_ID_HEADER,
    OFFICER_HEADER,
    PROCEDURE_HEADER,
    REQUEST_ID_HEADER,
)
from gateway.core.messages import OutboundRequest
from gateway.exchange.context import Exchange
from gateway.telemetry.metrics import GatewayMetrics
from gateway.upstream.client import NOT_FORWARDED_REQUEST, UpstreamClient, forwardable

__all__ = ["forward", "prepare_outbound"]


def prepare_outbound(x: Exchange) -> None:
    """Set `x.outbound`: the caller's request as the provider will get it."""
    service, caller, who, address = x.service, x.caller, x.who, x.address
    assert service is not None and caller is not None and who is not None
    assert address is not None
    request = x.request
    headers = forwardable(request.headers, NOT_FORWARDED_REQUEST)
    if x.decoded:
        del headers["Content-Encoding"]  # the provider gets the message as it was read
    headers[REQUEST_ID_HEADER] = x.request_id
    # The gateway is a participant of the trace: its span is the provider's parent.
    headers["traceparent"] = x.trace.traceparent
    if x.trace.tracestate is not None:
        headers["tracestate"] = x.trace.tracestate
    else:
        headers.popall("tracestate", None)
    if service.response_validator is not None or service.adapter_impl is not None:
        # The answer is read (validated, converted): it must arrive uncompressed.
        headers["Accept-Encoding"] = "identity"
    headers[CLIENT_ID_HEADER] = caller.client.code
    headers[CLIENT_AGENCY_HEADER] = caller.client.agency_code
    if who.officer is not None:
        headers[OFFICER_HEADER] = who.officer
    if who.procedure is not None:
        headers[PROCEDURE_HEADER] = who.procedure
    if who.case is not None:
        headers[CASE_HEADER] = who.case
    x.outbound = OutboundRequest(
        request.method, address.raw_endpoint, address.query, headers, x.body
    )


async def forward(x: Exchange, upstream: UpstreamClient, metrics: GatewayMetrics) -> None:
    """Set `x.answer`: the provider's answer (any status), with its size, digest and time
    in the event; problems (502, 503, 504) for an upstream that failed to answer."""
    service, outbound = x.service, x.outbound
    assert service is not None and outbound is not None
    adapter = service.adapter_impl
    judge = (
        functools.partial(adapter.upstream_failed, outbound=outbound)
        if adapter is not None and adapter.judges_failures
        else None
    )
    answer = await upstream.forward(
        service, outbound.method, outbound.path, outbound.query, outbound.headers,
        outbound.body, judge, x.span,
    )  # fmt: skip
    event = x.event
    event.upstream_status = answer.status
    event.upstream_ms = round(answer.elapsed_ms, 3)
    metrics.upstream(service.upstream.name, answer.status, answer.elapsed_ms / 1000)
    # Size and digest of what the provider answered, even if it is refused below.
    event.response_bytes = len(answer.body)
    event.response_sha256 = hashlib.sha256(answer.body).hexdigest()
    x.answer = answer
