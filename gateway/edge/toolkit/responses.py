"""Answers: JSON bodies, and problems rendered the way each API renders its errors.

Every error of the gateway's own APIs is a `Problem` by the time it is rendered; an API
chooses how it looks on the wire with an `ErrorRenderer` (RFC 9457 problem+json by
default; the schema registry adds Confluent's `error_code` and `message`).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web

from gateway.core.problems import BAD_REQUEST, PAYLOAD_TOO_LARGE, Problem

__all__ = [
    "NO_STORE",
    "ErrorRenderer",
    "json_response",
    "problem_from_http",
    "render_problem",
]

# For answers that carry a secret: no cache anywhere may keep them.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# (request, problem, request id, problem type base) -> the error answer.
ErrorRenderer = Callable[[web.Request, Problem, str, str], web.Response]


def json_response(
    data: object,
    status: int = 200,
    headers: dict[str, str] | None = None,
    *,
    content_type: str = "application/json",
) -> web.Response:
    """A JSON answer, serialised with orjson (datetimes as ISO 8601).

    Args:
        data: anything orjson serialises.
        status: the HTTP status.
        headers: extra headers (ETag, Cache-Control...).
        content_type: the media type, for APIs with their own (the registry's).

    Returns:
        the response, not yet sent.

    Example:
        >>> json_response({"items": []}, headers={"ETag": '"42"'}).status
        200
    """
    return web.Response(
        status=status, body=orjson.dumps(data), content_type=content_type, headers=headers
    )


def render_problem(
    request: web.Request, problem: Problem, request_id: str, type_base: str
) -> web.Response:
    """The default `ErrorRenderer`: RFC 9457 problem+json, `instance` the request path.

    Args:
        request: the request answered.
        problem: what went wrong.
        request_id: the request's id, in the body and the X-Request-Id header.
        type_base: the prefix of problem type URIs (`urn:lgsp:problem:` by default).

    Returns:
        the problem response, with the problem's own headers (WWW-Authenticate...).

    Example:
        >>> render_problem(request, Problem(NOT_FOUND, "No agency 'x'."), "r-1", "urn:x:").status
        404
    """
    return problem.to_response(type_base=type_base, request_id=request_id, instance=request.path)


def problem_from_http(e: web.HTTPException) -> Problem:
    """aiohttp's own refusals (a body over the size limit, a bad form) as our problems.

    Args:
        e: an aiohttp HTTP error (status 400 or more).

    Returns:
        `payload-too-large` for 413, `bad-request` otherwise, with aiohttp's text.

    Example:
        >>> problem_from_http(web.HTTPRequestEntityTooLarge(100, 200)).status
        413
    """
    ptype = PAYLOAD_TOO_LARGE if e.status == 413 else BAD_REQUEST
    return Problem(ptype, e.text or e.reason)
