"""Three-valued validation of single values: True, False, or None when undecidable here.

The checker validates enumerated writer values (``enum``, ``const``, ``null``/``boolean`` types)
one by one against the reader; a value whose validity this package cannot decide (``format``, a
regex Python cannot compile) makes the verdict None, which the checker reports as
VALUE_UNVERIFIABLE. Python's ``re`` stands in for ECMA-262 regexes; inputs where the two may
differ count as undecidable.
"""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.bounds import lower_bound, upper_bound
from gateway.registry.compat.refs import resolve, siblings_apply
from gateway.registry.compat.regex import regex_search
from gateway.registry.compat.values import is_multiple, json_eq, json_type, number
from gateway.registry.compat.vocabulary import (
    MAX_DEPTH,
    accepts_everything,
    dependent_required,
    dependent_schemas,
    item_layout,
    name_list,
    schema_list,
    schema_map,
    type_set,
)

__all__ = ["validate"]


def _all(verdicts: list[bool | None]) -> bool | None:
    if any(v is False for v in verdicts):
        return False
    return None if any(v is None for v in verdicts) else True


def _any(verdicts: list[bool | None]) -> bool | None:
    if any(v is True for v in verdicts):
        return True
    return None if any(v is None for v in verdicts) else False


def validate(value: Any, schema: Any, root: Any, depth: int = 0) -> bool | None:
    """Is `value` valid under `schema`? True, False, or None when this module cannot decide."""
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _validate_ref(value, schema, root, depth)
    kind = json_type(value)
    verdicts: list[bool | None] = []
    if "type" in schema:
        verdicts.append(kind in type_set(schema, writer=False))
    if isinstance(schema.get("enum"), list):
        verdicts.append(any(json_eq(value, e) for e in schema["enum"]))
    if "const" in schema:
        verdicts.append(json_eq(value, schema["const"]))
    if kind == "string":
        verdicts += _string_verdicts(value, schema)
    elif kind in ("integer", "number"):
        verdicts += _number_verdicts(value, schema)
    elif kind == "array":
        verdicts += _array_verdicts(value, schema, root, depth)
    elif kind == "object":
        verdicts += _object_verdicts(value, schema, root, depth)
    verdicts += _combinator_verdicts(value, schema, root, depth)
    if any(
        k in schema for k in ("$dynamicRef", "$recursiveRef", "disallow", "extends", "divisibleBy")
    ):
        verdicts.append(None)
    return _all(verdicts)


def _validate_ref(value: Any, schema: dict[str, Any], root: Any, depth: int) -> bool | None:
    target = resolve(root, schema["$ref"])
    if target is None:
        return None
    via_ref = validate(value, target[0], root, depth + 1)
    rest = {k: v for k, v in schema.items() if k != "$ref"}
    siblings = siblings_apply(root)
    if siblings is False or accepts_everything(rest):
        return via_ref
    with_rest = validate(value, rest, root, depth + 1)
    if siblings is True or via_ref is False:
        return _all([via_ref, with_rest])
    return via_ref if with_rest is True else None  # the two drafts may disagree


def _string_verdicts(value: str, schema: dict[str, Any]) -> list[bool | None]:
    verdicts: list[bool | None] = []
    if (least := number(schema.get("minLength"))) is not None:
        verdicts.append(len(value) >= least)
    if (most := number(schema.get("maxLength"))) is not None:
        verdicts.append(len(value) <= most)
    if "pattern" in schema:
        verdicts.append(regex_search(schema["pattern"], value))
    if "format" in schema:
        verdicts.append(None)
    return verdicts


def _number_verdicts(value: int | float, schema: dict[str, Any]) -> list[bool | None]:
    verdicts: list[bool | None] = []
    if (low := lower_bound(schema)) is not None:
        verdicts.append(value > low.value if low.exclusive else value >= low.value)
    if (high := upper_bound(schema)) is not None:
        verdicts.append(value < high.value if high.exclusive else value <= high.value)
    step = number(schema.get("multipleOf"))
    if step is not None and step > 0:
        verdicts.append(is_multiple(value, step))
    return verdicts


