"""The population adapter: its configuration and its hooks (the package docstring says
what it converts; lookup.py and answers.py hold the conversions)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, ClassVar

import orjson
from multidict import CIMultiDict
from pydantic import StringConstraints

from gateway.conversion.sdk import (
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    UPSTREAM_BAD_RESPONSE,
    Adapter,
    AgencyCode,
    Context,
    LegacyTextConfig,
    National,
    OutboundRequest,
    Problem,
    UpstreamResponse,
    load_mappings,
    load_national,
)

from .answers import canonical_answer, national_failed
from .lookup import check_accountability, endpoint_for, national_lookup

__all__ = ["ADAPTER", "FOLDER", "PopulationAdapter", "PopulationConfig"]

FOLDER = Path(__file__).resolve().parent
OPERATION = "/cong-dan/tra-cuu"  # the canonical service's one operation
JSON = "application/json"


class PopulationConfig(LegacyTextConfig):
    """The `adapter_config` of a service using the `population` adapter."""

    agency_code: AgencyCode
    integration_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")] | None = None


class PopulationAdapter(Adapter[PopulationConfig]):
    name: ClassVar[str] = "population"
    VERSION: ClassVar[str] = "1.0.1"
    Config: ClassVar[type[PopulationConfig]] = PopulationConfig

    def __init__(self, config: PopulationConfig) -> None:
        super().__init__(config)
        # Compiled per instance: the gateway builds one per configuration and content of
        # the mapping files, so an edited mapping is live at the next reload.
        national = load_national(FOLDER)  # national.yaml: MaYeuCau, MaDonVi, MaLoi
        assert national is not None, "adapters/population/national.yaml is missing"
        self.national: National = national
        mappings = load_mappings(FOLDER, config.model_dump(), national)
        self.accountability = mappings["accountability"]  # with MaDonVi, MaTichHop
        self.echo = mappings["answer"]
        self.by_number = mappings["lookup-by-number"]
        self.by_name = mappings["lookup-by-name"]
        self.citizen = mappings["citizen"]
        self.full_name = mappings["full-name"]

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
        check_accountability(context, self.national)
        lookup = self.lookup(outbound.body, context)
        headers = CIMultiDict(outbound.headers)
        headers["Content-Type"] = JSON
        headers["Accept"] = JSON
        headers.popall("Content-Encoding", None)
        return OutboundRequest("POST", endpoint_for(lookup), "", headers, orjson.dumps(lookup))

    def lookup(self, body: bytes, context: Context) -> dict[str, Any]:
        """The national lookup body for a canonical request body (the request hook's
        conversion, without the HTTP parts)."""
        return national_lookup(
            body,
            context,
            text_in=self.config.text_in,
            accountability=self.accountability,
            by_number=self.by_number,
            by_name=self.by_name,
        )

    # -- national answer -> canonical answer -------------------------------------------------

    def upstream_failed(self, answer: UpstreamResponse, outbound: OutboundRequest) -> bool | None:
        """MaLoi as national.yaml declares it (0, 201, 202: the database answering,
        whatever the HTTP status); anything else: by the status."""
        return national_failed(self.national, answer)

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
        return canonical_answer(
            status,
            body,
            request_id,
            national=self.national,
            echo=self.echo,
            citizen=self.citizen,
            full_name=self.full_name,
        )


ADAPTER = PopulationAdapter
