"""The national platform as a token issuer: it calls provincial services through a
province's gateway with tokens it signs itself.

Circular 13 has the LGSP forward requests in both directions: the national platform (and
the ministries behind it) call the province's own systems too. The platform signs its
access tokens with its own RSA key and publishes the public half as a JWKS; a province's
gateway, configured to trust this issuer, verifies them with those keys. Nothing secret
is shared between the platforms.

Endpoints (no token needed; ``/_sim/`` ones are for tests and the demo):

* ``GET /.well-known/jwks.json``: the platform's public keys, with
  ``Cache-Control: max-age=N`` (``app[NATIONAL_ISSUER].jwks_max_age``; ``None`` sends no
  cache header). ``app[NATIONAL_ISSUER].jwks_fetches`` counts the fetches;
  ``jwks_status`` set to another status than 200 makes the endpoint fail.
* ``POST /_sim/national/rotate`` (``?retire=1`` drops the older keys): a new signing key;
  answers ``{"kid": ...}``.
* ``POST /_sim/call-in`` with ``{"gateway": "http://...", "path": "/r1/...",
  "audience": "...", "method": "GET"}``: the platform mints a token for that audience
  and calls the gateway with it, as the national public service portal asking a
  province for a dossier's status; answers ``{"status", "request_id", "body"}``.

``NationalIssuer.mint`` makes tokens directly, with whatever flaw a test wants (expired,
another audience, an unknown kid, a forbidden algorithm).
"""

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://ndxp.sim.example"
"""The simulated platform's ``iss`` (a sample; the real one is the platform's URL)."""

CLIENT_ID = "dvcqg"
"""Who the platform's tokens are for: the national public service portal's system."""

JWKS_PATH = "/.well-known/jwks.json"
CALL_IN_PATH = "/_sim/call-in"
ROTATE_PATH = "/_sim/national/rotate"


def _new_key() -> tuple[str, rsa.RSAPrivateKey]:
    kid = f"ndxp-{int(time.time())}-{secrets.token_hex(3)}"
    return kid, rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class NationalIssuer:
    """The platform's signing keys (newest last) and what its JWKS endpoint has served."""

    issuer: str = ISSUER
    keys: list[tuple[str, rsa.RSAPrivateKey]] = field(default_factory=lambda: [_new_key()])
    jwks_max_age: int | None = 300
    jwks_fetches: int = 0
    jwks_status: int = 200  # another status plays a platform whose JWKS is failing

    @property
    def kid(self) -> str:
        """The kid of the key that signs now."""
        return self.keys[-1][0]

    def rotate(self, *, retire: bool = False) -> str:
        """Make a new signing key; with ``retire``, drop the others. Returns its kid."""
        key = _new_key()
        self.keys = [key] if retire else [*self.keys, key]
        return key[0]

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set (RFC 7517)."""
        out = []
        for kid, private in self.keys:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
            jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
            out.append(jwk)
        return {"keys": out}

    def mint(
        self,
        audience: str,
        *,
        lifetime: int = 300,
        issued_at: float | None = None,
        kid: str | None = None,
        alg: str = "RS256",
        issuer: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A token of the platform for ``audience``; the keyword arguments make it wrong
        on purpose (``kid`` names a key the JWKS lacks, ``alg`` "HS256" signs with a
        made-up secret, "none" leaves it unsigned)."""
        now = int(time.time() if issued_at is None else issued_at)
        body: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "sub": CLIENT_ID,
            "client_id": CLIENT_ID,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(12),
            **(claims or {}),
        }
        headers = {"kid": kid or self.kid, "typ": "at+jwt"}
        if alg == "none":
            return jwt.encode(body, "", algorithm="none", headers=headers)
        if alg.startswith("HS"):
            return jwt.encode(body, secrets.token_bytes(32), algorithm=alg, headers=headers)
        return jwt.encode(body, self.keys[-1][1], algorithm=alg, headers=headers)


