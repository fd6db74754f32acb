"""Properties, declared by name or not: open and closed content models.

Whether a property only one side declares is a problem depends on the *other* side's content
model for undeclared properties (``additionalProperties``, refined by ``patternProperties``):

* open (``additionalProperties`` absent or ``true``): undeclared properties may carry any value;
* closed (``false``): undeclared properties never occur;
* a schema: undeclared properties carry values valid under that schema.

So a reader that *adds* an optional property ``p: {"type": "string"}`` cannot read an open writer
(the writer may already send ``p`` as a number: PROPERTY_ADDED_TO_OPEN_MODEL) but can read a
closed one. A reader that *drops* a property the writer declares is fine while the reader is open,
broken when it is closed (PROPERTY_REMOVED_FROM_CLOSED_MODEL), and, when the reader's
``additionalProperties`` is a schema, fine only if that schema accepts the writer's property.
A closed reader cannot read an open writer at all (CONTENT_MODEL_CLOSED).

``patternProperties``: regular expressions are never compared; a reader pattern must accept every
schema the writer may give a matching property (its pattern of the same text, or else all of its
patterns and its ``additionalProperties``).
"""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.checker.base import CheckerBase
from gateway.registry.compat.problems import Incompatibility, child, prefixed, show, subject
from gateway.registry.compat.regex import regex_search
from gateway.registry.compat.vocabulary import accepts_everything, schema_map

__all__ = ["Properties"]


class Properties(CheckerBase):
    """What each side says about each property."""

    @staticmethod
    def writer_candidates(w: dict[str, Any], wp: str, name: str) -> list[tuple[Any, str, bool]]:
        """Schemas the writer may give property `name`; the reader must accept each. The flag
        marks the writer's additionalProperties (the property is undeclared there)."""
        declared = schema_map(w, "properties")
        if name in declared:
            return [(declared[name], child(wp, "properties", name), False)]
        candidates = []
        for pattern, sub in schema_map(w, "patternProperties").items():
            hit = regex_search(pattern, name)
            if hit is True:
                return [(sub, child(wp, "patternProperties", pattern), False)]
            if hit is None:
                candidates.append((sub, child(wp, "patternProperties", pattern), False))
        additional = w.get("additionalProperties", True)
        candidates.append((additional, child(wp, "additionalProperties"), True))
        return candidates

    @staticmethod
    def reader_constraints(r: dict[str, Any], rp: str, name: str) -> list[tuple[Any, str, bool]]:
        """Schemas the reader applies to property `name`; each must accept the writer's. The flag
        marks the reader's additionalProperties. A regex whose match is undecidable counts as
        matching *and* not matching, which only adds constraints."""
        declared = schema_map(r, "properties")
        found = []
        if name in declared:
            found.append((declared[name], child(rp, "properties", name), False))
        matched = False
        for pattern, sub in schema_map(r, "patternProperties").items():
            hit = regex_search(pattern, name)
            if hit is not False:
                found.append((sub, child(rp, "patternProperties", pattern), False))
                matched = matched or hit is True
        if name not in declared and not matched:
            found.append(
                (r.get("additionalProperties", True), child(rp, "additionalProperties"), True)
            )
        return found

    def declared_properties(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        """Properties either side declares by name."""
        r_declared, w_declared = schema_map(r, "properties"), schema_map(w, "properties")
        problems = []
        for name in [*r_declared, *(n for n in w_declared if n not in r_declared)]:
            where = child(rp, "properties", name)
            for ws, ws_at, w_undeclared in self.writer_candidates(w, wp, name):
                if ws is False:
                    continue
                for rs, rs_at, r_undeclared in self.reader_constraints(r, rp, name):
                    found = self.check(rs, rs_at, ws, ws_at)
                    if not found:
                        continue
                    if rs is False and r_undeclared:
                        problems.append(
                            Incompatibility(
                                where,
                                "PROPERTY_REMOVED_FROM_CLOSED_MODEL",
                                f"The writer may send property '{name}' ({where}), but the "
                                "reader does not declare it and its additionalProperties is "
                                "false; declare it in the reader or keep the reader open.",
                            )
                        )
                    elif rs is False:
                        problems.append(
                            Incompatibility(
                                rs_at,
                                "PROPERTY_FORBIDDEN",
                                f"The reader forbids property '{name}' (its schema is false), "
                                "but the writer allows it.",
                            )
                        )
                    elif w_undeclared and accepts_everything(ws):
                        problems.append(
                            Incompatibility(
                                rs_at,
                                "PROPERTY_ADDED_TO_OPEN_MODEL",
                                f"The reader constrains property '{name}' ({where}), which the "
                                "writer does not declare but, its content model being open, "
                                f"allows with any value; leave '{name}' unconstrained in the "
                                "reader or close the writer.",
                            )
                        )
                    elif r_undeclared or w_undeclared:
                        side = "reader" if r_undeclared else "writer"
                        context = f"property '{name}', which the {side} leaves to its "
                        context += "additionalProperties or patternProperties"
                        problems += [prefixed(p, context) for p in found]
                    else:
                        problems += found
        return problems

    def undeclared_properties(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        """Properties neither side declares by name: patternProperties and additionalProperties."""
        r_patterns, w_patterns = (
            schema_map(r, "patternProperties"),
            schema_map(w, "patternProperties"),
        )
        w_additional = (w.get("additionalProperties", True), child(wp, "additionalProperties"))
        w_sources = {p: (s, child(wp, "patternProperties", p)) for p, s in w_patterns.items()}
        problems = []
        for pattern, rs in r_patterns.items():
            rs_at = child(rp, "patternProperties", pattern)
            if pattern in w_sources:
                sources = [w_sources[pattern]]
            else:  # a matching name may fall under any writer pattern or its additionalProperties
                sources = [*w_sources.values(), w_additional]
            for ws, ws_at in sources:
                if ws is False:
                    continue
                found = self.check(rs, rs_at, ws, ws_at)
                if found and ws_at == w_additional[1] and accepts_everything(ws):
                    problems.append(
                        Incompatibility(
                            rs_at,
                            "PATTERN_PROPERTIES_NARROWED",
                            f"The reader constrains properties matching {show(pattern)}, but "
                            "the writer's open content model allows them with any value.",
                        )
                    )
                else:
                    problems += found
        r_additional = r.get("additionalProperties", True)
        r_additional_at = child(rp, "additionalProperties")
        rest: list[tuple[Any, str, str | None]] = [
            (s, at, p) for p, (s, at) in w_sources.items() if p not in r_patterns
        ]
        for ws, ws_at, only in [*rest, (*w_additional, None)]:
            if ws is False:
                continue
            found = self.check(r_additional, r_additional_at, ws, ws_at)
            if not found:
                continue
            if r_additional is False:
                which = f" matching {show(only)}" if only is not None else ""
                problems.append(
                    Incompatibility(
                        r_additional_at,
                        "CONTENT_MODEL_CLOSED",
                        f"The reader's content model at {subject(rp)} is closed "
                        "(additionalProperties: false), but the writer allows properties"
                        f"{which} the reader does not declare; such documents would be rejected.",
                    )
                )
            elif only is None and accepts_everything(ws):
                problems.append(
                    Incompatibility(
                        r_additional_at,
                        "ADDITIONAL_PROPERTIES_NARROWED",
                        f"The reader constrains undeclared properties of {subject(rp)} through "
                        "additionalProperties, but the writer's open content model allows them "
                        "with any value.",
                    )
                )
            else:
                problems += found
        return problems
