"""Canonical documents and status reports <-> edXML (QCVN 102:2016) elements.

Pure conversions, compiled once (`Edxml(folder)`), used by the adapter's hooks and by
the round-trip tests. The field-by-field correspondence is in `mappings/*.yaml`; this
module adds what a mapping cannot say: the envelope's structure (TraceHeaderList,
attachment numbering and checks), Vietnam time, a status name to its code with the
list of names in the refusal, and reading the two spellings of an envelope a national
platform may hand back. The answers' XML (default namespace, lists, status names) is
declared in their mappings.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from lxml import etree

from gateway.conversion.sdk import (
    CompiledMapping,
    data_to_xml,
    load_code_lists,
    load_mappings,
    xml_to_data,
)

EDXML_NS: Final = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
SERVICE_NS: Final = "http://www.mic.gov.vn/TBT/QCVN_102_2016/service"
NAMESPACES: Final[Mapping[str, str]] = {"svc": SERVICE_NS, "edXML": EDXML_NS}
# Elements of an edXML envelope read as lists even when there is one (a schema needs a
# stable shape). The answers' mappings declare theirs; an envelope is read by hand
# (read_document: two spellings, its parts in different places), so its lists are here.
LISTS: Final = frozenset({"edXML:To", "edXML:Attachment"})
VIETNAM: Final = timezone(timedelta(hours=7))
MAX_ATTACHMENT_BYTES: Final = 10 * 1024 * 1024  # decoded, all files of one document
EDXML_TIMESTAMP: Final = "%Y/%m/%d %H:%M:%S"

_ORGAN_ID = re.compile(r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}")
_EDXML_DATE = re.compile(r"([0-9]{4})/([0-9]{2})/([0-9]{2})")
_WHITESPACE = re.compile(r"\s+")


class ConversionError(ValueError):
    """A message that cannot be converted; the text says which field and why."""


class AttachmentsTooLarge(ConversionError):
    """More files in one document than the national exchange takes."""


def ed(name: str) -> str:
    return f"{{{EDXML_NS}}}{name}"


def svc(name: str) -> str:
    return f"{{{SERVICE_NS}}}{name}"


def vietnam_time(moment: datetime) -> str:
    """`moment` in Vietnam time, to the second, as the status mapping's canonical side
    writes it (yyyy-MM-ddTHH:mm:ss+07:00)."""
    return moment.astimezone(VIETNAM).replace(microsecond=0).isoformat()


def parse_moment(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConversionError(f"{field}: {text!r} is not an ISO 8601 date and time") from None
    if moment.tzinfo is None:
        raise ConversionError(
            f"{field}: {text!r} has no UTC offset; write e.g. {text}+07:00 for Vietnam time"
        )
    return moment


def split_code(code: str) -> dict[str, str]:
    """'123/UBND-VP' -> number and notation (the number never holds a '/')."""
    number, sep, notation = code.partition("/")
    if not sep:
        return {"number": code} if code.isdigit() else {"notation": code}
    parts = {"number": number, "notation": notation}
    return {k: v for k, v in parts.items() if v}


def sender_from_document_id(document_id: str) -> dict[str, str] | None:
    """What the convention 'organ,yyyy/MM/dd,number/notation' says about a document's
    sender (edXML ResponseFor), or None when the id does not follow it."""
    parts = document_id.split(",", 2)
    if len(parts) != 3 or not _ORGAN_ID.fullmatch(parts[0].strip()):
        return None
    found: dict[str, str] = {"organId": parts[0].strip()}
    date = _EDXML_DATE.fullmatch(parts[1].strip())
    if date:
        found["promulgationDate"] = "-".join(date.groups())
    if parts[2].strip():
        found["code"] = parts[2].strip()
    return found


class Edxml:
    """The compiled mappings and code list of one adapter folder."""

    def __init__(self, folder: Path) -> None:
        mappings = load_mappings(folder)
        self.envelope: CompiledMapping = mappings["envelope"]
        self.status: CompiledMapping = mappings["status"]
        self.send_answer: CompiledMapping = mappings["send_answer"]
        self.pending: CompiledMapping = mappings["pending"]
        self.status_answer: CompiledMapping = mappings["status_answer"]
        self.status_list: CompiledMapping = mappings["status_list"]
        self.status_codes: dict[str, str] = load_code_lists(folder)["status"]
        self.status_names: dict[str, str] = {v: k for k, v in self.status_codes.items()}

    # -- status names ---------------------------------------------------------------------

    def status_code(self, name: str) -> str:
        try:
            return self.status_codes[name]
        except KeyError:
            known = ", ".join(n for n in self.status_codes if n != "arrived")
            raise ConversionError(f"status: {name!r} is not a status (one of {known})") from None

    def status_object(self, code: str) -> dict[str, str]:
        """{code, name}; the name is left out for a code this gateway does not know."""
        name = self.status_names.get(code)
        return {"code": code, "name": name} if name else {"code": code}

    # -- documents -----------------------------------------------------------------------

    def send_document(self, document: Mapping[str, Any], now: datetime) -> etree._Element:
        """svc:SendDocument carrying the canonical `document` as an edXML:Envelope."""
        _check_attachments(document.get("attachments"))
        content = self._map(self.envelope, _numbered(document))
        header = content.get("edXML:Header")
        if not isinstance(header, dict):
            raise ConversionError("the document has no header fields")
        organ = document["from"]["organId"]
        # Who handed the document to the exchange, and when (Vietnam time).
        header["edXML:TraceHeaderList"] = {
            "edXML:TraceHeader": {
                "edXML:OrganId": organ,
                "edXML:Timestamp": now.astimezone(VIETNAM).strftime(EDXML_TIMESTAMP),
            }
        }
        # QCVN order: Header (MessageHeader, TraceHeaderList), then AttachmentEncoded.
        ordered = {"edXML:Header": header}
        if "edXML:AttachmentEncoded" in content:
            ordered["edXML:AttachmentEncoded"] = content["edXML:AttachmentEncoded"]
        return _element("svc:SendDocument", {"edXML:Envelope": ordered})

    def read_document(self, container: etree._Element) -> dict[str, Any]:
        """The canonical document in an element holding an edXML:Envelope (SendDocument,
        GetDocumentResponse). The QCVN/SDK spelling, edXML:edXMLEnvelope with
        edXML:edXMLHeader and the AttachmentEncoded beside the envelope, is read too."""
        envelope = container.find(ed("Envelope"))
        if envelope is not None:
            header = envelope.find(ed("Header"))
            attachments = envelope.find(ed("AttachmentEncoded"))
        else:
            envelope = container.find(ed("edXMLEnvelope"))
            if envelope is None:
                raise ConversionError("the answer holds no edXML:Envelope")
            header = envelope.find(ed("edXMLHeader"))
            attachments = envelope.find(ed("AttachmentEncoded"))
            if attachments is None:
                attachments = container.find(ed("AttachmentEncoded"))
        if header is None:
            raise ConversionError("the edXML envelope has no Header")
        data: dict[str, Any] = {"edXML:Header": _data(header)}
        if attachments is not None:
            data["edXML:AttachmentEncoded"] = _data(attachments)
        document = self.envelope.reverse(data)
        files = document.get("attachments") or []
        for item in files:
            # Other senders' systems wrap base64 in lines; the canonical form has none.
            if isinstance(item.get("contentBase64"), str):
                item["contentBase64"] = _WHITESPACE.sub("", item["contentBase64"])
        document["attachments"] = files
        return document

    # -- status reports ------------------------------------------------------------------

    def update_status(self, report: Mapping[str, Any]) -> etree._Element:
        """svc:UpdateStatus for a status report already completed by the adapter:
        documentId, responseFor, from, status (a name), at (a Vietnam-time moment)."""
        values = {k: v for k, v in report.items() if k != "status"}
        values["statusCode"] = self.status_code(str(report["status"]))
        return _element("svc:UpdateStatus", {"edXML:Status": self._map(self.status, values)})

    def read_status(self, status: Mapping[str, Any]) -> dict[str, Any]:
        """One edXML:Status (as data) -> a history entry: status, from, description, at,
        staff (the document it is about is the answer's, not repeated)."""
        report = self.status.reverse(status)
        entry: dict[str, Any] = {"status": self.status_object(str(report.get("statusCode", "")))}
        for key in ("from", "description", "at", "staff"):
            if key in report:
                entry[key] = report[key]
        return entry

    # -- answers -------------------------------------------------------------------------

    def read_answer(self, operation: str, result: etree._Element) -> dict[str, Any]:
        """The canonical answer for an operation's response element (its mapping reads
        the XML as declared: default namespace, lists, [] when empty, status names)."""
        if operation == "GetDocument":
            return self.read_document(result)
        mapping = {
            "SendDocument": self.send_answer,
            "GetPendingDocuments": self.pending,
            "UpdateStatus": self.status_answer,
            "GetStatus": self.status_list,
        }[operation]
        answer = mapping.from_xml(result)
        # A listed code is "number/notation" in one text; the canonical form splits it.
        for summary in answer.get("documents", []):
            if isinstance(summary.get("code"), str):
                summary["code"] = split_code(summary["code"])
        # A recipient's history entries are edXML:Status, read by the status mapping.
        for recipient in answer.get("recipients", []):
            history = recipient["history"]
            entries = history if isinstance(history, list) else []
            recipient["history"] = [self.read_status(e) for e in entries if isinstance(e, dict)]
        return answer

    @staticmethod
    def _map(mapping: CompiledMapping, source: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return mapping.apply(source)
        except ValueError as e:  # MappingError: a required value missing, a bad date
            raise ConversionError(str(e)) from None


def _numbered(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document with every attachment given a ContentId (1, 2, ...) if it has none."""
    files = document.get("attachments")
    if not isinstance(files, list):
        return dict(document)
    numbered = [
        {"contentId": str(i), **item} if isinstance(item, dict) and "contentId" not in item
        else item
        for i, item in enumerate(files, 1)
    ]  # fmt: skip
    return {**document, "attachments": numbered}


def _check_attachments(files: Any) -> None:
    """Valid base64, and at most 10 MiB decoded in all (the platform's limit), checked
    before anything is sent."""
    if files is None:
        return
    if not isinstance(files, list):
        raise ConversionError("attachments: must be a list")
    total = 0
    for i, item in enumerate(files):
        text = item.get("contentBase64") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text:
            raise ConversionError(f"attachments/{i}/contentBase64: the file's bytes are missing")
        try:
            total += len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise ConversionError(
                f"attachments/{i}/contentBase64: not base64 (standard alphabet, padded, "
                "no line breaks)"
            ) from None
        if total > MAX_ATTACHMENT_BYTES:
            raise AttachmentsTooLarge(
                f"attachments: more than {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB of files "
                f"(decoded) in one document, the national exchange's limit (at "
                f"attachments/{i})"
            )


def _data(element: etree._Element) -> Any:
    """The element's content as data (its name dropped)."""
    [(_, value)] = xml_to_data(element, namespaces=NAMESPACES, lists=LISTS).items()
    return value


def _element(name: str, content: Mapping[str, Any]) -> etree._Element:
    try:
        return data_to_xml(content, namespaces=NAMESPACES, root=name)
    except ValueError as e:  # a control character, a value with no XML form
        raise ConversionError(f"cannot be written as edXML: {e}") from None


def now_utc() -> datetime:
    return datetime.now(UTC)
