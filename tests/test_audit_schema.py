"""The audit topic's contract: what the gateway publishes matches the JSON Schemas in
schemas/audit/, which downstream consumers are told to rely on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema_rs
from sqlalchemy import String

from gateway.audit.chain import AuditSigner
from gateway.audit.event import FIELD_NAMES, FIELD_WIDTHS, AuditEvent
from gateway.store.models import AuditRecord
from tests.conftest import ECHO, POPULATION, REPO, Harness

SCHEMAS = REPO / "schemas" / "audit"


def _validator(name: str) -> jsonschema_rs.Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def test_schema_names_every_field_of_the_event_and_no_other() -> None:
    schema = json.loads((SCHEMAS / "exchange-event.json").read_text(encoding="utf-8"))
    # `subjects`: keyed hashes for the store's whose-data index, on the wire, not chained.
    assert set(schema["properties"]) == {*FIELD_NAMES, "kind", "subjects"}


def test_field_widths_match_the_store_columns() -> None:
    columns = {
        c.name: c.type.length
        for c in AuditRecord.__table__.columns
        if isinstance(c.type, String) and c.type.length is not None
    }
    # The chain's own hashes are always 64 characters; everything else is fitted.
    chained = {k: v for k, v in columns.items() if k in FIELD_NAMES and "hash" not in k}
    assert chained == FIELD_WIDTHS


async def test_published_events_of_every_outcome_match_the_schema(gateway: Harness) -> None:
    token = await gateway.token()
    auth = {"Authorization": f"Bearer {token}"}
    await gateway.http.post(ECHO + "/x?q=1", json={"a": "Nguyễn"}, headers=auth)  # 200
    await gateway.http.post(ECHO + "/x", json={})  # 401: no client known
    await gateway.http.post(POPULATION + "/cong-dan/tra-cuu", json={}, headers=auth)  # 400
    await gateway.http.get("/r1/000.00.00.H49/nope/v1/x", headers=auth)  # 404
    records = await gateway.audit()
    assert {r.status for r in records} >= {200, 401, 400, 404}
    validator = _validator("exchange-event.json")
    for r in records:
        event = AuditEvent(**{name: getattr(r, name) for name in FIELD_NAMES})
        event.subjects = ("ab" * 32,)
        doc = json.loads(event.to_wire())
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (r.status, errors)


def test_a_checkpoint_matches_its_schema(tmp_path: Path) -> None:
    signer = AuditSigner(tmp_path, "gw-1")
    cp = signer.checkpoint(42, "ab" * 32, datetime.now(UTC))
    doc = json.loads(cp.to_wire())
    errors = [e.message for e in _validator("checkpoint.json").iter_errors(doc)]
    assert not errors
    # And a record that is not one is refused, so the test above can fail.
    doc["signature"] = "not base64url!"
    assert not _validator("checkpoint.json").is_valid(doc)
