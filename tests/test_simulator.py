"""Tests for the national platform simulator (``simulator``)."""

import asyncio
import base64
import socket
import sys
import time
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from simulator.app import LOOKUPS, TOKENS_ISSUED, _parse_args, create_app

CLIENT_ID = "so-tu-phap"
CLIENT_SECRET = "bi-mat-123"
BY_NUMBER = "/csdldc/v1/cong-dan/tra-cuu"
BY_NAME = "/csdldc/v1/cong-dan/tra-cuu-ho-ten"
ACCOUNTABILITY = {
    "MaYeuCau": "req-0001",
    "MaDVC": "1.001193",
    "MaDonVi": "000.00.31.H26",
    "MaCanBo": "CB0042",
}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = create_app({CLIENT_ID: CLIENT_SECRET, "so-y-te": "khac"})
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def get_token(client: Client) -> str:
    resp = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_auth(CLIENT_ID, CLIENT_SECRET)},
    )
    assert resp.status == 200
    token = (await resp.json())["access_token"]
    assert isinstance(token, str)
    return token


async def lookup(
    client: Client, path: str, body: Any, token: str | None, **headers: str
) -> tuple[int, dict[str, Any]]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    resp = await client.post(path, json=body, headers=headers)
    data = await resp.json()
    assert isinstance(data, dict)
    return resp.status, data


# --- OAuth2 token --------------------------------------------------------------------


async def test_token_with_basic_auth(client: Client) -> None:
    resp = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_auth(CLIENT_ID, CLIENT_SECRET)},
    )
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert len(body["access_token"]) >= 40


async def test_token_with_form_credentials(client: Client) -> None:
    resp = await client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert resp.status == 200
    assert (await resp.json())["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [(CLIENT_ID, "wrong"), ("unknown", CLIENT_SECRET), ("so-y-te", CLIENT_SECRET)],
)
async def test_token_bad_credentials(client: Client, client_id: str, secret: str) -> None:
    basic = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_auth(client_id, secret)},
    )
    assert basic.status == 401
    assert await basic.json() == {"error": "invalid_client"}
    assert basic.headers["WWW-Authenticate"].startswith("Basic")
    form = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert form.status == 401
    assert await form.json() == {"error": "invalid_client"}


async def test_token_without_credentials(client: Client) -> None:
    resp = await client.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert resp.status == 401
    assert await resp.json() == {"error": "invalid_client"}


async def test_token_wrong_grant_type(client: Client) -> None:
    resp = await client.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "x", "password": "y"},
        headers={"Authorization": basic_auth(CLIENT_ID, CLIENT_SECRET)},
    )
    assert resp.status == 400
    assert await resp.json() == {"error": "unsupported_grant_type"}


async def test_tokens_issued_counter(client: Client) -> None:
    app = client.app
    assert app is not None
    assert app[TOKENS_ISSUED] == 0
    await get_token(client)
    await get_token(client)
    await client.post("/oauth2/token", data={"grant_type": "client_credentials"})  # rejected
    assert app[TOKENS_ISSUED] == 2


# --- Lookup by number ----------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_lookup_requires_valid_token(client: Client, token: str | None) -> None:
    body = {**ACCOUNTABILITY, "SoDinhDanh": "001099012345"}
    status, data = await lookup(client, BY_NUMBER, body, token)
    assert status == 401
    assert data["MaLoi"] == "100"
    assert data["MoTaLoi"] == "Lỗi xác thực: access token không hợp lệ hoặc đã hết hạn"
    status, _ = await lookup(client, BY_NAME, body, token)
    assert status == 401


async def test_expired_token_is_rejected() -> None:
    app = create_app({CLIENT_ID: CLIENT_SECRET}, token_ttl=0)
    async with TestClient(TestServer(app)) as short_lived:
        token = await get_token(short_lived)
        body = {**ACCOUNTABILITY, "SoDinhDanh": "001099012345"}
        status, data = await lookup(short_lived, BY_NUMBER, body, token)
    assert status == 401
    assert data["MaLoi"] == "100"


