"""Step 2, route: the raw request target checked and parsed into a service address
(gateway/exchange/routing.py), and the service found in the compiled tables."""

from __future__ import annotations

from gateway.core.problems import METHOD_NOT_ALLOWED, UNKNOWN_SERVICE, Problem
from gateway.exchange.context import Exchange
from gateway.exchange.routing import parse_service_address
from gateway.identity.access import HTTP_METHODS

__all__ = ["route"]

_ALLOW = ", ".join(sorted(HTTP_METHODS))


def route(x: Exchange) -> None:
    """Set `x.address` and `x.service`; 405 for a method no service accepts, 400 for a
    malformed address, 404 for a service nobody publishes."""
    method = x.request.method
    if method not in HTTP_METHODS:
        raise Problem(
            METHOD_NOT_ALLOWED,
            f"{method[:16]!r} is not an HTTP method services accept.",
            headers={"Allow": _ALLOW},
        )
    address = parse_service_address(x.request.raw_path)
    x.address = address
    x.event.provider_code = address.provider
    x.event.service_code = address.service
    x.event.service_version = address.version
    service = x.config.services.get(address.key)
    if service is None:
        raise Problem(
            UNKNOWN_SERVICE,
            f"No service {address.service}/{address.version} is published by "
            f"{address.provider}. GET /services lists the services you may call.",
        )
    x.service = service
