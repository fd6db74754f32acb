"""Gateway settings: `LGSP_*` environment variables, optionally a YAML file.

The file named by `LGSP_SETTINGS_FILE` is read first; environment variables win over it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LGSP_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # The address callers use to reach the gateway; the token issuer and JWKS URLs derive from it.
    public_url: str = ""
    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}")

    database_url: str = "sqlite+aiosqlite:///var/lgsp.db"
    keys_dir: Path = Path("var/keys")
    # When set, private signing keys are stored encrypted with this passphrase (PKCS#8);
    # otherwise they are stored unencrypted with file mode 0600.
    key_passphrase: str | None = None

    token_ttl_seconds: int = Field(300, ge=30, le=3600)
    token_audience: str = ""
    # Accepted JWS algorithms of access tokens; the first signs. "Ed25519" is RFC 9864's
    # name for what older libraries call "EdDSA"; both are accepted and published.
    token_algorithms: list[str] = ["EdDSA", "Ed25519"]
    clock_skew_seconds: int = Field(30, ge=0, le=300)

    # Bundled schemas registered at start (see gateway/registry/bundled.py); "" skips it.
    schemas_dir: Path = Path("schemas")

    # -- audit log (docs/auditor.md) --
    # Empty: the embedded default, events committed straight to the store. Set (host:port,
    # comma-separated): events go through the local spool to Kafka; run `lgsp audit-indexer`.
    audit_kafka_bootstrap: str = ""
    audit_kafka_topic: str = "lgsp.audit.exchanges"
    audit_kafka_partitions: int = Field(6, ge=1, le=1000)
    audit_kafka_replication: int = Field(1, ge=1, le=10)
    audit_kafka_compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = "lz4"
    audit_kafka_idempotence: bool = True
    audit_kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    audit_kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    audit_kafka_sasl_username: str | None = None
    audit_kafka_sasl_password: str | None = None
    audit_kafka_ssl_cafile: str | None = None
    audit_indexer_group: str = "lgsp-audit-indexer"
    # Each instance keeps its own spool in <audit_spool_dir>/<instance_id>.
    audit_spool_dir: Path = Path("var/spool")
    audit_spool_max_bytes: int = Field(1024 * 1024 * 1024, ge=1024 * 1024)
    audit_checkpoint_every: int = Field(1000, ge=1)
    audit_checkpoint_seconds: float = Field(60.0, gt=0)
    # The transparency log's name in its checkpoints (docs/auditor.md); empty:
    # <host of public_url>/audit/<instance_id>.
    audit_log_origin: str = ""
    # Witnesses that cosign the log's checkpoints (c2sp.org/tlog-witness), each
    # "<submission URL> <verifier key>"; and how many must keep cosigning, else /readyz
    # says degraded.
    audit_witnesses: list[str] = []
    audit_witness_quorum: int = Field(0, ge=0)
    # Keep spooled events until the store has them, not only the broker, and send again
    # what a broker lost (docs/auditor.md "What the broker loses"); how long the store may
    # not move while the broker holds events before they are sent again.
    audit_keep_until_indexed: bool = True
    audit_reship_after_seconds: float = Field(120.0, gt=0)
    # On shutdown, how long to wait for the broker to take what is in the spool.
    audit_drain_seconds: float = Field(10.0, ge=0)
    # Days an exchange record is kept in the store; 0 keeps everything.
    audit_retention_days: int = Field(0, ge=0)

    # -- configuration reload (docs/administrator.md "Hot reload") --
    # How often a gateway on SQLite checks the configuration version; on PostgreSQL it is
    # told at once (LISTEN/NOTIFY) and this is only the safety net.
    config_poll_seconds: float = Field(0.25, gt=0, le=60)

    # -- rate limits and quotas (docs/administrator.md "Rate limits and quotas") --
    # Empty: limits are counted in this process only (the embedded default). Set
    # (redis://host:6379/0): counted in Redis, shared by every replica.
    redis_url: str = ""
    # When Redis cannot be reached: "local" keeps limiting with this process's own
    # counters (fail open, with an alarm); "deny" refuses limited exchanges with a 503.
    ratelimit_on_redis_failure: Literal["local", "deny"] = "local"
    ratelimit_redis_timeout_ms: int = Field(100, ge=1, le=10_000)

    # -- outbound safety (docs/administrator.md "Outbound safety") --
    # Where upstreams may be: CIDR networks, or the names "public" (globally routable),
    # "private" (RFC 1918, RFC 6598, fc00::/7) and "loopback". Link-local addresses
    # (cloud metadata at 169.254.169.254), multicast and unspecified addresses are
    # refused unless a CIDR names them.
    upstream_allowed_networks: list[str] = ["public", "private"]
    upstream_allowed_schemes: list[str] = ["https", "http"]
    # Environment variables an upstream's client_secret_env may name, besides those whose
    # name starts with LGSP_UPSTREAM_SECRET_ (gateway/upstream/allowlist.py).
    upstream_secret_envs: list[str] = ["LGSP_NDXP_CLIENT_SECRET"]

    # -- events and webhooks (docs/administrator.md "Topics and subscriptions") --
    # Each gateway process runs a delivery worker; replicas share the work through leases.
    events_delivery_enabled: bool = True
    # How long a failed delivery is retried (exponential backoff, full jitter, Retry-After
    # honoured) before it is dead; from publish, or from an operator's replay.
    events_retry_window_seconds: float = Field(86_400.0, gt=0, le=30 * 86_400)
    events_backoff_initial_seconds: float = Field(1.0, gt=0, le=3600)
    events_backoff_max_seconds: float = Field(3600.0, gt=0, le=86_400)
    # One attempt, connection to answer.
    events_delivery_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # Deliveries in flight per worker, and of those at most this many per subscription.
    events_delivery_concurrency: int = Field(64, ge=1, le=10_000)
    events_subscriber_concurrency: int = Field(16, ge=1, le=1000)
    # How often the worker looks for due deliveries when nothing woke it.
    events_poll_seconds: float = Field(0.2, gt=0, le=60)
    # Where events and deliveries are kept: "embedded" (tables in the store, the default)
    # or "kafka" (gateway/events/kafka_store.py: a topic per event topic and a delivery
    # queue topic; the client settings, security included, are the audit log's, and the
    # broker is events_kafka_bootstrap, else audit_kafka_bootstrap).
    events_store: Literal["embedded", "kafka"] = "embedded"
    events_kafka_bootstrap: str = ""
    events_kafka_prefix: str = "lgsp.events"
    # Partitions of the delivery queue (by subscription and key): how many consumers of
    # the delivery group, across replicas, can share the work.
    events_kafka_partitions: int = Field(12, ge=1, le=1000)
    events_kafka_replication: int = Field(1, ge=1, le=10)
    events_kafka_idempotence: bool = True

    # -- scheduled pulls (docs/administrator.md "Scheduled pulls") --
    # Each gateway process runs the scheduler; a lease in the store lets one run a job.
    jobs_enabled: bool = True
    # How often the scheduler looks at the jobs (a cron minute is never missed at <= 60).
    jobs_tick_seconds: float = Field(15.0, gt=0, le=60)
    # A run's lease, renewed after each page: how long a dead holder's run waits before
    # another replica resumes it. Longer than the slowest page.
    jobs_lease_seconds: float = Field(120.0, ge=1, le=3600)

    # -- serving (docs/operator.md "Workers", "Draining on SIGTERM") --
    # Worker processes on the one port (SO_REUSEPORT). 0: one per core when rate limits
    # are shared through Redis, else 1, since without Redis each worker counts on its own.
    workers: int = Field(0, ge=0, le=256)
    # On SIGTERM: /readyz answers 503 for this long while serving goes on (so a load
    # balancer takes the instance out), then the listener closes, requests in flight get
    # up to drain_timeout_seconds to finish, and the audit is flushed.
    drain_delay_seconds: float = Field(0.0, ge=0, le=300)
    drain_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    # Who may read /metrics: CIDR networks or "loopback" and "private" (as for upstreams).
    metrics_allowed_networks: list[str] = ["loopback", "private"]
    # HTTPS served by the gateway itself (docs/operator.md "HTTPS and client
    # certificates"): a PEM certificate chain and its key; both set, or neither (HTTP).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # Client certificates: verified against this CA bundle, asked for ("optional": a
    # system may then authenticate by certificate and get tokens bound to it) or
    # required of every connection ("required"); "none" asks for none.
    tls_client_ca_file: str | None = None
    tls_client_auth: Literal["none", "optional", "required"] = "none"

    # -- traces (docs/operator.md "Traces") --
    # An OTLP/HTTP traces endpoint, used as it is (http://collector:4318/v1/traces).
    # Empty: no traces are made and the OpenTelemetry SDK is not even imported.
    otel_traces_endpoint: str = ""
    otel_service_name: str = "lgsp-gateway"
    # Headers for the collector (an authorization, a tenant), as a JSON object.
    otel_headers: dict[str, str] = {}
    # The share of the traces the gateway starts that are recorded; a caller's sampled
    # flag decides for its own trace.
    otel_sample_ratio: float = Field(1.0, ge=0, le=1)
    # Spans are sent in batches at most this long after their exchange ends.
    otel_export_delay_seconds: float = Field(2.0, gt=0, le=60)
    otel_export_timeout_seconds: float = Field(10.0, gt=0, le=120)

    # Upper bound for any request body, after decoding; services set their own limits.
    max_request_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Slow callers cannot hold connections: the request line and headers must arrive
    # within this time of their first byte, the body within request_body_timeout_seconds
    # of the headers; an idle keep-alive connection is closed after keepalive_seconds.
    request_header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    request_body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    keepalive_seconds: float = Field(75.0, gt=0, le=3600)
    # Failed client authentications at the token endpoint, per client id and per source
    # address, within a window; past them the token endpoint answers 429 until the window
    # ends (shared through Redis when it is configured).
    auth_failures_per_client: int = Field(10, ge=1, le=10_000)
    auth_failures_per_address: int = Field(50, ge=1, le=100_000)
    auth_failure_window_seconds: float = Field(300.0, gt=0, le=86_400)
    # -- the console (docs/administrator.md "The console and personal accounts") --
    # False only for a demo on http://localhost: the session cookie then drops Secure
    # and the __Host- prefix, which browsers refuse over plain HTTP elsewhere.
    console_secure_cookies: bool = True
    console_session_hours: float = Field(8.0, gt=0, le=24)
    console_idle_minutes: float = Field(15.0, gt=0, le=240)
    # Consecutive failed factors (password or TOTP) before an account is locked, and for
    # how long; the source address also spends the token endpoint's per-address budget.
    console_lockout_failures: int = Field(5, ge=1, le=100)
    console_lockout_minutes: float = Field(15.0, gt=0, le=1440)
    console_password_min_length: int = Field(12, ge=8, le=64)
    # Sign-in through the province's OpenID Connect provider (authorization code + PKCE),
    # beside local accounts; off while no issuer is set (docs/administrator.md "Signing in
    # through the province's identity provider"). The IdP's groups (the claim named
    # here) map to roles: a person none of whose groups maps to a role is refused.
    console_oidc_issuer: str | None = None
    console_oidc_client_id: str = ""
    console_oidc_client_secret: str = ""
    console_oidc_scopes: str = "openid profile groups"
    console_oidc_groups_claim: str = "groups"
    console_oidc_roles: dict[str, list[str]] = {}
    # The callback the IdP sends the browser back to; default public_url + the console's.
    console_oidc_redirect_url: str | None = None
    # True: the IdP must say (`amr`, RFC 8176, or an `acr` listed below) that the person
    # gave a second factor there, as local accounts must here; the console asks none.
    console_oidc_require_mfa: bool = True
    console_oidc_mfa_acr: list[str] = []
    # Passkeys (WebAuthn) as a second factor beside TOTP: the relying party's id (the
    # console's host name; never an IP address) and the origin the browser shows;
    # default both from public_url.
    console_webauthn_rp_id: str | None = None
    console_webauthn_origin: str | None = None
    problem_type_base: str = "urn:lgsp:problem:"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _tls_complete(self) -> Settings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both, or neither")
        if self.tls_client_auth != "none" and not (self.tls_cert_file and self.tls_client_ca_file):
            raise ValueError(
                "tls_client_auth needs HTTPS (tls_cert_file, tls_key_file) and the CA that "
                "issues the systems' certificates (tls_client_ca_file)"
            )
        return self

    @model_validator(mode="after")
    def _events_broker(self) -> Settings:
        if self.events_store == "kafka" and not (
            self.events_kafka_bootstrap or self.audit_kafka_bootstrap
        ):
            raise ValueError(
                "events_store=kafka needs a broker: events_kafka_bootstrap (or the audit "
                "log's audit_kafka_bootstrap)"
            )
        return self

    @property
    def tls(self) -> bool:
        """Does the gateway serve HTTPS itself?"""
        return bool(self.tls_cert_file)

    @field_validator("token_algorithms")
    @classmethod
    def _only_asymmetric(cls, algs: list[str]) -> list[str]:
        allowed = {"EdDSA", "Ed25519", "ES256", "RS256", "PS256"}
        bad = [a for a in algs if a not in allowed]
        if bad or not algs:
            raise ValueError(f"token_algorithms must be a non-empty subset of {sorted(allowed)}")
        return algs

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """The environment variables the settings are read from (LGSP_DATABASE_URL...)."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        return frozenset((prefix + name).upper() for name in cls.model_fields)

    @property
    def issuer(self) -> str:
        scheme = "https" if self.tls else "http"
        return (self.public_url or f"{scheme}://{self.host}:{self.port}").rstrip("/")

    @property
    def audience(self) -> str:
        return self.token_audience or self.issuer

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        settings_file = os.environ.get("LGSP_SETTINGS_FILE")
        if settings_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=settings_file))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
