"""Forwarding to providers' systems: one pooled HTTP client, the gateway's own credentials
for each upstream (cached until shortly before they expire), and upstream failures
turned into problems that say the upstream side failed.

With an `OutboundPolicy` (gateway/upstream/allowlist.py), every URL is checked before it is sent
(scheme, IP-literal host) and every resolved address when a connection is made; a refusal
is an `upstream-address-refused` problem.

Around each exchange, per upstream (gateway/upstream/resilience.py): a circuit breaker that
answers 503 `upstream-unavailable` without calling a provider that keeps failing (what
counts as failing: `upstream_failed`, by the service's statuses and its adapter), a
concurrency limit that answers 503 `upstream-busy` rather than let one slow provider
hold every connection, and retries of idempotent calls within the service's total
timeout. State is kept by upstream name, so it survives configuration reloads.

When the exchange is traced (gateway/telemetry/tracing.py), each request sent is a client
span of its own, retries and the repeat after a forgotten token included, and the
provider's `traceparent` names it.
"""

from __future__ import annotations

import asyncio
import functools
import math
import ssl
import time
from collections.abc import Callable

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.config.runtime import RetryPolicy, ServiceEntry, UpstreamEntry
from gateway.core.logging import log
from gateway.core.messages import UpstreamResponse
from gateway.core.problems import (
    UPSTREAM_BAD_RESPONSE,
    UPSTREAM_BUSY,
    UPSTREAM_CIRCUIT_OPEN,
    UPSTREAM_CONNECT_FAILED,
    UPSTREAM_RESPONSE_TOO_LARGE,
    UPSTREAM_TIMEOUT,
    Problem,
    ProblemType,
)
from gateway.core.tls import client_context
from gateway.telemetry.spans import ExchangeSpan
from gateway.upstream.allowlist import (
    GuardedResolver,
    OutboundPolicy,
    address_refused,
    refused_problem,
)
from gateway.upstream.resilience import (
    CLOSED,
    HALF_OPEN,
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    Bulkhead,
    CircuitBreaker,
    min_attempt_seconds,
    next_delay,
    retry_after_seconds,
)
from gateway.upstream.tokens import UpstreamTokens

# The adapter's verdict on an answer (Adapter.upstream_failed, bound to the request).
Judge = Callable[[UpstreamResponse], bool | None]

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# The caller's credentials are for the gateway, never for the provider; Host and length
# are the client library's to set.
NOT_FORWARDED_REQUEST = HOP_BY_HOP | {
    "authorization",
    "x-api-key",
    "host",
    "content-length",
    "expect",  # the gateway has already read the body
    # Method overrides would make the provider run another method than the one the
    # access rights were checked for.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
}
NOT_FORWARDED_RESPONSE = HOP_BY_HOP | {"content-length", "set-cookie"}
# Failures that count against an upstream's breaker (with the answers whose status the
# service lists as failures, unless its adapter reads one as a business answer) and
# those worth a retry (with such answers of 502/503/504). A refused address, a failed
# token request or an oversized answer say nothing about whether the provider's system is up.
_BREAKER_FAILURES = frozenset({UPSTREAM_CONNECT_FAILED, UPSTREAM_TIMEOUT, UPSTREAM_BAD_RESPONSE})
_RETRY_PROBLEMS: frozenset[ProblemType] = frozenset({UPSTREAM_CONNECT_FAILED, UPSTREAM_TIMEOUT})


def forwardable(headers: CIMultiDictProxy[str], drop: frozenset[str]) -> CIMultiDict[str]:
    """The headers to pass on: not those in `drop`, not those the Connection header names
    (hop-by-hop too, RFC 9110 §7.6.1), and none with an underscore in its name: CGI, WSGI
    and nginx map `X_Client_Id` and `X-Client-Id` to the same variable, so a caller's
    underscore twin could stand in for an identity header the gateway sets."""
    listed = {h.strip().lower() for v in headers.getall("Connection", []) for h in v.split(",")}
    return CIMultiDict(
        (k, v)
        for k, v in headers.items()
        if "_" not in k and k.lower() not in drop and k.lower() not in listed
    )