async def test_found_by_personal_number(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "MaTichHop": "000123", "SoDinhDanh": "001099012345"}
    status, data = await lookup(client, BY_NUMBER, body, token)
    assert status == 200
    assert data["MaYeuCau"] == "req-0001"
    assert data["MaLoi"] == "0"
    assert data["MoTaLoi"] == "Thành công"
    citizen = data["CongDan"]
    assert citizen["SoDinhDanh"] == "001099012345"
    assert (citizen["Ho"], citizen["ChuDem"], citizen["Ten"]) == ("Nguyễn", "Văn", "An")
    assert citizen["NgayThangNamSinh"] == "1999-03-15"
    assert citizen["GioiTinh"] == "1"
    assert citizen["DanToc"] == {"Ma": "01", "Ten": "Kinh"}
    assert citizen["TonGiao"] == {"Ma": "00", "Ten": "Không"}
    assert citizen["QuocTich"] == {"Ma": "VN", "Ten": "Việt Nam"}
    for place in ("QueQuan", "NoiThuongTru", "NoiOHienTai"):
        assert set(citizen[place]) == {"MaTinh", "TenTinh", "MaXa", "TenXa", "ChiTiet"}
    assert citizen["NoiThuongTru"]["TenTinh"] == "Thành phố Hà Nội"
    assert "HanChe" not in citizen


async def test_found_by_old_id_card_number(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "SoCMND": "201234567"}
    status, data = await lookup(client, BY_NUMBER, body, token)
    assert status == 200
    citizen = data["CongDan"]
    assert (citizen["Ho"], citizen["ChuDem"], citizen["Ten"]) == ("Trần", "Thị Bích", "Ngọc")
    assert citizen["SoCMND"] == "201234567"
    assert citizen["GioiTinh"] == "2"


async def test_not_found(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "SoDinhDanh": "001099099999"}
    status, data = await lookup(client, BY_NUMBER, body, token)
    assert status == 404
    assert data == {
        "MaYeuCau": "req-0001",
        "MaLoi": "201",
        "MoTaLoi": "Không tìm thấy thông tin công dân",
    }


async def test_number_and_old_id_of_different_citizens_do_not_match(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "SoDinhDanh": "001099012345", "SoCMND": "201234567"}
    status, data = await lookup(client, BY_NUMBER, body, token)
    assert (status, data["MaLoi"]) == (404, "201")


async def test_restricted_citizen(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "SoDinhDanh": "079203000111"}
    status, data = await lookup(client, BY_NUMBER, body, token)
    assert status == 403
    assert data["MaLoi"] == "202"
    assert data["MoTaLoi"] == (
        "Công dân có tồn tại nhưng đơn vị không được phép khai thác thông tin"
    )
    assert "CongDan" not in data


# --- Lookup by name and birth date ---------------------------------------------------


async def test_name_lookup_exact_date(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "HoVaTen": "Trần Thị Bích Ngọc", "NgayThangNamSinh": "1988-11-02"}
    status, data = await lookup(client, BY_NAME, body, token)
    assert status == 200
    assert data["MaLoi"] == "0"
    assert [c["SoDinhDanh"] for c in data["DanhSachCongDan"]] == ["048188004567"]


async def test_name_lookup_nfd_case_and_spacing(client: Client) -> None:
    token = await get_token(client)
    decomposed = unicodedata.normalize("NFD", "  lê   HOÀNG minh ")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    body = {**ACCOUNTABILITY, "HoVaTen": decomposed, "NgayThangNamSinh": "1975-06-30"}
    status, data = await lookup(client, BY_NAME, body, token)
    assert status == 200
    [citizen] = data["DanhSachCongDan"]
    assert citizen["SoDinhDanh"] == "001075003210"
    assert citizen["SoCMND"] == "012345678"


async def test_name_lookup_year_only_returns_all_matches(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "HoVaTen": "Nguyễn Văn An", "NgayThangNamSinh": "1999"}
    status, data = await lookup(client, BY_NAME, body, token)
    assert status == 200
    found = {c["SoDinhDanh"] for c in data["DanhSachCongDan"]}
    assert found == {"001099012345", "040099006789"}


async def test_name_lookup_of_citizen_known_only_by_year(client: Client) -> None:
    token = await get_token(client)
    for born in ("1938", "1938-05-01"):
        body = {**ACCOUNTABILITY, "HoVaTen": "Đỗ Thị Lan", "NgayThangNamSinh": born}
        status, data = await lookup(client, BY_NAME, body, token)
        assert status == 200
        assert data["DanhSachCongDan"][0]["NgayThangNamSinh"] == "1938"


