"""OpenTelemetry traces: the gateway as a participant of the caller's trace, its spans
received on an OTLP/HTTP endpoint the test starts (tests/otlp_receiver.py).

- Through two gateways, A whose upstream for a service is gateway B, B's the simulator:
  the caller's span → A's server span → A's client span → B's server span → B's client
  span → the simulator's `traceparent`, one trace id, which both audit records hold;
  service, client, agency, outcome and status as attributes, and nothing personal in
  what is sent (no officer, case, path or citizen number).
- Retries: one client span per attempt, `http.request.resend_count` counting them.
- Refusals: a span event naming the problem type, no client span.
- Sampling: a caller's unsampled trace is not recorded and goes on unsampled; the
  traces the gateway starts are recorded at `otel_sample_ratio`.
- Logs: a line logged during an exchange carries its trace and span ids, the same as the
  exported server span's and the audit record's (`lgsp serve` as a process, its audit
  through the spool, the broker and the indexer into the store).
- Off: without an endpoint, no span is noted and the trace SDK and its exporter are not
  even imported.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from gateway.admin import credentials as credential_ops
from gateway.audit.indexer import Indexer
from gateway.audit.kafka import KafkaSettings
from gateway.audit.store import AuditStore
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.core.settings import Settings
from gateway.edge.app import create_app
from gateway.edge.state import STATE
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditRecord
from gateway.telemetry import spans as span_notes
from gateway.telemetry.spans import ratio_bound, sampled
from gateway.telemetry.tracecontext import TraceContext
from tests.conftest import (
    ECHO,
    ONE_PER_EXCHANGE,
    PROVINCE_ID,
    REPO,
    GatewayTestServer,
    Harness,
    add_to_policy,
)
from tests.otlp_receiver import CLIENT, SERVER, STATUS_ERROR, Receiver, Span, otlp
from tests.test_audit_kafka import Broker, broker
from tests.test_serve import serve

__all__ = ["broker", "otlp"]  # the fixtures

PROVINCE_B = "000.00.00.H50"
B_SECRET_ENV = "LGSP_UPSTREAM_SECRET_GW_B"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CITIZEN = "001099012345"
OFFICER = "CB-0042"
CASE = "HS-2026-000777"


@pytest.fixture
def traces_off() -> None:
    """Asked for by a test whose gateway has no traces endpoint."""


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest, otlp: Receiver
) -> Settings:
    """The conftest's settings, exporting to the test's receiver (unless `traces_off`)."""
    off = "traces_off" in request.fixturenames
    return Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        public_url="http://gateway.test",
        instance_id="test-gw",
        schemas_dir=REPO / "schemas",
        upstream_allowed_networks=["loopback"],
        otel_traces_endpoint="" if off else otlp.url,
        otel_export_delay_seconds=0.05,
    )


async def flush(h: Harness | TestServer) -> None:
    state = h.state if isinstance(h, Harness) else h.app[STATE]
    tracer = state.pipeline.tracing
    assert tracer is not None
    assert await asyncio.to_thread(tracer.flush)


def one(spans: list[Span], **match: Any) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.name, s.instance, s.kind) for s in spans])
    return found[0]


# -- two gateways --------------------------------------------------------------------------


def province_b_policy(simulator_url: str) -> PolicySet:
    """Gateway B: province A's gateway is its client, the simulator its echo's upstream."""
    return PolicySet.model_validate(
        {
            "agencies": [
                {"code": PROVINCE_B, "name": "UBND tỉnh B"},
                {"code": PROVINCE_ID, "name": "UBND tỉnh A"},
            ],
            "clients": [{"code": "tinh-a", "agency": PROVINCE_ID, "name": "LGSP tỉnh A"}],
            "upstreams": [{"name": "sim", "base_url": simulator_url}],
            "services": [
                {
                    "provider": PROVINCE_B,
                    "code": "echo",
                    "version": "v1",
                    "name": "Echo of province B",
                    "upstream": "sim",
                    "upstream_path": "/_sim/echo",
                    "access": [{"client": "tinh-a"}],
                }
            ],
        }
    )


@pytest.fixture
async def gateway_b(
    gateway: Harness,
    otlp: Receiver,
    sqlite_seeded_template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[TestServer]:
    """Gateway B, its own store and keys, exporting to the same receiver; and gateway A's
    service `via-b`, whose upstream is B (A's credentials for B: client tinh-a)."""
    db = tmp_path / "b.db"
    shutil.copy(sqlite_seeded_template, db)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        keys_dir=tmp_path / "keys-b",
        public_url="http://gateway-b.test",
        instance_id="gw-b",
        schemas_dir=REPO / "schemas",
        upstream_allowed_networks=["loopback"],
        events_delivery_enabled=False,
        otel_traces_endpoint=otlp.url,
        otel_export_delay_seconds=0.05,
    )
    engine = create_engine(settings.database_url)
    async with session_factory(engine)() as s, s.begin():
        await policy_state.apply_policy(s, province_b_policy(gateway.simulator_url), actor="test")
        secret = await credential_ops.issue(s, client_code="tinh-a", kind="secret", actor="test")
    await engine.dispose()
    monkeypatch.setenv(B_SECRET_ENV, secret)
    server = GatewayTestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    b_url = str(server.make_url("")).rstrip("/")
    await add_to_policy(
        gateway,
        [
            {
                "provider": PROVINCE_ID,
                "code": "via-b",
                "version": "v1",
                "name": "Province B's echo, through B's gateway",
                "upstream": "gw-b",
                "upstream_path": f"/r1/{PROVINCE_B}/echo/v1",
                "access": [{"client": "motcua"}],
            }
        ],
        [
            {
                "name": "gw-b",
                "base_url": b_url,
                "auth": {
                    "type": "oauth2_client_credentials",
                    "token_url": "/oauth2/token",
                    "client_id": "tinh-a",
                    "client_secret_env": B_SECRET_ENV,
                },
            }
        ],
    )
    yield server
    await server.close()


