"""Typed conversions of the mapping engine: dates, dates and times with zones, numbers
written with a locale's separators, integers, booleans.

Each conversion names the notation of its `from` side and of its `to` side, so that it
runs both ways (a rule's `reverse()` swaps them). A side left out is the JSON value
(a number, a boolean). Examples, as written in a mapping rule:

    number: {from: vi}                  # "1.250,75" -> 1250.75, and 1250.75 -> "1.250,75"
    number: {to: vi, places: 2}         # 125.5 -> "125,50"
    integer: {from: plain}              # "50000000000" -> 50000000000
    boolean: {from: {true: [Có, "1"], false: [Không, "0"]}}   # "Có" -> true
    date: {from: [dd/MM/yyyy], to: [yyyy-MM-dd]}              # paired formats, as text
    datetime: {from: "yyyy/MM/dd HH:mm:ss", to: iso, zone: "+07:00"}

Everything is checked when the mapping compiles (a bad format, separator or zone
raises ValueError then); a value that does not fit raises `MappingError` naming it:

    >>> convert = number_converter(NumberSpec.model_validate({"from": "vi"}), False, False)
    >>> convert("1.250,75")
    1250.75
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.conversion.mapping.values import MappingError

__all__ = [
    "BooleanSpec",
    "DateSpec",
    "DateTimeSpec",
    "NumberSpec",
    "boolean_converter",
    "date_converter",
    "datetime_converter",
    "number_converter",
    "parse_zone",
]

Converter = Callable[[Any], Any]

# -- dates as text: paired formats ---------------------------------------------------------------

_TOKENS = {"yyyy": r"(?P<y>\d{4})", "MM": r"(?P<m>\d{2})", "dd": r"(?P<d>\d{2})",
           "HH": r"(?P<H>\d{2})", "mm": r"(?P<M>\d{2})", "ss": r"(?P<S>\d{2})"}  # fmt: skip
_TOKEN_RE = re.compile("|".join(sorted(_TOKENS, key=len, reverse=True)))
_KEYS = {"yyyy": "y", "MM": "m", "dd": "d", "HH": "H", "mm": "M", "ss": "S"}


class DateSpec(BaseModel):
    """`date: {from: [formats], to: [formats]}`: the i-th `from` format is written as the
    i-th `to` format (so `yyyy` alone can stay `yyyy`). Tokens: yyyy MM dd HH mm ss."""

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


def date_converter(spec: DateSpec, reverse: bool) -> Converter:
    """The text of a date in one of the source formats, written in its paired format.

    Example:
        >>> spec = DateSpec.model_validate({"from": ["dd/MM/yyyy"], "to": ["yyyy-MM-dd"]})
        >>> date_converter(spec, False)("15/03/1999")
        '1999-03-15'
    """
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


# -- dates and times with zones ------------------------------------------------------------------

_DT_TOKENS = {**_TOKENS, "SSS": r"(?P<f>\d{3})", "XXX": r"(?P<z>Z|[+-]\d{2}:\d{2})",
              "xx": r"(?P<z>[+-]\d{4})"}  # fmt: skip
_DT_TOKEN_RE = re.compile("|".join(sorted(_DT_TOKENS, key=len, reverse=True)))
_OFFSET_RE = re.compile(r"\A(?:Z|UTC|[+-](\d{2}):?(\d{2}))\Z")
ISO = "iso"


def parse_zone(zone: str) -> tzinfo:
    """A declared zone: an offset ("+07:00", "Z", "UTC") or an IANA name.

    Example:
        >>> parse_zone("+07:00")
        datetime.timezone(datetime.timedelta(seconds=25200))
    """
    m = _OFFSET_RE.match(zone)
    if m:
        if m.group(1) is None:
            return UTC
        hours, minutes = int(m.group(1)), int(m.group(2))
        if hours > 14 or minutes > 59:
            raise ValueError(f"zone {zone!r} is not an offset within ±14:00")
        sign = -1 if zone.startswith("-") else 1
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"zone {zone!r} is neither an offset (+07:00) nor a known IANA zone name"
        ) from None


@dataclass(frozen=True, slots=True)
class _DateTimeFormat:
    """One declared format: `iso`, or a pattern of yyyy MM dd HH mm ss SSS XXX xx."""

    pattern: str
    regex: re.Pattern[str] | None  # None for iso
    has_offset: bool

    @classmethod
    def of(cls, pattern: str) -> _DateTimeFormat:
        if pattern == ISO:
            return cls(pattern, None, True)
        tokens = [m.group() for m in _DT_TOKEN_RE.finditer(pattern)]
        if not {"yyyy", "MM", "dd"} <= set(tokens):
            raise ValueError(f"datetime format {pattern!r} needs yyyy, MM and dd (or is 'iso')")
        if len(tokens) != len(set(tokens)) or ("XXX" in tokens and "xx" in tokens):
            raise ValueError(f"datetime format {pattern!r} repeats a token")
        out, pos = [], 0
        for m in _DT_TOKEN_RE.finditer(pattern):
            out.append(re.escape(pattern[pos : m.start()]))
            out.append(_DT_TOKENS[m.group()])
            pos = m.end()
        out.append(re.escape(pattern[pos:]))
        regex = re.compile("".join(out) + r"\Z")
        return cls(pattern, regex, "XXX" in tokens or "xx" in tokens)

    def parse(self, text: str, zone: tzinfo | None) -> datetime | None:
        if self.regex is None:
            if text[10:11] not in ("T", " "):
                return None  # a date alone is not a moment
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return None
        else:
            m = self.regex.match(text)
            if m is None:
                return None
            moment = _moment(m.groupdict())
        if moment.tzinfo is None:
            if zone is None:
                return None
            moment = moment.replace(tzinfo=zone)
        return moment

    def write(self, moment: datetime) -> str:
        if self.regex is None:
            return moment.isoformat(timespec="seconds" if not moment.microsecond else "auto")
        offset = moment.utcoffset() or timedelta(0)
        values = {
            "yyyy": f"{moment.year:04d}", "MM": f"{moment.month:02d}",
            "dd": f"{moment.day:02d}", "HH": f"{moment.hour:02d}",
            "mm": f"{moment.minute:02d}", "ss": f"{moment.second:02d}",
            "SSS": f"{moment.microsecond // 1000:03d}",
            "XXX": _offset(offset, colon=True), "xx": _offset(offset, colon=False),
        }  # fmt: skip
        return _DT_TOKEN_RE.sub(lambda t: values[t.group()], self.pattern)


def _moment(parts: dict[str, str | None]) -> datetime:
    def n(key: str) -> int:
        return int(parts.get(key) or 0)

    try:
        moment = datetime(n("y"), n("m"), n("d"), n("H"), n("M"), n("S"), n("f") * 1000)
    except ValueError as e:
        raise MappingError(f"not a date and time: {e}") from None
    offset = parts.get("z")
    return moment if offset is None else moment.replace(tzinfo=parse_zone(offset))


def _offset(offset: timedelta, *, colon: bool) -> str:
    if not offset and colon:
        return "Z"
    minutes = int(offset.total_seconds()) // 60
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    return f"{sign}{minutes // 60:02d}{':' if colon else ''}{minutes % 60:02d}"


def _format_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class DateTimeSpec(BaseModel):
    """`datetime: {from: formats, to: formats, zone: ...}`: a moment read in any of the
    source formats is written in the first target format. `zone` is where a moment
    written without an offset is (read) and is converted to (written); without it, the
    mapping's `zone`. Formats: `iso` (ISO 8601 with an offset), or patterns of
    yyyy MM dd HH mm ss SSS and an offset XXX (+07:00, Z) or xx (+0700)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: list[str] = Field(alias="from", min_length=1)
    to: list[str] = Field(min_length=1)
    zone: str | None = None

    _as_list = field_validator("from_", "to", mode="before")(_format_list)

    @model_validator(mode="after")
    def _formats(self) -> DateTimeSpec:
        for fmt in [*self.from_, *self.to]:
            _DateTimeFormat.of(fmt)
        if self.zone is not None:
            parse_zone(self.zone)
        return self

    def needs_zone(self) -> list[str]:
        """The formats that cannot be read or written without a zone."""
        return [f for f in [*self.from_, *self.to] if not _DateTimeFormat.of(f).has_offset]


