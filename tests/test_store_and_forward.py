"""Store-and-forward through the running gateway: the shipped document exchange service
(policies/document-exchange.yaml) sends letters async. Letters sent while the
simulator's exchange is down are accepted at once (202, a message id, a status URL),
go out when it is back, each exactly once, and the audit links each request, its
attempts and its answer; only the sender reads the answer."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from gateway.audit import AuditUnavailable
from gateway.config import versions as policy_state
from gateway.core.settings import Settings
from gateway.edge.reload import reload_config
from gateway.store.models import AdminEvent, AuditRecord, DeferredMessage
from simulator.edxml import DOCUMENT_EXCHANGE, DocumentExchange
from tests.conftest import PROVINCE_ID, REPO, Harness, add_to_policy

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

DOCUMENTS = "/r1/000.00.00.G22/lien-thong-van-ban/v1"
OFFICER = {"X-Officer-Id": "CB-0042"}
LETTERS = 6


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        public_url="http://gateway.test",
        instance_id="test-gw",
        schemas_dir=REPO / "schemas",
        token_ttl_seconds=300,
        upstream_allowed_networks=["loopback"],
        events_backoff_initial_seconds=0.05,
        events_backoff_max_seconds=0.3,
        events_poll_seconds=0.05,
    )


@pytest.fixture
async def dx(gateway: Harness) -> Harness:
    """The gateway with the shipped (async) document exchange service; the `ndxp`
    upstream's breaker, which the outage opens, tries again after 0.2 s."""
    shipped = yaml.safe_load((REPO / "policies" / "document-exchange.yaml").read_text("utf-8"))
    [service] = shipped["services"]
    assert service["async_delivery"] == {"requests": [{"method": "POST", "path": "/documents"}]}

    def change(doc: dict[str, Any]) -> None:
        doc["agencies"].extend(shipped["agencies"])
        doc["clients"].append(
            {"code": "vanhanh", "agency": PROVINCE_ID, "name": "Ops", "roles": ["operator"]}
        )
        for up in doc["upstreams"]:
            if up["name"] == "ndxp":
                up["circuit_breaker"] = {"open_seconds": 0.2}

    async with gateway.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="test")
    await add_to_policy(gateway, [service])
    return gateway


def exchange(h: Harness) -> DocumentExchange:
    return h.simulator[DOCUMENT_EXCHANGE]


def letter(n: int) -> dict[str, Any]:
    return {
        "to": [{"organId": "000.00.31.H49", "organName": "Trung tâm Phục vụ hành chính công"}],
        "documentId": f"{PROVINCE_ID},2025/11/22,{700 + n}/UBND-VP",
        "code": {"number": str(700 + n), "notation": "UBND-VP"},
        "promulgation": {"place": "Thành phố Huế", "date": "2025-11-22"},
        "type": {"code": "1", "name": "Công văn"},
        "subject": f"Công văn số {700 + n}",
        "signer": {"fullName": "Nguyễn Văn Bình", "position": "Chủ tịch"},
        "attachments": [
            {
                "name": "a.pdf",
                "contentType": "application/pdf",
                "contentBase64": base64.b64encode(b"%PDF-1.7\n%%EOF").decode(),
            }
        ],
    }


async def eventually(check: Any, what: str) -> Any:
    """Poll `check` until it returns something true, for at most 30 s."""
    deadline = time.monotonic() + 30
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def records(h: Harness, request_id: str) -> list[AuditRecord]:
    async with h.state.sessions() as s:
        rows = await s.scalars(
            select(AuditRecord)
            .where(AuditRecord.request_id == request_id)
            .order_by(AuditRecord.seq)
        )
        return list(rows)


