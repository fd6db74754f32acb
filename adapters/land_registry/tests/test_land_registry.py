"""The land registry's parcel lookup, a declared adapter (adapter.yaml, mappings/, codes/,
no Python): canonical JSON through the running gateway to the simulated registry (SOAP
1.1) and back, every outcome of the registry, its faults as problems and as what the
shared circuit breaker hears, and the audit record."""

from __future__ import annotations

import hashlib
import shutil
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from multidict import CIMultiDict

from gateway.config import versions as policy_state
from gateway.conversion import catalogue
from gateway.conversion.declared import DeclaredAdapter, DeclaredConfig, declared_adapter
from gateway.conversion.mapping.engine import shorten
from gateway.conversion.mapping.soap import fault_envelope, parse_envelope
from gateway.conversion.mapping.xml import xml_to_data
from gateway.conversion.sdk import Context, OutboundRequest, Problem, SoapFault, UpstreamResponse
from gateway.edge.reload import reload_config
from simulator.land import ACTION, LAND_NS, LAND_REGISTRY
from tests.conftest import POPULATION, Harness, add_to_policy

HERE = Path(__file__).resolve().parent.parent
REPO = HERE.parent.parent
SERVICE = "/r1/000.00.00.G10/csdlqg-datdai/v1"
LOOKUP = f"{SERVICE}/thua-dat/tra-cuu"
ACCOUNTABILITY = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.004227"}
PROBLEM = "urn:lgsp:problem:"
THRESHOLD = 5  # the default failure_threshold of the ndxp upstream
RESPONSE_SCHEMA = jsonschema_rs.validator_for(
    orjson.loads((REPO / "schemas" / "land" / "parcel-lookup.response.json").read_bytes())
)


def shipped() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "policies" / "land-registry.yaml").read_text("utf-8")))


async def add_services(h: Harness, *services: dict[str, Any]) -> None:
    agencies = shipped()["agencies"]

    def change(doc: dict[str, Any]) -> None:
        known = {a["code"] for a in doc["agencies"]}
        doc["agencies"].extend(a for a in agencies if a["code"] not in known)

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="test")
    await add_to_policy(h, list(services))


def service_doc(**changes: Any) -> dict[str, Any]:
    """The service as policies/land-registry.yaml declares it, with changes."""
    [service] = shipped()["services"]
    service = {**service, **changes}
    return {k: v for k, v in service.items() if v is not None}


@pytest.fixture
async def gw(gateway: Harness) -> Harness:
    await add_services(gateway, service_doc())
    return gateway


async def caller(h: Harness, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await h.token('motcua')}", **ACCOUNTABILITY, **extra}


async def look_up(h: Harness, headers: dict[str, str], **parcel: Any) -> httpx.Response:
    return await h.http.post(LOOKUP, json=parcel, headers=headers)


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    assert body["request_id"] == r.headers["X-Request-Id"]
    return body


def sent_to_registry(h: Harness) -> tuple[dict[str, str], dict[str, Any]]:
    """The headers and the <TraCuuThuaDat> of the last lookup the registry received."""
    recorded = h.simulator[LAND_REGISTRY].lookups[-1]
    message = parse_envelope(recorded["body"].encode())
    assert message.version == "1.1" and message.body is not None
    body = xml_to_data(message.body, namespaces={"d": LAND_NS})["d:TraCuuThuaDat"]
    return {k.lower(): v for k, v in recorded["headers"].items()}, body


# -- found parcels ------------------------------------------------------------------------------


