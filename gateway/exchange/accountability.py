"""Who asked, on whose behalf, why: the fields every exchange carries into the audit log.

The request id comes from `X-Request-Id` or is made here. A service may require the
officer id (MaCanBo), the administrative procedure code (MaDVC) and the case/dossier
number (docs/domain.md §3); they travel as headers so that they work the same for every
service and message format.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from multidict import CIMultiDictProxy

from gateway.core.headers import CASE_HEADER, OFFICER_HEADER, PROCEDURE_HEADER, REQUEST_ID_HEADER
from gateway.core.problems import INVALID_HEADER, MISSING_ACCOUNTABILITY, Problem

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Printable ASCII without separators that could smuggle structure into logs or CSV.
FIELD_RE = re.compile(r"^[A-Za-z0-9._:/-]+$")

# (field name, header, max length) — lengths follow the national lookup's own limits.
FIELDS: tuple[tuple[str, str, int], ...] = (
    ("officer", OFFICER_HEADER, 20),
    ("procedure", PROCEDURE_HEADER, 20),
    ("case", CASE_HEADER, 64),
)


@dataclass(frozen=True, slots=True)
class Accountability:
    officer: str | None
    procedure: str | None
    case: str | None


def request_id_from(headers: CIMultiDictProxy[str]) -> tuple[str, str | None]:
    """The request id to use, and a complaint about the one the caller sent, if any.

    A malformed id is replaced (so the error response and its audit record still have
    one) and reported as a 400 by the caller of this function.
    """
    given = headers.get(REQUEST_ID_HEADER)
    if given is None:
        return str(uuid.uuid4()), None
    if REQUEST_ID_RE.match(given):
        return given, None
    return str(uuid.uuid4()), (
        f"{REQUEST_ID_HEADER} must be 1-128 characters of letters, digits and '._:-'."
    )


def accountability_from(
    headers: CIMultiDictProxy[str], required: tuple[str, ...]
) -> Accountability:
    values: dict[str, str | None] = {}
    missing: list[str] = []
    for name, header, max_len in FIELDS:
        value = headers.get(header)
        if value is not None:
            value = value.strip()
            if not value or len(value) > max_len or not FIELD_RE.match(value):
                raise Problem(
                    INVALID_HEADER,
                    f"{header} must be 1-{max_len} characters of letters, digits and '._:/-'.",
                    header=header,
                )
        elif name in required:
            missing.append(header)
        values[name] = value
    if missing:
        raise Problem(
            MISSING_ACCOUNTABILITY,
            "This service requires " + ", ".join(missing) + " on every request "
            "(officer id, administrative procedure code, case/dossier number).",
            missing=missing,
        )
    return Accountability(values["officer"], values["procedure"], values["case"])
