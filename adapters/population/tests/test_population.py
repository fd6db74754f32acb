"""The `population` adapter: the provincial canonical citizen lookup, converted to the
national population database's form and back.

End to end through the running gateway against the national simulator (found, not found,
not permitted, by number and by name, legacy-encoded callers), against a scripted
national provider for the answers the simulator does not give (MaLoi 100, 400, 5xx,
garbage, an answer to another request), round trips with hypothesis, and configuration
errors that name the field.
"""

from __future__ import annotations

import json
import string
import unicodedata
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import jsonschema_rs
import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from pydantic import ValidationError

from adapters.population import PopulationAdapter, PopulationConfig
from adapters.population.adapter import FOLDER
from gateway.config.policy import PolicySet, ServiceSpec
from gateway.conversion.catalogue import adapter_config_errors, build_adapter
from gateway.conversion.mapping import vnencoding
from gateway.conversion.mapping.engine import Context
from gateway.core.messages import OutboundRequest, UpstreamResponse
from gateway.core.problems import Problem
from simulator.app import LOOKUPS
from tests.conftest import REPO, Harness, add_to_policy

SERVICE = "/r1/000.00.00.G01/csdlqg-dancu"
LOOKUP = "/cong-dan/tra-cuu"
ACCOUNT = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}
PROVINCE = "000.00.00.H49"
INTEGRATION = "00000000000000000049"
PROBLEM = "urn:lgsp:problem:"
SCHEMAS = REPO / "schemas" / "population"
# Vietnamese letters (precomposed, NFC) plus ASCII, for generated names and addresses.
VIETNAMESE = "ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
ALPHABET = VIETNAMESE + string.ascii_letters


def _validator(name: str) -> Any:
    return jsonschema_rs.validator_for(json.loads((SCHEMAS / name).read_text("utf-8")))


CANONICAL_REQUEST = _validator("citizen-lookup.canonical.request.json")
CANONICAL_RESPONSE = _validator("citizen-lookup.canonical.response.json")
NATIONAL_REQUEST = _validator("citizen-lookup.national.request.json")
NATIONAL_RESPONSE = _validator("citizen-lookup.national.response.json")


def service(version: str, upstream: str = "ndxp", **config: Any) -> dict[str, Any]:
    """A canonical population service as the test policy declares it."""
    return {
        "provider": "000.00.00.G01",
        "code": "csdlqg-dancu",
        "version": version,
        "name": f"Dân cư (dạng chuẩn {version})",
        "upstream": upstream,
        "upstream_path": "/csdldc/v1",
        "adapter": "population",
        "adapter_config": {"agency_code": PROVINCE, "integration_code": INTEGRATION, **config},
        "schemas": {
            "request": {"subject": "population.citizen-lookup.canonical.request"},
            "response": {"subject": "population.citizen-lookup.canonical.response"},
        },
        "require": ["officer", "procedure"],
        "access": [
            {"group": "tthc", "method": "POST", "path": LOOKUP},
            {"client": "legacy", "method": "POST", "path": LOOKUP},
        ],
    }


@pytest.fixture
async def population(gateway: Harness) -> Harness:
    """The gateway with the canonical service (v2, as policies/population-canonical.yaml
    declares it), a TCVN3 caller's variant (v3) and a VNI caller's one (v4)."""
    await add_to_policy(
        gateway,
        [
            service("v2"),
            service("v3", legacy_input="tcvn3"),
            service("v4", legacy_input="vni", legacy_output="vni"),
        ],
    )
    return gateway


async def lookup(
    h: Harness,
    body: Any,
    *,
    client: str = "motcua",
    version: str = "v2",
    headers: dict[str, str] | None = None,
    account: dict[str, str] = ACCOUNT,
) -> Any:
    token = await h.token(client)
    return await h.http.post(
        f"{SERVICE}/{version}{LOOKUP}",
        content=body if isinstance(body, bytes) else orjson.dumps(body),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            **account,
            **(headers or {}),
        },
    )


def national_bodies(h: Harness) -> list[Any]:
    return [entry["body"] for entry in h.simulator[LOOKUPS]]


# -- end to end, against the national simulator -------------------------------------------------


