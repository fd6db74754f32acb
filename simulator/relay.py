"""The national platform's routing between provinces: a province's gateway calls a
service another province provides, through the NDXP.

``ANY /ndxp/{province}/r1/{tail}``: the caller (a provincial gateway) authenticates with
the platform's own token (``POST /oauth2/token``, as for any national service); the
platform forwards the call to the gateway registered for ``{province}`` as
``/r1/{tail}``, with a token **it** signs for that gateway's audience
(simulator/national_issuer.py), which the receiving gateway verifies as a trusted
issuer: no secret is shared between the provinces. The body goes on byte for byte, with
the request id and the accountability headers (officer, procedure, case) the calling
gateway sent, so both gateways' audit records carry the same request id and request
digest. The token names who called in an RFC 8693 ``act`` claim (the calling system and
its agency, as the calling gateway forwarded them). The answer comes back as the
receiving gateway gave it.

``app[RELAY].register(province, gateway_url, audience)`` (or ``POST /_sim/ndxp/provinces``
with ``{"province", "gateway", "audience"}``) registers a province's gateway;
``app[RELAY].relayed`` lists what was relayed (request id, province, path, status).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from simulator.national_issuer import NATIONAL_ISSUER

RELAY_PATH = "/ndxp/{province}/r1/{tail:.*}"
REGISTER_PATH = "/_sim/ndxp/provinces"

# What the platform passes on of the calling gateway's request, besides the body.
_PASSED_ON = (
    "Content-Type",
    "Accept",
    "X-Request-Id",
    "X-Officer-Id",
    "X-Procedure-Code",
    "X-Case-Number",
    "traceparent",
)
_ANSWER_HEADERS = ("Content-Type", "X-Request-Id", "Retry-After")


@dataclass(frozen=True)
class Province:
    """A province's gateway as the platform knows it."""

    gateway: str  # its base URL
    audience: str  # what its trusted-issuer entry expects as `aud`


@dataclass
class Relay:
    """The provinces the platform routes to, and what it relayed."""

    provinces: dict[str, Province] = field(default_factory=dict)
    relayed: list[dict[str, Any]] = field(default_factory=list)

    def register(self, province: str, gateway: str, audience: str) -> None:
        self.provinces[province] = Province(gateway.rstrip("/"), audience)


RELAY: web.AppKey[Relay] = web.AppKey("relay", Relay)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"maLoi": str(status), "thongBao": message}, status=status)


def _relay(check: Callable[[web.Request], bool]) -> Callable[..., Any]:
    async def relay(request: web.Request) -> web.Response:
        if not check(request):
            return web.json_response(
                {"maLoi": "100", "thongBao": "Chưa xác thực với Nền tảng NDXP"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        state = request.app[RELAY]
        code = request.match_info["province"]
        province = state.provinces.get(code)
        if province is None:
            return _error(404, f"Không có tỉnh {code} trên Nền tảng NDXP")
        path, _, query = request.raw_path.partition("?")
        target = province.gateway + "/r1/" + path.split("/r1/", 1)[1]
        if query:
            target += "?" + query
        act = {
            "sub": request.headers.get("X-Client-Id", ""),
            "agency": request.headers.get("X-Client-Agency", ""),
        }
        token = request.app[NATIONAL_ISSUER].mint(province.audience, claims={"act": act})
        headers = {k: v for k in _PASSED_ON if (v := request.headers.get(k)) is not None}
        headers["Authorization"] = f"Bearer {token}"
        body = await request.read()
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
                session.request(
                    request.method,
                    URL(target, encoded=True),
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                ) as resp,
            ):
                answer = await resp.read()
                status = resp.status
                answer_headers = {
                    k: v for k in _ANSWER_HEADERS if (v := resp.headers.get(k)) is not None
                }
        except (aiohttp.ClientError, TimeoutError) as e:
            return _error(502, f"Không gọi được cổng của tỉnh {code}: {type(e).__name__}")
        state.relayed.append(
            {
                "request_id": headers.get("X-Request-Id"),
                "province": code,
                "path": "/r1/" + path.split("/r1/", 1)[1],
                "status": status,
            }
        )
        return web.Response(status=status, body=answer, headers=answer_headers)

    return relay


async def _register(request: web.Request) -> web.Response:
    try:
        asked = orjson.loads(await request.read())
        province, gateway, audience = asked["province"], asked["gateway"], asked["audience"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _error(400, 'send {"province", "gateway", "audience"} as JSON')
    if not str(gateway).startswith(("http://", "https://")):
        return _error(400, "gateway must be an http(s) URL")
    request.app[RELAY].register(str(province), str(gateway), str(audience))
    return web.json_response({"province": province, "gateway": gateway, "audience": audience})


def setup(app: web.Application, check: Callable[[web.Request], bool]) -> None:
    """Add the platform's routing between provinces; `check` authenticates the caller."""
    app[RELAY] = Relay()
    app.router.add_route("*", RELAY_PATH, _relay(check))
    app.router.add_post(REGISTER_PATH, _register)
