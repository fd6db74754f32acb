"""The declarative mapping engine: most adapters are a mapping file, not code.

A mapping is a list of rules, each moving one value from the source document to the
target document (both plain JSON-like data; XML is converted to and from such data by
gateway/conversion/mapping/xml.py). Paths are JSON-Pointer-like (`/CongDan/Ho`); missing parents are
created. A rule may transform the value on the way:

    - {from: /personalId, to: /SoDinhDanh}                       # rename / move / nest
    - {const: "000.00.00.H49", to: /MaDonVi}                    # a constant
    - {context: officer, to: /MaCanBo}                          # from the exchange
    - {from: /birthDate, to: /NgaySinh,
       date: {from: [yyyy-MM-dd, yyyy], to: [dd/MM/yyyy, yyyy]}}  # date formats, paired
    - {from: /sex, to: /GioiTinh, codes: sex}                   # code list, left -> right
    - {from: /GioiTinh, to: /sex, codes_inverse: sex}           # code list, right -> left
    - {from: /fullName, to: [/Ho, /ChuDem, /Ten], name: split}  # Vietnamese names
    - {from: [/Ho, /ChuDem, /Ten], to: /fullName, name: join}
    - {from: /note, to: /GhiChu, from_legacy: tcvn3}            # TCVN3/VNI -> Unicode NFC
    - {from: /note, to: /GhiChu, to_legacy: vni}                # Unicode -> VNI
    - {from: /ChiNhanh, to: /branches, each: [rules...]}        # lists of objects

A source value that is absent (or null) is skipped, unless the rule says `required: true`
(then the mapping fails, naming the path) or gives a `default`. Rules are compiled once,
when configuration loads: a bad date format or an unknown code list fails then, naming
the rule, never on an exchange. Every rule can also run backwards (`reverse()`), which is
how the round-trip tests check that nothing the schemas require is lost.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.conversion.mapping import vnencoding

ContextField = Literal[
    "request_id", "client", "client_agency", "officer", "procedure", "case", "now"
]
_MISSING: Any = object()


class MappingError(ValueError):
    """A message cannot be mapped (a required value missing, a code not in its list)."""


# -- rule specifications ------------------------------------------------------------------------


class DateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: list[str] = Field(alias="from", min_length=1)
    to: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _paired(self) -> DateSpec:
        if len(self.from_) != len(self.to):
            raise ValueError("date 'from' and 'to' list paired formats: give as many of each")
        for fmt in [*self.from_, *self.to]:
            _format_regex(fmt)
        return self


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str | list[str] | None = Field(None, alias="from")
    to: str | list[str]
    const: Any = None
    context: ContextField | None = None
    date: DateSpec | None = None
    codes: str | None = None
    codes_inverse: str | None = None
    name: Literal["split", "join"] | None = None
    from_legacy: vnencoding.Encoding | None = None
    to_legacy: vnencoding.Encoding | None = None
    each: list[RuleSpec] | None = None
    required: bool = False
    default: Any = None

    @model_validator(mode="after")
    def _one_source(self) -> RuleSpec:
        sources = [self.from_ is not None, self.const is not None, self.context is not None]
        if sum(sources) != 1:
            raise ValueError(
                "a rule takes its value from exactly one of 'from', 'const', 'context'"
            )
        many_from, many_to = isinstance(self.from_, list), isinstance(self.to, list)
        if self.name == "split" and not (many_to and not many_from):
            raise ValueError("name: split maps one 'from' path to a list of 'to' paths")
        if self.name == "join" and not (many_from and not many_to):
            raise ValueError("name: join maps a list of 'from' paths to one 'to' path")
        if self.name is None and (many_from or many_to):
            raise ValueError("lists of paths are for name: split / join")
        for path in [*_paths(self.from_), *_paths(self.to)]:
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must start with '/'")
        return self


class MappingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[RuleSpec]


def _paths(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# -- paths --------------------------------------------------------------------------------------


def _split(path: str) -> tuple[str, ...]:
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:] if p)


def get(doc: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        if not isinstance(doc, dict) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


def put(doc: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    for part in parts[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            nxt = doc[part] = {}
        doc = nxt
    doc[parts[-1]] = value


# -- value transforms -----------------------------------------------------------------------------

_TOKENS = {"yyyy": r"(?P<y>\d{4})", "MM": r"(?P<m>\d{2})", "dd": r"(?P<d>\d{2})",
           "HH": r"(?P<H>\d{2})", "mm": r"(?P<M>\d{2})", "ss": r"(?P<S>\d{2})"}  # fmt: skip
_TOKEN_RE = re.compile("|".join(sorted(_TOKENS, key=len, reverse=True)))
_KEYS = {"yyyy": "y", "MM": "m", "dd": "d", "HH": "H", "mm": "M", "ss": "S"}


def _format_regex(fmt: str) -> re.Pattern[str]:
    if not _TOKEN_RE.search(fmt):
        raise ValueError(f"date format {fmt!r} has none of yyyy MM dd HH mm ss")
    out, pos = [], 0
    for m in _TOKEN_RE.finditer(fmt):
        out.append(re.escape(fmt[pos : m.start()]))
        out.append(_TOKENS[m.group()])
        pos = m.end()
    out.append(re.escape(fmt[pos:]))
    return re.compile("".join(out) + r"\Z")


def _fill_format(fmt: str, parts: dict[str, str | None]) -> str:
    def token(t: re.Match[str]) -> str:
        return parts.get(_KEYS[t.group()]) or "00"

    return _TOKEN_RE.sub(token, fmt)


def _date_converter(spec: DateSpec, reverse: bool) -> Callable[[Any], Any]:
    sources, targets = (spec.to, spec.from_) if reverse else (spec.from_, spec.to)
    pairs = [(_format_regex(s), t) for s, t in zip(sources, targets, strict=True)]

    def convert(value: Any) -> Any:
        text = str(value)
        for regex, target in pairs:
            m = regex.match(text)
            if m:
                return _fill_format(target, m.groupdict())
        raise MappingError(f"{text!r} is not a date in any of the formats {list(sources)}")

    return convert


def _codes_converter(table: Mapping[str, str], name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        key = str(value)
        if key not in table:
            raise MappingError(f"{key!r} is not in code list {name!r} (known: {sorted(table)})")
        return table[key]

    return convert


def split_name(full: str) -> list[str]:
    """`Nguyễn Văn An` -> family name, middle names, given name (Vietnamese order)."""
    words = full.split()
    if not words:
        return ["", "", ""]
    if len(words) == 1:
        return ["", "", words[0]]
    return [words[0], " ".join(words[1:-1]), words[-1]]


def join_name(parts: list[Any]) -> str:
    return " ".join(str(p) for p in parts if p)


def _nfc(value: Any) -> Any:
    # ASCII is already NFC: skip the call for codes, numbers and dates.
    if isinstance(value, str) and not value.isascii():
        return unicodedata.normalize("NFC", value)
    return value


# -- compiled rules -------------------------------------------------------------------------------


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


_Step = Callable[[Any, dict[str, Any], Context], None]


class CompiledMapping:
    """A compiled mapping; `apply` runs it forwards, `reverse` backwards."""

    def __init__(self, spec: MappingSpec, code_lists: Mapping[str, Mapping[str, str]]) -> None:
        self._forward = [_compile(r, code_lists, reverse=False) for r in spec.rules]
        self._backward = [
            step
            for r in spec.rules
            if r.from_ is not None  # constants and context have no way back
            for step in [_compile(_reversed(r), code_lists, reverse=True)]
        ]

    def apply(self, source: Any, context: Context | None = None) -> dict[str, Any]:
        target: dict[str, Any] = {}
        ctx = context or Context()
        for step in self._forward:
            step(source, target, ctx)
        return target

    def reverse(self, target: Any) -> dict[str, Any]:
        source: dict[str, Any] = {}
        for step in self._backward:
            step(target, source, Context())
        return source


def _reversed(rule: RuleSpec) -> RuleSpec:
    return rule.model_copy(
        update={
            "from_": rule.to,
            "to": rule.from_,
            "name": {"split": "join", "join": "split", None: None}[rule.name],
            "codes": rule.codes_inverse,
            "codes_inverse": rule.codes,
            "from_legacy": rule.to_legacy,
            "to_legacy": rule.from_legacy,
            "each": [_reversed(r) for r in rule.each if r.from_ is not None] if rule.each else None,
            "required": False,
            "default": None,
        }
    )


def _reader(rule: RuleSpec, sources: list[tuple[str, ...]]) -> Callable[[Any, Context], Any]:
    """How a rule reads its value: a constant, a context field, joined name parts, or one
    path (a single key, the common case, without the path walk)."""
    if rule.const is not None:
        const = rule.const
        return lambda source, ctx: const
    if rule.context is not None:
        field_name = rule.context

        def from_context(source: Any, ctx: Context) -> Any:
            value = getattr(ctx, field_name)
            return _MISSING if value in (None, "") else value

        return from_context
    if rule.name == "join":

        def joined(source: Any, ctx: Context) -> Any:
            parts = [get(source, s) for s in sources]
            present = [p for p in parts if p is not _MISSING and p is not None]
            return join_name(present) if present else _MISSING

        return joined
    path = sources[0]
    if len(path) == 1:
        key = path[0]

        def one_key(source: Any, ctx: Context) -> Any:
            value = source.get(key, _MISSING) if isinstance(source, dict) else _MISSING
            return _MISSING if value is None else value

        return one_key

    def at_path(source: Any, ctx: Context) -> Any:
        value = get(source, path)
        return _MISSING if value is None else value

    return at_path


def _compile(
    rule: RuleSpec, code_lists: Mapping[str, Mapping[str, str]], *, reverse: bool
) -> _Step:
    """One rule as a step: everything about it is decided here, once, so that the step itself
    only reads, transforms and writes (the request path)."""
    sources = [_split(p) for p in _paths(rule.from_)]
    targets = [_split(p) for p in _paths(rule.to)]
    label = f"{rule.from_ or rule.const or rule.context!r} -> {rule.to!r}"
    parts = _Compiled(
        read=_reader(rule, sources),
        # Built before the children, so that a bad code list is reported first, as before.
        transform=_transform(rule, code_lists, reverse=reverse),
        children=[_compile(r, code_lists, reverse=reverse) for r in rule.each or []],
        missing=_on_missing(rule, sources, label),
        targets=targets,
        label=label,
    )
    return _STEP_BUILDERS[_kind(parts, rule)](parts)


# -- the parts of a compiled rule -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compiled:
    """What a step is built from. The builders copy these into their closures: a step does not
    look attributes up on the request path."""

    read: Callable[[Any, Context], Any]
    transform: Callable[[Any], Any]
    children: list[_Step]
    missing: Callable[[], Any]
    targets: list[tuple[str, ...]]
    label: str


def _transform(
    rule: RuleSpec, code_lists: Mapping[str, Mapping[str, str]], *, reverse: bool
) -> Callable[[Any], Any]:
    """NFC, then the rule's transforms in their fixed order, as one function."""
    transforms = _transforms(rule, code_lists, reverse=reverse)
    if not transforms:
        return _nfc

    def transform(value: Any) -> Any:
        value = _nfc(value)
        for t in transforms:
            value = t(value)
        return value

    return transform


