"""The dossier_sync adapter: its configuration and its hooks, the province's canonical
dossier status changes to the national public service portal's sync message and back
(the package docstring says what it converts; portal.py holds the conversions,
answers.py reads the portal's answers)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final
from urllib.parse import unquote

import orjson
from multidict import CIMultiDict
from pydantic import StringConstraints

from gateway.conversion.sdk import (
    INVALID_PATH,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    Adapter,
    AdapterConfig,
    Context,
    LegacyTextConfig,
    OutboundRequest,
    Problem,
    UpstreamResponse,
    json_object,
)

from .answers import clean, portal_payload, record_answer, sync_answer
from .portal import (
    DOSSIER_ID,
    JSON_TYPE,
    PORTAL_SYNC,
    RECORD_PREFIX,
    STATUS_CHANGE,
    Portal,
    json_headers,
)

__all__ = ["ADAPTER", "FOLDER", "DossierSyncAdapter", "DossierSyncConfig"]

FOLDER: Final = Path(__file__).resolve().parent

# At least two groups: the portal knows agencies below the province only (stricter than
# the SDK's AgencyCode).
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


class DossierSyncAdapter(Adapter[DossierSyncConfig]):
    """POST /ho-so/trang-thai (canonical status change) -> POST /ho-so/dong-bo (portal
    JSON + HoSo XML); GET /ho-so/{dossierId} -> the portal's GET /ho-so/{maHoSo}. The
    portal's error_code answers become canonical answers or problems."""

    name: ClassVar[str] = "dossier_sync"
    VERSION: ClassVar[str] = "1.0.1"
    Config: ClassVar[type[AdapterConfig]] = DossierSyncConfig

    def __init__(self, config: DossierSyncConfig) -> None:
        super().__init__(config)
        self.portal = Portal(FOLDER, config.model_dump())

    # -- conversions (pure: also what the round-trip tests run) ---------------------------

    def to_portal(
        self, change: Mapping[str, Any], context: Context | None = None
    ) -> dict[str, Any]:
        """A canonical status change (text already Unicode) -> the portal's sync message,
        its `data` the HoSo XML document as a string."""
        return self.portal.to_portal(change, context)

    def from_portal(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """A portal sync message -> the canonical status change it carries (datetimes
        with the +07:00 offset). Raises ValueError if `data` is not a HoSo document."""
        return self.portal.from_portal(message)

    def record_view(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The portal's record of a dossier (GET answer's hoSo) -> the canonical view."""
        return self.portal.record_view(record)

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
            change = json_object(outbound.body, "The status change")
            message = self.to_portal(self.config.text_in(change), context)
            headers = json_headers(outbound.headers)
            return OutboundRequest("POST", PORTAL_SYNC, "", headers, orjson.dumps(message))
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

    def _record_request(self, outbound: OutboundRequest, dossier_id: str) -> OutboundRequest:
        if not DOSSIER_ID.fullmatch(dossier_id):
            raise Problem(
                INVALID_PATH,
                f"{dossier_id[:80]!r} is not a dossier code such as "
                "000.00.31.H49-251122-0001 (<agency code>-<yyMMdd>-<number>).",
            )
        headers = json_headers(outbound.headers)
        del headers["Content-Type"]
        return OutboundRequest("GET", RECORD_PREFIX + dossier_id, "", headers, b"")

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        payload = portal_payload(answer)
        code, message = payload["error_code"], clean(payload.get("message"))
        if outbound.method == "POST":
            canonical = sync_answer(self.portal, code, message, payload, outbound)
        else:
            canonical = record_answer(self.portal, code, message, payload, outbound)
        body = orjson.dumps(self.config.text_out(canonical))
        return UpstreamResponse(
            200, CIMultiDict({"Content-Type": JSON_TYPE}), body, answer.elapsed_ms
        )


ADAPTER = DossierSyncAdapter
