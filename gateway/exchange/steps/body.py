"""Step 7, read body: the request body within the service's size limit, counted after
decoding (gateway/core/bodies.py) and within the body timeout, then checked against the
service's request schema when it carries a message."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.core import bodies
from gateway.core.problems import (
    INVALID_CONTENT_ENCODING,
    INVALID_MESSAGE,
    PAYLOAD_TOO_LARGE,
    REQUEST_TIMEOUT,
    UNSUPPORTED_CONTENT_ENCODING,
    Problem,
    ProblemType,
)
from gateway.core.text import storable
from gateway.exchange.context import Exchange
from gateway.registry.schema import JsonValidator, Validator

__all__ = ["conform", "read_body", "validate_request"]

MESSAGE_METHODS = frozenset({"POST", "PUT", "PATCH"})  # these always carry a message


async def read_body(x: Exchange, seconds: float) -> None:
    """Set `x.body`, decoded when the service reads its messages (a validator or an
    adapter) and as received otherwise; its decoded size and digest go into the event.
    413 past the service's limit *after decoding*, 415 for a content coding the gateway
    cannot decode (so cannot bound), 400 for a body that is not what its coding says, 408
    when the body does not arrive within `seconds`."""
    service = x.service
    assert service is not None
    request, limit = x.request, service.max_request_bytes
    reads = service.request_validator is not None or service.adapter_impl is not None
    try:
        async with asyncio.timeout(seconds):
            body = await bodies.read_body(
                request.content,
                request.headers.get("Content-Encoding"),
                limit=limit,
                decode=reads,
                content_length=request.content_length,
            )
    except bodies.BodyTooLarge as e:
        size = f" ({e.declared} bytes)" if e.declared is not None else ""
        raise Problem(
            PAYLOAD_TOO_LARGE,
            f"The request body{size} exceeds this service's limit of {limit} bytes "
            "(after decoding).",
            limit=limit,
        ) from None
    except bodies.UnsupportedEncoding as e:
        raise Problem(
            UNSUPPORTED_CONTENT_ENCODING,
            f"Content-Encoding {storable(e.coding)[:64]!r} is not accepted; send the body "
            f"uncompressed, or as one of: {', '.join(bodies.DECODABLE)}.",
            headers={"Accept-Encoding": ", ".join(bodies.DECODABLE)},
        ) from None
    except bodies.CorruptEncoding as e:
        raise Problem(
            INVALID_CONTENT_ENCODING,
            f"The body is not valid {e.coding} data ({e.reason}).",
        ) from None
    except TimeoutError:
        raise Problem(
            REQUEST_TIMEOUT,
            f"The request body did not arrive within {seconds:g} s.",
            headers={"Connection": "close"},
        ) from None
    x.body = body.data if reads else body.received
    x.decoded = reads and body.coding is not None
    x.event.request_bytes = body.size
    x.event.request_sha256 = body.sha256


def validate_request(x: Exchange) -> None:
    """400 listing each schema error (JSON Pointer and reason) when the message breaks
    the service's request schema. A GET, HEAD or DELETE without a body carries none."""
    service = x.service
    assert service is not None
    validator = service.request_validator
    if validator is not None and (x.body or x.request.method in MESSAGE_METHODS):
        conform(validator, x.body, INVALID_MESSAGE, "The request")
        if isinstance(validator, JsonValidator):
            _refuse_duplicate_keys(x.body)


class _DuplicateKey(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _refuse_duplicate_keys(body: bytes) -> None:
    """400 for an object with a key twice: the schema checked one of the two values (the
    last, as orjson reads), and a provider's parser may well read the other."""
    try:
        json.loads(body, object_pairs_hook=_unique)
    except _DuplicateKey as e:
        raise Problem(
            INVALID_MESSAGE,
            f"The request has the key {storable(str(e))[:64]!r} twice in one object; send each "
            "key once.",
            errors=[{"pointer": "", "detail": f"duplicate key {storable(str(e))[:64]!r}"}],
        ) from None
    except ValueError:  # not JSON at all: the schema check has said so already
        return


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
