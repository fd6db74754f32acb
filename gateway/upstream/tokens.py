"""The province's own credentials for upstreams: OAuth2 client-credentials tokens
(RFC 6749 §4.4), fetched from the upstream's token endpoint with the secret the
upstream's `client_secret_env` names, cached until shortly before they expire, one
request in flight per upstream."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from urllib.parse import quote_plus

import aiohttp
from yarl import URL

from gateway.config.runtime import UpstreamEntry
from gateway.core.problems import (
    UPSTREAM_AUTH_FAILED,
    Problem,
)
from gateway.upstream.allowlist import OutboundPolicy, address_refused, refused_problem

_TOKEN_MARGIN_SECONDS = 30


_Credentials = tuple[str, str, str, str]  # base URL, token URL, client id, secret variable


def _credentials(upstream: UpstreamEntry) -> _Credentials:
    auth = upstream.auth
    return (
        upstream.base_url,
        auth.get("token_url", ""),
        auth.get("client_id", ""),
        auth.get("client_secret_env", ""),
    )


def basic_authorization(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: form-encode both parts before Basic encoding.
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class UpstreamTokens:
    """OAuth2 client-credentials tokens for upstreams, one in flight per upstream."""

    def __init__(
        self, session: aiohttp.ClientSession, outbound: OutboundPolicy | None = None
    ) -> None:
        self._session = session
        self._outbound = outbound
        # By upstream name: the credentials the token was got with, the token, its end.
        self._tokens: dict[str, tuple[_Credentials, str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def authorization(self, upstream: UpstreamEntry) -> str | None:
        if upstream.auth.get("type", "none") == "none":
            return None
        # A token is good only for the credentials it was got with: an upstream whose
        # token URL, client id or secret changed gets a new one, never the old.
        wanted = _credentials(upstream)
        cached = self._tokens.get(upstream.name)
        if cached and cached[0] == wanted and cached[2] > time.monotonic():
            return cached[1]
        lock = self._locks.setdefault(upstream.name, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(upstream.name)
            if cached and cached[0] == wanted and cached[2] > time.monotonic():
                return cached[1]
            token, ttl = await self._fetch(upstream)
            value = f"Bearer {token}"
            ends = time.monotonic() + ttl - _TOKEN_MARGIN_SECONDS
            self._tokens[upstream.name] = (wanted, value, ends)
            return value

    def invalidate(self, upstream: UpstreamEntry) -> None:
        self._tokens.pop(upstream.name, None)

    async def _fetch(self, upstream: UpstreamEntry) -> tuple[str, float]:
        auth = upstream.auth
        secret_env = auth.get("client_secret_env", "")
        refusal = self._outbound.secret_refusal(secret_env) if self._outbound else None
        if refusal is not None:
            raise Problem(
                UPSTREAM_AUTH_FAILED,
                f"Upstream {upstream.name!r} may not use {secret_env!r} as its secret: {refusal}",
            )
        secret = os.environ.get(secret_env)
        if not secret:
            raise Problem(
                UPSTREAM_AUTH_FAILED,
                f"No client secret for upstream {upstream.name!r}: set the environment "
                f"variable {secret_env!r} on the gateway.",
            )
        token_url = auth["token_url"]
        if token_url.startswith("/"):
            token_url = upstream.base_url.rstrip("/") + token_url
        target = URL(token_url)
        if self._outbound is not None:
            reason = self._outbound.refusal(target.scheme, target.host)
            if reason is not None:
                raise refused_problem(f"the token URL of upstream {upstream.name!r}", reason)
        try:
            async with self._session.post(
                target,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": basic_authorization(auth["client_id"], secret)},
                timeout=aiohttp.ClientTimeout(total=10),
                # A redirect could lead anywhere, IP literals included: with an outbound
                # policy, the token URL must be the final address.
                allow_redirects=self._outbound is None,
            ) as resp:
                if 300 <= resp.status < 400 and self._outbound is not None:
                    raise Problem(
                        UPSTREAM_AUTH_FAILED,
                        f"Upstream {upstream.name!r} answered the token request with a "
                        f"redirect (HTTP {resp.status}); the gateway does not follow it. "
                        "Set the upstream's token_url to the final address.",
                    )
                payload = await resp.json(content_type=None)
                if resp.status != 200 or not isinstance(payload, dict):
                    raise Problem(
                        UPSTREAM_AUTH_FAILED,
                        f"Upstream {upstream.name!r} refused the gateway's credentials "
                        f"(HTTP {resp.status}).",
                    )
                return str(payload["access_token"]), float(payload.get("expires_in", 300))
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as e:
            refused = address_refused(e)
            if refused is not None:
                raise refused_problem(
                    f"the token URL of upstream {upstream.name!r}", str(refused)
                ) from None
            raise Problem(
                UPSTREAM_AUTH_FAILED,
                f"Could not get an access token from upstream {upstream.name!r}: "
                f"{type(e).__name__}.",
            ) from None
