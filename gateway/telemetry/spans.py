"""What an exchange notes for its spans while it runs (plain slotted objects: times,
outcomes, ids), and the `Tracer` that gets them at its end; gateway/telemetry/tracing.py
says what the spans hold, gateway/telemetry/otlp.py builds and exports them.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Protocol

from gateway.telemetry.tracecontext import TraceContext

__all__ = ["ClientSpan", "ExchangeSpan", "Tracer", "ratio_bound", "sampled"]

_RATIO_SCALE = 1 << 64


class Tracer(Protocol):
    """Where recorded exchanges go (gateway/telemetry/otlp.py); one per process."""

    def start(self, trace: TraceContext) -> tuple[TraceContext, ExchangeSpan | None]:
        """The trace to go on with and, when it is recorded, the exchange's span."""
        ...

    def export(self, span: ExchangeSpan) -> None:
        """Queue an ended exchange's spans for export (never blocks)."""
        ...

    def flush(self, timeout_seconds: float = 10.0) -> bool:
        """Send what is queued now (blocking: call it off the event loop)."""
        ...

    def close(self) -> None:
        """Send what is queued and stop exporting (blocking)."""
        ...


def sampled(trace: TraceContext, bound: int) -> tuple[TraceContext, bool]:
    """Parent-based sampling, `bound / 2**64` of the traces the gateway starts."""
    if trace.caller_span_id is None and bound < _RATIO_SCALE:
        if int(trace.trace_id[16:], 16) >= bound:
            return dataclasses.replace(trace, flags="00"), False
    return trace, trace.flags == "01"


def ratio_bound(ratio: float) -> int:
    return round(ratio * _RATIO_SCALE)


class ClientSpan:
    """One request sent upstream: its span id (the provider's parent) and how it ended."""

    __slots__ = ("end_ns", "error", "method", "resend", "span_id", "start_ns", "status", "upstream")

    def __init__(self, method: str, upstream: str, resend: int) -> None:
        self.method = method
        self.upstream = upstream
        self.resend = resend  # 0 for the first request, then 1, 2... (retries, token repeat)
        self.span_id = random.getrandbits(64) or 1
        self.start_ns = time.time_ns()
        self.end_ns = 0  # 0 while it runs
        self.status = 0  # the provider's status, 0 without an answer
        self.error: str | None = None

    def traceparent(self, trace: TraceContext) -> str:
        return f"00-{trace.trace_id}-{self.span_id:016x}-{trace.flags}"

    def answered(self, status: int) -> None:
        self.end_ns = time.time_ns()
        self.status = status

    def failed(self, error: str) -> None:
        """No answer: `error` is the problem type (upstream-timeout...) or "cancelled"."""
        self.end_ns = time.time_ns()
        self.error = error


class ExchangeSpan:
    """What one recorded exchange notes for its spans, until it ends."""

    __slots__ = (
        "agency", "client", "clients", "end_ns", "events", "method", "outcome", "request_id",
        "service", "start_ns", "status", "trace", "tracer",
    )  # fmt: skip

    def __init__(self, tracer: Tracer, trace: TraceContext) -> None:
        self.tracer = tracer
        self.trace = trace
        self.start_ns = time.time_ns()
        self.events: list[tuple[int, str, int, str]] = []  # time, problem type, status, side
        self.clients: list[ClientSpan] = []
        self.end_ns = 0
        self.method = ""
        self.status = 0
        self.outcome = ""
        self.service: str | None = None
        self.client: str | None = None
        self.agency: str | None = None
        self.request_id = ""

    def refused(self, slug: str, status: int, side: str) -> None:
        self.events.append((time.time_ns(), slug, status, side))

    def client_span(self, method: str, upstream: str) -> ClientSpan:
        span = ClientSpan(method, upstream, len(self.clients))
        self.clients.append(span)
        return span

    def end(
        self,
        *,
        method: str,
        status: int,
        outcome: str,
        service: str | None,
        client: str | None,
        agency: str | None,
        request_id: str,
    ) -> None:
        """The exchange is over: its spans go to the exporter's queue."""
        self.end_ns = time.time_ns()
        self.method = method
        self.status = status
        self.outcome = outcome
        self.service = service
        self.client = client
        self.agency = agency
        self.request_id = request_id
        self.tracer.export(self)
