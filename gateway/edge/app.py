"""The gateway's HTTP application: the exchange route, the token endpoint and the
small documents around it (JWKS, RFC 8414 metadata, service list, health)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import unquote_plus

import orjson
from aiohttp import web

from gateway.audit.log import audit_log_from_settings
from gateway.audit.retention import retention_loop
from gateway.audit.sink import AuditSink
from gateway.config.runtime import RuntimeConfig
from gateway.core.logging import log
from gateway.core.problems import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    INVALID_CLIENT,
    METHOD_NOT_ALLOWED,
    METRICS_FORBIDDEN,
    NOT_FOUND,
    NOT_READY,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_GRANT,
    Problem,
    ProblemType,
)
from gateway.core.settings import Settings
from gateway.edge import admin_api, audit_api, registry_api
from gateway.edge import discovery_api as discovery
from gateway.edge.reload import reload_config, watch_config
from gateway.edge.state import STATE, GatewayState
from gateway.exchange.accountability import REQUEST_ID_HEADER, request_id_from
from gateway.exchange.pipeline import ExchangePipeline
from gateway.identity.authn import authenticate, check_client_secret
from gateway.identity.keys import KeyStore
from gateway.identity.tokens import TokenService
from gateway.limits.ratelimit import limiter_from_settings
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.telemetry.metrics import BREAKER_STATES, CONTENT_TYPE, GatewayMetrics, NetworkAllowList
from gateway.upstream.allowlist import OutboundPolicy
from gateway.upstream.client import UpstreamClient

TOKEN_REQUEST_MAX_BYTES = 8192


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


# -- error rendering for everything but /r1 (which renders its own, to audit them) ----------


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.raw_path.startswith("/r1/"):
        return await handler(request)
    state = request.app[STATE]
    request_id, _ = request_id_from(request.headers)
    base = state.settings.problem_type_base
    try:
        response = await handler(request)
    except Problem as p:
        return p.to_response(type_base=base, request_id=request_id, instance=request.path)
    except web.HTTPMethodNotAllowed as e:
        return Problem(
            METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here; use {', '.join(sorted(e.allowed_methods))}.",
            headers={"Allow": ", ".join(sorted(e.allowed_methods))},
        ).to_response(type_base=base, request_id=request_id, instance=request.path)
    except web.HTTPNotFound:
        return Problem(
            NOT_FOUND,
            f"Nothing at {request.path}. Services are called at /r1/{{provider}}/{{service}}/"
            "{version}/...; tokens come from /oauth2/token.",
        ).to_response(type_base=base, request_id=request_id, instance=request.path)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        # aiohttp's own refusals (body too large, bad form...) get our shape too.
        ptype = PAYLOAD_TOO_LARGE if e.status == 413 else BAD_REQUEST
        return Problem(ptype, e.text or e.reason).to_response(
            type_base=base, request_id=request_id, instance=request.path
        )
    except Exception:
        log.exception("unhandled error", path=request.path, request_id=request_id)
        return Problem(INTERNAL_ERROR, "Unexpected error; quote the request id.").to_response(
            type_base=base, request_id=request_id, instance=request.path
        )
    response.headers.setdefault(REQUEST_ID_HEADER, request_id)
    return response


# -- OAuth2 -----------------------------------------------------------------------------------


def _oauth_error(ptype: ProblemType, error: str, detail: str) -> Problem:
    # RFC 6749 §5.2 clients read `error`; everyone else reads the problem fields.
    headers = {"Cache-Control": "no-store"}
    if error == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="lgsp"'
    return Problem(ptype, detail, headers=headers, error=error, error_description=detail)


async def token_endpoint(request: web.Request) -> web.Response:
    """OAuth2 client credentials (RFC 6749 §4.4), client_secret_basic or client_secret_post."""
    state = request.app[STATE]
    if (request.content_length or 0) > TOKEN_REQUEST_MAX_BYTES:
        raise Problem(PAYLOAD_TOO_LARGE, "A token request is a few hundred bytes at most.")
    if request.content_type != "application/x-www-form-urlencoded":
        raise _oauth_error(
            BAD_REQUEST,
            "invalid_request",
            "Send the token request as application/x-www-form-urlencoded.",
        )
    form = await request.post()
    client_id = form.get("client_id")
    secret = form.get("client_secret")
    authorization = request.headers.get("Authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode("utf-8")
            # RFC 6749 §2.3.1: both parts are form-encoded inside the Basic credentials.
            client_id, secret = (unquote_plus(p) for p in decoded.partition(":")[::2])
        except (ValueError, UnicodeDecodeError):
            raise _oauth_error(
                INVALID_CLIENT, "invalid_client", "The Basic credentials are malformed."
            ) from None
    if form.get("grant_type") != "client_credentials":
        raise _oauth_error(
            UNSUPPORTED_GRANT,
            "unsupported_grant_type",
            "Use grant_type=client_credentials.",
        )
    if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id:
        raise _oauth_error(
            INVALID_CLIENT,
            "invalid_client",
            "Authenticate with HTTP Basic (client id and secret) or client_id/client_secret.",
        )
    match = check_client_secret(state.pipeline.config, client_id, secret)
    if match is None:
        log.warning("token refused", client=client_id)
        raise _oauth_error(
            INVALID_CLIENT,
            "invalid_client",
            "Unknown client, wrong or revoked secret, or disabled client.",
        )
    client, credential_id = match
    token, ttl = state.tokens.issue(client, credential_id)
    return _json(
        {"access_token": token, "token_type": "Bearer", "expires_in": ttl},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def jwks(request: web.Request) -> web.Response:
    return _json(request.app[STATE].keys.jwks(), headers={"Cache-Control": "max-age=60"})


async def oauth_metadata(request: web.Request) -> web.Response:
    """RFC 8414 authorization server metadata."""
    s = request.app[STATE].settings
    return _json(
        {
            "issuer": s.issuer,
            "token_endpoint": f"{s.issuer}/oauth2/token",
            "jwks_uri": f"{s.issuer}/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "token_signing_alg_values_supported": s.token_algorithms,
        }
    )


async def list_services(request: web.Request) -> web.Response:
    """The services the authenticated caller is granted something on."""
    state = request.app[STATE]
    config = state.pipeline.config
    caller = authenticate(request.headers, config, state.tokens)
    return _json(
        {
            "client": caller.client.code,
            "services": [
                {
                    "provider": s.provider,
                    "code": s.code,
                    "version": s.version,
                    "name": s.name,
                    "address": f"/r1/{s.provider}/{s.code}/{s.version}/",
                    "requires": list(s.required_fields),
                    "enabled": s.enabled,
                }
                for s in config.services.values()
                if s.grants(caller.client)
            ],
        }
    )


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. What it depends on is /readyz's business."""
    state = request.app[STATE]
    return _json(
        {
            "status": "ok",
            "instance": state.settings.instance_id,
            "audit": state.audit.status(),
            "rate_limits": state.limiter.status(),
            "config_version": state.config_version,
        }
    )


