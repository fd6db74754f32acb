"""Structural compatibility of JSON Schemas, in the Confluent Schema Registry's modes.

The rule
--------
A *reader* schema R can read data produced under a *writer* schema W iff every instance W
accepts is also accepted by R: R ⊇ W, as sets of JSON documents. BACKWARD asks whether the new
schema reads data written under the previous one (reader = new, writer = previous); FORWARD the
reverse (reader = previous, writer = new); FULL both. ``*_TRANSITIVE`` repeats the check against
every earlier version instead of only the latest.

The check walks both schemas together, one keyword family at a time, and is *sound but
incomplete*: an empty result is a proof of compatibility, while anything this package cannot
prove (two different regular expressions, a ``not`` it cannot discharge, a keyword it does not
model) is reported as an incompatibility instead of passing silently. Writer-side keywords it does
not model are ignored, which only makes the writer look *larger* and so is always safe.

Paths are JSON Pointers into the reader schema (for FORWARD that is the *earlier* version), except
for an unresolvable ``$ref`` that only the writer has. A path may name a property the reader does
not declare (``#/properties/<name>``) when that property is the problem.

Keywords are read with their own draft's meaning whatever ``$schema`` says (``dependencies`` and
``dependentRequired``, ``items`` arrays and ``prefixItems`` are all understood). Where the check
is deliberately conservative (reports rather than proves) is said in the module of each keyword
family:

* `modes`: the Confluent modes over `can_read`;
* `checker`: the walk over (reader, writer) pairs, one mixin per keyword family —
  `checker.core` (dispatch, recursion), `checker.references` (``$ref``, writer ``allOf``,
  ``unevaluated*``), `checker.types`, `checker.enums` (``enum``, ``const``, enumerated values),
  `checker.scalars` (string and number bounds, ``pattern``, ``format``), `checker.arrays`,
  `checker.properties` (open and closed content models), `checker.objects` (``required``,
  counts, names, dependencies), `checker.combinators` (``anyOf``, ``oneOf``, ``not``, ``if``),
  `checker.proofs` (sameness and disjointness);
* `validate`: three-valued validation of single values; `merge`: the writer-side ``allOf`` merge;
* `vocabulary`, `values`, `bounds`, `refs`, `regex`, `problems`: the shared helpers.
"""

from gateway.registry.compat.modes import MODES, can_read, check
from gateway.registry.compat.problems import Incompatibility

__all__ = ["MODES", "Incompatibility", "can_read", "check"]
