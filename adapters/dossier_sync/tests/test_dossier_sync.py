"""dossier_sync: the one-stop-shop system's dossier status changes reach the national
public service portal (simulator/dossier.py) through the running gateway, every portal
outcome comes back as a canonical answer or problem, and the conversion loses nothing the
canonical schema requires."""

from __future__ import annotations

import copy
import shutil
import string
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from multidict import CIMultiDict
from pydantic import ValidationError

from adapters.dossier_sync import DossierSyncAdapter, DossierSyncConfig
from adapters.dossier_sync.portal import vietnam_time
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet, ServiceSpec, load_policy_dir
from gateway.conversion.mapping import vnencoding
from gateway.conversion.mapping.engine import Context
from gateway.core.messages import OutboundRequest, UpstreamResponse
from gateway.core.problems import Problem
from gateway.edge.reload import reload_config
from simulator.dossier import DOSSIER_PORTAL, DossierPortal
from tests.conftest import REPO, Harness

POLICY: dict[str, Any] = yaml.safe_load(
    (REPO / "policies" / "dossier-sync.yaml").read_text(encoding="utf-8")
)
CODES: dict[str, str] = yaml.safe_load(
    (REPO / "adapters" / "dossier_sync" / "codes" / "status.yaml").read_text(encoding="utf-8")
)
PROVIDER = "000.00.00.G25"
AGENCY = "000.00.31.H49"
OFFICER = "CB-0042"
NAME = "Nguyễn Thị Hường"
NOTE = "Bổ sung bản sao giấy chứng nhận quyền sử dụng đất có chứng thực"
PROCEDURE = {"code": "1.001193", "name": "Cấp giấy phép xây dựng nhà ở riêng lẻ (mẫu)"}
PROBLEM_JSON = "application/problem+json"
VIETNAM = timezone(timedelta(hours=7))


def service(code: str, **changes: Any) -> dict[str, Any]:
    """The service of policies/dossier-sync.yaml, or a variant of it under another code."""
    svc: dict[str, Any] = copy.deepcopy(POLICY["services"][0])
    config = {**svc.get("adapter_config", {}), **changes.pop("adapter_config", {})}
    # None removes a setting of the file's service.
    config = {k: v for k, v in config.items() if v is not None}
    svc.update(code=code, adapter_config=config, **changes)
    return svc


SERVICES = [
    service("dvcqg-ho-so"),  # exactly as the policy file declares it
    service("dvcqg-ho-so-tcvn3", adapter_config={"legacy_input": "tcvn3"}),
    service("dvcqg-ho-so-tcvn3-ra", adapter_config={"legacy_output": "tcvn3"}),
    service("dvcqg-ho-so-khong-mac-dinh", adapter_config={"agency_code": None}),
    service("dvcqg-ho-so-sai-module", adapter_config={"module": "HCC"}),
    # The portal without the gateway's national token: the portal answers 401.
    service("dvcqg-ho-so-khong-token", upstream="sim-open"),
    # Something that answers 200 but is not the portal.
    service("dvcqg-ho-so-khong-phai-cong", upstream="sim-open", upstream_path="/_sim/echo"),
]


