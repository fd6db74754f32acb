"""The store and the policy files, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet, load_policy_dir
from gateway.config.runtime import load_runtime_config
from gateway.identity import credentials
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade
from gateway.store.models import AccessRight, AdminEvent, Credential, Service

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def sessions(database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    engine = create_engine(database_url)
    # The sample services name bundled schemas, as `lgsp serve` registers them at start.
    await load_bundled(session_factory(engine), REPO / "schemas")
    yield session_factory(engine)
    await engine.dispose()


async def _apply(sessions, policy: PolicySet) -> list[str]:  # type: ignore[no-untyped-def]
    async with sessions() as s, s.begin():
        return await policy_state.apply_policy(s, policy, actor="tester", comment="test")


async def _count(sessions, model) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_sample_policies_apply_once_and_are_recorded(sessions) -> None:  # type: ignore[no-untyped-def]
    policy = load_policy_dir(REPO / "policies")
    changes = await _apply(sessions, policy)
    assert "created service 000.00.00.G01/csdlqg-dancu/v1" in changes
    assert "created client motcua" in changes
    events = await _count(sessions, AdminEvent)
    assert events >= len(changes)

    # Applying the same files again changes nothing and records nothing.
    assert await _apply(sessions, policy) == []
    assert await _count(sessions, AdminEvent) == events


async def test_changed_service_is_updated_with_before_and_after(sessions) -> None:  # type: ignore[no-untyped-def]
    policy = load_policy_dir(REPO / "policies")
    await _apply(sessions, policy)
    doc = policy.model_dump()
    population = _index(doc, "csdlqg-dancu", "v1")
    doc["services"][population]["timeouts"]["total_ms"] = 2500
    doc["services"][population]["access"] = doc["services"][population]["access"][:1]
    changes = await _apply(sessions, PolicySet.model_validate(doc))
    assert changes == [
        "updated service 000.00.00.G01/csdlqg-dancu/v1",
        "replaced access rights of 000.00.00.G01/csdlqg-dancu/v1",
    ]
    async with sessions() as s:
        event = await s.scalar(
            select(AdminEvent)
            .where(AdminEvent.action == "policy.service")
            .order_by(AdminEvent.id.desc())
        )
        assert event is not None and event.actor == "tester" and event.comment == "test"
        assert event.before is not None and event.before["timeouts"]["total_ms"] == 10000
        assert event.after is not None and event.after["timeouts"]["total_ms"] == 2500
        service = await s.scalar(
            select(Service).where(Service.code == "csdlqg-dancu", Service.version == "v1")
        )
        assert service is not None and service.timeout_ms == 2500
        rights = await s.scalar(
            select(func.count())
            .select_from(AccessRight)
            .where(AccessRight.service_id == service.id)
        )
    assert rights == 1


async def test_runtime_tables_grant_through_groups_and_deny_the_rest(sessions) -> None:  # type: ignore[no-untyped-def]
    await _apply(sessions, load_policy_dir(REPO / "policies"))
    config = await load_runtime_config(sessions)
    service = config.services[("000.00.00.G01", "csdlqg-dancu", "v1")]
    motcua, hotich = config.clients["motcua"], config.clients["hotich"]
    # motcua gets the by-number lookup through its group, not the by-name one.
    assert service.allows(motcua, "POST", "/cong-dan/tra-cuu")
    assert not service.allows(motcua, "POST", "/cong-dan/tra-cuu-ho-ten")
    assert not service.allows(motcua, "GET", "/cong-dan/tra-cuu")
    assert service.allows(hotich, "POST", "/cong-dan/tra-cuu-ho-ten")
    assert service.grants(motcua) and not service.grants(config.clients["quantri-dulieu"])
    assert service.required_fields == ("officer", "procedure")
    assert service.upstream_url == "http://127.0.0.1:8090/csdldc/v1"
    assert config.clients["motcua"].agency_code == "000.00.31.H49"


async def test_secrets_are_stored_only_as_digests(sessions) -> None:  # type: ignore[no-untyped-def]
    await _apply(sessions, load_policy_dir(REPO / "policies"))
    async with sessions() as s, s.begin():
        secret = await credential_ops.issue(s, client_code="motcua", kind="secret", actor="t")
        key = await credential_ops.issue(s, client_code="motcua", kind="api_key", actor="t")
    async with sessions() as s:
        rows = (await s.scalars(select(Credential))).all()
        stored = {r.secret_sha256 for r in rows}
        assert stored == {credentials.digest(secret), credentials.digest(key)}
        for r in rows:
            assert secret not in (r.secret_sha256, r.hint) and key not in (r.secret_sha256, r.hint)
        issued = (
            await s.scalars(select(AdminEvent).where(AdminEvent.action == "credential.issue"))
        ).all()
        assert len(issued) == 2
        assert all(secret not in str(e.after) and key not in str(e.after) for e in issued)
    config = await load_runtime_config(sessions)
    assert config.credentials[credentials.digest(key)].kind == "api_key"


async def test_replacing_a_secret_revokes_the_old_one(sessions) -> None:  # type: ignore[no-untyped-def]
    await _apply(sessions, load_policy_dir(REPO / "policies"))
    async with sessions() as s, s.begin():
        old = await credential_ops.issue(s, client_code="hotich", kind="secret", actor="t")
        new = await credential_ops.issue(
            s, client_code="hotich", kind="secret", actor="t", revoke_others=True
        )
    config = await load_runtime_config(sessions)
    assert credentials.digest(old) not in config.credentials
    assert credentials.digest(new) in config.credentials


async def test_unknown_client_or_agency_is_reported(sessions) -> None:  # type: ignore[no-untyped-def]
    async with sessions() as s, s.begin():
        with pytest.raises(credential_ops.NotFound, match="no client 'ghost'"):
            await credential_ops.issue(s, client_code="ghost", kind="secret", actor="t")
        with pytest.raises(policy_state.PolicyRejected, match="no agency"):
            await policy_state.create_client(
                s, code="x", agency_code="999.99.99.Z99", name="x", actor="t"
            )


# -- policy validation (no database) ----------------------------------------------------------


def _policy(**changes: object) -> dict[str, object]:
    doc = load_policy_dir(REPO / "policies").model_dump()
    doc.update(changes)
    return doc


def test_unknown_field_is_named() -> None:
    doc = _policy()
    doc["clients"][0]["secret"] = "x"  # type: ignore[index]
    with pytest.raises(ValidationError, match=r"clients\.0\.secret"):
        PolicySet.model_validate(doc)


def test_policy_file_errors_name_the_file_and_the_service(tmp_path: Path) -> None:
    """Not `services.3` and pydantic's input dump: the file, the entity, the field."""
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    business = policies / "business-registration.yaml"
    text = business.read_text("utf-8")
    business.write_text(text.replace("timeouts:", "timeout:", 1), "utf-8")
    population = policies / "population-canonical.yaml"
    population.write_text(
        population.read_text("utf-8").replace("agency_code:", "agency_cod:", 1), "utf-8"
    )
    with pytest.raises(ValueError) as e:
        load_policy_dir(policies)
    lines = str(e.value).splitlines()
    key = "000.00.00.G12/csdlqg-dkdn/v1"
    assert f"{business}: service {key}: timeout: Extra inputs are not permitted" in lines
    population_key = "000.00.00.G01/csdlqg-dancu/v2"
    # The adapter's own configuration model, one line per field.
    assert f"{population}: service {population_key}: adapter_config.agency_code: " in (str(e.value))
    assert f"{population}: service {population_key}: adapter_config.agency_cod: " in (str(e.value))
    assert "input_value" not in str(e.value) and "pydantic.dev" not in str(e.value)
    assert "services." not in str(e.value)


