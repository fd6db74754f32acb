"""The HTTP toolkit every API of the gateway is written with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.logging import log
from gateway.core.problems import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    Problem,
)
from gateway.edge.state import STATE
from gateway.exchange.accountability import request_id_from


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
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
        ptype = PAYLOAD_TOO_LARGE if e.status == 413 else BAD_REQUEST
        return Problem(ptype, e.text or e.reason).to_response(
            type_base=base, request_id=request_id, instance=request.path
        )
    except Exception:
        log.exception("unhandled error", path=request.path, request_id=request_id)
        return Problem(INTERNAL_ERROR, "Unexpected error; quote the request id.").to_response(
            type_base=base, request_id=request_id, instance=request.path
        )
    response.headers.setdefault(REQUEST_ID_HEADER, request_id)
    return response
