"""What a hostile caller can send, byte for byte on a socket, and what it gets: a clear
refusal, never a right it does not hold, never an exchange missing from the audit log,
never memory it can make the gateway spend.

Requests here are written as raw bytes (`send`), since a client library would clean
exactly the bytes that matter (a non-UTF-8 header value, a `#` in the path, a body
labelled gzip that is not).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import socket
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.audit.verify import verify_store
from gateway.config import versions as policy_state
from gateway.core.settings import Settings
from gateway.edge.reload import reload_config
from gateway.store.models import AuditRecord
from tests.conftest import PROVINCE_ID, Harness

PROBLEM = "urn:lgsp:problem:"
ECHO = f"/r1/{PROVINCE_ID}/echo/v1"
SMALL = f"/r1/{PROVINCE_ID}/small/v1"  # max_request_bytes 100
CHECKED = f"/r1/{PROVINCE_ID}/echo-checked/v1"  # validated as a national lookup
TIMEOUT = 1.0  # the header and body timeouts of this module's gateway


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"request_header_timeout_seconds": TIMEOUT, "request_body_timeout_seconds": TIMEOUT}
    )


# -- raw HTTP ---------------------------------------------------------------------------------


def send_blocking(host: str, port: int, data: bytes, *, wait: float = 10.0) -> tuple[int, bytes]:
    """Write `data`, read until the server closes; (status, body)."""
    with socket.create_connection((host, port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


async def send(gateway: Harness, data: bytes) -> tuple[int, dict[str, Any]]:
    status, body = await asyncio.to_thread(send_blocking, gateway.host, gateway.port, data)
    return status, (orjson.loads(body) if body.startswith(b"{") else {"raw": body})


def request(
    target: bytes,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    body: bytes = b"",
    *,
    method: bytes = b"GET",
    length: bool = True,
) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: gw", b"Connection: close"]
    if length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines += [k + b": " + v for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def auth(gateway: Harness) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Bearer " + (await gateway.token()).encode())


async def records(gateway: Harness) -> int:
    """Exchanges in the store, one each (a two-phase exchange's intent not counted)."""
    return len(await gateway.audit())


async def newest(gateway: Harness) -> AuditRecord:
    async with gateway.state.sessions() as s:
        row = await s.scalar(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(1))
    assert row is not None
    return row


# -- 1. whatever bytes a caller sends, the exchange is audited --------------------------------


@pytest.mark.parametrize(
    ("header", "column"),
    [
        (b"X-Case-Number", "case_number"),
        (b"X-Officer-Id", "officer_id"),
        (b"X-Procedure-Code", "procedure_code"),
        (b"X-Anything", None),
    ],
)
async def test_header_bytes_that_are_not_utf8_are_refused_and_recorded_escaped(
    gateway: Harness, header: bytes, column: str | None
) -> None:
    before = await records(gateway)
    # Unauthenticated on purpose: this must be a 400 naming the header, not a 503.
    status, problem = await send(gateway, request(ECHO.encode() + b"/x", [(header, b"\xff\xfe")]))
    assert status == 400, problem
    assert problem["type"] == PROBLEM + "invalid-header"
    assert problem["header"] == header.decode()
    assert "not UTF-8" in problem["detail"]
    assert await records(gateway) == before + 1
    record = await newest(gateway)
    assert record.request_id == problem["request_id"]
    assert record.error_type == "invalid-header"
    if column is not None:
        assert getattr(record, column) == "\\xff\\xfe"  # what was sent, escaped


async def test_a_request_the_http_parser_refuses_is_problem_json_and_audited(
    gateway: Harness,
) -> None:
    for raw in (
        request(ECHO.encode() + b"/caf\xc3\xa9"),  # raw UTF-8 in the target
        request(ECHO.encode() + b"/x", [(b"X-Case-Number", b"a\x00b")]),  # NUL in a header
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # TLS to the HTTP port
    ):
        before = await records(gateway)
        status, problem = await send(gateway, raw)
        assert status == 400, problem
        assert problem["type"] == PROBLEM + "malformed-request"
        assert problem["request_id"]
        assert await records(gateway) == before + 1
        record = await newest(gateway)
        assert (record.request_id, record.error_type) == (
            problem["request_id"],
            "malformed-request",
        )
        assert record.remote_addr == "127.0.0.1"


_NO_LINE_BREAK = st.binary(min_size=0, max_size=48).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
)
_HEADERS = [
    b"X-Case-Number",
    b"X-Officer-Id",
    b"X-Procedure-Code",
    b"X-Request-Id",
    b"traceparent",
    b"tracestate",
    b"Authorization",
    b"X-Api-Key",
    b"Content-Type",
    b"Content-Encoding",
    b"User-Agent",
]