async def test_found_by_personal_id(population: Harness) -> None:
    r = await lookup(population, {"personalId": "001099012345"}, headers={"X-Case-Number": "C-1"})

    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["outcome"] == "found"
    [citizen] = body["citizens"]
    assert citizen == {
        "personalId": "001099012345",
        "fullName": "Nguyễn Văn An",
        "familyName": "Nguyễn",
        "middleName": "Văn",
        "givenName": "An",
        "birthDate": "1999-03-15",
        "sex": "male",
        "ethnicity": {"code": "01", "name": "Kinh"},
        "religion": {"code": "00", "name": "Không"},
        "nationality": {"code": "VN", "name": "Việt Nam"},
        "placeOfOrigin": {
            "provinceCode": "01",
            "provinceName": "Thành phố Hà Nội",
            "communeCode": "00376",
            "communeName": "Xã Sóc Sơn",
            "detail": "Thôn Đông Xuân",
        },
        "permanentResidence": {
            "provinceCode": "01",
            "provinceName": "Thành phố Hà Nội",
            "communeCode": "00166",
            "communeName": "Phường Cầu Giấy",
            "detail": "Số 12, ngõ 45 phố Trần Duy Hưng",
        },
        "currentResidence": {
            "provinceCode": "01",
            "provinceName": "Thành phố Hà Nội",
            "communeCode": "00166",
            "communeName": "Phường Cầu Giấy",
            "detail": "Số 12, ngõ 45 phố Trần Duy Hưng",
        },
    }  # SoCMND is null at the national side: no oldIdNumber
    assert "Nguyễn Văn An".encode() in r.content  # UTF-8, not \u escapes

    # The national side got its own form, with who asks and why in the body.
    request_id = r.headers["x-request-id"]
    assert national_bodies(population) == [
        {
            "MaYeuCau": request_id,
            "MaDVC": "1.001234",
            "MaCanBo": "CB-0042",
            "MaDonVi": PROVINCE,
            "MaTichHop": INTEGRATION,
            "SoDinhDanh": "001099012345",
        }
    ]
    [rec] = await population.audit(request_id)
    assert (rec.service_code, rec.service_version, rec.method) == ("csdlqg-dancu", "v2", "POST")
    assert rec.path == f"{SERVICE}/v2{LOOKUP}"
    assert (rec.officer_id, rec.procedure_code, rec.case_number) == ("CB-0042", "1.001234", "C-1")
    assert (rec.status, rec.upstream_status, rec.error_type) == (200, 200, None)
    assert rec.client_code == "motcua"


async def test_found_by_old_id_number(population: Harness) -> None:
    r = await lookup(population, {"oldIdNumber": "201234567"})

    assert r.status_code == 200, r.text
    [citizen] = r.json()["citizens"]
    assert (citizen["fullName"], citizen["middleName"]) == ("Trần Thị Bích Ngọc", "Thị Bích")
    assert (citizen["oldIdNumber"], citizen["sex"]) == ("201234567", "female")
    assert citizen["religion"] == {"code": "01", "name": "Phật giáo"}
    assert citizen["placeOfOrigin"]["communeName"] == "Phường Hội An"
    [sent] = national_bodies(population)
    assert sent["SoCMND"] == "201234567" and "SoDinhDanh" not in sent
    [rec] = await population.audit(r.headers["x-request-id"])
    assert (rec.status, rec.upstream_status) == (200, 200)


async def test_found_by_name_and_birth_year_lists_every_match(population: Harness) -> None:
    r = await lookup(population, {"fullName": "Nguyễn  Văn An ", "birthDate": "1999"})

    assert r.status_code == 200, r.text
    citizens = r.json()["citizens"]
    assert [(c["personalId"], c["birthDate"]) for c in citizens] == [
        ("001099012345", "1999-03-15"),
        ("040099006789", "1999-07-02"),
    ]
    assert citizens[1]["placeOfOrigin"]["provinceName"] == "Tỉnh Nghệ An"
    [sent] = national_bodies(population)
    assert (sent["HoVaTen"], sent["NgayThangNamSinh"]) == ("Nguyễn Văn An", "1999")
    assert "SoDinhDanh" not in sent and sent["MaYeuCau"] == r.headers["x-request-id"]
    assert len(await population.audit(r.headers["x-request-id"])) == 1


