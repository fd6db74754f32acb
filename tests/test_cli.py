"""The `lgsp` command as an operator uses it: real processes, real ports, a SQLite file."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from gateway.identity import passwords
from tests.conftest import LGSP, free_port, lgsp

REPO = Path(__file__).resolve().parent.parent


def test_demo_steps_work_as_printed(tmp_path: Path) -> None:
    """`lgsp demo --check` runs the commands the demo prints, in bash, and checks them."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
    e["PYTHONPATH"] = str(REPO)
    e["LGSP_SCHEMAS_DIR"] = str(REPO / "schemas")
    out = subprocess.run(
        [
            *LGSP,
            "demo",
            "--check",
            "--port",
            str(free_port()),
            "--simulator-port",
            str(free_port()),
            "--policies",
            str(REPO / "policies"),
        ],
        cwd=tmp_path,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    oks = [line for line in out.stdout.splitlines() if line.startswith("[ok]")]
    assert len(oks) == 22, out.stdout
    # The console's sample people, with what they need to sign in, which the store takes.
    assert "/console/" in out.stdout
    printed = dict(re.findall(r"^  (\w+) .* password (\S+)$", out.stdout, re.M))
    assert set(printed) == {"quantri", "kiemtoan"}
    assert "otpauth://totp/LGSP:quantri?secret=" in out.stdout
    with sqlite3.connect(tmp_path / "var" / "lgsp.db") as db:
        stored = dict(db.execute("SELECT name, password_hash FROM accounts").fetchall())
    for name, password in printed.items():
        assert passwords.verify_password(stored[name], password)
    # Embedded defaults: the SQLite file and the signing key live under var/.
    assert (tmp_path / "var" / "lgsp.db").exists()
    [key] = (tmp_path / "var" / "keys").glob("*.pem")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_policy_validate_reports_the_field(tmp_path: Path, env: dict[str, str]) -> None:
    assert lgsp(env, "policy", "validate", "policies").returncode == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.yaml").write_text(
        "agencies:\n  - code: '000.00.00.H49'\n    name: x\n    colour: blue\n", encoding="utf-8"
    )
    out = lgsp(env, "policy", "validate", str(bad))
    assert out.returncode == 2
    # The file and the entity, not "agencies.0"; no pydantic input dump or URL.
    assert f"{bad / 'p.yaml'}: agency 000.00.00.H49: colour: Extra inputs are not permitted" in (
        out.stderr
    )
    assert "input_value" not in out.stderr and "pydantic.dev" not in out.stderr

    # A reference to a missing entity names the file and the service too.
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    population = policies / "population.yaml"
    population.write_text(
        population.read_text("utf-8").replace("upstream: ndxp", "upstream: ndxpp"), "utf-8"
    )
    out = lgsp(env, "policy", "validate", str(policies))
    assert out.returncode == 2
    assert (
        f"{population}: service 000.00.00.G01/csdlqg-dancu/v1: upstream: no upstream 'ndxpp'"
    ) in out.stderr, out.stderr