class Portal:
    """The dossier sync service as the one-stop-shop system calls it."""

    def __init__(self, gateway: Harness, token: str) -> None:
        self.gateway = gateway
        self.headers = {"Authorization": f"Bearer {token}", "X-Officer-Id": OFFICER}
        self.store: DossierPortal = gateway.simulator[DOSSIER_PORTAL]

    async def post(
        self, change: dict[str, Any], code: str = "dvcqg-ho-so", **headers: str
    ) -> httpx.Response:
        return await self.gateway.http.post(
            f"/r1/{PROVIDER}/{code}/v1/ho-so/trang-thai",
            content=orjson.dumps(change),
            headers={**self.headers, "Content-Type": "application/json", **headers},
        )

    async def get(self, dossier_id: str, code: str = "dvcqg-ho-so") -> httpx.Response:
        return await self.gateway.http.get(
            f"/r1/{PROVIDER}/{code}/v1/ho-so/{dossier_id}", headers=self.headers
        )

    def hoso(self, dossier_id: str, entry: int = -1) -> etree._Element:
        """The HoSo XML the portal received in one sync of a dossier."""
        data = self.store.dossiers[dossier_id]["lichSu"][entry]["data"]
        return etree.fromstring(data.encode("utf-8"))

    async def audited(
        self, r: httpx.Response, error: str | None = None, *, reached: bool = True
    ) -> None:
        [record] = await self.gateway.audit(r.headers["x-request-id"])
        assert record.status == r.status_code
        assert record.provider_code == PROVIDER
        assert record.service_code is not None and record.service_code.startswith("dvcqg-ho-so")
        assert record.client_code == "motcua"
        assert record.officer_id == OFFICER
        assert record.error_type == error
        assert (record.upstream_status is not None) == reached


@pytest.fixture
async def portal(gateway: Harness) -> Portal:
    def publish(doc: dict[str, Any]) -> None:
        doc["agencies"].extend(POLICY["agencies"])
        doc["services"].extend(SERVICES)

    async with gateway.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, publish, actor="test", source="test")
    await reload_config(gateway.state)
    return Portal(gateway, await gateway.token("motcua"))


def change(number: int = 1, status: str = "received", **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "dossierId": f"{AGENCY}-251122-{number:04d}",
        "agencyCode": AGENCY,
        "procedure": dict(PROCEDURE),
        "receivedAt": "2025-11-22T08:30:00+07:00",
        "applicant": {"fullName": NAME, "personalId": "001199012345", "phone": "0912345678"},
        "status": status,
        "updatedAt": "2025-11-22T08:30:00+07:00",
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:lgsp:problem:{slug}"
    return body


# -- end to end, through the running gateway ----------------------------------------------------


async def test_a_dossier_goes_through_every_status_and_reads_back_canonical(
    portal: Portal,
) -> None:
    dossier = f"{AGENCY}-251122-0001"
    # Received at 08:30 Vietnam time, told in UTC with a fraction of a second.
    first = change(receivedAt="2025-11-22T01:30:00.750Z", updatedAt="2025-11-22T01:30:00Z")
    r = await portal.post(first)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json() == {"dossierId": dossier, "status": "received", "synced": True}
    await portal.audited(r)

    # What the portal received: its JSON, and the HoSo XML in Vietnam time.
    record = portal.store.dossiers[dossier]
    assert (record["maDonVi"], record["module"], record["ngayTiepNhan"]) == (
        AGENCY,
        "TTHC",
        "20251122083000",
    )
    hoso = portal.hoso(dossier)
    assert [c.tag for c in hoso] == [
        "MaHoSo",
        "MaTTHC",
        "TenTTHC",
        "ChuHoSo",
        "TrangThaiHoSo",
        "NgayCapNhat",
    ]
    assert hoso.findtext("ChuHoSo/HoVaTen") == NAME
    assert hoso.findtext("TrangThaiHoSo") == "1"
    assert hoso.findtext("NgayCapNhat") == "20251122083000"

    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("more_documents_needed", "2025-11-23T09:00:00+07:00", {"note": NOTE}),
        ("received", "2025-11-25T02:15:30Z", {}),  # resubmitted
        ("eligible", "2025-11-25T10:00:00+07:00", {"dueDate": "2025-12-05"}),
        ("completed", "2025-12-04T16:45:00+07:00", {}),
    ]
    for status, when, extra in steps:
        r = await portal.post(change(status=status, updatedAt=when, **extra))
        assert r.status_code == 200, r.text
        assert r.json() == {"dossierId": dossier, "status": status, "synced": True}
        await portal.audited(r)
    assert portal.hoso(dossier, 1).findtext("GhiChu") == NOTE
    assert portal.hoso(dossier, 3).findtext("NgayHenTra") == "20251205"

    # A retried change (same status and time) is harmless: no new history entry.
    r = await portal.post(change(status="completed", updatedAt="2025-12-04T16:45:00+07:00"))
    assert r.status_code == 200 and r.json()["synced"] is True
    assert len(portal.store.dossiers[dossier]["lichSu"]) == 5

    r = await portal.get(dossier)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    view = r.json()
    await portal.audited(r)
    assert view["dossierId"] == dossier
    assert view["status"] == "completed"
    assert view["synced"] is True
    assert view["agencyCode"] == AGENCY
    assert view["procedure"] == PROCEDURE
    assert view["applicant"] == {
        "fullName": NAME,
        "personalId": "001199012345",
        "phone": "0912345678",
    }
    assert view["receivedAt"] == "2025-11-22T08:30:00+07:00"
    assert view["updatedAt"] == "2025-12-04T16:45:00+07:00"
    assert [h["status"] for h in view["history"]] == [
        "received",
        "more_documents_needed",
        "received",
        "eligible",
        "completed",
    ]
    assert [h["updatedAt"] for h in view["history"]] == [
        "2025-11-22T08:30:00+07:00",
        "2025-11-23T09:00:00+07:00",
        "2025-11-25T09:15:30+07:00",
        "2025-11-25T10:00:00+07:00",
        "2025-12-04T16:45:00+07:00",
    ]
    assert view["history"][1]["note"] == NOTE
    assert view["history"][3]["dueDate"] == "2025-12-05"
    assert all(h["syncedAt"].endswith("+07:00") for h in view["history"])


