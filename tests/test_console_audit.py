"""The auditors' console (/console/audit) in a real browser: Playwright driving Debian's
Chromium against a running gateway whose audit log is filled by real exchanges.

An auditor finds exchanges by case number, opens one, verifies the chain around it,
exports CSV and JSON Lines (the filter written into the file), reads the monthly
statistics and makes the citizen report; personal data stays masked without
audit:unmask; unmasking asks a reason and lands in the record of reads; an operator is
refused every auditor page; what a caller put in the log is shown inertly; every page
passes axe-core without serious or critical violations.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from gateway.audit.event import AuditEvent
from gateway.audit.query import RECORD_COLUMNS, VN_TZ, AuditFilter
from gateway.audit.subjects import KEY_FILE, identifiers, load_subject_key
from gateway.core.settings import Settings
from gateway.edge.console.audit_reports import grouped
from gateway.edge.console.i18n import CATALOGUE
from gateway.store.models import AuditRead, AuditSubject

from .conftest import ECHO, POPULATION, REPO, Harness
from .console_rig import Person, person, sign_in

pytestmark = pytest.mark.dialects("sqlite")  # the console is above the store

CITIZEN = "001099012345"
OTHER = "079088001234"
CASE = "000.00.12.H49-261121-0001"
AUDIT = "/console/audit"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        public_url="http://gateway.test",
        instance_id="test-gw",
        schemas_dir=REPO / "schemas",
        upstream_allowed_networks=["loopback"],
        audit_checkpoint_seconds=0.2,  # signed tree heads soon after each exchange
    )


async def _exchanges(h: Harness) -> None:
    """Four exchanges of the one-stop-shop: two for case CASE (one naming CITIZEN in its
    path), one for OTHER in another case, one without a case."""
    auth = {"Authorization": f"Bearer {await h.token('motcua')}"}
    who = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}
    for path, case in (
        (f"{ECHO}/cong-dan/{CITIZEN}", CASE),
        (f"{ECHO}/ho-so/1", CASE),
        (f"{ECHO}/cong-dan/{OTHER}", "000.00.12.H49-261121-0002"),
        (f"{ECHO}/ho-so/2?so_dinh_danh={CITIZEN}", None),
    ):
        headers = {**auth, **who, **({"X-Case-Number": case} if case else {})}
        r = await h.http.get(path, headers=headers)
        assert r.status_code == 200, r.text
    # A fail_open exchange's record may be written just after its answer.
    deadline = time.monotonic() + 10
    while len(await h.audit()) < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def _signed_in(browser: Any, h: Harness, who: Person, **context: Any) -> Any:
    page = await (await browser.new_context(accept_downloads=True, **context)).new_page()
    await sign_in(page, h.url, who)
    await page.wait_for_url("**/console/")
    return page


async def _reads(h: Harness) -> list[AuditRead]:
    async with h.state.sessions() as s:
        return list((await s.scalars(select(AuditRead).order_by(AuditRead.id))).all())


async def _download(page: Any, selector: str) -> str:
    async with page.expect_download() as info:
        await page.click(selector)
    download = await info.value
    return Path(await download.path()).read_text(encoding="utf-8")


async def test_an_auditor_finds_opens_verifies_exports_and_reports(
    gateway: Harness, browser: Any
) -> None:
    h = gateway
    await _exchanges(h)
    who = await person(h, "ktv", ["auditor"])
    page = await _signed_in(browser, h, who)
    await page.click("header >> text=Kiểm toán")
    await page.wait_for_url(f"**{AUDIT}/exchanges")
    await page.fill("#f-case", CASE)
    await page.click("#search button[type=submit]")
    rows = page.locator("#results tbody tr")
    assert await rows.count() == 2, await page.text_content("main")
    # Masked: the citizen's number does not appear, in the table or anywhere on the page.
    assert CITIZEN not in await page.content()
    assert await page.locator("#unmask").count() == 0  # no audit:unmask, no unmask form
    assert set(await page.locator("#results .c-officer_id").all_text_contents()) == {"CB-0042"}

    # The record: every field, its place in the chain, a signed checkpoint, verified.
    await rows.first.locator("a").click()
    await page.wait_for_url(f"**{AUDIT}/exchanges/*")
    fields = await page.locator("#fields tbody tr").count()
    assert fields == len(RECORD_COLUMNS)
    assert await page.text_content("#fields tr[data-field=case_number] td") == CASE
    assert (await page.text_content("#chain-seq") or "").strip().isdigit()
    record_url = page.url
    await page.click("#verify")
    await page.wait_for_selector("#verdict")
    assert (await page.text_content("#verdict-title")) == "Nguyên vẹn"
    verdict = await page.text_content("#verdict") or ""
    # The tree head is signed every 0.2 s: the proof holds, or is not yet possible.
    assert "Bằng chứng bao gồm hợp lệ" in verdict or "Chưa có bằng chứng" in verdict
    await page.goto(record_url)  # by now a signed tree head covers it
    assert await page.locator("#tree-head dd").count() == 2
    assert "gateway.test/audit/test-gw" in (await page.text_content("#checkpoint-note") or "")

    # Exports of the search, with the filter written into the file.
    await page.goto(f"{h.url}{AUDIT}/exchanges?case={CASE}")
    text = await _download(page, "#export-csv")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0][0].startswith("# lgsp audit export ")
    meta = orjson.loads(lines[0][0].removeprefix("# lgsp audit export "))
    assert meta["filter"]["case"] == CASE and meta["masked"] is True
    assert meta["exported_by"] == "person:ktv"
    assert lines[1] == list(RECORD_COLUMNS)
    body = [dict(zip(lines[1], r, strict=True)) for r in lines[2:]]
    assert [r["case_number"] for r in body] == [CASE, CASE]
    assert CITIZEN not in text  # masked
    jsonl = (await _download(page, "#export-jsonl")).splitlines()
    first = orjson.loads(jsonl[0])
    assert first["kind"] == "lgsp.audit.export" and first["filter"]["case"] == CASE
    assert [orjson.loads(x)["case_number"] for x in jsonl[1:]] == [CASE, CASE]

    # Monthly statistics: this month holds the four exchanges.
    await page.goto(f"{h.url}{AUDIT}/stats?by=month")
    month = datetime.now(UTC).astimezone(VN_TZ).strftime("%Y-%m")
    assert await page.text_content(f"#stats tr[data-key='{month}'] .count") == "4"
    assert await page.get_attribute("#stats-source", "data-source") == "rollup"
    assert await page.locator("svg#chart rect").count() >= 1
    # A filter the roll-up cannot answer is counted from the records, and says so.
    await page.goto(f"{h.url}{AUDIT}/stats?by=month&case={CASE}")
    assert await page.text_content(f"#stats tr[data-key='{month}'] .count") == "2"
    assert await page.get_attribute("#stats-source", "data-source") == "records"
    await page.goto(f"{h.url}{AUDIT}/stats?by=month")
    await page.check("input[name=by][value=procedure]")
    await page.click("#stats-form button[type=submit]")
    assert await page.text_content("#stats tr[data-key='1.001234'] .count") == "4"
    # Printed, the report stands alone: no menus, no form, and when it was made.
    await page.emulate_media(media="print")
    assert not await page.is_visible("header") and not await page.is_visible("#stats-form")
    assert await page.is_visible("#stats") and await page.is_visible("svg#chart")
    assert await page.is_visible(".print-only")
    await page.emulate_media(media="screen")

    # Who accessed the citizen's data: the two exchanges that carried the number.
    await page.goto(f"{h.url}{AUDIT}/citizen")
    await page.fill("#number", CITIZEN)
    await page.click("#citizen-form button[type=submit]")
    report = page.locator("#citizen tbody tr")
    assert await report.count() == 2
    cases = await page.locator("#citizen .case").all_text_contents()
    assert sorted(cases) == ["", CASE]
    assert CITIZEN not in (await page.text_content("#report-title") or "")

    # A verification run over the whole log: intact, every event counted.
    await page.goto(f"{h.url}{AUDIT}/verify")
    await page.click("#run-verify")
    assert await page.text_content("#report-title") == "Nguyên vẹn"
    events = len(await h.audit(intents=True))
    assert await page.text_content("#report-events") == f"Đã kiểm tra {events} sự kiện."
    # Every read is recorded naming the person; the citizen's number is in none of them.
    reads = [r for r in await _reads(h) if r.actor == "person:ktv"]
    actions = {r.action for r in reads}
    assert {"search", "record", "verify", "export", "stats", "citizen"} <= actions
    assert all(CITIZEN not in orjson.dumps(r.query).decode() for r in reads)
    exports = [r for r in reads if r.action == "export"]
    assert [r.records for r in exports] == [2, 2]


async def test_the_index_holds_keyed_hashes_never_the_number(gateway: Harness) -> None:
    h = gateway
    await _exchanges(h)
    key = load_subject_key(h.state.settings.keys_dir)
    async with h.state.sessions() as s:
        subjects = list((await s.scalars(select(AuditSubject.subject))).all())
    # Two exchanges carried CITIZEN, one OTHER (each event of a two-phase pair indexed).
    assert set(subjects) == {key.digest(CITIZEN), key.digest(OTHER)}
    assert subjects.count(key.digest(CITIZEN)) == 2 * subjects.count(key.digest(OTHER))
    # Not the number, nor its plain hash: without the key a row names no one.
    assert CITIZEN not in subjects and hashlib.sha256(CITIZEN.encode()).hexdigest() not in subjects
    assert (h.state.settings.keys_dir / KEY_FILE).stat().st_mode & 0o077 == 0
    assert identifiers(f"/x/{CITIZEN}1/{OTHER}?a=123456789") == {OTHER, "123456789"}
    # Not a number inside a token: a request id's last group, a code, a word.
    assert identifiers(f'{{"id": "0b0e2f4c-1a2b-4c3d-8e9f-{CITIZEN}", "c": "X{OTHER}"}}') == set()


async def test_an_id_asked_for_or_returned_in_a_body_is_in_the_citizen_report(
    gateway: Harness, browser: Any
) -> None:
    h = gateway
    auth = {"Authorization": f"Bearer {await h.token('motcua')}"}
    who = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234", "X-Case-Number": CASE}
    # The demo's population lookup: the number is in the JSON body, not the path.
    await h.http.post(
        f"{POPULATION}/cong-dan/tra-cuu", json={"SoDinhDanh": CITIZEN}, headers={**auth, **who}
    )
    (record,) = await h.audit()
    assert CITIZEN not in record.path
    key = load_subject_key(h.state.settings.keys_dir)
    async with h.state.sessions() as s:
        rows = (await s.scalars(select(AuditSubject.event_id).where(
            AuditSubject.subject == key.digest(CITIZEN)
        ))).all()  # fmt: skip
    assert record.event_id in rows
    page = await _signed_in(browser, h, await person(h, "ktv", ["auditor"]))
    await page.goto(f"{h.url}{AUDIT}/citizen")
    await page.fill("#number", CITIZEN)
    await page.click("#citizen-form button[type=submit]")
    assert await page.locator("#citizen tbody tr").count() == 1
    assert await page.text_content("#citizen .case") == CASE


def test_on_the_wire_an_event_carries_keyed_hashes_never_the_ids() -> None:
    now = datetime.now(UTC)
    event = AuditEvent(str(uuid.uuid4()), "r", "gw", "POST", "/x", now, now, 1.0, 200)
    event.subject_ids = frozenset({CITIZEN})
    assert b"subjects" not in event.to_wire() and CITIZEN.encode() not in event.to_wire()
    event.subjects = ("ab" * 32,)
    wire = orjson.loads(event.to_wire())
    assert wire["subjects"] == ["ab" * 32] and "subject_ids" not in wire
    assert AuditEvent.from_wire(wire).subjects == ("ab" * 32,)
    assert AuditEvent.from_wire({**wire, "subjects": [CITIZEN, 1]}).subjects == ()


@pytest.mark.dialects("postgresql")
async def test_statistics_group_by_month_in_vietnam_time_on_postgresql(gateway: Harness) -> None:
    h = gateway
    await _exchanges(h)
    month = datetime.now(UTC).astimezone(VN_TZ).strftime("%Y-%m")
    async with h.state.sessions() as s:
        by_month, rolled_up = await grouped(s, AuditFilter(), "month")
        by_procedure, by_records = await grouped(s, AuditFilter(case=CASE), "procedure")
    assert rolled_up and not by_records
    assert [(g["key"], g["count"], g["success"]) for g in by_month] == [(month, 4, 4)]
    assert [(g["key"], g["count"]) for g in by_procedure] == [("1.001234", 2)]


async def test_without_unmask_personal_data_stays_masked_and_cannot_be_unmasked(
    gateway: Harness, browser: Any
) -> None:
    h = gateway
    await _exchanges(h)
    who = await person(h, "ktv", ["auditor"])
    page = await _signed_in(browser, h, who)
    await page.goto(f"{h.url}{AUDIT}/exchanges")
    assert await page.locator("#results tbody tr").count() == 4
    assert CITIZEN not in await page.content() and "001*******45" in await page.content()
    csrf = await page.get_attribute("header input[name=csrf]", "value")
    r = await page.request.post(
        f"{h.url}{AUDIT}/exchanges", form={"csrf": csrf or "", "reason": "kiểm tra"}
    )
    assert r.status == 403 and CITIZEN not in await r.text()
    event_id = await page.get_attribute("#results tbody tr", "data-event")
    r = await page.request.post(
        f"{h.url}{AUDIT}/exchanges/{event_id}/unmask", form={"csrf": csrf or "", "reason": "x"}
    )
    assert r.status == 403 and CITIZEN not in await r.text()
    r = await page.request.post(
        f"{h.url}{AUDIT}/export.csv", form={"csrf": csrf or "", "reason": "x"}
    )
    assert r.status == 403
    refused = [x for x in await _reads(h) if x.action == "refused"]
    assert len(refused) == 3 and all(x.actor == "person:ktv" for x in refused)


async def test_an_unmasking_asks_a_reason_and_is_in_the_record_of_reads(
    gateway: Harness, browser: Any
) -> None:
    h = gateway
    await _exchanges(h)
    who = await person(h, "ktv-pii", ["auditor", "audit:unmask"])
    page = await _signed_in(browser, h, who)
    await page.goto(f"{h.url}{AUDIT}/exchanges?case={CASE}")
    assert CITIZEN not in await page.content()
    # Without a reason the browser does not send the form, and the server refuses it.
    assert await page.get_attribute("#reason", "required") is not None
    csrf = await page.get_attribute("#unmask input[name=csrf]", "value")
    r = await page.request.post(
        f"{h.url}{AUDIT}/exchanges", form={"csrf": csrf or "", "case": CASE, "reason": " "}
    )
    assert r.status == 422 and CITIZEN not in await r.text()
    await page.fill("#reason", "Thanh tra hồ sơ 0001 theo QĐ 12/QĐ-TTr")
    await page.click("#unmask button[type=submit]")
    await page.wait_for_selector("#unmasked")
    assert CITIZEN in (await page.text_content("#results") or "")
    # The record page too, with its own reason.
    await page.goto(f"{h.url}{AUDIT}/exchanges?case={CASE}")
    await page.locator("#results tbody tr a").first.click()
    await page.fill("#reason", "đối chiếu bản ghi")
    await page.click("#unmask button[type=submit]")
    await page.wait_for_selector("#unmasked")

    # The unmasked export: its own form on the search page, asking a reason.
    await page.goto(f"{h.url}{AUDIT}/exchanges?case={CASE}")
    assert await page.get_attribute("#export-reason", "required") is not None
    await page.fill("#export-reason", "cung cấp cho thanh tra")
    text = await _download(page, "#export-unmasked-csv")
    lines = list(csv.reader(io.StringIO(text)))
    meta = orjson.loads(lines[0][0].removeprefix("# lgsp audit export "))
    assert meta["masked"] is False and meta["filter"]["case"] == CASE
    assert CITIZEN in text and len(lines) == 2 + 2  # the line saying what it is, header, 2
    await page.goto(f"{h.url}{AUDIT}/exchanges?case={CASE}")
    await page.fill("#export-reason", "bản JSON cho thanh tra")
    jsonl = (await _download(page, "#export-unmasked-jsonl")).splitlines()
    assert orjson.loads(jsonl[0])["masked"] is False and CITIZEN in "".join(jsonl[1:])

    await page.goto(f"{h.url}{AUDIT}/reads?unmasked=1")
    rows = page.locator("#reads tbody tr")
    assert await rows.count() == 4
    assert await rows.first.locator(".actor").text_content() == "person:ktv-pii"
    reasons = await page.locator("#reads .reason").all_text_contents()
    assert reasons == [
        "bản JSON cho thanh tra",
        "cung cấp cho thanh tra",
        "đối chiếu bản ghi",
        "Thanh tra hồ sơ 0001 theo QĐ 12/QĐ-TTr",
    ]
    unmasked = [r for r in await _reads(h) if r.unmasked]
    assert [(r.action, r.query["reason"]) for r in unmasked] == [
        ("search", "Thanh tra hồ sơ 0001 theo QĐ 12/QĐ-TTr"),
        ("record", "đối chiếu bản ghi"),
        ("export", "cung cấp cho thanh tra"),
        ("export", "bản JSON cho thanh tra"),
    ]
    assert unmasked[2].records == 2


async def test_an_operator_and_a_system_cannot_open_the_auditor_pages(
    gateway: Harness, browser: Any
) -> None:
    h = gateway
    who = await person(h, "vanhanh", ["operator", "administrator"])
    page = await _signed_in(browser, h, who)
    assert await page.locator(f"header a[href='{AUDIT}/exchanges']").count() == 0
    for path in ("exchanges", "stats", "citizen", "verify", "reads", "export.csv"):
        r = await page.goto(f"{h.url}{AUDIT}/{path}")
        assert r is not None and r.status == 403, path
        assert await page.text_content("#error-message") == CATALOGUE["error.forbidden"][0]
    # A departmental system's token opens no console page: no session, sign in first.
    token = await h.token("motcua")
    r = await h.http.get(
        f"{AUDIT}/exchanges", headers={"Authorization": f"Bearer {token}"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["Location"].endswith("/console/sign-in")


async def _hostile(h: Harness) -> AuditEvent:
    """An event holding what a caller could put in the log, written through the gateway's
    own audit log (chained and signed like any other)."""
    now = datetime.now(UTC)
    event = AuditEvent(
        event_id=str(uuid.uuid4()),
        request_id="<script>document.title='pwned'</script>",
        instance=h.state.settings.instance_id,
        method="GET",
        path=f"{ECHO}/" + "A" * 65_536,
        started_at=now,
        finished_at=now,
        duration_ms=1.0,
        status=200,
        client_code="motcua",
        officer_id="\u202eCB-0042",
        procedure_code="@SUM(1+1)",
        case_number="=cmd|' /C calc'!A0",
        error_detail='<img src=x onerror="alert(1)">',
    )
    event.fit()
    await h.state.audit.write(event)
    return event


async def test_what_a_caller_put_in_the_log_is_shown_inertly(
    gateway: Harness, browser: Any
) -> None:
    h = gateway
    event = await _hostile(h)
    who = await person(h, "ktv", ["auditor"])
    page = await _signed_in(browser, h, who)
    await page.goto(f"{h.url}{AUDIT}/exchanges")
    assert await page.title() != "pwned"
    cell = await page.text_content(".c-request_id") or ""
    assert cell == "<script>document.title='pwned'</script>"  # as text
    assert await page.text_content(".c-officer_id") == "⟨U+202E⟩CB-0042"
    assert await page.locator("main script, main img").count() == 0
    await page.click("#results tbody tr a")
    path = await page.text_content("#fields tr[data-field=path] td") or ""
    assert len(path) == len(event.path) and path.endswith("A" * 100)
    assert await page.title() != "pwned" and await page.locator("main img").count() == 0
    await page.goto(f"{h.url}{AUDIT}/exchanges")
    text = await _download(page, "#export-csv")
    (row,) = list(csv.DictReader(io.StringIO(text.split("\n", 1)[1])))
    assert row["case_number"] == "'=cmd|' /C calc'!A0"
    assert row["procedure_code"] == "'@SUM(1+1)"
    assert row["officer_id"] == "\u202eCB-0042"  # the file keeps the value; cells are inert


def _messages_complete() -> list[str]:
    return [f"audit.col_{c}" for c in RECORD_COLUMNS if f"audit.col_{c}" not in CATALOGUE]


def test_every_record_field_has_a_heading_in_both_languages() -> None:
    assert _messages_complete() == []


async def _serious(page: Any) -> list[str]:
    from axe_playwright_python.async_playwright import Axe

    options = {
        "resultTypes": ["violations"],
        "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    }
    results = await Axe().run(page, options=options)
    return [
        f"{page.url}: {v['id']} ({v['impact']}): {v['help']} at {v['nodes'][0]['target']}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def test_every_auditor_page_passes_axe_without_serious_or_critical_violations(
    gateway: Harness, browser: Any
) -> None:
    h = gateway
    await _exchanges(h)
    await _hostile(h)
    who = await person(h, "ktv-pii", ["auditor", "audit:unmask"])
    # axe is injected by Playwright's evaluate, which the console's CSP forbids a page.
    page = await _signed_in(
        browser, h, who, bypass_csp=True, viewport={"width": 1366, "height": 768}
    )
    found: list[str] = []
    for path in ("exchanges", f"exchanges?case={CASE}", "stats", "stats?by=agency", "reads"):
        await page.goto(f"{h.url}{AUDIT}/{path}")
        found += await _serious(page)
    await page.goto(f"{h.url}{AUDIT}/exchanges?case={CASE}")
    await page.locator("#results tbody tr a").first.click()
    found += await _serious(page)
    await page.click("#verify")
    await page.wait_for_selector("#verdict")
    found += await _serious(page)
    await page.fill("#reason", "axe")
    await page.click("#unmask button[type=submit]")
    found += await _serious(page)
    await page.goto(f"{h.url}{AUDIT}/citizen")
    found += await _serious(page)
    await page.fill("#number", CITIZEN)
    await page.click("#citizen-form button[type=submit]")
    found += await _serious(page)
    await page.goto(f"{h.url}{AUDIT}/verify")
    found += await _serious(page)
    await page.click("#run-verify")
    await page.wait_for_selector("#report")
    found += await _serious(page)
    await page.click("header a[lang=en]")  # English too
    found += await _serious(page)
    assert found == []
