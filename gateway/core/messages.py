"""The messages every layer passes along an exchange: what goes to a provider, what comes back.

Adapters receive and return them (gateway.conversion.sdk re-exports both), the upstream
client sends one and answers the other, the pipeline carries them between its steps."""

from __future__ import annotations

from dataclasses import dataclass

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
