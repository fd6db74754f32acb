"""The business_registration adapter: its configuration and its hooks (the package
docstring says what it converts; lookup.py and answers.py hold the conversions)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Final

import orjson
from multidict import CIMultiDict

from gateway.conversion.sdk import (
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    Adapter,
    AdapterConfig,
    AgencyCode,
    Context,
    LegacyEncodingError,
    LegacyTextConfig,
    National,
    OutboundRequest,
    Problem,
    UpstreamResponse,
    json_object,
    load_mappings,
    load_national,
)

from . import answers, lookup
from .lookup import LOOKUP_PATH, SERVICE

__all__ = ["ADAPTER", "BusinessRegistration", "BusinessRegistrationConfig"]

_XML: Final = "application/xml; charset=utf-8"
_JSON: Final = "application/json"


class BusinessRegistrationConfig(LegacyTextConfig):
    """`adapter_config` of a business registration service."""

    agency_code: AgencyCode | None = None
    """Sent as MaDonVi; without it, the calling client's agency code is sent."""


class BusinessRegistration(Adapter[BusinessRegistrationConfig]):
    """Canonical JSON enterprise lookup <-> the national XML lookup."""

    name: ClassVar[str] = "business_registration"
    VERSION: ClassVar[str] = "1.0.1"
    Config: ClassVar[type[AdapterConfig]] = BusinessRegistrationConfig

    def __init__(self, config: BusinessRegistrationConfig) -> None:
        super().__init__(config)
        folder = Path(__file__).resolve().parent
        national = load_national(folder)  # national.yaml: MaYeuCau, MaDonVi, MaLoi
        assert national is not None, "adapters/business_registration/national.yaml is missing"
        self.national: National = national
        mappings = load_mappings(folder, config.model_dump(), national)
        self.to_national = mappings["request"]  # MaDonVi: agency_code, else the caller's
        self.answer = mappings["answer"]
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
        return lookup.national_request(message, context, self.config, self.to_national)

    # -- national -> canonical ---------------------------------------------------------

    def upstream_failed(self, answer: UpstreamResponse, outbound: OutboundRequest) -> bool | None:
        """MaLoi as national.yaml declares it (a lookup outcome is the registry
        answering); anything else: by the status."""
        return answers.national_failed(answer.body, answer.status, self.answer, self.national)

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        if answer.status == 401:
            raise Problem(
                UPSTREAM_AUTH_FAILED,
                f"{SERVICE} refused the gateway's access token (HTTP 401), even after a "
                "new token was fetched; the gateway operators must check the credentials.",
            )
        sent = lookup.sent_request(outbound.body, self.to_national)
        status, document = self.canonical_answer(answer.status, answer.body, context, sent)
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
        self, status: int, body: bytes, context: Context, sent: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, canonical document) for the national answer to the canonical
        request `sent`; raises `Problem` for a refusal or an answer that cannot be
        understood."""
        return answers.canonical_answer(
            status, body, context, sent, (self.answer, self.to_canonical), self.national
        )


ADAPTER = BusinessRegistration
