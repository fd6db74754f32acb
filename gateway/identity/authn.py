"""Who is calling: a bearer token from our token endpoint, an API key (legacy systems), or
the connection's client certificate pinned in a system's credentials (HTTPS with client
certificates, gateway/core/tls.py).

A token bound to a client certificate (RFC 8705, `cnf.x5t#S256`, issued to a system that
authenticated by its certificate) is accepted only over a connection presenting that
very certificate: from any other, or from one without a certificate, it is refused as
`token-binding-mismatch`.

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
    INVALID_CERTIFICATE,
    INVALID_TOKEN,
    TOKEN_BINDING_MISMATCH,
    UNAUTHENTICATED,
    Problem,
    ProblemType,
)
from gateway.core.tls import PeerCertificate
from gateway.identity.credentials import API_KEY_PREFIX, digest
from gateway.identity.directory import ClientEntry, CredentialEntry, Directory
from gateway.identity.tokens import TokenService

API_KEY_HEADER = "X-Api-Key"


@dataclass(frozen=True, slots=True)
class Caller:
    client: ClientEntry
    method: str  # "bearer" | "api_key" | "certificate" | "issuer" (identity/issuers.py)
    # The external issuer whose token made the caller this client; None for our own.
    issuer: str | None = None


def authenticate(
    headers: CIMultiDictProxy[str],
    config: Directory,
    tokens: TokenService,
    peer: PeerCertificate | None = None,
) -> Caller:
    """The caller of a request; `peer` is the connection's client certificate, if any.

    Raises:
        Problem: 401 (`unauthenticated`, `invalid-token`, `invalid-api-key`,
            `invalid-certificate`, `token-binding-mismatch`) with a challenge.
    """
    try:
        return _authenticate(headers, config, tokens, peer)
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
    headers: CIMultiDictProxy[str],
    config: Directory,
    tokens: TokenService,
    peer: PeerCertificate | None,
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
        if claims.x5t_s256 is not None and (peer is None or peer.x5t_s256 != claims.x5t_s256):
            presented = "another client certificate" if peer else "no client certificate"
            raise Problem(
                TOKEN_BINDING_MISMATCH,
                "This token is bound to the client certificate it was issued over (RFC 8705);"
                f" this connection presents {presented}. Call over a connection with that "
                "certificate, or get a token over this one.",
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

    if peer is not None:
        entry = certificate_credential(config, peer)
        if entry is None:
            raise Problem(
                INVALID_CERTIFICATE,
                f"The client certificate {peer.subject!r} is not pinned in any system's "
                "credentials; send a token or an API key, or have the certificate pinned.",
            )
        client = _enabled_client(config, entry.client_code, INVALID_CERTIFICATE)
        return Caller(client, "certificate")

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


def certificate_credential(config: Directory, peer: PeerCertificate) -> CredentialEntry | None:
    """The active certificate credential pinning this certificate (by its SPKI digest or
    its subject DN), or None."""
    now = time.time()
    for pin in peer.pins:
        entry = config.credentials.get(digest(pin))
        if entry is not None and entry.kind == "certificate":
            if entry.expires_at is None or entry.expires_at.timestamp() > now:
                return entry
    return None


def check_client_certificate(
    config: Directory, client_code: str, peer: PeerCertificate
) -> tuple[ClientEntry, int] | None:
    """For the token endpoint (RFC 8705 `tls_client_auth`): the client and credential id
    when the connection's certificate is pinned to that client, else None."""
    entry = certificate_credential(config, peer)
    if entry is None or not hmac.compare_digest(entry.client_code.encode(), client_code.encode()):
        return None
    client = config.clients.get(client_code)
    if client is None or not client.enabled:
        return None
    return client, entry.id


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
