"""``$ref`` on either side, the writer's ``allOf``, and ``unevaluated*`` rewritten.

* ``$ref``: only in-document pointers (``#``, ``#/definitions/..``, ``#/$defs/..``); anything else
  is UNRESOLVED_REF unless both sides use the same reference text, in the same place, in documents
  with the same ``$id``. Keywords next to a ``$ref`` count on the reader side (stricter) and, on
  the writer side, only when ``$schema`` says 2019-09 or 2020-12 (draft-07 and earlier ignore
  them).
* writer ``allOf`` (and ``$ref`` with siblings under 2019-09/2020-12) is merged into one schema
  (`merge`).
* ``unevaluatedProperties``/``unevaluatedItems`` in a reader: rewritten to
  ``additionalProperties``/``items`` when no in-place applicator (``allOf``, ``$ref`` ...) sits
  beside them; otherwise UNSUPPORTED_KEYWORD unless the whole subschema is identical.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from gateway.registry.compat.checker.base import CheckerBase
from gateway.registry.compat.merge import merge
from gateway.registry.compat.problems import Incompatibility, child
from gateway.registry.compat.refs import resolve
from gateway.registry.compat.vocabulary import (
    APPLICATORS,
    MAX_REF_CHAIN,
    accepts_everything,
    schema_list,
)

__all__ = ["References"]


class References(CheckerBase):
    """Following references, and the writer views the other families compare against."""

    def reader_ref(self, r: dict[str, Any], rp: str, w: Any, wp: str) -> list[Incompatibility]:
        target = resolve(self.rroot, r["$ref"])
        if target is None:
            return [
                Incompatibility(
                    child(rp, "$ref"),
                    "UNRESOLVED_REF",
                    f"The reader's $ref {r['$ref']!r} at {rp} cannot be resolved inside the "
                    "reader schema (only '#/...' pointers are followed).",
                )
            ]
        problems = self.check(target[0], target[1], w, wp)
        rest = self.without(r, "$ref")
        if self.r_siblings is not False and not accepts_everything(rest):
            problems += self.check(rest, rp, w, wp)
        return problems

    def writer_view(self, w: Any, wp: str) -> tuple[Any, str] | None:
        """`w` with top-level $ref followed and allOf merged (None: a $ref does not resolve)."""
        for _ in range(MAX_REF_CHAIN):
            if not isinstance(w, dict):
                return (w if isinstance(w, bool) else True), wp
            w = self.normalize_unevaluated(w, writer=True)
            if "$ref" in w:
                target = resolve(self.wroot, w["$ref"])
                if target is None:
                    return None
                rest = self.without(w, "$ref")
                if self.w_siblings is True and not accepts_everything(rest):
                    w = self.derived(w, "$ref+siblings", partial(merge, target[0], rest))
                else:  # draft-07 ignores the siblings; unknown dialect: the wider reading
                    w, wp = target
            elif "allOf" in w:
                w = self.derived(w, "allOf", partial(self.flatten_all_of, w))
            else:
                return w, wp
        return None

    def flat(self, w: Any) -> Any:
        view = self.writer_view(w, "#")
        return True if view is None else view[0]

    def flatten_all_of(self, w: dict[str, Any]) -> Any:
        merged: Any = self.without(w, "allOf")
        for branch in schema_list(w, "allOf"):
            merged = merge(merged, self.flat(branch))
        return merged

    def normalize_unevaluated(self, schema: dict[str, Any], *, writer: bool) -> dict[str, Any]:
        """Rewrite unevaluatedProperties/Items to additionalProperties/items when nothing else
        evaluates properties/items; on the writer side drop them otherwise (that only widens)."""
        if "unevaluatedProperties" not in schema and "unevaluatedItems" not in schema:
            return schema

        def build() -> dict[str, Any]:
            out = dict(schema)
            in_place = any(k in schema for k in APPLICATORS)
            if "unevaluatedProperties" in out:
                if "additionalProperties" in out:  # every property is already evaluated
                    del out["unevaluatedProperties"]
                elif not in_place:
                    out["additionalProperties"] = out.pop("unevaluatedProperties")
                elif writer:
                    del out["unevaluatedProperties"]
            if "unevaluatedItems" in out:
                items = out.get("items")
                if (items is not None and not isinstance(items, list)) or "additionalItems" in out:
                    del out["unevaluatedItems"]
                elif not in_place and "contains" not in out:
                    tail = "additionalItems" if isinstance(items, list) else "items"
                    out[tail] = out.pop("unevaluatedItems")
                elif writer:
                    del out["unevaluatedItems"]
            return out

        result: dict[str, Any] = self.derived(schema, f"unevaluated:{writer}", build)
        return result
