"""National answer -> canonical answer: MaLoi read by the national conventions
(national.yaml: found, not found, not permitted are answers, the rest problems), the
citizen records converted by citizen.yaml and full-name.yaml (which drop the record's
empty values), the echo of the request id checked by answer.yaml."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.conversion.sdk import (
    UPSTREAM_BAD_RESPONSE,
    CompiledMapping,
    Context,
    MappingError,
    National,
    Problem,
    UpstreamResponse,
)

SERVICE = "The national population database"
_DEFAULT_MESSAGES = {
    "not_found": "Không tìm thấy thông tin công dân",
    "not_permitted": "Công dân có tồn tại nhưng đơn vị không được phép khai thác thông tin",
}


def national_failed(national: National, answer: UpstreamResponse) -> bool | None:
    """The answer's MaLoi as the breaker hears it (national.yaml: the lookup's outcomes
    are answers whatever the HTTP status); None, the statuses decide, for anything else.
    For the adapter's `upstream_failed`: cheap, and never raises."""
    return national.failed(_json_object(answer.body), answer.status)


def canonical_answer(
    status: int,
    body: bytes,
    request_id: str,
    *,
    national: National,
    echo: CompiledMapping,
    citizen: CompiledMapping,
    full_name: CompiledMapping,
) -> tuple[int, dict[str, Any]]:
    """The canonical status and document for a national answer (its MaLoi read by the
    national conventions, national.yaml); raises Problem for what is not an answer."""
    document = _json_object(body)
    if document is None or national.code_in(document) is None:
        what = "without MaLoi" if document is not None else "that is not a JSON object"
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"{SERVICE} answered HTTP {status} with a body {what}: it is not a lookup answer.",
            upstream={"status": status},
        )
    outcome = national.outcome(document, status)
    upstream = {"status": status, "MaLoi": outcome.code, "MoTaLoi": outcome.message}
    try:
        echo.apply(document, Context(request_id=request_id))
    except MappingError as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE, f"The national answer is withheld: {e}.", upstream=upstream
        ) from None
    if not outcome.answered:
        raise national.problem(outcome, status, SERVICE)
    name = outcome.spec.name or "found"
    if name == "found":
        citizens = _citizens(document, upstream, citizen, full_name)
        return outcome.spec.caller_status, {"outcome": "found", "citizens": citizens}
    message = outcome.message or _DEFAULT_MESSAGES.get(name, "")
    return outcome.spec.caller_status, {"outcome": name, "message": message}


def _citizens(
    national: dict[str, Any],
    upstream: dict[str, Any],
    citizen: CompiledMapping,
    full_name: CompiledMapping,
) -> list[Any]:
    listed, single = national.get("DanhSachCongDan"), national.get("CongDan")
    records = listed if isinstance(listed, list) else [single] if single is not None else []
    if not records or not all(isinstance(r, dict) for r in records):
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            "The national answer says found (MaLoi 0) but holds no citizen record "
            "(CongDan or DanhSachCongDan).",
            upstream=upstream,
        )
    citizens = []
    for i, record in enumerate(records):
        try:
            person = citizen.apply(record)
            name = full_name.apply(record)
            citizens.append({"personalId": person.pop("personalId"), **name, **person})
        except MappingError as e:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"Citizen record {i} of the national answer cannot be read: {e}.",
                upstream=upstream,
            ) from None
    return citizens


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
