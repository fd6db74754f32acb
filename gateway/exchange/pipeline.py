"""The exchange pipeline: every call to `/r1/...` goes through these steps, in this order.
`ExchangePipeline.handle` is the one place the order is written; each step is a small
function over the exchange (gateway/exchange/context.py) in its own module under
gateway/exchange/steps/.

    step                   what it does                                  refuses with
    1  identify            request id, trace context, the audit event    400
    2  route               check the raw path, find the service          400, 404, 405
    3  authenticate        bearer token (ours or a trusted issuer's) or  401
                           API key
    4  authorise           deny unless a right grants method + path;     403, 503
                           the service enabled and loaded
    5  limit               rate limits and daily quotas (client,         429, 503
                           service, pair), shared by replicas
    6  account             officer, procedure, case as the service asks  400
    7  read body           within the size limit, checked by its schema  413, 400
    8  forward             what goes to the provider, converted by the   400, 502, 503, 504
                           service's adapter (and back), for fail_closed
                           services recorded as an intent first (503 if
                           it cannot be), sent with the gateway's
                           credentials, timeouts, retries, breaker and
                           concurrency limit
                           (an async service's call is kept instead and
                           answered 202: steps/defer.py, store-and-forward)
    9  respond             a 2xx answer checked by its schema, then the  502
                           answer with the request id and its digest
    10 audit               always, whatever happened above; fail_closed  503
                           services answer 503 if it cannot be durable,
                           even for an exchange cancelled by shutdown
    11 count               outcome and time per service and client, for /metrics;
                           the exchange's spans, when traces are exported

A step raises `Problem` to stop the exchange; the audit event is filled in as the steps
go, so a refusal at any step is still recorded with everything known by then.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.audit import AuditSink
from gateway.config.runtime import RuntimeConfig
from gateway.core.logging import log
from gateway.core.problems import EXCHANGE_CANCELLED, INTERNAL_ERROR, Problem
from gateway.exchange.context import Exchange
from gateway.exchange.steps.account import account
from gateway.exchange.steps.authenticate import authenticate
from gateway.exchange.steps.authorise import authorise
from gateway.exchange.steps.body import read_body, validate_request
from gateway.exchange.steps.convert import from_provider, to_provider
from gateway.exchange.steps.defer import Outbox, defer
from gateway.exchange.steps.defer import settle as settle_deferred
from gateway.exchange.steps.forward import forward, prepare_outbound
from gateway.exchange.steps.identify import check_headers, identify
from gateway.exchange.steps.intent import record_intent
from gateway.exchange.steps.limit import limit
from gateway.exchange.steps.record import problem_response, record
from gateway.exchange.steps.respond import respond, validate_answer
from gateway.exchange.steps.route import route
from gateway.identity.issuers import TrustedIssuers
from gateway.identity.tokens import TokenService
from gateway.limits.ratelimit import RateLimiter
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.spans import Tracer
from gateway.upstream.client import UpstreamClient

__all__ = ["ExchangePipeline"]


def _defers(x: Exchange) -> bool:
    assert x.service is not None and x.address is not None
    return x.service.defers(x.request.method, x.address.endpoint)


class ExchangePipeline:
    """The `/r1` handler: the steps above over the configuration tables in force."""

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
        body_timeout: float = 30.0,
        issuers: TrustedIssuers | None = None,
        tracing: Tracer | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.limiter = limiter
        self.tokens = tokens
        self.issuers = issuers
        self.upstream = upstream
        self.audit = audit
        self.instance = instance
        self.problem_type_base = problem_type_base
        self.body_timeout = body_timeout
        self.tracing = tracing  # None: no traces exported, no span noted
        # Where async services' requests are kept (store-and-forward); None: every
        # service is forwarded at once.
        self.outbox = outbox

    def swap_config(self, config: RuntimeConfig) -> None:
        # Requests already running keep the table they read at their start.
        self.config = config

    async def handle(self, request: web.Request) -> web.StreamResponse:
        x = identify(request, self.config, self.instance, self.tracing)
        try:
            check_headers(x)
            route(x)
            await authenticate(x, self.tokens, self.issuers)
            authorise(x)
            await limit(x, self.limiter, self.metrics)
            account(x)
            await read_body(x, self.body_timeout)
            validate_request(x)
            prepare_outbound(x)
            to_provider(x)
            if self.outbox is not None and _defers(x):
                response = await defer(x, self.outbox)  # async: 202, delivered later
            else:
                await record_intent(x, self.audit)
                await forward(x, self.upstream, self.metrics)
                from_provider(x)
                validate_answer(x)
                response = respond(x)
        except Problem as problem:
            response = problem_response(x, problem, self.problem_type_base)
        except asyncio.CancelledError:
            # Shutdown cancels what is still running after its drain timeout: the caller
            # gets no answer, but the exchange is still recorded before the task ends.
            cancelled = Problem(
                EXCHANGE_CANCELLED, "The gateway stopped before the exchange ended."
            )
            await self._audit(x, problem_response(x, cancelled, self.problem_type_base))
            if self.outbox is not None:
                await settle_deferred(x, False, self.outbox)
            raise
        except Exception as exc:
            log.exception("exchange failed", request_id=x.request_id)
            internal = Problem(
                INTERNAL_ERROR, f"Unexpected {type(exc).__name__}; quote the request id."
            )
            response = problem_response(x, internal, self.problem_type_base)
        answered = await self._audit(x, response)
        if self.outbox is not None and x.deferred is not None:
            # Sent only if the 202 is what the caller gets: its acceptance is recorded.
            await settle_deferred(x, answered is response and response.status == 202, self.outbox)
        return answered

    async def _audit(self, x: Exchange, response: web.Response) -> web.Response:
        return await record(x, response, self.audit, self.metrics, self.problem_type_base)
