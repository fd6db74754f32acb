"""The adapter SDK: the one module an adapter imports from the gateway.

An adapter converts between the provincial (canonical) form of a service's messages and
the form of the national service behind it (docs/adapters.md). Like a Kong plugin it is
a typed configuration model, validated when policies load, and a small handler with two
hooks run on the exchange path in Envoy's order (request on the way out, response on the
way back)::

    request(outbound, context)           canonical request   -> the provider's request
    response(answer, outbound, context)  the provider's answer -> canonical answer

and, optionally, `upstream_failed(answer, outbound)`: whether an error answer says the
provider's system is failing or is its business answer ("no such record"), before the
upstream's circuit breaker counts it.

Hooks are synchronous and pure CPU: whatever they need (mappings, code lists, XML
namespaces) is compiled in `__init__`, once per configuration, never per exchange. A
hook refuses by raising `Problem` (problem+json to the caller, audited like any other
refusal). Everything a hook uses is exported here; its code stays where it belongs in
the gateway (`gateway.core`, `gateway.conversion.mapping`) and is re-exported, so this
module is the adapters' whole contract with the gateway (an import-linter contract in
pyproject.toml keeps adapters to it). `help(gateway.conversion.sdk)` is the reference.

A lookup of one request and one answer needs none of this: a folder with an
`adapter.yaml` beside its mappings is a declared adapter, no Python
(gateway/conversion/declared.py; `adapters/land_registry/` is the example).

A whole adapter (the bundled ones are under `adapters/<name>/`, docs/adapters.md "Adding an
adapter")::

    from pathlib import Path
    from typing import ClassVar

    from gateway.conversion.sdk import (
        INVALID_MESSAGE, Adapter, AgencyCode, Context, LegacyTextConfig, OutboundRequest,
        Problem, json_object, load_mappings,
    )

    class TaxConfig(LegacyTextConfig):          # `adapter_config`, checked at load
        agency_code: AgencyCode

    class TaxLookup(Adapter[TaxConfig]):
        name: ClassVar[str] = "tax_lookup"      # what a policy's `adapter:` names
        VERSION: ClassVar[str] = "1.0.0"        # recorded in every audit event it converts
        Config: ClassVar[type[TaxConfig]] = TaxConfig

        def __init__(self, config: TaxConfig) -> None:
            super().__init__(config)
            self.to_national = load_mappings(Path(__file__).parent)["request"]

        def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
            message = self.config.text_in(json_object(outbound.body))
            if "taxCode" not in message:
                raise Problem(INVALID_MESSAGE, "A lookup needs taxCode.", pointer="/taxCode")
            ...

    ADAPTER = TaxLookup                         # how the gateway finds the class

Versioning: every adapter says which version of its conversion it is, as `VERSION`, in
semantic versioning (https://semver.org, at most 32 characters). Raise the patch for a
fix that changes no correct exchange (a mapping bug, a clearer problem detail), the minor
for an addition old callers and providers may ignore (an optional field, an endpoint),
the major for a change they see in what they already use (a field renamed or dropped,
another status or code). The gateway records `adapter` and `adapter_version` in the audit
event of every exchange an adapter converts (null for passthrough), inside the hashed
chain: an auditor can tell which conversion produced an answer. A `VERSION` that is not
semantic versioning fails at import, naming the class; the base's "0.0.0" means an
adapter that does not say (every bundled one does).

What is here, by use (each name documented where it is defined, re-exported names in
the reference at the end):

    writing an adapter    Adapter, AdapterConfig, LegacyTextConfig, check_version,
                          MAX_VERSION_LENGTH
    the exchange          OutboundRequest, UpstreamResponse, Context
    refusing              Problem, ProblemType and the problem types adapters raise:
                          INVALID_MESSAGE, INVALID_PARAMETER, INVALID_PATH, INVALID_HEADER,
                          MISSING_ACCOUNTABILITY, METHOD_NOT_ALLOWED, NOT_FOUND,
                          NO_SUCH_RECORD,
                          ACCESS_DENIED, CONFLICT, PAYLOAD_TOO_LARGE, UPSTREAM_BAD_RESPONSE,
                          UPSTREAM_AUTH_FAILED, INTERNAL_ERROR
    mappings              load_mappings, load_code_lists, compile_mapping, CompiledMapping,
                          MappingError, map_strings
    JSON                  json_object
    XML                   parse_xml, xml_to_data, data_to_xml, to_bytes, UnsafeXML, InvalidXML
    SOAP                  soap_envelope, soap_content_type, parse_soap_envelope,
                          soap_fault_to_problem, soap_fault_of, soap_caller_fault,
                          SoapFault, SoapMessage, SoapVersion,
                          SoapFaultAnswer (a mapping's from_xml met a fault; `.fault`)
    legacy text           Encoding, LegacyEncodingError (LegacyTextConfig does the work)
    headers               REQUEST_ID_HEADER, OFFICER_HEADER, PROCEDURE_HEADER, CASE_HEADER,
                          CLIENT_ID_HEADER, CLIENT_AGENCY_HEADER
    identifiers           AgencyCode, DocCode

Reference of the re-exported names
----------------------------------

OutboundRequest(method, path, query, headers, body)
    What goes to the provider; the request hook returns one (a new one, or the one it
    got, changed). `path` is appended to the service's upstream URL (raw,
    percent-encoded), `query` without "?", `headers` a `CIMultiDict[str]`, `body` bytes.
    Example: ``OutboundRequest("POST", "/tra-cuu", "", headers, orjson.dumps(doc))``

UpstreamResponse(status, headers, body, elapsed_ms, attempts=1)
    The provider's answer (or error); the response hook returns the canonical one,
    usually ``dataclasses.replace(answer, status=..., headers=..., body=...)`` so that
    `elapsed_ms` and `attempts` are kept for the audit log.

Context(request_id, client, client_agency, officer, procedure, case, now, service)
    What the exchange tells a hook and a mapping besides the message: the gateway's
    request id, the calling system and its agency code, the accountability headers
    (None when absent), the exchange's start (ISO 8601) and the service it is for
    ("000.00.00.G10/csdlqg-datdai/v1", for messages). Frozen; derive one with
    ``dataclasses.replace(context, request_id=short_id)``.

Problem(ptype, detail, *, headers=None, **extensions)
    Raise it to refuse. `ptype` is one of the problem types above (its slug, HTTP
    status and side are public); `detail` says what is wrong in words a departmental
    developer can act on; `headers` are added to the answer (``{"Allow": "POST"}``);
    `extensions` become members of the problem+json body (``pointer="/fullName"``).
    Example: ``raise Problem(NOT_FOUND, "No dossier 000.00.31.H49-251122-0001.")``
    ProblemType(slug, status, title, side) is the type of the constants.

load_national(folder) -> National | None / National
    The national platform's conventions (docs/adapters.md "The national platform's
    conventions"): the `national:` block of the folder's `national.yaml` over the
    platform's defaults, checked (ValueError naming the file and field). `National`
    answers `check_request_id(id)` (400 invalid-header under `longer: refuse`),
    `request_id(id)` (as sent), `outcome(document, http_status)` (an `Outcome`: `code`,
    `spec` with `outcome`, `status`, `name`, `problem`; `message`; `answered`),
    `failed(document, http_status)` (for upstream_failed) and
    `problem(outcome, http_status, service)`. Pass it to `load_mappings` for the
    `national:` rules. NATIONAL_FILE is the file's name, "national.yaml".
    Example: ``self.national = load_national(FOLDER)``

compile_mapping(spec, code_lists=None, settings=None, national=None) -> CompiledMapping
    Validate and compile one mapping document (the YAML of `mappings/*.yaml`, as data);
    raises ValueError naming the rule and field. The rule kinds are documented in
    gateway/conversion/mapping/engine.py and docs/adapters.md ("The mapping
    reference"); `settings` are what `setting:` rules read. Example:
    ``compile_mapping({"rules": [{"const": code, "to": "/MaDonVi"}]})``

CompiledMapping.apply(source, context=None) -> dict / .reverse(target) -> dict
    Run a mapping forwards (canonical -> national, reading `context` for context
    rules) or backwards (what round-trip tests use). Raise MappingError (a ValueError)
    naming the rule when a required value is missing or a value has no code.
    With an `xml:` block, .from_xml(document, context=None) -> dict reads its XML side
    and .to_xml(data, context=None) -> bytes writes it, whichever way the mapping runs.

map_strings(value, convert) -> value
    `convert` applied to every string of a JSON-like value.
    Example: ``map_strings({"a": [" x "]}, str.strip) == {"a": ["x"]}``

parse_xml(data, *, max_bytes=..., max_depth=..., max_elements=..., large_text=False)
    Parse untrusted XML bytes; return the root element (lxml). Refuses a DTD, processing
    instructions and documents over the limits with UnsafeXML, malformed ones with
    InvalidXML (both ValueError). `large_text` allows one text node over 10 MB
    (base64 attachments). Example: ``root = parse_xml(answer.body)``

xml_to_data(element, *, namespaces, lists=frozenset()) -> dict
    `{root name: value}` with a stable shape: names with the given prefixes, attributes
    "@name", text as the value or "#text", repeated elements as lists, and elements
    named in `lists` a list even when there is one.
    Example: ``xml_to_data(parse_xml(b"<a><b>1</b></a>"), namespaces={}) == {"a": {"b": "1"}}``

data_to_xml(data, *, namespaces, root=None) -> element
    The inverse; with `root`, `data` is the root element's content. None is an empty
    element with xsi:nil="true". Raises ValueError naming the path of a value XML
    cannot carry. Example: ``data_to_xml({"MaSo": "01"}, namespaces={}, root="TraCuu")``

to_bytes(element, *, declaration=True) -> bytes
    The element as UTF-8, with an XML declaration unless `declaration` is False.

soap_envelope(body, *, version, header=()) -> bytes
    A SOAP `version` ("1.1" or "1.2") envelope around a copy of the `body` element and
    the `header` blocks. Example: ``soap_envelope(element, version="1.1")``

soap_content_type(version, action=None) -> dict[str, str]
    The headers that announce an envelope: SOAP 1.1 `text/xml` with a SOAPAction header,
    SOAP 1.2 `application/soap+xml` with the action as a parameter.
    Example: ``headers.update(soap_content_type("1.1", f"{ns}/SendDocument"))``

parse_soap_envelope(data, *, max_bytes=..., large_text=False, ...) -> SoapMessage
    Read an envelope of either version safely (through parse_xml). SoapMessage has
    `version`, `header` (blocks), `body` (the one body element, None for a fault) and
    `fault` (a SoapFault: `code`, `reason`, `detail` element, `subcode`). Raises
    UnsafeXML or InvalidXML. Example: ``message = parse_soap_envelope(answer.body)``

soap_fault_to_problem(fault, *, service) -> Problem
    The general reading of a provider's fault: Client/Sender is the request's fault
    (invalid-message, 400), anything else the provider's (upstream-bad-response, 502).
    Refine it by the fault's detail; document_exchange/faults.py shows how.

soap_fault_of(body, *, max_bytes=..., large_text=False) -> SoapFault | None
    The fault an answer carries; None when the body is no SOAP envelope or holds no
    fault. Never raises: made for `Adapter.upstream_failed`.
    Example: ``fault = soap_fault_of(answer.body)``

soap_caller_fault(fault) -> bool
    A Client (1.1) / Sender (1.2) fault: the provider refused the request, it did not
    fail. Example: ``if fault is not None and soap_caller_fault(fault): return False``

NOT_FOUND, NO_SUCH_RECORD
    Both 404, for a caller to tell apart: NOT_FOUND is a wrong address (an endpoint the
    service does not have), NO_SUCH_RECORD that the provider was asked and answered it
    has no such record (a document, a parcel).

Encoding, LegacyEncodingError
    `Literal["tcvn3", "vni"]`, and the ValueError raised when text has a character the
    legacy encoding cannot carry (LegacyTextConfig.text_out raises it).

The header names
    REQUEST_ID_HEADER "X-Request-Id", OFFICER_HEADER "X-Officer-Id" (MaCanBo),
    PROCEDURE_HEADER "X-Procedure-Code" (MaDVC), CASE_HEADER "X-Case-Number",
    CLIENT_ID_HEADER "X-Client-Id", CLIENT_AGENCY_HEADER "X-Client-Agency". The values
    a hook needs are in `Context` already; the names are for messages and headers.

AgencyCode, DocCode
    Annotated `str` types for configuration models: an agency code (Decision
    20/2020/QĐ-TTg, e.g. "000.00.00.H49", at most 35 characters) and a document-exchange
    code (QCVN 102:2016, "000.00.00.H49"). Example: ``agency_code: AgencyCode``
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Generic, TypeVar

import orjson
import yaml
from pydantic import BaseModel, ConfigDict

from gateway.conversion.mapping import vnencoding
from gateway.conversion.mapping.document import SoapFaultAnswer
from gateway.conversion.mapping.engine import (
    CompiledMapping,
    Context,
    MappingError,
    compile_mapping,
    map_strings,
)
from gateway.conversion.mapping.national import National, Outcome, national_from
from gateway.conversion.mapping.soap import (
    SoapFault,
    SoapMessage,
    SoapVersion,
)
from gateway.conversion.mapping.soap import (
    content_type as soap_content_type,
)
from gateway.conversion.mapping.soap import (
    envelope as soap_envelope,
)
from gateway.conversion.mapping.soap import (
    fault_of as soap_fault_of,
)
from gateway.conversion.mapping.soap import (
    fault_to_problem as soap_fault_to_problem,
)
from gateway.conversion.mapping.soap import (
    is_caller_fault as soap_caller_fault,
)
from gateway.conversion.mapping.soap import (
    parse_envelope as parse_soap_envelope,
)
from gateway.conversion.mapping.vnencoding import Encoding, LegacyEncodingError
from gateway.conversion.mapping.xml import data_to_xml, to_bytes, xml_to_data
from gateway.core.headers import (
    CASE_HEADER,
    CLIENT_AGENCY_HEADER,
    CLIENT_ID_HEADER,
    OFFICER_HEADER,
    PROCEDURE_HEADER,
    REQUEST_ID_HEADER,
)
from gateway.core.identifiers import AgencyCode, DocCode
from gateway.core.messages import OutboundRequest, UpstreamResponse
from gateway.core.problems import (
    ACCESS_DENIED,
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_HEADER,
    INVALID_MESSAGE,
    INVALID_PARAMETER,
    INVALID_PATH,
    METHOD_NOT_ALLOWED,
    MISSING_ACCOUNTABILITY,
    NO_SUCH_RECORD,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    Problem,
    ProblemType,
)
from gateway.core.safexml import InvalidXML, UnsafeXML, parse_xml

__all__ = [
    "ACCESS_DENIED",
    "CASE_HEADER",
    "CLIENT_AGENCY_HEADER",
    "CLIENT_ID_HEADER",
    "CONFLICT",
    "INTERNAL_ERROR",
    "INVALID_HEADER",
    "INVALID_MESSAGE",
    "INVALID_PARAMETER",
    "INVALID_PATH",
    "MAX_VERSION_LENGTH",
    "METHOD_NOT_ALLOWED",
    "MISSING_ACCOUNTABILITY",
    "NATIONAL_FILE",
    "NOT_FOUND",
    "NO_SUCH_RECORD",
    "OFFICER_HEADER",
    "PAYLOAD_TOO_LARGE",
    "PROCEDURE_HEADER",
    "REQUEST_ID_HEADER",
    "UPSTREAM_AUTH_FAILED",
    "UPSTREAM_BAD_RESPONSE",
    "Adapter",
    "AdapterConfig",
    "AgencyCode",
    "CompiledMapping",
    "Context",
    "DocCode",
    "Encoding",
    "InvalidXML",
    "LegacyEncodingError",
    "LegacyTextConfig",
    "MappingError",
    "National",
    "OutboundRequest",
    "Outcome",
    "Problem",
    "ProblemType",
    "SoapFault",
    "SoapFaultAnswer",
    "SoapMessage",
    "SoapVersion",
    "UnsafeXML",
    "UpstreamResponse",
    "check_version",
    "compile_mapping",
    "data_to_xml",
    "json_object",
    "load_code_lists",
    "load_mappings",
    "load_national",
    "map_strings",
    "parse_soap_envelope",
    "parse_xml",
    "soap_caller_fault",
    "soap_content_type",
    "soap_envelope",
    "soap_fault_of",
    "soap_fault_to_problem",
    "to_bytes",
    "xml_to_data",
]

# -- configuration ------------------------------------------------------------------------


class AdapterConfig(BaseModel):
    """Base of adapter configuration models (a service's `adapter_config`).

    A pydantic model, frozen, in which an unknown field is an error: `lgsp policy
    validate` and every configuration load check a service's `adapter_config` against
    its adapter's `Config`, and an error names the service and the field
    (``adapter_config.agency_code: String should match pattern ...``).

    Example:
        >>> class TaxConfig(AdapterConfig):
        ...     agency_code: AgencyCode
        ...     timeout_note: str | None = None
        >>> TaxConfig.model_validate({"agency_code": "000.00.00.H49"}).agency_code
        '000.00.00.H49'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class LegacyTextConfig(AdapterConfig):
    """An `AdapterConfig` with the two settings every bundled adapter offers, for callers
    that still hold Vietnamese text in TCVN3 or VNI (docs/adapters.md):

    Attributes:
        legacy_input: "tcvn3" | "vni" | None. The caller's strings are decoded to Unicode
            NFC by `text_in`; with None they are still normalised to NFC.
        legacy_output: "tcvn3" | "vni" | None. `text_out` encodes the answer's strings
            back for callers that cannot read Unicode; with None it changes nothing.

    Example:
        >>> config = LegacyTextConfig(legacy_input="tcvn3")
        >>> config.text_in({"fullName": "NguyÔn V¨n An"})
        {'fullName': 'Nguyễn Văn An'}
    """

    legacy_input: Encoding | None = None
    legacy_output: Encoding | None = None

    def text_in(self, doc: Any) -> Any:
        """Every string of a JSON-like value as Unicode NFC.

        Args:
            doc: the caller's message, as parsed JSON.
        Returns:
            A copy with every string decoded from `legacy_input` (or NFC-normalised).
        Raises:
            ValueError: a string is not valid text in `legacy_input`.
        """
        if self.legacy_input is None:
            return map_strings(doc, _nfc)
        encoding = self.legacy_input
        return map_strings(doc, lambda t: vnencoding.decode(t, encoding))

    def text_out(self, doc: Any) -> Any:
        """Every string of a JSON-like value in `legacy_output` (the value itself when
        there is none).

        Args:
            doc: the canonical answer, before it is serialised.
        Returns:
            A copy with every string encoded in `legacy_output`.
        Raises:
            LegacyEncodingError: a character has no form in `legacy_output`; answer with
                `Problem(UPSTREAM_BAD_RESPONSE, ...)` naming it.
        """
        if self.legacy_output is None:
            return doc
        encoding = self.legacy_output
        return map_strings(doc, lambda t: vnencoding.encode(t, encoding))


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# -- the adapter --------------------------------------------------------------------------

MAX_VERSION_LENGTH: Final = 32  # the audit store's adapter_version column
# Semantic versioning 2.0.0, the pattern semver.org gives.
_NUMBER = r"(?:0|[1-9][0-9]*)"
_PRE = rf"(?:{_NUMBER}|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
_SEMVER: Final = re.compile(
    rf"{_NUMBER}\.{_NUMBER}\.{_NUMBER}"
    rf"(?:-{_PRE}(?:\.{_PRE})*)?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?"
)


def check_version(version: object, owner: str = "an adapter") -> str:
    """A `VERSION` checked: semantic versioning, at most `MAX_VERSION_LENGTH` characters.

    Args:
        version: the value of an adapter class's `VERSION`.
        owner: what to name in the error (the class).
    Returns:
        `version`, unchanged.
    Raises:
        TypeError: it is not a semantic version string (`Adapter` subclasses are checked
            when they are defined, so a bad one fails at import).

    Example:
        >>> check_version("1.4.0-rc.1")
        '1.4.0-rc.1'
    """
    if (
        not isinstance(version, str)
        or len(version) > MAX_VERSION_LENGTH
        or not _SEMVER.fullmatch(version)
    ):
        raise TypeError(
            f"{owner}.VERSION must be a semantic version such as '1.0.0' (https://semver.org, "
            f"at most {MAX_VERSION_LENGTH} characters), not {version!r}"
        )
    return version


C = TypeVar("C", bound=AdapterConfig)


class Adapter(Generic[C]):
    """Base class of adapters; `passthrough` is this class itself (both hooks return
    their input, and the pipeline skips them).

    A subclass sets three class attributes and overrides the hooks it needs:

    Attributes:
        name: what a policy's `adapter:` names ("population"); unique among the
            installed adapters.
        VERSION: the conversion's semantic version ("1.0.0"), recorded with `name` in
            the audit event of every exchange the adapter converts (see the module
            docstring for when to raise which part). Checked when the class is defined.
        Config: the configuration model, an `AdapterConfig` subclass; name it again as
            the type parameter (``Adapter[TaxConfig]``) so that `self.config` is typed.
        config: the validated configuration of this instance.

    One instance is built per distinct configuration, when the configuration loads, and
    shared by every exchange of the services that use it (concurrently, from one event
    loop): `__init__` compiles, the hooks keep no state between exchanges.

    Example:
        >>> class Echo(Adapter[AdapterConfig]):
        ...     name: ClassVar[str] = "echo"
        ...     VERSION: ClassVar[str] = "1.0.0"
        >>> Echo(AdapterConfig()).request(outbound, Context()) is outbound
        True
    """

    name: ClassVar[str] = "passthrough"
    VERSION: ClassVar[str] = "0.0.0"  # an adapter that does not say
    Config: ClassVar[type[AdapterConfig]] = AdapterConfig

    # Set for each subclass: does it override `upstream_failed`? (The upstream client
    # asks only those, and only about answers that may be failures.)
    judges_failures: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_version(cls.VERSION, cls.__qualname__)
        cls.judges_failures = cls.upstream_failed is not Adapter.upstream_failed

    def __init__(self, config: C) -> None:
        """Compile what the hooks need (mappings, code lists, constants of `config`).

        Args:
            config: the service's `adapter_config`, validated by `Config`.
        Raises:
            ValueError: the configuration cannot be used; the service then refuses its
                exchanges with adapter-unavailable (503) and the message is logged.
        """
        self.config = config

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        """Turn the caller's canonical request into the provider's.

        Runs after the caller was authenticated and authorised, and after its message
        passed the service's canonical request schema, if it has one.

        Args:
            outbound: the request as it would go to the provider: the endpoint `path`
                within the service, the `query`, the forwarded `headers` (request id,
                traceparent, X-Client-Id, accountability headers) and the `body`.
            context: who asks, why, and when (`Context`).
        Returns:
            The request to send (method, path under the upstream URL, query, headers,
            body); the gateway still adds its own authentication to the provider.
        Raises:
            Problem: the request cannot be converted (INVALID_MESSAGE, NOT_FOUND for an
                endpoint the service does not have, METHOD_NOT_ALLOWED, ...).

        Example:
            >>> def request(self, outbound, context):
            ...     doc = self.to_national.apply(json_object(outbound.body), context)
            ...     return OutboundRequest("POST", "/tra-cuu", "", outbound.headers,
            ...                            orjson.dumps(doc))
        """
        return outbound

    def upstream_failed(self, answer: UpstreamResponse, outbound: OutboundRequest) -> bool | None:
        """Does this answer say the provider's system is failing, or is it the provider's
        business answer? Asked before the upstream's circuit breaker and the retries see
        the answer, for answers with a status of 500 or more or one the service's
        `upstream_failure_statuses` lists (502, 503, 504 by default), never for others.

        All the services of an upstream share its breaker: a SOAP fault "no such
        document" (HTTP 500) or a national `MaLoi` "not found" counted as a failure
        would, repeated, stop every other service of the upstream. Read only what tells
        the two apart (a fault's code, `MaLoi`), cheaply; the response hook still
        converts the answer afterwards.

        Args:
            answer: the provider's status, headers and body.
            outbound: the request `request` returned.
        Returns:
            True: the upstream failed (counts against its breaker, may be retried);
            False: a business answer (counts as the provider answering: never retried,
            never opens the breaker); None: the service's `upstream_failure_statuses`
            decide. The base returns None. An exception counts as None (and is a bug).

        Example:
            >>> def upstream_failed(self, answer, outbound):
            ...     fault = soap_fault_of(answer.body)
            ...     if fault is None:
            ...         return None             # not SOAP: by the status
            ...     return not soap_caller_fault(fault)
        """
        return None

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        """Turn the provider's answer (or error) into the canonical answer.

        Runs on every answer the provider gave, success or not, before the service's
        canonical response schema checks a 2xx one. A national service's business
        answers ("not found", "exists but not for you") stay answers, in canonical form.

        Args:
            answer: the provider's status, headers and body (its size and digest are
                already in the audit event).
            outbound: the request `request` returned (to match an echoed request id).
            context: the same `Context` the request hook had.
        Returns:
            The answer for the caller; keep `elapsed_ms` and `attempts`
            (``dataclasses.replace(answer, ...)``).
        Raises:
            Problem: an answer that cannot be understood (UPSTREAM_BAD_RESPONSE), or one
                that says the provider refused the gateway (UPSTREAM_AUTH_FAILED).

        Example:
            >>> def response(self, answer, outbound, context):
            ...     doc = self.to_canonical.apply(json_object(answer.body, "The answer"))
            ...     return dataclasses.replace(answer, body=orjson.dumps(doc))
        """
        return answer


# -- helpers ------------------------------------------------------------------------------


def json_object(body: bytes, what: str = "The request body") -> dict[str, Any]:
    """A JSON object from bytes, or a 400 problem saying what is wrong with it.

    Args:
        body: the bytes (a caller's request body, usually).
        what: how the problem names them ("The status change").
    Returns:
        The parsed object.
    Raises:
        Problem: INVALID_MESSAGE when `body` is not JSON or not a JSON object.

    Example:
        >>> json_object(b'{"personalId": "001099012345"}')
        {'personalId': '001099012345'}
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Problem(INVALID_MESSAGE, f"{what} is not JSON: {e}.") from None
    if not isinstance(value, dict):
        raise Problem(INVALID_MESSAGE, f"{what} must be a JSON object.")
    return value


def load_code_lists(folder: Path) -> dict[str, dict[str, str]]:
    """An adapter folder's code lists: `codes/<name>.yaml`, each a table of codes, keys
    and values read as strings. A mapping rule's `codes: <name>` reads a value as a key
    and writes its value, in the direction the mapping is written (its reverse inverts
    the table).

    Args:
        folder: the adapter's folder (``Path(__file__).resolve().parent``).
    Returns:
        ``{list name: {code: value}}``, by file name without `.yaml`.

    Example:
        >>> load_code_lists(FOLDER)["sex"]        # population's codes/sex.yaml
        {'0': 'unknown', '1': 'male', '2': 'female'}
    """
    code_lists: dict[str, dict[str, str]] = {}
    for path in sorted((folder / "codes").glob("*.yaml")):
        table = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        code_lists[path.stem] = {str(k): str(v) for k, v in table.items()}
    return code_lists


NATIONAL_FILE: Final = "national.yaml"


def load_national(folder: Path) -> National | None:
    """A Python adapter's national conventions: the `national:` block of its folder's
    `national.yaml`, over the platform's (gateway/conversion/mapping/national.py; a
    declared adapter has the block in its `adapter.yaml`).

    Returns:
        The compiled conventions, or None when the folder has no `national.yaml`.
    Raises:
        ValueError: the block is invalid, naming the file and the field.

    Example:
        >>> national = load_national(FOLDER)         # population: longer: refuse
        >>> national.check_request_id(context.request_id)   # 400 invalid-header if > 40
        >>> national.outcome(answer, status).spec.name       # "found", "not_found", ...
    """
    path = folder / NATIONAL_FILE
    if not path.is_file():
        return None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    if not isinstance(document, dict) or set(document) - {"national"}:
        raise ValueError(f"{path}: holds one key, national:")
    return national_from(document.get("national"), str(path))


def load_mappings(
    folder: Path,
    settings: Mapping[str, Any] | None = None,
    national: National | None = None,
) -> dict[str, CompiledMapping]:
    """An adapter folder's mappings, `mappings/<name>.yaml`, compiled with its code lists
    (`load_code_lists`), so that a rule's `codes: sex` finds `codes/sex.yaml`.

    Call it in `__init__`, and do not cache it per folder yourself: the gateway builds
    one instance per configuration and content of the mapping files, so an edited
    mapping is compiled again at the next reload (a per-process cache would keep the old
    one until a restart). A bad mapping then fails when the configuration loads, not on
    an exchange.

    Args:
        folder: the adapter's folder.
        settings: what `setting:` rules read (e.g. ``config.model_dump()``), per
            configuration.
        national: the conventions `national:` rules and `echo: national` use
            (`load_national(folder)`).
    Returns:
        ``{mapping name: CompiledMapping}``, by file name without `.yaml`.
    Raises:
        ValueError: a mapping is invalid; the message names the file, the rule and the
            field.

    Example:
        >>> mappings = load_mappings(Path(__file__).resolve().parent)
        >>> national = mappings["request"].apply(canonical, context)
    """
    code_lists = load_code_lists(folder)
    mappings: dict[str, CompiledMapping] = {}
    for path in sorted((folder / "mappings").glob("*.yaml")):
        try:
            mappings[path.stem] = compile_mapping(
                yaml.safe_load(path.read_text(encoding="utf-8")), code_lists, settings, national
            )
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return mappings
