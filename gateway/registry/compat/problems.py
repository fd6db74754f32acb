"""What the checker reports (`Incompatibility`) and how its messages name places."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Incompatibility", "child", "prefixed", "show", "subject", "type_names"]


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason the reader may reject a document that the writer accepts."""

    path: str  # JSON Pointer into the reader schema ("#/properties/address/properties/city")
    rule: str  # stable UPPER_SNAKE id
    message: str  # a sentence a person can act on

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.rule})"


def prefixed(problem: Incompatibility, prefix: str) -> Incompatibility:
    return Incompatibility(problem.path, problem.rule, f"{prefix}: {problem.message}")


def child(pointer: str, *tokens: str | int) -> str:
    escaped = [str(t).replace("~", "~0").replace("/", "~1") for t in tokens]
    return "/".join([pointer, *escaped])


def subject(pointer: str) -> str:
    """How a message names the place `pointer` points at."""
    if pointer == "#":
        return "the document root"
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    if len(tokens) >= 2 and tokens[-2] == "properties":
        return f"property '{tokens[-1]}' ({pointer})"
    return pointer


def show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def type_names(types: frozenset[str]) -> str:
    names = ["non-integer number" if t == "number" else t for t in sorted(types)]
    return ", ".join(names)