def test_policy_validate_and_apply_refuse_a_misspelt_schema(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Otherwise every call of the service would fail 503 schema-unavailable."""
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    population = policies / "population.yaml"
    right = population.read_text("utf-8")
    assert "subject: population.citizen-lookup.national.request" in right
    population.write_text(
        right.replace("subject: population.", "subject: populaton.", 1), encoding="utf-8"
    )
    where = f"{population}: service 000.00.00.G01/csdlqg-dancu/v1: schemas.request: "
    hint = "did you mean 'population.citizen-lookup.national.request'?"
    # Before there is a store: against the schema files `apply` would register.
    out = lgsp(env, "policy", "validate", str(policies))
    assert out.returncode == 2, out.stdout
    assert where in out.stderr and hint in out.stderr, out.stderr
    assert "no store yet" in out.stderr
    out = lgsp(env, "policy", "apply", str(policies))
    assert out.returncode == 2 and where in out.stderr and hint in out.stderr, out.stderr

    # With a store, a version the registry does not have.
    population.write_text(
        right.replace(
            "{ subject: population.citizen-lookup.national.request, version: latest }",
            "{ subject: population.citizen-lookup.national.request, version: 3 }",
        ),
        encoding="utf-8",
    )
    assert "version: 3" in population.read_text("utf-8")
    out = lgsp(env, "policy", "validate", str(policies))
    assert out.returncode == 2, out.stdout
    assert where + "names version 3 of schema subject" in out.stderr, out.stderr
    assert "the registry at" in out.stderr
    population.write_text(right, encoding="utf-8")
    assert lgsp(env, "policy", "validate", str(policies)).returncode == 0
    assert lgsp(env, "policy", "apply", str(policies)).returncode == 0


def test_serve_create_client_get_token_then_revoke(env: dict[str, str]) -> None:
    assert lgsp(env, "policy", "apply", "policies", "--comment", "initial").returncode == 0
    created = lgsp(
        env,
        "client",
        "create",
        "kiemtra",
        "--agency",
        "000.00.31.H49",
        "--name",
        "Hệ thống kiểm tra",
        process=True,  # the command as installed, once: the others run in process
    )
    assert created.returncode == 0, created.stderr
    creds = json.loads(created.stdout)
    assert creds["client_id"] == "kiemtra" and len(creds["client_secret"]) >= 40

    base = f"http://127.0.0.1:{env['LGSP_PORT']}"
    server = subprocess.Popen(
        [*LGSP, "serve"], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)

        def get_token() -> httpx.Response:
            return httpx.post(
                f"{base}/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("kiemtra", creds["client_secret"]),
            )

        assert get_token().status_code == 200
        # A client created while the gateway runs is picked up by its config poller.
        late = json.loads(
            lgsp(
                env, "client", "create", "muon", "--agency", "000.00.31.H49", "--name", "Late"
            ).stdout
        )
        revoked = lgsp(env, "client", "revoke", str(creds["credential_id"]))
        assert revoked.returncode == 0
        deadline = time.monotonic() + 5
        while (
            get_token().status_code != 401
            or httpx.post(
                f"{base}/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=("muon", late["client_secret"]),
            ).status_code
            != 200
        ):
            assert time.monotonic() < deadline, "revocation / new client not picked up"
            time.sleep(0.2)
        refused = get_token()
        assert refused.headers["content-type"] == "application/json"  # RFC 6749 §5.2
        assert refused.json()["error"] == "invalid_client"
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    # Every change made above is on record, with who made it.
    changes = lgsp(env, "audit", "changes", "--json", "--limit", "500")
    events = [json.loads(line) for line in changes.stdout.splitlines()]
    actions = [(e["action"], e["target"]) for e in events]
    assert ("policy.client", "kiemtra") in actions
    assert ("credential.revoke", f"#{creds['credential_id']}") in actions
    assert all(e["actor"].startswith("cli:") or e["actor"] == "bundled-schemas" for e in events)
    # Logs are JSON lines.
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    loaded = [r for r in records if r.get("event") == "configuration loaded"]
    # Two counters, named so that nobody confuses them: every admin change bumps the
    # configuration version; `lgsp policy history` lists policy versions.
    assert loaded and all("version" not in r for r in loaded)
    assert loaded[-1]["config_version"] >= loaded[-1]["policy_version"] >= 1


def test_audit_tail_follows_records_as_they_are_stored(env: dict[str, str]) -> None:
    """`lgsp audit tail --json` prints the newest records, then each new one as it lands."""
    import asyncio
    import uuid
    from datetime import UTC, datetime

    from gateway.audit.event import AuditEvent
    from gateway.audit.log import AuditLog, StoreDurable
    from gateway.audit.store import AuditStore
    from gateway.store.db import create_engine, session_factory

    assert lgsp(env, "migrate").returncode == 0

    async def write(request_ids: list[str]) -> None:
        engine = create_engine(env["LGSP_DATABASE_URL"])
        log = AuditLog(
            instance="tail-test",
            durable=StoreDurable(AuditStore(session_factory(engine), source="test")),
            signer=None,
        )
        await log.start()
        now = datetime.now(UTC)
        for rid in request_ids:
            await log.write(
                AuditEvent(str(uuid.uuid4()), rid, "tail-test", "GET", "/r1/x", now, now, 1.0, 200)
            )
        await log.close()
        await engine.dispose()

    asyncio.run(write(["old-1", "old-2"]))
    proc = subprocess.Popen(
        [*LGSP, "audit", "tail", "-n", "1", "--json", "--interval", "0.1"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    pool = ThreadPoolExecutor(1)

    def line() -> dict[str, object]:
        assert proc.stdout is not None
        # A tail that stops following would block readline: fail instead of hanging.
        return dict(json.loads(pool.submit(proc.stdout.readline).result(timeout=20)))

    try:
        assert line()["request_id"] == "old-2"  # -n 1: only the newest of what was there
        asyncio.run(write(["new-1", "new-2"]))
        assert [line()["request_id"] for _ in range(2)] == ["new-1", "new-2"]
    finally:
        proc.terminate()
        proc.wait(10)
        pool.shutdown(wait=False)
