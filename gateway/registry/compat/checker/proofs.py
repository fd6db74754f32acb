"""Proofs the combinators need: two subschemas are the same, or share no value.

* reader ``oneOf``: a writer accepted by branch *i* must also be provably disjoint from every other
  branch (distinct types, distinct ``const``/``enum`` values, or a required discriminator property
  with disjoint values).
* reader ``not``: accepted only if the writer has the identical ``not`` or is provably disjoint
  from it.
"""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.checker.base import CheckerBase
from gateway.registry.compat.refs import follow_refs, resolve
from gateway.registry.compat.validate import validate
from gateway.registry.compat.values import json_eq
from gateway.registry.compat.vocabulary import (
    SCHEMA_LISTS,
    SCHEMA_MAPS,
    SUBSCHEMAS,
    VALIDATION_KEYWORDS,
    closed,
    finite_candidates,
    name_list,
    schema_list,
    schema_map,
    type_set,
)

__all__ = ["Proofs"]


class Proofs(CheckerBase):
    """Sameness (validation-wise) and disjointness of subschemas."""

    def same(self, a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
        """Are reader subschema `a` and writer subschema `b` the same validation-wise (ignoring
        annotations; references compared by what they point at)?"""
        seen = set() if seen is None else seen
        if not isinstance(a, dict) or not isinstance(b, dict):
            return json_eq(a, b)
        if "$ref" in a or "$ref" in b:
            if not self.same_ref(a, b, seen):
                return False
        keys = {k for k in (*a, *b) if k in VALIDATION_KEYWORDS and k != "$ref"}
        return all(k in a and k in b and self.same_value(k, a[k], b[k], seen) for k in keys)

    def same_ref(self, a: dict[str, Any], b: dict[str, Any], seen: set[tuple[int, int]]) -> bool:
        ref = a.get("$ref")
        if not isinstance(ref, str) or ref != b.get("$ref"):
            return False
        beside = any(k in VALIDATION_KEYWORDS for k in a if k != "$ref")
        if beside and self.r_siblings != self.w_siblings:
            return False  # the drafts read keywords beside $ref differently
        ra, wb = resolve(self.rroot, ref), resolve(self.wroot, ref)
        if ra is None or wb is None:
            same_base = isinstance(self.rroot, dict) and isinstance(self.wroot, dict)
            same_base = same_base and self.rroot.get("$id") == self.wroot.get("$id")
            return ra is None and wb is None and same_base  # the same text, equally unknown
        key = (id(ra[0]), id(wb[0]))
        if key in seen:
            return True
        seen.add(key)
        return self.same(ra[0], wb[0], seen)

    def same_value(self, keyword: str, a: Any, b: Any, seen: set[tuple[int, int]]) -> bool:
        if keyword in SCHEMA_MAPS or keyword == "dependencies":
            return (
                isinstance(a, dict)
                and isinstance(b, dict)
                and a.keys() == b.keys()
                and all(self.same(a[k], b[k], seen) for k in a)
            )
        if keyword in SCHEMA_LISTS or (keyword == "items" and isinstance(a, list)):
            return (
                isinstance(a, list)
                and isinstance(b, list)
                and len(a) == len(b)
                and all(self.same(x, y, seen) for x, y in zip(a, b, strict=True))
            )
        if keyword in SUBSCHEMAS or keyword == "items":
            return self.same(a, b, seen)
        return json_eq(a, b)

    def disjoint(self, a: Any, a_root: Any, b: Any, b_root: Any, depth: int = 0) -> bool:
        """Provably no value is valid under both `a` (in `a_root`) and `b` (in `b_root`)."""
        if depth > 8:
            return False
        a, b = follow_refs(a, a_root), follow_refs(b, b_root)
        if a is False or b is False:
            return True
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        sides = ((a, a_root, b, b_root), (b, b_root, a, a_root))
        if any(self.excludes(x, xr, y, yr, depth) for x, xr, y, yr in sides):
            return True
        common = type_set(a, writer=True) & type_set(b, writer=True)
        if not common:
            return True
        return common <= {"object"} and any(
            self.required_apart(x, xr, y, yr, depth) for x, xr, y, yr in sides
        )

    def excludes(self, x: dict[str, Any], x_root: Any, y: Any, y_root: Any, depth: int) -> bool:
        """`x` alone shows it shares nothing with `y`: through one branch of its allOf, every
        branch of its anyOf or oneOf, or each of the few values it allows."""
        if any(self.disjoint(s, x_root, y, y_root, depth + 1) for s in schema_list(x, "allOf")):
            return True
        for keyword in ("anyOf", "oneOf"):
            branches = schema_list(x, keyword)
            if branches and all(self.disjoint(s, x_root, y, y_root, depth + 1) for s in branches):
                return True
        values = finite_candidates(x)
        return values is not None and all(
            validate(v, x, x_root) is False or validate(v, y, y_root) is False for v in values
        )

    def required_apart(
        self, x: dict[str, Any], x_root: Any, y: dict[str, Any], y_root: Any, depth: int
    ) -> bool:
        """Two objects cannot agree on a property `x` requires: `y` forbids it, or gives it a
        schema disjoint from `x`'s (a discriminator)."""
        for name in name_list(x.get("required")):
            mine = schema_map(x, "properties").get(name)
            theirs = schema_map(y, "properties").get(name, False if closed(y) else None)
            if theirs is False:
                return True
            if (
                mine is not None
                and theirs is not None
                and self.disjoint(mine, x_root, theirs, y_root, depth + 1)
            ):
                return True
        return False