def _transforms(
    rule: RuleSpec, code_lists: Mapping[str, Mapping[str, str]], *, reverse: bool
) -> list[Callable[[Any], Any]]:
    """Legacy text decoded, date reformatted, codes translated, legacy text encoded."""
    transforms: list[Callable[[Any], Any]] = []
    if rule.from_legacy:
        transforms.append(_legacy_decoder(rule.from_legacy))
    if rule.date is not None:
        # A reversed rule keeps the original DateSpec and runs it the other way.
        transforms.append(_date_converter(rule.date, reverse))
    for name, inverse in ((rule.codes, False), (rule.codes_inverse, True)):
        if name is not None:
            table = _code_table(code_lists, name, inverse=inverse)
            transforms.append(_codes_converter(table, name))
    if rule.to_legacy:
        transforms.append(_legacy_encoder(rule.to_legacy))
    return transforms


def _code_table(
    code_lists: Mapping[str, Mapping[str, str]], name: str, *, inverse: bool
) -> dict[str, str]:
    if name not in code_lists:
        raise ValueError(f"no code list {name!r} (known: {sorted(code_lists)})")
    table = dict(code_lists[name])
    if not inverse:
        return table
    inverted = {v: k for k, v in table.items()}
    if len(inverted) != len(table):
        raise ValueError(f"code list {name!r} maps two codes to one: it has no inverse")
    return inverted