async def test_a_record_known_by_year_with_empty_fields(population: Harness) -> None:
    r = await lookup(population, {"fullName": "Đỗ Thị Lan", "birthDate": "1938-05-01"})
    assert r.status_code == 200, r.text
    [lan] = r.json()["citizens"]
    assert (lan["birthDate"], lan["religion"]["name"]) == ("1938", "Công giáo")

    # An empty detail at the national side is left out, not passed on as "".
    r = await lookup(population, {"personalId": "079201004321"})
    assert r.status_code == 200, r.text
    [huy] = r.json()["citizens"]
    assert huy["placeOfOrigin"] == {
        "provinceCode": "79",
        "provinceName": "Thành phố Hồ Chí Minh",
        "communeCode": "27316",
        "communeName": "Phường Chợ Lớn",
    }
    assert huy["ethnicity"] == {"code": "04", "name": "Hoa"}
    assert huy["currentResidence"]["detail"] == "Căn hộ 1204, số 2 đường Tôn Đức Thắng"


async def test_not_found_is_a_business_answer(population: Harness) -> None:
    r = await lookup(population, {"personalId": "001000000000"})

    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"outcome": "not_found", "message": "Không tìm thấy thông tin công dân"}
    [rec] = await population.audit(r.headers["x-request-id"])
    assert (rec.status, rec.upstream_status, rec.error_type) == (404, 404, None)


async def test_not_permitted_is_a_business_answer(population: Harness) -> None:
    r = await lookup(population, {"personalId": "079203000111"})

    assert r.status_code == 403
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["outcome"] == "not_permitted"
    assert body["message"].startswith("Công dân có tồn tại nhưng đơn vị không được phép")
    assert "citizens" not in body and "Phạm" not in r.text
    [rec] = await population.audit(r.headers["x-request-id"])
    assert (rec.status, rec.upstream_status, rec.error_type) == (403, 403, None)


async def test_lookups_the_national_side_would_refuse_stop_at_the_gateway(
    population: Harness,
) -> None:
    cases: list[tuple[Any, dict[str, str], int, str]] = [
        # number and name together: one way of looking up at a time (schema)
        ({"personalId": "001099012345", "fullName": "Nguyễn Văn An"}, {}, 400, "invalid-message"),
        ({"fullName": "Nguyễn Văn An"}, {}, 400, "invalid-message"),  # no birth date
        ({"fullName": "   ", "birthDate": "1999"}, {}, 400, "invalid-message"),
        # shaped like a date, but no such day: the adapter's own check
        ({"fullName": "Nguyễn Văn An", "birthDate": "1999-02-30"}, {}, 400, "invalid-message"),
        (b"not json", {}, 400, "invalid-message"),
        # MaYeuCau holds 40 characters
        ({"personalId": "001099012345"}, {"X-Request-Id": "r" * 41}, 400, "invalid-header"),
    ]
    for body, headers, status, slug in cases:
        r = await lookup(population, body, headers=headers)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == PROBLEM + slug, (body, r.text)
    r = await lookup(
        population, {"personalId": "001099012345"}, account={"X-Procedure-Code": "1.001234"}
    )
    assert r.json()["type"] == PROBLEM + "missing-accountability-fields"

    # Nothing reached the national side, and every refusal is audited.
    assert national_bodies(population) == []
    day_30 = [rec for rec in await population.audit() if "1999-02-30" in (rec.error_detail or "")]
    assert [(rec.status, rec.error_type, rec.upstream_status) for rec in day_30] == [
        (400, "invalid-message", None)
    ]


async def test_only_the_canonical_operation_is_granted(population: Harness) -> None:
    token = await population.token("motcua")
    r = await population.http.post(
        f"{SERVICE}/v2/cong-dan/tra-cuu-ho-ten",
        json={"HoVaTen": "Nguyễn Văn An", "NgayThangNamSinh": "1999"},
        headers={"Authorization": f"Bearer {token}", **ACCOUNT},
    )
    assert r.status_code == 403 and r.json()["type"] == PROBLEM + "access-denied"


# -- legacy-encoded callers ------------------------------------------------------------------


