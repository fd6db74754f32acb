"""The gateway's OAuth2 authorization server: the token endpoint (client credentials,
RFC 6749 §4.4), its signing keys (JWKS) and its metadata (RFC 8414).

Spoken as the RFCs say, so that any standard client library works unchanged:

* with client certificates on (gateway/core/tls.py), a system whose certificate is
  pinned in its credentials authenticates by it (RFC 8705 `tls_client_auth`: only
  `client_id` in the form), and its token is bound to that certificate (`cnf.x5t#S256`);
* the request is a form of at most 8 KB, however it is framed (chunked or not), each
  parameter at most once (§3.2), one client authentication method (§2.3:
  `client_secret_basic` or `client_secret_post`, not both);
* errors are `application/json` with `error` and `error_description` (§5.2); the RFC 9457
  members ride along (`type`, `detail`, `request_id`...), and a caller that accepts only
  `application/problem+json` gets that media type;
* the gateway grants no scopes: a token carries the client's rights as the policy grants
  them, so a `scope` parameter is `invalid_scope` rather than silently ignored;
* failed client authentications are counted per client id and per source address
  (gateway/limits/failures.py); past the budget the answer is 429 with Retry-After for the
  rest of the window, right secret or not;
* every refused token request is an audit event (path `/oauth2/token`, a security event
  in the exchange log, chained like the rest): which client id was tried, from where, and
  why it was refused. Issued tokens are not exchanges: they are logged, not audited.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import orjson
from aiohttp import web

from gateway.audit import AuditEvent, AuditUnavailable
from gateway.core import bodies
from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.logging import log
from gateway.core.problems import (
    AUTHENTICATION_THROTTLED,
    BAD_REQUEST,
    INVALID_CLIENT,
    PAYLOAD_TOO_LARGE,
    PROBLEM_CONTENT_TYPE,
    REQUEST_TIMEOUT,
    UNSUPPORTED_GRANT,
    Problem,
    ProblemType,
)
from gateway.core.text import storable
from gateway.core.tls import peer_certificate
from gateway.edge.state import STATE, GatewayState
from gateway.edge.toolkit import json_response
from gateway.exchange.accountability import request_id_from
from gateway.identity.authn import check_client_certificate, check_client_secret

__all__ = ["TOKEN_REQUEST_MAX_BYTES", "jwks", "oauth_metadata", "token_endpoint"]

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a password
TOKEN_REQUEST_MAX_BYTES = 8192
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: `error` is the registered code, `ptype` the problem type."""

    def __init__(
        self,
        error: str,
        description: str,
        ptype: ProblemType = BAD_REQUEST,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.ptype = ptype
        self.headers = headers or {}


def _invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def _invalid_client(description: str) -> OAuthError:
    # 401 with a challenge (RFC 6749 §5.2, RFC 9110 §15.5.2), however the client tried.
    headers = {"WWW-Authenticate": 'Basic realm="lgsp"'}
    return OAuthError("invalid_client", description, INVALID_CLIENT, headers=headers)


def _render(request: web.Request, e: OAuthError, request_id: str, type_base: str) -> web.Response:
    doc: dict[str, Any] = {
        "error": e.error,
        "error_description": e.description,
        **Problem(e.ptype, e.description).body(
            type_base=type_base, request_id=request_id, instance=TOKEN_PATH
        ),
    }
    # application/json unless the caller asks for problem+json and not for plain JSON.
    accept = request.headers.get("Accept", "")
    plain = "application/json" in accept or "*/*" in accept or not accept
    media = "application/json" if plain else PROBLEM_CONTENT_TYPE
    if PROBLEM_CONTENT_TYPE not in accept:
        media = "application/json"
    return web.Response(
        status=e.ptype.status,
        body=orjson.dumps(doc),
        content_type=media,
        headers={**_NO_STORE, REQUEST_ID_HEADER: request_id, **e.headers},
    )


# -- the request ------------------------------------------------------------------------------


async def _form(request: web.Request, seconds: float) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise _invalid_request("Send the token request as application/x-www-form-urlencoded.")
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise _invalid_request("Send the token request uncompressed (no Content-Encoding).")
    try:
        async with asyncio.timeout(seconds):
            body = await bodies.read_body(
                request.content,
                None,
                limit=TOKEN_REQUEST_MAX_BYTES,
                decode=False,
                content_length=request.content_length,
            )
    except bodies.BodyTooLarge:
        raise OAuthError(
            "invalid_request",
            f"A token request is a few hundred bytes; at most {TOKEN_REQUEST_MAX_BYTES}.",
            PAYLOAD_TOO_LARGE,
        ) from None
    except TimeoutError:
        raise OAuthError(
            "invalid_request", "The token request did not arrive in time.", REQUEST_TIMEOUT
        ) from None
    try:
        pairs = parse_qsl(body.received.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise _invalid_request("The form is not UTF-8.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _invalid_request(f"The parameter {storable(name)!r} is given more than once.")
        form[name] = value
    return form


def _credentials(request: web.Request, form: dict[str, str]) -> tuple[str, str, str]:
    """(client id, secret, the authentication method) from HTTP Basic or the form."""
    authorization = request.headers.get("Authorization")
    posted = "client_secret" in form
    if authorization is not None:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise _invalid_request("Authenticate with HTTP Basic or client_id/client_secret.")
        if posted:
            raise _invalid_request(
                "Use one client authentication method: HTTP Basic or client_secret in the "
                "form, not both (RFC 6749 §2.3)."
            )
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise _invalid_client("The Basic credentials are malformed.") from None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise _invalid_client("The Basic credentials are malformed.")
        # RFC 6749 §2.3.1: both parts are form-encoded inside the Basic credentials.
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        if "client_id" in form and form["client_id"] != client_id:
            raise _invalid_request("client_id in the form differs from the Basic credentials.")
        method = "client_secret_basic"
    elif posted:
        client_id, secret = form.get("client_id", ""), form["client_secret"]
        method = "client_secret_post"
    else:
        raise _invalid_client(
            "Authenticate with HTTP Basic (client id and secret) or client_id/client_secret."
        )
    if not client_id or not secret:
        raise _invalid_client("The client id and secret must not be empty.")
    return client_id, secret, method


async def token_endpoint(request: web.Request) -> web.Response:
    """OAuth2 client credentials (RFC 6749 §4.4), client_secret_basic or client_secret_post."""
    state = request.app[STATE]
    settings = state.settings
    request_id, _ = request_id_from(request.headers)
    attempt = _Attempt(state, request, request_id)
    try:
        form = await _form(request, settings.request_body_timeout_seconds)
        grant = form.get("grant_type")
        if grant is None:
            raise _invalid_request("grant_type is missing; use grant_type=client_credentials.")
        if grant != "client_credentials":
            raise OAuthError(
                "unsupported_grant_type",
                f"grant_type {storable(grant)[:40]!r} is not supported; use client_credentials.",
                UNSUPPORTED_GRANT,
            )
        peer = peer_certificate(request.transport)
        by_certificate = (
            peer is not None
            and "Authorization" not in request.headers
            and "client_secret" not in form
        )
        if by_certificate:
            # RFC 8705 §2.1 tls_client_auth: the client id in the form, the connection's
            # certificate as the credential.
            client_id, secret, method = form.get("client_id", ""), "", "tls_client_auth"
            if not client_id:
                raise _invalid_client("Give client_id with the certificate (tls_client_auth).")
        else:
            client_id, secret, method = _credentials(request, form)
        attempt.claimed = client_id
        attempt.method = method.removeprefix("client_")  # fits the audit's column
        if form.get("scope", "").strip():
            raise OAuthError(
                "invalid_scope",
                "This gateway grants no scopes: a token carries the rights the policy grants "
                "the client. Leave scope out.",
            )
        keys = [f"client:{client_id}", f"addr:{request.remote or '-'}"]
        wait = await state.auth_failures.blocked(keys)
        if wait is not None:
            retry = max(1, math.ceil(wait))
            raise OAuthError(
                "temporarily_unavailable",
                f"Too many failed authentications for client {storable(client_id)[:64]!r} "
                f"or from {request.remote}; retry after {retry} s.",
                AUTHENTICATION_THROTTLED,
                headers={"Retry-After": str(retry)},
            )
        config = state.pipeline.config
        if peer is not None and by_certificate:
            match = check_client_certificate(config, client_id, peer)
            bound_to = peer.x5t_s256
        else:
            match, bound_to = check_client_secret(config, client_id, secret), None
        if match is None:
            await state.auth_failures.failed(keys)
            log.warning("token refused", client=storable(client_id)[:64], remote=request.remote)
            if by_certificate:
                raise _invalid_client(
                    "The client certificate is not pinned to this client id, or its pin is "
                    "revoked or expired, or the client is disabled."
                )
            raise _invalid_client("Unknown client, wrong or revoked secret, or disabled client.")
        client, credential_id = match
        # A certificate-authenticated client's token is bound to its certificate (RFC 8705
        # §3): refused over any other connection (gateway/identity/authn.py).
        token, ttl = state.tokens.issue(client, credential_id, x5t_s256=bound_to)
        attempt.client = client.code
        response = json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": ttl},
            headers={**_NO_STORE, REQUEST_ID_HEADER: request_id},
        )
    except OAuthError as e:
        attempt.refused = e
        response = _render(request, e, request_id, settings.problem_type_base)
    return await attempt.record(response)


class _Attempt:
    """One token request, as the audit log keeps it."""

    def __init__(self, state: GatewayState, request: web.Request, request_id: str) -> None:
        self.state, self.request, self.request_id = state, request, request_id
        self.t0 = time.perf_counter()
        self.started = datetime.now(UTC)
        self.claimed: str | None = None  # the client id the caller gave
        self.method: str | None = None
        self.client: str | None = None  # set once authenticated (then nothing is audited)
        self.refused: OAuthError | None = None

    async def record(self, response: web.Response) -> web.Response:
        if self.refused is None:
            log.info("token issued", client=self.client, request_id=self.request_id)
            return response
        elapsed = time.perf_counter() - self.t0
        detail = self.refused.description
        if self.claimed:
            detail += f" (client id given: {self.claimed!r})"
        event = AuditEvent(
            event_id=str(uuid.uuid4()),
            request_id=self.request_id,
            instance=self.state.settings.instance_id,
            method="POST",
            path=TOKEN_PATH,
            started_at=self.started,
            finished_at=self.started + timedelta(seconds=elapsed),
            duration_ms=round(elapsed * 1000, 3),
            status=response.status,
            remote_addr=self.request.remote,
            auth_method=self.method,
            error_type=self.refused.ptype.slug,
            error_detail=detail,
        )
        try:
            await self.state.audit.write(event)
        except AuditUnavailable as e:
            log.error("audit event not durable", request_id=self.request_id, error=str(e))
            self.state.metrics.audit_failures.inc()
        return response


# -- keys and metadata ------------------------------------------------------------------------


async def jwks(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response(
        state.keys.jwks(state.settings.token_algorithms), headers={"Cache-Control": "max-age=60"}
    )


async def oauth_metadata(request: web.Request) -> web.Response:
    """RFC 8414 authorization server metadata, with registered names only."""
    s = request.app[STATE].settings
    return json_response(
        {
            "issuer": s.issuer,
            "token_endpoint": f"{s.issuer}{TOKEN_PATH}",
            "jwks_uri": f"{s.issuer}/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS)
            + (["tls_client_auth"] if s.tls_client_auth != "none" else []),
            # No authorization endpoint: no response types; tokens carry no scopes.
            "response_types_supported": [],
            "scopes_supported": [],
            # RFC 8705 §3.3 (registered): with client certificates, tokens are bound.
            **(
                {"tls_client_certificate_bound_access_tokens": True}
                if s.tls_client_auth != "none"
                else {}
            ),
        },
        headers={"Cache-Control": "max-age=300"},
    )