async def test_a_trace_runs_through_two_gateways_with_each_span_under_the_one_before(
    gateway: Harness, gateway_b: TestServer, otlp: Receiver
) -> None:
    auth = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.post(
        f"/r1/{PROVINCE_ID}/via-b/v1/cong-dan/{CITIZEN}",
        headers={
            **auth,
            "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
            "X-Officer-Id": OFFICER,
            "X-Case-Number": CASE,
        },
        json={"SoDinhDanh": CITIZEN},
    )
    assert r.status_code == 200, r.text
    request_id = r.headers["X-Request-Id"]
    seen_by_simulator = r.json()["headers"]["traceparent"]
    await flush(gateway)
    await flush(gateway_b)
    spans = await otlp.wait_for(CALLER_TRACE, 4)
    assert len(spans) == 4, [(s.name, s.instance) for s in spans]

    a_server = one(spans, instance="test-gw", kind=SERVER)
    a_client = one(spans, instance="test-gw", kind=CLIENT)
    b_server = one(spans, instance="gw-b", kind=SERVER)
    b_client = one(spans, instance="gw-b", kind=CLIENT)
    assert a_server.parent == CALLER_SPAN
    assert a_client.parent == a_server.span_id
    assert b_server.parent == a_client.span_id
    assert b_client.parent == b_server.span_id
    assert seen_by_simulator == f"00-{CALLER_TRACE}-{b_client.span_id}-01"
    # Each child within its parent's time.
    for parent, child in ((a_server, a_client), (a_client, b_server), (b_server, b_client)):
        assert parent.start_ns <= child.start_ns <= child.end_ns <= parent.end_ns

    assert a_server.name == f"POST {PROVINCE_ID}/via-b/v1"
    assert a_server.attributes == {
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "lgsp.outcome": "ok",
        "lgsp.request_id": request_id,
        "lgsp.service": f"{PROVINCE_ID}/via-b/v1",
        "lgsp.client": "motcua",
        "lgsp.client_agency": "000.00.31.H49",
    }
    assert b_server.attributes["lgsp.client"] == "tinh-a"
    assert b_server.attributes["lgsp.client_agency"] == PROVINCE_ID
    assert b_server.attributes["lgsp.service"] == f"{PROVINCE_B}/echo/v1"
    assert a_client.name == "POST gw-b"
    assert a_client.attributes == {
        "http.request.method": "POST",
        "lgsp.upstream": "gw-b",
        "http.response.status_code": 200,
    }
    assert b_client.attributes["lgsp.upstream"] == "sim"
    assert {s.service_name for s in spans} == {"lgsp-gateway"}
    assert all(s.status != STATUS_ERROR and not s.events for s in spans)

    # The trace id is in both audit records (B got A's request id).
    (a_record,) = await gateway.audit(request_id)
    assert a_record.trace_id == CALLER_TRACE
    async with gateway_b.app[STATE].sessions() as s:
        b_records = (
            await s.scalars(
                select(AuditRecord).where(AuditRecord.request_id == request_id, ONE_PER_EXCHANGE)
            )
        ).all()
    assert [rec.trace_id for rec in b_records] == [CALLER_TRACE]
    assert b_records[0].client_code == "tinh-a"

    # Nothing personal left the gateways: not the citizen number (in the path and the
    # body), the officer, the case, the endpoint path.
    sent = b"".join(otlp.bodies)
    for secret in (CITIZEN, OFFICER, CASE, "cong-dan"):
        assert secret.encode() not in sent, secret
    assert otlp.content_types == {"application/x-protobuf"}


