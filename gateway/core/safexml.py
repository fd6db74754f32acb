"""Safe XML parsing: every XML document the gateway reads comes from a party it does not
control, so parsing is safe by default rather than by configuration:

* DTDs are refused outright. No exchange here has a use for one (SOAP forbids them,
  edXML does not use them), and refusing any `<!DOCTYPE` before libxml2 sees it ends
  entity expansion bombs (billion laughs, quadratic blowup), external entities (XXE),
  parameter entities and external DTD fetches in one stroke, instead of relying on
  each parser flag being right. The prolog is checked in the document's own encoding,
  and encodings that could hide markup from that check (UTF-7, UTF-32, EBCDIC, UTF-16
  declared by an 8-bit document) are refused.
* Processing instructions are refused; the XML declaration is the only one allowed.
* The size is checked before parsing; depth and element count while parsing, chunk by
  chunk, so a document a hundred thousand levels deep is stopped after its first
  kilobytes rather than after it has been built.
* The parser itself is hardened as well (no entity resolution, no network, no DTD
  loading, no huge trees): defence in depth, should the prolog check ever miss.

Errors are `UnsafeXML` (a hostile construct) or `InvalidXML` (not well-formed, or not
the document expected); both are `ValueError`s with a message a person can act on, for
the caller to turn into a problem (invalid-message for a caller's document,
upstream-bad-response for a provider's). Used by adapters (gateway.conversion.mapping),
the registry's XML Schemas and every caller's XML message.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

from lxml import etree

MAX_BYTES: Final = 10 * 1024 * 1024
MAX_DEPTH: Final = 64
MAX_ELEMENTS: Final = 200_000


# libxml2 never nests deeper than this without XML_PARSE_HUGE (which stays off).
_LIBXML_MAX_DEPTH: Final = 256
_CHUNK: Final = 64 * 1024  # bytes fed to the parser between two limit checks


def hardened_parser() -> etree.XMLParser:
    """The parser options `parse_xml` uses, as a tree parser: no entity resolution, no
    network, no DTD loading or validation, no huge trees, blank text dropped. Alone it
    does not refuse DTDs; `parse_xml` does that before parsing."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=True,
    )


def _pull_parser(large_text: bool) -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end", "pi"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        # libxml2's "huge" mode lifts its 10 MB cap on one text node (a base64 file) and
        # raises its own depth cap; our size, depth and element limits apply either way.
        huge_tree=large_text,
        remove_blank_text=True,
    )


