"""Events end to end, on the real app and the embedded store (SQLite and PostgreSQL):
a publisher posts, the gateway stores and audits, the delivery worker pushes signed
Standard Webhooks to each subscriber, verified here with the `standardwebhooks` library as
a subscriber would; at-least-once and in order per key through a subscriber's outage; one
slow or failing subscriber does not hold the others back; dead letters after the retry
window, replayed by an operator; refusals of forbidden callbacks, publishers and
subscribers; and pulling for systems that take no callbacks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from gateway.config import versions as policy_state
from gateway.core.settings import Settings
from gateway.edge.reload import reload_config
from gateway.registry import store as registry
from gateway.store.models import AdminEvent, AuditRecord
from tests.conftest import PROVINCE_ID, REPO, Harness

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

TOPIC = "cu-tru"
SUBJECT = "events.test.residence-change"
SCHEMA = (
    '{"type": "object", "required": ["personalId"],'
    ' "properties": {"personalId": {"type": "string"}}}'
)


@pytest.fixture
def retry_window() -> float:
    return 60.0


@pytest.fixture
def settings(database_url: str, tmp_path: Path, retry_window: float) -> Settings:
    return Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        public_url="http://gateway.test",
        instance_id="test-gw",
        schemas_dir=REPO / "schemas",
        token_ttl_seconds=300,
        upstream_allowed_networks=["loopback"],
        events_retry_window_seconds=retry_window,
        events_backoff_initial_seconds=0.05,
        events_backoff_max_seconds=0.3,
        events_poll_seconds=0.05,
        events_delivery_timeout_seconds=20,
        events_subscriber_concurrency=2,
    )


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str) -> None:
    """Poll `check` until it holds, for at most 20 s."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within 20 s: {what}")


@dataclass
class Receiver:
    """A subscriber's webhook endpoint: records every request, answers as told."""

    server: TestServer | None = None
    status: int = 204
    retry_after: str | None = None
    hold: asyncio.Event | None = None  # set: answers wait until it is set
    requests: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    waiting: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hold is not None:
            self.waiting += 1
            await self.hold.wait()
            self.waiting -= 1
        status = self.status
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body, status))
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return web.Response(status=status, headers=headers)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hooks/lgsp"))

    def accepted_ids(self) -> list[str]:
        return [h["webhook-id"] for h, _, s in self.requests if 200 <= s < 300]


@pytest.fixture
async def receivers(gateway: Harness) -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    """Subscribers' receivers; torn down after the gateway's delivery worker has stopped,
    so that none closes under deliveries still being sent to it (a server closing waits
    for the connections a worker keeps busy)."""
    made: list[Receiver] = []

    async def make() -> Receiver:
        r = Receiver()
        app = web.Application()
        app.router.add_post("/hooks/lgsp", r.handle)
        r.server = TestServer(app, host="127.0.0.1")
        await r.server.start_server()
        made.append(r)
        return r

    yield make
    if gateway.state.delivery is not None:
        await gateway.state.delivery.close()
    for r in made:
        if r.hold is not None:
            r.hold.set()
        assert r.server is not None
        await r.server.close()


async def with_topic(h: Harness) -> None:
    """The residence-change topic: published by the population system (dancu), open to
    the tthc group (motcua, hotich); an administrator (quantri) and an operator."""
    async with h.state.sessions() as s, s.begin():
        parsed = registry.parse_schema("JSON", SCHEMA)
        await registry.register(s, SUBJECT, parsed, actor="test", text=SCHEMA)

    def change(doc: dict[str, Any]) -> None:
        doc["clients"] += [
            {"code": "dancu", "agency": "000.00.00.G01", "name": "CSDL dân cư"},
            {"code": "quantri", "agency": PROVINCE_ID, "name": "Admin", "roles": ["administrator"]},
            {"code": "vanhanh", "agency": PROVINCE_ID, "name": "Ops", "roles": ["operator"]},
        ]
        doc["topics"].append(
            {
                "code": TOPIC,
                "name": "Thay đổi cư trú",
                "provider": "000.00.00.G01",
                "publishers": ["dancu"],
                "event_schema": {"subject": SUBJECT},
                "access": [{"group": "tthc"}, {"client": "legacy"}],
            }
        )

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="test")
    await reload_config(h.state)


async def auth(h: Harness, client: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await h.token(client)}"}


