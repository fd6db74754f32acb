"""`population`: citizen lookup in the national population database (CSDLQG về dân cư).

The provincial canonical form (schemas/population/citizen-lookup.canonical.*.json) has
one operation, `POST /cong-dan/tra-cuu`, taking one of

    {"personalId": "001099012345"}                            12-digit personal id
    {"oldIdNumber": "201234567"}                              9-digit old ID card number
    {"fullName": "Nguyễn Văn An", "birthDate": "1999-03-15"}  or "birthDate": "1938"

The national side (REFERENCE §3, simulated by simulator/app.py) has two endpoints under
the service's upstream path (`/csdldc/v1`): `/cong-dan/tra-cuu` by number (SoDinhDanh,
SoCMND) and `/cong-dan/tra-cuu-ho-ten` by name and birth date (HoVaTen,
NgayThangNamSinh). The adapter picks the endpoint from the fields given and fills the
accountability fields every national lookup carries: MaYeuCau = the gateway's request id
(at most 40 characters), MaDVC = the procedure code (X-Procedure-Code), MaCanBo = the
officer (X-Officer-Id), MaDonVi and MaTichHop from the configuration.

The national answer says MaLoi "0" found (CongDan, or DanhSachCongDan for a name
lookup), "201" not found, "202" exists but may not be seen. These are the provider's
business answers and reach the caller as JSON (application/json), not as problems:

    200 {"outcome": "found", "citizens": [{"personalId": ..., "fullName": ..., ...}]}
    404 {"outcome": "not_found", "message": "Không tìm thấy thông tin công dân"}
    403 {"outcome": "not_permitted", "message": "Công dân có tồn tại nhưng ..."}

Any other answer is a 502 problem naming the national MaLoi and MoTaLoi:
`upstream-authentication-failed` for MaLoi 100 (the national side refused the province's
token), `upstream-bad-response` for the rest (400, 5xx, a body that is not the national
JSON, a record the mappings cannot read, an answer to another request id).

The conversion itself is declarative: mappings/*.yaml with codes/sex.yaml; this module
only chooses the endpoint, reads MaLoi and wraps the result.

Configuration (`adapter_config`):

    agency_code       required: MaDonVi, the requesting agency's code as the national
                      platform knows it (the province's, e.g. "000.00.00.H49")
    integration_code  optional: MaTichHop, the integration service code the national
                      platform assigned (digits, at most 20)
    legacy_input      optional, "tcvn3" | "vni": the callers send TCVN3/VNI text (a
                      fullName), converted to Unicode NFC before the national lookup
    legacy_output     optional, "tcvn3" | "vni": the canonical answer's text is encoded
                      back for callers that cannot read Unicode
"""

from __future__ import annotations

import dataclasses
import functools
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import orjson
from multidict import CIMultiDict
from pydantic import StringConstraints

from gateway.conversion.mapping.engine import (
    CompiledMapping,
    Context,
    MappingError,
    compile_mapping,
)
from gateway.conversion.sdk import Adapter, LegacyTextConfig, json_object, load_mappings
from gateway.core.headers import OFFICER_HEADER, PROCEDURE_HEADER, REQUEST_ID_HEADER
from gateway.core.messages import OutboundRequest
from gateway.core.problems import (
    INVALID_HEADER,
    INVALID_MESSAGE,
    METHOD_NOT_ALLOWED,
    MISSING_ACCOUNTABILITY,
    NOT_FOUND,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    Problem,
)

if TYPE_CHECKING:
    from gateway.core.messages import UpstreamResponse

__all__ = ["ADAPTER", "PopulationAdapter", "PopulationConfig"]

FOLDER = Path(__file__).resolve().parent
OPERATION = "/cong-dan/tra-cuu"  # the canonical service's one operation
BY_NUMBER = "/cong-dan/tra-cuu"  # national endpoints, under the upstream path
BY_NAME = "/cong-dan/tra-cuu-ho-ten"
JSON = "application/json"
MAX_REQUEST_ID = 40  # MaYeuCau's national limit

FOUND, NOT_FOUND_CODE, NOT_PERMITTED_CODE, UNAUTHENTICATED_CODE = "0", "201", "202", "100"
_DEFAULT_MESSAGES = {
    NOT_FOUND_CODE: "Không tìm thấy thông tin công dân",
    NOT_PERMITTED_CODE: "Công dân có tồn tại nhưng đơn vị không được phép khai thác thông tin",
}
_STRING_FIELDS = {  # the canonical request's fields, checked again whatever the schema
    "personalId": re.compile(r"[0-9]{12}"),
    "oldIdNumber": re.compile(r"[0-9]{9}"),
    "fullName": re.compile(r".{1,100}", re.DOTALL),
    "birthDate": re.compile(r"[0-9]{4}(?:-[0-9]{2}-[0-9]{2})?"),
}


