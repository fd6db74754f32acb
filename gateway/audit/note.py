"""C2SP signed notes, tlog checkpoints and Ed25519 cosignatures (c2sp.org/signed-note,
/tlog-checkpoint, /tlog-cosignature), as the gateway's tree heads and its witnesses use.

A checkpoint is the note text `<origin>\\n<tree size>\\n<base64 root>\\n`, a blank line,
and one or more signature lines `— <key name> base64(key id || signature)`. The log's
key id is SHA-256(name || 0x0A || 0x01 || public key)[:4] and it signs the text; a
witness's cosignature (type 0x04) signs `cosignature/v1\\ntime <t>\\n` + the text and
carries the 8-byte timestamp before the signature. A verifier key is written
`<name>+<key id hex>+<base64(type || public key)>`, the form Go's sumdb/note reads.

Example:
    >>> key = Ed25519PrivateKey.generate()
    >>> signer = NoteSigner("gw.example/audit/gw-1", key)
    >>> text = Checkpoint("gw.example/audit/gw-1", 3, b"\\0" * 32).text()
    >>> note = signer.sign_note(text)
    >>> open_checkpoint(note, [signer.verifier()]).size
    3
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "COSIGNATURE",
    "ED25519",
    "Checkpoint",
    "Cosignature",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "Signature",
    "open_checkpoint",
    "split_note",
]

ED25519 = 0x01
COSIGNATURE = 0x04
DASH = "\u2014 "
MAX_SIGNATURES = 64
MAX_NOTE_BYTES = 64 * 1024


class NoteError(ValueError):
    """A note that is malformed, or not signed by a key the caller trusts."""


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, kind: int, public: bytes) -> bytes:
    """SHA-256(name || 0x0A || kind || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    key_id: bytes
    blob: bytes  # after the key id

    def line(self) -> str:
        return f"{DASH}{self.name} {base64.b64encode(self.key_id + self.blob).decode()}\n"


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A trusted key: a log's (type 0x01) or a witness's (type 0x04)."""

    name: str
    public_key: Ed25519PublicKey
    kind: int = ED25519

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.kind, _raw(self.public_key))

    def vkey(self) -> str:
        raw = base64.b64encode(bytes([self.kind]) + _raw(self.public_key)).decode()
        return f"{self.name}+{self.key_id.hex()}+{raw}"

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """From `<name>+<hex key id>+<base64(type || key)>`.

        Raises:
            NoteError: not of that form, an unknown type, or a key id that does not match.
        """
        try:
            name, hex_id, material = vkey.strip().split("+", 2)
            raw = base64.b64decode(material, validate=True)
            kind, public = raw[0], raw[1:]
            verifier = cls(name, Ed25519PublicKey.from_public_bytes(public), kind)
        except (ValueError, IndexError, binascii.Error):
            raise NoteError(f"not a verifier key: {vkey[:80]!r}") from None
        if kind not in (ED25519, COSIGNATURE):
            raise NoteError(f"verifier key type {kind:#04x} is not Ed25519 (0x01) or 0x04")
        if not name or verifier.key_id.hex() != hex_id.lower():
            raise NoteError(f"the key id of {name!r} does not match its key")
        return verifier

    def verify(self, text: str, sig: Signature) -> bool:
        """Whether `sig` (already matched by name and key id) signs `text`."""
        try:
            if self.kind == COSIGNATURE:
                if len(sig.blob) != 8 + 64:
                    return False
                (stamp,) = struct.unpack(">Q", sig.blob[:8])
                self.public_key.verify(sig.blob[8:], cosigned_message(text, stamp))
            else:
                self.public_key.verify(sig.blob, text.encode())
        except InvalidSignature:
            return False
        return True


def cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


class NoteSigner:
    """Signs notes with an Ed25519 key under `name` (type 0x01), or cosigns (0x04)."""

    def __init__(self, name: str, key: Ed25519PrivateKey, kind: int = ED25519) -> None:
        if not name or any(c.isspace() or c == "+" for c in name):
            raise NoteError(f"a key name has no spaces or '+': {name!r}")
        self.name, self.kind, self._key = name, kind, key
        self.key_id = key_id(name, kind, _raw(key.public_key()))

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self._key.public_key(), self.kind)

    def sign(self, text: str) -> Signature:
        """The signature line's content over the note text."""
        return Signature(self.name, self.key_id, self._key.sign(text.encode()))

    def cosign(self, text: str, timestamp: int) -> Signature:
        """A tlog-cosignature/v1 over a checkpoint's text, at `timestamp` (POSIX)."""
        signature = self._key.sign(cosigned_message(text, timestamp))
        return Signature(self.name, self.key_id, struct.pack(">Q", timestamp) + signature)

    def sign_note(self, text: str) -> str:
        return text + "\n" + self.sign(text).line()


def parse_signature_line(line: str) -> Signature:
    if not line.startswith(DASH):
        raise NoteError("a signature line starts with '\u2014 '")
    name, _, blob = line[len(DASH) :].partition(" ")
    try:
        raw = base64.b64decode(blob, validate=True)
    except binascii.Error:
        raise NoteError("a signature is not base64") from None
    if not name or len(raw) < 5:
        raise NoteError("a signature line names its key and holds at least its id")
    return Signature(name, raw[:4], raw[4:])


def split_note(note: str) -> tuple[str, list[Signature]]:
    """The note text (with its final newline) and its signatures.

    Raises:
        NoteError: malformed (control characters, no blank line, too many signatures).
    """
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise NoteError("a note holds no control characters but newlines")
    if not note.endswith("\n"):
        raise NoteError("a note ends with a newline")
    text, sep, sigs = note.rpartition("\n\n")
    if not sep:
        raise NoteError("a note's text is followed by a blank line and its signatures")
    lines = sigs.splitlines()
    if not lines or len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note has 1 to {MAX_SIGNATURES} signatures")
    return text + "\n", [parse_signature_line(line) for line in lines]


def verified_by(
    text: str, sigs: Sequence[Signature], verifiers: Iterable[NoteVerifier]
) -> list[NoteVerifier]:
    """The trusted keys whose signatures on `text` verify; signatures of unknown keys are
    ignored, and a known key's bad signature is an error (signed-note: reject the note).

    Raises:
        NoteError: a trusted key's signature does not verify.
    """
    known = {(v.name, v.key_id): v for v in verifiers}
    good: list[NoteVerifier] = []
    for sig in sigs:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            continue
        if not v.verify(text, sig):
            raise NoteError(f"the signature of {sig.name} does not verify")
        if v not in good:
            good.append(v)
    return good


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog checkpoint's body: which log, how many leaves, and their root."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint is origin, size and root hash, one a line")
        origin, size, root = lines[:3]
        if not origin or not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError("a checkpoint's size is a decimal without leading zeros")
        try:
            digest = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise NoteError("a checkpoint's root hash is base64") from None
        if len(digest) != 32:
            raise NoteError("a checkpoint's root hash is 32 bytes")
        return cls(origin, int(size), digest)


@dataclass(frozen=True, slots=True)
class Cosignature:
    witness: str
    timestamp: int
    line: str


def open_checkpoint(
    note: str,
    log_keys: Iterable[NoteVerifier],
    witnesses: Iterable[NoteVerifier] = (),
    *,
    min_cosignatures: int = 0,
) -> Checkpoint:
    """The checkpoint of a signed note, once a log key (named as its origin) and at least
    `min_cosignatures` of the given witnesses have signed it.

    Raises:
        NoteError: malformed, unsigned by the log, or short of cosignatures.
    """
    text, sigs = split_note(note)
    cp = Checkpoint.parse(text)
    logs = [v for v in log_keys if v.kind == ED25519]
    if not any(v.name == cp.origin for v in verified_by(text, sigs, logs)):
        raise NoteError(f"the checkpoint of {cp.origin} is not signed by a key trusted for it")
    cosigners = [v for v in witnesses if v.kind == COSIGNATURE]
    got = len(verified_by(text, sigs, cosigners))
    if got < min_cosignatures:
        raise NoteError(
            f"the checkpoint has {got} valid cosignature(s) of the given witnesses; "
            f"{min_cosignatures} are required"
        )
    return cp


def cosignatures(note: str, witnesses: Iterable[NoteVerifier]) -> list[Cosignature]:
    """The valid cosignatures of the given witnesses on a note."""
    text, sigs = split_note(note)
    known = {(v.name, v.key_id): v for v in witnesses if v.kind == COSIGNATURE}
    out = []
    for sig in sigs:
        v = known.get((sig.name, sig.key_id))
        if v is not None and v.verify(text, sig):
            out.append(Cosignature(sig.name, struct.unpack(">Q", sig.blob[:8])[0], sig.line()))
    return out