async def subscribe(
    h: Harness, admin: dict[str, str], client: str, url: str, **extra: Any
) -> dict[str, Any]:
    body = {"topic": TOPIC, "client": client, "callback_url": url, **extra}
    r = await h.http.post("/admin/v1/subscriptions", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def publish(h: Harness, publisher: dict[str, str], key: str, n: int, **data: Any) -> str:
    event = {"type": "residence.changed", "key": key, "data": {"personalId": key, "n": n, **data}}
    r = await h.http.post(f"/events/v1/{TOPIC}", json=event, headers=publisher)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def test_a_published_event_is_delivered_signed_and_audited(
    gateway: Harness, receivers: Callable[[], Awaitable[Receiver]]
) -> None:
    h = gateway
    await with_topic(h)
    admin, publisher = await auth(h, "quantri"), await auth(h, "dancu")
    rcv = await receivers()
    sub = await subscribe(h, admin, "motcua", rcv.url)
    assert sub["secret"].startswith("whsec_") and sub["secret_hint"] == "…" + sub["secret"][-4:]
    # The secret is shown once: reading the subscription again does not show it.
    again = (await h.http.get(f"/admin/v1/subscriptions/{sub['id']}", headers=admin)).json()
    assert "secret" not in again

    event_id = await publish(h, publisher, "001099012345", 1)
    await eventually(lambda: len(rcv.accepted_ids()) == 1, "the event delivered")
    headers, body, _ = rcv.requests[0]
    # As a subscriber verifies it, with the library it finds.
    payload = Webhook(sub["secret"]).verify(body, headers)
    assert payload["id"] == event_id == headers["webhook-id"]
    assert payload["topic"] == TOPIC and payload["type"] == "residence.changed"
    assert payload["data"] == {"personalId": "001099012345", "n": 1}
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 43).verify(body, headers)

    async def audited() -> bool:
        async with h.state.sessions() as s:
            rows = list(
                await s.scalars(select(AuditRecord).where(AuditRecord.service_code == TOPIC))
            )
        return any(r.status == 202 for r in rows) and any(r.auth_method == "webhook" for r in rows)

    await eventually(audited, "the publish and the delivery attempt audited")
    async with h.state.sessions() as s:
        rows = list(await s.scalars(select(AuditRecord).where(AuditRecord.service_code == TOPIC)))
        published = next(r for r in rows if r.status == 202)
        assert published.client_code == "dancu" and published.provider_code == "000.00.00.G01"
        delivered = next(r for r in rows if r.auth_method == "webhook")
        assert delivered.client_code == "motcua" and delivered.status == 204
        assert delivered.request_id == event_id and delivered.upstream_ms is not None
        made = await s.scalar(select(AdminEvent).where(AdminEvent.action == "subscription.create"))
        assert made is not None and made.actor == "admin-api:quantri"
        assert "secret" not in str(made.after).replace("secret_hint", "")


async def test_a_subscriber_down_for_a_while_gets_every_event_in_order_per_key(
    gateway: Harness, receivers: Callable[[], Awaitable[Receiver]]
) -> None:
    h = gateway
    await with_topic(h)
    admin, publisher = await auth(h, "quantri"), await auth(h, "dancu")
    rcv = await receivers()
    rcv.status = 503
    await subscribe(h, admin, "motcua", rcv.url)
    keys = ["k1", "k2", "k3"]
    sent: dict[str, list[str]] = {k: [] for k in keys}
    for n in range(30):
        key = keys[n % 3]
        sent[key].append(await publish(h, publisher, key, n))
    await eventually(lambda: len(rcv.requests) >= 6, "attempts while the subscriber is down")
    assert rcv.accepted_ids() == []
    rcv.status = 200  # back
    every = {i for ids in sent.values() for i in ids}
    await eventually(lambda: set(rcv.accepted_ids()) == every, "every event delivered")

    # In order per key: each key's requests, retries included, never go back to an
    # earlier event; a repeat (at least once) carries the same webhook-id.
    position = {i: n for ids in sent.values() for n, i in enumerate(ids)}
    for key in keys:
        seen = [h_["webhook-id"] for h_, b, _ in rcv.requests if b'"key":"%s"' % key.encode() in b]
        assert [position[i] for i in seen] == sorted(position[i] for i in seen), key
        first_accepted = [i for i in dict.fromkeys(rcv.accepted_ids()) if i in sent[key]]
        assert first_accepted == sent[key]
    assert set(h_["webhook-id"] for h_, _, _ in rcv.requests) == every  # nothing else


async def test_a_slow_or_failing_subscriber_does_not_hold_the_others_back(
    gateway: Harness, receivers: Callable[[], Awaitable[Receiver]]
) -> None:
    h = gateway
    await with_topic(h)
    admin, publisher = await auth(h, "quantri"), await auth(h, "dancu")
    slow, failing, fast = await receivers(), await receivers(), await receivers()
    slow.hold = asyncio.Event()  # answers nothing until released
    failing.status = 500
    await subscribe(h, admin, "motcua", slow.url)
    await subscribe(h, admin, "hotich", failing.url)
    await subscribe(h, admin, "legacy", fast.url)
    ids = [await publish(h, publisher, f"key-{n}", n) for n in range(20)]
    # Every event, once (20 keys: the order across keys is not promised, on Kafka it
    # varies with the partitions).
    await eventually(
        lambda: sorted(fast.accepted_ids()) == sorted(ids), "the fast subscriber has every event"
    )
    # Meanwhile the slow one holds no more than its share of the worker.
    assert slow.waiting <= 2 and slow.requests == []
    assert failing.requests and not failing.accepted_ids()
    slow.hold.set()
    await eventually(lambda: set(slow.accepted_ids()) == set(ids), "the slow one catches up")


