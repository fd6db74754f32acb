"""Each instance's audit log as a transparency log: a Merkle tree over its chain, signed
tree heads (C2SP checkpoints), and the inclusion and consistency proofs an auditor checks
offline (gateway/audit/proofs.py).

Leaf i of an instance's tree is the event with seq i + 1; its data is the event's 32-byte
canonical hash (gateway/audit/chain.py), so the chain order is the leaf order and a leaf
proves the whole record. `TreeLog.advance` runs beside the writer, never on the request
path: it grows the tree over the contiguous stored chain from the last head's right edge,
keeps every complete subtree of 256 leaves or more (`AuditTreeNode`), and signs a new
checkpoint with the instance's audit key. A proof then reads O(log n) stored subtrees and
at most a few hundred leaves, whatever the size of the log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit import merkle
from gateway.audit.chain import AuditSigner
from gateway.audit.event import FIELD_NAMES
from gateway.audit.note import Checkpoint
from gateway.audit.proofs import CONSISTENCY_TYPE, INCLUSION_TYPE
from gateway.core.logging import log
from gateway.store.models import AuditCosignature, AuditRecord, AuditTreeHead, AuditTreeNode

__all__ = [
    "NODE_LEVEL",
    "ProofUnavailable",
    "TreeLog",
    "TreeLogTask",
    "consistency_bundle",
    "consistency_hashes",
    "head_at",
    "head_dict",
    "inclusion_bundles",
    "latest_head",
    "log_origin",
    "record_fields",
    "signed_note",
]

NODE_LEVEL = 8  # subtrees of 2**8 = 256 leaves and more are stored
_BATCH = 5000
MAX_PROOFS = 20  # events per inclusion request


class ProofUnavailable(LookupError):
    """No proof can be given: no such event or checkpoint, or not yet covered by one."""


def log_origin(public_url: str, instance: str) -> str:
    """The log's name, `<gateway host>/audit/<instance>`: a schema-less URL, unique per
    instance, with no spaces or '+' (signed-note key names may hold neither)."""
    host = urlsplit(public_url).netloc or "lgsp.local"
    safe = "".join(c if c.isalnum() or c in "-_.:" else "_" for c in instance)
    return f"{host}/audit/{safe}"


def _leaf(event_hash: str) -> bytes:
    return merkle.leaf_hash(bytes.fromhex(event_hash))


@dataclass
class TreeLog:
    """Grows one instance's tree over its stored chain and signs each new head."""

    sessions: async_sessionmaker[AsyncSession]
    signer: AuditSigner
    origin: str
    interval: float = 60.0
    # Set by gateway/audit/witnessing.py's user: called after each round.
    after_round: Callable[[], Awaitable[None]] | None = None

    async def advance(self) -> AuditTreeHead | None:
        """Extend the tree over whatever the store holds past the last head (up to a gap)
        and sign the new head; None when there is nothing new."""
        instance = self.signer.instance
        async with self.sessions() as s, s.begin():
            last = await latest_head(s, instance)
            frontier = merkle.Frontier()
            if last is not None:
                frontier = merkle.Frontier(last.size, [bytes.fromhex(h) for h in last.frontier])
            start = frontier.size
            while await self._grow(s, instance, frontier):
                pass
            if frontier.size == start:
                return None
            root = frontier.root()
            text = Checkpoint(self.origin, frontier.size, root).text()
            head = AuditTreeHead(
                instance=instance,
                origin=self.origin,
                size=frontier.size,
                root=root.hex(),
                note=self.signer.note_signer(self.origin).sign_note(text),
                frontier=[h.hex() for h in frontier.hashes],
                key_id=self.signer.key_id,
                signed_at=datetime.now(UTC),
            )
            s.add(head)
            try:
                await s.flush()
            except IntegrityError:  # another process of the same instance signed it
                return None
        return head

    async def _grow(self, s: AsyncSession, instance: str, frontier: merkle.Frontier) -> bool:
        rows = (
            await s.execute(
                select(AuditRecord.seq, AuditRecord.hash)
                .where(
                    AuditRecord.instance == instance,
                    AuditRecord.seq > frontier.size,
                    AuditRecord.seq <= frontier.size + _BATCH,
                )
                .order_by(AuditRecord.seq, AuditRecord.id)
            )
        ).all()
        nodes: list[dict[str, Any]] = []
        grew = False
        for seq, digest in rows:
            if seq == frontier.size:  # a second event claiming a seq: the first one counts
                continue
            if seq != frontier.size + 1 or digest is None:
                break  # a gap: the tree waits for the missing event
            for level, position, h in frontier.append(_leaf(digest)):
                if level >= NODE_LEVEL:
                    nodes.append(
                        {
                            "instance": instance,
                            "level": level,
                            "position": position,
                            "hash": h.hex(),
                        }
                    )
            grew = True
        if nodes:
            s.add_all(AuditTreeNode(**n) for n in nodes)
        return grew and len(rows) == _BATCH

    async def run(self) -> None:
        """Advance every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.advance_logged()

    async def advance_logged(self) -> None:
        try:
            head = await self.advance()
        except Exception:  # the next round tries again; the chain is unaffected
            log.exception("audit tree head not signed", instance=self.signer.instance)
            return
        if head is not None:
            log.info("audit tree head signed", instance=head.instance, size=head.size)
        if self.after_round is not None:
            try:
                await self.after_round()
            except Exception:  # the witnesses are asked again next round
                log.exception("audit witnesses not asked", instance=self.signer.instance)


@dataclass
class TreeLogTask:
    """The tree log running in the background of a gateway process."""

    tree: TreeLog
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.tree.run(), name="audit-tree")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.tree.advance_logged()  # what the writer flushed last


# -- reading heads ----------------------------------------------------------------------------


async def latest_head(s: AsyncSession, instance: str) -> AuditTreeHead | None:
    stmt = select(AuditTreeHead).where(AuditTreeHead.instance == instance)
    return await s.scalar(stmt.order_by(AuditTreeHead.size.desc()).limit(1))


async def head_at(s: AsyncSession, instance: str, size: int | None) -> AuditTreeHead:
    """The head of exactly `size` leaves, or the latest.

    Raises:
        ProofUnavailable: there is none.
    """
    if size is None:
        head = await latest_head(s, instance)
    else:
        head = await s.scalar(
            select(AuditTreeHead).where(
                AuditTreeHead.instance == instance, AuditTreeHead.size == size
            )
        )
    if head is None:
        what = "any" if size is None else f"one of {size} leaves"
        raise ProofUnavailable(f"instance '{instance}' has not signed {what} tree head")
    return head


async def signed_note(s: AsyncSession, head: AuditTreeHead) -> str:
    """The checkpoint with the log's signature and every cosignature collected."""
    lines = (
        await s.scalars(
            select(AuditCosignature.line)
            .where(AuditCosignature.tree_head_id == head.id)
            .order_by(AuditCosignature.id)
        )
    ).all()
    return head.note + "".join(lines)


