"""The declarative mapping engine: most adapters are a mapping file, not code.

A mapping is a list of rules, each moving one value from the source document to the
target document (both plain JSON-like data; XML is converted to and from such data by
gateway/conversion/mapping/xml.py, as the mapping's `xml:` block declares). Paths are
JSON-Pointer-like (`/CongDan/Ho`); missing parents are created. A rule may transform the
value on the way:

    - {from: /personalId, to: /SoDinhDanh}                       # rename / move / nest
    - {const: "000.00.00.H49", to: /MaDonVi}                    # a constant
    - {context: officer, to: /MaCanBo}                          # from the exchange
    - {context: request_id, to: /MaYeuCau, max_length: 40}      # shortened when longer
    - {setting: agency_code, to: /MaDonVi}                      # from the configuration
    - {from: /MaYeuCau, echo: request_id, max_length: 40}       # the answer echoes it
    - {from: /birthDate, to: /NgaySinh,
       date: {from: [yyyy-MM-dd, yyyy], to: [dd/MM/yyyy, yyyy]}}  # date formats, paired
    - {from: /ThoiDiem, to: /at,
       datetime: {from: "yyyy/MM/dd HH:mm:ss", to: iso}}        # moments, with zones
    - {from: /DienTich, to: /area, number: {from: vi}}          # "1.250,75" <-> 1250.75
    - {from: /VonDieuLe, to: /capital, integer: {from: plain}}  # "5000000" <-> 5000000
    - {from: /DaKhoa, to: /locked,
       boolean: {from: {true: [Có, "1"], false: [Không, "0"]}}}  # declared spellings
    - {from: /sex, to: /GioiTinh, codes: sex}                   # code list, left -> right
    - {from: /GioiTinh, to: /sex, codes_inverse: sex}           # code list, right -> left
    - {from: /MaMDSD, to: /landUse/name, codes: land-use,
       unknown: omit}                                           # unknown: fail|omit|pass
    - {from: /fullName, to: [/Ho, /ChuDem, /Ten], name: split}  # Vietnamese names
    - {from: [/Ho, /ChuDem, /Ten], to: /fullName, name: join}
    - {from: /note, to: /GhiChu, from_legacy: tcvn3}            # TCVN3/VNI -> Unicode NFC
    - {from: /note, to: /GhiChu, to_legacy: vni}                # Unicode -> VNI
    - {from: /GhiChu, to: /note, trim: true, drop_empty: true}  # "  " is absent
    - {from: /ChiNhanh, to: /branches, each: [rules...]}        # lists of objects

Beside `rules`, a mapping may declare for all its rules `trim`, `drop_empty`,
`unknown_codes` (fail, omit, pass), `zone` (e.g. "+07:00": where a date and time
without an offset is), and `xml` (gateway/conversion/mapping/document.py: the side that
is an XML document, its root, default namespace, other prefixes and lists).

A source value that is absent (or null, or empty under `drop_empty`) is skipped, unless
the rule says `required: true` (then the mapping fails, naming the path) or gives a
`default`. A rule converts its value one way at most (one of date, datetime, number,
integer, boolean, codes, codes_inverse). Rules are compiled once, when configuration
loads: a bad format, separator, zone, prefix or unknown code list fails then, naming the
rule, never on an exchange. Every rule can also run backwards (`reverse()`), which is how
the round-trip tests check that nothing the schemas require is lost; constants, context
values and echo checks have no way back.

Example:
    >>> m = compile_mapping({"rules": [{"from": "/DienTich", "to": "/area",
    ...                                 "number": {"from": "vi"}}]})
    >>> m.apply({"DienTich": "1.250,75"}), m.reverse({"area": 1250.75})
    ({'area': 1250.75}, {'DienTich': '1.250,75'})
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.conversion.mapping import vnencoding
from gateway.conversion.mapping.codes import UnknownCodes, code_table, codes_converter
from gateway.conversion.mapping.document import XmlSide, XmlSpec
from gateway.conversion.mapping.national import National, shorten
from gateway.conversion.mapping.steps import (
    STEP_BUILDERS,
    Compiled,
    Context,
    Kind,
    Step,
    echo_step,
    get,
    put,
    split_name,
)
from gateway.conversion.mapping.types import (
    BooleanSpec,
    DateSpec,
    DateTimeSpec,
    NumberSpec,
    boolean_converter,
    date_converter,
    datetime_converter,
    number_converter,
    parse_zone,
)
from gateway.conversion.mapping.values import MISSING, MappingError, clean

__all__ = [
    "CompiledMapping",
    "Context",
    "ContextField",
    "MappingError",
    "MappingSpec",
    "RuleSpec",
    "compile_mapping",
    "get",
    "join_name",
    "map_strings",
    "put",
    "shorten",
    "split_name",
]

ContextField = Literal[
    "request_id", "client", "client_agency", "officer", "procedure", "case", "now", "service"
]
_MISSING: Any = MISSING
_CONVERSIONS = ("date", "datetime", "number", "integer", "boolean", "codes", "codes_inverse")


# -- rule specifications ------------------------------------------------------------------------


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str | list[str] | None = Field(None, alias="from")
    to: str | list[str] | None = None
    const: Any = None
    context: ContextField | None = None
    setting: str | None = Field(None, min_length=1)
    national: Literal["request_id", "agency_code"] | None = None
    echo: ContextField | Literal["national"] | None = None
    max_length: int | None = Field(None, ge=1)
    date: DateSpec | None = None
    datetime: DateTimeSpec | None = None
    number: NumberSpec | None = None
    integer: NumberSpec | None = None
    boolean: BooleanSpec | None = None
    codes: str | None = None
    codes_inverse: str | None = None
    unknown: UnknownCodes | None = None
    name: Literal["split", "join"] | None = None
    split: str | None = Field(None, min_length=1, max_length=8)
    exactly_one: bool = False
    from_legacy: vnencoding.Encoding | None = None
    to_legacy: vnencoding.Encoding | None = None
    trim: bool | None = None
    drop_empty: bool | None = None
    each: list[RuleSpec] | None = None
    required: bool = False
    default: Any = None

    @model_validator(mode="after")
    def _one_source(self) -> RuleSpec:
        sources = [self.from_, self.const, self.context, self.setting, self.national]
        if sum(s is not None for s in sources) != 1:
            raise ValueError(
                "a rule takes its value from exactly one of 'from', 'const', 'context', "
                "'setting', 'national'"
            )
        many_from, many_to = isinstance(self.from_, list), isinstance(self.to, list)
        if self.name == "split" and not (many_to and not many_from):
            raise ValueError("name: split maps one 'from' path to a list of 'to' paths")
        if self.name == "join" and not (many_from and not many_to):
            raise ValueError("name: join maps a list of 'from' paths to one 'to' path")
        if self.split is not None and many_from == many_to:
            raise ValueError(
                "split: maps one 'from' path to a list of 'to' paths (backwards: a list to one)"
            )
        if self.split is not None and self.name is not None:
            raise ValueError("a rule splits a name (name:) or by a separator (split:), not both")
        if self.name is None and self.split is None and (many_from or many_to):
            raise ValueError("lists of paths are for name: split / join, or split:")
        if self.exactly_one and (self.from_ is None or many_from or many_to):
            raise ValueError("exactly_one reads one 'from' path (a list, or one object)")
        for path in [*_paths(self.from_), *_paths(self.to)]:
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must start with '/'")
        self._check_kinds()
        return self

    def _check_kinds(self) -> None:
        conversions = [k for k in _CONVERSIONS if getattr(self, k) is not None]
        if len(conversions) > 1:
            raise ValueError(f"a rule converts its value one way; this one has {conversions}")
        if self.unknown is not None and self.codes is None and self.codes_inverse is None:
            raise ValueError("unknown: says what an unknown code does; give codes: too")
        if self.echo is not None and (self.from_ is None or self.to is not None):
            raise ValueError("an echo check reads 'from' and compares; it has no 'to'")
        if self.echo is None and self.to is None:
            raise ValueError("a rule needs 'to' (only an echo check has none)")
        if self.max_length is not None and (
            (self.context is None and self.echo is None) or self.echo == "national"
        ):
            raise ValueError(
                "max_length is for context and echo rules (the national: block has its own)"
            )


class MappingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[RuleSpec]
    trim: bool = False
    drop_empty: bool = False
    unknown_codes: UnknownCodes = "fail"
    zone: str | None = None
    xml: XmlSpec | None = None

    @model_validator(mode="after")
    def _declarations(self) -> MappingSpec:
        if self.zone is not None:
            parse_zone(self.zone)
        if self.xml is not None:
            for i, rule in enumerate(self.rules):
                for path in _xml_paths(rule, self.xml.side):
                    for name in _split(path):
                        self.xml.check_name(name, f"rules.{i}: {path}")
        return self


def _paths(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _xml_paths(rule: RuleSpec, side: Literal["from", "to"]) -> Iterator[str]:
    """The rule's paths (and its children's) on the XML side of the mapping."""
    yield from _paths(rule.from_ if side == "from" else rule.to)
    for child in rule.each or []:
        yield from _xml_paths(child, side)


def _each_lists(rules: list[RuleSpec], side: Literal["from", "to"]) -> set[str]:
    """The XML elements `each` rules read or write: lists, even of one."""
    names: set[str] = set()
    for rule in rules:
        if rule.each is not None:
            paths = _paths(rule.from_ if side == "from" else rule.to)
            names.update(_split(p)[-1] for p in paths if _split(p))
            names.update(_each_lists(rule.each, side))
    return names


# -- paths --------------------------------------------------------------------------------------


def _split(path: str) -> tuple[str, ...]:
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:] if p)


# -- value transforms -----------------------------------------------------------------------------


def join_name(parts: list[Any]) -> str:
    """The parts of a name that are there, joined with spaces."""
    return " ".join(str(p) for p in parts if p)


def _nfc(value: Any) -> Any:
    # ASCII is already NFC: skip the call for codes, numbers and dates.
    if isinstance(value, str) and not value.isascii():
        return unicodedata.normalize("NFC", value)
    return value


# -- compiled rules -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Env:
    """What a rule inherits: the code lists, and the mapping's (or its `each` parent's)
    declarations."""

    code_lists: Mapping[str, Mapping[str, str]]
    trim: bool
    drop_empty: bool
    unknown: UnknownCodes
    zone: str | None
    settings: Mapping[str, Any]
    national: National | None = None

    def within(self, rule: RuleSpec) -> _Env:
        trim = self.trim if rule.trim is None else rule.trim
        drop = self.drop_empty if rule.drop_empty is None else rule.drop_empty
        if (trim, drop) == (self.trim, self.drop_empty):
            return self
        return replace(self, trim=trim, drop_empty=drop)


class CompiledMapping:
    """A compiled mapping; `apply` runs it forwards, `reverse` backwards, and with an
    `xml:` block `from_xml` / `to_xml` read and write its XML side.

    Example:
        >>> m = compile_mapping({"xml": {"side": "to", "root": "TraCuu"},
        ...                      "rules": [{"from": "/code", "to": "/Ma"}]})
        >>> m.to_xml({"code": "01"}), m.from_xml(b"<TraCuu><Ma>01</Ma></TraCuu>")
        (b"<?xml version='1.0' encoding='UTF-8'?>\\n<TraCuu><Ma>01</Ma></TraCuu>", {'code': '01'})
    """

    def __init__(
        self,
        spec: MappingSpec,
        code_lists: Mapping[str, Mapping[str, str]],
        settings: Mapping[str, Any] | None = None,
        national: National | None = None,
    ) -> None:
        env = _Env(
            code_lists,
            spec.trim,
            spec.drop_empty,
            spec.unknown_codes,
            spec.zone,
            settings or {},
            national,
        )
        self._forward = [_compile_named(i, r, env, reverse=False) for i, r in enumerate(spec.rules)]
        self._backward = [
            _compile_named(i, _reversed(r), env, reverse=True)
            for i, r in enumerate(spec.rules)
            if _reversible(r)  # constants, context and echo checks have no way back
        ]
        self.xml = XmlSide(spec.xml, _each_lists(spec.rules, spec.xml.side)) if spec.xml else None

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

    def from_xml(
        self, document: bytes | etree._Element, context: Context | None = None
    ) -> dict[str, Any]:
        """The data for an XML document of the mapping's XML side: read as its `xml:`
        block says (parsed safely), then mapped forwards (side: from) or backwards.

        Raises:
            ValueError: not usable XML; MappingError: the wrong root, or a rule failed.
        """
        side = self._xml_side()
        data = side.read(document)
        return self.apply(data, context) if side.spec.side == "from" else self.reverse(data)

    def to_xml(self, data: Any, context: Context | None = None) -> bytes:
        """The XML document (UTF-8 bytes) for data of the other side: mapped forwards
        (side: to) or backwards, then written as the `xml:` block says.

        Raises:
            MappingError: a rule failed, or a value has no XML form.
        """
        side = self._xml_side()
        out = self.apply(data, context) if side.spec.side == "to" else self.reverse(data)
        return side.write(out)

    def _xml_side(self) -> XmlSide:
        if self.xml is None:
            raise MappingError("this mapping declares no xml: side")
        return self.xml


def _reversible(rule: RuleSpec) -> bool:
    return rule.from_ is not None and rule.echo is None


def _reversed(rule: RuleSpec) -> RuleSpec:
    # Typed conversions keep their spec and are compiled with reverse=True.
    return rule.model_copy(
        update={
            "from_": rule.to,
            "to": rule.from_,
            "name": {"split": "join", "join": "split", None: None}[rule.name],
            "exactly_one": False,
            "codes": rule.codes_inverse,
            "codes_inverse": rule.codes,
            "from_legacy": rule.to_legacy,
            "to_legacy": rule.from_legacy,
            "each": [_reversed(r) for r in rule.each if _reversible(r)] if rule.each else None,
            "required": False,
            "default": None,
        }
    )


def _compile_named(i: int, rule: RuleSpec, env: _Env, *, reverse: bool) -> Step:
    """A rule compiled, or the ValueError naming it (rules.<i>) and what is wrong."""
    try:
        return _compile(rule, env, reverse=reverse)
    except ValueError as e:
        raise ValueError(f"rules.{i} ({_label(rule)}): {e}") from None


def _label(rule: RuleSpec) -> str:
    source = rule.from_ or rule.const or rule.context or rule.setting or rule.national
    return f"{source!r} -> {rule.to or rule.echo!r}"


def _context_reader(field_name: ContextField, max_length: int | None) -> Callable[..., Any]:
    def from_context(source: Any, ctx: Context) -> Any:
        value = getattr(ctx, field_name)
        if value in (None, ""):
            return _MISSING
        return shorten(value, max_length) if max_length is not None else value

    return from_context


def _national_reader(rule: RuleSpec, env: _Env) -> Callable[[Any, Context], Any]:
    """A `national:` rule's value: the request id as the conventions send it, or the
    agency code (the configured one, else the caller's)."""
    national = env.national
    if national is None:
        raise ValueError("national: rules need the adapter's national: block")
    if rule.national == "request_id":
        return lambda source, ctx: national.request_id(ctx.request_id) or _MISSING
    configured = env.settings.get("agency_code")
    return lambda source, ctx: national.agency(configured, ctx.client_agency) or _MISSING


def _national_echo(env: _Env) -> Callable[[Any, Context], Any]:
    national = env.national
    if national is None:
        raise ValueError("echo: national needs the adapter's national: block")
    if not national.spec.request_id.echo:
        return lambda source, ctx: _MISSING  # not checked
    return lambda source, ctx: national.request_id(ctx.request_id) or _MISSING


def _reader(
    rule: RuleSpec, sources: list[tuple[str, ...]], env: _Env
) -> Callable[[Any, Context], Any]:
    """How a rule reads its value: a constant, a setting, a context field, joined name
    parts, or one path (a single key, the common case, without the path walk)."""
    settings = env.settings
    if rule.national is not None:
        return _national_reader(rule, env)
    if rule.setting is not None:
        if rule.setting not in settings:
            raise ValueError(f"no setting {rule.setting!r} (given: {sorted(settings)})")
        value = settings[rule.setting]  # None: not configured, nothing written
        const = _MISSING if value is None else value
        return lambda source, ctx: const
    if rule.const is not None:
        const = rule.const
        return lambda source, ctx: const
    if rule.context is not None:
        return _context_reader(rule.context, rule.max_length)
    if rule.name == "join" or len(sources) > 1:
        return _joiner(rule, sources)
    return _path_reader(sources[0])


def _joiner(rule: RuleSpec, sources: list[tuple[str, ...]]) -> Callable[[Any, Context], Any]:
    """Several paths read as one value: a name's parts joined, or (split: backwards) the
    parts joined by the separator, all of them or none."""
    if rule.name == "join":

        def joined(source: Any, ctx: Context) -> Any:
            parts = [get(source, s) for s in sources]
            present = [p for p in parts if p is not _MISSING and p is not None]
            return join_name(present) if present else _MISSING

        return joined
    separator = rule.split or ""

    def glued(source: Any, ctx: Context) -> Any:
        parts = [get(source, s) for s in sources]
        if any(p is _MISSING or p is None for p in parts):
            return _MISSING
        return separator.join(str(p) for p in parts)

    return glued


def _path_reader(path: tuple[str, ...]) -> Callable[[Any, Context], Any]:
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


def _cleaning(read: Callable[[Any, Context], Any], env: _Env) -> Callable[[Any, Context], Any]:
    """`read`, its value trimmed and its empty parts dropped when the rule says so."""
    if not (env.trim or env.drop_empty):
        return read
    trim, drop = env.trim, env.drop_empty

    def cleaned(source: Any, ctx: Context) -> Any:
        value = read(source, ctx)
        return value if value is _MISSING else clean(value, trim=trim, drop_empty=drop)

    return cleaned


def _compile(rule: RuleSpec, env: _Env, *, reverse: bool) -> Step:
    """One rule as a step: everything about it is decided here, once, so that the step itself
    only reads, transforms and writes (the request path)."""
    env = env.within(rule)
    sources = [_split(p) for p in _paths(rule.from_)]
    targets = [_split(p) for p in _paths(rule.to)]
    label = _label(rule)
    read = _cleaning(_reader(rule, sources, env), env)
    if rule.echo == "national":
        return echo_step(read, _national_echo(env), label)
    if rule.echo is not None:
        return echo_step(read, _context_reader(rule.echo, rule.max_length), label)
    if rule.exactly_one:
        read = _exactly_one(read, label)
    parts = Compiled(
        read=read,
        # Built before the children, so that a bad code list is reported first, as before.
        transform=_transform(rule, env, reverse=reverse),
        children=[_compile(r, env, reverse=reverse) for r in rule.each or []],
        missing=_on_missing(rule, sources, label),
        targets=targets,
        label=label,
        splitter=_splitter(rule, len(targets)),
        single=rule.exactly_one,
    )
    return STEP_BUILDERS[_kind(parts, rule)](parts)


def _exactly_one(read: Callable[[Any, Context], Any], label: str) -> Callable[[Any, Context], Any]:
    """`read`, its value required to be one element when it is there: a list of one
    (unwrapped) or one object; an empty list or several fail (absent: as the rule says,
    `required: true` for exactly one always)."""

    def one(source: Any, ctx: Context) -> Any:
        value = read(source, ctx)
        if value is _MISSING:
            return value
        count = len(value) if isinstance(value, list) else 1
        if count != 1:
            raise MappingError(f"{label}: {count} elements where exactly one is declared")
        return value[0] if isinstance(value, list) else value

    return one


def _splitter(rule: RuleSpec, parts: int) -> Callable[[Any], list[str]]:
    """How a split rule cuts its value: a Vietnamese name into its three parts, or text
    at a separator into exactly as many parts as the rule has targets."""
    separator = rule.split
    if separator is None:
        return lambda value: split_name(str(value))

    def at_separator(value: Any) -> list[str]:
        pieces = str(value).split(separator)
        if len(pieces) != parts or not all(pieces):
            raise MappingError(
                f"{value!r} is not {parts} non-empty parts separated by {separator!r}"
            )
        return pieces

    return at_separator


def _transform(rule: RuleSpec, env: _Env, *, reverse: bool) -> Callable[[Any], Any]:
    """NFC, then the rule's transforms in their fixed order, as one function. A transform
    may give `_MISSING` (an unknown code left out): the step then writes nothing."""
    transforms = _transforms(rule, env, reverse=reverse)
    if not transforms:
        return _nfc

    def transform(value: Any) -> Any:
        value = _nfc(value)
        for t in transforms:
            value = t(value)
        return value

    return transform


def _transforms(rule: RuleSpec, env: _Env, *, reverse: bool) -> list[Callable[[Any], Any]]:
    """Legacy text decoded, the value converted, legacy text encoded."""
    transforms: list[Callable[[Any], Any]] = []
    if rule.from_legacy:
        transforms.append(_legacy_decoder(rule.from_legacy))
    conversion = _conversion(rule, env, reverse=reverse)
    if conversion is not None:
        transforms.append(conversion)
    if rule.to_legacy:
        transforms.append(_legacy_encoder(rule.to_legacy))
    return transforms


def _conversion(rule: RuleSpec, env: _Env, *, reverse: bool) -> Callable[[Any], Any] | None:
    """The rule's one conversion (a reversed rule keeps the original spec of a typed
    conversion and runs it the other way)."""
    if rule.date is not None:
        return date_converter(rule.date, reverse)
    if rule.datetime is not None:
        return datetime_converter(rule.datetime, env.zone, reverse)
    if rule.number is not None:
        return number_converter(rule.number, False, reverse)
    if rule.integer is not None:
        return number_converter(rule.integer, True, reverse)
    if rule.boolean is not None:
        return boolean_converter(rule.boolean, reverse)
    for name, inverse in ((rule.codes, False), (rule.codes_inverse, True)):
        if name is not None:
            table = code_table(env.code_lists, name, inverse=inverse)
            return codes_converter(table, name, rule.unknown or env.unknown)
    return None


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


def _kind(parts: Compiled, rule: RuleSpec) -> Kind:
    if parts.children:
        return "each"
    if rule.name == "split" or (rule.split is not None and len(parts.targets) > 1):
        return "split"
    return "key" if len(parts.targets[0]) == 1 else "path"


# -- loading --------------------------------------------------------------------------------------


def compile_mapping(
    spec: Mapping[str, Any],
    code_lists: Mapping[str, Mapping[str, str]] | None = None,
    settings: Mapping[str, Any] | None = None,
    national: National | None = None,
) -> CompiledMapping:
    """Validate and compile a mapping document; errors name the rule and field.

    Args:
        spec: the mapping (a `mappings/*.yaml` file, as data).
        code_lists: the tables `codes:` rules name.
        settings: the values `setting:` rules name, of one configuration (e.g. a
            service's adapter_config); a value None writes nothing.
        national: the adapter's national conventions (gateway/conversion/mapping/
            national.py), which `national:` rules and `echo: national` use.

    Raises:
        ValueError: a declaration is invalid; the message names the rule (rules.<i>).

    Example:
        >>> m = compile_mapping({"rules": [{"setting": "agency_code", "to": "/MaDonVi"}]},
        ...                     settings={"agency_code": "000.00.00.H49"})
        >>> m.apply({})
        {'MaDonVi': '000.00.00.H49'}
    """
    try:
        parsed = MappingSpec.model_validate(spec)
    except ValidationError as e:
        raise ValueError("; ".join(_message(err) for err in e.errors())) from None
    return CompiledMapping(parsed, code_lists or {}, settings, national)


def _message(error: Any) -> str:
    """`rules.3.number: the reason`, without pydantic's prefix, input and URL."""
    where = ".".join(str(p) for p in error["loc"])
    what = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {what}" if where else what


def map_strings(value: Any, convert: Callable[[str], str]) -> Any:
    """Apply `convert` to every string in a JSON-like value (whole-message legacy text)."""
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, list):
        return [map_strings(v, convert) for v in value]
    if isinstance(value, dict):
        return {k: map_strings(v, convert) for k, v in value.items()}
    return value