async def test_whatever_bytes_go_into_the_headers_and_path_every_exchange_is_stored(
    gateway: Harness,
) -> None:
    """A property test: arbitrary bytes in every header the audit event keeps or the
    gateway reads, and in the path; one request per connection; afterwards the store holds
    exactly one record per request sent, and the chain verifies."""
    token = (await auth(gateway))[1]
    before = await records(gateway)
    sent = 0

    @hypothesis_settings(
        max_examples=120,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        header=st.sampled_from(_HEADERS),
        value=_NO_LINE_BREAK,
        path=_NO_LINE_BREAK.map(lambda b: b.replace(b" ", b"").replace(b"?", b"")),
        authenticated=st.booleans(),
        method=st.sampled_from([b"GET", b"POST", b"PUT"]),
    )
    def one(header: bytes, value: bytes, path: bytes, authenticated: bool, method: bytes) -> None:
        nonlocal sent
        headers = [(header, value)]
        if authenticated and header != b"Authorization":
            headers.append((b"Authorization", token))
        status, _ = send_blocking(
            gateway.host, gateway.port, request(ECHO.encode() + b"/" + path, headers, method=method)
        )
        sent += 1
        assert status in (200, 400, 401, 404, 405, 413, 415), status

    await asyncio.to_thread(one)
    assert sent >= 100
    assert await records(gateway) - before == sent
    report = await verify_store(gateway.state.sessions)
    assert report.ok, report


# -- 2. the path checked is the path forwarded ------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/files/secret.txt#.pdf",  # the upstream URL would end at '#'
        b"/open/..;/secret",  # Tomcat and Jetty read '..;' as '..'
        b"/open;jsessionid=1/x",
        b"/open/..%3B/secret",
        b"/a|b",
        b"/a[b]",
        b"/x?q=1#frag",
    ],
)
async def test_a_path_the_upstream_would_read_differently_is_refused(
    gateway: Harness, target: bytes
) -> None:
    status, problem = await send(gateway, request(ECHO.encode() + target, [await auth(gateway)]))
    assert status == 400, problem
    assert problem["type"] == PROBLEM + "invalid-path"
    record = await newest(gateway)
    assert record.request_id == problem["request_id"]
    assert record.upstream_status is None  # never forwarded


async def test_every_allowed_path_character_reaches_the_provider_as_sent(gateway: Harness) -> None:
    path = b"/ok/A-z_0.9~!$&'()*+,=:@/%41%20x"
    status, echoed = await send(
        gateway, request(ECHO.encode() + path + b"?a=[1]&b=%23", [await auth(gateway)])
    )
    assert status == 200, echoed
    assert echoed["path"] == "/_sim/echo" + path.decode()
    assert echoed["query"] == "a=[1]&b=%23"


# -- 3. limits apply to decoded bytes ---------------------------------------------------------


async def test_a_gzip_bomb_is_refused_after_the_limit_not_after_inflating(gateway: Harness) -> None:
    bomb = gzip.compress(b"\0" * (60 * 1024 * 1024))  # ~60 KB on the wire
    headers = [await auth(gateway), (b"Content-Encoding", b"gzip")]
    status, problem = await send(
        gateway, request(SMALL.encode() + b"/x", headers, bomb, method=b"POST")
    )
    assert status == 413, problem
    assert problem["type"] == PROBLEM + "payload-too-large"
    assert "after decoding" in problem["detail"]
    assert (await newest(gateway)).error_type == "payload-too-large"


