"""Step 9, respond: a successful answer checked against the service's response schema,
then the provider's answer with the request id and the digest of what was asked
(`X-Request-Sha256`, so the caller can prove it, as X-Road does)."""

from __future__ import annotations

from aiohttp import web

from gateway.core.headers import REQUEST_HASH_HEADER, REQUEST_ID_HEADER
from gateway.core.problems import UPSTREAM_INVALID_MESSAGE
from gateway.exchange.context import Exchange
from gateway.exchange.steps.body import conform

__all__ = ["respond", "validate_answer"]


def validate_answer(x: Exchange) -> None:
    """502 when a 2xx answer breaks the response schema. The schema describes successful
    answers; errors pass through as they are, and 204 or a HEAD answer has no body."""
    service, answer = x.service, x.answer
    assert service is not None and answer is not None
    if (
        service.response_validator is not None
        and 200 <= answer.status < 300
        and answer.status != 204
        and x.request.method != "HEAD"
    ):
        conform(
            service.response_validator,
            answer.body,
            UPSTREAM_INVALID_MESSAGE,
            "The provider's answer",
        )


def respond(x: Exchange) -> web.Response:
    """The answer to send the caller."""
    answer = x.answer
    assert answer is not None
    answer.headers[REQUEST_ID_HEADER] = x.request_id
    answer.headers[REQUEST_HASH_HEADER] = x.event.request_sha256 or ""
    return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
