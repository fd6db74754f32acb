"""OpenTelemetry traces of exchanges, exported by OTLP/HTTP when an endpoint is configured
(`LGSP_OTEL_TRACES_ENDPOINT`); when it is not, `tracing_from_settings` gives None, no
span is noted, and the OpenTelemetry SDK is not even imported (gateway/telemetry/otlp.py
is the only module that imports it).

Per exchange the gateway is one participant of the caller's W3C trace
(gateway/telemetry/tracecontext.py), with

* a server span, the exchange: its id is the `TraceContext`'s own span id (the one in the
  log lines, gateway/core/logging.py), its parent the caller's span, and as attributes the
  service, client, agency, outcome and status. Never the path, query, body, officer,
  procedure, case or the caller's address: a path may hold a citizen's number, and
  traces go to systems the audit log's guarantees do not cover;
* a span event `refusal` for each refusal (its problem type, status and side; never its
  detail, which may quote the request);
* a client span per request sent upstream, so retries (and the one repeat after a
  forgotten token) are visible, `http.request.resend_count` counting them; the
  provider's `traceparent` names that span, so the provider's spans hang under the
  attempt that reached it.

While the exchange runs, it only notes times and outcomes in the plain slotted objects
below; at its end the exporter (gateway/telemetry/otlp.py) builds the SDK's spans from
them, with the ids the exchange already has. The trace id is the one in the audit
record, so an operator goes from a span to the record and the log lines.

Sampling: a caller's sampled flag decides for its trace (parent-based); a trace the
gateway starts is recorded with probability `otel_sample_ratio`, decided on the trace
id's lower 64 bits as OpenTelemetry's `TraceIdRatioBased` does, and one not recorded is
passed on with the flag cleared.

Example:
    >>> tracer = tracing_from_settings(settings)        # None unless configured
    >>> trace, span = tracer.start(TraceContext.from_headers([], []))
    >>> attempt = span.client_span("GET", "ndxp"); attempt.answered(200)
    >>> span.end(method="GET", status=200, outcome="ok", service="...", client="motcua",
    ...          agency="000.00.31.H49", request_id="r-1")
"""

from __future__ import annotations

from gateway.core.settings import Settings
from gateway.telemetry.spans import Tracer

__all__ = ["tracing_from_settings"]


def tracing_from_settings(settings: Settings) -> Tracer | None:
    """The process's tracer, or None (and the SDK not imported) when no endpoint is set."""
    if not settings.otel_traces_endpoint:
        return None
    from gateway.telemetry.otlp import OtlpTracer

    return OtlpTracer.from_settings(settings)
