"""What the console's browser tests share: Chromium driven by Playwright, people with
accounts, signing in (the `browser` fixture itself is in conftest.py).

Example::

    from .console_rig import person, sign_in

    async def test_x(gateway, browser):
        who = await person(gateway, "nva", ["administrator"])
        page = await (await browser.new_context()).new_page()
        await sign_in(page, gateway.url, who)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from gateway.identity import accounts, totp
from gateway.store.models import AdminEvent

from .conftest import Harness

__all__ = ["GOOD", "Person", "events", "person", "serious", "sign_in"]


@dataclass
class Person:
    name: str
    password: str
    secret: str

    def code(self) -> str:
        return totp.code_at(self.secret, time.time())


GOOD = "sông Hồng mùa nước nổi"


async def person(
    gateway: Harness, name: str, roles: list[str], *, one_time: bool = False
) -> Person:
    """An account with its own password (or, `one_time`, one the gateway generated)."""
    async with gateway.state.sessions() as s, s.begin():
        issued = await accounts.create_account(
            s,
            name=name,
            display_name=f"Người {name}",
            roles=roles,
            actor="test",
            password=None if one_time else GOOD,
        )
    return Person(name, issued.password, issued.totp_secret)


async def events(gateway: Harness) -> list[AdminEvent]:
    async with gateway.state.sessions() as s:
        return list((await s.scalars(select(AdminEvent).order_by(AdminEvent.id))).all())


async def sign_in(page: Any, url: str, who: Person, code: str | None = None) -> None:
    await page.goto(f"{url}/console/")
    await page.fill("#name", who.name)
    await page.fill("#password", who.password)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/sign-in/code")
    await page.fill("#code", code or who.code())
    await page.click("main button[type=submit]")


async def serious(page: Any) -> list[str]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page (run in a
    context made with `bypass_csp=True`: the console's CSP allows no injected script)."""
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


async def signed_in(gateway: Harness, browser: Any, name: str, roles: list[str]) -> Any:
    """A page of a new browser context, signed in as a new account `name` with `roles`,
    on the console's home page."""
    who = await person(gateway, name, roles)
    page = await (await browser.new_context()).new_page()
    await sign_in(page, gateway.url, who)
    await page.wait_for_url("**/console/")
    return page
