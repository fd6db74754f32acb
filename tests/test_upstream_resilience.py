"""Upstream resilience through the running gateway, on SQLite and PostgreSQL: a hung
provider costs its callers the service's timeout and nobody else anything; a failing
provider opens its circuit breaker, so callers get fast 503s without it being called,
until a trial call finds it well again; idempotent calls are retried within the time
budget, others never. Every exchange is audited with the problem it ended in.

The providers are an aiohttp server the test scripts, counting what reaches it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import versions as policy_state
from gateway.config.policy import policy_yaml
from gateway.config.runtime import RetryPolicy
from gateway.edge.reload import reload_config
from gateway.store.models import AuditRecord
from tests.conftest import PROVINCE_ID, Harness, add_to_policy

PROBLEM = "urn:lgsp:problem:"
HANG = 0  # a scripted status that means: never answer (until the test ends)


@dataclass(frozen=True)
class Answer:
    status: int
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class Agency:
    """A provider's system: answers each path from its script (the last answer repeats),
    and counts the requests that reached it."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Answer]] = {}
        self.seen: Counter[str] = Counter()
        self.methods: list[str] = []
        self.release = asyncio.Event()  # ends every hung request
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        script = self.scripts.get(request.path, [Answer(200)])
        answer = script[min(self.seen[request.path], len(script) - 1)]
        self.seen[request.path] += 1
        self.methods.append(request.method)
        if answer.status == HANG:
            await self.release.wait()
            return web.json_response({"late": True})
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.json_response(
            {"n": self.seen[request.path]}, status=answer.status, headers=answer.headers
        )


@pytest.fixture
async def agency() -> AsyncIterator[Agency]:
    a = Agency()
    server = TestServer(a.app(), host="127.0.0.1")
    await server.start_server()
    a.url = str(server.make_url("")).rstrip("/")
    yield a
    a.release.set()
    await server.close()


def service(code: str, upstream: str, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider": PROVINCE_ID,
        "code": code,
        "version": "v1",
        "name": code,
        "upstream": upstream,
        "upstream_path": path,
        "access": [{"client": "motcua"}],
        **extra,
    }


def address(code: str, endpoint: str = "/x") -> str:
    return f"/r1/{PROVINCE_ID}/{code}/v1{endpoint}"


async def bearer(h: Harness) -> dict[str, str]:
    return {"Authorization": f"Bearer {await h.token('motcua')}"}


async def audited(h: Harness, r: httpx.Response) -> AuditRecord:
    [rec] = await h.audit(r.headers["x-request-id"])
    assert rec.status == r.status_code
    return rec


