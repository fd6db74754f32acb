"""The national platform simulator as the witness of the running gateway's audit log
(SQLite and PostgreSQL): it cosigns each tree head the gateway sends, an auditor checks a
proof with the witness's key and a quorum of one, and when the operator rewrites a record
and lets the gateway sign the forged tree, the witness refuses and /readyz raises the
alarm."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import delete, select

from gateway.audit.chain import event_hash
from gateway.audit.event import FIELD_NAMES
from gateway.audit.log import AuditLog
from gateway.audit.note import NoteVerifier, cosignatures
from gateway.audit.proofs import ProofFailed, verify_bundle
from gateway.core.settings import Settings
from gateway.store.models import AuditCosignature, AuditRecord, AuditTreeHead, AuditTreeNode
from simulator.witness import WITNESS
from tests.conftest import ECHO, Harness, lgsp
from tests.test_audit_api import auditors

API = "/audit/v1"


@pytest.fixture
def settings(settings: Settings, simulator: TestServer) -> Settings:
    witness = simulator.app[WITNESS]
    return settings.model_copy(
        update={
            "audit_checkpoint_seconds": 0.2,
            "audit_witnesses": [f"{simulator.make_url('/witness')} {witness.vkey()}"],
            "audit_witness_quorum": 1,
        }
    )


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll `check` until it returns something true, for 60 s (a loaded machine)."""
    deadline = time.monotonic() + 60
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def test_the_national_platform_witnesses_the_log_and_refuses_a_rewrite(
    gateway: Harness, simulator: TestServer, env: dict[str, str], tmp_path: Path
) -> None:
    h = gateway
    auditor, pii = await auditors(h)
    national = simulator.app[WITNESS]
    tree = cast(AuditLog, h.state.audit).tree
    assert tree is not None
    log_key = tree.tree.signer.note_signer(tree.tree.origin).verifier()
    national.trust(log_key.vkey())  # the province registers its log with the platform
    # What an auditor gets from the platform, not from the province:
    witness_key = NoteVerifier.parse(
        (await h.http.get(f"{simulator.make_url('/witness/key')}")).text
    )

    motcua = {"Authorization": f"Bearer {await h.token('motcua')}"}
    for n in range(3):
        r = await h.http.get(f"{ECHO}/ho-so/{n}", headers={**motcua, "X-Request-Id": f"nd-{n}"})
        assert r.status_code == 200

    async def cosigned() -> Any:
        r = await h.http.get(f"{API}/tree", headers=auditor)
        if r.status_code != 200 or r.json()["size"] < 6:
            return None
        note = r.json()["checkpoint"]
        return note if cosignatures(note, [witness_key]) else None

    held = await eventually(cosigned, "a head of 6 leaves cosigned by the national platform")
    # The inspector keeps that checkpoint and a copy of the log.
    env = {**env, "LGSP_DATABASE_URL": h.state.settings.database_url}
    (tmp_path / "held.txt").write_text(held)
    copy = lgsp(env, "audit", "copy", str(tmp_path / "kept.jsonl"), "--instance", "test-gw")
    assert copy.returncode == 0, copy.stderr
    r = await h.http.get(
        f"{API}/tree/inclusion", params={"request_id": "nd-0", "unmask": "true"}, headers=pii
    )
    assert r.status_code == 200, r.text
    proof = r.json()["proofs"][-1]
    assert proof["checkpoint"].count("\u2014 ") >= 1
    if not cosignatures(proof["checkpoint"], [witness_key]):  # the head it used is cosigned
        pytest.fail("the proof's checkpoint carries no cosignature")
    verify_bundle(proof, [log_key], [witness_key], min_cosignatures=1)

    async def ready() -> Any:
        r = await h.http.get("/readyz")
        return r.status_code == 200 and r.json()["status"] == "ready"

    await eventually(ready, "ready: the witness quorum met")

    # The operator alters the outcome of nd-0 and rebuilds everything after it.
    async with h.state.sessions() as s, s.begin():
        rows = list((await s.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all())
        for i, row in enumerate(rows):
            if row.request_id == "nd-0" and row.phase == "outcome":
                row.status = 404
            if i:
                row.prev_hash = rows[i - 1].hash
            row.hash = event_hash({n: getattr(row, n) for n in FIELD_NAMES})
        for model in (AuditCosignature, AuditTreeNode, AuditTreeHead):
            await s.execute(delete(model))

    async def alarm() -> Any:
        r = await h.http.get("/readyz")
        body = r.json()
        return body if body.get("status") == "degraded" else None

    body = await eventually(alarm, "/readyz degraded by the witness's refusal")
    assert "0 of the 1 witness cosignatures" in body["checks"]["audit"]
    # The forged tree has as many leaves as the one it cosigned, with another root: a fork.
    assert "refused with 409: same size, another root" in body["checks"]["audit"]
    assert (log_key.name, 409) in national.refusals
    r = await h.http.get(
        f"{API}/tree/inclusion", params={"request_id": "nd-0", "unmask": "true"}, headers=pii
    )
    forged = r.json()["proofs"][-1]
    assert forged["record"]["status"] == 404
    verify_bundle(forged, [log_key])  # signed with the instance's own key, it holds alone
    with pytest.raises(ProofFailed, match="0 valid cosignature"):
        verify_bundle(forged, [log_key], [witness_key], min_cosignatures=1)
    # On the host, the inspector checks the store against what they kept: rewritten, and
    # where. (The gateway chained an event or two more since: the copy covers the head.)
    check = lgsp(
        env,
        "audit",
        "verify-tree",
        "--checkpoint",
        str(tmp_path / "held.txt"),
        "--log-key",
        log_key.vkey(),
        "--witness-key",
        witness_key.vkey(),
        "--min-cosignatures",
        "1",
        "--records",
        str(tmp_path / "kept.jsonl"),
        "--instance",
        "test-gw",
    )
    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stdout.startswith("NOT THE LOG SIGNED: the store's tree at 6 has another root")
    assert "the first divergent leaf is 1 (seq 2, event " in check.stdout
    assert "status: 200 -> 404" in check.stdout
    metrics = (await h.http.get("/metrics")).text
    assert 'lgsp_audit_witness_behind_leaves{instance="test-gw",witness="ndxp.gov.vn/witness"}' in (
        metrics
    )