NATIONAL_ISSUER: web.AppKey[NationalIssuer] = web.AppKey("national_issuer", NationalIssuer)


async def _jwks(request: web.Request) -> web.Response:
    issuer = request.app[NATIONAL_ISSUER]
    issuer.jwks_fetches += 1
    if issuer.jwks_status != 200:
        return web.json_response({"error": "unavailable"}, status=issuer.jwks_status)
    headers = {}
    if issuer.jwks_max_age is not None:
        headers["Cache-Control"] = f"public, max-age={issuer.jwks_max_age}"
    return web.Response(
        body=orjson.dumps(issuer.jwks()), content_type="application/jwk-set+json", headers=headers
    )


async def _rotate(request: web.Request) -> web.Response:
    issuer = request.app[NATIONAL_ISSUER]
    kid = issuer.rotate(retire=request.query.get("retire") == "1")
    return web.json_response({"kid": kid})


async def call_in(
    issuer: NationalIssuer, gateway: str, path: str, audience: str, method: str = "GET"
) -> dict[str, Any]:
    """Call ``gateway`` + ``path`` with a fresh token of the platform: what the national
    public service portal does to ask a province for a dossier's status."""
    token = issuer.mint(audience)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=15)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, gateway.rstrip("/") + path, headers=headers) as resp,
    ):
        raw = await resp.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", errors="replace")
        return {"status": resp.status, "request_id": resp.headers.get("X-Request-Id"), "body": body}


async def _call_in(request: web.Request) -> web.Response:
    try:
        asked = orjson.loads(await request.read())
        gateway, path, audience = asked["gateway"], asked["path"], asked["audience"]
        method = str(asked.get("method", "GET")).upper()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return web.json_response(
            {"error": 'send {"gateway", "path", "audience", "method"?} as JSON'}, status=400
        )
    if not str(gateway).startswith(("http://", "https://")) or not str(path).startswith("/"):
        return web.json_response(
            {"error": "gateway must be an http(s) URL, path absolute"}, status=400
        )
    try:
        answer = await call_in(request.app[NATIONAL_ISSUER], gateway, path, audience, method)
    except (aiohttp.ClientError, TimeoutError) as e:
        return web.json_response({"error": f"the gateway could not be called: {e}"}, status=502)
    return web.json_response(answer)


async def _publish(request: web.Request) -> web.Response:
    """The national public service portal publishes an event to a province's gateway:
    a token for its client of that gateway (client credentials), then the event posted
    to `/events/v1/{topic}` (a test and demo helper)."""
    try:
        asked = orjson.loads(await request.read())
        gateway, topic = str(asked["gateway"]).rstrip("/"), str(asked["topic"])
        client, secret, event = str(asked["client_id"]), str(asked["client_secret"]), asked["event"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        hint = 'send {"gateway", "topic", "client_id", "client_secret", "event"} as JSON'
        return web.json_response({"error": hint}, status=400)
    if not gateway.startswith(("http://", "https://")):
        return web.json_response({"error": "gateway must be an http(s) URL"}, status=400)
    timeout = aiohttp.ClientTimeout(total=15)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(
                f"{gateway}/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=aiohttp.BasicAuth(client, secret),
            ) as r:
                token = (await r.json()).get("access_token", "")
            async with session.post(
                f"{gateway}/events/v1/{topic}",
                json=event,
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                return web.json_response({"status": r.status, "body": await r.json()})
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return web.json_response({"error": f"the gateway could not be called: {e}"}, status=502)


def setup(app: web.Application, issuer: NationalIssuer | None = None) -> None:
    """Add the platform's JWKS and call-in endpoints to the simulator."""
    app[NATIONAL_ISSUER] = issuer or NationalIssuer()
    app.router.add_get(JWKS_PATH, _jwks)
    app.router.add_post(ROTATE_PATH, _rotate)
    app.router.add_post(CALL_IN_PATH, _call_in)
    app.router.add_post("/_sim/publish", _publish)
