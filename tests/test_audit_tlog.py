"""The audit log as a transparency log: C2SP signed notes and checkpoints (checked against
Go's sumdb/note known answer), and each instance's Merkle tree grown over the stored
chain, on SQLite and PostgreSQL, with proofs an auditor verifies offline; then an
operator who rewrites history with the instance's own key, caught by an earlier
checkpoint."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select

from gateway.audit import merkle
from gateway.audit.chain import AuditSigner, Chain, event_hash
from gateway.audit.divergence import verify_against_checkpoint
from gateway.audit.event import FIELD_NAMES as _FIELDS
from gateway.audit.note import (
    COSIGNATURE,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    cosignatures,
    open_checkpoint,
    split_note,
)
from gateway.audit.proofs import ProofFailed, verify_bundle
from gateway.audit.store import AuditStore
from gateway.audit.tlog import (
    ProofUnavailable,
    TreeLog,
    consistency_bundle,
    inclusion_bundles,
    log_origin,
    record_fields,
)
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditRecord, AuditTreeHead, AuditTreeNode
from tests.test_audit_chain import INSTANCE, make_event

# golang.org/x/mod/sumdb/note's documented example: key, text and signed note.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F"
    "FYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ORIGIN = "gateway.test/audit/gw-hanam-1"


# -- signed notes -----------------------------------------------------------------------------


def test_signed_notes_match_go_sumdb_note_byte_for_byte() -> None:
    signer = NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(GO_SEED))
    assert signer.verifier().vkey() == GO_VKEY
    assert signer.sign_note(GO_TEXT) == GO_NOTE
    text, [sig] = split_note(GO_NOTE)
    assert text == GO_TEXT
    assert NoteVerifier.parse(GO_VKEY).verify(text, sig)
    with pytest.raises(NoteError, match="key id"):
        NoteVerifier.parse(GO_VKEY.replace("c74f20a3", "c74f20a4"))


def test_a_checkpoint_opens_only_with_its_logs_key_and_the_cosignatures_asked() -> None:
    log_key, w1, w2 = (Ed25519PrivateKey.generate() for _ in range(3))
    log = NoteSigner(ORIGIN, log_key)
    witness1 = NoteSigner("ubnd.hanam.gov.vn/witness", w1, COSIGNATURE)
    witness2 = NoteSigner("ndxp.gov.vn/witness", w2, COSIGNATURE)
    text = Checkpoint(ORIGIN, 20852163, bytes(range(32))).text()
    assert text == f"{ORIGIN}\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    note = log.sign_note(text) + witness1.cosign(text, 1764720000).line()

    cp = open_checkpoint(note, [log.verifier()], [witness1.verifier()], min_cosignatures=1)
    assert (cp.origin, cp.size, cp.root) == (ORIGIN, 20852163, bytes(range(32)))
    [co] = cosignatures(note, [witness1.verifier(), witness2.verifier()])
    assert (co.witness, co.timestamp) == ("ubnd.hanam.gov.vn/witness", 1764720000)
    # A witness key's vkey (type 0x04) round-trips.
    assert NoteVerifier.parse(witness1.verifier().vkey()) == witness1.verifier()

    with pytest.raises(NoteError, match=r"1 valid cosignature.*2 are required"):
        open_checkpoint(
            note,
            [log.verifier()],
            [witness1.verifier(), witness2.verifier()],
            min_cosignatures=2,
        )
    stranger = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(NoteError, match="not signed by a key trusted"):
        open_checkpoint(note, [stranger.verifier()])
    # A known key's signature that fails rejects the note (a changed size, here).
    forged = note.replace("\n20852163\n", "\n20852164\n")
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(forged, [log.verifier()])
    for bad in ("no blank line\n", f"{text}\n\u2014 x\n", f"{text}\n", "a\x07\n\n\u2014 x AAAA\n"):
        with pytest.raises(NoteError):
            split_note(bad)


def test_the_origin_is_a_key_name_whatever_the_instance_is_called() -> None:
    assert log_origin("https://lgsp.hanam.gov.vn", "gw 1+a") == "lgsp.hanam.gov.vn/audit/gw_1_a"
    assert log_origin("", "gw-1") == "lgsp.local/audit/gw-1"


# -- the tree over the store ------------------------------------------------------------------


@pytest.fixture
async def store(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    signer = AuditSigner(tmp_path / "keys", INSTANCE)
    audit = AuditStore(sessions, source="gateway")
    await audit.register_key(signer)
    yield sessions, audit, signer, TreeLog(sessions, signer, ORIGIN)
    await engine.dispose()


async def ingest(audit: AuditStore, chain: Chain, n: int) -> None:
    events = [make_event(chain.seq + k) for k in range(n)]
    for e in events:
        chain.link(e)
    await audit.ingest(events)


async def test_the_tree_grows_over_the_chain_and_its_proofs_verify_offline(store) -> None:  # type: ignore[no-untyped-def]
    sessions, audit, signer, tree = store
    log_key = signer.note_signer(ORIGIN).verifier()
    chain = Chain(INSTANCE)
    assert await tree.advance() is None  # nothing to sign yet
    await ingest(audit, chain, 600)
    head = await tree.advance()
    assert head is not None and head.size == 600
    assert await tree.advance() is None  # no new leaves, no new head
    async with sessions() as s:
        leaves = [
            merkle.leaf_hash(bytes.fromhex(h))
            for h in (await s.scalars(select(AuditRecord.hash).order_by(AuditRecord.seq))).all()
        ]
        nodes = (await s.execute(select(AuditTreeNode.level, AuditTreeNode.position))).all()
    assert bytes.fromhex(head.root) == merkle.root_of(leaves)
    # The complete subtrees of 256 and 512 leaves are kept for proofs.
    assert sorted(nodes) == [(8, 0), (8, 1), (9, 0)]
    cp = open_checkpoint(head.note, [log_key])
    assert (cp.origin, cp.size) == (ORIGIN, 600)

    for seq in (1, 256, 257, 600):
        async with sessions() as s:
            [bundle] = await inclusion_bundles(s, request_id=f"req-{seq - 1}")
        assert bundle["proof"] == [
            base64.b64encode(h).decode() for h in merkle.inclusion_proof(seq - 1, leaves)
        ]
        done = verify_bundle(bundle, [log_key])
        assert done.statement == (
            f"event {bundle['event_id']} (record rehashed) is leaf {seq - 1} of {ORIGIN} "
            "at size 600"
        )

    # A record altered after the fact no longer hashes to its leaf.
    bundle["record"]["status"] = 500
    with pytest.raises(ProofFailed, match="altered"):
        verify_bundle(bundle, [log_key])
    # A proof against a key the auditor does not hold proves nothing.
    other = NoteSigner(ORIGIN, Ed25519PrivateKey.generate()).verifier()
    bundle["record"]["status"] = 200
    with pytest.raises(ProofFailed, match="not signed by a key trusted"):
        verify_bundle(bundle, [other])

    await ingest(audit, chain, 100)
    async with sessions() as s:
        with pytest.raises(ProofUnavailable, match="not yet in a signed tree head"):
            await inclusion_bundles(s, request_id="req-650")
    assert (await tree.advance()).size == 700
    async with sessions() as s:
        grown = await consistency_bundle(s, INSTANCE, 600)
        [late] = await inclusion_bundles(s, request_id="req-650", size=700)
        with pytest.raises(ProofUnavailable, match="one of 650 leaves"):
            await consistency_bundle(s, INSTANCE, 650)
    assert verify_bundle(grown, [log_key]).statement == (
        f"{ORIGIN} at size 700 extends its tree at size 600 by appending only"
    )
    assert verify_bundle(late, [log_key]).tree_size == 700


async def test_the_tree_waits_at_a_gap_in_the_chain(store) -> None:  # type: ignore[no-untyped-def]
    _, audit, _, tree = store
    chain = Chain(INSTANCE)
    events = [make_event(k) for k in range(10)]
    for e in events:
        chain.link(e)
    await audit.ingest(events[:4] + events[6:])
    assert (await tree.advance()).size == 4
    await audit.ingest(events[4:6])  # the late events arrive
    assert (await tree.advance()).size == 10


async def test_a_rewritten_history_fails_against_an_earlier_checkpoint(store) -> None:  # type: ignore[no-untyped-def]
    """The malicious operator: holds the database and the instance key, alters record 10,
    recomputes every later hash and link, rebuilds the tree and signs it again. Everything
    the store says is consistent with itself; the checkpoint an auditor kept is not."""
    sessions, audit, signer, tree = store
    log_key = signer.note_signer(ORIGIN).verifier()
    chain = Chain(INSTANCE)
    await ingest(audit, chain, 300)
    held = (await tree.advance()).note  # what the auditor (or a witness) kept
    async with sessions() as s:
        rows = (await s.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all()
        kept = [record_fields(r) for r in rows]  # and the copy of the log they kept
        held_cp = open_checkpoint(held, [log_key])
        assert (await verify_against_checkpoint(s, INSTANCE, held_cp)).matches

    async with sessions() as s, s.begin():
        rows = list((await s.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all())
        prev = rows[8].hash
        for row in rows[9:]:
            if row.seq == 10:
                row.status = 404  # "that request was refused, we never answered it"
            row.prev_hash = prev
            row.hash = event_hash({n: getattr(row, n) for n in _FIELDS})
            prev = row.hash
        await s.execute(delete(AuditTreeNode))
        await s.execute(delete(AuditTreeHead))
    await ingest(audit, Chain(INSTANCE, 300, prev), 20)
    forged = await tree.advance()
    assert forged is not None and forged.size == 320
    # The forged head is well signed with the instance's own key...
    assert open_checkpoint(forged.note, [log_key]).size == 320
    async with sessions() as s:
        [proof] = await inclusion_bundles(s, request_id="req-9")
    assert verify_bundle(proof, [log_key]).tree_size == 320
    # ...but nothing links it to what was signed before: the best proof the forged
    # store can give from 300 to 320, checked against the checkpoint the auditor held.
    leaves = await _leaves(sessions)
    bundle = {
        "type": "lgsp.audit.consistency/v1",
        "old_checkpoint": held,
        "new_checkpoint": forged.note,
        "proof": [base64.b64encode(h).decode() for h in merkle.consistency_proof(300, leaves)],
    }
    with pytest.raises(ProofFailed, match=r"does not extend the tree at 300.*rewritten"):
        verify_bundle(bundle, [log_key])
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(AuditTreeHead)) == 1
        # On the host, against the checkpoint held: rewritten; with the copy kept, where.
        alone = await verify_against_checkpoint(s, INSTANCE, held_cp)
        found = await verify_against_checkpoint(s, INSTANCE, held_cp, kept)
    assert not alone.matches and "another root: the log was rewritten" in alone.detail
    assert alone.first_divergent_leaf is None
    assert (found.first_divergent_leaf, found.event_id) == (9, kept[9]["event_id"])
    assert found.fields == {"status": (200, 404)}
    assert "the first divergent leaf is 9 (seq 10" in found.detail


async def _leaves(sessions) -> list[bytes]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        hashes = (await s.scalars(select(AuditRecord.hash).order_by(AuditRecord.seq))).all()
    return [merkle.leaf_hash(bytes.fromhex(h)) for h in hashes]
