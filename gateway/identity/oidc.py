"""Signing people in through the province's OpenID Connect provider: the authorization
code flow with PKCE (RFC 7636, S256), a `state` bound to the browser and a `nonce`
bound to the ID token, the ID token's signature checked against the provider's JWKS
(PyJWT), and the provider's groups mapped to the console's roles.

The person is an account like any other (`person:<account>` in every record). An
account is matched on the provider's issuer and subject only, never on a name: the first
sign-in creates it (named after `preferred_username`, refused if a local account holds
that name), later ones find it; its roles are the mapped ones at each sign-in, a change
recorded. Such an account has no password and no TOTP secret here: it cannot sign in
with the local form. Whether the person gave a second factor is the provider's to say
(`amr` RFC 8176, or an `acr` the settings trust); unless told otherwise the console
refuses a sign-in for which it does not say so, and asks for no second factor itself.

Example:
    >>> flow = new_flow()
    >>> url = authorize_url(provider, client, flow)
    >>> claims = await redeem(http, provider, client, code, flow)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.identity.accounts import person, validate_roles
from gateway.store import changes
from gateway.store.models import Account, AdminEvent

__all__ = [
    "Client",
    "Flow",
    "Provider",
    "Refused",
    "authorize_url",
    "discover",
    "link_account",
    "new_flow",
    "redeem",
    "roles_for",
    "second_factor_asserted",
]

# Authentication methods (RFC 8176) that are, or include, a second factor.
MFA_METHODS = frozenset({"mfa", "otp", "hwk", "swk", "sms", "fpt", "face", "iris", "retina"})
# The ID token is signed with the provider's key: never "none", never a shared secret.
ALGORITHMS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
_TIMEOUT = aiohttp.ClientTimeout(total=10)


class Refused(Exception):
    """A sign-in the console does not accept; `reason` is a catalogue key's ending."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Client:
    """The console as the provider's client."""

    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: str


@dataclass(frozen=True, slots=True)
class Provider:
    """What the provider's discovery document says (OpenID Connect Discovery 1.0)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True, slots=True)
class Flow:
    """One browser's sign-in under way: kept in its cookie until the provider sends it
    back, then checked (state), sent (verifier) and matched (nonce)."""

    state: str
    nonce: str
    verifier: str

    def cookie(self) -> str:
        return f"{self.state}.{self.nonce}.{self.verifier}"

    @classmethod
    def parse(cls, value: str) -> Flow | None:
        parts = value.split(".")
        if len(parts) != 3 or not all(parts) or len(value) > 300:
            return None
        return cls(*parts)

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_flow() -> Flow:
    """Fresh random state, nonce and PKCE verifier (256 bits each).

    Example:
        >>> len(new_flow().verifier) >= 43
        True
    """
    return Flow(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(32))


async def _json(response: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
    if response.status != 200:
        raise Refused("provider", f"{what} answered {response.status}")
    try:
        body = await response.json(content_type=None)
    except ValueError as e:
        raise Refused("provider", f"{what} is not JSON") from e
    if not isinstance(body, dict):
        raise Refused("provider", f"{what} is not a JSON object")
    return body


async def discover(http: aiohttp.ClientSession, issuer: str) -> Provider:
    """The provider's endpoints, from its discovery document, which must name `issuer`.

    Example:
        >>> (await discover(http, "https://sso.tinh.gov.vn")).token_endpoint
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    async with http.get(url, timeout=_TIMEOUT) as r:
        doc = await _json(r, "the discovery document")
    if doc.get("issuer") != issuer:
        raise Refused("provider", f"the discovery document names issuer {doc.get('issuer')!r}")
    try:
        return Provider(
            issuer,
            str(doc["authorization_endpoint"]),
            str(doc["token_endpoint"]),
            str(doc["jwks_uri"]),
        )
    except KeyError as e:
        raise Refused("provider", f"the discovery document lacks {e}") from e


def authorize_url(provider: Provider, client: Client, flow: Flow) -> str:
    """Where the browser goes to sign in: the code flow, with the S256 challenge.

    Example:
        >>> authorize_url(provider, client, flow).startswith(provider.authorization_endpoint)
        True
    """
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": client.scopes,
        "state": flow.state,
        "nonce": flow.nonce,
        "code_challenge": flow.challenge,
        "code_challenge_method": "S256",
    }
    joiner = "&" if "?" in provider.authorization_endpoint else "?"
    return provider.authorization_endpoint + joiner + urlencode(query)


