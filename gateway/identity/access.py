"""Deny unless granted: compiled access rules for one service.

A right names a method (or `*`) and a path glob over the endpoint path: `*` matches
within one segment, `**` across segments (X-Road's endpoint rights). Globs are compiled
to regular expressions once, when configuration loads.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.lru_cache(maxsize=65536)
def compile_glob(glob: str) -> re.Pattern[str] | None:
    """`/**` (the whole service) compiles to None, which matches without a regex."""
    if not glob.startswith("/"):
        raise ValueError(f"path glob {glob!r} must start with '/'")
    if glob in ("/**", "**"):
        return None
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("/**", i) and (i + 3 == len(glob) or glob[i + 3] == "/"):
            # "/**" matches "" or any number of further segments.
            out.append("(?:/.*)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True, slots=True)
class Rule:
    methods: frozenset[str] | None  # None: any method
    path: re.Pattern[str] | None  # None: any path

    @classmethod
    def compile(cls, method: str, path_glob: str) -> Rule:
        method = method.upper()
        if method != "*" and method not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {method!r}")
        return cls(None if method == "*" else frozenset({method}), compile_glob(path_glob))

    def allows(self, method: str, endpoint: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or self.path.match(endpoint) is not None


def is_allowed(rules: tuple[Rule, ...], method: str, endpoint: str) -> bool:
    # A plain loop: this runs on every exchange, and any() over a generator costs more
    # than the rule checks themselves.
    for rule in rules:
        if rule.methods is not None and method not in rule.methods:
            continue
        if rule.path is None or rule.path.match(endpoint) is not None:
            return True
    return False
