"""document_exchange: the national electronic document exchange (edXML, QCVN 102:2016).

The national side is the government's document-exchange axis (Trục liên thông văn bản
quốc gia), reached through the national platform as SOAP 1.1 at `{upstream_path}/soap`
(`POST`, `Content-Type: text/xml`, `SOAPAction` naming the operation): SendDocument
with an `edXML:Envelope` (MessageHeader, TraceHeaderList, base64 attachments),
GetPendingDocuments, GetDocument, UpdateStatus with an `edXML:Status`, GetStatus.

The provincial side is JSON (schemas/documents/: `documents.document.send`,
`documents.document.status`, and the unions the service validates,
`documents.document.request` and `documents.document.answer`):

    POST /documents                    send a document -> 201 {documentId, receiveId, status}
    GET  /documents/pending?organId=   documents not fetched yet -> {documents: [...]}
    GET  /documents/{id}               the document as sent (or /documents?documentId=)
    GET  /documents/{id}/status        every recipient's status (or /documents/status?documentId=)
    POST /documents/{id}/status        report a status (or /documents/status?documentId=)

Document ids contain '/' by convention ("000.00.00.H49,2025/11/22,123/UBND-VP") and the
gateway refuses %2F in paths, so such ids go in `?documentId=` (see routes.py). Dates
are yyyy-MM-dd and moments ISO 8601 on the provincial side, yyyy/MM/dd and Vietnam-time
"yyyy/MM/dd HH:mm:ss" on the national side. Statuses are names on the provincial side
(accepted, in_progress, recall_requested...) and codes 01..16 on the national side
(codes/status.yaml). SOAP faults become problems: not found 404, not sender/recipient
403, an invalid status transition or a document sent twice 409 (naming current and
requested status), other refusals 400, platform failures 502.

Configuration (`adapter_config`):

    sender_organ_id   the province's organ on the exchange (e.g. "000.00.00.H49"): the
                      `from` of a document or status report that leaves it out, and the
                      organ whose pending documents are listed when `organId` is not given
    soap_version      "1.1" (the national platform's); "1.2" for a platform that speaks it
    legacy_input      "tcvn3" | "vni": the callers' text is legacy-encoded (to Unicode NFC)
    legacy_output     "tcvn3" | "vni": answer the callers in that encoding
"""

from .adapter import ADAPTER, DocumentExchangeAdapter, DocumentExchangeConfig

__all__ = ["ADAPTER", "DocumentExchangeAdapter", "DocumentExchangeConfig"]
