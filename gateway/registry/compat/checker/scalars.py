"""Strings and numbers: lengths, ``pattern``, ``format``, ranges and ``multipleOf``.

* ``pattern`` and ``format``: only an identical value on the writer side is accepted; different
  regular expressions are never compared.
* For integers, exclusive and inclusive bounds are compared as the same set (x > 0 is x >= 1).
"""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.bounds import (
    describe_bound,
    integer_lower,
    integer_upper,
    lower_bound,
    lower_covers,
    upper_bound,
    upper_covers,
)
from gateway.registry.compat.problems import Incompatibility, child, show, subject
from gateway.registry.compat.values import is_multiple, number

__all__ = ["Scalars", "size_bounds"]


def size_bounds(
    r: dict[str, Any], rp: str, w: dict[str, Any], stem: str, what: str, unbounded: str
) -> list[Incompatibility]:
    """min{stem}/max{stem} (Length, Items): the reader's range must cover the writer's."""
    problems = []
    low, high = f"min{stem}", f"max{stem}"
    least, writer_least = number(r.get(low)) or 0, number(w.get(low)) or 0
    if least > writer_least:
        problems.append(
            Incompatibility(
                child(rp, low),
                f"MIN_{stem.upper()}_INCREASED",
                f"The reader requires at least {least} {what}, but the writer allows "
                f"{writer_least}.",
            )
        )
    most, writer_most = number(r.get(high)), number(w.get(high))
    if most is not None and (writer_most is None or writer_most > most):
        allowed = unbounded if writer_most is None else f"up to {writer_most}"
        problems.append(
            Incompatibility(
                child(rp, high),
                f"MAX_{stem.upper()}_DECREASED",
                f"The reader allows at most {most} {what}, but the writer allows {allowed}.",
            )
        )
    return problems


class Scalars:
    """Bounds on strings and numbers (no recursion: nothing here calls back into `check`)."""

    @staticmethod
    def strings(r: dict[str, Any], rp: str, w: dict[str, Any]) -> list[Incompatibility]:
        at = subject(rp)
        problems = size_bounds(r, rp, w, "Length", f"characters for {at}", "any length")
        pattern = r.get("pattern")
        if pattern is not None and pattern not in ("", ".*") and w.get("pattern") != pattern:
            if "pattern" in w:
                problems.append(
                    Incompatibility(
                        child(rp, "pattern"),
                        "PATTERN_CHANGED",
                        f"The reader requires {at} to match {show(pattern)}, but the writer only "
                        f"guarantees {show(w['pattern'])}; different regular expressions are "
                        "not compared, so keep the pattern identical.",
                    )
                )
            else:
                problems.append(
                    Incompatibility(
                        child(rp, "pattern"),
                        "PATTERN_ADDED",
                        f"The reader requires {at} to match {show(pattern)}, which the writer "
                        "does not require.",
                    )
                )
        fmt = r.get("format")
        if fmt is not None and w.get("format") != fmt:
            rule, was = (
                ("FORMAT_CHANGED", f"format {show(w['format'])}")
                if "format" in w
                else ("FORMAT_ADDED", "no format")
            )
            problems.append(
                Incompatibility(
                    child(rp, "format"),
                    rule,
                    f"The reader requires {at} to have format {show(fmt)}, but the writer has "
                    f"{was}.",
                )
            )
        return problems

    @staticmethod
    def numbers(
        r: dict[str, Any], rp: str, w: dict[str, Any], *, integers_only: bool
    ) -> list[Incompatibility]:
        problems = []
        at = subject(rp)
        low, writer_low = lower_bound(r), lower_bound(w)
        high, writer_high = upper_bound(r), upper_bound(w)
        if integers_only:  # x > 0 and x >= 1 say the same about integers
            low, writer_low = integer_lower(low), integer_lower(writer_low)
            high, writer_high = integer_upper(high), integer_upper(writer_high)
        if low is not None and not lower_covers(low, writer_low):
            problems.append(
                Incompatibility(
                    child(rp, low.keyword),
                    "MINIMUM_INCREASED",
                    f"The reader requires {at} {describe_bound(low, True)}, but the writer "
                    f"allows {describe_bound(writer_low, True)}.",
                )
            )
        if high is not None and not upper_covers(high, writer_high):
            problems.append(
                Incompatibility(
                    child(rp, high.keyword),
                    "MAXIMUM_DECREASED",
                    f"The reader requires {at} {describe_bound(high, False)}, but the writer "
                    f"allows {describe_bound(writer_high, False)}.",
                )
            )
        step, writer_step = number(r.get("multipleOf")), number(w.get("multipleOf"))
        if step is not None and step > 0:
            proved = (writer_step is not None and is_multiple(writer_step, step)) or (
                integers_only and is_multiple(1, step)
            )
            if not proved:
                problems.append(
                    Incompatibility(
                        child(rp, "multipleOf"),
                        "MULTIPLE_OF_CHANGED" if writer_step is not None else "MULTIPLE_OF_ADDED",
                        f"The reader requires {at} to be a multiple of {step}, but the writer "
                        + (
                            f"only guarantees multiples of {writer_step}."
                            if writer_step is not None
                            else "does not restrict it."
                        ),
                    )
                )
        return problems
