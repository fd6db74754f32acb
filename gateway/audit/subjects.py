"""Whose data an exchange touched, kept private: a keyed-hash index of the personal
identification numbers an exchange carried, for "who accessed this citizen's data".

The index holds HMAC-SHA256(key, identifier), never the identifier: without the key a
row says nothing about whom it concerns, and a 12-digit number cannot be found by
hashing every candidate (10^12 of them) because the hash is keyed. The key is 32 random
bytes in the gateway's key store (`Settings.keys_dir/audit-subjects.key`, mode 0600),
made on first use; every gateway and indexer writing the store shares that directory, as
they share the token keys.

Which identifiers: the 12-digit personal identification numbers (CCCD) and the 9-digit
old identity-card numbers (CMND) standing alone in the exchange's path and query string,
and in its request body and the answer the caller got (the first `BODY_SCAN` bytes of
each). The bodies are not in the record, so the exchange step finds their identifiers
(`in_body`) and the audit log's writer replaces them by their keyed hashes before the
event leaves memory (`AuditEvent.subjects`); the store's writer adds those of the path.

Example:
    >>> sorted(identifiers("/r1/x/khai-sinh/049225000123?cmnd=123456789"))
    ['049225000123', '123456789']
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.audit.event import AuditEvent

__all__ = [
    "BODY_SCAN",
    "KEY_FILE",
    "SubjectKey",
    "identifiers",
    "in_body",
    "index_rows",
    "load_subject_key",
]

KEY_FILE = "audit-subjects.key"
BODY_SCAN = 256 << 10  # bytes of a body searched for identifiers
# A run of exactly 12 or exactly 9 digits standing alone: not part of a longer run, of a
# word or of a hyphenated token (a UUID's last group is often 12 digits: a request id
# echoed in an answer was indexed as a citizen's number).
_ID = re.compile(r"(?<![\w-])(\d{12}|\d{9})(?![\w-])")


def identifiers(text: str) -> set[str]:
    """The personal identification numbers standing alone in `text`."""
    return set(_ID.findall(text))


class SubjectKey:
    """The index's HMAC key: `digest(id)` is what the index holds for `id`."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the subject index key must be at least 32 bytes")
        self._key = key

    def digest(self, identifier: str) -> str:
        """Hex HMAC-SHA256 of the identifier, spaces and dots ignored.

        Example:
            >>> SubjectKey(bytes(32)).digest("001 099 012 345") == SubjectKey(bytes(32)).digest(
            ...     "001099012345")
            True
        """
        clean = re.sub(r"[\s.]", "", identifier)
        return hmac.new(self._key, clean.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never the key
        return "SubjectKey(...)"


def load_subject_key(keys_dir: Path) -> SubjectKey:
    """The key in `keys_dir`, made if absent. Made whole under a temporary name and linked
    into place, so two starting workers or replicas agree on one key and neither reads a
    half-written file."""
    path = Path(keys_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{KEY_FILE}.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32).hex().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            with contextlib.suppress(FileExistsError):  # another made it first: theirs
                os.link(draft, path)
        finally:
            draft.unlink()
    return SubjectKey(bytes.fromhex(path.read_text().strip()))


def index_rows(key: SubjectKey, events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    """The index rows (subject, event_id, started_at) of the events' identifiers: those
    in the path, and the keyed hashes the exchange brought of those in its bodies."""
    rows: list[dict[str, Any]] = []
    for e in events:
        subjects = {key.digest(found) for found in identifiers(e.path)} | set(e.subjects)
        rows += [
            {"subject": subject, "event_id": e.event_id, "started_at": e.started_at}
            for subject in sorted(subjects)
        ]
    return rows


def in_body(body: bytes) -> frozenset[str]:
    """The identifiers in the first `BODY_SCAN` bytes of a message body (JSON, XML, a form:
    whatever its shape, a 12- or 9-digit number standing alone).

    Example:
        >>> sorted(in_body(b'{"SoDinhDanh": "001099012345", "MaLoi": "0"}'))
        ['001099012345']
    """
    if not body:
        return frozenset()
    return frozenset(identifiers(body[:BODY_SCAN].decode("utf-8", "replace")))
