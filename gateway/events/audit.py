"""Audit events for the events API and for each delivery attempt, in the exchange
event's form (gateway/audit/event.py), so auditors search and verify them as any other:

    publish     method POST, path /events/v1/{topic}, the publisher as the client
    pull        method GET, the subscriber as the client
    delivery    method POST, path "webhook:<topic>" + the callback's path, the subscriber
                as the client, its answer's status and the latency

`service_code` is the topic, `service_version` "events"; `provider_code` the agency the
topic's events come from. `request_id` of a delivery is the webhook-id (the event id).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from yarl import URL

from gateway.audit import AuditEvent

__all__ = ["EVENTS_VERSION", "delivery_event", "request_event"]

EVENTS_VERSION = "events"


def request_event(
    *,
    request_id: str,
    instance: str,
    method: str,
    path: str,
    started_at: datetime,
    remote_addr: str | None,
) -> AuditEvent:
    """The event of a call to the events API, filled in as the call goes.

    Example:
        >>> request_event(request_id="r1", instance="gw", method="POST",
        ...               path="/events/v1/cu-tru", started_at=now, remote_addr=None).status
        0
    """
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        request_id=request_id,
        instance=instance,
        method=method,
        path=path[:4096],
        started_at=started_at,
        finished_at=started_at,
        duration_ms=0.0,
        status=0,
        remote_addr=remote_addr,
        service_version=EVENTS_VERSION,
    )


def delivery_event(
    *,
    instance: str,
    webhook_id: str,
    topic: str,
    provider: str | None,
    subscriber: str,
    subscriber_agency: str | None,
    callback_url: str,
    started_at: datetime,
    latency_ms: float,
    status: int,
    body: bytes,
    error_type: str | None,
    error_detail: str | None,
) -> AuditEvent:
    """The audit event of one delivery attempt (status 0: no answer).

    Example:
        >>> delivery_event(instance="gw", webhook_id="e1", topic="cu-tru", provider=None,
        ...                subscriber="motcua", subscriber_agency=None,
        ...                callback_url="https://motcua.example/hooks", started_at=now,
        ...                latency_ms=12.0, status=204, body=b"{}", error_type=None,
        ...                error_detail=None).path
        'webhook:cu-tru https://motcua.example/hooks'
    """
    shown = URL(callback_url).with_query(None).with_fragment(None).with_user(None)
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        request_id=webhook_id,
        instance=instance,
        method="POST",
        path=f"webhook:{topic} {shown}"[:4096],
        started_at=started_at.astimezone(UTC),
        finished_at=started_at.astimezone(UTC) + timedelta(milliseconds=latency_ms),
        duration_ms=round(latency_ms, 3),
        status=status,
        client_code=subscriber,
        client_agency_code=subscriber_agency,
        auth_method="webhook",
        provider_code=provider,
        service_code=topic,
        service_version=EVENTS_VERSION,
        upstream_ms=round(latency_ms, 3),
        upstream_status=status or None,
        request_bytes=len(body),
        request_sha256=hashlib.sha256(body).hexdigest(),
        error_type=error_type,
        error_detail=error_detail,
    )
