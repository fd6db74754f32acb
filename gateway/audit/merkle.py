"""RFC 9162 Merkle tree hashing and proofs, written out because it is the log's hot core.

Leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right); the tree of
n leaves splits at the largest power of two below n (RFC 9162 §2.1.1). Proofs are built
as the *ranges* of leaves whose subtree hashes make them (`inclusion_ranges`,
`consistency_ranges`), so that a store can answer each range from what it keeps
(complete subtrees, leaves) without holding the tree; the verifiers follow RFC 9162
§2.1.3.2 and §2.1.4.2 step by step and need nothing but the proof and the roots.

Why by hand: pymerkle, the maintained Python Merkle library, has its own proof format
(sign-annotated paths over its own storage backends, synchronous), not RFC 9162's bare
audit paths that C2SP witnesses and CT tooling exchange; the rest of what exists on
PyPI is unmaintained or verifies inclusion only. The whole of it is ~150 lines, tested
against the Certificate Transparency vectors (tests/test_audit_merkle.py).

Example:
    >>> leaves = [leaf_hash(bytes([i])) for i in range(5)]
    >>> proof = inclusion_proof(2, leaves)
    >>> verify_inclusion(2, 5, leaves[2], proof, root_of(leaves))
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "ProofError",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_from_inclusion",
    "root_of",
    "split",
    "subtrees",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_SIZE = 32


class ProofError(ValueError):
    """A proof that cannot be checked as given (wrong length, sizes out of order)."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where RFC 9162 splits the tree."""
    return 1 << ((n - 1).bit_length() - 1)


def subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """The complete subtrees, largest first, whose right fold is the hash of the leaves
    [lo, hi) as RFC 9162 splits them (lo must be aligned to the range's split)."""
    out: list[tuple[int, int]] = []
    while hi - lo > 0:
        n = hi - lo
        k = n if n & (n - 1) == 0 else split(n)
        out.append((lo, lo + k))
        lo += k
    return out


def range_hash(lo: int, hi: int, complete: Callable[[int, int], bytes]) -> bytes:
    """The hash of the leaves [lo, hi), given the hash of each complete subtree."""
    parts = [complete(a, b) for a, b in subtrees(lo, hi)]
    digest = parts[-1]
    for part in reversed(parts[:-1]):
        digest = node_hash(part, digest)
    return digest


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of the given leaf hashes (the empty tree's is SHA-256 of nothing)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = split(n)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes are the audit path of leaf `index` in a tree of
    `size` leaves, in the order RFC 9162's PATH lists them (the leaf's sibling first)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes are the consistency proof from `old` to `new` leaves,
    in RFC 9162's SUBPROOF order."""
    if not 0 <= old <= new:
        raise ProofError(f"no consistency proof from {old} to {new} leaves")
    if old == 0 or old == new:
        return []
    out: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, new, old, True
    while m != hi - lo:
        k = split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        out.append((lo, hi))
    out.reverse()
    return out


def _over(leaves: Sequence[bytes]) -> Callable[[int, int], bytes]:
    return lambda lo, hi: root_of(leaves[lo:hi])


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf `index` in the tree of all `leaves`."""
    return [range_hash(a, b, _over(leaves)) for a, b in inclusion_ranges(index, len(leaves))]


def consistency_proof(old: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The consistency proof from the first `old` leaves to all of `leaves`."""
    return [range_hash(a, b, _over(leaves)) for a, b in consistency_ranges(old, len(leaves))]


def _check(proof: Sequence[bytes]) -> None:
    if any(len(h) != HASH_SIZE for h in proof):
        raise ProofError("a proof hash is not 32 bytes")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2).

    Raises:
        ProofError: the index is outside the tree, or the proof has the wrong length.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    _check(proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`."""
    try:
        return root_from_inclusion(index, size, leaf, proof) == root
    except ProofError:
        return False


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether the tree of `new` leaves (root `new_root`) extends the tree of `old` leaves
    (root `old_root`) by appending only (RFC 9162 §2.1.4.2)."""
    if not 0 <= old <= new or any(len(h) != HASH_SIZE for h in proof):
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


@dataclass
class Frontier:
    """The right edge of a growing tree: the hashes of its complete subtrees, largest
    first (one per bit of `size`). Appending a leaf is O(1) amortised and names each
    subtree it completes, so a store can keep them for proofs.

    Example:
        >>> f = Frontier()
        >>> done = [f.append(leaf_hash(b"a")), f.append(leaf_hash(b"b"))]
        >>> [(level, index) for level, index, _ in done[1]]
        [(1, 0)]
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf; return the subtrees it completed as (level, index, hash), where
        the subtree covers leaves [index * 2**level, (index + 1) * 2**level)."""
        completed: list[tuple[int, int, bytes]] = []
        self.hashes.append(leaf)
        n, level = self.size, 0
        while n & 1:
            right = self.hashes.pop()
            left = self.hashes.pop()
            self.hashes.append(node_hash(left, right))
            n, level = n >> 1, level + 1
            completed.append((level, (self.size + 1 >> level) - 1, self.hashes[-1]))
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        digest = self.hashes[-1]
        for part in reversed(self.hashes[:-1]):
            digest = node_hash(part, digest)
        return digest
