"""The provincial endpoints of the document exchange service, and the operation each asks for.

Endpoints (paths within the service; `{documentId}` percent-encoded in a path segment):

    POST /documents                          SendDocument         201
    GET  /documents/pending?organId=         GetPendingDocuments  200
    GET  /documents/{documentId}?organId=    GetDocument          200
    GET  /documents?documentId=&organId=     GetDocument          200
    GET  /documents/{documentId}/status      GetStatus            200
    GET  /documents/status?documentId=       GetStatus            200
    POST /documents/{documentId}/status      UpdateStatus         200
    POST /documents/status?documentId=       UpdateStatus         200

Why two ways to name a document: edXML document ids contain '/' by convention
("000.00.00.H49,2025/11/22,123/UBND-VP"), and the gateway refuses an encoded '/' (%2F)
in any path, on purpose (an encoded separator once let requests past X-Road's access
check). So an id is named in the path only when it has no '/'; otherwise, and always
safely, in the `documentId` query parameter of the matching collection-level path.
`pending` and `status` are therefore words of the API, never document ids in a path.
Query values are form-encoded: write '+' in an id as %2B (a bare '+' reads as a space).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl, unquote

from gateway.conversion.sdk import (
    INVALID_PARAMETER,
    INVALID_PATH,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    Problem,
)

MAX_DOCUMENT_ID: Final = 255
_ORGAN: Final = re.compile(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}")

ENDPOINTS: Final = (
    "POST /documents, GET /documents/pending?organId=, GET /documents/{documentId} or "
    "/documents?documentId=, GET|POST /documents/{documentId}/status or "
    "/documents/status?documentId="
)


@dataclass(frozen=True, slots=True)
class Route:
    operation: Literal[
        "SendDocument", "GetPendingDocuments", "GetDocument", "UpdateStatus", "GetStatus"
    ]
    document_id: str | None = None
    organ_id: str | None = None


def route(method: str, path: str, query: str, *, default_organ: str | None) -> Route:
    """The operation an endpoint asks for, with the document and organ it names
    (`default_organ`: whose pending documents to list when `organId` is not given)."""
    params = _query(query)
    segments = (path.rstrip("/") or "/").split("/")[1:]
    if not segments or segments[0] != "documents" or len(segments) > 3:
        raise _no_endpoint(method, path)
    if len(segments) == 1:  # /documents
        if method == "POST":
            _only(params, ())
            return Route("SendDocument")
        _allow(method, path, "GET, POST")
        _only(params, ("documentId", "organId"))
        return Route("GetDocument", _document_id_param(params, path), _organ(params))
    word = _segment(segments[1])
    if len(segments) == 2 and word == "pending":
        _allow(method, path, "GET")
        _only(params, ("organId",))
        organ = _organ(params) or default_organ
        if organ is None:
            raise Problem(
                INVALID_PARAMETER,
                "GET /documents/pending needs ?organId= (the organ whose incoming "
                "documents to list); this service has no default organ.",
                parameter="organId",
            )
        return Route("GetPendingDocuments", organ_id=organ)
    if len(segments) == 2 and word == "status":  # the id in ?documentId=
        _allow(method, path, "GET, POST")
        _only(params, ("documentId",))
        document_id = _document_id_param(params, path)
        if method == "POST":
            return Route("UpdateStatus", document_id)
        return Route("GetStatus", document_id)
    if word in ("pending", "status"):  # words of the API, never document ids
        raise _no_endpoint(method, path)
    document_id = _checked_id(word, "the path")
    if len(segments) == 2:
        _allow(method, path, "GET")
        _only(params, ("organId",))
        return Route("GetDocument", document_id, _organ(params))
    if _segment(segments[2]) != "status":
        raise _no_endpoint(method, path)
    _allow(method, path, "GET, POST")
    _only(params, ())
    return Route("UpdateStatus" if method == "POST" else "GetStatus", document_id)


def _query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Problem(INVALID_PARAMETER, "The query string is not valid UTF-8.") from None
    for key, value in pairs:
        if key in params:
            raise Problem(
                INVALID_PARAMETER, f"The query parameter {key!r} is given twice.", parameter=key
            )
        params[key] = value
    return params


def _only(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    for key in params:
        if key not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise Problem(
                INVALID_PARAMETER,
                f"Unknown query parameter {key!r} for this endpoint (accepted: {accepted}).",
                parameter=key,
            )


def _segment(raw: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise Problem(INVALID_PATH, "The path is not valid percent-encoded UTF-8.") from None


def _checked_id(value: str, where: str) -> str:
    if not value.strip():
        raise Problem(INVALID_PARAMETER, f"The document id in {where} is empty.")
    if len(value) > MAX_DOCUMENT_ID:
        raise Problem(
            INVALID_PARAMETER,
            f"The document id in {where} is longer than {MAX_DOCUMENT_ID} characters.",
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise Problem(INVALID_PARAMETER, f"The document id in {where} has control characters.")
    return value


def _document_id_param(params: Mapping[str, str], path: str) -> str:
    value = params.get("documentId")
    if value is None:
        raise Problem(
            INVALID_PARAMETER,
            f"{path} names the document in ?documentId= (percent-encoded). To list the "
            "documents waiting for an organ, GET /documents/pending?organId=.",
            parameter="documentId",
        )
    return _checked_id(value, "?documentId=")


def _organ(params: Mapping[str, str]) -> str | None:
    value = params.get("organId")
    if value is None:
        return None
    if not _ORGAN.fullmatch(value):
        raise Problem(
            INVALID_PARAMETER,
            f"organId {value!r} is not a document-exchange organ code such as 000.00.00.H49.",
            parameter="organId",
        )
    return value


def _allow(method: str, path: str, allowed: str) -> None:
    if method not in [m.strip() for m in allowed.split(",")]:
        raise Problem(
            METHOD_NOT_ALLOWED,
            f"{method} is not available on {path}; allowed: {allowed}.",
            headers={"Allow": allowed},
        )


def _no_endpoint(method: str, path: str) -> Problem:
    return Problem(
        NOT_FOUND,
        f"The document exchange service has no endpoint {method} {path}. Endpoints: {ENDPOINTS}.",
    )
