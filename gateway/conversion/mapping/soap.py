"""SOAP 1.1 and 1.2 envelopes and faults, for adapters to national services.

National services answer in SOAP; provincial systems expect JSON and problem details.
This module builds envelopes around a body element, reads envelopes back (through
`parse_xml`, so every envelope is parsed safely: DTDs, which SOAP forbids anyway,
processing instructions and oversized or overdeep documents are refused), reads
faults of both versions into one `SoapFault`, and turns a provider's fault into a
`Problem` that says whose side the failure is on: a Client/Sender fault means the
request was refused (invalid-message, 400), anything else that the provider failed
(upstream-bad-response, 502).

Fault codes are normalised: a code in the envelope namespace is written bare
("Client", "Sender", "Server", "Receiver", "VersionMismatch", "MustUnderstand",
"DataEncodingUnknown"), any other in Clark notation ("{uri}local"). A SOAP 1.1 dotted
code such as "soap:Client.Authentication" reads as code "Client", subcode
"Authentication". When a fault is written in the other version, Client <-> Sender and
Server <-> Receiver are translated.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from lxml import etree

from gateway.conversion.mapping.xml import XML_NS, iter_elements
from gateway.core.problems import INVALID_MESSAGE, UPSTREAM_BAD_RESPONSE, Problem
from gateway.core.safexml import MAX_BYTES, MAX_DEPTH, MAX_ELEMENTS, InvalidXML, parse_xml

SoapVersion = Literal["1.1", "1.2"]

SOAP11: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12: Final = "http://www.w3.org/2003/05/soap-envelope"
NAMESPACES: Final[dict[str, str]] = {"1.1": SOAP11, "1.2": SOAP12}
_VERSIONS: Final[dict[str, SoapVersion]] = {SOAP11: "1.1", SOAP12: "1.2"}
_PREFIX: Final = "soap"

_CALLER_CODES: Final = frozenset({"Client", "Sender"})
_TO_12: Final = {"Client": "Sender", "Server": "Receiver"}
_TO_11: Final = {"Sender": "Client", "Receiver": "Server"}
_STANDARD_CODES: Final = frozenset(
    {"Client", "Server", "Sender", "Receiver", "VersionMismatch", "MustUnderstand"}
) | {"DataEncodingUnknown"}
_MAX_REASON: Final = 500  # characters of a provider's fault reason quoted to the caller
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class SoapFault:
    code: str  # "Client"/"Sender"/"Server"/"Receiver"/... or "{uri}local"
    reason: str
    detail: etree._Element | None = None  # the <detail>/<Detail> element itself
    subcode: str | None = None


@dataclass(frozen=True, slots=True)
class SoapMessage:
    version: SoapVersion
    header: list[etree._Element]  # the header blocks, children of <Header>
    body: etree._Element | None  # the one child of <Body>; None when empty or a fault
    fault: SoapFault | None


# --- building --------------------------------------------------------------------------


def envelope(
    body: etree._Element | None,
    *,
    version: SoapVersion,
    header: Sequence[etree._Element] = (),
) -> bytes:
    """A UTF-8 envelope around (copies of) `body` and the `header` blocks. The caller's
    elements are copied, not moved out of their trees."""
    ns = _namespace(version)
    root = etree.Element(f"{{{ns}}}Envelope", nsmap={_PREFIX: ns})
    if header:
        head = etree.SubElement(root, f"{{{ns}}}Header")
        for block in header:
            head.append(_copy(block))
    container = etree.SubElement(root, f"{{{ns}}}Body")
    if body is not None:
        container.append(_copy(body))
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def _copy(element: etree._Element) -> etree._Element:
    clone = copy.deepcopy(element)
    clone.tail = None
    return clone


def _namespace(version: str) -> str:
    try:
        return NAMESPACES[version]
    except KeyError:
        raise ValueError(f"SOAP version must be '1.1' or '1.2', not {version!r}") from None


def content_type(version: SoapVersion, action: str | None = None) -> dict[str, str]:
    """The HTTP headers announcing an envelope: SOAP 1.1 sends `text/xml` and the action
    in a SOAPAction header (always present, `""` when there is none); SOAP 1.2 sends
    `application/soap+xml` with the action as a media type parameter."""
    _namespace(version)
    if action is not None and (_CONTROL.search(action) or any(c in action for c in '"\\\r\n')):
        raise ValueError(f"the SOAP action {action!r} cannot be sent in a header")
    if version == "1.1":
        return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action or ""}"'}
    value = "application/soap+xml; charset=utf-8"
    if action:
        value += f'; action="{action}"'
    return {"Content-Type": value}


def fault_envelope(fault: SoapFault, version: SoapVersion, *, lang: str = "en") -> bytes:
    """An envelope carrying `fault` in the given version's form (`lang` is the xml:lang
    SOAP 1.2 requires on the reason text)."""
    ns = _namespace(version)
    body = etree.Element(f"{{{ns}}}Fault", nsmap={_PREFIX: ns})
    code = fault.code
    if version == "1.1":
        code = _TO_11.get(code, code)
        value = code
        if fault.subcode and code in _STANDARD_CODES:
            value = f"{code}.{_local(fault.subcode)}"  # the 1.1 way to be more specific
        _qname_element(body, "faultcode", value)
        etree.SubElement(body, "faultstring").text = fault.reason
        if fault.detail is not None:
            _copy_detail(fault.detail, etree.SubElement(body, "detail"))
    else:
        code = _TO_12.get(code, code)
        code_element = etree.SubElement(body, f"{{{ns}}}Code")
        _qname_element(code_element, f"{{{ns}}}Value", code)
        if fault.subcode:
            subcode = etree.SubElement(code_element, f"{{{ns}}}Subcode")
            _qname_element(subcode, f"{{{ns}}}Value", fault.subcode)
        reason = etree.SubElement(body, f"{{{ns}}}Reason")
        text = etree.SubElement(reason, f"{{{ns}}}Text")
        text.set(f"{{{XML_NS}}}lang", lang)
        text.text = fault.reason
        if fault.detail is not None:
            _copy_detail(fault.detail, etree.SubElement(body, f"{{{ns}}}Detail"))
    return envelope(body, version=version)


def _standard(code: str) -> bool:
    """A code of the envelope namespace, possibly made specific the SOAP 1.1 way."""
    return code.split(".", 1)[0] in _STANDARD_CODES


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _qname_element(parent: etree._Element, tag: str, code: str) -> None:
    """A child whose text is the QName `code`: a standard code in the envelope
    namespace, "{uri}local" with a prefix declared for it, anything else as written."""
    if _standard(code):
        etree.SubElement(parent, tag).text = f"{_PREFIX}:{code}"
    elif code.startswith("{") and "}" in code:
        uri, local = code[1:].split("}", 1)
        etree.SubElement(parent, tag, nsmap={"f": uri}).text = f"f:{local}"
    else:
        etree.SubElement(parent, tag).text = code


def _copy_detail(source: etree._Element, target: etree._Element) -> None:
    target.text = source.text
    for child in source:
        target.append(copy.deepcopy(child))  # with its tail: detail may be mixed content


# --- reading ---------------------------------------------------------------------------


def parse_envelope(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_elements: int = MAX_ELEMENTS,
    large_text: bool = False,
) -> SoapMessage:
    """Read an envelope of either version (told apart by its namespace). Raises
    `UnsafeXML`/`InvalidXML` from `parse_xml`, and `InvalidXML` for a document that is
    not a SOAP envelope or a malformed one (no Body, more than one body element, a
    fault without a code)."""
    root = parse_xml(
        data,
        max_bytes=max_bytes,
        max_depth=max_depth,
        max_elements=max_elements,
        large_text=large_text,
    )
    qname = etree.QName(root)
    version = _VERSIONS.get(qname.namespace or "")
    if qname.localname != "Envelope" or version is None:
        if qname.localname == "Envelope":
            raise InvalidXML(
                f"the Envelope is in the namespace {qname.namespace!r}, which is neither "
                f"SOAP 1.1 ({SOAP11}) nor SOAP 1.2 ({SOAP12})"
            )
        raise InvalidXML(
            f"not a SOAP envelope: the root element is {qname.text}, not a SOAP 1.1 or 1.2 Envelope"
        )
    ns = NAMESPACES[version]
    parts = list(iter_elements(root))
    header: list[etree._Element] = []
    if parts and parts[0].tag == f"{{{ns}}}Header":
        header = list(iter_elements(parts.pop(0)))
    if not parts or parts[0].tag != f"{{{ns}}}Body":
        found = etree.QName(parts[0]).text if parts else "nothing"
        raise InvalidXML(
            f"the SOAP {version} Envelope must contain a Body (after an optional Header); "
            f"found {found}"
        )
    container = parts.pop(0)
    if parts:  # SOAP 1.2 forbids any; WS-I Basic Profile forbids them in 1.1 too
        raise InvalidXML(
            f"unexpected {etree.QName(parts[0]).text} after the Body of the SOAP {version} Envelope"
        )
    entries = list(iter_elements(container))
    if len(entries) > 1:
        raise InvalidXML(
            f"the SOAP Body holds {len(entries)} elements ({etree.QName(entries[0]).text}, "
            f"{etree.QName(entries[1]).text}, ...); one is expected"
        )
    if not entries:
        return SoapMessage(version, header, None, None)
    if entries[0].tag == f"{{{ns}}}Fault":
        fault = _fault11(entries[0]) if version == "1.1" else _fault12(entries[0], ns)
        return SoapMessage(version, header, None, fault)
    return SoapMessage(version, header, entries[0], None)


def _children(element: etree._Element, local: str, *namespaces: str | None) -> list[etree._Element]:
    return [
        c
        for c in iter_elements(element)
        if etree.QName(c).localname == local and etree.QName(c).namespace in namespaces
    ]


def _fault11(fault: etree._Element) -> SoapFault:
    # The children are unqualified; some toolkits qualify them, which is tolerated.
    codes = _children(fault, "faultcode", None, SOAP11)
    if not codes or not (codes[0].text or "").strip():
        raise InvalidXML("the SOAP 1.1 Fault has no faultcode")
    code = _resolve(codes[0], SOAP11)
    subcode = None
    if _standard(code) and "." in code:
        code, subcode = code.split(".", 1)
    reasons = _children(fault, "faultstring", None, SOAP11)
    details = _children(fault, "detail", None, SOAP11)
    return SoapFault(
        code=code,
        reason=(reasons[0].text or "").strip() if reasons else "",
        detail=details[0] if details else None,
        subcode=subcode,
    )


def _fault12(fault: etree._Element, ns: str) -> SoapFault:
    codes = _children(fault, "Code", ns)
    values = _children(codes[0], "Value", ns) if codes else []
    if not values or not (values[0].text or "").strip():
        raise InvalidXML("the SOAP 1.2 Fault has no Code/Value")
    subcode = None
    subcodes = _children(codes[0], "Subcode", ns)
    if subcodes:
        subvalues = _children(subcodes[0], "Value", ns)
        if subvalues and (subvalues[0].text or "").strip():
            subcode = _resolve(subvalues[0], ns)
    reasons = _children(fault, "Reason", ns)
    texts = _children(reasons[0], "Text", ns) if reasons else []
    details = _children(fault, "Detail", ns)
    return SoapFault(
        code=_resolve(values[0], ns),
        reason=(texts[0].text or "").strip() if texts else "",
        detail=details[0] if details else None,
        subcode=subcode,
    )


def _resolve(element: etree._Element, envelope_ns: str) -> str:
    """The QName in `element`'s text, normalised: bare in the envelope namespace (or
    a standard code left unqualified), "{uri}local" in another namespace, as written
    when its prefix is not declared."""
    text = (element.text or "").strip()
    prefix, _, local = text.rpartition(":")
    if not prefix and _standard(local):
        return local  # a common slip: "Client" unqualified
    uri = element.nsmap.get(prefix or None)
    if uri is None:
        return local if not prefix else text
    if uri == envelope_ns:
        return local
    return f"{{{uri}}}{local}"


# --- problems --------------------------------------------------------------------------


def fault_of(
    data: bytes, *, max_bytes: int = MAX_BYTES, large_text: bool = False
) -> SoapFault | None:
    """The fault an answer carries, or None when it is no SOAP envelope or no fault (read
    as safely as `parse_envelope` reads it). For an adapter's `upstream_failed`, which
    must not raise."""
    try:
        return parse_envelope(data, max_bytes=max_bytes, large_text=large_text).fault
    except ValueError:  # UnsafeXML, InvalidXML
        return None


def is_caller_fault(fault: SoapFault) -> bool:
    """A Client (1.1) or Sender (1.2) fault: the provider refused the request, it did not
    fail."""
    return fault.code in _CALLER_CODES


def fault_to_problem(fault: SoapFault, *, service: str) -> Problem:
    """The provider's fault as a problem for the caller. A Client/Sender fault says the
    request was at fault: invalid-message (400). Anything else (Server/Receiver,
    VersionMismatch, MustUnderstand, codes of the provider's own) is the provider's
    or the gateway's envelope: upstream-bad-response (502)."""
    reason = _CONTROL.sub(" ", fault.reason)
    if len(reason) > _MAX_REASON:
        reason = reason[:_MAX_REASON] + "…"
    code = fault.code + (f" ({fault.subcode})" if fault.subcode else "")
    extension = {"code": fault.code, "subcode": fault.subcode, "reason": reason}
    if fault.code in _CALLER_CODES:
        return Problem(
            INVALID_MESSAGE,
            f"the service {service} refused the request with a SOAP fault {code}: {reason}",
            soap_fault=extension,
        )
    return Problem(
        UPSTREAM_BAD_RESPONSE,
        f"the service {service} answered with a SOAP fault {code}: {reason}",
        soap_fault=extension,
    )
