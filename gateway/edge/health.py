"""Health, readiness and metrics: what a load balancer, an orchestrator and Prometheus ask.

GET /healthz   alive: the process answers (and says what it runs with)
GET /readyz    ready: store, keys, configuration and audit path work, not draining
GET /metrics   Prometheus text format, to the allowed networks only"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway.core.logging import log
from gateway.core.networks import NetworkAllowList
from gateway.core.problems import (
    METRICS_FORBIDDEN,
    NOT_READY,
    Problem,
)
from gateway.edge.state import STATE, GatewayState
from gateway.edge.toolkit import json_response
from gateway.telemetry.metrics import BREAKER_STATES, CONTENT_TYPE


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. What it depends on is /readyz's business."""
    state = request.app[STATE]
    return json_response(
        {
            "status": "ok",
            "instance": state.settings.instance_id,
            "audit": state.audit.status(),
            "rate_limits": state.limiter.status(),
            "config_version": state.config_version,
            # Trusted issuers' key sets (the national platform calling in).
            "issuers": state.issuers.status(),
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


def _witness_warning(audit: dict[str, Any]) -> str | None:
    """Fewer witnesses cosign the latest tree head than the policy asks: the alarm."""
    quorum = int(audit.get("witness_quorum", 0))
    if not quorum or int(audit.get("witnesses_cosigning", 0)) >= quorum:
        return None
    failing = {
        name: w["last_error"] or f"{w['behind']} leaves behind"
        for name, w in audit.get("witnesses", {}).items()
        if w["behind"] or w["last_error"]
    }
    return (
        f"{audit.get('witnesses_cosigning', 0)} of the {quorum} witness cosignatures the "
        "policy asks for: " + ("; ".join(f"{k}: {v}" for k, v in failing.items()) or "none yet")
    )


def _audit_check(state: GatewayState) -> tuple[str | None, str | None]:
    """(failure, warning) of the audit path: the broker may be away while the spool has
    room, since the spool keeps every event durable until the broker takes it. When
    events cannot be made durable the instance is not ready if it has a fail_closed
    service (every call to one would be refused), only degraded if it has none.
    Witnesses that stopped cosigning are a warning (exchanges go on, the alarm is
    raised)."""
    audit = state.audit.status()
    witnesses = _witness_warning(audit)
    if audit.get("mode") != "kafka":
        return None, witnesses
    cannot = None
    if audit.get("spool_disk_full"):
        cannot = (
            f"the spool's disk is full ({audit.get('spool_disk_free_bytes')} bytes free): "
            "events cannot be made durable"
        )
    elif audit.get("spool_near_full"):
        cannot = "the broker is not taking events and the spool is near its bound"
    if cannot is not None:
        services = state.pipeline.config.services.values()
        if any(s.enabled and s.audit_mode == "fail_closed" for s in services):
            return cannot, None
        return None, cannot + " (no fail_closed service is affected)"
    if not audit.get("broker_connected"):
        broker = f"broker unreachable; {audit.get('spool_records', 0)} event(s) kept in the spool"
        return None, "; ".join(w for w in (broker, witnesses) if w)
    return None, witnesses


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
    return json_response(
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
    for name, w in audit.get("witnesses", {}).items():
        m.witness_behind.labels(name, instance).set(float(w["behind"]))
    if audit.get("mode") == "kafka":
        m.spool_disk_full.labels(instance).set(1.0 if audit.get("spool_disk_full") else 0.0)
        free = audit.get("spool_disk_free_bytes")
        if free is not None:
            m.spool_disk_free.labels(instance).set(float(free))
    m.config_version.labels(instance).set(state.config_version)
    # Every configured upstream has a breaker state; one not called yet is closed.
    breakers = state.upstream.breaker_states()
    for upstream in {s.upstream.name for s in state.pipeline.config.services.values()}:
        breaker = breakers.get(upstream, "closed")
        m.breaker_state.labels(upstream, instance).set(BREAKER_STATES[breaker])
    for upstream, count in state.upstream.in_flight().items():
        m.upstream_in_flight.labels(upstream, instance).set(count)
    m.retries(state.upstream.retries_total())
    m.process()


async def _refresh_gauges_loop(state: GatewayState, every: float = 1.0) -> None:
    # With several workers the scrape is answered by one of them: the others' gauges are
    # whatever they last wrote, so each writes its own every second.
    while True:
        await asyncio.sleep(every)
        try:
            refresh_gauges(state)
        except Exception:
            log.exception("metrics refresh failed")
