"""The national exchange's SOAP faults as problems a departmental system can act on.

The platform answers every refusal with a SOAP 1.1 fault whose `detail/svc:ErrorCode`
says what went wrong. `soap_fault_to_problem` gives the general reading (a Client fault is
the caller's: invalid-message, 400; anything else the provider's: upstream-bad-response,
502); the error codes below refine it so that a caller can tell apart the outcomes
docs/domain.md §1 asks for: no such document (404 no-such-record), exists but not yours
(403), a state conflict (409), too large (413), and faults that are the gateway's own
doing rather than the caller's (the gateway's credentials or the envelope it built).
`platform_failed` says which faults count against the upstream's circuit breaker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from lxml import etree

from gateway.conversion.sdk import (
    ACCESS_DENIED,
    CONFLICT,
    INTERNAL_ERROR,
    NO_SUCH_RECORD,
    PAYLOAD_TOO_LARGE,
    UPSTREAM_AUTH_FAILED,
    Problem,
    ProblemType,
    SoapFault,
    soap_caller_fault,
    soap_fault_to_problem,
)

SERVICE: Final = "national document exchange (edXML)"

_REFINED: Final[Mapping[str, tuple[ProblemType, str]]] = {
    "DocumentNotFound": (
        NO_SUCH_RECORD,
        "The national document exchange has no such document",
    ),
    "NotPermitted": (
        ACCESS_DENIED,
        "The document exists, but the organ named is neither its sender nor a recipient",
    ),
    "DuplicateDocument": (
        CONFLICT,
        "A document with this documentId was already sent; a document is sent once",
    ),
    "AttachmentTooLarge": (PAYLOAD_TOO_LARGE, "The document's files are too large"),
    "RequestTooLarge": (PAYLOAD_TOO_LARGE, "The document is too large"),
    "Unauthenticated": (
        UPSTREAM_AUTH_FAILED,
        "The national exchange refused the gateway's own credentials",
    ),
}
# Refusals of the envelope itself: the gateway built it, so the caller cannot fix them.
_ENVELOPE_CODES: Final = frozenset(
    {
        "MalformedXml",
        "MalformedSoap",
        "UnknownOperation",
        "MissingSoapAction",
        "SoapActionMismatch",
        "UnsupportedMediaType",
        "VersionMismatch",
        "MustUnderstand",
    }
)
# The platform words a refused transition "... tại đơn vị <organ> từ <code> (...) sang <code>".
_CURRENT = re.compile(r"\btừ ([0-9]{2})\b")
_AT_ORGAN = re.compile(r"tại đơn vị ([0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2})")


def platform_failed(fault: SoapFault) -> bool:
    """Does the fault say the platform itself failed (counted against the `ndxp`
    upstream's breaker, which every national service shares), rather than answer? Every
    fault comes as HTTP 500; only a Server fault with no error code of the answers
    above is the platform failing ("Lỗi hệ thống"). A refusal of the request, a
    document not found, not permitted or sent twice, a refused envelope: answers."""
    if soap_caller_fault(fault):
        return False
    code = error_code(fault)
    answered = code in _REFINED or code in _ENVELOPE_CODES or code == "InvalidStatusTransition"
    return not answered


def error_code(fault: SoapFault) -> str | None:
    """`detail/ErrorCode`, whatever namespace the platform writes it in."""
    if fault.detail is None:
        return None
    for child in fault.detail.iter():
        if isinstance(child.tag, str) and etree.QName(child).localname == "ErrorCode":
            return (child.text or "").strip() or None
    return None


def fault_problem(
    fault: SoapFault,
    *,
    operation: str,
    requested: str | None = None,
    status_name: Mapping[str, str] | None = None,
) -> Problem:
    """The problem for a fault answering `operation`; `requested` is the status code an
    UpdateStatus asked for, to name it in a conflict."""
    general = soap_fault_to_problem(fault, service=SERVICE)
    code = error_code(fault)
    extensions: dict[str, Any] = {
        **general.extensions,
        "operation": operation,
        "error_code": code,
    }
    reason = extensions["soap_fault"]["reason"]
    if code == "InvalidStatusTransition":
        return _conflict(reason, extensions, requested, status_name or {})
    if code is not None and code in _REFINED:
        ptype, summary = _REFINED[code]
        return Problem(ptype, f"{summary} ({operation}, {code}): {reason}", **extensions)
    if code in _ENVELOPE_CODES or fault.code in ("VersionMismatch", "MustUnderstand"):
        return Problem(
            INTERNAL_ERROR,
            f"The national document exchange refused the SOAP envelope the gateway built for "
            f"{operation} ({code or fault.code}): {reason}. The request itself may be fine; "
            "check the service's adapter_config (soap_version) and report this request id.",
            **extensions,
        )
    return Problem(general.ptype, general.detail, **extensions)


def _conflict(
    reason: str,
    extensions: dict[str, Any],
    requested: str | None,
    status_name: Mapping[str, str],
) -> Problem:
    def named(code: str) -> dict[str, str]:
        name = status_name.get(code)
        return {"code": code, "name": name} if name else {"code": code}

    def shown(code: str) -> str:
        name = status_name.get(code)
        return f"{code} ({name})" if name else code

    current = _CURRENT.search(reason)
    organ = _AT_ORGAN.search(reason)
    where = f" at {organ.group(1)}" if organ else ""
    if requested is not None:
        extensions["requested_status"] = named(requested)
    if current is not None:
        extensions["current_status"] = named(current.group(1))
    if organ is not None:
        extensions["organ_id"] = organ.group(1)
    if current is not None and requested is not None:
        detail = (
            f"The document's status{where} is {shown(current.group(1))} and cannot change to "
            f"{shown(requested)}"
        )
    elif requested is not None:
        detail = f"The status cannot change to {shown(requested)}{where}"
    else:
        detail = "The status change is not allowed"
    return Problem(
        CONFLICT, f"{detail}. The national document exchange said: {reason}", **extensions
    )
