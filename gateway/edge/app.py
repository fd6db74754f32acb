"""The gateway's HTTP application: the exchange route, the token endpoint and the
small documents around it (JWKS, RFC 8414 metadata, service list, health)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.log import audit_log_from_settings, kafka_settings
from gateway.audit.retention import retention_loop
from gateway.audit.sink import AuditSink
from gateway.config.runtime import RuntimeConfig
from gateway.core.logging import log
from gateway.core.networks import NetworkAllowList
from gateway.core.settings import Settings
from gateway.edge import (
    admin_api,
    audit_api,
    bulk_api,
    console,
    events_api,
    messages_api,
    registry_api,
)
from gateway.edge import discovery_api as discovery
from gateway.edge.health import METRICS_ALLOWED, _refresh_gauges_loop, healthz, metrics, readyz
from gateway.edge.oauth import jwks, oauth_metadata, token_endpoint
from gateway.edge.protocol import HANDLER_ARGS
from gateway.edge.reload import reload_config, watch_config
from gateway.edge.state import STATE, GatewayState
from gateway.edge.toolkit import problem_middleware
from gateway.events.delivery import DeliveryRules, DeliveryWorker
from gateway.events.forward import ForwardWorker
from gateway.events.jobs import JobScheduler
from gateway.events.jobstore import SqlJobStore
from gateway.events.kafka_delivery import KafkaDelivery
from gateway.events.kafka_store import Fanout, KafkaEventSettings, KafkaEventStore
from gateway.events.outbox import SqlOutbox
from gateway.events.retry import RetryRules
from gateway.events.secrets import SecretBox
from gateway.events.store import EventStore, SqlEventStore
from gateway.exchange.pipeline import ExchangePipeline
from gateway.identity.issuers import TrustedIssuers
from gateway.identity.keys import KeyStore
from gateway.identity.tokens import TokenService
from gateway.limits.failures import failure_throttle_from_settings
from gateway.limits.ratelimit import limiter_from_settings
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.spans import Tracer
from gateway.telemetry.tracing import tracing_from_settings
from gateway.upstream.allowlist import OutboundPolicy
from gateway.upstream.client import UpstreamClient
from gateway.upstream.jwks import JwksFetcher

# -- error rendering for everything but /r1 (which renders its own, to audit them) ----------


# -- OAuth2 -----------------------------------------------------------------------------------


# -- lifecycle --------------------------------------------------------------------------------


BACKGROUND_STOP_SECONDS = 5.0  # how long a stop waits for cancelled background tasks


def create_app(settings: Settings, *, audit: AuditSink | None = None) -> web.Application:
    app = web.Application(
        middlewares=[problem_middleware],
        client_max_size=settings.max_request_bytes,
        handler_args=HANDLER_ARGS,
    )
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    keys = KeyStore(settings.keys_dir, settings.key_passphrase, settings.token_algorithms[0])
    tokens = TokenService(
        keys,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl_seconds=settings.token_ttl_seconds,
        algorithms=settings.token_algorithms,
        leeway_seconds=settings.clock_skew_seconds,
    )
    outbound = OutboundPolicy.from_settings(settings)
    upstream = UpstreamClient(outbound=outbound)
    jwks_fetcher = JwksFetcher(outbound)
    issuers = TrustedIssuers(jwks_fetcher, leeway_seconds=settings.clock_skew_seconds)
    sink = audit or audit_log_from_settings(settings, sessions)
    limiter = limiter_from_settings(settings)
    gateway_metrics = GatewayMetrics(settings.instance_id)
    tracer = tracing_from_settings(settings)  # None unless an OTLP endpoint is set
    pipeline = ExchangePipeline(
        config=RuntimeConfig.empty(),
        tokens=tokens,
        upstream=upstream,
        audit=sink,
        limiter=limiter,
        metrics=gateway_metrics,
        instance=settings.instance_id,
        problem_type_base=settings.problem_type_base,
        body_timeout=settings.request_body_timeout_seconds,
        issuers=issuers,
        tracing=tracer,
    )
    events = event_store_from_settings(settings, sessions)
    secrets = SecretBox(settings.keys_dir)
    state = GatewayState(
        settings,
        engine,
        sessions,
        keys,
        tokens,
        upstream,
        sink,
        pipeline,
        limiter,
        gateway_metrics,
        failure_throttle_from_settings(settings),
        issuers,
        events,
        secrets,
    )
    outbox = SqlOutbox(sessions)
    state.outbox = pipeline.outbox = outbox
    if settings.events_delivery_enabled:
        _add_workers(state, OutboundPolicy.from_settings(settings))
    state.jobs = SqlJobStore(sessions)
    if settings.jobs_enabled:
        state.scheduler = JobScheduler(
            state.jobs,
            events,
            upstream,
            sink,
            lambda: pipeline.config,
            instance=settings.instance_id,
            tick_seconds=settings.jobs_tick_seconds,
            lease_seconds=settings.jobs_lease_seconds,
            delivered=lambda: state.delivery.wake() if state.delivery is not None else None,
            metrics=gateway_metrics,
        )
    app[STATE] = state
    app[METRICS_ALLOWED] = NetworkAllowList(settings.metrics_allowed_networks)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        keys.load()
        if settings.schemas_dir.parts:
            for line in await load_bundled(sessions, settings.schemas_dir):
                log.info("schemas", change=line)
        await upstream.start()
        await jwks_fetcher.start()
        await limiter.start()
        await sink.start()
        await events.start()
        await reload_config(state)
        await _workers(state, start=True)
        tasks = [
            asyncio.create_task(watch_config(state), name="config-watcher"),
            asyncio.create_task(_refresh_gauges_loop(state), name="metrics-gauges"),
            # Trusted issuers' keys, fetched before their tokens arrive and kept fresh.
            asyncio.create_task(issuers.run(lambda: pipeline.config.issuers), name="issuer-keys"),
        ]
        if settings.audit_retention_days and not settings.audit_kafka_bootstrap:
            # With Kafka, `lgsp audit-indexer` applies retention to the store it fills.
            tasks.append(
                asyncio.create_task(
                    retention_loop(
                        sessions, days=settings.audit_retention_days, actor=settings.instance_id
                    ),
                    name="audit-retention",
                )
            )
        yield
        for task in tasks:
            task.cancel()
        # Bounded: a background task stuck in a library's cancellation (seen: the
        # configuration watcher's PostgreSQL connection) must not hold the stop forever.
        _, stuck = await asyncio.wait(tasks, timeout=BACKGROUND_STOP_SECONDS)
        if stuck:
            log.warning("background tasks did not stop", tasks=sorted(t.get_name() for t in stuck))
        await _workers(state, start=False)
        await events.close()
        gateway_metrics.flush()  # what was counted since the last second
        await sink.close()
        await limiter.close()
        await state.auth_failures.close()
        await upstream.close()
        await jwks_fetcher.close()
        await engine.dispose()
        # Last: the spans of exchanges cancelled by the stop are sent too.
        await _close_tracer(tracer)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "lgsp"
        if state.draining:
            # The caller's next request goes on a new connection, to an instance that stays.
            response.force_close()
            response.headers["Connection"] = "close"  # headers are set before this hook

    app.on_response_prepare.append(on_prepare)
    app.cleanup_ctx.append(lifecycle)
    # [\s\S]: every target under /r1/ reaches the pipeline, even one with an encoded
    # newline, so that it is refused by the path check and audited like any other.
    app.router.add_route("*", r"/r1/{tail:[\s\S]*}", pipeline.handle)
    app.router.add_post("/oauth2/token", token_endpoint)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/.well-known/oauth-authorization-server", oauth_metadata)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    registry_api.add_routes(app)
    admin_api.add_routes(app)
    discovery.add_routes(app)
    audit_api.add_routes(app)
    console.add_routes(app)
    events_api.add_routes(app)
    bulk_api.add_routes(app)
    messages_api.add_routes(app)
    return app


async def _close_tracer(tracer: Tracer | None) -> None:
    if tracer is not None:
        await asyncio.to_thread(tracer.close)  # blocks until the queue is sent


async def _workers(state: GatewayState, *, start: bool) -> None:
    if not start:
        for pump in reversed(state.event_pumps):
            await pump.close()
    for worker in (state.delivery, state.forwarder, state.scheduler):
        if worker is not None:
            await (worker.start() if start else worker.close())
    if start:
        for pump in state.event_pumps:
            pump.start()


def event_store_from_settings(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> EventStore:
    """The embedded store (tables), or Kafka's with `events_store = "kafka"`."""
    if settings.events_store != "kafka":
        return SqlEventStore(sessions)
    client = replace(
        kafka_settings(settings),
        bootstrap=settings.events_kafka_bootstrap or settings.audit_kafka_bootstrap,
        idempotence=settings.events_kafka_idempotence,
    )
    return KafkaEventStore(
        sessions,
        KafkaEventSettings(
            client,
            prefix=settings.events_kafka_prefix,
            partitions=settings.events_kafka_partitions,
            replication=settings.events_kafka_replication,
        ),
    )


