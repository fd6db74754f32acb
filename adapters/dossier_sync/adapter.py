"""The dossier_sync adapter: the province's canonical dossier status changes to the
national public service portal's sync message and back (see the package docstring)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final
from urllib.parse import unquote

import orjson
import yaml
from multidict import CIMultiDict
from pydantic import StringConstraints

from gateway.conversion.mapping.engine import MappingError
from gateway.conversion.mapping.xml import data_to_xml, to_bytes, xml_to_data
from gateway.conversion.sdk import (
    Adapter,
    AdapterConfig,
    Context,
    LegacyTextConfig,
    json_object,
    load_mappings,
)
from gateway.core.messages import OutboundRequest, UpstreamResponse
from gateway.core.problems import (
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_MESSAGE,
    INVALID_PATH,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    Problem,
)
from gateway.core.safexml import parse_xml

FOLDER: Final = Path(__file__).resolve().parent
VIETNAM: Final = timezone(timedelta(hours=7))

# The canonical endpoints (what departmental systems call) and the portal's.
STATUS_CHANGE: Final = "/ho-so/trang-thai"
RECORD_PREFIX: Final = "/ho-so/"
PORTAL_SYNC: Final = "/ho-so/dong-bo"

JSON_TYPE: Final = "application/json; charset=utf-8"
DOSSIER_ID: Final = re.compile(r"[0-9A-Z]+(?:\.[0-9A-Z]+)+-[0-9]{6}-[0-9]{4,6}")

# The portal's error_code values (simulator/dossier.py; the portal's integration guide).
OK: Final = 0
AUTHENTICATION: Final = 100
WRONG_AGENCY: Final = 106
NOT_FOUND_CODE: Final = 201
INVALID_DATA: Final = 301
INVALID_TRANSITION: Final = 302

# "... từ 1 (Đã tiếp nhận) sang 4 (Đã hoàn thành)": the statuses of a refused move.
_TRANSITION = re.compile(r"\btừ\s+([0-9]+)\b.*?\bsang\s+([0-9]+)\b", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_MAX_MESSAGE = 500
_DATETIME_FIELDS: Final = ("receivedAt", "updatedAt")
# Portal fields the gateway fills in itself: a refusal of one is the gateway's to fix.
_GATEWAY_FIELDS: Final = {"module": "adapter_config.module"}

AgencyCode = Annotated[
    str, StringConstraints(pattern=r"^[0-9A-Z]+(?:\.[0-9A-Z]+)+$", max_length=35)
]
ModuleCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,19}$")]


class DossierSyncConfig(LegacyTextConfig):
    """`agency_code`: the portal's maDonVi for changes that carry no agencyCode (none:
    such a change is refused). `module`: the portal's module field ("TTHC", the one the
    portal accepts today). `legacy_input` / `legacy_output` (tcvn3 or vni): the caller's
    text is converted to Unicode NFC before the portal sees it / the answer's text is
    converted back; without them every string is still normalised to NFC."""

    agency_code: AgencyCode | None = None
    module: ModuleCode = "TTHC"


def _clean(message: Any) -> str:
    text = _CONTROL.sub(" ", str(message or "")).strip()
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def _invalid(pointer: str, detail: str) -> Problem:
    return Problem(
        INVALID_MESSAGE,
        f"{pointer}: {detail}",
        errors=[{"pointer": pointer, "detail": detail}],
    )


def vietnam_time(value: Any, pointer: str) -> str:
    """An ISO 8601 datetime with a UTC offset as Vietnam local time, to the second
    (fractions dropped): `2025-11-22T01:30:00.5Z` -> `2025-11-22T08:30:00+07:00`."""
    if not isinstance(value, str):
        raise _invalid(pointer, "must be an ISO 8601 datetime string with a UTC offset")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid(pointer, f"{value!r} is not an ISO 8601 datetime") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _invalid(
            pointer, f"{value!r} has no UTC offset (add Z or +07:00): its instant is unknown"
        )
    try:
        local = moment.astimezone(VIETNAM)
    except OverflowError:
        raise _invalid(pointer, f"{value!r} is out of range") from None
    return (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
        f"T{local.hour:02d}:{local.minute:02d}:{local.second:02d}+07:00"
    )


def _portal_fields(spec_path: Path) -> dict[str, str]:
    """Portal field -> canonical pointer, read from the status-change mapping: the field
    as the portal names it in its messages ("HoSo/ChuHoSo/SoDinhDanh", "maHoSo") and,
    when no two fields share it, its last segment alone ("SoDinhDanh")."""
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    fields: dict[str, str] = {}
    last: dict[str, set[str]] = {}
    for rule in spec["rules"]:
        source, target = rule.get("from"), rule.get("to")
        if not isinstance(source, str) or not isinstance(target, str):
            continue
        name = target.strip("/").removeprefix("data/")
        fields[name] = source
        last.setdefault(name.rsplit("/", 1)[-1], set()).add(source)
    for name, sources in last.items():
        if len(sources) == 1:
            fields.setdefault(name, next(iter(sources)))
    return fields


class DossierSyncAdapter(Adapter[DossierSyncConfig]):
    """POST /ho-so/trang-thai (canonical status change) -> POST /ho-so/dong-bo (portal
    JSON + HoSo XML); GET /ho-so/{dossierId} -> the portal's GET /ho-so/{maHoSo}. The
    portal's error_code answers become canonical answers or problems."""

    name: ClassVar[str] = "dossier_sync"
    Config: ClassVar[type[AdapterConfig]] = DossierSyncConfig

    def __init__(self, config: DossierSyncConfig) -> None:
        super().__init__(config)
        mappings = load_mappings(FOLDER)
        self._to_portal = mappings["status_change"]
        self._from_record = mappings["portal_record"]
        codes = yaml.safe_load((FOLDER / "codes" / "status.yaml").read_text(encoding="utf-8"))
        self._status_names = {str(v): str(k) for k, v in codes.items()}  # "1" -> "received"
        self._fields = _portal_fields(FOLDER / "mappings" / "status_change.yaml")
        self._fields.update(dict.fromkeys(_GATEWAY_FIELDS, ""))
        names = sorted(self._fields, key=len, reverse=True)  # longest first at a position
        self._field_re = re.compile(
            r"(?<![\w/])(" + "|".join(re.escape(n) for n in names) + r")(?![\w/])"
        )

    # -- conversions (pure: also what the round-trip tests run) ---------------------------

    def to_portal(
        self, change: Mapping[str, Any], context: Context | None = None
    ) -> dict[str, Any]:
        """A canonical status change (text already Unicode) -> the portal's sync message,
        its `data` the HoSo XML document as a string."""
        doc = dict(change)
        for name in _DATETIME_FIELDS:
            if doc.get(name) is not None:
                doc[name] = vietnam_time(doc[name], f"/{name}")
        if doc.get("agencyCode") is None:
            if self.config.agency_code is None:
                raise _invalid(
                    "/agencyCode",
                    "is required: this service has no default agency (adapter_config.agency_code)",
                )
            doc["agencyCode"] = self.config.agency_code
        try:
            mapped = self._to_portal.apply(doc, context)
        except MappingError as e:
            raise Problem(
                INVALID_MESSAGE, f"The status change cannot be converted for the portal: {e}"
            ) from None
        hoso = mapped.pop("data")["HoSo"]
        try:
            xml = to_bytes(data_to_xml(hoso, namespaces={}, root="HoSo"), declaration=False)
        except ValueError as e:  # text XML cannot carry (control characters)
            field = str(e).split(":", 1)[0]
            pointer = self._fields.get(field.strip("/"), "")
            raise Problem(
                INVALID_MESSAGE,
                f"{pointer or field}: the text cannot be carried in the portal's XML ({e})",
                errors=[{"pointer": pointer, "detail": str(e)}],
            ) from None
        return {
            "maDonVi": mapped["maDonVi"],
            "module": self.config.module,
            "maHoSo": mapped["maHoSo"],
            "ngayTiepNhan": mapped["ngayTiepNhan"],
            "data": xml.decode("utf-8"),
        }

    def from_portal(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """A portal sync message -> the canonical status change it carries (datetimes
        with the +07:00 offset). Raises ValueError if `data` is not a HoSo document."""
        data = message.get("data")
        if not isinstance(data, str):
            raise ValueError("the sync message has no data string")
        tree = xml_to_data(parse_xml(data.encode("utf-8")), namespaces={})
        if "HoSo" not in tree:
            raise ValueError(f"data holds {next(iter(tree))}, not HoSo")
        return self._to_portal.reverse({**message, "data": tree})

    def record_view(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The portal's record of a dossier (GET answer's hoSo) -> the canonical view."""
        view = self._from_record.apply(record)
        history = view.get("history")
        if not (isinstance(history, list) and history and "updatedAt" in history[-1]):
            return view
        # The latest change's time, placed after receivedAt for a reader's sake.
        latest = {"updatedAt": history[-1]["updatedAt"]}
        keys = list(view)
        at = keys.index("receivedAt") + 1 if "receivedAt" in keys else len(keys)
        return {**{k: view[k] for k in keys[:at]}, **latest, **{k: view[k] for k in keys[at:]}}

    # -- hooks ----------------------------------------------------------------------------

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        endpoint = unquote(outbound.path)
        method = outbound.method.upper()
        if endpoint == STATUS_CHANGE:
            if method != "POST":
                raise Problem(
                    METHOD_NOT_ALLOWED,
                    f"{STATUS_CHANGE} takes POST (a status change), not {method}.",
                    headers={"Allow": "POST"},
                )
            return self._sync_request(outbound, context)
        if endpoint.startswith(RECORD_PREFIX):
            if method != "GET":
                raise Problem(
                    METHOD_NOT_ALLOWED,
                    f"{RECORD_PREFIX}{{dossierId}} takes GET, not {method}.",
                    headers={"Allow": "GET"},
                )
            return self._record_request(outbound, endpoint.removeprefix(RECORD_PREFIX))
        raise Problem(
            NOT_FOUND,
            f"This service has POST {STATUS_CHANGE} and GET {RECORD_PREFIX}{{dossierId}}; "
            f"nothing at {endpoint!r}.",
        )

    def _sync_request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        change = json_object(outbound.body, "The status change")
        message = self.to_portal(self.config.text_in(change), context)
        return OutboundRequest(
            "POST", PORTAL_SYNC, "", _json_headers(outbound.headers), orjson.dumps(message)
        )

    def _record_request(self, outbound: OutboundRequest, dossier_id: str) -> OutboundRequest:
        if not DOSSIER_ID.fullmatch(dossier_id):
            raise Problem(
                INVALID_PATH,
                f"{dossier_id[:80]!r} is not a dossier code such as "
                "000.00.31.H49-251122-0001 (<agency code>-<yyMMdd>-<number>).",
            )
        headers = _json_headers(outbound.headers)
        del headers["Content-Type"]
        return OutboundRequest("GET", RECORD_PREFIX + dossier_id, "", headers, b"")

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        payload = _portal_payload(answer)
        code, message = payload["error_code"], _clean(payload.get("message"))
        if outbound.method == "POST":
            canonical = self._sync_answer(code, message, payload, outbound)
        else:
            canonical = self._record_answer(code, message, payload, outbound)
        body = orjson.dumps(self.config.text_out(canonical))
        return UpstreamResponse(
            200, CIMultiDict({"Content-Type": JSON_TYPE}), body, answer.elapsed_ms
        )

    def _sync_answer(
        self, code: int, message: str, payload: Mapping[str, Any], outbound: OutboundRequest
    ) -> dict[str, Any]:
        sent = self.from_portal(orjson.loads(outbound.body))
        dossier = str(sent.get("dossierId"))
        requested = str(sent.get("status"))
        portal_error = {"error_code": code, "message": message}
        if code == OK:
            if payload.get("maHoSo") not in (None, dossier):
                raise Problem(
                    UPSTREAM_BAD_RESPONSE,
                    f"The portal confirmed dossier {_clean(payload.get('maHoSo'))!r}, "
                    f"not {dossier!r} that was synced.",
                )
            return {"dossierId": dossier, "status": requested, "synced": True}
        if code == WRONG_AGENCY:
            agency = str(sent.get("agencyCode"))
            detail = f"the portal refused agency code {agency!r} for dossier {dossier}: {message}"
            raise Problem(
                INVALID_MESSAGE,
                f"/agencyCode: {detail}",
                errors=[{"pointer": "/agencyCode", "detail": detail}],
                portal_error=portal_error,
            )
        if code == NOT_FOUND_CODE:
            raise Problem(
                NOT_FOUND,
                f"The portal has no dossier {dossier}: a dossier's first change must be "
                f"status received; send status received first (portal: {message}).",
                portal_error=portal_error,
            )
        if code == INVALID_DATA:
            raise self._invalid_data(dossier, message, portal_error)
        if code == INVALID_TRANSITION:
            found = _TRANSITION.search(message)
            current = self._status_names.get(found.group(1)) if found else None
            raise Problem(
                CONFLICT,
                f"The portal cannot move dossier {dossier} from "
                f"{current or 'its current status'} to {requested} (portal: {message}).",
                current_status=current,
                requested_status=requested,
                portal_error=portal_error,
            )
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"The portal answered the sync of dossier {dossier} with error_code {code}: {message}",
            portal_error=portal_error,
        )

    def _invalid_data(self, dossier: str, message: str, portal_error: dict[str, Any]) -> Problem:
        found = self._field_re.search(message)
        field = found.group(1) if found else None
        pointer = self._fields.get(field) if field else None
        if field in _GATEWAY_FIELDS:
            return Problem(
                INTERNAL_ERROR,
                f"The portal refused the {field} this service sends, set by "
                f"{_GATEWAY_FIELDS[field]}: {message}. The gateway administrator must "
                "correct the service's configuration.",
                portal_error={**portal_error, "field": field},
            )
        if pointer:
            detail = f"the portal refused it (its field {field}) in dossier {dossier}: {message}"
            return Problem(
                INVALID_MESSAGE,
                f"{pointer}: {detail}",
                errors=[{"pointer": pointer, "detail": detail}],
                portal_error={**portal_error, "field": field},
            )
        return Problem(
            INVALID_MESSAGE,
            f"The portal refused the status change of dossier {dossier}: {message}",
            portal_error=portal_error,
        )

    def _record_answer(
        self, code: int, message: str, payload: Mapping[str, Any], outbound: OutboundRequest
    ) -> dict[str, Any]:
        dossier = outbound.path.removeprefix(RECORD_PREFIX)
        portal_error = {"error_code": code, "message": message}
        if code == NOT_FOUND_CODE:
            raise Problem(
                NOT_FOUND,
                f"The portal has no dossier {dossier} (portal: {message}).",
                portal_error=portal_error,
            )
        record = payload.get("hoSo")
        if code != OK or not isinstance(record, dict):
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The portal answered the lookup of dossier {dossier} with error_code {code}"
                f"{'' if isinstance(record, dict) or code != OK else ' and no hoSo record'}: "
                f"{message}",
                portal_error=portal_error,
            )
        try:
            return self.record_view(record)
        except MappingError as e:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The portal's record of dossier {dossier} cannot be read: {e}",
            ) from None


def _json_headers(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    out = CIMultiDict(headers)
    for name in ("Content-Type", "Content-Length", "Content-Encoding", "Accept"):
        out.popall(name, None)
    out["Content-Type"] = JSON_TYPE
    out["Accept"] = "application/json"
    return out


def _portal_payload(answer: UpstreamResponse) -> dict[str, Any]:
    """The portal's JSON answer; problems for what is not one. The portal answers 200 for
    success and business errors alike, 401 (error_code 100) for the gateway's token."""
    try:
        payload: Any = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        payload = None
    code = payload.get("error_code") if isinstance(payload, dict) else None
    if answer.status == 401 or code == AUTHENTICATION:
        message = _clean(payload.get("message")) if isinstance(payload, dict) else ""
        raise Problem(
            UPSTREAM_AUTH_FAILED,
            f"The national public service portal refused the gateway's access token "
            f"(HTTP {answer.status}, error_code {code}): {message or 'no message'}",
        )
    if answer.status != 200:
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"The national public service portal answered HTTP {answer.status}; it answers "
            "200 with an error_code for every outcome.",
        )
    if not isinstance(payload, dict) or not isinstance(code, int) or isinstance(code, bool):
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            "The national public service portal's answer is not its JSON "
            '{"error_code", "message", "maHoSo"}.',
        )
    return payload
