"""The configuration as one versioned state: diff, apply, export, history and rollback,
from the store API and from the `lgsp policy` command an administrator types."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.diff import diff
from gateway.config.policy import (
    PolicySet,
    load_policy_dir,
    policy_document,
    policy_yaml,
    with_mapping_digests,
)
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AdminEvent, Credential, PolicyVersion
from tests.conftest import lgsp

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def sessions(database_url: str):  # type: ignore[no-untyped-def]
    engine = create_engine(database_url)
    await load_bundled(session_factory(engine), REPO / "schemas")
    yield session_factory(engine)
    await engine.dispose()


def sample() -> dict[str, Any]:
    # As the store keeps it: with the digests of the adapters' mapping files applied.
    return policy_document(with_mapping_digests(load_policy_dir(REPO / "policies")))


async def commit(sessions, doc: dict[str, Any], **kw: Any) -> policy_state.PolicyCommit:  # type: ignore[no-untyped-def]
    async with sessions() as s, s.begin():
        return await policy_state.commit_policy(
            s, PolicySet.model_validate(doc), actor=kw.pop("actor", "tester"), source="apply", **kw
        )


async def current(sessions) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return policy_document(await policy_state.current_policy(s))


def edited(doc: dict[str, Any]) -> dict[str, Any]:
    """A week's worth of changes: a timeout, a right taken away, a limit, a client gone."""
    new = policy_document(PolicySet.model_validate(doc))
    svc = new["services"][0]  # sorted by key: the population lookup comes first
    assert svc["code"] == "csdlqg-dancu" and svc["version"] == "v1"
    svc["timeouts"]["total_ms"] = 2500
    for service in new["services"]:
        service["access"] = [a for a in service["access"] if a.get("client") != "hotich"]
    new["clients"] = [c for c in new["clients"] if c["code"] != "hotich"]
    # hotich's own limit goes with it; motcua's is tightened.
    new["rate_limits"] = [r for r in new["rate_limits"] if r.get("client") != "hotich"]
    for r in new["rate_limits"]:
        if r.get("client") == "motcua":
            r["rate"] = {"requests": 10, "per": "second", "burst": 20}
    return policy_document(PolicySet.model_validate(new))


async def test_apply_diff_rollback_round_trip(sessions) -> None:  # type: ignore[no-untyped-def]
    original = sample()
    first = await commit(sessions, original, comment="initial")
    assert first.version == 1
    assert await current(sessions) == original

    changed = edited(original)
    async with sessions() as s:
        pending = diff(await policy_state.current_policy(s), PolicySet.model_validate(changed))
    rendered = "\n".join(c.render() for c in pending)
    assert "~ updated service 000.00.00.G01/csdlqg-dancu/v1" in rendered
    assert "timeouts.total_ms: 10000 → 2500" in rendered
    assert "- POST /cong-dan/tra-cuu-ho-ten (client hotich)" in rendered
    assert "- deleted client hotich" in rendered
    assert "~ updated rate limit client motcua\n    rate.burst: 100 → 20" in rendered
    assert "- deleted rate limit client hotich on 000.00.00.G01/csdlqg-dancu/v1" in rendered

    second = await commit(sessions, changed, comment="tighten")
    assert second.version == 2 and [c.summary for c in second.changes] == [
        c.summary for c in pending
    ]
    assert await current(sessions) == changed

    async with sessions() as s, s.begin():
        back = await policy_state.rollback(s, 1, actor="tester", comment="undo")
    assert back.version == 3
    assert await current(sessions) == original
    async with sessions() as s:
        versions = await policy_state.history(s)
        assert [(v.id, v.source) for v in versions] == [(3, "rollback"), (2, "apply"), (1, "apply")]
        assert versions[0].comment == "rollback to version 1: undo"
        # Every version's document is kept and reads back as what was applied.
        assert policy_document(await policy_state.version_policy(s, 2)) == changed
        with pytest.raises(policy_state.PolicyRejected, match="no policy version 9"):
            await policy_state.version_policy(s, 9)


async def test_same_policy_in_another_order_is_no_change(sessions) -> None:  # type: ignore[no-untyped-def]
    doc = sample()
    await commit(sessions, doc)
    events = await _count(sessions, AdminEvent)
    shuffled = {k: list(reversed(v)) for k, v in doc.items()}
    for svc in shuffled["services"]:
        svc["access"] = list(reversed(svc["access"]))
    result = await commit(sessions, shuffled)
    assert result.version is None and result.changes == []
    assert await _count(sessions, AdminEvent) == events
    assert await _count(sessions, PolicyVersion) == 1


