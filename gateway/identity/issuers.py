"""Tokens from another platform: external issuers the policy trusts (the national
platform calling a provincial service), verified with the keys they publish.

A trusted issuer (policy `issuers`, gateway/config/policy.py) names its `iss`, the URL
of its JWKS, the audience the gateway expects, the algorithms it may sign with, and the
policy client it speaks as. A bearer token whose `iss` is such an issuer is verified
with that issuer's keys, never with a shared secret, and the caller becomes that client:
its rights, accountability headers, limits and audit apply unchanged; the audit event
also names the issuer.

Keys are fetched off the request path: when the configuration names an issuer and again
before its key set goes stale (Cache-Control max-age or Expires, within bounds). The
request path waits on a fetch only for a `kid` it has not seen, and then at most once per
`refresh_interval` per issuer, so a caller sending made-up kids cannot make the gateway
hammer the issuer. A key set that cannot be fetched again is kept: the issuer's tokens
keep verifying with the keys it last published.

The fetch itself is the outbound layer's (gateway/upstream/jwks.py): the JWKS URL obeys
the outbound allow-list like every upstream call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import jwt
import orjson
from multidict import CIMultiDictProxy

from gateway.core.logging import log
from gateway.core.problems import INVALID_TOKEN, Problem
from gateway.identity.authn import Caller
from gateway.identity.directory import Directory
from gateway.identity.keys import ED25519_ALGS

__all__ = [
    "AUTH_METHOD",
    "IssuerEntry",
    "JwksDocument",
    "JwksUnavailable",
    "TrustedIssuers",
    "cache_seconds",
]

AUTH_METHOD = "issuer"  # the audit event's auth_method for a trusted issuer's token
# Claims an external access token must carry; `nbf` is optional (checked when present).
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat"]
_KEY_TYPES = {
    "RS256": "RSA",
    "PS256": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
}
_ACCEPTED_TYP = frozenset({"", "jwt", "at+jwt", "application/at+jwt"})
_MAX_TOKEN_CHARS = 16 * 1024
_CACHE_LIMIT = 50_000
_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@dataclass(frozen=True, slots=True)
class IssuerEntry:
    """One trusted issuer as the runtime tables hold it."""

    issuer: str
    jwks_url: str
    audience: str
    algorithms: tuple[str, ...]
    client_code: str
    max_lifetime: int  # seconds, exp - iat
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class JwksDocument:
    """An issuer's JWKS as fetched: the body and the headers that say how long to keep it."""

    body: bytes
    cache_control: str | None = None
    expires: str | None = None


class JwksUnavailable(Exception):
    """The JWKS could not be fetched (refused address, timeout, bad answer); says why."""


JwksFetch = Callable[[str], Awaitable[JwksDocument]]


@dataclass(frozen=True, slots=True)
class _Key:
    jwk: jwt.PyJWK
    alg: str | None  # the algorithm the JWK names, if it names one


@dataclass(slots=True)
class _KeySet:
    keys: dict[str, _Key] = field(default_factory=dict)
    fetched: bool = False  # a fetch has succeeded once
    fresh_until: float = 0.0  # clock time the keys are due for refresh
    last_attempt: float = float("-inf")  # clock time of the last fetch, whatever its end
    jwks_url: str = ""
    error: str | None = None  # why the last fetch failed
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class _Verified:
    entry: IssuerEntry
    kid: str
    expires_at: float


def cache_seconds(
    cache_control: str | None, expires: str | None, *, now: float | None = None
) -> float | None:
    """How long the answer may be kept, by its Cache-Control (max-age; no-store and
    no-cache mean 0) or, without it, its Expires date; None when neither says.

    Example:
        >>> cache_seconds("public, max-age=600", None)
        600.0
    """
    if cache_control:
        for directive in cache_control.lower().split(","):
            name, _, value = directive.strip().partition("=")
            if name in ("no-store", "no-cache"):
                return 0.0
            if name == "max-age":
                with contextlib.suppress(ValueError):
                    return max(0.0, float(int(value.strip().strip('"'))))
    if expires:
        try:
            when = parsedate_to_datetime(expires).timestamp()
        except (TypeError, ValueError):
            return 0.0  # RFC 9111 §5.3: an invalid date means already expired
        return max(0.0, when - (time.time() if now is None else now))
    return None


