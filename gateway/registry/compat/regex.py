"""ECMA-262 regular expressions, approximated by Python's `re` where the two agree."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["compiled_regex", "regex_search"]


@lru_cache(maxsize=512)
def compiled_regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def regex_search(pattern: Any, text: str) -> bool | None:
    """Does `pattern` (ECMA-262, unanchored) match `text`? None where Python's re may disagree."""
    compiled = compiled_regex(pattern) if isinstance(pattern, str) else None
    if compiled is None:
        return None
    if not text.isascii() and re.search(r"\\[dDwWsSbB]", pattern):
        return None  # Python's classes are Unicode-aware, ECMA's mostly ASCII
    if text.endswith("\n") and "$" in pattern:
        return None  # Python's $ also matches before a final newline
    return compiled.search(text) is not None
