"""The transparency log through the running gateway (SQLite and PostgreSQL): exchanges
through /r1, the checkpoint the gateway signs for them, inclusion and consistency proofs
from the auditor API and from `lgsp audit prove`, each checked offline by
`lgsp audit verify-proof` with nothing but the proof and the public key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from gateway.audit.note import NoteVerifier, open_checkpoint
from gateway.audit.proofs import verify_bundle
from gateway.core.settings import Settings
from gateway.store.models import AuditRead
from tests.conftest import ECHO, Harness, lgsp
from tests.test_audit_api import auditors, check_problem, reads

API = "/audit/v1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Heads every 0.2 s, so a test waits for one as an auditor would, only shorter.
    return settings.model_copy(update={"audit_checkpoint_seconds": 0.2})


async def until_ok(h: Harness, path: str, auth: dict[str, str], **params: Any) -> httpx.Response:
    """GET until it answers 200 (the next tree head covers the exchange), for 60 s."""
    deadline = time.monotonic() + 60
    while True:
        r = await h.http.get(f"{API}{path}", params=params, headers=auth)
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return r
        await asyncio.sleep(0.05)


async def call(h: Harness, request_id: str) -> None:
    motcua = {"Authorization": f"Bearer {await h.token('motcua')}"}
    r = await h.http.get(f"{ECHO}/ho-so/1", headers={**motcua, "X-Request-Id": request_id})
    assert r.status_code == 200, r.text


async def test_an_auditor_proves_an_exchange_and_the_logs_growth_offline(
    gateway: Harness, tmp_path: Path, env: dict[str, str]
) -> None:
    h = gateway
    auditor, pii = await auditors(h)
    r = await h.http.get(f"{API}/tree", headers=auditor)
    check_problem(r, 404, "not-found", "has not signed any tree head")

    await call(h, "hoso-0001")
    first = (await until_ok(h, "/tree/inclusion", auditor, request_id="hoso-0001")).json()
    # Forwarded exchanges are two-phase: the intent and the outcome are a leaf each.
    intent, proof = first["proofs"]
    assert intent["leaf_index"] + 1 == proof["leaf_index"]
    assert proof["request_id"] == "hoso-0001" and "record" not in proof  # masked: no record
    head = (await until_ok(h, "/tree", auditor)).json()
    assert head["origin"] == "gateway.test/audit/test-gw"
    log_key = NoteVerifier.parse(head["log_key"])
    assert open_checkpoint(head["checkpoint"], [log_key]).size == head["size"]
    for p in (intent, proof):
        assert verify_bundle(p, [log_key]).statement.startswith(f"event {p['event_id']} is")

    # Unmasked, the proof carries the record, rehashed to its leaf by the verifier.
    full = (
        await until_ok(h, "/tree/inclusion", pii, request_id="hoso-0001", unmask="true")
    ).json()["proofs"][-1]
    assert full["record"]["request_id"] == "hoso-0001"
    old_size = full["tree_size"]

    for n in range(2, 6):
        await call(h, f"hoso-{n:04}")
    later = (await until_ok(h, "/tree/inclusion", auditor, request_id="hoso-0005")).json()
    new_size = later["proofs"][0]["tree_size"]
    assert new_size > old_size
    grown = (await until_ok(h, "/tree/consistency", auditor, old=old_size)).json()
    assert (grown["old_size"], grown["new_size"]) >= (old_size, new_size)

    # The caller's receipt: its own exchange, record included; nobody else's.
    motcua = {"Authorization": f"Bearer {await h.token('motcua')}"}
    r = await h.http.get(f"{API}/receipts/hoso-0002", headers=motcua)
    assert r.status_code == 200, r.text
    [*_, mine] = r.json()["proofs"]
    assert mine["record"]["client_code"] == "motcua"
    assert "(record rehashed)" in verify_bundle(mine, [log_key]).statement
    r = await h.http.get(f"{API}/receipts/hoso-0002", headers=auditor)
    check_problem(r, 404, "not-found", "no chained audit record")

    # Wrong asks are problems naming what to fix; none of them reveals anything.
    r = await h.http.get(f"{API}/tree/inclusion", headers=auditor)
    check_problem(r, 400, "invalid-parameter", "event_id or request_id")
    r = await h.http.get(f"{API}/tree/inclusion", params={"event_id": "nope"}, headers=auditor)
    check_problem(r, 404, "not-found", "no chained audit record")
    r = await h.http.get(f"{API}/tree/consistency", params={"old": 999999}, headers=auditor)
    check_problem(r, 404, "not-found", "one of 999999 leaves")
    r = await h.http.get(f"{API}/tree", headers=motcua)
    check_problem(r, 403, "access-denied", "auditor")
    # Each read is on record, like every other read of the audit log.
    actions = [(x.actor, x.action) for x in await reads(h) if x.action.startswith("tree")]
    assert ("thanhtra", "tree-inclusion") in actions
    assert ("thanhtra-pii", "tree-inclusion") in actions
    assert ("thanhtra", "tree-consistency") in actions
    assert ("motcua", "receipt") in [(x.actor, x.action) for x in await reads(h)]

    # Offline: the proofs from the API, checked with the log key from `lgsp audit keys`.
    env = {**env, "LGSP_DATABASE_URL": h.state.settings.database_url}
    env["LGSP_PUBLIC_URL"] = "http://gateway.test"
    keys = lgsp(env, "audit", "keys")
    assert keys.returncode == 0, keys.stderr
    [entry] = [k for k in orjson.loads(keys.stdout)["keys"] if k["instance"] == "test-gw"]
    assert entry["log_key"] == head["log_key"]
    both = tmp_path / "both.json"
    both.write_bytes(orjson.dumps({"proofs": [full, grown]}))
    out = lgsp(env, "audit", "verify-proof", str(both), "--log-key", entry["log_key"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("verified: ") == 2
    # A tampered proof fails, and says why.
    full["record"]["status"] = 404
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(full))
    out = lgsp(env, "audit", "verify-proof", str(bad), "--log-key", entry["log_key"])
    assert out.returncode == 1
    assert "FAILED: the record does not hash to the event hash" in out.stdout

    # On the host: `lgsp audit prove` writes the same kind of file, record included.
    made = tmp_path / "made.json"
    out = lgsp(env, "audit", "prove", "--request-id", "hoso-0003", "-o", str(made))
    assert out.returncode == 0, out.stderr
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"# test-gw\n{entry['log_key']}\n")
    out = lgsp(env, "audit", "verify-proof", str(made), "--log-key", f"@{keyfile}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "(record rehashed)" in out.stdout
    out = lgsp(env, "audit", "prove", "--old", str(old_size), "--instance", "test-gw")
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout)["old_size"] == old_size
    out = lgsp(env, "audit", "checkpoint", "--instance", "test-gw")
    assert out.returncode == 0 and out.stdout.startswith("gateway.test/audit/test-gw\n")
    out = lgsp(env, "audit", "prove", "--request-id", "never-sent")
    assert out.returncode == 2 and "no chained audit record" in out.stderr
    async with h.state.sessions() as s:
        cli_reads = (
            await s.scalars(select(AuditRead).where(AuditRead.action == "tree-proof"))
        ).all()
    assert len(cli_reads) >= 2 and cli_reads[0].actor.startswith("cli:")