def datetime_converter(spec: DateTimeSpec, default_zone: str | None, reverse: bool) -> Converter:
    """A moment in one of the source formats, written in the first target format.

    Raises:
        ValueError: (at compile time) a format has no offset and no zone is declared.

    Example:
        >>> spec = DateTimeSpec.model_validate({"from": "yyyy/MM/dd HH:mm:ss", "to": "iso"})
        >>> datetime_converter(spec, "+07:00", False)("2025/01/02 10:00:00")
        '2025-01-02T10:00:00+07:00'
    """
    declared = spec.zone or default_zone
    if declared is None and spec.needs_zone():
        raise ValueError(
            f"datetime formats {spec.needs_zone()} have no offset: declare a zone "
            "(zone: '+07:00' on the rule or the mapping)"
        )
    zone = parse_zone(declared) if declared is not None else None
    sources, targets = (spec.to, spec.from_) if reverse else (spec.from_, spec.to)
    readers = [_DateTimeFormat.of(s) for s in sources]
    writer = _DateTimeFormat.of(targets[0])

    def convert(value: Any) -> Any:
        text = str(value)
        for reader in readers:
            moment = reader.parse(text, zone)
            if moment is not None:
                return writer.write(moment.astimezone(zone) if zone else moment)
        raise MappingError(f"{text!r} is not a date and time in any of the formats {sources}")

    return convert