def _add_workers(state: GatewayState, outbound: OutboundPolicy) -> None:
    """Event delivery, and store-and-forward, which shares its switch, rules and
    machinery (gateway/events/worker.py)."""
    settings = state.settings
    assert state.outbox is not None
    state.delivery = DeliveryWorker(
        state.events,
        state.secrets,
        outbound,
        state.audit,
        lambda: state.pipeline.config,
        instance=settings.instance_id,
        rules=delivery_rules(settings),
    )
    if isinstance(state.events, KafkaEventStore):
        # The Kafka queue's consumers, beside the worker that retries what they park.
        state.event_pumps = [
            Fanout(state.events, lambda: state.pipeline.config),
            KafkaDelivery(state.events, state.delivery),
        ]
    state.forwarder = ForwardWorker(
        state.outbox,
        state.upstream,
        state.audit,
        lambda: state.pipeline.config,
        instance=settings.instance_id,
        rules=delivery_rules(settings),
        type_base=settings.problem_type_base,
    )


def delivery_rules(settings: Settings) -> DeliveryRules:
    """The delivery worker's rules, from the `events_*` settings."""
    return DeliveryRules(
        concurrency=settings.events_delivery_concurrency,
        per_subscriber=settings.events_subscriber_concurrency,
        poll_seconds=settings.events_poll_seconds,
        lease_seconds=settings.events_delivery_timeout_seconds * 2 + 5,
        timeout_seconds=settings.events_delivery_timeout_seconds,
        retry=RetryRules(
            window=timedelta(seconds=settings.events_retry_window_seconds),
            initial_seconds=settings.events_backoff_initial_seconds,
            max_seconds=settings.events_backoff_max_seconds,
        ),
    )
