"""Scheduled jobs in the policy files: validated when loaded (cron, mode, output, every
reference, the client's right to the service, the accountability the service requires),
with file-and-entity messages from a policy directory; applied to the store, diffed and
versioned, read by the running gateway's tables; and the cron read in Vietnam time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet, load_policy_dir
from gateway.config.runtime import load_runtime_config
from gateway.events.jobs import next_fire
from gateway.store.db import create_engine, session_factory
from tests.conftest import PROVINCE_ID

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

BCA = "000.00.00.G01"
SERVICE = f"{BCA}/thay-doi-cu-tru/v1"


def policy(**job: Any) -> dict[str, Any]:
    return {
        "agencies": [{"code": PROVINCE_ID, "name": "UBND"}, {"code": BCA, "name": "BCA"}],
        "groups": [{"code": "tthc", "name": "TTHC"}],
        "clients": [
            {"code": "lgsp-lich", "agency": PROVINCE_ID, "name": "Scheduled pulls"},
            {"code": "motcua", "agency": PROVINCE_ID, "name": "One-stop", "groups": ["tthc"]},
        ],
        "upstreams": [{"name": "ndxp", "base_url": "http://127.0.0.1:9"}],
        "services": [
            {
                "provider": BCA,
                "code": "thay-doi-cu-tru",
                "version": "v1",
                "name": "Residence changes",
                "upstream": "ndxp",
                "require": ["officer", "procedure"],
                "access": [{"client": "lgsp-lich", "method": "GET", "path": "/**"}],
            }
        ],
        "topics": [{"code": "cu-tru", "name": "t", "provider": BCA, "publishers": ["lgsp-lich"]}],
        "jobs": [
            {
                "code": "cu-tru",
                "name": "Residence changes",
                "cron": "0 2 * * *",
                "client": "lgsp-lich",
                "service": SERVICE,
                "accountability": {"officer": "LGSP", "procedure": "LGSP-DONGBO"},
                "output": {"package": {"access": [{"group": "tthc"}]}},
                **job,
            }
        ],
    }


def test_a_job_naming_unknown_things_is_refused_with_each_reference() -> None:
    doc = policy(
        client="ghost",
        output={"package": {"access": [{"client": "nobody"}, {"group": "nope"}]}},
    )
    with pytest.raises(ValueError) as e:
        PolicySet.model_validate(doc)
    text = str(e.value)
    assert "jobs[0].client: no client 'ghost'" in text
    assert "jobs[0].output.package.access[0].client: no client 'nobody'" in text
    assert "jobs[0].output.package.access[1].group: no group 'nope'" in text
    with pytest.raises(ValueError, match=r"jobs\[0\].service: no service"):
        PolicySet.model_validate(policy(service=f"{BCA}/khong-co/v1"))
    with pytest.raises(ValueError, match=r"jobs\[0\].output.topic: no topic 'khong-co'"):
        PolicySet.model_validate(policy(output={"topic": "khong-co"}))
    doc = policy(output={"topic": "cu-tru"})
    doc["topics"][0]["provider"] = PROVINCE_ID
    with pytest.raises(ValueError, match=r"carries events of agency 000\.00\.00\.H49, not of"):
        PolicySet.model_validate(doc)


def test_a_job_needs_its_client_s_right_and_the_accountability_the_service_requires() -> None:
    with pytest.raises(ValueError, match="client 'motcua' holds no right to GET /"):
        PolicySet.model_validate(policy(client="motcua"))
    with pytest.raises(ValueError, match="holds no right to POST /"):
        PolicySet.model_validate(policy(method="POST"))
    with pytest.raises(ValueError, match=r"jobs\[0\].accountability.procedure: the service"):
        PolicySet.model_validate(policy(accountability={"officer": "LGSP"}))


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"cron": "61 * * * *"}, "not a 5-field cron expression"),
        ({"cron": "0 0 2 * * *"}, "not a 5-field cron expression"),  # seconds: not cron here
        ({"mode": "as_of"}, "mode 'as_of' needs 'as_of: <date>'"),
        ({"as_of": "2026-11-01"}, "only it takes one"),
        ({"output": {"topic": "cu-tru", "package": {}}}, "exactly one of 'topic' or 'package'"),
        ({"paging": {"max_pages": 0}}, "greater than or equal to 1"),
        ({"schedule": "nightly"}, "Extra inputs are not permitted"),
    ],
)
def test_a_job_s_own_fields_are_checked(fields: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        PolicySet.model_validate(policy(**fields))


def test_errors_from_files_name_the_file_and_the_job(tmp_path: Path) -> None:
    doc = policy(client="ghost")
    (tmp_path / "pulls.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_policy_dir(tmp_path)
    assert f"{tmp_path / 'pulls.yaml'}: job cu-tru: client: no client 'ghost'" in str(e.value)


def test_the_sample_policies_declare_working_jobs() -> None:
    jobs = {j.code: j for j in load_policy_dir(Path(__file__).parent.parent / "policies").jobs}
    assert jobs["thay-doi-cu-tru"].output.package is not None
    assert jobs["dvcqg-cap-nhat-ho-so"].output.topic == "dvcqg-ho-so"


def test_the_cron_is_read_in_vietnam_time() -> None:
    # 02:00 in Hà Nội is 19:00 UTC the day before.
    at = next_fire("0 2 * * *", datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    assert at == datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
    # Mondays at 07:30 Vietnam time: Monday 7 December 2026, 00:30 UTC.
    monday = next_fire("30 7 * * 1", datetime(2026, 12, 5, 0, 0, tzinfo=UTC))
    assert monday == datetime(2026, 12, 7, 0, 30, tzinfo=UTC)


async def test_jobs_are_applied_versioned_and_loaded(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        doc = policy()
        async with sessions() as s, s.begin():
            lines = await policy_state.apply_policy(s, PolicySet.model_validate(doc), actor="t")
        assert "created scheduled job cu-tru" in lines
        config = await load_runtime_config(sessions)
        job = config.jobs["cu-tru"]
        assert job.spec.cron == "0 2 * * *" and job.downloader_groups == {"tthc"}
        assert job.may_download(config.clients["motcua"])
        assert not job.may_download(config.clients["lgsp-lich"])
        doc["jobs"][0]["cron"] = "30 1 * * *"
        async with sessions() as s, s.begin():
            lines = await policy_state.apply_policy(s, PolicySet.model_validate(doc), actor="t")
        assert lines == ["updated scheduled job cu-tru"]
        async with sessions() as s:  # each version keeps the job as it was
            assert (await policy_state.version_policy(s, 1)).jobs[0].cron == "0 2 * * *"
            assert (await policy_state.version_policy(s, 2)).jobs[0].cron == "30 1 * * *"
        async with sessions() as s:
            assert (await policy_state.current_policy(s)).jobs[0].cron == "30 1 * * *"
        doc["jobs"] = []
        async with sessions() as s, s.begin():
            lines = await policy_state.apply_policy(s, PolicySet.model_validate(doc), actor="t")
        assert lines == ["deleted scheduled job cu-tru"]
        assert (await load_runtime_config(sessions)).jobs == {}
    finally:
        await engine.dispose()
