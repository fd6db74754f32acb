"""Code lists in mapping rules, and what a code not in its list becomes.

A rule's `codes: <name>` reads a value as a code of the list and writes what the list
gives for it (`codes_inverse` the other way). A national code list grows faster than a
mapping is released, so a rule declares what an unknown code does (`unknown:`, or the
mapping's `unknown_codes:`):

    fail   the mapping fails, naming the code and the list (the default)
    omit   the rule writes nothing: with a rule that keeps the code beside it, the
           answer has the code and leaves its name out
    pass   the code is written unchanged

Example:
    >>> convert = codes_converter({"LUC": "Đất chuyên trồng lúa"}, "land-use", "omit")
    >>> convert("LUC"), convert("XYZ") is MISSING
    ('Đất chuyên trồng lúa', True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from gateway.conversion.mapping.values import MISSING, MappingError

__all__ = ["UnknownCodes", "code_table", "codes_converter"]

UnknownCodes = Literal["fail", "omit", "pass"]


def code_table(
    code_lists: Mapping[str, Mapping[str, str]], name: str, *, inverse: bool
) -> dict[str, str]:
    """The list `name` as a table, inverted (value -> code) when `inverse`.

    Raises:
        ValueError: there is no such list, or an inverted list would map one value back
            to two codes.
    """
    if name not in code_lists:
        raise ValueError(f"no code list {name!r} (known: {sorted(code_lists)})")
    table = dict(code_lists[name])
    if not inverse:
        return table
    inverted = {v: k for k, v in table.items()}
    if len(inverted) != len(table):
        raise ValueError(f"code list {name!r} maps two codes to one: it has no inverse")
    return inverted


def codes_converter(
    table: Mapping[str, str], name: str, unknown: UnknownCodes = "fail"
) -> Callable[[Any], Any]:
    """A value looked up in `table` (as text); an unknown one fails, becomes `MISSING`
    (nothing written), or passes unchanged, as `unknown` says."""

    def convert(value: Any) -> Any:
        key = str(value)
        found = table.get(key, MISSING)
        if found is not MISSING:
            return found
        if unknown == "omit":
            return MISSING
        if unknown == "pass":
            return value
        raise MappingError(f"{key!r} is not in code list {name!r} (known: {sorted(table)})")

    return convert
