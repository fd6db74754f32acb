"""The exchange pipeline: every call to `/r1/...` goes through these steps, in this order.

    1. identify      request id, trace context, timestamps        (400 bad request id)
    2. route         check the raw path, find the service         (400 path, 404, 503)
    3. authenticate  bearer token or API key                      (401)
    4. authorise     deny unless a right grants method + path     (403)
       limit         rate limits and daily quotas of the client,   (429, 503)
                     the service and the pair, shared by replicas
    5. account       officer, procedure, case as the service asks (400)
    6. read body     within the size limit, checked by its schema (413, 400)
    7. forward       converted by the service's adapter, if any,   (400, 502, 503, 504)
                     to the provider, with the gateway's creds;
                     the answer converted back
                     a 2xx answer checked by the response schema  (502)
    8. respond       upstream answer, hop-by-hop headers removed
    9. audit         always, whatever happened above; a service in `fail_closed` mode
                     gets 503 instead of its answer if the event cannot be made durable;
                     even an exchange cancelled by shutdown past its drain timeout
   10. count         the outcome, per service and client, for /metrics

Each step raises `Problem` to stop; the exchange's audit event is filled in as the
steps go, so a failure at any step is still recorded with everything known by then.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.audit import AuditEvent, AuditSink, AuditUnavailable
from gateway.config.runtime import RuntimeConfig, ServiceEntry
from gateway.conversion.mapping.engine import Context
from gateway.core.headers import (
    CASE_HEADER,
    CLIENT_AGENCY_HEADER,
    CLIENT_ID_HEADER,
    OFFICER_HEADER,
    PROCEDURE_HEADER,
    REQUEST_ID_HEADER,
)
from gateway.core.logging import log
from gateway.core.messages import OutboundRequest
from gateway.core.problems import (
    ACCESS_DENIED,
    ADAPTER_UNAVAILABLE,
    AUDIT_UNAVAILABLE,
    EXCHANGE_CANCELLED,
    INTERNAL_ERROR,
    INVALID_HEADER,
    INVALID_MESSAGE,
    METHOD_NOT_ALLOWED,
    PAYLOAD_TOO_LARGE,
    QUOTA_EXHAUSTED,
    RATE_LIMIT_UNAVAILABLE,
    RATE_LIMITED,
    SCHEMA_UNAVAILABLE,
    SERVICE_DISABLED,
    UNKNOWN_SERVICE,
    UPSTREAM_INVALID_MESSAGE,
    Problem,
    ProblemType,
)
from gateway.exchange.accountability import accountability_from, request_id_from, traceparent_from
from gateway.exchange.routing import parse_service_address
from gateway.identity.access import HTTP_METHODS
from gateway.identity.authn import authenticate
from gateway.identity.tokens import TokenService
from gateway.limits.ratelimit import LimiterUnavailable, RateLimiter, Verdict
from gateway.registry.schema import Validator
from gateway.telemetry.metrics import GatewayMetrics
from gateway.upstream.client import NOT_FORWARDED_REQUEST, UpstreamClient, forwardable

REQUEST_HASH_HEADER = "X-Request-Sha256"
MESSAGE_METHODS = frozenset({"POST", "PUT", "PATCH"})  # these always carry a message


class ExchangePipeline:
    def __init__(
        self,
        *,
        config: RuntimeConfig,
        tokens: TokenService,
        upstream: UpstreamClient,
        audit: AuditSink,
        limiter: RateLimiter,
        metrics: GatewayMetrics,
        instance: str,
        problem_type_base: str,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.limiter = limiter
        self.tokens = tokens
        self.upstream = upstream
        self.audit = audit
        self.instance = instance
        self.problem_type_base = problem_type_base

    def swap_config(self, config: RuntimeConfig) -> None:
        # Requests already running keep the table they read at their start.
        self.config = config

    async def handle(self, request: web.Request) -> web.StreamResponse:
        config = self.config
        t0 = time.perf_counter()
        started = datetime.now(UTC)
        # 1. identify
        request_id, bad_request_id = request_id_from(request.headers)
        traceparent, trace_id = traceparent_from(request.headers)
        event = AuditEvent(
            event_id=str(uuid.uuid4()),
            request_id=request_id,
            instance=self.instance,
            method=request.method[:16],
            path=request.raw_path[:4096],
            started_at=started,
            finished_at=started,
            duration_ms=0.0,
            status=0,
            trace_id=trace_id,
            remote_addr=request.remote,
            # What the caller claims, kept even if the call is refused before step 5
            # checks it: auditors want to see who tried, not only who succeeded.
            officer_id=_claimed(request, OFFICER_HEADER),
            procedure_code=_claimed(request, PROCEDURE_HEADER),
            case_number=_claimed(request, CASE_HEADER),
        )
        response: web.Response
        service: ServiceEntry | None = None  # found at step 2; None when it never was
        try:
            if bad_request_id is not None:
                raise Problem(INVALID_HEADER, bad_request_id, header=REQUEST_ID_HEADER)

            # 2. route
            if request.method not in HTTP_METHODS:
                raise Problem(
                    METHOD_NOT_ALLOWED,
                    f"{request.method[:16]!r} is not an HTTP method services accept.",
                    headers={"Allow": ", ".join(sorted(HTTP_METHODS))},
                )
            address = parse_service_address(request.raw_path)
            event.provider_code = address.provider
            event.service_code = address.service
            event.service_version = address.version
            service = config.services.get(address.key)
            if service is None:
                raise Problem(
                    UNKNOWN_SERVICE,
                    f"No service {address.service}/{address.version} is published by "
                    f"{address.provider}. GET /services lists the services you may call.",
                )

            # 3. authenticate
            caller = authenticate(request.headers, config, self.tokens)
            event.client_code = caller.client.code
            event.client_agency_code = caller.client.agency_code
            event.auth_method = caller.method

            # 4. authorise
            if not service.allows(caller.client, request.method, address.endpoint):
                raise Problem(
                    ACCESS_DENIED,
                    f"Client {caller.client.code!r} is not granted {request.method} "
                    f"{address.endpoint} on {service.provider}/{service.code}/"
                    f"{service.version}. Ask the gateway administrator for an access right.",
                )
            if not service.enabled:
                raise Problem(SERVICE_DISABLED, f"{service.name} is disabled for maintenance.")
            if service.schema_error is not None:
                raise Problem(SCHEMA_UNAVAILABLE, f"{service.name}: {service.schema_error}.")
            if service.adapter_error is not None:
                raise Problem(ADAPTER_UNAVAILABLE, f"{service.name}: {service.adapter_error}.")

            #    limit
            limits = config.limits_for(caller.client.code, service)
            if limits:
                try:
                    verdict = await self.limiter.check(limits)
                except LimiterUnavailable as exc:
                    raise Problem(
                        RATE_LIMIT_UNAVAILABLE,
                        f"Rate limits cannot be checked ({exc}); retry shortly.",
                        headers={"Retry-After": "1"},
                    ) from None
                if not verdict.allowed:
                    if verdict.limit is not None:
                        kind = verdict.kind or "rate"
                        self.metrics.rate_limit_rejection(verdict.limit.scope, kind)
                    raise _limited(verdict)

            # 5. account
            who = accountability_from(request.headers, service.required_fields)
            event.officer_id, event.procedure_code, event.case_number = (
                who.officer,
                who.procedure,
                who.case,
            )

            # 6. read body
            body = await _read_body(request, service.max_request_bytes)
            event.request_bytes = len(body)
            event.request_sha256 = hashlib.sha256(body).hexdigest()
            # A GET, HEAD or DELETE without a body carries no message to check.
            adapter = service.adapter_impl
            reads_body = service.request_validator is not None or adapter is not None
            if reads_body and request.headers.get("Content-Encoding", "identity") != "identity":
                raise Problem(
                    INVALID_MESSAGE,
                    "This service reads its messages: send the body uncompressed "
                    "(no Content-Encoding).",
                )
            if service.request_validator is not None and (
                body or request.method in MESSAGE_METHODS
            ):
                _conform(service.request_validator, body, INVALID_MESSAGE, "The request")

            # 7. forward
            headers = forwardable(request.headers, NOT_FORWARDED_REQUEST)
            headers[REQUEST_ID_HEADER] = request_id
            headers["traceparent"] = traceparent
            if service.response_validator is not None or adapter is not None:
                # The answer is read (validated, converted): it must arrive uncompressed.
                headers["Accept-Encoding"] = "identity"
            # Tell the provider who is asking, as X-Road's X-Road-Client does.
            headers[CLIENT_ID_HEADER] = caller.client.code
            headers[CLIENT_AGENCY_HEADER] = caller.client.agency_code
            for header, value in (
                (OFFICER_HEADER, who.officer),
                (PROCEDURE_HEADER, who.procedure),
                (CASE_HEADER, who.case),
            ):
                if value is not None:
                    headers[header] = value
            outbound = OutboundRequest(
                request.method, address.raw_endpoint, address.query, headers, body
            )
            context: Context | None = None  # what an adapter may read; passthrough needs none
            if adapter is not None:
                #    convert: the provincial form to the provider's (Circular 13/2017 art. 17)
                context = Context(
                    request_id=request_id,
                    client=caller.client.code,
                    client_agency=caller.client.agency_code,
                    officer=who.officer,
                    procedure=who.procedure,
                    case=who.case,
                    now=started.isoformat(),
                )
                outbound = adapter.request(outbound, context)
            upstream = await self.upstream.forward(
                service, outbound.method, outbound.path, outbound.query, outbound.headers,
                outbound.body,
            )  # fmt: skip
            event.upstream_status = upstream.status
            event.upstream_ms = round(upstream.elapsed_ms, 3)
            self.metrics.upstream(
                service.upstream.name, upstream.status, upstream.elapsed_ms / 1000
            )
            # Size and digest of what the provider answered, even if it is refused below.
            event.response_bytes = len(upstream.body)
            event.response_sha256 = hashlib.sha256(upstream.body).hexdigest()
            if adapter is not None and context is not None:
                #    convert back: the provider's answer (or error) to the provincial form
                upstream = adapter.response(upstream, outbound, context)
            # The schema describes successful answers; errors pass through as they are,
            # and 204 or a HEAD answer has no body to check.
            if (
                service.response_validator is not None
                and 200 <= upstream.status < 300
                and upstream.status != 204
                and request.method != "HEAD"
            ):
                _conform(
                    service.response_validator,
                    upstream.body,
                    UPSTREAM_INVALID_MESSAGE,
                    "The provider's answer",
                )

            # 8. respond
            upstream.headers[REQUEST_ID_HEADER] = request_id
            # The digest of what was asked, so the caller can prove it (as X-Road does).
            upstream.headers[REQUEST_HASH_HEADER] = event.request_sha256
            response = web.Response(
                status=upstream.status, body=upstream.body, headers=upstream.headers
            )
        except Problem as problem:
            response = self._problem_response(problem, request_id, event)
        except asyncio.CancelledError:
            # Shutdown cancels what is still running after its drain timeout: the caller
            # gets no answer, but the exchange is still recorded before the task ends.
            cancelled = self._problem_response(
                Problem(EXCHANGE_CANCELLED, "The gateway stopped before the exchange ended."),
                request_id,
                event,
            )
            await self._finish(event, cancelled, t0, service)
            raise
        except Exception as exc:
            log.exception("exchange failed", request_id=request_id)
            response = self._problem_response(
                Problem(INTERNAL_ERROR, f"Unexpected {type(exc).__name__}; quote the request id."),
                request_id,
                event,
            )

        return await self._finish(event, response, t0, service)

    async def _finish(
        self, event: AuditEvent, response: web.Response, t0: float, service: ServiceEntry | None
    ) -> web.Response:
        # 9. audit
        event.status = response.status
        elapsed = time.perf_counter() - t0
        event.duration_ms = round(elapsed * 1000, 3)
        event.finished_at = event.started_at + timedelta(seconds=elapsed)
        outcome: str | None = None
        try:
            await self.audit.write(event)
        except AuditUnavailable as exc:
            log.error("audit event not durable", request_id=event.request_id, error=str(exc))
            self.metrics.audit_failures.inc()
            if service is None or service.audit_mode == "fail_closed":
                response = Problem(
                    AUDIT_UNAVAILABLE,
                    "The exchange could not be recorded in the audit log, so its answer is "
                    "withheld. Retry later; the operators have been alerted.",
                ).to_response(type_base=self.problem_type_base, request_id=event.request_id)
                outcome = AUDIT_UNAVAILABLE.slug

        # 10. count
        if outcome is None:
            outcome = event.error_type or (
                "ok" if response.status < 400 else f"upstream-{response.status // 100}xx"
            )
        self.metrics.exchange(
            service.key if service is not None else None,
            event.client_code if service is not None else None,
            outcome,
            time.perf_counter() - t0,
        )
        return response

    def _problem_response(
        self, problem: Problem, request_id: str, event: AuditEvent
    ) -> web.Response:
        event.error_type = problem.ptype.slug
        event.error_detail = problem.detail
        response = problem.to_response(type_base=self.problem_type_base, request_id=request_id)
        if event.upstream_status is None and isinstance(response.body, bytes):
            event.response_bytes = len(response.body)  # no provider answer: ours
        return response


def _limited(verdict: Verdict) -> Problem:
    retry = max(1, math.ceil(verdict.retry_after))
    limit = verdict.limit
    what = limit.describe() if limit is not None else "a limit"
    if verdict.kind == "quota":
        ptype, detail = QUOTA_EXHAUSTED, f"The daily quota is used up: {what}."
    else:
        ptype, detail = RATE_LIMITED, f"Too many requests: {what}."
    return Problem(
        ptype,
        f"{detail} Retry after {retry} s.",
        headers={"Retry-After": str(retry)},
        limit={
            "scope": limit.scope if limit else None,
            "subject": limit.subject if limit else None,
            "kind": verdict.kind,
            "rate_per_second": limit.rate if limit else None,
            "burst": limit.burst if limit else None,
            "quota_per_day": limit.quota_per_day if limit else None,
        },
        retry_after=retry,
    )


def _conform(validator: Validator, body: bytes, ptype: ProblemType, what: str) -> None:
    errors = validator.errors(body)
    if errors:
        raise Problem(
            ptype,
            f"{what} breaks the service's schema in {len(errors)} place(s): "
            + "; ".join(f"{e.pointer or '/'}: {e.detail}" for e in errors[:3]),
            errors=[{"pointer": e.pointer, "detail": e.detail} for e in errors],
        )


def _claimed(request: web.Request, header: str) -> str | None:
    value = request.headers.get(header)
    return value[:64] if value is not None else None


async def _read_body(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            raise Problem(
                PAYLOAD_TOO_LARGE,
                f"The request body ({declared} bytes) exceeds this service's limit of "
                f"{limit} bytes.",
                limit=limit,
            )
        # The length is known and allowed: read to the end of the body at once.
        return await request.content.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise Problem(
                PAYLOAD_TOO_LARGE,
                f"The request body exceeds this service's limit of {limit} bytes.",
                limit=limit,
            )
        chunks.append(chunk)
    return b"".join(chunks)
