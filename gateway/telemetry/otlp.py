"""The exporter side of traces: an ended exchange's notes (gateway/telemetry/spans.py)
become OpenTelemetry SDK spans, with the ids the exchange already used on the wire, and
go to a `BatchSpanProcessor` whose own thread encodes them (OTLP protobuf) and POSTs
them to the collector. Imported only when traces are configured
(gateway/telemetry/tracing.py).

The spans are made whole (`ReadableSpan`) at the end of the exchange rather than through
the SDK's `Tracer`: the gateway already has its trace and span ids (W3C Trace Context,
in the audit record and the log lines), and an SDK span per step would take a lock and
a context switch on every attribute for nothing.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from gateway import __version__
from gateway.core.settings import Settings
from gateway.telemetry.spans import ClientSpan, ExchangeSpan, ratio_bound, sampled
from gateway.telemetry.tracecontext import TraceContext

__all__ = ["SCOPE", "OtlpTracer"]

SCOPE = "lgsp-gateway"
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


class OtlpTracer:
    """One per process: the resource (service name, instance), the batching processor
    and its exporter. Implements `gateway.telemetry.spans.Tracer`."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        service_name: str,
        instance: str,
        sample_ratio: float = 1.0,
        export_delay_seconds: float = 2.0,
        max_queue: int = 8192,
    ) -> None:
        # A full queue drops spans (counted by the SDK), never holds an exchange.
        self._processor = BatchSpanProcessor(
            exporter,
            max_queue_size=max_queue,
            schedule_delay_millis=export_delay_seconds * 1000,
            max_export_batch_size=512,
        )
        self._resource = Resource.create(
            {
                "service.name": service_name,
                "service.instance.id": instance,
                "service.version": __version__,
            }
        )
        self._scope = InstrumentationScope(SCOPE, __version__)
        self._bound = ratio_bound(sample_ratio)

    @classmethod
    def from_settings(cls, settings: Settings) -> OtlpTracer:
        exporter = OTLPSpanExporter(
            endpoint=settings.otel_traces_endpoint,
            headers=dict(settings.otel_headers) or None,
            timeout=settings.otel_export_timeout_seconds,
        )
        return cls(
            exporter,
            service_name=settings.otel_service_name,
            instance=settings.instance_id,
            sample_ratio=settings.otel_sample_ratio,
            export_delay_seconds=settings.otel_export_delay_seconds,
        )

    def start(self, trace: TraceContext) -> tuple[TraceContext, ExchangeSpan | None]:
        trace, recorded = sampled(trace, self._bound)
        return trace, ExchangeSpan(self, trace) if recorded else None

    def export(self, span: ExchangeSpan) -> None:
        trace = span.trace
        trace_id = int(trace.trace_id, 16)
        state = TraceState.from_header([trace.tracestate]) if trace.tracestate else None
        own = SpanContext(trace_id, int(trace.span_id, 16), False, _SAMPLED, state)
        parent = (
            SpanContext(trace_id, int(trace.caller_span_id, 16), True, _SAMPLED, state)
            if trace.caller_span_id is not None
            else None
        )
        processor = self._processor
        for attempt in span.clients:
            processor.on_end(self._client(attempt, own, state, span.end_ns))
        processor.on_end(self._server(span, own, parent))

    def _server(
        self, span: ExchangeSpan, own: SpanContext, parent: SpanContext | None
    ) -> ReadableSpan:
        attributes: dict[str, Any] = {
            "http.request.method": span.method,
            "http.response.status_code": span.status,
            "lgsp.outcome": span.outcome,
            "lgsp.request_id": span.request_id,
        }
        if span.service is not None:
            attributes["lgsp.service"] = span.service
        if span.client is not None:
            attributes["lgsp.client"] = span.client
        if span.agency is not None:
            attributes["lgsp.client_agency"] = span.agency
        if span.outcome != "ok":
            attributes["error.type"] = span.outcome
        events = [
            Event(
                "refusal",
                {"lgsp.problem.type": slug, "http.response.status_code": code, "lgsp.side": side},
                at,
            )
            for at, slug, code, side in span.events
        ]
        return ReadableSpan(
            f"{span.method} {span.service or '/r1'}",
            context=own,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            events=events,
            kind=SpanKind.SERVER,
            # A server span is an error for the gateway's or the provider's failures
            # (5xx) only: a refused caller is the gateway doing its work.
            status=_ERROR if span.status >= 500 else _UNSET,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=self._scope,
        )

    def _client(
        self, attempt: ClientSpan, parent: SpanContext, state: TraceState | None, end_ns: int
    ) -> ReadableSpan:
        attributes: dict[str, Any] = {
            "http.request.method": attempt.method,
            "lgsp.upstream": attempt.upstream,
        }
        if attempt.resend:
            attributes["http.request.resend_count"] = attempt.resend
        if attempt.status:
            attributes["http.response.status_code"] = attempt.status
        # Never ended: the exchange was cancelled while this request ran.
        error = attempt.error or ("cancelled" if not attempt.end_ns else None)
        if error is None and attempt.status >= 400:
            error = str(attempt.status)
        if error is not None:
            attributes["error.type"] = error
        return ReadableSpan(
            f"{attempt.method} {attempt.upstream}",
            context=SpanContext(parent.trace_id, attempt.span_id, False, _SAMPLED, state),
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.CLIENT,
            status=_UNSET if error is None else _ERROR,
            start_time=attempt.start_ns,
            end_time=attempt.end_ns or end_ns,
            instrumentation_scope=self._scope,
        )

    def flush(self, timeout_seconds: float = 10.0) -> bool:
        return bool(self._processor.force_flush(int(timeout_seconds * 1000)))

    def close(self) -> None:
        self._processor.shutdown()  # type: ignore[no-untyped-call]
