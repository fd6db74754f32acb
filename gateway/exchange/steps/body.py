"""Step 7, read body: the request body within the service's size limit, then checked
against the service's request schema when it carries a message."""

from __future__ import annotations

import hashlib

from gateway.core.problems import INVALID_MESSAGE, PAYLOAD_TOO_LARGE, Problem, ProblemType
from gateway.exchange.context import Exchange
from gateway.registry.schema import Validator

__all__ = ["conform", "read_body", "validate_request"]

MESSAGE_METHODS = frozenset({"POST", "PUT", "PATCH"})  # these always carry a message
_CHUNK = 64 * 1024


async def read_body(x: Exchange) -> None:
    """Set `x.body` and its size and digest in the event; 413 past the service's limit."""
    assert x.service is not None
    request, limit = x.request, x.service.max_request_bytes
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            raise Problem(
                PAYLOAD_TOO_LARGE,
                f"The request body ({declared} bytes) exceeds this service's limit of "
                f"{limit} bytes.",
                limit=limit,
            )
        # The length is known and allowed: read to the end of the body at once.
        body = await request.content.read()
    else:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise Problem(
                    PAYLOAD_TOO_LARGE,
                    f"The request body exceeds this service's limit of {limit} bytes.",
                    limit=limit,
                )
            chunks.append(chunk)
        body = b"".join(chunks)
    x.body = body
    x.event.request_bytes = len(body)
    x.event.request_sha256 = hashlib.sha256(body).hexdigest()


def validate_request(x: Exchange) -> None:
    """400 listing each schema error (JSON Pointer and reason) when the message breaks
    the service's request schema. A GET, HEAD or DELETE without a body carries none."""
    service = x.service
    assert service is not None
    if service.request_validator is None and service.adapter_impl is None:
        return
    if x.request.headers.get("Content-Encoding", "identity") != "identity":
        raise Problem(
            INVALID_MESSAGE,
            "This service reads its messages: send the body uncompressed (no Content-Encoding).",
        )
    if service.request_validator is not None and (x.body or x.request.method in MESSAGE_METHODS):
        conform(service.request_validator, x.body, INVALID_MESSAGE, "The request")


def conform(validator: Validator, body: bytes, ptype: ProblemType, what: str) -> None:
    """Raise `ptype` naming the first errors when `body` breaks the schema."""
    errors = validator.errors(body)
    if errors:
        raise Problem(
            ptype,
            f"{what} breaks the service's schema in {len(errors)} place(s): "
            + "; ".join(f"{e.pointer or '/'}: {e.detail}" for e in errors[:3]),
            errors=[{"pointer": e.pointer, "detail": e.detail} for e in errors],
        )
