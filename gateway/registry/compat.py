"""Structural compatibility of JSON Schemas, in the Confluent Schema Registry's modes.

The rule
--------
A *reader* schema R can read data produced under a *writer* schema W iff every instance W
accepts is also accepted by R: R ⊇ W, as sets of JSON documents. BACKWARD asks whether the new
schema reads data written under the previous one (reader = new, writer = previous); FORWARD the
reverse (reader = previous, writer = new); FULL both. ``*_TRANSITIVE`` repeats the check against
every earlier version instead of only the latest.

The check walks both schemas together, one keyword family at a time, and is *sound but
incomplete*: an empty result is a proof of compatibility, while anything this module cannot prove
(two different regular expressions, a ``not`` it cannot discharge, a keyword it does not model) is
reported as an incompatibility instead of passing silently. Writer-side keywords it does not model
are ignored, which only makes the writer look *larger* and so is always safe.

Open and closed content models
------------------------------
Whether a property only one side declares is a problem depends on the *other* side's content
model for undeclared properties (``additionalProperties``, refined by ``patternProperties``):

* open (``additionalProperties`` absent or ``true``): undeclared properties may carry any value;
* closed (``false``): undeclared properties never occur;
* a schema: undeclared properties carry values valid under that schema.

So a reader that *adds* an optional property ``p: {"type": "string"}`` cannot read an open writer
(the writer may already send ``p`` as a number: PROPERTY_ADDED_TO_OPEN_MODEL) but can read a
closed one. A reader that *drops* a property the writer declares is fine while the reader is open,
broken when it is closed (PROPERTY_REMOVED_FROM_CLOSED_MODEL), and, when the reader's
``additionalProperties`` is a schema, fine only if that schema accepts the writer's property.
A closed reader cannot read an open writer at all (CONTENT_MODEL_CLOSED).

Paths are JSON Pointers into the reader schema (for FORWARD that is the *earlier* version), except
for an unresolvable ``$ref`` that only the writer has. A path may name a property the reader does
not declare (``#/properties/<name>``) when that property is the problem.

Deliberately conservative (reported rather than proved):

* ``pattern`` and ``format``: only an identical value on the writer side is accepted.
* ``patternProperties``: regular expressions are never compared; a reader pattern must accept every
  schema the writer may give a matching property (its pattern of the same text, or else all of its
  patterns and its ``additionalProperties``).
* reader ``oneOf``: a writer accepted by branch *i* must also be provably disjoint from every other
  branch (distinct types, distinct ``const``/``enum`` values, or a required discriminator property
  with disjoint values); otherwise ONE_OF_BRANCHES_MAY_OVERLAP. A writer ``oneOf`` is read as
  ``anyOf``, which over-approximates it.
* reader ``not``: accepted only if the writer has the identical ``not`` or is provably disjoint
  from it. A writer ``not`` is ignored.
* reader ``if``/``then``/``else``, ``contains`` with ``maxContains``, ``dependentSchemas``: accepted
  when identical to the writer's or when the writer provably satisfies them.
* ``unevaluatedProperties``/``unevaluatedItems`` in a reader: rewritten to
  ``additionalProperties``/``items`` when no in-place applicator (``allOf``, ``$ref`` ...) sits
  beside them; otherwise UNSUPPORTED_KEYWORD unless the whole subschema is identical.
* writer ``allOf`` (and ``$ref`` with siblings under 2019-09/2020-12) is merged into one schema
  that accepts at least their intersection; a constraint that cannot be merged is dropped.
* ``$ref``: only in-document pointers (``#``, ``#/definitions/..``, ``#/$defs/..``); anything else
  is UNRESOLVED_REF unless both sides use the same reference text, in the same place, in documents
  with the same ``$id``. Keywords next to a ``$ref`` count on the reader side (stricter) and, on
  the writer side, only when ``$schema`` says 2019-09 or 2020-12 (draft-07 and earlier ignore
  them).
* Recursive schemas: a (reader, writer) pair met again while it is still being checked is assumed
  compatible (the coinductive reading; sound because documents are finite).
* Keywords are read with their own draft's meaning whatever ``$schema`` says (``dependencies`` and
  ``dependentRequired``, ``items`` arrays and ``prefixItems`` are all understood).
* Enumerated writer values (``enum``, ``const``, ``null``/``boolean`` types) are validated one by
  one against the reader; a value whose validity this module cannot decide (``format``, a regex
  Python cannot compile) is VALUE_UNVERIFIABLE. Python's ``re`` stands in for ECMA-262 regexes;
  inputs where the two may differ count as undecidable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache, partial
from typing import Any, NamedTuple
from urllib.parse import unquote

__all__ = ["MODES", "Incompatibility", "can_read", "check"]

MODES = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason the reader may reject a document that the writer accepts."""

    path: str  # JSON Pointer into the reader schema ("#/properties/address/properties/city")
    rule: str  # stable UPPER_SNAKE id
    message: str  # a sentence a person can act on

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.rule})"


def can_read(reader: dict[str, Any], writer: dict[str, Any]) -> list[Incompatibility]:
    """Problems that keep every document valid under `writer` from being valid under `reader`.

    Empty list = compatible (proved). Boolean schemas are accepted too.
    """
    return _Checker(reader, writer).check(reader, "#", writer, "#")


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
            problems += [_prefixed(p, prefix) if prefix else p for p in can_read(reader, writer)]
    return problems


# -- vocabulary --------------------------------------------------------------------------------

# In a type set, "number" stands for the numbers that are not integers; the keyword value
# "number" therefore expands to {"number", "integer"}.
_ALL_TYPES = frozenset({"null", "boolean", "integer", "number", "string", "array", "object"})

_VALIDATION_KEYWORDS = frozenset(
    {
        "$ref", "$dynamicRef", "$recursiveRef",
        "type", "enum", "const",
        "minLength", "maxLength", "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems",
        "contains", "minContains", "maxContains", "unevaluatedItems",
        "properties", "patternProperties", "additionalProperties", "required",
        "minProperties", "maxProperties", "propertyNames",
        "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties",
        "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
        "disallow", "extends", "divisibleBy",
    }
)  # fmt: skip
# Reader keywords this module does not model: reported unless the subschemas are identical.
_UNSUPPORTED = (
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
    "disallow",
    "extends",
    "divisibleBy",
)
# Keywords that make `unevaluated*` depend on more than the properties/items keywords beside them.
_APPLICATORS = (
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "allOf",
    "anyOf",
    "oneOf",
    "if",
    "dependentSchemas",
    "dependencies",
)
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMAS = (
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)
_MIN_KEYWORDS = ("minLength", "minItems", "minProperties", "minContains")
_MAX_KEYWORDS = ("maxLength", "maxItems", "maxProperties", "maxContains")
_BOUND_KEYWORDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
_ITEM_KEYWORDS = ("items", "prefixItems", "additionalItems")
_OBJECT_KEYWORDS = ("properties", "patternProperties", "additionalProperties")

_MAX_DEPTH = 60  # nested checks; deeper is reported (RECURSION_LIMIT), never assumed fine
_MAX_REF_CHAIN = 32
_ANYTHING: dict[str, Any] = {}  # the writer `true`, as a dict; never mutated


# -- public-facing helpers ----------------------------------------------------------------------


def _prefixed(problem: Incompatibility, prefix: str) -> Incompatibility:
    return Incompatibility(problem.path, problem.rule, f"{prefix}: {problem.message}")


def _child(pointer: str, *tokens: str | int) -> str:
    escaped = [str(t).replace("~", "~0").replace("/", "~1") for t in tokens]
    return "/".join([pointer, *escaped])


def _subject(pointer: str) -> str:
    """How a message names the place `pointer` points at."""
    if pointer == "#":
        return "the document root"
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    if len(tokens) >= 2 and tokens[-2] == "properties":
        return f"property '{tokens[-1]}' ({pointer})"
    return pointer


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _type_names(types: frozenset[str]) -> str:
    names = ["non-integer number" if t == "number" else t for t in sorted(types)]
    return ", ".join(names)


