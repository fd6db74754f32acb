"""Tests for the simulator's national business registration database, edXML document
exchange and public service portal dossier sync (``simulator.business``,
``simulator.edxml``, ``simulator.dossier``)."""

import base64
import os
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from simulator.app import create_app
from simulator.business import BUSINESS_REGISTRY, load_enterprises
from simulator.dossier import DOSSIER_PORTAL
from simulator.edxml import DOCUMENT_EXCHANGE, EDXML_NS, SERVICE_NS, SOAP_NS

CLIENT_ID = "000.00.00.H49"
CLIENT_SECRET = "bi-mat-tinh"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = create_app({CLIENT_ID: CLIENT_SECRET})
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def token(client: Client) -> str:
    resp = await client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert resp.status == 200
    access_token = (await resp.json())["access_token"]
    assert isinstance(access_token, str)
    return access_token


def parse(raw: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    return etree.fromstring(raw, parser)


def text(element: etree._Element, path: str, namespaces: dict[str, str] | None = None) -> str:
    found = element.find(path, namespaces)
    assert found is not None, f"{path} missing"
    return found.text or ""


# === National business registration database =========================================

LOOKUP = "/dkdn/v1/doanh-nghiep/tra-cuu"


def lookup_body(code: str, request_id: str = "req-dn-0001") -> bytes:
    return (
        f"<TraCuuDoanhNghiep><MaYeuCau>{request_id}</MaYeuCau>"
        f"<MaSoDoanhNghiep>{code}</MaSoDoanhNghiep></TraCuuDoanhNghiep>"
    ).encode()


async def look_up(
    client: Client, body: bytes, token: str | None, content_type: str = "application/xml"
) -> tuple[int, etree._Element]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    resp = await client.post(LOOKUP, data=body, headers=headers)
    assert resp.content_type == "application/xml"
    raw = await resp.read()
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = parse(raw)
    assert root.tag == "KetQuaTraCuu"
    return resp.status, root


async def test_enterprise_found_with_branches(client: Client, token: str) -> None:
    status, root = await look_up(client, lookup_body("0101234567"), token)
    assert status == 200
    assert [c.tag for c in root] == ["MaYeuCau", "MaLoi", "MoTaLoi", "DoanhNghiep"]
    assert (text(root, "MaYeuCau"), text(root, "MaLoi"), text(root, "MoTaLoi")) == (
        "req-dn-0001",
        "0",
        "Thành công",
    )
    enterprise = root.find("DoanhNghiep")
    assert enterprise is not None
    assert [c.tag for c in enterprise] == [
        "MaSoDoanhNghiep",
        "TenDoanhNghiep",
        "TenTiengNuocNgoai",
        "TenVietTat",
        "LoaiHinh",
        "NgayThanhLap",
        "TinhTrang",
        "DiaChiTruSo",
        "NguoiDaiDien",
        "VonDieuLe",
        "NganhNgheChinh",
        "DanhSachChiNhanh",
    ]
    assert text(enterprise, "MaSoDoanhNghiep") == "0101234567"
    assert text(enterprise, "TenDoanhNghiep").startswith("CÔNG TY TNHH MỘT THÀNH VIÊN")
    assert text(enterprise, "LoaiHinh") == "TNHH1TV"
    assert text(enterprise, "NgayThanhLap") == "15/03/2012"
    assert text(enterprise, "TinhTrang") == "1"
    assert text(enterprise, "VonDieuLe") == "5000000000"
    assert text(enterprise, "NganhNgheChinh") == "4690"
    assert text(enterprise, "DiaChiTruSo/TinhThanh") == "Thành phố Hà Nội"
    assert text(enterprise, "DiaChiTruSo/MaTinh") == "01"
    assert text(enterprise, "NguoiDaiDien/ChucDanh") == "Giám đốc"
    branches = enterprise.findall("DanhSachChiNhanh/ChiNhanh")
    assert [text(b, "MaSoChiNhanh") for b in branches] == ["0101234567-001", "0101234567-002"]
    assert [c.tag for c in branches[0]] == ["MaSoChiNhanh", "TenChiNhanh", "DiaChi", "NgayHoatDong"]
    assert text(branches[0], "DiaChi/TinhThanh") == "Thành phố Đà Nẵng"
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", text(branches[1], "NgayHoatDong"))
    assert b"HanChe" not in etree.tostring(root)


async def test_branch_code_answers_with_the_parent(client: Client, token: str) -> None:
    status, root = await look_up(client, lookup_body("0101234567-002"), token)
    assert status == 200
    assert text(root, "MaLoi") == "0"
    assert "0101234567-002" in text(root, "MoTaLoi")
    assert "chi nhánh" in text(root, "MoTaLoi")
    assert text(root, "ChiNhanhTraCuu/MaSoChiNhanh") == "0101234567-002"
    assert text(root, "ChiNhanhTraCuu/DiaChi/MaTinh") == "79"
    assert text(root, "DoanhNghiep/MaSoDoanhNghiep") == "0101234567"


async def test_enterprise_without_branches_and_dissolved(client: Client, token: str) -> None:
    status, root = await look_up(client, lookup_body("4000123456"), token)
    assert status == 200
    assert text(root, "DoanhNghiep/LoaiHinh") == "DNTN"
    branches = root.find("DoanhNghiep/DanhSachChiNhanh")
    assert branches is not None and len(branches) == 0
    status, root = await look_up(client, lookup_body("0201234569"), token)
    assert status == 200
    assert text(root, "DoanhNghiep/TinhTrang") == "3"


@pytest.mark.parametrize("code", ["0100000001", "0101234567-009"])
async def test_enterprise_not_found(client: Client, token: str, code: str) -> None:
    status, root = await look_up(client, lookup_body(code), token)
    assert status == 404
    assert text(root, "MaLoi") == "201"
    assert text(root, "MaYeuCau") == "req-dn-0001"
    assert root.find("DoanhNghiep") is None


@pytest.mark.parametrize("code", ["0109876543", "0109876543-001"])
async def test_enterprise_restricted(client: Client, token: str, code: str) -> None:
    status, root = await look_up(client, lookup_body(code), token)
    assert status == 403
    assert text(root, "MaLoi") == "202"
    assert "không được phép" in text(root, "MoTaLoi")
    assert root.find("DoanhNghiep") is None
    assert b"B\xe1\xba\xa2O T\xc3\x8dN" not in etree.tostring(root, encoding="UTF-8")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (lookup_body("010123456"), "MaSoDoanhNghiep"),
        (lookup_body("010123456a"), "MaSoDoanhNghiep"),
        (lookup_body("0101234567-01"), "MaSoDoanhNghiep"),
        (b"<TraCuuDoanhNghiep><MaYeuCau>r</MaYeuCau></TraCuuDoanhNghiep>", "MaSoDoanhNghiep"),
        (lookup_body("0101234567", "r" * 41), "MaYeuCau"),
        (
            b"<TraCuuDoanhNghiep><MaSoDoanhNghiep>0101234567</MaSoDoanhNghiep>"
            b"<MaSoThue>1</MaSoThue></TraCuuDoanhNghiep>",
            "MaSoThue",
        ),
        (
            b"<TraCuuDoanhNghiep><MaSoDoanhNghiep>0101234567</MaSoDoanhNghiep>"
            b"<MaSoDoanhNghiep>0312345678</MaSoDoanhNghiep></TraCuuDoanhNghiep>",
            "MaSoDoanhNghiep",
        ),
        (b"<TraCuuCongDan><SoDinhDanh>1</SoDinhDanh></TraCuuCongDan>", "TraCuuDoanhNghiep"),
        (b"<TraCuuDoanhNghiep><MaSoDoanhNghiep>01", "XML"),
        (b"", "XML"),
    ],
)
async def test_enterprise_malformed_request(
    client: Client, token: str, body: bytes, named: str
) -> None:
    status, root = await look_up(client, body, token)
    assert status == 400
    assert text(root, "MaLoi") == "100"
    assert named in text(root, "MoTaLoi")
    assert root.find("DoanhNghiep") is None