# -- numbers -------------------------------------------------------------------------------------


class Separators(BaseModel):
    """A text notation of numbers: the decimal separator and the thousands separator
    (None: digits are not grouped)."""

    model_config = ConfigDict(extra="forbid")
    decimal: Literal[".", ","]
    group: Literal[".", ",", " ", "\u00a0", "'", "_"] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> Separators:
        if self.decimal == self.group:
            raise ValueError("the decimal and group separators must differ")
        return self


_LOCALES = {
    "plain": Separators(decimal="."),  # 1250.75
    "vi": Separators(decimal=",", group="."),  # 1.250,75
    "en": Separators(decimal=".", group=","),  # 1,250.75
}


def _number_notation(value: Any) -> Any:
    """A notation's name as its separators (None: a JSON number), one error if unknown."""
    if value is None or value == "number":
        return None
    if isinstance(value, str):
        if value not in _LOCALES:
            raise ValueError(f"{value!r} is not number, {', '.join(_LOCALES)} or separators")
        return _LOCALES[value]
    return value


class NumberSpec(BaseModel):
    """`number:` / `integer: {from: notation, to: notation, places: n}`: `number` (the
    default) is a JSON number; `plain`, `vi`, `en` or `{decimal: ",", group: "."}` text.
    `places` fixes the decimals written as text (number only)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: Separators | None = Field(None, alias="from")
    to: Separators | None = None
    places: int | None = Field(None, ge=0, le=20)

    _notations = field_validator("from_", "to", mode="before")(_number_notation)

    @model_validator(mode="after")
    def _one_text_side(self) -> NumberSpec:
        if self.from_ is None and self.to is None:
            raise ValueError("give the text notation of 'from' or 'to' (e.g. from: vi)")
        return self


def _text_number_regex(seps: Separators, integer: bool) -> re.Pattern[str]:
    # ASCII digits only (\d would take "١٢"); an integer has no decimal part at all, so
    # "12.0", "12a" and "1e3" are refused, not read as 12 or 1000.
    whole = r"[0-9]+"
    if seps.group is not None:
        whole = rf"(?:[0-9]{{1,3}}(?:{re.escape(seps.group)}[0-9]{{3}})+|[0-9]+)"
    fraction = "" if integer else rf"(?:{re.escape(seps.decimal)}([0-9]+))?"
    return re.compile(rf"\A([+-]?)({whole}){fraction}\Z")


def _reader(seps: Separators | None, integer: bool) -> Callable[[Any], Decimal]:
    kind = "an integer" if integer else "a number"
    allowed: tuple[type, ...] = (int,) if integer else (int, float)
    if seps is None:

        def from_json(value: Any) -> Decimal:
            # An integer is a JSON integer: 12.0 or 1e3 (floats once parsed) are refused.
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise MappingError(f"{value!r} is not {kind}")
            try:
                number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
            except InvalidOperation:
                number = Decimal("NaN")
            if not number.is_finite():
                raise MappingError(f"{value!r} is not {kind}")
            return number

        return from_json
    regex = _text_number_regex(seps, integer)
    group = seps.group or ""

    def from_text(value: Any) -> Decimal:
        m = regex.match(value) if isinstance(value, str) else None
        if m is None:
            example = _writer(seps, None, integer)(Decimal("1234.5") if not integer else 1234)
            raise MappingError(f"{value!r} is not {kind} written like {example!r}")
        sign, whole = m[1], m[2]
        fraction = m[3] if m.re.groups > 2 else None
        return Decimal(f"{sign}{whole.replace(group, '')}.{fraction or '0'}")

    return from_text


def _writer(seps: Separators | None, places: int | None, integer: bool) -> Callable[[Any], Any]:
    if seps is None:
        if integer:
            return int
        return lambda d: int(d) if d == d.to_integral_value() else float(d)

    def to_text(number: Any) -> str:
        d = Decimal(number)
        text = format(d, f".{places}f") if places is not None else format(d.normalize(), "f")
        sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
        whole, _, fraction = text.partition(".")
        if seps.group is not None:
            whole = f"{int(whole):,}".replace(",", seps.group)
        return sign + whole + (seps.decimal + fraction if fraction else "")

    return to_text


def number_converter(spec: NumberSpec, integer: bool, reverse: bool) -> Converter:
    """A number read in one notation and written in the other; `integer` refuses a
    fraction and writes a JSON integer.

    Example:
        >>> spec = NumberSpec.model_validate({"to": "vi"})
        >>> number_converter(spec, False, False)(1250.75)
        '1.250,75'
    """
    if integer and spec.places:
        raise ValueError("integer takes no places")
    source, target = (spec.to, spec.from_) if reverse else (spec.from_, spec.to)
    read = _reader(source, integer)
    write = _writer(target, spec.places, integer)

    def convert(value: Any) -> Any:
        number = read(value)
        if integer and number != number.to_integral_value():
            raise MappingError(f"{value!r} is not a whole number")
        return write(number)

    return convert


# -- booleans ------------------------------------------------------------------------------------


def _spelling(value: Any) -> str:
    # YAML reads true/false/1 unquoted as bool and int: take them as their text.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Spellings(BaseModel):
    """`{true: [spellings], false: [spellings]}`: read case-insensitively, the first of
    each written."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    true: list[str] = Field(min_length=1)
    false: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _yaml_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        keys = {True: "true", False: "false"}
        return {
            keys.get(k, k) if isinstance(k, bool) else k: [_spelling(v) for v in vs]
            if isinstance(vs, list)
            else vs
            for k, vs in data.items()
        }

    @model_validator(mode="after")
    def _disjoint(self) -> Spellings:
        both = {s.casefold() for s in self.true} & {s.casefold() for s in self.false}
        if both:
            raise ValueError(f"spellings {sorted(both)} are both true and false")
        return self


