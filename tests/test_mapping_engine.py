"""The declarative mapping engine: every rule kind, both directions, and errors that
name the rule at load time rather than on an exchange."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.conversion.catalogue import adapter_config_errors, build_adapter, known_adapters
from gateway.conversion.mapping.document import SoapFaultAnswer
from gateway.conversion.mapping.engine import (
    Context,
    MappingError,
    compile_mapping,
    join_name,
    shorten,
    split_name,
)
from gateway.conversion.mapping.national import national_from
from gateway.conversion.mapping.soap import SoapFault, fault_envelope, parse_envelope
from gateway.conversion.mapping.soap import envelope as soap_envelope
from gateway.conversion.mapping.xml import xml_to_data
from gateway.conversion.sdk import Adapter, AdapterConfig
from gateway.core.safexml import parse_xml

SEX = {"male": "1", "female": "2", "unknown": "0"}

CITIZEN = compile_mapping(
    {
        "rules": [
            {"from": "/personalId", "to": "/CongDan/SoDinhDanh", "required": True},
            {"from": "/fullName", "to": ["/CongDan/Ho", "/CongDan/ChuDem", "/CongDan/Ten"],
             "name": "split"},
            {"from": "/birthDate", "to": "/CongDan/NgaySinh",
             "date": {"from": ["yyyy-MM-dd", "yyyy"], "to": ["dd/MM/yyyy", "yyyy"]}},
            {"from": "/sex", "to": "/CongDan/GioiTinh", "codes": "sex"},
            {"from": "/branches", "to": "/DanhSach/ChiNhanh",
             "each": [{"from": "/code", "to": "/Ma"}, {"from": "/name", "to": "/Ten"}]},
            {"const": "000.00.00.H49", "to": "/MaDonVi"},
            {"context": "officer", "to": "/MaCanBo"},
            {"from": "/channel", "to": "/Kenh", "default": "web"},
        ]
    },
    {"sex": SEX},
)  # fmt: skip


def test_a_canonical_citizen_becomes_the_national_form() -> None:
    national = CITIZEN.apply(
        {
            "personalId": "001099012345",
            "fullName": "Nguyễn Thị Minh Khai",
            "birthDate": "1999-03-15",
            "sex": "female",
            "branches": [{"code": "001", "name": "Chi nhánh Hà Nội"}],
        },
        Context(officer="CB-0042"),
    )
    assert national == {
        "CongDan": {
            "SoDinhDanh": "001099012345",
            "Ho": "Nguyễn",
            "ChuDem": "Thị Minh",
            "Ten": "Khai",
            "NgaySinh": "15/03/1999",
            "GioiTinh": "2",
        },
        "DanhSach": {"ChiNhanh": [{"Ma": "001", "Ten": "Chi nhánh Hà Nội"}]},
        "MaDonVi": "000.00.00.H49",
        "MaCanBo": "CB-0042",
        "Kenh": "web",
    }


def test_optional_fields_are_skipped_and_required_ones_named() -> None:
    assert CITIZEN.apply({"personalId": "001099012345", "birthDate": "1999"}) == {
        "CongDan": {"SoDinhDanh": "001099012345", "NgaySinh": "1999"},
        "MaDonVi": "000.00.00.H49",
        "Kenh": "web",
    }
    with pytest.raises(MappingError, match="/personalId is required"):
        CITIZEN.apply({"fullName": "An"})


def test_values_outside_their_code_list_or_format_are_named() -> None:
    with pytest.raises(MappingError, match=r"'other' is not in code list 'sex'"):
        CITIZEN.apply({"personalId": "1", "sex": "other"})
    with pytest.raises(MappingError, match=r"'15/03/1999' is not a date"):
        CITIZEN.apply({"personalId": "1", "birthDate": "15/03/1999"})


def test_reverse_returns_what_was_mapped() -> None:
    canonical = {
        "personalId": "001099012345",
        "fullName": "Trần Văn Bình",
        "birthDate": "1985-12-01",
        "sex": "male",
        "branches": [{"code": "002", "name": "Đà Nẵng"}],
    }
    national = CITIZEN.apply(canonical, Context(officer="CB-1"))
    # Constants and context values have no way back; what came from the message does.
    assert CITIZEN.reverse(national) == {**canonical, "channel": "web"}


def test_legacy_text_in_and_out() -> None:
    mapping = compile_mapping(
        {
            "rules": [
                {"from": "/HoTen", "to": "/fullName", "from_legacy": "tcvn3"},
                {"from": "/fullName2", "to": "/HoTenVNI", "to_legacy": "vni"},
            ]
        }
    )
    out = mapping.apply({"HoTen": "NguyÔn V¨n An", "fullName2": "Nguyễn Văn An"})
    assert out == {"fullName": "Nguyễn Văn An", "HoTenVNI": "Nguyeãn Vaên An"}
    assert unicodedata.is_normalized("NFC", out["fullName"])


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"rules": [{"from": "/a", "to": "/b", "date": {"from": ["dd/mm"], "to": ["x"]}}]},
         "has none of"),
        ({"rules": [{"from": "/a", "to": "/b", "codes": "nope"}]}, "no code list 'nope'"),
        ({"rules": [{"from": "/a", "const": 1, "to": "/b"}]}, "exactly one of"),
        ({"rules": [{"from": "/a", "to": "b"}]}, "must start with '/'"),
        ({"rules": [{"from": "/a", "to": "/b", "colour": "red"}]}, "rules.0.colour"),
        ({"rules": [{"from": "/a", "to": ["/b", "/c"]}]}, "name: split / join"),
    ],
)  # fmt: skip
def test_bad_mappings_fail_when_compiled_naming_the_rule(spec: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        compile_mapping(spec)


def test_an_uninvertible_code_list_is_refused_where_it_would_be_inverted() -> None:
    with pytest.raises(ValueError, match="has no inverse"):
        compile_mapping(
            {"rules": [{"from": "/a", "to": "/b", "codes_inverse": "x"}]},
            {"x": {"a": "1", "b": "1"}},
        )


VIETNAMESE = (
    "aăâbcdđeêghiklmnoôơpqrstuưvxyáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
)
words = st.text(alphabet=VIETNAMESE, min_size=1, max_size=8).map(str.capitalize)


@settings(max_examples=200, deadline=None)
@given(
    family=words,
    middle=st.lists(words, max_size=2),
    given_name=words,
    year=st.integers(1900, 2025),
    month=st.integers(1, 12),
    day=st.integers(1, 28),
    sex=st.sampled_from(sorted(SEX)),
    branches=st.lists(st.fixed_dictionaries({"code": st.from_regex(r"\A\d{3}\Z"), "name": words}),
                      max_size=3),
)  # fmt: skip
def test_canonical_to_national_to_canonical_loses_nothing(
    family: str,
    middle: list[str],
    given_name: str,
    year: int,
    month: int,
    day: int,
    sex: str,
    branches: list[dict[str, str]],
) -> None:
    canonical: dict[str, Any] = {
        "personalId": "001099012345",
        "fullName": join_name([family, *middle, given_name]),
        "birthDate": f"{year:04d}-{month:02d}-{day:02d}",
        "sex": sex,
        "channel": "web",
    }
    if branches:
        canonical["branches"] = branches
    assert CITIZEN.reverse(CITIZEN.apply(canonical)) == canonical


def test_name_split_follows_vietnamese_order() -> None:
    assert split_name("Lê Văn Thịnh") == ["Lê", "Văn", "Thịnh"]
    assert split_name("Đặng Thị Thu Hường") == ["Đặng", "Thị Thu", "Hường"]
    assert split_name("Lan") == ["", "", "Lan"]
    assert join_name(["Lê", "", "Lan"]) == "Lê Lan"


# -- the adapter registry -----------------------------------------------------------------------


def test_passthrough_is_built_in_and_costs_nothing_on_the_exchange_path() -> None:
    assert "passthrough" in known_adapters()
    assert build_adapter("passthrough", {}) is None
    assert adapter_config_errors("passthrough", {"x": 1})[0].startswith("adapter_config.x")


def test_unknown_adapters_are_named_with_the_installed_ones() -> None:
    [error] = adapter_config_errors("no-such-adapter", {})
    assert "unknown adapter 'no-such-adapter'" in error and "passthrough" in error


def test_a_third_party_adapter_is_found_through_its_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a package of another agency does: declare an `lgsp.adapters` entry point."""
    import importlib.metadata

    from gateway.conversion import catalogue as adapters

    class TaxConfig(AdapterConfig):
        office: str

    class TaxLookup(Adapter):
        name = "tax-lookup"
        Config = TaxConfig

    class EntryPoint:
        def load(self) -> type[Adapter]:
            return TaxLookup

    real = importlib.metadata.entry_points

    def entry_points(**kw: Any) -> Any:
        return [EntryPoint()] if kw.get("group") == "lgsp.adapters" else real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    adapters._registry.cache_clear()
    try:
        assert "tax-lookup" in known_adapters()
        assert adapter_config_errors("tax-lookup", {"office": "H49"}) == []
        assert adapter_config_errors("tax-lookup", {})[0].startswith("adapter_config.office")
    finally:
        monkeypatch.undo()
        adapters._registry.cache_clear()