async def test_the_portals_refusals_become_canonical_problems(portal: Portal) -> None:
    # 201: the first change of a dossier must be "received".
    r = await portal.post(change(7, "eligible"))
    body = problem(r, 404, "no-such-record")  # the portal answered; not a wrong address
    assert f"{AGENCY}-251122-0007" in body["detail"]
    assert "send status received first" in body["detail"]
    assert body["portal_error"]["error_code"] == 201
    await portal.audited(r, "no-such-record")
    assert portal.store.dossiers == {}

    # 302: received -> completed skips a step; the answer names both statuses.
    assert (await portal.post(change(8))).status_code == 200
    r = await portal.post(change(8, "completed", updatedAt="2025-11-23T08:00:00+07:00"))
    body = problem(r, 409, "conflict")
    assert (body["current_status"], body["requested_status"]) == ("received", "completed")
    assert "from received to completed" in body["detail"]
    assert body["portal_error"]["error_code"] == 302
    await portal.audited(r, "conflict")

    # 106: an agency the portal does not know, then one that did not sync the dossier.
    r = await portal.post(change(9, agencyCode="000.00.99.H49"))
    body = problem(r, 400, "invalid-message")
    assert "000.00.99.H49" in body["detail"]
    assert body["errors"][0]["pointer"] == "/agencyCode"
    assert body["portal_error"]["error_code"] == 106
    await portal.audited(r, "invalid-message")
    r = await portal.post(change(8, "eligible", agencyCode="000.00.12.H49"))
    body = problem(r, 400, "invalid-message")
    assert body["errors"][0]["pointer"] == "/agencyCode"
    assert "000.00.12.H49" in body["detail"]

    # 301: the portal's field, named as the canonical field.
    no_id = change(10, applicant={"fullName": NAME})
    no_name = change(11, procedure={"code": "1.001193"})
    long_note = change(12, note="Thiếu giấy tờ. " * 150)
    bad_day = change(dossierId=f"{AGENCY}-251340-0001")
    bad_due = change(13, dueDate="2025-02-30")
    for message, pointer, field in [
        (no_id, "/applicant/personalId", "HoSo/ChuHoSo/SoDinhDanh"),
        (no_name, "/procedure/name", "HoSo/TenTTHC"),
        (long_note, "/note", "HoSo/GhiChu"),
        (bad_day, "/dossierId", "maHoSo"),
        (bad_due, "/dueDate", "HoSo/NgayHenTra"),
    ]:
        r = await portal.post(message)
        body = problem(r, 400, "invalid-message")
        assert body["errors"][0]["pointer"] == pointer, body
        assert body["detail"].startswith(pointer)
        assert body["portal_error"] == {**body["portal_error"], "error_code": 301, "field": field}
        await portal.audited(r, "invalid-message")
    assert set(portal.store.dossiers) == {f"{AGENCY}-251122-0008"}


