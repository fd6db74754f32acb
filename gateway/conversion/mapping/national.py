"""The national data-sharing platform's conventions, declared once and shared by adapters.

Every national service behind the platform (NDXP) follows the same conventions, which
adapters used to code one by one: the request id travels as `MaYeuCau` in at most 40
characters and is echoed in the answer; the requesting agency's code travels as
`MaDonVi`; the answer's outcome is a code, `MaLoi` (with its text in `MoTaLoi`), that says
whether the provider answered (found, not found, not permitted) or failed. A `national:`
block declares them, in a declared adapter's `adapter.yaml` or a Python adapter's
`national.yaml`; what it leaves out is the platform's (`PLATFORM` below)::

    national:
      request_id: {field: MaYeuCau, max_length: 40, longer: shorten, echo: true}
      agency_code: {field: MaDonVi}
      code: MaLoi                 # the outcome code's element (or JSON key) in an answer
      message: MoTaLoi            # its text
      codes:                      # merged over the platform's table, code by code
        "0":   {outcome: answer, status: 200, name: found}
        "201": {outcome: answer, problem: no-such-record, name: not_found}
        "202": {outcome: answer, problem: access-denied, name: not_permitted}
        "100": {problem: upstream-authentication-failed}
      unknown: {problem: upstream-bad-response}   # the HTTP status tells the breaker

A code's `outcome` is what the shared circuit breaker hears (`answer`: the provider
answered; `failure`: it is failing; left out: the HTTP status decides); `problem` what the
caller gets instead of an answer (a declared adapter: always; a Python adapter may turn
a code without a problem into its own canonical answer with `status` and `name`); `http`
the HTTP statuses the provider documents the code with (with any other the caller gets
`unknown`'s problem; the breaker still hears the code's outcome). `longer` says what a
request id over `max_length` becomes: `shorten`, its SHA-1 in hex cut to the length (the
same every time, and echoed), or `refuse`, a 400
`invalid-header` before anything is sent (for a service whose national log callers search
by the id they sent). Mapping rules write and check them where the message has them:
`{national: request_id, to: /MaYeuCau}`, `{national: agency_code, to: /MaDonVi}` (the
configured `agency_code`, else the calling client's agency), `{from: /MaYeuCau, echo:
national}`. The block is checked when the configuration loads, like a mapping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.core.problems import (
    ACCESS_DENIED,
    CONFLICT,
    INVALID_HEADER,
    INVALID_MESSAGE,
    NO_SUCH_RECORD,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_BAD_RESPONSE,
    Problem,
    ProblemType,
)

__all__ = [
    "PLATFORM",
    "PROBLEMS",
    "CodeSpec",
    "National",
    "NationalSpec",
    "Outcome",
    "ProblemSlug",
    "national_from",
    "shorten",
]

# The problems a declaration may name (their slugs are the public contract).
PROBLEMS: dict[str, ProblemType] = {
    p.slug: p
    for p in (
        NO_SUCH_RECORD,
        INVALID_MESSAGE,
        ACCESS_DENIED,
        CONFLICT,
        UPSTREAM_BAD_RESPONSE,
        UPSTREAM_AUTH_FAILED,
    )
}
ProblemSlug = Literal[
    "no-such-record",
    "invalid-message",
    "access-denied",
    "conflict",
    "upstream-bad-response",
    "upstream-authentication-failed",
]
_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"  # an element or JSON key


def shorten(value: str, max_length: int) -> str:
    """`value` itself, or its SHA-1 in hex (cut to `max_length`) when it is longer: how
    a gateway request id fits the national 40 characters, the same every time.

    Example:
        >>> len(shorten("x" * 64, 40)), shorten("abc", 40)
        (40, 'abc')
    """
    if len(value) <= max_length:
        return value
    return hashlib.sha1(value.encode(), usedforsecurity=False).hexdigest()[:max_length]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestIdSpec(_Strict):
    field: str = Field("MaYeuCau", pattern=_NAME)
    max_length: int = Field(40, ge=8, le=128)
    longer: Literal["shorten", "refuse"] = "shorten"
    echo: bool = True  # the answer's request id, when it has one, must be the one sent


class AgencySpec(_Strict):
    field: str = Field("MaDonVi", pattern=_NAME)


class CodeSpec(_Strict):
    """One outcome code: what the breaker hears, what the caller gets."""

    outcome: Literal["answer", "failure"] | None = None
    status: int | None = Field(None, ge=200, le=599)
    name: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    problem: ProblemSlug | None = None
    http: list[int] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _said(self) -> CodeSpec:
        if self.problem is None and self.status is None:
            raise ValueError("a code is answered (status) or refused (problem); give one")
        if self.problem is not None and self.status is not None:
            raise ValueError("a code with a problem takes the problem's status; drop status")
        if self.outcome == "failure" and self.problem is None:
            raise ValueError("a failure is refused: give its problem")
        return self

    @property
    def caller_status(self) -> int:
        """The HTTP status the caller gets for this code."""
        return PROBLEMS[self.problem].status if self.problem else self.status or 200


class NationalSpec(_Strict):
    """A `national:` block, the platform's defaults filled in (`national_from`)."""

    request_id: RequestIdSpec = RequestIdSpec()
    agency_code: AgencySpec = AgencySpec()
    code: str = Field("MaLoi", pattern=_NAME)
    message: str = Field("MoTaLoi", pattern=_NAME)
    codes: dict[str, CodeSpec] = {}
    # A code not in the table: the caller gets a 502, and the HTTP status tells the
    # breaker (a code nobody declared is not known to be an answer).
    unknown: CodeSpec = CodeSpec(problem="upstream-bad-response")

    @model_validator(mode="after")
    def _codes(self) -> NationalSpec:
        for code in self.codes:
            if not code or not code.isascii() or not code.isalnum():
                raise ValueError(f"codes: {code!r} is not an outcome code (letters, digits)")
        return self