# -- typed conversions, cleaning, code-list policies, declared XML (issue 23) ----------------------


def _one(rule: dict[str, Any], **mapping: Any) -> Any:
    return compile_mapping({"rules": [rule], **mapping}, {"land-use": LAND_USE})


@pytest.mark.parametrize(
    ("notation", "text", "number"),
    [
        ("vi", "125,5", 125.5),
        ("vi", "1.250,75", 1250.75),
        ("vi", "1250,75", 1250.75),  # grouping is optional when read
        ("vi", "-3.000.000", -3000000),
        ("en", "1,250.75", 1250.75),
        ("plain", "0.125", 0.125),
        ({"decimal": ",", "group": " "}, "12 500,5", 12500.5),
    ],
)
def test_numbers_written_in_a_locales_notation_become_numbers(
    notation: Any, text: str, number: float
) -> None:
    mapping = _one({"from": "/DienTich", "to": "/area", "number": {"from": notation}})
    assert mapping.apply({"DienTich": text}) == {"area": number}
    back = mapping.reverse({"area": number})["DienTich"]
    assert mapping.apply({"DienTich": back}) == {"area": number}


def test_numbers_are_written_back_with_the_declared_separators_and_places() -> None:
    vi = _one({"from": "/area", "to": "/DienTich", "number": {"to": "vi"}})
    assert vi.apply({"area": 1250.75}) == {"DienTich": "1.250,75"}
    assert vi.apply({"area": 1234567}) == {"DienTich": "1.234.567"}
    assert vi.reverse({"DienTich": "1.250,75"}) == {"area": 1250.75}
    fixed = _one({"from": "/area", "to": "/DienTich", "number": {"to": "vi", "places": 2}})
    assert fixed.apply({"area": 125.5}) == {"DienTich": "125,50"}


