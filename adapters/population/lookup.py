"""Canonical lookup -> national lookup: what the request hook checks (accountability,
the canonical fields again, one way of looking a citizen up) and the national body it
builds from the mappings (accountability.yaml, lookup-by-number.yaml,
lookup-by-name.yaml) and the configured sender."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    MISSING_ACCOUNTABILITY,
    OFFICER_HEADER,
    PROCEDURE_HEADER,
    CompiledMapping,
    Context,
    MappingError,
    National,
    Problem,
    json_object,
)

BY_NUMBER = "/cong-dan/tra-cuu"  # national endpoints, under the upstream path
BY_NAME = "/cong-dan/tra-cuu-ho-ten"

_STRING_FIELDS = {  # the canonical request's fields, checked again whatever the schema
    "personalId": re.compile(r"[0-9]{12}"),
    "oldIdNumber": re.compile(r"[0-9]{9}"),
    "fullName": re.compile(r".{1,100}", re.DOTALL),
    "birthDate": re.compile(r"[0-9]{4}(?:-[0-9]{2}-[0-9]{2})?"),
}


def check_accountability(context: Context, national: National) -> None:
    """The national side records who looks a citizen up and why: refuse a lookup without
    them, or with a request id longer than MaYeuCau holds (national.yaml: `longer:
    refuse`, because the national side logs MaYeuCau, and the province's callers find
    their lookup there by the id they sent)."""
    asked = ((OFFICER_HEADER, context.officer), (PROCEDURE_HEADER, context.procedure))
    missing = [header for header, value in asked if not value]
    if missing:
        raise Problem(
            MISSING_ACCOUNTABILITY,
            "The national population database records who looks a citizen up and "
            f"why: send {' and '.join(missing)}.",
            missing=missing,
        )
    national.check_request_id(context.request_id)


def endpoint_for(lookup: dict[str, Any]) -> str:
    """The national endpoint a lookup body goes to."""
    return BY_NUMBER if "SoDinhDanh" in lookup or "SoCMND" in lookup else BY_NAME


def national_lookup(
    body: bytes,
    context: Context,
    *,
    text_in: Callable[[Any], Any],
    accountability: CompiledMapping,
    by_number: CompiledMapping,
    by_name: CompiledMapping,
) -> dict[str, Any]:
    """The national lookup body for a canonical request body (`text_in`: the
    configuration's legacy text decoding; `accountability` adds who asks, and MaDonVi
    and MaTichHop from the configuration)."""
    doc = canonical_request(body, text_in)
    mapping = by_number if "personalId" in doc or "oldIdNumber" in doc else by_name
    try:
        return {
            **accountability.apply({}, context),
            **mapping.apply(doc, context),
        }
    except MappingError as e:
        raise Problem(INVALID_MESSAGE, f"The lookup cannot be converted: {e}.") from None


def canonical_request(body: bytes, text_in: Callable[[Any], Any]) -> dict[str, Any]:
    """The canonical request, its text Unicode NFC and its fields checked; the full name's
    spaces made single."""
    raw = json_object(body)
    # Legacy TCVN3/VNI text becomes Unicode NFC here, before anything reads it.
    doc: dict[str, Any] = text_in(raw)
    for field, pattern in _STRING_FIELDS.items():
        value = doc.get(field)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise Problem(
                INVALID_MESSAGE, f"/{field} has an invalid value: {value!r}.", pointer=field
            )
    numbers = [f for f in ("personalId", "oldIdNumber") if f in doc]
    name = [f for f in ("fullName", "birthDate") if f in doc]
    if numbers and name:
        raise Problem(
            INVALID_MESSAGE,
            "Look a citizen up either by number (personalId, oldIdNumber) or by "
            f"fullName and birthDate, not both: the request has {numbers + name}.",
        )
    if not numbers and len(name) < 2:
        raise Problem(
            INVALID_MESSAGE,
            "A lookup needs personalId, oldIdNumber, or fullName with birthDate.",
        )
    if name:
        doc["fullName"] = " ".join(doc["fullName"].split())
        if not doc["fullName"]:
            raise Problem(INVALID_MESSAGE, "/fullName is blank.", pointer="fullName")
        born = doc["birthDate"]
        if len(born) > 4:
            try:
                date.fromisoformat(born)
            except ValueError:
                raise Problem(
                    INVALID_MESSAGE,
                    f"/birthDate {born!r} is not a calendar date (yyyy-mm-dd, or yyyy).",
                    pointer="birthDate",
                ) from None
    return doc