async def test_tcvn3_full_name_reaches_the_national_side_as_unicode(population: Harness) -> None:
    legacy_name = vnencoding.encode("Thạch Thị Sa Ri", "tcvn3")
    assert legacy_name != "Thạch Thị Sa Ri"  # really TCVN3: "Th¹ch ThÞ Sa Ri"

    r = await lookup(
        population,
        {"fullName": legacy_name, "birthDate": "1995-04-14"},
        client="legacy",
        version="v3",
    )

    assert r.status_code == 200, r.text
    [sent] = national_bodies(population)
    assert sent["HoVaTen"] == "Thạch Thị Sa Ri"
    assert unicodedata.is_normalized("NFC", sent["HoVaTen"])
    [citizen] = r.json()["citizens"]  # the answer is Unicode: no legacy_output on v3
    assert (citizen["fullName"], citizen["ethnicity"]["name"]) == ("Thạch Thị Sa Ri", "Khơ-me")
    assert (await population.audit(r.headers["x-request-id"]))[0].client_code == "legacy"


async def test_vni_caller_sends_and_receives_vni(population: Harness) -> None:
    legacy_name = vnencoding.encode("Nông Thị Hoa", "vni")

    r = await lookup(
        population,
        {"fullName": legacy_name, "birthDate": "1992-09-09"},
        client="legacy",
        version="v4",
    )

    assert r.status_code == 200, r.text
    [sent] = national_bodies(population)
    assert sent["HoVaTen"] == "Nông Thị Hoa"
    [citizen] = r.json()["citizens"]
    assert citizen["fullName"] == vnencoding.encode("Nông Thị Hoa", "vni")
    assert vnencoding.decode(citizen["fullName"], "vni") == "Nông Thị Hoa"
    assert vnencoding.decode(citizen["ethnicity"]["name"], "vni") == "Tày"
    assert citizen["personalId"] == "004192001122"  # ASCII is the same in VNI


async def test_decomposed_unicode_is_normalised_to_nfc(population: Harness) -> None:
    decomposed = unicodedata.normalize("NFD", "Vương Gia Huy")
    r = await lookup(population, {"fullName": decomposed, "birthDate": "2001-12-05"})
    assert r.status_code == 200, r.text
    [sent] = national_bodies(population)
    assert sent["HoVaTen"] == unicodedata.normalize("NFC", "Vương Gia Huy")


# -- national answers the simulator does not give: a scripted national side ---------------------


@pytest.fixture
async def scripted(population: Harness) -> AsyncIterator[tuple[Harness, list[Any]]]:
    """v9: the canonical service against a scripted national provider; the test puts
    (status, body, content type or None for JSON) answers in the list, in order."""
    answers: list[Any] = []

    async def national(request: web.Request) -> web.Response:
        asked = await request.json()
        status, body, content_type = answers.pop(0)
        if callable(body):
            body = body(asked)
        if content_type is None:
            return web.json_response(body, status=status)
        return web.Response(status=status, text=body, content_type=content_type)

    app = web.Application()
    app.router.add_post("/csdldc/v1/cong-dan/{tail:.*}", national)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await add_to_policy(
        population,
        [service("v9", upstream="scripted")],
        [{"name": "scripted", "base_url": str(server.make_url("")).rstrip("/")}],
    )
    yield population, answers
    await server.close()


