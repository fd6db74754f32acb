"""JSON <-> XML conversion for the gateway's adapters.

National services speak XML (edXML, SOAP); provincial systems speak JSON.
`xml_to_data` / `data_to_xml` convert between element trees and plain data with a
stable shape a JSON Schema can describe: names written with the caller's prefixes,
attributes as "@name", text as the value (or "#text"), repeated elements as lists.
With a `default_namespace`, its elements are named without a prefix (`Ten`, not
`dd:Ten`), so that mapping paths need none; an element in no namespace is then "{}Ten".
Documents are parsed by `gateway.core.safexml.parse_xml` (re-exported here), which
refuses DTDs and limits size, depth and element count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Set
from typing import Any, Final

from lxml import etree

from gateway.core.safexml import InvalidXML

XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS: Final = "http://www.w3.org/XML/1998/namespace"
_XSI_NIL: Final = f"{{{XSI}}}nil"


# --- element tree -> data --------------------------------------------------------------


def _reverse(namespaces: Mapping[str, str]) -> dict[str, str]:
    for prefix in namespaces:
        if not prefix or ":" in prefix or prefix.startswith("{"):
            raise ValueError(f"namespace prefix {prefix!r} is not usable; use a non-empty NCName")
    reverse = {XML_NS: "xml"}
    for prefix, uri in namespaces.items():
        reverse.setdefault(uri, prefix)
    return reverse


class _Names:
    """How qualified names are written as data: elements (with the default namespace
    unprefixed) and attributes (an unprefixed attribute is in no namespace)."""

    __slots__ = ("attributes", "default", "elements")

    def __init__(self, namespaces: Mapping[str, str], default: str | None) -> None:
        self.attributes = _reverse(namespaces)
        self.elements = {**self.attributes, default: ""} if default else self.attributes
        self.default = default

    def element(self, qname: str) -> str:
        if not qname.startswith("{"):
            return "{}" + qname if self.default else qname
        return _name(qname, self.elements)

    def attribute(self, qname: str) -> str:
        return _name(qname, self.attributes)


def _name(qname: str, reverse: Mapping[str, str]) -> str:
    if not qname.startswith("{"):
        return qname
    uri, local = qname[1:].split("}", 1)
    prefix = reverse.get(uri)
    if prefix == "":
        return local
    return f"{prefix}:{local}" if prefix is not None else qname


def xml_to_data(
    element: etree._Element,
    *,
    namespaces: Mapping[str, str],
    lists: Set[str] = frozenset(),
    default_namespace: str | None = None,
) -> dict[str, Any]:
    """`{name: value}` for the element. Names use the given prefixes ("edXML:From"), or
    Clark notation ("{uri}local") for a namespace without one; attributes are "@name".
    A value is the element's text (a string) when it has neither attributes nor child
    elements, None for an empty element with xsi:nil="true", else a dict of attributes,
    children and "#text". Repeated children become lists, and so do children named in
    `lists` even when there is only one: a schema needs a stable shape. Comments are
    dropped; text between child elements is joined into "#text" (mixed content does
    not keep its order). Elements in `default_namespace` are named without a prefix,
    and elements in no namespace "{}local" then.

    Example:
        >>> xml_to_data(parse_xml(b'<a xmlns="urn:x"><b>1</b></a>'), namespaces={},
        ...             default_namespace="urn:x")
        {'a': {'b': '1'}}
    """
    names = _Names(namespaces, default_namespace)
    return {names.element(_tag(element)): _value(element, names, lists)}


def _tag(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        raise InvalidXML("expected an element, not a comment or processing instruction")
    return tag


def _value(element: etree._Element, names: _Names, lists: Set[str]) -> Any:
    children = [c for c in element if isinstance(c.tag, str)]
    text = (element.text or "") + "".join(c.tail or "" for c in element)
    attributes = dict(element.attrib)
    nil = len(attributes) == 1 and attributes.get(_XSI_NIL) in ("true", "1")
    if nil and not children and not text:
        return None
    if not children and not attributes:
        return text
    value: dict[str, Any] = {"@" + names.attribute(k): v for k, v in attributes.items()}
    grouped: dict[str, list[Any]] = {}
    for child in children:
        grouped.setdefault(names.element(_tag(child)), []).append(_value(child, names, lists))
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
    default_namespace: str | None = None,
) -> etree._Element:
    """The inverse of `xml_to_data`. With `root`, `data` is the content of an element
    named `root`; without it, `data` is `{root name: content}`. The root declares every
    given namespace with its prefix (plus xsi when a value is None). Values: str is
    text; int/float/bool their text ("true"/"false", "INF", "NaN"); None an empty
    element with xsi:nil="true"; a list repeats the element; a dict holds "@attributes",
    "#text" and children. Raises ValueError naming the path of anything unusable.
    With `default_namespace`, unprefixed element names are in it (declared as the
    root's default namespace); attribute names are not.
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
    if default_namespace:
        nsmap[None] = default_namespace
    names = _Clark(namespaces, default_namespace)
    element = _element(None, root, names, f"/{root}", nsmap)
    _fill(element, content, names, f"/{root}")
    return element


def _has_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, Mapping):
        return any(_has_none(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_none(v) for v in value)
    return False


class _Clark:
    """Names of data written as Clark names: prefixes resolved, unprefixed elements in
    the default namespace."""

    __slots__ = ("default", "namespaces")

    def __init__(self, namespaces: Mapping[str, str], default: str | None) -> None:
        self.namespaces, self.default = namespaces, default

    def element(self, name: str, path: str) -> str:
        if self.default and name.startswith("{}"):
            # lxml would write it unqualified inside xmlns="...", i.e. in the default one.
            raise ValueError(f"{path}: {name!r} (no namespace) cannot be written here")
        if self.default and not name.startswith("{") and ":" not in name:
            return f"{{{self.default}}}{name}"
        return _clark(name, self.namespaces, path)

    def attribute(self, name: str, path: str) -> str:
        return _clark(name, self.namespaces, path)


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
    names: _Clark,
    path: str,
    nsmap: dict[str | None, str] | None = None,
) -> etree._Element:
    tag = names.element(name, path)
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


def _fill(element: etree._Element, value: Any, names: _Clark, path: str) -> None:
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
            _set_attribute(element, key[1:], item, names, here)
        elif isinstance(item, list):
            _fill_repeated(element, key, item, names, here)
        else:
            _fill(_element(element, key, names, here), item, names, here)


def _set_attribute(
    element: etree._Element, name: str, value: Any, names: _Clark, path: str
) -> None:
    """An ``@name`` key: an attribute, left out when the value is None."""
    if value is None:
        return
    clark = names.attribute(name, path)
    try:
        element.set(clark, _text(value, path))
    except ValueError as e:
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: not a valid attribute ({e})") from None


def _fill_repeated(
    parent: etree._Element, key: str, items: list[Any], names: _Clark, path: str
) -> None:
    """A list: one `key` element per entry, in order."""
    for i, entry in enumerate(items):
        if isinstance(entry, list):
            raise ValueError(f"{path}/{i}: a list inside a list has no XML form")
        _fill(_element(parent, key, names, path), entry, names, f"{path}/{i}")


def to_bytes(element: etree._Element, *, declaration: bool = True) -> bytes:
    """The element serialised as UTF-8 (without its tail), with an XML declaration
    unless `declaration` is False."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=declaration, with_tail=False)


def iter_elements(element: etree._Element) -> Iterator[etree._Element]:
    """Child elements only: comments and processing instructions skipped."""
    return (child for child in element if isinstance(child.tag, str))
