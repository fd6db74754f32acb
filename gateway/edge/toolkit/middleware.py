"""Problems for everything outside the route tables: unknown paths, wrong methods,
aiohttp's own refusals and unexpected errors, all as problem+json with a request id.

Routes of the gateway's APIs render their own problems (gateway/edge/toolkit/routes.py);
the exchange path (`/r1`) renders its own too, to audit them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.logging import log
from gateway.core.problems import INTERNAL_ERROR, METHOD_NOT_ALLOWED, NOT_FOUND, Problem
from gateway.edge.state import STATE
from gateway.edge.toolkit.responses import problem_from_http
from gateway.exchange.accountability import request_id_from

__all__ = ["problem_middleware"]


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Render what the handler raised as a problem, and give every answer a request id.

    Example:
        >>> web.Application(middlewares=[problem_middleware])
    """
    if request.raw_path.startswith("/r1/"):
        return await handler(request)
    state = request.app[STATE]
    request_id, _ = request_id_from(request.headers)
    base = state.settings.problem_type_base
    try:
        response = await handler(request)
    except Problem as p:
        return p.to_response(type_base=base, request_id=request_id, instance=request.path)
    except web.HTTPMethodNotAllowed as e:
        return Problem(
            METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here; use {', '.join(sorted(e.allowed_methods))}.",
            headers={"Allow": ", ".join(sorted(e.allowed_methods))},
        ).to_response(type_base=base, request_id=request_id, instance=request.path)
    except web.HTTPNotFound:
        return Problem(
            NOT_FOUND,
            f"Nothing at {request.path}. Services are called at /r1/{{provider}}/{{service}}/"
            "{version}/...; tokens come from /oauth2/token.",
        ).to_response(type_base=base, request_id=request_id, instance=request.path)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        # aiohttp's own refusals (body too large, bad form...) get our shape too.
        return problem_from_http(e).to_response(
            type_base=base, request_id=request_id, instance=request.path
        )
    except Exception:
        log.exception("unhandled error", path=request.path, request_id=request_id)
        return Problem(INTERNAL_ERROR, "Unexpected error; quote the request id.").to_response(
            type_base=base, request_id=request_id, instance=request.path
        )
    response.headers.setdefault(REQUEST_ID_HEADER, request_id)
    return response
