"""The document_exchange adapter: its configuration and its hooks, provincial JSON
endpoints <-> edXML over SOAP (the package docstring says what it converts; routes.py
names the endpoints, operations.py and edxml.py build the SOAP request, answers.py and
faults.py read the answer)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Final

import orjson
from multidict import CIMultiDict

from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    PAYLOAD_TOO_LARGE,
    UPSTREAM_BAD_RESPONSE,
    Adapter,
    Context,
    DocCode,
    LegacyTextConfig,
    OutboundRequest,
    Problem,
    SoapVersion,
    UpstreamResponse,
    soap_content_type,
    soap_envelope,
    soap_fault_of,
)

from .answers import MAX_ANSWER_BYTES, operation_of, read_answer
from .edxml import SERVICE_NS, AttachmentsTooLarge, ConversionError, Edxml
from .faults import platform_failed
from .operations import moment, operation_element
from .routes import Route, route

__all__ = ["ADAPTER", "FOLDER", "DocumentExchangeAdapter", "DocumentExchangeConfig"]

FOLDER: Final = Path(__file__).resolve().parent
SOAP_PATH: Final = "/soap"  # appended to the service's upstream_path (/edxml/v1)


class DocumentExchangeConfig(LegacyTextConfig):
    """`sender_organ_id`: the province's organ on the exchange (a document-exchange code
    such as 000.00.00.H49), used when a caller leaves out `from` (sending, reporting a
    status) or `organId` (listing pending documents). `soap_version`: the envelope the
    national platform speaks (1.1 today). `legacy_input` / `legacy_output`: TCVN3 or
    VNI text from and to callers that still hold it."""

    sender_organ_id: DocCode | None = None
    soap_version: SoapVersion = "1.1"


class DocumentExchangeAdapter(Adapter[DocumentExchangeConfig]):
    name: ClassVar[str] = "document_exchange"
    VERSION: ClassVar[str] = "1.0.1"
    Config: ClassVar[type[DocumentExchangeConfig]] = DocumentExchangeConfig

    def __init__(self, config: DocumentExchangeConfig) -> None:
        super().__init__(config)
        # Compiled per instance: the gateway builds one per configuration and content of
        # the mapping files, so an edited mapping is live at the next reload.
        self.edxml = Edxml(FOLDER)
        self.version: SoapVersion = config.soap_version

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        found = self.route(outbound.method, outbound.path, outbound.query)
        try:
            element = operation_element(
                self.edxml,
                found,
                outbound.body,
                moment(context.now),
                config=self.config,
                sender_organ_id=self.config.sender_organ_id,
            )
        except AttachmentsTooLarge as e:
            raise Problem(PAYLOAD_TOO_LARGE, str(e), limit=10 * 1024 * 1024) from None
        except ConversionError as e:
            raise Problem(
                INVALID_MESSAGE,
                f"The message cannot be converted to edXML for {found.operation}: {e}",
            ) from None
        headers = CIMultiDict(outbound.headers)
        for name in ("Content-Type", "Content-Length", "Content-Encoding", "Accept", "SOAPAction"):
            headers.popall(name, None)
        headers.update(soap_content_type(self.version, f"{SERVICE_NS}/{found.operation}"))
        headers["Accept"] = "text/xml" if self.version == "1.1" else "application/soap+xml"
        return OutboundRequest(
            method="POST",
            path=SOAP_PATH,
            query="",
            headers=headers,
            body=soap_envelope(element, version=self.version),
        )

    def route(self, method: str, path: str, query: str) -> Route:
        """The operation an endpoint asks for, with the document and organ it names."""
        return route(method, path, query, default_organ=self.config.sender_organ_id)

    def upstream_failed(self, answer: UpstreamResponse, outbound: OutboundRequest) -> bool | None:
        """A fault is the platform's answer unless it says the platform failed
        (faults.platform_failed): a burst of "DocumentNotFound" must not open the breaker
        of the upstream the other national services share. No fault: by the status."""
        fault = soap_fault_of(answer.body, max_bytes=MAX_ANSWER_BYTES, large_text=True)
        return None if fault is None else platform_failed(fault)

    def response(
        self, answer: UpstreamResponse, outbound: OutboundRequest, context: Context
    ) -> UpstreamResponse:
        operation = operation_of(outbound.headers)
        converted = read_answer(self.edxml, operation, answer, outbound.body)
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


ADAPTER = DocumentExchangeAdapter
