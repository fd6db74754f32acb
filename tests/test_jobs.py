"""Scheduled pulls end to end on the running gateway and the simulator's change feeds
(SQLite and PostgreSQL): a delta run since the watermark, a run as of a date, paging by
cursor and by page number across several pages, records published to a topic (pullable,
audited as the gateway's) or packaged and downloaded by a granted system only, each page
an audited exchange as the job's client; two schedulers sharing one store make one run;
a failed run leaves the watermark where it was; operators see the runs and ask for one.

The scheduler is driven here by `tick()` (the gateway's own loop is off:
`jobs_enabled=False`), so that each test says when a scheduler looks.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from gateway.config import versions as policy_state
from gateway.core.settings import Settings
from gateway.edge.reload import reload_config
from gateway.events.jobs import VIETNAM, JobScheduler, next_fire
from gateway.registry import store as registry
from gateway.store.jobs import BulkPackage, JobRun, JobState
from gateway.store.models import AdminEvent, EventRecord
from simulator.feeds import FEEDS, ChangeFeeds
from tests.conftest import PROVINCE_ID, REPO, Harness

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

BCA = "000.00.00.G01"
RESIDENCE = f"{BCA}/thay-doi-cu-tru/v1"
DOSSIERS = f"{BCA}/cap-nhat-ho-so/v1"
SUBJECT = "jobs.test.residence-change"
SCHEMA = (
    '{"type": "object", "required": ["SoDinhDanh", "ThoiDiemCapNhat"],'
    ' "properties": {"SoDinhDanh": {"type": "string", "pattern": "^[0-9]{12}$"}}}'
)
NEVER = "0 3 1 1 *"  # 03:00 on 1 January: never due while a test runs
ACCOUNT = {"officer": "lgsp-lich", "procedure": "LGSP-DONGBO"}


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
        jobs_enabled=False,
        events_poll_seconds=0.05,
    )


def _service(code: str, path: str) -> dict[str, Any]:
    return {
        "provider": BCA,
        "code": code,
        "version": "v1",
        "name": code,
        "upstream": "ndxp",
        "upstream_path": path,
        "require": ["officer", "procedure"],
        "access": [{"client": "lgsp-lich", "method": "GET"}],
    }


def _job(code: str, service: str, output: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "name": code,
        "cron": NEVER,
        "client": "lgsp-lich",
        "service": service,
        "accountability": ACCOUNT,
        "output": output,
        **extra,
    }


RESIDENCE_PAGING = {"kind": "cursor", "param": "cursor", "next_field": "next", "size": 5}
DOSSIER_PAGING = {"kind": "page", "param": "page", "size_param": "per_page", "size": 4}
PACKAGE = {"package": {"access": [{"client": "motcua"}], "keep": 2}}


async def _declare(h: Harness) -> None:
    async with h.state.sessions() as s, s.begin():
        parsed = registry.parse_schema("JSON", SCHEMA)
        await registry.register(s, SUBJECT, parsed, actor="test", text=SCHEMA)

    def change(doc: dict[str, Any]) -> None:
        doc["clients"] += [
            {"code": "lgsp-lich", "agency": PROVINCE_ID, "name": "Scheduled pulls"},
            {"code": "quantri", "agency": PROVINCE_ID, "name": "Admin", "roles": ["administrator"]},
        ]
        doc["services"] += [
            _service("thay-doi-cu-tru", "/csdldc/v1/thay-doi-cu-tru"),
            _service("cap-nhat-ho-so", "/dvcqg/v1/ho-so/cap-nhat"),
        ]
        doc.setdefault("topics", []).append(
            {
                "code": "thay-doi-cu-tru",
                "name": "Residence changes",
                "provider": BCA,
                "publishers": ["lgsp-lich"],
                "event_schema": {"subject": SUBJECT},
                "access": [{"client": "motcua"}],
            }
        )
        doc.setdefault("jobs", []).extend(
            [
                _job(
                    "cu-tru-goi",
                    RESIDENCE,
                    PACKAGE,
                    changed_field="ThoiDiemCapNhat",
                    paging=RESIDENCE_PAGING,
                ),
                _job(
                    "cu-tru-su-kien",
                    RESIDENCE,
                    {"topic": "thay-doi-cu-tru", "event_type": "residence.changed"},
                    changed_field="ThoiDiemCapNhat",
                    key_field="SoDinhDanh",
                    paging=RESIDENCE_PAGING,
                ),
                _job(
                    "ho-so-ngay",
                    DOSSIERS,
                    PACKAGE,
                    mode="as_of",
                    as_of="2026-11-04",
                    paging=DOSSIER_PAGING,
                ),
            ]
        )

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="test")
    await reload_config(h.state)


def _scheduler(h: Harness, name: str = "test-a") -> JobScheduler:
    assert h.state.jobs is not None
    return JobScheduler(
        h.state.jobs,
        h.state.events,
        h.state.upstream,
        h.state.audit,
        lambda: h.state.pipeline.config,
        instance=name,
        lease_seconds=30,
        metrics=h.state.metrics,
    )


async def _auth(h: Harness, client: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await h.token(client)}"}


async def _ask(h: Harness, admin: dict[str, str], job: str) -> str:
    r = await h.http.post(f"/admin/v1/jobs/{job}/runs?comment=test", headers=admin)
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


async def _runs(h: Harness, job: str) -> list[JobRun]:
    async with h.state.sessions() as s:
        q = select(JobRun).where(JobRun.job_code == job).order_by(JobRun.id)
        return list(await s.scalars(q))


async def _state(h: Harness, job: str) -> JobState:
    async with h.state.sessions() as s:
        row = await s.get(JobState, job)
    assert row is not None
    return row


def _feeds(h: Harness) -> ChangeFeeds:
    return h.simulator[FEEDS]


def _latest_residence(feeds: ChangeFeeds) -> datetime:
    return max(datetime.fromisoformat(r["ThoiDiemCapNhat"]) for r in feeds.residence)


async def _receiver() -> tuple[TestServer, list[tuple[dict[str, str], bytes]]]:
    """A started subscriber's callback server and what it got (headers, body); close it."""
    got: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", receive)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    return receiver, got