@pytest.mark.parametrize("text", ["1.25,0", "12,5.0", "abc", "1,250.75", "", "1e5"])
def test_a_number_not_in_the_declared_notation_is_named(text: str) -> None:
    mapping = _one({"from": "/DienTich", "to": "/area", "number": {"from": "vi"}})
    with pytest.raises(MappingError, match=r"is not a number written like '1\.234,5'"):
        mapping.apply({"DienTich": text})


def test_integers_are_read_from_xml_text_and_written_back() -> None:
    mapping = _one({"from": "/VonDieuLe", "to": "/capital", "integer": {"from": "plain"}})
    assert mapping.apply({"VonDieuLe": "50000000000"}) == {"capital": 50000000000}
    assert mapping.reverse({"capital": 50000000000}) == {"VonDieuLe": "50000000000"}
    for bad in ("12.5", "mười", "1 000"):
        with pytest.raises(MappingError, match=r"is not an integer|whole number"):
            mapping.apply({"VonDieuLe": bad})
    with pytest.raises(MappingError, match="is not an integer"):
        mapping.reverse({"capital": "12"})  # the JSON side takes a number, not text


def test_booleans_read_and_write_their_declared_spellings() -> None:
    # Unquoted YAML `true:` and `1` are booleans and integers: read as their text.
    rule = yaml.safe_load(
        "{from: /DaThueChap, to: /mortgaged, boolean: {from: {true: [Có, 1], false: [Không, 0]}}}"
    )
    mapping = _one(rule)
    assert mapping.apply({"DaThueChap": "có"}) == {"mortgaged": True}
    assert mapping.apply({"DaThueChap": "0"}) == {"mortgaged": False}
    assert mapping.reverse({"mortgaged": False}) == {"DaThueChap": "Không"}
    with pytest.raises(MappingError, match=r"'x' is not one of \['Có', '1'\]"):
        mapping.apply({"DaThueChap": "x"})