async def test_enterprise_malformed_request_echoes_the_request_id(
    client: Client, token: str
) -> None:
    body = b"<TraCuuDoanhNghiep><MaYeuCau>req-7</MaYeuCau><Khac/></TraCuuDoanhNghiep>"
    status, root = await look_up(client, body, token)
    assert (status, text(root, "MaYeuCau"), text(root, "MaLoi")) == (400, "req-7", "100")


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<TraCuuDoanhNghiep><MaSoDoanhNghiep>&b;</MaSoDoanhNghiep></TraCuuDoanhNghiep>",
        b'<!DOCTYPE x [<!ENTITY f SYSTEM "file:///etc/passwd">]>'
        b"<TraCuuDoanhNghiep><MaSoDoanhNghiep>&f;</MaSoDoanhNghiep></TraCuuDoanhNghiep>",
        b'<!DOCTYPE TraCuuDoanhNghiep SYSTEM "http://127.0.0.1:9/x.dtd">'
        b"<TraCuuDoanhNghiep><MaSoDoanhNghiep>0101234567</MaSoDoanhNghiep></TraCuuDoanhNghiep>",
    ],
)
async def test_enterprise_request_with_dtd_is_refused(
    client: Client, token: str, body: bytes
) -> None:
    status, root = await look_up(client, body, token)
    assert status == 400
    assert text(root, "MaLoi") == "100"
    assert "DOCTYPE" in text(root, "MoTaLoi")
    assert b"root:" not in etree.tostring(root)


@pytest.mark.parametrize("token_value", [None, "khong-hop-le"])
async def test_enterprise_lookup_needs_a_token(client: Client, token_value: str | None) -> None:
    resp = await client.post(
        LOOKUP,
        data=lookup_body("0101234567"),
        headers={"Content-Type": "application/xml"}
        | ({"Authorization": f"Bearer {token_value}"} if token_value else {}),
    )
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    root = parse(await resp.read())
    assert text(root, "MaLoi") == "401"
    assert root.find("DoanhNghiep") is None


async def test_enterprise_lookup_needs_xml(client: Client, token: str) -> None:
    status, root = await look_up(client, b'{"MaSoDoanhNghiep": "0101234567"}', token, "text/plain")
    assert status == 415
    assert text(root, "MaLoi") == "100"
    assert "application/xml" in text(root, "MoTaLoi")
    status, root = await look_up(client, lookup_body("0101234567"), token, "text/xml")
    assert status == 200


async def test_enterprise_lookups_are_recorded(client: Client, token: str) -> None:
    await look_up(client, lookup_body("0312345678"), token)
    assert client.app is not None
    [recorded] = client.app[BUSINESS_REGISTRY].lookups
    assert recorded["headers"]["Authorization"] == f"Bearer {token}"
    assert "<MaSoDoanhNghiep>0312345678</MaSoDoanhNghiep>" in recorded["body"]


def test_enterprise_data_covers_every_outcome() -> None:
    enterprises = load_enterprises()
    assert 6 <= len(enterprises) <= 10
    assert sum(1 for e in enterprises.values() if e.get("HanChe")) == 1
    assert {e["TinhTrang"] for e in enterprises.values()} == {"1", "2", "3", "4"}
    assert {e["LoaiHinh"] for e in enterprises.values()} >= {"TNHH1TV", "TNHH2TV", "CP", "DNTN"}
    branch_counts = [len(e["DanhSachChiNhanh"]) for e in enterprises.values()]
    assert branch_counts.count(0) >= 1
    assert sum(1 for n in branch_counts if n > 0) >= 3
    for enterprise in enterprises.values():
        datetime.strptime(enterprise["NgayThanhLap"], "%d/%m/%Y")


# === edXML document exchange (SOAP 1.1) ==============================================

SOAP = "/edxml/v1/soap"
NS = {"soap": SOAP_NS, "svc": SERVICE_NS, "edXML": EDXML_NS}
PROVINCE = "000.00.00.H49"
CENTRE = "000.00.31.H49"
JUSTICE = "000.00.12.H49"


