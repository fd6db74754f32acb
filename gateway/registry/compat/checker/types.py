"""``type``: the reader must allow every JSON type the writer allows."""

from __future__ import annotations

from functools import partial
from typing import Any

from gateway.registry.compat.checker.base import CheckerBase
from gateway.registry.compat.merge import merge
from gateway.registry.compat.problems import (
    Incompatibility,
    child,
    prefixed,
    show,
    subject,
    type_names,
)
from gateway.registry.compat.vocabulary import type_list, type_set

__all__ = ["Types"]


class Types(CheckerBase):
    """Type narrowing, and a writer of several types read by a reader union."""

    @staticmethod
    def types(r: dict[str, Any], rp: str, writer_types: frozenset[str]) -> list[Incompatibility]:
        missing = writer_types - type_set(r, writer=False)
        if not missing:
            return []
        return [
            Incompatibility(
                child(rp, "type"),
                "TYPE_NARROWED",
                f"The reader accepts only type {show(r.get('type'))} at {subject(rp)}, but the "
                f"writer also allows {type_names(missing)} values, which would be rejected.",
            )
        ]

    def writer_types_apart(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str, types: frozenset[str]
    ) -> list[Incompatibility]:
        """A writer of several types against a reader union, one type at a time: so that
        {"type": ["string", "null"]} is read by oneOf [{"type": "string"}, {"type": "null"}]."""
        problems = []
        for name in type_list(types):
            piece = self.derived(w, f"type:{name}", partial(merge, w, {"type": name}))
            found = self.check(r, rp, piece, wp)
            problems += [prefixed(p, f"when the writer's value is of type {name}") for p in found]
        return problems