# -- JSON and schema helpers --------------------------------------------------------------------


def _json_type(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def _json_eq(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_eq(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _is_multiple(value: int | float, divisor: int | float) -> bool:
    try:
        quotient = Fraction(str(value)) / Fraction(str(divisor))
    except (ValueError, ZeroDivisionError):
        return False
    return quotient.denominator == 1


def _schema_map(schema: dict[str, Any], keyword: str) -> dict[str, Any]:
    value = schema.get(keyword)
    return value if isinstance(value, dict) else {}


def _schema_list(schema: dict[str, Any], keyword: str) -> list[Any]:
    value = schema.get(keyword)
    return value if isinstance(value, list) else []


def _names(value: Any) -> list[str]:
    return [n for n in value if isinstance(n, str)] if isinstance(value, list) else []


def _accepts_everything(schema: Any) -> bool:
    if isinstance(schema, dict):
        return not any(k in _VALIDATION_KEYWORDS for k in schema)
    return schema is True


def _closed(schema: dict[str, Any]) -> bool:
    """No property beyond the declared ones can occur."""
    return schema.get("additionalProperties", True) is False and not _schema_map(
        schema, "patternProperties"
    )


def _type_set(schema: Any, *, writer: bool) -> frozenset[str]:
    """The JSON types `schema` allows. Unknown type names widen a writer and are ignored in a
    reader, so each side errs towards incompatibility."""
    declared = schema.get("type") if isinstance(schema, dict) else None
    if declared is None:
        return _ALL_TYPES
    if not isinstance(declared, str | list):
        return _ALL_TYPES if writer else frozenset()
    types: set[str] = set()
    for name in [declared] if isinstance(declared, str) else declared:
        if name == "number":
            types |= {"number", "integer"}
        elif name in _ALL_TYPES:
            types.add(name)
        elif name == "any" or writer:
            return _ALL_TYPES
    return frozenset(types)


def _writer_types(writer: dict[str, Any]) -> frozenset[str]:
    types = _type_set(writer, writer=True)
    step = _number(writer.get("multipleOf"))
    if "number" in types and step is not None and step > 0 and _is_multiple(step, 1):
        types -= {"number"}  # an integral multipleOf admits integers only
    return types


def _type_list(types: frozenset[str]) -> list[str]:
    if "number" in types:
        types = types - {"integer"}
    return sorted(types)


def _finite_candidates(schema: dict[str, Any]) -> list[Any] | None:
    """The values `schema` may accept when they are few enough to list, else None."""
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    return _values_of_types(_type_set(schema, writer=True))


def _values_of_types(types: frozenset[str]) -> list[Any] | None:
    if not types <= {"null", "boolean"}:
        return None
    return ([None] if "null" in types else []) + ([True, False] if "boolean" in types else [])


class _Bound(NamedTuple):
    value: int | float
    exclusive: bool
    keyword: str


def _lower(schema: dict[str, Any]) -> _Bound | None:
    bounds = []
    minimum, exclusive = _number(schema.get("minimum")), schema.get("exclusiveMinimum")
    if minimum is not None:  # draft-04 spells "exclusive" as a boolean beside minimum
        bounds.append(_Bound(minimum, exclusive is True, "minimum"))
    if (value := _number(exclusive)) is not None:
        bounds.append(_Bound(value, True, "exclusiveMinimum"))
    return max(bounds, key=lambda b: (b.value, b.exclusive), default=None)


def _upper(schema: dict[str, Any]) -> _Bound | None:
    bounds = []
    maximum, exclusive = _number(schema.get("maximum")), schema.get("exclusiveMaximum")
    if maximum is not None:
        bounds.append(_Bound(maximum, exclusive is True, "maximum"))
    if (value := _number(exclusive)) is not None:
        bounds.append(_Bound(value, True, "exclusiveMaximum"))
    return min(bounds, key=lambda b: (b.value, not b.exclusive), default=None)


def _integer_lower(bound: _Bound | None) -> _Bound | None:
    if bound is None:
        return None
    value = math.floor(bound.value) + 1 if bound.exclusive else math.ceil(bound.value)
    return _Bound(value, False, bound.keyword)


def _integer_upper(bound: _Bound | None) -> _Bound | None:
    if bound is None:
        return None
    value = math.ceil(bound.value) - 1 if bound.exclusive else math.floor(bound.value)
    return _Bound(value, False, bound.keyword)


def _lower_covers(reader: _Bound, writer: _Bound | None) -> bool:
    """Every value the writer's lower bound admits is admitted by the reader's."""
    if writer is None:
        return False
    if writer.value != reader.value:
        return writer.value > reader.value
    return writer.exclusive or not reader.exclusive


def _upper_covers(reader: _Bound, writer: _Bound | None) -> bool:
    if writer is None:
        return False
    if writer.value != reader.value:
        return writer.value < reader.value
    return writer.exclusive or not reader.exclusive


def _describe_bound(bound: _Bound | None, lower: bool) -> str:
    if bound is None:
        return "no bound"
    sign = (">" if lower else "<") + ("" if bound.exclusive else "=")
    return f"{sign} {bound.value}"


def _item_layout(schema: dict[str, Any], pointer: str) -> tuple[list[tuple[Any, str]], Any, str]:
    """(positional item schemas, schema of the remaining items, its pointer)."""
    items = schema.get("items")
    if isinstance(items, list):  # draft-04 .. 2019-09 tuple form
        prefix = [(s, _child(pointer, "items", i)) for i, s in enumerate(items)]
        return prefix, schema.get("additionalItems", True), _child(pointer, "additionalItems")
    positional = _schema_list(schema, "prefixItems")
    prefix = [(s, _child(pointer, "prefixItems", i)) for i, s in enumerate(positional)]
    return prefix, True if items is None else items, _child(pointer, "items")


def _has_tuple(schema: dict[str, Any]) -> bool:
    return isinstance(schema.get("items"), list) or "prefixItems" in schema


def _dependent_required(schema: dict[str, Any]) -> dict[str, tuple[list[str], str]]:
    """property -> (properties it requires, the keyword saying so)."""
    found: dict[str, tuple[list[str], str]] = {}
    for keyword in ("dependencies", "dependentRequired"):
        for name, needed in _schema_map(schema, keyword).items():
            if isinstance(needed, list):
                earlier = found.get(name, ([], keyword))[0]
                found[name] = ([*earlier, *_names(needed)], keyword)
    return found


def _dependent_schemas(schema: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """property -> (schema the whole object must match when it is present, its keyword)."""
    found: dict[str, tuple[Any, str]] = {}
    for keyword in ("dependencies", "dependentSchemas"):
        for name, sub in _schema_map(schema, keyword).items():
            if isinstance(sub, dict | bool):
                found[name] = (sub, keyword)
    return found


# -- references and regular expressions ---------------------------------------------------------


def _resolve(root: Any, ref: Any) -> tuple[Any, str] | None:
    """Resolve an in-document reference: (target, its canonical pointer), or None."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    pointer = unquote(ref[1:])
    if pointer == "":
        return root, "#"
    if not pointer.startswith("/"):
        return None  # plain-name anchors ("#foo") are not supported
    node = root
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node, "#" + pointer


def _siblings_apply(root: Any) -> bool | None:
    """Do keywords beside "$ref" count? False up to draft-07, True from 2019-09, None if the
    document does not say."""
    dialect = root.get("$schema") if isinstance(root, dict) else None
    if not isinstance(dialect, str):
        return None
    if re.search(r"draft-0[3-7]", dialect):
        return False
    if "2019-09" in dialect or "2020-12" in dialect:
        return True
    return None


def _follow_refs(schema: Any, root: Any) -> Any:
    """`schema` with top-level references followed, over-approximating (siblings dropped,
    unresolvable means anything) — for proving disjointness only."""
    for _ in range(_MAX_REF_CHAIN):
        if not (isinstance(schema, dict) and "$ref" in schema):
            return schema
        target = _resolve(root, schema["$ref"])
        if target is None:
            return True
        schema = target[0]
    return True


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _regex_search(pattern: Any, text: str) -> bool | None:
    """Does `pattern` (ECMA-262, unanchored) match `text`? None where Python's re may disagree."""
    compiled = _compile(pattern) if isinstance(pattern, str) else None
    if compiled is None:
        return None
    if not text.isascii() and re.search(r"\\[dDwWsSbB]", pattern):
        return None  # Python's classes are Unicode-aware, ECMA's mostly ASCII
    if text.endswith("\n") and "$" in pattern:
        return None  # Python's $ also matches before a final newline
    return compiled.search(text) is not None


# -- three-valued validation of single values --------------------------------------------------


def _all(verdicts: list[bool | None]) -> bool | None:
    if any(v is False for v in verdicts):
        return False
    return None if any(v is None for v in verdicts) else True


def _any(verdicts: list[bool | None]) -> bool | None:
    if any(v is True for v in verdicts):
        return True
    return None if any(v is None for v in verdicts) else False


def _validate(value: Any, schema: Any, root: Any, depth: int = 0) -> bool | None:
    """Is `value` valid under `schema`? True, False, or None when this module cannot decide."""
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _validate_ref(value, schema, root, depth)
    kind = _json_type(value)
    verdicts: list[bool | None] = []
    if "type" in schema:
        verdicts.append(kind in _type_set(schema, writer=False))
    if isinstance(schema.get("enum"), list):
        verdicts.append(any(_json_eq(value, e) for e in schema["enum"]))
    if "const" in schema:
        verdicts.append(_json_eq(value, schema["const"]))
    if kind == "string":
        verdicts += _string_verdicts(value, schema)
    elif kind in ("integer", "number"):
        verdicts += _number_verdicts(value, schema)
    elif kind == "array":
        verdicts += _array_verdicts(value, schema, root, depth)
    elif kind == "object":
        verdicts += _object_verdicts(value, schema, root, depth)
    verdicts += _combinator_verdicts(value, schema, root, depth)
    if any(
        k in schema for k in ("$dynamicRef", "$recursiveRef", "disallow", "extends", "divisibleBy")
    ):
        verdicts.append(None)
    return _all(verdicts)


def _validate_ref(value: Any, schema: dict[str, Any], root: Any, depth: int) -> bool | None:
    target = _resolve(root, schema["$ref"])
    if target is None:
        return None
    via_ref = _validate(value, target[0], root, depth + 1)
    rest = {k: v for k, v in schema.items() if k != "$ref"}
    siblings = _siblings_apply(root)
    if siblings is False or _accepts_everything(rest):
        return via_ref
    with_rest = _validate(value, rest, root, depth + 1)
    if siblings is True or via_ref is False:
        return _all([via_ref, with_rest])
    return via_ref if with_rest is True else None  # the two drafts may disagree


def _string_verdicts(value: str, schema: dict[str, Any]) -> list[bool | None]:
    verdicts: list[bool | None] = []
    if (least := _number(schema.get("minLength"))) is not None:
        verdicts.append(len(value) >= least)
    if (most := _number(schema.get("maxLength"))) is not None:
        verdicts.append(len(value) <= most)
    if "pattern" in schema:
        verdicts.append(_regex_search(schema["pattern"], value))
    if "format" in schema:
        verdicts.append(None)
    return verdicts


def _number_verdicts(value: int | float, schema: dict[str, Any]) -> list[bool | None]:
    verdicts: list[bool | None] = []
    if (low := _lower(schema)) is not None:
        verdicts.append(value > low.value if low.exclusive else value >= low.value)
    if (high := _upper(schema)) is not None:
        verdicts.append(value < high.value if high.exclusive else value <= high.value)
    step = _number(schema.get("multipleOf"))
    if step is not None and step > 0:
        verdicts.append(_is_multiple(value, step))
    return verdicts


def _array_verdicts(
    value: list[Any], schema: dict[str, Any], root: Any, depth: int
) -> list[bool | None]:
    verdicts: list[bool | None] = []
    if (least := _number(schema.get("minItems"))) is not None:
        verdicts.append(len(value) >= least)
    if (most := _number(schema.get("maxItems"))) is not None:
        verdicts.append(len(value) <= most)
    if schema.get("uniqueItems") is True:
        verdicts.append(
            not any(_json_eq(x, y) for i, x in enumerate(value) for y in value[i + 1 :])
        )
    prefix, tail, _ = _item_layout(schema, "#")
    for i, item in enumerate(value):
        verdicts.append(_validate(item, prefix[i][0] if i < len(prefix) else tail, root, depth + 1))
    if "contains" in schema:
        hits = [_validate(item, schema["contains"], root, depth + 1) for item in value]
        sure, maybe = hits.count(True), hits.count(None)
        least = _number(schema.get("minContains"))
        least = 1 if least is None else least
        most = _number(schema.get("maxContains"))
        if sure >= least and (most is None or sure + maybe <= most):
            verdicts.append(True)
        elif sure + maybe < least or (most is not None and sure > most):
            verdicts.append(False)
        else:
            verdicts.append(None)
    if value and schema.get("unevaluatedItems", True) is not True:
        verdicts.append(None)
    return verdicts


def _object_verdicts(
    value: dict[str, Any], schema: dict[str, Any], root: Any, depth: int
) -> list[bool | None]:
    verdicts: list[bool | None] = [all(n in value for n in _names(schema.get("required")))]
    if (least := _number(schema.get("minProperties"))) is not None:
        verdicts.append(len(value) >= least)
    if (most := _number(schema.get("maxProperties"))) is not None:
        verdicts.append(len(value) <= most)
    declared = _schema_map(schema, "properties")
    patterns = _schema_map(schema, "patternProperties")
    additional = schema.get("additionalProperties", True)
    for name, item in value.items():
        matched: bool | None = name in declared
        if name in declared:
            verdicts.append(_validate(item, declared[name], root, depth + 1))
        for pattern, sub in patterns.items():
            hit = _regex_search(pattern, name)
            if hit is True:
                verdicts.append(_validate(item, sub, root, depth + 1))
                matched = True
            elif hit is None:
                if _validate(item, sub, root, depth + 1) is not True:
                    verdicts.append(None)
                matched = None if matched is False else matched
        if matched is False:
            verdicts.append(_validate(item, additional, root, depth + 1))
        elif matched is None and _validate(item, additional, root, depth + 1) is not True:
            verdicts.append(None)
    if "propertyNames" in schema:
        verdicts += [_validate(n, schema["propertyNames"], root, depth + 1) for n in value]
    for name, (needed, _) in _dependent_required(schema).items():
        if name in value:
            verdicts.append(all(n in value for n in needed))
    for name, (sub, _) in _dependent_schemas(schema).items():
        if name in value:
            verdicts.append(_validate(value, sub, root, depth + 1))
    if value and schema.get("unevaluatedProperties", True) is not True:
        verdicts.append(None)
    return verdicts


def _combinator_verdicts(
    value: Any, schema: dict[str, Any], root: Any, depth: int
) -> list[bool | None]:
    def sub(s: Any) -> bool | None:
        return _validate(value, s, root, depth + 1)

    verdicts: list[bool | None] = [sub(s) for s in _schema_list(schema, "allOf")]
    if "anyOf" in schema:
        verdicts.append(_any([sub(s) for s in _schema_list(schema, "anyOf")]))
    if "oneOf" in schema:
        hits = [sub(s) for s in _schema_list(schema, "oneOf")]
        sure, maybe = hits.count(True), hits.count(None)
        if sure > 1 or sure + maybe == 0:
            verdicts.append(False)
        else:
            verdicts.append(True if sure == 1 and maybe == 0 else None)
    if "not" in schema:
        negated = sub(schema["not"])
        verdicts.append(None if negated is None else not negated)
    if "if" in schema:
        condition = sub(schema["if"])
        then, otherwise = sub(schema.get("then", True)), sub(schema.get("else", True))
        if condition is None:
            verdicts.append(then if then == otherwise else None)
        else:
            verdicts.append(then if condition else otherwise)
    return verdicts


# -- writer-side merging ------------------------------------------------------------------------


class _Empty(Exception):
    """Raised while merging when the intersection provably has no instances."""


def _merge(a: Any, b: Any) -> Any:
    """A schema accepting every instance valid under both `a` and `b` — possibly more, since a
    constraint that cannot be combined is dropped. Only ever used for the writer."""
    if a is False or b is False:
        return False
    if _accepts_everything(a):
        return b
    if _accepts_everything(b) or not isinstance(a, dict) or not isinstance(b, dict):
        return a
    merged = dict(a)
    grouped = (*_BOUND_KEYWORDS, *_ITEM_KEYWORDS, *_OBJECT_KEYWORDS)
    try:
        for key, theirs in b.items():
            if key in grouped:
                continue
            merged[key] = _merge_keyword(key, a[key], theirs, a, b) if key in a else theirs
        _merge_bounds(merged, a, b)
        _merge_items(merged, a, b)
        _merge_object(merged, a, b)
    except _Empty:
        return False
    return merged


def _merge_keyword(key: str, mine: Any, theirs: Any, a: dict[str, Any], b: Any) -> Any:
    if key == "type":
        types = _type_set(a, writer=True) & _type_set(b, writer=True)
        if not types:
            raise _Empty
        return _type_list(types)
    if key == "enum" and isinstance(mine, list) and isinstance(theirs, list):
        kept = [v for v in mine if any(_json_eq(v, t) for t in theirs)]
        if not kept:
            raise _Empty
        return kept
    if key == "const":
        if not _json_eq(mine, theirs):
            raise _Empty
        return mine
    if key == "required" and isinstance(mine, list) and isinstance(theirs, list):
        return [*mine, *(n for n in theirs if n not in mine)]
    numbers = _number(mine), _number(theirs)
    if key in _MIN_KEYWORDS + _MAX_KEYWORDS and None not in numbers:
        return max(mine, theirs) if key in _MIN_KEYWORDS else min(mine, theirs)
    if key == "multipleOf" and None not in numbers and 0 not in numbers:
        return theirs if _is_multiple(theirs, mine) else mine
    if key == "uniqueItems":
        return mine is True or theirs is True
    if key == "propertyNames":
        return _merge(mine, theirs)
    if key == "allOf" and isinstance(mine, list) and isinstance(theirs, list):
        return [*mine, *theirs]
    if key == "dependentRequired" and isinstance(mine, dict) and isinstance(theirs, dict):
        return {n: [*_names(mine.get(n)), *_names(theirs.get(n))] for n in {*mine, *theirs}}
    return mine  # keeping one side only drops the other's constraint: still a superset


def _merge_bounds(merged: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> None:
    low = max(
        (x for x in (_lower(a), _lower(b)) if x), key=lambda x: (x.value, x.exclusive), default=None
    )
    high = min(
        (x for x in (_upper(a), _upper(b)) if x),
        key=lambda x: (x.value, not x.exclusive),
        default=None,
    )
    for key in _BOUND_KEYWORDS:
        merged.pop(key, None)
    if low:
        merged["exclusiveMinimum" if low.exclusive else "minimum"] = low.value
    if high:
        merged["exclusiveMaximum" if high.exclusive else "maximum"] = high.value


def _merge_items(merged: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> None:
    source = a if _has_tuple(a) else b if _has_tuple(b) else None
    for key in _ITEM_KEYWORDS:
        merged.pop(key, None)
    if source is not None:  # positional forms are not combined: keep one side's
        merged.update({k: source[k] for k in _ITEM_KEYWORDS if k in source})
    elif "items" in a or "items" in b:
        merged["items"] = _merge(a.get("items", True), b.get("items", True))


def _merge_object(merged: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in _OBJECT_KEYWORDS:
        merged.pop(key, None)
    mine, theirs = _schema_map(a, "properties"), _schema_map(b, "properties")
    # What each side says about a property the other declares; with patternProperties in play
    # the name might match one of them, so nothing is assumed (`true`).
    mine_other = (
        True if _schema_map(a, "patternProperties") else a.get("additionalProperties", True)
    )
    theirs_other = (
        True if _schema_map(b, "patternProperties") else b.get("additionalProperties", True)
    )
    properties = {
        name: _merge(mine.get(name, mine_other), theirs.get(name, theirs_other))
        for name in [*mine, *(n for n in theirs if n not in mine)]
    }
    patterns = dict(_schema_map(a, "patternProperties"))
    for pattern, sub in _schema_map(b, "patternProperties").items():
        patterns[pattern] = _merge(patterns[pattern], sub) if pattern in patterns else sub
    additional = _merge(a.get("additionalProperties", True), b.get("additionalProperties", True))
    if properties:
        merged["properties"] = properties
    if patterns:
        merged["patternProperties"] = patterns
    if additional is not True:
        merged["additionalProperties"] = additional


# -- the checker --------------------------------------------------------------------------------


def _size_bounds(
    r: dict[str, Any], rp: str, w: dict[str, Any], stem: str, what: str, unbounded: str
) -> list[Incompatibility]:
    """min{stem}/max{stem} (Length, Items): the reader's range must cover the writer's."""
    problems = []
    low, high = f"min{stem}", f"max{stem}"
    least, writer_least = _number(r.get(low)) or 0, _number(w.get(low)) or 0
    if least > writer_least:
        problems.append(
            Incompatibility(
                _child(rp, low),
                f"MIN_{stem.upper()}_INCREASED",
                f"The reader requires at least {least} {what}, but the writer allows "
                f"{writer_least}.",
            )
        )
    most, writer_most = _number(r.get(high)), _number(w.get(high))
    if most is not None and (writer_most is None or writer_most > most):
        allowed = unbounded if writer_most is None else f"up to {writer_most}"
        problems.append(
            Incompatibility(
                _child(rp, high),
                f"MAX_{stem.upper()}_DECREASED",
                f"The reader allows at most {most} {what}, but the writer allows {allowed}.",
            )
        )
    return problems


class _Checker:
    """Compares subschemas of one reader document with subschemas of one writer document."""

    def __init__(self, reader_root: Any, writer_root: Any) -> None:
        self.rroot = reader_root
        self.wroot = writer_root
        self.r_siblings = _siblings_apply(reader_root)
        self.w_siblings = _siblings_apply(writer_root)
        self.active: set[tuple[int, int]] = set()  # (reader, writer) pairs being checked
        self.cache: dict[tuple[int, str], tuple[Any, Any]] = {}
        self.building: set[tuple[int, str]] = set()

    # -- entry point, references, views --------------------------------------------------------

    def check(self, r: Any, rp: str, w: Any, wp: str) -> list[Incompatibility]:
        """Problems with reader subschema `r` (at `rp`) reading writer subschema `w` (at `wp`)."""
        if self.same(r, w):
            return []
        view = self.writer_view(w, wp)
        if view is None:
            if _accepts_everything(r):
                return []
            return [
                Incompatibility(
                    wp,
                    "UNRESOLVED_REF",
                    f"The writer's $ref at {wp} cannot be resolved inside the writer schema "
                    "(only '#/...' pointers are followed), so what it allows is unknown.",
                )
            ]
        w, wp = view
        if w is False:
            return []  # a writer that accepts nothing is read by anything
        if w is True:
            w = _ANYTHING
        if _accepts_everything(r):
            return []
        if not isinstance(r, dict):
            return [self.rejects_all(r, rp)]
        r = self.normalize_unevaluated(r, writer=False)
        key = (id(r), id(w))
        if key in self.active:
            return []  # met again while being checked (a $ref cycle): assume compatible
        if len(self.active) >= _MAX_DEPTH:
            return [
                Incompatibility(
                    rp,
                    "RECURSION_LIMIT",
                    f"The schemas nest deeper than {_MAX_DEPTH} levels at {_subject(rp)}; "
                    "compatibility was not proved there.",
                )
            ]
        self.active.add(key)
        try:
            if "$ref" in r:
                return self.reader_ref(r, rp, w, wp)
            return self.pair(r, rp, w, wp)
        finally:
            self.active.discard(key)

    @staticmethod
    def rejects_all(r: Any, rp: str) -> Incompatibility:
        if r is False:
            return Incompatibility(
                rp,
                "READER_REJECTS_ALL",
                f"The reader allows no value at {_subject(rp)} (its schema is false), "
                "but the writer does.",
            )
        return Incompatibility(
            rp,
            "MALFORMED_SCHEMA",
            f"The reader's schema at {rp} is neither an object nor a boolean.",
        )

    def reader_ref(self, r: dict[str, Any], rp: str, w: Any, wp: str) -> list[Incompatibility]:
        target = _resolve(self.rroot, r["$ref"])
        if target is None:
            return [
                Incompatibility(
                    _child(rp, "$ref"),
                    "UNRESOLVED_REF",
                    f"The reader's $ref {r['$ref']!r} at {rp} cannot be resolved inside the "
                    "reader schema (only '#/...' pointers are followed).",
                )
            ]
        problems = self.check(target[0], target[1], w, wp)
        rest = self.without(r, "$ref")
        if self.r_siblings is not False and not _accepts_everything(rest):
            problems += self.check(rest, rp, w, wp)
        return problems

    def writer_view(self, w: Any, wp: str) -> tuple[Any, str] | None:
        """`w` with top-level $ref followed and allOf merged (None: a $ref does not resolve)."""
        for _ in range(_MAX_REF_CHAIN):
            if not isinstance(w, dict):
                return (w if isinstance(w, bool) else True), wp
            w = self.normalize_unevaluated(w, writer=True)
            if "$ref" in w:
                target = _resolve(self.wroot, w["$ref"])
                if target is None:
                    return None
                rest = self.without(w, "$ref")
                if self.w_siblings is True and not _accepts_everything(rest):
                    w = self.derived(w, "$ref+siblings", partial(_merge, target[0], rest))
                else:  # draft-07 ignores the siblings; unknown dialect: the wider reading
                    w, wp = target
            elif "allOf" in w:
                w = self.derived(w, "allOf", partial(self.flatten_all_of, w))
            else:
                return w, wp
        return None

    def flat(self, w: Any) -> Any:
        view = self.writer_view(w, "#")
        return True if view is None else view[0]

    def flatten_all_of(self, w: dict[str, Any]) -> Any:
        merged: Any = self.without(w, "allOf")
        for branch in _schema_list(w, "allOf"):
            merged = _merge(merged, self.flat(branch))
        return merged

    def derived(self, source: Any, tag: str, build: Callable[[], Any]) -> Any:
        """A schema computed from `source`, built once per check so its identity is stable (the
        cycle guard keys on identities). A writer derivation that needs itself is `true`."""
        key = (id(source), tag)
        if key in self.cache:
            return self.cache[key][1]
        if key in self.building:
            return True
        self.building.add(key)
        try:
            value = build()
        finally:
            self.building.discard(key)
        self.cache[key] = (source, value)  # holding `source` keeps its id from being reused
        return value

    def without(self, schema: dict[str, Any], *keys: str) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            return {k: v for k, v in schema.items() if k not in keys}

        result: dict[str, Any] = self.derived(schema, "without:" + ",".join(keys), build)
        return result

    def normalize_unevaluated(self, schema: dict[str, Any], *, writer: bool) -> dict[str, Any]:
        """Rewrite unevaluatedProperties/Items to additionalProperties/items when nothing else
        evaluates properties/items; on the writer side drop them otherwise (that only widens)."""
        if "unevaluatedProperties" not in schema and "unevaluatedItems" not in schema:
            return schema

        def build() -> dict[str, Any]:
            out = dict(schema)
            in_place = any(k in schema for k in _APPLICATORS)
            if "unevaluatedProperties" in out:
                if "additionalProperties" in out:  # every property is already evaluated
                    del out["unevaluatedProperties"]
                elif not in_place:
                    out["additionalProperties"] = out.pop("unevaluatedProperties")
                elif writer:
                    del out["unevaluatedProperties"]
            if "unevaluatedItems" in out:
                items = out.get("items")
                if (items is not None and not isinstance(items, list)) or "additionalItems" in out:
                    del out["unevaluatedItems"]
                elif not in_place and "contains" not in out:
                    tail = "additionalItems" if isinstance(items, list) else "items"
                    out[tail] = out.pop("unevaluatedItems")
                elif writer:
                    del out["unevaluatedItems"]
            return out

        result: dict[str, Any] = self.derived(schema, f"unevaluated:{writer}", build)
        return result

    # -- one pair of (dereferenced) subschemas --------------------------------------------------

    def pair(self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str) -> list[Incompatibility]:
        values = _finite_candidates(w)
        if values is not None:  # the writer allows few values: try each against the reader
            kept = [v for v in values if _validate(v, w, self.wroot) is not False]
            return self.values(r, rp, kept)
        for keyword in ("anyOf", "oneOf"):
            if isinstance(w.get(keyword), list):
                return self.writer_branches(r, rp, w, wp, keyword)
        writer_types = _writer_types(w)
        if ("anyOf" in r or "oneOf" in r) and len(_type_list(writer_types)) > 1:
            return self.writer_types_apart(r, rp, w, wp, writer_types)
        shared = writer_types & _type_set(r, writer=False)
        problems = [
            *self.reader_combinators(r, rp, w, wp),
            *self.types(r, rp, writer_types),
            *self.enum(r, rp, w, shared),
        ]
        if "string" in shared:
            problems += self.strings(r, rp, w)
        if shared & {"integer", "number"}:
            problems += self.numbers(r, rp, w, integers_only="number" not in shared)
        if "array" in shared:
            problems += self.arrays(r, rp, w, wp)
        if "object" in shared:
            problems += self.objects(r, rp, w, wp)
        problems += [
            Incompatibility(
                _child(rp, keyword),
                "UNSUPPORTED_KEYWORD",
                f"The reader uses '{keyword}' at {_subject(rp)}, which this checker cannot "
                "compare structurally; keep that subschema identical to the writer's.",
            )
            for keyword in _UNSUPPORTED
            if keyword in r and r[keyword] is not True
        ]
        return problems

    def values(self, r: dict[str, Any], rp: str, values: list[Any]) -> list[Incompatibility]:
        """Each value the writer allows, validated against the reader."""
        problems = []
        reader_types = _type_set(r, writer=False)
        for value in values:
            verdict = _validate(value, r, self.rroot)
            if verdict is True:
                continue
            shown, kind = _show(value), _json_type(value)
            if kind not in reader_types:
                problems.append(
                    Incompatibility(
                        _child(rp, "type"),
                        "TYPE_NARROWED",
                        f"The writer allows the {kind} {shown} at {_subject(rp)}, but the "
                        f"reader's type is {_show(r.get('type'))}.",
                    )
                )
            elif "const" in r and not _json_eq(value, r["const"]):
                problems.append(
                    Incompatibility(
                        _child(rp, "const"),
                        "CONST_CHANGED",
                        f"The writer allows {shown} at {_subject(rp)}, but the reader requires "
                        f"the constant {_show(r['const'])}.",
                    )
                )
            elif isinstance(r.get("enum"), list) and not any(_json_eq(value, e) for e in r["enum"]):
                problems.append(
                    Incompatibility(
                        _child(rp, "enum"),
                        "ENUM_VALUE_REMOVED",
                        f"The writer allows {shown} at {_subject(rp)}, which the reader's enum "
                        "does not list; add it back to the reader's enum.",
                    )
                )
            elif verdict is False and (union := self.rejecting_union(r, value)) is not None:
                problems.append(
                    Incompatibility(
                        _child(rp, union),
                        f"NO_MATCHING_{'ANY' if union == 'anyOf' else 'ONE'}_OF_BRANCH",
                        f"The writer allows {shown} at {_subject(rp)}, which "
                        + (
                            "no branch of the reader's anyOf accepts."
                            if union == "anyOf"
                            else "does not match exactly one branch of the reader's oneOf."
                        ),
                    )
                )
            elif verdict is False:
                problems.append(
                    Incompatibility(
                        rp,
                        "VALUE_REJECTED",
                        f"The writer allows {shown} at {_subject(rp)}, which the reader rejects.",
                    )
                )
            else:
                problems.append(
                    Incompatibility(
                        rp,
                        "VALUE_UNVERIFIABLE",
                        f"The writer allows {shown} at {_subject(rp)}, and the checker cannot "
                        "decide whether the reader accepts it (format, or a regex Python and "
                        "ECMA-262 may read differently).",
                    )
                )
        return problems

    def rejecting_union(self, r: dict[str, Any], value: Any) -> str | None:
        """The reader's anyOf or oneOf if that is what rejects `value`."""
        for keyword in ("anyOf", "oneOf"):
            if keyword in r and _validate(value, {keyword: r[keyword]}, self.rroot) is False:
                return keyword
        return None

    def writer_branches(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str, keyword: str
    ) -> list[Incompatibility]:
        """A writer anyOf/oneOf: every branch (with the keywords beside it) must be readable."""
        base = self.without(w, keyword)
        problems = []
        for i, branch in enumerate(_schema_list(w, keyword)):
            merged = self.derived(w, f"{keyword}/{i}", partial(self.merge_branch, base, branch))
            found = self.check(r, rp, merged, _child(wp, keyword, i))
            context = f"when the writer's value matches its {keyword} branch {i}"
            problems += [_prefixed(p, context) for p in found]
        return problems

    def writer_types_apart(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str, types: frozenset[str]
    ) -> list[Incompatibility]:
        """A writer of several types against a reader union, one type at a time: so that
        {"type": ["string", "null"]} is read by oneOf [{"type": "string"}, {"type": "null"}]."""
        problems = []
        for name in _type_list(types):
            piece = self.derived(w, f"type:{name}", partial(_merge, w, {"type": name}))
            found = self.check(r, rp, piece, wp)
            problems += [_prefixed(p, f"when the writer's value is of type {name}") for p in found]
        return problems

    def merge_branch(self, base: dict[str, Any], branch: Any) -> Any:
        return _merge(base, self.flat(branch))

    # -- combinators in the reader --------------------------------------------------------------

    def reader_combinators(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        problems = []
        for i, branch in enumerate(_schema_list(r, "allOf")):
            problems += self.check(branch, _child(rp, "allOf", i), w, wp)
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
        for i, branch in enumerate(_schema_list(r, keyword)):
            found = self.check(branch, _child(rp, keyword, i), w, wp)
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
                _child(rp, keyword),
                rule,
                f"No branch of the reader's {keyword} at {_subject(rp)} accepts everything the "
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
        branches = _schema_list(r, "oneOf")
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
                _child(rp, "oneOf"),
                "ONE_OF_BRANCHES_MAY_OVERLAP",
                f"The writer's values at {_subject(rp)} match the reader's oneOf branch {match}, "
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
                _child(rp, "not"),
                "NOT_UNSUPPORTED",
                f"The reader excludes values at {_subject(rp)} with 'not', and the checker cannot "
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
            found += self.check(r["then"], _child(rp, "then"), w, wp)
        if "else" in r and self.check(condition, _child(rp, "if"), w, wp):
            found += self.check(r["else"], _child(rp, "else"), w, wp)
        if not found:
            return []
        return [
            Incompatibility(
                _child(rp, "if"),
                "CONDITIONAL_NOT_PROVEN",
                f"The reader's if/then/else at {_subject(rp)} may reject values the writer "
                f"allows: {found[0].message}",
            )
        ]

    # -- types and values -----------------------------------------------------------------------

    @staticmethod
    def types(r: dict[str, Any], rp: str, writer_types: frozenset[str]) -> list[Incompatibility]:
        missing = writer_types - _type_set(r, writer=False)
        if not missing:
            return []
        return [
            Incompatibility(
                _child(rp, "type"),
                "TYPE_NARROWED",
                f"The reader accepts only type {_show(r.get('type'))} at {_subject(rp)}, but the "
                f"writer also allows {_type_names(missing)} values, which would be rejected.",
            )
        ]

    def enum(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], shared: frozenset[str]
    ) -> list[Incompatibility]:
        """A reader enum/const against a writer without one."""
        if "const" not in r and "enum" not in r:
            return []
        listed = _values_of_types(shared)  # only nulls and booleans can get past the type check
        if listed is not None:
            kept = [v for v in listed if _validate(v, w, self.wroot) is not False]
            return self.values(r, rp, kept)
        keyword = "const" if "const" in r else "enum"
        return [
            Incompatibility(
                _child(rp, keyword),
                "CONST_ADDED" if keyword == "const" else "ENUM_ADDED",
                f"The reader restricts {_subject(rp)} to {keyword} {_show(r[keyword])}, but the "
                f"writer does not restrict it to listed values.",
            )
        ]

    @staticmethod
    def strings(r: dict[str, Any], rp: str, w: dict[str, Any]) -> list[Incompatibility]:
        at = _subject(rp)
        problems = _size_bounds(r, rp, w, "Length", f"characters for {at}", "any length")
        pattern = r.get("pattern")
        if pattern is not None and pattern not in ("", ".*") and w.get("pattern") != pattern:
            if "pattern" in w:
                problems.append(
                    Incompatibility(
                        _child(rp, "pattern"),
                        "PATTERN_CHANGED",
                        f"The reader requires {at} to match {_show(pattern)}, but the writer only "
                        f"guarantees {_show(w['pattern'])}; different regular expressions are "
                        "not compared, so keep the pattern identical.",
                    )
                )
            else:
                problems.append(
                    Incompatibility(
                        _child(rp, "pattern"),
                        "PATTERN_ADDED",
                        f"The reader requires {at} to match {_show(pattern)}, which the writer "
                        "does not require.",
                    )
                )
        fmt = r.get("format")
        if fmt is not None and w.get("format") != fmt:
            rule, was = (
                ("FORMAT_CHANGED", f"format {_show(w['format'])}")
                if "format" in w
                else ("FORMAT_ADDED", "no format")
            )
            problems.append(
                Incompatibility(
                    _child(rp, "format"),
                    rule,
                    f"The reader requires {at} to have format {_show(fmt)}, but the writer has "
                    f"{was}.",
                )
            )
        return problems

    @staticmethod
    def numbers(
        r: dict[str, Any], rp: str, w: dict[str, Any], *, integers_only: bool
    ) -> list[Incompatibility]:
        problems = []
        at = _subject(rp)
        low, writer_low = _lower(r), _lower(w)
        high, writer_high = _upper(r), _upper(w)
        if integers_only:  # x > 0 and x >= 1 say the same about integers
            low, writer_low = _integer_lower(low), _integer_lower(writer_low)
            high, writer_high = _integer_upper(high), _integer_upper(writer_high)
        if low is not None and not _lower_covers(low, writer_low):
            problems.append(
                Incompatibility(
                    _child(rp, low.keyword),
                    "MINIMUM_INCREASED",
                    f"The reader requires {at} {_describe_bound(low, True)}, but the writer "
                    f"allows {_describe_bound(writer_low, True)}.",
                )
            )
        if high is not None and not _upper_covers(high, writer_high):
            problems.append(
                Incompatibility(
                    _child(rp, high.keyword),
                    "MAXIMUM_DECREASED",
                    f"The reader requires {at} {_describe_bound(high, False)}, but the writer "
                    f"allows {_describe_bound(writer_high, False)}.",
                )
            )
        step, writer_step = _number(r.get("multipleOf")), _number(w.get("multipleOf"))
        if step is not None and step > 0:
            proved = (writer_step is not None and _is_multiple(writer_step, step)) or (
                integers_only and _is_multiple(1, step)
            )
            if not proved:
                problems.append(
                    Incompatibility(
                        _child(rp, "multipleOf"),
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

    # -- arrays ---------------------------------------------------------------------------------

    def arrays(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        at = _subject(rp)
        problems = _size_bounds(r, rp, w, "Items", f"items in {at}", "any number")
        writer_most = _number(w.get("maxItems"))
        short = writer_most is not None and writer_most <= 1
        if r.get("uniqueItems") is True and w.get("uniqueItems") is not True and not short:
            problems.append(
                Incompatibility(
                    _child(rp, "uniqueItems"),
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
        r_prefix, r_tail, r_tail_at = _item_layout(r, rp)
        w_prefix, w_tail, w_tail_at = _item_layout(w, wp)
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
        least = _number(r.get("minContains"))
        least = 1 if least is None else least
        if "maxContains" not in r:
            if least == 0:
                return []
            writer_least = _number(w.get("minContains"))
            writer_least = 1 if writer_least is None else writer_least
            if (
                "contains" in w
                and writer_least >= least
                and not self.check(
                    r["contains"], _child(rp, "contains"), w["contains"], _child(wp, "contains")
                )
            ):
                return []
        elif all(self.same(r.get(k), w.get(k)) for k in ("contains", "minContains", "maxContains")):
            return []
        return [
            Incompatibility(
                _child(rp, "contains"),
                "CONTAINS_ADDED",
                f"The reader's 'contains' constraint on {_subject(rp)} is not guaranteed by the "
                "writer (it needs the same or a stricter 'contains').",
            )
        ]

    # -- objects --------------------------------------------------------------------------------

    def objects(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        return [
            *self.required(r, rp, w),
            *self.declared_properties(r, rp, w, wp),
            *self.undeclared_properties(r, rp, w, wp),
            *self.property_counts(r, rp, w),
            *self.property_names(r, rp, w, wp),
            *self.dependencies(r, rp, w, wp),
        ]

    @staticmethod
    def required(r: dict[str, Any], rp: str, w: dict[str, Any]) -> list[Incompatibility]:
        guaranteed = set(_names(w.get("required")))
        required = r.get("required")
        return [
            Incompatibility(
                _child(rp, "required", i),
                "REQUIRED_PROPERTY_ADDED",
                f"The reader requires property '{name}' in {_subject(rp)}, but the writer does "
                "not; documents without it would be rejected. Make it optional or give the "
                "writer the same requirement.",
            )
            for i, name in enumerate(required if isinstance(required, list) else [])
            if isinstance(name, str) and name not in guaranteed
        ]

    @staticmethod
    def writer_candidates(w: dict[str, Any], wp: str, name: str) -> list[tuple[Any, str, bool]]:
        """Schemas the writer may give property `name`; the reader must accept each. The flag
        marks the writer's additionalProperties (the property is undeclared there)."""
        declared = _schema_map(w, "properties")
        if name in declared:
            return [(declared[name], _child(wp, "properties", name), False)]
        candidates = []
        for pattern, sub in _schema_map(w, "patternProperties").items():
            hit = _regex_search(pattern, name)
            if hit is True:
                return [(sub, _child(wp, "patternProperties", pattern), False)]
            if hit is None:
                candidates.append((sub, _child(wp, "patternProperties", pattern), False))
        additional = w.get("additionalProperties", True)
        candidates.append((additional, _child(wp, "additionalProperties"), True))
        return candidates

    @staticmethod
    def reader_constraints(r: dict[str, Any], rp: str, name: str) -> list[tuple[Any, str, bool]]:
        """Schemas the reader applies to property `name`; each must accept the writer's. The flag
        marks the reader's additionalProperties. A regex whose match is undecidable counts as
        matching *and* not matching, which only adds constraints."""
        declared = _schema_map(r, "properties")
        found = []
        if name in declared:
            found.append((declared[name], _child(rp, "properties", name), False))
        matched = False
        for pattern, sub in _schema_map(r, "patternProperties").items():
            hit = _regex_search(pattern, name)
            if hit is not False:
                found.append((sub, _child(rp, "patternProperties", pattern), False))
                matched = matched or hit is True
        if name not in declared and not matched:
            found.append(
                (r.get("additionalProperties", True), _child(rp, "additionalProperties"), True)
            )
        return found

    def declared_properties(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        """Properties either side declares by name."""
        r_declared, w_declared = _schema_map(r, "properties"), _schema_map(w, "properties")
        problems = []
        for name in [*r_declared, *(n for n in w_declared if n not in r_declared)]:
            where = _child(rp, "properties", name)
            for ws, ws_at, w_undeclared in self.writer_candidates(w, wp, name):
                if ws is False:
                    continue
                for rs, rs_at, r_undeclared in self.reader_constraints(r, rp, name):
                    found = self.check(rs, rs_at, ws, ws_at)
                    if not found:
                        continue
                    if rs is False and r_undeclared:
                        problems.append(
                            Incompatibility(
                                where,
                                "PROPERTY_REMOVED_FROM_CLOSED_MODEL",
                                f"The writer may send property '{name}' ({where}), but the "
                                "reader does not declare it and its additionalProperties is "
                                "false; declare it in the reader or keep the reader open.",
                            )
                        )
                    elif rs is False:
                        problems.append(
                            Incompatibility(
                                rs_at,
                                "PROPERTY_FORBIDDEN",
                                f"The reader forbids property '{name}' (its schema is false), "
                                "but the writer allows it.",
                            )
                        )
                    elif w_undeclared and _accepts_everything(ws):
                        problems.append(
                            Incompatibility(
                                rs_at,
                                "PROPERTY_ADDED_TO_OPEN_MODEL",
                                f"The reader constrains property '{name}' ({where}), which the "
                                "writer does not declare but, its content model being open, "
                                f"allows with any value; leave '{name}' unconstrained in the "
                                "reader or close the writer.",
                            )
                        )
                    elif r_undeclared or w_undeclared:
                        side = "reader" if r_undeclared else "writer"
                        context = f"property '{name}', which the {side} leaves to its "
                        context += "additionalProperties or patternProperties"
                        problems += [_prefixed(p, context) for p in found]
                    else:
                        problems += found
        return problems

    def undeclared_properties(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        """Properties neither side declares by name: patternProperties and additionalProperties."""
        r_patterns, w_patterns = (
            _schema_map(r, "patternProperties"),
            _schema_map(w, "patternProperties"),
        )
        w_additional = (w.get("additionalProperties", True), _child(wp, "additionalProperties"))
        w_sources = {p: (s, _child(wp, "patternProperties", p)) for p, s in w_patterns.items()}
        problems = []
        for pattern, rs in r_patterns.items():
            rs_at = _child(rp, "patternProperties", pattern)
            if pattern in w_sources:
                sources = [w_sources[pattern]]
            else:  # a matching name may fall under any writer pattern or its additionalProperties
                sources = [*w_sources.values(), w_additional]
            for ws, ws_at in sources:
                if ws is False:
                    continue
                found = self.check(rs, rs_at, ws, ws_at)
                if found and ws_at == w_additional[1] and _accepts_everything(ws):
                    problems.append(
                        Incompatibility(
                            rs_at,
                            "PATTERN_PROPERTIES_NARROWED",
                            f"The reader constrains properties matching {_show(pattern)}, but "
                            "the writer's open content model allows them with any value.",
                        )
                    )
                else:
                    problems += found
        r_additional = r.get("additionalProperties", True)
        r_additional_at = _child(rp, "additionalProperties")
        rest: list[tuple[Any, str, str | None]] = [
            (s, at, p) for p, (s, at) in w_sources.items() if p not in r_patterns
        ]
        for ws, ws_at, only in [*rest, (*w_additional, None)]:
            if ws is False:
                continue
            found = self.check(r_additional, r_additional_at, ws, ws_at)
            if not found:
                continue
            if r_additional is False:
                which = f" matching {_show(only)}" if only is not None else ""
                problems.append(
                    Incompatibility(
                        r_additional_at,
                        "CONTENT_MODEL_CLOSED",
                        f"The reader's content model at {_subject(rp)} is closed "
                        "(additionalProperties: false), but the writer allows properties"
                        f"{which} the reader does not declare; such documents would be rejected.",
                    )
                )
            elif only is None and _accepts_everything(ws):
                problems.append(
                    Incompatibility(
                        r_additional_at,
                        "ADDITIONAL_PROPERTIES_NARROWED",
                        f"The reader constrains undeclared properties of {_subject(rp)} through "
                        "additionalProperties, but the writer's open content model allows them "
                        "with any value.",
                    )
                )
            else:
                problems += found
        return problems

    @staticmethod
    def property_counts(r: dict[str, Any], rp: str, w: dict[str, Any]) -> list[Incompatibility]:
        problems = []
        least = _number(r.get("minProperties"))
        if least is not None:
            guaranteed = max(
                _number(w.get("minProperties")) or 0, len(set(_names(w.get("required"))))
            )
            if least > guaranteed:
                problems.append(
                    Incompatibility(
                        _child(rp, "minProperties"),
                        "MIN_PROPERTIES_INCREASED",
                        f"The reader requires at least {least} properties in {_subject(rp)}, but "
                        f"the writer guarantees only {guaranteed}.",
                    )
                )
        most = _number(r.get("maxProperties"))
        if most is not None:
            writer_most = _number(w.get("maxProperties"))
            if _closed(w):
                count = sum(1 for s in _schema_map(w, "properties").values() if s is not False)
                writer_most = count if writer_most is None else min(writer_most, count)
            if writer_most is None or writer_most > most:
                problems.append(
                    Incompatibility(
                        _child(rp, "maxProperties"),
                        "MAX_PROPERTIES_DECREASED",
                        f"The reader allows at most {most} properties in {_subject(rp)}, but the "
                        f"writer allows {'any number' if writer_most is None else writer_most}.",
                    )
                )
        return problems

    def property_names(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        if "propertyNames" not in r:
            return []
        names, at = r["propertyNames"], _child(rp, "propertyNames")
        if _closed(w):  # the writer's names are exactly its declared ones
            w_names = w.get("propertyNames", True)
            return [
                Incompatibility(
                    at,
                    "PROPERTY_NAMES_RESTRICTED",
                    f"The writer may send property '{name}', whose name the reader's "
                    "propertyNames does not (provably) accept.",
                )
                for name, sub in _schema_map(w, "properties").items()
                if sub is not False
                and _validate(name, w_names, self.wroot) is not False
                and _validate(name, names, self.rroot) is not True
            ]
        writer_names = self.derived(
            w, "propertyNames", partial(_merge, {"type": "string"}, w.get("propertyNames", True))
        )
        found = self.check(names, at, writer_names, _child(wp, "propertyNames"))
        if not found or "propertyNames" in w:
            return found
        return [
            Incompatibility(
                at,
                "PROPERTY_NAMES_RESTRICTED",
                f"The reader restricts the property names of {_subject(rp)}, but the writer's "
                "open content model allows any name.",
            )
        ]

    def dependencies(
        self, r: dict[str, Any], rp: str, w: dict[str, Any], wp: str
    ) -> list[Incompatibility]:
        problems = []
        guaranteed = set(_names(w.get("required")))
        w_required = _dependent_required(w)
        for name, (needed, keyword) in _dependent_required(r).items():
            if not self.writer_may_have(w, wp, name):
                continue
            also = set(w_required.get(name, ([], ""))[0])
            problems += [
                Incompatibility(
                    _child(rp, keyword, name),
                    "DEPENDENT_REQUIRED_ADDED",
                    f"The reader requires property '{dep}' whenever '{name}' is present in "
                    f"{_subject(rp)}, which the writer does not guarantee.",
                )
                for dep in needed
                if dep != name and dep not in guaranteed and dep not in also
            ]
        w_schemas = _dependent_schemas(w)
        for name, (sub, keyword) in _dependent_schemas(r).items():
            if not self.writer_may_have(w, wp, name):
                continue
            if name in w_schemas and self.same(sub, w_schemas[name][0]):
                continue
            if not self.check(sub, _child(rp, keyword, name), w, wp):
                continue
            problems.append(
                Incompatibility(
                    _child(rp, keyword, name),
                    "DEPENDENT_SCHEMA_ADDED",
                    f"The reader applies an extra schema to {_subject(rp)} whenever '{name}' is "
                    "present, which the writer does not guarantee.",
                )
            )
        return problems

    def writer_may_have(self, w: dict[str, Any], wp: str, name: str) -> bool:
        return any(s is not False for s, _, _ in self.writer_candidates(w, wp, name))

    # -- proofs used by the combinators ---------------------------------------------------------

    def same(self, a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
        """Are reader subschema `a` and writer subschema `b` the same validation-wise (ignoring
        annotations; references compared by what they point at)?"""
        seen = set() if seen is None else seen
        if not isinstance(a, dict) or not isinstance(b, dict):
            return _json_eq(a, b)
        if "$ref" in a or "$ref" in b:
            if not self.same_ref(a, b, seen):
                return False
        keys = {k for k in (*a, *b) if k in _VALIDATION_KEYWORDS and k != "$ref"}
        return all(k in a and k in b and self.same_value(k, a[k], b[k], seen) for k in keys)

    def same_ref(self, a: dict[str, Any], b: dict[str, Any], seen: set[tuple[int, int]]) -> bool:
        ref = a.get("$ref")
        if not isinstance(ref, str) or ref != b.get("$ref"):
            return False
        beside = any(k in _VALIDATION_KEYWORDS for k in a if k != "$ref")
        if beside and self.r_siblings != self.w_siblings:
            return False  # the drafts read keywords beside $ref differently
        ra, wb = _resolve(self.rroot, ref), _resolve(self.wroot, ref)
        if ra is None or wb is None:
            same_base = isinstance(self.rroot, dict) and isinstance(self.wroot, dict)
            same_base = same_base and self.rroot.get("$id") == self.wroot.get("$id")
            return ra is None and wb is None and same_base  # the same text, equally unknown
        key = (id(ra[0]), id(wb[0]))
        if key in seen:
            return True
        seen.add(key)
        return self.same(ra[0], wb[0], seen)

    def same_value(self, keyword: str, a: Any, b: Any, seen: set[tuple[int, int]]) -> bool:
        if keyword in _SCHEMA_MAPS or keyword == "dependencies":
            return (
                isinstance(a, dict)
                and isinstance(b, dict)
                and a.keys() == b.keys()
                and all(self.same(a[k], b[k], seen) for k in a)
            )
        if keyword in _SCHEMA_LISTS or (keyword == "items" and isinstance(a, list)):
            return (
                isinstance(a, list)
                and isinstance(b, list)
                and len(a) == len(b)
                and all(self.same(x, y, seen) for x, y in zip(a, b, strict=True))
            )
        if keyword in _SUBSCHEMAS or keyword == "items":
            return self.same(a, b, seen)
        return _json_eq(a, b)

    def disjoint(self, a: Any, a_root: Any, b: Any, b_root: Any, depth: int = 0) -> bool:
        """Provably no value is valid under both `a` (in `a_root`) and `b` (in `b_root`)."""
        if depth > 8:
            return False
        a, b = _follow_refs(a, a_root), _follow_refs(b, b_root)
        if a is False or b is False:
            return True
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        sides = ((a, a_root, b, b_root), (b, b_root, a, a_root))
        for x, x_root, y, y_root in sides:
            if any(
                self.disjoint(s, x_root, y, y_root, depth + 1) for s in _schema_list(x, "allOf")
            ):
                return True
            for keyword in ("anyOf", "oneOf"):
                branches = _schema_list(x, keyword)
                if branches and all(
                    self.disjoint(s, x_root, y, y_root, depth + 1) for s in branches
                ):
                    return True
            values = _finite_candidates(x)
            if values is not None and all(
                _validate(v, x, x_root) is False or _validate(v, y, y_root) is False for v in values
            ):
                return True
        common = _type_set(a, writer=True) & _type_set(b, writer=True)
        if not common:
            return True
        if common <= {"object"}:  # a required property whose values cannot agree
            for x, x_root, y, y_root in sides:
                for name in _names(x.get("required")):
                    mine = _schema_map(x, "properties").get(name)
                    theirs = _schema_map(y, "properties").get(name, False if _closed(y) else None)
                    if theirs is False:
                        return True
                    if mine is not None and theirs is not None:
                        if self.disjoint(mine, x_root, theirs, y_root, depth + 1):
                            return True
        return False