def echoing(answer: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda asked: {"MaYeuCau": asked["MaYeuCau"], **answer}


async def test_national_errors_are_problems_naming_maloi(
    scripted: tuple[Harness, list[Any]],
) -> None:
    h, answers = scripted
    record = {
        "SoDinhDanh": "001099012345",
        "Ho": "Nguyễn",
        "ChuDem": "Văn",
        "Ten": "An",
        "NgayThangNamSinh": "1999-03-15",
        "GioiTinh": "9",  # not in the code list
    }
    cases: list[tuple[tuple[int, Any, str | None], str, list[str]]] = [
        (
            (400, echoing({"MaLoi": "400", "MoTaLoi": "Thiếu trường bắt buộc MaDVC"}), None),
            "upstream-bad-response",
            ["HTTP 400", "MaLoi 400", "Thiếu trường bắt buộc MaDVC"],
        ),
        (
            (401, echoing({"MaLoi": "100", "MoTaLoi": "Lỗi xác thực"}), None),
            "upstream-authentication-failed",
            ["MaLoi 100", "Lỗi xác thực"],
        ),
        (
            (500, {"MaLoi": "500", "MoTaLoi": "Lỗi hệ thống"}, None),
            "upstream-bad-response",
            ["HTTP 500", "MaLoi 500", "Lỗi hệ thống"],
        ),
        (
            (503, "<html>Service Unavailable</html>", "text/html"),
            "upstream-bad-response",
            ["HTTP 503", "not a JSON object"],
        ),
        (
            (200, echoing({"MaLoi": "0", "MoTaLoi": "Thành công"}), None),
            "upstream-bad-response",
            ["holds no citizen record"],
        ),
        (
            (200, echoing({"MaLoi": "0", "CongDan": record}), None),
            "upstream-bad-response",
            ["Citizen record 0", "'9' is not in code list 'sex'"],
        ),
        (
            (200, {"MaYeuCau": "someone-else", "MaLoi": "0", "CongDan": record}, None),
            "upstream-bad-response",
            ["'someone-else'", "withheld"],
        ),
    ]
    for answer, slug, details in cases:
        answers.append(answer)
        r = await lookup(h, {"personalId": "001099012345"}, version="v9")
        assert r.status_code == 502, r.text
        problem = r.json()
        assert problem["type"] == PROBLEM + slug, r.text
        assert problem["side"] == "upstream"
        for text in details:
            assert text in problem["detail"], (text, problem["detail"])
        if answer[2] is None and answer[0] != 200:
            assert problem["upstream"]["MaLoi"] == str(answer[0] if answer[0] != 401 else 100)
        [rec] = await h.audit(r.headers["x-request-id"])
        assert (rec.status, rec.upstream_status, rec.error_type) == (502, answer[0], slug)
        assert details[-1] in (rec.error_detail or "")
    assert answers == []


async def test_a_name_lookup_answer_from_the_scripted_side(
    scripted: tuple[Harness, list[Any]],
) -> None:
    h, answers = scripted
    people = [
        {"SoDinhDanh": "001099012345", "Ho": "Lý", "Ten": "Na", "NgayThangNamSinh": "1999"},
        {"SoDinhDanh": "001099054321", "Ho": "Lý", "ChuDem": "", "Ten": "Na",
         "NgayThangNamSinh": "1999-01-01", "GioiTinh": "0", "SoCMND": None},
    ]  # fmt: skip
    answers.append((200, echoing({"MaLoi": 0, "DanhSachCongDan": people}), None))
    r = await lookup(h, {"fullName": "Lý Na", "birthDate": "1999"}, version="v9")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "outcome": "found",
        "citizens": [
            {"personalId": "001099012345", "fullName": "Lý Na", "familyName": "Lý",
             "givenName": "Na", "birthDate": "1999"},
            {"personalId": "001099054321", "fullName": "Lý Na", "familyName": "Lý",
             "givenName": "Na", "birthDate": "1999-01-01", "sex": "unknown"},
        ],
    }  # fmt: skip


# -- the hooks on their own ---------------------------------------------------------------------


def adapter(**config: Any) -> PopulationAdapter:
    built = build_adapter("population", {"agency_code": PROVINCE, **config})
    assert isinstance(built, PopulationAdapter)
    return built


CONTEXT = Context(request_id="req-1", client="motcua", officer="CB-0042", procedure="1.001234")


def outbound(body: Any, method: str = "POST", path: str = LOOKUP) -> OutboundRequest:
    headers = CIMultiDict({"Content-Type": "text/plain", "X-Officer-Id": "CB-0042"})
    return OutboundRequest(method, path, "x=1", headers, orjson.dumps(body))


def test_the_request_hook_picks_the_national_endpoint() -> None:
    by_number = adapter().request(outbound({"personalId": "001099012345"}), CONTEXT)
    assert (by_number.method, by_number.path, by_number.query) == ("POST", LOOKUP, "")
    assert by_number.headers["Content-Type"] == "application/json"
    assert by_number.headers["X-Officer-Id"] == "CB-0042"  # other headers kept
    assert orjson.loads(by_number.body) == {
        "MaYeuCau": "req-1",
        "MaDVC": "1.001234",
        "MaCanBo": "CB-0042",
        "MaDonVi": PROVINCE,  # no integration_code configured: no MaTichHop
        "SoDinhDanh": "001099012345",
    }
    by_name = adapter().request(
        outbound({"fullName": "Lê Hoàng Minh", "birthDate": "1975-06-30"}, path=LOOKUP + "/"),
        CONTEXT,
    )
    assert by_name.path == "/cong-dan/tra-cuu-ho-ten"
    assert NATIONAL_REQUEST.is_valid(orjson.loads(by_name.body))


