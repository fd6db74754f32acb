"""The national answer (`KetQuaTraCuu`) -> the canonical outcome and enterprise: the
answer read by mappings/answer.yaml (XML, lists, trimmed, echo checked), MaLoi and the
HTTP status read together, the record converted by mappings/response.yaml, the requested
branch unwrapped."""

from __future__ import annotations

from typing import Any

from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    UPSTREAM_BAD_RESPONSE,
    CompiledMapping,
    Context,
    MappingError,
    National,
    Problem,
)

from .lookup import SERVICE


def national_failed(
    body: bytes, status: int, answer: CompiledMapping, national: National
) -> bool | None:
    """The MaLoi of a `KetQuaTraCuu` as the breaker hears it (national.yaml: the lookup's
    outcomes are answers); None, the statuses decide, for anything else. Read by
    answer.yaml (without an exchange context, so the echo is not checked: the response
    hook does); for the adapter's `upstream_failed`, never raises."""
    try:
        document = answer.from_xml(body)
    except ValueError:  # not XML, another root
        return None
    return national.failed(document, status)


def canonical_answer(
    status: int,
    body: bytes,
    context: Context,
    sent: dict[str, Any],
    mappings: tuple[CompiledMapping, CompiledMapping],
    national: National,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, canonical document) for the national answer (`sent`: the canonical
    request; `mappings`: answer.yaml and response.yaml; MaLoi and the HTTP status it
    came with read by the national conventions, national.yaml); raises `Problem` for a
    refusal or an answer that cannot be understood."""
    answer, to_canonical = mappings
    result = _read_answer(status, body, context, answer)
    read = national.outcome(result, status)
    description = read.message
    said = f"MaLoi {read.code!r}" + (f": {description}" if description else "")
    if read.spec is national.spec.unknown:
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with {said}, which is not one of its "
            "documented answers.",
            upstream_status=status,
        )
    if not read.answered:
        raise Problem(
            INVALID_MESSAGE,
            f"{SERVICE} refused the lookup as malformed ({said}).",
        )
    outcome = read.spec.name or "found"
    document: dict[str, Any] = {"outcome": outcome}
    if outcome == "found":
        document.update(found(result, to_canonical))
    elif "enterpriseCode" in sent:
        document["enterpriseCode"] = sent["enterpriseCode"]
    if description:
        document["message"] = description
    return read.spec.caller_status, document


def found(result: dict[str, Any], to_canonical: CompiledMapping) -> dict[str, Any]:
    """The canonical `enterprise` (and `requestedBranch`) of a `KetQuaTraCuu` content."""
    try:
        return to_canonical.apply(result)  # the requested branch: exactly_one
    except MappingError as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE, f"{SERVICE}'s answer cannot be converted: {e}"
        ) from None


def _read_answer(
    status: int, body: bytes, context: Context, answer: CompiledMapping
) -> dict[str, Any]:
    """The content of `<KetQuaTraCuu>` as answer.yaml reads it (echo checked)."""
    try:
        return answer.from_xml(body, context)
    except MappingError as e:  # another root, or another request's answer
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with a document that is not for this "
            f"request's lookup: {e}",
            upstream_status=status,
        ) from None
    except ValueError as e:  # InvalidXML, UnsafeXML
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with a body that is not usable XML: {e}",
            upstream_status=status,
        ) from None
