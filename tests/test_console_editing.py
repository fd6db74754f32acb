"""Creating, changing and deleting the policy's entities in the console, in a real
browser: services, upstreams, an agency's systems, groups and rate limits, each through
a form whose refusals are shown next to their field, a preview of what will change and a
required comment, recorded as the person's (`person:<account>`); the previews' summaries
in the language the person chose; axe-core on every such page.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin import collections as entities
from gateway.core.problems import Problem
from gateway.edge.console.editing import key_path, parse_key
from gateway.edge.console.kinds import RATE_LIMITS, SERVICES

from .conftest import Harness
from .console_rig import events, person, serious, sign_in, signed_in

pytestmark = pytest.mark.dialects("sqlite")  # the console is above the store

AGENCY = "000.00.12.H49"  # "Sở Tư pháp" in the test policy
ECHO = "000.00.00.H49/echo/v1"


async def _preview(page: Any, values: dict[str, str]) -> None:
    """Fill the form's fields (by their input's id) and ask for the preview."""
    for field, value in values.items():
        await page.fill(field, value)
    await page.click("#entity-form button[type=submit]")


async def _confirm(page: Any, comment: str, landing: str) -> None:
    await page.fill("#comment", comment)
    await page.click("main form.card button[type=submit]")
    await page.wait_for_url(f"**{landing}?saved=*")


def test_a_key_goes_into_a_path_and_back() -> None:
    limit = {"service": ECHO}
    assert key_path(RATE_LIMITS, limit) == f"*/{ECHO}"
    assert parse_key(RATE_LIMITS, f"*/{ECHO}") == (None, ECHO)
    assert parse_key(RATE_LIMITS, "motcua/*") == ("motcua", None)
    assert parse_key(RATE_LIMITS, "*/*") is None  # names nothing
    assert parse_key(SERVICES, ECHO) == tuple(ECHO.split("/"))
    assert parse_key(SERVICES, "000.00.00.H49/echo") is None
    assert parse_key(SERVICES, f"{ECHO}/more") is None


async def test_an_operator_creates_an_upstream_and_a_service_on_it(
    gateway: Harness, browser: Any, simulator: Any
) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    call = "/r1/000.00.00.H49/moi/v1/x"
    assert (await gateway.http.get(call, headers=headers)).status_code == 404
    page = await signed_in(gateway, browser, "vanhanh", ["operator"])
    await page.click("nav a[href='/console/upstreams']")
    await page.click("#new")
    await _preview(page, {"#name": "sim-moi", "#base_url": "not a url", "#max_concurrency": "x"})
    # What the form cannot read is named next to its field; nothing is previewed.
    assert "số nguyên" in (await page.text_content("#max_concurrency-error") or "")
    await page.fill("#max_concurrency", "20")
    await page.click("#entity-form button[type=submit]")
    # The policy's own rule (the address's shape) is named next to its field, in the
    # person's language (pydantic's words are English).
    assert "Không đúng định dạng" in (await page.text_content("#base_url-error") or "")
    assert await page.get_attribute("#base_url", "aria-invalid") == "true"
    await page.fill("#base_url", str(simulator.make_url("")).rstrip("/"))
    await page.click("#entity-form button[type=submit]")
    assert await page.text_content("#changes li strong") == "Thêm hệ thống cung cấp sim-moi"
    # Without a comment, nothing is changed (the server says so, not only the browser).
    await page.eval_on_selector("#comment", "e => e.removeAttribute('required')")
    await page.click("main form.card button[type=submit]")
    assert await page.text_content("#form-errors") == "Trường này là bắt buộc."
    await _confirm(page, "nhà cung cấp mới của Sở", "/console/upstreams")
    assert "sim-moi" in (await page.text_content("#upstreams") or "")
    # The service, on it: the same form shape, the same preview.
    await page.click("nav a[href='/console/services']")
    await page.click("#new")
    await _preview(
        page,
        {
            "#provider": "000.00.00.H49",
            "#code": "moi",
            "#version": "v1",
            "#name": "Dịch vụ mới",
            "#upstream": "sim-moi",
            "#upstream_path": "/echo",
            "#timeouts-total_ms": "5",
        },
    )
    assert await page.text_content("#timeouts-total_ms-error") == "Phải lớn hơn hoặc bằng 10."
    assert await page.input_value("#name") == "Dịch vụ mới"  # what was typed stays
    await page.fill("#timeouts-total_ms", "")  # empty: the default
    await page.click("#entity-form button[type=submit]")
    assert await page.text_content("#changes li strong") == ("Thêm dịch vụ 000.00.00.H49/moi/v1")
    await _confirm(page, "dịch vụ thử nghiệm", "/console/services")
    assert await page.locator("tr[data-service='000.00.00.H49/moi/v1']").count() == 1
    # The gateway knows it at once: no longer unknown, refused for want of a right.
    assert (await gateway.http.get(call, headers=headers)).status_code == 403
    mine = [e for e in await events(gateway) if e.actor == "person:vanhanh"]
    assert [
        (e.action, e.target, e.before, e.comment) for e in mine if e.action.startswith("policy.")
    ] == [
        ("policy.upstream", "sim-moi", None, "nhà cung cấp mới của Sở"),
        ("policy.service", "000.00.00.H49/moi/v1", None, "dịch vụ thử nghiệm"),
    ]
    # Groups are the administrator's: an operator is not even shown the form.
    assert (await page.request.get(f"{gateway.url}/console/new/groups")).status == 403


async def test_an_administrator_adds_a_system_to_an_agency_and_puts_it_in_a_group(
    gateway: Harness, browser: Any
) -> None:
    page = await signed_in(gateway, browser, "nva", ["administrator"])
    await page.goto(f"{gateway.url}/console/groups")
    await page.click("#new")
    await _preview(page, {"#code": "tu-phap", "#name": "Ngành tư pháp"})
    await _confirm(page, "nhóm cho các hệ thống ngành tư pháp", "/console/groups")
    await page.goto(f"{gateway.url}/console/agencies/{AGENCY}")
    assert "hotich" in (await page.text_content("#systems") or "")
    await page.click("#new-system")
    assert await page.input_value("#agency") == AGENCY  # the agency it was asked from
    await _preview(page, {"#code": "hotich", "#name": "Trùng mã"})
    assert await page.text_content("#code-error") == "Đã có một mục như vậy."
    await _preview(
        page, {"#code": "lytich", "#name": "Lý lịch tư pháp", "#groups": "tu-phap, khong-co"}
    )
    # A whole-policy rule (the group must exist) is named at the field it is about.
    assert "khong-co" in (await page.text_content("#groups-error") or "")
    await page.fill("#groups", "tu-phap")
    await page.click("#entity-form button[type=submit]")
    await _confirm(page, "hệ thống lý lịch tư pháp", "/console/clients")
    item, _ = await entities.read_one(gateway.state.sessions, entities.CLIENTS, ("lytich",))
    assert (item["agency"], item["groups"]) == (AGENCY, ["tu-phap"])
    # A change to it: the preview names the field, old and new.
    await page.goto(f"{gateway.url}/console/edit/clients/lytich")
    assert await page.locator("#code").is_disabled()  # a key is not renamed
    await page.fill("#name", "Lý lịch tư pháp tỉnh")
    await page.click("#entity-form button[type=submit]")
    assert await page.text_content("#changes li strong") == "Sửa hệ thống lytich"
    assert await page.text_content("#changes .detail") == (
        "name: 'Lý lịch tư pháp' → 'Lý lịch tư pháp tỉnh'"
    )
    await _confirm(page, "tên đầy đủ", "/console/clients")
    # The group cannot go while a system is in it: refused, and nothing changed.
    await page.goto(f"{gateway.url}/console/edit/groups/tu-phap")
    await page.click("#delete-form button")
    assert "lytich" in (await page.text_content("#form-errors") or "")
    await page.goto(f"{gateway.url}/console/edit/clients/lytich")
    await page.click("#delete-form button")
    assert await page.text_content("#changes li strong") == "Xoá hệ thống lytich"
    await _confirm(page, "hệ thống ngừng hoạt động", "/console/clients")
    await page.goto(f"{gateway.url}/console/edit/groups/tu-phap")
    await page.click("#delete-form button")
    await _confirm(page, "không còn hệ thống nào", "/console/groups")
    assert "tu-phap" not in (await page.text_content("#groups") or "")
    mine = [e for e in await events(gateway) if e.actor == "person:nva"]
    changed = [e for e in mine if e.action.startswith("policy.")]
    assert [(e.action, e.target, e.before is None, e.after is None) for e in changed] == [
        ("policy.group", "tu-phap", True, False),  # created
        ("policy.client", "lytich", True, False),
        ("policy.client", "lytich", False, False),  # updated
        ("policy.client", "lytich", False, True),  # deleted
        ("policy.group", "tu-phap", False, True),
    ]


async def test_an_operator_sets_a_rate_limit_and_it_holds_then_lifts_it(
    gateway: Harness, browser: Any
) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    call = f"/r1/{ECHO}/x"
    page = await signed_in(gateway, browser, "vanhanh", ["operator"])
    await page.click("nav a[href='/console/rate-limits']")
    await page.click("#new")
    await page.fill("#client", "motcua")
    await page.fill("#service", ECHO)
    await page.click("#entity-form button[type=submit]")
    # The policy's rule: a limit sets a rate, a quota, or both.
    assert "quota_per_day" in (await page.text_content("#form-errors") or "")
    await page.fill("#rate-requests", "1")
    await page.select_option("#rate-per", "hour")
    await page.click("#entity-form button[type=submit]")
    await _confirm(page, "giữ tải cho dịch vụ thử", "/console/rate-limits")
    assert (await gateway.http.get(call, headers=headers)).status_code == 200
    assert (await gateway.http.get(call, headers=headers)).status_code == 429
    # Only a daily quota left: the rate goes, as a whole.
    await page.click(f"tr[data-key='motcua/{ECHO}'] a")
    await page.fill("#rate-requests", "")
    await page.select_option("#rate-per", "")
    await page.fill("#quota_per_day", "1000")
    await page.click("#entity-form button[type=submit]")
    details = await page.locator("#changes .detail").all_text_contents()
    assert "quota_per_day: '(unset)' → 1000" in details
    await _confirm(page, "chỉ giữ hạn mức ngày", "/console/rate-limits")
    item, _ = await entities.read_one(
        gateway.state.sessions, entities.RATE_LIMITS, ("motcua", ECHO)
    )
    assert item == {"client": "motcua", "service": ECHO, "quota_per_day": 1000}
    assert (await gateway.http.get(call, headers=headers)).status_code == 200


async def test_a_preview_summary_is_in_the_language_chosen(gateway: Harness, browser: Any) -> None:
    page = await signed_in(gateway, browser, "vanhanh", ["operator"])
    await page.goto(f"{gateway.url}/console/edit/services/{ECHO}")
    await page.fill("#name", "Echo")
    await page.click("#entity-form button[type=submit]")
    assert await page.text_content("#changes li strong") == f"Sửa dịch vụ {ECHO}"
    await page.click("header a[lang=en]")
    await page.goto(f"{gateway.url}/console/edit/services/{ECHO}")
    assert await page.text_content("h1") == f"The service {ECHO}"
    await page.fill("#name", "Echo")
    await page.click("#entity-form button[type=submit]")
    assert await page.text_content("#changes li strong") == f"updated service {ECHO}"
    assert await page.text_content("h1") == f"Confirm the change to service {ECHO}"
    # A refusal of a field, in English too.
    await page.goto(f"{gateway.url}/console/edit/services/{ECHO}")
    await page.fill("#timeouts-total_ms", "5")
    await page.click("#entity-form button[type=submit]")
    assert await page.text_content("#timeouts-total_ms-error") == "Must be at least 10."


async def test_an_observer_reads_the_forms_but_changes_nothing(
    gateway: Harness, browser: Any
) -> None:
    page = await signed_in(gateway, browser, "xem", ["observer"])
    await page.goto(f"{gateway.url}/console/upstreams")
    assert await page.locator("#new").count() == 0
    await page.goto(f"{gateway.url}/console/edit/upstreams/sim-open")
    assert await page.locator("#base_url").is_disabled()
    assert await page.locator("main form button").count() == 0
    assert (await page.request.get(f"{gateway.url}/console/new/upstreams")).status == 403
    csrf = await page.get_attribute("input[name=csrf]", "value")
    for step in ("preview", "confirm"):
        r = await page.request.post(
            f"{gateway.url}/console/edit/upstreams/{step}",
            form={
                "csrf": csrf or "",
                "op": "delete",
                "key": "sim-open",
                "body": "{}",
                "version": "0",
                "comment": "x",
            },
        )
        assert r.status == 403
    changed = [e for e in await events(gateway) if e.action.startswith("policy.")]
    assert [e for e in changed if e.actor.startswith("person:")] == []


async def test_every_editing_page_passes_axe(gateway: Harness, browser: Any) -> None:
    who = await person(gateway, "nva", ["administrator"])
    context = await browser.new_context(bypass_csp=True, viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    found: list[str] = []
    for path in (
        "/console/upstreams",
        "/console/groups",
        "/console/rate-limits",
        "/console/new/services",
        "/console/new/upstreams",
        "/console/new/clients",
        "/console/new/groups",
        "/console/new/rate-limits",
        "/console/new/agencies",
        f"/console/edit/agencies/{AGENCY}",
        f"/console/edit/services/{ECHO}",
        "/console/edit/upstreams/sim-open",
        "/console/edit/clients/motcua",
        "/console/edit/groups/tthc",
        f"/console/agencies/{AGENCY}",
    ):
        await page.goto(gateway.url + path)
        found += await serious(page)
    await page.goto(f"{gateway.url}/console/new/rate-limits")
    await page.click("#entity-form button[type=submit]")  # refused: errors shown
    await page.wait_for_selector("#form-errors")
    found += await serious(page)
    await page.fill("#client", "motcua")
    await page.fill("#quota_per_day", "5")
    await page.click("#entity-form button[type=submit]")  # the preview
    await page.wait_for_selector("#changes")
    found += await serious(page)
    await page.goto(f"{gateway.url}/console/edit/groups/tthc")
    await page.click("#delete-form button")  # refused: clients are in it
    await page.wait_for_selector("#form-errors")
    found += await serious(page)
    assert found == []


async def test_an_administrator_creates_an_agency_and_gives_it_a_system(
    gateway: Harness, browser: Any
) -> None:
    page = await signed_in(gateway, browser, "nva", ["administrator"])
    await page.goto(f"{gateway.url}/console/agencies")
    await page.click("#new")
    # The policy's own rule for an agency code (the national format) is named at the field.
    await _preview(page, {"#code": "so-y-te", "#name": "Sở Y tế"})
    assert await page.locator("#code-error").count() == 1
    await _preview(page, {"#code": "000.00.16.H49", "#name": "Sở Y tế"})
    assert await page.text_content("#changes li strong") == "Thêm cơ quan 000.00.16.H49"
    await _confirm(page, "cơ quan mới theo quyết định 20/QĐ-UBND", "/console/agencies")
    row = await page.text_content("tr[data-code='000.00.16.H49']")
    assert row is not None and "Sở Y tế" in row
    await page.goto(f"{gateway.url}/console/agencies/000.00.16.H49")
    await page.click("#new-system")
    await _preview(page, {"#code": "his-soyte", "#name": "Hệ thống thông tin y tế"})
    await _confirm(page, "hệ thống của Sở Y tế", "/console/clients")
    item, _ = await entities.read_one(gateway.state.sessions, entities.CLIENTS, ("his-soyte",))
    assert item["agency"] == "000.00.16.H49"
    mine = [e for e in await events(gateway) if e.actor == "person:nva"]
    assert [(e.action, e.target) for e in mine if e.action.startswith("policy.")] == [
        ("policy.agency", "000.00.16.H49"),
        ("policy.client", "his-soyte"),
    ]


async def test_an_operator_may_not_create_an_agency(gateway: Harness, browser: Any) -> None:
    page = await signed_in(gateway, browser, "vanhanh", ["operator"])
    await page.goto(f"{gateway.url}/console/agencies")
    assert await page.locator("#new").count() == 0
    assert (await page.request.get(f"{gateway.url}/console/new/agencies")).status == 403
    await page.goto(f"{gateway.url}/console/new/agencies")
    csrf = await page.get_attribute("input[name=csrf]", "value")
    for step in ("preview", "confirm"):
        r = await page.request.post(
            f"{gateway.url}/console/edit/agencies/{step}",
            form={
                "csrf": csrf or "",
                "op": "create",
                "key": "",
                "body": '{"code": "000.00.16.H49", "name": "Sở Y tế"}',
                "version": "0",
                "comment": "x",
            },
        )
        assert r.status == 403
    with pytest.raises(Problem):  # 404: nothing was made
        await entities.read_one(gateway.state.sessions, entities.AGENCIES, ("000.00.16.H49",))


async def test_an_operator_sets_a_services_schema_and_required_fields(
    gateway: Harness, browser: Any
) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    call = f"/r1/{ECHO}/x"
    assert (await gateway.http.get(call, headers=headers)).status_code == 200
    page = await signed_in(gateway, browser, "vanhanh", ["operator"])
    await page.goto(f"{gateway.url}/console/edit/services/{ECHO}")
    # A schema that is not in the registry is refused, named, as `policy apply` would.
    await page.fill("#schemas-response-subject", "khong-co-luoc-do")
    await page.click("#entity-form button[type=submit]")
    errors = await page.locator("main").text_content() or ""
    assert "khong-co-luoc-do" in errors
    await page.fill("#schemas-response-subject", "")
    await page.fill("#require", "officer")
    await page.select_option("#audit", "fail_open")
    await page.click("#entity-form button[type=submit]")
    detail = await page.text_content("#changes") or ""
    assert "require" in detail and "fail_open" in detail
    await _confirm(page, "bắt buộc mã cán bộ", "/console/services")
    r = await gateway.http.get(call, headers=headers)
    assert r.status_code == 400 and r.json()["type"].endswith(":missing-accountability-fields")
    assert (
        await gateway.http.get(call, headers={**headers, "X-Officer-Id": "CB-1"})
    ).status_code == 200