def soap_envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:svc="{SERVICE_NS}" '
        f'xmlns:edXML="{EDXML_NS}"><soap:Body>{body}</soap:Body></soap:Envelope>'
    ).encode()


def organ(tag: str, organ_id: str, name: str) -> str:
    return (
        f"<edXML:{tag}><edXML:OrganId>{organ_id}</edXML:OrganId>"
        f"<edXML:OrganName>{escape(name)}</edXML:OrganName>"
        f"<edXML:OrganizationInCharge>{escape(name)}</edXML:OrganizationInCharge></edXML:{tag}>"
    )


def message_header(
    document_id: str, sender: str = PROVINCE, recipients: tuple[str, ...] = (CENTRE,)
) -> str:
    return (
        "<edXML:MessageHeader>"
        + organ("From", sender, "Ủy ban nhân dân tỉnh")
        + "".join(organ("To", r, "Đơn vị nhận") for r in recipients)
        + f"<edXML:DocumentId>{escape(document_id)}</edXML:DocumentId>"
        "<edXML:Code><edXML:CodeNumber>123</edXML:CodeNumber>"
        "<edXML:CodeNotation>UBND-VP</edXML:CodeNotation></edXML:Code>"
        "<edXML:PromulgationInfo><edXML:Place>Tỉnh</edXML:Place>"
        "<edXML:PromulgationDate>2025/11/22</edXML:PromulgationDate></edXML:PromulgationInfo>"
        "<edXML:DocumentType><edXML:Type>1</edXML:Type>"
        "<edXML:TypeName>Công văn</edXML:TypeName></edXML:DocumentType>"
        "<edXML:Subject>Về việc triển khai kết nối nền tảng chia sẻ dữ liệu</edXML:Subject>"
        "<edXML:Content>Đề nghị các đơn vị phối hợp.</edXML:Content>"
        "<edXML:SignerInfo><edXML:Competence>TM. UBND</edXML:Competence>"
        "<edXML:FullName>Nguyễn Văn Bình</edXML:FullName>"
        "<edXML:Position>Chủ tịch</edXML:Position></edXML:SignerInfo>"
        "<edXML:SteeringType>0</edXML:SteeringType>"
        "<edXML:OtherInfo><edXML:Priority>0</edXML:Priority></edXML:OtherInfo>"
        "</edXML:MessageHeader>"
    )


def attachment_xml(name: str, content: bytes, index: int, *, wrap: int = 0) -> str:
    encoded = base64.b64encode(content).decode()
    if wrap:
        encoded = "\n".join(encoded[i : i + wrap] for i in range(0, len(encoded), wrap))
    return (
        "<edXML:Attachment>"
        f"<edXML:ContentId>tep-{index}</edXML:ContentId>"
        "<edXML:ContentType>application/pdf</edXML:ContentType>"
        f"<edXML:Description>Tệp đính kèm {index}</edXML:Description>"
        "<edXML:Format>base64</edXML:Format>"
        f"<edXML:AttachmentName>{escape(name)}</edXML:AttachmentName>"
        f"<edXML:ContentTransferEncoded>{encoded}</edXML:ContentTransferEncoded>"
        "</edXML:Attachment>"
    )


def send_document(
    document_id: str,
    attachments: list[tuple[str, bytes]] | None = None,
    *,
    sender: str = PROVINCE,
    recipients: tuple[str, ...] = (CENTRE,),
    header: str | None = None,
) -> bytes:
    files = attachments if attachments is not None else [("cong-van.pdf", b"%PDF-1.7 noi dung")]
    return soap_envelope(
        "<svc:SendDocument><edXML:Envelope><edXML:Header>"
        + (header if header is not None else message_header(document_id, sender, recipients))
        + "<edXML:TraceHeaderList><edXML:TraceHeader>"
        f"<edXML:OrganId>{sender}</edXML:OrganId>"
        "<edXML:Timestamp>2025/11/22 09:15:00</edXML:Timestamp>"
        "</edXML:TraceHeader></edXML:TraceHeaderList></edXML:Header>"
        "<edXML:AttachmentEncoded>"
        + "".join(attachment_xml(n, c, i) for i, (n, c) in enumerate(files, 1))
        + "</edXML:AttachmentEncoded></edXML:Envelope></svc:SendDocument>"
    )


def status_update(
    document_id: str, code: str, actor: str = CENTRE, timestamp: str = "2025/11/22 10:00:00"
) -> bytes:
    return soap_envelope(
        "<svc:UpdateStatus><edXML:Status>"
        f"<edXML:ResponseFor><edXML:OrganId>{PROVINCE}</edXML:OrganId>"
        "<edXML:Code>123/UBND-VP</edXML:Code>"
        "<edXML:PromulgationDate>2025/11/22</edXML:PromulgationDate>"
        f"<edXML:DocumentId>{document_id}</edXML:DocumentId></edXML:ResponseFor>"
        f"<edXML:From><edXML:OrganId>{actor}</edXML:OrganId>"
        "<edXML:OrganName>Đơn vị</edXML:OrganName></edXML:From>"
        f"<edXML:StatusCode>{code}</edXML:StatusCode>"
        "<edXML:Description>Cập nhật trạng thái</edXML:Description>"
        f"<edXML:Timestamp>{timestamp}</edXML:Timestamp>"
        "<edXML:StaffInfo><edXML:Department>Văn phòng</edXML:Department>"
        "<edXML:Staff>Trần Thị Mai</edXML:Staff><edXML:Mobile>0905123456</edXML:Mobile>"
        "<edXML:Email>mai@example.vn</edXML:Email></edXML:StaffInfo>"
        "</edXML:Status></svc:UpdateStatus>"
    )


def by_id(operation: str, document_id: str, organ_id: str | None = None) -> bytes:
    organ_part = f"<svc:OrganId>{organ_id}</svc:OrganId>" if organ_id else ""
    return soap_envelope(
        f"<svc:{operation}><svc:DocumentId>{escape(document_id)}</svc:DocumentId>"
        f"{organ_part}</svc:{operation}>"
    )


