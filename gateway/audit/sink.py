"""What the pipeline needs of the audit log (gateway/audit/log.py implements it)."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.audit.event import AuditEvent


class AuditUnavailable(Exception):
    """The event could not be made durable."""


class AuditSink(Protocol):
    async def start(self) -> None: ...

    async def write(self, event: AuditEvent) -> None:
        """Return once the event is durable; raise AuditUnavailable if it cannot be."""
        ...

    async def close(self) -> None:
        """Flush what is pending, then stop."""
        ...

    def status(self) -> dict[str, Any]:
        """What /healthz shows of the audit path (mode, spool depth, broker)."""
        ...
