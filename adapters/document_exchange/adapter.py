"""The document_exchange adapter: provincial JSON endpoints <-> edXML over SOAP.

Endpoints (paths within the service; `{documentId}` percent-encoded in a path segment):

    POST /documents                          SendDocument         201
    GET  /documents/pending?organId=         GetPendingDocuments  200
    GET  /documents/{documentId}?organId=    GetDocument          200
    GET  /documents?documentId=&organId=     GetDocument          200
    GET  /documents/{documentId}/status      GetStatus            200
    GET  /documents/status?documentId=       GetStatus            200
    POST /documents/{documentId}/status      UpdateStatus         200
    POST /documents/status?documentId=       UpdateStatus         200

Why two ways to name a document: edXML document ids contain '/' by convention
("000.00.00.H49,2025/11/22,123/UBND-VP"), and the gateway refuses an encoded '/' (%2F)
in any path, on purpose (an encoded separator once let requests past X-Road's access
check). So an id is named in the path only when it has no '/'; otherwise, and always
safely, in the `documentId` query parameter of the matching collection-level path.
`pending` and `status` are therefore words of the API, never document ids in a path.
Query values are form-encoded: write '+' in an id as %2B (a bare '+' reads as a space).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal
from urllib.parse import parse_qsl, unquote

import orjson
from lxml import etree
from multidict import CIMultiDict
from pydantic import StringConstraints

from adapters.document_exchange.edxml import (
    SERVICE_NS,
    AttachmentsTooLarge,
    ConversionError,
    Edxml,
    ed,
    now_utc,
    parse_moment,
    sender_from_document_id,
    svc,
    vietnam_time,
)
from adapters.document_exchange.faults import fault_problem
from gateway.conversion.mapping import soap
from gateway.conversion.mapping.soap import SoapVersion
from gateway.conversion.sdk import Adapter, Context, LegacyTextConfig
from gateway.core.messages import OutboundRequest, UpstreamResponse
from gateway.core.problems import (
    INVALID_MESSAGE,
    INVALID_PARAMETER,
    INVALID_PATH,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    UPSTREAM_BAD_RESPONSE,
    Problem,
)
from gateway.core.safexml import InvalidXML, UnsafeXML

FOLDER: Final = Path(__file__).resolve().parent
SOAP_PATH: Final = "/soap"  # appended to the service's upstream_path (/edxml/v1)
# A GetDocument answer carries up to 10 MiB of files in base64 (about 14 MB); the
# service's max_response_bytes is the real bound.
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024
MAX_DOCUMENT_ID: Final = 255

DocExchangeCode = Annotated[str, StringConstraints(pattern=r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")]
_ORGAN: Final = re.compile(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}")

ENDPOINTS: Final = (
    "POST /documents, GET /documents/pending?organId=, GET /documents/{documentId} or "
    "/documents?documentId=, GET|POST /documents/{documentId}/status or "
    "/documents/status?documentId="
)


class DocumentExchangeConfig(LegacyTextConfig):
    """`sender_organ_id`: the province's organ on the exchange (a document-exchange code
    such as 000.00.00.H49), used when a caller leaves out `from` (sending, reporting a
    status) or `organId` (listing pending documents). `soap_version`: the envelope the
    national platform speaks (1.1 today). `legacy_input` / `legacy_output`: TCVN3 or
    VNI text from and to callers that still hold it."""

    sender_organ_id: DocExchangeCode | None = None
    soap_version: SoapVersion = "1.1"


@functools.cache
def _edxml() -> Edxml:
    return Edxml(FOLDER)


@dataclass(frozen=True, slots=True)
class Route:
    operation: Literal[
        "SendDocument", "GetPendingDocuments", "GetDocument", "UpdateStatus", "GetStatus"
    ]
    document_id: str | None = None
    organ_id: str | None = None


class DocumentExchangeAdapter(Adapter[DocumentExchangeConfig]):
    name: ClassVar[str] = "document_exchange"
    Config: ClassVar[type[DocumentExchangeConfig]] = DocumentExchangeConfig

    def __init__(self, config: DocumentExchangeConfig) -> None:
        super().__init__(config)
        self.edxml = _edxml()
        self.version: SoapVersion = config.soap_version

    # -- request --------------------------------------------------------------------------

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        route = self.route(outbound.method, outbound.path, outbound.query)
        now = _moment(context.now)
        try:
            element = self._operation_element(route, outbound.body, now)
        except AttachmentsTooLarge as e:
            raise Problem(PAYLOAD_TOO_LARGE, str(e), limit=10 * 1024 * 1024) from None
        except ConversionError as e:
            raise Problem(
                INVALID_MESSAGE,
                f"The message cannot be converted to edXML for {route.operation}: {e}",
            ) from None
        headers = CIMultiDict(outbound.headers)
        for name in ("Content-Type", "Content-Length", "Content-Encoding", "Accept", "SOAPAction"):
            headers.popall(name, None)
        headers.update(soap.content_type(self.version, f"{SERVICE_NS}/{route.operation}"))
        headers["Accept"] = "text/xml" if self.version == "1.1" else "application/soap+xml"
        return OutboundRequest(
            method="POST",
            path=SOAP_PATH,
            query="",
            headers=headers,
            body=soap.envelope(element, version=self.version),
        )

    def route(self, method: str, path: str, query: str) -> Route:
        """The operation an endpoint asks for, with the document and organ it names."""
        params = _query(query)
        segments = (path.rstrip("/") or "/").split("/")[1:]
        if not segments or segments[0] != "documents" or len(segments) > 3:
            raise _no_endpoint(method, path)
        if len(segments) == 1:  # /documents
            if method == "POST":
                _only(params, ())
                return Route("SendDocument")
            _allow(method, path, "GET, POST")
            _only(params, ("documentId", "organId"))
            return Route("GetDocument", _document_id_param(params, path), _organ(params))
        word = _segment(segments[1])
        if len(segments) == 2 and word == "pending":
            _allow(method, path, "GET")
            _only(params, ("organId",))
            organ = _organ(params) or self.config.sender_organ_id
            if organ is None:
                raise Problem(
                    INVALID_PARAMETER,
                    "GET /documents/pending needs ?organId= (the organ whose incoming "
                    "documents to list); this service has no default organ.",
                    parameter="organId",
                )
            return Route("GetPendingDocuments", organ_id=organ)
        if len(segments) == 2 and word == "status":  # the id in ?documentId=
            _allow(method, path, "GET, POST")
            _only(params, ("documentId",))
            document_id = _document_id_param(params, path)
            if method == "POST":
                return Route("UpdateStatus", document_id)
            return Route("GetStatus", document_id)
        if word in ("pending", "status"):  # words of the API, never document ids
            raise _no_endpoint(method, path)
        document_id = _checked_id(word, "the path")
        if len(segments) == 2:
            _allow(method, path, "GET")
            _only(params, ("organId",))
            return Route("GetDocument", document_id, _organ(params))
        if _segment(segments[2]) != "status":
            raise _no_endpoint(method, path)
        _allow(method, path, "GET, POST")
        _only(params, ())
        return Route("UpdateStatus" if method == "POST" else "GetStatus", document_id)

    def _operation_element(self, route: Route, body: bytes, now: datetime) -> etree._Element:
        if route.operation == "SendDocument":
            return self.edxml.send_document(self._document(_json(body)), now)
        if route.operation == "UpdateStatus":
            assert route.document_id is not None
            return self.edxml.update_status(self._report(_json(body), route.document_id, now))
        values: dict[str, Any] = {}
        if route.document_id is not None:
            values["svc:DocumentId"] = route.document_id
        if route.organ_id is not None:
            values["svc:OrganId"] = route.organ_id
        return _plain(f"svc:{route.operation}", values)

    def _document(self, body: dict[str, Any]) -> dict[str, Any]:
        if "status" in body:
            raise ConversionError(
                "this is a status report, not a document: POST it to /documents/{documentId}/status"
            )
        document = self.config.text_in(body)
        if "from" not in document:
            document["from"] = {"organId": self._default_organ("from")}
        return dict(document)

    def _report(self, body: dict[str, Any], document_id: str, now: datetime) -> dict[str, Any]:
        report: dict[str, Any] = dict(self.config.text_in(body))
        if not isinstance(report.get("status"), str):
            raise ConversionError(
                "status is required: one of rejected, accepted, assigned, in_progress, "
                "completed, recall_requested, recall_accepted, recall_rejected"
            )
        report["documentId"] = document_id
        if "from" not in report:
            report["from"] = {"organId": self._default_organ("from")}
        if "responseFor" not in report:
            found = sender_from_document_id(document_id)
            if found is None:
                raise ConversionError(
                    "responseFor.organId is required: the document id "
                    f"{document_id!r} does not name its sender the usual way "
                    "('organ,yyyy/MM/dd,number/notation')"
                )
            report["responseFor"] = found
        at = report.get("at")
        report["at"] = vietnam_time(parse_moment(at, "at") if isinstance(at, str) else now)
        return report

    def _default_organ(self, field: str) -> str:
        if self.config.sender_organ_id is None:
            raise ConversionError(
                f"{field} is required: this service has no default organ (sender_organ_id)"
            )
        return self.config.sender_organ_id

    # -- response -------------------------------------------------------------------------

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        operation = _operation_of(outbound.headers)
        try:
            message = soap.parse_envelope(answer.body, max_bytes=MAX_ANSWER_BYTES, large_text=True)
        except (InvalidXML, UnsafeXML) as e:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The national document exchange answered {operation} with HTTP "
                f"{answer.status} and no SOAP envelope the gateway can read: {e}",
                operation=operation,
            ) from None
        if message.fault is not None:
            requested = _requested_status(outbound.body) if operation == "UpdateStatus" else None
            raise fault_problem(
                message.fault,
                operation=operation,
                requested=requested,
                status_name=self.edxml.status_names,
            )
        result = message.body
        expected = svc(f"{operation}Response")
        if answer.status != 200 or result is None or result.tag != expected:
            found = "nothing" if result is None else etree.QName(result).text
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The national document exchange answered {operation} with HTTP "
                f"{answer.status} and {found} in the SOAP body, not {operation}Response.",
                operation=operation,
            )
        try:
            converted = self.edxml.read_answer(operation, result)
        except ValueError as e:  # ConversionError, MappingError
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The national document exchange's answer to {operation} cannot be read: {e}",
                operation=operation,
            ) from None
        try:
            canonical = self.config.text_out(converted)
        except ValueError as e:  # LegacyEncodingError: a character TCVN3/VNI cannot carry
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The answer holds text the caller's legacy encoding cannot carry: {e}",
                operation=operation,
            ) from None
        headers = CIMultiDict(answer.headers)
        for name in ("Content-Type", "Content-Length", "Content-Encoding", "ETag", "SOAPAction"):
            headers.popall(name, None)
        headers["Content-Type"] = "application/json; charset=utf-8"
        return UpstreamResponse(
            status=201 if operation == "SendDocument" else 200,
            headers=headers,
            body=orjson.dumps(canonical),
            elapsed_ms=answer.elapsed_ms,
        )


# -- helpers ------------------------------------------------------------------------------


def _moment(iso: str) -> datetime:
    if iso:
        try:
            moment = datetime.fromisoformat(iso)
            if moment.tzinfo is not None:
                return moment
        except ValueError:
            pass
    return now_utc()


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ConversionError(f"the body is not JSON ({e})") from None
    if not isinstance(value, dict):
        raise ConversionError("the body must be a JSON object")
    return value


def _query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Problem(INVALID_PARAMETER, "The query string is not valid UTF-8.") from None
    for key, value in pairs:
        if key in params:
            raise Problem(
                INVALID_PARAMETER, f"The query parameter {key!r} is given twice.", parameter=key
            )
        params[key] = value
    return params


def _only(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    for key in params:
        if key not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise Problem(
                INVALID_PARAMETER,
                f"Unknown query parameter {key!r} for this endpoint (accepted: {accepted}).",
                parameter=key,
            )


def _segment(raw: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise Problem(INVALID_PATH, "The path is not valid percent-encoded UTF-8.") from None


def _checked_id(value: str, where: str) -> str:
    if not value.strip():
        raise Problem(INVALID_PARAMETER, f"The document id in {where} is empty.")
    if len(value) > MAX_DOCUMENT_ID:
        raise Problem(
            INVALID_PARAMETER,
            f"The document id in {where} is longer than {MAX_DOCUMENT_ID} characters.",
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise Problem(INVALID_PARAMETER, f"The document id in {where} has control characters.")
    return value


def _document_id_param(params: Mapping[str, str], path: str) -> str:
    value = params.get("documentId")
    if value is None:
        raise Problem(
            INVALID_PARAMETER,
            f"{path} names the document in ?documentId= (percent-encoded). To list the "
            "documents waiting for an organ, GET /documents/pending?organId=.",
            parameter="documentId",
        )
    return _checked_id(value, "?documentId=")


def _organ(params: Mapping[str, str]) -> str | None:
    value = params.get("organId")
    if value is None:
        return None
    if not _ORGAN.fullmatch(value):
        raise Problem(
            INVALID_PARAMETER,
            f"organId {value!r} is not a document-exchange organ code such as 000.00.00.H49.",
            parameter="organId",
        )
    return value


def _allow(method: str, path: str, allowed: str) -> None:
    if method not in [m.strip() for m in allowed.split(",")]:
        raise Problem(
            METHOD_NOT_ALLOWED,
            f"{method} is not available on {path}; allowed: {allowed}.",
            headers={"Allow": allowed},
        )


def _no_endpoint(method: str, path: str) -> Problem:
    return Problem(
        NOT_FOUND,
        f"The document exchange service has no endpoint {method} {path}. Endpoints: {ENDPOINTS}.",
    )


def _plain(name: str, values: Mapping[str, str]) -> etree._Element:
    element = etree.Element(svc(name.split(":", 1)[1]), nsmap={"svc": SERVICE_NS})
    for key, value in values.items():
        etree.SubElement(element, svc(key.split(":", 1)[1])).text = value
    return element


def _operation_of(headers: CIMultiDict[str]) -> str:
    """The operation the request hook chose, from the action it announced."""
    action = headers.get("SOAPAction")
    if action is None:  # SOAP 1.2: the action is a parameter of the media type
        content_type = headers.get("Content-Type", "")
        _, _, rest = content_type.partition('action="')
        action = rest.split('"', 1)[0]
    return action.strip().strip('"').rsplit("/", 1)[-1] or "unknown"


def _requested_status(body: bytes) -> str | None:
    try:
        message = soap.parse_envelope(body, max_bytes=MAX_ANSWER_BYTES, large_text=True)
    except ValueError:
        return None
    if message.body is None:
        return None
    code = message.body.find(f"{ed('Status')}/{ed('StatusCode')}")
    return None if code is None else code.text
