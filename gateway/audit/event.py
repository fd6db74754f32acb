"""An audit event: what the log keeps about one exchange, whatever its outcome."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AuditEvent))
