"""Enterprise lookup in the national business registration database.

The national database (CSDL quốc gia về đăng ký doanh nghiệp, reached through the
national data-sharing platform) answers one question in XML over plain HTTP::

    POST <upstream>/doanh-nghiep/tra-cuu          Content-Type: application/xml
    <TraCuuDoanhNghiep>
      <MaYeuCau/> <MaSoDoanhNghiep/> [<MaDonVi/> <MaCanBo/> <MaDVC/>]
    </TraCuuDoanhNghiep>

and answers ``<KetQuaTraCuu>`` with ``MaLoi`` 0 (found: ``DoanhNghiep``, plus
``ChiNhanhTraCuu`` when a branch code was asked), 201 (not found), 202 (exists, but
the province may not see it) or 100 (malformed request). Departmental systems call the
provincial canonical form instead (schemas/business/enterprise-lookup.*.json)::

    POST /doanh-nghiep/tra-cuu   {"enterpriseCode": "0101234567"}   (or "0101234567-001")

    200 {"outcome": "found", "message": "Thành công",
         "enterprise": {"code", "name", "foreignName", "shortName",
                        "type": {"code", "name"}, "foundedOn": "yyyy-MM-dd",
                        "status": {"code": "active"|"suspended"|"dissolved"|"dissolving",
                                   "name"},
                        "headOffice": {"street", "commune", "district", "province",
                                       "provinceCode"},
                        "legalRepresentative": {"fullName", "title"},
                        "charterCapital": <integer VND>, "mainIndustry": "<VSIC>",
                        "branches": [{"code", "name", "address", "startedOn"}]},
         "requestedBranch": {...}}                       (only for a branch code)
    404 {"outcome": "not_found", "enterpriseCode", "message"}
    403 {"outcome": "not_permitted", "enterpriseCode", "message"}
    400 problem+json invalid-message          (national MaLoi 100)
    502 problem+json upstream-bad-response    (anything else the national side says),
        upstream-authentication-failed        (the national side refused our token)

The field moves are in ``mappings/request.yaml`` and ``mappings/response.yaml`` with the
code lists in ``codes/`` (legal forms, statuses); this module only wraps XML, picks the
outcome from ``MaLoi`` and the HTTP status, and turns the charter capital into a number.
``MaYeuCau`` is the gateway's request id (its SHA-1 when longer than the 40 characters
the national side takes); an answer that echoes another ``MaYeuCau`` is refused.

Configuration (``adapter_config``):

``agency_code``
    The unit code sent as ``MaDonVi`` (e.g. the province's registered code
    ``000.00.00.H49``). Optional: without it, the calling client's agency is sent.
``legacy_input`` / ``legacy_output`` (``tcvn3`` | ``vni``)
    For callers that still hold TCVN3 or VNI text (see `LegacyTextConfig`): the request's
    strings are decoded to Unicode NFC, and with ``legacy_output`` every string of the
    JSON answer (names, addresses, messages) is written back in that encoding.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final

import orjson
from multidict import CIMultiDict
from pydantic import StringConstraints

from gateway.conversion.mapping.engine import MappingError
from gateway.conversion.mapping.vnencoding import LegacyEncodingError
from gateway.conversion.mapping.xml import data_to_xml, to_bytes, xml_to_data
from gateway.conversion.sdk import (
    Adapter,
    AdapterConfig,
    Context,
    LegacyTextConfig,
    json_object,
    load_mappings,
)
from gateway.core.messages import OutboundRequest
from gateway.core.problems import (
    INVALID_MESSAGE,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    Problem,
)
from gateway.core.safexml import parse_xml

if TYPE_CHECKING:
    from gateway.core.messages import UpstreamResponse

__all__ = [
    "ADAPTER",
    "LOOKUP_PATH",
    "BusinessRegistration",
    "BusinessRegistrationConfig",
    "national_request_id",
]

LOOKUP_PATH: Final = "/doanh-nghiep/tra-cuu"
REQUEST_ROOT: Final = "TraCuuDoanhNghiep"
ANSWER_ROOT: Final = "KetQuaTraCuu"
MAX_REQUEST_ID: Final = 40  # MaYeuCau's length on the national side
SERVICE: Final = "The national business registration database"

_XML: Final = "application/xml; charset=utf-8"
_JSON: Final = "application/json"
# MaLoi -> (HTTP statuses it comes with, canonical outcome or None for an error).
_OUTCOMES: Final[dict[str, tuple[frozenset[int], str | None]]] = {
    "0": (frozenset({200}), "found"),
    "201": (frozenset({404}), "not_found"),
    "202": (frozenset({403}), "not_permitted"),
    "100": (frozenset({400, 415}), None),
}
_STATUS: Final = {"found": 200, "not_found": 404, "not_permitted": 403}

AgencyCode = Annotated[
    str, StringConstraints(pattern=r"^[0-9A-Z]+(?:\.[0-9A-Z]+)*$", max_length=35)
]


class BusinessRegistrationConfig(LegacyTextConfig):
    """`adapter_config` of a business registration service."""

    agency_code: AgencyCode | None = None
    """Sent as MaDonVi; without it, the calling client's agency code is sent."""


