"""Who the gateway knows: clients (departmental systems and admin callers) and their
active credentials, as the compiled configuration holds them for the request path.

`Directory` is what authentication reads; the configuration's runtime tables
(gateway.config.runtime.RuntimeConfig) are one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ClientEntry:
    code: str
    name: str
    agency_code: str
    enabled: bool
    groups: frozenset[str]
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CredentialEntry:
    id: int
    kind: str  # "secret" | "api_key" | "certificate" (a pin, gateway/core/tls.py)
    client_code: str
    expires_at: datetime | None


class Directory(Protocol):
    """The identity tables authentication reads (the runtime tables provide them)."""

    @property
    def clients(self) -> Mapping[str, ClientEntry]: ...

    # SHA-256 digest of a secret or API key -> the credential it belongs to (active only).
    @property
    def credentials(self) -> Mapping[str, CredentialEntry]: ...

    @property
    def active_credential_ids(self) -> frozenset[int]: ...

    # Credential id -> when it expires (epoch seconds), for those that do.
    @property
    def credential_expiry(self) -> Mapping[int, float]: ...
