"""Who calls, and whether they hold a role the route accepts.

A departmental system calls services under the rights the policy grants it; a few
clients also hold roles ("administrator", "operator", "auditor", "observer") and rights
such as "audit:unmask", which open the gateway's own APIs. Both come from the current
configuration tables, so taking a role away or revoking a credential takes effect at
the next reload, without waiting for tokens to expire.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.core.problems import ACCESS_DENIED, Problem
from gateway.core.tls import peer_certificate
from gateway.edge.state import STATE
from gateway.identity.authn import authenticate
from gateway.identity.directory import ClientEntry

__all__ = ["Authenticator", "RoleRefusal", "authenticate_client", "refuse_role"]

# The authenticated client of a request, or a 401 Problem (with its challenge).
Authenticator = Callable[[web.Request], Awaitable[ClientEntry]]
# The 403 for a client that holds none of the roles a route accepts.
RoleRefusal = Callable[[ClientEntry, tuple[str, ...]], Problem]


async def authenticate_client(request: web.Request) -> ClientEntry:
    """The default `Authenticator`: a bearer token from /oauth2/token, or an X-Api-Key.

    Args:
        request: the request; its headers carry the credential.

    Returns:
        the calling client, enabled, with an active credential.

    Raises:
        Problem: 401 (`unauthenticated`, `invalid-token`, `invalid-api-key`,
            `invalid-certificate`, `token-binding-mismatch`) with a
            WWW-Authenticate challenge.

    Example:
        >>> (await authenticate_client(request)).code  # Authorization: Bearer <token>
        'motcua'
    """
    state = request.app[STATE]
    peer = peer_certificate(request.transport)
    return authenticate(request.headers, state.pipeline.config, state.tokens, peer).client


def refuse_role(client: ClientEntry, roles: tuple[str, ...]) -> Problem:
    """The default `RoleRefusal`: 403 `access-denied`, naming the client and the roles.

    Args:
        client: the authenticated client, which holds none of `roles`.
        roles: the roles the route accepts; any one would have been enough.

    Returns:
        the problem, with `client` and `required_roles` members.

    Example:
        >>> refuse_role(motcua, ("auditor",)).detail
        "Client 'motcua' does not hold the 'auditor' role this endpoint requires."
    """
    needed = " or ".join(f"'{r}'" for r in roles)
    return Problem(
        ACCESS_DENIED,
        f"Client '{client.code}' does not hold the {needed} role this endpoint requires.",
        client=client.code,
        required_roles=list(roles),
    )
