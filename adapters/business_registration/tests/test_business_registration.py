"""The business registration adapter: canonical JSON enterprise lookups through the running
gateway to the simulated national database (XML) and back, every national outcome, legacy
text, the mapping's round trip, and configuration errors."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from pydantic import ValidationError

from adapters.business_registration import BusinessRegistration, BusinessRegistrationConfig
from adapters.business_registration.lookup import LOOKUP_PATH
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet, ServiceSpec
from gateway.conversion.catalogue import build_adapter
from gateway.conversion.mapping import vnencoding
from gateway.conversion.mapping.engine import map_strings
from gateway.conversion.mapping.xml import data_to_xml, to_bytes, xml_to_data
from gateway.conversion.sdk import Context
from gateway.core.messages import OutboundRequest, UpstreamResponse
from gateway.core.problems import Problem
from gateway.core.safexml import parse_xml
from gateway.edge.reload import reload_config
from simulator.business import BUSINESS_REGISTRY
from tests.conftest import Harness

HERE = Path(__file__).resolve().parent.parent
REPO = HERE.parent.parent
PROVIDER = "000.00.00.G12"
SERVICE = "/r1/000.00.00.G12/csdlqg-dkdn/v1"
LOOKUP = f"{SERVICE}/doanh-nghiep/tra-cuu"
ACCOUNTABILITY = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}
PROBLEM = "urn:lgsp:problem:"

# -- helpers ----------------------------------------------------------------------------------


def national_request_id(request_id: str) -> str:
    """The national MaYeuCau for a gateway request id: itself, or its SHA-1 (40 hex
    digits) when longer (the request mapping's max_length: 40, computed independently)."""
    if len(request_id) <= 40:
        return request_id
    return hashlib.sha1(request_id.encode(), usedforsecurity=False).hexdigest()


def service_doc(code: str = "csdlqg-dkdn", **changes: Any) -> dict[str, Any]:
    """The service as policies/business-registration.yaml declares it, with changes."""
    policy = yaml.safe_load((REPO / "policies" / "business-registration.yaml").read_text())
    [service] = policy["services"]
    service = {**service, "code": code, **changes}
    return {k: v for k, v in service.items() if v is not None}


async def add_services(h: Harness, *services: dict[str, Any]) -> None:
    def change(doc: dict[str, Any]) -> None:
        if not any(a["code"] == PROVIDER for a in doc["agencies"]):
            doc["agencies"].append({"code": PROVIDER, "name": "Bộ Tài chính — CSDL ĐKDN"})
        doc["services"].extend(services)

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="test")
    await reload_config(h.state)


async def caller(h: Harness, client: str = "motcua", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await h.token(client)}", **ACCOUNTABILITY, **extra}


async def lookup(
    h: Harness, code: str, headers: dict[str, str], url: str = LOOKUP
) -> tuple[int, dict[str, Any], str]:
    r = await h.http.post(url, json={"enterpriseCode": code}, headers=headers)
    return r.status_code, r.json(), r.headers["X-Request-Id"]


def sent_to_national(h: Harness) -> dict[str, Any]:
    """The last lookup the simulated national database received, as data."""
    recorded = h.simulator[BUSINESS_REGISTRY].lookups[-1]
    body = xml_to_data(parse_xml(recorded["body"].encode()), namespaces={})
    headers = {k.lower(): v for k, v in recorded["headers"].items()}
    return {"headers": headers, **body}


async def audited(h: Harness, request_id: str) -> Any:
    [record] = await h.audit(request_id)
    assert record.provider_code == PROVIDER and record.service_code == "csdlqg-dkdn"
    return record


@pytest.fixture
async def gw(gateway: Harness) -> Harness:
    await add_services(gateway, service_doc())
    return gateway


# -- (a) end to end through the gateway ----------------------------------------------------------


