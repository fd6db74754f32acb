"""TLS: the gateway's own HTTPS listener, its client certificates to upstreams, and what
a caller's certificate says about it.

* `server_context` builds the listener's `ssl.SSLContext`: TLS 1.2 at least, no
  compression, no renegotiation, forward-secret AEAD ciphers only (ECDHE with AES-GCM
  or ChaCha20-Poly1305; TLS 1.3's suites are all AEAD), and client certificates
  verified against the configured CA, either required (`required`: a connection
  without one fails its handshake) or asked for (`optional`).
* `client_context` builds what the gateway presents to an upstream that requires a
  client certificate, verifying the upstream against its own CA bundle.
* `PeerCertificate` is a caller's certificate as authentication reads it: the RFC 8705
  thumbprint (`x5t#S256`, base64url SHA-256 of the DER certificate) a bound token
  carries, and the two pins a system's certificate credential may hold, the SHA-256 of
  its SubjectPublicKeyInfo (`spki-sha256:<hex>`, survives a renewal with the same key)
  or its subject DN (`subject:<RFC 4514 DN>`, like X-Road's members, survives a renewal
  by the same CA).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import ssl
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = [
    "CIPHERS",
    "PIN_PREFIXES",
    "ClientAuth",
    "PeerCertificate",
    "certificate_file",
    "client_context",
    "normalise_pin",
    "peer_certificate",
    "server_context",
]

ClientAuth = Literal["none", "optional", "required"]

# TLS 1.2 suites: ECDHE key exchange (forward secrecy) and AEAD encryption only. TLS 1.3
# suites are not set by this string (OpenSSL's defaults there are all AEAD).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!RC4:!3DES:!SHA1"
PIN_PREFIXES = ("spki-sha256:", "subject:")


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers(CIPHERS)
    return ctx


def server_context(
    cert_file: str, key_file: str, client_ca_file: str | None, client_auth: ClientAuth
) -> ssl.SSLContext:
    """The HTTPS listener's context.

    Example:
        >>> ctx = server_context("gw.pem", "gw.key", "clients-ca.pem", "optional")
        >>> ctx.minimum_version
        <TLSVersion.TLSv1_2: 771>
    """
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(cert_file, key_file)
    if client_auth != "none":
        if not client_ca_file:
            raise ValueError("client certificates need a CA to verify them (tls_client_ca_file)")
        ctx.load_verify_locations(cafile=client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if client_auth == "required" else ssl.CERT_OPTIONAL
    return ctx


def client_context(
    cert_file: str | None, key_file: str | None, ca_file: str | None
) -> ssl.SSLContext:
    """What the gateway presents to an upstream (and how it verifies it): the system's
    CAs unless `ca_file` names a bundle; a client certificate when `cert_file` is set.
    Built once per set of files and their modification times, so a renewed certificate
    (a file replaced in place) is used from the next call on, without a restart."""
    stamps = tuple(_mtime(f) for f in (cert_file, key_file, ca_file))
    return _client_context(cert_file, key_file, ca_file, stamps)


def _mtime(path: str | None) -> int:
    if not path:
        return 0
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1  # loading it will say why


@functools.lru_cache(maxsize=64)
def _client_context(
    cert_file: str | None, key_file: str | None, ca_file: str | None, _stamps: tuple[int, ...]
) -> ssl.SSLContext:
    ctx = _harden(ssl.create_default_context(cafile=ca_file))
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None)
    return ctx


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """A caller's TLS certificate, as authentication reads it."""

    x5t_s256: str  # RFC 8705 §3.1: base64url(SHA-256(DER)), unpadded
    spki_pin: str  # "spki-sha256:<hex>"
    subject_pin: str  # "subject:<RFC 4514 DN>"
    subject: str

    @property
    def pins(self) -> tuple[str, str]:
        return (self.spki_pin, self.subject_pin)


@functools.lru_cache(maxsize=4096)
def _parse(der: bytes) -> PeerCertificate:
    cert = x509.load_der_x509_certificate(der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    subject = cert.subject.rfc4514_string()
    thumb = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    return PeerCertificate(
        thumb, "spki-sha256:" + hashlib.sha256(spki).hexdigest(), "subject:" + subject, subject
    )


def peer_certificate(transport: Any) -> PeerCertificate | None:
    """The verified client certificate of a connection (an asyncio transport), or None
    for plain HTTP or a TLS connection without one. Parsed once per distinct certificate."""
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return _parse(der) if der else None


def certificate_file(data: bytes) -> PeerCertificate:
    """A certificate's pins and thumbprint from its PEM (or DER) bytes, as a connection
    presenting it would give them (for `lgsp client pin --cert`)."""
    if b"-----BEGIN" in data:
        der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    else:
        der = data
    return _parse(der)


def normalise_pin(pin: str) -> str:
    """A pin as stored: `spki-sha256:` + 64 lowercase hex digits, or `subject:` + the DN
    as RFC 4514 writes it (parsed and re-written, so spacing and case of the attribute
    names do not matter). Raises ValueError for anything else."""
    kind, sep, value = pin.strip().partition(":")
    value = value.strip()
    if not sep or not value:
        raise ValueError("a pin is 'spki-sha256:<64 hex digits>' or 'subject:<RFC 4514 DN>'")
    if kind == "spki-sha256":
        hexed = value.lower().replace(":", "")
        if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
            raise ValueError("spki-sha256 takes the SHA-256 of the public key: 64 hex digits")
        return "spki-sha256:" + hexed
    if kind == "subject":
        try:
            name = x509.Name.from_rfc4514_string(value)
        except ValueError as e:
            raise ValueError(f"the subject is not an RFC 4514 distinguished name: {e}") from None
        if len(name) == 0:
            raise ValueError("the subject DN is empty")
        return "subject:" + name.rfc4514_string()
    raise ValueError("a pin is 'spki-sha256:<64 hex digits>' or 'subject:<RFC 4514 DN>'")
