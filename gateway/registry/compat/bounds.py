"""Numeric ranges: the lower and upper bound a schema sets, in any draft's spelling."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from gateway.registry.compat.values import number

__all__ = [
    "Bound",
    "describe_bound",
    "integer_lower",
    "integer_upper",
    "lower_bound",
    "lower_covers",
    "upper_bound",
    "upper_covers",
]


class Bound(NamedTuple):
    value: int | float
    exclusive: bool
    keyword: str


def lower_bound(schema: dict[str, Any]) -> Bound | None:
    bounds = []
    minimum, exclusive = number(schema.get("minimum")), schema.get("exclusiveMinimum")
    if minimum is not None:  # draft-04 spells "exclusive" as a boolean beside minimum
        bounds.append(Bound(minimum, exclusive is True, "minimum"))
    if (value := number(exclusive)) is not None:
        bounds.append(Bound(value, True, "exclusiveMinimum"))
    return max(bounds, key=lambda b: (b.value, b.exclusive), default=None)


def upper_bound(schema: dict[str, Any]) -> Bound | None:
    bounds = []
    maximum, exclusive = number(schema.get("maximum")), schema.get("exclusiveMaximum")
    if maximum is not None:
        bounds.append(Bound(maximum, exclusive is True, "maximum"))
    if (value := number(exclusive)) is not None:
        bounds.append(Bound(value, True, "exclusiveMaximum"))
    return min(bounds, key=lambda b: (b.value, not b.exclusive), default=None)


def integer_lower(bound: Bound | None) -> Bound | None:
    if bound is None:
        return None
    value = math.floor(bound.value) + 1 if bound.exclusive else math.ceil(bound.value)
    return Bound(value, False, bound.keyword)


def integer_upper(bound: Bound | None) -> Bound | None:
    if bound is None:
        return None
    value = math.ceil(bound.value) - 1 if bound.exclusive else math.floor(bound.value)
    return Bound(value, False, bound.keyword)


def lower_covers(reader: Bound, writer: Bound | None) -> bool:
    """Every value the writer's lower bound admits is admitted by the reader's."""
    if writer is None:
        return False
    if writer.value != reader.value:
        return writer.value > reader.value
    return writer.exclusive or not reader.exclusive


def upper_covers(reader: Bound, writer: Bound | None) -> bool:
    if writer is None:
        return False
    if writer.value != reader.value:
        return writer.value < reader.value
    return writer.exclusive or not reader.exclusive


def describe_bound(bound: Bound | None, lower: bool) -> str:
    if bound is None:
        return "no bound"
    sign = (">" if lower else "<") + ("" if bound.exclusive else "=")
    return f"{sign} {bound.value}"