def test_datetimes_are_read_and_written_in_the_declared_zone() -> None:
    national = _one(
        {
            "from": "/at",
            "to": "/ThoiDiem",
            "datetime": {"from": "iso", "to": "dd/MM/yyyy HH:mm:ss"},
        },
        zone="+07:00",
    )
    # A caller's UTC moment is written in Vietnam time; read back, it says so.
    assert national.apply({"at": "2025-01-02T20:30:00Z"}) == {"ThoiDiem": "03/01/2025 03:30:00"}
    assert national.reverse({"ThoiDiem": "03/01/2025 03:30:00"}) == {
        "at": "2025-01-03T03:30:00+07:00"
    }
    with pytest.raises(MappingError, match="is not a date and time"):
        national.apply({"at": "2025-01-02"})  # no time, no offset: a date, not a moment
    offsets = _one(
        {"from": "/T", "to": "/t", "datetime": {"from": "yyyyMMddHHmmssSSSxx", "to": "iso"}}
    )
    assert offsets.apply({"T": "20250102103000250+0700"}) == {
        "t": "2025-01-02T10:30:00.250000+07:00"
    }
    with pytest.raises(MappingError, match="not a date and time"):
        offsets.apply({"T": "20250230103000250+0700"})  # 30 February


def test_trim_and_drop_empty_per_mapping_and_per_rule() -> None:
    answer = {"Ten": "  Lê Văn An ", "GhiChu": "", "DiaChi": {"Xa": " ", "Tinh": "Hà Nội"}}
    rules = [
        {"from": "/Ten", "to": "/name"},
        {"from": "/GhiChu", "to": "/note", "default": "-"},
        {"from": "/DiaChi", "to": "/address"},
    ]
    assert compile_mapping({"rules": rules}).apply(answer) == {
        "name": "  Lê Văn An ", "note": "", "address": {"Xa": " ", "Tinh": "Hà Nội"}
    }  # fmt: skip
    clean = compile_mapping({"trim": True, "drop_empty": True, "rules": rules})
    # An empty value is an absent one: the default applies, a required rule would fail.
    assert clean.apply(answer) == {"name": "Lê Văn An", "note": "-", "address": {"Tinh": "Hà Nội"}}
    one_rule = compile_mapping({"rules": [{**rules[0], "trim": True}, rules[1]]})
    assert one_rule.apply(answer) == {"name": "Lê Văn An", "note": ""}
    required = _one(
        {"from": "/GhiChu", "to": "/note", "trim": True, "drop_empty": True, "required": True}
    )
    with pytest.raises(MappingError, match="/GhiChu is required"):
        required.apply({"GhiChu": "   "})


@pytest.mark.parametrize(
    ("unknown", "expected"),
    [("omit", {"landUse": {"code": "XYZ"}}), ("pass", {"landUse": {"code": "XYZ", "name": "XYZ"}})],
)
def test_an_unknown_code_keeps_the_code_as_the_rule_declares(
    unknown: str, expected: dict[str, Any]
) -> None:
    rules = [
        {"from": "/MaMDSD", "to": "/landUse/code"},
        {"from": "/MaMDSD", "to": "/landUse/name", "codes": "land-use", "unknown": unknown},
    ]
    mapping = compile_mapping({"rules": rules}, {"land-use": LAND_USE})
    assert mapping.apply({"MaMDSD": "XYZ"}) == expected
    known = mapping.apply({"MaMDSD": "LUC"})
    assert known == {"landUse": {"code": "LUC", "name": "Đất chuyên trồng lúa nước"}}
    assert mapping.reverse(known) == {"MaMDSD": "LUC"}
    # Without a policy an unknown code still fails, as it always did; or per mapping.
    strict = compile_mapping({"rules": [{**rules[1], "unknown": None}]}, {"land-use": LAND_USE})
    with pytest.raises(MappingError, match="'XYZ' is not in code list 'land-use'"):
        strict.apply({"MaMDSD": "XYZ"})
    lenient = compile_mapping(
        {"unknown_codes": "omit", "rules": [{**rules[1], "unknown": None}]}, {"land-use": LAND_USE}
    )
    assert lenient.apply({"MaMDSD": "XYZ"}) == {}


