"""The national answer (`KetQuaTraCuu`) -> the canonical outcome and enterprise: MaLoi
and the HTTP status read together, the record converted by mappings/response.yaml, the
charter capital made a number."""

from __future__ import annotations

from typing import Any, Final

from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    UPSTREAM_BAD_RESPONSE,
    CompiledMapping,
    MappingError,
    Problem,
    parse_xml,
    xml_to_data,
)

from .lookup import SERVICE

ANSWER_ROOT: Final = "KetQuaTraCuu"
# MaLoi -> (HTTP statuses it comes with, canonical outcome or None for an error).
_OUTCOMES: Final[dict[str, tuple[frozenset[int], str | None]]] = {
    "0": (frozenset({200}), "found"),
    "201": (frozenset({404}), "not_found"),
    "202": (frozenset({403}), "not_permitted"),
    "100": (frozenset({400, 415}), None),
}
_STATUS: Final = {"found": 200, "not_found": 404, "not_permitted": 403}


def is_business_answer(body: bytes) -> bool:
    """Does the body carry a `KetQuaTraCuu` with the MaLoi of a lookup outcome (found,
    not found, not permitted)? For the adapter's `upstream_failed`; never raises."""
    try:
        data = xml_to_data(parse_xml(body), namespaces={})
    except ValueError:
        return False
    result = data.get(ANSWER_ROOT)
    code = result.get("MaLoi") if isinstance(result, dict) else None
    if not isinstance(code, str):
        return False
    outcome = _OUTCOMES.get(code.strip())
    return outcome is not None and outcome[1] is not None


def canonical_answer(
    status: int, body: bytes, sent: dict[str, str], to_canonical: CompiledMapping
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, canonical document) for the national answer; raises `Problem`
    for a refusal or an answer that cannot be understood."""
    result = _read_answer(status, body)
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
    echoed = result.get("MaYeuCau")
    if echoed is not None and echoed != sent.get("MaYeuCau"):
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered request {echoed!r}, not {sent.get('MaYeuCau')!r}: "
            "the answer is not for this request.",
        )
    document: dict[str, Any] = {"outcome": outcome}
    if outcome == "found":
        document.update(found(result, to_canonical))
    elif "MaSoDoanhNghiep" in sent:
        document["enterpriseCode"] = sent["MaSoDoanhNghiep"]
    if isinstance(description, str):
        document["message"] = description
    return _STATUS[outcome], document


def found(result: dict[str, Any], to_canonical: CompiledMapping) -> dict[str, Any]:
    """The canonical `enterprise` (and `requestedBranch`) of a cleaned-up
    `KetQuaTraCuu` content."""
    try:
        mapped = to_canonical.apply(result)
    except MappingError as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE, f"{SERVICE}'s answer cannot be converted: {e}"
        ) from None
    enterprise = mapped["enterprise"]
    capital = enterprise.get("charterCapital")
    if capital is not None:
        if not (isinstance(capital, str) and capital.isascii() and capital.isdigit()):
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{SERVICE} gave the charter capital (VonDieuLe) as {capital!r}, not as "
                "a whole number of VND.",
            )
        enterprise["charterCapital"] = int(capital)
    branch = mapped.get("requestedBranch")
    if branch is not None:
        if len(branch) != 1:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{SERVICE} answered with {len(branch)} requested branches (ChiNhanhTraCuu).",
            )
        mapped["requestedBranch"] = branch[0]
    return mapped


def _read_answer(status: int, body: bytes) -> dict[str, Any]:
    """The content of `<KetQuaTraCuu>`, strings trimmed and empty elements dropped, every
    `ChiNhanh` a list."""
    try:
        data = xml_to_data(parse_xml(body), namespaces={}, lists={"ChiNhanh"})
    except ValueError as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with a body that is not usable XML: {e}",
            upstream_status=status,
        ) from None
    result = data.get(ANSWER_ROOT)
    if not isinstance(result, dict):
        root = next(iter(data))
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with <{root}>, not <{ANSWER_ROOT}> "
            "with child elements.",
            upstream_status=status,
        )
    cleaned = _clean(result)
    assert isinstance(cleaned, dict)
    return cleaned


def _clean(value: Any) -> Any:
    """Trim strings and leave out empty ones (an empty element is an absent value)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _clean(item)
            if item != "" and item != {}:
                out[key] = item
        return out
    return value