async def test_found_enterprise_with_branches(gw: Harness) -> None:
    headers = await caller(gw)
    r = await gw.http.post(LOOKUP, json={"enterpriseCode": "0101234567"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["outcome"] == "found"
    assert doc["message"] == "Thành công"
    assert "requestedBranch" not in doc
    e = doc["enterprise"]
    assert e["code"] == "0101234567"
    assert e["name"] == "CÔNG TY TNHH MỘT THÀNH VIÊN THƯƠNG MẠI VÀ DỊCH VỤ LAM GIANG"
    assert e["foreignName"] == "LAM GIANG TRADING AND SERVICES COMPANY LIMITED"
    assert e["shortName"] == "LAM GIANG CO., LTD"
    assert e["type"] == {
        "code": "llc-single-member",
        "name": "Công ty trách nhiệm hữu hạn một thành viên",
    }
    assert e["foundedOn"] == "2012-03-15"
    assert e["status"] == {"code": "active", "name": "Đang hoạt động"}
    assert e["headOffice"] == {
        "street": "Số 18 phố Trần Quốc Hoàn",
        "commune": "Phường Dịch Vọng Hậu",
        "district": "Quận Cầu Giấy",
        "province": "Thành phố Hà Nội",
        "provinceCode": "01",
    }
    assert e["legalRepresentative"] == {"fullName": "Nguyễn Thị Thu Hằng", "title": "Giám đốc"}
    assert e["charterCapital"] == 5_000_000_000
    assert e["mainIndustry"] == "4690"
    assert [b["code"] for b in e["branches"]] == ["0101234567-001", "0101234567-002"]
    first = e["branches"][0]
    assert first["name"].startswith("CHI NHÁNH ĐÀ NẴNG - ")
    assert first["startedOn"] == "2016-08-02"
    assert first["address"]["district"] == "Quận Hải Châu"
    assert first["address"]["provinceCode"] == "48"
    # Text arrives in NFC, diacritics intact.
    assert unicodedata.is_normalized("NFC", r.text)

    # What the national side received: XML, accountability fields, the request id.
    request_id = r.headers["X-Request-Id"]
    sent = sent_to_national(gw)
    assert sent["headers"]["content-type"].startswith("application/xml")
    assert sent["headers"]["authorization"].startswith("Bearer ")
    assert sent["TraCuuDoanhNghiep"] == {
        "MaYeuCau": request_id,
        "MaSoDoanhNghiep": "0101234567",
        "MaDonVi": "000.00.00.H49",  # adapter_config.agency_code of the sample policy
        "MaCanBo": "CB-0042",
        "MaDVC": "1.001234",
    }

    record = await audited(gw, request_id)
    assert (record.status, record.upstream_status, record.error_type) == (200, 200, None)
    assert (record.officer_id, record.procedure_code) == ("CB-0042", "1.001234")
    assert record.client_code == "motcua"


async def test_enterprise_without_branches_and_without_optional_names(gw: Harness) -> None:
    status, doc, request_id = await lookup(gw, "4000123456", await caller(gw))
    assert status == 200
    e = doc["enterprise"]
    assert e["name"] == "DOANH NGHIỆP TƯ NHÂN MINH PHÁT HỘI AN"
    assert e["type"]["code"] == "private-enterprise"
    assert e["branches"] == []  # always a list
    # Empty <TenTiengNuocNgoai/> and <TenVietTat/> are absent values, not "".
    assert "foreignName" not in e and "shortName" not in e
    assert e["legalRepresentative"]["fullName"] == "Huỳnh Thị Mỹ Duyên"
    assert (await audited(gw, request_id)).status == 200


async def test_a_single_branch_is_still_a_list(gw: Harness) -> None:
    status, doc, _ = await lookup(gw, "0312345678", await caller(gw))
    assert status == 200
    [branch] = doc["enterprise"]["branches"]
    assert branch["code"] == "0312345678-001"
    assert doc["enterprise"]["type"]["code"] == "joint-stock"
    assert doc["enterprise"]["legalRepresentative"]["title"] == "Tổng giám đốc"


@pytest.mark.parametrize(
    ("code", "status", "name"),
    [
        ("0201234569", "dissolved", "Đã giải thể"),
        ("2300123457", "suspended", "Tạm ngừng kinh doanh"),
        ("1801234560", "dissolving", "Đang làm thủ tục giải thể"),
    ],
)
async def test_every_legal_status(gw: Harness, code: str, status: str, name: str) -> None:
    http_status, doc, _ = await lookup(gw, code, await caller(gw))
    assert http_status == 200
    assert doc["enterprise"]["status"] == {"code": status, "name": name}


async def test_a_record_registered_after_the_2025_reform_has_no_district(gw: Harness) -> None:
    _, doc, _ = await lookup(gw, "0402345671", await caller(gw))
    assert doc["enterprise"]["headOffice"] == {
        "street": "Số 8 đường Nguyễn Du",
        "commune": "Phường Hội An",
        "province": "Thành phố Đà Nẵng",
        "provinceCode": "48",
    }
    assert doc["enterprise"]["foundedOn"] == "2025-09-05"


async def test_branch_code_answers_the_parent_and_the_branch(gw: Harness) -> None:
    status, doc, request_id = await lookup(gw, "0101234567-002", await caller(gw))
    assert status == 200
    assert doc["outcome"] == "found"
    assert doc["enterprise"]["code"] == "0101234567"
    assert len(doc["enterprise"]["branches"]) == 2
    branch = doc["requestedBranch"]
    assert branch["code"] == "0101234567-002"
    assert branch["name"].startswith("CHI NHÁNH THÀNH PHỐ HỒ CHÍ MINH")
    assert branch["address"] == {
        "street": "Số 120 đường Cộng Hòa",
        "commune": "Phường 4",
        "district": "Quận Tân Bình",
        "province": "Thành phố Hồ Chí Minh",
        "provinceCode": "79",
    }
    assert branch["startedOn"] == "2019-05-10"
    assert "mã số chi nhánh" in doc["message"]
    assert sent_to_national(gw)["TraCuuDoanhNghiep"]["MaSoDoanhNghiep"] == "0101234567-002"
    assert (await audited(gw, request_id)).status == 200


async def test_not_found(gw: Harness) -> None:
    status, doc, request_id = await lookup(gw, "0109999999", await caller(gw))
    assert status == 404
    assert doc == {
        "outcome": "not_found",
        "enterpriseCode": "0109999999",
        "message": "Không tìm thấy doanh nghiệp có mã số 0109999999",
    }
    record = await audited(gw, request_id)
    assert (record.status, record.upstream_status) == (404, 404)


async def test_unknown_branch_of_a_known_enterprise_is_not_found(gw: Harness) -> None:
    status, doc, _ = await lookup(gw, "0101234567-009", await caller(gw))
    assert status == 404
    assert doc["outcome"] == "not_found"
    assert doc["enterpriseCode"] == "0101234567-009"
    assert doc["message"] == "Không tìm thấy chi nhánh có mã số 0101234567-009"


async def test_restricted_enterprise_is_not_permitted(gw: Harness) -> None:
    status, doc, request_id = await lookup(gw, "0109876543", await caller(gw))
    assert status == 403
    assert doc == {
        "outcome": "not_permitted",
        "enterpriseCode": "0109876543",
        "message": "Doanh nghiệp có tồn tại nhưng đơn vị không được phép khai thác thông tin",
    }
    record = await audited(gw, request_id)
    assert (record.status, record.upstream_status) == (403, 403)


async def test_a_malformed_code_is_refused_by_the_canonical_schema(gw: Harness) -> None:
    before = len(gw.simulator[BUSINESS_REGISTRY].lookups)
    r = await gw.http.post(LOOKUP, json={"enterpriseCode": "01012345"}, headers=await caller(gw))
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"] == PROBLEM + "invalid-message"
    assert problem["errors"][0]["pointer"] == "/enterpriseCode"
    assert len(gw.simulator[BUSINESS_REGISTRY].lookups) == before  # never sent
    record = await audited(gw, r.headers["X-Request-Id"])
    assert (record.status, record.error_type) == (400, "invalid-message")


async def test_a_request_the_national_side_calls_malformed_is_invalid_message(
    gateway: Harness,
) -> None:
    # Without the canonical schemas, the national side's own check answers: MaLoi 100.
    await add_services(gateway, service_doc("csdlqg-dkdn-raw", schemas=None))
    url = "/r1/000.00.00.G12/csdlqg-dkdn-raw/v1/doanh-nghiep/tra-cuu"
    status, problem, request_id = await lookup(gateway, "12345", await caller(gateway), url)
    assert status == 400
    assert problem["type"] == PROBLEM + "invalid-message"
    assert "MaLoi '100'" in problem["detail"]
    assert "Trường MaSoDoanhNghiep phải gồm 10 chữ số" in problem["detail"]
    record = await gateway.audit(request_id)
    assert [(x.status, x.upstream_status, x.error_type) for x in record] == [
        (400, 400, "invalid-message")
    ]


async def test_the_officer_is_required(gw: Harness) -> None:
    headers = await caller(gw)
    del headers["X-Officer-Id"]
    r = await gw.http.post(LOOKUP, json={"enterpriseCode": "0101234567"}, headers=headers)
    assert r.status_code == 400
    assert r.json()["type"] == PROBLEM + "missing-accountability-fields"


async def test_procedure_is_optional_and_the_callers_agency_is_sent_by_default(
    gateway: Harness,
) -> None:
    await add_services(gateway, service_doc(adapter_config={}))
    headers = await caller(gateway, "hotich")
    del headers["X-Procedure-Code"]
    status, _, _ = await lookup(gateway, "0101234567", headers)
    assert status == 200
    sent = sent_to_national(gateway)["TraCuuDoanhNghiep"]
    assert sent["MaDonVi"] == "000.00.12.H49"  # the Department of Justice's system asked
    assert "MaDVC" not in sent


async def test_a_long_request_id_is_shortened_for_the_national_side(gw: Harness) -> None:
    long_id = "motcua-ho-so-2025-000123:tra-cuu-doanh-nghiep:lan-1"
    assert len(long_id) > 40
    headers = await caller(gw, **{"X-Request-Id": long_id})
    status, doc, request_id = await lookup(gw, "0101234567", headers)
    assert (status, doc["outcome"], request_id) == (200, "found", long_id)
    sent = sent_to_national(gw)
    assert sent["TraCuuDoanhNghiep"]["MaYeuCau"] == national_request_id(long_id)
    assert len(national_request_id(long_id)) == 40
    assert sent["headers"]["x-request-id"] == long_id


async def test_national_faults_are_502(gateway: Harness) -> None:
    await add_services(
        gateway,
        # No national token: the national side answers 401.
        service_doc("dkdn-no-token", upstream="sim-open"),
        # Something that answers, but not the national XML.
        service_doc("dkdn-wrong", upstream="sim-open", upstream_path="/_sim/echo"),
        # Nobody listening.
        service_doc("dkdn-dead", upstream="dead", upstream_path=""),
    )
    headers = await caller(gateway)
    expected = {
        "dkdn-no-token": "upstream-authentication-failed",
        "dkdn-wrong": "upstream-bad-response",
        "dkdn-dead": "upstream-connection-failed",
    }
    for code, problem_type in expected.items():
        url = f"/r1/000.00.00.G12/{code}/v1/doanh-nghiep/tra-cuu"
        status, problem, request_id = await lookup(gateway, "0101234567", headers, url)
        assert status == 502, (code, problem)
        assert problem["type"] == PROBLEM + problem_type, (code, problem)
        [record] = await gateway.audit(request_id)
        assert (record.status, record.error_type) == (502, problem_type)
    # What reached the echo is the national XML request, not the caller's JSON.
    r = await gateway.http.post(
        "/r1/000.00.00.G12/dkdn-wrong/v1/doanh-nghiep/tra-cuu",
        json={"enterpriseCode": "0101234567"},
        headers=headers,
    )
    assert "not usable XML" in r.json()["detail"]


# -- (b) legacy text ------------------------------------------------------------------------------


async def test_legacy_output_vni_answers_text_in_vni(gateway: Harness) -> None:
    await add_services(
        gateway,
        service_doc("dkdn-vni", adapter_config={"legacy_output": "vni"}),
    )
    url = "/r1/000.00.00.G12/dkdn-vni/v1/doanh-nghiep/tra-cuu"
    status, doc, request_id = await lookup(gateway, "0101234567-001", await caller(gateway), url)
    assert status == 200
    name = "CÔNG TY TNHH MỘT THÀNH VIÊN THƯƠNG MẠI VÀ DỊCH VỤ LAM GIANG"
    e = doc["enterprise"]
    assert e["name"] == vnencoding.encode(name, "vni") != name
    assert vnencoding.decode(e["name"], "vni") == name
    assert vnencoding.decode(e["legalRepresentative"]["fullName"], "vni") == "Nguyễn Thị Thu Hằng"
    assert vnencoding.decode(e["status"]["name"], "vni") == "Đang hoạt động"
    assert vnencoding.decode(doc["requestedBranch"]["address"]["commune"], "vni") == (
        "Phường Nam Dương"
    )
    # Codes, dates and numbers are ASCII: unchanged.
    assert (e["code"], e["foundedOn"], e["charterCapital"]) == (
        "0101234567",
        "2012-03-15",
        5_000_000_000,
    )
    assert e["status"]["code"] == "active"
    # Not-found messages too.
    status, doc, _ = await lookup(gateway, "0109999999", await caller(gateway), url)
    assert status == 404
    assert doc["message"] == vnencoding.encode(
        "Không tìm thấy doanh nghiệp có mã số 0109999999", "vni"
    )
    assert (await gateway.audit(request_id))[0].status == 200


async def test_legacy_input_reaches_the_national_side_as_utf8_nfc(gateway: Harness) -> None:
    # The request holds only a code (ASCII, the same in every encoding): a legacy caller's
    # service works unchanged and the national side gets UTF-8 XML.
    await add_services(
        gateway,
        service_doc(
            "dkdn-tcvn3", adapter_config={"legacy_input": "tcvn3", "legacy_output": "tcvn3"}
        ),
    )
    url = "/r1/000.00.00.G12/dkdn-tcvn3/v1/doanh-nghiep/tra-cuu"
    status, doc, _ = await lookup(gateway, "4000123456", await caller(gateway), url)
    assert status == 200
    raw = gateway.simulator[BUSINESS_REGISTRY].lookups[-1]["body"]
    assert raw.startswith("<?xml version='1.0' encoding='UTF-8'?>")
    assert "<MaSoDoanhNghiep>4000123456</MaSoDoanhNghiep>" in raw
    assert vnencoding.decode(doc["enterprise"]["name"], "tcvn3") == (
        vnencoding.tcvn3_fold("DOANH NGHIỆP TƯ NHÂN MINH PHÁT HỘI AN")
    )


def test_legacy_input_is_decoded_to_nfc_before_mapping() -> None:
    # Direct: whatever string the request holds is decoded from the caller's encoding and
    # normalised to NFC before it becomes XML (here a code written with NFD-prone text).
    adapter = make_adapter(legacy_input="vni")
    body = adapter.national_request(
        {"enterpriseCode": vnencoding.encode("0101234567-ơ", "vni")}, Context(request_id="r1")
    )
    assert "<MaSoDoanhNghiep>0101234567-ơ</MaSoDoanhNghiep>" in body.decode()
    adapter = make_adapter()
    body = adapter.national_request(
        {"enterpriseCode": unicodedata.normalize("NFD", "0101234567-ơ")}, Context(request_id="r1")
    )
    assert "<MaSoDoanhNghiep>0101234567-ơ</MaSoDoanhNghiep>" in body.decode()


# -- answers the national side should never give -------------------------------------------------


def make_adapter(**config: Any) -> BusinessRegistration:
    adapter = build_adapter("business_registration", config)
    assert isinstance(adapter, BusinessRegistration)
    return adapter


def outbound_for(adapter: BusinessRegistration, code: str, request_id: str) -> OutboundRequest:
    return adapter.request(
        OutboundRequest(
            "POST", LOOKUP_PATH, "", CIMultiDict(), orjson.dumps({"enterpriseCode": code})
        ),
        Context(request_id=request_id, client_agency="000.00.31.H49", officer="CB-0042"),
    )


def answer(status: int, body: str | bytes) -> UpstreamResponse:
    data = body.encode() if isinstance(body, str) else body
    return UpstreamResponse(
        status, CIMultiDict({"Content-Type": "application/xml; charset=utf-8"}), data, 1.0
    )


FOUND = """<?xml version="1.0" encoding="UTF-8"?>
<KetQuaTraCuu><MaYeuCau>req-1</MaYeuCau><MaLoi>0</MaLoi><MoTaLoi>Thành công</MoTaLoi>
<DoanhNghiep><MaSoDoanhNghiep>0101234567</MaSoDoanhNghiep>
<TenDoanhNghiep>CÔNG TY CỔ PHẦN ĐẠI VIỆT</TenDoanhNghiep><LoaiHinh>{form}</LoaiHinh>
<NgayThanhLap>15/03/2012</NgayThanhLap><TinhTrang>1</TinhTrang>
<DiaChiTruSo><MaTinh>01</MaTinh></DiaChiTruSo><VonDieuLe>{capital}</VonDieuLe>
<DanhSachChiNhanh/></DoanhNghiep></KetQuaTraCuu>"""


BRANCH = (
    "<ChiNhanhTraCuu><MaSoChiNhanh>0101234567-001</MaSoChiNhanh>"
    "<TenChiNhanh>A</TenChiNhanh></ChiNhanhTraCuu>"
)


@pytest.mark.parametrize(
    ("status", "body", "ptype", "says"),
    [
        (200, FOUND.format(form="CP", capital="1000"), None, ""),
        (200, FOUND.format(form="XYZ", capital="1000"), "upstream-bad-response", "'XYZ'"),
        (200, FOUND.format(form="CP", capital="1,5 tỷ"), "upstream-bad-response", "VonDieuLe"),
        # Integers are digits only: not a float, an exponent, a fraction or a suffix.
        (200, FOUND.format(form="CP", capital="1e3"), "upstream-bad-response", "'1e3'"),
        (200, FOUND.format(form="CP", capital="12a"), "upstream-bad-response", "'12a'"),
        (200, FOUND.format(form="CP", capital="1000.0"), "upstream-bad-response", "'1000.0'"),
        # The requested branch is declared exactly_one: two are refused.
        (
            200,
            FOUND.format(form="CP", capital="1000").replace(
                "</DoanhNghiep>", "</DoanhNghiep>" + BRANCH * 2
            ),
            "upstream-bad-response",
            "2 elements where exactly one is declared",
        ),
        (500, FOUND.format(form="CP", capital="1"), "upstream-bad-response", "HTTP 500"),
        (
            200,
            FOUND.format(form="CP", capital="1").replace("req-1", "req-2"),
            "upstream-bad-response",
            "not for this request",
        ),
        (
            200,
            "<KetQuaTraCuu><MaLoi>0</MaLoi></KetQuaTraCuu>",
            "upstream-bad-response",
            "is required",
        ),
        (
            503,
            "<KetQuaTraCuu><MaLoi>999</MaLoi><MoTaLoi>Hệ thống bận</MoTaLoi></KetQuaTraCuu>",
            "upstream-bad-response",
            "MaLoi '999': Hệ thống bận",
        ),
        (200, "<html><body>Bảo trì</body></html>", "upstream-bad-response", "<html>"),
        (
            200,
            '<!DOCTYPE x [<!ENTITY a "b">]><KetQuaTraCuu/>',
            "upstream-bad-response",
            "DTD",
        ),
        (502, "Bad Gateway", "upstream-bad-response", "not usable XML"),
        (401, "", "upstream-authentication-failed", "401"),
    ],
)
def test_answers_outside_the_contract(status: int, body: str, ptype: str | None, says: str) -> None:
    adapter = make_adapter()
    outbound = outbound_for(adapter, "0101234567", "req-1")
    if ptype is None:
        result = adapter.response(answer(status, body), outbound, Context(request_id="req-1"))
        assert result.status == 200
        assert orjson.loads(result.body)["enterprise"]["charterCapital"] == 1000
        return
    with pytest.raises(Problem) as caught:
        adapter.response(answer(status, body), outbound, Context(request_id="req-1"))
    assert caught.value.ptype.slug == ptype
    assert says in caught.value.detail


def test_the_request_hook_refuses_other_operations() -> None:
    adapter = make_adapter()
    for method, path, ptype in [
        ("POST", "/doanh-nghiep", "not-found"),
        ("GET", LOOKUP_PATH, "method-not-allowed"),
    ]:
        with pytest.raises(Problem) as caught:
            adapter.request(
                OutboundRequest(method, path, "", CIMultiDict(), b"{}"), Context(request_id="r")
            )
        assert caught.value.ptype.slug == ptype
    for body in (b"not json", b"[1]", b'{"enterpriseCode": {"x": 1}}'):
        with pytest.raises(Problem) as caught:
            adapter.request(
                OutboundRequest("POST", LOOKUP_PATH, "", CIMultiDict(), body),
                Context(request_id="r"),
            )
        assert caught.value.ptype.slug == "invalid-message"


def test_request_headers_say_xml_and_drop_the_query() -> None:
    adapter = make_adapter(agency_code="000.00.00.H49")
    outbound = adapter.request(
        OutboundRequest(
            "POST",
            LOOKUP_PATH,
            "x=1",
            CIMultiDict({"Content-Type": "application/json", "Content-Length": "30"}),
            b'{"enterpriseCode": "0101234567"}',
        ),
        Context(request_id="r-9", client_agency="000.00.31.H49", procedure="1.001234"),
    )
    assert (outbound.method, outbound.path, outbound.query) == ("POST", LOOKUP_PATH, "")
    assert outbound.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert "Content-Length" not in outbound.headers
    assert xml_to_data(parse_xml(outbound.body), namespaces={}) == {
        "TraCuuDoanhNghiep": {
            "MaYeuCau": "r-9",
            "MaSoDoanhNghiep": "0101234567",
            "MaDonVi": "000.00.00.H49",
            "MaDVC": "1.001234",
        }
    }


# -- (c) property: canonical -> national -> canonical ----------------------------------------------

LETTERS = "ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
ALPHABET = (
    LETTERS
    + LETTERS.upper()
    + "ĂÂĐÊÔƠƯ"
    + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.-/&<>'\"()"
)
assert unicodedata.is_normalized("NFC", ALPHABET)


def code_list(name: str) -> dict[str, str]:
    table = yaml.safe_load((HERE / "codes" / f"{name}.yaml").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in table.items()}


FORMS = code_list("legal-form")
FORM_NAMES = code_list("legal-form-name")
STATUSES = code_list("enterprise-status")
STATUS_NAMES = code_list("enterprise-status-name")
RESPONSE_SCHEMA = jsonschema_rs.validator_for(
    orjson.loads((REPO / "schemas/business/enterprise-lookup.response.json").read_bytes())
)

text = st.text(alphabet=ALPHABET, min_size=1, max_size=60).map(str.strip).filter(bool)
day = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)).map(date.isoformat)
digits = st.text(alphabet="0123456789", min_size=10, max_size=10)
address = st.fixed_dictionaries(
    {},
    optional={
        "street": text,
        "commune": text,
        "district": text,
        "province": text,
        "provinceCode": st.text(alphabet="0123456789", min_size=2, max_size=2),
    },
)


