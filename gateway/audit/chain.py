"""Tamper evidence: each gateway instance chains its events and signs checkpoints.

Event n of an instance carries `seq` = n, `prev_hash` = the hash of event n-1 (64 zeros
for the first) and `hash` = SHA-256 of the event's canonical JSON (every field but
`hash`, keys sorted; the fields added since chaining began, `HASHED_WHEN_SET`, only when
they hold a value, so older events verify unchanged). Altering a stored event breaks its
own hash; deleting one leaves a gap in `seq`; rewriting the rest of the chain to hide
either breaks the signed checkpoints, which each instance issues every N events or T
seconds over its chain head with its own Ed25519 key. All of it can be checked offline
from the records alone.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.event import CHECKPOINT_KIND, HASHED_WHEN_SET, AuditEvent
from gateway.audit.note import NoteSigner
from gateway.identity.keys import write_private_key

GENESIS = "0" * 64


def event_hash(fields: Mapping[str, Any]) -> str:
    """The hash of an event given as its fields (an AuditEvent's dict, a stored row's, or
    its wire JSON). A field of `HASHED_WHEN_SET` counts only when it holds a value: absent
    and null hash alike, as they did before the field existed."""
    body = {k: v for k, v in fields.items() if k != "hash" and k != "kind"}
    for name in HASHED_WHEN_SET:
        if name in body and body[name] is None:
            del body[name]
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Chain:
    """One instance's chain head. Only the audit writer task touches it, one batch at a
    time, so a failed batch can be undone with `rewind` before anything is chained on it."""

    def __init__(self, instance: str, seq: int = 0, head: str = GENESIS) -> None:
        self.instance = instance
        self.seq = seq
        self.head = head

    def link(self, event: AuditEvent) -> None:
        event.instance = self.instance
        event.seq = self.seq + 1
        event.prev_hash = self.head
        event.hash = event_hash(event.as_dict())
        self.seq, self.head = event.seq, event.hash

    def mark(self) -> tuple[int, str]:
        return self.seq, self.head

    def rewind(self, mark: tuple[int, str]) -> None:
        self.seq, self.head = mark


# -- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    instance: str
    seq: int
    hash: str
    signed_at: datetime
    key_id: str
    signature: str  # base64url Ed25519 over signed_bytes()

    def signed_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "instance": self.instance,
                "seq": self.seq,
                "hash": self.hash,
                "signed_at": self.signed_at,
                "key_id": self.key_id,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    def to_wire(self) -> bytes:
        return orjson.dumps(
            {
                "kind": CHECKPOINT_KIND,
                "instance": self.instance,
                "seq": self.seq,
                "hash": self.hash,
                "signed_at": self.signed_at,
                "key_id": self.key_id,
                "signature": self.signature,
            }
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Checkpoint:
        signed_at = data["signed_at"]
        if isinstance(signed_at, str):
            signed_at = datetime.fromisoformat(signed_at)
        return cls(
            instance=str(data["instance"]),
            seq=int(data["seq"]),
            hash=str(data["hash"]),
            signed_at=signed_at,
            key_id=str(data["key_id"]),
            signature=str(data["signature"]),
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    return _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def key_id_of(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def load_public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_unb64(text))


class AuditSigner:
    """An instance's checkpoint key: `<keys_dir>/audit/<instance>.pem`, created on first
    use, mode 0600 or encrypted with the key passphrase (like the token keys)."""

    def __init__(self, keys_dir: Path, instance: str, passphrase: str | None = None) -> None:
        self.path = keys_dir / "audit" / f"{file_name(instance)}.pem"
        self._passphrase = passphrase.encode() if passphrase else None
        self._key = self._load_or_create()
        self.public_key = self._key.public_key()
        self.key_id = key_id_of(self.public_key)
        self.instance = instance

    def _load_or_create(self) -> Ed25519PrivateKey:
        if self.path.exists():
            key = serialization.load_pem_private_key(self.path.read_bytes(), self._passphrase)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{self.path} is not an Ed25519 key")
            return key
        key = Ed25519PrivateKey.generate()
        write_private_key(self.path, key, self._passphrase)
        return key

    def note_signer(self, name: str) -> NoteSigner:
        """The same key as a signed-note signer under `name` (the tree log's origin)."""
        return NoteSigner(name, self._key)

    def checkpoint(self, seq: int, head: str, at: datetime) -> Checkpoint:
        unsigned = Checkpoint(self.instance, seq, head, at, self.key_id, "")
        signature = _b64(self._key.sign(unsigned.signed_bytes()))
        return Checkpoint(self.instance, seq, head, at, self.key_id, signature)


def file_name(instance: str) -> str:
    """An instance id as a file name (the spool directory, the checkpoint key)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in instance)


def checkpoint_valid(cp: Checkpoint, key: Ed25519PublicKey) -> bool:
    try:
        key.verify(_unb64(cp.signature), cp.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


# -- verification -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    instance: str
    kind: str  # altered | broken_link | missing | duplicate | bad_signature | unknown_key | ...
    seq_from: int | None
    seq_to: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "kind": self.kind,
            "seq_from": self.seq_from,
            "seq_to": self.seq_to,
            "detail": self.detail,
        }


@dataclass
class InstanceReport:
    instance: str
    first_seq: int | None = None
    last_seq: int | None = None
    events: int = 0
    checkpoints: int = 0
    head: str | None = None
    findings: list[Finding] = field(default_factory=list)


class ChainVerifier:
    """Checks one instance's events, fed in seq order, then its checkpoints.

    `anchor` is the link just before the first event fed (the stored predecessor, or a
    retention purge's recorded head); without one, the first event's link can only be
    checked when it is seq 1. Only the hashes checkpoints vouch for are kept, so a range
    of millions of events is checked in bounded memory.
    """

    def __init__(
        self,
        instance: str,
        checkpoints: Iterable[Checkpoint],
        keys: Mapping[str, Ed25519PublicKey],
        *,
        anchor: tuple[int, str] | None = None,
    ) -> None:
        self.report = InstanceReport(instance)
        self._checkpoints = list(checkpoints)
        self._wanted = {cp.seq for cp in self._checkpoints}
        self._keys = keys
        self._by_seq: dict[int, str] = {}
        self._prev = anchor

    def add(self, row: Mapping[str, Any]) -> None:
        report, found, instance = self.report, self.report.findings, self.report.instance
        seq, digest, prev = row["seq"], row["hash"], self._prev
        report.events += 1
        if report.first_seq is None:
            report.first_seq = seq
            if prev is None and seq == 1:
                prev = (0, GENESIS)
        if prev is not None and seq <= prev[0]:
            found.append(
                Finding(instance, "duplicate", seq, seq, f"two different events claim seq {seq}")
            )
            return
        if event_hash(row) != digest:
            found.append(
                Finding(
                    instance,
                    "altered",
                    seq,
                    seq,
                    f"event {row.get('event_id')} (seq {seq}) does not match its hash: "
                    "a stored field was changed",
                )
            )
        if prev is not None:
            if seq > prev[0] + 1:
                found.append(
                    Finding(
                        instance,
                        "missing",
                        prev[0] + 1,
                        seq - 1,
                        f"{seq - prev[0] - 1} event(s) missing between seq {prev[0]} and {seq}",
                    )
                )
            elif row["prev_hash"] != prev[1]:
                found.append(
                    Finding(
                        instance,
                        "broken_link",
                        seq,
                        seq,
                        f"seq {seq} does not link to the hash of seq {prev[0]}",
                    )
                )
        if seq in self._wanted:
            self._by_seq[seq] = digest
        self._prev = (seq, digest)
        report.last_seq, report.head = seq, digest

    def finish(self) -> InstanceReport:
        report, found, instance = self.report, self.report.findings, self.report.instance
        for cp in self._checkpoints:
            report.checkpoints += 1
            key = self._keys.get(cp.key_id)
            if key is None:
                found.append(
                    Finding(
                        instance,
                        "unknown_key",
                        cp.seq,
                        cp.seq,
                        f"checkpoint at seq {cp.seq} is signed by {cp.key_id}, not a trusted key",
                    )
                )
                continue
            if not checkpoint_valid(cp, key):
                found.append(
                    Finding(
                        instance,
                        "bad_signature",
                        cp.seq,
                        cp.seq,
                        f"checkpoint at seq {cp.seq} has an invalid signature",
                    )
                )
                continue
            stored = self._by_seq.get(cp.seq)
            if stored is None:
                if report.last_seq is not None and cp.seq > report.last_seq:
                    found.append(
                        Finding(
                            instance,
                            "missing",
                            report.last_seq + 1,
                            cp.seq,
                            f"a signed checkpoint vouches for seq {cp.seq}, but the stored "
                            f"chain ends at {report.last_seq}",
                        )
                    )
            elif stored != cp.hash:
                found.append(
                    Finding(
                        instance,
                        "checkpoint_mismatch",
                        cp.seq,
                        cp.seq,
                        f"the stored chain at seq {cp.seq} differs from what the instance signed",
                    )
                )
        return report


def verify_instance(
    instance: str,
    events: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Checkpoint],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    anchor: tuple[int, str] | None = None,
) -> InstanceReport:
    """Check one instance's events (ordered by seq) and checkpoints."""
    verifier = ChainVerifier(instance, checkpoints, keys, anchor=anchor)
    for row in events:
        verifier.add(row)
    return verifier.finish()