async def test_letters_sent_during_an_outage_go_out_once_when_it_is_back(dx: Harness) -> None:
    auth = {"Authorization": f"Bearer {await dx.token('motcua')}", **OFFICER}
    exchange(dx).down = True
    accepted = []
    for n in range(LETTERS):
        r = await dx.http.post(f"{DOCUMENTS}/documents", json=letter(n), headers=auth)
        assert r.status_code == 202, r.text
        body = r.json()
        assert r.headers["location"] == body["status"] == f"/messages/v1/{body['messageId']}"
        assert body["requestId"] == r.headers["x-request-id"]
        accepted.append(body)
    # Each tried and refused while down (the exchange answered 503, or the breaker did).
    await eventually(
        lambda: _all(dx, auth, accepted, lambda m: m["attempts"] >= 1), "every letter tried"
    )
    assert exchange(dx).documents == {}
    for body in accepted:
        m = (await dx.http.get(body["status"], headers=auth)).json()
        assert m["state"] == "pending" and m["answer"] is None, m
        r = await dx.http.get(body["answer"], headers=auth)
        assert r.status_code == 409 and r.json()["type"].endswith(":message-not-answered")

    exchange(dx).down = False
    states = await eventually(
        lambda: _all(dx, auth, accepted, lambda m: m["state"] == "answered"), "every letter out"
    )
    # N sent during the outage, N delivered after it, none twice.
    assert len(states) == LETTERS
    assert sorted(exchange(dx).documents) == sorted(letter(n)["documentId"] for n in range(LETTERS))
    for n, body in enumerate(accepted):
        r = await dx.http.get(body["answer"], headers=auth)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == {"code": "01", "name": "arrived"}
        assert r.json()["documentId"] == letter(n)["documentId"]
        assert r.headers["x-message-state"] == "answered"
        assert r.headers["x-message-id"] == body["messageId"]
        # The audit: the acceptance, every attempt and the answer, under one request id.
        rows = [r for r in await records(dx, body["requestId"]) if r.path.startswith("/r1/")]
        accept, *attempts = rows
        assert (accept.status, accept.phase, accept.officer_id) == (202, "accepted", "CB-0042")
        assert len(attempts) >= 2, [(a.phase, a.status) for a in attempts]
        assert all(a.intent_id == accept.event_id for a in attempts)
        assert all(a.officer_id == "CB-0042" and a.client_code == "motcua" for a in attempts)
        assert all(a.request_sha256 == accept.request_sha256 for a in attempts)
        assert [a.phase for a in attempts] == ["attempt"] * (len(attempts) - 1) + ["outcome"]
        assert attempts[-1].status == 201 and attempts[-1].upstream_status == 200
        assert all(a.status in (502, 503) for a in attempts[:-1])
    # Every read of a status URL is audited too.
    async with dx.state.sessions() as s:
        reads = await s.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.path.like("/messages/v1/%"))
        )
    assert reads is not None and reads >= 3 * LETTERS


async def _all(h: Harness, auth: dict[str, str], accepted: list[dict[str, Any]], ok: Any) -> Any:
    got = [(await h.http.get(b["status"], headers=auth)).json() for b in accepted]
    return got if all(ok(m) for m in got) else None


async def test_only_the_sender_reads_a_message(dx: Harness) -> None:
    motcua = {"Authorization": f"Bearer {await dx.token('motcua')}", **OFFICER}
    hotich = {"Authorization": f"Bearer {await dx.token('hotich')}"}
    r = await dx.http.post(f"{DOCUMENTS}/documents", json=letter(50), headers=motcua)
    assert r.status_code == 202, r.text
    status = r.json()["status"]
    await eventually(
        lambda: _all(dx, motcua, [r.json()], lambda m: m["state"] == "answered"), "answered"
    )
    for url in (status, f"{status}/answer"):
        other = await dx.http.get(url, headers=hotich)
        assert other.status_code == 404 and other.json()["type"].endswith(":not-found")
        assert (await dx.http.get(url)).status_code == 401
    unknown = await dx.http.get("/messages/v1/00000000-0000-0000-0000-000000000000", headers=motcua)
    assert unknown.status_code == 404
    async with dx.state.sessions() as s:
        refused = list(
            await s.scalars(
                select(AuditRecord).where(
                    AuditRecord.client_code == "hotich", AuditRecord.error_type == "not-found"
                )
            )
        )
    assert len(refused) == 2


