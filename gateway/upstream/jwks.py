"""Fetching trusted issuers' key sets (JWKS) under the outbound rules.

The gateway calls an issuer's JWKS URL the way it calls upstreams: the URL must pass the
outbound allow-list (gateway/upstream/allowlist.py) before the request, every address a
name resolves to is judged when the connection is made, redirects are not followed (a
redirect could lead anywhere), and the answer is bounded in size and time. What the keys
mean is gateway/identity/issuers.py's business.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from gateway.identity.issuers import JwksDocument, JwksUnavailable
from gateway.upstream.allowlist import GuardedResolver, OutboundPolicy, address_refused

__all__ = ["MAX_JWKS_BYTES", "JwksFetcher"]

MAX_JWKS_BYTES = 256 * 1024  # a key set is a few kilobytes; more is not a key set
_TIMEOUT = aiohttp.ClientTimeout(total=5, sock_connect=2)


class JwksFetcher:
    """`await fetcher(url)`: the JWKS at `url`, or `JwksUnavailable` saying why not.

    Example:
        >>> fetcher = JwksFetcher(OutboundPolicy.from_settings(settings))
        >>> await fetcher.start()
        >>> doc = await fetcher("https://ndxp.example/.well-known/jwks.json")
    """

    def __init__(self, outbound: OutboundPolicy | None) -> None:
        self._outbound = outbound
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    async def start(self) -> None:
        if self._outbound is not None:
            self._resolver = GuardedResolver(self._outbound)
        connector = aiohttp.TCPConnector(limit=10, resolver=self._resolver)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._resolver is not None:
            await self._resolver.close()

    async def __call__(self, url: str) -> JwksDocument:
        if self._session is None:
            raise JwksUnavailable("the gateway is not started")
        target = URL(url)
        if self._outbound is not None:
            reason = self._outbound.refusal(target.scheme, target.host)
            if reason is not None:
                raise JwksUnavailable(f"the gateway may not call {url}: {reason}")
        try:
            async with self._session.get(
                target,
                timeout=_TIMEOUT,
                allow_redirects=False,
                headers={"Accept": "application/jwk-set+json, application/json"},
            ) as resp:
                if resp.status != 200:
                    raise JwksUnavailable(f"{url} answered HTTP {resp.status}")
                body = await resp.content.read(MAX_JWKS_BYTES + 1)
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable(f"{url} sent more than {MAX_JWKS_BYTES} bytes")
                return JwksDocument(
                    body, resp.headers.get("Cache-Control"), resp.headers.get("Expires")
                )
        except (TimeoutError, aiohttp.ClientError) as e:
            refused = address_refused(e)
            if refused is not None:
                raise JwksUnavailable(f"the gateway may not call {url}: {refused}") from None
            raise JwksUnavailable(f"{url} could not be fetched: {type(e).__name__}") from None
