"""Step 8 for an async service (store-and-forward): instead of forwarding, the request
is kept, as the provider will get it, and the caller answered `202 Accepted` with a
message id and its status URL (`Location`); a worker delivers it when the provider can
take it (gateway/events/forward.py), under the same retry and dead-letter rules as event
deliveries, and keeps the answer for the caller at the status URL.

Everything before this step is exactly a synchronous exchange's: identification,
rights, limits, accountability fields, body limits and schema, the adapter's conversion.
The message is first kept *held* (never sent); the pipeline's audit step then records
the acceptance (`phase` "accepted"); only once that is durable is the message released
to be sent (`settle`). An acceptance that cannot be recorded, for a fail_closed service,
is answered 503 and its message dropped: nothing goes out that the audit log does not
show was asked.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Protocol

import orjson
from aiohttp import web

from gateway.core.headers import REQUEST_HASH_HEADER, REQUEST_ID_HEADER
from gateway.core.logging import log
from gateway.core.messages import DeferredRequest
from gateway.core.problems import MESSAGES_UNAVAILABLE, Problem
from gateway.exchange.context import Exchange

__all__ = ["ACCEPTED", "MESSAGES_PREFIX", "Outbox", "defer", "settle"]

ACCEPTED = "accepted"  # the audit phase of an async exchange's acceptance
MESSAGES_PREFIX = "/messages/v1"
# The accepted exchange's audit fields that every attempt's audit event repeats.
KEPT = (
    "trace_id",
    "client_code",
    "client_agency_code",
    "auth_method",
    "provider_code",
    "service_code",
    "service_version",
    "officer_id",
    "procedure_code",
    "case_number",
    "remote_addr",
    "method",
    "path",
    "request_bytes",
    "request_sha256",
    "adapter",
    "adapter_version",
    "issuer",
)


class Outbox(Protocol):
    """Where async requests are kept (gateway/events/outbox.py)."""

    async def hold(self, request: DeferredRequest) -> None:
        """Keep the request durably, not to be sent until released."""
        ...

    async def release(self, message_id: str) -> None:
        """The acceptance is recorded: the message may be sent."""
        ...

    async def discard(self, message_id: str) -> None:
        """The acceptance could not be recorded: drop the message unsent."""
        ...


async def defer(x: Exchange, outbox: Outbox) -> web.Response:
    """Keep the request held and answer 202 (503 `messages-unavailable` if it cannot be
    kept: nothing is accepted)."""
    service, caller, outbound = x.service, x.caller, x.outbound
    assert service is not None and caller is not None and outbound is not None
    assert x.address is not None
    message_id = str(uuid.uuid4())
    event = x.event
    event.phase = ACCEPTED
    fields = event.as_dict()
    request = DeferredRequest(
        message_id=message_id,
        request_id=x.request_id,
        accept_event_id=event.event_id,
        service=service.key,
        upstream=service.upstream.name,
        client=caller.client.code,
        exchange={**{k: fields[k] for k in KEPT}, "endpoint": x.address.endpoint},
        outbound=outbound,
        context=dataclasses.asdict(x.context) if x.context is not None else None,
    )
    try:
        await outbox.hold(request)
    except Exception as e:
        log.error("async message not stored", request_id=x.request_id, error=str(e))
        raise Problem(
            MESSAGES_UNAVAILABLE,
            "The message could not be stored for delivery, so it was not accepted; "
            "send it again later.",
        ) from e
    x.deferred = message_id
    status_url = f"{MESSAGES_PREFIX}/{message_id}"
    body: dict[str, Any] = {
        "messageId": message_id,
        "requestId": x.request_id,
        "state": "accepted",
        "status": status_url,
        "answer": f"{status_url}/answer",
    }
    return web.Response(
        status=202,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={
            "Location": status_url,
            REQUEST_ID_HEADER: x.request_id,
            REQUEST_HASH_HEADER: event.request_sha256 or "",
        },
    )


async def settle(x: Exchange, recorded: bool, outbox: Outbox) -> None:
    """After the audit step: release the held message if its acceptance was answered
    (recorded, or a fail_open service's), else drop it."""
    if x.deferred is None:
        return
    try:
        if recorded:
            await outbox.release(x.deferred)
        else:
            await outbox.discard(x.deferred)
    except Exception as e:  # held, never sent: the caller was answered 202 though
        log.error("async message accepted but not released", message_id=x.deferred, error=str(e))