def pending(organ_id: str) -> bytes:
    return soap_envelope(
        f"<svc:GetPendingDocuments><svc:OrganId>{organ_id}</svc:OrganId></svc:GetPendingDocuments>"
    )


async def call(
    client: Client,
    token: str | None,
    action: str | None,
    body: bytes,
    content_type: str = "text/xml; charset=utf-8",
) -> tuple[int, etree._Element]:
    headers = {"Content-Type": content_type}
    if action is not None:
        headers["SOAPAction"] = f'"{SERVICE_NS}/{action}"'
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    resp = await client.post(SOAP, data=body, headers=headers)
    assert resp.content_type == "text/xml"
    root = parse(await resp.read())
    assert root.tag == f"{{{SOAP_NS}}}Envelope"
    body_element = root.find("soap:Body", NS)
    assert body_element is not None and len(body_element) == 1
    return resp.status, body_element[0]


async def ok(client: Client, token: str, action: str, body: bytes) -> etree._Element:
    status, result = await call(client, token, action, body)
    assert status == 200, etree.tostring(result, encoding="unicode")
    assert result.tag == f"{{{SERVICE_NS}}}{action}Response"
    return result


async def fault(
    client: Client, token: str | None, action: str | None, body: bytes, status: int = 500
) -> tuple[str, str, str]:
    """(faultcode, faultstring, detail ErrorCode) of a SOAP fault answer."""
    got, result = await call(client, token, action, body)
    assert got == status
    assert result.tag == f"{{{SOAP_NS}}}Fault"
    return (
        text(result, "faultcode"),
        text(result, "faultstring"),
        text(result, "detail/svc:ErrorCode", NS),
    )


async def status_history(client: Client, token: str, document_id: str) -> list[str]:
    result = await ok(client, token, "GetStatus", by_id("GetStatus", document_id))
    return [
        text(s, "edXML:StatusCode", NS)
        for s in result.findall("svc:Recipient/svc:StatusHistory/edXML:Status", NS)
    ]


async def test_document_round_trip_and_status_flow(client: Client, token: str) -> None:
    first, second = os.urandom(150_000), "Phụ lục: danh sách đơn vị".encode() + bytes(range(256))
    document_id = "000.00.00.H49,2025/11/22,123/UBND-VP"
    body = send_document(document_id, [("cong-van-123.pdf", first), ("phu-luc.docx", second)])

    sent = await ok(client, token, "SendDocument", body)
    assert text(sent, "svc:DocumentId", NS) == document_id
    receive_id = text(sent, "svc:ReceiveId", NS)
    assert re.fullmatch(r"[0-9a-f-]{36}", receive_id)
    assert text(sent, "svc:StatusCode", NS) == "01"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}", text(sent, "svc:Timestamp", NS))

    waiting = await ok(client, token, "GetPendingDocuments", pending(CENTRE))
    [item] = waiting.findall("svc:Document", NS)
    assert text(item, "svc:DocumentId", NS) == document_id
    assert text(item, "svc:ReceiveId", NS) == receive_id
    assert text(item, "svc:FromOrganId", NS) == PROVINCE
    assert text(item, "svc:Code", NS) == "123/UBND-VP"
    other = await ok(client, token, "GetPendingDocuments", pending(JUSTICE))
    assert other.findall("svc:Document", NS) == []

    fetched = await ok(client, token, "GetDocument", by_id("GetDocument", document_id))
    envelope = fetched.find("edXML:Envelope", NS)
    assert envelope is not None
    assert text(envelope, "edXML:Header/edXML:MessageHeader/edXML:Subject", NS).startswith(
        "Về việc"
    )
    attachments = envelope.findall("edXML:AttachmentEncoded/edXML:Attachment", NS)
    assert [text(a, "edXML:AttachmentName", NS) for a in attachments] == [
        "cong-van-123.pdf",
        "phu-luc.docx",
    ]
    decoded = [base64.b64decode(text(a, "edXML:ContentTransferEncoded", NS)) for a in attachments]
    assert decoded == [first, second]
    waiting = await ok(client, token, "GetPendingDocuments", pending(CENTRE))
    assert waiting.findall("svc:Document", NS) == []

    for code in ("03", "04", "05"):
        result = await ok(client, token, "UpdateStatus", status_update(document_id, code))
        assert text(result, "svc:StatusCode", NS) == code
    code, message, error = await fault(
        client, token, "UpdateStatus", status_update(document_id, "03")
    )
    assert (code, error) == ("soap:Client", "InvalidStatusTransition")
    assert "05" in message and "03" in message
    await ok(client, token, "UpdateStatus", status_update(document_id, "06"))
    code, message, _ = await fault(
        client, token, "UpdateStatus", status_update(document_id, "13", actor=PROVINCE)
    )
    assert code == "soap:Client"
    assert "06" in message and "13" in message

    assert await status_history(client, token, document_id) == ["01", "03", "04", "05", "06"]
    result = await ok(client, token, "GetStatus", by_id("GetStatus", document_id))
    assert text(result, "svc:Recipient/svc:StatusCode", NS) == "06"
    assert text(result, "svc:Recipient/svc:Fetched", NS) == "true"
    [_, accepted, *_] = result.findall("svc:Recipient/svc:StatusHistory/edXML:Status", NS)
    assert text(accepted, "edXML:ResponseFor/edXML:DocumentId", NS) == document_id
    assert text(accepted, "edXML:From/edXML:OrganId", NS) == CENTRE
    assert text(accepted, "edXML:StaffInfo/edXML:Staff", NS) == "Trần Thị Mai"
    assert text(accepted, "edXML:Timestamp", NS) == "2025/11/22 10:00:00"


