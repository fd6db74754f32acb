"""Canonical lookup -> the national XML request (`TraCuuDoanhNghiep`), and the fields of
a request sent, read back to check the answer against it."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Final

from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    CompiledMapping,
    Context,
    LegacyTextConfig,
    MappingError,
    Problem,
    data_to_xml,
    parse_xml,
    to_bytes,
    xml_to_data,
)

LOOKUP_PATH: Final = "/doanh-nghiep/tra-cuu"
REQUEST_ROOT: Final = "TraCuuDoanhNghiep"
MAX_REQUEST_ID: Final = 40  # MaYeuCau's length on the national side
SERVICE: Final = "The national business registration database"


def national_request(
    message: dict[str, Any],
    context: Context,
    config: LegacyTextConfig,
    agency_code: str | None,
    to_national: CompiledMapping,
) -> bytes:
    """The XML request for a canonical request (its strings made Unicode NFC), from
    `agency_code` (MaDonVi; the calling client's when None)."""
    # The canonical request is flat: codes are strings (the schema says so too, for
    # services that validate it).
    for key, value in message.items():
        if not isinstance(value, str):
            raise Problem(INVALID_MESSAGE, f"/{key} must be a string, not {type(value).__name__}.")
    try:
        text = config.text_in(message)
    except ValueError as e:
        raise Problem(
            INVALID_MESSAGE,
            f"The request's text is not valid {config.legacy_input}: {e}",
        ) from None
    ctx = dataclasses.replace(
        context,
        request_id=national_request_id(context.request_id),
        client_agency=agency_code or context.client_agency,
    )
    try:
        national = to_national.apply(text, ctx)
        return to_bytes(data_to_xml(national, namespaces={}, root=REQUEST_ROOT))
    except (MappingError, ValueError) as e:
        raise Problem(
            INVALID_MESSAGE, f"The request cannot be converted for {SERVICE}: {e}"
        ) from None


def national_request_id(request_id: str) -> str:
    """MaYeuCau for a gateway request id: itself, or its SHA-1 (40 hex digits) when it
    is longer than the national side accepts."""
    if len(request_id) <= MAX_REQUEST_ID:
        return request_id
    return hashlib.sha1(request_id.encode(), usedforsecurity=False).hexdigest()


def sent_fields(body: bytes) -> dict[str, str]:
    """The fields of the XML request this adapter sent (to check the echo, to name the
    code in a not-found answer)."""
    try:
        sent = xml_to_data(parse_xml(body), namespaces={}).get(REQUEST_ROOT)
    except ValueError:
        return {}
    return {k: v for k, v in sent.items() if isinstance(v, str)} if isinstance(sent, dict) else {}
