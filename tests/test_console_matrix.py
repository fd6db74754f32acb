"""The access matrix by endpoint, in the browser: a service's column links to its own
matrix, systems by its endpoints (a method and a path pattern); an administrator grants
one endpoint, after a preview and with a comment, and only that call goes from 403 to
200; an operator reads it and cannot change it."""

from __future__ import annotations

from typing import Any

from .conftest import Harness
from .console_rig import events, person, sign_in, signed_in

ECHO_KEY = "000.00.00.H49/echo/v1"


async def test_an_administrator_grants_one_endpoint_and_only_that_call_becomes_200(
    gateway: Harness, browser: Any
) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token('outsider')}"}
    hello, other = f"/r1/{ECHO_KEY}/hello", f"/r1/{ECHO_KEY}/other"
    assert (await gateway.http.get(hello, headers=headers)).status_code == 403
    who = await person(gateway, "nva", ["administrator"])
    page = await (await browser.new_context(viewport={"width": 1366, "height": 768})).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    await page.goto(f"{gateway.url}/console/access")
    await page.click(f"#matrix th.service a[href='/console/access/{ECHO_KEY}']")
    await page.wait_for_url(f"**/console/access/{ECHO_KEY}")
    # The endpoint rights the policy holds are columns: hotich may GET /public/**.
    held = page.locator("tr[data-client='hotich'] td[data-endpoint='GET /public/**'] input")
    assert await held.is_checked()
    await page.select_option("#new-method", "GET")
    await page.fill("#new-path", "/hello")
    await page.click("#add-endpoint button")
    cell = "tr[data-client='outsider'] td[data-endpoint='GET /hello'] input"
    assert not await page.is_checked(cell)
    label = await page.locator(cell).evaluate("e => e.closest('label').textContent")
    assert label == "outsider được gọi GET /hello"
    await page.check(cell)
    await page.click("main form[method=post] button[type=submit]")
    assert await page.text_content("#changes li strong") == f"Thay quyền truy cập {ECHO_KEY}"
    changes = await page.text_content("#changes") or ""
    assert "+ GET /hello (client outsider)" in changes
    assert "/public/**" not in changes  # hotich's right stays as it is
    assert (await gateway.http.get(hello, headers=headers)).status_code == 403  # not yet
    await page.fill("#comment", "Sở Tư pháp chỉ cần tra cứu hello")
    await page.click("main form.card button")
    await page.wait_for_url(f"**/console/access/{ECHO_KEY}?saved=*")
    assert await page.is_checked(cell)
    assert await held.is_checked()
    assert (await gateway.http.get(hello, headers=headers)).status_code == 200
    assert (await gateway.http.get(other, headers=headers)).status_code == 403
    assert (await gateway.http.post(hello, headers=headers, json={})).status_code == 403
    mine = [e for e in await events(gateway) if e.actor == "person:nva"]
    changed = [e for e in mine if not e.action.startswith("account.")]
    assert [(e.action, e.comment) for e in changed] == [
        ("policy.access", "Sở Tư pháp chỉ cần tra cứu hello")
    ]
    # In the full matrix the right is written in the cell, not ticked as the whole service.
    await page.goto(f"{gateway.url}/console/access")
    whole = page.locator(f"tr[data-client='outsider'] td[data-service='{ECHO_KEY}']")
    assert "GET /hello" in (await whole.text_content() or "")
    assert not await whole.locator("input").is_checked()


async def test_an_administrator_takes_an_endpoint_right_away(
    gateway: Harness, browser: Any
) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token('hotich')}"}
    public = f"/r1/{ECHO_KEY}/public/a"
    assert (await gateway.http.get(public, headers=headers)).status_code == 200
    page = await signed_in(gateway, browser, "nva", ["administrator"])
    await page.goto(f"{gateway.url}/console/access/{ECHO_KEY}")
    await page.uncheck("tr[data-client='hotich'] td[data-endpoint='GET /public/**'] input")
    await page.click("main form[method=post] button[type=submit]")
    assert "- GET /public/** (client hotich)" in (await page.text_content("#changes") or "")
    csrf = await page.get_attribute("input[name=csrf]", "value")
    r = await page.request.post(  # past the browser's own check of the required field
        f"{gateway.url}/console/access/{ECHO_KEY}/confirm",
        form={"csrf": csrf or "", "endpoint": "GET /public/**", "version": "0", "comment": " "},
    )
    assert r.status == 422 and "Trường này là bắt buộc" in await r.text()
    assert (await gateway.http.get(public, headers=headers)).status_code == 200
    await page.fill("#comment", "hết hạn thoả thuận")
    await page.click("main form.card button")
    await page.wait_for_url(f"**/console/access/{ECHO_KEY}?saved=*")
    assert (await gateway.http.get(public, headers=headers)).status_code == 403


async def test_an_operator_reads_the_endpoints_but_cannot_change_them(
    gateway: Harness, browser: Any
) -> None:
    page = await signed_in(gateway, browser, "vanhanh", ["operator"])
    await page.goto(f"{gateway.url}/console/access/{ECHO_KEY}")
    box = page.locator("tr[data-client='hotich'] td[data-endpoint='GET /public/**'] input")
    assert await box.is_checked() and await box.is_disabled()
    assert await page.locator("#add-endpoint").count() == 0
    csrf = await page.get_attribute("input[name=csrf]", "value")
    for step in ("preview", "confirm"):
        r = await page.request.post(
            f"{gateway.url}/console/access/{ECHO_KEY}/{step}",
            form={
                "csrf": csrf or "",
                "endpoint": "GET /hello",
                "grant": "outsider|GET|/hello",
                "version": "0",
                "comment": "x",
            },
        )
        assert r.status == 403
    headers = {"Authorization": f"Bearer {await gateway.token('outsider')}"}
    assert (await gateway.http.get(f"/r1/{ECHO_KEY}/hello", headers=headers)).status_code == 403


async def test_a_service_that_is_not_there_has_no_matrix(gateway: Harness, browser: Any) -> None:
    page = await signed_in(gateway, browser, "nva", ["administrator"])
    r = await page.goto(f"{gateway.url}/console/access/000.00.00.H49/nothing/v1")
    assert r is not None and r.status == 404


def test_a_declared_adapter_s_operations_are_the_service_s_endpoints() -> None:
    from gateway.admin.grants import endpoints

    land = {"provider": "p", "code": "dat", "version": "v1", "adapter": "land_registry"}
    echo = {"provider": "p", "code": "echo", "version": "v1"}
    land["access"] = [{"client": "a"}, {"group": "g", "method": "GET", "path": "/x/*"}]
    doc = {"services": [land, echo]}
    assert endpoints(doc, "p/dat/v1") == [("POST", "/thua-dat/tra-cuu"), ("GET", "/x/*")]
    assert endpoints(doc, "p/echo/v1") == []  # passthrough: the paths are the caller's