# -- retries, refusals, sampling ------------------------------------------------------------


async def test_each_attempt_is_a_client_span_so_retries_are_visible(
    gateway: Harness, otlp: Receiver
) -> None:
    await add_to_policy(
        gateway,
        [
            {
                "provider": PROVINCE_ID,
                "code": "flaky",
                "version": "v1",
                "name": "Answers the status asked for",
                "upstream": "sim-open",
                "upstream_path": "/_sim/status",
                "retries": {"attempts": 3, "backoff_ms": 10},
                "access": [{"client": "motcua"}],
            }
        ],
    )
    auth = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.get(f"/r1/{PROVINCE_ID}/flaky/v1/503", headers=auth)
    assert r.status_code == 503
    (record,) = await gateway.audit(r.headers["X-Request-Id"])
    assert record.trace_id is not None
    await flush(gateway)
    spans = await otlp.wait_for(record.trace_id, 4)
    server = one(spans, kind=SERVER)
    assert server.parent == ""  # no caller trace: the gateway started this one
    assert server.status == STATUS_ERROR
    assert server.attributes["lgsp.outcome"] == "upstream-5xx"
    assert server.attributes["error.type"] == "upstream-5xx"
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start_ns)
    assert len(attempts) == 3
    assert [s.attributes.get("http.request.resend_count") for s in attempts] == [None, 1, 2]
    assert {s.parent for s in attempts} == {server.span_id}
    assert all(s.attributes["http.response.status_code"] == 503 for s in attempts)
    assert all(s.attributes["error.type"] == "503" and s.status == STATUS_ERROR for s in attempts)
    assert attempts[0].end_ns <= attempts[1].start_ns <= attempts[1].end_ns <= attempts[2].start_ns


async def test_a_refusal_is_a_span_event_naming_its_problem_type(
    gateway: Harness, otlp: Receiver
) -> None:
    auth = {"Authorization": f"Bearer {await gateway.token('outsider')}"}
    r = await gateway.http.get(ECHO + "/x", headers=auth)
    assert r.status_code == 403
    (record,) = await gateway.audit(r.headers["X-Request-Id"])
    assert record.trace_id is not None
    await flush(gateway)
    (server,) = await otlp.wait_for(record.trace_id, 1)
    assert server.kind == SERVER and server.status != STATUS_ERROR  # the caller's fault
    assert server.events == [
        (
            "refusal",
            {
                "lgsp.problem.type": "access-denied",
                "http.response.status_code": 403,
                "lgsp.side": "caller",
            },
        )
    ]
    assert server.attributes["lgsp.outcome"] == "access-denied"
    assert server.attributes["lgsp.client"] == "outsider"


