"""Schema texts: parsing, canonical form, and compiled validators.

JSON Schema is validated with jsonschema-rs, the fastest of the maintained Python
validators on our messages (see bench/validation.py), with remote `$ref` retrieval
disabled: a registry must never fetch from the network. XML Schema (for SOAP and edXML
services) is validated with lxml, its documents parsed without DTDs, entities or network.
Validators are compiled when configuration loads, never per request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema_rs
import orjson
from lxml import etree

from gateway.core.safexml import InvalidXML, UnsafeXML, parse_xml

SCHEMA_TYPES = ("JSON", "XML")
MAX_ERRORS = 20  # a broken message lists this many errors at most


class InvalidSchema(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class MessageError:
    pointer: str  # JSON Pointer into the message (JSON) or element path (XML)
    detail: str


class Validator(Protocol):
    def errors(self, body: bytes) -> list[MessageError]:
        """Empty when the message is valid."""
        ...


def _no_remote(uri: str) -> Any:
    raise InvalidSchema(f"remote references are not allowed ({uri}); inline them under $defs")


def _pointer(path: list[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


@dataclass(frozen=True, slots=True)
class ParsedSchema:
    schema_type: str
    canonical: str
    fingerprint: str
    document: Any  # the parsed JSON Schema, or the XSD as an lxml tree


def parse(schema_type: str, text: str) -> ParsedSchema:
    if schema_type not in SCHEMA_TYPES:
        raise InvalidSchema(f"schemaType must be one of {list(SCHEMA_TYPES)}, not {schema_type!r}")
    if schema_type == "JSON":
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise InvalidSchema(f"not JSON: {e}") from None
        if not isinstance(document, dict | bool):
            raise InvalidSchema("a JSON Schema is an object or a boolean")
        try:
            jsonschema_rs.meta.validate(document)
            jsonschema_rs.validator_for(document, retriever=_no_remote)
        except (jsonschema_rs.ValidationError, ValueError) as e:
            raise InvalidSchema(f"not a valid JSON Schema: {str(e).splitlines()[0]}") from None
        canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()
    else:
        tree = _xml_schema_document(text)
        document = tree
        try:
            canonical = etree.tostring(tree, method="c14n").decode()
        except etree.C14NError as e:  # pragma: no cover - a parsed safe document serialises
            raise InvalidSchema(f"not a valid XML Schema: {e}") from None
    return ParsedSchema(
        schema_type, canonical, hashlib.sha256(canonical.encode()).hexdigest(), document
    )


_XS = "{http://www.w3.org/2001/XMLSchema}"
# Elements that pull in other schema documents: by file or URL, so never allowed here.
_EXTERNAL = tuple(_XS + name for name in ("include", "import", "redefine", "override"))


def _xml_schema_document(text: str) -> Any:
    """An XSD parsed by the hardened parser (no DTD, so no entities), standing alone: a
    schema that names another document by `schemaLocation` would make the registry read
    a file of the gateway host or fetch a URL, and is refused like a remote `$ref`."""
    try:
        tree = parse_xml(text.encode("utf-8"))
    except (UnsafeXML, InvalidXML) as e:
        raise InvalidSchema(f"not a valid XML Schema: {e}") from None
    for element in tree.iter(*_EXTERNAL):
        location = element.get("schemaLocation")
        if location is not None:
            raise InvalidSchema(
                f"external schema documents are not allowed ({str(element.tag)[len(_XS) :]} "
                f"schemaLocation={location[:200]!r}); put their types in this schema"
            )
    try:
        etree.XMLSchema(tree)
    except etree.XMLSchemaParseError as e:
        raise InvalidSchema(f"not a valid XML Schema: {e}") from None
    return tree


class JsonValidator:
    def __init__(self, schema: Any) -> None:
        self._validator = jsonschema_rs.validator_for(schema, retriever=_no_remote)

    def errors(self, body: bytes) -> list[MessageError]:
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return [MessageError("", f"the body is not JSON: {e}")]
        if self._validator.is_valid(message):  # the fast path: no error objects built
            return []
        found = []
        for error in self._validator.iter_errors(message):
            found.append(MessageError(_pointer(error.instance_path), error.message))
            if len(found) >= MAX_ERRORS:
                break
        return found


class XmlValidator:
    def __init__(self, schema_tree: Any) -> None:
        self._schema = etree.XMLSchema(schema_tree)

    def errors(self, body: bytes) -> list[MessageError]:
        # The hardened parser: a DTD is refused before libxml2 sees it (no entity
        # tricks), depth and element count are limited while parsing, so a hostile
        # document costs a few kilobytes of reading, not memory.
        try:
            doc = parse_xml(body)
        except UnsafeXML as e:
            return [MessageError("", f"the document is refused: {e}")]
        except InvalidXML as e:
            return [MessageError("", str(e))]
        try:
            if self._schema.validate(doc):
                return []
        except etree.XMLSchemaValidateError as e:
            return [MessageError("", f"the document could not be validated: {e}")]
        found = []
        for entry in self._schema.error_log:
            found.append(MessageError(entry.path or "", f"line {entry.line}: {entry.message}"))
            if len(found) >= MAX_ERRORS:
                break
        return found


def compile_validator(parsed: ParsedSchema) -> Validator:
    if parsed.schema_type == "JSON":
        return JsonValidator(parsed.document)
    return XmlValidator(parsed.document)