async def test_callbacks_inside_the_gateway_or_on_forbidden_networks_are_refused(
    gateway: Harness,
) -> None:
    h = gateway
    await with_topic(h)
    admin = await auth(h, "quantri")
    for url, why in (
        ("http://169.254.169.254/latest/meta-data", "cloud metadata service"),
        ("http://10.0.0.5/hooks", "outside the networks"),
        (f"{h.url}/admin/v1/clients", "this gateway itself"),
        ("http://gateway.test/admin/v1/clients", "this gateway itself"),
        ("ftp://127.0.0.1/hooks", "scheme"),
        ("http://user:pw@127.0.0.1:9/hooks", "without user or password"),
    ):
        body = {"topic": TOPIC, "client": "motcua", "callback_url": url}
        r = await h.http.post("/admin/v1/subscriptions", json=body, headers=admin)
        assert r.status_code == 422, (url, r.text)
        problem = r.json()
        assert problem["type"].endswith("callback-refused") and why in problem["detail"], url
        assert problem["request_id"] and problem["errors"][0]["field"] == "callback_url"
    body = {"topic": TOPIC, "client": "motcua", "callback_url": "http://localhost:8080/x"}
    r = await h.http.post("/admin/v1/subscriptions", json=body, headers=admin)
    assert r.status_code == 422 and "this gateway itself" in r.text  # its listener
    body = {"topic": TOPIC, "client": "motcua", "callback_url": "http://127.0.0.1:9/x"}
    r = await h.http.post(
        "/admin/v1/subscriptions", json=body | {"filters": {"equals": {"a": [1]}}}, headers=admin
    )
    assert r.status_code == 422 and "filters.equals" in r.text, r.text
    r = await h.http.get("/admin/v1/subscriptions", headers=admin)
    assert r.json()["items"] == []


async def test_unauthorised_publishers_and_subscribers_are_refused_and_audited(
    gateway: Harness, receivers: Callable[[], Awaitable[Receiver]]
) -> None:
    h = gateway
    await with_topic(h)
    admin, motcua, outsider = (
        await auth(h, "quantri"),
        await auth(h, "motcua"),
        await auth(h, "outsider"),
    )
    event = {"type": "residence.changed", "data": {"personalId": "1"}}
    r = await h.http.post(f"/events/v1/{TOPIC}", json=event, headers=motcua)
    assert r.status_code == 403 and r.json()["type"].endswith("access-denied"), r.text
    assert "publishers" in r.json()["detail"]
    r = await h.http.post(f"/events/v1/{TOPIC}", json=event)
    assert r.status_code == 401
    r = await h.http.post("/events/v1/nope", json=event, headers=await auth(h, "dancu"))
    assert r.status_code == 404 and r.json()["type"].endswith("unknown-topic")
    bad = {"type": "residence.changed", "data": {"personalId": 7}}
    r = await h.http.post(f"/events/v1/{TOPIC}", json=bad, headers=await auth(h, "dancu"))
    assert r.status_code == 400 and r.json()["type"].endswith("invalid-event"), r.text
    assert r.json()["errors"][0]["pointer"] == "/data/personalId"
    # Subscribing and pulling need a right in the topic's access: deny by default.
    rcv = await receivers()
    body = {"topic": TOPIC, "client": "outsider", "callback_url": rcv.url}
    r = await h.http.post("/admin/v1/subscriptions", json=body, headers=admin)
    assert r.status_code == 422 and "holds no right" in r.text
    r = await h.http.post(
        "/admin/v1/subscriptions", json=body | {"client": "motcua"}, headers=motcua
    )
    assert r.status_code == 403  # only an administrator subscribes a system
    r = await h.http.get(f"/events/v1/{TOPIC}", headers=outsider)
    assert r.status_code == 403 and r.json()["type"].endswith("access-denied")
    async with h.state.sessions() as s:
        refusals = list(
            await s.scalars(select(AuditRecord).where(AuditRecord.error_type == "access-denied"))
        )
    assert {(x.client_code, x.method) for x in refusals} >= {
        ("motcua", "POST"),
        ("outsider", "GET"),
    }