async def test_name_lookup_minority_citizens(client: Client) -> None:
    token = await get_token(client)
    for name, born, ethnicity in [
        ("Nông Thị Hoa", "1992-09-09", "Tày"),
        ("Thạch Thị Sa Ri", "1995-04-14", "Khơ-me"),
    ]:
        body = {**ACCOUNTABILITY, "HoVaTen": name, "NgayThangNamSinh": born}
        status, data = await lookup(client, BY_NAME, body, token)
        assert status == 200
        assert data["DanhSachCongDan"][0]["DanToc"]["Ten"] == ethnicity


async def test_name_lookup_not_found_and_restricted(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "HoVaTen": "Nguyễn Văn An", "NgayThangNamSinh": "2000"}
    status, data = await lookup(client, BY_NAME, body, token)
    assert (status, data["MaLoi"]) == (404, "201")
    body = {**ACCOUNTABILITY, "HoVaTen": "Phạm Quốc Bảo", "NgayThangNamSinh": "2003-08-21"}
    status, data = await lookup(client, BY_NAME, body, token)
    assert (status, data["MaLoi"]) == (403, "202")


# --- Validation ----------------------------------------------------------------------


async def test_missing_officer_is_rejected(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "SoDinhDanh": "001099012345"}
    del body["MaCanBo"]
    status, data = await lookup(client, BY_NUMBER, body, token)
    assert status == 400
    assert data["MaYeuCau"] == "req-0001"
    assert data["MaLoi"] == "400"
    assert "MaCanBo" in data["MoTaLoi"]


async def test_accountability_fields_from_headers(client: Client) -> None:
    token = await get_token(client)
    body = {"MaDonVi": "000.00.31.H26", "SoDinhDanh": "001099012345"}
    status, data = await lookup(
        client,
        BY_NUMBER,
        body,
        token,
        **{"X-Officer-Id": "CB0042", "X-Procedure-Code": "1.001193", "X-Request-Id": "hdr-7"},
    )
    assert status == 200
    assert data["MaYeuCau"] == "hdr-7"
    assert data["CongDan"]["SoDinhDanh"] == "001099012345"


async def test_agency_from_header(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "SoDinhDanh": "001099012345"}
    del body["MaDonVi"]
    status, _ = await lookup(client, BY_NUMBER, body, token)
    assert status == 400
    status, _ = await lookup(client, BY_NUMBER, body, token, **{"X-Client-Agency": "000.00.31.H26"})
    assert status == 200


@pytest.mark.parametrize(
    ("path", "change", "field"),
    [
        (BY_NUMBER, {"SoDinhDanh": "00109901234"}, "SoDinhDanh"),
        (BY_NUMBER, {"SoDinhDanh": "00109901234x"}, "SoDinhDanh"),
        (BY_NUMBER, {"SoDinhDanh": 1099012345}, "SoDinhDanh"),
        (BY_NUMBER, {"SoCMND": "2012345678"}, "SoCMND"),
        (BY_NUMBER, {}, "SoDinhDanh"),
        (BY_NUMBER, {"SoDinhDanh": "001099012345", "MaCanBo": "C" * 21}, "MaCanBo"),
        (BY_NUMBER, {"SoDinhDanh": "001099012345", "MaDVC": "1" * 21}, "MaDVC"),
        (BY_NUMBER, {"SoDinhDanh": "001099012345", "MaDonVi": "A" * 36}, "MaDonVi"),
        (BY_NUMBER, {"SoDinhDanh": "001099012345", "MaYeuCau": "r" * 41}, "MaYeuCau"),
        (BY_NUMBER, {"SoDinhDanh": "001099012345", "MaTichHop": "12a"}, "MaTichHop"),
        (BY_NUMBER, {"SoDinhDanh": "001099012345", "MaTichHop": "1" * 21}, "MaTichHop"),
        (BY_NAME, {"HoVaTen": "A" * 101, "NgayThangNamSinh": "1999"}, "HoVaTen"),
        (BY_NAME, {"NgayThangNamSinh": "1999"}, "HoVaTen"),
        (BY_NAME, {"HoVaTen": "Nguyễn Văn An"}, "NgayThangNamSinh"),
        (
            BY_NAME,
            {"HoVaTen": "Nguyễn Văn An", "NgayThangNamSinh": "15/03/1999"},
            "NgayThangNamSinh",
        ),
        (
            BY_NAME,
            {"HoVaTen": "Nguyễn Văn An", "NgayThangNamSinh": "1999-02-30"},
            "NgayThangNamSinh",
        ),
    ],
)
async def test_invalid_fields_are_named(
    client: Client, path: str, change: dict[str, Any], field: str
) -> None:
    token = await get_token(client)
    status, data = await lookup(client, path, {**ACCOUNTABILITY, **change}, token)
    assert status == 400
    assert data["MaLoi"] == "400"
    assert field in data["MoTaLoi"]