async def redeem(
    http: aiohttp.ClientSession, provider: Provider, client: Client, code: str, flow: Flow
) -> dict[str, Any]:
    """Exchange the code (with the PKCE verifier) for an ID token, and the token's claims
    once its signature, issuer, audience, lifetime and nonce are checked.

    Raises:
        Refused: the provider refused the code, or the ID token is not good.
    """
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": flow.verifier,
    }
    # client_secret_basic: each part form-encoded, then Basic (RFC 6749 section 2.3.1).
    pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
    headers = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    async with http.post(
        provider.token_endpoint, data=form, headers=headers, timeout=_TIMEOUT
    ) as r:
        if r.status != 200:
            raise Refused("code", f"the token endpoint answered {r.status}: {await r.text()}")
        answer = await _json(r, "the token endpoint")
    id_token = answer.get("id_token")
    if not isinstance(id_token, str):
        raise Refused("token", "no id_token in the answer")
    async with http.get(provider.jwks_uri, timeout=_TIMEOUT) as r:
        keys = jwt.PyJWKSet.from_dict(await _json(r, "the JWKS"))
    try:
        kid = jwt.get_unverified_header(id_token).get("kid")
        key = next(k for k in keys.keys if kid is None or k.key_id == kid)
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key.key,
            algorithms=ALGORITHMS,
            audience=client.client_id,
            issuer=provider.issuer,
            leeway=30,
            options={"require": ["exp", "iat", "sub", "nonce"]},
        )
    except (jwt.PyJWTError, StopIteration) as e:
        raise Refused("token", str(e) or "no key for the token") from e
    if not hmac.compare_digest(str(claims["nonce"]), flow.nonce):
        raise Refused("token", "the nonce is not the one this browser was given")
    return claims


def roles_for(groups: Any, mapping: dict[str, list[str]]) -> list[str]:
    """The roles the provider's groups map to (none: the person is refused).

    Example:
        >>> roles_for(["so-tttt", "x"], {"so-tttt": ["operator"]})
        ['operator']
    """
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        return []
    roles = {r for g in groups if isinstance(g, str) for r in mapping.get(g, [])}
    return validate_roles(sorted(roles)) if roles else []


def second_factor_asserted(claims: dict[str, Any], trusted_acr: list[str]) -> bool:
    """Does the provider say the person gave a second factor (`amr`, or a trusted `acr`)?

    Example:
        >>> second_factor_asserted({"amr": ["pwd", "otp"]}, [])
        True
    """
    amr = claims.get("amr")
    if isinstance(amr, list) and MFA_METHODS & {m for m in amr if isinstance(m, str)}:
        return True
    return claims.get("acr") in trusted_acr


def _event(name: str, action: str, **after: Any) -> AdminEvent:
    return AdminEvent(actor=person(name), action=action, target=person(name), after=after)


async def link_account(
    session: AsyncSession, issuer: str, claims: dict[str, Any], roles: list[str], address: str
) -> Account:
    """The account of the provider's subject, created on its first sign-in, its roles
    set to `roles`; the sign-in (and a creation or a change of roles) recorded.

    Raises:
        Refused: the name is not one an account may have or a local account holds it,
            or the account is disabled.
    """
    subject = f"{issuer} {claims['sub']}"
    account = await session.scalar(select(Account).where(Account.external_subject == subject))
    events = []
    if account is None:
        name = str(claims.get("preferred_username") or claims["sub"]).lower()
        if not _NAME.match(name):
            raise Refused("name", name)
        if await session.scalar(select(Account.id).where(Account.name == name)) is not None:
            raise Refused("taken", name)
        account = Account(
            name=name,
            display_name=str(claims.get("name") or name)[:255],
            roles=roles,
            password_hash="!",  # noqa: S106 - no password: argon2 never matches this
            totp_secret="",
            totp_last_step=0,
            enabled=True,
            failures=0,
            must_change_password=False,
            external_subject=subject,
        )
        session.add(account)
        await session.flush()
        events.append(_event(name, "account.create", via="oidc", issuer=issuer, roles=roles))
    elif not account.enabled:
        raise Refused("disabled", account.name)
    elif sorted(account.roles) != roles:
        events.append(_event(account.name, "account.roles", before=account.roles, roles=roles))
        account.roles = roles
    amr = claims.get("amr")
    events.append(_event(account.name, "account.sign-in", address=address, via="oidc", amr=amr))
    await changes.note(session, events)
    return account
