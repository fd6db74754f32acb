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
* **A drain resets no connection** (`GatewayRunner.drain`). While draining every answer
  says `Connection: close` (gateway/edge/app.py). The listener is closed without
  dropping connections the kernel has already accepted for it (they are taken and
  served); a connection is closed only between requests, once it has been idle for
  `DRAIN_IDLE_SECONDS` (a caller still using it gets its `Connection: close` with its
  next answer instead, so its next request is never cut); a request whose first bytes
  have arrived is read and answered. What is left at the drain timeout is cancelled, and
  audited as such.

`GatewayRunner` is used by `lgsp serve`, `lgsp demo` and the tests' gateway alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
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

__all__ = ["DRAIN_IDLE_SECONDS", "HANDLER_ARGS", "GatewayRunner"]

# While draining, a connection with no request for this long is closed. A caller that
# keeps sending never leaves one idle that long (its next answer closes it instead); one
# that does is as unlikely to send at that very instant as at any keep-alive timeout.
DRAIN_IDLE_SECONDS = 0.5
_DRAIN_POLL_SECONDS = 0.02

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

    async def drain(self, delay: float, timeout: float) -> float:  # noqa: ASYNC109 - budgets
        """Drain: for ``delay`` seconds go on serving (the caller has made every answer
        say `Connection: close`) while closing idle connections; then stop listening and
        let the connections end within ``timeout`` seconds, each closed between requests,
        never under one. Returns the seconds left of ``timeout``, which `cleanup` then
        gives the exchanges still running.

        Example::

            state.draining = True
            await runner.drain(settings.drain_delay_seconds, settings.drain_timeout_seconds)
            await runner.cleanup()
        """
        loop = asyncio.get_running_loop()
        await self._close_idle_until(loop.time() + delay, until_empty=False)
        taken = 0
        for site in list(self.sites):
            taken += await self._stop_site(site)
        if taken:
            log.info("connections taken from the closed listener's queue", connections=taken)
        deadline = loop.time() + timeout
        await self._close_idle_until(deadline, until_empty=True)
        left = max(0.0, deadline - loop.time())
        # What `cleanup` gives the exchanges still running (aiohttp reads 0 as "no limit").
        self._shutdown_timeout = max(left, 0.001)
        return left

    async def _close_idle_until(self, deadline: float, *, until_empty: bool) -> None:
        loop = asyncio.get_running_loop()
        server = self.server
        while server is not None and (server.connections or not until_empty):
            now = loop.time()
            if now >= deadline:
                return
            for handler in server.connections:
                if isinstance(handler, _GatewayHandler):
                    handler.close_if_idle(now, DRAIN_IDLE_SECONDS)
            await asyncio.sleep(min(_DRAIN_POLL_SECONDS, deadline - now))

    async def _stop_site(self, site: web.BaseSite) -> int:
        """Close a listener without resetting what the kernel accepted for it: closing a
        listening socket resets the connections in its accept queue (whose callers may
        have sent their request already), so the socket is held open by a duplicate while
        the event loop stops accepting, and the queue is taken and served from it."""
        loop = asyncio.get_running_loop()
        listening = getattr(site, "_server", None)
        held: list[socket.socket] = []
        for sock in getattr(listening, "sockets", None) or ():
            with contextlib.suppress(OSError):
                held.append(socket.socket(fileno=os.dup(sock.fileno())))
        await site.stop()
        await asyncio.sleep(0)  # the loop lets go of the listener
        server = self.server
        taken = 0
        for sock in held:
            with sock:
                sock.setblocking(False)
                while server is not None:
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        log.warning("listener queue not taken", error=str(e))
                        break
                    try:
                        await loop.connect_accepted_socket(server, conn)
                    except OSError as e:  # the caller gave up meanwhile
                        conn.close()
                        log.info("queued connection gone before it was served", error=str(e))
                        continue
                    taken += 1
        return taken


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
    __slots__ = ("_awaiting_head", "_head_timer", "_header_timeout", "_idle_since", "_refuse")

    def __init__(
        self, manager: web.Server, *, header_timeout: float, refuse: Refusal, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._refuse = refuse
        self._awaiting_head = True  # waiting for the next request's line and headers
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_since = self._loop.time()

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
            self._idle_since = self._loop.time()

    def close_if_idle(self, now: float, idle_seconds: float) -> bool:
        """Close the connection if it is between requests (its last answer written,
        nothing of a next request received) and has been for ``idle_seconds``."""
        waiter = self._waiter
        between = (
            waiter is not None
            and not waiter.done()
            and not self._messages
            and self._head_timer is None  # no byte of a next request yet
        )
        if not between or self.transport is None or now - self._idle_since < idle_seconds:
            return False
        self.force_close()
        return True

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
