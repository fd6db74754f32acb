"""The small webhook receiver `lgsp demo` starts: it plays the one-stop-shop system's
callback, keeps what it was sent, and shows it at `GET /received` (headers and body), so
the demo can check the Standard Webhooks signature with the subscription's secret."""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["HOOK_PATH", "receiver_app"]

HOOK_PATH = "/hooks/lgsp"
_RECEIVED = web.AppKey("received", list)


async def _hook(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("webhook-")}
    request.app[_RECEIVED].append({"headers": headers, "body": body.decode("utf-8", "replace")})
    return web.Response(status=204)


async def _received(request: web.Request) -> web.Response:
    return web.json_response(request.app[_RECEIVED])


def receiver_app() -> web.Application:
    """The receiver: POST /hooks/lgsp takes deliveries, GET /received lists them."""
    app = web.Application()
    received: list[dict[str, Any]] = []
    app[_RECEIVED] = received
    app.router.add_post(HOOK_PATH, _hook)
    app.router.add_get("/received", _received)
    return app