# The platform's conventions (docs/domain.md §3 and §4): what a block leaves out.
PLATFORM: dict[str, Any] = {
    "codes": {
        "0": {"outcome": "answer", "status": 200, "name": "found"},
        "201": {"outcome": "answer", "problem": "no-such-record", "name": "not_found"},
        "202": {"outcome": "answer", "problem": "access-denied", "name": "not_permitted"},
        "100": {"problem": "upstream-authentication-failed"},
    },
}


def national_from(block: Mapping[str, Any] | None, where: str) -> National:
    """The conventions a `national:` block declares, over the platform's: `request_id`
    and `agency_code` merged key by key, `codes` code by code (a code set to null is
    removed), the rest replaced.

    Args:
        block: the block as read from YAML (None or {}: the platform's as they are).
        where: the file, for messages (`adapter.yaml: national.codes.201.problem: ...`).
    Raises:
        ValueError: the block is not valid, naming the file and the field.

    Example:
        >>> national = national_from({"request_id": {"longer": "refuse"}}, "national.yaml")
        >>> national.spec.codes["201"].problem
        'no-such-record'
    """
    if block is not None and not isinstance(block, Mapping):
        raise ValueError(f"{where}: national: must be a mapping")
    given = dict(block or {})
    merged: dict[str, Any] = {**given}
    for key in ("request_id", "agency_code"):
        if isinstance(given.get(key), Mapping):
            merged[key] = dict(given[key])
    codes = {**PLATFORM["codes"], **(given.get("codes") or {})}
    if not isinstance(given.get("codes", {}), Mapping | None):
        raise ValueError(f"{where}: national.codes: must be a mapping of code to outcome")
    merged["codes"] = {str(k): v for k, v in codes.items() if v is not None}
    try:
        return National(NationalSpec.model_validate(merged))
    except ValidationError as e:
        fields = "; ".join(
            f"national.{'.'.join(map(str, x['loc']))}: "
            + str(x["msg"]).removeprefix("Value error, ")
            for x in e.errors()
        )
        raise ValueError(f"{where}: {fields}") from None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an answer's outcome code means: the code as read (None: the answer has none),
    its declaration, and the provider's text."""

    code: str | None
    spec: CodeSpec
    message: str | None

    @property
    def answered(self) -> bool:
        """A business answer, to convert (not a refusal)."""
        return self.spec.problem is None


