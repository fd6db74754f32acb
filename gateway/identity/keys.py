"""The gateway's token-signing keys: generated on first start, rotatable, published as JWKS.

Keys live in `Settings.keys_dir`, one PKCS#8 PEM file per key named `{kid}.pem`, with
file mode 0600 and, when `LGSP_KEY_PASSPHRASE` is set, encrypted with it. A key id
starts with its UTC creation time, so the newest key signs and older keys keep verifying
tokens they signed until rotation prunes them. Replicas sharing the directory pick up a
new key the first time they see its kid (reload is rate-limited).
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.core.logging import log

# RFC 9864 names EdDSA over Ed25519 "Ed25519" (the polymorphic "EdDSA" is deprecated but
# what most libraries still know); PyJWT knows only "EdDSA", so the new name is added.
if "Ed25519" not in jwt.algorithms.get_default_algorithms():
    jwt.register_algorithm("Ed25519", jwt.algorithms.OKPAlgorithm())
ED25519_ALGS = ("EdDSA", "Ed25519")

SigningKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
VerifyingKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

# Microseconds, fixed width: kids sort in creation order, which makes the newest active.
_KID_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True, slots=True)
class KeyPair:
    kid: str
    alg: str
    private: SigningKey
    public: VerifyingKey

    @property
    def created_at(self) -> datetime:
        return datetime.strptime(self.kid.split("-")[0], _KID_TIME_FORMAT).replace(tzinfo=UTC)

    @property
    def algs(self) -> tuple[str, ...]:
        """The JWS algorithm names this key signs under (an Ed25519 key has two)."""
        return ED25519_ALGS if self.alg in ED25519_ALGS else (self.alg,)

    def public_jwk(self, alg: str | None = None) -> dict[str, Any]:
        jwk: dict[str, Any]
        if isinstance(self.public, ed25519.Ed25519PublicKey):
            jwk = jwt.algorithms.OKPAlgorithm.to_jwk(self.public, as_dict=True)
        else:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.public, as_dict=True)
        jwk.update({"kid": self.kid, "alg": alg or self.alg, "use": "sig"})
        return jwk


def write_private_key(path: Path, key: SigningKey, passphrase: bytes | None) -> None:
    """PKCS#8 PEM, encrypted when a passphrase is set, else mode 0600; written to a
    temporary file, synced and renamed, so a crash never leaves half a key."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _generate(alg: str) -> SigningKey:
    if alg in ED25519_ALGS:
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"cannot generate signing keys for {alg}; use EdDSA or ES256")


def _alg_of(key: Any) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError(f"unsupported signing key type {type(key).__name__}")


class KeyStore:
    def __init__(self, directory: Path, passphrase: str | None, alg: str = "EdDSA") -> None:
        self.directory = directory
        self._passphrase = passphrase.encode() if passphrase else None
        self._alg = alg
        self._keys: dict[str, KeyPair] = {}
        self._last_reload = 0.0

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load every key in the directory; generate the first one if there is none."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys: dict[str, KeyPair] = {}
        for path in sorted(self.directory.glob("*.pem")):
            private = serialization.load_pem_private_key(path.read_bytes(), self._passphrase)
            kid = path.stem
            keys[kid] = KeyPair(kid, _alg_of(private), private, private.public_key())  # type: ignore[arg-type]
        self._keys = keys
        self._last_reload = time.monotonic()
        if not keys:
            self.rotate()

    def refresh(self) -> bool:
        """Load again if keys were added or removed (a rotation by the CLI or a replica)."""
        on_disk = {p.stem for p in self.directory.glob("*.pem")}
        if on_disk == set(self._keys):
            return False
        self.load()
        return True

    def reload_if_stale(self, min_interval: float = 1.0) -> bool:
        """Called on an unknown kid: another replica may have rotated."""
        if time.monotonic() - self._last_reload < min_interval:
            return False
        self.load()
        return True

    # -- use -------------------------------------------------------------------------------

    @property
    def active(self) -> KeyPair:
        return self._keys[max(self._keys)]

    def get(self, kid: str) -> KeyPair | None:
        return self._keys.get(kid)

    def jwks(self, algorithms: list[str] | None = None) -> dict[str, Any]:
        """The public keys, one entry per key and accepted algorithm name: an Ed25519 key
        is listed under "EdDSA" and "Ed25519" (RFC 9864) when both are accepted, with one
        kid, as equivalent alternatives (RFC 7517 §4.5), so old and new verifiers each
        find the entry for the name they know. Without `algorithms`, one entry per key."""
        keys = sorted(self._keys.values(), key=lambda k: k.kid)
        return {
            "keys": [
                k.public_jwk(alg)
                for k in keys
                for alg in (k.algs if algorithms is not None else (k.alg,))
                if algorithms is None or alg in algorithms
            ]
        }

    # -- rotation --------------------------------------------------------------------------

    def rotate(self, retire_after_seconds: int | None = None) -> KeyPair:
        """Make a new active key. Keys superseded more than `retire_after_seconds` ago
        (longer than any token they signed can live) are deleted."""
        created = datetime.now(UTC)
        if self._keys:
            # Strictly after the newest key, even within one clock tick.
            created = max(created, self.active.created_at + timedelta(microseconds=1))
        kid = f"{created.strftime(_KID_TIME_FORMAT)}-{secrets.token_hex(4)}"
        private = _generate(self._alg)
        write_private_key(self.directory / f"{kid}.pem", private, self._passphrase)
        pair = KeyPair(kid, _alg_of(private), private, private.public_key())
        self._keys[kid] = pair
        log.info("signing key created", kid=kid, alg=pair.alg, encrypted=bool(self._passphrase))
        if retire_after_seconds is not None:
            self._retire(retire_after_seconds)
        return pair

    def _retire(self, after_seconds: int) -> None:
        kids = sorted(self._keys)
        # Never before the newest key's own time (see rotate's tie-break).
        now = max(datetime.now(UTC), self.active.created_at)
        for older, newer in itertools.pairwise(kids):
            if (now - self._keys[newer].created_at).total_seconds() >= after_seconds:
                (self.directory / f"{older}.pem").unlink(missing_ok=True)
                del self._keys[older]
                log.info("signing key retired", kid=older)