def _segment(token: str) -> dict[str, Any] | None:
    """The unverified payload of a compact JWS, or None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > _MAX_TOKEN_CHARS:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _parse_keys(body: bytes) -> dict[str, _Key]:
    """The signing keys of a JWKS by kid; keys without a kid, for encryption or of a type
    PyJWT cannot load are left out (one odd key must not hide the others)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise JwksUnavailable(f"the JWKS is not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksUnavailable('the JWKS has no "keys" list')
    keys: dict[str, _Key] = {}
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        hint = "EdDSA" if jwk.get("kty") == "OKP" else None
        try:
            alg = jwk.get("alg")
            keys[jwk["kid"]] = _Key(
                jwt.PyJWK(jwk, algorithm=hint), alg if isinstance(alg, str) else None
            )
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
    return keys


class TrustedIssuers:
    """The trusted issuers' key sets and the verification of their tokens.

    Example:
        >>> issuers = TrustedIssuers(fetch_jwks, leeway_seconds=30)
        >>> caller = await issuers.authenticate(headers, config.issuers, config, "https://lgsp")
        >>> caller.client.code, caller.issuer   # None: not a trusted issuer's token
    """

    def __init__(
        self,
        fetch: JwksFetch,
        *,
        leeway_seconds: int,
        refresh_interval: float = 30.0,
        min_cache_seconds: float = 60.0,
        max_cache_seconds: float = 86_400.0,
        default_cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.leeway = leeway_seconds
        self.refresh_interval = refresh_interval
        self.min_cache = min_cache_seconds
        self.max_cache = max_cache_seconds
        self.default_cache = default_cache_seconds
        self.clock = clock  # monotonic; tests move it instead of sleeping
        self._sets: dict[str, _KeySet] = {}
        self._verified: dict[str, _Verified] = {}
        self._wake = asyncio.Event()

    # -- keys ------------------------------------------------------------------------------

    def key_ids(self, issuer: str) -> list[str]:
        """The kids of the issuer's keys the gateway holds now (for health and tests)."""
        keyset = self._sets.get(issuer)
        return sorted(keyset.keys) if keyset else []

    def fresh_for(self, issuer: str) -> float | None:
        """Seconds until the issuer's keys are due for refresh; None before a first fetch."""
        keyset = self._sets.get(issuer)
        if keyset is None or not keyset.fetched:
            return None
        return keyset.fresh_until - self.clock()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per issuer: keys held, seconds until due, whether the last fetch failed (for
        /healthz; why it failed is in the log, which may name the allow-list)."""
        return {
            iss: {
                "keys": len(s.keys),
                "refresh_in_s": round(s.fresh_until - self.clock(), 1) if s.fetched else None,
                "failing": s.error is not None,
            }
            for iss, s in self._sets.items()
        }

    def _keyset(self, entry: IssuerEntry) -> _KeySet:
        keyset = self._sets.get(entry.issuer)
        if keyset is None or keyset.jwks_url != entry.jwks_url:
            # A new issuer, or its keys moved: the old set says nothing about the new URL.
            keyset = self._sets[entry.issuer] = _KeySet(jwks_url=entry.jwks_url)
        return keyset

    async def _load(self, entry: IssuerEntry, keyset: _KeySet) -> None:
        """Fetch the issuer's keys now (the caller holds the key set's lock)."""
        now = self.clock()
        keyset.last_attempt = now
        try:
            doc = await self._fetch(entry.jwks_url)
            keys = _parse_keys(doc.body)
        except JwksUnavailable as e:
            keyset.error = str(e)
            # Try again after the refresh interval; keep the keys it last published.
            keyset.fresh_until = now + self.refresh_interval
            log.warning("issuer keys not fetched", issuer=entry.issuer, error=str(e))
            return
        told = cache_seconds(doc.cache_control, doc.expires)
        keep = self.default_cache if told is None else told
        keyset.keys = keys
        keyset.fetched = True
        keyset.error = None
        keyset.fresh_until = now + min(self.max_cache, max(self.min_cache, keep))
        log.info("issuer keys fetched", issuer=entry.issuer, kids=sorted(keys), keep_s=keep)

    async def refresh_due(self, entries: Mapping[str, IssuerEntry]) -> None:
        """Fetch the key sets that are missing or due (one fetch per issuer at a time)."""
        for entry in entries.values():
            if not entry.enabled:
                continue
            keyset = self._keyset(entry)
            if keyset.fetched and keyset.fresh_until > self.clock():
                continue
            async with keyset.lock:
                if keyset.fresh_until > self.clock():
                    continue  # fetched (or tried) while this waited
                await self._load(entry, keyset)

    def wake(self) -> None:
        """The configuration changed: look at the issuers now (from `run`)."""
        self._wake.set()

    async def run(self, entries: Callable[[], Mapping[str, IssuerEntry]]) -> None:
        """For the gateway's life: keep every trusted issuer's keys fresh in the
        background, so requests never wait on a fetch for keys they know."""
        while True:
            self._wake.clear()
            current = entries()
            for gone in [iss for iss in self._sets if iss not in current]:
                del self._sets[gone]  # no longer trusted: its keys go with it
            try:
                await self.refresh_due(current)
            except Exception as e:  # keep the loop alive; the next round tries again
                log.error("issuer key refresh failed", error=str(e))
            due = [
                s.fresh_until - self.clock()
                for iss, s in self._sets.items()
                if iss in current and current[iss].enabled
            ]
            pause = min([self.refresh_interval, *due])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(1.0, pause))

    async def _key_for(self, entry: IssuerEntry, kid: str) -> _Key | None:
        keyset = self._keyset(entry)
        key = keyset.keys.get(kid)
        if key is not None:
            return key
        if keyset.lock.locked():
            # A fetch is under way (the background one, say): its keys may hold the kid.
            async with keyset.lock:
                key = keyset.keys.get(kid)
            if key is not None:
                return key
        # An unknown kid: the issuer may have rotated. One fetch per interval, whoever asks.
        if self.clock() - keyset.last_attempt < self.refresh_interval:
            return None
        async with keyset.lock:
            key = keyset.keys.get(kid)
            if key is None and self.clock() - keyset.last_attempt >= self.refresh_interval:
                await self._load(entry, keyset)
                key = keyset.keys.get(kid)
        return key

    # -- tokens ----------------------------------------------------------------------------

    async def authenticate(
        self,
        headers: CIMultiDictProxy[str],
        issuers: Mapping[str, IssuerEntry],
        directory: Directory,
        own_issuer: str,
    ) -> Caller | None:
        """The caller, when the bearer token claims a trusted issuer; None when it is not
        another issuer's token (the gateway's own tokens and API keys are checked by
        gateway/identity/authn.py). Raises a 401 `Problem` naming what failed."""
        if not issuers:
            return None
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        cached = self._verified.get(token)
        if cached is not None and (
            issuers.get(cached.entry.issuer) != cached.entry or not self._still_valid(cached)
        ):
            # The issuer's trust changed, its key went or the token expired: check afresh.
            del self._verified[token]
            cached = None
        if cached is None:
            payload = _segment(token)
            claimed = payload.get("iss") if payload is not None else None
            if not isinstance(claimed, str) or claimed == own_issuer:
                return None
            found = issuers.get(claimed)
            if found is None or not found.enabled:
                raise Problem(
                    INVALID_TOKEN,
                    f"The token's issuer {claimed[:255]!r} is neither this gateway nor an "
                    "issuer it trusts.",
                    headers=dict(_CHALLENGE),
                )
            cached = await self._verify(token, found)
        entry = cached.entry
        client = directory.clients.get(entry.client_code)
        if client is None or not client.enabled:
            raise Problem(
                INVALID_TOKEN,
                f"The client {entry.client_code!r} that issuer {entry.issuer!r} speaks as is "
                "unknown or disabled.",
                headers=dict(_CHALLENGE),
            )
        return Caller(client, AUTH_METHOD, issuer=entry.issuer)

    def _still_valid(self, cached: _Verified) -> bool:
        keyset = self._sets.get(cached.entry.issuer)
        return (
            keyset is not None
            and cached.kid in keyset.keys
            and cached.expires_at + self.leeway > time.time()
        )

    async def _verify(self, token: str, entry: IssuerEntry) -> _Verified:
        try:
            return await self._check(token, entry)
        except Problem as p:
            p.headers.update(_CHALLENGE)
            raise

    async def _check(self, token: str, entry: IssuerEntry) -> _Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Problem(INVALID_TOKEN, f"The bearer token is not a JWT: {e}.") from None
        alg, kid = header.get("alg"), header.get("kid")
        who = f"issuer {entry.issuer!r}"
        if alg not in entry.algorithms:
            raise Problem(
                INVALID_TOKEN,
                f"Tokens of {who} signed with {alg!r} are not accepted; allowed: "
                f"{list(entry.algorithms)}.",
            )
        if str(header.get("typ", "")).lower() not in _ACCEPTED_TYP:
            raise Problem(
                INVALID_TOKEN, f"The token's type {header.get('typ')!r} is no access token."
            )
        if not isinstance(kid, str):
            raise Problem(INVALID_TOKEN, f"The token of {who} has no key id (kid).")
        key = await self._key_for(entry, kid)
        if key is None:
            keyset = self._sets.get(entry.issuer)
            if keyset is not None and not keyset.fetched:
                # Why is for the administrator (the log): it may name the allow-list.
                raise Problem(
                    INVALID_TOKEN,
                    f"The gateway could not fetch the keys of {who} to verify the token; "
                    "its administrator finds why in the gateway's log.",
                )
            raise Problem(
                INVALID_TOKEN,
                f"The token was signed with key {kid!r}, which {who} does not publish "
                f"(its keys were fetched from {entry.jwks_url}).",
            )
        _check_key(key, alg, kid)
        claims = self._decode(token, key, alg, entry)
        issued, expires = float(claims["iat"]), float(claims["exp"])
        if expires - issued > entry.max_lifetime + self.leeway:
            raise Problem(
                INVALID_TOKEN,
                f"The token lives {expires - issued:.0f} s; tokens of {who} may live "
                f"{entry.max_lifetime} s at most.",
            )
        verified = _Verified(entry, kid, expires)
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified.clear()
        self._verified[token] = verified
        return verified

    def _decode(self, token: str, key: _Key, alg: str, entry: IssuerEntry) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.jwk.key,
                algorithms=[alg],
                audience=entry.audience,
                issuer=entry.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidAudienceError:
            raise Problem(
                INVALID_TOKEN,
                f"The token is not meant for this gateway: its audience must be "
                f"{entry.audience!r}.",
            ) from None
        except jwt.ExpiredSignatureError:
            raise Problem(
                INVALID_TOKEN, f"The token of issuer {entry.issuer!r} has expired."
            ) from None
        except jwt.ImmatureSignatureError:
            raise Problem(INVALID_TOKEN, "The token is not valid yet (nbf or iat).") from None
        except jwt.PyJWTError as e:
            raise Problem(INVALID_TOKEN, f"The token was rejected: {e}.") from None
        try:
            float(claims["iat"]), float(claims["exp"])
        except (TypeError, ValueError):
            raise Problem(INVALID_TOKEN, "The token's iat and exp must be numbers.") from None
        return claims


def _check_key(key: _Key, alg: str, kid: str) -> None:
    """The key must be of the algorithm's type, and of the algorithm it names (if any)."""
    if key.jwk.key_type != _KEY_TYPES[alg]:
        raise Problem(
            INVALID_TOKEN, f"Key {kid!r} is a {key.jwk.key_type} key; {alg} needs another."
        )
    if key.alg and key.alg != alg and not (key.alg in ED25519_ALGS and alg in ED25519_ALGS):
        raise Problem(INVALID_TOKEN, f"Key {kid!r} signs with {key.alg!r}, not {alg!r}.")