@pytest.mark.parametrize(
    ("moves", "requested"),
    [((), "05"), ((), "04"), ((), "06"), (("02",), "03"), (("03",), "06"), ((), "15")],
)
async def test_illegal_status_jumps_are_refused(
    client: Client, token: str, moves: tuple[str, ...], requested: str
) -> None:
    await ok(client, token, "SendDocument", send_document("VB-NHAY-COC"))
    for move in moves:
        await ok(client, token, "UpdateStatus", status_update("VB-NHAY-COC", move))
    current = moves[-1] if moves else "01"
    code, message, error = await fault(
        client, token, "UpdateStatus", status_update("VB-NHAY-COC", requested)
    )
    assert (code, error) == ("soap:Client", "InvalidStatusTransition")
    assert f"từ {current}" in message and f"sang {requested}" in message


async def test_recall_flow(client: Client, token: str) -> None:
    await ok(client, token, "SendDocument", send_document("VB-THU-HOI"))
    await ok(client, token, "UpdateStatus", status_update("VB-THU-HOI", "03"))
    # Only the sender may ask for a recall; only the recipient answers it.
    code, _, error = await fault(client, token, "UpdateStatus", status_update("VB-THU-HOI", "13"))
    assert (code, error) == ("soap:Client", "InvalidStatusTransition")
    await ok(client, token, "UpdateStatus", status_update("VB-THU-HOI", "13", actor=PROVINCE))
    code, _, _ = await fault(
        client, token, "UpdateStatus", status_update("VB-THU-HOI", "15", actor=PROVINCE)
    )
    assert code == "soap:Client"
    await ok(client, token, "UpdateStatus", status_update("VB-THU-HOI", "16"))
    # A rejected recall: the copy goes on from where it was (03).
    await ok(client, token, "UpdateStatus", status_update("VB-THU-HOI", "04"))
    await ok(client, token, "UpdateStatus", status_update("VB-THU-HOI", "13", actor=PROVINCE))
    await ok(client, token, "UpdateStatus", status_update("VB-THU-HOI", "15"))
    code, message, _ = await fault(client, token, "UpdateStatus", status_update("VB-THU-HOI", "05"))
    assert code == "soap:Client" and "15" in message
    history = await status_history(client, token, "VB-THU-HOI")
    assert history == ["01", "03", "13", "16", "04", "13", "15"]


async def test_server_fault(client: Client, token: str) -> None:
    for action, body in [
        ("SendDocument", send_document("FAIL-SERVER-001")),
        ("GetDocument", by_id("GetDocument", "FAIL-SERVER-002")),
        ("GetStatus", by_id("GetStatus", "FAIL-SERVER-003")),
        ("UpdateStatus", status_update("FAIL-SERVER-004", "03")),
    ]:
        code, message, error = await fault(client, token, action, body)
        assert (code, error) == ("soap:Server", "ServerError")
        assert message
    assert client.app is not None
    assert client.app[DOCUMENT_EXCHANGE].documents == {}


def header_with(old: str, new: str) -> str:
    header = message_header("VB-LOI")
    assert old in header
    return header.replace(old, new)


SENDER_ID = f"<edXML:OrganId>{PROVINCE}"
RECIPIENT_ID = f"<edXML:OrganId>{CENTRE}"
UNKNOWN_ID = "<edXML:OrganId>000.00.99.H49"
BLANK_SUBJECT = re.sub(
    r"<edXML:Subject>.*</edXML:Subject>",
    "<edXML:Subject> </edXML:Subject>",
    message_header("VB-LOI"),
)


@pytest.mark.parametrize(
    ("header", "error", "named"),
    [
        (header_with(SENDER_ID, "<edXML:OrganId>H49"), "InvalidOrganId", "From/OrganId"),
        (header_with(RECIPIENT_ID, "<edXML:OrganId>000.00.31.h49"), "InvalidOrganId", "To/OrganId"),
        (header_with(RECIPIENT_ID, UNKNOWN_ID), "UnknownOrgan", "000.00.99.H49"),
        (header_with(SENDER_ID, UNKNOWN_ID), "UnknownOrgan", "000.00.99.H49"),
        (
            header_with("<edXML:DocumentId>VB-LOI</edXML:DocumentId>", ""),
            "MissingField",
            "DocumentId",
        ),
        (BLANK_SUBJECT, "MissingField", "Subject"),
        (header_with("2025/11/22<", "22/11/2025<"), "InvalidDate", "PromulgationDate"),
        (message_header("VB-LOI", recipients=(CENTRE, CENTRE)), "DuplicateRecipient", "To"),
        (message_header("VB-LOI", recipients=(PROVINCE,)), "InvalidRecipient", "gửi"),
        (message_header("VB-LOI", recipients=()), "MissingField", "To"),
    ],
)
async def test_invalid_documents_are_client_faults(
    client: Client, token: str, header: str, error: str, named: str
) -> None:
    code, message, got = await fault(
        client, token, "SendDocument", send_document("VB-LOI", header=header)
    )
    assert (code, got) == ("soap:Client", error)
    assert named in message


async def test_invalid_attachments_are_client_faults(client: Client, token: str) -> None:
    bad = send_document("VB-TEP").replace(
        b"<edXML:ContentTransferEncoded>", b"<edXML:ContentTransferEncoded>**"
    )
    code, message, error = await fault(client, token, "SendDocument", bad)
    assert (code, error) == ("soap:Client", "InvalidAttachment")
    assert "base64" in message and "cong-van.pdf" in message

    big = [("a.pdf", os.urandom(5_500_000)), ("b.pdf", os.urandom(5_500_000))]
    code, message, error = await fault(client, token, "SendDocument", send_document("VB-LON", big))
    assert (code, error) == ("soap:Client", "AttachmentTooLarge")
    assert "10 MB" in message

    wrong_format = send_document("VB-DINH-DANG").replace(b">base64<", b">hex<")
    _, message, error = await fault(client, token, "SendDocument", wrong_format)
    assert error == "InvalidAttachment" and "Format" in message

    await ok(client, token, "SendDocument", send_document("VB-TRUNG"))
    _, message, error = await fault(client, token, "SendDocument", send_document("VB-TRUNG"))
    assert error == "DuplicateDocument" and "VB-TRUNG" in message