READY_STORE_TIMEOUT_SECONDS = 2.0


async def _store_check(state: GatewayState) -> str | None:
    try:
        async with asyncio.timeout(READY_STORE_TIMEOUT_SECONDS), state.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception as e:  # any failure to reach it is the answer
        return f"unreachable: {type(e).__name__}"
    return None


def _keys_check(state: GatewayState) -> str | None:
    try:
        state.keys.active  # noqa: B018 - raises when no key is loaded
    except Exception as e:
        return f"no signing key: {type(e).__name__}"
    return None


def _audit_check(state: GatewayState) -> tuple[str | None, str | None]:
    """(failure, warning) of the audit path: the broker may be away while the spool has
    room, since the spool keeps every event durable until the broker takes it."""
    audit = state.audit.status()
    if audit.get("mode") != "kafka":
        return None, None
    if audit.get("spool_near_full"):
        return "the broker is not taking events and the spool is near its bound", None
    if not audit.get("broker_connected"):
        return None, (
            f"broker unreachable; {audit.get('spool_records', 0)} event(s) kept in the spool"
        )
    return None, None


async def readyz(request: web.Request) -> web.Response:
    """Ready: the store answers, the signing keys are loaded, the audit path takes events,
    the configuration is loaded and the instance is not draining."""
    state = request.app[STATE]
    audit_failure, audit_warning = _audit_check(state)
    checks: dict[str, str | None] = {
        "draining": "stopping: finishing the exchanges in flight" if state.draining else None,
        "configuration": None if state.config_version >= 0 else "not loaded yet",
        "store": await _store_check(state),
        "keys": _keys_check(state),
        "audit": audit_failure,
    }
    failed = {name: why for name, why in checks.items() if why is not None}
    report = {name: (checks[name] or "ok") for name in ("store", "keys", "audit", "configuration")}
    if audit_warning is not None:
        report["audit"] = audit_warning
    if failed:
        raise Problem(
            NOT_READY,
            "Not ready: " + "; ".join(f"{name}: {why}" for name, why in failed.items()) + ".",
            headers={"Retry-After": "1"},
            checks=report,
            instance_id=state.settings.instance_id,
        )
    return _json(
        {
            "status": "degraded" if audit_warning else "ready",
            "instance": state.settings.instance_id,
            "checks": report,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not request.app[METRICS_ALLOWED].allows(request.remote):
        raise Problem(
            METRICS_FORBIDDEN,
            f"/metrics is served to LGSP_METRICS_ALLOWED_NETWORKS only, not to {request.remote}.",
        )
    refresh_gauges(state)
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


METRICS_ALLOWED = web.AppKey("metrics_allowed", NetworkAllowList)


def refresh_gauges(state: GatewayState) -> None:
    """This instance's gauges: read from the parts that hold them, never per request."""
    m, instance = state.metrics, state.settings.instance_id
    m.flush()
    audit = state.audit.status()
    m.spool_records.labels(instance).set(float(audit.get("spool_records", 0)))
    m.spool_bytes.labels(instance).set(float(audit.get("spool_bytes", 0)))
    m.config_version.labels(instance).set(state.config_version)
    # Every configured upstream has a breaker state; one not called yet is closed.
    breakers = state.upstream.breaker_states()
    for upstream in {s.upstream.name for s in state.pipeline.config.services.values()}:
        breaker = breakers.get(upstream, "closed")
        m.breaker_state.labels(upstream, instance).set(BREAKER_STATES[breaker])
    for upstream, count in state.upstream.in_flight().items():
        m.upstream_in_flight.labels(upstream, instance).set(count)
    for upstream, count in state.upstream.retries_total().items():
        m.upstream_retries.labels(upstream, instance).set(count)


async def _refresh_gauges_loop(state: GatewayState, every: float = 1.0) -> None:
    # With several workers the scrape is answered by one of them: the others' gauges are
    # whatever they last wrote, so each writes its own every second.
    while True:
        await asyncio.sleep(every)
        try:
            refresh_gauges(state)
        except Exception:
            log.exception("metrics refresh failed")


# -- lifecycle --------------------------------------------------------------------------------


def create_app(settings: Settings, *, audit: AuditSink | None = None) -> web.Application:
    app = web.Application(
        middlewares=[problem_middleware], client_max_size=settings.max_request_bytes
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
    upstream = UpstreamClient(outbound=OutboundPolicy.from_settings(settings))
    sink = audit or audit_log_from_settings(settings, sessions)
    limiter = limiter_from_settings(settings)
    gateway_metrics = GatewayMetrics(settings.instance_id)
    pipeline = ExchangePipeline(
        config=RuntimeConfig.empty(),
        tokens=tokens,
        upstream=upstream,
        audit=sink,
        limiter=limiter,
        metrics=gateway_metrics,
        instance=settings.instance_id,
        problem_type_base=settings.problem_type_base,
    )
    state = GatewayState(
        settings, engine, sessions, keys, tokens, upstream, sink, pipeline, limiter, gateway_metrics
    )
    app[STATE] = state
    app[METRICS_ALLOWED] = NetworkAllowList(settings.metrics_allowed_networks)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        keys.load()
        if settings.schemas_dir.parts:
            for line in await load_bundled(sessions, settings.schemas_dir):
                log.info("schemas", change=line)
        await upstream.start()
        await limiter.start()
        await sink.start()
        await reload_config(state)
        tasks = [
            asyncio.create_task(watch_config(state), name="config-watcher"),
            asyncio.create_task(_refresh_gauges_loop(state), name="metrics-gauges"),
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
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gateway_metrics.flush()  # what was counted since the last second
        await sink.close()
        await limiter.close()
        await upstream.close()
        await engine.dispose()

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
    app.router.add_get("/services", list_services)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    registry_api.add_routes(app)
    admin_api.add_routes(app)
    discovery.add_routes(app)
    audit_api.add_routes(app)
    return app
