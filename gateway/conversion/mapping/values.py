"""Values as the mapping engine sees them: absent, empty, or an error to report.

`MISSING` marks a value that is not there (an absent path, a null, an empty value the
mapping drops, a name left out for an unknown code); a rule writes nothing for it.
`clean` is what `trim: true` and `drop_empty: true` do to a value read:

    >>> clean({"Ten": "  An ", "GhiChu": "", "DiaChi": {"Xa": " "}}, trim=True, drop_empty=True)
    {'Ten': 'An'}
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["MISSING", "MappingError", "clean", "is_empty"]

MISSING: Final[Any] = object()


class MappingError(ValueError):
    """A message cannot be mapped (a required value missing, a code not in its list)."""


def is_empty(value: Any) -> bool:
    """An empty string, object or list (what `drop_empty` treats as absent)."""
    return isinstance(value, str | dict | list) and not value


def clean(value: Any, *, trim: bool, drop_empty: bool) -> Any:
    """`value` with its strings stripped (`trim`) and its empty strings, objects and lists
    left out (`drop_empty`), all the way down; an empty value itself becomes `MISSING`
    when `drop_empty`.

    Args:
        value: a JSON-like value, as read from a document.
        trim: strip leading and trailing white space from strings.
        drop_empty: leave out "", {} and [] (after trimming), in objects and lists too.

    Returns:
        The cleaned value, or `MISSING` for an empty one dropped.
    """
    if isinstance(value, str):
        value = value.strip() if trim else value
    elif isinstance(value, dict):
        cleaned = {k: clean(v, trim=trim, drop_empty=drop_empty) for k, v in value.items()}
        value = {k: v for k, v in cleaned.items() if v is not MISSING}
    elif isinstance(value, list):
        items = [clean(v, trim=trim, drop_empty=drop_empty) for v in value]
        value = [v for v in items if v is not MISSING]
    return MISSING if drop_empty and is_empty(value) else value