async def test_attachments_up_to_ten_mib_with_wrapped_base64(client: Client, token: str) -> None:
    content = os.urandom(10 * 1024 * 1024 - 1000)
    body = send_document("VB-10MB", [("lon.pdf", b"")])
    body = body.replace(
        attachment_xml("lon.pdf", b"", 1).encode(),
        attachment_xml("lon.pdf", content, 1, wrap=76).encode(),
    )
    await ok(client, token, "SendDocument", body)
    fetched = await ok(client, token, "GetDocument", by_id("GetDocument", "VB-10MB"))
    encoded = text(
        fetched,
        "edXML:Envelope/edXML:AttachmentEncoded/edXML:Attachment/edXML:ContentTransferEncoded",
        NS,
    )
    assert "\n" in encoded
    assert base64.b64decode("".join(encoded.split())) == content


async def test_request_over_the_size_cap(client: Client, token: str) -> None:
    body = send_document("VB-QUA-LON", [("x.pdf", bytes(13 * 1024 * 1024))])
    await fault(client, token, "SendDocument", body, status=413)


async def test_qcvn_envelope_spelling_is_accepted(client: Client, token: str) -> None:
    content = b"noi dung tep"
    body = soap_envelope(
        "<svc:SendDocument><edXML:edXMLEnvelope><edXML:edXMLHeader>"
        + message_header("000.00.00.H49,2025/11/22,124/UBND-VP")
        + '</edXML:edXMLHeader><edXML:edXMLBody><edXML:edXMLManifest version="1.0"/>'
        "</edXML:edXMLBody></edXML:edXMLEnvelope><edXML:AttachmentEncoded>"
        + attachment_xml("tep.pdf", content, 1)
        + "</edXML:AttachmentEncoded></svc:SendDocument>"
    )
    await ok(client, token, "SendDocument", body)
    fetched = await ok(
        client, token, "GetDocument", by_id("GetDocument", "000.00.00.H49,2025/11/22,124/UBND-VP")
    )
    assert fetched.find("edXML:edXMLEnvelope/edXML:edXMLHeader/edXML:MessageHeader", NS) is not None
    assert (
        base64.b64decode(
            text(
                fetched, "edXML:AttachmentEncoded/edXML:Attachment/edXML:ContentTransferEncoded", NS
            )
        )
        == content
    )


async def test_document_to_several_recipients(client: Client, token: str) -> None:
    await ok(client, token, "SendDocument", send_document("VB-NHIEU", recipients=(CENTRE, JUSTICE)))
    _, message, error = await fault(client, token, "GetDocument", by_id("GetDocument", "VB-NHIEU"))
    assert error == "MissingField" and "OrganId" in message
    await ok(client, token, "GetDocument", by_id("GetDocument", "VB-NHIEU", JUSTICE))
    assert (await ok(client, token, "GetPendingDocuments", pending(JUSTICE))).findall(
        "svc:Document", NS
    ) == []
    assert (
        len(
            (await ok(client, token, "GetPendingDocuments", pending(CENTRE))).findall(
                "svc:Document", NS
            )
        )
        == 1
    )
    _, _, error = await fault(
        client, token, "GetDocument", by_id("GetDocument", "VB-NHIEU", "000.00.45.H49")
    )
    assert error == "NotPermitted"
    await ok(client, token, "UpdateStatus", status_update("VB-NHIEU", "02", actor=JUSTICE))
    # A recall needs every copy recallable; the one rejected at JUSTICE is not.
    _, message, _ = await fault(
        client, token, "UpdateStatus", status_update("VB-NHIEU", "13", actor=PROVINCE)
    )
    assert JUSTICE in message and "02" in message
    result = await ok(client, token, "GetStatus", by_id("GetStatus", "VB-NHIEU"))
    statuses = {
        text(r, "svc:OrganId", NS): text(r, "svc:StatusCode", NS)
        for r in result.findall("svc:Recipient", NS)
    }
    assert statuses == {CENTRE: "01", JUSTICE: "02"}
    _, _, error = await fault(
        client, token, "UpdateStatus", status_update("VB-NHIEU", "03", actor="000.00.45.H49")
    )
    assert error == "NotPermitted"


async def test_status_update_checks(client: Client, token: str) -> None:
    await ok(client, token, "SendDocument", send_document("VB-KIEM-TRA"))
    _, message, error = await fault(
        client, token, "UpdateStatus", status_update("VB-KIEM-TRA", "07")
    )
    assert error == "InvalidStatusCode" and "07" in message
    _, message, error = await fault(
        client,
        token,
        "UpdateStatus",
        status_update("VB-KIEM-TRA", "03", timestamp="22/11/2025 10:00"),
    )
    assert error == "InvalidDate" and "Timestamp" in message
    _, message, error = await fault(
        client, token, "UpdateStatus", status_update("VB-KHONG-CO", "03")
    )
    assert error == "DocumentNotFound" and "VB-KHONG-CO" in message
    wrong_sender = status_update("VB-KIEM-TRA", "03").replace(
        f"<edXML:OrganId>{PROVINCE}</edXML:OrganId><edXML:Code>".encode(),
        f"<edXML:OrganId>{JUSTICE}</edXML:OrganId><edXML:Code>".encode(),
    )
    _, _, error = await fault(client, token, "UpdateStatus", wrong_sender)
    assert error == "InvalidResponseFor"
    _, _, error = await fault(client, token, "GetDocument", by_id("GetDocument", "VB-KHONG-CO"))
    assert error == "DocumentNotFound"
    _, _, error = await fault(client, token, "GetPendingDocuments", pending("000.00.99.H49"))
    assert error == "UnknownOrgan"


