"""A routed request -> the SOAP operation element for the national exchange: a document
(SendDocument) or a status report (UpdateStatus) converted by `Edxml`, with the
defaults the service's configuration gives, or a plain lookup (the other operations)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from lxml import etree

from gateway.conversion.sdk import LegacyTextConfig

from .edxml import (
    SERVICE_NS,
    ConversionError,
    Edxml,
    now_utc,
    parse_moment,
    sender_from_document_id,
    svc,
    vietnam_time,
)
from .routes import Route


def operation_element(
    edxml: Edxml,
    route: Route,
    body: bytes,
    now: datetime,
    *,
    config: LegacyTextConfig,
    sender_organ_id: str | None,
) -> etree._Element:
    """The body element of the SOAP request for `route`. Raises ConversionError
    (AttachmentsTooLarge among them) for a message that cannot be converted."""
    if route.operation == "SendDocument":
        return edxml.send_document(_document(_json(body), config, sender_organ_id), now)
    if route.operation == "UpdateStatus":
        assert route.document_id is not None
        report = _report(_json(body), route.document_id, now, config, sender_organ_id)
        return edxml.update_status(report)
    values: dict[str, Any] = {}
    if route.document_id is not None:
        values["svc:DocumentId"] = route.document_id
    if route.organ_id is not None:
        values["svc:OrganId"] = route.organ_id
    return _plain(f"svc:{route.operation}", values)


def moment(iso: str) -> datetime:
    """The exchange's start (`Context.now`), or now when it has none or no offset."""
    if iso:
        try:
            moment = datetime.fromisoformat(iso)
            if moment.tzinfo is not None:
                return moment
        except ValueError:
            pass
    return now_utc()


def _document(
    body: dict[str, Any], config: LegacyTextConfig, sender_organ_id: str | None
) -> dict[str, Any]:
    if "status" in body:
        raise ConversionError(
            "this is a status report, not a document: POST it to /documents/{documentId}/status"
        )
    document = config.text_in(body)
    if "from" not in document:
        document["from"] = {"organId": _default_organ("from", sender_organ_id)}
    return dict(document)


def _report(
    body: dict[str, Any],
    document_id: str,
    now: datetime,
    config: LegacyTextConfig,
    sender_organ_id: str | None,
) -> dict[str, Any]:
    report: dict[str, Any] = dict(config.text_in(body))
    if not isinstance(report.get("status"), str):
        raise ConversionError(
            "status is required: one of rejected, accepted, assigned, in_progress, "
            "completed, recall_requested, recall_accepted, recall_rejected"
        )
    report["documentId"] = document_id
    if "from" not in report:
        report["from"] = {"organId": _default_organ("from", sender_organ_id)}
    if "responseFor" not in report:
        found = sender_from_document_id(document_id)
        if found is None:
            raise ConversionError(
                "responseFor.organId is required: the document id "
                f"{document_id!r} does not name its sender the usual way "
                "('organ,yyyy/MM/dd,number/notation')"
            )
        report["responseFor"] = found
    at = report.get("at")
    report["at"] = vietnam_time(parse_moment(at, "at") if isinstance(at, str) else now)
    return report


def _default_organ(field: str, sender_organ_id: str | None) -> str:
    if sender_organ_id is None:
        raise ConversionError(
            f"{field} is required: this service has no default organ (sender_organ_id)"
        )
    return sender_organ_id


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ConversionError(f"the body is not JSON ({e})") from None
    if not isinstance(value, dict):
        raise ConversionError("the body must be a JSON object")
    return value


def _plain(name: str, values: Mapping[str, str]) -> etree._Element:
    element = etree.Element(svc(name.split(":", 1)[1]), nsmap={"svc": SERVICE_NS})
    for key, value in values.items():
        etree.SubElement(element, svc(key.split(":", 1)[1])).text = value
    return element
