"""Test certificates, made with `cryptography`: a small CA, server certificates for
127.0.0.1, client certificates for systems; each written as PEM files in a directory.

    pki = Pki.make(tmp_path)                      # the CA
    server = pki.issue("gateway", server=True)    # .cert, .key (paths), .der, .x5t
    motcua = pki.issue("motcua", org="So TTTT")   # a system's client certificate
    httpx.AsyncClient(verify=pki.verify(motcua))  # trusts the CA, presents motcua's
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "Pki"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as files, and what the gateway computes from it."""

    name: str
    cert: Path
    key: Path
    der: bytes
    subject: str  # RFC 4514
    spki_sha256: str  # hex

    @property
    def x5t(self) -> str:
        """RFC 8705 thumbprint: base64url SHA-256 of the DER certificate, unpadded."""
        digest = hashlib.sha256(self.der).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Pki:
    directory: Path
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    ca_file: Path

    @classmethod
    def make(cls, directory: Path, name: str = "LGSP Test CA") -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        slug = name.replace(" ", "-").lower()
        ca_file = directory / f"{slug}.pem"
        ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key, ca_file)

    def issue(
        self,
        name: str,
        *,
        server: bool = False,
        org: str = "LGSP Test",
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> Issued:
        """A leaf certificate: for a server on 127.0.0.1 and localhost, or a client."""
        key = key or _key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        serial = cert.serial_number % 10**8
        cert_file = self.directory / f"{name}-{serial}.pem"
        key_file = self.directory / f"{name}-{serial}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_file)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return Issued(
            name,
            cert_file,
            key_file,
            cert.public_bytes(serialization.Encoding.DER),
            cert.subject.rfc4514_string(),
            hashlib.sha256(spki).hexdigest(),
        )

    def verify(self, cert: Issued | None = None) -> ssl.SSLContext:
        """A client context trusting this CA only, presenting `cert` if given (httpx's
        `verify=`)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if cert is not None:
            ctx.load_cert_chain(cert.cert, cert.key)
        return ctx