async def test_a_compressed_body_within_the_limit_is_forwarded_as_it_came(gateway: Harness) -> None:
    text = b'{"greeting": "xin ch\xc3\xa0o"}'
    headers = [
        await auth(gateway),
        (b"Content-Encoding", b"gzip"),
        (b"Content-Type", b"application/json"),
    ]
    status, echoed = await send(
        gateway, request(ECHO.encode() + b"/x", headers, gzip.compress(text), method=b"POST")
    )
    assert status == 200, echoed
    # A pass-through service forwards the bytes and their label; the provider inflates.
    assert echoed["headers"]["Content-Encoding"] == "gzip"
    record = await newest(gateway)
    assert record.request_bytes == len(text)  # counted decoded


async def test_a_compressed_message_is_decoded_for_a_service_that_reads_it(
    gateway: Harness,
) -> None:
    message = orjson.dumps({"SoDinhDanh": "001099012345"})
    for coding, body in (
        (b"gzip", gzip.compress(message)),
        (b"deflate", zlib.compress(message)),
        (b"deflate", zlib.compress(message)[2:-4]),  # raw deflate, as some clients send it
    ):
        headers = [
            await auth(gateway),
            (b"Content-Encoding", coding),
            (b"Content-Type", b"application/json"),
        ]
        status, answer = await send(
            gateway, request(CHECKED.encode() + b"/x", headers, body, method=b"POST")
        )
        # The echo's answer is no national lookup answer: 502 from the response schema,
        # which means the request was decoded and passed its own schema.
        assert status == 502, answer
        assert answer["type"] == PROBLEM + "upstream-invalid-message"


@pytest.mark.parametrize(
    ("coding", "body", "status", "slug"),
    [
        (b"deflate", b"hello", 400, "invalid-content-encoding"),
        (b"gzip", gzip.compress(b"{}", mtime=0)[:-6], 400, "invalid-content-encoding"),
        (b"br", b"\x8b\x00\x80", 415, "unsupported-content-encoding"),
        (
            b"gzip, gzip",
            gzip.compress(gzip.compress(b"{}", mtime=0), mtime=0),
            415,
            "unsupported-content-encoding",
        ),
    ],
    ids=["deflate-plain", "gzip-truncated", "br", "gzip-twice"],
)
async def test_a_body_that_is_not_what_its_coding_says_is_refused(
    gateway: Harness, coding: bytes, body: bytes, status: int, slug: str
) -> None:
    headers = [await auth(gateway), (b"Content-Encoding", coding)]
    got, problem = await send(
        gateway, request(ECHO.encode() + b"/x", headers, body, method=b"POST")
    )
    assert (got, problem["type"]) == (status, PROBLEM + slug), problem


# -- 8. hardening -----------------------------------------------------------------------------


async def test_two_authorization_headers_are_refused(gateway: Harness) -> None:
    token = await auth(gateway)
    status, problem = await send(gateway, request(ECHO.encode() + b"/x", [token, token]))
    assert status == 400, problem
    assert (problem["type"], problem["header"]) == (PROBLEM + "invalid-header", "Authorization")


async def test_method_overrides_and_underscore_twins_do_not_reach_the_provider(
    gateway: Harness,
) -> None:
    headers = [
        await auth(gateway),
        (b"X-HTTP-Method-Override", b"DELETE"),
        (b"X-Method-Override", b"DELETE"),
        (b"X_Client_Id", b"quantri"),
        (b"X_Officer_Id", b"boss"),
    ]
    status, echoed = await send(gateway, request(ECHO.encode() + b"/x", headers))
    assert status == 200, echoed
    seen = {k.lower() for k in echoed["headers"]}
    assert not seen & {"x-http-method-override", "x-method-override", "x_client_id", "x_officer_id"}
    assert echoed["headers"]["X-Client-Id"] == "motcua"


async def test_two_traceparent_headers_start_a_new_trace(gateway: Harness) -> None:
    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    other = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [await auth(gateway), (b"traceparent", parent), (b"traceparent", other)]
    status, echoed = await send(gateway, request(ECHO.encode() + b"/x", headers))
    assert status == 200, echoed
    forwarded = echoed["headers"]["traceparent"]
    assert parent.decode()[3:35] not in forwarded and other.decode()[3:35] not in forwarded


