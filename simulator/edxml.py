"""Simulated national electronic document exchange (edXML, QCVN 102:2016) over SOAP 1.1.

One endpoint, ``POST /edxml/v1/soap`` (``Content-Type: text/xml``), behind the national
platform's bearer token. The ``SOAPAction`` header names the operation and must agree
with the element in ``soap:Body``; operation elements and their parameters are in the
service namespace :data:`SERVICE_NS`, edXML content in :data:`EDXML_NS`:

``SendDocument``
    Carries ``edXML:Envelope`` → ``edXML:Header`` (``edXML:MessageHeader``,
    ``edXML:TraceHeaderList``) and ``edXML:AttachmentEncoded`` (``edXML:Attachment``
    with base64 ``ContentTransferEncoded``). The QCVN/SDK spelling
    ``edXML:edXMLEnvelope`` → ``edXML:edXMLHeader``, with ``AttachmentEncoded`` after the
    envelope instead of inside it, is accepted too. The platform checks the essentials
    (organ codes, registered organs, ``DocumentId``, ``Subject``, dates, base64, at most
    10 MiB of attachments) and answers ``DocumentId``, its own ``ReceiveId`` and status
    ``01`` (arrived) for every recipient (``To`` may repeat).
``GetPendingDocuments`` (``OrganId``)
    Documents sent to the organ that it has not fetched yet.
``GetDocument`` (``DocumentId``, ``OrganId`` unless the document has one recipient)
    The elements as sent (envelope and attachments), byte for byte in their text; marks
    the document fetched for that recipient (the sender may read it too, unmarked).
``UpdateStatus`` (``edXML:Status``)
    A recipient moves its copy 01 → 02 (rejected) | 03 (accepted); 03 → 04 (assigned)
    → 05 (in progress) → 06 (completed). The sender asks for a recall, 13, from 01, 03,
    04 or 05 (for every recipient); the recipient answers 15 (recall accepted, final)
    or 16 (recall rejected: the copy goes on from where it was). Anything else is a
    ``soap:Client`` fault naming the current and requested status.
``GetStatus`` (``DocumentId``)
    Each recipient's current status and its history as ``edXML:Status`` elements.

Errors are SOAP 1.1 faults (HTTP 500, §6.2 of SOAP 1.1): ``soap:Client`` for what the
caller got wrong, with a Vietnamese ``faultstring`` naming it and a machine-readable
``detail/svc:ErrorCode``; ``soap:Server`` for a platform failure, which tests provoke
with a ``DocumentId`` starting with ``FAIL-SERVER``. A missing or invalid token is a
``soap:Client`` fault with HTTP 401, a body that is not ``text/xml`` one with 415, a body
over :data:`MAX_REQUEST_BYTES` one with 413.

State (documents, deliveries, statuses) lives in memory, per simulator instance. The
organ directory (:data:`ORGANS`) holds sample codes, not official ones.
"""

import base64
import binascii
import copy
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from aiohttp import web
from lxml import etree

from simulator.business import (
    XmlRejected,
    element_children,
    parse_untrusted_xml,
    tag_of,
    to_xml_bytes,
)

