"""Administrative roles: who may use the gateway's own APIs (audit, admin), not services.

A departmental system calls services under the rights the policy grants it; a few
clients also hold roles ("administrator", "operator", "auditor", "observer") and
rights such as "audit:unmask". The check is the same everywhere, so it lives here.
"""

from __future__ import annotations

from aiohttp import web

from gateway.core.problems import ACCESS_DENIED, Problem
from gateway.edge.state import STATE
from gateway.identity.authn import authenticate
from gateway.identity.directory import ClientEntry


def require_role(request: web.Request, *roles: str) -> ClientEntry:
    """The authenticated client, if it holds one of `roles`.

    Raises the authentication Problem (401, with its challenge) or a 403 naming the
    client and the role it lacks. Roles come from the current configuration tables, so
    taking a role away takes effect at the next reload, like revoking a credential.
    """
    state = request.app[STATE]
    client = authenticate(request.headers, state.pipeline.config, state.tokens).client
    if roles and client.roles.isdisjoint(roles):
        needed = " or ".join(f"'{r}'" for r in roles)
        raise Problem(
            ACCESS_DENIED,
            f"Client '{client.code}' does not hold the {needed} role this endpoint requires.",
            client=client.code,
            required_roles=list(roles),
        )
    return client
