"""The hash chain and its signed checkpoints, offline: what an auditor relies on when they
check exported records without trusting the database they came from.

Pure and fast: events are built here, chained by `Chain`, and checked by
`verify_instance`, the same code `lgsp audit verify` and the auditor API run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import stat
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.chain import (
    GENESIS,
    AuditSigner,
    Chain,
    ChainVerifier,
    Checkpoint,
    InstanceReport,
    checkpoint_valid,
    event_hash,
    verify_instance,
)
from gateway.audit.event import HASHED_WHEN_SET, AuditEvent

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

INSTANCE = "gw-hanam-1"
T0 = datetime(2025, 3, 3, 1, 30, tzinfo=UTC)


def make_event(i: int, **fields: Any) -> AuditEvent:
    started = T0 + timedelta(seconds=i, microseconds=123)
    values: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=i + 1)),
        "request_id": f"req-{i}",
        "instance": INSTANCE,
        "method": "POST",
        "path": f"/r1/000.00.00.H49/echo/v1/ho-so/{i}",
        "started_at": started,
        "finished_at": started + timedelta(milliseconds=12),
        "duration_ms": 12.345,
        "status": 200,
        "client_code": "motcua",
        "client_agency_code": "000.00.31.H49",
        "auth_method": "bearer",
        "provider_code": "000.00.00.H49",
        "service_code": "echo",
        "service_version": "v1",
        "officer_id": "cb-nguyễn-văn-a",
        "procedure_code": "1.001234",
        "request_bytes": 42,
        "response_bytes": 84,
        "upstream_status": 200,
        "upstream_ms": 8.5,
    }
    values.update(fields)
    return AuditEvent(**values)


def chained(n: int, chain: Chain | None = None) -> list[AuditEvent]:
    chain = chain or Chain(INSTANCE)
    events = [make_event(chain.seq + k) for k in range(n)]
    for e in events:
        chain.link(e)
    return events


def rows(events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    """The events as an auditor gets them: JSON objects from the wire (or an export)."""
    return [orjson.loads(e.to_wire()) for e in events]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> AuditSigner:
    return AuditSigner(tmp_path_factory.mktemp("keys"), INSTANCE)


@pytest.fixture(scope="module")
def other_signer(tmp_path_factory: pytest.TempPathFactory) -> AuditSigner:
    return AuditSigner(tmp_path_factory.mktemp("other-keys"), INSTANCE)


def trusted(*signers: AuditSigner) -> dict[str, Ed25519PublicKey]:
    return {s.key_id: s.public_key for s in signers}


def sign(signer: AuditSigner, event: Mapping[str, Any] | AuditEvent) -> Checkpoint:
    seq, digest = (
        (event.seq, event.hash) if isinstance(event, AuditEvent) else (event["seq"], event["hash"])
    )
    return signer.checkpoint(seq, digest, T0 + timedelta(hours=1, seconds=seq))


def findings(report: InstanceReport) -> list[tuple[str, int | None, int | None]]:
    return [(f.kind, f.seq_from, f.seq_to) for f in report.findings]


def relink(events: list[dict[str, Any]], start: int) -> None:
    """What a careful attacker does after editing events[start]: recompute its hash and
    every later link, so the chain is consistent again."""
    for i in range(start, len(events)):
        if i > 0:
            events[i]["prev_hash"] = events[i - 1]["hash"]
        events[i]["hash"] = event_hash(events[i])


# -- linking ----------------------------------------------------------------------------------


def test_link_numbers_from_one_and_joins_each_event_to_the_one_before() -> None:
    chain = Chain(INSTANCE)
    events = [make_event(i, instance="whatever-the-caller-said") for i in range(6)]
    for e in events:
        chain.link(e)

    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].prev_hash == "0" * 64 == GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    # The chain's own instance id goes in, whatever the event said.
    assert {e.instance for e in events} == {INSTANCE}
    # The hash is SHA-256 over the canonical JSON of every other field (the fields added
    # since chaining began only when they hold a value).
    for e in events:
        body = {
            k: v
            for k, v in e.as_dict().items()
            if k != "hash" and not (k in HASHED_WHEN_SET and v is None)
        }
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        assert e.hash == hashlib.sha256(canonical).hexdigest()
    assert len({e.hash for e in events}) == 6
    assert chain.mark() == (6, events[-1].hash)


def test_a_chain_resumes_from_a_stored_head_and_rewinds_without_a_gap() -> None:
    first = chained(3)
    chain = Chain(INSTANCE, seq=3, head=first[-1].hash)  # a restart, from the stored head
    [fourth] = chained(1, chain)
    assert (fourth.seq, fourth.prev_hash) == (4, first[-1].hash)

    mark = chain.mark()
    chained(2, chain)  # a batch that then could not be made durable
    chain.rewind(mark)
    [retry] = chained(1, chain)
    assert (retry.seq, retry.prev_hash) == (5, fourth.hash)
    assert verify_instance(INSTANCE, rows([*first, fourth, retry]), [], {}).findings == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("status", 500),
        ("path", "/r1/000.00.00.H49/echo/v1/ho-so/999"),
        ("method", "GET"),
        ("client_code", "hotich"),
        ("instance", "gw-other"),
        ("duration_ms", 12.346),
        ("request_bytes", 43),
        ("started_at", T0 + timedelta(seconds=2, microseconds=124)),
        ("finished_at", T0 + timedelta(days=1)),
        ("officer_id", None),  # value -> None
        ("case_number", "HS-2025-0001"),  # None -> value
        ("error_type", "upstream-timeout"),
        ("response_sha256", "ab" * 32),
        ("seq", 3),
        ("prev_hash", "f" * 64),
    ],
)
def test_changing_any_single_field_changes_the_hash(name: str, value: Any) -> None:
    events = chained(3)
    original = events[1]
    changed = copy.deepcopy(original)
    assert getattr(changed, name) != value
    setattr(changed, name, value)
    assert event_hash(changed.as_dict()) != original.hash
    # ...and the verifier names it.
    tampered = rows(events)
    tampered[1] = {**orjson.loads(changed.to_wire()), "hash": original.hash}
    kinds = findings(verify_instance(INSTANCE, tampered, [], {}))
    assert ("altered", changed.seq, changed.seq) in kinds


# -- the wire form ----------------------------------------------------------------------------


def test_event_wire_form_round_trips_and_its_hash_recomputes() -> None:
    events = chained(3)
    event = events[2]
    event.case_number = "HS/2025/ Đăng ký khai sinh"
    event.error_detail = None
    event.hash = event_hash(event.as_dict())

    data = orjson.loads(event.to_wire())
    assert data["kind"] == "exchange"
    assert data["started_at"] == "2025-03-03T01:30:02.000123+00:00"
    back = AuditEvent.from_wire(data)
    assert back == event
    assert isinstance(back.started_at, datetime) and back.started_at == event.started_at
    assert event_hash(back.as_dict()) == event.hash
    assert event_hash(data) == event.hash  # straight from JSON, as an offline checker would

    # A consumer on an older version ignores fields added later.
    assert AuditEvent.from_wire({**data, "added_in_v2": {"x": 1}}) == event


def test_checkpoint_wire_form_round_trips_and_stays_signed(signer: AuditSigner) -> None:
    [*_, head] = chained(4)
    cp = signer.checkpoint(head.seq, head.hash, datetime.now(UTC))
    assert checkpoint_valid(cp, signer.public_key)

    data = orjson.loads(cp.to_wire())
    assert data["kind"] == "checkpoint"
    assert (data["seq"], data["hash"], data["key_id"]) == (4, head.hash, signer.key_id)
    back = Checkpoint.from_wire(data)
    assert back == cp
    assert checkpoint_valid(back, signer.public_key)

    # The signature covers the statement: move it to another seq, hash, time or key and it fails.
    for change in (
        {"seq": 5},
        {"hash": "0" * 64},
        {"signed_at": (cp.signed_at + timedelta(seconds=1)).isoformat()},
        {"instance": "gw-other"},
    ):
        assert not checkpoint_valid(Checkpoint.from_wire({**data, **change}), signer.public_key)


# -- the checkpoint key -----------------------------------------------------------------------


def test_signer_creates_a_private_key_file_and_reuses_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = AuditSigner(keys, "gw/hanam 1")
    path = keys / "audit" / "gw_hanam_1.pem"
    assert first.path == path and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED" not in path.read_bytes()
    assert first.key_id.startswith("ed25519:")

    again = AuditSigner(keys, "gw/hanam 1")
    assert again.key_id == first.key_id
    # A checkpoint signed before the restart verifies with the key after it.
    cp = first.checkpoint(1, "a" * 64, T0)
    assert checkpoint_valid(cp, again.public_key)
    # Another instance gets its own key.
    assert AuditSigner(keys, "gw-hanam-2").key_id != first.key_id


def test_signer_key_is_encrypted_with_the_passphrase(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    signer = AuditSigner(keys, INSTANCE, "mật khẩu đúng")
    assert b"ENCRYPTED" in signer.path.read_bytes()
    assert stat.S_IMODE(signer.path.stat().st_mode) == 0o600
    assert AuditSigner(keys, INSTANCE, "mật khẩu đúng").key_id == signer.key_id
    with pytest.raises(ValueError):
        AuditSigner(keys, INSTANCE, "mật khẩu sai")
    # Never silently replaced by a fresh key.
    assert AuditSigner(keys, INSTANCE, "mật khẩu đúng").key_id == signer.key_id


# -- verification -----------------------------------------------------------------------------


def test_an_intact_chain_has_no_findings(signer: AuditSigner) -> None:
    events = chained(10)
    cps = [sign(signer, events[4]), sign(signer, events[9])]
    report = verify_instance(INSTANCE, rows(events), cps, trusted(signer))
    assert report.findings == []
    assert (report.first_seq, report.last_seq, report.events, report.checkpoints) == (1, 10, 10, 2)
    assert report.head == events[-1].hash

    # Streaming through ChainVerifier gives the same answer.
    verifier = ChainVerifier(INSTANCE, cps, trusted(signer))
    for row in rows(events):
        verifier.add(row)
    assert findings(verifier.finish()) == []


def test_an_altered_field_is_found_at_its_seq(signer: AuditSigner) -> None:
    events = chained(10)
    data = rows(events)
    data[3]["status"] = 404
    cps = [sign(signer, events[9])]
    assert findings(verify_instance(INSTANCE, data, cps, trusted(signer))) == [("altered", 4, 4)]


def test_a_removed_event_is_missing_with_its_range() -> None:
    data = rows(chained(10))
    del data[3:6]  # seq 4, 5, 6
    assert findings(verify_instance(INSTANCE, data, [], {})) == [("missing", 4, 6)]


def test_events_out_of_order_or_claiming_the_same_seq_are_duplicates() -> None:
    data = rows(chained(6))
    swapped = [data[0], data[1], data[3], data[2], data[4], data[5]]
    kinds = findings(verify_instance(INSTANCE, swapped, [], {}))
    assert ("duplicate", 3, 3) in kinds

    # An event slipped in with a seq already used, fully hashed and linked.
    forged = make_event(99)
    forged.seq, forged.prev_hash = 3, data[1]["hash"]
    forged.hash = event_hash(forged.as_dict())
    kinds = findings(verify_instance(INSTANCE, [*data[:3], *rows([forged]), *data[3:]], [], {}))
    assert kinds == [("duplicate", 3, 3)]


def test_a_rehashed_event_breaks_the_next_link() -> None:
    data = rows(chained(8))
    data[3]["status"] = 403
    data[3]["hash"] = event_hash(data[3])  # its own hash matches again
    assert findings(verify_instance(INSTANCE, data, [], {})) == [("broken_link", 5, 5)]


def test_a_rewritten_chain_is_caught_by_a_checkpoint(signer: AuditSigner) -> None:
    events = chained(10)
    cps = [sign(signer, events[2]), sign(signer, events[9])]
    data = rows(events)
    data[4]["client_code"] = "outsider"
    relink(data, 4)
    # The links alone cannot tell...
    assert findings(verify_instance(INSTANCE, data, [], {})) == []
    # ...the signed head can: seq 3 still matches, seq 10 does not.
    report = verify_instance(INSTANCE, data, cps, trusted(signer))
    assert findings(report) == [("checkpoint_mismatch", 10, 10)]


def test_a_deleted_tail_after_a_signed_checkpoint_is_missing(signer: AuditSigner) -> None:
    events = chained(10)
    cps = [sign(signer, events[9])]
    data = rows(events)[:7]
    assert findings(verify_instance(INSTANCE, data, cps, trusted(signer))) == [("missing", 8, 10)]


def test_a_checkpoint_by_an_unknown_key_is_reported(
    signer: AuditSigner, other_signer: AuditSigner
) -> None:
    events = chained(5)
    cps = [sign(other_signer, events[4])]
    report = verify_instance(INSTANCE, rows(events), cps, trusted(signer))
    assert findings(report) == [("unknown_key", 5, 5)]
    assert other_signer.key_id in report.findings[0].detail


def test_a_forged_checkpoint_signature_is_reported(signer: AuditSigner) -> None:
    events = chained(6)
    data = rows(events)
    data[5]["status"] = 500
    relink(data, 5)
    genuine = sign(signer, events[5])
    # The attacker puts the rewritten head into the genuine checkpoint...
    moved = dataclasses.replace(genuine, hash=data[5]["hash"])
    # ...or signs it with garbage, or with a signature that is not even base64.
    garbage = dataclasses.replace(genuine, signature=sign(signer, events[2]).signature)
    broken = dataclasses.replace(genuine, signature="!!not base64!!")
    for cp in (moved, garbage, broken):
        report = verify_instance(INSTANCE, data, [cp], trusted(signer))
        assert findings(report) == [("bad_signature", 6, 6)]


def test_a_chain_starting_after_one_is_checked_from_its_anchor() -> None:
    events = chained(10)
    tail = rows(events)[4:]  # seq 5..10, as left by a retention purge
    anchor = (4, events[3].hash)
    report = verify_instance(INSTANCE, tail, [], {}, anchor=anchor)
    assert findings(report) == []
    assert (report.first_seq, report.last_seq) == (5, 10)

    wrong = verify_instance(INSTANCE, tail, [], {}, anchor=(4, "e" * 64))
    assert findings(wrong) == [("broken_link", 5, 5)]

    early = verify_instance(INSTANCE, tail, [], {}, anchor=(3, events[2].hash))
    assert findings(early) == [("missing", 4, 4)]

    # Without an anchor the first link cannot be checked, but the rest still is.
    assert findings(verify_instance(INSTANCE, tail, [], {})) == []
    del tail[2]
    assert findings(verify_instance(INSTANCE, tail, [], {})) == [("missing", 7, 7)]