async def test_a_parcel_with_several_holders(gw: Harness) -> None:
    long_id = "motcua-ho-so-2025-000123:tra-cuu-thua-dat:lan-1"
    assert len(long_id) > 40
    r = await look_up(
        gw, await caller(gw, **{"X-Request-Id": long_id}), provinceCode="01", mapSheet=12,
        parcelNumber=345,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    # The empty <GhiChu/> is no note.
    assert r.json() == {"parcel": {
        "provinceCode": "01", "mapSheet": 12, "number": 345, "area": 1250.75,
        "landUse": {"code": "ONT", "name": "Đất ở tại nông thôn"},
        "certificateIssuedOn": "2019-03-15", "updatedAt": "2025-01-02T10:30:00+07:00",
        "holders": [
            {"fullName": "Nguyễn Văn An", "personalId": "001099012345", "representative": True},
            {"fullName": "Trần Thị Bình", "personalId": "001199004321", "representative": False},
        ],
    }}  # fmt: skip
    headers, sent = sent_to_registry(gw)
    assert headers["soapaction"] == f'"{ACTION}"'
    assert headers["content-type"].startswith("text/xml")
    # The national conventions: the request id in 40 characters (echoed back and checked),
    # the configured agency code, the canonical numbers as the registry's text.
    assert sent == {
        "d:MaYeuCau": shorten(long_id, 40), "d:MaDonVi": "000.00.00.H49",
        "d:MaTinh": "01", "d:SoToBanDo": "12", "d:SoThua": "345",
    }  # fmt: skip
    assert r.headers["X-Request-Id"] == long_id


async def test_a_parcel_with_one_holder(gw: Harness) -> None:
    r = await look_up(gw, await caller(gw), provinceCode="01", mapSheet=7, parcelNumber=28)
    assert r.status_code == 200, r.text
    parcel = r.json()["parcel"]
    assert parcel["area"] == 125.5  # "125,5"
    assert parcel["landUse"] == {"code": "LUC", "name": "Đất chuyên trồng lúa nước"}
    assert parcel["note"] == "Đất lúa nước, không chuyển mục đích"  # trimmed
    assert parcel["holders"] == [
        {"fullName": "Lê Văn Cường", "personalId": "001087005678", "representative": True}
    ]  # a list of one, the name trimmed


async def test_an_unknown_land_use_code_is_kept_without_a_name(gw: Harness) -> None:
    r = await look_up(gw, await caller(gw), provinceCode="79", mapSheet=3, parcelNumber=101)
    assert r.status_code == 200, r.text
    parcel = r.json()["parcel"]
    assert parcel["landUse"] == {"code": "TMD"}
    assert parcel["area"] == 86
    assert parcel["holders"] == [{"fullName": "Phạm Thị Dung", "representative": True}]


# -- faults -------------------------------------------------------------------------------------


async def test_no_such_parcel_is_no_such_record_and_a_burst_leaves_the_breaker_closed(
    gw: Harness,
) -> None:
    headers = await caller(gw)
    for n in range(3 * THRESHOLD):
        r = await look_up(gw, headers, provinceCode="01", mapSheet=12, parcelNumber=900 + n)
        body = problem(r, 404, "no-such-record")
        # The adapter's context knows the service it serves: the message names it.
        assert "land registry's parcel lookup (000.00.00.G10/csdlqg-datdai/v1)" in body["detail"]
        assert body["soap_fault"]["code"] == "Client"
        assert f"Không tìm thấy thửa đất số {900 + n}" in body["soap_fault"]["reason"]
    assert gw.state.upstream.breaker_states()["ndxp"] == "closed"
    [record] = await gw.audit(r.headers["X-Request-Id"])
    assert (record.upstream_status, record.error_type) == (500, "no-such-record")
    # The other national services on the same upstream still answer, and so does this one.
    r = await gw.http.post(
        f"{POPULATION}/cong-dan/tra-cuu", json={"SoDinhDanh": "001099012345"}, headers=headers
    )
    assert r.status_code == 200, r.text
    r = await look_up(gw, headers, provinceCode="01", mapSheet=12, parcelNumber=345)
    assert r.status_code == 200, r.text


async def test_a_malformed_request_is_400(gw: Harness) -> None:
    headers = await caller(gw)
    before = len(gw.simulator[LAND_REGISTRY].lookups)
    r = await look_up(gw, headers, provinceCode="1", mapSheet="12", parcelNumber=345)
    problem(r, 400, "invalid-message")  # the canonical schema, before the registry
    assert len(gw.simulator[LAND_REGISTRY].lookups) == before


async def test_without_a_schema_the_mapping_and_the_registry_refuse_with_400(
    gateway: Harness,
) -> None:
    await add_services(gateway, service_doc(schemas=None))
    headers = await caller(gateway)
    r = await look_up(gateway, headers, provinceCode="01", mapSheet=12)
    body = problem(r, 400, "invalid-message")
    assert "/parcelNumber is required" in body["detail"]
    r = await look_up(gateway, headers, provinceCode="1", mapSheet=12, parcelNumber=345)
    body = problem(r, 400, "invalid-message")  # the registry's Client fault, MaLoi 400
    assert body["soap_fault"]["reason"] == "MaTinh phải gồm 2 chữ số"
    assert gateway.state.upstream.breaker_states()["ndxp"] == "closed"


async def test_the_registry_failing_is_502_and_counts_against_the_breaker(gw: Harness) -> None:
    headers = await caller(gw)
    for _ in range(THRESHOLD):
        r = await look_up(gw, headers, provinceCode="01", mapSheet=9999, parcelNumber=1)
        body = problem(r, 502, "upstream-bad-response")
        assert body["soap_fault"]["code"] == "Server"
    assert gw.state.upstream.breaker_states()["ndxp"] == "open"


async def test_the_exchange_is_audited_with_the_declared_adapter(gw: Harness) -> None:
    r = await look_up(gw, await caller(gw), provinceCode="01", mapSheet=7, parcelNumber=28)
    assert r.status_code == 200, r.text
    [record] = await gw.audit(r.headers["X-Request-Id"])
    assert (record.provider_code, record.service_code) == ("000.00.00.G10", "csdlqg-datdai")
    assert (record.adapter, record.adapter_version) == ("land_registry", "1.0.0")
    assert (record.status, record.upstream_status) == (200, 200)
    assert (record.officer_id, record.procedure_code) == ("CB-0042", "1.004227")
    assert record.error_type is None
    # Both sides, each provable: what the caller sent and received, and what went to and
    # came from the registry, as the exact bytes each side saw.
    seen = gw.simulator[LAND_REGISTRY].lookups[-1]
    sent = orjson.dumps({"provinceCode": "01", "mapSheet": 7, "parcelNumber": 28})
    assert record.request_sha256 == hashlib.sha256(sent).hexdigest()
    assert record.caller_response_sha256 == hashlib.sha256(r.content).hexdigest()
    assert record.provider_request_sha256 == hashlib.sha256(seen["raw"]).hexdigest()
    assert record.response_sha256 == hashlib.sha256(seen["answer"]).hexdigest()
    assert len({record.request_sha256, record.provider_request_sha256}) == 2
    # The intent, durable before the call, already proves what was about to be sent.
    intent, outcome = await gw.audit(r.headers["X-Request-Id"], intents=True)
    assert (intent.phase, outcome.event_id) == ("intent", record.event_id)
    assert intent.provider_request_sha256 == record.provider_request_sha256
    assert intent.caller_response_sha256 is None  # nothing answered yet
    # The auditor's API shows them.
    async with gw.state.sessions() as s, s.begin():
        await policy_state.create_client(
            s, code="thanhtra", agency_code="000.00.12.H49", name="thanhtra", actor="test",
            roles=["auditor"],
        )  # fmt: skip
    await reload_config(gw.state)
    found = await gw.http.get(
        "/audit/v1/exchanges",
        params={"request_id": r.headers["X-Request-Id"]},
        headers={"Authorization": f"Bearer {await gw.token('thanhtra')}"},
    )
    assert found.status_code == 200, found.text
    [shown] = found.json()["items"]
    assert shown["provider_request_sha256"] == record.provider_request_sha256
    assert shown["caller_response_sha256"] == record.caller_response_sha256


async def test_a_refused_exchange_keeps_both_sides_too(gw: Harness) -> None:
    r = await look_up(gw, await caller(gw), provinceCode="01", mapSheet=12, parcelNumber=999)
    problem(r, 404, "no-such-record")
    [record] = await gw.audit(r.headers["X-Request-Id"])
    seen = gw.simulator[LAND_REGISTRY].lookups[-1]
    assert record.provider_request_sha256 == hashlib.sha256(seen["raw"]).hexdigest()
    assert record.response_sha256 == hashlib.sha256(seen["answer"]).hexdigest()  # the fault
    assert record.caller_response_sha256 == hashlib.sha256(r.content).hexdigest()  # ours


# -- the folder ---------------------------------------------------------------------------------


def test_the_adapter_is_declarations_only() -> None:
    python = [p for p in HERE.rglob("*.py") if "tests" not in p.relative_to(HERE).parts]
    assert python == []
    assert declared_adapter(HERE).name == "land_registry"


def test_a_bad_declaration_fails_at_load_naming_the_file_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "land_registry"
    shutil.copytree(HERE, folder, ignore=shutil.ignore_patterns("tests"))
    declaration = folder / "adapter.yaml"
    text = declaration.read_text("utf-8")
    declaration.write_text(text.replace("problem: invalid-message", "problem: gone"), "utf-8")
    cls = declared_adapter(folder)  # the name only: the services using it fail, not all
    with pytest.raises(ValueError, match=r"adapter\.yaml: faults\.0\.problem: "):
        cls(cls.Config())
    declaration.write_text(text, "utf-8")
    request = folder / "mappings" / "parcel-request.yaml"
    request.write_text(request.read_text("utf-8").replace('envelope: "1.1"', 'envelope: "1.2"'))
    cls = declared_adapter(folder)
    with pytest.raises(ValueError, match=r"parcel-request\.yaml: xml\.envelope is '1\.2'"):
        cls(cls.Config())


def test_an_edited_declaration_is_a_new_digest_and_a_new_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """adapter.yaml is digested with mappings/ and codes/: an edit is a change `policy
    apply` records, and the reload builds the adapter from it."""
    folder = tmp_path / "land_registry"
    shutil.copytree(HERE, folder, ignore=shutil.ignore_patterns("tests"))
    cls = declared_adapter(folder)
    monkeypatch.setattr(catalogue, "_registry", lambda: {"land_registry": cls})
    assert folder / "adapter.yaml" in catalogue.mapping_files("land_registry")
    before = catalogue.mapping_digest("land_registry")
    old = catalogue.build_adapter("land_registry", {})
    declaration = folder / "adapter.yaml"
    declaration.write_text(
        declaration.read_text("utf-8").replace("title: the land", "title: the national land")
    )
    assert catalogue.mapping_digest("land_registry") != before
    new = catalogue.build_adapter("land_registry", {})
    assert isinstance(new, DeclaredAdapter) and isinstance(old, DeclaredAdapter)
    assert (old.declaration.title, new.declaration.title) == (
        "the land registry's parcel lookup",
        "the national land registry's parcel lookup",
    )


# Text as the gateway holds it: Unicode NFC (a compatibility ideograph is not).
_TEXT = (
    st.text(st.characters(codec="utf-8", categories=["L", "N", "Zs"]), min_size=1)
    .map(str.strip)
    .filter(lambda t: unicodedata.is_normalized("NFC", t))
)
_HOLDER = st.fixed_dictionaries(
    {"fullName": _TEXT.filter(bool)},
    optional={
        "personalId": st.from_regex(r"[0-9]{12}", fullmatch=True),
        "representative": st.booleans(),
    },
)
_PARCEL = st.fixed_dictionaries(
    {
        "provinceCode": st.from_regex(r"[0-9]{2}", fullmatch=True),
        "mapSheet": st.integers(1, 999_999),
        "number": st.integers(1, 999_999),
        "area": st.decimals(0, 10**7, places=2).map(float),
        "landUse": st.sampled_from(
            [{"code": "ONT", "name": "Đất ở tại nông thôn"}, {"code": "TMD"}]
        ),
        "holders": st.lists(_HOLDER, min_size=1, max_size=4),
    },
    optional={
        "certificateIssuedOn": st.dates().map(lambda d: d.isoformat()),
        "note": _TEXT.filter(bool),
    },
)


@settings(max_examples=60, deadline=None)
@given(parcel=_PARCEL)
def test_a_parcel_survives_the_national_form_and_back(parcel: dict[str, Any]) -> None:
    """canonical -> the registry's SOAP answer -> canonical keeps everything the response
    schema has (the mapping run backwards writes what the registry would)."""
    adapter = declared_adapter(HERE)(DeclaredConfig())
    [operation] = adapter.operations
    national = operation.response.to_xml({"parcel": parcel})
    assert parse_envelope(national).body is not None
    back = operation.response.from_xml(national)
    assert back == {"parcel": parcel}
    RESPONSE_SCHEMA.validate(back)
    request = {"provinceCode": parcel["provinceCode"], "mapSheet": parcel["mapSheet"]}
    request["parcelNumber"] = parcel["number"]
    assert operation.request.from_xml(operation.request.to_xml(request)) == request


def test_the_same_declarations_speak_soap_12_and_refuse_other_addresses(tmp_path: Path) -> None:
    """One word changed in three files: SOAP 1.2, the action in the media type; faults
    are classified for the breaker before the answer is converted."""
    folder = tmp_path / "land_registry"
    shutil.copytree(HERE, folder, ignore=shutil.ignore_patterns("tests"))
    for name in ("adapter.yaml", "mappings/parcel-request.yaml", "mappings/parcel.yaml"):
        path = folder / name
        path.write_text(path.read_text("utf-8").replace('"1.1"', '"1.2"'), "utf-8")
    adapter = declared_adapter(folder)(DeclaredConfig(agency_code="000.00.00.H49"))
    canonical = orjson.dumps({"provinceCode": "01", "mapSheet": 12, "parcelNumber": 345})
    outbound = OutboundRequest("POST", "/thua-dat/tra-cuu", "", CIMultiDict(), canonical)
    sent = adapter.request(outbound, Context(request_id="r-1"))
    assert (sent.method, sent.path) == ("POST", "/ThuaDatService")
    assert sent.headers["Content-Type"] == (
        f'application/soap+xml; charset=utf-8; action="{ACTION}"'
    )
    assert parse_envelope(sent.body).version == "1.2"

    with pytest.raises(Problem) as refused:
        adapter.request(replace(outbound, path="/thua-dat"), Context())
    assert refused.value.ptype.slug == "not-found"
    with pytest.raises(Problem) as refused:
        adapter.request(replace(outbound, method="GET"), Context())
    assert (refused.value.ptype.slug, refused.value.headers) == (
        "method-not-allowed",
        {"Allow": "POST"},
    )

    def answer(fault: SoapFault | None) -> UpstreamResponse:
        body = fault_envelope(fault, "1.2") if fault else b"<html>Bad gateway</html>"
        return UpstreamResponse(500, CIMultiDict(), body, 1.0)

    error = f"<detail><LoiNghiepVu xmlns='{LAND_NS}'><MaLoi>201</MaLoi></LoiNghiepVu></detail>"
    missing = SoapFault("Sender", "Không tìm thấy thửa đất", etree.fromstring(error))
    assert adapter.upstream_failed(answer(missing), sent) is False  # an answer
    assert adapter.upstream_failed(answer(SoapFault("Receiver", "Lỗi")), sent) is True
    assert adapter.upstream_failed(answer(None), sent) is None  # the statuses decide
    with pytest.raises(Problem) as refused:
        adapter.response(answer(missing), sent, Context(request_id="r-1"))
    assert (refused.value.status, refused.value.ptype.slug) == (404, "no-such-record")


@pytest.fixture
def editable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the folder, installed as `land_registry` in its place, to edit."""
    folder = tmp_path / "land_registry"
    shutil.copytree(HERE, folder, ignore=shutil.ignore_patterns("tests"))
    installed = {**catalogue._registry(), "land_registry": declared_adapter(folder)}
    monkeypatch.setattr(catalogue, "_registry", lambda: installed)
    return folder


async def apply_current(h: Harness) -> list[str]:
    """`policy apply` of the configuration as it stands (the files unchanged)."""
    async with h.state.sessions() as s, s.begin():
        policy = await policy_state.current_policy(s)
        return await policy_state.apply_policy(s, policy, actor="test")


async def test_an_edited_declared_mapping_is_live_after_apply(
    gateway: Harness, editable: Path
) -> None:
    await add_services(gateway, service_doc(schemas=None))
    headers = await caller(gateway)
    r = await look_up(gateway, headers, provinceCode="01", mapSheet=7, parcelNumber=28)
    assert r.json()["parcel"]["area"] == 125.5
    parcel = editable / "mappings" / "parcel.yaml"
    parcel.write_text(parcel.read_text("utf-8").replace("/parcel/area,", "/parcel/areaM2,"))
    assert await apply_current(gateway) == ["updated service 000.00.00.G10/csdlqg-datdai/v1"]
    assert await reload_config(gateway.state)
    r = await look_up(gateway, headers, provinceCode="01", mapSheet=7, parcelNumber=28)
    assert r.status_code == 200, r.text
    assert r.json()["parcel"]["areaM2"] == 125.5 and "area" not in r.json()["parcel"]

    # A broken declaration is refused by apply, naming the file; the running one stays.
    declaration = editable / "adapter.yaml"
    declaration.write_text(declaration.read_text("utf-8").replace("outcome: failure", "outcome: x"))
    with pytest.raises(ValueError, match=r"land_registry/adapter\.yaml: faults\.1\.outcome"):
        await apply_current(gateway)
    r = await look_up(gateway, headers, provinceCode="01", mapSheet=7, parcelNumber=28)
    assert r.json()["parcel"]["areaM2"] == 125.5


def test_without_soap_the_declarations_speak_plain_xml(tmp_path: Path) -> None:
    folder = tmp_path / "land_registry"
    shutil.copytree(HERE, folder, ignore=shutil.ignore_patterns("tests"))
    declaration = folder / "adapter.yaml"
    declaration.write_text(declaration.read_text("utf-8").replace('soap: {version: "1.1"}\n', ""))
    for name in ("mappings/parcel-request.yaml", "mappings/parcel.yaml"):
        path = folder / name
        path.write_text(path.read_text("utf-8").replace(', envelope: "1.1"', ""), "utf-8")
    adapter = declared_adapter(folder)(DeclaredConfig())
    canonical = orjson.dumps({"provinceCode": "01", "mapSheet": 12, "parcelNumber": 345})
    outbound = OutboundRequest("POST", "/thua-dat/tra-cuu", "", CIMultiDict(), canonical)
    sent = adapter.request(outbound, Context(request_id="r-1", client_agency="000.00.31.H49"))
    assert sent.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert "SOAPAction" not in sent.headers
    root = etree.fromstring(sent.body)
    assert root.tag == f"{{{LAND_NS}}}TraCuuThuaDat"
    assert root.findtext(f"{{{LAND_NS}}}MaDonVi") == "000.00.31.H49"  # no agency_code set
    html = UpstreamResponse(500, CIMultiDict(), b"<html/>", 1.0)
    assert adapter.upstream_failed(html, sent) is None  # no faults to read: the statuses
    with pytest.raises(Problem) as refused:
        adapter.response(html, sent, Context(request_id="r-1"))
    assert refused.value.ptype.slug == "upstream-bad-response"


# -- the national platform's conventions (adapter.yaml national:) -------------------------------


async def test_the_national_block_refuses_a_long_request_id_when_it_says_so(
    gateway: Harness, editable: Path
) -> None:
    """`national: {request_id: {longer: refuse}}` in adapter.yaml: a request id over the
    40 characters is a 400 before anything is sent (the default shortens it); a short one
    still goes through."""
    await add_services(gateway, service_doc())
    long_id = "motcua-ho-so-2025-000123:tra-cuu-thua-dat:lan-2"
    r = await look_up(
        gateway, await caller(gateway, **{"X-Request-Id": long_id}), provinceCode="01",
        mapSheet=7, parcelNumber=28,
    )  # fmt: skip
    assert r.status_code == 200, r.text  # shortened, by the platform's default
    declaration = editable / "adapter.yaml"
    text = declaration.read_text("utf-8")
    declaration.write_text(
        text.replace("national: {}", "national: {request_id: {longer: refuse}}"), "utf-8"
    )
    assert await apply_current(gateway) == ["updated service 000.00.00.G10/csdlqg-datdai/v1"]
    assert await reload_config(gateway.state)
    before = len(gateway.simulator[LAND_REGISTRY].lookups)
    r = await look_up(
        gateway, await caller(gateway, **{"X-Request-Id": long_id}), provinceCode="01",
        mapSheet=7, parcelNumber=28,
    )  # fmt: skip
    body = problem(r, 400, "invalid-header")
    assert "MaYeuCau" in body["detail"] and "at most 40" in body["detail"]
    assert len(gateway.simulator[LAND_REGISTRY].lookups) == before  # never sent
    r = await look_up(
        gateway, await caller(gateway), provinceCode="01", mapSheet=7, parcelNumber=28
    )
    assert r.status_code == 200, r.text


async def test_the_national_outcome_table_decides_a_faults_answer(
    gateway: Harness, editable: Path
) -> None:
    """The MaLoi table is the national block's: declared as a failure, the registry's
    "no such parcel" fault becomes a 502 that counts against the breaker."""
    declaration = editable / "adapter.yaml"
    text = declaration.read_text("utf-8")
    declaration.write_text(
        text.replace(
            "national: {}",
            'national: {codes: {"201": {outcome: failure, problem: upstream-bad-response}}}',
        ),
        "utf-8",
    )
    await add_services(gateway, service_doc())
    headers = await caller(gateway)
    for _ in range(THRESHOLD):
        r = await look_up(gateway, headers, provinceCode="01", mapSheet=1, parcelNumber=1)
        assert problem(r, 502, "upstream-bad-response")["soap_fault"]["code"] == "Client"
    assert gateway.state.upstream.breaker_states()["ndxp"] == "open"


def test_a_bad_national_block_fails_at_load_naming_the_file_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "land_registry"
    shutil.copytree(HERE, folder, ignore=shutil.ignore_patterns("tests"))
    declaration = folder / "adapter.yaml"
    text = declaration.read_text("utf-8")
    for block, field in [
        ('national: {codes: {"201": {problem: gone}}}', r"national\.codes\.201\.problem"),
        ("national: {request_id: {longer: cut}}", r"national\.request_id\.longer"),
        ('national: {codes: {"0": {outcome: failure, status: 200}}}', r"national\.codes\.0"),
    ]:
        declaration.write_text(text.replace("national: {}", block), "utf-8")
        cls = declared_adapter(folder)
        with pytest.raises(ValueError, match=rf"adapter\.yaml: {field}"):
            cls(cls.Config())
    # A mapping's national: rule needs the block.
    declaration.write_text(text.replace("national: {}\n", ""), "utf-8")
    cls = declared_adapter(folder)
    with pytest.raises(ValueError, match=r"parcel-request\.yaml: rules\.0 .*national: block"):
        cls(cls.Config())