async def test_refusals_stay_synchronous_and_nothing_is_kept(dx: Harness) -> None:
    """Rights, accountability fields and the schema are checked before a 202, as for a
    synchronous exchange: a refused letter is never stored, never sent."""
    motcua = {"Authorization": f"Bearer {await dx.token('motcua')}"}
    cases: list[tuple[dict[str, str], dict[str, Any], int, str]] = [
        (motcua, letter(60), 400, "missing-accountability-fields"),
        ({**motcua, **OFFICER}, {**letter(61), "subject": 7}, 400, "invalid-message"),
        (
            {"Authorization": f"Bearer {await dx.token('legacy')}", **OFFICER},
            letter(62),
            403,
            "access-denied",
        ),
    ]
    for headers, body, status, slug in cases:
        r = await dx.http.post(f"{DOCUMENTS}/documents", json=body, headers=headers)
        assert r.status_code == status and r.json()["type"].endswith(f":{slug}"), r.text
    async with dx.state.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(DeferredMessage)) == 0
    # Fetching a document is not store-and-forward: answered at once.
    r = await dx.http.get(
        f"{DOCUMENTS}/documents",
        params={"documentId": f"{PROVINCE_ID},2025/11/22,9999/UBND-VP"},
        headers={**motcua, **OFFICER},
    )
    assert r.status_code == 404 and r.json()["type"].endswith(":no-such-record"), r.text


async def test_a_message_is_dead_after_its_window_and_says_why(
    dx: Harness, settings: Settings
) -> None:
    auth = {"Authorization": f"Bearer {await dx.token('motcua')}", **OFFICER}
    exchange(dx).down = True
    r = await dx.http.post(f"{DOCUMENTS}/documents", json=letter(70), headers=auth)
    assert r.status_code == 202
    # The window ends now: the next failed attempt is the last.
    async with dx.state.sessions() as s, s.begin():
        row = await s.scalar(select(DeferredMessage))
        assert row is not None
        row.since = row.since.replace(year=row.since.year - 1)
    body = r.json()
    m = await eventually(
        lambda: _all(dx, auth, [body], lambda m: m["state"] == "dead"), "the message dead"
    )
    assert m[0]["answer"]["status"] in (502, 503)
    answer = await dx.http.get(body["answer"], headers=auth)
    assert answer.status_code in (502, 503)
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["x-message-state"] == "dead"
    rows = [r for r in await records(dx, body["requestId"]) if r.path.startswith("/r1/")]
    assert rows[-1].phase == "outcome" and rows[-1].status in (502, 503)
    assert exchange(dx).documents == {}
    # An operator lists it and sends it again, once the exchange is back: recorded.
    ops = {"Authorization": f"Bearer {await dx.token('vanhanh')}"}
    listed = (await dx.http.get("/admin/v1/messages?state=dead", headers=ops)).json()["items"]
    assert [m["message_id"] for m in listed] == [body["messageId"]]
    exchange(dx).down = False
    r = await dx.http.post(
        "/admin/v1/messages/replay?comment=back",
        json={"messages": [body["messageId"]]},
        headers=ops,
    )
    assert r.json() == {"queued": 1}, r.text
    await eventually(
        lambda: _all(dx, auth, [body], lambda m: m["state"] == "answered"), "answered after replay"
    )
    assert list(exchange(dx).documents) == [letter(70)["documentId"]]
    async with dx.state.sessions() as s:
        replays = list(
            await s.scalars(select(AdminEvent).where(AdminEvent.action == "messages.replay"))
        )
    assert [(e.actor, e.comment) for e in replays] == [("admin-api:vanhanh", "back")]


