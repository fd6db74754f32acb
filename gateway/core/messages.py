"""The messages every layer passes along an exchange: what goes to a provider, what comes back.

Adapters receive and return them (gateway.conversion.sdk re-exports both), the upstream
client sends one and answers the other, the pipeline carries them between its steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict


@dataclass(slots=True)
class OutboundRequest:
    """What is sent to the provider: adapters may change every part."""

    method: str
    path: str  # appended to the service's upstream URL (raw, percent-encoded)
    query: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    # From the first attempt's start to this answer, retries and their waits included.
    elapsed_ms: float
    attempts: int = 1


@dataclass(slots=True)
class DeferredRequest:
    """A call to an async service as it is kept to be sent later (store-and-forward):
    the request as the provider will get it, and what its attempts' audit events repeat."""

    message_id: str
    request_id: str
    accept_event_id: str  # the audit event of the caller's 202
    service: tuple[str, str, str]  # provider, code, version
    upstream: str
    client: str
    exchange: dict[str, Any]  # the accepted exchange's audit fields
    outbound: OutboundRequest
    context: dict[str, Any] | None  # the adapter's Context, when the service has one