def _legacy_decoder(encoding: vnencoding.Encoding) -> Callable[[Any], Any]:
    return lambda v: vnencoding.decode(v, encoding) if isinstance(v, str) else v


def _legacy_encoder(encoding: vnencoding.Encoding) -> Callable[[Any], Any]:
    return lambda v: vnencoding.encode(v, encoding) if isinstance(v, str) else v


def _on_missing(rule: RuleSpec, sources: list[tuple[str, ...]], label: str) -> Callable[[], Any]:
    """What an absent (or null) source value becomes: the default, an error, or nothing."""

    def missing() -> Any:
        if rule.default is not None:
            return rule.default
        if rule.required:
            raise MappingError(f"{'/'.join(('', *sources[0])) if sources else label} is required")
        return _MISSING

    return missing


# -- one step builder per kind of rule ------------------------------------------------------------

_Kind = Literal["each", "split", "key", "path"]


def _kind(parts: _Compiled, rule: RuleSpec) -> _Kind:
    if parts.children:
        return "each"
    if rule.name == "split":
        return "split"
    return "key" if len(parts.targets[0]) == 1 else "path"


def _key_step(parts: _Compiled) -> _Step:
    """The common rule, one value to one top-level key, without the path walk."""
    read, missing, transform, label = parts.read, parts.missing, parts.transform, parts.label
    key = parts.targets[0][0]

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        if value is _MISSING:
            value = missing()
            if value is _MISSING:
                return
        try:
            target[key] = transform(value)
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None

    return step


