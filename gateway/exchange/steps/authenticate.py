"""Step 3, authenticate: a bearer token from the gateway's token endpoint, or an API key
(gateway/identity/authn.py); the credential must still be active, the client enabled."""

from __future__ import annotations

from gateway.exchange.context import Exchange
from gateway.identity.authn import authenticate as authenticate_caller
from gateway.identity.tokens import TokenService

__all__ = ["authenticate"]


def authenticate(x: Exchange, tokens: TokenService) -> None:
    """Set `x.caller`; 401 with a challenge when the caller is not who it says."""
    caller = authenticate_caller(x.request.headers, x.config, tokens)
    x.caller = caller
    x.event.client_code = caller.client.code
    x.event.client_agency_code = caller.client.agency_code
    x.event.auth_method = caller.method
