"""An OTLP/HTTP traces receiver for tests: `POST /v1/traces` with a protobuf
`ExportTraceServiceRequest` (opentelemetry-proto), decoded into plain `Span` records the
tests can compare; the raw bodies are kept too, to look for what must never be sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["Receiver", "Span", "otlp"]

SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind
CLIENT = 3
STATUS_ERROR = 2


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent: str  # "" for a root span
    name: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: int
    instance: str  # the resource's service.instance.id
    service_name: str
    start_ns: int
    end_ns: int


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@dataclass
class Receiver:
    url: str  # the traces endpoint, for LGSP_OTEL_TRACES_ENDPOINT
    spans: list[Span] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)

    def of_trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]

    async def wait_for(self, trace_id: str, count: int, seconds: float = 15) -> list[Span]:
        """The trace's spans once at least `count` have arrived (fails after `seconds`)."""
        deadline = time.monotonic() + seconds
        while len(self.of_trace(trace_id)) < count:
            if time.monotonic() > deadline:
                got = [(s.name, s.instance) for s in self.of_trace(trace_id)]
                pytest.fail(f"{count} spans of trace {trace_id} expected; got {got}")
            await asyncio.sleep(0.05)
        return self.of_trace(trace_id)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        self.content_types.add(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        Span(
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            s.kind,
                            {a.key: _value(a.value) for a in s.attributes},
                            [
                                (e.name, {a.key: _value(a.value) for a in e.attributes})
                                for e in s.events
                            ],
                            s.status.code,
                            str(resource.get("service.instance.id")),
                            str(resource.get("service.name")),
                            s.start_time_unix_nano,
                            s.end_time_unix_nano,
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


@pytest.fixture
async def otlp() -> AsyncIterator[Receiver]:
    app = web.Application()
    receiver = Receiver("")
    app.router.add_post("/v1/traces", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url("/v1/traces"))
    yield receiver
    await server.close()
