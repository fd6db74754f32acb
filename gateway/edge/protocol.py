"""The gateway's HTTP/1.1 server: aiohttp's, with three things it does not do by itself.

* **Requests the parser refuses are answered and audited like any other.** A request
  line with bytes outside the URL grammar, a header with a control character, too many
  or too long headers: aiohttp's parser refuses them before any handler runs and answers
  `text/plain`. Here they get problem+json (`malformed-request`, with a request id) and
  an audit event with what was sent (escaped) and from where, so a hostile caller's
  attempts are on the record too, whatever its bytes.
* **Slow callers cannot hold a connection.** The request line and headers must arrive
  within `request_header_timeout_seconds` of their first byte (slowloris); an idle
  keep-alive connection closes after `keepalive_seconds`; the body's own timeout is the
  pipeline's (gateway/exchange/steps/body.py).
* **Bodies are not inflated by the server**, so every limit is applied to decoded bytes
  as they are decoded (gateway/core/bodies.py) and never after a bomb has gone off.

`GatewayRunner` is used by `lgsp serve`, `lgsp demo` and the tests' gateway alike.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.audit import AuditEvent, AuditUnavailable
from gateway.core.logging import log
from gateway.core.problems import (
    MALFORMED_REQUEST,
    PAYLOAD_TOO_LARGE,
    REQUEST_TIMEOUT,
    Problem,
    ProblemType,
)
from gateway.core.text import storable
from gateway.edge.state import STATE

__all__ = ["HANDLER_ARGS", "GatewayRunner"]

Refusal = Callable[
    [BaseRequest, int, BaseException | None, str | None], Awaitable[web.StreamResponse]
]

# The standard options of aiohttp's request handler the gateway sets (every runner gets
# them through the application's handler_args).
HANDLER_ARGS: dict[str, Any] = {
    "auto_decompress": False,
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 100,
    # After an early answer (413, 408), how long the rest of a body is read and dropped
    # before closing, so the caller sees the answer rather than a reset; a trickling body
    # cannot stretch it.
    "lingering_time": 2.0,
}


class GatewayRunner(web.AppRunner):
    """An `AppRunner` whose connections are `_GatewayHandler`s (see the module's text)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        settings = app[STATE].settings
        kwargs.setdefault("keepalive_timeout", settings.keepalive_seconds)
        super().__init__(app, **kwargs)
        self._header_timeout = settings.request_header_timeout_seconds

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds its Server itself; this one makes connections of our class. The
        # refusal hook reads the gateway's state when a refusal happens.
        server.__class__ = _GatewayServer
        server._lgsp_header_timeout = self._header_timeout  # type: ignore[attr-defined]
        server._lgsp_refuse = _refusal_hook(self.app)  # type: ignore[attr-defined]
        return server


class _GatewayServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _GatewayHandler(
            self,
            loop=self._loop,
            header_timeout=self._lgsp_header_timeout,  # type: ignore[attr-defined]
            refuse=self._lgsp_refuse,  # type: ignore[attr-defined]
            **self._kwargs,
        )


class _GatewayHandler(RequestHandler):
    __slots__ = ("_awaiting_head", "_head_timer", "_header_timeout", "_refuse")

    def __init__(
        self, manager: web.Server, *, header_timeout: float, refuse: Refusal, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._refuse = refuse
        self._awaiting_head = True  # waiting for the next request's line and headers
        self._head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and self._head_timer is None and data:
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_late)
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a whole request head has been parsed
            self._awaiting_head = False
            self._cancel_head_timer()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._awaiting_head = True  # keep-alive: the next request's head is timed anew

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        transport = self.transport
        if not self._awaiting_head or transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        remote = peer[0] if isinstance(peer, tuple) and peer else None
        problem = Problem(
            REQUEST_TIMEOUT,
            f"The request line and headers did not arrive within {self._header_timeout:g} s.",
        )
        body = problem.to_response(type_base="urn:lgsp:problem:", request_id=str(uuid.uuid4()))
        assert isinstance(body.body, bytes)
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
            b"Content-Type: application/problem+json\r\n"
            + f"Content-Length: {len(body.body)}\r\n\r\n".encode()
            + body.body
        )
        transport.close()
        log.warning("request head too slow; connection closed", remote=remote)

    def _make_error_handler(
        self, err_info: Any
    ) -> Callable[[BaseRequest], Awaitable[web.StreamResponse]]:
        async def handler(request: BaseRequest) -> web.StreamResponse:
            return await self._refuse(request, err_info.status, err_info.exc, err_info.message)

        return handler


def _refusal_hook(app: web.Application) -> Refusal:
    async def refuse(
        request: BaseRequest, status: int, exc: BaseException | None, message: str | None
    ) -> web.StreamResponse:
        state = app[STATE]
        t0 = time.perf_counter()
        ptype: ProblemType = PAYLOAD_TOO_LARGE if status == 413 else MALFORMED_REQUEST
        said = storable(str(message or exc or "malformed request")).strip()
        problem = Problem(
            ptype,
            "The request is not well-formed HTTP/1.1 and was refused before it was read: "
            + said[:300],
        )
        request_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        event = AuditEvent(
            event_id=str(uuid.uuid4()),
            request_id=request_id,
            instance=state.settings.instance_id,
            method="-",
            path="-",
            started_at=now,
            finished_at=now,
            duration_ms=0.0,
            status=ptype.status,
            remote_addr=request.remote,
            error_type=ptype.slug,
            error_detail=problem.detail,
        )
        response = problem.to_response(
            type_base=state.settings.problem_type_base, request_id=request_id
        )
        response.force_close()
        try:
            await state.audit.write(event)
        except AuditUnavailable as e:
            log.error("audit event not durable", request_id=request_id, error=str(e))
            state.metrics.audit_failures.inc()
        state.metrics.exchange(None, None, ptype.slug, time.perf_counter() - t0)
        return response

    return refuse
