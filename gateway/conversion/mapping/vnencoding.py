"""Legacy Vietnamese text encodings, TCVN3 (ABC) and VNI, to Unicode NFC and back.

Old provincial systems still store Vietnamese in one of two pre-Unicode 8-bit encodings.
Both were font encodings: the bytes were shown through a special Windows font, so a
modern system reading them sees Latin-1/cp1252 mojibake ("Nguyễn" arrives as
"NguyÔn" or as "Nguyeãn"). This module turns that text into Unicode NFC on the way
in and, for services that still need it, back into the legacy form on the way out.

**TCVN3** is the "ABC" table (VN3) of the Vietnamese national standard
TCVN 5712:1993, used by the .VnTime/.VnArial fonts. One byte per precomposed letter:
the 67 lowercase Vietnamese letters (ă â ê ô ơ ư đ and the 60 vowels carrying a tone
mark) and the 7 capitals Ă Â Ê Ô Ơ Ư Đ sit between 0xA1 and 0xFE; everything below
0x80 is ASCII. The standard's larger table VN1 (glibc's ``TCVN5712-1``) also gives
each toned capital a code, squeezed into C0/C1 control positions and the gaps of the
0xA0-0xFF block; VN3 leaves them out, and ABC documents show capitals with tone marks
by using the lowercase code in an all-caps font (.VnTimeH).

*Capital-letter caveat.* TCVN3 has no code for the 60 capitals that carry a tone
mark (À Ả Ã Á Ạ, Ấ, Ế, Ồ, Ừ, Ỵ ...). `encode` writes each of them with the code of
the lowercase letter and `decode` reads that code as the lowercase letter, so those
capitals come back lowercase: encoding is lossy for them. `tcvn3_fold` gives exactly
the form that survives, and ``decode(encode(t, "tcvn3"), "tcvn3") == tcvn3_fold(t)``
for every encodable text, so the round trip is exact for every text TCVN3 can
represent (ASCII, lowercase Vietnamese and the 7 capitals). Bytes that VN3 does not
assign keep their cp1252 reading: VN1's extra capitals are not decoded, since a VN3
document may hold ordinary symbols such as "°" in those positions.

**VNI** is the table of the VNI-Windows fonts (VNI-Times ...), from the VNI
keyboard/font package. A letter is written as its ASCII base letter followed by at
most one combining byte, with circumflex or breve and a tone folded into a single
byte: "aù" = á, "aø" = à, "aû" = ả, "aõ" = ã, "aï" = ạ, "aâ" = â, "aá" = ấ,
"aê" = ă, "aé" = ắ. Some letters are a precomposed byte of their own: ơ "ô",
ư "ö" (these take tone bytes too: "ôù" = ớ), đ "ñ", the toned i's (í "í", ì "ì",
ỉ "æ", ĩ "ó", ị "ò") and ỵ "î". Capitals use the same bytes 0x20 lower ("AÙ" = Á,
"Ñ" = Đ). All VNI bytes are in 0xC0-0xFF, so ASCII is untouched. `decode` matches
the longest sequence first and, leniently, also reads a combining byte of the other
case ("Aù" = Á); `encode` always writes the matching case.

Both encodings are handled in their *string form*: the text a system produces when it
decodes the legacy bytes as cp1252 (Latin-1 where cp1252 leaves a byte undefined).
`decode` also accepts text decoded as pure Latin-1: the C1 controls U+0080-U+009F
are read as the cp1252 punctuation the legacy fonts show there ("\\x96" = "–").
`decode_bytes` and `encode_bytes` work on the raw bytes. Tables were checked against
glibc's TCVN5712-1 converter (the 74 letters VN3 shares with VN1) and published
TCVN3/VNI conversion tables; see tests/test_vnencoding.py.

`encode` accepts only what the legacy text can carry without ambiguity: ASCII, the
Vietnamese letters, the no-break space, the punctuation Windows 3.1 fonts had in
0x80-0x9F (– — “ ” ‘ ’ … • ™ ...; not "€", "Ž", "ž", added to cp1252 in 1998, after
these fonts), and for VNI the Latin-1 symbols 0xA1-0xBF (© ° « » ...), which VNI
leaves alone. Anything else ("€", "ü", "©" in TCVN3, "中") raises
`LegacyEncodingError`, a `ValueError` naming the character and its position.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Final, Literal, get_args

__all__ = [
    "ENCODINGS",
    "VIETNAMESE_LETTERS",
    "Encoding",
    "LegacyEncodingError",
    "decode",
    "decode_bytes",
    "encode",
    "encode_bytes",
    "looks_legacy",
    "tcvn3_fold",
]

Encoding = Literal["tcvn3", "vni"]
ENCODINGS: Final[tuple[Encoding, ...]] = get_args(Encoding)


class LegacyEncodingError(ValueError):
    """A character of the text has no form in the requested legacy encoding."""

    def __init__(self, char: str, position: int, encoding: Encoding) -> None:
        self.char = char
        self.position = position
        self.encoding = encoding
        name = unicodedata.name(char, "unnamed character")
        super().__init__(
            f"{char!r} (U+{ord(char):04X} {name}) at position {position} "
            f"has no {encoding.upper()} form"
        )


# ---------------------------------------------------------------------------
# The Vietnamese alphabet.

_VOWELS: Final = "aăâeêioôơuưy"
# Tone marks in TCVN3 code order: none, huyền (grave),
# hỏi (hook above), ngã (tilde), sắc (acute), nặng (dot below).
_TONES: Final = ("", "\u0300", "\u0309", "\u0303", "\u0301", "\u0323")


def _letter(base: str, tone: int) -> str:
    return unicodedata.normalize("NFC", base + _TONES[tone])


def _lowercase_letters() -> Iterator[tuple[str, int, str]]:
    """Every lowercase vowel form as (letter, tone index, base vowel)."""
    for base in _VOWELS:
        for tone in range(len(_TONES)):
            yield _letter(base, tone), tone, base


_LOWER_LETTERS: Final[str] = "".join(
    [letter for letter, _, _ in _lowercase_letters() if not letter.isascii()] + ["đ"]
)
_UPPER_LETTERS: Final[str] = _LOWER_LETTERS.upper()
#: The 134 letters of Vietnamese outside ASCII: 67 lowercase, then their capitals.
VIETNAMESE_LETTERS: Final[str] = _LOWER_LETTERS + _UPPER_LETTERS

# ---------------------------------------------------------------------------
# The string form of legacy bytes: cp1252, with Latin-1 for cp1252's five holes.

_BYTE_CHARS: Final[str] = "".join(
    bytes([b]).decode("cp1252", errors="strict")
    if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
    else chr(b)
    for b in range(256)
)
# Bytes `encode` writes for characters other than Vietnamese letters: ASCII, the
# punctuation Windows 3.1 had in 0x80-0x9F (the fonts' era: not the €, Ž and ž that
# cp1252 gained in 1998, nor its five unassigned bytes), the no-break space, and for
# VNI, which leaves them alone, the Latin-1 symbols 0xA1-0xBF.
_WIN31_PUNCTUATION: Final = frozenset("‚ƒ„…†‡ˆ‰Š‹Œ‘’“”•–—˜™š›œŸ")


def _passthrough(end: int) -> tuple[int, ...]:
    return tuple(
        b for b in range(end) if b < 0x80 or b >= 0xA0 or _BYTE_CHARS[b] in _WIN31_PUNCTUATION
    )


# String form -> bytes, for codecs.charmap_encode (C speed).
_STRING_FORM_MAP: Final = codecs.charmap_build(_BYTE_CHARS)
# U+0080-U+009F (text decoded as Latin-1) -> the cp1252 character of that byte.
_C1_TO_CP1252: Final[dict[int, str]] = {
    b: _BYTE_CHARS[b] for b in range(0x80, 0xA0) if _BYTE_CHARS[b] != chr(b)
}


def _string_form(data: bytes) -> str:
    return codecs.charmap_decode(data, "strict", _BYTE_CHARS)[0]


def _legacy_bytes(text: str) -> bytes | None:
    """The bytes of a legacy string, or None if it holds anything but the string form
    (C1 controls from a Latin-1 decode, or real Unicode)."""
    try:
        return codecs.charmap_encode(text, "strict", _STRING_FORM_MAP)[0]
    except UnicodeEncodeError:
        return None


# ---------------------------------------------------------------------------
# TCVN3 (TCVN 5712:1993 VN3, "ABC").

# Codes of each vowel: unmarked, grave, hook above, tilde, acute, dot below.
_TCVN3_VOWELS: Final[dict[str, tuple[int, int, int, int, int, int]]] = {
    "a": (0x61, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9),
    "ă": (0xA8, 0xBB, 0xBC, 0xBD, 0xBE, 0xC6),
    "â": (0xA9, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB),
    "e": (0x65, 0xCC, 0xCE, 0xCF, 0xD0, 0xD1),
    "ê": (0xAA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6),
    "i": (0x69, 0xD7, 0xD8, 0xDC, 0xDD, 0xDE),
    "o": (0x6F, 0xDF, 0xE1, 0xE2, 0xE3, 0xE4),
    "ô": (0xAB, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9),
    "ơ": (0xAC, 0xEA, 0xEB, 0xEC, 0xED, 0xEE),
    "u": (0x75, 0xEF, 0xF1, 0xF2, 0xF3, 0xF4),
    "ư": (0xAD, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9),
    "y": (0x79, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE),
}
_TCVN3_OTHERS: Final[dict[str, int]] = {
    "đ": 0xAE,
    "Ă": 0xA1,
    "Â": 0xA2,
    "Ê": 0xA3,
    "Ô": 0xA4,
    "Ơ": 0xA5,
    "Ư": 0xA6,
    "Đ": 0xA7,
}


def _tcvn3_letters() -> dict[str, int]:
    """Each letter TCVN3 represents exactly (lowercase and the 7 capitals) -> its code."""
    codes = {
        letter: _TCVN3_VOWELS[base][tone]
        for letter, tone, base in _lowercase_letters()
        if not letter.isascii()
    }
    codes.update(_TCVN3_OTHERS)
    return codes


_TCVN3_CODES: Final[dict[str, int]] = _tcvn3_letters()
# Capitals TCVN3 has no code for -> the lowercase letter whose code stands in for them.
_TCVN3_FOLD: Final[dict[int, str]] = {
    ord(upper): upper.lower() for upper in _UPPER_LETTERS if upper not in _TCVN3_CODES
}
_TCVN3_FOLD_RE: Final = re.compile("[" + "".join(map(chr, _TCVN3_FOLD)) + "]")


def _tcvn3_tables() -> tuple[str, str]:
    """256-character tables: byte -> decoded character, and byte -> character `encode`
    writes as that byte (U+FFFE, a noncharacter, where it writes none)."""
    decoding = list(_BYTE_CHARS)
    encoding = ["\ufffe"] * 0x100
    for b in _passthrough(0xA1):
        encoding[b] = _BYTE_CHARS[b]
    for letter, code in _TCVN3_CODES.items():
        decoding[code] = encoding[code] = letter
    return "".join(decoding), "".join(encoding)


_TCVN3_DECODING, _TCVN3_ENCODING = _tcvn3_tables()
_TCVN3_ENCODING_MAP: Final = codecs.charmap_build(_TCVN3_ENCODING)
# Slow path for legacy text with C1 controls or real Unicode mixed in.
_TCVN3_DECODE: Final[dict[int, str]] = {
    **_C1_TO_CP1252,
    **{ord(_BYTE_CHARS[b]): c for b, c in enumerate(_TCVN3_DECODING) if c != _BYTE_CHARS[b]},
}

# ---------------------------------------------------------------------------
# VNI (VNI-Windows fonts). Combining bytes in lowercase form, by tone as above;
# the uppercase form of each is the byte 0x20 lower.

_VNI_TONE: Final = ("", "\xf8", "\xfb", "\xf5", "\xf9", "\xef")  # ø û õ ù ï
_VNI_CIRCUMFLEX: Final = ("\xe2", "\xe0", "\xe5", "\xe3", "\xe1", "\xe4")  # â à å ã á ä
_VNI_BREVE: Final = ("\xea", "\xe8", "\xfa", "\xfc", "\xe9", "\xeb")  # ê è ú ü é ë
_VNI_I: Final = ("i", "\xec", "\xe6", "\xf3", "\xed", "\xf2")  # i ì æ ó í ò
_VNI_Y_DOT: Final = "\xee"  # î = ỵ
_VNI_O_HORN: Final = "\xf4"  # ô = ơ
_VNI_U_HORN: Final = "\xf6"  # ö = ư
_VNI_D_STROKE: Final = "\xf1"  # ñ = đ


def _vni_upper(legacy: str) -> str:
    return "".join(c.upper() if c.isascii() else chr(ord(c) - 0x20) for c in legacy)


def _vni_lowercase(base: str, tone: int) -> str:
    """The VNI form of the lowercase letter `base` with tone index `tone`."""
    if base == "i":
        return _VNI_I[tone]
    if base == "y" and tone == 5:
        return _VNI_Y_DOT
    stem, marks = {
        "ă": ("a", _VNI_BREVE),
        "â": ("a", _VNI_CIRCUMFLEX),
        "ê": ("e", _VNI_CIRCUMFLEX),
        "ô": ("o", _VNI_CIRCUMFLEX),
        "ơ": (_VNI_O_HORN, _VNI_TONE),
        "ư": (_VNI_U_HORN, _VNI_TONE),
    }.get(base, (base, _VNI_TONE))
    return stem + marks[tone]


def _vni_letters() -> dict[str, str]:
    """Each Vietnamese letter -> its VNI form."""
    forms: dict[str, str] = {"đ": _VNI_D_STROKE, "Đ": _vni_upper(_VNI_D_STROKE)}
    for letter, tone, base in _lowercase_letters():
        if not letter.isascii():
            lower = _vni_lowercase(base, tone)
            forms[letter] = lower
            forms[letter.upper()] = _vni_upper(lower)
    return forms


_VNI_FORMS: Final[dict[str, str]] = _vni_letters()


def _vni_decode_map() -> dict[str, str]:
    table = {form: letter for letter, form in _VNI_FORMS.items()}
    # Lenient reading of a combining byte whose case differs from its base letter's:
    # the base letter decides the case ("Aù" -> Á, "aÙ" -> á).
    for form, letter in list(table.items()):
        if len(form) == 2:
            table.setdefault(form[0] + chr(ord(form[1]) ^ 0x20), letter)
    return table


_VNI_DECODE: Final[dict[str, str]] = _vni_decode_map()


def _char_class(chars: Iterable[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


def _vni_matcher() -> tuple[re.Pattern[str], dict[str, str]]:
    """The regex that finds VNI sequences, and what each match decodes to.

    A match is a base letter followed by a combining byte, or a one-byte letter
    (longest first: "ôù" = ớ before "ô" = ơ). The pattern opens with one character
    class so that the regex engine can skip quickly to the candidates; its pairs
    are any base with any combining byte, and those that are not a VNI letter
    ("uê") decode to their first character's own reading followed by the byte.
    """
    bases = {form[0] for form in _VNI_DECODE if len(form) == 2}
    marks = {form[1] for form in _VNI_DECODE if len(form) == 2}
    singles = {form for form in _VNI_DECODE if len(form) == 1}
    assert not marks & (singles | bases)  # import-time table check
    lookup = dict(_VNI_DECODE)
    for first in bases | singles:
        for mark in marks:
            lookup.setdefault(first + mark, _VNI_DECODE.get(first, first) + mark)
    # One capturing group: re.split then returns the matches at the odd indices.
    first, mark, single = _char_class(bases | singles), _char_class(marks), _char_class(singles)
    return re.compile(f"({first}(?:{mark}|(?<={single})))"), lookup


_VNI_DECODE_RE, _VNI_DECODE_LOOKUP = _vni_matcher()
# Every character VNI gives a meaning to; none may pass through `encode` unconverted.
_VNI_BYTES: Final[frozenset[str]] = frozenset(
    c for form in _VNI_DECODE for c in form if not c.isascii()
)

# Every character VNI gives a meaning to must be converted by `encode`.
assert not _VNI_BYTES & {_BYTE_CHARS[b] for b in _passthrough(0xC0)}  # import-time check
_VNI_ENCODING_MAP: Final[dict[int, int | bytes]] = {
    **{ord(_BYTE_CHARS[b]): b for b in _passthrough(0xC0)},
    **{
        ord(letter): codecs.charmap_encode(form, "strict", _STRING_FORM_MAP)[0]
        for letter, form in _VNI_FORMS.items()
    },
}


# ---------------------------------------------------------------------------
# API


def _check(encoding: str) -> Encoding:
    if encoding in ENCODINGS:
        return encoding
    raise ValueError(
        f"unknown legacy Vietnamese encoding {encoding!r}; expected one of {ENCODINGS}"
    )


def _lower(match: re.Match[str]) -> str:
    return match.group().lower()


def _decode(text: str, data: bytes | None, encoding: Encoding) -> str:
    """Decode legacy `text`, whose bytes are `data` when it is pure string form."""
    if encoding == "tcvn3":
        if data is None:
            text = text.translate(_TCVN3_DECODE)
        else:
            text = codecs.charmap_decode(data, "strict", _TCVN3_DECODING)[0]
    else:
        if data is None:
            text = text.translate(_C1_TO_CP1252)
        # split + map rather than sub with a callback: no Python call per letter.
        parts = _VNI_DECODE_RE.split(text)
        parts[1::2] = map(_VNI_DECODE_LOOKUP.__getitem__, parts[1::2])
        text = "".join(parts)
    return unicodedata.normalize("NFC", text)


def decode(text: str, encoding: Encoding) -> str:
    """Legacy text, in its cp1252/Latin-1-decoded string form, -> Unicode NFC.

    Never fails: characters that are not part of the encoding pass through. TCVN3
    has no toned capitals, so those come back lowercase (see the module docstring).
    """
    encoding = _check(encoding)
    if text.isascii():
        return text
    text = unicodedata.normalize("NFC", text)  # undo an NFD pass over the mojibake
    return _decode(text, _legacy_bytes(text), encoding)


def decode_bytes(data: bytes, encoding: Encoding) -> str:
    """Raw legacy bytes -> Unicode NFC."""
    return _decode(_string_form(data), data, _check(encoding))


def encode_bytes(text: str, encoding: Encoding) -> bytes:
    """Unicode (NFC or NFD) -> raw legacy bytes.

    TCVN3 is lossy for the capitals that carry a tone mark: they are written with the
    lowercase letter's code, so decoding gives ``tcvn3_fold(text)`` back.

    Raises `LegacyEncodingError` (a `ValueError`) for the first character the encoding
    cannot carry, naming it and its position in the NFC form of `text` (the same as in
    `text` whenever `text` is already NFC, as it nearly always is).
    """
    encoding = _check(encoding)
    text = unicodedata.normalize("NFC", text)
    try:
        if encoding == "vni":
            return codecs.charmap_encode(text, "strict", _VNI_ENCODING_MAP)[0]
        text = _TCVN3_FOLD_RE.sub(_lower, text)  # one for one: positions are kept
        bad = text.find("\ufffe")  # the placeholder of VN3's unused bytes
        if bad >= 0:
            raise LegacyEncodingError(text[bad], bad, encoding)
        return codecs.charmap_encode(text, "strict", _TCVN3_ENCODING_MAP)[0]
    except UnicodeEncodeError as exc:
        raise LegacyEncodingError(text[exc.start], exc.start, encoding) from None


def encode(text: str, encoding: Encoding) -> str:
    """Unicode (NFC or NFD) -> legacy text in its cp1252-decoded string form.

    Lossy for TCVN3's toned capitals and raises `LegacyEncodingError` like
    `encode_bytes`.
    """
    if text.isascii():
        _check(encoding)
        return text
    return _string_form(encode_bytes(text, encoding))


def tcvn3_fold(text: str) -> str:
    """`text` in NFC with the capitals TCVN3 cannot write lowercased: the form that
    survives a TCVN3 round trip, ``decode(encode(text, "tcvn3"), "tcvn3")``."""
    return unicodedata.normalize("NFC", text).translate(_TCVN3_FOLD)


# ---------------------------------------------------------------------------
# Detection

# A Vietnamese syllable, tone mark removed, lowercase: initial consonant(s), vowel
# nucleus with its glides, final consonant.
_SYLLABLE_RE: Final = re.compile(
    r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdđghklmnpqrstvx])?"
    r"(?P<nucleus>iêu|oai|oao|oay|oeo|uây|uôi|uya|uyê|uyu|ươi|ươu|yêu"
    r"|ai|ao|au|ay|âu|ây|eo|êu|ia|iê|iu|oa|oă|oe|oi|oo|ôi|ơi|ua|uâ|uê|ui|uô|uơ|uy"
    r"|ưa|ưi|ươ|ưu|yê|[aăâeêioôơuưy])"
    r"(?:ch|ng|nh|[cmnpt])?"
)
# Nuclei whose last vowel is an off-glide (or the "a" of ia/ua/ưa), which never
# carries the tone: "báu", never "baú" (the VNI spelling of báu is "baùu").
_UNTONED_LAST: Final = frozenset(
    "ai ao au ay âu ây eo êu ia iu oi ôi ơi ua ui ưa ưi ưu "
    "iêu oai oao oay oeo uây uôi uyu ươi ươu yêu".split()
)
_TONE_MARKS: Final = frozenset(_TONES[1:])
# Separators between words in both the Unicode and the legacy form of a text.
_WORD_SPLIT_RE: Final = re.compile(
    "[\\s0-9"
    + re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    + "".join(_C1_TO_CP1252.values())
    + "\x80-\x9f"
    + "]+"
)
_LEGACY_ALPHABET: Final[frozenset[str]] = frozenset(
    _BYTE_CHARS + "".join(map(chr, range(0x80, 0xA0)))
)


def _is_syllable(word: str) -> bool:
    """Whether `word` is shaped like one Vietnamese syllable, tone mark well placed."""
    bare: list[str] = []
    toned: int | None = None
    for cluster in re.findall(r".[\u0300-\u036f]*", unicodedata.normalize("NFD", word.lower())):
        marks = [c for c in cluster if c in _TONE_MARKS]
        if marks:
            if toned is not None or len(marks) > 1:
                return False  # two tone marks
            toned = len(bare)
        letter = unicodedata.normalize("NFC", "".join(c for c in cluster if c not in _TONE_MARKS))
        if len(letter) != 1:
            return False  # a mark that no Vietnamese letter has
        bare.append(letter)
    match = _SYLLABLE_RE.fullmatch("".join(bare))
    if match is None:
        return False
    if toned is None:
        return True
    start, end = match.span("nucleus")
    if not start <= toned < end:
        return False
    return not (toned == end - 1 and match["nucleus"] in _UNTONED_LAST)


def _all_syllables(words: list[str]) -> bool:
    return all(_is_syllable(w) for w in words)


def looks_legacy(text: str) -> Encoding | None:
    """Guess whether `text` is TCVN3 or VNI mojibake, for logs and tools.

    Conservative: answers only when the text does not read as Unicode Vietnamese and
    exactly one of the encodings turns every word holding a non-ASCII character into
    a well-formed Vietnamese syllable (changing at least one). Plain ASCII, Unicode
    Vietnamese, other languages, text mixing in foreign words, and ambiguous text
    (short Latin-1-only words such as "Hoà" read either way) all get None.
    """
    if text.isascii() or not _LEGACY_ALPHABET.issuperset(text):
        return None  # nothing legacy about it, or real Unicode beyond cp1252
    words = [w for w in _WORD_SPLIT_RE.split(text) if not w.isascii()]
    if _all_syllables(words):
        return None  # already reads as Unicode Vietnamese
    found: list[Encoding] = []
    for encoding in ENCODINGS:
        decoded = [decode(w, encoding) for w in words]
        if decoded != words and _all_syllables(decoded):
            found.append(encoding)
    return found[0] if len(found) == 1 else None