async def _subscribe(h: Harness, admin: dict[str, str], receiver: TestServer) -> Webhook:
    """motcua subscribed to the residence topic at `receiver`; its signature checker."""
    body = {
        "topic": "thay-doi-cu-tru",
        "client": "motcua",
        "callback_url": str(receiver.make_url("/hooks")),
    }
    r = await h.http.post("/admin/v1/subscriptions", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return Webhook(r.json()["secret"])


async def test_a_package_run_pages_through_the_feed_and_a_granted_system_downloads_it(
    gateway: Harness,
) -> None:
    h = gateway
    await _declare(h)
    admin = await _auth(h, "quantri")
    scheduler = _scheduler(h)
    assert await scheduler.tick() == 0  # nothing due: the cron fires on 1 January only
    run_id = await _ask(h, admin, "cu-tru-goi")
    assert await scheduler.tick() == 1

    (run,) = await _runs(h, "cu-tru-goi")
    assert (run.run_id, run.state, run.trigger) == (run_id, "succeeded", "manual")
    assert run.requested_by == "admin-api:quantri"
    assert (run.pages, run.records, run.attempts) == (5, 24, 1)  # 24 records, 5 a page
    state = await _state(h, "cu-tru-goi")
    assert state.watermark == _latest_residence(_feeds(h)).astimezone(UTC)
    assert state.lease_owner is None  # given back

    # Each page an exchange of the job's client, under its own request id.
    for page in range(1, 6):
        (record,) = await h.audit(f"job:cu-tru-goi:{run_id}:{page}")
        assert (record.client_code, record.officer_id, record.procedure_code) == (
            "lgsp-lich",
            "lgsp-lich",
            "LGSP-DONGBO",
        )
        assert (record.status, record.service_code, record.provider_code) == (
            200,
            "thay-doi-cu-tru",
            BCA,
        )

    motcua, outsider = await _auth(h, "motcua"), await _auth(h, "outsider")
    r = await h.http.get("/bulk/v1/cu-tru-goi/packages", headers=motcua)
    assert r.status_code == 200, r.text
    (package,) = r.json()["items"]
    assert (package["run_id"], package["records"]) == (run_id, 24)
    r = await h.http.get(f"/bulk/v1/cu-tru-goi/packages/{package['id']}", headers=motcua)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    r_sha = hashlib.sha256(r.content).hexdigest()
    assert r.headers["x-package-sha256"] == r_sha
    assert r.headers["x-package-records"] == "24"
    lines = [orjson.loads(x) for x in r.content.splitlines()]
    assert [x["MaThayDoi"] for x in lines] == [x["MaThayDoi"] for x in _feeds(h).residence]

    for path in ("/bulk/v1/cu-tru-goi/packages", f"/bulk/v1/cu-tru-goi/packages/{package['id']}"):
        r = await h.http.get(path, headers=outsider)
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith(":access-denied")
    r = await h.http.get("/bulk/v1/no-such-job/packages", headers=motcua)
    assert r.status_code == 404 and r.json()["type"].endswith(":unknown-job")
    (served,) = [
        a for a in await h.audit() if a.client_code == "motcua" and a.path.endswith(package["id"])
    ]
    assert served.status == 200 and served.response_sha256 == r_sha
    refused = [a for a in await h.audit() if a.client_code == "outsider"]
    assert len(refused) == 2 and {a.status for a in refused} == {403}

    # Counted as exchanges of the job's client, for /metrics.
    h.state.metrics.flush()
    r = await h.http.get("/metrics")
    assert 'client="lgsp-lich",outcome="ok"' in r.text, r.text[-2000:]

    # The operator's view, and the admin event naming who asked.
    r = await h.http.get("/admin/v1/jobs/cu-tru-goi/runs", headers=admin)
    assert r.status_code == 200
    view = r.json()
    assert view["watermark"] is not None and view["runs"][0]["records"] == 24
    async with h.state.sessions() as s:
        asked = await s.scalar(select(AdminEvent).where(AdminEvent.action == "job.run"))
    assert asked is not None and asked.actor == "admin-api:quantri"
    assert asked.after == {"run_id": run_id}


async def test_a_delta_run_asks_only_for_the_changes_since_the_watermark(
    gateway: Harness,
) -> None:
    h = gateway
    await _declare(h)
    admin = await _auth(h, "quantri")
    scheduler = _scheduler(h)
    await _ask(h, admin, "cu-tru-goi")
    await scheduler.tick()
    first = (await _state(h, "cu-tru-goi")).watermark
    assert first is not None

    feeds = _feeds(h)
    new = feeds.add_residence(first + timedelta(hours=2))
    second_id = await _ask(h, admin, "cu-tru-goi")
    await scheduler.tick()
    second = (await _runs(h, "cu-tru-goi"))[-1]
    assert (second.run_id, second.state, second.records, second.pages) == (
        second_id,
        "succeeded",
        1,
        1,
    )
    assert second.since == first  # asked from the watermark
    (page,) = await h.audit(f"job:cu-tru-goi:{second_id}:1")
    assert "since=" in page.path
    state = await _state(h, "cu-tru-goi")
    assert state.watermark == datetime.fromisoformat(new["ThoiDiemCapNhat"]).astimezone(UTC)

    motcua = await _auth(h, "motcua")
    r = await h.http.get("/bulk/v1/cu-tru-goi/packages", headers=motcua)
    newest = r.json()["items"][0]
    r = await h.http.get(f"/bulk/v1/cu-tru-goi/packages/{newest['id']}", headers=motcua)
    assert [orjson.loads(x)["MaThayDoi"] for x in r.content.splitlines()] == [new["MaThayDoi"]]


async def test_an_as_of_run_pages_by_number_and_keeps_no_watermark(gateway: Harness) -> None:
    h = gateway
    await _declare(h)
    admin = await _auth(h, "quantri")
    run_id = await _ask(h, admin, "ho-so-ngay")
    await _scheduler(h).tick()
    (run,) = await _runs(h, "ho-so-ngay")
    # As of the end of 4 November: the latest update of each dossier made by then.
    end = datetime(2026, 11, 4, 23, 59, 59, tzinfo=VIETNAM)
    latest: dict[str, dict[str, Any]] = {}
    for d in _feeds(h).dossiers:
        if datetime.fromisoformat(d["ThoiDiemCapNhat"]) <= end:
            latest[d["MaHoSo"]] = d
    assert len(latest) > 4  # more than one page of 4
    assert (run.state, run.records, run.as_of) == ("succeeded", len(latest), "2026-11-04")
    assert run.pages == -(-len(latest) // 4)
    assert (await _state(h, "ho-so-ngay")).watermark is None
    pages = [await h.audit(f"job:ho-so-ngay:{run_id}:{n}") for n in range(1, run.pages + 1)]
    assert all(
        "as_of=2026-11-04" in p.path and f"page={n}" in p.path for n, (p,) in enumerate(pages, 1)
    )

    r = await h.http.get("/bulk/v1/ho-so-ngay/packages", headers=await _auth(h, "motcua"))
    (package,) = r.json()["items"]
    r = await h.http.get(
        f"/bulk/v1/ho-so-ngay/packages/{package['id']}", headers=await _auth(h, "motcua")
    )
    got = {orjson.loads(x)["MaHoSo"]: orjson.loads(x) for x in r.content.splitlines()}
    assert got == latest


async def test_a_topic_run_publishes_each_record_once_as_the_gateway(gateway: Harness) -> None:
    h = gateway
    await _declare(h)
    admin = await _auth(h, "quantri")
    receiver, got = await _receiver()
    hook = await _subscribe(h, admin, receiver)
    run_id = await _ask(h, admin, "cu-tru-su-kien")
    await _scheduler(h).tick()
    (run,) = await _runs(h, "cu-tru-su-kien")
    assert (run.state, run.records) == ("succeeded", 24)

    motcua = await _auth(h, "motcua")
    r = await h.http.get("/events/v1/thay-doi-cu-tru?limit=100", headers=motcua)
    assert r.status_code == 200
    events = [i["event"] for i in r.json()["items"]]
    assert [e["data"]["MaThayDoi"] for e in events] == [x["MaThayDoi"] for x in _feeds(h).residence]
    assert len({e["id"] for e in events}) == 24
    assert all(e["type"] == "residence.changed" for e in events)
    assert [e["key"] for e in events] == [x["SoDinhDanh"] for x in _feeds(h).residence]
    async with h.state.sessions() as s:
        publishers = set(await s.scalars(select(EventRecord.publisher)))
    assert publishers == {"lgsp:job:cu-tru-su-kien"}
    assert len(await h.audit(f"job:cu-tru-su-kien:{run_id}:5")) == 1

    # Pushed too, signed, as any published event: the subscriber gets each one.
    deadline = time.monotonic() + 20
    while len({h["webhook-id"] for h, _ in got}) < 24 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert {h["webhook-id"] for h, _ in got} == {e["id"] for e in events}
    for headers, payload in got:
        hook.verify(payload, headers)
    await receiver.close()


async def test_a_record_the_topic_refuses_fails_the_run(gateway: Harness) -> None:
    h = gateway
    await _declare(h)
    feeds = _feeds(h)
    feeds.residence[7]["SoDinhDanh"] = "không rõ"  # on page 2: the topic's schema refuses it
    await _ask(h, await _auth(h, "quantri"), "cu-tru-su-kien")
    await _scheduler(h).tick()
    (run,) = await _runs(h, "cu-tru-su-kien")
    assert (run.state, run.error_type, run.pages) == ("failed", "invalid-event", 1)
    assert (await _state(h, "cu-tru-su-kien")).watermark is None


async def test_a_failed_run_leaves_the_watermark_and_the_next_asks_from_it(
    gateway: Harness,
) -> None:
    h = gateway
    await _declare(h)
    admin = await _auth(h, "quantri")
    scheduler = _scheduler(h)
    await _ask(h, admin, "cu-tru-goi")
    await scheduler.tick()
    before = (await _state(h, "cu-tru-goi")).watermark
    feeds = _feeds(h)
    assert before is not None
    for n in range(12):
        feeds.add_residence(before + timedelta(hours=n + 1))
    feeds.fail_from_page = 2  # the provider fails on the second page of 5-record pages

    failing = await _ask(h, admin, "cu-tru-goi")
    await scheduler.tick()
    run = (await _runs(h, "cu-tru-goi"))[-1]
    assert (run.run_id, run.state, run.pages) == (failing, "failed", 1)
    assert run.error_type == "job-answer-unreadable" and "503" in (run.error or "")
    assert (await _state(h, "cu-tru-goi")).watermark == before  # not advanced
    (refused,) = await h.audit(f"job:cu-tru-goi:{failing}:2")
    assert refused.status == 503 and refused.error_type == "job-answer-unreadable"
    async with h.state.sessions() as s:
        package = await s.get(BulkPackage, run.package_id)
    assert package is not None and package.state == "failed"
    r = await h.http.get("/bulk/v1/cu-tru-goi/packages", headers=await _auth(h, "motcua"))
    assert failing not in {p["run_id"] for p in r.json()["items"]}  # never downloadable
    r = await h.http.get("/admin/v1/job-runs?state=failed", headers=admin)
    assert [(x["job"], x["run_id"]) for x in r.json()["items"]] == [("cu-tru-goi", failing)]

    feeds.fail_from_page = None
    await _ask(h, admin, "cu-tru-goi")
    await scheduler.tick()
    again = (await _runs(h, "cu-tru-goi"))[-1]
    assert (again.state, again.since, again.records) == ("succeeded", before, 12)


async def test_two_schedulers_on_one_store_make_one_run(gateway: Harness) -> None:
    h = gateway
    await _declare(h)
    _feeds(h).delay_ms = 30  # pages slow enough for both schedulers to look meanwhile
    await _ask(h, await _auth(h, "quantri"), "cu-tru-goi")
    a, b = _scheduler(h, "replica-a"), _scheduler(h, "replica-b")
    made = await asyncio.gather(a.tick(), b.tick(), a.tick(), b.tick())
    assert sum(made) == 1
    (run,) = await _runs(h, "cu-tru-goi")
    assert (run.state, run.records, run.attempts) == ("succeeded", 24, 1)
    assert _feeds(h).pages_served == 5  # no page asked for twice


async def test_the_lease_is_one_holder_until_it_runs_out(gateway: Harness) -> None:
    h = gateway
    store = h.state.jobs
    assert store is not None
    await store.ensure_state("x", NEVER, next_fire(NEVER, datetime.now(UTC)))
    assert await store.acquire("x", "a", 60)
    assert not await store.acquire("x", "b", 60)
    async with h.state.sessions() as s, s.begin():  # a's process died: its lease ran out
        past = datetime.now(UTC) - timedelta(seconds=1)
        await s.execute(update(JobState).where(JobState.job_code == "x").values(lease_until=past))
    assert await store.acquire("x", "b", 60)
    await store.release("x", "a")  # not a's any more: nothing given back
    assert not await store.acquire("x", "c", 60)


async def test_a_scheduled_fire_makes_a_run_and_the_next_due_time(gateway: Harness) -> None:
    h = gateway
    await _declare(h)
    scheduler = _scheduler(h)
    await scheduler.tick()  # every job gets its state and next due time
    now = datetime.now(UTC)
    async with h.state.sessions() as s, s.begin():
        past = now - timedelta(minutes=1)
        await s.execute(
            update(JobState).where(JobState.job_code == "ho-so-ngay").values(next_due_at=past)
        )
    assert await scheduler.tick() == 1
    (run,) = await _runs(h, "ho-so-ngay")
    assert (run.trigger, run.state) == ("schedule", "succeeded")
    due = (await _state(h, "ho-so-ngay")).next_due_at
    assert due is not None and due > now
    assert due.astimezone(VIETNAM).strftime("%d/%m %H:%M") == "01/01 03:00"


async def test_asking_twice_before_a_run_starts_is_refused(gateway: Harness) -> None:
    h = gateway
    await _declare(h)
    admin = await _auth(h, "quantri")
    await _ask(h, admin, "cu-tru-goi")
    r = await h.http.post("/admin/v1/jobs/cu-tru-goi/runs", headers=admin)
    assert r.status_code == 409 and r.json()["type"].endswith(":conflict")
    r = await h.http.post("/admin/v1/jobs/nope/runs", headers=admin)
    assert r.status_code == 404 and r.json()["type"].endswith(":unknown-job")
    r = await h.http.post("/admin/v1/jobs/cu-tru-goi/runs", headers=await _auth(h, "motcua"))
    assert r.status_code == 403


async def test_an_operator_backfills_from_a_time_and_the_watermark_stays(
    gateway: Harness,
) -> None:
    h = gateway
    await _declare(h)
    admin = await _auth(h, "quantri")
    scheduler = _scheduler(h)
    await _ask(h, admin, "cu-tru-goi")
    await scheduler.tick()
    watermark = (await _state(h, "cu-tru-goi")).watermark
    feeds = _feeds(h)
    since = feeds.residence[19]["ThoiDiemCapNhat"]  # the last four changes come after it
    r = await h.http.post(
        "/admin/v1/jobs/cu-tru-goi/runs?comment=lost+a+night", json={"since": since}, headers=admin
    )
    assert r.status_code == 202, r.text
    await scheduler.tick()
    run = (await _runs(h, "cu-tru-goi"))[-1]
    assert (run.run_id, run.state, run.records) == (r.json()["run_id"], "succeeded", 4)
    assert run.since == datetime.fromisoformat(since)
    assert (await _state(h, "cu-tru-goi")).watermark == watermark  # never moved back
    async with h.state.sessions() as s:
        asked = list(await s.scalars(select(AdminEvent).where(AdminEvent.action == "job.run")))
    assert asked[-1].after == {"run_id": run.run_id, "since": since}

    r = await h.http.post("/admin/v1/jobs/ho-so-ngay/runs", json={"since": since}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "since"
    r = await h.http.post(
        "/admin/v1/jobs/ho-so-ngay/runs", json={"as_of": "2026-11-02"}, headers=admin
    )
    assert r.status_code == 202
    await scheduler.tick()
    assert (await _runs(h, "ho-so-ngay"))[-1].as_of == "2026-11-02"
