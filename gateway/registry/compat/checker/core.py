"""The checker's walk: one (reader, writer) pair at a time, handed to the keyword families.

Recursive schemas: a (reader, writer) pair met again while it is still being checked is assumed
compatible (the coinductive reading; sound because documents are finite). Nesting deeper than
`MAX_DEPTH` is reported (RECURSION_LIMIT), never assumed fine.
"""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.checker.arrays import Arrays
from gateway.registry.compat.checker.combinators import Combinators
from gateway.registry.compat.checker.enums import Enums
from gateway.registry.compat.checker.objects import Objects
from gateway.registry.compat.checker.scalars import Scalars
from gateway.registry.compat.checker.types import Types
from gateway.registry.compat.problems import Incompatibility, child, subject
from gateway.registry.compat.validate import validate
from gateway.registry.compat.vocabulary import (
    MAX_DEPTH,
    UNSUPPORTED,
    accepts_everything,
    finite_candidates,
    type_list,
    type_set,
    writer_type_set,
)

__all__ = ["Checker"]

ANYTHING: dict[str, Any] = {}  # the writer `true`, as a dict; never mutated


class Checker(Combinators, Objects, Arrays, Scalars, Enums, Types):
    """The keyword families put together: `check` dereferences a pair, `pair` hands it to each
    family that applies to the types the two sides share."""

    def check(self, r: Any, rp: str, w: Any, wp: str) -> list[Incompatibility]:
        """Problems with reader subschema `r` (at `rp`) reading writer subschema `w` (at `wp`)."""
        if self.same(r, w):
            return []
        view = self.writer_view(w, wp)
        if view is None:
            if accepts_everything(r):
                return []
            return [
                Incompatibility(
                    wp,
                    "UNRESOLVED_REF",
                    f"The writer's $ref at {wp} cannot be resolved inside the writer schema "
                    "(only '#/...' pointers are followed), so what it allows is unknown.",
                )
            ]
        w, wp = view
        if w is False:
            return []  # a writer that accepts nothing is read by anything
        if w is True:
            w = ANYTHING
        if accepts_everything(r):
            return []
        if not isinstance(r, dict):
            return [self.rejects_all(r, rp)]
        r = self.normalize_unevaluated(r, writer=False)
        key = (id(r), id(w))
        if key in self.active:
            return []  # met again while being checked (a $ref cycle): assume compatible
        if len(self.active) >= MAX_DEPTH:
            return [
                Incompatibility(
                    rp,
                    "RECURSION_LIMIT",
                    f"The schemas nest deeper than {MAX_DEPTH} levels at {subject(rp)}; "
                    "compatibility was not proved there.",
                )
            ]
        self.active.add(key)
        try:
            if "$ref" in r:
                return self.reader_ref(r, rp, w, wp)
            return self.pair(r, rp, w, wp)
        finally:
            self.active.discard(key)

    @staticmethod
    def rejects_all(r: Any, rp: str) -> Incompatibility:
        if r is False:
            return Incompatibility(
                rp,
                "READER_REJECTS_ALL",
                f"The reader allows no value at {subject(rp)} (its schema is false), "
                "but the writer does.",
            )
        return Incompatibility(
            rp,
            "MALFORMED_SCHEMA",
            f"The reader's schema at {rp} is neither an object nor a boolean.",
        )

    # -- one pair of (dereferenced) subschemas --------------------------------------------------

    def pair(self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str) -> list[Incompatibility]:
        values = finite_candidates(w)
        if values is not None:  # the writer allows few values: try each against the reader
            kept = [v for v in values if validate(v, w, self.wroot) is not False]
            return self.values(r, rp, kept)
        for keyword in ("anyOf", "oneOf"):
            if isinstance(w.get(keyword), list):
                return self.writer_branches(r, rp, w, wp, keyword)
        writer_types = writer_type_set(w)
        if ("anyOf" in r or "oneOf" in r) and len(type_list(writer_types)) > 1:
            return self.writer_types_apart(r, rp, w, wp, writer_types)
        shared = writer_types & type_set(r, writer=False)
        problems = [
            *self.reader_combinators(r, rp, w, wp),
            *self.types(r, rp, writer_types),
            *self.enum(r, rp, w, shared),
        ]
        if "string" in shared:
            problems += self.strings(r, rp, w)
        if shared & {"integer", "number"}:
            problems += self.numbers(r, rp, w, integers_only="number" not in shared)
        if "array" in shared:
            problems += self.arrays(r, rp, w, wp)
        if "object" in shared:
            problems += self.objects(r, rp, w, wp)
        problems += [
            Incompatibility(
                child(rp, keyword),
                "UNSUPPORTED_KEYWORD",
                f"The reader uses '{keyword}' at {subject(rp)}, which this checker cannot "
                "compare structurally; keep that subschema identical to the writer's.",
            )
            for keyword in UNSUPPORTED
            if keyword in r and r[keyword] is not True
        ]
        return problems