def test_the_request_id_is_shortened_to_the_national_length_and_its_echo_checked() -> None:
    long_id = "lgsp-" + "7" * 60
    request = _one({"context": "request_id", "to": "/MaYeuCau", "max_length": 40})
    sent = request.apply({}, Context(request_id=long_id))["MaYeuCau"]
    assert len(sent) == 40 and sent == shorten(long_id, 40)
    assert request.apply({}, Context(request_id="short-id")) == {"MaYeuCau": "short-id"}
    echo = _one({"from": "/MaYeuCau", "echo": "request_id", "max_length": 40})
    assert echo.apply({"MaYeuCau": sent}, Context(request_id=long_id)) == {}
    with pytest.raises(MappingError, match="the answer is for 'other', not"):
        echo.apply({"MaYeuCau": "other"}, Context(request_id=long_id))


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"rules": [{"from": "/a", "to": "/b", "number": {"from": "fr"}}]},
         "rules.0.number.from: 'fr' is not"),
        ({"rules": [{"from": "/a", "to": "/b", "number": {}}]}, "rules.0.number: give the text"),
        ({"rules": [{"from": "/a", "to": "/b",
                     "number": {"from": {"decimal": ",", "group": ","}}}]},
         "separators must differ"),
        ({"rules": [{"from": "/a", "to": "/b", "integer": {"from": "vi", "places": 2}}]},
         r"rules.0 \('/a' -> '/b'\): integer takes no places"),
        ({"rules": [{"from": "/a", "to": "/b",
                     "boolean": {"from": {"true": ["x"], "false": ["X"]}}}]},
         "both true and false"),
        ({"rules": [{"from": "/a", "to": "/b",
                     "datetime": {"from": "dd/MM/yyyy HH:mm", "to": "iso"}}]},
         r"rules.0 \('/a' -> '/b'\): datetime formats \['dd/MM/yyyy HH:mm'\] have no offset"),
        ({"rules": [{"from": "/a", "to": "/b", "datetime": {"from": "HH:mm", "to": "iso"}}]},
         "needs yyyy, MM and dd"),
        ({"zone": "Mars/Olympus", "rules": []}, "zone 'Mars/Olympus' is neither"),
        ({"rules": [{"from": "/a", "to": "/b", "number": {"from": "vi"}, "codes": "land-use"}]},
         r"converts its value one way; this one has \['number', 'codes'\]"),
        ({"rules": [{"from": "/a", "to": "/b", "unknown": "omit"}]}, "give codes: too"),
        ({"rules": [{"from": "/a", "to": "/b", "codes": "land-use", "unknown": "drop"}]},
         "rules.0.unknown"),
        ({"rules": [{"from": "/a", "to": "/b", "max_length": 40}]}, "for context and echo rules"),
        ({"rules": [{"from": "/a"}]}, "a rule needs 'to'"),
        ({"rules": [{"setting": "agency", "to": "/b"}]},
         r"rules.0 \('agency' -> '/b'\): no setting 'agency'"),
        ({"rules": [{"from": "/MaYeuCau", "to": "/b", "echo": "request_id"}]}, "has no 'to'"),
        ({"rules": [{"from": "/a", "to": "/b", "codes": "nope"}]},
         r"rules.0 \('/a' -> '/b'\): no code list 'nope'"),
        ({"xml": {"side": "from", "namespaces": {"dd": "urn:x"}},
          "rules": [{"from": "/d:ThuaDat", "to": "/b"}]},
         "rules.0: /d:ThuaDat: prefix 'd' is not declared"),
        ({"xml": {"side": "to", "lists": ["gml:Point"]}, "rules": []},
         "prefix 'gml' is not declared"),
        ({"xml": {"side": "sideways"}, "rules": []}, "xml.side"),
    ],
)  # fmt: skip
def test_bad_declarations_fail_when_compiled_naming_the_rule(
    spec: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        compile_mapping(spec, {"land-use": LAND_USE})


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False))
def test_numbers_in_vietnamese_notation_round_trip(value: Decimal) -> None:
    mapping = _one({"from": "/area", "to": "/DienTich", "number": {"to": "vi"}})
    number = float(value) if value != value.to_integral_value() else int(value)
    text = mapping.apply({"area": number})["DienTich"]
    assert "." not in text.partition(",")[2]  # groups only in the whole part
    assert mapping.reverse({"DienTich": text}) == {"area": number}


# -- a national lookup that is declarations only: the land registry's parcel lookup --------------