class _Guard:
    """One upstream's breaker, concurrency limit and retry count, kept by name across
    reloads; `entry` is the configuration they were last set from."""

    __slots__ = ("breaker", "bulkhead", "entry", "retries")

    def __init__(self, entry: UpstreamEntry, clock: Callable[[], float]) -> None:
        self.entry = entry
        self.breaker = CircuitBreaker(entry.name, entry.breaker, clock)
        self.bulkhead = Bulkhead(entry.max_concurrency)
        self.retries = 0

    def configure(self, entry: UpstreamEntry) -> None:
        self.entry = entry
        self.breaker.configure(entry.breaker)
        self.bulkhead.limit = entry.max_concurrency


def _service_name(service: ServiceEntry) -> str:
    return f"{service.provider}/{service.code}/{service.version}"


def _circuit_open(service: ServiceEntry, breaker: CircuitBreaker, wait: float) -> Problem:
    retry = max(1, math.ceil(wait))
    name = breaker.name
    if breaker.state == HALF_OPEN:
        why = f"Upstream {name!r} has been failing and is being tried again right now"
    else:
        failed = (
            "failed again when tried"
            if breaker.reopened
            else f"failed {breaker.policy.failure_threshold} times in a row"
        )
        why = (
            f"Upstream {name!r} {failed}, so the gateway stopped calling it; it will be "
            f"tried again in {retry} s"
        )
    return Problem(
        UPSTREAM_CIRCUIT_OPEN,
        f"{why}. {_service_name(service)} is not available until then; retry after {retry} s.",
        headers={"Retry-After": str(retry)},
        upstream=name,
        retry_after=retry,
    )


def _busy(service: ServiceEntry, bulkhead: Bulkhead) -> Problem:
    upstream = service.upstream
    waited = f" (waited {upstream.queue_timeout:g} s)" if upstream.queue_timeout else ""
    return Problem(
        UPSTREAM_BUSY,
        f"Upstream {upstream.name!r} of {_service_name(service)} already has {bulkhead.limit} "
        f"calls in progress from this gateway process{waited}; retry in a moment.",
        headers={"Retry-After": "1"},
        upstream=upstream.name,
        retry_after=1,
    )


