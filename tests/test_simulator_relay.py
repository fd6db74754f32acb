"""The simulator's routing between provinces (``simulator.relay``): what it checks, what it
passes on, and the token it signs for the receiving province. The whole path, through
two gateways, is tests/test_two_provinces.py."""

from collections.abc import AsyncIterator

import jwt
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from simulator.app import create_app
from simulator.national_issuer import ISSUER, NATIONAL_ISSUER
from simulator.relay import RELAY

CLIENT_ID = "000.00.00.H49"
CLIENT_SECRET = "bi-mat-tinh"
PROVINCE_B = "000.00.00.H48"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def province_b() -> AsyncIterator[tuple[TestServer, list[web.Request]]]:
    """A stand-in for province B's gateway: answers what it was sent."""
    seen: list[web.Request] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request)
        body = {
            "path": request.raw_path,
            "method": request.method,
            "body": (await request.read()).decode(),
            "headers": {str(k): v for k, v in request.headers.items()},
        }
        return web.json_response(body, status=207, headers={"X-Request-Id": "from-b"})

    app = web.Application()
    app.router.add_route("*", "/r1/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app({CLIENT_ID: CLIENT_SECRET}))) as c:
        yield c


async def _token(client: Client) -> str:
    r = await client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert r.status == 200
    return str((await r.json())["access_token"])


async def test_a_call_is_relayed_with_the_platforms_token_for_the_province(
    client: Client, province_b: tuple[TestServer, list[web.Request]]
) -> None:
    server, seen = province_b
    r = await client.post(
        "/_sim/ndxp/provinces",
        data=orjson.dumps(
            {
                "province": PROVINCE_B,
                "gateway": str(server.make_url("")),
                "audience": "urn:lgsp:000.00.00.H48",
            }
        ),
    )
    assert r.status == 200, await r.text()
    headers = {
        "Authorization": f"Bearer {await _token(client)}",
        "X-Request-Id": "relay-1",
        "X-Officer-Id": "CB-1",
        "X-Client-Id": "motcua",
        "X-Client-Agency": "000.00.31.H49",
        "Content-Type": "application/json",
        "Cookie": "not=passed",
    }
    r = await client.post(
        f"/ndxp/{PROVINCE_B}/r1/000.00.12.H48/ho-tich/v1/tra-cuu?x=1",
        data=b'{"a": 1}',
        headers=headers,
    )
    assert r.status == 207 and r.headers["X-Request-Id"] == "from-b"
    got = await r.json()
    assert got["path"] == "/r1/000.00.12.H48/ho-tich/v1/tra-cuu?x=1"
    assert got["body"] == '{"a": 1}'
    sent = {k.lower(): v for k, v in got["headers"].items()}
    assert sent["x-request-id"] == "relay-1" and sent["x-officer-id"] == "CB-1"
    assert "cookie" not in sent and "x-client-id" not in sent
    scheme, _, token = sent["authorization"].partition(" ")
    assert scheme == "Bearer"
    issuer = client.app[NATIONAL_ISSUER]
    [(_, key)] = issuer.keys
    claims = jwt.decode(
        token, key.public_key(), algorithms=["RS256"], audience="urn:lgsp:000.00.00.H48"
    )
    assert claims["iss"] == ISSUER
    assert claims["act"] == {"sub": "motcua", "agency": "000.00.31.H49"}
    assert client.app[RELAY].relayed == [
        {
            "request_id": "relay-1",
            "province": PROVINCE_B,
            "path": "/r1/000.00.12.H48/ho-tich/v1/tra-cuu",
            "status": 207,
        }
    ]
    assert len(seen) == 1


async def test_the_relay_refuses_unauthenticated_callers_and_unknown_provinces(
    client: Client,
) -> None:
    r = await client.get(f"/ndxp/{PROVINCE_B}/r1/a/b/v1/c")
    assert r.status == 401 and "WWW-Authenticate" in r.headers
    bearer = {"Authorization": f"Bearer {await _token(client)}"}
    r = await client.get(f"/ndxp/{PROVINCE_B}/r1/a/b/v1/c", headers=bearer)
    assert r.status == 404 and PROVINCE_B in (await r.json())["thongBao"]
    r = await client.post("/_sim/ndxp/provinces", data=b'{"province": "x"}')
    assert r.status == 400
    r = await client.post(
        "/_sim/ndxp/provinces",
        data=orjson.dumps({"province": "x", "gateway": "ftp://x", "audience": "a"}),
    )
    assert r.status == 400
    client.app[RELAY].register(PROVINCE_B, "http://127.0.0.1:9", "a")  # nobody listens
    r = await client.get(f"/ndxp/{PROVINCE_B}/r1/a/b/v1/c", headers=bearer)
    assert r.status == 502
