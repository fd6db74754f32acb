"""``allOf``, ``anyOf``, ``oneOf``, ``not`` and ``if``/``then``/``else``, on either side.

* reader ``oneOf``: a writer accepted by branch *i* must also be provably disjoint from every other
  branch; otherwise ONE_OF_BRANCHES_MAY_OVERLAP. A writer ``oneOf`` is read as ``anyOf``, which
  over-approximates it.
* reader ``not``: accepted only if the writer has the identical ``not`` or is provably disjoint
  from it (`checker.proofs`). A writer ``not`` is ignored.
* reader ``if``/``then``/``else``: accepted when identical to the writer's or when the writer
  provably satisfies them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from gateway.registry.compat.checker.proofs import Proofs
from gateway.registry.compat.checker.references import References
from gateway.registry.compat.merge import merge
from gateway.registry.compat.problems import Incompatibility, child, prefixed, subject
from gateway.registry.compat.vocabulary import schema_list

__all__ = ["Combinators"]


class Combinators(References, Proofs):
    """Unions, intersections, negation and conditionals."""

    # -- unions in the writer -------------------------------------------------------------------

    def writer_branches(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str, keyword: str
    ) -> list[Incompatibility]:
        """A writer anyOf/oneOf: every branch (with the keywords beside it) must be readable."""
        base = self.without(w, keyword)
        problems = []
        for i, branch in enumerate(schema_list(w, keyword)):
            merged = self.derived(w, f"{keyword}/{i}", partial(self.merge_branch, base, branch))
            found = self.check(r, rp, merged, child(wp, keyword, i))
            context = f"when the writer's value matches its {keyword} branch {i}"
            problems += [prefixed(p, context) for p in found]
        return problems

    def merge_branch(self, base: dict[str, Any], branch: Any) -> Any:
        return merge(base, self.flat(branch))

    # -- combinators in the reader --------------------------------------------------------------

    def reader_combinators(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        problems = []
        for i, branch in enumerate(schema_list(r, "allOf")):
            problems += self.check(branch, child(rp, "allOf", i), w, wp)
        if "anyOf" in r:
            problems += self.any_of(r, rp, w, wp)
        if "oneOf" in r:
            problems += self.one_of(r, rp, w, wp)
        if "not" in r:
            problems += self.negation(r, rp, w)
        if "if" in r:
            problems += self.conditional(r, rp, w, wp)
        return problems

    def branch_attempts(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str, keyword: str
    ) -> tuple[int | None, list[list[Incompatibility]]]:
        """(index of the first reader branch that reads `w`, problems of those before it)."""
        attempts: list[list[Incompatibility]] = []
        for i, branch in enumerate(schema_list(r, keyword)):
            found = self.check(branch, child(rp, keyword, i), w, wp)
            if not found:
                return i, attempts
            attempts.append(found)
        return None, attempts

    @staticmethod
    def no_branch(
        rp: str, keyword: str, attempts: list[list[Incompatibility]]
    ) -> list[Incompatibility]:
        rule = "NO_MATCHING_ANY_OF_BRANCH" if keyword == "anyOf" else "NO_MATCHING_ONE_OF_BRANCH"
        if not attempts:
            reason = f"the reader's {keyword} is empty"
        else:
            best = min(range(len(attempts)), key=lambda i: len(attempts[i]))
            reason = f"the closest, branch {best}, fails because: {attempts[best][0].message}"
        return [
            Incompatibility(
                child(rp, keyword),
                rule,
                f"No branch of the reader's {keyword} at {subject(rp)} accepts everything the "
                f"writer allows there; {reason}",
            )
        ]

    def any_of(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        match, attempts = self.branch_attempts(r, rp, w, wp, "anyOf")
        return [] if match is not None else self.no_branch(rp, "anyOf", attempts)

    def one_of(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        match, attempts = self.branch_attempts(r, rp, w, wp, "oneOf")
        if match is None:
            return self.no_branch(rp, "oneOf", attempts)
        branches = schema_list(r, "oneOf")
        chosen = branches[match]
        overlapping = [
            j
            for j, other in enumerate(branches)
            if j != match
            and not self.disjoint(w, self.wroot, other, self.rroot)
            and not self.disjoint(chosen, self.rroot, other, self.rroot)
        ]
        if not overlapping:
            return []
        return [
            Incompatibility(
                child(rp, "oneOf"),
                "ONE_OF_BRANCHES_MAY_OVERLAP",
                f"The writer's values at {subject(rp)} match the reader's oneOf branch {match}, "
                f"but they may also match branch(es) {', '.join(map(str, overlapping))}, and a "
                "value matching two branches fails oneOf; make the branches mutually exclusive "
                "(distinct types, or a required discriminator with distinct const values).",
            )
        ]

    def negation(self, r: dict[str, Any], rp: str, w: dict[str, Any]) -> list[Incompatibility]:
        excluded = r["not"]
        if "not" in w and self.same(excluded, w["not"]):
            return []
        if self.disjoint(w, self.wroot, excluded, self.rroot):
            return []
        return [
            Incompatibility(
                child(rp, "not"),
                "NOT_UNSUPPORTED",
                f"The reader excludes values at {subject(rp)} with 'not', and the checker cannot "
                "prove the writer never produces one; it accepts 'not' only when the writer has "
                "the identical 'not' or provably disjoint values.",
            )
        ]

    def conditional(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        if "then" not in r and "else" not in r:
            return []
        if all(self.same(r.get(k), w.get(k)) for k in ("if", "then", "else")):
            return []
        condition = r["if"]
        found = []
        if "then" in r and not self.disjoint(w, self.wroot, condition, self.rroot):
            found += self.check(r["then"], child(rp, "then"), w, wp)
        if "else" in r and self.check(condition, child(rp, "if"), w, wp):
            found += self.check(r["else"], child(rp, "else"), w, wp)
        if not found:
            return []
        return [
            Incompatibility(
                child(rp, "if"),
                "CONDITIONAL_NOT_PROVEN",
                f"The reader's if/then/else at {subject(rp)} may reject values the writer "
                f"allows: {found[0].message}",
            )
        ]