class BusinessRegistration(Adapter[BusinessRegistrationConfig]):
    """Canonical JSON enterprise lookup <-> the national XML lookup."""

    name: ClassVar[str] = "business_registration"
    Config: ClassVar[type[AdapterConfig]] = BusinessRegistrationConfig

    def __init__(self, config: BusinessRegistrationConfig) -> None:
        super().__init__(config)
        mappings = load_mappings(Path(__file__).resolve().parent)
        self.to_national = mappings["request"]
        self.to_canonical = mappings["response"]

    # -- canonical -> national ---------------------------------------------------------

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        if outbound.path != LOOKUP_PATH:
            raise Problem(
                NOT_FOUND,
                f"This service has one operation, POST {LOOKUP_PATH}; "
                f"{outbound.path or '/'} is not one of its endpoints.",
            )
        if outbound.method != "POST":
            raise Problem(
                METHOD_NOT_ALLOWED,
                f"{LOOKUP_PATH} takes POST, not {outbound.method}.",
                headers={"Allow": "POST"},
            )
        body = self.national_request(json_object(outbound.body), context)
        headers = CIMultiDict(outbound.headers)
        headers["Content-Type"] = _XML
        headers["Accept"] = "application/xml"
        headers.popall("Content-Length", None)
        return OutboundRequest("POST", LOOKUP_PATH, "", headers, body)

    def national_request(self, message: dict[str, Any], context: Context) -> bytes:
        """The XML request for a canonical request (its strings made Unicode NFC)."""
        # The canonical request is flat: codes are strings (the schema says so too, for
        # services that validate it).
        for key, value in message.items():
            if not isinstance(value, str):
                raise Problem(
                    INVALID_MESSAGE, f"/{key} must be a string, not {type(value).__name__}."
                )
        try:
            text = self.config.text_in(message)
        except ValueError as e:
            raise Problem(
                INVALID_MESSAGE,
                f"The request's text is not valid {self.config.legacy_input}: {e}",
            ) from None
        ctx = dataclasses.replace(
            context,
            request_id=national_request_id(context.request_id),
            client_agency=self.config.agency_code or context.client_agency,
        )
        try:
            national = self.to_national.apply(text, ctx)
            return to_bytes(data_to_xml(national, namespaces={}, root=REQUEST_ROOT))
        except (MappingError, ValueError) as e:
            raise Problem(
                INVALID_MESSAGE, f"The request cannot be converted for {SERVICE}: {e}"
            ) from None

    # -- national -> canonical ---------------------------------------------------------

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        if answer.status == 401:
            raise Problem(
                UPSTREAM_AUTH_FAILED,
                f"{SERVICE} refused the gateway's access token (HTTP 401), even after a "
                "new token was fetched; the gateway operators must check the credentials.",
            )
        sent = _sent_fields(outbound.body)
        status, document = self.canonical_answer(answer.status, answer.body, sent)
        try:
            document = self.config.text_out(document)
        except LegacyEncodingError as e:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{SERVICE} answered with text that {self.config.legacy_output} cannot "
                f"carry, so it cannot be given to this legacy caller: {e}",
            ) from None
        headers = CIMultiDict(answer.headers)
        for name in ("Content-Length", "Content-Encoding", "WWW-Authenticate"):
            headers.popall(name, None)
        headers["Content-Type"] = _JSON
        return dataclasses.replace(
            answer, status=status, headers=headers, body=orjson.dumps(document)
        )

    def canonical_answer(
        self, status: int, body: bytes, sent: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, canonical document) for the national answer; raises `Problem`
        for a refusal or an answer that cannot be understood."""
        result = _read_answer(status, body)
        code = result.get("MaLoi")
        description = result.get("MoTaLoi")
        said = f"MaLoi {code!r}" + (f": {description}" if isinstance(description, str) else "")
        expected = _OUTCOMES.get(code) if isinstance(code, str) else None
        if expected is None or status not in expected[0]:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{SERVICE} answered HTTP {status} with {said}, which is not one of its "
                "documented answers.",
                upstream_status=status,
            )
        outcome = expected[1]
        if outcome is None:
            raise Problem(
                INVALID_MESSAGE,
                f"{SERVICE} refused the lookup as malformed ({said}).",
            )
        echoed = result.get("MaYeuCau")
        if echoed is not None and echoed != sent.get("MaYeuCau"):
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{SERVICE} answered request {echoed!r}, not {sent.get('MaYeuCau')!r}: "
                "the answer is not for this request.",
            )
        document: dict[str, Any] = {"outcome": outcome}
        if outcome == "found":
            document.update(self.found(result))
        elif "MaSoDoanhNghiep" in sent:
            document["enterpriseCode"] = sent["MaSoDoanhNghiep"]
        if isinstance(description, str):
            document["message"] = description
        return _STATUS[outcome], document

    def found(self, result: dict[str, Any]) -> dict[str, Any]:
        """The canonical `enterprise` (and `requestedBranch`) of a cleaned-up
        `KetQuaTraCuu` content."""
        try:
            mapped = self.to_canonical.apply(result)
        except MappingError as e:
            raise Problem(
                UPSTREAM_BAD_RESPONSE, f"{SERVICE}'s answer cannot be converted: {e}"
            ) from None
        enterprise = mapped["enterprise"]
        capital = enterprise.get("charterCapital")
        if capital is not None:
            if not (isinstance(capital, str) and capital.isascii() and capital.isdigit()):
                raise Problem(
                    UPSTREAM_BAD_RESPONSE,
                    f"{SERVICE} gave the charter capital (VonDieuLe) as {capital!r}, not as "
                    "a whole number of VND.",
                )
            enterprise["charterCapital"] = int(capital)
        branch = mapped.get("requestedBranch")
        if branch is not None:
            if len(branch) != 1:
                raise Problem(
                    UPSTREAM_BAD_RESPONSE,
                    f"{SERVICE} answered with {len(branch)} requested branches (ChiNhanhTraCuu).",
                )
            mapped["requestedBranch"] = branch[0]
        return mapped


def national_request_id(request_id: str) -> str:
    """MaYeuCau for a gateway request id: itself, or its SHA-1 (40 hex digits) when it
    is longer than the national side accepts."""
    if len(request_id) <= MAX_REQUEST_ID:
        return request_id
    return hashlib.sha1(request_id.encode(), usedforsecurity=False).hexdigest()


def _sent_fields(body: bytes) -> dict[str, str]:
    """The fields of the XML request this adapter sent (to check the echo, to name the
    code in a not-found answer)."""
    try:
        sent = xml_to_data(parse_xml(body), namespaces={}).get(REQUEST_ROOT)
    except ValueError:
        return {}
    return {k: v for k, v in sent.items() if isinstance(v, str)} if isinstance(sent, dict) else {}


def _read_answer(status: int, body: bytes) -> dict[str, Any]:
    """The content of `<KetQuaTraCuu>`, strings trimmed and empty elements dropped, every
    `ChiNhanh` a list."""
    try:
        data = xml_to_data(parse_xml(body), namespaces={}, lists={"ChiNhanh"})
    except ValueError as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with a body that is not usable XML: {e}",
            upstream_status=status,
        ) from None
    result = data.get(ANSWER_ROOT)
    if not isinstance(result, dict):
        root = next(iter(data))
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with <{root}>, not <{ANSWER_ROOT}> "
            "with child elements.",
            upstream_status=status,
        )
    cleaned = _clean(result)
    assert isinstance(cleaned, dict)
    return cleaned


def _clean(value: Any) -> Any:
    """Trim strings and leave out empty ones (an empty element is an absent value)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _clean(item)
            if item != "" and item != {}:
                out[key] = item
        return out
    return value


ADAPTER = BusinessRegistration
