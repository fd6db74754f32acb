"""The national exchange's SOAP answer -> the canonical JSON answer: the envelope read
safely, a fault made a problem (faults.py), the operation's response converted by
`Edxml`; and what the request hook sent, read back (the operation, the status asked)."""

from __future__ import annotations

from typing import Any, Final

from lxml import etree
from multidict import CIMultiDict

from gateway.conversion.sdk import (
    UPSTREAM_BAD_RESPONSE,
    InvalidXML,
    Problem,
    UnsafeXML,
    UpstreamResponse,
    parse_soap_envelope,
)

from .edxml import Edxml, ed, svc
from .faults import fault_problem

# A GetDocument answer carries up to 10 MiB of files in base64 (about 14 MB); the
# service's max_response_bytes is the real bound.
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024


def read_answer(
    edxml: Edxml, operation: str, answer: UpstreamResponse, sent: bytes
) -> dict[str, Any]:
    """The canonical answer to `operation` (`sent`: the SOAP request the hook built);
    raises Problem for a fault or an answer that cannot be read."""
    try:
        message = parse_soap_envelope(answer.body, max_bytes=MAX_ANSWER_BYTES, large_text=True)
    except (InvalidXML, UnsafeXML) as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"The national document exchange answered {operation} with HTTP "
            f"{answer.status} and no SOAP envelope the gateway can read: {e}",
            operation=operation,
        ) from None
    if message.fault is not None:
        requested = requested_status(sent) if operation == "UpdateStatus" else None
        raise fault_problem(
            message.fault,
            operation=operation,
            requested=requested,
            status_name=edxml.status_names,
        )
    result = message.body
    expected = svc(f"{operation}Response")
    if answer.status != 200 or result is None or result.tag != expected:
        found = "nothing" if result is None else etree.QName(result).text
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"The national document exchange answered {operation} with HTTP "
            f"{answer.status} and {found} in the SOAP body, not {operation}Response.",
            operation=operation,
        )
    try:
        return edxml.read_answer(operation, result)
    except ValueError as e:  # ConversionError, MappingError
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"The national document exchange's answer to {operation} cannot be read: {e}",
            operation=operation,
        ) from None


def operation_of(headers: CIMultiDict[str]) -> str:
    """The operation the request hook chose, from the action it announced."""
    action = headers.get("SOAPAction")
    if action is None:  # SOAP 1.2: the action is a parameter of the media type
        content_type = headers.get("Content-Type", "")
        _, _, rest = content_type.partition('action="')
        action = rest.split('"', 1)[0]
    return action.strip().strip('"').rsplit("/", 1)[-1] or "unknown"


def requested_status(body: bytes) -> str | None:
    """The status code an UpdateStatus request asked for."""
    try:
        message = parse_soap_envelope(body, max_bytes=MAX_ANSWER_BYTES, large_text=True)
    except ValueError:
        return None
    if message.body is None:
        return None
    code = message.body.find(f"{ed('Status')}/{ed('StatusCode')}")
    return None if code is None else code.text
