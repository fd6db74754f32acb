"""The audit log: one event per exchange, written through an `AuditSink`."""

from gateway.audit.event import AuditEvent
from gateway.audit.sink import AuditSink, AuditUnavailable

__all__ = ["AuditEvent", "AuditSink", "AuditUnavailable"]