async def test_a_right_withdrawn_before_delivery_is_not_sent(dx: Harness) -> None:
    """Deny by default at every attempt: a letter accepted while the caller held a right,
    whose right is withdrawn before it goes out, is answered 403 and never sent."""
    auth = {"Authorization": f"Bearer {await dx.token('motcua')}", **OFFICER}
    exchange(dx).down = True
    r = await dx.http.post(f"{DOCUMENTS}/documents", json=letter(80), headers=auth)
    assert r.status_code == 202
    body = r.json()

    def withdraw(doc: dict[str, Any]) -> None:
        for service in doc["services"]:
            if service["code"] == "lien-thong-van-ban":
                service["access"] = [{"client": "hotich", "method": "*", "path": "/documents/**"}]

    async with dx.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, withdraw, actor="test", source="test")
    await reload_config(dx.state)
    exchange(dx).down = False
    m = await eventually(
        lambda: _all(dx, auth, [body], lambda m: m["state"] == "answered"), "settled"
    )
    assert m[0]["answer"]["status"] == 403
    answer = await dx.http.get(body["answer"], headers=auth)
    assert answer.status_code == 403 and answer.json()["type"].endswith(":access-denied")
    assert exchange(dx).documents == {}


async def test_an_acceptance_the_audit_log_cannot_record_is_not_sent(
    dx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fail_closed service: the 202 is withheld (503 audit-unavailable) and the
    message dropped, so nothing goes out that the audit log does not show was asked."""
    auth = {"Authorization": f"Bearer {await dx.token('motcua')}", **OFFICER}
    write = dx.state.audit.write

    async def failing(event: Any) -> None:
        if event.phase == "accepted":
            raise AuditUnavailable("the test's audit log is full")
        await write(event)

    monkeypatch.setattr(dx.state.audit, "write", failing)
    r = await dx.http.post(f"{DOCUMENTS}/documents", json=letter(90), headers=auth)
    assert r.status_code == 503 and r.json()["type"].endswith(":audit-unavailable"), r.text
    async with dx.state.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(DeferredMessage)) == 0
    assert exchange(dx).documents == {}


async def test_a_message_left_held_by_a_crash_after_its_202_still_goes_out(
    dx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway dies between auditing the acceptance and releasing the message (here:
    the release fails): the caller has its 202, the message is held. The forward worker's
    sweep releases it once its acceptance is in the audit store, and it goes out once; a
    held message whose acceptance never arrived (its caller got no 202) is dropped after
    the retry window, never sent."""
    from datetime import timedelta

    from gateway.events.outbox import SqlOutbox
    from gateway.store.models import utcnow

    auth = {"Authorization": f"Bearer {await dx.token('motcua')}", **OFFICER}
    outbox, forwarder = dx.state.outbox, dx.state.forwarder
    assert outbox is not None and forwarder is not None

    async def crash(self: SqlOutbox, message_id: str) -> None:
        raise OSError("the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(SqlOutbox, "release", crash)
        r = await dx.http.post(f"{DOCUMENTS}/documents", json=letter(95), headers=auth)
    assert r.status_code == 202, r.text
    await asyncio.sleep(0.3)  # several polls of the worker: a held message is not sent
    assert exchange(dx).documents == {}
    assert (await dx.http.get(r.json()["status"], headers=auth)).status_code == 404

    # An orphan: held for two days, its acceptance in no audit record.
    async with dx.state.sessions() as s, s.begin():
        held = await s.scalar(select(DeferredMessage).where(DeferredMessage.state == "held"))
        assert held is not None
        orphan = DeferredMessage(
            **{
                c.key: getattr(held, c.key)
                for c in DeferredMessage.__table__.columns
                if c.key not in ("id",)
            }
        )
        orphan.message_id, orphan.accept_event_id = "orphan-message", "no-such-event"
        orphan.since = utcnow() - timedelta(days=2)
        s.add(orphan)

    assert await forwarder.sweep_held(grace=timedelta(0)) == (1, 1)
    await eventually(
        lambda: _all(dx, auth, [r.json()], lambda m: m["state"] == "answered"), "answered"
    )
    assert [d for d in exchange(dx).documents] == [letter(95)["documentId"]]
    async with dx.state.sessions() as s:
        left = await s.scalar(select(func.count()).select_from(DeferredMessage))
        assert left == 1  # the letter, answered; the orphan is gone
    assert await forwarder.sweep_held(grace=timedelta(0)) == (0, 0)
