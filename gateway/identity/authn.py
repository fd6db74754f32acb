"""Who is calling: a bearer token from our token endpoint, or an API key (legacy systems).

Either way the credential must still be active and its client enabled in the current
configuration, so revoking a credential or disabling a client takes effect as soon as
the configuration is reloaded, without waiting for tokens to expire.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from multidict import CIMultiDictProxy

from gateway.core.problems import (
    INVALID_API_KEY,
    INVALID_TOKEN,
    UNAUTHENTICATED,
    Problem,
    ProblemType,
)
from gateway.identity.credentials import API_KEY_PREFIX, digest
from gateway.identity.directory import ClientEntry, Directory
from gateway.identity.tokens import TokenService

API_KEY_HEADER = "X-Api-Key"


@dataclass(frozen=True, slots=True)
class Caller:
    client: ClientEntry
    method: str  # "bearer" | "api_key" | "issuer" (gateway/identity/issuers.py)
    # The external issuer whose token made the caller this client; None for our own.
    issuer: str | None = None


def authenticate(headers: CIMultiDictProxy[str], config: Directory, tokens: TokenService) -> Caller:
    try:
        return _authenticate(headers, config, tokens)
    except Problem as p:
        # RFC 9110 §15.5.2: every 401 carries a challenge.
        if p.status == 401 and "WWW-Authenticate" not in p.headers:
            p.headers["WWW-Authenticate"] = (
                'Bearer realm="lgsp", error="invalid_token"'
                if "Authorization" in headers
                else 'Bearer realm="lgsp"'
            )
        raise


def _authenticate(
    headers: CIMultiDictProxy[str], config: Directory, tokens: TokenService
) -> Caller:
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                UNAUTHENTICATED,
                "The Authorization header must be 'Bearer <access token>'.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
            )
        try:
            claims = tokens.verify(token.strip())
        except Problem as p:
            p.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            raise
        if claims.credential_id not in config.active_credential_ids:
            raise Problem(
                INVALID_TOKEN,
                "The credential this token was issued for has been revoked.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        expiry = config.credential_expiry.get(claims.credential_id)
        if expiry is not None and expiry <= time.time():
            raise Problem(
                INVALID_TOKEN,
                "The credential this token was issued for has expired; get a token with the "
                "client's current secret.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return Caller(_enabled_client(config, claims.client, INVALID_TOKEN), "bearer")

    api_key = headers.get(API_KEY_HEADER)
    if api_key is not None:
        entry = (
            config.credentials.get(digest(api_key)) if api_key.startswith(API_KEY_PREFIX) else None
        )
        if entry is None or entry.kind != "api_key":
            raise Problem(INVALID_API_KEY, "The API key is unknown or has been revoked.")
        if entry.expires_at is not None and entry.expires_at.timestamp() <= time.time():
            raise Problem(INVALID_API_KEY, "The API key has expired.")
        return Caller(_enabled_client(config, entry.client_code, INVALID_API_KEY), "api_key")

    raise Problem(
        UNAUTHENTICATED,
        "Send 'Authorization: Bearer <token>' (get one from /oauth2/token) or an X-Api-Key.",
        headers={"WWW-Authenticate": 'Bearer realm="lgsp"'},
    )


def _enabled_client(config: Directory, code: str, ptype: ProblemType) -> ClientEntry:
    client = config.clients.get(code)
    if client is None or not client.enabled:
        raise Problem(ptype, f"The client {code!r} is unknown or disabled.")
    return client


def check_client_secret(
    config: Directory, client_code: str, secret: str
) -> tuple[ClientEntry, int] | None:
    """For the token endpoint: the client and credential id, or None if they do not match."""
    entry = config.credentials.get(digest(secret))
    if entry is None or entry.kind != "secret":
        return None
    if not hmac.compare_digest(entry.client_code.encode(), client_code.encode()):
        return None
    if entry.expires_at is not None and entry.expires_at.timestamp() <= time.time():
        return None
    client = config.clients.get(client_code)
    if client is None or not client.enabled:
        return None
    return client, entry.id
