"""The simulator's national land registry (``simulator.land``): the SOAP 1.1 parcel
lookup, its answers and faults, as a provincial gateway meets them."""

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from simulator.app import create_app
from simulator.land import ACTION, LAND_NS, LAND_REGISTRY, LOOKUP_PATH, SOAP_NS, load_parcels

CLIENT_ID = "000.00.00.H49"
CLIENT_SECRET = "bi-mat-tinh"
NS = {"s": SOAP_NS, "d": LAND_NS}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app({CLIENT_ID: CLIENT_SECRET}))) as test_client:
        yield test_client


@pytest.fixture
async def headers(client: Client) -> dict[str, str]:
    resp = await client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert resp.status == 200
    token = (await resp.json())["access_token"]
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": f'"{ACTION}"',
    }


def lookup(sheet: str, number: str, *, request_id: str = "req-1", extra: str = "") -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>'
        f'<TraCuuThuaDat xmlns="{LAND_NS}"><MaYeuCau>{request_id}</MaYeuCau>'
        f"<MaTinh>01</MaTinh><SoToBanDo>{sheet}</SoToBanDo><SoThua>{number}</SoThua>{extra}"
        "</TraCuuThuaDat></soap:Body></soap:Envelope>"
    ).encode()


def fault(raw: bytes) -> tuple[str, str]:
    root = etree.fromstring(raw)
    code = root.findtext("s:Body/s:Fault/faultcode", namespaces=NS)
    error = root.findtext("s:Body/s:Fault/detail/d:LoiNghiepVu/d:MaLoi", namespaces=NS)
    assert code is not None and error is not None
    return code, error


async def test_a_parcel_is_found_with_its_holders_and_the_request_id_echoed(
    client: Client, headers: dict[str, str]
) -> None:
    resp = await client.post(LOOKUP_PATH, data=lookup("12", "345"), headers=headers)
    assert resp.status == 200
    answer = etree.fromstring(await resp.read())
    body = answer.find("s:Body/d:KetQuaTraCuuThuaDat", NS)
    assert body is not None
    assert body.findtext("d:MaYeuCau", namespaces=NS) == "req-1"
    assert body.findtext("d:ThuaDat/d:DienTich", namespaces=NS) == "1.250,75"
    holders = body.findall("d:ThuaDat/d:DanhSachChuSuDung/d:ChuSuDung", NS)
    assert [h.findtext("d:HoTen", namespaces=NS) for h in holders] == [
        "Nguyễn Văn An",
        "Trần Thị Bình",
    ]
    assert client.app[LAND_REGISTRY].lookups[-1]["headers"]["SOAPAction"] == f'"{ACTION}"'


async def test_faults_say_whose_side_and_carry_the_error_code(
    client: Client, headers: dict[str, str]
) -> None:
    resp = await client.post(LOOKUP_PATH, data=lookup("12", "999"), headers=headers)
    assert resp.status == 500
    assert fault(await resp.read()) == ("soap:Client", "201")  # no such parcel
    resp = await client.post(LOOKUP_PATH, data=lookup("9999", "1"), headers=headers)
    assert fault(await resp.read()) == ("soap:Server", "500")  # the registry failing
    too_long = lookup("12", "345", request_id="x" * 41)
    resp = await client.post(LOOKUP_PATH, data=too_long, headers=headers)
    assert fault(await resp.read()) == ("soap:Client", "400")
    unknown = lookup("12", "345", extra="<GhiChu>x</GhiChu>")
    resp = await client.post(LOOKUP_PATH, data=unknown, headers=headers)
    assert fault(await resp.read()) == ("soap:Client", "400")
    wrong_action = {**headers, "SOAPAction": '"urn:other"'}
    resp = await client.post(LOOKUP_PATH, data=lookup("12", "345"), headers=wrong_action)
    assert fault(await resp.read()) == ("soap:Client", "400")
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]>' + lookup("12", "345")
    resp = await client.post(LOOKUP_PATH, data=doctype, headers=headers)
    assert fault(await resp.read()) == ("soap:Client", "400")


async def test_without_the_platform_token_there_is_no_lookup(client: Client) -> None:
    resp = await client.post(LOOKUP_PATH, data=lookup("12", "345"), headers={"SOAPAction": ACTION})
    assert resp.status == 401
    assert client.app[LAND_REGISTRY].lookups == []


def test_the_parcels_are_complete() -> None:
    parcels = load_parcels()
    assert len(parcels) >= 3
    for parcel in parcels.values():
        assert parcel["ChuSuDung"] and all(h["HoTen"].strip() for h in parcel["ChuSuDung"])
        assert parcel["DienTich"] and parcel["MucDichSuDung"]
