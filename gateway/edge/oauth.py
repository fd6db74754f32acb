"""The gateway's OAuth2 authorization server: the token endpoint (client credentials,
RFC 6749 §4.4), its signing keys (JWKS) and its metadata (RFC 8414)."""

from __future__ import annotations

import base64
from urllib.parse import unquote_plus

from aiohttp import web

from gateway.core.logging import log
from gateway.core.problems import (
    BAD_REQUEST,
    INVALID_CLIENT,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_GRANT,
    Problem,
    ProblemType,
)
from gateway.edge.http import json_response
from gateway.edge.state import STATE
from gateway.identity.authn import check_client_secret

TOKEN_REQUEST_MAX_BYTES = 8192


def _oauth_error(ptype: ProblemType, error: str, detail: str) -> Problem:
    # RFC 6749 §5.2 clients read `error`; everyone else reads the problem fields.
    headers = {"Cache-Control": "no-store"}
    if error == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="lgsp"'
    return Problem(ptype, detail, headers=headers, error=error, error_description=detail)


async def token_endpoint(request: web.Request) -> web.Response:
    """OAuth2 client credentials (RFC 6749 §4.4), client_secret_basic or client_secret_post."""
    state = request.app[STATE]
    if (request.content_length or 0) > TOKEN_REQUEST_MAX_BYTES:
        raise Problem(PAYLOAD_TOO_LARGE, "A token request is a few hundred bytes at most.")
    if request.content_type != "application/x-www-form-urlencoded":
        raise _oauth_error(
            BAD_REQUEST,
            "invalid_request",
            "Send the token request as application/x-www-form-urlencoded.",
        )
    form = await request.post()
    client_id = form.get("client_id")
    secret = form.get("client_secret")
    authorization = request.headers.get("Authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode("utf-8")
            # RFC 6749 §2.3.1: both parts are form-encoded inside the Basic credentials.
            client_id, secret = (unquote_plus(p) for p in decoded.partition(":")[::2])
        except (ValueError, UnicodeDecodeError):
            raise _oauth_error(
                INVALID_CLIENT, "invalid_client", "The Basic credentials are malformed."
            ) from None
    if form.get("grant_type") != "client_credentials":
        raise _oauth_error(
            UNSUPPORTED_GRANT,
            "unsupported_grant_type",
            "Use grant_type=client_credentials.",
        )
    if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id:
        raise _oauth_error(
            INVALID_CLIENT,
            "invalid_client",
            "Authenticate with HTTP Basic (client id and secret) or client_id/client_secret.",
        )
    match = check_client_secret(state.pipeline.config, client_id, secret)
    if match is None:
        log.warning("token refused", client=client_id)
        raise _oauth_error(
            INVALID_CLIENT,
            "invalid_client",
            "Unknown client, wrong or revoked secret, or disabled client.",
        )
    client, credential_id = match
    token, ttl = state.tokens.issue(client, credential_id)
    return json_response(
        {"access_token": token, "token_type": "Bearer", "expires_in": ttl},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def jwks(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].keys.jwks(), headers={"Cache-Control": "max-age=60"})


async def oauth_metadata(request: web.Request) -> web.Response:
    """RFC 8414 authorization server metadata."""
    s = request.app[STATE].settings
    return json_response(
        {
            "issuer": s.issuer,
            "token_endpoint": f"{s.issuer}/oauth2/token",
            "jwks_uri": f"{s.issuer}/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "token_signing_alg_values_supported": s.token_algorithms,
        }
    )
