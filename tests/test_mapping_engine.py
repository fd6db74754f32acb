"""The declarative mapping engine: every rule kind, both directions, and errors that
name the rule at load time rather than on an exchange."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.conversion.catalogue import adapter_config_errors, build_adapter, known_adapters
from gateway.conversion.mapping.engine import (
    Context,
    MappingError,
    compile_mapping,
    join_name,
    split_name,
)
from gateway.conversion.sdk import Adapter, AdapterConfig

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
