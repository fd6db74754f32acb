"""What every keyword family of the checker shares: the two documents and derived schemas."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from gateway.registry.compat.problems import Incompatibility
from gateway.registry.compat.refs import siblings_apply

__all__ = ["CheckerBase"]


class CheckerBase(ABC):
    """Compares subschemas of one reader document with subschemas of one writer document.

    The keyword families are mixins of this class; `checker.core.Checker` puts them together
    and implements `check`, the recursion they all call back into.
    """

    def __init__(self, reader_root: Any, writer_root: Any) -> None:
        self.rroot = reader_root
        self.wroot = writer_root
        self.r_siblings = siblings_apply(reader_root)
        self.w_siblings = siblings_apply(writer_root)
        self.active: set[tuple[int, int]] = set()  # (reader, writer) pairs being checked
        self.cache: dict[tuple[int, str], tuple[Any, Any]] = {}
        self.building: set[tuple[int, str]] = set()

    @abstractmethod
    def check(self, r: Any, rp: str, w: Any, wp: str) -> list[Incompatibility]:
        """Problems with reader subschema `r` (at `rp`) reading writer subschema `w` (at `wp`)."""

    def derived(self, source: Any, tag: str, build: Callable[[], Any]) -> Any:
        """A schema computed from `source`, built once per check so its identity is stable (the
        cycle guard keys on identities). A writer derivation that needs itself is `true`."""
        key = (id(source), tag)
        if key in self.cache:
            return self.cache[key][1]
        if key in self.building:
            return True
        self.building.add(key)
        try:
            value = build()
        finally:
            self.building.discard(key)
        self.cache[key] = (source, value)  # holding `source` keeps its id from being reused
        return value

    def without(self, schema: dict[str, Any], *keys: str) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            return {k: v for k, v in schema.items() if k not in keys}

        result: dict[str, Any] = self.derived(schema, "without:" + ",".join(keys), build)
        return result
