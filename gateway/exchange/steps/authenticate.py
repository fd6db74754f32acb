"""Step 3, authenticate: a bearer token from the gateway's token endpoint (one bound to a
client certificate only over a connection presenting it), an API key, or a client
certificate pinned in a system's credentials (gateway/identity/authn.py); the credential
must still be active, the client enabled. A token of an external issuer the policy
trusts (the national platform calling in) is verified with that issuer's keys and makes
the caller the client it speaks as (gateway/identity/issuers.py)."""

from __future__ import annotations

from gateway.core.tls import peer_certificate
from gateway.exchange.context import Exchange
from gateway.identity.authn import authenticate as authenticate_caller
from gateway.identity.issuers import TrustedIssuers
from gateway.identity.tokens import TokenService

__all__ = ["authenticate"]


async def authenticate(
    x: Exchange, tokens: TokenService, issuers: TrustedIssuers | None = None
) -> None:
    """Set `x.caller`; 401 with a challenge when the caller is not who it says.

    Example:
        >>> await authenticate(x, tokens, issuers)
        >>> x.caller.client.code, x.caller.issuer   # issuer None: our own token
    """
    caller = None
    if issuers is not None:
        caller = await issuers.authenticate(
            x.request.headers, x.config.issuers, x.config, tokens.issuer
        )
    if caller is None:
        peer = peer_certificate(x.request.transport)
        caller = authenticate_caller(x.request.headers, x.config, tokens, peer)
    x.caller = caller
    x.event.client_code = caller.client.code
    x.event.client_agency_code = caller.client.agency_code
    x.event.auth_method = caller.method
    x.event.issuer = caller.issuer