# -- proofs -----------------------------------------------------------------------------------


async def _leaves(s: AsyncSession, instance: str, lo: int, hi: int) -> list[bytes]:
    rows = (
        await s.execute(
            select(AuditRecord.seq, AuditRecord.hash)
            .where(
                AuditRecord.instance == instance,
                AuditRecord.seq > lo,
                AuditRecord.seq <= hi,
            )
            .order_by(AuditRecord.seq, AuditRecord.id)
        )
    ).all()
    out: list[bytes] = []
    for seq, digest in rows:
        if seq == lo + len(out) + 1 and digest is not None:
            out.append(_leaf(digest))
    if len(out) != hi - lo:
        raise ProofUnavailable(
            f"leaves {lo}..{hi - 1} of '{instance}' are not all stored (purged or missing)"
        )
    return out


async def _complete(s: AsyncSession, instance: str, lo: int, hi: int) -> bytes:
    level = (hi - lo).bit_length() - 1
    if level >= NODE_LEVEL:
        stored = await s.scalar(
            select(AuditTreeNode.hash).where(
                AuditTreeNode.instance == instance,
                AuditTreeNode.level == level,
                AuditTreeNode.position == lo >> level,
            )
        )
        if stored is not None:
            return bytes.fromhex(stored)
    return merkle.root_of(await _leaves(s, instance, lo, hi))


async def _range(s: AsyncSession, instance: str, lo: int, hi: int) -> bytes:
    parts = [await _complete(s, instance, a, b) for a, b in merkle.subtrees(lo, hi)]
    digest = parts[-1]
    for part in reversed(parts[:-1]):
        digest = merkle.node_hash(part, digest)
    return digest


