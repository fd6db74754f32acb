"""structlog configured for one JSON object per line on stderr.

A line logged while an exchange runs carries its `trace_id` and `span_id` (the
gateway's span of the exchange, gateway/telemetry/tracecontext.py), so that an operator
goes from a span to the log lines and to the audit record (which holds the trace id).
The exchange's first step names its trace with `bind_trace`: one context variable set
per exchange, read only when a line is logged.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, Protocol

import structlog

__all__ = ["add_trace_ids", "bind_trace", "configure_logging", "log"]


class TraceIds(Protocol):
    @property
    def trace_id(self) -> str: ...

    @property
    def span_id(self) -> str: ...


# Each request runs in its own task, hence its own copy of the context: no reset needed.
_TRACE: ContextVar[TraceIds | None] = ContextVar("lgsp_trace", default=None)


def bind_trace(trace: TraceIds) -> None:
    """Name the trace of what this task logs from now on."""
    _TRACE.set(trace)


def add_trace_ids(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the current exchange's trace and span ids, if any."""
    trace = _TRACE.get()
    if trace is not None:
        event.setdefault("trace_id", trace.trace_id)
        event.setdefault("span_id", trace.span_id)
    return event


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


log = structlog.get_logger("lgsp")
