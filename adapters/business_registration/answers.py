"""The national answer (`KetQuaTraCuu`) -> the canonical outcome and enterprise: the
answer read by mappings/answer.yaml (XML, lists, trimmed, echo checked), MaLoi and the
HTTP status read together, the record converted by mappings/response.yaml, the requested
branch unwrapped."""

from __future__ import annotations

from typing import Any, Final

from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    UPSTREAM_BAD_RESPONSE,
    CompiledMapping,
    Context,
    MappingError,
    Problem,
)

from .lookup import SERVICE

# MaLoi -> (HTTP statuses it comes with, canonical outcome or None for an error).
_OUTCOMES: Final[dict[str, tuple[frozenset[int], str | None]]] = {
    "0": (frozenset({200}), "found"),
    "201": (frozenset({404}), "not_found"),
    "202": (frozenset({403}), "not_permitted"),
    "100": (frozenset({400, 415}), None),
}
_STATUS: Final = {"found": 200, "not_found": 404, "not_permitted": 403}


def is_business_answer(body: bytes, answer: CompiledMapping) -> bool:
    """Does the body carry a `KetQuaTraCuu` with the MaLoi of a lookup outcome (found,
    not found, not permitted)? Read by answer.yaml (without an exchange context, so
    the echo is not checked: the response hook does); for the adapter's
    `upstream_failed`, never raises."""
    try:
        code = answer.from_xml(body).get("MaLoi")
    except ValueError:  # not XML, another root
        return False
    outcome = _OUTCOMES.get(code) if isinstance(code, str) else None
    return outcome is not None and outcome[1] is not None


def canonical_answer(
    status: int,
    body: bytes,
    context: Context,
    sent: dict[str, Any],
    mappings: tuple[CompiledMapping, CompiledMapping],
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, canonical document) for the national answer (`sent`: the canonical
    request; `mappings`: answer.yaml and response.yaml); raises `Problem` for a refusal
    or an answer that cannot be understood."""
    answer, to_canonical = mappings
    result = _read_answer(status, body, context, answer)
    code = result.get("MaLoi")
    description = result.get("MoTaLoi")
    said = f"MaLoi {code!r}" + (f": {description}" if isinstance(description, str) else "")
    expected = _OUTCOMES.get(code) if isinstance(code, str) else None
    if expected is None or status not in expected[0]:
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with {said}, which is not one of its "
            "documented answers.",
            upstream_status=status,
        )
    outcome = expected[1]
    if outcome is None:
        raise Problem(
            INVALID_MESSAGE,
            f"{SERVICE} refused the lookup as malformed ({said}).",
        )
    document: dict[str, Any] = {"outcome": outcome}
    if outcome == "found":
        document.update(found(result, to_canonical))
    elif "enterpriseCode" in sent:
        document["enterpriseCode"] = sent["enterpriseCode"]
    if isinstance(description, str):
        document["message"] = description
    return _STATUS[outcome], document


def found(result: dict[str, Any], to_canonical: CompiledMapping) -> dict[str, Any]:
    """The canonical `enterprise` (and `requestedBranch`) of a `KetQuaTraCuu` content."""
    try:
        mapped = to_canonical.apply(result)
    except MappingError as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE, f"{SERVICE}'s answer cannot be converted: {e}"
        ) from None
    # The branch asked for is one element; `each` (how its rules are shared with
    # DanhSachChiNhanh) makes it a list, so it is unwrapped and counted here.
    branch = mapped.get("requestedBranch")
    if branch is not None:
        if len(branch) != 1:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{SERVICE} answered with {len(branch)} requested branches (ChiNhanhTraCuu).",
            )
        mapped["requestedBranch"] = branch[0]
    return mapped


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