async def _hashes(s: AsyncSession, instance: str, ranges: Sequence[tuple[int, int]]) -> list[str]:
    return [base64.b64encode(await _range(s, instance, a, b)).decode() for a, b in ranges]


async def consistency_hashes(s: AsyncSession, instance: str, old: int, new: int) -> list[bytes]:
    """The consistency proof from the first `old` leaves to the first `new`, from what the
    store holds (no head of size `old` is needed: a witness may name any size)."""
    ranges = merkle.consistency_ranges(old, new)
    return [await _range(s, instance, a, b) for a, b in ranges]


def record_fields(row: AuditRecord) -> dict[str, Any]:
    """The event's hashed fields, JSON-ready: what an auditor rehashes to get the leaf."""
    fields = {name: getattr(row, name) for name in FIELD_NAMES}
    out: dict[str, Any] = orjson.loads(orjson.dumps(fields))
    return out


async def inclusion_bundles(
    s: AsyncSession,
    *,
    event_id: str | None = None,
    request_id: str | None = None,
    size: int | None = None,
    with_record: bool = True,
    client: str | None = None,
) -> list[dict[str, Any]]:
    """An inclusion proof for the event (or each event of the request: an intent and its
    outcome are two leaves), against the head of `size` leaves or the latest head.

    Raises:
        ProofUnavailable: no such event, no head, or the head does not cover it yet.
    """
    stmt = select(AuditRecord).where(AuditRecord.seq.is_not(None))
    if event_id is not None:
        stmt = stmt.where(AuditRecord.event_id == event_id)
    if request_id is not None:
        stmt = stmt.where(AuditRecord.request_id == request_id)
    if client is not None:  # a caller's receipt: its own exchanges only
        stmt = stmt.where(AuditRecord.client_code == client)
    # A request id is the caller's choice and may repeat: the first few events only.
    rows = list((await s.scalars(stmt.order_by(AuditRecord.id).limit(MAX_PROOFS))).all())
    if not rows:
        raise ProofUnavailable("no chained audit record matches")
    out = []
    for row in rows:
        assert row.seq is not None and row.hash is not None
        head = await head_at(s, row.instance, size)
        if row.seq > head.size:
            raise ProofUnavailable(
                f"event {row.event_id} (leaf {row.seq - 1}) is not yet in a signed tree head "
                f"(the latest covers {head.size} leaves); ask again after the next one, "
                "signed every LGSP_AUDIT_CHECKPOINT_SECONDS"
            )
        index = row.seq - 1
        bundle: dict[str, Any] = {
            "type": INCLUSION_TYPE,
            "instance": row.instance,
            "event_id": row.event_id,
            "request_id": row.request_id,
            "leaf_index": index,
            "event_hash": row.hash,
            "tree_size": head.size,
            "proof": await _hashes(s, row.instance, merkle.inclusion_ranges(index, head.size)),
            "checkpoint": await signed_note(s, head),
        }
        if with_record:
            bundle["record"] = record_fields(row)
        out.append(bundle)
    return out


async def consistency_bundle(
    s: AsyncSession, instance: str, old: int, new: int | None = None
) -> dict[str, Any]:
    """A consistency proof from the head of `old` leaves to the head of `new` (or the
    latest), with both checkpoints.

    Raises:
        ProofUnavailable: either head is missing, or old is past new.
    """
    head_old, head_new = await head_at(s, instance, old), await head_at(s, instance, new)
    if head_old.size > head_new.size:
        raise ProofUnavailable(f"the old head ({head_old.size}) is past the new ({head_new.size})")
    ranges = merkle.consistency_ranges(head_old.size, head_new.size)
    return {
        "type": CONSISTENCY_TYPE,
        "instance": instance,
        "old_size": head_old.size,
        "new_size": head_new.size,
        "proof": await _hashes(s, instance, ranges),
        "old_checkpoint": await signed_note(s, head_old),
        "new_checkpoint": await signed_note(s, head_new),
    }


def head_dict(head: AuditTreeHead, note: str, vkey: str | None) -> Mapping[str, Any]:
    return {
        "instance": head.instance,
        "origin": head.origin,
        "size": head.size,
        "root": base64.b64encode(bytes.fromhex(head.root)).decode(),
        "signed_at": head.signed_at.isoformat(),
        "checkpoint": note,
        "log_key": vkey,
    }
