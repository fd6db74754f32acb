"""Client secrets and API keys: generated here, shown once, stored only as SHA-256 digests.

Both are 256-bit random values, so a fast digest is as safe as a slow password hash and
lets an API key be checked per request with one dictionary lookup.
"""

from __future__ import annotations

import hashlib
import secrets

API_KEY_PREFIX = "lgsp_"


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hint(value: str) -> str:
    return value[:8] if value.startswith(API_KEY_PREFIX) else value[:4]