async def test_slow_headers_are_cut_off_and_slow_bodies_answered_408(gateway: Harness) -> None:
    loop = asyncio.get_running_loop()
    # Slowloris: a request head that never ends.
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(b"GET " + ECHO.encode() + b"/x HTTP/1.1\r\nHost: gw\r\n")
    started = loop.time()
    data = await asyncio.wait_for(reader.read(), TIMEOUT * 10)
    assert loop.time() - started < TIMEOUT * 5
    assert data.startswith(b"HTTP/1.1 408"), data
    writer.close()
    # A body that never arrives.
    token = await auth(gateway)  # (a token request is an audit event of its own)
    before = await records(gateway)
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(
        b"POST "
        + ECHO.encode()
        + b"/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n"
        + token[0]
        + b": "
        + token[1]
        + b"\r\n\r\n"
        + b"x" * 10
    )
    data = await asyncio.wait_for(reader.read(), TIMEOUT * 10)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"request-timeout" in data
    writer.close()
    assert await records(gateway) == before + 1
    assert (await newest(gateway)).error_type == "request-timeout"


async def test_a_key_given_twice_in_a_validated_message_is_refused(gateway: Harness) -> None:
    body = b'{"SoDinhDanh": "001099012345", "SoDinhDanh": "079099000001"}'
    headers = [await auth(gateway), (b"Content-Type", b"application/json")]
    status, problem = await send(
        gateway, request(CHECKED.encode() + b"/x", headers, body, method=b"POST")
    )
    assert status == 400, problem
    assert problem["type"] == PROBLEM + "invalid-message"
    assert "'SoDinhDanh' twice" in problem["detail"]
    assert (await newest(gateway)).upstream_status is None  # never forwarded


