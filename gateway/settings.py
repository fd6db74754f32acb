"""Gateway settings: `LGSP_*` environment variables, optionally a YAML file.

The file named by `LGSP_SETTINGS_FILE` is read first; environment variables win over it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
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
    token_algorithms: list[str] = ["EdDSA"]
    clock_skew_seconds: int = Field(30, ge=0, le=300)

    # Bundled schemas registered at start (see gateway/registry/bundled.py); "" skips it.
    schemas_dir: Path = Path("schemas")

    # Upper bound for any request body; services set their own lower limits.
    max_request_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    problem_type_base: str = "urn:lgsp:problem:"
    log_level: str = "INFO"

    @field_validator("token_algorithms")
    @classmethod
    def _only_asymmetric(cls, algs: list[str]) -> list[str]:
        allowed = {"EdDSA", "ES256", "RS256", "PS256"}
        bad = [a for a in algs if a not in allowed]
        if bad or not algs:
            raise ValueError(f"token_algorithms must be a non-empty subset of {sorted(allowed)}")
        return algs

    @property
    def issuer(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

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