LAND_USE = {
    "ONT": "Đất ở tại nông thôn",
    "LUC": "Đất chuyên trồng lúa nước",
    "CLN": "Đất trồng cây lâu năm",
}
PARCEL_REQUEST = yaml.safe_load("""
# Canonical parcel lookup -> the national <TraCuuThuaDat>.
xml: {side: to, root: TraCuuThuaDat, namespace: "urn:vn:gov:tnmt:dat-dai:1.0"}
rules:
  - {context: request_id, to: /MaYeuCau, max_length: 40}
  # The configured agency code when there is one, else the calling client's agency.
  - {context: client_agency, to: /MaDonVi}
  - {setting: agency_code, to: /MaDonVi}
  - {from: /provinceCode, to: /MaTinh, required: true}
  - {from: /mapSheet, to: /SoToBanDo, integer: {to: plain}, required: true}
  - {from: /parcelNumber, to: /SoThua, integer: {to: plain}, required: true}
""")
PARCEL_ANSWER = yaml.safe_load("""
# The national <KetQuaTraCuuThuaDat> -> the canonical parcel.
xml:
  side: from
  root: KetQuaTraCuuThuaDat
  namespace: "urn:vn:gov:tnmt:dat-dai:1.0"
trim: true
drop_empty: true
zone: "+07:00"
rules:
  - {from: /MaYeuCau, echo: request_id, max_length: 40}
  - {from: /ThuaDat/MaTinh, to: /parcel/provinceCode, required: true}
  - {from: /ThuaDat/SoToBanDo, to: /parcel/mapSheet, integer: {from: plain}, required: true}
  - {from: /ThuaDat/SoThua, to: /parcel/number, integer: {from: plain}, required: true}
  - {from: /ThuaDat/DienTich, to: /parcel/area, number: {from: vi}, required: true}
  - {from: /ThuaDat/MucDichSuDung, to: /parcel/landUse/code, required: true}
  - {from: /ThuaDat/MucDichSuDung, to: /parcel/landUse/name, codes: land-use, unknown: omit}
  - from: /ThuaDat/NgayCapGCN
    to: /parcel/certificateIssuedOn
    date: {from: [dd/MM/yyyy], to: [yyyy-MM-dd]}
  - from: /ThuaDat/ThoiDiemCapNhat
    to: /parcel/updatedAt
    datetime: {from: "dd/MM/yyyy HH:mm:ss", to: iso}
  - {from: /ThuaDat/GhiChu, to: /parcel/note}
  # One holder or several: <ChuSuDung> is a list either way (an `each` says so).
  - from: /ThuaDat/DanhSachChuSuDung/ChuSuDung
    to: /parcel/holders
    default: []
    each:
      - {from: /HoTen, to: /fullName, required: true}
      - {from: /SoDinhDanh, to: /personalId}
      - {from: /DaiDien, to: /representative, boolean: {from: digit}}
""")
ONE_HOLDER = """<?xml version="1.0" encoding="UTF-8"?>
<KetQuaTraCuuThuaDat xmlns="urn:vn:gov:tnmt:dat-dai:1.0">
  <MaYeuCau>{request_id}</MaYeuCau>
  <ThuaDat>
    <MaTinh>01</MaTinh>
    <SoToBanDo> 12 </SoToBanDo>
    <SoThua>345</SoThua>
    <DienTich>1.250,75</DienTich>
    <MucDichSuDung>{land_use}</MucDichSuDung>
    <NgayCapGCN>15/03/2019</NgayCapGCN>
    <ThoiDiemCapNhat>02/01/2025 10:30:00</ThoiDiemCapNhat>
    <GhiChu/>
    <DanhSachChuSuDung>
      <ChuSuDung><HoTen>  Nguyễn Văn An </HoTen><SoDinhDanh>001099012345</SoDinhDanh>
        <DaiDien>1</DaiDien></ChuSuDung>
      {more}
    </DanhSachChuSuDung>
  </ThuaDat>
</KetQuaTraCuuThuaDat>"""
SECOND = "<ChuSuDung><HoTen>Trần Thị Bình</HoTen><DaiDien>0</DaiDien></ChuSuDung>"