def _index(doc: dict[str, Any], code: str, version: str) -> int:
    services = doc["services"]
    return next(i for i, s in enumerate(services) if (s["code"], s["version"]) == (code, version))


def test_unresolved_references_are_named() -> None:
    doc = _policy()
    population = _index(doc, "csdlqg-dancu", "v1")
    doc["services"][population]["access"].append({"client": "nobody"})  # type: ignore[index]
    doc["clients"][0]["agency"] = "000.00.99.H49"  # type: ignore[index]
    with pytest.raises(ValidationError) as e:
        PolicySet.model_validate(doc)
    text = str(e.value)
    assert f"services[{population}].access[2].client: no client 'nobody'" in text
    assert "clients[0].agency: no agency '000.00.99.H49'" in text


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("agencies", "code", "000.00.00.h49", "String should match pattern"),
        ("agencies", "code", "0" * 36, "at most 35 characters"),
        ("services", "version", "1", "String should match pattern"),
        ("services", "audit", "sometimes", "fail_closed"),
        ("services", "adapter", "teleport", "unknown adapter 'teleport'"),
        ("services", "require", ["badge"], "officer"),
    ],
)
def test_invalid_values_are_refused(section: str, field: str, value: object, message: str) -> None:
    doc = _policy()
    doc[section][0][field] = value  # type: ignore[index]
    with pytest.raises(ValidationError, match=message):
        PolicySet.model_validate(doc)


def test_access_right_globs_and_methods_are_checked() -> None:
    doc = _policy()
    doc["services"][0]["access"][0]["path"] = "no-leading-slash"  # type: ignore[index]
    with pytest.raises(ValidationError, match="must start with '/'"):
        PolicySet.model_validate(doc)
    doc["services"][0]["access"][0].update(path="/x", method="FETCH")  # type: ignore[index]
    with pytest.raises(ValidationError, match="method must be"):
        PolicySet.model_validate(doc)


def test_environment_values_fill_policy_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for f in (REPO / "policies").glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("LGSP_NDXP_URL", "https://ndxp.example.vn")
    policy = load_policy_dir(tmp_path)
    [ndxp] = [u for u in policy.upstreams if u.name == "ndxp"]
    assert ndxp.base_url == "https://ndxp.example.vn"
    (tmp_path / "extra.yaml").write_text("upstreams:\n  - name: x\n    base_url: ${NOPE}\n")
    with pytest.raises(ValueError, match="environment variable NOPE is not set"):
        load_policy_dir(tmp_path)


def test_migrations_go_down_and_up_again(tmp_path: Path) -> None:
    from alembic import command

    from gateway.store.migrate import alembic_config

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
