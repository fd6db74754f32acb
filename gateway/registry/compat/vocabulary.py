"""The keywords the checker knows, and reading them out of a schema."""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.problems import child
from gateway.registry.compat.values import is_multiple, number

__all__ = [
    "ALL_TYPES",
    "APPLICATORS",
    "BOUND_KEYWORDS",
    "ITEM_KEYWORDS",
    "MAX_DEPTH",
    "MAX_KEYWORDS",
    "MAX_REF_CHAIN",
    "MIN_KEYWORDS",
    "OBJECT_KEYWORDS",
    "SCHEMA_LISTS",
    "SCHEMA_MAPS",
    "SUBSCHEMAS",
    "UNSUPPORTED",
    "VALIDATION_KEYWORDS",
    "accepts_everything",
    "closed",
    "dependent_required",
    "dependent_schemas",
    "finite_candidates",
    "has_tuple",
    "item_layout",
    "name_list",
    "schema_list",
    "schema_map",
    "type_list",
    "type_set",
    "values_of_types",
    "writer_type_set",
]

# In a type set, "number" stands for the numbers that are not integers; the keyword value
# "number" therefore expands to {"number", "integer"}.
ALL_TYPES = frozenset({"null", "boolean", "integer", "number", "string", "array", "object"})

VALIDATION_KEYWORDS = frozenset(
    {
        "$ref", "$dynamicRef", "$recursiveRef",
        "type", "enum", "const",
        "minLength", "maxLength", "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems",
        "contains", "minContains", "maxContains", "unevaluatedItems",
        "properties", "patternProperties", "additionalProperties", "required",
        "minProperties", "maxProperties", "propertyNames",
        "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties",
        "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
        "disallow", "extends", "divisibleBy",
    }
)  # fmt: skip
# Reader keywords this module does not model: reported unless the subschemas are identical.
UNSUPPORTED = (
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
    "disallow",
    "extends",
    "divisibleBy",
)
# Keywords that make `unevaluated*` depend on more than the properties/items keywords beside them.
APPLICATORS = (
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "allOf",
    "anyOf",
    "oneOf",
    "if",
    "dependentSchemas",
    "dependencies",
)
SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SUBSCHEMAS = (
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)
MIN_KEYWORDS = ("minLength", "minItems", "minProperties", "minContains")
MAX_KEYWORDS = ("maxLength", "maxItems", "maxProperties", "maxContains")
BOUND_KEYWORDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
ITEM_KEYWORDS = ("items", "prefixItems", "additionalItems")
OBJECT_KEYWORDS = ("properties", "patternProperties", "additionalProperties")

MAX_DEPTH = 60  # nested checks; deeper is reported (RECURSION_LIMIT), never assumed fine
MAX_REF_CHAIN = 32


def schema_map(schema: dict[str, Any], keyword: str) -> dict[str, Any]:
    value = schema.get(keyword)
    return value if isinstance(value, dict) else {}


def schema_list(schema: dict[str, Any], keyword: str) -> list[Any]:
    value = schema.get(keyword)
    return value if isinstance(value, list) else []


def name_list(value: Any) -> list[str]:
    return [n for n in value if isinstance(n, str)] if isinstance(value, list) else []


def accepts_everything(schema: Any) -> bool:
    if isinstance(schema, dict):
        return not any(k in VALIDATION_KEYWORDS for k in schema)
    return schema is True


def closed(schema: dict[str, Any]) -> bool:
    """No property beyond the declared ones can occur."""
    return schema.get("additionalProperties", True) is False and not schema_map(
        schema, "patternProperties"
    )


def type_set(schema: Any, *, writer: bool) -> frozenset[str]:
    """The JSON types `schema` allows. Unknown type names widen a writer and are ignored in a
    reader, so each side errs towards incompatibility."""
    declared = schema.get("type") if isinstance(schema, dict) else None
    if declared is None:
        return ALL_TYPES
    if not isinstance(declared, str | list):
        return ALL_TYPES if writer else frozenset()
    types: set[str] = set()
    for name in [declared] if isinstance(declared, str) else declared:
        if name == "number":
            types |= {"number", "integer"}
        elif name in ALL_TYPES:
            types.add(name)
        elif name == "any" or writer:
            return ALL_TYPES
    return frozenset(types)


def writer_type_set(writer: dict[str, Any]) -> frozenset[str]:
    types = type_set(writer, writer=True)
    step = number(writer.get("multipleOf"))
    if "number" in types and step is not None and step > 0 and is_multiple(step, 1):
        types -= {"number"}  # an integral multipleOf admits integers only
    return types


def type_list(types: frozenset[str]) -> list[str]:
    if "number" in types:
        types = types - {"integer"}
    return sorted(types)


def finite_candidates(schema: dict[str, Any]) -> list[Any] | None:
    """The values `schema` may accept when they are few enough to list, else None."""
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    return values_of_types(type_set(schema, writer=True))


def values_of_types(types: frozenset[str]) -> list[Any] | None:
    if not types <= {"null", "boolean"}:
        return None
    return ([None] if "null" in types else []) + ([True, False] if "boolean" in types else [])


def item_layout(schema: dict[str, Any], pointer: str) -> tuple[list[tuple[Any, str]], Any, str]:
    """(positional item schemas, schema of the remaining items, its pointer)."""
    items = schema.get("items")
    if isinstance(items, list):  # draft-04 .. 2019-09 tuple form
        prefix = [(s, child(pointer, "items", i)) for i, s in enumerate(items)]
        return prefix, schema.get("additionalItems", True), child(pointer, "additionalItems")
    positional = schema_list(schema, "prefixItems")
    prefix = [(s, child(pointer, "prefixItems", i)) for i, s in enumerate(positional)]
    return prefix, True if items is None else items, child(pointer, "items")


def has_tuple(schema: dict[str, Any]) -> bool:
    return isinstance(schema.get("items"), list) or "prefixItems" in schema


def dependent_required(schema: dict[str, Any]) -> dict[str, tuple[list[str], str]]:
    """property -> (properties it requires, the keyword saying so)."""
    found: dict[str, tuple[list[str], str]] = {}
    for keyword in ("dependencies", "dependentRequired"):
        for name, needed in schema_map(schema, keyword).items():
            if isinstance(needed, list):
                earlier = found.get(name, ([], keyword))[0]
                found[name] = ([*earlier, *name_list(needed)], keyword)
    return found


def dependent_schemas(schema: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """property -> (schema the whole object must match when it is present, its keyword)."""
    found: dict[str, tuple[Any, str]] = {}
    for keyword in ("dependencies", "dependentSchemas"):
        for name, sub in schema_map(schema, keyword).items():
            if isinstance(sub, dict | bool):
                found[name] = (sub, keyword)
    return found
