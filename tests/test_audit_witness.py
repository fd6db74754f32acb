"""Witnesses (c2sp.org/tlog-witness): the protocol's answers, then a witness served over
HTTP cosigning the gateway's tree heads as they grow (SQLite and PostgreSQL), and
refusing the head of a history the operator rewrote with the instance's own key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select

from gateway.audit import merkle
from gateway.audit.chain import Chain, event_hash
from gateway.audit.event import FIELD_NAMES
from gateway.audit.note import COSIGNATURE, Checkpoint, NoteSigner, NoteVerifier, cosignatures
from gateway.audit.proofs import ProofFailed, verify_bundle
from gateway.audit.tlog import inclusion_bundles, signed_note
from gateway.audit.witness import Witness, add_checkpoint_body
from gateway.audit.witnessing import WitnessConfig, Witnessing, parse_witness
from gateway.edge.health import _witness_warning
from gateway.ops.witness import witness_app
from gateway.store.models import AuditCosignature, AuditRecord, AuditTreeHead, AuditTreeNode
from simulator.app import create_app as create_simulator
from simulator.witness import WITNESS as NATIONAL
from tests.test_audit_chain import INSTANCE
from tests.test_audit_tlog import ORIGIN, ingest, store  # noqa: F401 (a fixture)

WITNESS = "thanhtra.hanam.gov.vn/witness"


def tree(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


@pytest.fixture(params=["lgsp witness", "national simulator"])
async def witness_server(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A witness over HTTP, trusting ORIGIN's key: `lgsp witness`'s, or the national
    simulator's (written apart from the gateway): the same requests, the same answers."""
    log = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    if request.param == "lgsp witness":
        signer = NoteSigner(WITNESS, Ed25519PrivateKey.generate(), COSIGNATURE)
        app = witness_app(Witness(signer, [log.verifier()], tmp_path / "state.json"))
        prefix, vkey = "/", signer.verifier().vkey()
    else:
        app = create_simulator({"x": "y"}, witness_logs=[log.verifier().vkey()])
        prefix, vkey = "/witness", app[NATIONAL].vkey()
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield log, str(server.make_url(prefix)).rstrip("/"), NoteVerifier.parse(vkey)
    await server.close()


async def test_the_witness_answers_as_the_protocol_says(witness_server: Any) -> None:
    log, url, witness_key = witness_server

    def note(leaves: list[bytes], signer: NoteSigner = log) -> str:
        return signer.sign_note(Checkpoint(ORIGIN, len(leaves), merkle.root_of(leaves)).text())

    async with aiohttp.ClientSession() as http:

        async def ask(old: int, proof: list[bytes], n: str) -> tuple[int, str, str]:
            body = add_checkpoint_body(old, proof, n).encode()
            async with http.post(f"{url}/add-checkpoint", data=body) as r:
                return r.status, await r.text(), r.content_type

        leaves = tree(20)
        status, line, _ = await ask(0, [], note(leaves[:8]))
        assert status == 200
        [co] = cosignatures(note(leaves[:8]) + line, [witness_key])
        assert co.witness == witness_key.name
        # Grown, with the proof from what it cosigned: cosigned again.
        assert (await ask(8, merkle.consistency_proof(8, leaves), note(leaves)))[0] == 200
        # A stale old size: 409 with the size it holds, as text/x.tlog.size.
        stale = await ask(8, merkle.consistency_proof(8, leaves), note(leaves))
        assert stale == (409, "20\n", "text/x.tlog.size")
        # A fork: the same size with another root, or a bigger tree not extending its own.
        forked = tree(25, b"fork")
        assert (await ask(20, [], note(forked[:20])))[0] == 409
        assert (await ask(20, merkle.consistency_proof(20, forked), note(forked)))[0] == 422
        # An unknown log, a stranger's signature, an old size past the new, a garbled body.
        stranger = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
        other = NoteSigner("elsewhere/audit/x", Ed25519PrivateKey.generate())
        unknown = other.sign_note(Checkpoint("elsewhere/audit/x", 1, leaves[0]).text())
        assert (await ask(0, [], unknown))[0] == 404
        assert (await ask(20, [], note(leaves, stranger)))[0] == 403
        assert (await ask(30, [], note(leaves)))[0] == 400
        async with http.post(f"{url}/add-checkpoint", data=b"old x\n\nnothing") as r:
            assert r.status == 400
        # Nothing it refused moved it: it still holds 20 and cosigns the honest growth.
        more = tree(30)
        assert more[:20] == leaves
        assert (await ask(20, merkle.consistency_proof(20, more), note(more)))[0] == 200


