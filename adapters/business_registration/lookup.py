"""Canonical lookup -> the national XML request (`TraCuuDoanhNghiep`, written by
mappings/request.yaml), and the canonical request read back from what was sent."""

from __future__ import annotations

from typing import Any, Final

from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    CompiledMapping,
    Context,
    LegacyTextConfig,
    MappingError,
    Problem,
)

LOOKUP_PATH: Final = "/doanh-nghiep/tra-cuu"
SERVICE: Final = "The national business registration database"


def national_request(
    message: dict[str, Any],
    context: Context,
    config: LegacyTextConfig,
    to_national: CompiledMapping,
) -> bytes:
    """The XML request for a canonical request (its strings made Unicode NFC); MaDonVi,
    the shortened MaYeuCau and the XML are the mapping's."""
    # The canonical request is flat: codes are strings (the schema says so too, for
    # services that validate it). A rule cannot refuse a number where text is expected.
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
    try:
        return to_national.to_xml(text, context)
    except MappingError as e:
        raise Problem(
            INVALID_MESSAGE, f"The request cannot be converted for {SERVICE}: {e}"
        ) from None


def sent_request(body: bytes, to_national: CompiledMapping) -> dict[str, Any]:
    """The canonical request the XML request sent carries (the request mapping run
    backwards), to name the code in a not-found answer; {} when it cannot be read."""
    try:
        return to_national.from_xml(body)
    except ValueError:
        return {}
