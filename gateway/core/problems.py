"""RFC 9457 problem details: the one error shape every gateway endpoint answers with.

Each problem type has a stable slug; its URI is `Settings.problem_type_base + slug`
(default `urn:lgsp:problem:<slug>`). `side` says where the failure lies, as X-Road's
`Client.*` / `Server.ClientProxy.*` / `Server.ServerProxy.*` fault codes do:
`caller` (fix your request), `gateway` (ours), `upstream` (the provider's system).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from aiohttp import web

from gateway.core.text import storable

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Side(StrEnum):
    CALLER = "caller"
    GATEWAY = "gateway"
    UPSTREAM = "upstream"


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    status: int
    title: str
    side: Side


def _t(slug: str, status: int, title: str, side: Side) -> ProblemType:
    return ProblemType(slug, status, title, side)


# The catalogue. Slugs are a public contract: add new ones, never rename.
BAD_REQUEST = _t("bad-request", 400, "The request is malformed", Side.CALLER)
INVALID_PATH = _t("invalid-path", 400, "The request path is not acceptable", Side.CALLER)
INVALID_SERVICE_ADDRESS = _t(
    "invalid-service-address", 400, "The service address is malformed", Side.CALLER
)
INVALID_HEADER = _t("invalid-header", 400, "A request header has an invalid value", Side.CALLER)
MISSING_ACCOUNTABILITY = _t(
    "missing-accountability-fields",
    400,
    "The service requires accountability fields that the request does not carry",
    Side.CALLER,
)
INVALID_MESSAGE = _t(
    "invalid-message", 400, "The message does not conform to the service's schema", Side.CALLER
)
UNAUTHENTICATED = _t("unauthenticated", 401, "Authentication is required", Side.CALLER)
INVALID_TOKEN = _t("invalid-token", 401, "The access token is not valid", Side.CALLER)
INVALID_API_KEY = _t("invalid-api-key", 401, "The API key is not valid", Side.CALLER)
INVALID_CLIENT = _t("invalid-client", 401, "Client authentication failed", Side.CALLER)
# RFC 8705 §3: a token bound to a client certificate, over a connection without that one.
TOKEN_BINDING_MISMATCH = _t(
    "token-binding-mismatch",
    401,
    "The access token is bound to another client certificate than this connection's",
    Side.CALLER,
)
INVALID_CERTIFICATE = _t(
    "invalid-certificate",
    401,
    "The client certificate is not pinned to an enabled system",
    Side.CALLER,
)
ACCESS_DENIED = _t("access-denied", 403, "Access to this service is not granted", Side.CALLER)
UNKNOWN_SERVICE = _t("unknown-service", 404, "No such service", Side.CALLER)
NOT_FOUND = _t("not-found", 404, "No such resource", Side.CALLER)
# Not a wrong address: the provider was asked and answered that the record (a document,
# a parcel, a dossier) does not exist. A business answer: it never opens a breaker.
NO_SUCH_RECORD = _t("no-such-record", 404, "The provider has no such record", Side.CALLER)
METHOD_NOT_ALLOWED = _t("method-not-allowed", 405, "Method not allowed", Side.CALLER)
PAYLOAD_TOO_LARGE = _t("payload-too-large", 413, "The request body is too large", Side.CALLER)
UNSUPPORTED_GRANT = _t(
    "unsupported-grant-type", 400, "Only the client_credentials grant is supported", Side.CALLER
)
SERVICE_DISABLED = _t(
    "service-disabled", 503, "The service is disabled by the administrator", Side.GATEWAY
)
UPSTREAM_CONNECT_FAILED = _t(
    "upstream-connection-failed", 502, "The provider's system could not be reached", Side.UPSTREAM
)
UPSTREAM_BAD_RESPONSE = _t(
    "upstream-bad-response", 502, "The provider's system sent an invalid response", Side.UPSTREAM
)
UPSTREAM_RESPONSE_TOO_LARGE = _t(
    "upstream-response-too-large",
    502,
    "The provider's response exceeds the size limit",
    Side.UPSTREAM,
)
UPSTREAM_AUTH_FAILED = _t(
    "upstream-authentication-failed",
    502,
    "The gateway could not authenticate to the provider's system",
    Side.UPSTREAM,
)
UPSTREAM_INVALID_MESSAGE = _t(
    "upstream-invalid-message",
    502,
    "The provider's answer does not conform to the service's schema",
    Side.UPSTREAM,
)
SCHEMA_UNAVAILABLE = _t(
    "schema-unavailable", 503, "A schema the service needs is not in the registry", Side.GATEWAY
)
UPSTREAM_TIMEOUT = _t(
    "upstream-timeout", 504, "The provider's system did not answer in time", Side.UPSTREAM
)
UPSTREAM_CIRCUIT_OPEN = _t(
    "upstream-unavailable",
    503,
    "The provider's system is failing; the gateway does not call it for now",
    Side.UPSTREAM,
)
UPSTREAM_BUSY = _t(
    "upstream-busy",
    503,
    "The provider's system has as many calls in progress as it may; try again shortly",
    Side.UPSTREAM,
)
AUDIT_UNAVAILABLE = _t(
    "audit-unavailable", 503, "The exchange could not be recorded in the audit log", Side.GATEWAY
)
RATE_LIMITED = _t("rate-limited", 429, "Too many requests; a rate limit was reached", Side.CALLER)
QUOTA_EXHAUSTED = _t(
    "quota-exhausted", 429, "The daily quota is used up; it resets at midnight", Side.CALLER
)
RATE_LIMIT_UNAVAILABLE = _t(
    "rate-limit-unavailable",
    503,
    "Rate limits cannot be checked, and this gateway refuses rather than guess",
    Side.GATEWAY,
)
UPSTREAM_ADDRESS_REFUSED = _t(
    "upstream-address-refused",
    502,
    "The provider's address is outside the networks this gateway may call",
    Side.GATEWAY,
)
ADAPTER_UNAVAILABLE = _t(
    "adapter-unavailable",
    503,
    "The service's message adapter could not be loaded",
    Side.GATEWAY,
)
INVALID_CONFIGURATION = _t(
    "invalid-configuration", 422, "The configuration change is not valid", Side.CALLER
)
CONFLICT = _t("conflict", 409, "The change conflicts with the current state", Side.CALLER)
PRECONDITION_FAILED = _t(
    "precondition-failed",
    412,
    "The resource changed since the version the request names (If-Match)",
    Side.CALLER,
)
EXCHANGE_CANCELLED = _t(
    "exchange-cancelled", 503, "The gateway stopped before the exchange ended", Side.GATEWAY
)
NOT_READY = _t("not-ready", 503, "This gateway instance cannot serve exchanges now", Side.GATEWAY)
METRICS_FORBIDDEN = _t(
    "metrics-forbidden", 403, "Metrics are not served to this address", Side.CALLER
)
INTERNAL_ERROR = _t("internal-error", 500, "Internal gateway error", Side.GATEWAY)
INVALID_PARAMETER = _t(
    "invalid-parameter", 400, "A query parameter has an invalid value", Side.CALLER
)
MALFORMED_REQUEST = _t("malformed-request", 400, "The request is not well-formed HTTP", Side.CALLER)
REQUEST_TIMEOUT = _t(
    "request-timeout", 408, "The request did not arrive in the time allowed", Side.CALLER
)
UNSUPPORTED_CONTENT_ENCODING = _t(
    "unsupported-content-encoding",
    415,
    "The request body's content coding is not accepted",
    Side.CALLER,
)
INVALID_CONTENT_ENCODING = _t(
    "invalid-content-encoding",
    400,
    "The request body is not encoded as its Content-Encoding says",
    Side.CALLER,
)
AUTHENTICATION_THROTTLED = _t(
    "authentication-throttled",
    429,
    "Too many failed authentications: wait before trying again",
    Side.CALLER,
)
UNKNOWN_TOPIC = _t("unknown-topic", 404, "No such topic of events", Side.CALLER)
# Scheduled pulls: a job the bulk API or the admin API names, and a run's own failures.
UNKNOWN_JOB = _t("unknown-job", 404, "No such scheduled job", Side.CALLER)
JOB_PAGE_LIMIT = _t(
    "job-page-limit", 502, "The provider gave more pages than the job allows", Side.UPSTREAM
)
JOB_ANSWER_UNREADABLE = _t(
    "job-answer-unreadable", 502, "The provider's page is not one the job can read", Side.UPSTREAM
)
INVALID_EVENT = _t(
    "invalid-event", 400, "The event does not conform to the topic's schema", Side.CALLER
)
TOPIC_UNAVAILABLE = _t(
    "topic-unavailable", 503, "The topic does not take or serve events now", Side.GATEWAY
)
EVENTS_UNAVAILABLE = _t(
    "events-unavailable", 503, "The event could not be stored; nothing was accepted", Side.GATEWAY
)
CALLBACK_REFUSED = _t(
    "callback-refused", 422, "The callback URL may not be called by the gateway", Side.CALLER
)
# Store-and-forward (async services): the message store, and a message's answer.
MESSAGES_UNAVAILABLE = _t(
    "messages-unavailable",
    503,
    "The message could not be stored for delivery; nothing was accepted",
    Side.GATEWAY,
)
NOT_ANSWERED = _t(
    "message-not-answered", 409, "The provider has not answered this message yet", Side.CALLER
)

CATALOGUE: tuple[ProblemType, ...] = tuple(
    v for v in globals().values() if isinstance(v, ProblemType)
)


class Problem(Exception):
    """Raised anywhere on a request path; rendered once, at the edge, as problem+json."""

    def __init__(
        self,
        ptype: ProblemType,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.ptype = ptype
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    @property
    def status(self) -> int:
        return self.ptype.status

    def body(self, *, type_base: str, request_id: str, instance: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": type_base + self.ptype.slug,
            "title": self.ptype.title,
            "status": self.ptype.status,
            "detail": self.detail,
            "side": self.ptype.side.value,
            "request_id": request_id,
        }
        if instance is not None:
            doc["instance"] = instance
        doc.update(self.extensions)
        return doc

    def to_response(
        self, *, type_base: str, request_id: str, instance: str | None = None
    ) -> web.Response:
        headers = {"X-Request-Id": request_id, **self.headers}
        doc = self.body(type_base=type_base, request_id=request_id, instance=instance)
        try:
            body = orjson.dumps(doc)
        except orjson.JSONEncodeError:  # a detail quoting bytes that were not UTF-8
            body = orjson.dumps(_storable(doc))
        return web.Response(
            status=self.ptype.status,
            body=body,
            content_type=PROBLEM_CONTENT_TYPE,
            headers=headers,
        )


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value