def _array_verdicts(
    value: list[Any], schema: dict[str, Any], root: Any, depth: int
) -> list[bool | None]:
    verdicts: list[bool | None] = []
    if (least := number(schema.get("minItems"))) is not None:
        verdicts.append(len(value) >= least)
    if (most := number(schema.get("maxItems"))) is not None:
        verdicts.append(len(value) <= most)
    if schema.get("uniqueItems") is True:
        verdicts.append(not any(json_eq(x, y) for i, x in enumerate(value) for y in value[i + 1 :]))
    prefix, tail, _ = item_layout(schema, "#")
    for i, item in enumerate(value):
        verdicts.append(validate(item, prefix[i][0] if i < len(prefix) else tail, root, depth + 1))
    if "contains" in schema:
        hits = [validate(item, schema["contains"], root, depth + 1) for item in value]
        sure, maybe = hits.count(True), hits.count(None)
        least = number(schema.get("minContains"))
        least = 1 if least is None else least
        most = number(schema.get("maxContains"))
        if sure >= least and (most is None or sure + maybe <= most):
            verdicts.append(True)
        elif sure + maybe < least or (most is not None and sure > most):
            verdicts.append(False)
        else:
            verdicts.append(None)
    if value and schema.get("unevaluatedItems", True) is not True:
        verdicts.append(None)
    return verdicts


def _object_verdicts(
    value: dict[str, Any], schema: dict[str, Any], root: Any, depth: int
) -> list[bool | None]:
    verdicts: list[bool | None] = [all(n in value for n in name_list(schema.get("required")))]
    if (least := number(schema.get("minProperties"))) is not None:
        verdicts.append(len(value) >= least)
    if (most := number(schema.get("maxProperties"))) is not None:
        verdicts.append(len(value) <= most)
    declared = schema_map(schema, "properties")
    patterns = schema_map(schema, "patternProperties")
    additional = schema.get("additionalProperties", True)
    for name, item in value.items():
        verdicts += _property_verdicts(name, item, declared, patterns, additional, root, depth)
    if "propertyNames" in schema:
        verdicts += [validate(n, schema["propertyNames"], root, depth + 1) for n in value]
    verdicts += _dependency_verdicts(value, schema, root, depth)
    if value and schema.get("unevaluatedProperties", True) is not True:
        verdicts.append(None)
    return verdicts


def _property_verdicts(
    name: str,
    item: Any,
    declared: dict[str, Any],
    patterns: dict[str, Any],
    additional: Any,
    root: Any,
    depth: int,
) -> list[bool | None]:
    """One property: its declared schema, every pattern its name matches, and
    additionalProperties when neither applies. A pattern whose match is undecidable may or may
    not apply, so it can only make the verdict None, never False."""
    verdicts: list[bool | None] = []
    matched: bool | None = name in declared
    if name in declared:
        verdicts.append(validate(item, declared[name], root, depth + 1))
    for pattern, sub in patterns.items():
        hit = regex_search(pattern, name)
        if hit is True:
            verdicts.append(validate(item, sub, root, depth + 1))
            matched = True
        elif hit is None:
            if validate(item, sub, root, depth + 1) is not True:
                verdicts.append(None)
            matched = None if matched is False else matched
    if matched is False:
        verdicts.append(validate(item, additional, root, depth + 1))
    elif matched is None and validate(item, additional, root, depth + 1) is not True:
        verdicts.append(None)
    return verdicts


def _dependency_verdicts(
    value: dict[str, Any], schema: dict[str, Any], root: Any, depth: int
) -> list[bool | None]:
    """dependentRequired and dependentSchemas (either spelling) of the properties present."""
    verdicts: list[bool | None] = []
    for name, (needed, _) in dependent_required(schema).items():
        if name in value:
            verdicts.append(all(n in value for n in needed))
    for name, (sub, _) in dependent_schemas(schema).items():
        if name in value:
            verdicts.append(validate(value, sub, root, depth + 1))
    return verdicts


def _combinator_verdicts(
    value: Any, schema: dict[str, Any], root: Any, depth: int
) -> list[bool | None]:
    def sub(s: Any) -> bool | None:
        return validate(value, s, root, depth + 1)

    verdicts: list[bool | None] = [sub(s) for s in schema_list(schema, "allOf")]
    if "anyOf" in schema:
        verdicts.append(_any([sub(s) for s in schema_list(schema, "anyOf")]))
    if "oneOf" in schema:
        hits = [sub(s) for s in schema_list(schema, "oneOf")]
        sure, maybe = hits.count(True), hits.count(None)
        if sure > 1 or sure + maybe == 0:
            verdicts.append(False)
        else:
            verdicts.append(True if sure == 1 and maybe == 0 else None)
    if "not" in schema:
        negated = sub(schema["not"])
        verdicts.append(None if negated is None else not negated)
    if "if" in schema:
        condition = sub(schema["if"])
        then, otherwise = sub(schema.get("then", True)), sub(schema.get("else", True))
        if condition is None:
            verdicts.append(then if then == otherwise else None)
        else:
            verdicts.append(then if condition else otherwise)
    return verdicts
