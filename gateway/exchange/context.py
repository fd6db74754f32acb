"""One exchange as it goes through the pipeline: what each step found, for the next.

A step reads what earlier steps set and sets its own part; the audit event is filled in
as the steps go, so an exchange refused at any step is still recorded with everything
known by then. Fields a step has not reached yet are `None`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.audit import AuditEvent
from gateway.config.runtime import RuntimeConfig, ServiceEntry
from gateway.conversion.mapping.engine import Context
from gateway.core.messages import OutboundRequest, UpstreamResponse
from gateway.exchange.accountability import Accountability
from gateway.exchange.routing import ServiceAddress
from gateway.identity.authn import Caller
from gateway.telemetry.spans import ExchangeSpan
from gateway.telemetry.tracecontext import TraceContext

__all__ = ["Exchange"]


@dataclass(slots=True)
class Exchange:
    """The state of one exchange; made by the identify step, read by every other.

    Example:
        >>> x = identify(request, config, instance)   # the first step makes it
        >>> route(x); authenticate(x, tokens)          # each next one adds its part
        >>> x.service.key, x.caller.client.code
    """

    request: web.Request
    # The tables this exchange runs under, from start to end, whatever reloads meanwhile.
    config: RuntimeConfig
    t0: float  # perf_counter at arrival, for durations
    request_id: str
    trace: TraceContext  # the caller's trace (or a new one), and the gateway's span in it
    event: AuditEvent
    # A complaint about the caller's request id (it was replaced): the first refusal.
    bad_request_id: str | None = None
    address: ServiceAddress | None = None  # route
    service: ServiceEntry | None = None  # route
    caller: Caller | None = None  # authenticate
    who: Accountability | None = None  # account
    body: bytes = b""  # read body: decoded when the service reads it, else as received
    decoded: bool = False  # read body: `body` was inflated from a compressed request
    outbound: OutboundRequest | None = None  # forward (after the adapter's request hook)
    context: Context | None = None  # what an adapter may read; None without an adapter
    answer: UpstreamResponse | None = None  # forward (after the adapter's response hook)
    # What the exchange notes for its spans; None when traces are off or not recorded.
    span: ExchangeSpan | None = None
    deferred: str | None = None  # defer: the message id of an async service's request
