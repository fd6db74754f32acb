"""Offline verification of the proofs the auditor API and `lgsp audit prove` hand out:
nothing but the proof file, the log's public key and, if the policy asks, the witnesses'
keys. No database, no network.

An inclusion proof says: this record (rehashed here) is leaf i of the tree whose root
the instance signed in this checkpoint. A consistency proof says: the tree of the newer
checkpoint extends the older one by appending only; holding any earlier checkpoint, an
auditor thereby learns that nothing before it was rewritten.

Example:
    >>> verify_bundle({"type": "nothing"}, [])
    Traceback (most recent call last):
    ...
    gateway.audit.proofs.ProofFailed: not a proof this gateway makes: 'nothing'
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.audit import merkle
from gateway.audit.chain import event_hash
from gateway.audit.note import Checkpoint, NoteError, NoteVerifier, open_checkpoint

__all__ = ["ProofFailed", "Verified", "verify_bundle"]

INCLUSION_TYPE = "lgsp.audit.inclusion/v1"
CONSISTENCY_TYPE = "lgsp.audit.consistency/v1"


class ProofFailed(ValueError):
    """The proof does not hold; the message says which part."""


@dataclass(frozen=True, slots=True)
class Verified:
    kind: str  # inclusion | consistency
    origin: str
    tree_size: int
    statement: str


def _hashes(values: Sequence[Any]) -> list[bytes]:
    try:
        return [base64.b64decode(str(v), validate=True) for v in values]
    except binascii.Error:
        raise ProofFailed("a proof hash is not base64") from None


def _open(
    note: str, logs: Sequence[NoteVerifier], witnesses: Sequence[NoteVerifier], quorum: int
) -> Checkpoint:
    try:
        return open_checkpoint(note, logs, witnesses, min_cosignatures=quorum)
    except NoteError as e:
        raise ProofFailed(f"checkpoint: {e}") from None


def _inclusion(
    b: Mapping[str, Any], logs: Sequence[NoteVerifier], wit: Sequence[NoteVerifier], q: int
) -> Verified:
    cp = _open(str(b["checkpoint"]), logs, wit, q)
    index, size, digest = int(b["leaf_index"]), int(b["tree_size"]), str(b["event_hash"])
    if size != cp.size:
        raise ProofFailed(f"the proof is for {size} leaves, the checkpoint has {cp.size}")
    record = b.get("record")
    if record is not None:
        if event_hash(record) != digest:
            raise ProofFailed("the record does not hash to the event hash: it was altered")
        if record.get("seq") != index + 1:
            raise ProofFailed(f"the record's seq is {record.get('seq')}, not leaf {index} + 1")
    try:
        leaf = merkle.leaf_hash(bytes.fromhex(digest))
    except ValueError:
        raise ProofFailed("the event hash is not hex") from None
    if not merkle.verify_inclusion(index, size, leaf, _hashes(b["proof"]), cp.root):
        raise ProofFailed(
            f"leaf {index} is not in the tree the checkpoint of {cp.origin} at size {size} signs"
        )
    what = f"event {b.get('event_id')}" + (" (record rehashed)" if record is not None else "")
    return Verified(
        "inclusion", cp.origin, size, f"{what} is leaf {index} of {cp.origin} at size {size}"
    )


def _consistency(
    b: Mapping[str, Any], logs: Sequence[NoteVerifier], wit: Sequence[NoteVerifier], q: int
) -> Verified:
    old = _open(str(b["old_checkpoint"]), logs, [], 0)
    new = _open(str(b["new_checkpoint"]), logs, wit, q)
    if old.origin != new.origin:
        raise ProofFailed(f"the checkpoints are of two logs: {old.origin}, {new.origin}")
    if not merkle.verify_consistency(old.size, new.size, old.root, new.root, _hashes(b["proof"])):
        raise ProofFailed(
            f"the tree at {new.size} does not extend the tree at {old.size}: "
            "the log was rewritten (a fork)"
        )
    return Verified(
        "consistency",
        new.origin,
        new.size,
        f"{new.origin} at size {new.size} extends its tree at size {old.size} by appending only",
    )


def verify_bundle(
    bundle: Mapping[str, Any],
    log_keys: Iterable[NoteVerifier],
    witnesses: Iterable[NoteVerifier] = (),
    *,
    min_cosignatures: int = 0,
) -> Verified:
    """Check an inclusion or consistency proof file.

    Args:
        bundle: the JSON the API or `lgsp audit prove` wrote.
        log_keys: the instances' verifier keys the auditor trusts.
        witnesses: the witnesses' cosignature keys (type 0x04).
        min_cosignatures: how many of them must have cosigned the (newer) checkpoint.

    Raises:
        ProofFailed: saying what does not hold.
    """
    logs, wit = list(log_keys), list(witnesses)
    kind = bundle.get("type")
    try:
        if kind == INCLUSION_TYPE:
            return _inclusion(bundle, logs, wit, min_cosignatures)
        if kind == CONSISTENCY_TYPE:
            return _consistency(bundle, logs, wit, min_cosignatures)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProofFailed):
            raise
        raise ProofFailed(f"the proof file is incomplete or malformed: {e}") from None
    raise ProofFailed(f"not a proof this gateway makes: {kind!r}")
