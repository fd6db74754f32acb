"""The auditor API (`/audit/v1`) against a running gateway, on SQLite and PostgreSQL.

Records are made by real exchanges through `/r1`, then read back the way an inspector
would: searched, paged, exported, summarised per local day and verified, with personal
identifiers masked unless the auditor holds the unmask right, and every read itself
written down.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import orjson
import pytest
from sqlalchemy import delete, select, update

from gateway.audit import query
from gateway.audit.query import AuditFilter
from gateway.config import versions as policy_state
from gateway.edge.app import reload_config
from gateway.store.models import AuditFinding, AuditPurge, AuditRead, AuditRecord
from tests.conftest import ECHO, PROVINCE_ID, Harness

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

PROBLEM = "urn:lgsp:problem:"
API = "/audit/v1"
AUDITOR_AGENCY = "000.00.12.H49"
VN = timezone(timedelta(hours=7))
ADDRESS_DEAD = f"/r1/{PROVINCE_ID}/dead/v1/x"
ADDRESS_STATUS = f"/r1/{PROVINCE_ID}/status/v1"
CITIZEN = "001099012345"
PERSONAL_PATH = f"{ECHO}/cong-dan/{CITIZEN}?ho_ten=Nguyen%20Van%20A&so_cmnd=123456789"
MASKED_PATH = f"{ECHO}/cong-dan/001*******45?ho_ten=***&so_cmnd=***"


# -- helpers ----------------------------------------------------------------------------------


async def auditors(h: Harness) -> tuple[dict[str, str], dict[str, str]]:
    """Bearer headers for an auditor, and for an auditor who may also unmask."""
    async with h.state.sessions() as s, s.begin():
        for code, roles in (
            ("thanhtra", ["auditor"]),
            ("thanhtra-pii", ["auditor", "audit:unmask"]),
        ):
            await policy_state.create_client(
                s, code=code, agency_code=AUDITOR_AGENCY, name=code, actor="test", roles=roles
            )
    await reload_config(h.state)
    return (
        {"Authorization": f"Bearer {await h.token('thanhtra')}"},
        {"Authorization": f"Bearer {await h.token('thanhtra-pii')}"},
    )


async def exchange(
    h: Harness,
    request_id: str,
    path: str,
    auth: dict[str, str],
    *,
    method: str = "GET",
    status: int = 200,
    headers: dict[str, str] | None = None,
    **header_kw: str,
) -> AuditRecord:
    """One exchange through /r1 (headers also as X_Officer_Id="..."); its audit record."""
    extra = {**(headers or {}), **{k.replace("_", "-"): v for k, v in header_kw.items()}}
    r = await h.http.request(method, path, headers={**auth, "X-Request-Id": request_id, **extra})
    assert r.status_code == status, r.text
    [rec] = await h.audit(request_id)
    return rec


async def read(h: Harness, path: str, auth: dict[str, str], **params: Any) -> httpx.Response:
    r = await h.http.get(f"{API}{path}", params=params, headers=auth)
    assert r.status_code == 200, r.text[:2000]
    return r


async def ids(h: Harness, auth: dict[str, str], **params: Any) -> list[str]:
    """Event ids of every record the search returns, following cursors."""
    found: list[str] = []
    cursor: str | None = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        body = (await read(h, "/exchanges", auth, **params, **extra)).json()
        found += [item["event_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return found


async def reads(h: Harness) -> list[AuditRead]:
    async with h.state.sessions() as s:
        return list((await s.scalars(select(AuditRead).order_by(AuditRead.id))).all())


def check_problem(r: httpx.Response, status: int, slug: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug
    assert body["request_id"] == r.headers["x-request-id"]
    for word in words:
        assert word in body["detail"], body["detail"]
    return body


def stored_row(started_at: datetime, **fields: Any) -> AuditRecord:
    """A record as an older instance (before the hash chain) would have left it."""
    values: dict[str, Any] = {
        "event_id": f"imported-{started_at.timestamp()}-{fields.get('duration_ms', 0)}",
        "request_id": "imported",
        "instance": "archive-gw",
        "client_code": "hotich",
        "client_agency_code": AUDITOR_AGENCY,
        "provider_code": PROVINCE_ID,
        "service_code": "echo",
        "service_version": "v1",
        "method": "GET",
        "path": f"{ECHO}/x",
        "started_at": started_at,
        "finished_at": started_at + timedelta(milliseconds=5),
        "duration_ms": 5.0,
        "status": 200,
        **fields,
    }
    return AuditRecord(**values)


# -- masking, as a function --------------------------------------------------------------------


def test_masking_keeps_the_shape_and_hides_identifiers() -> None:
    cases = {
        "/r1/000.00.00.G01/csdlqg-dancu/v1/cong-dan/001099012345": (
            "/r1/000.00.00.G01/csdlqg-dancu/v1/cong-dan/001*******45"
        ),
        "/x/123456789/y": "/x/123****89/y",  # a 9-digit CMND
        "/x/cccd079123456789": "/x/cccd079*******89",
        "/x/12345678/1234567890123": "/x/12345678/1234567890123",  # 8 and 13 digits: not ids
        "/x?ho_ten=Tr%E1%BA%A7n&empty=&001099012345": "/x?ho_ten=***&empty=&***",
        "/x?": "/x?",
    }
    for path, masked in cases.items():
        assert query.mask_path(path) == masked, path
    record = {"path": "/a?b=c", "error_detail": "CCCD 001099012345 not found", "status": 404}
    assert query.mask_record(record) == {
        "path": "/a?b=***",
        "error_detail": "CCCD 001*******45 not found",
        "status": 404,
    }
    assert record["path"] == "/a?b=c"  # a copy, not in place


# -- access -----------------------------------------------------------------------------------


async def test_only_auditors_read_and_unmasking_needs_its_right(gateway: Harness) -> None:
    h = gateway
    auditor, _ = await auditors(h)

    r = await h.http.get(f"{API}/exchanges")
    check_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")

    motcua = {"Authorization": f"Bearer {await h.token('motcua')}", "X-Request-Id": "ask-1"}
    for path in ("/exchanges", "/export", "/stats/daily", "/verify", "/admin-events"):
        r = await h.http.get(f"{API}{path}", headers=motcua)
        body = check_problem(r, 403, "access-denied", "'motcua'", "auditor")
        assert body["request_id"] == "ask-1"

    r = await h.http.get(f"{API}/exchanges", params={"unmask": "true"}, headers=auditor)
    check_problem(r, 403, "access-denied", "'thanhtra'", "audit:unmask")
    r = await h.http.get(f"{API}/export", params={"unmask": "true"}, headers=auditor)
    check_problem(r, 403, "access-denied", "audit:unmask")

    # Who tried to look is recorded too: each refusal of a known system, nothing shown.
    refused = await reads(h)
    assert [(r.actor, r.action, r.records) for r in refused] == [("motcua", "refused", 0)] * 5 + [
        ("thanhtra", "refused", 0)
    ] * 2
    assert refused[0].request_id == "ask-1"
    assert refused[-1].query == {"path": f"{API}/export", "unmask": "true"}

    # An API key works as well as a token.
    key = await h.api_key("thanhtra")
    r = await read(h, "/exchanges", {"X-Api-Key": key, "X-Request-Id": "by-key"})
    assert r.headers["x-request-id"] == "by-key"
    row = (await reads(h))[-1]
    assert (row.actor, row.action, row.request_id) == ("thanhtra", "search", "by-key")
    assert row.records == 0 and row.unmasked is False


# -- search -----------------------------------------------------------------------------------


async def test_filters_narrow_the_search_and_cursors_visit_every_record_once(
    gateway: Harness,
) -> None:
    h = gateway
    auditor, _ = await auditors(h)
    motcua = {"Authorization": f"Bearer {await h.token('motcua')}"}
    legacy = {"X-Api-Key": await h.api_key("legacy")}
    outsider = {"Authorization": f"Bearer {await h.token('outsider')}"}
    account = {"X-Officer-Id": "CB-01", "X-Procedure-Code": "1.001", "X-Case-Number": "HS-1"}
    await exchange(h, "e1", f"{ECHO}/ho-so/1", motcua, headers=account)
    await exchange(h, "e2", f"{ECHO}/ho-so", motcua, method="POST", X_Officer_Id="CB-02")
    await exchange(h, "e3", f"{ECHO}/ho-so/3", legacy, X_Officer_Id="CB-01")
    await exchange(h, "e4", f"{ADDRESS_STATUS}/404", motcua, status=404)
    await exchange(h, "e5", ADDRESS_DEAD, motcua, status=502)
    await exchange(h, "e6", f"{ECHO}/ho-so/6", outsider, status=403)
    await exchange(h, "e7", f"{ECHO}/ho-so/7", {}, status=401)
    for n in range(8, 12):
        await exchange(h, f"e{n}", f"{ECHO}/ho-so/{n}", motcua, X_Procedure_Code="2.002")
    records = await h.audit()
    assert len(records) == 11
    by_time = sorted(records, key=lambda r: (r.started_at, r.id))
    since, until = by_time[2].started_at, by_time[7].started_at

    cases: list[tuple[dict[str, Any], Callable[[AuditRecord], bool]]] = [
        ({}, lambda r: True),
        ({"client": "motcua"}, lambda r: r.client_code == "motcua"),
        ({"client": "legacy"}, lambda r: r.client_code == "legacy"),
        ({"agency": "000.00.31.H49"}, lambda r: r.client_agency_code == "000.00.31.H49"),
        ({"provider": PROVINCE_ID, "service": "echo"}, lambda r: r.service_code == "echo"),
        ({"service": "dead", "version": "v1"}, lambda r: r.service_code == "dead"),
        ({"status": 404}, lambda r: r.status == 404),
        ({"outcome": "success"}, lambda r: r.status < 400),
        ({"outcome": "refused"}, lambda r: 400 <= r.status < 500),
        ({"outcome": "failed"}, lambda r: r.status >= 500),
        ({"officer": "CB-01"}, lambda r: r.officer_id == "CB-01"),
        ({"procedure": "2.002"}, lambda r: r.procedure_code == "2.002"),
        ({"case": "HS-1"}, lambda r: r.case_number == "HS-1"),
        ({"request_id": "e5"}, lambda r: r.request_id == "e5"),
        ({"instance": "test-gw", "client": "outsider"}, lambda r: r.client_code == "outsider"),
        ({"instance": "elsewhere"}, lambda r: False),
        (
            {"since": since.isoformat(), "until": until.isoformat()},
            lambda r: since <= r.started_at < until,
        ),
        (
            {"since": since.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "client": "motcua"},
            lambda r: r.started_at >= since and r.client_code == "motcua",
        ),
    ]
    newest_first = list(reversed(by_time))
    failures = []
    for given, keep in cases:
        expected = [r.event_id for r in newest_first if keep(r)]
        got = await ids(h, auditor, **given)
        if got != expected:
            failures.append(f"{given}: got {got}, expected {expected}")
    assert not failures, "\n".join(failures)

    # Pages of 3: every record exactly once, newest first, and the cursor is opaque.
    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = (await read(h, "/exchanges", auditor, **params)).json()
        pages.append([item["event_id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    flat = [e for p in pages for e in p]
    assert flat == [r.event_id for r in newest_first]

    # Each read left its own AuditRead, with the filter it used.
    logged = await reads(h)
    assert len(logged) == len(cases) + len(pages)
    assert {row.actor for row in logged} == {"thanhtra"}
    assert {row.action for row in logged} == {"search"}
    assert not any(row.unmasked for row in logged)
    by_status = next(row for row in logged if row.query.get("status") == 404)
    assert by_status.records == 1
    assert logged[-1].records == 2 and logged[-1].query["limit"] == 3


# -- masking ----------------------------------------------------------------------------------


async def test_personal_identifiers_are_masked_unless_the_auditor_may_unmask(
    gateway: Harness,
) -> None:
    h = gateway
    auditor, unmasker = await auditors(h)
    motcua = {"Authorization": f"Bearer {await h.token('motcua')}"}
    rec = await exchange(h, "pii-1", PERSONAL_PATH, motcua, X_Case_Number="HS-079123456789")
    assert rec.path == PERSONAL_PATH

    [masked] = (await read(h, "/exchanges", auditor, request_id="pii-1")).json()["items"]
    assert masked["path"] == MASKED_PATH
    assert masked["case_number"] == "HS-079*******89"
    assert masked["client_code"] == "motcua" and masked["hash"] == rec.hash  # the rest as is
    assert masked["started_at"] == rec.started_at.isoformat()

    params = {"request_id": "pii-1", "unmask": "true"}
    [shown] = (await read(h, "/exchanges", unmasker, **params)).json()["items"]
    assert shown["path"] == PERSONAL_PATH
    assert shown["case_number"] == "HS-079123456789"

    one = (await read(h, f"/exchanges/{rec.event_id}", auditor)).json()
    assert one["path"] == MASKED_PATH and one["event_id"] == rec.event_id
    assert set(one) >= {"seq", "prev_hash", "hash", "request_sha256", "error_detail"}
    one = (await read(h, f"/exchanges/{rec.event_id}", unmasker, unmask="true")).json()
    assert one["path"] == PERSONAL_PATH
    r = await h.http.get(f"{API}/exchanges/no-such-event", headers=auditor)
    check_problem(r, 404, "not-found", "no-such-event")

    logged = await reads(h)
    summary = [(x.actor, x.action, x.unmasked, x.records) for x in logged]
    assert summary == [
        ("thanhtra", "search", False, 1),
        ("thanhtra-pii", "search", True, 1),
        ("thanhtra", "record", False, 1),
        ("thanhtra-pii", "record", True, 1),
        ("thanhtra", "record", False, 0),  # looked for, found nothing: still a read
    ]
    assert logged[-1].query == {"event_id": "no-such-event"}
    assert all(x.request_id for x in logged)


# -- export -----------------------------------------------------------------------------------


async def test_export_streams_every_matching_record_as_csv_or_jsonl(gateway: Harness) -> None:
    h = gateway
    auditor, unmasker = await auditors(h)
    motcua = {"Authorization": f"Bearer {await h.token('motcua')}"}
    await exchange(h, "x-pii", PERSONAL_PATH, motcua)
    for n in range(5):
        await exchange(h, f"x{n}", f"{ECHO}/ho-so/{n}", motcua)
    await exchange(h, "x-dead", ADDRESS_DEAD, motcua, status=502)
    records = await h.audit()
    oldest_first = [r.event_id for r in sorted(records, key=lambda r: (r.started_at, r.id))]

    r = await read(h, "/export", auditor, format="csv", since="2020-01-01T00:00:00Z")
    assert r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="audit_20200101T000000Z_2')
    assert disposition.endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["event_id"] for row in rows] == oldest_first
    assert set(rows[0]) >= {"event_id", "request_id", "client_code", "status", "hash", "path"}
    pii = next(row for row in rows if row["request_id"] == "x-pii")
    assert pii["path"] == MASKED_PATH
    dead = next(row for row in rows if row["request_id"] == "x-dead")
    assert dead["status"] == "502" and dead["error_type"] == "upstream-connection-failed"

    r = await read(h, "/export", unmasker, format="jsonl", unmask="true", outcome="success")
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert [x["event_id"] for x in lines] == [
        e for e in oldest_first if e != next(x.event_id for x in records if x.status == 502)
    ]
    assert next(x for x in lines if x["request_id"] == "x-pii")["path"] == PERSONAL_PATH

    # Keyset batches (the export reads 1000 at a time): each record once, in order.
    async with h.state.sessions() as s:
        batches = [[r.event_id for r in rows] async for rows in query.iterate(s, AuditFilter(), 3)]
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [e for b in batches for e in b] == oldest_first

    r = await read(h, "/export", auditor, format="csv", client="nobody")
    assert r.text.count("\n") == 1  # the header row only

    logged = await reads(h)
    assert [(x.action, x.unmasked, x.records) for x in logged] == [
        ("export", False, 7),
        ("export", True, 6),
        ("export", False, 0),
    ]
    assert logged[1].query["format"] == "jsonl" and logged[1].query["outcome"] == "success"
    assert "until" in logged[2].query  # an open range is closed at the time of the export


# -- daily statistics -------------------------------------------------------------------------


async def test_daily_stats_count_by_local_day_and_outcome(gateway: Harness) -> None:
    h = gateway
    auditor, _ = await auditors(h)
    motcua = {"Authorization": f"Bearer {await h.token('motcua')}"}
    outsider = {"Authorization": f"Bearer {await h.token('outsider')}"}
    for n in range(3):
        await exchange(h, f"s{n}", f"{ECHO}/ho-so/{n}", motcua)
    await exchange(h, "s-refused", f"{ECHO}/x", outsider, status=403)
    await exchange(h, "s-failed", ADDRESS_DEAD, motcua, status=502)
    live = await h.audit()

    # 18:30 UTC on the 20th is 01:30 on the 21st in Vietnam; 16:59 UTC is still the 20th.
    evening = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    async with h.state.sessions() as s, s.begin():
        s.add_all(
            stored_row(evening + timedelta(seconds=i), duration_ms=float(i + 1)) for i in range(20)
        )
        s.add(stored_row(datetime(2026, 11, 20, 16, 59, 59, tzinfo=UTC), status=500))

    days = {d["day"]: d for d in (await read(h, "/stats/daily", auditor)).json()["days"]}
    expected: dict[str, Counter[str]] = {}
    for rec in live:
        day = rec.started_at.astimezone(VN).date().isoformat()
        outcome = "success" if rec.status < 400 else "refused" if rec.status < 500 else "failed"
        expected.setdefault(day, Counter())[outcome] += 1
    expected.setdefault("2026-11-21", Counter())["success"] += 20
    expected.setdefault("2026-11-20", Counter())["failed"] += 1
    assert set(days) == set(expected)
    for day, counts in expected.items():
        assert days[day]["by_outcome"] == {k: counts[k] for k in ("success", "refused", "failed")}
        assert days[day]["count"] == sum(counts.values())

    [group] = days["2026-11-21"]["groups"]
    assert group == {
        "agency": AUDITOR_AGENCY,
        "provider": PROVINCE_ID,
        "service": "echo",
        "version": "v1",
        "outcome": "success",
        "count": 20,
        "mean_ms": 10.5,
        "p95_ms": 19.0,  # nearest rank: the 19th of 20
    }

    # A bare date is a local day; an unencoded '+' in the offset arrives as a space.
    for since in ("2026-11-21", "2026-11-21T00:00:00+07:00"):
        r = await h.http.get(f"{API}/stats/daily?since={since}&until=2026-11-22", headers=auditor)
        assert [d["day"] for d in r.json()["days"]] == ["2026-11-21"], r.text
    r = await read(h, "/stats/daily", auditor, client="motcua", outcome="success")
    [today] = r.json()["days"]
    assert today["count"] == 3 and today["by_outcome"]["success"] == 3

    logged = await reads(h)
    assert [(x.action, x.records) for x in logged] == [
        ("stats", len(live) + 21),
        ("stats", 20),
        ("stats", 20),
        ("stats", 3),
    ]


# -- bad parameters ---------------------------------------------------------------------------


async def test_bad_parameters_are_refused_naming_the_parameter(gateway: Harness) -> None:
    h = gateway
    auditor, _ = await auditors(h)
    cases: list[tuple[str, Any, str]] = [
        ("/exchanges", {"since": "yesterday"}, "since"),
        ("/exchanges", {"since": "2026-11-21T08:00:00"}, "since"),  # no offset
        ("/exchanges", {"since": "2026-11-21", "until": "2026-11-20"}, "until"),
        ("/exchanges", {"status": "abc"}, "status"),
        ("/exchanges", {"status": "42"}, "status"),
        ("/exchanges", {"outcome": "maybe"}, "outcome"),
        ("/exchanges", {"limit": "0"}, "limit"),
        ("/exchanges", {"limit": "5000"}, "limit"),
        ("/exchanges", {"cursor": "not-a-cursor"}, "cursor"),
        ("/exchanges", {"clinet": "motcua"}, "clinet"),
        ("/exchanges", [("client", "motcua"), ("client", "legacy")], "client"),
        ("/exchanges", {"unmask": "yes"}, "unmask"),
        ("/export", {"format": "xml"}, "format"),
        ("/export", {"limit": "5"}, "limit"),
        ("/stats/daily", {"until": "soon"}, "until"),
        ("/findings", {"unresolved": "maybe"}, "unresolved"),
        ("/admin-events", {"since": "2026-13-01"}, "since"),
        ("/verify", {"client": "motcua"}, "client"),
        ("/exchanges", {"limit": "1.5"}, "limit"),
        ("/exchanges", {"status": "200.0"}, "status"),
        ("/exchanges/some-event", {"limit": "5"}, "limit"),
        ("/purges", {"unmask": "true"}, "unmask"),
        ("/findings", [("kind", "missing"), ("kind", "altered")], "kind"),
        ("/verify", [("since", "2026-11-01"), ("since", "2026-11-02")], "since"),
        ("/admin-events", {"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
    ]
    failures = []
    for path, params, name in cases:
        r = await h.http.get(f"{API}{path}", params=params, headers=auditor)
        try:
            body = check_problem(r, 400, "invalid-parameter")
            assert body["parameter"] == name, body
            assert body["detail"].startswith(f"{name}: "), body["detail"]
        except AssertionError as e:
            failures.append(f"{path} {params}: {e}")
    assert not failures, "\n".join(failures)
    assert await reads(h) == []  # refused before anything was read


# -- findings, purges, admin changes ----------------------------------------------------------


async def test_findings_purges_and_admin_changes(gateway: Harness) -> None:
    h = gateway
    auditor, _ = await auditors(h)
    now = datetime.now(UTC)
    async with h.state.sessions() as s, s.begin():
        s.add_all(
            [
                AuditFinding(
                    found_at=now - timedelta(hours=2),
                    source="indexer",
                    instance="gw-a",
                    kind="missing",
                    seq_from=4,
                    seq_to=5,
                    detail="gap",
                    resolved_at=now - timedelta(hours=1),
                ),
                AuditFinding(
                    found_at=now - timedelta(hours=1),
                    source="verify",
                    instance="gw-a",
                    kind="altered",
                    seq_from=9,
                    seq_to=9,
                    detail="hash",
                ),
                AuditFinding(
                    found_at=now, source="gateway", instance="gw-b", kind="missing", detail="x"
                ),
                AuditPurge(
                    actor="retention",
                    cutoff=now - timedelta(days=365),
                    count=1200,
                    heads={"gw-a": {"seq": 1200, "hash": "ab" * 32}},
                ),
            ]
        )

    items = (await read(h, "/findings", auditor)).json()["items"]
    assert [(f["instance"], f["kind"]) for f in items] == [
        ("gw-b", "missing"),
        ("gw-a", "altered"),
        ("gw-a", "missing"),
    ]
    assert items[2]["resolved_at"] is not None and items[2]["seq_from"] == 4
    items = (await read(h, "/findings", auditor, instance="gw-a", unresolved="true")).json()
    assert [f["kind"] for f in items["items"]] == ["altered"]
    items = (await read(h, "/findings", auditor, kind="missing", limit=1)).json()
    assert [f["instance"] for f in items["items"]] == ["gw-b"] and items["next_cursor"]

    [purge] = (await read(h, "/purges", auditor)).json()["items"]
    assert purge["count"] == 1200 and purge["heads"]["gw-a"]["seq"] == 1200

    # The test policy and the auditors themselves were admin changes, by actor "test".
    events = (await read(h, "/admin-events", auditor, actor="test", limit=1000)).json()
    assert events["next_cursor"] is None
    created = [
        e
        for e in events["items"]
        if e["action"] == "policy.client" and e["target"].startswith("thanhtra")
    ]
    assert [e["target"] for e in created] == ["thanhtra-pii", "thanhtra"]  # newest first
    assert created[0]["after"]["roles"] == ["audit:unmask", "auditor"]
    assert set(created[0]) >= {"actor", "at", "action", "target", "before", "after"}
    everything = (await read(h, "/admin-events", auditor, limit=1000)).json()["items"]
    assert len(everything) > len(events["items"])  # schemas loaded at start: another actor
    assert await ids_of_admin_events(h, auditor) == [e["id"] for e in everything]
    future = (now + timedelta(days=1)).isoformat()
    assert (await read(h, "/admin-events", auditor, since=future)).json()["items"] == []

    logged = await reads(h)
    assert [x.action for x in logged][:5] == [
        "findings",
        "findings",
        "findings",
        "purges",
        "admin-events",
    ]
    assert logged[1].query == {"limit": 50, "instance": "gw-a", "unresolved": True}


async def ids_of_admin_events(h: Harness, auth: dict[str, str]) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await read(h, "/admin-events", auth, **params)).json()
        seen += [e["id"] for e in body["items"]]
        if (cursor := body["next_cursor"]) is None:
            return seen


# -- verification -----------------------------------------------------------------------------


async def test_verify_signs_its_report_and_finds_altered_and_missing_records(
    gateway: Harness,
) -> None:
    h = gateway
    auditor, _ = await auditors(h)
    motcua = {"Authorization": f"Bearer {await h.token('motcua')}"}
    for n in range(5):
        await exchange(h, f"v{n}", f"{ECHO}/ho-so/{n}", motcua)
    jwks = (await h.http.get("/.well-known/jwks.json")).json()

    def checked(body: dict[str, Any]) -> dict[str, Any]:
        """The report, after checking its signature the way an auditor would."""
        header = jwt.get_unverified_header(body["signature"])
        [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"] and k["alg"] == header["alg"]]
        claims = jwt.decode(
            body["signature"],
            jwt.PyJWK(jwk).key,
            algorithms=[jwk["alg"]],
            issuer="http://gateway.test",
        )
        digest = hashlib.sha256(orjson.dumps(body["report"], option=orjson.OPT_SORT_KEYS))
        assert claims["report_sha256"] == digest.hexdigest()
        report: dict[str, Any] = body["report"]
        return report

    report = checked((await read(h, "/verify", auditor)).json())
    assert report["ok"] is True
    assert report["events"] == 10  # five two-phase exchanges: an intent and an outcome each
    assert [i["instance"] for i in report["instances"]] == ["test-gw"]

    async with h.state.sessions() as s, s.begin():
        await s.execute(
            update(AuditRecord)
            .where(AuditRecord.instance == "test-gw", AuditRecord.seq == 2)
            .values(status=299)
        )
    report = checked((await read(h, "/verify", auditor, instance="test-gw")).json())
    assert report["ok"] is False
    kinds = {(f["kind"], f["seq_from"]) for i in report["instances"] for f in i["findings"]}
    assert ("altered", 2) in kinds, kinds

    async with h.state.sessions() as s, s.begin():
        await s.execute(
            delete(AuditRecord).where(AuditRecord.instance == "test-gw", AuditRecord.seq == 4)
        )
    report = checked((await read(h, "/verify", auditor)).json())
    kinds = {(f["kind"], f["seq_from"]) for i in report["instances"] for f in i["findings"]}
    assert ("missing", 4) in kinds, kinds

    # The tampered body does not match the signature: the digest is over what was sent.
    body = (await read(h, "/verify", auditor)).json()
    body["report"]["ok"] = True
    try:
        checked(body)
    except AssertionError:
        pass
    else:
        raise AssertionError("a changed report still matched its signature")

    logged = await reads(h)
    assert [(x.action, x.records) for x in logged] == [
        ("verify", 10),  # events: each exchange's intent and outcome
        ("verify", 10),
        ("verify", 9),
        ("verify", 9),
    ]
    assert logged[1].query == {"instance": "test-gw"}


async def test_auditors_read_credential_changes_without_their_hints(gateway: Harness) -> None:
    auditor, _ = await auditors(gateway)
    await gateway.api_key("legacy")
    r = await gateway.http.get(
        f"{API}/admin-events", params={"action": "credential.issue"}, headers=auditor
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items and all("hint" not in (i["after"] or {}) for i in items)
    assert all("kind" in (i["after"] or {}) for i in items)  # the rest of the change is shown