def test_a_parcel_lookup_is_converted_both_ways_by_declarations_alone() -> None:
    request = compile_mapping(PARCEL_REQUEST, settings={"agency_code": None})
    answer = compile_mapping(PARCEL_ANSWER, {"land-use": LAND_USE})
    ctx = Context(request_id="9f1c" * 16, client_agency="000.00.31.H49")
    canonical_request = {"provinceCode": "01", "mapSheet": 12, "parcelNumber": 345}

    sent = request.to_xml(canonical_request, ctx)
    parsed = xml_to_data(parse_xml(sent), namespaces={"d": "urn:vn:gov:tnmt:dat-dai:1.0"})
    assert parsed == {"d:TraCuuThuaDat": {
        "d:MaYeuCau": shorten(ctx.request_id, 40), "d:MaDonVi": "000.00.31.H49",
        "d:MaTinh": "01", "d:SoToBanDo": "12", "d:SoThua": "345",
    }}  # fmt: skip
    assert request.from_xml(sent) == canonical_request
    configured = compile_mapping(PARCEL_REQUEST, settings={"agency_code": "000.00.00.H49"})
    assert b"<MaDonVi>000.00.00.H49</MaDonVi><MaTinh>" in configured.to_xml(canonical_request, ctx)

    national = ONE_HOLDER.format(request_id=shorten(ctx.request_id, 40), land_use="LUC", more="")
    parcel = answer.from_xml(national.encode(), ctx)
    assert parcel == {"parcel": {
        "provinceCode": "01", "mapSheet": 12, "number": 345, "area": 1250.75,
        "landUse": {"code": "LUC", "name": "Đất chuyên trồng lúa nước"},
        "certificateIssuedOn": "2019-03-15", "updatedAt": "2025-01-02T10:30:00+07:00",
        "holders": [{"fullName": "Nguyễn Văn An", "personalId": "001099012345",
                     "representative": True}],
    }}  # fmt: skip
    # And back: the canonical parcel as the national XML, which reads as the same parcel.
    rebuilt = answer.to_xml(parcel)
    assert b"<DienTich>1.250,75</DienTich>" in rebuilt
    assert b"<NgayCapGCN>15/03/2019</NgayCapGCN>" in rebuilt
    assert answer.from_xml(rebuilt) == parcel

    # Several holders, and a land-use code newer than the list: the code stays, no name.
    two = ONE_HOLDER.format(request_id=shorten(ctx.request_id, 40), land_use="TMD", more=SECOND)
    parcel = answer.from_xml(two.encode(), ctx)["parcel"]
    assert parcel["landUse"] == {"code": "TMD"}
    assert [h["fullName"] for h in parcel["holders"]] == ["Nguyễn Văn An", "Trần Thị Bình"]
    assert answer.from_xml(answer.to_xml({"parcel": parcel}))["parcel"] == parcel

    # An answer for another request, or another document, is refused by name.
    other = ONE_HOLDER.format(request_id="someone-else", land_use="LUC", more="")
    with pytest.raises(MappingError, match="the answer is for 'someone-else'"):
        answer.from_xml(other.encode(), ctx)
    with pytest.raises(MappingError, match="is <TraCuuThuaDat>, not <KetQuaTraCuuThuaDat>"):
        answer.from_xml(sent)


def test_a_parcel_lookup_over_soap_declares_its_envelope() -> None:
    request = compile_mapping(
        {**PARCEL_REQUEST, "xml": {**PARCEL_REQUEST["xml"], "envelope": "1.1"}},
        settings={"agency_code": "000.00.00.H49"},
    )
    answer = compile_mapping(
        {**PARCEL_ANSWER, "xml": {**PARCEL_ANSWER["xml"], "envelope": "1.1"}},
        {"land-use": LAND_USE},
    )
    canonical_request = {"provinceCode": "01", "mapSheet": 12, "parcelNumber": 345}
    sent = request.to_xml(canonical_request, Context(request_id="r-1"))
    message = parse_envelope(sent)
    assert message.version == "1.1" and message.body is not None
    assert message.body.tag == "{urn:vn:gov:tnmt:dat-dai:1.0}TraCuuThuaDat"
    assert request.from_xml(sent) == canonical_request

    national = ONE_HOLDER.format(request_id="r-1", land_use="ONT", more="")
    body = parse_xml(national.encode())
    parcel = answer.from_xml(soap_envelope(body, version="1.1"), Context(request_id="r-1"))
    assert parcel["parcel"]["landUse"] == {"code": "ONT", "name": "Đất ở tại nông thôn"}
    assert answer.from_xml(answer.to_xml(parcel)) == parcel

    # A fault is not a parcel: it is handed over whole, for the adapter to classify.
    fault = fault_envelope(SoapFault("Client", "Không tìm thấy thửa đất"), "1.1")
    with pytest.raises(SoapFaultAnswer) as info:
        answer.from_xml(fault)
    assert (info.value.fault.code, info.value.fault.reason) == ("Client", "Không tìm thấy thửa đất")
    with pytest.raises(MappingError, match=r"a SOAP 1\.2 envelope, not 1\.1"):
        answer.from_xml(soap_envelope(body, version="1.2"))


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1950, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ).map(lambda m: m.replace(microsecond=0)),
    offset_minutes=st.integers(-12 * 60, 14 * 60),
)
def test_a_moment_survives_the_national_format_whatever_its_offset(
    moment: datetime, offset_minutes: int
) -> None:
    mapping = _one(
        {
            "from": "/at",
            "to": "/ThoiDiem",
            "datetime": {"from": "iso", "to": "yyyy/MM/dd HH:mm:ss"},
        },
        zone="+07:00",
    )
    given_at = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    national = mapping.apply({"at": given_at.isoformat()})["ThoiDiem"]
    back = datetime.fromisoformat(mapping.reverse({"ThoiDiem": national})["at"])
    assert back == given_at  # the same instant, now written in Vietnam time
    assert back.utcoffset() == timedelta(hours=7)


