"""The signing secrets of subscriptions: a Standard Webhooks secret (`whsec_` + base64)
shown once when a subscription is made, then kept encrypted with AES-256-GCM under the
gateway's events key, because signing needs the secret itself (a digest would not do).

The events key is 32 random bytes in `<keys_dir>/events-secrets.key`, created at start
by `lgsp serve` (or on first use) with file mode 0600, beside the token-signing keys
(gateway/identity/keys.py); every replica sharing the keys directory can sign. The
subscription's id is bound into each ciphertext (associated data), so a secret copied
onto another subscription's row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_FILE", "SecretBox", "hint", "new_secret"]

KEY_FILE = "events-secrets.key"
_NONCE = 12


def new_secret() -> str:
    """A new Standard Webhooks secret: 32 random bytes as `whsec_<base64>`.

    Example:
        >>> new_secret().startswith("whsec_")
        True
    """
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def hint(secret: str) -> str:
    """What lists may show of a secret: its last 4 characters.

    Example:
        >>> hint("whsec_abcdefgh")
        '…efgh'
    """
    return "…" + secret[-4:]


class SecretBox:
    """Encrypts and decrypts subscriptions' secrets with the events key."""

    def __init__(self, keys_dir: Path) -> None:
        self._path = keys_dir / KEY_FILE
        self._aead: AESGCM | None = None

    def ensure_key(self) -> None:
        """Make the events key now if it does not exist (`lgsp serve` does, at start, so
        that hosts sharing a copied keys directory share it too)."""
        self._cipher()

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(self._key())
        return self._aead

    def _key(self) -> bytes:
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            pass
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = AESGCM.generate_key(bit_length=256)
        try:  # O_EXCL: two replicas starting together keep the same key
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self._path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        return key

    def seal(self, secret: str, subscription_id: int) -> bytes:
        """The secret encrypted for the subscription `subscription_id`.

        Example:
            >>> box.open(box.seal("whsec_x", 7), 7)
            'whsec_x'
        """
        nonce = secrets.token_bytes(_NONCE)
        aad = str(subscription_id).encode()
        return nonce + self._cipher().encrypt(nonce, secret.encode(), aad)

    def open(self, sealed: bytes, subscription_id: int) -> str:
        """The secret `seal` encrypted; raises `cryptography.exceptions.InvalidTag` when
        the events key or the subscription differ."""
        aad = str(subscription_id).encode()
        return self._cipher().decrypt(sealed[:_NONCE], sealed[_NONCE:], aad).decode()
