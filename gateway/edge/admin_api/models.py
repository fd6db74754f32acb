"""What goes in and out of the admin API: query models, request bodies and answers.

They check requests and shape answers, and the OpenAPI document's schemas and
parameters are made from them, with the limits the server enforces.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gateway.config.policy import PolicySet
from gateway.core.identifiers import SERVICE_CODE_RE, ServiceKey
from gateway.edge.toolkit import OptionalText, QueryModel, WholeNumber

__all__ = [
    "AdminEventList",
    "AdminEventOut",
    "ChangeOut",
    "ChangesQuery",
    "CommentQuery",
    "CommitOut",
    "CredentialIssue",
    "CredentialList",
    "CredentialOut",
    "CredentialRotate",
    "DiffOut",
    "IssuedCredential",
    "PolicyOut",
    "PolicyQuery",
    "RateLimitAddress",
    "RateLimitChange",
    "RotationOut",
    "VersionList",
    "VersionOut",
    "VersionsQuery",
]

MAX_COMMENT_CHARS = 2000
MAX_ID = 2**62
# `provider/code/version`, as the policy files write a rate limit's service.
_SERVICE_KEY: str = get_args(ServiceKey)[1].pattern


# -- query parameters -------------------------------------------------------------------------


class CommentQuery(QueryModel):
    comment: OptionalText = Field(
        None,
        max_length=MAX_COMMENT_CHARS,
        description="Why: recorded with the change (policy version, admin events).",
    )


class PolicyQuery(QueryModel):
    version: WholeNumber | None = Field(
        None, ge=1, le=MAX_ID, description="An earlier policy version to show."
    )


class VersionsQuery(QueryModel):
    limit: WholeNumber = Field(
        50, ge=1, le=1000, description="At most this many (1-1000, default 50)."
    )


class ChangesQuery(QueryModel):
    limit: WholeNumber = Field(
        100, ge=1, le=1000, description="At most this many (1-1000, default 100)."
    )
    since_id: WholeNumber | None = Field(
        None,
        ge=0,
        le=MAX_ID,
        description="Only events after this id (`last_id` of a previous page).",
    )


class RateLimitAddress(QueryModel):
    client: OptionalText = Field(
        None,
        pattern=SERVICE_CODE_RE.pattern,
        description="The client the rate limit applies to (omit for a service's limit).",
    )
    service: OptionalText = Field(
        None,
        pattern=_SERVICE_KEY,
        description="The service (`provider/code/version`) it applies to.",
    )


# Bases in this order, so the parameters read client, service, comment.
class RateLimitChange(CommentQuery, RateLimitAddress):
    pass


# -- request bodies ---------------------------------------------------------------------------


class CredentialIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["secret", "api_key", "certificate"]
    expires_at: AwareDatetime | None = None
    pin: str | None = Field(
        None,
        max_length=1000,
        description="for a certificate (and only then): 'spki-sha256:<hex of the SHA-256 of "
        "its SubjectPublicKeyInfo>' or 'subject:<its subject DN, RFC 4514>'",
    )

    @model_validator(mode="after")
    def _pin_for_certificates(self) -> CredentialIssue:
        if (self.kind == "certificate") != (self.pin is not None):
            raise ValueError("a pin is given for a certificate, and only for a certificate")
        return self


class CredentialRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["secret", "api_key"]
    grace_seconds: int = Field(
        0,
        ge=0,
        le=86_400,
        strict=True,
        description="0: the others are revoked at once; otherwise they expire this much later",
    )


# -- answers ----------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChangeOut(_Out):
    summary: str
    details: list[str] = Field(description="field by field: `path: old → new`")
    kind: Literal["agency", "group", "client", "upstream", "service", "access", "rate_limit"]
    key: str
    op: Literal["create", "update", "delete"]


class CommitOut(_Out):
    version: int | None = Field(description="the new policy version; null: nothing changed")
    changes: list[ChangeOut]


class DiffOut(_Out):
    changes: list[ChangeOut]


class PolicyOut(_Out):
    version: int | None = Field(description="the policy version this document is")
    document: PolicySet


class VersionOut(_Out):
    version: int
    at: datetime
    actor: str
    source: str
    comment: str | None
    digest: str
    changes: list[str]


class VersionList(_Out):
    items: list[VersionOut]


class AdminEventOut(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    comment: str | None


class AdminEventList(_Out):
    items: list[AdminEventOut]
    last_id: int | None = Field(description="pass as since_id to get the events after these")


class CredentialOut(_Out):
    id: int
    client: str
    kind: Literal["secret", "api_key", "certificate"]
    hint: str = Field(description="the first characters of the value, to tell them apart")
    pin: str | None = Field(
        None, description="a certificate's pin (no secret); null for secrets and API keys"
    )
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class CredentialList(_Out):
    items: list[CredentialOut]


class IssuedCredential(CredentialOut):
    secret: str = Field(description="the value itself: shown in this answer only, never again")


class RotationOut(_Out):
    issued: IssuedCredential
    revoked: list[CredentialOut]
    expiring: list[CredentialOut]