async def test_witnesses_cosign_the_heads_and_refuse_a_rewritten_history(
    store: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    sessions, audit, signer, log_tree = store
    log_key = signer.note_signer(ORIGIN).verifier()
    w_signer = NoteSigner(WITNESS, Ed25519PrivateKey.generate(), COSIGNATURE)
    server = TestServer(
        witness_app(Witness(w_signer, [log_key], tmp_path / "witness.json")), host="127.0.0.1"
    )
    await server.start_server()
    try:
        url = str(server.make_url("/"))
        config = parse_witness(f"{url} {w_signer.verifier().vkey()}")
        assert config == WitnessConfig(url, w_signer.verifier().vkey())
        witnessing = Witnessing(sessions, INSTANCE, [config])
        log_tree.after_round = witnessing.sync
        chain = Chain(INSTANCE)

        await ingest(audit, chain, 300)
        await log_tree.advance_logged()
        await ingest(audit, chain, 50)
        await log_tree.advance_logged()  # cosigned again, with a consistency proof 300 -> 350
        assert witnessing.status() == {
            WITNESS: {"cosigned_size": 350, "behind": 0, "last_error": None}
        }
        async with sessions() as s:
            [proof] = await inclusion_bundles(s, request_id="req-9")
            witnessed = await signed_note(s, (await s.scalars(select(AuditTreeHead))).all()[-1])
        done = verify_bundle(proof, [log_key], [w_signer.verifier()], min_cosignatures=1)
        assert done.tree_size == 350

        # The operator rewrites record 10 and everything after it, drops the heads and
        # cosignatures, and signs the forged tree with the instance's own key.
        async with sessions() as s, s.begin():
            rows = list((await s.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all())
            prev = rows[8].hash
            for row in rows[9:]:
                if row.seq == 10:
                    row.status = 404
                row.prev_hash = prev
                row.hash = event_hash({n: getattr(row, n) for n in FIELD_NAMES})
                prev = row.hash
            for model in (AuditCosignature, AuditTreeNode, AuditTreeHead):
                await s.execute(delete(model))
        await ingest(audit, Chain(INSTANCE, 350, prev), 20)
        await log_tree.advance_logged()

        # The witness knows 350 and the forged tree does not extend it: no cosignature.
        status = witnessing.status()[WITNESS]
        assert status["behind"] == 370 and status["last_error"].startswith("refused with 422")
        alarm = _witness_warning(
            {"witness_quorum": 1, "witnesses_cosigning": 0, "witnesses": witnessing.status()}
        )
        assert alarm is not None and "0 of the 1 witness cosignatures" in alarm
        assert "refused with 422" in alarm
        async with sessions() as s:
            [forged] = await inclusion_bundles(s, request_id="req-9")
        assert verify_bundle(forged, [log_key]).tree_size == 370  # self-consistent...
        with pytest.raises(ProofFailed, match="0 valid cosignature"):  # ...but unwitnessed
            verify_bundle(forged, [log_key], [w_signer.verifier()], min_cosignatures=1)
        # And the witnessed checkpoint an auditor kept still names the true record 10.
        assert proof["record"]["status"] == 200
        assert witnessed.startswith(f"{ORIGIN}\n350\n")
    finally:
        await server.close()


def test_lgsp_witness_makes_its_key_once_and_prints_it(env: dict[str, str], tmp_path: Path) -> None:
    from tests.conftest import lgsp

    key = tmp_path / "witness.pem"
    args = ("witness", "--name", WITNESS, "--key", str(key), "--print-key")
    first = lgsp(env, *args)
    assert first.returncode == 0, first.stderr
    vkey = NoteVerifier.parse(first.stdout.strip())
    assert (vkey.name, vkey.kind) == (WITNESS, COSIGNATURE)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert lgsp(env, *args).stdout == first.stdout  # the same key the next time
    bare = lgsp(env, "witness", "--name", WITNESS, "--key", str(key))
    assert bare.returncode == 2 and "--log" in bare.stderr