async def problem(h: Harness, r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """A gateway problem, audited with its type; the provider's status is not set when
    the provider gave no answer."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug
    rec = await audited(h, r)
    assert rec.error_type == slug and rec.error_detail == body["detail"]
    return body


async def passed_through(h: Harness, r: httpx.Response, status: int) -> AuditRecord:
    """The provider's own answer, passed on and audited as such."""
    assert r.status_code == status, r.text
    assert not r.headers["content-type"].startswith("application/problem+json")
    rec = await audited(h, r)
    assert rec.upstream_status == status and rec.error_type is None
    return rec


async def until(condition: Any, what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


# -- a hung provider ----------------------------------------------------------------------------


async def test_a_hung_upstream_costs_its_callers_the_timeout_and_others_nothing(
    gateway: Harness, agency: Agency
) -> None:
    agency.scripts["/hung/x"] = [Answer(HANG)]
    await add_to_policy(
        gateway,
        [
            # Retries are on, yet the timeout bounds all attempts together.
            service(
                "hung",
                "slow-agency",
                "/hung",
                timeouts={"connect_ms": 200, "total_ms": 800},
                retries={"attempts": 3, "backoff_ms": 10},
            )
        ],
        [{"name": "slow-agency", "base_url": agency.url, "max_concurrency": 3}],
    )
    headers = await bearer(gateway)

    async def timed(path: str) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        r = await gateway.http.get(path, headers=headers)
        return r, time.perf_counter() - started

    # Three callers fill the hung upstream's concurrency limit.
    stuck = [asyncio.create_task(timed(address("hung"))) for _ in range(3)]
    await until(lambda: agency.seen["/hung/x"] == 3, "the hung upstream to hold 3 calls")
    assert gateway.state.upstream.in_flight()["slow-agency"] == 3

    # More callers of it are refused at once, without reaching it...
    for _ in range(2):
        r, _ = await timed(address("hung"))
        body = await problem(gateway, r, 503, "upstream-busy")
        assert r.headers["Retry-After"] == "1"
        assert "'slow-agency'" in body["detail"] and "3 calls in progress" in body["detail"]
    assert agency.seen["/hung/x"] == 3
    # ... and callers of another upstream are answered as usual, all while it hangs.
    # (All answered before any stuck caller's timeout: the order proves it, not a clock
    # reading, which a loaded machine would make flaky.)
    others = await asyncio.gather(*(timed(f"/r1/{PROVINCE_ID}/echo/v1/ping") for _ in range(10)))
    assert not any(task.done() for task in stuck)
    for r, _ in others:
        await passed_through(gateway, r, 200)

    # The stuck callers get a 504 after the service's timeout: not 3 x the timeout.
    for r, elapsed in await asyncio.gather(*stuck):
        body = await problem(gateway, r, 504, "upstream-timeout")
        assert "did not answer within 0.8 s" in body["detail"]
        assert 0.8 <= elapsed < 1.3
        assert (await audited(gateway, r)).upstream_status is None
    assert agency.seen["/hung/x"] == 3  # no retry: the budget was spent
    assert gateway.state.upstream.in_flight()["slow-agency"] == 0


async def test_callers_wait_for_a_slot_up_to_the_queue_timeout(
    gateway: Harness, agency: Agency
) -> None:
    agency.scripts["/q/x"] = [Answer(200, delay=0.2)]
    await add_to_policy(
        gateway,
        [service("queued", "one-at-a-time", "/q")],
        [
            {
                "name": "one-at-a-time",
                "base_url": agency.url,
                "max_concurrency": 1,
                "queue_timeout_ms": 2000,
            }
        ],
    )
    headers = await bearer(gateway)
    answers = await asyncio.gather(
        *(gateway.http.get(address("queued"), headers=headers) for _ in range(3))
    )
    for r in answers:
        await passed_through(gateway, r, 200)
    assert agency.seen["/q/x"] == 3


# -- a failing provider -------------------------------------------------------------------------


async def test_a_failing_upstream_opens_the_breaker_until_a_trial_succeeds(
    gateway: Harness, agency: Agency
) -> None:
    agency.scripts["/f/x"] = [Answer(500)]
    # This provider's 500s mean it is down (not so by default: see the test below).
    await add_to_policy(
        gateway,
        [service("failing", "failing-agency", "/f", upstream_failure_statuses=[500, 503])],
        [
            {
                "name": "failing-agency",
                "base_url": agency.url,
                "circuit_breaker": {"failure_threshold": 3, "open_seconds": 0.5},
            }
        ],
    )
    headers = await bearer(gateway)
    client = gateway.state.upstream

    async def call() -> httpx.Response:
        return await gateway.http.get(address("failing"), headers=headers)

    # Three failures in a row, passed on as the provider gave them, open the breaker.
    for _ in range(3):
        await passed_through(gateway, await call(), 500)
    assert client.breaker_states()["failing-agency"] == "open"

    # Now callers get a fast 503 saying when to come back, and the provider is spared.
    for _ in range(5):
        r = await call()
        body = await problem(gateway, r, 503, "upstream-unavailable")
        assert r.headers["Retry-After"] == "1"
        assert body["retry_after"] == 1 and body["upstream"] == "failing-agency"
        assert "'failing-agency' failed 3 times in a row" in body["detail"]
        assert "tried again in 1 s" in body["detail"]
        assert (await audited(gateway, r)).upstream_status is None
    assert agency.seen["/f/x"] == 3
    # Other upstreams are not affected.
    await passed_through(
        gateway, await gateway.http.get(f"/r1/{PROVINCE_ID}/echo/v1/ping", headers=headers), 200
    )

    # After open_seconds, one trial call goes through; it fails, so the breaker re-opens.
    await asyncio.sleep(0.55)
    await passed_through(gateway, await call(), 500)
    body = await problem(gateway, await call(), 503, "upstream-unavailable")
    assert "'failing-agency' failed again when tried" in body["detail"]
    assert agency.seen["/f/x"] == 4

    # The provider recovers: the next trial succeeds and traffic flows again.
    agency.scripts["/f/x"] = [Answer(200)]
    await asyncio.sleep(0.55)
    for _ in range(3):
        await passed_through(gateway, await call(), 200)
    assert client.breaker_states()["failing-agency"] == "closed"
    assert agency.seen["/f/x"] == 7


async def test_by_default_a_500_is_an_answer_and_a_503_a_failure(
    gateway: Harness, agency: Agency
) -> None:
    """A 500 is often a provider's business answer (every SOAP fault is one): by default
    it does not count against the upstream, which other services may share; 502, 503
    and 504 do."""
    agency.scripts["/d/fault"] = [Answer(500)]
    agency.scripts["/d/down"] = [Answer(503)]
    await add_to_policy(
        gateway,
        [service("defaults", "default-agency", "/d")],
        [
            {
                "name": "default-agency",
                "base_url": agency.url,
                "circuit_breaker": {"failure_threshold": 3},
            }
        ],
    )
    headers = await bearer(gateway)
    for _ in range(6):
        await passed_through(
            gateway, await gateway.http.get(address("defaults", "/fault"), headers=headers), 500
        )
    assert gateway.state.upstream.breaker_states()["default-agency"] == "closed"
    assert agency.seen["/d/fault"] == 6
    for _ in range(3):
        await passed_through(
            gateway, await gateway.http.get(address("defaults", "/down"), headers=headers), 503
        )
    r = await gateway.http.get(address("defaults", "/fault"), headers=headers)
    await problem(gateway, r, 503, "upstream-unavailable")
    assert agency.seen["/d/fault"] == 6


async def test_timeouts_and_refused_connections_count_against_the_breaker(
    gateway: Harness,
) -> None:
    # The test configuration's "dead" upstream: nobody listens on its port.
    async with gateway.state.sessions() as s, s.begin():

        def lower(doc: dict[str, Any]) -> None:
            [dead] = [u for u in doc["upstreams"] if u["name"] == "dead"]
            dead["circuit_breaker"] = {"failure_threshold": 2, "open_seconds": 60}

        await policy_state.edit_policy(s, lower, actor="test", source="test")
    await reload_config(gateway.state)
    headers = await bearer(gateway)
    for _ in range(2):
        r = await gateway.http.get(address("dead"), headers=headers)
        await problem(gateway, r, 502, "upstream-connection-failed")
    r = await gateway.http.get(address("dead"), headers=headers)
    body = await problem(gateway, r, 503, "upstream-unavailable")
    assert r.headers["Retry-After"] == "60" and "tried again in 60 s" in body["detail"]


# -- retries ------------------------------------------------------------------------------------


async def test_an_idempotent_call_is_retried_and_a_post_is_not(
    gateway: Harness, agency: Agency
) -> None:
    agency.scripts["/r/get"] = [Answer(503), Answer(200)]
    agency.scripts["/r/post"] = [Answer(503), Answer(200)]
    await add_to_policy(
        gateway,
        [service("retried", "flaky-agency", "/r", retries={"attempts": 3, "backoff_ms": 10})],
        [{"name": "flaky-agency", "base_url": agency.url}],
    )
    headers = await bearer(gateway)

    r = await gateway.http.get(address("retried", "/get"), headers=headers)
    await passed_through(gateway, r, 200)
    assert agency.seen["/r/get"] == 2
    assert gateway.state.upstream.retries_total()["flaky-agency"] == 1

    r = await gateway.http.post(address("retried", "/post"), headers=headers, json={"a": 1})
    await passed_through(gateway, r, 503)  # the provider's answer, as it gave it
    assert agency.seen["/r/post"] == 1
    assert gateway.state.upstream.retries_total()["flaky-agency"] == 1


async def test_retries_stop_at_the_time_budget(gateway: Harness, agency: Agency) -> None:
    # Each answer takes 0.2 s of a 0.5 s budget: a second attempt fits, a third would not
    # (it must have at least a quarter of the budget left), whatever the attempts allow.
    agency.scripts["/b/x"] = [Answer(503, delay=0.2)]
    agency.scripts["/b/later"] = [Answer(503, headers={"Retry-After": "5"}), Answer(200)]
    await add_to_policy(
        gateway,
        [
            service(
                "budget",
                "busy-agency",
                "/b",
                timeouts={"total_ms": 500},
                retries={"attempts": 5, "backoff_ms": 1, "max_backoff_ms": 1},
            )
        ],
        [{"name": "busy-agency", "base_url": agency.url}],
    )
    headers = await bearer(gateway)
    started = time.perf_counter()
    r = await gateway.http.get(address("budget"), headers=headers)
    elapsed = time.perf_counter() - started
    rec = await passed_through(gateway, r, 503)
    assert agency.seen["/b/x"] == 2
    assert elapsed < 0.5 + 0.3
    assert rec.upstream_ms is not None and 400 <= rec.upstream_ms < 500

    # A provider asking for more time than the budget has is not called back early.
    r = await gateway.http.get(address("budget", "/later"), headers=headers)
    await passed_through(gateway, r, 503)
    assert agency.seen["/b/later"] == 1


async def test_a_refused_connection_is_retried_within_the_budget(gateway: Harness) -> None:
    async with gateway.state.sessions() as s, s.begin():

        def retry(doc: dict[str, Any]) -> None:
            [dead] = [x for x in doc["services"] if x["code"] == "dead"]
            dead["retries"] = {"attempts": 3, "backoff_ms": 10}

        await policy_state.edit_policy(s, retry, actor="test", source="test")
    await reload_config(gateway.state)
    r = await gateway.http.get(address("dead"), headers=await bearer(gateway))
    body = await problem(gateway, r, 502, "upstream-connection-failed")
    assert body["attempts"] == 3 and "tried 3 times" in body["detail"]
    assert gateway.state.upstream.retries_total()["dead"] == 2


# -- configuration ------------------------------------------------------------------------------


async def test_resilience_settings_round_trip_through_the_store(
    gateway: Harness, agency: Agency
) -> None:
    upstream = {
        "name": "tuned",
        "base_url": agency.url,
        "circuit_breaker": {"failure_threshold": 0, "open_seconds": 2.5, "half_open_requests": 2},
        "max_concurrency": 0,
        "queue_timeout_ms": 250,
    }
    retries = {"attempts": 4, "backoff_ms": 20, "max_backoff_ms": 200}
    failures = [429, 500, 503]
    await add_to_policy(
        gateway,
        [service("tuned", "tuned", "", retries=retries, upstream_failure_statuses=failures)],
        [upstream],
    )
    async with gateway.state.sessions() as s:
        current = await policy_state.current_policy(s)
    [up] = [u for u in current.upstreams if u.name == "tuned"]
    assert up.model_dump(exclude={"auth"}) == upstream
    [svc] = [x for x in current.services if x.code == "tuned"]
    assert svc.retries.model_dump() == retries
    assert svc.upstream_failure_statuses == failures
    exported = policy_yaml(current)
    assert "half_open_requests: 2" in exported and "max_backoff_ms: 200" in exported
    assert "upstream_failure_statuses:\n  - 429\n  - 500\n  - 503\n" in exported

    entry = gateway.state.pipeline.config.services[(PROVINCE_ID, "tuned", "v1")]
    assert entry.retry == RetryPolicy(attempts=4, backoff_ms=20, max_backoff_ms=200)
    assert entry.failure_statuses == frozenset(failures)
    assert entry.upstream.breaker.failure_threshold == 0
    assert entry.upstream.breaker.open_seconds == 2.5
    assert (entry.upstream.max_concurrency, entry.upstream.queue_timeout) == (0, 0.25)

    # A change shows field by field in the diff.
    async with gateway.state.sessions() as s, s.begin():

        def tighten(doc: dict[str, Any]) -> None:
            [u] = [x for x in doc["upstreams"] if x["name"] == "tuned"]
            u["circuit_breaker"]["failure_threshold"] = 7

        commit = await policy_state.edit_policy(s, tighten, actor="test", source="test")
    [change] = commit.changes
    assert change.details() == ["circuit_breaker.failure_threshold: 0 → 7"]
