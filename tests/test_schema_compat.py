"""JSON Schema compatibility in the Confluent modes (gateway.registry.compat).

The table gives, for each change from an `old` schema to a `new` one, the outcome of
BACKWARD (the new schema reads data written under the old) and FORWARD (the old schema reads
data written under the new): None for compatible, else a rule id that must be among the
reported problems. FULL is expected to fail exactly when either direction fails, naming both
directions' rules.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.registry.compat import MODES, Incompatibility, can_read, check

# -- schemas ------------------------------------------------------------------------------------

DRAFT_2020 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

# A population-lookup response: one citizen, closed content model.
CITIZEN: dict[str, Any] = {
    "$schema": DRAFT_2020,
    "title": "CongDan",
    "type": "object",
    "properties": {
        "SoDinhDanh": {"type": "string", "pattern": "^[0-9]{12}$"},
        "HoVaTen": {"type": "string", "maxLength": 100},
        "GioiTinh": {"type": "string", "enum": ["0", "1", "2"]},
        "NgaySinh": {"type": "string"},
        "QuocTich": {"type": "string", "const": "VN"},
        "NoiThuongTru": {
            "type": "object",
            "properties": {
                "MaTinh": {"type": "string", "pattern": "^[0-9]{2}$"},
                "MaHuyen": {"type": "string", "pattern": "^[0-9]{3}$"},
                "MaXa": {"type": "string", "pattern": "^[0-9]{5}$"},
                "ChiTiet": {"type": "string", "maxLength": 255},
            },
            "required": ["MaTinh"],
            "additionalProperties": False,
        },
    },
    "required": ["SoDinhDanh", "HoVaTen"],
    "additionalProperties": False,
}

# The same citizen with $defs and $ref for the address and the name.
CITIZEN_REFS: dict[str, Any] = {
    "$schema": DRAFT_2020,
    "$defs": {
        "DiaChi": CITIZEN["properties"]["NoiThuongTru"],
        "Ten": {"type": "string", "maxLength": 100},
    },
    "type": "object",
    "properties": {
        **CITIZEN["properties"],
        "HoVaTen": {"$ref": "#/$defs/Ten"},
        "NoiThuongTru": {"$ref": "#/$defs/DiaChi"},
    },
    "required": ["SoDinhDanh", "HoVaTen"],
    "additionalProperties": False,
}

# A household whose members have children of their own: a recursive schema.
HOUSEHOLD: dict[str, Any] = {
    "$schema": DRAFT_2020,
    "$defs": {
        "Nguoi": {
            "type": "object",
            "properties": {
                "HoVaTen": {"type": "string", "maxLength": 100},
                "Con": {"type": "array", "items": {"$ref": "#/$defs/Nguoi"}},
            },
            "required": ["HoVaTen"],
        }
    },
    "type": "object",
    "properties": {
        "MaHo": {"type": "string"},
        "ThanhVien": {"type": "array", "items": {"$ref": "#/$defs/Nguoi"}},
    },
}


# An identity document: a oneOf with a required "Loai" discriminator.
def _document(kind: str, pattern: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"Loai": {"const": kind}, "So": {"type": "string", "pattern": pattern}},
        "required": ["Loai", "So"],
    }


CCCD = _document("CCCD", "^[0-9]{12}$")
PASSPORT = _document("HoChieu", "^[A-Z][0-9]{7}$")
CMND = _document("CMND", "^[0-9]{9}$")


def edit(base: Any, *changes: tuple[str, Any]) -> Any:
    """A deep copy of `base` with each (slash-separated path, value) set; value DELETE removes."""
    doc = copy.deepcopy(base)
    for path, value in changes:
        *parents, last = path.split("/")
        node = doc
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        if value is DELETE:
            if isinstance(node, list):
                node.remove(last)
            else:
                del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return doc


DELETE = object()
OPEN_CITIZEN = edit(CITIZEN, ("additionalProperties", DELETE))
STRING = {"type": "string"}


def obj(properties: dict[str, Any], **keywords: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **keywords}


def _draft07_name(name_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": DRAFT_07,
        "definitions": {"Ten": STRING},
        "type": "object",
        "properties": {"HoVaTen": name_schema},
    }


def _draft2020_name(name_schema: dict[str, Any]) -> dict[str, Any]:
    return {**_draft07_name(name_schema), "$schema": DRAFT_2020}


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    old: Any
    new: Any
    backward: str | None  # rule expected when the new schema reads old data; None: compatible
    forward: str | None  # rule expected when the old schema reads new data; None: compatible


P = "properties"
ADDRESS = "properties/NoiThuongTru"

ROWS = [
    # identical and annotation-only
    Row("identical_citizen", CITIZEN, CITIZEN, None, None),
    Row(
        "annotations_only",
        CITIZEN,
        edit(CITIZEN, ("title", "CongDanV2"), (f"{P}/HoVaTen/description", "Ho va ten")),
        None,
        None,
    ),
    # open and closed content models
    Row(
        "add_optional_property_to_closed_model",
        CITIZEN,
        edit(CITIZEN, (f"{P}/SoDienThoai", STRING)),
        None,
        "PROPERTY_REMOVED_FROM_CLOSED_MODEL",
    ),
    Row(
        "add_optional_property_to_open_model",
        OPEN_CITIZEN,
        edit(OPEN_CITIZEN, (f"{P}/SoDienThoai", STRING)),
        "PROPERTY_ADDED_TO_OPEN_MODEL",
        None,
    ),
    Row(
        "add_unconstrained_property_to_open_model",
        OPEN_CITIZEN,
        edit(OPEN_CITIZEN, (f"{P}/GhiChu", {"description": "free text"})),
        None,
        None,
    ),
    Row(
        "remove_property_from_open_model",
        OPEN_CITIZEN,
        edit(OPEN_CITIZEN, (f"{P}/NgaySinh", DELETE)),
        None,
        "PROPERTY_ADDED_TO_OPEN_MODEL",
    ),
    Row(
        "remove_property_from_closed_model",
        CITIZEN,
        edit(CITIZEN, (f"{P}/NgaySinh", DELETE)),
        "PROPERTY_REMOVED_FROM_CLOSED_MODEL",
        None,
    ),
    Row("close_open_model", OPEN_CITIZEN, CITIZEN, "CONTENT_MODEL_CLOSED", None),
    Row("open_closed_model", CITIZEN, OPEN_CITIZEN, None, "CONTENT_MODEL_CLOSED"),
    Row(
        "additional_properties_schema_accepts_removed_property",
        obj({"MaTinh": STRING, "TenTinh": STRING}, additionalProperties=STRING),
        obj({"MaTinh": STRING}, additionalProperties=STRING),
        None,
        None,
    ),
    Row(
        "additional_properties_schema_rejects_removed_property",
        obj({"MaTinh": STRING, "SoLanCapDoi": {"type": "integer"}}, additionalProperties=STRING),
        obj({"MaTinh": STRING}, additionalProperties=STRING),
        "TYPE_NARROWED",
        "TYPE_NARROWED",
    ),
    Row(
        "additional_properties_schema_widened",
        obj({}, additionalProperties=STRING),
        obj({}, additionalProperties={"type": ["string", "null"]}),
        None,
        "TYPE_NARROWED",
    ),
    Row(
        "additional_properties_schema_on_open_writer",
        obj({"MaTinh": STRING}),
        obj({"MaTinh": STRING}, additionalProperties=STRING),
        "ADDITIONAL_PROPERTIES_NARROWED",
        None,
    ),
    Row(
        "unevaluated_properties_as_closed_model",
        CITIZEN,
        edit(CITIZEN, ("additionalProperties", DELETE), ("unevaluatedProperties", False)),
        None,
        None,
    ),
    Row(
        "unevaluated_properties_beside_all_of",
        obj({"a": STRING}),
        {"allOf": [obj({"a": STRING})], "unevaluatedProperties": False},
        "UNSUPPORTED_KEYWORD",
        None,
    ),
    Row(
        "property_forbidden_with_false",
        obj({"GhiChu": True}),
        obj({"GhiChu": False}),
        "PROPERTY_FORBIDDEN",
        None,
    ),
    Row(
        "pattern_properties_added_to_open_model",
        obj({}),
        obj({}, patternProperties={"^x-": STRING}),
        "PATTERN_PROPERTIES_NARROWED",
        None,
    ),
    Row(
        "pattern_properties_same_pattern_widened",
        obj(
            {},
            patternProperties={"^Ma": {"type": "string", "maxLength": 5}},
            additionalProperties=False,
        ),
        obj(
            {},
            patternProperties={"^Ma": {"type": "string", "maxLength": 10}},
            additionalProperties=False,
        ),
        None,
        "MAX_LENGTH_DECREASED",
    ),
    # required
    Row(
        "make_optional_property_required",
        CITIZEN,
        edit(CITIZEN, ("required", ["SoDinhDanh", "HoVaTen", "GioiTinh"])),
        "REQUIRED_PROPERTY_ADDED",
        None,
    ),
    Row(
        "drop_requirement",
        CITIZEN,
        edit(CITIZEN, ("required", ["SoDinhDanh"])),
        None,
        "REQUIRED_PROPERTY_ADDED",
    ),
    # types
    Row(
        "nullable_to_non_nullable",
        edit(CITIZEN, (f"{P}/NgaySinh/type", ["string", "null"])),
        CITIZEN,
        "TYPE_NARROWED",
        None,
    ),
    Row(
        "integer_widened_to_number", {"type": "integer"}, {"type": "number"}, None, "TYPE_NARROWED"
    ),
    Row(
        "type_added_to_untyped_property",
        edit(CITIZEN, (f"{P}/GhiChu", {})),
        edit(CITIZEN, (f"{P}/GhiChu", STRING)),
        "TYPE_NARROWED",
        None,
    ),
    # enum and const
    Row(
        "enum_value_added",
        CITIZEN,
        edit(CITIZEN, (f"{P}/GioiTinh/enum", ["0", "1", "2", "3"])),
        None,
        "ENUM_VALUE_REMOVED",
    ),
    Row(
        "enum_value_removed",
        CITIZEN,
        edit(CITIZEN, (f"{P}/GioiTinh/enum", ["0", "1"])),
        "ENUM_VALUE_REMOVED",
        None,
    ),
    Row(
        "enum_added_to_free_string",
        edit(CITIZEN, (f"{P}/GioiTinh/enum", DELETE)),
        CITIZEN,
        "ENUM_ADDED",
        None,
    ),
    Row(
        "untyped_enum_gets_a_type",
        {"enum": ["0", "1", "2"]},
        {"type": "string", "enum": ["2", "1", "0"]},
        None,
        None,
    ),
    Row(
        "const_changed",
        CITIZEN,
        edit(CITIZEN, (f"{P}/QuocTich/const", "VNM")),
        "CONST_CHANGED",
        "CONST_CHANGED",
    ),
    # strings
    Row(
        "max_length_decreased",
        CITIZEN,
        edit(CITIZEN, (f"{P}/HoVaTen/maxLength", 50)),
        "MAX_LENGTH_DECREASED",
        None,
    ),
    Row(
        "min_length_added",
        CITIZEN,
        edit(CITIZEN, (f"{P}/HoVaTen/minLength", 1)),
        "MIN_LENGTH_INCREASED",
        None,
    ),
    Row(
        "pattern_added",
        edit(CITIZEN, (f"{P}/SoDinhDanh/pattern", DELETE)),
        CITIZEN,
        "PATTERN_ADDED",
        None,
    ),
    Row(
        "pattern_changed",
        CITIZEN,
        edit(CITIZEN, (f"{P}/SoDinhDanh/pattern", "^[0-9]{9}([0-9]{3})?$")),
        "PATTERN_CHANGED",
        "PATTERN_CHANGED",
    ),
    Row(
        "format_added",
        CITIZEN,
        edit(CITIZEN, (f"{P}/NgaySinh/format", "date")),
        "FORMAT_ADDED",
        None,
    ),
    # numbers
    Row(
        "minimum_raised",
        {"type": "integer", "minimum": 0},
        {"type": "integer", "minimum": 1},
        "MINIMUM_INCREASED",
        None,
    ),
    Row(
        "integer_exclusive_bound_is_the_same_bound",
        {"type": "integer", "maximum": 9},
        {"type": "integer", "exclusiveMaximum": 10},
        None,
        None,
    ),
    Row(
        "maximum_made_exclusive",
        {"type": "number", "maximum": 10},
        {"type": "number", "exclusiveMaximum": 10},
        "MAXIMUM_DECREASED",
        None,
    ),
    Row(
        "draft04_boolean_exclusive_minimum",
        {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        {"type": "number", "exclusiveMinimum": 0},
        None,
        None,
    ),
    Row(
        "multiple_of_refined",
        {"type": "integer", "multipleOf": 2},
        {"type": "integer", "multipleOf": 4},
        "MULTIPLE_OF_CHANGED",
        None,
    ),
    # arrays
    Row(
        "max_items_decreased",
        {"type": "array", "items": STRING, "maxItems": 5},
        {"type": "array", "items": STRING, "maxItems": 3},
        "MAX_ITEMS_DECREASED",
        None,
    ),
    Row(
        "min_items_added",
        {"type": "array", "items": STRING},
        {"type": "array", "items": STRING, "minItems": 1},
        "MIN_ITEMS_INCREASED",
        None,
    ),
    Row(
        "unique_items_added",
        {"type": "array", "items": STRING},
        {"type": "array", "items": STRING, "uniqueItems": True},
        "UNIQUE_ITEMS_ADDED",
        None,
    ),
    Row(
        "contains_added",
        {"type": "array"},
        {"type": "array", "contains": {"const": "CCCD"}},
        "CONTAINS_ADDED",
        None,
    ),
    Row(
        "array_item_type_widened",
        {"type": "array", "items": STRING},
        {"type": "array", "items": {"type": ["string", "null"]}},
        None,
        "TYPE_NARROWED",
    ),
    Row(
        "prefix_items_added",
        {"type": "array", "items": STRING},
        {"type": "array", "prefixItems": [{"const": "VN"}], "items": STRING},
        "CONST_ADDED",
        None,
    ),
    Row(
        "closed_tuple_extended",
        {"type": "array", "prefixItems": [STRING, STRING], "items": False},
        {"type": "array", "prefixItems": [STRING, STRING, STRING], "items": False},
        None,
        "READER_REJECTS_ALL",
    ),
    # nested objects
    Row(
        "nested_property_removed_from_closed_address",
        CITIZEN,
        edit(CITIZEN, (f"{ADDRESS}/properties/MaXa", DELETE)),
        "PROPERTY_REMOVED_FROM_CLOSED_MODEL",
        None,
    ),
    Row(
        "nested_requirement_added",
        CITIZEN,
        edit(CITIZEN, (f"{ADDRESS}/required", ["MaTinh", "MaHuyen"])),
        "REQUIRED_PROPERTY_ADDED",
        None,
    ),
    Row(
        "nested_max_length_increased",
        CITIZEN,
        edit(CITIZEN, (f"{ADDRESS}/properties/ChiTiet/maxLength", 500)),
        None,
        "MAX_LENGTH_DECREASED",
    ),
    # $ref
    Row("defs_ref_inlined", CITIZEN_REFS, CITIZEN, None, None),
    Row(
        "defs_target_narrowed",
        CITIZEN_REFS,
        edit(CITIZEN_REFS, ("$defs/DiaChi/properties/ChiTiet/maxLength", 100)),
        "MAX_LENGTH_DECREASED",
        None,
    ),
    Row(
        "draft07_definitions_enum_narrowed",
        {
            "$schema": DRAFT_07,
            "definitions": {"GioiTinh": {"type": "string", "enum": ["0", "1", "2"]}},
            "type": "object",
            "properties": {"GioiTinh": {"$ref": "#/definitions/GioiTinh"}},
        },
        {
            "$schema": DRAFT_07,
            "definitions": {"GioiTinh": {"type": "string", "enum": ["1", "2"]}},
            "type": "object",
            "properties": {"GioiTinh": {"$ref": "#/definitions/GioiTinh"}},
        },
        "ENUM_VALUE_REMOVED",
        None,
    ),
    Row(
        "draft07_ignores_keywords_beside_ref",
        _draft07_name({"$ref": "#/definitions/Ten", "maxLength": 50}),
        _draft07_name({"type": "string", "maxLength": 50}),
        "MAX_LENGTH_DECREASED",
        None,
    ),
    Row(
        "draft2020_applies_keywords_beside_ref",
        _draft2020_name({"$ref": "#/definitions/Ten", "maxLength": 50}),
        _draft2020_name({"type": "string", "maxLength": 50}),
        None,
        None,
    ),
    Row(
        "recursive_household_member_narrowed",
        HOUSEHOLD,
        edit(HOUSEHOLD, ("$defs/Nguoi/properties/HoVaTen/maxLength", 50)),
        "MAX_LENGTH_DECREASED",
        None,
    ),
    Row(
        "unresolvable_ref",
        obj({"HoVaTen": STRING}),
        obj({"HoVaTen": {"$ref": "#/$defs/Missing"}}),
        "UNRESOLVED_REF",
        "UNRESOLVED_REF",
    ),
    # combinators
    Row(
        "any_of_branch_added",
        {"anyOf": [STRING, {"type": "integer"}]},
        {"anyOf": [STRING, {"type": "integer"}, {"type": "null"}]},
        None,
        "NO_MATCHING_ANY_OF_BRANCH",
    ),
    Row(
        "type_list_rewritten_as_any_of",
        {"type": ["string", "integer"]},
        {"anyOf": [STRING, {"type": "integer"}]},
        None,
        None,
    ),
    Row(
        "nullable_rewritten_as_one_of",
        {"type": ["string", "null"]},
        {"oneOf": [STRING, {"type": "null"}]},
        None,
        None,
    ),
    Row(
        "one_of_with_overlapping_branches",
        {"type": "integer"},
        {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 0}]},
        "ONE_OF_BRANCHES_MAY_OVERLAP",
        "TYPE_NARROWED",
    ),
    Row(
        "discriminated_one_of_branch_added",
        {"oneOf": [CCCD, PASSPORT]},
        {"oneOf": [CCCD, PASSPORT, CMND]},
        None,
        "NO_MATCHING_ONE_OF_BRANCH",
    ),
    Row(
        "all_of_adds_a_constraint",
        STRING,
        {"allOf": [STRING, {"maxLength": 10}]},
        "MAX_LENGTH_DECREASED",
        None,
    ),
    Row(
        "all_of_flattened",
        {
            "allOf": [
                obj({"SoDinhDanh": STRING}, required=["SoDinhDanh"]),
                {"properties": {"HoVaTen": {"type": "string", "maxLength": 100}}},
            ]
        },
        obj(
            {"SoDinhDanh": STRING, "HoVaTen": {"type": "string", "maxLength": 100}},
            required=["SoDinhDanh"],
        ),
        None,
        None,
    ),
    Row(
        "not_kept_identical",
        {"type": "string", "not": {"const": ""}, "maxLength": 10},
        {"type": "string", "not": {"const": ""}, "maxLength": 20},
        None,
        "MAX_LENGTH_DECREASED",
    ),
    Row(
        "not_added",
        STRING,
        {"type": "string", "not": {"const": ""}},
        "NOT_UNSUPPORTED",
        None,
    ),
    Row(
        "not_discharged_by_enumerated_writer",
        {"type": "string", "enum": ["0", "1"]},
        {"type": "string", "not": {"const": ""}},
        None,
        "ENUM_ADDED",
    ),
    Row(
        "if_then_added",
        CITIZEN,
        {
            **CITIZEN,
            "if": {"properties": {"QuocTich": {"const": "VN"}}, "required": ["QuocTich"]},
            "then": {"required": ["NgaySinh"]},
        },
        "CONDITIONAL_NOT_PROVEN",
        None,
    ),
    Row(
        "dependent_required_added",
        OPEN_CITIZEN,
        {**OPEN_CITIZEN, "dependentRequired": {"NoiThuongTru": ["NgaySinh"]}},
        "DEPENDENT_REQUIRED_ADDED",
        None,
    ),
    Row(
        "property_names_restricted_on_open_model",
        OPEN_CITIZEN,
        {**OPEN_CITIZEN, "propertyNames": {"pattern": "^[A-Z]"}},
        "PROPERTY_NAMES_RESTRICTED",
        None,
    ),
    Row(
        "property_names_satisfied_by_closed_model",
        CITIZEN,
        {**CITIZEN, "propertyNames": {"pattern": "^[A-Z]"}},
        None,
        None,
    ),
    Row(
        "max_properties_added",
        {"type": "object"},
        {"type": "object", "maxProperties": 5},
        "MAX_PROPERTIES_DECREASED",
        None,
    ),
    # boolean schemas
    Row("true_root_to_object", True, {"type": "object"}, "TYPE_NARROWED", None),
    Row("false_root_to_string", False, STRING, None, "READER_REJECTS_ALL"),
]


def _full_rules(row: Row) -> set[str]:
    return {r for r in (row.backward, row.forward) if r is not None}


def _rules(problems: list[Incompatibility]) -> set[str]:
    return {p.rule for p in problems}


def _ids(rows: list[Row]) -> list[str]:
    return [row.name for row in rows]


def test_table_is_wide_and_names_are_unique() -> None:
    assert len(ROWS) >= 35
    assert len(set(_ids(ROWS))) == len(ROWS)
    for mode in ("backward", "forward"):
        assert any(getattr(row, mode) is None for row in ROWS)
        assert any(getattr(row, mode) is not None for row in ROWS)
    full = [bool(_full_rules(row)) for row in ROWS]
    assert any(full) and not all(full)


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_backward(row: Row) -> None:
    problems = check("BACKWARD", row.new, [row.old])
    assert problems == can_read(row.new, row.old)
    if row.backward is None:
        assert problems == [], [str(p) for p in problems]
    else:
        assert row.backward in _rules(problems), [str(p) for p in problems]


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_forward(row: Row) -> None:
    problems = check("FORWARD", row.new, [row.old])
    assert problems == can_read(row.old, row.new)
    if row.forward is None:
        assert problems == [], [str(p) for p in problems]
    else:
        assert row.forward in _rules(problems), [str(p) for p in problems]


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_full(row: Row) -> None:
    problems = check("FULL", row.new, [row.old])
    expected = _full_rules(row)
    if not expected:
        assert problems == [], [str(p) for p in problems]
    else:
        assert expected <= _rules(problems), [str(p) for p in problems]
        directions = {"backward": row.backward, "forward": row.forward}
        for direction, rule in directions.items():
            if rule is not None:
                assert any(
                    p.rule == rule and p.message.startswith(f"{direction}: ") for p in problems
                )


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_transitive_with_one_earlier_version_is_the_plain_mode(row: Row) -> None:
    for mode in ("BACKWARD", "FORWARD", "FULL"):
        plain = check(mode, row.new, [row.old])
        transitive = check(f"{mode}_TRANSITIVE", row.new, [row.old])
        assert [(p.path, p.rule) for p in transitive] == [(p.path, p.rule) for p in plain]
        assert all(p.message.startswith("against version index 0") for p in transitive)


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_none_always_passes(row: Row) -> None:
    assert check("NONE", row.new, [row.old]) == []


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_problems_are_well_formed(row: Row) -> None:
    for problem in can_read(row.new, row.old) + can_read(row.old, row.new):
        assert problem.path.startswith("#")
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", problem.rule)
        assert problem.message.endswith(".")
        assert str(problem) == f"{problem.path}: {problem.message} ({problem.rule})"
        # A message names the property its path points into.
        tokens = problem.path.split("/")
        if "properties" in tokens[:-1]:
            index = len(tokens) - 1 - tokens[::-1].index("properties")
            if index + 1 < len(tokens):
                assert tokens[index + 1] in problem.message, str(problem)


# Schemas that only read themselves through the "identical" shortcut, because they use a
# construct the checker treats conservatively: a reader oneOf whose branches overlap (the writer's
# own oneOf is read as anyOf) and unevaluatedProperties beside allOf.
NOT_SELF_READABLE_STRUCTURALLY = {
    "unevaluated_properties_beside_all_of",
    "one_of_with_overlapping_branches",
}


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_every_schema_reads_itself(row: Row) -> None:
    for schema in (row.old, row.new):
        assert can_read(schema, copy.deepcopy(schema)) == []
        if row.name in NOT_SELF_READABLE_STRUCTURALLY or not isinstance(schema, dict):
            continue
        # Wrapping the writer defeats the shortcut, so the structural walk must agree.
        if "$ref" not in str(schema):
            assert can_read(schema, {"allOf": [schema]}) == [], row.name


# -- paths and messages --------------------------------------------------------------------


def test_nested_problem_points_at_the_property() -> None:
    new = edit(CITIZEN, (f"{ADDRESS}/properties/MaXa", DELETE))
    [problem] = can_read(new, CITIZEN)
    assert problem.path == "#/properties/NoiThuongTru/properties/MaXa"
    assert problem.rule == "PROPERTY_REMOVED_FROM_CLOSED_MODEL"
    assert "MaXa" in problem.message


def test_ref_problem_points_into_the_definition() -> None:
    new = edit(CITIZEN_REFS, ("$defs/DiaChi/properties/ChiTiet/maxLength", 100))
    [problem] = can_read(new, CITIZEN_REFS)
    assert problem.path == "#/$defs/DiaChi/properties/ChiTiet/maxLength"
    assert "ChiTiet" in problem.message and "100" in problem.message


def test_required_problem_names_the_property() -> None:
    new = edit(CITIZEN, ("required", ["SoDinhDanh", "HoVaTen", "GioiTinh"]))
    [problem] = can_read(new, CITIZEN)
    assert problem.path == "#/required/2"
    assert "'GioiTinh'" in problem.message


def test_removed_enum_value_is_named() -> None:
    new = edit(CITIZEN, (f"{P}/GioiTinh/enum", ["0", "1"]))
    [problem] = can_read(new, CITIZEN)
    assert problem.path == "#/properties/GioiTinh/enum"
    assert '"2"' in problem.message


# -- transitive histories ----------------------------------------------------------------------

# Every step below was registered when the subject's level allowed it (e.g. FORWARD for v2 in
# the first history); compatibility as set inclusion is transitive, so a transitive check can
# only catch something when an earlier step was not compatible in the same direction.


def test_backward_transitive_catches_a_value_dropped_earlier() -> None:
    v1 = CITIZEN
    v2 = edit(CITIZEN, (f"{P}/GioiTinh/enum", ["0", "1"]))  # registered under FORWARD
    v3 = edit(v2, (f"{P}/HoVaTen/maxLength", 200))  # a backward-compatible step from v2
    assert check("BACKWARD", v3, [v1, v2]) == []
    problems = check("BACKWARD_TRANSITIVE", v3, [v1, v2])
    assert _rules(problems) == {"ENUM_VALUE_REMOVED"}
    assert all(p.message.startswith("against version index 0: ") for p in problems)


def test_forward_transitive_catches_a_limit_raised_earlier() -> None:
    v1 = edit(CITIZEN, (f"{P}/HoVaTen/maxLength", 50))
    v2 = CITIZEN  # maxLength 100, registered under BACKWARD
    v3 = edit(CITIZEN, (f"{P}/GioiTinh/enum", ["0", "1"]))  # forward-compatible with v2
    assert check("FORWARD", v3, [v1, v2]) == []
    problems = check("FORWARD_TRANSITIVE", v3, [v1, v2])
    assert _rules(problems) == {"MAX_LENGTH_DECREASED"}
    assert all(p.message.startswith("against version index 0: ") for p in problems)
    assert problems[0].path == "#/properties/HoVaTen/maxLength"  # a pointer into v1, the reader


def test_full_transitive_catches_an_earlier_one_way_step() -> None:
    v1 = CITIZEN
    v2 = edit(CITIZEN, (f"{P}/HoVaTen/maxLength", 200))  # backward only
    v3 = edit(v2, ("description", "Thong tin cong dan"), (f"{P}/GioiTinh/enum", ["2", "1", "0"]))
    assert check("FULL", v3, [v1, v2]) == []
    problems = check("FULL_TRANSITIVE", v3, [v1, v2])
    assert _rules(problems) == {"MAX_LENGTH_DECREASED"}
    assert [p.message.split(":")[0] for p in problems] == ["against version index 0, forward"]


def test_transitive_checks_every_earlier_version() -> None:
    history = [
        edit(CITIZEN, (f"{P}/HoVaTen/maxLength", 10)),
        edit(CITIZEN, (f"{P}/HoVaTen/maxLength", 20)),
        edit(CITIZEN, (f"{P}/HoVaTen/maxLength", 30)),
    ]
    new = edit(CITIZEN, (f"{P}/HoVaTen/maxLength", 25))
    problems = check("FORWARD_TRANSITIVE", new, history)
    assert [p.message.split(":")[0] for p in problems] == [
        "against version index 0",
        "against version index 1",
    ]
    assert check("BACKWARD_TRANSITIVE", new, history) != []  # v3 allowed 30 characters
    assert check("BACKWARD", new, history[:2]) == []


# -- modes -------------------------------------------------------------------------------------


def test_modes_are_the_confluent_ones() -> None:
    assert MODES == (
        "NONE",
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    )


@pytest.mark.parametrize("mode", MODES)
def test_no_earlier_version_is_always_compatible(mode: str) -> None:
    assert check(mode, CITIZEN, []) == []


def test_none_passes_even_a_total_rewrite() -> None:
    assert check("NONE", {"type": "integer"}, [CITIZEN, OPEN_CITIZEN]) == []


@pytest.mark.parametrize("mode", ["", "backward", "FULLY", "BACKWARD_TRANSITIVE "])
def test_unknown_mode_raises(mode: str) -> None:
    with pytest.raises(ValueError, match="unknown compatibility mode"):
        check(mode, CITIZEN, [CITIZEN])


def test_incompatibility_str() -> None:
    problem = Incompatibility("#/properties/a", "TYPE_NARROWED", "The reader ...")
    assert str(problem) == "#/properties/a: The reader ... (TYPE_NARROWED)"


# -- soundness against a real validator ---------------------------------------------------------


def _random_schema(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["string", "integer", "number", "enum", "object", "array", "union", "any"])
    if depth >= 2 and kind in ("object", "array", "union"):
        kind = "string"
    if kind == "any":
        return rng.choice([True, {}])
    if kind == "string":
        schema: dict[str, Any] = {"type": rng.choice(["string", ["string", "null"]])}
        if rng.random() < 0.5:
            schema["maxLength"] = rng.randint(0, 4)
        if rng.random() < 0.3:
            schema["minLength"] = rng.randint(0, 3)
        if rng.random() < 0.2:
            schema["pattern"] = rng.choice(["^[0-9]*$", "^a"])
        return schema
    if kind in ("integer", "number"):
        schema = {"type": kind}
        for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if rng.random() < 0.25:
                schema[keyword] = rng.randint(-2, 2)
        if rng.random() < 0.2:
            schema["multipleOf"] = rng.choice([1, 2, 0.5])
        return schema
    if kind == "enum":
        return {"enum": rng.sample(["0", "1", "2", 0, 1, None, True], rng.randint(1, 3))}
    if kind == "array":
        schema = {"type": "array", "items": _random_schema(rng, depth + 1)}
        if rng.random() < 0.3:
            schema["maxItems"] = rng.randint(0, 3)
        if rng.random() < 0.2:
            schema["minItems"] = rng.randint(0, 2)
        return schema
    if kind == "union":
        keyword = rng.choice(["anyOf", "oneOf", "allOf"])
        return {keyword: [_random_schema(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    names = rng.sample(["a", "b", "c"], rng.randint(0, 3))
    schema = {"type": "object", "properties": {n: _random_schema(rng, depth + 1) for n in names}}
    if names and rng.random() < 0.5:
        schema["required"] = rng.sample(names, rng.randint(1, len(names)))
    additional = rng.random()
    if additional < 0.3:
        schema["additionalProperties"] = False
    elif additional < 0.45:
        schema["additionalProperties"] = _random_schema(rng, depth + 1)
    return schema


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 9 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-3, 3)
    if kind == 3:
        return rng.choice([0.5, -1.5, 2.0, 1.25])
    if kind in (4, 5, 6):
        return rng.choice(["", "0", "1", "2", "a", "ab", "abc", "12345", "a1b2c"])
    if kind in (7, 8):
        return {
            name: _random_value(rng, depth + 1)
            for name in rng.sample(["a", "b", "c", "d"], rng.randint(0, 4))
        }
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def test_compatible_verdicts_hold_for_sampled_documents() -> None:
    """Whenever can_read finds nothing, every sampled document the writer accepts must be
    accepted by the reader, according to an independent validator."""
    import jsonschema_rs

    rng = random.Random(20240611)
    values = [_random_value(rng) for _ in range(400)]
    proved = 0
    for _ in range(600):
        writer = _random_schema(rng)
        reader = _random_schema(rng) if rng.random() < 0.5 else _mutate(rng, writer)
        if can_read(reader, writer):
            continue
        proved += 1
        accepts_writer = jsonschema_rs.Draft202012Validator(writer)
        accepts_reader = jsonschema_rs.Draft202012Validator(reader)
        for value in values:
            if accepts_writer.is_valid(value):
                assert accepts_reader.is_valid(value), (reader, writer, value)
    assert proved > 50  # the property is not vacuous


def _mutate(rng: random.Random, schema: Any) -> Any:
    """A nearby schema: widened or narrowed in one place, so compatible pairs are common."""
    mutated = copy.deepcopy(schema)
    if not isinstance(mutated, dict):
        return mutated
    choice = rng.randint(0, 5)
    if choice == 0 and "maxLength" in mutated:
        mutated["maxLength"] += rng.choice([-1, 1])
    elif choice == 1 and "required" in mutated:
        mutated["required"] = mutated["required"][1:]
    elif choice == 2 and "properties" in mutated:
        mutated["additionalProperties"] = rng.choice([True, False])
    elif choice == 3 and isinstance(mutated.get("type"), str):
        mutated["type"] = [mutated["type"], "null"]
    elif choice == 4 and "enum" in mutated:
        mutated["enum"] = [*mutated["enum"], "3"]
    elif choice == 5 and "properties" in mutated and mutated["properties"]:
        name = next(iter(mutated["properties"]))
        mutated["properties"][name] = _mutate(rng, mutated["properties"][name])
    return mutated
