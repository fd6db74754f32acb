"""The portal's answers -> canonical answers or problems. The portal answers HTTP 200
with an `error_code` for every outcome (401 / error_code 100 for the gateway's token);
the package docstring lists what each code becomes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from gateway.conversion.sdk import (
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_MESSAGE,
    NO_SUCH_RECORD,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    MappingError,
    OutboundRequest,
    Problem,
    UpstreamResponse,
)

from .portal import GATEWAY_FIELDS, RECORD_PREFIX, Portal

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


def clean(message: Any) -> str:
    """A portal message fit to quote: control characters made spaces, at most 500
    characters."""
    text = _CONTROL.sub(" ", str(message or "")).strip()
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def portal_payload(answer: UpstreamResponse) -> dict[str, Any]:
    """The portal's JSON answer; problems for what is not one. The portal answers 200 for
    success and business errors alike, 401 (error_code 100) for the gateway's token."""
    try:
        payload: Any = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        payload = None
    code = payload.get("error_code") if isinstance(payload, dict) else None
    if answer.status == 401 or code == AUTHENTICATION:
        message = clean(payload.get("message")) if isinstance(payload, dict) else ""
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


def sync_answer(
    portal: Portal,
    code: int,
    message: str,
    payload: Mapping[str, Any],
    outbound: OutboundRequest,
) -> dict[str, Any]:
    """The canonical answer to a status change (`outbound`: the sync message sent)."""
    sent = portal.from_portal(orjson.loads(outbound.body))
    dossier = str(sent.get("dossierId"))
    requested = str(sent.get("status"))
    portal_error = {"error_code": code, "message": message}
    if code == OK:
        if payload.get("maHoSo") not in (None, dossier):
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"The portal confirmed dossier {clean(payload.get('maHoSo'))!r}, "
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
            NO_SUCH_RECORD,
            f"The portal has no dossier {dossier}: a dossier's first change must be "
            f"status received; send status received first (portal: {message}).",
            portal_error=portal_error,
        )
    if code == INVALID_DATA:
        raise _invalid_data(portal, dossier, message, portal_error)
    if code == INVALID_TRANSITION:
        found = _TRANSITION.search(message)
        current = portal.status_names.get(found.group(1)) if found else None
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


def _invalid_data(
    portal: Portal, dossier: str, message: str, portal_error: dict[str, Any]
) -> Problem:
    found = portal.field_re.search(message)
    field = found.group(1) if found else None
    pointer = portal.fields.get(field) if field else None
    if field in GATEWAY_FIELDS:
        return Problem(
            INTERNAL_ERROR,
            f"The portal refused the {field} this service sends, set by "
            f"{GATEWAY_FIELDS[field]}: {message}. The gateway administrator must "
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


def record_answer(
    portal: Portal,
    code: int,
    message: str,
    payload: Mapping[str, Any],
    outbound: OutboundRequest,
) -> dict[str, Any]:
    """The canonical view of a dossier the portal holds (`outbound`: the GET sent)."""
    dossier = outbound.path.removeprefix(RECORD_PREFIX)
    portal_error = {"error_code": code, "message": message}
    if code == NOT_FOUND_CODE:
        raise Problem(
            NO_SUCH_RECORD,
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
        return portal.record_view(record)
    except MappingError as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"The portal's record of dossier {dossier} cannot be read: {e}",
        ) from None
