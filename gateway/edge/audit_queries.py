"""The auditor API's query parameters, one model per route: the record filter (times,
codes, status, outcome), pages, unmasking, the export format.

Times are ISO 8601 with an offset, or a bare date (the start of that day in Vietnam
time); a filter's `until` must be later than its `since`.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from gateway.audit import query
from gateway.audit.query import AuditFilter
from gateway.edge.toolkit import Flag, OptionalText, QueryModel, WholeNumber, invalid_parameter

__all__ = [
    "AdminEventsQuery",
    "ExportQuery",
    "FindingsQuery",
    "PurgesQuery",
    "ReceiptQuery",
    "RecordQuery",
    "SearchQuery",
    "StatsQuery",
    "TreeConsistencyQuery",
    "TreeHeadQuery",
    "TreeInclusionQuery",
    "VerifyQuery",
]


def _time(value: object) -> object:
    return query.parse_time(value) if isinstance(value, str) else value


def _cursor(value: str | None) -> str | None:
    if value is not None:
        query.decode_cursor(value)
    return value


# A date-time with an offset, or a bare date: more than JSON Schema's date-time says.
Time = Annotated[datetime | None, BeforeValidator(_time), WithJsonSchema({"type": "string"})]
Cursor = Annotated[str | None, AfterValidator(_cursor)]
_SINCE = "From this time on (ISO 8601; a bare date is the start of that day, Vietnam time)."
_UNTIL = "Before this time (ISO 8601; a bare date is the start of that day, Vietnam time)."


class RecordFilter(QueryModel):
    """Which exchanges: every parameter given must match."""

    since: Time = Field(None, description=_SINCE)
    until: Time = Field(None, description=_UNTIL)
    client: OptionalText = Field(None, description="The calling system's client code.")
    agency: OptionalText = Field(None, description="The calling system's agency code.")
    provider: OptionalText = Field(None, description="The service provider's agency code.")
    service: OptionalText = Field(None, description="The service code.")
    version: OptionalText = Field(None, description="The service version.")
    status: WholeNumber | None = Field(None, ge=100, le=599, description="The answer's status.")
    outcome: Literal["success", "refused", "failed"] | None = Field(
        None, description="success (< 400), refused (4xx) or failed (5xx)."
    )
    officer: OptionalText = Field(None, description="X-Officer-Id, as the caller sent it.")
    procedure: OptionalText = Field(None, description="X-Procedure-Code.")
    case: OptionalText = Field(None, description="X-Case-Number.")
    request_id: OptionalText = Field(None, description="X-Request-Id.")
    instance: OptionalText = Field(None, description="The gateway instance that recorded it.")

    @model_validator(mode="after")
    def _ordered(self) -> RecordFilter:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise invalid_parameter("until", "must be later than since")
        return self

    def audit_filter(self) -> AuditFilter:
        return AuditFilter(**{f.name: getattr(self, f.name) for f in fields(AuditFilter)})


class _Unmask(QueryModel):
    unmask: Flag = Field(
        False, description="true: personal identifiers unmasked (needs the audit:unmask right)."
    )


class _Page(QueryModel):
    limit: WholeNumber = Field(
        query.DEFAULT_LIMIT, ge=1, le=query.MAX_LIMIT, description="At most this many."
    )
    cursor: Cursor = Field(None, description="`next_cursor` of the previous page.")


# Bases in reverse order of their parameters: the filter, then unmasking, then the page.
class SearchQuery(_Page, _Unmask, RecordFilter):
    pass


class RecordQuery(_Unmask):
    pass


class ExportQuery(_Unmask, RecordFilter):
    format: Literal["csv", "jsonl"] = Field("csv", description="CSV or JSON Lines.")


class StatsQuery(RecordFilter):
    pass


class FindingsQuery(_Page):
    instance: OptionalText = Field(None, description="The gateway instance.")
    kind: OptionalText = Field(None, description="missing, altered...")
    unresolved: Flag = Field(False, description="true: only findings not yet resolved.")


class PurgesQuery(_Page):
    pass


class AdminEventsQuery(_Page):
    since: Time = Field(None, description=_SINCE)
    until: Time = Field(None, description=_UNTIL)
    actor: OptionalText = Field(None, description="Who made the change.")
    action: OptionalText = Field(None, description="policy.service, credential.revoke...")
    target: OptionalText = Field(None, description="What was changed.")


class VerifyQuery(QueryModel):
    since: Time = Field(None, description=_SINCE)
    until: Time = Field(None, description=_UNTIL)
    instance: OptionalText = Field(None, description="Only this gateway instance's chain.")


_INSTANCE = "The gateway instance whose log (default: the one answering)."


class TreeHeadQuery(QueryModel):
    instance: OptionalText = Field(None, description=_INSTANCE)
    size: WholeNumber | None = Field(None, ge=1, description="That size's checkpoint.")


class TreeInclusionQuery(_Unmask):
    event_id: OptionalText = Field(None, description="The event (one leaf).")
    request_id: OptionalText = Field(
        None, description="X-Request-Id: each of its events (intent and outcome)."
    )
    size: WholeNumber | None = Field(
        None, ge=1, description="Against the checkpoint of this size (default: the latest)."
    )

    @model_validator(mode="after")
    def _one(self) -> TreeInclusionQuery:
        if (self.event_id is None) == (self.request_id is None):
            raise invalid_parameter("event_id", "give event_id or request_id, one of them")
        return self


class TreeConsistencyQuery(QueryModel):
    instance: OptionalText = Field(None, description=_INSTANCE)
    old: WholeNumber = Field(ge=1, description="The size of the checkpoint the auditor holds.")
    new: WholeNumber | None = Field(None, ge=1, description="The newer size (default: latest).")


class ReceiptQuery(QueryModel):
    size: WholeNumber | None = Field(
        None, ge=1, description="Against the checkpoint of this size (default: the latest)."
    )