@pytest.mark.parametrize("retry_window", [1.0])
async def test_a_delivery_is_dead_after_the_retry_window_and_replayable(
    gateway: Harness, receivers: Callable[[], Awaitable[Receiver]]
) -> None:
    h = gateway
    await with_topic(h)
    admin, publisher = await auth(h, "quantri"), await auth(h, "dancu")
    operator = await auth(h, "vanhanh")
    rcv = await receivers()
    rcv.status = 500
    sub = await subscribe(h, admin, "motcua", rcv.url)
    event_id = await publish(h, publisher, "k", 1)
    letters = f"/admin/v1/subscriptions/{sub['id']}/dead-letters"

    async def dead() -> bool:
        return bool((await h.http.get(letters, headers=operator)).json()["items"])

    await eventually(dead, "the delivery dead-lettered")
    [letter] = (await h.http.get(letters, headers=operator)).json()["items"]
    assert letter["event_id"] == event_id and letter["last_status"] == 500
    assert letter["attempts"] >= 2  # retried within the window first
    async with h.state.sessions() as s:
        attempts = list(
            await s.scalars(select(AuditRecord).where(AuditRecord.auth_method == "webhook"))
        )
    # Every attempt audited: the subscriber, its answer, the latency.
    assert len(attempts) >= letter["attempts"]
    assert {(a.client_code, a.status, a.error_type) for a in attempts} == {
        ("motcua", 500, "subscriber-refused")
    }
    assert all(a.upstream_ms is not None for a in attempts)
    assert (await h.http.get(f"/admin/v1/subscriptions/{sub['id']}", headers=admin)).json()[
        "dead"
    ] == 1
    rcv.status = 204
    tried = len(rcv.requests)
    r = await h.http.post(
        f"/admin/v1/subscriptions/{sub['id']}/replay?comment=back", json={}, headers=operator
    )
    assert r.status_code == 200 and r.json() == {"queued": 1}, r.text
    await eventually(lambda: rcv.accepted_ids() == [event_id], "the replayed delivery made")
    assert all(h_["webhook-id"] == event_id for h_, _, _ in rcv.requests[:tried])
    assert (await h.http.get(letters, headers=operator)).json()["items"] == []
    async with h.state.sessions() as s:
        replayed = await s.scalar(
            select(AdminEvent).where(AdminEvent.action == "subscription.replay")
        )
    assert (
        replayed is not None
        and replayed.actor == "admin-api:vanhanh"
        and replayed.comment == "back"
    )


async def test_a_subscriber_that_takes_no_callbacks_pulls_after_a_cursor(gateway: Harness) -> None:
    h = gateway
    await with_topic(h)
    publisher, hotich = await auth(h, "dancu"), await auth(h, "hotich")
    ids = [await publish(h, publisher, "k", n) for n in range(3)]
    r = await h.http.get(f"/events/v1/{TOPIC}?limit=2", headers=hotich)
    assert r.status_code == 200, r.text
    page = r.json()
    assert [i["event"]["id"] for i in page["items"]] == ids[:2]
    r = await h.http.get(f"/events/v1/{TOPIC}?after={page['next']}", headers=hotich)
    rest = r.json()
    assert [i["event"]["id"] for i in rest["items"]] == ids[2:]
    r = await h.http.get(f"/events/v1/{TOPIC}?after={rest['next']}", headers=hotich)
    assert r.json()["items"] == [] and r.json()["next"] == rest["next"]
    r = await h.http.get(f"/events/v1/{TOPIC}?after=-1", headers=hotich)
    assert r.status_code == 400 and r.json()["type"].endswith("invalid-parameter")


async def test_a_subscriber_whose_right_is_withdrawn_is_sent_nothing_more(
    gateway: Harness, receivers: Callable[[], Awaitable[Receiver]]
) -> None:
    h = gateway
    await with_topic(h)
    admin, publisher = await auth(h, "quantri"), await auth(h, "dancu")
    rcv = await receivers()
    rcv.status = 503
    sub = await subscribe(h, admin, "motcua", rcv.url)
    queued = await publish(h, publisher, "k", 1)
    await eventually(lambda: len(rcv.requests) >= 1, "a first, failed attempt")

    def withdraw(doc: dict[str, Any]) -> None:
        doc["topics"][0]["access"] = [{"client": "legacy"}]

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, withdraw, actor="test", source="test")
    await reload_config(h.state)
    rcv.status = 204
    letters = f"/admin/v1/subscriptions/{sub['id']}/dead-letters"

    async def dead() -> bool:
        return bool((await h.http.get(letters, headers=admin)).json()["items"])

    await eventually(dead, "the queued delivery given up")
    [letter] = (await h.http.get(letters, headers=admin)).json()["items"]
    assert letter["event_id"] == queued and "no longer holds a right" in letter["last_error"]
    await publish(h, publisher, "k", 2)
    view = (await h.http.get(f"/admin/v1/subscriptions/{sub['id']}", headers=admin)).json()
    assert view["pending"] == 0  # nothing queued for it
    assert rcv.accepted_ids() == []
