"""The web console in a real browser: Playwright driving Debian's Chromium
(/usr/bin/chromium, installed by .ci/run), against a running gateway.

Signing in takes a password and a TOTP code; a wrong code is refused; repeated failures
lock the account; an administrator's edit of an agency is recorded naming the person;
a POST without the form's CSRF token is refused; every page carries a strict CSP.
Under CI a missing browser fails the tests; on a laptop they are skipped with the reason.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.core.settings import Settings
from gateway.identity import totp
from gateway.store.models import AdminEvent, PolicyVersion

from .conftest import REPO, Harness
from .console_rig import GOOD, Person, events, person, serious, sign_in

LOCKOUT_AFTER = 3
AGENCY = "000.00.12.H49"  # "Sở Tư pháp" in the test policy

pytestmark = pytest.mark.dialects("sqlite")  # the console is above the store


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        keys_dir=tmp_path / "keys",
        public_url="http://gateway.test",
        instance_id="test-gw",
        schemas_dir=REPO / "schemas",
        upstream_allowed_networks=["loopback"],
        console_lockout_failures=LOCKOUT_AFTER,
    )


async def test_sign_in_takes_a_password_then_a_totp_code(gateway: Harness, browser: Any) -> None:
    who = await person(gateway, "nva", ["administrator"])
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    assert await page.text_content("h1") == "Xin chào, Người nva."  # Vietnamese first
    assert await page.text_content("#roles") == "administrator"
    (cookie,) = [c for c in await context.cookies() if "console" in c["name"]]
    assert cookie["name"] == "__Host-lgsp_console"
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    # English, switched by the link in the header, stays switched.
    await page.click("header a[lang=en]")
    assert await page.text_content("h1") == "Welcome, Người nva."
    # Signing out ends the session: the home page sends one back to sign in.
    await page.click("header button")
    await page.wait_for_url("**/console/sign-in?m=out")
    await page.goto(f"{gateway.url}/console/agencies")
    assert page.url.endswith("/console/sign-in")
    actions = [e.action for e in await events(gateway)]
    assert "account.sign-in" in actions and "account.sign-out" in actions


async def test_a_wrong_second_factor_is_refused(gateway: Harness, browser: Any) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    wrong = f"{(int(who.code()) + 1) % 1_000_000:06d}"
    await sign_in(page, gateway.url, who, code=wrong)
    assert "Mã xác thực không đúng" in (await page.text_content("#signin-error") or "")
    # The password alone opens nothing.
    await page.goto(f"{gateway.url}/console/agencies")
    assert "/console/sign-in" in page.url


async def test_repeated_failures_lock_the_account(gateway: Harness, browser: Any) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{gateway.url}/console/sign-in")
    for _ in range(LOCKOUT_AFTER):
        await page.fill("#name", who.name)
        await page.fill("#password", "definitely not the password")
        await page.click("main button[type=submit]")
        assert "không đúng" in (await page.text_content("#signin-error") or "")
    # Now even the right password is refused, and the person is told why.
    await page.fill("#name", who.name)
    await page.fill("#password", who.password)
    await page.click("main button[type=submit]")
    assert "tạm khoá" in (await page.text_content("#signin-error") or "")
    async with gateway.state.sessions() as s:
        locked = await s.scalar(select(AdminEvent).where(AdminEvent.action == "account.locked"))
    assert locked is not None and locked.actor == "person:nva"


async def test_an_administrator_edits_an_agency_and_the_change_names_them(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.click("nav a[href='/console/agencies']")
    await page.click(f"tr[data-code='{AGENCY}'] a")
    # A comment is required: without one nothing is saved, and the field says why.
    await page.fill("#name", "Sở Tư pháp tỉnh")
    await page.click("main button[type=submit]")  # the browser's own check stops this
    assert "/agencies/" in page.url
    await page.fill("#comment", "tên đầy đủ theo quyết định 12/QĐ-UBND")
    await page.click("main button[type=submit]")
    await page.wait_for_url("**/console/agencies?saved=*")
    row = await page.text_content(f"tr[data-code='{AGENCY}']")
    assert row is not None and "Sở Tư pháp tỉnh" in row
    await page.click("nav a[href='/console/events']")
    first = page.locator("#events tbody tr").first
    assert await first.locator(".actor").text_content() == "person:nva"
    assert await first.locator(".comment").text_content() == "tên đầy đủ theo quyết định 12/QĐ-UBND"
    async with gateway.state.sessions() as s:
        version = await s.scalar(select(PolicyVersion).order_by(PolicyVersion.id.desc()))
    assert version is not None
    assert (version.actor, version.source) == ("person:nva", "console")
    # The running gateway took the change: its tables name the agency anew.
    r = await gateway.http.get("/r1/000.00.00.H49/echo/v1/x")  # any request: still serving
    assert r.status_code in (401, 403)


async def test_an_observer_reads_agencies_but_may_not_change_them(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "xem", ["observer"])
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.goto(f"{gateway.url}/console/agencies/{AGENCY}")
    assert await page.locator("#name").is_disabled()
    csrf = await page.get_attribute("input[name=csrf]", "value")
    r = await page.request.post(
        f"{gateway.url}/console/agencies/{AGENCY}",
        form={"csrf": csrf or "", "name": "hijacked", "comment": "x"},
    )
    assert r.status == 403
    assert "Vai trò của bạn không cho phép" in await r.text()


async def test_a_post_without_the_csrf_token_is_refused(gateway: Harness, browser: Any) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    target = f"{gateway.url}/console/agencies/{AGENCY}"
    for form in (
        {"name": "forged", "comment": "x"},
        {"name": "forged", "comment": "x", "csrf": "a-guess"},
    ):
        r = await page.request.post(target, form=form)  # the session cookie goes along
        assert r.status == 403
        assert "Biểu mẫu đã cũ" in await r.text()
    await page.goto(f"{gateway.url}/console/agencies")
    assert "forged" not in (await page.text_content("main") or "")


async def test_every_page_has_a_strict_content_security_policy(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    answer = await page.goto(f"{gateway.url}/console/sign-in")
    assert answer is not None
    headers = answer.headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp  # no script at all
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert await page.locator("script").count() == 0
    # The stylesheet loads under that policy (the page is styled, nothing was blocked).
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    for path in ("/console/", "/console/agencies", "/console/events"):
        answer = await page.goto(gateway.url + path)
        assert answer is not None and answer.headers["content-security-policy"] == csp
    header_colour = await page.eval_on_selector(
        "header", "e => getComputedStyle(e).backgroundColor"
    )
    assert header_colour == "rgb(11, 79, 138)"


async def test_what_an_outsider_puts_in_an_agency_name_is_shown_not_run(
    gateway: Harness, browser: Any
) -> None:
    from gateway.admin import collections as entities
    from gateway.admin.actor import Actor
    from gateway.admin.edits import Editor

    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    # An agency name, a service name, a comment: all things an outsider can get shown.
    editor = Editor(
        gateway.state.sessions, Actor.client("quantri", frozenset({"administrator"}), hostile)
    )
    await entities.patch(editor, entities.AGENCIES, (AGENCY,), {"name": hostile})
    await entities.patch(editor, entities.SERVICES, tuple(SLOW.split("/")), {"name": hostile})
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.goto(f"{gateway.url}/console/agencies")
    assert hostile in (await page.text_content(f"tr[data-code='{AGENCY}']") or "")
    assert await page.locator("main img, main script").count() == 0
    await page.goto(f"{gateway.url}/console/services")
    assert hostile in (await page.text_content(f"tr[data-service='{SLOW}']") or "")
    await page.goto(f"{gateway.url}/console/events")
    assert await page.locator("#events .comment", has_text=hostile).count() >= 2
    await page.goto(f"{gateway.url}/console/versions")
    assert await page.locator("#versions .comment", has_text=hostile).count() >= 2
    for path in ("/console/services", "/console/events", "/console/versions"):
        await page.goto(gateway.url + path)
        assert await page.locator("main img, main script").count() == 0
    assert dialogs == []


async def test_a_one_time_password_must_be_replaced_under_the_rules(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "nva", ["administrator"], one_time=True)
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/password")
    await page.goto(f"{gateway.url}/console/agencies")  # nothing else opens before
    assert page.url.endswith("/console/password")
    await page.fill("#current", who.password)
    await page.fill("#new", "1qaz2wsx3edc4rfv")
    await page.fill("#again", "1qaz2wsx3edc4rfv")
    await page.click("main button[type=submit]")
    assert "danh sách mật khẩu đã bị lộ" in (await page.text_content("#new-error") or "")
    await page.fill("#current", who.password)
    await page.fill("#new", GOOD)
    await page.fill("#again", GOOD)
    await page.click("main button[type=submit]")
    await page.wait_for_url("**/console/?m=password")
    assert await page.text_content("#notice") == "Đã đổi mật khẩu."
    await page.goto(f"{gateway.url}/console/agencies")
    assert page.url.endswith("/console/agencies")
    assert [e.action for e in await events(gateway)][-1] == "account.password"


async def test_an_administrator_creates_an_account_and_its_secrets_are_shown_once(
    gateway: Harness, browser: Any
) -> None:
    admin = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, admin)
    await page.wait_for_url("**/console/")
    await page.click("nav a[href='/console/accounts']")
    await page.fill("#new-name", "ttb")
    await page.fill("#new-display", "Trần Thị B")
    await page.check("#create input[value=auditor]")
    await page.fill("#new-comment", "kiểm toán viên mới của Sở")
    await page.click("#create button")
    password = await page.text_content("#issued-password")
    secret = await page.text_content("#issued-secret")
    assert password and secret
    assert "otpauth://totp/LGSP:ttb?secret=" in (await page.text_content("#issued-uri") or "")
    await page.goto(f"{gateway.url}/console/accounts")  # shown once: not on the next page
    assert password not in (await page.content())
    created = [e for e in await events(gateway) if e.action == "account.create"][-1]
    assert (created.actor, created.target) == ("person:nva", "person:ttb")
    assert created.comment == "kiểm toán viên mới của Sở"
    # The new person signs in with what was shown, and must choose a password first.
    other = await (await browser.new_context()).new_page()
    await sign_in(other, gateway.url, Person("ttb", password, secret))
    await other.wait_for_url("**/console/password")
    # Nobody disables themselves here.
    await page.click("tr[data-account='nva'] summary")
    await page.fill("tr[data-account='nva'] form[action$='/disable'] input[name=comment]", "x")
    await page.click("tr[data-account='nva'] form[action$='/disable'] button")
    assert "không thể tự vô hiệu hoá" in (await page.text_content("#form-errors") or "")


async def test_sign_out_everywhere_ends_every_session_of_the_account(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "nva", ["administrator"])
    first = await (await browser.new_context()).new_page()
    await sign_in(first, gateway.url, who)
    await first.wait_for_url("**/console/")
    second = await (await browser.new_context()).new_page()
    # Another browser, the next step's code (this step's was used: a code is good once).
    await sign_in(second, gateway.url, who, code=totp.code_at(who.secret, time.time() + 30))
    await second.wait_for_url("**/console/")
    await second.click("main form[action$='/sign-out/everywhere'] button")
    await second.wait_for_url("**/console/sign-in?m=out")
    await first.goto(f"{gateway.url}/console/agencies")
    assert first.url.endswith("/console/sign-in")


async def test_the_session_token_changes_when_the_second_factor_is_given(
    gateway: Harness, browser: Any
) -> None:
    """Session fixation: a token known before sign-in is worthless after it."""
    who = await person(gateway, "nva", ["administrator"])
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{gateway.url}/console/sign-in")
    await page.fill("#name", who.name)
    await page.fill("#password", who.password)
    await page.click("main button[type=submit]")
    await page.wait_for_url("**/console/sign-in/code")
    (before,) = [c["value"] for c in await context.cookies() if c["name"].endswith("console")]
    await page.fill("#code", who.code())
    await page.click("main button[type=submit]")
    await page.wait_for_url("**/console/")
    (after,) = [c["value"] for c in await context.cookies() if c["name"].endswith("console")]
    assert before != after
    for token, where in ((before, "/console/sign-in"), (after, None)):
        r = await gateway.http.get(
            "/console/agencies", headers={"Cookie": f"__Host-lgsp_console={token}"}
        )
        assert r.headers.get("location") == where


SLOW = "000.00.00.H49/slow/v1"  # total timeout 300 ms in the test policy


async def test_an_operator_changes_a_timeout_after_a_preview_and_it_takes_effect(
    gateway: Harness, browser: Any
) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    slow_call = "/r1/000.00.00.H49/slow/v1/600"  # the simulator answers after 600 ms
    assert (await gateway.http.get(slow_call, headers=headers)).status_code == 504
    who = await person(gateway, "vanhanh", ["operator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.click("nav a[href='/console/services']")
    await page.click(f"tr[data-service='{SLOW}'] a")
    # A value the policy refuses is named next to its field, and nothing is previewed.
    await page.fill("#timeouts-total_ms", "5")
    await page.click("main form button[type=submit]")
    assert "10" in (await page.text_content("#timeouts-total_ms-error") or "")
    await page.fill("#timeouts-total_ms", "3000")
    await page.click("main form button[type=submit]")
    # The preview says exactly what will change; nothing has yet.
    assert await page.text_content("#changes .detail") == "timeouts.total_ms: 300 → 3000"
    assert (await gateway.http.get(slow_call, headers=headers)).status_code == 504
    await page.fill("#comment", "nhà cung cấp chậm vào giờ cao điểm")
    await page.click("main form button[type=submit]")
    await page.wait_for_url("**/console/services?saved=*")
    assert await page.text_content(f"tr[data-service='{SLOW}'] .total_ms") == "3000"
    assert (await gateway.http.get(slow_call, headers=headers)).status_code == 200
    async with gateway.state.sessions() as s:
        version = await s.scalar(select(PolicyVersion).order_by(PolicyVersion.id.desc()))
    assert version is not None
    assert (version.actor, version.comment) == (
        "person:vanhanh",
        "nhà cung cấp chậm vào giờ cao điểm",
    )


async def test_a_preview_confirmed_after_someone_else_changed_the_policy_is_refused(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "vanhanh", ["operator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.goto(f"{gateway.url}/console/services/{SLOW}")
    await page.fill("#timeouts-total_ms", "3000")
    await page.click("main form button[type=submit]")
    await page.wait_for_selector("#changes")
    from gateway.admin import collections as entities
    from gateway.admin.actor import Actor
    from gateway.admin.edits import Editor

    other = Editor(gateway.state.sessions, Actor.client("quantri", frozenset({"administrator"})))
    await entities.patch(other, entities.SERVICES, tuple(SLOW.split("/")), {"name": "Chậm"})
    await page.fill("#comment", "x")
    await page.click("main form button[type=submit]")
    assert "someone changed it since" in (await page.text_content("#notice") or "")
    assert await page.input_value("#timeouts-total_ms") == "300"  # not applied


async def test_an_observer_sees_a_service_but_cannot_preview_a_change(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "xem", ["observer"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.goto(f"{gateway.url}/console/services/{SLOW}")
    assert await page.locator("#timeouts-total_ms").is_disabled()
    assert await page.locator("main form button").count() == 0
    csrf = await page.get_attribute("input[name=csrf]", "value")
    r = await page.request.post(
        f"{gateway.url}/console/edit/services/confirm",
        form={
            "csrf": csrf or "",
            "op": "update",
            "key": SLOW,
            "body": '{"enabled": false}',
            "version": "0",
            "comment": "x",
        },
    )
    assert r.status == 403


# Set to a directory (docs/img), the accessibility test also saves the screenshots the
# administrator's guide shows: `LGSP_CONSOLE_SCREENSHOTS=docs/img pytest -k axe`.
SCREENSHOTS = os.environ.get("LGSP_CONSOLE_SCREENSHOTS")


async def _shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"console-{name}.png"))


async def test_every_page_passes_axe_without_serious_or_critical_violations(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "nva", ["administrator"])
    ok = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    for endpoint in ("x", "y", "z"):  # a dashboard with exchanges on it
        await gateway.http.get(f"/r1/000.00.00.H49/echo/v1/{endpoint}", headers=ok)
    await gateway.http.get("/r1/000.00.00.H49/slow/v1/600", headers=ok)
    # axe is injected by Playwright's evaluate, which the console's CSP would not allow a
    # page to do (no script at all): the checks run with the policy bypassed.
    context = await browser.new_context(bypass_csp=True, viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    found: list[str] = []
    await page.goto(f"{gateway.url}/console/sign-in")
    found += await serious(page)
    await page.fill("#name", who.name)
    await page.fill("#password", "wrong password here")
    await page.click("main button[type=submit]")  # the page with an error shown
    found += await serious(page)
    await page.fill("#name", who.name)
    await page.fill("#password", who.password)
    await page.click("main button[type=submit]")
    await page.wait_for_url("**/console/sign-in/code")
    found += await serious(page)
    await page.fill("#code", who.code())
    await page.click("main button[type=submit]")
    await page.wait_for_url("**/console/")
    await _shot(page, "dashboard")
    for path in (
        "/console/",
        "/console/agencies",
        f"/console/agencies/{AGENCY}",
        "/console/services",
        f"/console/services/{SLOW}",
        "/console/events",
        "/console/versions",
        "/console/versions/compare?a=1&b=2",
        "/console/access",
        "/console/access/000.00.00.H49/echo/v1?method=GET&path=/hello",
        "/console/clients",
        "/console/clients/motcua",
        "/console/accounts",
        "/console/password",
    ):
        await page.goto(gateway.url + path)
        found += await serious(page)
        if path == "/console/access":
            await _shot(page, "access")
    await page.goto(f"{gateway.url}/console/services/{SLOW}")
    await page.fill("#timeouts-total_ms", "3000")
    await page.click("main form button[type=submit]")
    await page.wait_for_selector("#changes")
    found += await serious(page)  # the preview
    await _shot(page, "preview")
    await page.click("header a[lang=en]")
    await page.goto(f"{gateway.url}/console/agencies")
    found += await serious(page)
    assert found == []


async def test_an_administrator_compares_versions_and_rolls_one_back(
    gateway: Harness, browser: Any
) -> None:
    from gateway.admin import collections as entities
    from gateway.admin.actor import Actor
    from gateway.admin.edits import Editor

    editor = Editor(gateway.state.sessions, Actor.client("quantri", frozenset({"administrator"})))
    before = (
        await entities.patch(editor, entities.AGENCIES, (AGENCY,), {"name": "Tên cũ"})
    ).version
    after = (
        await entities.patch(editor, entities.AGENCIES, (AGENCY,), {"name": "Tên sai"})
    ).version
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.click("nav a[href='/console/versions']")
    await page.click("#compare button")  # the two newest, filled in
    assert await page.text_content("#changes .detail") == "name: 'Tên cũ' → 'Tên sai'"
    await page.goto(f"{gateway.url}/console/versions")
    await page.click(f"tr[data-version='{before}'] button")
    assert await page.text_content("#changes .detail") == "name: 'Tên sai' → 'Tên cũ'"
    await page.fill("#comment", "sửa nhầm tên, trả lại như cũ")
    await page.click("main form.card button")
    await page.wait_for_url("**/console/versions?restored=*")
    newest = page.locator("#versions tbody tr").first
    assert await newest.locator(".actor").text_content() == "person:nva"
    assert await newest.locator(".comment").text_content() == (
        f"rollback to version {before}: sửa nhầm tên, trả lại như cũ"
    )
    item, version = await entities.read_one(gateway.state.sessions, entities.AGENCIES, (AGENCY,))
    assert item["name"] == "Tên cũ" and version == (after or 0) + 1


ECHO_KEY = "000.00.00.H49/echo/v1"


async def test_an_administrator_grants_a_right_in_the_matrix_and_a_403_becomes_200(
    gateway: Harness, browser: Any
) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token('outsider')}"}
    call = f"/r1/{ECHO_KEY}/hello"
    assert (await gateway.http.get(call, headers=headers)).status_code == 403
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.click("nav a[href='/console/access']")
    # Narrower rights are written in their cell: hotich may GET /public/** of the echo.
    hotich = page.locator(f"tr[data-client='hotich'] td[data-service='{ECHO_KEY}']")
    assert "GET /public/**" in (await hotich.text_content() or "")
    await page.check(f"tr[data-client='outsider'] td[data-service='{ECHO_KEY}'] input")
    await page.click("main form button[type=submit]")
    assert await page.text_content("#changes li strong") == f"Thay quyền truy cập {ECHO_KEY}"
    assert "+ * /** (client outsider)" in (await page.text_content("#changes") or "")
    assert (await gateway.http.get(call, headers=headers)).status_code == 403  # not yet
    await page.fill("#comment", "Sở Tư pháp cần gọi dịch vụ thử nghiệm")
    await page.click("main form.card button")
    await page.wait_for_url("**/console/access?saved=*")
    box = page.locator(f"tr[data-client='outsider'] td[data-service='{ECHO_KEY}'] input")
    assert await box.is_checked()
    assert (await gateway.http.get(call, headers=headers)).status_code == 200
    mine = [e for e in await events(gateway) if e.actor == "person:nva"]
    assert [e.action for e in mine if not e.action.startswith("account.")] == ["policy.access"]


async def test_an_operator_reads_the_matrix_but_cannot_change_access_rights(
    gateway: Harness, browser: Any
) -> None:
    who = await person(gateway, "vanhanh", ["operator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.goto(f"{gateway.url}/console/access")
    box = page.locator(f"tr[data-client='outsider'] td[data-service='{ECHO_KEY}'] input")
    assert await box.is_disabled()
    csrf = await page.get_attribute("input[name=csrf]", "value")
    r = await page.request.post(
        f"{gateway.url}/console/access/confirm",
        form={"csrf": csrf or "", "grant": f"outsider|{ECHO_KEY}", "version": "0", "comment": "x"},
    )
    assert r.status == 403
    headers = {"Authorization": f"Bearer {await gateway.token('outsider')}"}
    assert (await gateway.http.get(f"/r1/{ECHO_KEY}/hello", headers=headers)).status_code == 403


async def test_an_administrator_rotates_a_credential_and_sees_the_new_secret_once(
    gateway: Harness, browser: Any
) -> None:
    old = await gateway.secret("hotich")

    async def token_status(secret: str) -> int:
        r = await gateway.http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("hotich", secret)
        )
        return r.status_code

    assert await token_status(old) == 200
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.click("nav a[href='/console/clients']")
    await page.click("tr[data-client='hotich'] a")
    await page.select_option("#rotate-grace", "0")
    await page.fill("#rotate-comment", "khoá cũ bị lộ")
    await page.click("#rotate button")
    new = await page.text_content("#issued-secret")
    assert new and new != old
    assert await token_status(old) == 401  # revoked at once (no grace)
    assert await token_status(new) == 200
    await page.goto(f"{gateway.url}/console/clients/hotich")
    assert new not in await page.content()  # shown once
    rotated = [e for e in await events(gateway) if e.action.startswith("credential.")]
    assert {(e.actor, e.action) for e in rotated} >= {
        ("person:nva", "credential.revoke"),
        ("person:nva", "credential.issue"),
    }
    assert {e.comment for e in rotated if e.actor == "person:nva"} == {"khoá cũ bị lộ"}
    # Revoking the new one: it fails on the next request.
    newest = page.locator("#credentials tbody tr").last
    await newest.locator("input[name=comment]").fill("thử thu hồi")
    await newest.locator("button").click()
    await page.wait_for_url("**/console/clients/hotich?done=revoke")
    assert await token_status(new) == 401


async def test_the_dashboard_shows_the_last_hour_of_exchanges_and_the_upstreams(
    gateway: Harness, browser: Any
) -> None:
    ok = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    no = {"Authorization": f"Bearer {await gateway.token('outsider')}"}
    for _ in range(3):
        assert (await gateway.http.get(f"/r1/{ECHO_KEY}/x", headers=ok)).status_code == 200
    assert (await gateway.http.get(f"/r1/{ECHO_KEY}/x", headers=no)).status_code == 403
    assert (await gateway.http.get(f"/r1/{SLOW}/600", headers=ok)).status_code == 504
    who = await person(gateway, "xem", ["observer"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    assert await page.text_content("#total-hour") == "5"
    assert [await page.text_content(f"#hour-{o}") for o in ("success", "refused", "failed")] == [
        "3",
        "1",
        "1",
    ]
    assert await page.text_content("#error-rate") == "20.0 %"
    assert await page.locator("#chart rect").count() >= 3  # the frame and stacked bars
    echo = page.locator("#by-service tr", has_text=ECHO_KEY)
    assert (await echo.locator("td").nth(1).text_content()) == "4"
    assert "sim-open" in (await page.text_content("#upstreams") or "")
    # It refreshes by itself once the person asks, and stops when they say.
    assert await page.locator("meta[http-equiv=refresh]").count() == 0
    await page.click("#auto")
    assert await page.get_attribute("meta[http-equiv=refresh]", "content") == "30"
    await page.click("#auto")
    assert await page.locator("meta[http-equiv=refresh]").count() == 0


async def test_a_plain_http_demo_drops_secure_and_the_host_prefix_only_when_told(
    gateway: Harness, browser: Any
) -> None:
    gateway.state.settings.console_secure_cookies = False  # what `lgsp demo` sets
    who = await person(gateway, "nva", ["administrator"])
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    (cookie,) = [c for c in await context.cookies() if "console" in c["name"]]
    assert cookie["name"] == "lgsp_console" and not cookie["secure"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


async def test_the_language_switch_goes_back_into_the_console_only(gateway: Harness) -> None:
    for asked, where in (
        ("/console/agencies", "/console/agencies"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/\\\\evil.example", "/console/"),
    ):
        r = await gateway.http.get("/console/lang/en", params={"next": asked})
        assert r.status_code == 303 and r.headers["location"] == where
        assert r.headers["x-frame-options"] == "DENY"
    assert "lgsp_lang=en" in r.headers["set-cookie"]


async def test_a_change_without_a_comment_is_not_saved(gateway: Harness, browser: Any) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.goto(f"{gateway.url}/console/agencies/{AGENCY}")
    csrf = await page.get_attribute("input[name=csrf]", "value")
    r = await page.request.post(  # past the browser's own check of the required field
        f"{gateway.url}/console/agencies/{AGENCY}",
        form={"csrf": csrf or "", "name": "Không lý do", "comment": "  "},
    )
    assert r.status == 422 and "Trường này là bắt buộc" in await r.text()
    await page.goto(f"{gateway.url}/console/agencies")
    assert "Không lý do" not in (await page.text_content("main") or "")