@pytest.mark.parametrize(
    ("action", "body", "error"),
    [
        ("DeleteDocument", soap_envelope("<svc:DeleteDocument/>"), "UnknownOperation"),
        ("GetStatus", soap_envelope("<svc:DeleteDocument/>"), "UnknownOperation"),
        ("GetStatus", soap_envelope('<x:GetStatus xmlns:x="urn:khac"/>'), "UnknownOperation"),
        ("DeleteDocument", by_id("GetStatus", "VB-1"), "UnknownOperation"),
        ("GetDocument", by_id("GetStatus", "VB-1"), "SoapActionMismatch"),
        (None, by_id("GetStatus", "VB-1"), "MissingSoapAction"),
        ("GetStatus", b"<khong-phai-soap/>", "MalformedSoap"),
        ("GetStatus", soap_envelope(""), "MalformedSoap"),
        ("GetStatus", b"<soap:Envelope", "MalformedXml"),
        (
            "GetStatus",
            b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + by_id("GetStatus", "VB-1").split(b"?>", 1)[1],
            "MalformedXml",
        ),
    ],
)
async def test_bad_soap_requests_are_client_faults(
    client: Client, token: str, action: str | None, body: bytes, error: str
) -> None:
    code, message, got = await fault(client, token, action, body)
    assert (code, got) == ("soap:Client", error)
    assert message


async def test_soap_version_and_must_understand(client: Client, token: str) -> None:
    soap12 = by_id("GetStatus", "VB-1").replace(
        SOAP_NS.encode(), b"http://www.w3.org/2003/05/soap-envelope"
    )
    code, _, _ = await fault(client, token, "GetStatus", soap12)
    assert code == "soap:VersionMismatch"
    must = by_id("GetStatus", "VB-1").replace(
        b"<soap:Body>",
        b'<soap:Header><x:Ky xmlns:x="urn:ky" soap:mustUnderstand="1"/></soap:Header><soap:Body>',
    )
    code, _, _ = await fault(client, token, "GetStatus", must)
    assert code == "soap:MustUnderstand"


async def test_soap_action_forms(client: Client, token: str) -> None:
    await ok(client, token, "SendDocument", send_document("VB-ACTION"))
    for action in ("GetStatus", '"GetStatus"', f"{SERVICE_NS}#GetStatus", '""'):
        resp = await client.post(
            SOAP,
            data=by_id("GetStatus", "VB-ACTION"),
            headers={
                "Content-Type": "text/xml",
                "SOAPAction": action,
                "Authorization": f"Bearer {token}",
            },
        )
        assert resp.status == 200, action


@pytest.mark.parametrize("token_value", [None, "khong-hop-le"])
async def test_soap_needs_a_token(client: Client, token_value: str | None) -> None:
    code, _, error = await fault(client, token_value, "GetStatus", by_id("GetStatus", "VB-1"), 401)
    assert (code, error) == ("soap:Client", "Unauthenticated")


async def test_soap_needs_text_xml(client: Client, token: str) -> None:
    status, result = await call(
        client, token, "GetStatus", by_id("GetStatus", "VB-1"), "application/soap+xml"
    )
    assert status == 415
    assert text(result, "detail/svc:ErrorCode", NS) == "UnsupportedMediaType"


# === National public service portal: dossier sync ====================================

SYNC = "/dvcqg/v1/ho-so/dong-bo"
DOSSIER = "000.00.31.H49-251122-0001"


def dossier_data(status: int, updated: str, *, note: str | None = None, **change: str) -> str:
    fields = {
        "MaHoSo": DOSSIER,
        "MaTTHC": "1.001193",
        "TenTTHC": "Đăng ký khai sinh",
        "TrangThaiHoSo": str(status),
        "NgayCapNhat": updated,
        "NgayHenTra": "20251126",
        "HoVaTen": "Nguyễn Văn An",
        "SoDinhDanh": "001099012345",
        "SoDienThoai": "0912345678",
        **change,
    }
    owner = "".join(
        f"<{k}>{escape(fields[k])}</{k}>" for k in ("HoVaTen", "SoDinhDanh", "SoDienThoai")
    )
    parts = [f"<{k}>{escape(fields[k])}</{k}>" for k in ("MaHoSo", "MaTTHC", "TenTTHC")]
    parts.append(f"<ChuHoSo>{owner}</ChuHoSo>")
    parts += [
        f"<{k}>{escape(fields[k])}</{k}>" for k in ("TrangThaiHoSo", "NgayCapNhat", "NgayHenTra")
    ]
    if note is not None:
        parts.append(f"<GhiChu>{escape(note)}</GhiChu>")
    return "<HoSo>" + "".join(parts) + "</HoSo>"


def sync_body(
    status: int, updated: str, *, note: str | None = None, **change: Any
) -> dict[str, Any]:
    body_change = {
        k: v
        for k, v in change.items()
        if k in ("maDonVi", "module", "maHoSo", "ngayTiepNhan", "data")
    }
    data_change = {k: v for k, v in change.items() if k not in body_change}
    return {
        "maDonVi": "000.00.31.H49",
        "module": "TTHC",
        "maHoSo": DOSSIER,
        "ngayTiepNhan": "20251122083000",
        "data": dossier_data(status, updated, note=note, **data_change),
    } | body_change


