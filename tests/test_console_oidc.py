"""Signing in to the console through an OpenID Connect provider, against a real one: the
OpenID Certified `oidc-provider` (npm), run by the machine's Node.js from tests/oidc/,
with its own login and consent pages, driven in Chromium like a person would.

A person whose provider groups map to a role lands in the console with that role, their
account created on the first sign-in and named `person:<account>` in every record; one
whose groups map to no role is refused with a page saying why; one the provider does
not say gave a second factor is refused; a state that is not the browser's, a code
redeemed with another browser's PKCE verifier and an ID token whose nonce is not the
browser's are all refused.

Node.js and npm are needed: under CI their absence fails these tests, elsewhere skips
them with the reason. `npm ci` runs into a cache folder when tests/oidc/node_modules is
not there (.ci/run may install it in place beforehand).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from gateway.edge.console.oidc import CALLBACK, FLOW_COOKIE

from .conftest import REPO, Harness
from .console_rig import events, serious

pytestmark = pytest.mark.dialects("sqlite")  # the console is above the store

HERE = REPO / "tests" / "oidc"
PASSWORD = "mat-khau-thu"  # the provider's (provider.mjs)
PEOPLE = {
    "quantri": {"name": "Quản trị SSO", "groups": ["lgsp-quan-tri", "can-bo"]},
    "vanhanh": {"name": "Vận hành SSO", "groups": ["lgsp-van-hanh"]},
    "ketoan": {"name": "Kế toán", "groups": ["phong-ke-toan"]},
}
ROLES = {"lgsp-quan-tri": ["administrator"], "lgsp-van-hanh": ["operator"]}


def _missing(why: str) -> None:
    message = f"the OpenID provider tests need {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI requires it", pytrace=False)
    pytest.skip(message)


def _provider_dir() -> Path:
    """Where provider.mjs runs with its node_modules: tests/oidc itself if installed
    there, else a cache folder keyed by the lock file, `npm ci` run into it once."""
    if (HERE / "node_modules" / "oidc-provider").is_dir():
        return HERE
    npm = shutil.which("npm")
    if npm is None:
        _missing("npm (apt-get install npm)")
    lock = (HERE / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    where = cache / "lgsp-test-oidc" / hashlib.sha256(lock).hexdigest()[:16]
    if not (where / "node_modules" / "oidc-provider").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(HERE / name, where / name)
        done = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund"], cwd=where, capture_output=True, text=True
        )
        if done.returncode != 0:
            _missing(f"`npm ci` to succeed: {done.stderr[-2000:]}")
    shutil.copy(HERE / "provider.mjs", where / "provider.mjs")
    return where


@pytest.fixture
async def provider(gateway: Harness, tmp_path: Path) -> AsyncIterator[str]:
    """The provider, its client the console of `gateway`, and the gateway told of it
    (each needs the other's address: the gateway reads these settings per request)."""
    node = shutil.which("node")
    if node is None:
        _missing("Node.js (apt-get install nodejs)")
    where = _provider_dir()
    config = {
        "redirect_uri": gateway.url + CALLBACK,
        "client_id": "lgsp-console",
        "client_secret": "a-test-client-secret-of-some-length",
        "people": PEOPLE,
    }
    log = (tmp_path / "provider.log").open("w")
    process = await asyncio.create_subprocess_exec(
        str(node), "provider.mjs", json.dumps(config), cwd=where,
        stdout=asyncio.subprocess.PIPE, stderr=log,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"listening "), (tmp_path / "provider.log").read_text()
        issuer = line.decode().split()[1]
        s = gateway.state.settings
        s.console_oidc_issuer = issuer
        s.console_oidc_client_id = config["client_id"]
        s.console_oidc_client_secret = config["client_secret"]
        s.console_oidc_redirect_url = config["redirect_uri"]
        s.console_oidc_roles = ROLES
        yield issuer
    finally:
        process.terminate()
        await process.wait()
        log.close()


async def _at_provider(page: Any, gateway: Harness, who: str, *, otp: bool = True) -> None:
    """From the console's sign-in page to the provider's, and its login and consent."""
    await page.goto(f"{gateway.url}/console/sign-in")
    await page.click("#oidc a")
    await page.fill("#sso-name", who)
    await page.fill("#sso-password", PASSWORD)
    if otp:
        await page.fill("#sso-otp", "246810")
    await page.click("#sso-login")
    await page.click("#sso-consent")


async def _held_callback(page: Any, gateway: Harness, who: str) -> str:
    """Sign in at the provider, but hold the redirect back: the callback URL it carries.
    (A browser's redirects are not routed one by one: the consent's answer is fetched,
    and the provider's redirects followed, by the context's own client, sharing its
    cookies, and the page is given a blank answer instead.)"""
    held: list[str] = []

    async def hold(route: Any) -> None:
        answer = await route.fetch(max_redirects=0)  # the consent's: on to the provider
        resumed = await page.context.request.get(answer.headers["location"], max_redirects=0)
        held.append(resumed.headers["location"])
        await route.fulfill(status=200, content_type="text/html", body="<p id=held>held</p>")

    def consent(url: str) -> bool:
        return "/interaction/" in url and url.endswith("/confirm")

    await page.route(consent, hold)
    await _at_provider(page, gateway, who)
    await page.wait_for_selector("#held")
    await page.unroute(consent)
    (back,) = held
    assert back.startswith(gateway.url + CALLBACK)
    return back


def _with(url: str, **changed: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changed
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


async def test_a_person_signs_in_at_the_provider_and_lands_with_the_mapped_role(
    gateway: Harness, browser: Any, provider: str
) -> None:
    page = await (await browser.new_context()).new_page()
    await _at_provider(page, gateway, "quantri")
    await page.wait_for_url(f"{gateway.url}/console/")
    assert await page.text_content("h1") == "Xin chào, Quản trị SSO."
    assert await page.text_content("#roles") == "administrator"
    await page.goto(f"{gateway.url}/console/clients")  # the administrator's page
    assert await page.locator("#clients").count() == 1
    recorded = [(e.actor, e.action) for e in await events(gateway) if e.target == "person:quantri"]
    assert recorded == [("person:quantri", "account.create"), ("person:quantri", "account.sign-in")]
    # The second time, the same account (matched on issuer and subject), no new one.
    page = await (await browser.new_context()).new_page()
    await _at_provider(page, gateway, "quantri")
    await page.wait_for_url(f"{gateway.url}/console/")
    actions = [e.action for e in await events(gateway) if e.target == "person:quantri"]
    assert actions.count("account.create") == 1 and actions.count("account.sign-in") == 2
    # Signed in anew in the same browser (the provider remembers the person: no pages),
    # the earlier session ends: its token opens nothing.
    (before,) = [c["value"] for c in await page.context.cookies() if "console" in c["name"]]
    await page.goto(f"{gateway.url}/console/sign-in/oidc")
    await page.wait_for_url(f"{gateway.url}/console/")
    (after,) = [c["value"] for c in await page.context.cookies() if "console" in c["name"]]
    assert after != before
    r = await gateway.http.get(
        "/console/agencies", headers={"Cookie": f"__Host-lgsp_console={before}"}
    )
    assert r.headers.get("location") == "/console/sign-in"
    # Such an account has no password here: the local form does not open it.
    await page.goto(f"{gateway.url}/console/sign-in")
    await page.context.clear_cookies()
    await page.goto(f"{gateway.url}/console/sign-in")
    await page.fill("#name", "quantri")
    await page.fill("#password", "!")
    await page.click("main form button[type=submit]")
    assert "/sign-in/code" not in page.url


async def test_an_operator_group_maps_to_the_operator_role(
    gateway: Harness, browser: Any, provider: str
) -> None:
    page = await (await browser.new_context()).new_page()
    await _at_provider(page, gateway, "vanhanh")
    await page.wait_for_url(f"{gateway.url}/console/")
    assert await page.text_content("#roles") == "operator"
    assert (await page.request.get(f"{gateway.url}/console/clients")).status == 403


async def test_a_person_whose_groups_map_to_no_role_is_refused(
    gateway: Harness, browser: Any, provider: str
) -> None:
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    await _at_provider(page, gateway, "ketoan")
    assert "không thuộc nhóm nào" in (await page.text_content("#error-message") or "")
    assert await serious(page) == []
    await page.goto(f"{gateway.url}/console/")
    assert page.url.endswith("/console/sign-in")  # no session
    refused = [e for e in await events(gateway) if e.action == "account.sign-in-refused"]
    assert [(e.actor, (e.after or {}).get("reason")) for e in refused] == [
        ("person:ketoan", "roles")
    ]


async def test_a_sign_in_without_a_second_factor_at_the_provider_is_refused(
    gateway: Harness, browser: Any, provider: str
) -> None:
    page = await (await browser.new_context()).new_page()
    await _at_provider(page, gateway, "quantri", otp=False)
    assert "xác thực hai lớp" in (await page.text_content("#error-message") or "")
    # Told not to require it, the same sign-in goes through.
    gateway.state.settings.console_oidc_require_mfa = False
    page = await (await browser.new_context()).new_page()
    await _at_provider(page, gateway, "quantri", otp=False)
    await page.wait_for_url(f"{gateway.url}/console/")


async def test_a_state_that_is_not_the_browsers_is_refused(
    gateway: Harness, browser: Any, provider: str
) -> None:
    page = await (await browser.new_context()).new_page()
    back = await _held_callback(page, gateway, "quantri")
    assert parse_qs(urlsplit(back).query)["state"]
    await page.goto(_with(back, state="somebody-elses-state"))
    assert "không do trình duyệt của bạn bắt đầu" in (
        await page.text_content("#error-message") or ""
    )
    # The flow is spent: even the right state is now refused.
    await page.goto(back)
    assert await page.locator("#error-message").count() == 1
    await page.goto(f"{gateway.url}/console/")
    assert page.url.endswith("/console/sign-in")


async def test_a_code_redeemed_with_another_browsers_pkce_verifier_is_refused(
    gateway: Harness, browser: Any, provider: str
) -> None:
    victim = await (await browser.new_context()).new_page()
    back = await _held_callback(victim, gateway, "quantri")
    # The attacker starts a sign-in of their own (their state, their verifier) and
    # brings the victim's code to it: the provider refuses the code for that verifier.
    attacker = await browser.new_context()
    page = await attacker.new_page()
    await page.goto(f"{gateway.url}/console/sign-in")
    await page.route(lambda url: url.startswith(provider + "/auth"), lambda route: route.abort())
    try:
        await page.click("#oidc a")
    except Exception:  # noqa: S110 - the provider's page is not needed
        pass
    (flow,) = [c for c in await attacker.cookies() if c["name"] == FLOW_COOKIE]
    await page.goto(_with(back, state=flow["value"].split(".")[0]))
    assert "không hợp lệ" in (await page.text_content("#error-message") or "")
    await page.goto(f"{gateway.url}/console/")
    assert page.url.endswith("/console/sign-in")


async def test_an_id_token_whose_nonce_is_not_the_browsers_is_refused(
    gateway: Harness, browser: Any, provider: str
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    back = await _held_callback(page, gateway, "quantri")
    (flow,) = [c for c in await context.cookies() if c["name"] == FLOW_COOKIE]
    state, _, verifier = flow["value"].split(".")
    await context.add_cookies([{**flow, "value": f"{state}.another-nonce.{verifier}"}])
    await page.goto(back)
    assert "không hợp lệ" in (await page.text_content("#error-message") or "")
    assert [e for e in await events(gateway) if e.action == "account.sign-in"] == []
