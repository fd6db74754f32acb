"""Topics in the policy files: validated when loaded (references, unknown fields),
refused when they name a schema the registry lacks, applied to the store and read by the
running gateway's tables."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.config.runtime import load_runtime_config
from gateway.registry import store as registry
from gateway.store.db import create_engine, session_factory
from tests.conftest import PROVINCE_ID

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

SUBJECT = "events.test.residence-change"


def policy(**topic: Any) -> dict[str, Any]:
    return {
        "agencies": [
            {"code": PROVINCE_ID, "name": "UBND"},
            {"code": "000.00.00.G01", "name": "Bộ Công an"},
        ],
        "groups": [{"code": "tthc", "name": "TTHC"}],
        "clients": [
            {"code": "dancu", "agency": "000.00.00.G01", "name": "Population"},
            {"code": "motcua", "agency": PROVINCE_ID, "name": "One-stop", "groups": ["tthc"]},
        ],
        "topics": [
            {
                "code": "cu-tru",
                "name": "Residence changes",
                "provider": "000.00.00.G01",
                "publishers": ["dancu"],
                "access": [{"group": "tthc"}],
                **topic,
            }
        ],
    }


def test_a_topic_naming_unknown_clients_groups_or_agencies_is_refused_at_load() -> None:
    doc = policy(provider="000.00.00.G99", publishers=["ghost"], access=[{"group": "nope"}])
    with pytest.raises(ValueError) as e:
        PolicySet.model_validate(doc)
    text = str(e.value)
    assert "topics[0].provider: no agency '000.00.00.G99'" in text
    assert "topics[0].publishers: no client 'ghost'" in text
    assert "topics[0].access[0].group: no group 'nope'" in text


def test_a_topic_right_names_one_subscriber_and_unknown_fields_are_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of 'client' or 'group'"):
        PolicySet.model_validate(policy(access=[{"client": "motcua", "group": "tthc"}]))
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        PolicySet.model_validate(policy(retention="forever"))
    with pytest.raises(ValueError, match="publishers"):
        PolicySet.model_validate(policy(publishers=[]))


async def test_topics_are_applied_and_loaded_with_their_schema_and_rights(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        doc = policy(event_schema={"subject": SUBJECT})
        async with sessions() as s, s.begin():
            with pytest.raises(policy_state.PolicyRejected, match=r"topics\[0\]\.event_schema"):
                await policy_state.apply_policy(s, PolicySet.model_validate(doc), actor="t")
        async with sessions() as s, s.begin():
            text = '{"type": "object", "required": ["personalId"]}'
            parsed = registry.parse_schema("JSON", text)
            await registry.register(s, SUBJECT, parsed, actor="t", text=text)
        async with sessions() as s, s.begin():
            lines = await policy_state.apply_policy(s, PolicySet.model_validate(doc), actor="t")
        assert "created topic cu-tru" in lines
        async with sessions() as s:
            assert (await policy_state.current_policy(s)).topics[0].publishers == ["dancu"]
        config = await load_runtime_config(sessions)
        topic = config.topics["cu-tru"]
        assert topic.publishers == {"dancu"} and topic.subscriber_groups == {"tthc"}
        assert topic.validator is not None and topic.schema_error is None
        assert topic.may_subscribe(config.clients["motcua"])
        assert not topic.may_subscribe(config.clients["dancu"])
        assert topic.validator.errors(b"{}")  # personalId is required
        # Deleting the topic from the files deletes it from the store.
        async with sessions() as s, s.begin():
            doc["topics"] = []
            lines = await policy_state.apply_policy(s, PolicySet.model_validate(doc), actor="t")
        assert lines == ["deleted topic cu-tru"]
        assert (await load_runtime_config(sessions)).topics == {}
    finally:
        await engine.dispose()