def test_the_request_hook_refuses_other_operations() -> None:
    with pytest.raises(Problem) as e:
        adapter().request(outbound({"personalId": "001099012345"}, path="/cong-dan"), CONTEXT)
    assert e.value.ptype.slug == "not-found"
    with pytest.raises(Problem) as e:
        adapter().request(outbound({"personalId": "001099012345"}, method="PUT"), CONTEXT)
    assert (e.value.ptype.slug, e.value.headers) == ("method-not-allowed", {"Allow": "POST"})
    with pytest.raises(Problem) as e:
        adapter().request(outbound({"personalId": "001099012345"}), Context(request_id="r"))
    assert e.value.ptype.slug == "missing-accountability-fields"
    assert "X-Officer-Id and X-Procedure-Code" in e.value.detail
    # Without a request schema on the service, the adapter still checks what it reads.
    bodies: list[Any] = [[], {"personalId": 1}, {"oldIdNumber": "12"}, {}]
    for body in bodies:
        with pytest.raises(Problem) as e:
            adapter().request(outbound(body), CONTEXT)
        assert e.value.ptype.slug == "invalid-message", body


def test_the_response_hook_sets_status_and_content_type() -> None:
    answer = UpstreamResponse(
        404,
        CIMultiDict({"Content-Type": "application/json; charset=utf-8", "Server": "national"}),
        orjson.dumps({"MaYeuCau": "req-1", "MaLoi": "201", "MoTaLoi": ""}),
        12.5,
    )
    converted = adapter().response(answer, outbound({}), CONTEXT)
    assert (converted.status, converted.elapsed_ms) == (404, 12.5)
    assert dict(converted.headers) == {"Content-Type": "application/json"}
    assert orjson.loads(converted.body) == {
        "outcome": "not_found",
        "message": "Không tìm thấy thông tin công dân",  # the national text was empty
    }


# -- round trips (hypothesis) -------------------------------------------------------------------

SEX_CODES = yaml.safe_load((FOLDER / "codes" / "sex.yaml").read_text("utf-8"))
words = st.text(alphabet=ALPHABET, min_size=1, max_size=8)
texts = st.text(alphabet=ALPHABET + " ,.-/0123456789", min_size=1, max_size=40).filter(
    lambda t: t.strip() == t
)


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=string.digits, min_size=n, max_size=n)


birth_dates = st.one_of(
    st.dates(date(1900, 1, 1), date(2025, 12, 31)).map(date.isoformat),
    st.integers(1900, 2025).map(str),
)
coded = st.fixed_dictionaries({"code": digits(2)}, optional={"name": texts})
address = st.fixed_dictionaries(
    {},
    optional={
        "provinceCode": digits(2),
        "provinceName": texts,
        "communeCode": digits(5),
        "communeName": texts,
        "detail": texts,
    },
).filter(bool)


@st.composite
def canonical_citizens(draw: st.DrawFn) -> dict[str, Any]:
    family = " ".join(draw(st.lists(words, min_size=1, max_size=2)))
    middle = " ".join(draw(st.lists(words, max_size=3)))
    given = draw(words)
    citizen: dict[str, Any] = {
        "personalId": draw(digits(12)),
        "fullName": " ".join(p for p in (family, middle, given) if p),
        "familyName": family,
        "givenName": given,
        "birthDate": draw(birth_dates),
    }
    if middle:
        citizen["middleName"] = middle
    optional = {
        "oldIdNumber": digits(9),
        "sex": st.sampled_from(sorted(SEX_CODES.values())),
        "ethnicity": coded,
        "religion": coded,
        "nationality": coded,
        "placeOfOrigin": address,
        "permanentResidence": address,
        "currentResidence": address,
    }
    for field, strategy in optional.items():
        if draw(st.booleans()):
            citizen[field] = draw(strategy)
    return citizen


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(canonical_citizens(), min_size=1, max_size=3), st.booleans())
def test_citizens_survive_canonical_national_canonical(
    citizens: list[dict[str, Any]], by_name: bool
) -> None:
    a = adapter()
    records = [a.citizen.reverse(c) for c in citizens]
    answer: dict[str, Any] = {"MaYeuCau": "req-1", "MaLoi": "0", "MoTaLoi": "Thành công"}
    if by_name:
        answer["DanhSachCongDan"] = records
    else:
        citizens = citizens[:1]
        answer["CongDan"] = records[0]
    assert NATIONAL_RESPONSE.is_valid(answer), list(NATIONAL_RESPONSE.iter_errors(answer))

    status, document = a.answer(200, orjson.dumps(answer), "req-1")

    assert (status, document) == (200, {"outcome": "found", "citizens": citizens})
    assert CANONICAL_RESPONSE.is_valid(document)