_XSD_HEAD = '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
HOSTILE_XSDS = {
    "external entity": (
        '<?xml version="1.0"?><!DOCTYPE xs:schema [<!ENTITY e SYSTEM "file:///etc/hostname">]>'
        + _XSD_HEAD
        + "<xs:annotation><xs:documentation>&e;</xs:documentation></xs:annotation>"
        '<xs:element name="a" type="xs:string"/></xs:schema>',
        "DTD",
    ),
    "a file of the gateway host": (
        _XSD_HEAD + '<xs:include schemaLocation="/etc/passwd"/></xs:schema>',
        "external schema documents",
    ),
    "a URL": (
        _XSD_HEAD + '<xs:import namespace="urn:x" schemaLocation="http://169.254.169.254/x.xsd"/>'
        '<xs:element name="a" type="xs:string"/></xs:schema>',
        "external schema documents",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_XSDS, ids=list(HOSTILE_XSDS))
async def test_an_xml_schema_reading_outside_itself_is_refused_at_registration(
    gateway: Harness, case: str
) -> None:
    from tests.test_registry import admin_credentials

    user, secret = await admin_credentials(gateway)
    xsd, words = HOSTILE_XSDS[case]
    r = await gateway.http.post(
        "/registry/subjects/hostile.xsd/versions",
        json={"schema": xsd, "schemaType": "XML"},
        auth=(user, secret),
    )
    assert r.status_code == 422, r.text  # Confluent's "invalid schema", not a 500
    assert r.json()["error_code"] == 42201
    assert words in r.json()["message"]


# -- 5. what a caller put in the log is inert when an auditor reads it ------------------------


async def test_formulas_a_caller_sent_are_neutralised_in_the_csv_export(gateway: Harness) -> None:
    from tests.test_audit_api import auditors

    auditor, _ = await auditors(gateway)
    formulas = {"X-Officer-Id": '=HYPERLINK("http://x")', "X-Procedure-Code": "+1+2"}
    for name, value in formulas.items():  # unauthenticated: recorded as claimed, refused
        status, _ = await send(
            gateway, request(ECHO.encode() + b"/x", [(name.encode(), value.encode())])
        )
        assert status in (400, 401)
    since = {"since": "2020-01-01T00:00:00Z"}
    r = await gateway.http.get(
        "/audit/v1/export", params={"format": "csv", **since}, headers=auditor
    )
    assert r.status_code == 200, r.text
    cells = [c for row in csv.reader(io.StringIO(r.text)) for c in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert "'+1+2" in cells and '\'=HYPERLINK("http://x")' in cells
    jsonl = await gateway.http.get(
        "/audit/v1/export", params={"format": "jsonl", **since}, headers=auditor
    )
    values = [orjson.loads(line) for line in jsonl.text.splitlines()]
    assert {v["procedure_code"] for v in values} >= {"+1+2"}  # JSON keeps the raw value


async def test_an_officer_id_shaped_like_a_personal_id_is_masked(gateway: Harness) -> None:
    from tests.test_audit_api import auditors

    auditor, may_unmask = await auditors(gateway)
    headers = [
        await auth(gateway),
        (b"X-Officer-Id", b"001099012345"),
        (b"X-Request-Id", b"079099000001"),
    ]
    status, _ = await send(gateway, request(ECHO.encode() + b"/x", headers))
    assert status == 200
    r = await gateway.http.get("/audit/v1/exchanges", params={"client": "motcua"}, headers=auditor)
    [item] = [i for i in r.json()["items"] if i["path"].startswith(ECHO)]
    assert item["officer_id"] == "001*******45"
    assert item["request_id"] == "079*******01"
    r = await gateway.http.get(
        "/audit/v1/exchanges", params={"client": "motcua", "unmask": "true"}, headers=may_unmask
    )
    [item] = [i for i in r.json()["items"] if i["path"].startswith(ECHO)]
    assert item["officer_id"] == "001099012345"


# -- 6. an upstream may read only the secrets declared for it ---------------------------------


async def test_an_upstream_cannot_have_a_setting_of_the_gateway_sent_as_its_secret(
    gateway: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator points an upstream's token URL at a listener of theirs and names a
    variable of the gateway (the database URL, the key passphrase) as its secret: the
    gateway refuses to read it, and the listener gets nothing."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from tests.conftest import add_to_policy

    seen: list[str] = []

    async def listener(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"access_token": "x", "expires_in": 60})

    app = web.Application()
    app.router.add_post("/token", listener)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    monkeypatch.setenv("LGSP_KEY_PASSPHRASE", "the-passphrase")
    monkeypatch.setenv("SOME_OTHER_VARIABLE", "also-private")
    try:
        for variable in ("LGSP_KEY_PASSPHRASE", "LGSP_DATABASE_URL", "SOME_OTHER_VARIABLE"):
            name = f"thief-{variable.lower().replace('_', '-')}"
            await add_to_policy(
                gateway,
                [
                    {
                        "provider": PROVINCE_ID,
                        "code": name,
                        "version": "v1",
                        "name": name,
                        "upstream": name,
                        "access": [{"client": "motcua"}],
                    }
                ],
                [
                    {
                        "name": name,
                        "base_url": gateway.simulator_url,
                        "auth": {
                            "type": "oauth2_client_credentials",
                            "token_url": str(server.make_url("/token")),
                            "client_id": "x",
                            "client_secret_env": variable,
                        },
                    }
                ],
            )
            r = await gateway.http.get(
                f"/r1/{PROVINCE_ID}/{name}/v1/x",
                headers={"Authorization": f"Bearer {await gateway.token()}"},
            )
            assert r.status_code == 502, r.text
            assert r.json()["type"] == PROBLEM + "upstream-authentication-failed"
            assert variable in r.json()["detail"]
        assert seen == []
    finally:
        await server.close()


async def test_a_cached_upstream_token_is_dropped_when_the_upstream_changes(
    gateway: Harness,
) -> None:
    from tests.test_exchange import ACCOUNT, BY_NUMBER

    auth = {"Authorization": f"Bearer {await gateway.token()}", **ACCOUNT}
    body = {"SoDinhDanh": "001099012345"}
    assert (await gateway.http.post(BY_NUMBER, json=body, headers=auth)).status_code == 200

    def retarget(doc: dict[str, Any]) -> None:
        [ndxp] = [u for u in doc["upstreams"] if u["name"] == "ndxp"]
        ndxp["auth"]["client_id"] = "someone-else"  # the national platform knows no such id

    async with gateway.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, retarget, actor="test", source="test")
    await reload_config(gateway.state)
    # The token got with the old credentials is not used for the new ones.
    r = await gateway.http.post(BY_NUMBER, json=body, headers=auth)
    assert r.status_code == 502, r.text
    assert r.json()["type"] == PROBLEM + "upstream-authentication-failed"