_BOOLEANS = {
    "text": Spellings(true=["true", "1"], false=["false", "0"]),
    "digit": Spellings(true=["1", "true"], false=["0", "false"]),
}


def _boolean_notation(value: Any) -> Any:
    """A notation's name as its spellings (None: a JSON boolean), one error if unknown."""
    if value is None or value == "boolean":
        return None
    if isinstance(value, str):
        if value not in _BOOLEANS:
            raise ValueError(f"{value!r} is not boolean, {', '.join(_BOOLEANS)} or spellings")
        return _BOOLEANS[value]
    return value


class BooleanSpec(BaseModel):
    """`boolean: {from: notation, to: notation}`: `boolean` (the default) is a JSON
    boolean; `text` is true/false, `digit` 1/0, or declared spellings."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: Spellings | None = Field(None, alias="from")
    to: Spellings | None = None

    _notations = field_validator("from_", "to", mode="before")(_boolean_notation)

    @model_validator(mode="after")
    def _one_text_side(self) -> BooleanSpec:
        if self.from_ is None and self.to is None:
            raise ValueError("give the spellings of 'from' or 'to' (e.g. from: text)")
        return self


def boolean_converter(spec: BooleanSpec, reverse: bool) -> Converter:
    """A boolean read in one notation and written in the other.

    Example:
        >>> spec = BooleanSpec.model_validate({"from": {True: ["Có"], False: ["Không"]}})
        >>> boolean_converter(spec, False)("có")
        True
    """
    source, target = (spec.to, spec.from_) if reverse else (spec.from_, spec.to)
    read_as, write_as = source, target
    table = (
        {s.casefold(): True for s in read_as.true} | {s.casefold(): False for s in read_as.false}
        if read_as
        else {}
    )

    def convert(value: Any) -> Any:
        if read_as is None:
            if not isinstance(value, bool):
                raise MappingError(f"{value!r} is not a boolean")
            truth = value
        else:
            found = table.get(str(value).casefold()) if isinstance(value, str) else None
            if found is None:
                raise MappingError(
                    f"{value!r} is not one of {read_as.true} (true) or {read_as.false} (false)"
                )
            truth = found
        if write_as is None:
            return truth
        return write_as.true[0] if truth else write_as.false[0]

    return convert