SOAP_PATH = "/edxml/v1/soap"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
SERVICE_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016/service"
EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
_NSMAP = {"soap": SOAP_NS, "svc": SERVICE_NS, "edXML": EDXML_NS}

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
"""Decoded size of all attachments of one document."""
MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Size of one SOAP request (10 MiB in base64 is just under 14 MiB)."""

ORGANS: Mapping[str, str] = {
    "000.00.00.H49": "Ủy ban nhân dân tỉnh (mẫu)",
    "000.00.31.H49": "Trung tâm Phục vụ hành chính công tỉnh (mẫu)",
    "000.00.12.H49": "Sở Tư pháp (mẫu)",
    "000.00.45.H49": "Sở Y tế (mẫu)",
    "000.00.00.H26": "Ủy ban nhân dân tỉnh bạn (mẫu)",
    "000.00.31.H26": "Trung tâm Phục vụ hành chính công tỉnh bạn (mẫu)",
    "000.00.00.G22": "Văn phòng Chính phủ (mẫu)",
}
"""Organs registered on the simulated exchange: document-exchange code → name."""

STATUS_NAMES: Mapping[str, str] = {
    "01": "Đã đến",
    "02": "Từ chối tiếp nhận",
    "03": "Đã tiếp nhận",
    "04": "Phân công xử lý",
    "05": "Đang xử lý",
    "06": "Hoàn thành",
    "13": "Yêu cầu lấy lại văn bản",
    "15": "Đồng ý lấy lại văn bản",
    "16": "Từ chối lấy lại văn bản",
}
_RECIPIENT_MOVES: Mapping[str, frozenset[str]] = {
    "01": frozenset({"02", "03"}),
    "03": frozenset({"04"}),
    "04": frozenset({"05"}),
    "05": frozenset({"06"}),
    "13": frozenset({"15", "16"}),
}
_RECALLABLE = frozenset({"01", "03", "04", "05"})

_ORGAN_ID = re.compile(r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}")
_MAX_DOCUMENT_ID = 255
_DATE_FORMAT = "%Y/%m/%d"
_TIMESTAMP_FORMAT = "%Y/%m/%d %H:%M:%S"
_VIETNAM = timezone(timedelta(hours=7))
_SERVER_FAILURE_PREFIX = "FAIL-SERVER"
_OPERATIONS = ("SendDocument", "GetPendingDocuments", "GetDocument", "UpdateStatus", "GetStatus")


def _ed(name: str) -> str:
    return f"{{{EDXML_NS}}}{name}"


def _svc(name: str) -> str:
    return f"{{{SERVICE_NS}}}{name}"


def _now() -> str:
    return datetime.now(UTC).astimezone(_VIETNAM).strftime(_TIMESTAMP_FORMAT)


class _Fault(Exception):
    def __init__(self, message: str, error_code: str, code: str = "Client") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.code = code


def _client_fault(message: str, error_code: str = "InvalidRequest") -> _Fault:
    return _Fault(message, error_code, "Client")


def _fault_response(
    fault: _Fault, status: int = 500, headers: Mapping[str, str] | None = None
) -> web.Response:
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap=_NSMAP)
    body = etree.SubElement(envelope, f"{{{SOAP_NS}}}Body")
    soap_fault = etree.SubElement(body, f"{{{SOAP_NS}}}Fault")
    etree.SubElement(soap_fault, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(soap_fault, "faultstring").text = fault.message
    detail = etree.SubElement(soap_fault, "detail")
    etree.SubElement(detail, _svc("ErrorCode")).text = fault.error_code
    return _soap_response(envelope, status, headers)


def _soap_response(
    envelope: etree._Element, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=to_xml_bytes(envelope),
        status=status,
        headers=headers,
        content_type="text/xml",
        charset="utf-8",
    )


def _response_envelope(operation: str) -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap=_NSMAP)
    body = etree.SubElement(envelope, f"{{{SOAP_NS}}}Body")
    return envelope, etree.SubElement(body, _svc(f"{operation}Response"))


def _add(parent: etree._Element, tag: str, text: str) -> etree._Element:
    child = etree.SubElement(parent, tag)
    child.text = text
    return child


# --- Reading requests ---------------------------------------------------------------


def _child(parent: etree._Element, tag: str) -> etree._Element | None:
    return next((c for c in element_children(parent) if c.tag == tag), None)


def _local(tag: str) -> str:
    return etree.QName(tag).localname


def _text(parent: etree._Element | None, tag: str) -> str:
    child = None if parent is None else _child(parent, tag)
    return "" if child is None else (child.text or "").strip()


def _required(parent: etree._Element | None, tag: str, where: str) -> str:
    value = _text(parent, tag)
    if not value:
        raise _client_fault(f"Thiếu trường bắt buộc {where}/{_local(tag)}", "MissingField")
    return value


def _organ_id(parent: etree._Element | None, where: str) -> str:
    value = _required(parent, _ed("OrganId"), where)
    if not _ORGAN_ID.fullmatch(value):
        raise _client_fault(
            f"{where}/OrganId '{value}' không đúng định dạng mã định danh văn bản điện tử "
            "(ví dụ 000.00.00.H49)",
            "InvalidOrganId",
        )
    return value


def _check_format(value: str, fmt: str, where: str, shown: str) -> None:
    if not value:
        return
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        raise _client_fault(
            f"{where} '{value}' không đúng định dạng {shown}", "InvalidDate"
        ) from None


def _document_id(value: str, where: str) -> str:
    if len(value) > _MAX_DOCUMENT_ID:
        raise _client_fault(f"{where} vượt quá {_MAX_DOCUMENT_ID} ký tự", "InvalidDocumentId")
    if value.startswith(_SERVER_FAILURE_PREFIX):
        raise _Fault(
            "Lỗi hệ thống tại trục liên thông văn bản quốc gia, vui lòng thử lại sau",
            "ServerError",
            "Server",
        )
    return value


def _decode_base64(text: str, name: str) -> bytes:
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _client_fault(
            f"Tệp đính kèm '{name}': ContentTransferEncoded không phải base64 hợp lệ",
            "InvalidAttachment",
        ) from None


# --- State --------------------------------------------------------------------------


@dataclass
class StatusEntry:
    """One status a recipient's copy went through."""

    code: str
    organ_id: str
    organ_name: str
    description: str
    timestamp: str
    staff: dict[str, str] = field(default_factory=dict)


