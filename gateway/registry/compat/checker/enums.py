"""``enum`` and ``const``, and any writer whose values are few enough to try one by one.

Enumerated writer values (``enum``, ``const``, ``null``/``boolean`` types) are validated one by
one against the reader (`validate`); a value whose validity cannot be decided is
VALUE_UNVERIFIABLE.
"""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.checker.base import CheckerBase
from gateway.registry.compat.problems import Incompatibility, child, show, subject
from gateway.registry.compat.validate import validate
from gateway.registry.compat.values import json_eq, json_type
from gateway.registry.compat.vocabulary import type_set, values_of_types

__all__ = ["Enums"]


class Enums(CheckerBase):
    """Listed values on either side."""

    def values(self, r: dict[str, Any], rp: str, values: list[Any]) -> list[Incompatibility]:
        """Each value the writer allows, validated against the reader."""
        problems = []
        reader_types = type_set(r, writer=False)
        for value in values:
            verdict = validate(value, r, self.rroot)
            if verdict is True:
                continue
            shown, kind = show(value), json_type(value)
            if kind not in reader_types:
                problems.append(
                    Incompatibility(
                        child(rp, "type"),
                        "TYPE_NARROWED",
                        f"The writer allows the {kind} {shown} at {subject(rp)}, but the "
                        f"reader's type is {show(r.get('type'))}.",
                    )
                )
            elif "const" in r and not json_eq(value, r["const"]):
                problems.append(
                    Incompatibility(
                        child(rp, "const"),
                        "CONST_CHANGED",
                        f"The writer allows {shown} at {subject(rp)}, but the reader requires "
                        f"the constant {show(r['const'])}.",
                    )
                )
            elif isinstance(r.get("enum"), list) and not any(json_eq(value, e) for e in r["enum"]):
                problems.append(
                    Incompatibility(
                        child(rp, "enum"),
                        "ENUM_VALUE_REMOVED",
                        f"The writer allows {shown} at {subject(rp)}, which the reader's enum "
                        "does not list; add it back to the reader's enum.",
                    )
                )
            elif verdict is False and (union := self.rejecting_union(r, value)) is not None:
                problems.append(
                    Incompatibility(
                        child(rp, union),
                        f"NO_MATCHING_{'ANY' if union == 'anyOf' else 'ONE'}_OF_BRANCH",
                        f"The writer allows {shown} at {subject(rp)}, which "
                        + (
                            "no branch of the reader's anyOf accepts."
                            if union == "anyOf"
                            else "does not match exactly one branch of the reader's oneOf."
                        ),
                    )
                )
            elif verdict is False:
                problems.append(
                    Incompatibility(
                        rp,
                        "VALUE_REJECTED",
                        f"The writer allows {shown} at {subject(rp)}, which the reader rejects.",
                    )
                )
            else:
                problems.append(
                    Incompatibility(
                        rp,
                        "VALUE_UNVERIFIABLE",
                        f"The writer allows {shown} at {subject(rp)}, and the checker cannot "
                        "decide whether the reader accepts it (format, or a regex Python and "
                        "ECMA-262 may read differently).",
                    )
                )
        return problems

    def rejecting_union(self, r: dict[str, Any], value: Any) -> str | None:
        """The reader's anyOf or oneOf if that is what rejects `value`."""
        for keyword in ("anyOf", "oneOf"):
            if keyword in r and validate(value, {keyword: r[keyword]}, self.rroot) is False:
                return keyword
        return None

    def enum(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], shared: frozenset[str]
    ) -> list[Incompatibility]:
        """A reader enum/const against a writer without one."""
        if "const" not in r and "enum" not in r:
            return []
        listed = values_of_types(shared)  # only nulls and booleans can get past the type check
        if listed is not None:
            kept = [v for v in listed if validate(v, w, self.wroot) is not False]
            return self.values(r, rp, kept)
        keyword = "const" if "const" in r else "enum"
        return [
            Incompatibility(
                child(rp, keyword),
                "CONST_ADDED" if keyword == "const" else "ENUM_ADDED",
                f"The reader restricts {subject(rp)} to {keyword} {show(r[keyword])}, but the "
                f"writer does not restrict it to listed values.",
            )
        ]