class PopulationConfig(LegacyTextConfig):
    """The `adapter_config` of a service using the `population` adapter."""

    agency_code: Annotated[
        str, StringConstraints(pattern=r"^[0-9A-Z]+(?:\.[0-9A-Z]+)*$", max_length=35)
    ]
    integration_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")] | None = None


@functools.cache
def _mappings() -> dict[str, CompiledMapping]:
    return load_mappings(FOLDER)


class PopulationAdapter(Adapter[PopulationConfig]):
    name: ClassVar[str] = "population"
    Config: ClassVar[type[PopulationConfig]] = PopulationConfig

    def __init__(self, config: PopulationConfig) -> None:
        super().__init__(config)
        mappings = _mappings()
        self.accountability = mappings["accountability"]
        self.by_number = mappings["lookup-by-number"]
        self.by_name = mappings["lookup-by-name"]
        self.citizen = mappings["citizen"]
        self.full_name = mappings["full-name"]
        sender: list[dict[str, Any]] = [{"const": config.agency_code, "to": "/MaDonVi"}]
        if config.integration_code is not None:
            sender.append({"const": config.integration_code, "to": "/MaTichHop"})
        self.sender = compile_mapping({"rules": sender})

    # -- canonical request -> national request ------------------------------------------------

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        path = outbound.path.rstrip("/")
        if path != OPERATION:
            raise Problem(
                NOT_FOUND,
                f"The citizen lookup has one operation, POST {OPERATION}; "
                f"there is nothing at {outbound.path!r}.",
            )
        if outbound.method.upper() != "POST":
            raise Problem(
                METHOD_NOT_ALLOWED,
                f"{OPERATION} takes POST, not {outbound.method}.",
                headers={"Allow": "POST"},
            )
        self._check_accountability(context)
        lookup = self.lookup(outbound.body, context)
        endpoint = BY_NUMBER if "SoDinhDanh" in lookup or "SoCMND" in lookup else BY_NAME
        headers = CIMultiDict(outbound.headers)
        headers["Content-Type"] = JSON
        headers["Accept"] = JSON
        headers.popall("Content-Encoding", None)
        return OutboundRequest("POST", endpoint, "", headers, orjson.dumps(lookup))

    def _check_accountability(self, context: Context) -> None:
        asked = ((OFFICER_HEADER, context.officer), (PROCEDURE_HEADER, context.procedure))
        missing = [header for header, value in asked if not value]
        if missing:
            raise Problem(
                MISSING_ACCOUNTABILITY,
                "The national population database records who looks a citizen up and "
                f"why: send {' and '.join(missing)}.",
                missing=missing,
            )
        if len(context.request_id) > MAX_REQUEST_ID:
            raise Problem(
                INVALID_HEADER,
                f"{REQUEST_ID_HEADER} becomes the national MaYeuCau, which holds at most "
                f"{MAX_REQUEST_ID} characters; this one has {len(context.request_id)}.",
            )

    def lookup(self, body: bytes, context: Context) -> dict[str, Any]:
        """The national lookup body for a canonical request body (the request hook's
        conversion, without the HTTP parts)."""
        doc = self._canonical_request(body)
        by_number = "personalId" in doc or "oldIdNumber" in doc
        mapping = self.by_number if by_number else self.by_name
        try:
            return {
                **self.accountability.apply({}, context),
                **self.sender.apply({}),
                **mapping.apply(doc, context),
            }
        except MappingError as e:
            raise Problem(INVALID_MESSAGE, f"The lookup cannot be converted: {e}.") from None

    def _canonical_request(self, body: bytes) -> dict[str, Any]:
        raw = json_object(body)
        # Legacy TCVN3/VNI text becomes Unicode NFC here, before anything reads it.
        doc: dict[str, Any] = self.config.text_in(raw)
        for field, pattern in _STRING_FIELDS.items():
            value = doc.get(field)
            if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
                raise Problem(
                    INVALID_MESSAGE, f"/{field} has an invalid value: {value!r}.", pointer=field
                )
        numbers = [f for f in ("personalId", "oldIdNumber") if f in doc]
        name = [f for f in ("fullName", "birthDate") if f in doc]
        if numbers and name:
            raise Problem(
                INVALID_MESSAGE,
                "Look a citizen up either by number (personalId, oldIdNumber) or by "
                f"fullName and birthDate, not both: the request has {numbers + name}.",
            )
        if not numbers and len(name) < 2:
            raise Problem(
                INVALID_MESSAGE,
                "A lookup needs personalId, oldIdNumber, or fullName with birthDate.",
            )
        if name:
            doc["fullName"] = " ".join(doc["fullName"].split())
            if not doc["fullName"]:
                raise Problem(INVALID_MESSAGE, "/fullName is blank.", pointer="fullName")
            born = doc["birthDate"]
            if len(born) > 4:
                try:
                    date.fromisoformat(born)
                except ValueError:
                    raise Problem(
                        INVALID_MESSAGE,
                        f"/birthDate {born!r} is not a calendar date (yyyy-mm-dd, or yyyy).",
                        pointer="birthDate",
                    ) from None
        return doc

    # -- national answer -> canonical answer -------------------------------------------------

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        status, document = self.answer(answer.status, answer.body, context.request_id)
        try:
            body = orjson.dumps(self.config.text_out(document))
        except ValueError as e:  # legacy_output cannot carry a character of the answer
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The national answer cannot be given in {self.config.legacy_output}: {e}.",
            ) from None
        return dataclasses.replace(
            answer, status=status, headers=CIMultiDict({"Content-Type": JSON}), body=body
        )

    def answer(self, status: int, body: bytes, request_id: str) -> tuple[int, dict[str, Any]]:
        """The canonical status and document for a national answer (the response hook's
        conversion, without the HTTP parts); raises Problem for what is not an answer."""
        national = _json_object(body)
        code = national.get("MaLoi") if national is not None else None
        if national is None or not isinstance(code, (str, int)) or isinstance(code, bool):
            what = "without MaLoi" if national is not None else "that is not a JSON object"
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The national population database answered HTTP {status} with a body "
                f"{what}: it is not a lookup answer.",
                upstream={"status": status},
            )
        code = str(code)
        message = national.get("MoTaLoi")
        message = message if isinstance(message, str) and message else None
        upstream = {"status": status, "MaLoi": code, "MoTaLoi": message}
        echoed = national.get("MaYeuCau")
        if echoed not in (None, "", request_id):
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The national answer is for MaYeuCau {echoed!r}, not for this request "
                f"({request_id!r}): it is withheld.",
                upstream=upstream,
            )
        if code == FOUND and 200 <= status < 300:
            return 200, {"outcome": "found", "citizens": self._citizens(national, upstream)}
        if code == NOT_FOUND_CODE:
            return 404, {"outcome": "not_found", "message": message or _DEFAULT_MESSAGES[code]}
        if code == NOT_PERMITTED_CODE:
            return 403, {
                "outcome": "not_permitted",
                "message": message or _DEFAULT_MESSAGES[code],
            }
        described = f"HTTP {status}, MaLoi {code}" + (f" ({message})" if message else "")
        if code == UNAUTHENTICATED_CODE:
            raise Problem(
                UPSTREAM_AUTH_FAILED,
                f"The national population database refused the province's credentials: "
                f"{described}.",
                upstream=upstream,
            )
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"The national population database answered with an error: {described}.",
            upstream=upstream,
        )

    def _citizens(self, national: dict[str, Any], upstream: dict[str, Any]) -> list[Any]:
        listed, single = national.get("DanhSachCongDan"), national.get("CongDan")
        records = listed if isinstance(listed, list) else [single] if single is not None else []
        if not records or not all(isinstance(r, dict) for r in records):
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                "The national answer says found (MaLoi 0) but holds no citizen record "
                "(CongDan or DanhSachCongDan).",
                upstream=upstream,
            )
        citizens = []
        for i, record in enumerate(records):
            try:
                present = _present(record)
                citizen = self.citizen.apply(present)
                name = self.full_name.apply(present)
                citizens.append({"personalId": citizen.pop("personalId"), **name, **citizen})
            except MappingError as e:
                raise Problem(
                    UPSTREAM_BAD_RESPONSE,
                    f"Citizen record {i} of the national answer cannot be read: {e}.",
                    upstream=upstream,
                ) from None
        return citizens


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _present(value: Any) -> Any:
    """The national record without its empty strings and nulls (unknown, for the
    canonical form: omitted)."""
    if isinstance(value, dict):
        kept = {k: _present(v) for k, v in value.items() if v is not None and v != ""}
        return {k: v for k, v in kept.items() if v != {}}
    if isinstance(value, list):
        return [_present(v) for v in value]
    return value


ADAPTER = PopulationAdapter