async def test_messages_refused_before_they_reach_the_portal(portal: Portal) -> None:
    refused = [
        # The schema: a request for more documents says which.
        change(status="more_documents_needed"),
        # A datetime without its offset names no instant.
        change(receivedAt="2025-11-22T08:30:00"),
        change(status="closed"),
        {**change(), "unknown": 1},
    ]
    for message in refused:
        r = await portal.post(message)
        body = problem(r, 400, "invalid-message")
        assert body["errors"], body
        await portal.audited(r, "invalid-message", reached=False)
    # Text XML cannot carry: the adapter refuses it, naming the canonical field.
    r = await portal.post(change(applicant={"fullName": "Nguyễn\x01An"}))
    body = problem(r, 400, "invalid-message")
    assert body["errors"][0]["pointer"] == "/applicant/fullName"
    await portal.audited(r, "invalid-message", reached=False)
    # Every change names the officer.
    r = await portal.gateway.http.post(
        f"/r1/{PROVIDER}/dvcqg-ho-so/v1/ho-so/trang-thai",
        content=orjson.dumps(change()),
        headers={"Authorization": portal.headers["Authorization"]},
    )
    problem(r, 400, "missing-accountability-fields")
    assert portal.store.dossiers == {}


async def test_reading_a_dossier_back(portal: Portal) -> None:
    r = await portal.get(f"{AGENCY}-251122-0404")
    body = problem(r, 404, "no-such-record")
    assert f"{AGENCY}-251122-0404" in body["detail"]
    await portal.audited(r, "no-such-record")

    # Not a dossier code: the adapter refuses it before the portal is called.
    r = await portal.get("ho-so-cua-toi")
    body = problem(r, 400, "invalid-path")
    assert "ho-so-cua-toi" in body["detail"]
    await portal.audited(r, "invalid-path", reached=False)
    # Nor can a path climb out of the portal's prefix (the gateway's routing refuses it).
    problem(await portal.get("..%2F..%2Foauth2"), 400, "invalid-path")

    # Systems the policy does not name are refused, and the refusal is audited.
    hotich = await portal.gateway.token("hotich")
    r = await portal.gateway.http.get(
        f"/r1/{PROVIDER}/dvcqg-ho-so/v1/ho-so/{AGENCY}-251122-0001",
        headers={"Authorization": f"Bearer {hotich}", "X-Officer-Id": OFFICER},
    )
    problem(r, 403, "access-denied")
    [record] = await portal.gateway.audit(r.headers["x-request-id"])
    assert (record.client_code, record.status, record.upstream_status) == ("hotich", 403, None)


