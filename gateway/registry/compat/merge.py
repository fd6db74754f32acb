"""Writer-side merging: one schema for an ``allOf`` (or a ``$ref`` with siblings).

A writer ``allOf`` (and ``$ref`` with siblings under 2019-09/2020-12) is merged into one schema
that accepts at least their intersection; a constraint that cannot be merged is dropped. Only
ever used for the writer, where accepting more is always safe.
"""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.bounds import lower_bound, upper_bound
from gateway.registry.compat.values import is_multiple, json_eq, number
from gateway.registry.compat.vocabulary import (
    BOUND_KEYWORDS,
    ITEM_KEYWORDS,
    MAX_KEYWORDS,
    MIN_KEYWORDS,
    OBJECT_KEYWORDS,
    accepts_everything,
    has_tuple,
    name_list,
    schema_map,
    type_list,
    type_set,
)

__all__ = ["merge"]


class _Empty(Exception):
    """Raised while merging when the intersection provably has no instances."""


def merge(a: Any, b: Any) -> Any:
    """A schema accepting every instance valid under both `a` and `b` — possibly more, since a
    constraint that cannot be combined is dropped. Only ever used for the writer."""
    if a is False or b is False:
        return False
    if accepts_everything(a):
        return b
    if accepts_everything(b) or not isinstance(a, dict) or not isinstance(b, dict):
        return a
    merged = dict(a)
    grouped = (*BOUND_KEYWORDS, *ITEM_KEYWORDS, *OBJECT_KEYWORDS)
    try:
        for key, theirs in b.items():
            if key in grouped:
                continue
            merged[key] = _merge_keyword(key, a[key], theirs, a, b) if key in a else theirs
        _merge_bounds(merged, a, b)
        _merge_items(merged, a, b)
        _merge_object(merged, a, b)
    except _Empty:
        return False
    return merged


def _merge_keyword(key: str, mine: Any, theirs: Any, a: dict[str, Any], b: Any) -> Any:
    """Both sides give `key`: one value meaning both, or else `mine` (which only drops the
    other side's constraint: still a superset)."""
    if key in ("type", "enum", "const"):
        return _intersect_values(key, mine, theirs, a, b)
    if key in (*MIN_KEYWORDS, *MAX_KEYWORDS, "multipleOf"):
        return _stricter_number(key, mine, theirs)
    return _joined_constraint(key, mine, theirs)


def _intersect_values(key: str, mine: Any, theirs: Any, a: dict[str, Any], b: Any) -> Any:
    """type, enum, const: the values both sides allow; none at all empties the merge."""
    if key == "type":
        types = type_set(a, writer=True) & type_set(b, writer=True)
        if not types:
            raise _Empty
        return type_list(types)
    if key == "enum":
        if not (isinstance(mine, list) and isinstance(theirs, list)):
            return mine
        kept = [v for v in mine if any(json_eq(v, t) for t in theirs)]
        if not kept:
            raise _Empty
        return kept
    if not json_eq(mine, theirs):  # two different consts
        raise _Empty
    return mine


def _stricter_number(key: str, mine: Any, theirs: Any) -> Any:
    """min*/max* and multipleOf: the stricter of the two numbers."""
    numbers = number(mine), number(theirs)
    if None in numbers:
        return mine
    if key in MIN_KEYWORDS:
        return max(mine, theirs)
    if key in MAX_KEYWORDS:
        return min(mine, theirs)
    if 0 in numbers:  # not a valid multipleOf: keep one side, do not divide by it
        return mine
    return theirs if is_multiple(theirs, mine) else mine


def _joined_constraint(key: str, mine: Any, theirs: Any) -> Any:
    """Keywords whose two values combine into one that says both."""
    if key == "required" and isinstance(mine, list) and isinstance(theirs, list):
        return [*mine, *(n for n in theirs if n not in mine)]
    if key == "uniqueItems":
        return mine is True or theirs is True
    if key == "propertyNames":
        return merge(mine, theirs)
    if key == "allOf" and isinstance(mine, list) and isinstance(theirs, list):
        return [*mine, *theirs]
    if key == "dependentRequired" and isinstance(mine, dict) and isinstance(theirs, dict):
        return {n: [*name_list(mine.get(n)), *name_list(theirs.get(n))] for n in {*mine, *theirs}}
    return mine


def _merge_bounds(merged: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> None:
    low = max(
        (x for x in (lower_bound(a), lower_bound(b)) if x),
        key=lambda x: (x.value, x.exclusive),
        default=None,
    )
    high = min(
        (x for x in (upper_bound(a), upper_bound(b)) if x),
        key=lambda x: (x.value, not x.exclusive),
        default=None,
    )
    for key in BOUND_KEYWORDS:
        merged.pop(key, None)
    if low:
        merged["exclusiveMinimum" if low.exclusive else "minimum"] = low.value
    if high:
        merged["exclusiveMaximum" if high.exclusive else "maximum"] = high.value


def _merge_items(merged: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> None:
    source = a if has_tuple(a) else b if has_tuple(b) else None
    for key in ITEM_KEYWORDS:
        merged.pop(key, None)
    if source is not None:  # positional forms are not combined: keep one side's
        merged.update({k: source[k] for k in ITEM_KEYWORDS if k in source})
    elif "items" in a or "items" in b:
        merged["items"] = merge(a.get("items", True), b.get("items", True))


def _merge_object(merged: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in OBJECT_KEYWORDS:
        merged.pop(key, None)
    mine, theirs = schema_map(a, "properties"), schema_map(b, "properties")
    # What each side says about a property the other declares; with patternProperties in play
    # the name might match one of them, so nothing is assumed (`true`).
    mine_other = True if schema_map(a, "patternProperties") else a.get("additionalProperties", True)
    theirs_other = (
        True if schema_map(b, "patternProperties") else b.get("additionalProperties", True)
    )
    properties = {
        name: merge(mine.get(name, mine_other), theirs.get(name, theirs_other))
        for name in [*mine, *(n for n in theirs if n not in mine)]
    }
    patterns = dict(schema_map(a, "patternProperties"))
    for pattern, sub in schema_map(b, "patternProperties").items():
        patterns[pattern] = merge(patterns[pattern], sub) if pattern in patterns else sub
    additional = merge(a.get("additionalProperties", True), b.get("additionalProperties", True))
    if properties:
        merged["properties"] = properties
    if patterns:
        merged["patternProperties"] = patterns
    if additional is not True:
        merged["additionalProperties"] = additional
