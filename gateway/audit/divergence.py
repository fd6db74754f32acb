"""Does the store still hold the log a (witness-cosigned) checkpoint signed? And if not,
where does it part from it?

The store's tree over its first n leaves is rebuilt and its root compared with the
checkpoint's. A root alone cannot say which leaf changed; a copy of the records the
auditor kept (an export, `lgsp audit export --unmask`, from before) can: its leaves
rebuild the checkpoint's root — which proves the copy is the log as signed — and the
first leaf where the store differs from it is named, with the fields that differ. As
the chain links every event to the one before, a rewrite from event k on changes every
leaf from k: the first divergent leaf is where the history was rewritten.

Example:
    >>> first_difference([b"a", b"b"], [b"a", b"c"])
    1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import merkle
from gateway.audit.event import FIELD_NAMES
from gateway.audit.note import Checkpoint
from gateway.audit.tlog import record_fields
from gateway.store.models import AuditRecord

__all__ = ["TreeReport", "first_difference", "verify_against_checkpoint"]

_NOT_COMPARED = {"hash", "prev_hash"}


@dataclass
class TreeReport:
    instance: str
    size: int
    matches: bool
    detail: str
    first_divergent_leaf: int | None = None
    event_id: str | None = None
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name: (kept, stored)


def first_difference(a: Sequence[bytes], b: Sequence[bytes]) -> int | None:
    """The first index where two leaf lists differ (or one ends), None if equal."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


async def _stored(s: AsyncSession, instance: str, n: int) -> list[str]:
    """The stored chain's hashes, seq 1 to n, up to the first gap."""
    rows = await s.stream(
        select(AuditRecord.seq, AuditRecord.hash)
        .where(AuditRecord.instance == instance, AuditRecord.seq.between(1, n))
        .order_by(AuditRecord.seq, AuditRecord.id)
        .execution_options(yield_per=5000)
    )
    out: list[str] = []
    async for seq, digest in rows:
        if seq == len(out) + 1 and digest is not None:
            out.append(digest)
    return out


def _leaves(hashes: Iterable[str]) -> list[bytes]:
    return [merkle.leaf_hash(bytes.fromhex(h)) for h in hashes]


async def verify_against_checkpoint(
    s: AsyncSession,
    instance: str,
    checkpoint: Checkpoint,
    kept: Sequence[Mapping[str, Any]] | None = None,
) -> TreeReport:
    """Compare the store's log of `instance` with a checkpoint already verified (its
    signatures checked by the caller), and with the records the auditor kept, if any."""
    n = checkpoint.size
    hashes = await _stored(s, instance, n)
    stored = _leaves(hashes)
    if len(stored) == n and merkle.root_of(stored) == checkpoint.root:
        return TreeReport(instance, n, True, f"the store holds the log the checkpoint signs at {n}")
    why = (
        f"the store holds only {len(stored)} of the {n} leaves"
        if len(stored) < n
        else f"the store's tree at {n} has another root: the log was rewritten"
    )
    report = TreeReport(instance, n, False, why)
    if kept is None:
        return report
    mine = sorted((r for r in kept if r.get("instance") == instance), key=lambda r: r["seq"])
    mine = [r for r in mine if 1 <= int(r["seq"]) <= n]
    copy = _leaves(str(r["hash"]) for r in mine)
    if len(copy) != n or merkle.root_of(copy) != checkpoint.root:
        report.detail += "; the records kept are not the log the checkpoint signs either"
        return report
    i = first_difference(copy, stored)
    if i is None:  # cannot be: the roots differ
        return report
    report.first_divergent_leaf, report.event_id = i, str(mine[i].get("event_id"))
    row = await s.scalar(
        select(AuditRecord)
        .where(AuditRecord.instance == instance, AuditRecord.seq == i + 1)
        .order_by(AuditRecord.id)
        .limit(1)
    )
    if row is not None:
        now = record_fields(row)
        report.fields = {
            k: (mine[i].get(k), now.get(k))
            for k in FIELD_NAMES
            if k not in _NOT_COMPARED and mine[i].get(k) != now.get(k)
        }
    changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in report.fields.items())
    report.detail += f"; the first divergent leaf is {i} (seq {i + 1}, event {report.event_id})" + (
        f": {changed}" if changed else ": missing from the store"
    )
    return report