# -- split at a separator, exactly one, the national conventions ---------------------------------


def test_split_cuts_a_code_into_exactly_its_parts_and_joins_them_backwards() -> None:
    m = compile_mapping({"rules": [{"from": "/code", "to": ["/MaTinh", "/MaHuyen"], "split": "-"}]})
    assert m.apply({"code": "01-001"}) == {"MaTinh": "01", "MaHuyen": "001"}
    assert m.reverse({"MaTinh": "01", "MaHuyen": "001"}) == {"code": "01-001"}
    for bad in ("01", "01-001-9", "-001"):
        with pytest.raises(MappingError, match="2 non-empty parts separated by '-'"):
            m.apply({"code": bad})
    with pytest.raises(ValueError, match="split: maps one 'from' path"):
        compile_mapping({"rules": [{"from": "/a", "to": "/b", "split": "-"}]})


def test_exactly_one_unwraps_one_element_and_refuses_none_or_two() -> None:
    m = compile_mapping(
        {
            "rules": [
                {
                    "from": "/ChiNhanh",
                    "to": "/branch",
                    "exactly_one": True,
                    "each": [{"from": "/Ma", "to": "/code"}],
                }
            ]
        }
    )
    assert m.apply({"ChiNhanh": {"Ma": "1"}}) == {"branch": {"code": "1"}}
    assert m.apply({"ChiNhanh": [{"Ma": "1"}]}) == {"branch": {"code": "1"}}
    assert m.apply({}) == {}  # absent: as the rule says (not required)
    for many in ([], [{"Ma": "1"}, {"Ma": "2"}]):
        with pytest.raises(MappingError, match=f"{len(many)} elements where exactly one"):
            m.apply({"ChiNhanh": many})


def test_national_rules_follow_the_declared_conventions() -> None:
    long_id = "x" * 64
    shorten_ = national_from({}, "national.yaml")
    refuse = national_from({"request_id": {"longer": "refuse"}}, "national.yaml")
    spec = {
        "rules": [
            {"national": "request_id", "to": "/MaYeuCau"},
            {"national": "agency_code", "to": "/MaDonVi"},
        ]
    }
    ctx = Context(request_id=long_id, client_agency="000.00.31.H49")
    sent = compile_mapping(spec, national=shorten_).apply({}, ctx)
    assert sent == {"MaYeuCau": shorten(long_id, 40), "MaDonVi": "000.00.31.H49"}
    configured = compile_mapping(spec, settings={"agency_code": "000.00.00.H49"}, national=refuse)
    with pytest.raises(Exception, match="at most 40 characters; this one has 64"):
        configured.apply({}, ctx)
    assert configured.apply({}, Context(request_id="r-1"))["MaDonVi"] == "000.00.00.H49"
    echo = compile_mapping(
        {"rules": [{"from": "/MaYeuCau", "echo": "national"}]}, national=shorten_
    )
    assert echo.apply({"MaYeuCau": shorten(long_id, 40)}, ctx) == {}
    with pytest.raises(ValueError, match="does not answer this request"):
        echo.apply({"MaYeuCau": "another"}, ctx)
    with pytest.raises(ValueError, match="national: block"):
        compile_mapping(spec)
    # The outcome table: the platform's, merged code by code.
    table = national_from({"codes": {"100": None, "7": {"status": 200}}}, "national.yaml")
    assert table.outcome({"MaLoi": 201}, 500).spec.problem == "no-such-record"
    assert table.outcome({"MaLoi": "100"}, 401).spec is table.spec.unknown
    assert table.failed({"MaLoi": "201"}, 500) is False and table.failed({}, 500) is None
