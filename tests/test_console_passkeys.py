"""Passkeys (WebAuthn) in a real browser: Chromium with a virtual authenticator (the
DevTools protocol's WebAuthn domain), against the console on http://localhost (a
relying party is a host name, never an IP address).

A person adds a passkey, then signs in with the password and the passkey instead of the
code; the answer of one sign-in replayed in another is refused; a removed passkey opens
nothing; the pages pass axe, and their CSP allows the console's own script only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

import pytest

from .conftest import Harness
from .console_rig import events, person, serious

pytestmark = pytest.mark.dialects("sqlite")  # the console is above the store


@pytest.fixture
def site(gateway: Harness) -> str:
    """The console's address by name, and the gateway told it is its relying party."""
    url = f"http://localhost:{gateway.port}"
    gateway.state.settings.console_webauthn_rp_id = "localhost"
    gateway.state.settings.console_webauthn_origin = url
    return url


async def _with_authenticator(browser: Any, **context: Any) -> Any:
    page = await (await browser.new_context(**context)).new_page()
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return page


async def _password(page: Any, site: str, who: Any) -> None:
    await page.goto(f"{site}/console/sign-in")
    await page.fill("#name", who.name)
    await page.fill("#password", who.password)
    await page.click("main button[type=submit]")
    await page.wait_for_url("**/console/sign-in/code")


async def _signed_in(page: Any, site: str, who: Any) -> None:
    await _password(page, site, who)
    await page.fill("#code", who.code())
    await page.click("main button[type=submit]")
    await page.wait_for_url(f"{site}/console/")


async def test_a_person_adds_a_passkey_and_signs_in_with_it_instead_of_the_code(
    gateway: Harness, browser: Any, site: str
) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await _with_authenticator(browser)
    await _password(page, site, who)
    assert await page.locator("#use-passkey").count() == 0  # none yet: the code only
    await page.fill("#code", who.code())
    await page.click("main button[type=submit]")
    await page.wait_for_url(f"{site}/console/")
    shown = await page.goto(f"{site}/console/passkeys")
    csp = shown.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    await page.fill("#passkey-name", "Máy bàn phòng CNTT")
    await page.click("#add-passkey")
    await page.wait_for_url("**/console/passkeys?m=added")
    assert await page.text_content("#passkeys .name") == "Máy bàn phòng CNTT"
    # Signed out, the password then the passkey: signed in, no code typed.
    await page.click("header button")
    await _password(page, site, who)
    await page.click("#use-passkey")
    await page.wait_for_url(f"{site}/console/")
    assert await page.text_content("#roles") == "administrator"
    mine = [(e.action, (e.after or {}).get("factor")) for e in await events(gateway)]
    assert ("account.passkey-add", None) in mine and ("account.sign-in", "passkey") in mine
    # Removed, it no longer offers itself.
    await page.goto(f"{site}/console/passkeys")
    await page.click("#passkeys button")
    await page.wait_for_selector("#no-passkeys")
    await page.click("header button")
    await _password(page, site, who)
    assert await page.locator("#use-passkey").count() == 0


async def test_a_passkey_answer_replayed_in_another_sign_in_is_refused(
    gateway: Harness, browser: Any, site: str
) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await _with_authenticator(browser)
    await _signed_in(page, site, who)
    await page.goto(f"{site}/console/passkeys")
    await page.click("#add-passkey")
    await page.wait_for_url("**/console/passkeys?m=added")
    await page.click("header button")
    await _password(page, site, who)
    sent: list[str] = []
    page.on(
        "request",
        lambda r: sent.append(r.post_data or "") if r.url.endswith("/sign-in/passkey") else None,
    )
    await page.click("#use-passkey")
    await page.wait_for_url(f"{site}/console/")
    (answer,) = sent
    credential = dict(p.split("=", 1) for p in answer.split("&"))["credential"]
    # Another sign-in, its own page and challenge: the old answer does not open it.
    await page.click("header button")
    await _password(page, site, who)
    csrf = await page.get_attribute("#passkey-form input[name=csrf]", "value")
    r = await page.request.post(
        f"{site}/console/sign-in/passkey",
        form={"csrf": csrf or "", "credential": unquote_plus(credential)},
    )
    assert r.status == 401
    await page.goto(f"{site}/console/agencies")
    assert page.url.endswith("/console/sign-in")  # not signed in
    refused = [e for e in await events(gateway) if e.action == "account.sign-in-refused"]
    assert [(e.after or {}).get("factor") for e in refused] == ["passkey"]


async def test_the_passkey_pages_pass_axe(gateway: Harness, browser: Any, site: str) -> None:
    who = await person(gateway, "nva", ["administrator"])
    page = await _with_authenticator(
        browser, bypass_csp=True, viewport={"width": 1366, "height": 768}
    )
    await _signed_in(page, site, who)
    await page.goto(f"{site}/console/passkeys")
    found = await serious(page)
    await page.click("#add-passkey")
    await page.wait_for_url("**/console/passkeys?m=added")
    found += await serious(page)
    await page.click("header button")
    await _password(page, site, who)
    found += await serious(page)  # the second factor's page, with the passkey's form
    assert found == []