async def test_every_change_is_recorded_with_before_and_after(sessions) -> None:  # type: ignore[no-untyped-def]
    doc = sample()
    await commit(sessions, doc)
    await commit(sessions, edited(doc), actor="admin-api:quantri", comment="ticket 42")
    async with sessions() as s:
        events = (
            await s.scalars(select(AdminEvent).where(AdminEvent.actor == "admin-api:quantri"))
        ).all()
    by_target = {(e.action, e.target): e for e in events}
    deleted = by_target[("policy.client", "hotich")]
    assert deleted.before is not None and deleted.before["name"] and deleted.after is None
    service = by_target[("policy.service", "000.00.00.G01/csdlqg-dancu/v1")]
    assert service.before and service.after
    assert (service.before["timeouts"]["total_ms"], service.after["timeouts"]["total_ms"]) == (
        10000,
        2500,
    )
    assert all(e.comment == "ticket 42" for e in events)


async def test_deleting_a_client_revokes_its_credentials(sessions) -> None:  # type: ignore[no-untyped-def]
    doc = sample()
    await commit(sessions, doc)
    async with sessions() as s, s.begin():
        await credential_ops.issue(s, client_code="hotich", kind="secret", actor="t")
    await commit(sessions, edited(doc))
    assert await _count(sessions, Credential) == 0


async def test_last_administrator_cannot_be_removed(sessions) -> None:  # type: ignore[no-untyped-def]
    doc = sample()
    await commit(sessions, doc)
    locked_out = policy_document(PolicySet.model_validate(doc))
    for c in locked_out["clients"]:
        c["roles"] = [r for r in c.get("roles", []) if r != "administrator"]
    with pytest.raises(
        policy_state.PolicyRejected, match="no enabled client with the administrator"
    ):
        await commit(sessions, locked_out)
    assert await current(sessions) == doc


def test_references_and_unknown_fields_are_refused_naming_the_field() -> None:
    doc = sample()
    doc["rate_limits"] = [{"client": "ghost", "quota_per_day": 5}]
    with pytest.raises(ValidationError, match=r"rate_limits\[0\]\.client: no client 'ghost'"):
        PolicySet.model_validate(doc)
    doc = sample()
    doc["services"][0]["timeouts"]["totl_ms"] = 5
    with pytest.raises(ValidationError, match=r"services\.0\.timeouts\.totl_ms"):
        PolicySet.model_validate(doc)


def test_exported_yaml_reads_back_as_the_same_policy(tmp_path: Path) -> None:
    policy = load_policy_dir(REPO / "policies")
    (tmp_path / "export.yaml").write_text(policy_yaml(policy), encoding="utf-8")
    assert policy_document(load_policy_dir(tmp_path)) == policy_document(policy)


async def _count(sessions, model) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


# -- the command line -------------------------------------------------------------------------


def test_policy_commands_round_trip(tmp_path: Path, env: dict[str, str]) -> None:
    files = tmp_path / "policies"
    shutil.copytree(REPO / "policies", files)
    applied = lgsp(env, "policy", "apply", str(files), "--comment", "initial")
    assert applied.returncode == 0, applied.stderr
    assert "applied policy version 1" in applied.stdout

    same = lgsp(env, "policy", "diff", str(files), "--exit-code")
    assert same.returncode == 0 and "no changes" in same.stdout

    population = files / "population.yaml"
    population.write_text(
        population.read_text(encoding="utf-8").replace("total_ms: 10000", "total_ms: 4000"),
        encoding="utf-8",
    )
    pending = lgsp(env, "policy", "diff", str(files), "--exit-code")
    assert pending.returncode == 1
    assert "timeouts.total_ms: 10000 → 4000" in pending.stdout

    second = lgsp(env, "policy", "apply", str(files), "--comment", "faster timeout")
    assert "applied policy version 2" in second.stdout, second.stderr

    history = lgsp(env, "policy", "history")
    assert "faster timeout" in history.stdout and "initial" in history.stdout

    exported = tmp_path / "exported"
    exported.mkdir()
    out = lgsp(env, "policy", "export", "--version", "1", "-o", str(exported / "all.yaml"))
    assert out.returncode == 0, out.stderr
    assert "total_ms: 4000" not in (exported / "all.yaml").read_text(encoding="utf-8")

    back = lgsp(env, "policy", "rollback", "1", "--comment", "too tight")
    assert back.returncode == 0 and "version 3" in back.stdout, back.stderr
    # The exported version 1 is exactly what the store now holds.
    assert lgsp(env, "policy", "diff", str(exported), "--exit-code").returncode == 0


def test_admin_create_bootstraps_an_administrator(env: dict[str, str]) -> None:
    out = lgsp(
        env, "admin", "create", "quantri", "--agency", "000.00.00.H49", "--agency-name", "UBND"
    )
    assert out.returncode == 0, out.stderr
    assert "administrator quantri created" in out.stdout
    secret = out.stdout.strip().splitlines()[-1]
    assert len(secret) >= 40
    exported = lgsp(env, "policy", "export").stdout
    assert "quantri" in exported and "administrator" in exported
    again = lgsp(env, "admin", "create", "quantri", "--agency", "000.00.00.H49")
    assert again.returncode == 2 and "already exists" in again.stderr
