"""Arrays: item counts, ``uniqueItems``, positional and remaining items, ``contains``.

A reader ``contains`` with ``maxContains`` is accepted only when identical to the writer's; without
``maxContains``, when the writer's own ``contains`` provably satisfies it.
"""

from __future__ import annotations

from typing import Any

from gateway.registry.compat.checker.proofs import Proofs
from gateway.registry.compat.checker.scalars import size_bounds
from gateway.registry.compat.problems import Incompatibility, child, subject
from gateway.registry.compat.values import number
from gateway.registry.compat.vocabulary import item_layout

__all__ = ["Arrays"]


class Arrays(Proofs):
    """The array keywords."""

    def arrays(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        at = subject(rp)
        problems = size_bounds(r, rp, w, "Items", f"items in {at}", "any number")
        writer_most = number(w.get("maxItems"))
        short = writer_most is not None and writer_most <= 1
        if r.get("uniqueItems") is True and w.get("uniqueItems") is not True and not short:
            problems.append(
                Incompatibility(
                    child(rp, "uniqueItems"),
                    "UNIQUE_ITEMS_ADDED",
                    f"The reader requires the items of {at} to be unique, but the writer allows "
                    "repeated items.",
                )
            )
        problems += self.items(r, rp, w, wp, writer_most)
        problems += self.contains(r, rp, w, wp)
        return problems

    def items(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str, writer_most: float | None
    ) -> list[Incompatibility]:
        """Position by position over both tuple prefixes, then the remaining items."""
        r_prefix, r_tail, r_tail_at = item_layout(r, rp)
        w_prefix, w_tail, w_tail_at = item_layout(w, wp)
        positions = max(len(r_prefix), len(w_prefix))
        problems: list[Incompatibility] = []
        for i in range(positions):
            if writer_most is not None and i >= writer_most:
                return problems
            rs, rs_at = r_prefix[i] if i < len(r_prefix) else (r_tail, r_tail_at)
            ws, ws_at = w_prefix[i] if i < len(w_prefix) else (w_tail, w_tail_at)
            problems += self.check(rs, rs_at, ws, ws_at)
        if writer_most is None or writer_most > positions:
            problems += self.check(r_tail, r_tail_at, w_tail, w_tail_at)
        return problems

    def contains(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        if "contains" not in r:
            return []
        least = number(r.get("minContains"))
        least = 1 if least is None else least
        if "maxContains" not in r:
            if least == 0:
                return []
            writer_least = number(w.get("minContains"))
            writer_least = 1 if writer_least is None else writer_least
            if (
                "contains" in w
                and writer_least >= least
                and not self.check(
                    r["contains"], child(rp, "contains"), w["contains"], child(wp, "contains")
                )
            ):
                return []
        elif all(self.same(r.get(k), w.get(k)) for k in ("contains", "minContains", "maxContains")):
            return []
        return [
            Incompatibility(
                child(rp, "contains"),
                "CONTAINS_ADDED",
                f"The reader's 'contains' constraint on {subject(rp)} is not guaranteed by the "
                "writer (it needs the same or a stricter 'contains').",
            )
        ]