@st.composite
def canonical_requests(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        numbers = {"personalId": digits(12), "oldIdNumber": digits(9)}
        chosen = draw(st.sets(st.sampled_from(sorted(numbers)), min_size=1))
        return {field: draw(numbers[field]) for field in sorted(chosen)}
    name = " ".join(draw(st.lists(words, min_size=1, max_size=5)))
    return {"fullName": name[:100].strip(), "birthDate": draw(birth_dates)}


@settings(max_examples=300)
@given(canonical_requests(), digits(20), words.map(lambda w: "CB-" + w.encode().hex()[:17]))
def test_lookups_survive_canonical_national_canonical(
    canonical: dict[str, Any], integration: str, officer: str
) -> None:
    assert CANONICAL_REQUEST.is_valid(canonical)
    a = adapter(integration_code=integration)
    context = Context(request_id="req-2", officer=officer, procedure="2.000123")

    national = a.lookup(orjson.dumps(canonical), context)

    assert NATIONAL_REQUEST.is_valid(national), list(NATIONAL_REQUEST.iter_errors(national))
    assert (national["MaYeuCau"], national["MaCanBo"], national["MaDVC"]) == (
        "req-2",
        officer,
        "2.000123",
    )
    assert (national["MaDonVi"], national["MaTichHop"]) == (PROVINCE, integration)
    mapping = a.by_name if "fullName" in canonical else a.by_number
    assert mapping.reverse(national) == canonical


@settings(max_examples=200)
@given(st.lists(words, min_size=1, max_size=4), st.sampled_from(["tcvn3", "vni"]))
def test_legacy_names_reach_the_national_side_as_unicode(
    name_words: list[str], encoding: Any
) -> None:
    name = " ".join(name_words)
    legacy = vnencoding.encode(name, encoding)
    national = adapter(legacy_input=encoding).lookup(
        orjson.dumps({"fullName": legacy, "birthDate": "2000"}), CONTEXT
    )
    # TCVN3 has no toned capitals: they come back lowercase (vnencoding's caveat).
    expected = vnencoding.tcvn3_fold(name) if encoding == "tcvn3" else name
    assert national["HoVaTen"] == unicodedata.normalize("NFC", expected)


# -- configuration errors name the field --------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "agency_code"),
        ({"agency_code": "h49 tỉnh"}, "agency_code"),
        ({"agency_code": PROVINCE, "integration_code": "49-ABC"}, "integration_code"),
        ({"agency_code": PROVINCE, "integration_code": "1" * 21}, "integration_code"),
        ({"agency_code": PROVINCE, "legacy_input": "utf-7"}, "legacy_input"),
        ({"agency_code": PROVINCE, "legacy_output": "abc"}, "legacy_output"),
        ({"agency_code": PROVINCE, "agency": PROVINCE}, "agency"),
    ],
)
def test_adapter_config_errors_name_the_field(config: dict[str, Any], field: str) -> None:
    spec = service("v2")
    spec["adapter_config"] = config
    with pytest.raises(ValidationError) as e:
        ServiceSpec.model_validate(spec)
    assert f"adapter_config.{field}:" in str(e.value)
    errors = adapter_config_errors("population", config)
    assert [error.split(":")[0] for error in errors] == [f"adapter_config.{field}"]


def test_the_sample_policy_declares_the_canonical_service() -> None:
    doc = yaml.safe_load((REPO / "policies" / "population-canonical.yaml").read_text("utf-8"))
    [spec] = [ServiceSpec.model_validate(s) for s in doc["services"]]
    assert (spec.key, spec.adapter) == ("000.00.00.G01/csdlqg-dancu/v2", "population")
    config = PopulationConfig.model_validate(spec.adapter_config)
    assert (config.agency_code, config.integration_code) == (PROVINCE, INTEGRATION)
    # A whole policy with a bad adapter_config is refused, naming service and field.
    bad = {**doc["services"][0], "adapter_config": {"agency_code": PROVINCE, "x": 1}}
    with pytest.raises(ValidationError, match=r"adapter_config\.x"):
        PolicySet.model_validate({"services": [bad]})