async def test_tcvn3_from_a_district_reaches_the_portal_as_unicode(portal: Portal) -> None:
    legacy_name = vnencoding.encode(NAME, "tcvn3")
    legacy_note = vnencoding.encode(NOTE, "tcvn3")
    assert legacy_name != NAME  # "NguyÔn ThÞ H­êng": what the old system holds
    dossier = f"{AGENCY}-251122-0020"
    r = await portal.post(
        change(20, applicant={"fullName": legacy_name, "personalId": "001199012345"}),
        "dvcqg-ho-so-tcvn3",
    )
    assert r.status_code == 200, r.text
    r = await portal.post(
        change(20, "more_documents_needed", note=legacy_note, updatedAt="2025-11-23T08:00:00Z"),
        "dvcqg-ho-so-tcvn3",
    )
    assert r.status_code == 200, r.text
    await portal.audited(r)

    # Read back from the portal through the gateway: Unicode NFC.
    view = (await portal.get(dossier)).json()
    assert view["applicant"]["fullName"] == NAME
    assert unicodedata.is_normalized("NFC", view["applicant"]["fullName"])
    assert view["history"][-1]["note"] == NOTE
    assert portal.hoso(dossier).findtext("ChuHoSo/HoVaTen") == NAME

    # A service configured to answer in TCVN3 gives the old system its own text back.
    r = await portal.get(dossier, "dvcqg-ho-so-tcvn3-ra")
    assert r.status_code == 200, r.text
    assert r.json()["applicant"]["fullName"] == legacy_name
    assert r.json()["history"][-1]["note"] == legacy_note

    # Without legacy_input, decomposed Unicode (NFD) is still normalised to NFC.
    nfd = unicodedata.normalize("NFD", "Trần Văn Đức")
    assert nfd != "Trần Văn Đức"
    r = await portal.post(change(21, applicant={"fullName": nfd, "personalId": "001199012346"}))
    assert r.status_code == 200, r.text
    assert portal.hoso(f"{AGENCY}-251122-0021").findtext("ChuHoSo/HoVaTen") == "Trần Văn Đức"


async def test_optional_fields_may_be_left_out(portal: Portal) -> None:
    # No agencyCode (the service's default agency), phone, note or due date.
    bare = change(30, applicant={"fullName": NAME, "personalId": "001199012345"})
    del bare["agencyCode"]
    r = await portal.post(bare)
    assert r.status_code == 200, r.text
    assert portal.store.dossiers[f"{AGENCY}-251122-0030"]["maDonVi"] == AGENCY
    hoso = portal.hoso(f"{AGENCY}-251122-0030")
    assert hoso.find("ChuHoSo/SoDienThoai") is None and hoso.find("GhiChu") is None
    view = (await portal.get(f"{AGENCY}-251122-0030")).json()
    assert view["applicant"] == {"fullName": NAME, "personalId": "001199012345"}
    assert "dueDate" not in view and "note" not in view["history"][0]

    # A service without a default agency needs the change to name one.
    r = await portal.post(bare, "dvcqg-ho-so-khong-mac-dinh")
    body = problem(r, 400, "invalid-message")
    assert body["errors"][0]["pointer"] == "/agencyCode"
    assert "adapter_config.agency_code" in body["detail"]
    await portal.audited(r, "invalid-message", reached=False)


