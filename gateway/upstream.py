"""Forwarding to providers' systems: one pooled HTTP client, the gateway's own credentials
for each upstream (cached until shortly before they expire), and upstream failures
turned into problems that say the upstream side failed.

With an `OutboundPolicy` (gateway/outbound.py), every URL is checked before it is sent
(scheme, IP-literal host) and every resolved address when a connection is made; a refusal
is an `upstream-address-refused` problem.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from dataclasses import dataclass
from urllib.parse import quote_plus

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.logging import log
from gateway.outbound import AddressRefused, GuardedResolver, OutboundPolicy
from gateway.problems import (
    UPSTREAM_ADDRESS_REFUSED,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    UPSTREAM_CONNECT_FAILED,
    UPSTREAM_RESPONSE_TOO_LARGE,
    UPSTREAM_TIMEOUT,
    Problem,
)
from gateway.runtime import ServiceEntry, UpstreamEntry

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# The caller's credentials are for the gateway, never for the provider; Host and length
# are the client library's to set.
NOT_FORWARDED_REQUEST = HOP_BY_HOP | {
    "authorization",
    "x-api-key",
    "host",
    "content-length",
    "expect",  # the gateway has already read the body
}
NOT_FORWARDED_RESPONSE = HOP_BY_HOP | {"content-length", "set-cookie"}
_TOKEN_MARGIN_SECONDS = 30


def forwardable(headers: CIMultiDictProxy[str], drop: frozenset[str]) -> CIMultiDict[str]:
    # Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
    listed = {h.strip().lower() for v in headers.getall("Connection", []) for h in v.split(",")}
    return CIMultiDict(
        (k, v) for k, v in headers.items() if k.lower() not in drop and k.lower() not in listed
    )


def address_refused(error: BaseException) -> AddressRefused | None:
    """The outbound policy's refusal inside an aiohttp connection error, if it is one."""
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(
        error.os_error, AddressRefused
    ):
        return error.os_error
    return None


def _refused(what: str, reason: str) -> Problem:
    log.warning("upstream address refused", target=what, reason=reason)
    return Problem(UPSTREAM_ADDRESS_REFUSED, f"The gateway may not call {what}: {reason}")


def basic_authorization(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: form-encode both parts before Basic encoding.
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    elapsed_ms: float


class UpstreamTokens:
    """OAuth2 client-credentials tokens for upstreams, one in flight per upstream."""

    def __init__(
        self, session: aiohttp.ClientSession, outbound: OutboundPolicy | None = None
    ) -> None:
        self._session = session
        self._outbound = outbound
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def authorization(self, upstream: UpstreamEntry) -> str | None:
        if upstream.auth.get("type", "none") == "none":
            return None
        cached = self._tokens.get(upstream.name)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        lock = self._locks.setdefault(upstream.name, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(upstream.name)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            token, ttl = await self._fetch(upstream)
            value = f"Bearer {token}"
            self._tokens[upstream.name] = (value, time.monotonic() + ttl - _TOKEN_MARGIN_SECONDS)
            return value

    def invalidate(self, upstream: UpstreamEntry) -> None:
        self._tokens.pop(upstream.name, None)

    async def _fetch(self, upstream: UpstreamEntry) -> tuple[str, float]:
        auth = upstream.auth
        secret_env = auth.get("client_secret_env", "")
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
                raise _refused(f"the token URL of upstream {upstream.name!r}", reason)
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
                raise _refused(
                    f"the token URL of upstream {upstream.name!r}", str(refused)
                ) from None
            raise Problem(
                UPSTREAM_AUTH_FAILED,
                f"Could not get an access token from upstream {upstream.name!r}: "
                f"{type(e).__name__}.",
            ) from None


class UpstreamClient:
    def __init__(self, *, pool_size: int = 1000, outbound: OutboundPolicy | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._pool_size = pool_size
        self._outbound = outbound
        self._resolver: GuardedResolver | None = None
        self.tokens: UpstreamTokens | None = None

    async def start(self) -> None:
        if self._outbound is not None:
            # Resolved addresses are filtered before the pool connects (and cached with
            # the connector's DNS cache); IP literals are checked in _send.
            self._resolver = GuardedResolver(self._outbound)
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, keepalive_timeout=30, resolver=self._resolver
        )
        # No decompression: bytes pass through as the provider sent them.
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        self.tokens = UpstreamTokens(self._session, self._outbound)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._resolver is not None:
            # The connector does not own a resolver it was given.
            await self._resolver.close()

    async def forward(
        self,
        service: ServiceEntry,
        method: str,
        raw_endpoint: str,
        query: str,
        headers: CIMultiDict[str],
        body: bytes,
    ) -> UpstreamResponse:
        assert self._session is not None and self.tokens is not None
        url = service.upstream_url + raw_endpoint
        if query:
            url += "?" + query
        for attempt in (1, 2):
            authorization = await self.tokens.authorization(service.upstream)
            if authorization is not None:
                headers["Authorization"] = authorization
            started = time.perf_counter()
            response = await self._send(service, method, url, headers, body)
            response.elapsed_ms = (time.perf_counter() - started) * 1000
            # A 401 with a cached token means the provider forgot it: fetch one more, once.
            if response.status == 401 and authorization is not None and attempt == 1:
                self.tokens.invalidate(service.upstream)
                continue
            return response
        return response

    async def _send(
        self,
        service: ServiceEntry,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
    ) -> UpstreamResponse:
        assert self._session is not None
        name = f"{service.provider}/{service.code}/{service.version}"
        target = URL(url, encoded=True)
        if self._outbound is not None:
            # Cached per scheme and host: a dictionary lookup for hosts already seen.
            reason = self._outbound.refusal(target.scheme, target.host)
            if reason is not None:
                raise _refused(f"the upstream of {name}", reason)
        try:
            async with self._session.request(
                method,
                target,
                headers=headers,
                data=body if body else None,
                timeout=service.timeout,
                allow_redirects=False,
            ) as resp:
                declared = resp.content_length
                if declared is not None and declared > service.max_response_bytes:
                    raise Problem(
                        UPSTREAM_RESPONSE_TOO_LARGE,
                        f"The response of {name} ({declared} bytes) exceeds the service's limit"
                        f" of {service.max_response_bytes} bytes.",
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > service.max_response_bytes:
                        raise Problem(
                            UPSTREAM_RESPONSE_TOO_LARGE,
                            f"The response of {name} exceeds the service's limit of "
                            f"{service.max_response_bytes} bytes.",
                        )
                    chunks.append(chunk)
                return UpstreamResponse(
                    resp.status,
                    forwardable(resp.headers, NOT_FORWARDED_RESPONSE),
                    b"".join(chunks),
                    0.0,
                )
        except aiohttp.ConnectionTimeoutError:
            raise Problem(
                UPSTREAM_TIMEOUT,
                f"Could not connect to {name} within {service.timeout.sock_connect:g} s.",
            ) from None
        except TimeoutError:
            raise Problem(
                UPSTREAM_TIMEOUT,
                f"{name} did not answer within {service.timeout.total:g} s.",
            ) from None
        except aiohttp.ClientConnectorError as e:
            refused = address_refused(e)
            if refused is not None:
                raise _refused(f"the upstream of {name}", str(refused)) from None
            raise Problem(
                UPSTREAM_CONNECT_FAILED,
                f"Could not connect to {name} at {e.host}:{e.port}: "
                f"{e.os_error.strerror or e.os_error}.",
            ) from None
        except aiohttp.ClientError as e:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{name} broke the exchange: {type(e).__name__}.",
            ) from None
