"""The schema registry's query parameters, one model per route: those of Confluent's
REST API, so that Confluent's clients work unchanged (they send `deleted`, `offset`,
`limit`, `normalize` whether set or not, and booleans as `False` as often as `false`).

A parameter Confluent defines but this registry has no use for (`format`: there is one
format, the schema as registered; `normalize`: schemas are compared as given) is
accepted and said to be ignored in its description; anything else is refused.
"""

from __future__ import annotations

from pydantic import Field

from gateway.edge.toolkit import Flag, OptionalText, QueryModel, WholeNumber

__all__ = [
    "CompatibilityQuery",
    "ConfigQuery",
    "DeleteQuery",
    "LookupQuery",
    "ModeQuery",
    "ReferencedByQuery",
    "RegisterQuery",
    "SchemaQuery",
    "SchemaUsesQuery",
    "SetModeQuery",
    "SubjectsQuery",
    "VersionQuery",
    "VersionsQuery",
]

_IGNORED = "Accepted for Confluent's clients; this registry ignores it."


class _Page(QueryModel):
    offset: WholeNumber = Field(0, ge=0, le=2**31, description="Skip this many.")
    limit: WholeNumber = Field(-1, ge=-1, le=2**31, description="At most this many; -1: all.")


class _Deleted(QueryModel):
    deleted: Flag = Field(False, description="true: soft-deleted ones too.")


class _Normalize(QueryModel):
    normalize: Flag = Field(False, description=_IGNORED)


class _Format(QueryModel):
    format: OptionalText = Field(None, description=_IGNORED)


# Bases in reverse order of their parameters.
class SubjectsQuery(_Page, _Deleted):
    deleted_only: Flag = Field(False, description="true: soft-deleted ones only.")
    subjectPrefix: OptionalText = Field(None, description="Only subjects starting with this.")


class VersionsQuery(_Page, _Deleted):
    deleted_only: Flag = Field(False, description="true: soft-deleted ones only.")


class VersionQuery(_Format, _Deleted):
    pass


class RegisterQuery(_Format, _Normalize):
    pass


class LookupQuery(_Format, _Normalize):
    deleted: Flag = Field(False, description=_IGNORED)


class DeleteQuery(QueryModel):
    permanent: Flag = Field(False, description="true: delete for good (after a soft delete).")


class SchemaQuery(_Format):
    subject: OptionalText = Field(None, description=_IGNORED)
    reference_format: OptionalText = Field(None, description=_IGNORED)
    fetchMaxId: Flag = Field(False, description=_IGNORED)


class SchemaUsesQuery(_Page):
    subject: OptionalText = Field(None, description="Only this subject's versions.")


class CompatibilityQuery(_Normalize):
    verbose: Flag = Field(False, description="true: the reasons, in `messages`.")


class ReferencedByQuery(_Page):
    pass


class ModeQuery(QueryModel):
    defaultToGlobal: Flag = Field(
        False, description="true: the registry-wide mode when the subject has none."
    )


class SetModeQuery(QueryModel):
    force: Flag = Field(False, description=_IGNORED)


class ConfigQuery(QueryModel):
    defaultToGlobal: Flag = Field(
        False, description="true: the registry-wide level when the subject has none."
    )