@dataclass
class Delivery:
    """A document's copy at one recipient."""

    organ_id: str
    history: list[StatusEntry]
    fetched: bool = False
    resume: str | None = None
    """The status before a recall request, where a rejected recall (16) goes back to."""

    @property
    def status(self) -> str:
        return self.history[-1].code

    @property
    def effective(self) -> str:
        """The status transitions start from (a rejected recall resumes the earlier one)."""
        if self.status == "16" and self.resume is not None:
            return self.resume
        return self.status


@dataclass
class Document:
    """A document received by the exchange."""

    document_id: str
    receive_id: str
    sender_id: str
    sender_name: str
    subject: str
    code: str
    promulgation_date: str
    received_at: str
    payload: list[etree._Element]
    """The elements of ``SendDocument`` as sent (envelope and attachments)."""
    deliveries: dict[str, Delivery]


@dataclass
class DocumentExchange:
    """The document exchange of one simulator instance."""

    is_authorised: Callable[[web.Request], bool]
    organs: dict[str, str] = field(default_factory=lambda: dict(ORGANS))
    documents: dict[str, Document] = field(default_factory=dict)
    down: bool = False
    """An outage (``/_sim/outage/document-exchange``): every call answered 503."""
    refused_while_down: int = 0

    async def soap(self, request: web.Request) -> web.Response:
        if self.down:
            self.refused_while_down += 1
            fault = _Fault("Trục liên thông văn bản đang bảo trì", "ServiceUnavailable", "Server")
            return _fault_response(fault, 503, {"Retry-After": "1"})
        if not self.is_authorised(request):
            fault = _client_fault(
                "Lỗi xác thực: access token không hợp lệ hoặc đã hết hạn", "Unauthenticated"
            )
            return _fault_response(fault, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if request.content_type != "text/xml":
            fault = _client_fault(
                f"Content-Type phải là text/xml (SOAP 1.1), không phải {request.content_type}",
                "UnsupportedMediaType",
            )
            return _fault_response(fault, 415)
        raw = await _read_capped(request, MAX_REQUEST_BYTES)
        if raw is None:
            fault = _client_fault(
                f"Yêu cầu vượt quá {MAX_REQUEST_BYTES // (1024 * 1024)} MiB", "RequestTooLarge"
            )
            return _fault_response(fault, 413)
        try:
            operation, element = _operation(raw, request.headers.get("SOAPAction"))
            handler = {
                "SendDocument": self._send_document,
                "GetPendingDocuments": self._get_pending_documents,
                "GetDocument": self._get_document,
                "UpdateStatus": self._update_status,
                "GetStatus": self._get_status,
            }[operation]
            return _soap_response(handler(element))
        except _Fault as fault:
            return _fault_response(fault)

    # --- SendDocument ---------------------------------------------------------------

    def _send_document(self, operation: etree._Element) -> etree._Element:
        children = element_children(operation)
        envelope = next(
            (c for c in children if c.tag in (_ed("Envelope"), _ed("edXMLEnvelope"))), None
        )
        if envelope is None:
            raise _client_fault("Thiếu gói tin edXML:Envelope trong SendDocument", "MissingField")
        header_tag = _ed("Header") if envelope.tag == _ed("Envelope") else _ed("edXMLHeader")
        header = _child(envelope, header_tag)
        if header is None:
            raise _client_fault(f"Thiếu edXML:{_local(header_tag)} trong gói tin", "MissingField")
        message = _child(header, _ed("MessageHeader"))
        if message is None:
            raise _client_fault("Thiếu edXML:MessageHeader trong gói tin", "MissingField")

        document_id = _document_id(
            _required(message, _ed("DocumentId"), "MessageHeader"), "MessageHeader/DocumentId"
        )
        sender = _child(message, _ed("From"))
        sender_id = _organ_id(sender, "MessageHeader/From")
        recipients = [c for c in element_children(message) if c.tag == _ed("To")]
        if not recipients:
            raise _client_fault("Thiếu đơn vị nhận MessageHeader/To", "MissingField")
        recipient_ids = [_organ_id(to, "MessageHeader/To") for to in recipients]
        subject = _required(message, _ed("Subject"), "MessageHeader")
        promulgation = _child(message, _ed("PromulgationInfo"))
        promulgation_date = _text(promulgation, _ed("PromulgationDate"))
        _check_format(
            promulgation_date, _DATE_FORMAT, "PromulgationInfo/PromulgationDate", "yyyy/MM/dd"
        )
        _check_trace_timestamps(header)

        self._check_routing(sender_id, recipient_ids)
        _check_attachments(envelope, children)
        if document_id in self.documents:
            raise _client_fault(
                f"Văn bản có DocumentId '{document_id}' đã được gửi", "DuplicateDocument"
            )

        code = _child(message, _ed("Code"))
        number, notation = _text(code, _ed("CodeNumber")), _text(code, _ed("CodeNotation"))
        now = _now()
        sender_name = _text(sender, _ed("OrganName")) or self.organs[sender_id]
        arrived = STATUS_NAMES["01"]
        document = Document(
            document_id=document_id,
            receive_id=str(uuid.uuid4()),
            sender_id=sender_id,
            sender_name=sender_name,
            subject=subject,
            code=f"{number}/{notation}" if number and notation else number or notation,
            promulgation_date=promulgation_date,
            received_at=now,
            payload=[copy.deepcopy(c) for c in children],
            deliveries={
                organ_id: Delivery(
                    organ_id,
                    [StatusEntry("01", organ_id, self.organs[organ_id], arrived, now)],
                )
                for organ_id in recipient_ids
            },
        )
        self.documents[document_id] = document

        envelope_out, result = _response_envelope("SendDocument")
        _add(result, _svc("DocumentId"), document_id)
        _add(result, _svc("ReceiveId"), document.receive_id)
        _add(result, _svc("StatusCode"), "01")
        _add(result, _svc("Description"), arrived)
        _add(result, _svc("Timestamp"), now)
        return envelope_out

    def _check_routing(self, sender_id: str, recipient_ids: list[str]) -> None:
        """Sender and recipients registered on the axis, each recipient once, none the sender."""
        if sender_id not in self.organs:
            raise _client_fault(
                f"Đơn vị gửi {sender_id} chưa đăng ký trên trục liên thông", "UnknownOrgan"
            )
        for organ_id in recipient_ids:
            if organ_id not in self.organs:
                raise _client_fault(
                    f"Đơn vị nhận {organ_id} chưa đăng ký trên trục liên thông", "UnknownOrgan"
                )
        if len(set(recipient_ids)) != len(recipient_ids):
            raise _client_fault(
                "Một đơn vị nhận xuất hiện nhiều lần trong To", "DuplicateRecipient"
            )
        if sender_id in recipient_ids:
            raise _client_fault("Đơn vị nhận trùng với đơn vị gửi", "InvalidRecipient")

    # --- GetPendingDocuments / GetDocument ------------------------------------------

    def _known_organ(self, operation: etree._Element, where: str) -> str:
        organ_id = _required(operation, _svc("OrganId"), where)
        if not _ORGAN_ID.fullmatch(organ_id):
            raise _client_fault(
                f"{where}/OrganId '{organ_id}' không đúng định dạng mã định danh văn bản điện tử",
                "InvalidOrganId",
            )
        if organ_id not in self.organs:
            raise _client_fault(
                f"Đơn vị {organ_id} chưa đăng ký trên trục liên thông", "UnknownOrgan"
            )
        return organ_id

    def _get_pending_documents(self, operation: etree._Element) -> etree._Element:
        organ_id = self._known_organ(operation, "GetPendingDocuments")
        envelope, result = _response_envelope("GetPendingDocuments")
        _add(result, _svc("OrganId"), organ_id)
        for document in self.documents.values():
            delivery = document.deliveries.get(organ_id)
            if delivery is None or delivery.fetched:
                continue
            item = etree.SubElement(result, _svc("Document"))
            _add(item, _svc("DocumentId"), document.document_id)
            _add(item, _svc("ReceiveId"), document.receive_id)
            _add(item, _svc("FromOrganId"), document.sender_id)
            _add(item, _svc("FromOrganName"), document.sender_name)
            _add(item, _svc("Code"), document.code)
            _add(item, _svc("Subject"), document.subject)
            _add(item, _svc("StatusCode"), delivery.status)
            _add(item, _svc("Timestamp"), document.received_at)
        return envelope

    def _document(self, operation: etree._Element, where: str) -> Document:
        document_id = _document_id(
            _required(operation, _svc("DocumentId"), where), f"{where}/DocumentId"
        )
        document = self.documents.get(document_id)
        if document is None:
            raise _client_fault(
                f"Không tìm thấy văn bản có DocumentId '{document_id}'", "DocumentNotFound"
            )
        return document

    def _get_document(self, operation: etree._Element) -> etree._Element:
        document = self._document(operation, "GetDocument")
        if _text(operation, _svc("OrganId")):
            organ_id = self._known_organ(operation, "GetDocument")
        elif len(document.deliveries) == 1:
            [organ_id] = document.deliveries
        else:
            raise _client_fault(
                "Văn bản gửi nhiều đơn vị nhận: GetDocument cần OrganId của đơn vị nhận",
                "MissingField",
            )
        delivery = document.deliveries.get(organ_id)
        if delivery is None and organ_id != document.sender_id:
            raise _client_fault(
                f"Đơn vị {organ_id} không phải đơn vị gửi hay nhận văn bản "
                f"'{document.document_id}'",
                "NotPermitted",
            )
        if delivery is not None:
            delivery.fetched = True
        envelope, result = _response_envelope("GetDocument")
        _add(result, _svc("DocumentId"), document.document_id)
        _add(result, _svc("ReceiveId"), document.receive_id)
        for element in document.payload:
            result.append(copy.deepcopy(element))
        return envelope

    # --- UpdateStatus / GetStatus ---------------------------------------------------

    def _update_status(self, operation: etree._Element) -> etree._Element:
        status = _child(operation, _ed("Status"))
        if status is None:
            raise _client_fault("Thiếu gói tin edXML:Status trong UpdateStatus", "MissingField")
        response_for = _child(status, _ed("ResponseFor"))
        if response_for is None:
            raise _client_fault("Thiếu Status/ResponseFor", "MissingField")
        document_id = _document_id(
            _required(response_for, _ed("DocumentId"), "Status/ResponseFor"),
            "Status/ResponseFor/DocumentId",
        )
        sender_id = _organ_id(response_for, "Status/ResponseFor")
        _check_format(
            _text(response_for, _ed("PromulgationDate")),
            _DATE_FORMAT,
            "Status/ResponseFor/PromulgationDate",
            "yyyy/MM/dd",
        )
        actor = _child(status, _ed("From"))
        actor_id = _organ_id(actor, "Status/From")
        code = _required(status, _ed("StatusCode"), "Status")
        if code not in STATUS_NAMES:
            raise _client_fault(
                f"Mã trạng thái '{code}' không hợp lệ (hợp lệ: {', '.join(STATUS_NAMES)})",
                "InvalidStatusCode",
            )
        timestamp = _required(status, _ed("Timestamp"), "Status")
        _check_format(timestamp, _TIMESTAMP_FORMAT, "Status/Timestamp", "yyyy/MM/dd HH:mm:ss")
        staff_element = _child(status, _ed("StaffInfo"))
        staff = {
            _local(tag_of(c)): (c.text or "").strip()
            for c in ([] if staff_element is None else element_children(staff_element))
        }

        document = self.documents.get(document_id)
        if document is None:
            raise _client_fault(
                f"Không tìm thấy văn bản có DocumentId '{document_id}'", "DocumentNotFound"
            )
        if sender_id != document.sender_id:
            raise _client_fault(
                f"Status/ResponseFor/OrganId '{sender_id}' không phải đơn vị gửi văn bản "
                f"'{document_id}' ({document.sender_id})",
                "InvalidResponseFor",
            )
        targets = _status_targets(document, document_id, actor_id, code)

        actor_name = _text(actor, _ed("OrganName")) or self.organs.get(actor_id, "")
        description = _text(status, _ed("Description")) or STATUS_NAMES[code]
        for delivery in targets:
            if code == "13":
                delivery.resume = delivery.effective
            entry = StatusEntry(code, actor_id, actor_name, description, timestamp, staff)
            delivery.history.append(entry)

        envelope, result = _response_envelope("UpdateStatus")
        _add(result, _svc("DocumentId"), document_id)
        _add(result, _svc("OrganId"), actor_id)
        _add(result, _svc("StatusCode"), code)
        _add(result, _svc("Description"), STATUS_NAMES[code])
        return envelope

    def _get_status(self, operation: etree._Element) -> etree._Element:
        document = self._document(operation, "GetStatus")
        envelope, result = _response_envelope("GetStatus")
        _add(result, _svc("DocumentId"), document.document_id)
        _add(result, _svc("ReceiveId"), document.receive_id)
        for delivery in document.deliveries.values():
            recipient = etree.SubElement(result, _svc("Recipient"))
            _add(recipient, _svc("OrganId"), delivery.organ_id)
            _add(recipient, _svc("StatusCode"), delivery.status)
            _add(recipient, _svc("Fetched"), "true" if delivery.fetched else "false")
            history = etree.SubElement(recipient, _svc("StatusHistory"))
            for entry in delivery.history:
                history.append(_status_element(document, entry))
        return envelope


def _status_targets(
    document: Document, document_id: str, actor_id: str, code: str
) -> list[Delivery]:
    """The deliveries a status from `actor_id` applies to: the sender may only recall (13),
    from every recipient at once; a recipient moves its own delivery along its allowed moves."""
    if actor_id == document.sender_id:
        if code != "13":
            raise _client_fault(
                f"Đơn vị gửi chỉ được yêu cầu lấy lại văn bản (13), không được gửi "
                f"trạng thái {code}",
                "InvalidStatusTransition",
            )
        targets = list(document.deliveries.values())
        for delivery in targets:
            if delivery.effective not in _RECALLABLE:
                raise _transition_fault(document_id, delivery, code)
        return targets
    own = document.deliveries.get(actor_id)
    if own is None:
        raise _client_fault(
            f"Đơn vị {actor_id} không phải đơn vị gửi hay nhận văn bản '{document_id}'",
            "NotPermitted",
        )
    if code not in _RECIPIENT_MOVES.get(own.effective, frozenset()):
        raise _transition_fault(document_id, own, code)
    return [own]


def _check_trace_timestamps(header: etree._Element) -> None:
    """Each TraceHeader's Timestamp, when given, in the edXML format."""
    trace_list = _child(header, _ed("TraceHeaderList"))
    for trace in [] if trace_list is None else element_children(trace_list):
        if trace.tag == _ed("TraceHeader"):
            timestamp = _text(trace, _ed("Timestamp"))
            _check_format(
                timestamp, _TIMESTAMP_FORMAT, "TraceHeader/Timestamp", "yyyy/MM/dd HH:mm:ss"
            )


def _transition_fault(document_id: str, delivery: Delivery, requested: str) -> _Fault:
    current = delivery.status
    return _client_fault(
        f"Không thể chuyển trạng thái văn bản '{document_id}' tại đơn vị {delivery.organ_id} "
        f"từ {current} ({STATUS_NAMES[current]}) sang {requested} ({STATUS_NAMES[requested]})",
        "InvalidStatusTransition",
    )


def _status_element(document: Document, entry: StatusEntry) -> etree._Element:
    status = etree.Element(_ed("Status"))
    response_for = etree.SubElement(status, _ed("ResponseFor"))
    _add(response_for, _ed("OrganId"), document.sender_id)
    _add(response_for, _ed("Code"), document.code)
    _add(response_for, _ed("PromulgationDate"), document.promulgation_date)
    _add(response_for, _ed("DocumentId"), document.document_id)
    sender = etree.SubElement(status, _ed("From"))
    _add(sender, _ed("OrganId"), entry.organ_id)
    _add(sender, _ed("OrganName"), entry.organ_name)
    _add(status, _ed("StatusCode"), entry.code)
    _add(status, _ed("Description"), entry.description)
    _add(status, _ed("Timestamp"), entry.timestamp)
    if entry.staff:
        staff = etree.SubElement(status, _ed("StaffInfo"))
        for name, value in entry.staff.items():
            _add(staff, _ed(name), value)
    return status


def _check_attachments(envelope: etree._Element, siblings: list[etree._Element]) -> None:
    """Attachments sit in ``AttachmentEncoded`` inside the envelope or right after it."""
    containers = [c for c in element_children(envelope) if c.tag == _ed("AttachmentEncoded")]
    containers += [c for c in siblings if c.tag == _ed("AttachmentEncoded")]
    total = 0
    for container in containers:
        for attachment in element_children(container):
            if attachment.tag != _ed("Attachment"):
                unexpected = _local(tag_of(attachment))
                raise _client_fault(
                    f"AttachmentEncoded chỉ chứa Attachment, không chứa {unexpected}",
                    "InvalidAttachment",
                )
            name = _required(attachment, _ed("AttachmentName"), "Attachment")
            encoding = _text(attachment, _ed("Format")) or "base64"
            if encoding.lower() != "base64":
                raise _client_fault(
                    f"Tệp đính kèm '{name}': Format phải là base64, không phải {encoding}",
                    "InvalidAttachment",
                )
            content = _child(attachment, _ed("ContentTransferEncoded"))
            if content is None or not (content.text or "").strip():
                raise _client_fault(
                    f"Tệp đính kèm '{name}' thiếu ContentTransferEncoded", "InvalidAttachment"
                )
            total += len(_decode_base64(content.text or "", name))
            if total > MAX_ATTACHMENT_BYTES:
                raise _client_fault(
                    "Tổng dung lượng tệp đính kèm vượt quá 10 MB", "AttachmentTooLarge"
                )


def _operation(raw: bytes, soap_action: str | None) -> tuple[str, etree._Element]:
    """The operation a SOAP 1.1 request asks for, and its element in ``soap:Body``."""
    try:
        root = parse_untrusted_xml(raw, huge=True)
    except XmlRejected as exc:
        raise _client_fault(str(exc), "MalformedXml") from None
    if root.tag == f"{{{SOAP12_NS}}}Envelope":
        raise _Fault("Chỉ hỗ trợ SOAP 1.1", "VersionMismatch", "VersionMismatch")
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise _client_fault("Phần tử gốc phải là soap:Envelope (SOAP 1.1)", "MalformedSoap")
    parts = element_children(root)
    header = next((p for p in parts if p.tag == f"{{{SOAP_NS}}}Header"), None)
    if header is not None:
        _check_must_understand(header)
    body = next((p for p in parts if p.tag == f"{{{SOAP_NS}}}Body"), None)
    if body is None:
        raise _client_fault("Thiếu soap:Body", "MalformedSoap")
    operations = element_children(body)
    if len(operations) != 1:
        raise _client_fault("soap:Body phải chứa đúng một thao tác", "MalformedSoap")
    [element] = operations
    name = _local(tag_of(element))
    if etree.QName(element).namespace != SERVICE_NS or name not in _OPERATIONS:
        raise _client_fault(f"Thao tác không được hỗ trợ: {tag_of(element)}", "UnknownOperation")
    _check_soap_action(soap_action, name)
    return name, element


def _check_must_understand(header: etree._Element) -> None:
    """A header entry marked mustUnderstand is one the simulator cannot honour: a fault."""
    for entry in element_children(header):
        if entry.get(f"{{{SOAP_NS}}}mustUnderstand") in ("1", "true"):
            raise _Fault(
                f"Không xử lý được SOAP header bắt buộc {_local(tag_of(entry))}",
                "MustUnderstand",
                "MustUnderstand",
            )


def _check_soap_action(soap_action: str | None, name: str) -> None:
    """The SOAPAction header is required; when not empty, it names the operation in the body."""
    if soap_action is None:
        raise _client_fault("Thiếu HTTP header SOAPAction", "MissingSoapAction")
    action = soap_action.strip().strip('"').strip()
    if not action:
        return
    action_name = re.split(r"[/#:]", action)[-1]
    if action_name not in _OPERATIONS:
        raise _client_fault(f"SOAPAction không được hỗ trợ: {soap_action}", "UnknownOperation")
    if action_name != name:
        raise _client_fault(
            f"SOAPAction {action_name} không khớp thao tác {name} trong soap:Body",
            "SoapActionMismatch",
        )


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The request body, or ``None`` when it is larger than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


DOCUMENT_EXCHANGE: web.AppKey[DocumentExchange] = web.AppKey("document_exchange", DocumentExchange)
"""The app's document exchange: its organ directory and the documents it holds."""


def setup(app: web.Application, is_authorised: Callable[[web.Request], bool]) -> None:
    """Add the edXML document exchange to ``app``; ``is_authorised`` checks the national
    platform's bearer token."""
    exchange = DocumentExchange(is_authorised)
    app[DOCUMENT_EXCHANGE] = exchange
    app.router.add_post(SOAP_PATH, exchange.soap)

    async def outage(request: web.Request) -> web.Response:
        # A test and demo helper, like the other /_sim/ routes: {"down": true} starts an
        # outage of the document exchange, {"down": false} ends it.
        try:
            asked = await request.json()
        except ValueError:
            asked = None
        if not isinstance(asked, dict) or not isinstance(asked.get("down"), bool):
            return web.json_response(
                {"error": 'send {"down": true} or {"down": false}'}, status=400
            )
        exchange.down = asked["down"]
        return web.json_response({"down": exchange.down, "documents": len(exchange.documents)})

    app.router.add_post("/_sim/outage/document-exchange", outage)
