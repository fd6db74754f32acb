"""A transparency-log witness (c2sp.org/tlog-witness): it cosigns a log's checkpoint only
if it is consistent with the last one it cosigned for that log, so a log that rewrites
or forks its history cannot get a cosignature for the new one.

`lgsp witness` serves it over HTTP (another province's gateway, the inspectorate, the
national platform); this module is the decision and the state, without HTTP. The state
is one small JSON file, {origin: [size, base64 root]}, replaced atomically under a lock,
so the check of the old size and the update are one step (the spec's race).

Example:
    >>> import tempfile, pathlib
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> log = NoteSigner("gw.example/audit/gw-1", Ed25519PrivateKey.generate())
    >>> w = Witness(NoteSigner("w.example/w1", Ed25519PrivateKey.generate(), COSIGNATURE),
    ...             [log.verifier()], pathlib.Path(tempfile.mkdtemp()) / "state.json")
    >>> note = log.sign_note(Checkpoint("gw.example/audit/gw-1", 1, b"\\1" * 32).text())
    >>> import asyncio; asyncio.run(w.add_checkpoint(f"old 0\\n\\n{note}")).status
    200
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.audit import merkle
from gateway.audit.note import (
    COSIGNATURE,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    split_note,
    verified_by,
)

__all__ = ["SIZE_MEDIA_TYPE", "Answer", "Witness", "add_checkpoint_body", "parse_request"]

SIZE_MEDIA_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63


@dataclass(frozen=True, slots=True)
class Answer:
    """What the witness answers: the status, the body and its media type."""

    status: int
    body: str
    media_type: str = "text/plain"


def add_checkpoint_body(old: int, proof: Iterable[bytes], note: str) -> str:
    """The add-checkpoint request body: `old N`, the proof lines, a blank line, the note."""
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n{note}"


def parse_request(body: str) -> tuple[int, list[bytes], str]:
    """(old size, consistency proof, checkpoint note) of an add-checkpoint body.

    Raises:
        ValueError: not of that form.
    """
    head, sep, note = body.partition("\n\n")
    if not sep:
        raise ValueError("the old size and the proof are followed by a blank line")
    first, *proof_lines = head.split("\n")
    word, _, number = first.partition(" ")
    if word != "old" or not number.isdigit() or (number != "0" and number.startswith("0")):
        raise ValueError("the first line is 'old <size>'")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise ValueError(f"at most {MAX_PROOF_LINES} consistency proof lines")
    try:
        proof = [base64.b64decode(line, validate=True) for line in proof_lines]
    except binascii.Error:
        raise ValueError("a consistency proof line is not base64") from None
    return int(number), proof, note


class Witness:
    """Cosigns checkpoints of the logs it knows (verifier keys named as their origins)."""

    def __init__(self, signer: NoteSigner, logs: Iterable[NoteVerifier], state: Path) -> None:
        if signer.kind != COSIGNATURE:
            raise ValueError("a witness signs cosignatures (type 0x04)")
        self.signer = signer
        self.logs: dict[str, list[NoteVerifier]] = {}
        for v in logs:
            self.logs.setdefault(v.name, []).append(v)
        self.state_path = state
        self._lock = asyncio.Lock()

    def _load(self) -> dict[str, list[object]]:
        if not self.state_path.exists():
            return {}
        data: dict[str, list[object]] = orjson.loads(self.state_path.read_bytes())
        return data

    def _save(self, state: dict[str, list[object]]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    async def add_checkpoint(self, body: str) -> Answer:
        """Decide on one add-checkpoint request, as c2sp.org/tlog-witness says."""
        try:
            old, proof, note = parse_request(body)
            text, sigs = split_note(note)
            cp = Checkpoint.parse(text)
        except ValueError as e:  # NoteError is one
            return Answer(400, f"{e}\n")
        keys = self.logs.get(cp.origin)
        if keys is None:
            return Answer(404, f"unknown log {cp.origin}\n")
        try:
            if not verified_by(text, sigs, keys):
                return Answer(403, "no signature of a key trusted for this log\n")
        except NoteError as e:
            return Answer(403, f"{e}\n")
        if old > cp.size:
            return Answer(400, f"old size {old} is past the checkpoint's {cp.size}\n")
        async with self._lock:
            return self._decide(cp, text, old, proof)

    def _decide(self, cp: Checkpoint, text: str, old: int, proof: list[bytes]) -> Answer:
        state = self._load()
        size, root_text = state.get(cp.origin, [0, ""])
        assert isinstance(size, int) and isinstance(root_text, str)
        if old != size:
            return Answer(409, f"{size}\n", SIZE_MEDIA_TYPE)
        root = base64.b64decode(root_text) if root_text else merkle.EMPTY_ROOT
        if old == cp.size:
            if old and root != cp.root:
                return Answer(409, "same size, another root: the log forked\n")
        elif old and not merkle.verify_consistency(old, cp.size, root, cp.root, proof):
            return Answer(
                422, f"the checkpoint at {cp.size} is not consistent with the one at {old}\n"
            )
        elif not old and proof:
            return Answer(422, "the proof from size 0 is empty\n")
        state[cp.origin] = [cp.size, base64.b64encode(cp.root).decode()]
        self._save(state)
        return Answer(200, self.signer.cosign(text, int(time.time())).line())