def coded(national: dict[str, str], names: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    return st.sampled_from(sorted(national)).map(
        lambda key: {"code": national[key], "name": names[key]}
    )


def branch(parent: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "code": st.integers(0, 999).map(lambda n: f"{parent}-{n:03d}"),
            "name": text,
        },
        optional={"address": address, "startedOn": day},
    )


@st.composite
def found_answers(draw: st.DrawFn) -> dict[str, Any]:
    code = draw(digits)
    drawn = draw(
        st.fixed_dictionaries(
            {
                "code": st.just(code),
                "name": text,
                "type": coded(FORMS, FORM_NAMES),
                "foundedOn": day,
                "status": coded(STATUSES, STATUS_NAMES),
                "headOffice": address.filter(bool),
                "branches": st.lists(branch(code), max_size=3),
            },
            optional={
                "foreignName": text,
                "shortName": text,
                "legalRepresentative": st.fixed_dictionaries(
                    {}, optional={"fullName": text, "title": text}
                ),
                "charterCapital": st.integers(0, 10**15),
                "mainIndustry": st.text(alphabet="0123456789", min_size=4, max_size=5),
            },
        )
    )
    # Empty objects are absent in XML: the canonical form leaves them out too.
    enterprise: dict[str, Any] = {k: v for k, v in drawn.items() if v != {}}
    for b in enterprise["branches"]:
        if b.get("address") == {}:
            del b["address"]
    doc: dict[str, Any] = {"outcome": "found", "message": draw(text), "enterprise": enterprise}
    if enterprise["branches"] and draw(st.booleans()):
        doc["requestedBranch"] = draw(st.sampled_from(enterprise["branches"]))
    return doc