# Declared encodings accepted for a document without a UTF-16 byte order mark: all
# ASCII-compatible, so the prolog check reads the markup exactly as libxml2 will.
_ASCII_COMPATIBLE = re.compile(
    r"(utf-?8|us-ascii|ascii|iso[-_]?8859[-_](1[0-6]?|[2-9])|latin-?1|windows-125[0-8]|cp125[0-8])",
    re.IGNORECASE,
)
_UTF8 = re.compile(r"utf-?8", re.IGNORECASE)
_UTF16 = re.compile(r"utf-?16(le|be)?", re.IGNORECASE)
_ENCODING_DECL = re.compile(r"""\sencoding\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_WHITESPACE = " \t\r\n"
_LOOKAHEAD = 100  # characters the prolog check needs to see to tell constructs apart


class UnsafeXML(ValueError):
    """The document uses a construct refused for safety: a DTD, a processing
    instruction, or more size, depth or elements than allowed."""


class InvalidXML(ValueError):
    """The document is not well-formed XML, or not the document expected."""


# --- parsing ---------------------------------------------------------------------------


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_elements: int = MAX_ELEMENTS,
    large_text: bool = False,
) -> etree._Element:
    """Parse an untrusted document; return its root element.

    Raises `UnsafeXML` for a DTD, a processing instruction or a limit exceeded, and
    `InvalidXML` when the document is not well-formed. `max_depth` above 256 has no
    effect: libxml2 refuses deeper documents on its own. `large_text` allows a single
    text node over 10 MB (attachments in base64), still within `max_bytes`.
    """
    if len(data) > max_bytes:
        raise UnsafeXML(f"the document is {len(data)} bytes, more than the {max_bytes} allowed")
    _check_prolog(data)

    parser = _pull_parser(large_text)
    depth = 0
    elements = 0

    def check_events() -> None:
        nonlocal depth, elements
        for event, node in parser.read_events():
            if event == "start":
                depth += 1
                elements += 1
                if depth > max_depth:
                    raise UnsafeXML(
                        f"nesting deeper than {max_depth} levels at line {node.sourceline}"
                    )
                if elements > max_elements:
                    raise UnsafeXML(
                        f"more than {max_elements} elements (the limit was reached at line "
                        f"{node.sourceline})"
                    )
            elif event == "end":
                depth -= 1
            else:  # "pi"
                target = getattr(node, "target", "?")
                raise UnsafeXML(
                    f"the document contains a processing instruction (<?{target} ...?>) "
                    f"at line {node.sourceline}; processing instructions are refused"
                )

    try:
        for start in range(0, len(data), _CHUNK):
            parser.feed(data[start : start + _CHUNK])
            check_events()
        root = parser.close()
        check_events()
    except etree.XMLSyntaxError as e:
        check_events()  # a limit crossed before the error is the better explanation
        if "Excessive depth" in str(e):
            raise UnsafeXML(
                f"nesting deeper than {_LIBXML_MAX_DEPTH} levels at line {e.lineno}"
            ) from None
        raise InvalidXML(f"the document is not well-formed XML: {_syntax_error(data, e)}") from None
    if root.getroottree().docinfo.doctype:  # unreachable after _check_prolog; kept on purpose
        raise UnsafeXML("the document declares a DTD (<!DOCTYPE ...>); DTDs are refused")
    return root


class _Discard:
    """A parser target that builds nothing: for re-reading a broken document."""

    def start(self, tag: str, attrib: dict[str, str], /) -> None:
        pass

    def end(self, tag: str, /) -> None:
        pass

    def data(self, data: str, /) -> None:
        pass

    def comment(self, text: str, /) -> None:
        pass

    def pi(self, target: str, data: str, /) -> None:
        pass

    def start_ns(self, prefix: str, uri: str, /) -> None:
        pass

    def end_ns(self, prefix: str, /) -> None:
        pass

    def doctype(self, root: str | None, public: str | None, system: str | None, /) -> None:
        pass

    def close(self) -> None:
        pass


def _syntax_error(data: bytes, error: etree.XMLSyntaxError) -> str:
    """The first well-formedness error, stated precisely. The pull parser sometimes
    reports a later symptom instead (with entities unresolved, an undefined `&name;`
    surfaces as "no element found"), so the bytes are read once more, building nothing,
    by a parser that stops at the first error."""
    parser = etree.XMLParser(
        target=_Discard(),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )
    try:
        etree.fromstring(data, parser)
    except etree.XMLSyntaxError as first:
        error = first
    return re.sub(r"\s+,", ",", " ".join(str(error.msg).split()))


def _check_prolog(data: bytes) -> None:
    """Read the prolog (everything before the root element) in the document's encoding
    and refuse a DOCTYPE, processing instructions, and encodings that could disguise
    markup from this check."""
    codec, bom, family = _detect_encoding(data)
    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    text = ""
    offset = len(bom)
    final = False
    size = 4096
    while True:
        chunk = data[offset : offset + size]
        offset += len(chunk)
        final = offset >= len(data)
        text += decoder.decode(chunk, final=final)
        if _scan_prolog(text, family=family, final=final):
            return
        size = min(size * 2, _CHUNK * 16)


def _detect_encoding(data: bytes) -> tuple[str, bytes, str]:
    """(Python codec to read the prolog with, byte order mark, family)."""
    if data.startswith((b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")) or data.startswith(
        (b"\x00\x00\x00\x3c", b"\x3c\x00\x00\x00")
    ):
        raise InvalidXML("UTF-32 documents are not accepted; send UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8", b"\xef\xbb\xbf", "utf-8"
    if data.startswith(b"\xfe\xff"):
        return "utf-16-be", b"\xfe\xff", "utf-16"
    if data.startswith(b"\xff\xfe"):
        return "utf-16-le", b"\xff\xfe", "utf-16"
    if data.startswith(b"\x00\x3c\x00\x3f"):
        return "utf-16-be", b"", "utf-16"
    if data.startswith(b"\x3c\x00\x3f\x00"):
        return "utf-16-le", b"", "utf-16"
    if data.startswith(b"\x4c\x6f\xa7\x94"):
        raise InvalidXML("EBCDIC documents are not accepted; send UTF-8")
    # Everything else is read as ASCII-compatible bytes: the markup of the prolog is
    # ASCII, and latin-1 maps every byte to one character, so positions stay exact.
    return "latin-1", b"", "ascii"


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _scan_prolog(text: str, *, family: str, final: bool) -> bool:
    """True once the root element's start is reached with nothing refused on the way;
    False when more text is needed. Raises on anything refused."""
    pos = 0
    if text.startswith("<?xml") and (len(text) < 6 or text[5] in _WHITESPACE + "?"):
        end = text.find("?>")
        if end < 0:
            return _need_more(final, "the XML declaration is not closed")
        _check_declared_encoding(text[: end + 2], family)
        pos = end + 2
    while True:
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        if not final and len(text) - pos < _LOOKAHEAD:
            return False  # a construct may be cut at the end of what was decoded so far
        if pos >= len(text):
            raise InvalidXML("the document is empty: there is no root element")
        if text.startswith("<!--", pos):
            end = text.find("-->", pos + 4)
            if end < 0:
                return _need_more(final, f"a comment at line {_line(text, pos)} is not closed")
            pos = end + 3
        elif text.startswith("<", pos) and not text.startswith(("<!", "<?"), pos):
            return True  # the root element's start tag
        else:
            raise _refused(text, pos)


def _refused(text: str, pos: int) -> UnsafeXML | InvalidXML:
    """Why the prolog markup (or non-markup) at `pos` is refused."""
    line = _line(text, pos)
    if text.startswith("<!DOCTYPE", pos):
        return UnsafeXML(
            f"the document declares a DTD (<!DOCTYPE ...>) at line {line}; DTDs are refused"
        )
    if text.startswith("<?", pos):
        target = re.match(r"<\?([^\s?]*)", text[pos : pos + _LOOKAHEAD])
        name = target.group(1) if target else ""
        if name == "xml":
            return InvalidXML(
                f"an XML declaration at line {line} is not at the very start of the document"
            )
        return UnsafeXML(
            f"the document contains a processing instruction (<?{name} ...?>) at line "
            f"{line}; processing instructions are refused"
        )
    if text.startswith("<!", pos):
        return InvalidXML(
            f"unexpected markup {text[pos : pos + 12]!r} before the root element at line {line}"
        )
    return InvalidXML(
        f"the document is not XML: {text[pos : pos + 12]!r} at line {line} where markup was "
        "expected"
    )


def _need_more(final: bool, problem: str) -> bool:
    if final:
        raise InvalidXML(f"the document is not well-formed XML: {problem}")
    return False


def _check_declared_encoding(declaration: str, family: str) -> None:
    found = _ENCODING_DECL.search(declaration)
    if found is None:
        return
    declared = found.group(1) if found.group(1) is not None else found.group(2)
    allowed = {"utf-16": _UTF16, "utf-8": _UTF8}.get(family, _ASCII_COMPATIBLE)
    if not allowed.fullmatch(declared):
        raise InvalidXML(
            f"the document declares the encoding {declared!r}, which is not accepted here "
            "(or does not match its byte order mark); send UTF-8"
        )