def _path_step(parts: _Compiled) -> _Step:
    """One value to a nested path, creating the missing parents."""
    read, missing, transform, label = parts.read, parts.missing, parts.transform, parts.label
    path = parts.targets[0]

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        if value is _MISSING:
            value = missing()
            if value is _MISSING:
                return
        try:
            put(target, path, transform(value))
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None

    return step


def _split_step(parts: _Compiled) -> _Step:
    """A full name to its family, middle and given name paths (empty parts are not written)."""
    read, missing, transform, label = parts.read, parts.missing, parts.transform, parts.label
    paths = parts.targets

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        if value is _MISSING:
            value = missing()
            if value is _MISSING:
                return
        try:
            for path, part in zip(paths, split_name(transform(value)), strict=False):
                if part:
                    put(target, path, part)
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None

    return step


def _each_step(parts: _Compiled) -> _Step:
    """A list of objects (a single object counts as a list of one), each mapped by the child
    rules; the value itself is not transformed."""
    read, missing, children, label = parts.read, parts.missing, parts.children, parts.label
    path = parts.targets[0]

    def step(source: Any, target: dict[str, Any], ctx: Context) -> None:
        value = read(source, ctx)
        if value is _MISSING:
            value = missing()
            if value is _MISSING:
                return
        try:
            items = value if isinstance(value, list) else [value]
            out = []
            for item in items:
                obj: dict[str, Any] = {}
                for child in children:
                    child(item, obj, ctx)
                out.append(obj)
            put(target, path, out)
        except MappingError as e:
            raise MappingError(f"{label}: {e}") from None

    return step


_STEP_BUILDERS: dict[_Kind, Callable[[_Compiled], _Step]] = {
    "each": _each_step,
    "split": _split_step,
    "key": _key_step,
    "path": _path_step,
}


# -- loading --------------------------------------------------------------------------------------


def compile_mapping(
    spec: Mapping[str, Any], code_lists: Mapping[str, Mapping[str, str]] | None = None
) -> CompiledMapping:
    """Validate and compile a mapping document; errors name the rule and field."""
    try:
        parsed = MappingSpec.model_validate(spec)
    except ValidationError as e:
        raise ValueError(
            "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        ) from None
    return CompiledMapping(parsed, code_lists or {})


def map_strings(value: Any, convert: Callable[[str], str]) -> Any:
    """Apply `convert` to every string in a JSON-like value (whole-message legacy text)."""
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, list):
        return [map_strings(v, convert) for v in value]
    if isinstance(value, dict):
        return {k: map_strings(v, convert) for k, v in value.items()}
    return value