def national_answer(
    adapter: BusinessRegistration, canonical: dict[str, Any], request_id: str
) -> bytes:
    """The national XML answer that carries `canonical` (the response mapping reversed)."""
    content = {
        "MaYeuCau": request_id,
        "MaLoi": "0",
        "MoTaLoi": canonical["message"],
        **adapter.to_canonical.reverse(canonical),
    }
    return to_bytes(data_to_xml(content, namespaces={}, root="KetQuaTraCuu"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(found_answers())
def test_found_answer_round_trip(canonical: dict[str, Any]) -> None:
    adapter = ROUND_TRIP_ADAPTER
    outbound = outbound_for(adapter, canonical["enterprise"]["code"], "req-42")
    xml = national_answer(adapter, canonical, "req-42")
    result = adapter.response(answer(200, xml), outbound, Context(request_id="req-42"))
    assert result.status == 200
    assert result.headers["Content-Type"] == "application/json"
    back = orjson.loads(result.body)
    assert back == canonical
    assert RESPONSE_SCHEMA.is_valid(back)


@settings(max_examples=100, deadline=None)
@given(found_answers())
def test_legacy_output_vni_round_trip(canonical: dict[str, Any]) -> None:
    adapter = VNI_ADAPTER
    outbound = outbound_for(adapter, canonical["enterprise"]["code"], "req-7")
    xml = national_answer(adapter, canonical, "req-7")
    result = adapter.response(answer(200, xml), outbound, Context(request_id="req-7"))
    legacy = orjson.loads(result.body)
    assert map_strings(legacy, lambda t: vnencoding.decode(t, "vni")) == canonical


@settings(max_examples=200, deadline=None)
@given(
    code=st.one_of(
        digits, st.tuples(digits, st.integers(0, 999)).map(lambda t: f"{t[0]}-{t[1]:03d}")
    ),
    officer=st.one_of(st.none(), st.text(alphabet="ABC-0123456789", min_size=1, max_size=20)),
    request_id=st.text(alphabet="abcdef0123456789-:.", min_size=1, max_size=128),
)
def test_request_round_trip(code: str, officer: str | None, request_id: str) -> None:
    adapter = ROUND_TRIP_ADAPTER
    body = adapter.national_request(
        {"enterpriseCode": code},
        Context(request_id=request_id, client_agency="000.00.31.H49", officer=officer),
    )
    national = xml_to_data(parse_xml(body), namespaces={})["TraCuuDoanhNghiep"]
    assert adapter.to_national.reverse(national) == {"enterpriseCode": code}
    assert national["MaYeuCau"] == national_request_id(request_id)
    assert len(national["MaYeuCau"]) <= 40
    assert national.get("MaCanBo") == officer
    assert national["MaDonVi"] == "000.00.31.H49"


ROUND_TRIP_ADAPTER = BusinessRegistration(BusinessRegistrationConfig())
VNI_ADAPTER = BusinessRegistration(BusinessRegistrationConfig(legacy_output="vni"))


# -- (d) configuration errors name the field -------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"agency_code": "sở tư pháp"}, "adapter_config.agency_code"),
        ({"agency_code": "0" * 36}, "adapter_config.agency_code"),
        ({"legacy_output": "utf-7"}, "adapter_config.legacy_output"),
        ({"legacy_input": "abc"}, "adapter_config.legacy_input"),
        ({"agency": "000.00.00.H49"}, "adapter_config.agency"),
    ],
)
def test_bad_adapter_config_names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ServiceSpec.model_validate(service_doc(adapter_config=config))
    assert field in str(caught.value)


def test_the_sample_policy_loads() -> None:
    spec = ServiceSpec.model_validate(service_doc())
    assert spec.adapter == "business_registration"
    assert spec.adapter_config == {"agency_code": "000.00.00.H49"}
    with pytest.raises(ValidationError) as caught:
        PolicySet.model_validate(
            {
                "agencies": [{"code": PROVIDER, "name": "Bộ Tài chính"}],
                "groups": [{"code": "tthc", "name": "TTHC"}],
                "upstreams": [{"name": "ndxp", "base_url": "http://127.0.0.1:1"}],
                "services": [service_doc(adapter_config={"legacy_output": "abc"})],
            }
        )
    assert "adapter_config.legacy_output" in str(caught.value)
