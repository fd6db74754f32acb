"""Objects: ``required``, property counts, ``propertyNames`` and dependencies.

The properties themselves are `checker.properties`. ``dependentSchemas`` in a reader are accepted
when identical to the writer's or when the writer provably satisfies them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from gateway.registry.compat.checker.proofs import Proofs
from gateway.registry.compat.checker.properties import Properties
from gateway.registry.compat.merge import merge
from gateway.registry.compat.problems import Incompatibility, child, subject
from gateway.registry.compat.validate import validate
from gateway.registry.compat.values import number
from gateway.registry.compat.vocabulary import (
    closed,
    dependent_required,
    dependent_schemas,
    name_list,
    schema_map,
)

__all__ = ["Objects"]


class Objects(Properties, Proofs):
    """The object keywords."""

    def objects(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        return [
            *self.required(r, rp, w),
            *self.declared_properties(r, rp, w, wp),
            *self.undeclared_properties(r, rp, w, wp),
            *self.property_counts(r, rp, w),
            *self.property_names(r, rp, w, wp),
            *self.dependencies(r, rp, w, wp),
        ]

    @staticmethod
    def required(r: dict[str, Any], rp: str, w: dict[str, Any]) -> list[Incompatibility]:
        guaranteed = set(name_list(w.get("required")))
        required = r.get("required")
        return [
            Incompatibility(
                child(rp, "required", i),
                "REQUIRED_PROPERTY_ADDED",
                f"The reader requires property '{name}' in {subject(rp)}, but the writer does "
                "not; documents without it would be rejected. Make it optional or give the "
                "writer the same requirement.",
            )
            for i, name in enumerate(required if isinstance(required, list) else [])
            if isinstance(name, str) and name not in guaranteed
        ]

    @staticmethod
    def property_counts(r: dict[str, Any], rp: str, w: dict[str, Any]) -> list[Incompatibility]:
        problems = []
        least = number(r.get("minProperties"))
        if least is not None:
            guaranteed = max(
                number(w.get("minProperties")) or 0, len(set(name_list(w.get("required"))))
            )
            if least > guaranteed:
                problems.append(
                    Incompatibility(
                        child(rp, "minProperties"),
                        "MIN_PROPERTIES_INCREASED",
                        f"The reader requires at least {least} properties in {subject(rp)}, but "
                        f"the writer guarantees only {guaranteed}.",
                    )
                )
        most = number(r.get("maxProperties"))
        if most is not None:
            writer_most = number(w.get("maxProperties"))
            if closed(w):
                count = sum(1 for s in schema_map(w, "properties").values() if s is not False)
                writer_most = count if writer_most is None else min(writer_most, count)
            if writer_most is None or writer_most > most:
                problems.append(
                    Incompatibility(
                        child(rp, "maxProperties"),
                        "MAX_PROPERTIES_DECREASED",
                        f"The reader allows at most {most} properties in {subject(rp)}, but the "
                        f"writer allows {'any number' if writer_most is None else writer_most}.",
                    )
                )
        return problems

    def property_names(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        if "propertyNames" not in r:
            return []
        names, at = r["propertyNames"], child(rp, "propertyNames")
        if closed(w):  # the writer's names are exactly its declared ones
            w_names = w.get("propertyNames", True)
            return [
                Incompatibility(
                    at,
                    "PROPERTY_NAMES_RESTRICTED",
                    f"The writer may send property '{name}', whose name the reader's "
                    "propertyNames does not (provably) accept.",
                )
                for name, sub in schema_map(w, "properties").items()
                if sub is not False
                and validate(name, w_names, self.wroot) is not False
                and validate(name, names, self.rroot) is not True
            ]
        writer_names = self.derived(
            w, "propertyNames", partial(merge, {"type": "string"}, w.get("propertyNames", True))
        )
        found = self.check(names, at, writer_names, child(wp, "propertyNames"))
        if not found or "propertyNames" in w:
            return found
        return [
            Incompatibility(
                at,
                "PROPERTY_NAMES_RESTRICTED",
                f"The reader restricts the property names of {subject(rp)}, but the writer's "
                "open content model allows any name.",
            )
        ]

    def dependencies(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        problems = []
        guaranteed = set(name_list(w.get("required")))
        w_required = dependent_required(w)
        for name, (needed, keyword) in dependent_required(r).items():
            if not self.writer_may_have(w, wp, name):
                continue
            also = set(w_required.get(name, ([], ""))[0])
            problems += [
                Incompatibility(
                    child(rp, keyword, name),
                    "DEPENDENT_REQUIRED_ADDED",
                    f"The reader requires property '{dep}' whenever '{name}' is present in "
                    f"{subject(rp)}, which the writer does not guarantee.",
                )
                for dep in needed
                if dep != name and dep not in guaranteed and dep not in also
            ]
        w_schemas = dependent_schemas(w)
        for name, (sub, keyword) in dependent_schemas(r).items():
            if not self.writer_may_have(w, wp, name):
                continue
            if name in w_schemas and self.same(sub, w_schemas[name][0]):
                continue
            if not self.check(sub, child(rp, keyword, name), w, wp):
                continue
            problems.append(
                Incompatibility(
                    child(rp, keyword, name),
                    "DEPENDENT_SCHEMA_ADDED",
                    f"The reader applies an extra schema to {subject(rp)} whenever '{name}' is "
                    "present, which the writer does not guarantee.",
                )
            )
        return problems

    def writer_may_have(self, w: dict[str, Any], wp: str, name: str) -> bool:
        return any(s is not False for s, _, _ in self.writer_candidates(w, wp, name))