async def sync(client: Client, token: str | None, body: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.post(
        SYNC, data=orjson.dumps(body), headers=headers | {"Content-Type": "application/json"}
    )
    answer = await resp.json()
    assert isinstance(answer, dict)
    return resp.status, answer


async def synced(client: Client, token: str, body: dict[str, Any], error_code: int = 0) -> str:
    status, answer = await sync(client, token, body)
    assert status == 200
    assert answer["error_code"] == error_code, answer
    message = answer["message"]
    assert isinstance(message, str)
    return message


async def test_dossier_lifecycle(client: Client, token: str) -> None:
    status, answer = await sync(client, token, sync_body(1, "20251122083000"))
    assert (status, answer) == (200, {"error_code": 0, "message": "Thành công", "maHoSo": DOSSIER})
    message = await synced(client, token, sync_body(2, "20251122100000"), 301)
    assert "GhiChu" in message
    await synced(
        client, token, sync_body(2, "20251122100000", note="Thiếu bản sao giấy chứng sinh")
    )
    await synced(client, token, sync_body(1, "20251123090000"))
    await synced(client, token, sync_body(3, "20251124090000"))
    await synced(client, token, sync_body(4, "20251126160000"))
    message = await synced(client, token, sync_body(1, "20251127080000"), 302)
    assert "từ 4" in message and "sang 1" in message

    resp = await client.get(
        f"/dvcqg/v1/ho-so/{DOSSIER}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200
    held = await resp.json()
    assert (held["error_code"], held["maHoSo"]) == (0, DOSSIER)
    record = held["hoSo"]
    assert record["trangThaiHoSo"] == 4
    assert (record["maDonVi"], record["maTTHC"], record["ngayTiepNhan"]) == (
        "000.00.31.H49",
        "1.001193",
        "20251122083000",
    )
    assert record["chuHoSo"] == {
        "hoVaTen": "Nguyễn Văn An",
        "soDinhDanh": "001099012345",
        "soDienThoai": "0912345678",
    }
    history = record["lichSu"]
    assert [h["trangThaiHoSo"] for h in history] == [1, 2, 1, 3, 4]
    assert history[1]["ghiChu"] == "Thiếu bản sao giấy chứng sinh"
    assert history[1]["ngayCapNhat"] == "20251122100000"
    assert history[0]["data"].startswith("<HoSo><MaHoSo>")
    assert all(re.fullmatch(r"\d{14}", h["thoiGianDongBo"]) for h in history)


@pytest.mark.parametrize(
    ("moves", "refused"),
    [((), 4), ((3,), 1), ((3,), 2), ((2,), 4), ((3, 4), 3), ((3, 4), 2)],
)
async def test_dossier_illegal_transitions(
    client: Client, token: str, moves: tuple[int, ...], refused: int
) -> None:
    await synced(client, token, sync_body(1, "20251122083000"))
    for i, move in enumerate(moves):
        await synced(client, token, sync_body(move, f"2025112309{i:02}00", note="Bổ sung"))
    await synced(client, token, sync_body(refused, "20251125090000", note="x"), 302)


async def test_dossier_retry_is_harmless(client: Client, token: str) -> None:
    await synced(client, token, sync_body(1, "20251122083000"))
    await synced(client, token, sync_body(1, "20251122083000"))
    await synced(client, token, sync_body(1, "20251122090000"), 302)
    assert client.app is not None
    assert len(client.app[DOSSIER_PORTAL].dossiers[DOSSIER]["lichSu"]) == 1


@pytest.mark.parametrize("status", [2, 3, 4])
async def test_dossier_update_before_first_sync(client: Client, token: str, status: int) -> None:
    message = await synced(client, token, sync_body(status, "20251122083000", note="x"), 201)
    assert DOSSIER in message


@pytest.mark.parametrize(
    "agency", ["000.00.99.H49", "000.00.31.h49", "000-00-31-H49", "A" * 36 + ".1", ""]
)
async def test_dossier_wrong_agency(client: Client, token: str, agency: str) -> None:
    status, answer = await sync(client, token, sync_body(1, "20251122083000", maDonVi=agency))
    assert status == 200
    assert answer["error_code"] == (301 if agency == "" else 106)
    assert "maDonVi" in answer["message"] or agency in answer["message"]


async def test_dossier_update_from_another_agency(client: Client, token: str) -> None:
    await synced(client, token, sync_body(1, "20251122083000"))
    message = await synced(
        client, token, sync_body(3, "20251123083000", maDonVi="000.00.12.H49"), 106
    )
    assert "000.00.31.H49" in message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"module": "HSCV"}, "module"),
        ({"maHoSo": "HS-0001"}, "maHoSo"),
        ({"maHoSo": "000.00.31.H49-251322-0001"}, "maHoSo"),
        ({"ngayTiepNhan": "2025-11-22 08:30"}, "ngayTiepNhan"),
        ({"ngayTiepNhan": "20251122250000"}, "ngayTiepNhan"),
        ({"data": ""}, "data"),
        ({"data": "<HoSo><MaHoSo>"}, "data"),
        ({"data": '<!DOCTYPE HoSo [<!ENTITY x "y">]><HoSo/>'}, "DOCTYPE"),
        ({"data": "<HồSơ/>"}, "HoSo"),
        ({"MaHoSo": "000.00.31.H49-251122-0002"}, "MaHoSo"),
        ({"MaTTHC": ""}, "MaTTHC"),
        ({"MaTTHC": "khai-sinh"}, "MaTTHC"),
        ({"TenTTHC": ""}, "TenTTHC"),
        ({"HoVaTen": ""}, "HoVaTen"),
        ({"SoDinhDanh": "00109901234"}, "SoDinhDanh"),
        ({"SoDienThoai": "12345"}, "SoDienThoai"),
        ({"TrangThaiHoSo": "5"}, "TrangThaiHoSo"),
        ({"NgayCapNhat": "22/11/2025"}, "NgayCapNhat"),
        ({"NgayHenTra": "20251131"}, "NgayHenTra"),
    ],
)
async def test_dossier_invalid_data(
    client: Client, token: str, change: dict[str, str], named: str
) -> None:
    message = await synced(client, token, sync_body(1, "20251122083000", **change), 301)
    assert named in message


async def test_dossier_body_must_be_a_json_object(client: Client, token: str) -> None:
    for raw in (b"not json", b"[1]"):
        resp = await client.post(SYNC, data=raw, headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200
        answer = await resp.json()
        assert (answer["error_code"], answer["maHoSo"]) == (301, None)


@pytest.mark.parametrize("token_value", [None, "khong-hop-le"])
async def test_dossier_needs_a_token(client: Client, token_value: str | None) -> None:
    status, answer = await sync(client, token_value, sync_body(1, "20251122083000"))
    assert status == 401
    assert answer["error_code"] == 100
    resp = await client.get(f"/dvcqg/v1/ho-so/{DOSSIER}")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_dossier_not_held(client: Client, token: str) -> None:
    resp = await client.get(
        f"/dvcqg/v1/ho-so/{DOSSIER}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200
    answer = await resp.json()
    assert answer["error_code"] == 201
    assert "hoSo" not in answer