class UpstreamClient:
    def __init__(
        self,
        *,
        pool_size: int = 1000,
        outbound: OutboundPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._pool_size = pool_size
        self._outbound = outbound
        self._resolver: GuardedResolver | None = None
        self.tokens: UpstreamTokens | None = None
        self._clock = clock  # the breakers' (tests move it instead of sleeping)
        self._guards: dict[str, _Guard] = {}

    # -- for /metrics (read every few seconds; each call builds a fresh dict) ----------

    def breaker_states(self) -> dict[str, str]:
        """Upstream name -> "closed" | "open" | "half_open", for upstreams called since
        start (an upstream not listed is closed). Per worker process."""
        return {name: g.breaker.state for name, g in self._guards.items()}

    def in_flight(self) -> dict[str, int]:
        """Upstream name -> calls in progress in this process (queued callers excluded)."""
        return {name: g.bulkhead.in_flight for name, g in self._guards.items()}

    def retries_total(self) -> dict[str, int]:
        """Upstream name -> attempts that were retries, since start."""
        return {name: g.retries for name, g in self._guards.items()}

    def _guard(self, entry: UpstreamEntry) -> _Guard:
        guard = self._guards.get(entry.name)
        if guard is None:
            guard = self._guards[entry.name] = _Guard(entry, self._clock)
        else:
            guard.configure(entry)  # a reload changed (or re-made) the upstream
        return guard

    async def start(self) -> None:
        if self._outbound is not None:
            # Resolved addresses are filtered before the pool connects (and cached with
            # the connector's DNS cache); IP literals are checked in _send.
            self._resolver = GuardedResolver(self._outbound)
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, keepalive_timeout=30, resolver=self._resolver
        )
        # No decompression: bytes pass through as the provider sent them.
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        self.tokens = UpstreamTokens(self._session, self._outbound)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._resolver is not None:
            # The connector does not own a resolver it was given.
            await self._resolver.close()

    async def forward(
        self,
        service: ServiceEntry,
        method: str,
        raw_endpoint: str,
        query: str,
        headers: CIMultiDict[str],
        body: bytes,
        judge: Judge | None = None,
        span: ExchangeSpan | None = None,
    ) -> UpstreamResponse:
        """The provider's answer to one exchange (any status), after retries; raises
        Problem when there is none. `judge` (the adapter's `upstream_failed`, bound to
        the request) may say that an error answer is a business answer, or a failure,
        before the breaker counts it. `span`: the exchange's, when it is traced."""
        assert self._session is not None and self.tokens is not None
        upstream = service.upstream
        guard = self._guards.get(upstream.name)
        if guard is None or guard.entry is not upstream:
            guard = self._guard(upstream)
        breaker = guard.breaker
        trial = False
        if breaker.state != CLOSED:
            wait = breaker.admit()
            if wait is not None:
                raise _circuit_open(service, breaker, wait)
            trial = True
        bulkhead = guard.bulkhead
        if not bulkhead.try_acquire() and not await bulkhead.acquire(upstream.queue_timeout):
            breaker.abandon(trial)
            raise _busy(service, bulkhead)
        url = service.upstream_url + raw_endpoint
        if query:
            url += "?" + query
        try:
            return await self._attempts(
                service, guard, trial, method, url, headers, body, judge, span
            )
        finally:
            bulkhead.release()

    async def _attempts(
        self,
        service: ServiceEntry,
        guard: _Guard,
        trial: bool,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        judge: Judge | None,
        span: ExchangeSpan | None,
    ) -> UpstreamResponse:
        """The first attempt and, for idempotent methods, retries while the service's
        total timeout lasts: each retry gets what is left of it as its own timeout."""
        breaker = guard.breaker
        policy = service.retry
        timeout = service.timeout
        budget = timeout.total or 0.0
        started = time.perf_counter()
        deadline = started + budget
        retrying = policy.attempts > 1 and method in IDEMPOTENT_METHODS
        attempt = 1
        try:
            while True:
                retry_after: float | None = None
                try:
                    response = await self._attempt(
                        service, method, url, headers, body, timeout, deadline, span
                    )
                except Problem as problem:
                    _record_problem(breaker, problem, trial)
                    trial = False
                    if not retrying or problem.ptype not in _RETRY_PROBLEMS:
                        raise _after(problem, attempt, budget) from None
                    last: UpstreamResponse | Problem = problem
                else:
                    failed = upstream_failed(service, response, judge)
                    if failed:
                        breaker.failure(trial)
                    elif trial or breaker.failures:
                        breaker.success(trial)
                    trial = False
                    if not (retrying and failed and response.status in RETRY_STATUSES):
                        response.elapsed_ms = (time.perf_counter() - started) * 1000
                        response.attempts = attempt
                        return response
                    if response.status == 503:
                        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    last = response
                # Only failed or retryable outcomes get here: the helpers are off the
                # success path.
                delay = _retry_delay(
                    breaker, policy, attempt, deadline, budget, timeout, retry_after
                )
                if delay is None:
                    return _give_up(last, attempt, budget, started)
                await asyncio.sleep(delay)
                attempt += 1
                guard.retries += 1
                timeout = aiohttp.ClientTimeout(
                    total=deadline - time.perf_counter(), sock_connect=timeout.sock_connect
                )
        finally:
            breaker.abandon(trial)  # cancelled before its verdict: free the trial slot

    async def _attempt(
        self,
        service: ServiceEntry,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        limits: aiohttp.ClientTimeout,
        deadline: float,
        span: ExchangeSpan | None,
    ) -> UpstreamResponse:
        assert self.tokens is not None
        authorization = await self.tokens.authorization(service.upstream)
        if authorization is not None:
            headers["Authorization"] = authorization
        send = self._send if span is None else functools.partial(self._traced, span)
        response = await send(service, method, url, headers, body, limits)
        # A 401 with a cached token means the provider forgot it: fetch one more, once,
        # within what is left of the time budget.
        if response.status == 401 and authorization is not None:
            self.tokens.invalidate(service.upstream)
            authorization = await self.tokens.authorization(service.upstream)
            if authorization is not None:
                headers["Authorization"] = authorization
            left = aiohttp.ClientTimeout(
                total=max(0.001, deadline - time.perf_counter()),
                sock_connect=limits.sock_connect,
            )
            response = await send(service, method, url, headers, body, left)
        return response

    async def _traced(
        self,
        span: ExchangeSpan,
        service: ServiceEntry,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        limits: aiohttp.ClientTimeout,
    ) -> UpstreamResponse:
        """`_send` as a client span of the exchange: the provider's parent."""
        attempt = span.client_span(method, service.upstream.name)
        headers["traceparent"] = attempt.traceparent(span.trace)
        try:
            response = await self._send(service, method, url, headers, body, limits)
        except Problem as problem:
            attempt.failed(problem.ptype.slug)
            raise
        except BaseException:
            attempt.failed("cancelled")
            raise
        attempt.answered(response.status)
        return response

    async def _send(
        self,
        service: ServiceEntry,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        limits: aiohttp.ClientTimeout,
    ) -> UpstreamResponse:
        assert self._session is not None
        name = _service_name(service)
        target = URL(url, encoded=True)
        if self._outbound is not None:
            # Cached per scheme and host: a dictionary lookup for hosts already seen.
            reason = self._outbound.refusal(target.scheme, target.host)
            if reason is not None:
                raise refused_problem(f"the upstream of {name}", reason)
        tls = _loaded_tls(service.upstream, name)
        try:
            async with self._session.request(
                method,
                target,
                headers=headers,
                data=body if body else None,
                timeout=limits,
                allow_redirects=False,
                ssl=tls,
            ) as resp:
                declared = resp.content_length
                if declared is not None and declared > service.max_response_bytes:
                    raise Problem(
                        UPSTREAM_RESPONSE_TOO_LARGE,
                        f"The response of {name} ({declared} bytes) exceeds the service's limit"
                        f" of {service.max_response_bytes} bytes.",
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > service.max_response_bytes:
                        raise Problem(
                            UPSTREAM_RESPONSE_TOO_LARGE,
                            f"The response of {name} exceeds the service's limit of "
                            f"{service.max_response_bytes} bytes.",
                        )
                    chunks.append(chunk)
                return UpstreamResponse(
                    resp.status,
                    forwardable(resp.headers, NOT_FORWARDED_RESPONSE),
                    b"".join(chunks),
                    0.0,
                )
        except aiohttp.ConnectionTimeoutError:
            raise Problem(
                UPSTREAM_TIMEOUT,
                f"Could not connect to {name} within {limits.sock_connect:g} s.",
            ) from None
        except TimeoutError:
            raise Problem(
                UPSTREAM_TIMEOUT,
                f"{name} did not answer within {service.timeout.total:g} s.",
            ) from None
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as e:
            # The TLS handshake failed: the upstream's certificate did not verify, or it
            # refused the gateway's (or the lack of one).
            raise Problem(UPSTREAM_CONNECT_FAILED, f"TLS with {name} failed: {e}.") from None
        except aiohttp.ClientConnectorError as e:
            refused = address_refused(e)
            if refused is not None:
                raise refused_problem(f"the upstream of {name}", str(refused)) from None
            raise Problem(
                UPSTREAM_CONNECT_FAILED,
                f"Could not connect to {name} at {e.host}:{e.port}: "
                f"{e.os_error.strerror or e.os_error}.",
            ) from None
        except aiohttp.ClientError as e:
            raise Problem(
                UPSTREAM_BAD_RESPONSE,
                f"{name} broke the exchange: {type(e).__name__}.",
            ) from None


def upstream_tls(upstream: UpstreamEntry) -> ssl.SSLContext | bool:
    """What an https upstream is called with: the gateway's client certificate and the
    upstream's CA bundle when its `auth` names them (gateway/core/tls.py, cached per
    files), else the default verification (True)."""
    auth = upstream.auth
    cert, ca = auth.get("client_cert"), auth.get("ca_bundle")
    if not cert and not ca:
        return True
    return client_context(cert, auth.get("client_key"), ca)


def _loaded_tls(upstream: UpstreamEntry, name: str) -> ssl.SSLContext | bool:
    try:
        return upstream_tls(upstream)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise Problem(
            UPSTREAM_CONNECT_FAILED,
            f"The gateway's TLS files for {name} could not be loaded: {e}.",
        ) from None


def upstream_failed(service: ServiceEntry, response: UpstreamResponse, judge: Judge | None) -> bool:
    """Does the answer count as the upstream failing? By the service's
    `failure_statuses`, unless the adapter's `judge` says otherwise for an answer of
    500 or more or one of those statuses (a SOAP fault that means "no such record", a
    `MaLoi` not found): a business answer of one service must not stop the others that
    share the upstream."""
    status = response.status
    listed = status in service.failure_statuses
    if judge is not None and (listed or status >= 500):
        try:
            verdict = judge(response)
        except Exception as e:  # a bug in the adapter: the statuses decide
            log.error(
                "adapter could not judge an answer",
                adapter=service.adapter,
                status=status,
                error=f"{type(e).__name__}: {e}",
            )
            verdict = None
        if verdict is not None:
            return verdict
    return listed


def _record_problem(breaker: CircuitBreaker, problem: Problem, trial: bool) -> None:
    """A failed attempt's verdict: only failures of the upstream itself count against it."""
    if problem.ptype in _BREAKER_FAILURES:
        breaker.failure(trial)
    else:
        breaker.abandon(trial)


def _retry_delay(
    breaker: CircuitBreaker,
    policy: RetryPolicy,
    attempt: int,
    deadline: float,
    budget: float,
    timeout: aiohttp.ClientTimeout,
    retry_after: float | None,
) -> float | None:
    """Seconds to wait before the next attempt, or None for no more attempts."""
    # Retry only while the breaker lets everyone through: an opening breaker means the
    # provider is down, and a retry would only add to its load.
    if breaker.state != CLOSED:
        return None
    return next_delay(
        policy,
        attempt,
        deadline - time.perf_counter(),
        min_attempt_seconds(budget, timeout.sock_connect),
        retry_after,
    )


def _give_up(
    last: UpstreamResponse | Problem, attempt: int, budget: float, started: float
) -> UpstreamResponse:
    """The last outcome when no attempt is left: its response, or its problem raised."""
    if isinstance(last, Problem):
        raise _after(last, attempt, budget)
    last.elapsed_ms = (time.perf_counter() - started) * 1000
    last.attempts = attempt
    return last


def _after(problem: Problem, attempts: int, budget: float) -> Problem:
    """The last attempt's problem, saying how many were made."""
    if attempts == 1:
        return problem
    return Problem(
        problem.ptype,
        f"{problem.detail} The gateway tried {attempts} times within the service's "
        f"time limit of {budget:g} s.",
        headers=problem.headers,
        attempts=attempts,
        **problem.extensions,
    )