class National:
    """Compiled conventions: what an adapter asks of them on an exchange."""

    def __init__(self, spec: NationalSpec) -> None:
        self.spec = spec

    # -- the request ----------------------------------------------------------------------

    def check_request_id(self, request_id: str) -> None:
        """Under `longer: refuse`, a 400 `invalid-header` for an id over the length."""
        rid = self.spec.request_id
        if rid.longer == "refuse" and len(request_id) > rid.max_length:
            raise Problem(
                INVALID_HEADER,
                f"X-Request-Id becomes the national {rid.field}, which holds at most "
                f"{rid.max_length} characters; this one has {len(request_id)}.",
            )

    def request_id(self, request_id: str) -> str:
        """The request id as the provider gets it (shortened under `longer: shorten`)."""
        rid = self.spec.request_id
        if len(request_id) <= rid.max_length:
            return request_id
        self.check_request_id(request_id)
        return shorten(request_id, rid.max_length)

    @staticmethod
    def agency(configured: str | None, caller_agency: str) -> str:
        """The agency code to send: the service's configured one, else the caller's."""
        return configured or caller_agency

    def echoed(self, value: Any, request_id: str) -> str | None:
        """Why an answer's echo is not of this request (None: it is, or it has none)."""
        if not self.spec.request_id.echo or value in (None, ""):
            return None
        sent = self.request_id(request_id)
        if str(value) == sent:
            return None
        return f"the answer is for {value!r}, not {sent!r}: it does not answer this request"

    # -- the answer -------------------------------------------------------------------------

    def code_in(self, document: Any) -> str | None:
        """The outcome code of an answer (a JSON object, or XML read as data), as text."""
        value = document.get(self.spec.code) if isinstance(document, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, str | int):
            return None
        return str(value).strip() or None

    def outcome(self, document: Any, http_status: int) -> Outcome:
        """What the answer's code means (`unknown` for a code not in the table, or sent
        with an HTTP status its declaration does not list)."""
        code = self.code_in(document)
        spec = self.spec.codes.get(code) if code is not None else None
        if spec is None or (spec.http is not None and http_status not in spec.http):
            spec = self.spec.unknown
        message = document.get(self.spec.message) if isinstance(document, Mapping) else None
        return Outcome(code, spec, message if isinstance(message, str) and message else None)

    def failed(self, document: Any, http_status: int) -> bool | None:
        """For `Adapter.upstream_failed`: an answer's code as the breaker hears it,
        whatever HTTP status it came with (a documented answer sent with a 503 is still
        the provider answering; the caller gets upstream-bad-response for it)."""
        code = self.code_in(document)
        if code is None:
            return None
        outcome = self.spec.codes.get(code, self.spec.unknown).outcome
        return None if outcome is None else outcome == "failure"

    def problem(self, outcome: Outcome, http_status: int, service: str) -> Problem:
        """The refusal a code declares (or, for an answer, upstream-bad-response: call it
        only for `not outcome.answered`, or for an answer the caller cannot be given)."""
        ptype = PROBLEMS[outcome.spec.problem or "upstream-bad-response"]
        code = self.spec.code
        said = f"{code} {outcome.code}" if outcome.code is not None else f"no {code}"
        if outcome.message:
            said += f" ({outcome.message})"
        if outcome.spec is self.spec.unknown:
            detail = (
                f"{service} answered HTTP {http_status} with {said}, which is not one of "
                "its documented answers."
            )
        elif ptype is NO_SUCH_RECORD:
            detail = f"{service} has no such record: {said}."
        elif ptype is UPSTREAM_AUTH_FAILED:
            detail = f"{service} refused the province's credentials: {said}."
        else:
            detail = f"{service} answered HTTP {http_status} with {said}."
        upstream = {"status": http_status, code: outcome.code, self.spec.message: outcome.message}
        return Problem(ptype, detail, upstream=upstream)
