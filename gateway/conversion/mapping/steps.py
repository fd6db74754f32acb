"""The steps a compiled mapping runs: one builder per kind of rule, and what they share
(the exchange `Context`, paths read and written, a full name split).

The engine (gateway/conversion/mapping/engine.py) decides everything about a rule when it
compiles (its reader, transform, what an absent value becomes) and hands the parts to the
builder of its kind; a step itself only reads, transforms and writes (the request path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.conversion.mapping.values import MISSING, MappingError

__all__ = [
    "STEP_BUILDERS",
    "Compiled",
    "Context",
    "Kind",
    "Step",
    "echo_step",
    "get",
    "put",
    "split_name",
]


@dataclass(frozen=True, slots=True)
class Context:
    """What a mapping may read from the exchange besides the message."""

    request_id: str = ""
    client: str = ""
    client_agency: str = ""
    officer: str | None = None
    procedure: str | None = None
    case: str | None = None
    now: str = ""
    # The service the exchange is for, "provider/code/version" (what messages name).
    service: str = ""


Step = Callable[[Any, dict[str, Any], Context], None]
Kind = Literal["each", "split", "key", "path"]


def get(doc: Any, parts: tuple[str, ...]) -> Any:
    """The value at `parts` in `doc`, or the engine's missing marker."""
    for part in parts:
        if not isinstance(doc, dict) or part not in doc:
            return MISSING
        doc = doc[part]
    return doc


def put(doc: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    """Write `value` at `parts` in `doc`, creating the missing parents."""
    for part in parts[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            nxt = doc[part] = {}
        doc = nxt
    doc[parts[-1]] = value


def split_name(full: str) -> list[str]:
    """`Nguyễn Văn An` -> family name, middle names, given name (Vietnamese order)."""
    words = full.split()
    if not words:
        return ["", "", ""]
    if len(words) == 1:
        return ["", "", words[0]]
    return [words[0], " ".join(words[1:-1]), words[-1]]


@dataclass(frozen=True, slots=True)
class Compiled:
    """What a step is built from. The builders copy these into their closures: a step does not
    look attributes up on the request path."""

    read: Callable[[Any, Context], Any]
    transform: Callable[[Any], Any]
    children: list[Step]
    missing: Callable[[], Any]
    targets: list[tuple[str, ...]]
    label: str
    splitter: Callable[[Any], list[str]] = split_name
    single: bool = False  # exactly_one: the object written, not a list of one


def _key_step(parts: Compiled) -> Step:
    """The common rule, one value to one top-level key, without the path walk."""
    read, missing, transform, label = parts.read, parts.missing, parts.transform, parts.label
    key = parts.targets[0][0]

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        if value is MISSING:
            value = missing()
            if value is MISSING:
                return
        try:
            value = transform(value)
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None
        if value is not MISSING:
            target[key] = value

    return step


def _path_step(parts: Compiled) -> Step:
    """One value to a nested path, creating the missing parents."""
    read, missing, transform, label = parts.read, parts.missing, parts.transform, parts.label
    path = parts.targets[0]

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        if value is MISSING:
            value = missing()
            if value is MISSING:
                return
        try:
            value = transform(value)
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None
        if value is not MISSING:
            put(target, path, value)

    return step


def _split_step(parts: Compiled) -> Step:
    """One value to several paths: a full name to its family, middle and given name (empty
    parts are not written), or text cut at a separator (split:)."""
    read, missing, transform, label = parts.read, parts.missing, parts.transform, parts.label
    paths, splitter = parts.targets, parts.splitter

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        if value is MISSING:
            value = missing()
            if value is MISSING:
                return
        try:
            value = transform(value)
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None
        if value is MISSING:
            return
        try:
            pieces = splitter(value)
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None
        for path, part in zip(paths, pieces, strict=False):
            if part:
                put(target, path, part)

    return step


def _each_step(parts: Compiled) -> Step:
    """A list of objects (a single object counts as a list of one), each mapped by the child
    rules; the value itself is not transformed."""
    read, missing, children, label = parts.read, parts.missing, parts.children, parts.label
    path, single = parts.targets[0], parts.single

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        if value is MISSING:
            value = missing()
            if value is MISSING:
                return
        try:
            items = value if isinstance(value, list) else [value]
            out = []
            for item in items:
                obj: dict[str, Any] = {}
                for child in children:
                    child(item, obj, ctx)
                out.append(obj)
            put(target, path, out[0] if single and out else out)
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None

    return step


def echo_step(
    read: Callable[[Any, Context], Any], expected: Callable[[Any, Context], Any], label: str
) -> Step:
    """An answer's echo of the request (its request id): the mapping fails when the answer
    names another one, so that an answer for another request is never passed on."""

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        sent = expected(source, ctx)
        if value is MISSING or sent is MISSING or value == sent:
            return
        raise MappingError(
            f"{label}: the answer is for {value!r}, not {sent!r}: it does not answer this request"
        )

    return step


STEP_BUILDERS: dict[Kind, Callable[[Compiled], Step]] = {
    "each": _each_step,
    "split": _split_step,
    "key": _key_step,
    "path": _path_step,
}
