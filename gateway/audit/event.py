"""An audit event: what the log keeps about one exchange, whatever its outcome.

The wire form (JSON, `schemas/audit/exchange-event.json`) is the contract for whoever
consumes the audit topic: the same bytes go into the spool, onto Kafka, and are hashed
into the instance's chain, so a field the store keeps is exactly the field that was
hashed.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.core.text import storable

EVENT_KIND = "exchange"
CHECKPOINT_KIND = "checkpoint"


@dataclass(slots=True)
class AuditEvent:
    event_id: str
    request_id: str
    instance: str
    method: str
    path: str
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    status: int
    trace_id: str | None = None
    client_code: str | None = None
    client_agency_code: str | None = None
    auth_method: str | None = None
    provider_code: str | None = None
    service_code: str | None = None
    service_version: str | None = None
    officer_id: str | None = None
    procedure_code: str | None = None
    case_number: str | None = None
    remote_addr: str | None = None
    upstream_ms: float | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    upstream_status: int | None = None
    error_type: str | None = None
    error_detail: str | None = None
    request_sha256: str | None = None
    response_sha256: str | None = None
    # The adapter that converted the exchange and its VERSION (gateway.conversion.sdk);
    # None for passthrough, and absent from events written before they were recorded.
    # Left out of the wire form and of the hash when None (HASHED_WHEN_SET).
    adapter: str | None = None
    adapter_version: str | None = None
    # Two events for an exchange of a fail_closed service: the intent, durable before the
    # request is forwarded, and the outcome naming it (gateway/exchange/steps/intent.py).
    phase: str | None = None  # "intent" | "outcome" | None: one event for the exchange
    intent_id: str | None = None
    # The external issuer whose token authenticated the caller (gateway/identity/issuers.py);
    # None for the gateway's own tokens and API keys.
    issuer: str | None = None
    # A converted exchange's other side (an adapter ran): SHA-256 of the exact bytes sent
    # to the provider after conversion, and of those the caller received (the converted
    # answer, or the problem). `request_sha256` is what the caller sent, `response_sha256`
    # what the provider answered, so with these an auditor can prove either side.
    provider_request_sha256: str | None = None
    caller_response_sha256: str | None = None
    # The instance's hash chain, filled in by the audit log's writer (gateway/audit/chain.py).
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""
    # Whose data the exchange carried (gateway/audit/subjects.py): the personal identifiers
    # found in its bodies, in memory only until the audit log's writer replaces them by
    # their keyed hashes in `subjects`, which go on the wire for the store's index. Neither
    # is hashed into the chain nor a column of the record (TRANSIENT): the index is a
    # lookup aid; the record is the evidence.
    subject_ids: frozenset[str] = frozenset()
    subjects: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        # Every field is an immutable scalar, so a shallow copy will do; dataclasses.asdict
        # deep-copies each one and was most of the audit writer's time (bench/audit.py).
        return dict(zip(FIELD_NAMES, _all_fields(self), strict=True))

    def fit(self) -> None:
        """Cut caller-controlled text to the store's column widths, before the event is
        hashed: the hash must cover what is stored, and a long path or a claimed officer
        id must not make an exchange unrecordable."""
        # Whatever bytes a caller sent must be storable: undecodable bytes and NUL escaped
        # (gateway/core/text.py) before the cut, so an escape is never cut in two.
        for name, value in zip(_TEXT_NAMES, _text_fields(self), strict=True):
            if value is not None:
                safe = storable(value)
                if safe is not value:
                    setattr(self, name, safe)
        for name, width, value in zip(_WIDTH_NAMES, _WIDTHS, _width_fields(self), strict=True):
            if value is not None and len(value) > width:
                setattr(self, name, value[:width])
        # The store keeps UTC; so must the hash.
        self.started_at = self.started_at.astimezone(UTC)
        self.finished_at = self.finished_at.astimezone(UTC)

    def to_wire(self) -> bytes:
        body = self.as_dict()
        for name in HASHED_WHEN_SET:
            if body[name] is None:
                del body[name]
        body["kind"] = EVENT_KIND
        if self.subjects:  # keyed hashes only: `subject_ids` never leaves the process
            body["subjects"] = list(self.subjects)
        return orjson.dumps(body)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> AuditEvent:
        fields = {k: v for k, v in data.items() if k in _FIELD_SET}
        for name in ("started_at", "finished_at"):
            if isinstance(fields.get(name), str):
                fields[name] = datetime.fromisoformat(fields[name])
        subjects = data.get("subjects")
        if isinstance(subjects, list):
            fields["subjects"] = tuple(
                x for x in subjects if isinstance(x, str) and _HEX64.fullmatch(x)
            )
        return cls(**fields)


# Not the exchange's record: kept out of the hash, the store's columns and `as_dict`.
TRANSIENT = ("subject_ids", "subjects")
_HEX64 = re.compile(r"[0-9a-f]{64}")
FIELD_NAMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(AuditEvent) if f.name not in TRANSIENT
)
# Fields added after events were first chained: an event hashes them only when they hold a
# value (gateway/audit/chain.py), and its wire form leaves them out when they do not, so
# an event from before them (the field absent, or null in its store row) hashes as it
# always did, while a value set, changed or removed later breaks the hash.
HASHED_WHEN_SET: tuple[str, ...] = (
    "adapter",
    "adapter_version",
    "phase",
    "intent_id",
    "issuer",
    "provider_request_sha256",
    "caller_response_sha256",
)
_FIELD_SET = frozenset(FIELD_NAMES)
_all_fields = operator.attrgetter(*FIELD_NAMES)  # one C call for every field

# Kept in step with gateway/store/models.py AuditRecord (a test checks they agree).
FIELD_WIDTHS: dict[str, int] = {
    "event_id": 36,
    "request_id": 128,
    "trace_id": 32,
    "instance": 128,
    "client_code": 64,
    "client_agency_code": 35,
    "auth_method": 16,
    "provider_code": 35,
    "service_code": 64,
    "service_version": 16,
    "method": 16,
    "officer_id": 64,
    "procedure_code": 64,
    "case_number": 128,
    "remote_addr": 64,
    "error_type": 64,
    "request_sha256": 64,
    "response_sha256": 64,
    "adapter": 64,
    "adapter_version": 32,  # gateway.conversion.sdk.MAX_VERSION_LENGTH
    "phase": 8,
    "intent_id": 36,
    "issuer": 255,
    "provider_request_sha256": 64,
    "caller_response_sha256": 64,
}
_WIDTH_NAMES = tuple(FIELD_WIDTHS)
_WIDTHS = tuple(FIELD_WIDTHS.values())
_width_fields = operator.attrgetter(*_WIDTH_NAMES)
# Every text field, since any may hold what a caller sent (a path, a claimed officer id,
# a detail quoting the request).
_TEXT_NAMES = tuple(
    f.name
    for f in dataclasses.fields(AuditEvent)
    if "str" in str(f.type) and f.name != "hash" and f.name not in TRANSIENT
)
_text_fields = operator.attrgetter(*_TEXT_NAMES)