async def test_a_callers_unsampled_trace_is_not_recorded_and_goes_on_unsampled(
    gateway: Harness, otlp: Receiver
) -> None:
    auth = {"Authorization": f"Bearer {await gateway.token()}"}
    unsampled = "5bf92f3577b34da6a3ce929d0e0e4736"
    r = await gateway.http.get(
        ECHO + "/x", headers={**auth, "traceparent": f"00-{unsampled}-{CALLER_SPAN}-00"}
    )
    assert r.status_code == 200
    assert r.json()["headers"]["traceparent"].endswith("-00")
    # A sampled exchange after it, flushed: by then the first would have arrived too.
    r = await gateway.http.get(
        ECHO + "/x", headers={**auth, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    await flush(gateway)
    await otlp.wait_for(CALLER_TRACE, 2)
    assert otlp.of_trace(unsampled) == []


def test_traces_the_gateway_starts_are_recorded_at_the_sample_ratio() -> None:
    traces = [TraceContext.from_headers([], []) for _ in range(4000)]
    recorded = [sampled(t, ratio_bound(0.25)) for t in traces]
    share = sum(keep for _, keep in recorded) / len(traces)
    assert 0.2 < share < 0.3
    # Not recorded: passed on with the sampled flag cleared, the ids unchanged.
    for (trace, keep), original in zip(recorded, traces, strict=True):
        assert trace.traceparent.endswith("-01" if keep else "-00")
        assert (trace.trace_id, trace.span_id) == (original.trace_id, original.span_id)
    assert all(keep for _, keep in (sampled(t, ratio_bound(1.0)) for t in traces))
    assert not any(keep for _, keep in (sampled(t, ratio_bound(0.0)) for t in traces))
    # A caller's trace: its flag decides, whatever the ratio.
    caller = TraceContext.from_headers([f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"], [])
    assert sampled(caller, ratio_bound(0.0)) == (caller, True)


# -- logs ------------------------------------------------------------------------------------


async def test_a_log_line_of_an_exchange_names_its_span_and_the_audit_record_its_trace(
    database_url: str, tmp_path: Path, otlp: Receiver, broker: Broker
) -> None:
    """`lgsp serve`, loopback not allowed for upstreams: the echo's upstream (the
    simulator on 127.0.0.1) is refused, which the gateway logs during the exchange. The
    audit goes through the spool and the broker, and an indexer takes it into the store:
    the trace id goes all the way."""
    topic = "lgsp.audit.traces"
    async with serve(
        database_url,
        tmp_path,
        1,
        otel_traces_endpoint=otlp.url,
        otel_export_delay_seconds="0.05",
        upstream_allowed_networks='["private"]',
        audit_kafka_bootstrap=broker.bootstrap,
        audit_kafka_topic=topic,
        audit_kafka_partitions="1",
        audit_kafka_idempotence="false",
    ) as gw:
        async with httpx.AsyncClient(base_url=gw.url) as http:
            r = await http.get(
                ECHO + "/x",
                headers={
                    "Authorization": f"Bearer {gw.token}",
                    "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                },
            )
        assert r.status_code == 502, r.text
        assert r.json()["type"] == "urn:lgsp:problem:upstream-address-refused"
        spans = await otlp.wait_for(CALLER_TRACE, 2)
        assert gw.stop() == 0
    server = one(spans, kind=SERVER)
    attempt = one(spans, kind=CLIENT)
    assert attempt.attributes["error.type"] == "upstream-address-refused"
    assert server.events[0][1]["lgsp.problem.type"] == "upstream-address-refused"
    lines = [json.loads(line) for line in gw.tail().splitlines() if line.startswith("{")]
    refused = [line for line in lines if line.get("event") == "upstream address refused"]
    assert len(refused) == 1, gw.tail()
    assert refused[0]["trace_id"] == CALLER_TRACE
    assert refused[0]["span_id"] == server.span_id
    # Lines outside an exchange carry none.
    listening = [line for line in lines if line.get("event") == "gateway listening"]
    assert listening and "trace_id" not in listening[0]
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    indexer = Indexer(
        AuditStore(sessions, source="indexer"),
        KafkaSettings(bootstrap=broker.bootstrap, topic=topic, partitions=1, idempotence=False),
        group="test-traces-indexer",
    )
    task = asyncio.create_task(indexer.run())
    request_id = r.headers["X-Request-Id"]
    try:
        deadline = time.monotonic() + 60
        while not (stored := await gw.stored())[request_id] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        async with sessions() as s:
            query = select(AuditRecord).where(AuditRecord.request_id == request_id)
            records = (await s.scalars(query.where(ONE_PER_EXCHANGE))).all()
    finally:
        indexer.stop()
        await asyncio.wait([task], timeout=10)
        await engine.dispose()
    assert stored[request_id] == 1
    assert [(rec.trace_id, rec.error_type) for rec in records] == [
        (CALLER_TRACE, "upstream-address-refused")
    ]


# -- off -------------------------------------------------------------------------------------


async def test_without_an_endpoint_no_span_is_noted(
    traces_off: None, gateway: Harness, otlp: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gateway.state.pipeline.tracing is None

    def refuse(*_: object) -> None:
        raise AssertionError("a span was noted with traces off")

    monkeypatch.setattr(span_notes.ExchangeSpan, "__init__", refuse)
    monkeypatch.setattr(span_notes.ClientSpan, "__init__", refuse)
    auth = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.get(
        ECHO + "/x", headers={**auth, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    assert r.status_code == 200
    # The trace is still joined (the audit record and the provider's traceparent).
    assert r.json()["headers"]["traceparent"].startswith(f"00-{CALLER_TRACE}-")
    (record,) = await gateway.audit(r.headers["X-Request-Id"])
    assert record.trace_id == CALLER_TRACE
    assert otlp.spans == []


def test_without_an_endpoint_the_trace_sdk_is_not_imported(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from gateway.ops.cli.main import main\n"
        "from gateway.core.settings import Settings\n"
        "from gateway.edge.app import create_app\n"
        "from gateway.edge.state import STATE\n"
        f"app = create_app(Settings(database_url='sqlite+aiosqlite:///{tmp_path}/x.db',"
        f" keys_dir='{tmp_path}/keys'))\n"
        "assert app[STATE].pipeline.tracing is None\n"
        "ours = ('opentelemetry.sdk.trace', 'opentelemetry.exporter', 'gateway.telemetry.otlp')\n"
        # (redis-py imports the metrics SDK when it is installed, for its own opt-in use.)
        "print(sorted(m for m in sys.modules if m.startswith(ours)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LGSP_", "OTEL_"))}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
