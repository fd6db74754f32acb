"""Where audit events go. The database sink is the embedded default; the Kafka sink with
its durable spool plugs in behind the same interface."""

from __future__ import annotations

from typing import Protocol

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
