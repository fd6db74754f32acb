"""RFC 9162 tree hashing and proofs against the Certificate Transparency test vectors
(the 8-leaf tree of RFC 6962's reference tests, as kept in transparency-dev/merkle):
roots for every size, the published inclusion and consistency proofs, and every
corruption of them refused."""

from __future__ import annotations

import hashlib
import random

import pytest

from gateway.audit import merkle
from gateway.audit.merkle import (
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# (leaf number from 1, tree size, audit path)
INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, consistency proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
HASHED = [leaf_hash(d) for d in LEAVES]
SOME = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def flipped(proof: list[bytes], i: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ 8]) + out[i][1:]
    return out


def test_roots_of_every_size_match_the_vectors() -> None:
    assert root_of([]) == hashlib.sha256(b"").digest()
    for n in range(1, 9):
        assert root_of(HASHED[:n]) == ROOTS[n - 1], n


def test_a_frontier_grows_to_the_same_roots_and_names_the_subtrees_it_completes() -> None:
    f = Frontier()
    completed = []
    for n, leaf in enumerate(HASHED, start=1):
        completed += f.append(leaf)
        assert f.root() == ROOTS[n - 1]
    # Level 1: [0,2) [2,4) [4,6) [6,8); level 2: [0,4) [4,8); level 3: all eight.
    assert sorted((lvl, i) for lvl, i, _ in completed) == [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 0),
        (2, 1),
        (3, 0),
    ]
    by_node = {(lvl, i): h for lvl, i, h in completed}
    assert by_node[(3, 0)] == ROOTS[7]
    assert by_node[(2, 1)] == root_of(HASHED[4:8])


@pytest.mark.parametrize(("number", "size", "path"), INCLUSION)
def test_inclusion_proofs_are_the_published_ones_and_verify(
    number: int, size: int, path: list[str]
) -> None:
    proof = [bytes.fromhex(h) for h in path]
    index, leaf, root = number - 1, HASHED[number - 1], ROOTS[size - 1]
    assert inclusion_proof(index, HASHED[:size]) == proof
    assert verify_inclusion(index, size, leaf, proof, root)
    wrong = [
        (index - 1, size, leaf, proof, root),
        (index + 1, size, leaf, proof, root),
        (index ^ 2, size, leaf, proof, root),
        (index, size * 2, leaf, proof, root),
        (index, size // 2, leaf, proof, root),
        (index, size, leaf_hash(b"WrongLeaf"), proof, root),
        (index, size, leaf, proof, merkle.EMPTY_ROOT),
        (index, size, leaf, proof, SOME),
        (index, size, leaf, [*proof, root], root),
        (index, size, leaf, [root, *proof], root),
        (index, size, leaf, [*proof, b""], root),
    ]
    wrong += [(index, size, leaf, flipped(proof, i), root) for i in range(len(proof))]
    if proof:
        wrong.append((index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        wrong.append((index, size, leaf, [proof[0], SOME, *proof[1:]], root))
    for args in wrong:
        assert not verify_inclusion(*args), args[:2]


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_consistency_proofs_are_the_published_ones_and_verify(
    old: int, new: int, path: list[str]
) -> None:
    proof = [bytes.fromhex(h) for h in path]
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert consistency_proof(old, HASHED[:new]) == proof
    assert verify_consistency(old, new, r1, r2, proof)
    if not proof:
        return
    wrong = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, SOME, r2, proof),
        (old, new, r1, SOME, proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    wrong += [(old, new, r1, r2, flipped(proof, i)) for i in range(len(proof))]
    for args in wrong:
        assert not verify_consistency(*args), args[:2]


def test_edge_sizes_follow_rfc_9162() -> None:
    r = ROOTS[0]
    assert verify_consistency(0, 0, r, r, [])
    assert verify_consistency(0, 5, SOME, ROOTS[4], [])  # every tree extends the empty one
    assert not verify_consistency(0, 5, SOME, ROOTS[4], [SOME])
    assert not verify_consistency(1, 1, r, SOME, [])  # same size, other root: a fork
    assert not verify_consistency(2, 1, ROOTS[1], r, [])  # time travel
    assert not verify_inclusion(0, 0, HASHED[0], [], merkle.EMPTY_ROOT)
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_ranges(3, 3)


def test_every_proof_of_random_trees_verifies() -> None:
    rng = random.Random(9162)
    for size in [*range(1, 40), 64, 65, 100, 255, 256, 257]:
        leaves = [leaf_hash(rng.randbytes(8)) for _ in range(size)]
        root = root_of(leaves)
        for index in {0, size - 1, rng.randrange(size)}:
            assert verify_inclusion(
                index, size, leaves[index], inclusion_proof(index, leaves), root
            )
        for old in {1, size // 2 or 1, rng.randrange(1, size + 1), size}:
            proof = consistency_proof(old, leaves)
            assert verify_consistency(old, size, root_of(leaves[:old]), root, proof)
