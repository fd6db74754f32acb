"""Access tokens: short-lived JWTs the gateway signs for clients, and their verification.

Tokens are JWT access tokens as RFC 9068 profiles them: typed `at+jwt`, with `iss`, `aud`,
`sub`, `client_id`, `iat`, `exp` and `jti`. Verification pins everything an attacker could
otherwise choose: the type, the algorithm from an allow-list (never from the token), the
key from our own key set by `kid`, the issuer and audience, and a lifetime no longer than
the gateway issues (a forged or leaked signing key cannot mint a token for a year). A
verified token is cached by its exact text until it expires, so a client's repeated calls
cost one dictionary lookup.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.core.problems import INVALID_TOKEN, Problem
from gateway.identity.directory import ClientEntry
from gateway.identity.keys import KeyStore

REQUIRED_CLAIMS = ["iss", "aud", "sub", "client_id", "exp", "nbf", "iat", "jti"]
JWT_TYPE = "at+jwt"  # RFC 9068 §2.1: the JWS "typ" of an access token
_CACHE_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class TokenClaims:
    client: str
    credential_id: int
    expires_at: float
    # RFC 8705 §3.1: `cnf.x5t#S256`, the thumbprint of the client certificate the token
    # is bound to; None for a token bound to none.
    x5t_s256: str | None = None


class TokenService:
    def __init__(
        self,
        keys: KeyStore,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        algorithms: list[str],
        leeway_seconds: int,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl_seconds
        self.algorithms = list(algorithms)
        self.leeway = leeway_seconds
        self._verified: dict[str, TokenClaims] = {}

    def issue(
        self, client: ClientEntry, credential_id: int, *, x5t_s256: str | None = None
    ) -> tuple[str, int]:
        """A signed token for the client; with `x5t_s256`, bound to that client
        certificate (RFC 8705 `cnf`), so it is refused from any other connection."""
        now = int(time.time())
        key = self.keys.active
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.code,
            "client_id": client.code,
            "agency": client.agency_code,
            "cred": credential_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(12),
        }
        if x5t_s256 is not None:
            claims["cnf"] = {"x5t#S256": x5t_s256}
        if client.roles:
            # For the caller's tooling to read; the gateway checks roles against its current
            # tables on every admin call, so taking a role away needs no token to expire.
            claims["roles"] = sorted(client.roles)
        alg = next((a for a in self.algorithms if a in key.algs), key.alg)
        token = jwt.encode(
            claims, key.private, algorithm=alg, headers={"kid": key.kid, "typ": JWT_TYPE}
        )
        return token, self.ttl

    def verify(self, token: str) -> TokenClaims:
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at + self.leeway > now:
                return cached
            del self._verified[token]
        claims = self._decode(token)
        cnf = claims.get("cnf")
        bound = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
        if cnf is not None and not isinstance(bound, str):
            # A confirmation this gateway cannot check is not ignored (RFC 7800 §3.1).
            raise Problem(INVALID_TOKEN, "The token's cnf claim names no x5t#S256 thumbprint.")
        result = TokenClaims(
            str(claims["sub"]), int(claims.get("cred", 0)), float(claims["exp"]), bound
        )
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified.clear()
        self._verified[token] = result
        return result

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Problem(INVALID_TOKEN, f"The bearer token is not a JWT: {e}.") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Problem(
                INVALID_TOKEN,
                f"Tokens signed with {alg!r} are not accepted; allowed: {self.algorithms}.",
            )
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Problem(INVALID_TOKEN, "The token has no key id (kid).")
        pair = self.keys.get(kid)
        if pair is None and self.keys.reload_if_stale():
            pair = self.keys.get(kid)
        if pair is None:
            raise Problem(INVALID_TOKEN, f"The token was signed with an unknown key {kid!r}.")
        if alg not in pair.algs:
            raise Problem(INVALID_TOKEN, f"Key {kid!r} does not sign with {alg!r}.")
        # RFC 9068 §4: a JWT the gateway signed for another purpose is no access token.
        if str(header.get("typ", "")).lower() not in (JWT_TYPE, "application/" + JWT_TYPE):
            raise Problem(
                INVALID_TOKEN, f"The bearer token is not an access token (typ {JWT_TYPE})."
            )
        try:
            decoded: dict[str, Any] = jwt.decode(
                token,
                pair.public,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Problem(
                INVALID_TOKEN, "The access token has expired; request a new one."
            ) from None
        except jwt.ImmatureSignatureError:
            raise Problem(INVALID_TOKEN, "The access token is not valid yet (nbf).") from None
        except jwt.PyJWTError as e:
            raise Problem(INVALID_TOKEN, f"The access token was rejected: {e}.") from None
        self._check_lifetime(decoded)
        return decoded

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """No token lives longer than the gateway issues them for: what a signing key that
        leaked could otherwise mint. (An `iat` in the future PyJWT refuses itself.)"""
        try:
            issued, expires = float(claims["iat"]), float(claims["exp"])
        except (TypeError, ValueError):
            raise Problem(INVALID_TOKEN, "The token's iat and exp must be numbers.") from None
        if expires - issued > self.ttl + self.leeway:
            raise Problem(
                INVALID_TOKEN,
                f"The token lives {expires - issued:.0f} s; this gateway issues tokens for "
                f"{self.ttl} s at most.",
            )
