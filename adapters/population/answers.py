"""National answer -> canonical answer: MaLoi read as the provider's business answers
(found, not found, not permitted) or as problems, and the citizen records converted by
citizen.yaml and full-name.yaml (which drop the record's empty values), the echo of the
request id checked by answer.yaml."""

from __future__ import annotations

from typing import Any, Final

import orjson

from gateway.conversion.sdk import (
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    CompiledMapping,
    Context,
    MappingError,
    Problem,
)

FOUND, NOT_FOUND_CODE, NOT_PERMITTED_CODE, UNAUTHENTICATED_CODE = "0", "201", "202", "100"
_DEFAULT_MESSAGES = {
    NOT_FOUND_CODE: "Không tìm thấy thông tin công dân",
    NOT_PERMITTED_CODE: "Công dân có tồn tại nhưng đơn vị không được phép khai thác thông tin",
}


# MaLoi of the lookup's business answers: whatever the HTTP status they come with, the
# database answered (a not found is no outage of the upstream every national service
# shares).
ANSWERED: Final = frozenset({FOUND, NOT_FOUND_CODE, NOT_PERMITTED_CODE})


def is_business_answer(body: bytes) -> bool:
    """Does the body carry a MaLoi of the lookup's outcomes (found, not found, not
    permitted)? For the adapter's `upstream_failed`: cheap, and never raises."""
    national = _json_object(body)
    code = national.get("MaLoi") if national is not None else None
    return isinstance(code, (str, int)) and not isinstance(code, bool) and str(code) in ANSWERED


def canonical_answer(
    status: int,
    body: bytes,
    request_id: str,
    *,
    echo: CompiledMapping,
    citizen: CompiledMapping,
    full_name: CompiledMapping,
) -> tuple[int, dict[str, Any]]:
    """The canonical status and document for a national answer; raises Problem for what
    is not an answer."""
    national = _json_object(body)
    code = national.get("MaLoi") if national is not None else None
    if national is None or not isinstance(code, (str, int)) or isinstance(code, bool):
        what = "without MaLoi" if national is not None else "that is not a JSON object"
        raise Problem(
            UPSTREAM_BAD_RESPONSE,
            f"The national population database answered HTTP {status} with a body "
            f"{what}: it is not a lookup answer.",
            upstream={"status": status},
        )
    code = str(code)
    message = national.get("MoTaLoi")
    message = message if isinstance(message, str) and message else None
    upstream = {"status": status, "MaLoi": code, "MoTaLoi": message}
    try:
        echo.apply(national, Context(request_id=request_id))
    except MappingError as e:
        raise Problem(
            UPSTREAM_BAD_RESPONSE, f"The national answer is withheld: {e}.", upstream=upstream
        ) from None
    if code == FOUND and 200 <= status < 300:
        citizens = _citizens(national, upstream, citizen, full_name)
        return 200, {"outcome": "found", "citizens": citizens}
    if code == NOT_FOUND_CODE:
        return 404, {"outcome": "not_found", "message": message or _DEFAULT_MESSAGES[code]}
    if code == NOT_PERMITTED_CODE:
        return 403, {
            "outcome": "not_permitted",
            "message": message or _DEFAULT_MESSAGES[code],
        }
    described = f"HTTP {status}, MaLoi {code}" + (f" ({message})" if message else "")
    if code == UNAUTHENTICATED_CODE:
        raise Problem(
            UPSTREAM_AUTH_FAILED,
            f"The national population database refused the province's credentials: {described}.",
            upstream=upstream,
        )
    raise Problem(
        UPSTREAM_BAD_RESPONSE,
        f"The national population database answered with an error: {described}.",
        upstream=upstream,
    )


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
