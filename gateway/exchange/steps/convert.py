"""Steps 8a and 8b, convert: the service's adapter turns the provincial (canonical) form
into the provider's own on the way out and back on the way in (Circular 13/2017 art. 17).
Services without an adapter (passthrough) skip both."""

from __future__ import annotations

import hashlib

from gateway.conversion.mapping.engine import Context
from gateway.exchange.context import Exchange

__all__ = ["from_provider", "to_provider"]


def to_provider(x: Exchange) -> None:
    """Run the adapter's request hook on `x.outbound` (400 for a message it cannot
    convert)."""
    adapter = x.service.adapter_impl if x.service is not None else None
    if adapter is None:
        return
    # Named even when the adapter refuses: the auditor sees which version said no.
    x.event.adapter, x.event.adapter_version = adapter.name, adapter.VERSION
    caller, who, outbound, service = x.caller, x.who, x.outbound, x.service
    assert caller is not None and who is not None and outbound is not None
    assert service is not None
    x.context = Context(
        request_id=x.request_id,
        client=caller.client.code,
        client_agency=caller.client.agency_code,
        officer=who.officer,
        procedure=who.procedure,
        case=who.case,
        now=x.event.started_at.isoformat(),
        service="/".join(service.key),
    )
    x.outbound = adapter.request(outbound, x.context)
    # The provider's side of the exchange, exactly as sent (the intent records it too).
    x.event.provider_request_sha256 = hashlib.sha256(x.outbound.body).hexdigest()


def from_provider(x: Exchange) -> None:
    """Run the adapter's response hook on `x.answer`, the provider's answer or error
    (502 for an answer it cannot understand)."""
    adapter = x.service.adapter_impl if x.service is not None else None
    if adapter is None or x.context is None:
        return
    assert x.answer is not None and x.outbound is not None
    x.answer = adapter.response(x.answer, x.outbound, x.context)