async def test_body_must_be_a_json_object(client: Client) -> None:
    token = await get_token(client)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for raw in (b"not json", b"[1, 2]"):
        resp = await client.post(BY_NUMBER, data=raw, headers=headers)
        assert resp.status == 400
        assert (await resp.json())["MaLoi"] == "400"


async def test_lookups_are_recorded(client: Client) -> None:
    token = await get_token(client)
    body = {**ACCOUNTABILITY, "SoDinhDanh": "001099012345"}
    await lookup(
        client,
        BY_NUMBER,
        body,
        token,
        **{"X-Request-Id": "req-0001", "traceparent": "00-abc-def-01", "X-Unrelated": "x"},
    )
    app = client.app
    assert app is not None
    [recorded] = app[LOOKUPS]
    assert recorded["body"] == body
    assert recorded["headers"] == {
        "X-Request-Id": "req-0001",
        "traceparent": "00-abc-def-01",
        "Authorization": f"Bearer {token}",
    }


# --- Health and test helpers ---------------------------------------------------------


async def test_healthz(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_delay(client: Client) -> None:
    started = time.monotonic()
    resp = await client.post("/_sim/delay/150")
    assert resp.status == 200
    assert await resp.json() == {"ok": True}
    assert time.monotonic() - started >= 0.14
    assert (await client.get("/_sim/delay/0")).status == 200


@pytest.mark.parametrize("code", [200, 429, 500, 502, 503])
async def test_status(client: Client, code: int) -> None:
    for method in ("GET", "POST"):
        resp = await client.request(method, f"/_sim/status/{code}")
        assert resp.status == code
        assert await resp.json() == {"MaLoi": str(code)}


async def test_echo(client: Client) -> None:
    resp = await client.get("/_sim/echo/a%2Fb/c?x=1&y=%C4%91", headers={"X-Test": "1"})
    assert resp.status == 200
    echoed = await resp.json()
    assert echoed["method"] == "GET"
    assert echoed["path"] == "/_sim/echo/a%2Fb/c"
    assert echoed["query"] == "x=1&y=%C4%91"
    assert echoed["headers"]["X-Test"] == "1"
    assert echoed["body"] == ""

    resp = await client.post("/_sim/echo/thu-tuc", data="Xin chào".encode())
    echoed = await resp.json()
    assert (echoed["method"], echoed["path"], echoed["body"]) == (
        "POST",
        "/_sim/echo/thu-tuc",
        "Xin chào",
    )


# --- Command line --------------------------------------------------------------------


def test_clients_from_environment() -> None:
    args = _parse_args([], {"LGSP_SIM_CLIENTS": "a:b, c:d:e", "LGSP_SIM_PORT": "9001"})
    assert dict(args.client) == {"a": "b", "c": "d:e"}
    assert (args.host, args.port) == ("127.0.0.1", 9001)
    args = _parse_args(["--client", "x:y", "--port", "9"], {"LGSP_SIM_CLIENTS": "a:b"})
    assert (dict(args.client), args.port) == ({"x": "y"}, 9)
    with pytest.raises(SystemExit):
        _parse_args([], {})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_runs_as_a_module() -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        "--port",
        str(port),
        "--client",
        "a:b",
        cwd=Path(__file__).resolve().parents[1],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        assert line.decode().strip() == f"national simulator listening on http://127.0.0.1:{port}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=10)