async def test_failures_on_the_national_side(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the national platform's token the portal answers 401 (error_code 100).
    r = await portal.post(change(40), "dvcqg-ho-so-khong-token")
    body = problem(r, 502, "upstream-authentication-failed")
    assert "error_code 100" in body["detail"]
    await portal.audited(r, "upstream-authentication-failed")

    # An answer that is not the portal's.
    r = await portal.post(change(41), "dvcqg-ho-so-khong-phai-cong")
    problem(r, 502, "upstream-bad-response")
    await portal.audited(r, "upstream-bad-response")

    # A module the portal refuses is the service's configuration, not the caller's fault.
    r = await portal.post(change(42), "dvcqg-ho-so-sai-module")
    body = problem(r, 500, "internal-error")
    assert "adapter_config.module" in body["detail"]
    assert body["side"] == "gateway"
    await portal.audited(r, "internal-error")

    # The portal failing (HTTP 500).
    def broken(request: object) -> bool:
        raise RuntimeError("the portal's database is down")

    monkeypatch.setattr(portal.store, "is_authorised", broken)
    r = await portal.post(change(43))
    body = problem(r, 502, "upstream-bad-response")
    assert "HTTP 500" in body["detail"]
    await portal.audited(r, "upstream-bad-response")
    assert portal.store.dossiers == {}


# -- the adapter on its own -------------------------------------------------------------------

ADAPTER = DossierSyncAdapter(DossierSyncConfig())
CONTEXT = Context(request_id="test", client="motcua", client_agency=AGENCY, officer=OFFICER)


def outbound(method: str, path: str, body: bytes = b"") -> OutboundRequest:
    return OutboundRequest(method, path, "", CIMultiDict(), body)


def portal_answer(payload: dict[str, Any], status: int = 200) -> UpstreamResponse:
    return UpstreamResponse(status, CIMultiDict(), orjson.dumps(payload), 1.0)


def test_requests_take_the_portals_form() -> None:
    sent = ADAPTER.request(outbound("POST", "/ho-so/trang-thai", orjson.dumps(change())), CONTEXT)
    assert (sent.method, sent.path, sent.query) == ("POST", "/ho-so/dong-bo", "")
    assert sent.headers["Content-Type"] == "application/json; charset=utf-8"
    message = orjson.loads(sent.body)
    assert list(message) == ["maDonVi", "module", "maHoSo", "ngayTiepNhan", "data"]
    assert message["data"].startswith("<HoSo><MaHoSo>000.00.31.H49-251122-0001</MaHoSo>")

    got = ADAPTER.request(outbound("GET", f"/ho-so/{AGENCY}-251122-0001"), CONTEXT)
    assert (got.method, got.path, got.body) == ("GET", f"/ho-so/{AGENCY}-251122-0001", b"")
    assert "Content-Type" not in got.headers

    for method, path, status in [
        ("PUT", "/ho-so/trang-thai", 405),
        ("DELETE", f"/ho-so/{AGENCY}-251122-0001", 405),
        ("POST", "/ho-so/xoa", 405),
        ("GET", "/thu-tuc", 404),
        ("GET", "/ho-so/abc", 400),
    ]:
        with pytest.raises(Problem) as refused:
            ADAPTER.request(outbound(method, path), CONTEXT)
        assert refused.value.status == status, (method, path)


@pytest.mark.parametrize(
    ("message", "pointer"),
    [
        (
            "Dữ liệu không hợp lệ: thiếu trường HoSo/ChuHoSo/SoDinhDanh trong data",
            "/applicant/personalId",
        ),
        ("Dữ liệu không hợp lệ: HoSo/ChuHoSo/SoDienThoai '12' không hợp lệ", "/applicant/phone"),
        (
            "Dữ liệu không hợp lệ: trường HoSo/ChuHoSo/HoVaTen vượt quá 100 ký tự",
            "/applicant/fullName",
        ),
        (
            "Dữ liệu không hợp lệ: HoSo/MaTTHC 'x' không đúng định dạng mã thủ tục",
            "/procedure/code",
        ),
        ("Dữ liệu không hợp lệ: HoSo/GhiChu bắt buộc khi TrangThaiHoSo là 2", "/note"),
        ("Dữ liệu không hợp lệ: HoSo/TrangThaiHoSo '9' phải là 1, 2, 3 hoặc 4", "/status"),
        ("Dữ liệu không hợp lệ: trường HoSo/NgayCapNhat phải có dạng yyyyMMddHHmmss", "/updatedAt"),
        ("Dữ liệu không hợp lệ: trường ngayTiepNhan phải có dạng yyyyMMddHHmmss", "/receivedAt"),
        ("Dữ liệu không hợp lệ: trường maHoSo 'X' có ngày yyMMdd không hợp lệ", "/dossierId"),
        ("Dữ liệu không hợp lệ: thiếu trường NgayHenTra", "/dueDate"),
        ("Dữ liệu không hợp lệ: trường data: the document is empty", None),
    ],
)
def test_the_field_the_portal_refuses_is_named_canonically(
    message: str, pointer: str | None
) -> None:
    sent = ADAPTER.request(outbound("POST", "/ho-so/trang-thai", orjson.dumps(change())), CONTEXT)
    with pytest.raises(Problem) as refused:
        ADAPTER.response(portal_answer({"error_code": 301, "message": message}), sent, CONTEXT)
    assert refused.value.status == 400
    errors = refused.value.extensions.get("errors")
    assert (errors[0]["pointer"] if errors else None) == pointer
    assert message in refused.value.detail


def test_portal_answers_that_make_no_sense_are_502() -> None:
    sent = ADAPTER.request(outbound("POST", "/ho-so/trang-thai", orjson.dumps(change())), CONTEXT)
    for answer in [
        portal_answer({"error_code": 999, "message": "Lỗi hệ thống"}),
        portal_answer({"error_code": "0"}),
        portal_answer({"error_code": 0, "maHoSo": "000.00.31.H49-251122-9999"}),
        portal_answer({"error_code": 0}, status=503),
        UpstreamResponse(200, CIMultiDict(), b"<html>", 1.0),
    ]:
        with pytest.raises(Problem) as refused:
            ADAPTER.response(answer, sent, CONTEXT)
        assert refused.value.ptype.slug == "upstream-bad-response"
    got = ADAPTER.request(outbound("GET", f"/ho-so/{AGENCY}-251122-0001"), CONTEXT)
    with pytest.raises(Problem) as refused:
        ADAPTER.response(portal_answer({"error_code": 0, "hoSo": None}), got, CONTEXT)
    assert refused.value.ptype.slug == "upstream-bad-response"


def test_datetimes_become_vietnam_time_to_the_second() -> None:
    assert vietnam_time("2025-11-22T01:30:00Z", "/x") == "2025-11-22T08:30:00+07:00"
    assert vietnam_time("2025-11-21T20:00:59.999-05:00", "/x") == "2025-11-22T08:00:59+07:00"
    assert vietnam_time("2025-12-31T17:00:00+00:00", "/x") == "2026-01-01T00:00:00+07:00"
    assert vietnam_time("2025-11-22T08:30:00+07:00", "/x") == "2025-11-22T08:30:00+07:00"
    for bad in ["2025-11-22T08:30:00", "2025-11-22", "hôm qua", 20251122]:
        with pytest.raises(Problem) as refused:
            vietnam_time(bad, "/receivedAt")
        assert refused.value.detail.startswith("/receivedAt")


# -- round trip: canonical -> portal JSON + HoSo XML -> canonical ---------------------------

VIETNAMESE = "ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
LETTERS = VIETNAMESE + VIETNAMESE.upper() + string.ascii_letters
word = st.text(alphabet=LETTERS, min_size=1, max_size=8)
names = st.lists(word, min_size=1, max_size=5).map(" ".join)
texts = st.lists(
    st.text(alphabet=LETTERS + string.digits + ",.;:()/-<>&'\"", min_size=1, max_size=12),
    min_size=1,
    max_size=8,
).map(" ".join)
offsets = st.sampled_from(
    [timezone(timedelta(minutes=m)) for m in (-720, -300, -210, 0, 330, 345, 420, 540, 840)]
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2098, 12, 30), timezones=offsets
)
agencies = st.sampled_from(["000.00.31.H49", "000.00.12.H49", "000.00.45.H49", "H49.12"])
dossier_ids = st.builds(
    lambda agency, day, n: f"{agency}-{day:%y%m%d}-{n}",
    agencies,
    st.dates(min_value=datetime(2000, 1, 1).date(), max_value=datetime(2099, 12, 31).date()),
    st.from_regex(r"[0-9]{4,6}", fullmatch=True),
)
changes = st.fixed_dictionaries(
    {
        "dossierId": dossier_ids,
        "agencyCode": agencies,
        "procedure": st.fixed_dictionaries(
            {"code": st.from_regex(r"[0-9]{1,2}\.[0-9]{6}", fullmatch=True)},
            optional={"name": texts},
        ),
        "receivedAt": moments,
        "applicant": st.fixed_dictionaries(
            {"fullName": names},
            optional={
                "personalId": st.from_regex(r"[0-9]{12}", fullmatch=True),
                "phone": st.from_regex(r"(0|\+84)[0-9]{9,10}", fullmatch=True),
            },
        ),
        "status": st.sampled_from(sorted(CODES)),
        "updatedAt": moments,
    },
    optional={
        "note": texts,
        "dueDate": st.dates(
            min_value=datetime(2000, 1, 1).date(), max_value=datetime(2099, 12, 31).date()
        ),
    },
)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes, st.booleans())
def test_round_trip_loses_nothing_the_schema_requires(
    generated: dict[str, Any], decomposed: bool
) -> None:
    canonical = {
        **generated,
        "receivedAt": generated["receivedAt"].isoformat(),
        "updatedAt": generated["updatedAt"].isoformat(),
    }
    if "dueDate" in generated:
        canonical["dueDate"] = generated["dueDate"].isoformat()
    sent = canonical
    if decomposed:  # as some systems send it: the adapter hands the portal NFC
        sent = orjson.loads(unicodedata.normalize("NFD", orjson.dumps(canonical).decode()))
    request = ADAPTER.request(outbound("POST", "/ho-so/trang-thai", orjson.dumps(sent)), CONTEXT)
    message = orjson.loads(request.body)
    # The portal's own form: JSON fields and a HoSo document it can parse.
    hoso = etree.fromstring(message["data"].encode("utf-8"))
    assert hoso.tag == "HoSo" and hoso.findtext("MaHoSo") == message["maHoSo"]
    assert hoso.findtext("TrangThaiHoSo") == CODES[canonical["status"]]
    received = generated["receivedAt"].astimezone(VIETNAM)
    assert message["ngayTiepNhan"] == f"{received:%Y%m%d%H%M%S}"

    back = ADAPTER.from_portal(message)
    assert back["dossierId"] == canonical["dossierId"]
    assert back["agencyCode"] == canonical["agencyCode"]
    assert back["status"] == canonical["status"]
    for name in ("receivedAt", "updatedAt"):
        assert back[name].endswith("+07:00")
        assert _instant(back[name]) == generated[name].replace(microsecond=0).astimezone(UTC)
    assert back["procedure"] == canonical["procedure"]
    assert back["applicant"] == canonical["applicant"]
    assert unicodedata.is_normalized("NFC", back["applicant"]["fullName"])
    assert back.get("note") == canonical.get("note")
    assert back.get("dueDate") == canonical.get("dueDate")
    assert set(back) == set(canonical)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"agency_code": "không phải mã"}, "adapter_config.agency_code"),
        ({"module": "tthc thường"}, "adapter_config.module"),
        ({"legacy_input": "utf-7"}, "adapter_config.legacy_input"),
        ({"legacy_output": "windows-1258"}, "adapter_config.legacy_output"),
        ({"agency": "000.00.31.H49"}, "adapter_config.agency"),
    ],
)
def test_a_bad_adapter_config_names_its_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as failed:
        ServiceSpec.model_validate(service("dvcqg-ho-so", adapter_config=config))
    assert field in str(failed.value)


def test_the_policy_file_loads_with_the_provinces(tmp_path: Path) -> None:
    for name in ("province.yaml", "population.yaml", "dossier-sync.yaml"):
        shutil.copy(REPO / "policies" / name, tmp_path / name)
    policy: PolicySet = load_policy_dir(tmp_path)
    [svc] = [s for s in policy.services if s.code == "dvcqg-ho-so"]
    assert (svc.provider, svc.version, svc.upstream, svc.upstream_path) == (
        PROVIDER,
        "v1",
        "ndxp",
        "/dvcqg/v1",
    )
    assert svc.adapter == "dossier_sync" and svc.require == ["officer"]
    assert svc.schemas.request is not None and svc.schemas.response is not None
    assert (svc.schemas.request.subject, svc.schemas.response.subject) == (
        "dossiers.status-change",
        "dossiers.sync-result",
    )
    assert [(a.client, a.method, a.path) for a in svc.access] == [
        ("motcua", "POST", "/ho-so/trang-thai"),
        ("motcua", "GET", "/ho-so/*"),
    ]
    assert any(a.code == PROVIDER for a in policy.agencies)
