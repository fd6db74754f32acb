"""Step 4, authorise: deny unless a right of the client, or of one of its groups, grants
the method and endpoint path; then the service must be able to serve (enabled, its
schemas and adapter loaded)."""

from __future__ import annotations

from gateway.core.problems import (
    ACCESS_DENIED,
    ADAPTER_UNAVAILABLE,
    SCHEMA_UNAVAILABLE,
    SERVICE_DISABLED,
    Problem,
)
from gateway.exchange.context import Exchange

__all__ = ["authorise"]


def authorise(x: Exchange) -> None:
    """403 without a right; 503 when the service is disabled or half-loaded. The right is
    checked first: a caller without one learns nothing about the service's state."""
    service, caller, address = x.service, x.caller, x.address
    assert service is not None and caller is not None and address is not None
    method = x.request.method
    if not service.allows(caller.client, method, address.endpoint):
        raise Problem(
            ACCESS_DENIED,
            f"Client {caller.client.code!r} is not granted {method} {address.endpoint} on "
            f"{service.provider}/{service.code}/{service.version}. Ask the gateway "
            "administrator for an access right.",
        )
    if not service.enabled:
        raise Problem(SERVICE_DISABLED, f"{service.name} is disabled for maintenance.")
    if service.schema_error is not None:
        raise Problem(SCHEMA_UNAVAILABLE, f"{service.name}: {service.schema_error}.")
    if service.adapter_error is not None:
        raise Problem(ADAPTER_UNAVAILABLE, f"{service.name}: {service.adapter_error}.")
