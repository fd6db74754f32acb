"""Safe XML parsing and JSON <-> XML conversion for the gateway's adapters.

National services speak XML (edXML, SOAP); provincial systems speak JSON. Every XML
document the gateway reads comes from a party it does not control, so parsing is safe by
default rather than by configuration:

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

`xml_to_data` / `data_to_xml` convert between element trees and plain data with a
stable shape a JSON Schema can describe: names written with the caller's prefixes,
attributes as "@name", text as the value (or "#text"), repeated elements as lists.

Errors are `UnsafeXML` (a hostile construct) or `InvalidXML` (not well-formed, or not
the document expected); both are `ValueError`s with a message a person can act on, for
the caller to turn into a problem (invalid-message for a caller's document,
upstream-bad-response for a provider's).
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Iterator, Mapping, Set
from typing import Any, Final

from lxml import etree

MAX_BYTES: Final = 10 * 1024 * 1024
MAX_DEPTH: Final = 64
MAX_ELEMENTS: Final = 200_000

XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS: Final = "http://www.w3.org/XML/1998/namespace"
_XSI_NIL: Final = f"{{{XSI}}}nil"

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
        elif text.startswith("<!DOCTYPE", pos):
            raise UnsafeXML(
                f"the document declares a DTD (<!DOCTYPE ...>) at line {_line(text, pos)}; "
                "DTDs are refused"
            )
        elif text.startswith("<?", pos):
            target = re.match(r"<\?([^\s?]*)", text[pos : pos + _LOOKAHEAD])
            name = target.group(1) if target else ""
            if name == "xml":
                raise InvalidXML(
                    f"an XML declaration at line {_line(text, pos)} is not at the very "
                    "start of the document"
                )
            raise UnsafeXML(
                f"the document contains a processing instruction (<?{name} ...?>) at line "
                f"{_line(text, pos)}; processing instructions are refused"
            )
        elif text.startswith("<!", pos):
            raise InvalidXML(
                f"unexpected markup {text[pos : pos + 12]!r} before the root element at "
                f"line {_line(text, pos)}"
            )
        elif text.startswith("<", pos):
            return True
        else:
            raise InvalidXML(
                f"the document is not XML: {text[pos : pos + 12]!r} at line "
                f"{_line(text, pos)} where markup was expected"
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


# --- element tree -> data --------------------------------------------------------------


def _reverse(namespaces: Mapping[str, str]) -> dict[str, str]:
    for prefix in namespaces:
        if not prefix or ":" in prefix or prefix.startswith("{"):
            raise ValueError(f"namespace prefix {prefix!r} is not usable; use a non-empty NCName")
    reverse = {XML_NS: "xml"}
    for prefix, uri in namespaces.items():
        reverse.setdefault(uri, prefix)
    return reverse


def _name(qname: str, reverse: Mapping[str, str]) -> str:
    if not qname.startswith("{"):
        return qname
    uri, local = qname[1:].split("}", 1)
    prefix = reverse.get(uri)
    return f"{prefix}:{local}" if prefix is not None else qname


def xml_to_data(
    element: etree._Element,
    *,
    namespaces: Mapping[str, str],
    lists: Set[str] = frozenset(),
) -> dict[str, Any]:
    """`{name: value}` for the element. Names use the given prefixes ("edXML:From"), or
    Clark notation ("{uri}local") for a namespace without one; attributes are "@name".
    A value is the element's text (a string) when it has neither attributes nor child
    elements, None for an empty element with xsi:nil="true", else a dict of attributes,
    children and "#text". Repeated children become lists, and so do children named in
    `lists` even when there is only one: a schema needs a stable shape. Comments are
    dropped; text between child elements is joined into "#text" (mixed content does
    not keep its order).
    """
    reverse = _reverse(namespaces)
    return {_name(_tag(element), reverse): _value(element, reverse, lists)}


def _tag(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        raise InvalidXML("expected an element, not a comment or processing instruction")
    return tag


def _value(element: etree._Element, reverse: Mapping[str, str], lists: Set[str]) -> Any:
    children = [c for c in element if isinstance(c.tag, str)]
    text = (element.text or "") + "".join(c.tail or "" for c in element)
    attributes = dict(element.attrib)
    nil = len(attributes) == 1 and attributes.get(_XSI_NIL) in ("true", "1")
    if nil and not children and not text:
        return None
    if not children and not attributes:
        return text
    value: dict[str, Any] = {"@" + _name(k, reverse): v for k, v in attributes.items()}
    grouped: dict[str, list[Any]] = {}
    for child in children:
        grouped.setdefault(_name(_tag(child), reverse), []).append(_value(child, reverse, lists))
    for name, items in grouped.items():
        value[name] = items if len(items) > 1 or name in lists else items[0]
    if (children and text.strip()) or (not children and text):
        value["#text"] = text
    return value


# --- data -> element tree --------------------------------------------------------------


def data_to_xml(
    data: Mapping[str, Any],
    *,
    namespaces: Mapping[str, str],
    root: str | None = None,
) -> etree._Element:
    """The inverse of `xml_to_data`. With `root`, `data` is the content of an element
    named `root`; without it, `data` is `{root name: content}`. The root declares every
    given namespace with its prefix (plus xsi when a value is None). Values: str is
    text; int/float/bool their text ("true"/"false", "INF", "NaN"); None an empty
    element with xsi:nil="true"; a list repeats the element; a dict holds "@attributes",
    "#text" and children. Raises ValueError naming the path of anything unusable.
    """
    if root is None:
        if len(data) != 1:
            raise ValueError(
                f"the data must have exactly one key, the root element's name (it has "
                f"{len(data)}), or pass root="
            )
        ((root, content),) = data.items()
    else:
        content = data
    if isinstance(content, list):
        raise ValueError(f"/{root}: the root element cannot be a list")
    nsmap: dict[str | None, str] = {prefix: uri for prefix, uri in namespaces.items()}
    _reverse(namespaces)  # validates the prefixes
    if _has_none(content) and XSI not in namespaces.values() and "xsi" not in namespaces:
        nsmap["xsi"] = XSI
    element = _element(None, root, namespaces, f"/{root}", nsmap)
    _fill(element, content, namespaces, f"/{root}")
    return element


def _has_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, Mapping):
        return any(_has_none(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_none(v) for v in value)
    return False


def _clark(name: str, namespaces: Mapping[str, str], path: str) -> str:
    if name.startswith("{"):
        if "}" not in name:
            raise ValueError(f"{path}: {name!r} is not a valid name")
        return name
    if ":" in name:
        prefix, local = name.split(":", 1)
        uri = XML_NS if prefix == "xml" else namespaces.get(prefix)
        if uri is None:
            known = ", ".join(sorted(namespaces)) or "none"
            raise ValueError(
                f"{path}: the prefix {prefix!r} of {name!r} is not a known namespace "
                f"prefix (known: {known})"
            )
        return f"{{{uri}}}{local}"
    return name


def _element(
    parent: etree._Element | None,
    name: str,
    namespaces: Mapping[str, str],
    path: str,
    nsmap: dict[str | None, str] | None = None,
) -> etree._Element:
    tag = _clark(name, namespaces, path)
    try:
        if parent is None:
            return etree.Element(tag, nsmap=nsmap)
        return etree.SubElement(parent, tag)
    except ValueError:
        raise ValueError(f"{path}: {name!r} is not a valid XML element name") from None


def _text(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "INF" if value > 0 else "-INF"
        return repr(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"{path}: a {type(value).__name__} cannot be written as XML text")


def _set_text(element: etree._Element, value: Any, path: str) -> None:
    try:
        element.text = _text(value, path)
    except ValueError as e:
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: the text is not allowed in XML ({e})") from None


def _fill(element: etree._Element, value: Any, namespaces: Mapping[str, str], path: str) -> None:
    if value is None:
        element.set(_XSI_NIL, "true")
        return
    if not isinstance(value, Mapping):
        _set_text(element, value, path)
        return
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{path}: {key!r} is not a usable name")
        here = f"{path}/{key}"
        if key == "#text":
            _set_text(element, item, here)
        elif key.startswith("@"):
            if item is None:
                continue
            name = _clark(key[1:], namespaces, here)
            try:
                element.set(name, _text(item, here))
            except ValueError as e:
                if str(e).startswith(here):
                    raise
                raise ValueError(f"{here}: not a valid attribute ({e})") from None
        elif isinstance(item, list):
            for i, entry in enumerate(item):
                if isinstance(entry, list):
                    raise ValueError(f"{here}/{i}: a list inside a list has no XML form")
                _fill(_element(element, key, namespaces, here), entry, namespaces, f"{here}/{i}")
        else:
            _fill(_element(element, key, namespaces, here), item, namespaces, here)


def to_bytes(element: etree._Element, *, declaration: bool = True) -> bytes:
    """The element serialised as UTF-8 (without its tail), with an XML declaration
    unless `declaration` is False."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=declaration, with_tail=False)


def iter_elements(element: etree._Element) -> Iterator[etree._Element]:
    """Child elements only: comments and processing instructions skipped."""
    return (child for child in element if isinstance(child.tag, str))
