"""The Confluent compatibility modes, over the one question `can_read` answers."""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.checker import Checker
from gateway.registry.compat.problems import Incompatibility, prefixed

__all__ = ["MODES", "can_read", "check"]

MODES = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


def can_read(reader: dict[str, Any], writer: dict[str, Any]) -> list[Incompatibility]:
    """Problems that keep every document valid under `writer` from being valid under `reader`.

    Empty list = compatible (proved). Boolean schemas are accepted too.
    """
    return Checker(reader, writer).check(reader, "#", writer, "#")


def check(mode: str, new: dict[str, Any], previous: list[dict[str, Any]]) -> list[Incompatibility]:
    """Check `new` against the subject's earlier schemas `previous` (oldest first) under `mode`.

    BACKWARD: can_read(new, latest). FORWARD: can_read(latest, new). FULL: both (messages start
    with "backward: " or "forward: "). ``*_TRANSITIVE``: against every earlier schema, messages
    starting with "against version index <i>: " where <i> is the 0-based position in `previous`.
    NONE, or no earlier schema: []. Unknown mode: ValueError.
    """
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "NONE" or not previous:
        return []
    transitive = mode.endswith("_TRANSITIVE")
    base = mode.removesuffix("_TRANSITIVE")
    indexes = range(len(previous)) if transitive else [len(previous) - 1]
    problems: list[Incompatibility] = []
    for index in indexes:
        old = previous[index]
        directions: list[tuple[str, Any, Any]] = []
        if base in ("BACKWARD", "FULL"):
            directions.append(("backward", new, old))
        if base in ("FORWARD", "FULL"):
            directions.append(("forward", old, new))
        for direction, reader, writer in directions:
            labels = [f"against version index {index}"] if transitive else []
            if base == "FULL":
                labels.append(direction)
            prefix = ", ".join(labels)
            problems += [prefixed(p, prefix) if prefix else p for p in can_read(reader, writer)]
    return problems
