"""The XML side of a mapping, declared in the mapping file instead of an adapter's code.

A mapping whose one side is an XML document says so, and how that document reads as
data (gateway/conversion/mapping/xml.py): its namespaces, the default one (whose
elements paths name without a prefix), the elements that are lists even when there is
one, and the root element:

    xml:
      side: from                     # the rules' `from` paths are in the XML document
      root: KetQuaTraCuuThuaDat      # checked when read, added when written
      namespace: urn:lgsp:thua-dat   # the default namespace: paths need no prefix
      namespaces: {gml: "http://www.opengis.net/gml"}   # other prefixes paths may use
      lists: [ChuSuDung]             # a list even when there is one
      envelope: "1.1"                # in a SOAP 1.1 (or 1.2) envelope's Body

The element named by the last step of an `each` rule's XML path is a list without
saying so. With `envelope`, the document is the one element of a SOAP Body: reading an
envelope that carries a fault raises `SoapFaultAnswer` (a MappingError holding the
`SoapFault`, for `soap_fault_to_problem` or the adapter to classify). Prefixes in the
rules' XML paths, the root and the lists are checked when the mapping compiles.

Example:
    >>> side = XmlSide(XmlSpec.model_validate({"side": "from", "root": "A"}), set())
    >>> side.read(b"<A><B> 1 </B></A>")
    {'B': ' 1 '}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.conversion.mapping.soap import SoapFault, SoapVersion, envelope, parse_envelope
from gateway.conversion.mapping.values import MappingError
from gateway.conversion.mapping.xml import data_to_xml, to_bytes, xml_to_data
from gateway.core.safexml import parse_xml

__all__ = ["SoapFaultAnswer", "XmlSide", "XmlSpec"]


class SoapFaultAnswer(MappingError):
    """The provider answered with a SOAP fault instead of the declared document."""

    def __init__(self, fault: SoapFault) -> None:
        super().__init__(f"the provider answered with a SOAP fault {fault.code}: {fault.reason}")
        self.fault = fault


class XmlSpec(BaseModel):
    """The `xml:` block of a mapping."""

    model_config = ConfigDict(extra="forbid")
    side: Literal["from", "to"]
    root: str | None = None
    namespace: str | None = Field(None, min_length=1)
    namespaces: dict[str, str] = {}
    lists: list[str] = []
    declaration: bool = True
    envelope: SoapVersion | None = None

    @model_validator(mode="after")
    def _names(self) -> XmlSpec:
        data_to_xml({}, namespaces=self.namespaces, root="x")  # validates the prefixes
        for name in [*([self.root] if self.root else []), *self.lists]:
            self.check_name(name, f"{name!r}")
        return self

    def check_name(self, name: str, where: str) -> None:
        """Refuse a name whose prefix is not declared (a typo would never match)."""
        if name.startswith("{") or name.startswith("@") or name == "#text":
            return
        prefix, colon, _ = name.partition(":")
        if colon and prefix != "xml" and prefix not in self.namespaces:
            known = ", ".join(sorted(self.namespaces)) or "none"
            raise ValueError(f"{where}: prefix {prefix!r} is not declared (known: {known})")


class XmlSide:
    """Reads and writes the XML document of a mapping's XML side."""

    def __init__(self, spec: XmlSpec, each_lists: Iterable[str]) -> None:
        self.spec = spec
        self.lists = frozenset([*spec.lists, *each_lists])

    def read(self, document: bytes | etree._Element) -> dict[str, Any]:
        """The document as data, parsed safely (bytes); the root's content when the
        mapping declares its root.

        Raises:
            ValueError: the document is not XML, or not safe to parse (InvalidXML,
                UnsafeXML), or `MappingError` when its root is not the declared one.
        """
        element = self._element(document)
        data = xml_to_data(
            element,
            namespaces=self.spec.namespaces,
            lists=self.lists,
            default_namespace=self.spec.namespace,
        )
        root = self.spec.root
        if root is None:
            return data
        [(name, content)] = data.items()
        if name != root:
            raise MappingError(f"the document is <{name}>, not <{root}>")
        if content is None or content == "":
            return {}
        if not isinstance(content, dict):
            raise MappingError(f"<{root}> has text, not child elements")
        return content

    def _element(self, document: bytes | etree._Element) -> etree._Element:
        """The document's element: parsed (safely), and taken out of its SOAP Body."""
        version = self.spec.envelope
        if version is None or not isinstance(document, bytes):
            return parse_xml(document) if isinstance(document, bytes) else document
        message = parse_envelope(document)
        if message.version != version:
            raise MappingError(f"the answer is a SOAP {message.version} envelope, not {version}")
        if message.fault is not None:
            raise SoapFaultAnswer(message.fault)
        if message.body is None:
            raise MappingError("the SOAP Body is empty")
        return message.body

    def write(self, data: dict[str, Any]) -> bytes:
        """The data as an XML document (UTF-8, its root declared or `data`'s one key).

        Raises:
            MappingError: the data has no XML form (the message names the path).
        """
        try:
            element = data_to_xml(
                data,
                namespaces=self.spec.namespaces,
                root=self.spec.root,
                default_namespace=self.spec.namespace,
            )
        except ValueError as e:
            raise MappingError(str(e)) from None
        if self.spec.envelope is not None:
            return envelope(element, version=self.spec.envelope)
        return to_bytes(element, declaration=self.spec.declaration)
