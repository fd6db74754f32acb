"""What one running gateway holds: settings, store, keys, tables, clients of upstreams."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit.sink import AuditSink
from gateway.core.settings import Settings
from gateway.events.delivery import DeliveryWorker
from gateway.events.forward import ForwardWorker
from gateway.events.jobs import JobScheduler
from gateway.events.jobstore import SqlJobStore
from gateway.events.kafka_delivery import KafkaDelivery
from gateway.events.kafka_store import Fanout
from gateway.events.outbox import SqlOutbox
from gateway.events.secrets import SecretBox
from gateway.events.store import EventStore
from gateway.exchange.pipeline import ExchangePipeline
from gateway.identity.issuers import TrustedIssuers
from gateway.identity.keys import KeyStore
from gateway.identity.tokens import TokenService
from gateway.limits.failures import FailureThrottle
from gateway.limits.ratelimit import RateLimiter
from gateway.telemetry.metrics import GatewayMetrics
from gateway.upstream.client import UpstreamClient


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keys: KeyStore
    tokens: TokenService
    upstream: UpstreamClient
    audit: AuditSink
    pipeline: ExchangePipeline
    limiter: RateLimiter
    metrics: GatewayMetrics
    # Failed client authentications at the token endpoint (gateway/edge/oauth.py).
    auth_failures: FailureThrottle
    # External issuers' key sets (gateway/identity/issuers.py).
    issuers: TrustedIssuers
    # Events: where they are kept, the subscriptions' secrets, and this process's worker.
    events: EventStore
    secrets: SecretBox
    delivery: DeliveryWorker | None = None
    # With the Kafka event store: its fan-out and delivery-queue consumers.
    event_pumps: list[Fanout | KafkaDelivery] = field(default_factory=list)
    # Store-and-forward: async services' messages, and this process's worker for them.
    outbox: SqlOutbox | None = None
    forwarder: ForwardWorker | None = None
    # Scheduled pulls: their state in the store, and this process's scheduler.
    jobs: SqlJobStore | None = None
    scheduler: JobScheduler | None = None
    config_version: int = -1
    # Set on SIGTERM: /readyz answers 503 and answers close their connections.
    draining: bool = False
    reloads: int = 0
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


STATE = web.AppKey("state", GatewayState)
