"""Signing in (password, then TOTP code), signing out here or everywhere, and the
language switch.

The password opens a short session that can do one thing, take the code; the code
opens the real session under a new token. Every failed factor counts against the
account (locked after `console_lockout_failures`) and against the source address in
the failure budget the token endpoint also spends (`addr:<ip>`), so a guesser is slowed
by address as well as by account.

Example:
    >>> add_routes(app)  # GET/POST /console/sign-in, /console/sign-in/code, ...
"""

from __future__ import annotations

import math
from datetime import timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.edge.console import oidc, passkeys
from gateway.edge.console.i18n import LANGUAGES
from gateway.edge.console.views import (
    LANG_COOKIE,
    PREFIX,
    SECURITY_HEADERS,
    View,
    clear_session_cookie,
    cookie_name,
    page,
    redirect,
    set_session_cookie,
)
from gateway.identity import accounts, websessions
from gateway.identity import passkeys as keys
from gateway.identity.accounts import Locked, LockoutPolicy
from gateway.store import changes
from gateway.store.models import Account, AdminEvent, utcnow

__all__ = ["add_routes"]

# Time to type the code after the password.
SECOND_FACTOR_MINUTES = 5


def _policy(view: View) -> LockoutPolicy:
    s = view.state.settings
    return LockoutPolicy(s.console_lockout_failures, s.console_lockout_minutes * 60)


def _address(view: View) -> str:
    return view.request.remote or "-"


def _token(view: View) -> str:
    return view.request.cookies.get(cookie_name(view.state.settings.console_secure_cookies), "")


def _locked(view: View, template: str, e: Locked, status: int = 403) -> web.Response:
    minutes = max(1, math.ceil((e.until - utcnow()).total_seconds() / 60))
    return view.render(template, status=status, error=view.t("signin.locked", minutes=minutes))


async def _throttled(view: View, template: str) -> web.Response | None:
    wait = await view.state.auth_failures.blocked([f"addr:{_address(view)}"])
    if wait is None:
        return None
    seconds = max(1, math.ceil(wait))
    return view.render(template, status=429, error=view.t("signin.throttled", seconds=seconds))


@page(stage=None)
async def sign_in_form(view: View) -> web.StreamResponse:
    """The first factor's form (a signed-in person goes to the home page)."""
    if view.found and view.found.session.stage == websessions.SIGNED_IN:
        return redirect(f"{PREFIX}/")
    notice = {"expired": "signin.expired", "out": "signin.signed_out"}.get(
        view.request.query.get("m", "")
    )
    return view.render(
        "signin.html",
        name="",
        error=None,
        notice=view.t(notice) if notice else None,
        oidc=oidc.enabled(view),
    )


@page(stage=None)
async def sign_in(view: View) -> web.StreamResponse:
    """Check the password; on success, a second-factor session and the code's form."""
    name, password = view.field("name").strip(), view.field("password")
    if (throttled := await _throttled(view, "signin.html")) is not None:
        return throttled
    state = view.state
    try:
        async with state.sessions() as s, s.begin():
            account = await accounts.check_password(
                s, name, password, policy=_policy(view), address=_address(view)
            )
            if account is not None:
                if view.found is not None:  # an earlier half-finished sign-in
                    await websessions.close_session(s, _token(view))
                token, _ = await websessions.open_session(
                    s,
                    account,
                    websessions.PASSWORD_DONE,
                    lifetime=timedelta(minutes=SECOND_FACTOR_MINUTES),
                    address=_address(view),
                )
    except Locked as e:
        return _locked(view, "signin.html", e)
    if account is None:
        await state.auth_failures.failed([f"addr:{_address(view)}"])
        return view.render(
            "signin.html",
            status=401,
            name=name,
            error=view.t("signin.failed"),
            notice=None,
            oidc=oidc.enabled(view),
        )
    response = redirect(f"{PREFIX}/sign-in/code")
    set_session_cookie(response, token, state)
    return response


async def _second_factor_page(
    view: View, status: int = 200, error: str | None = None
) -> web.Response:
    """The second factor's page: the code's form, and a passkey's if the account has one."""
    return view.render("totp.html", status=status, error=error, passkey=await passkeys.offer(view))


@page(stage=websessions.PASSWORD_DONE)
async def code_form(view: View) -> web.StreamResponse:
    """The second factor's form."""
    return await _second_factor_page(view)


@page(stage=websessions.PASSWORD_DONE)
async def code(view: View) -> web.StreamResponse:
    """Check the TOTP code; on success, the real session under a new token."""
    assert view.found is not None  # page(stage=...) saw to it
    if (throttled := await _throttled(view, "totp.html")) is not None:
        return throttled
    token = None
    try:
        async with view.state.sessions() as s, s.begin():
            account = await s.get(Account, view.found.account.id)
            assert account is not None
            ok = await accounts.check_second_factor(
                s, account, view.field("code"), policy=_policy(view), address=_address(view)
            )
            if ok:
                token = await _signed_in(view, s, account)
    except Locked as e:
        return _locked(view, "totp.html", e)
    return await _second_factor_answer(view, token, "signin.totp_failed")


async def _signed_in(view: View, s: AsyncSession, account: Account) -> str:
    """Both factors given: the half-way session ends, the real one opens (a new token)."""
    await websessions.close_session(s, _token(view))
    token, _ = await websessions.open_session(
        s,
        account,
        websessions.SIGNED_IN,
        lifetime=timedelta(hours=view.state.settings.console_session_hours),
        address=_address(view),
    )
    return token


async def _second_factor_answer(view: View, token: str | None, failed: str) -> web.Response:
    if token is None:
        await view.state.auth_failures.failed([f"addr:{_address(view)}"])
        return await _second_factor_page(view, status=401, error=view.t(failed))
    response = redirect(f"{PREFIX}/")
    set_session_cookie(response, token, view.state)
    return response


@page(stage=websessions.PASSWORD_DONE)
async def passkey(view: View) -> web.StreamResponse:
    """Check a passkey's answer to the page's challenge (instead of the code)."""
    assert view.found is not None
    if (throttled := await _throttled(view, "totp.html")) is not None:
        return throttled
    challenge = await passkeys.take_challenge(view)
    token = None
    try:
        async with view.state.sessions() as s, s.begin():
            account = await s.get(Account, view.found.account.id)
            assert account is not None
            try:
                if challenge is None:
                    raise keys.Refused("no challenge")
                await keys.authenticate(
                    s, account, view.field("credential"), challenge, passkeys.party(view)
                )
                ok = True
            except keys.Refused:
                ok = False
            await accounts.note_second_factor(
                s, account, ok, factor="passkey", policy=_policy(view), address=_address(view)
            )
            if ok:
                token = await _signed_in(view, s, account)
    except Locked as e:
        return _locked(view, "totp.html", e)
    return await _second_factor_answer(view, token, "signin.passkey_failed")


@page(stage=None, before_new_password=True)
async def sign_out(view: View) -> web.StreamResponse:
    """End this session (a POST with the session's token: no sign-out by a link)."""
    if view.found is not None:
        async with view.state.sessions() as s, s.begin():
            await websessions.close_session(s, _token(view))
            name = view.found.account.name
            await changes.note(
                s,
                [
                    AdminEvent(
                        actor=accounts.person(name),
                        action="account.sign-out",
                        target=accounts.person(name),
                    )
                ],
            )
    response = redirect(f"{PREFIX}/sign-in?m=out")
    clear_session_cookie(response, view.state)
    return response


@page()
async def sign_out_everywhere(view: View) -> web.StreamResponse:
    """End every session of the account, on every browser."""
    assert view.found is not None
    name = view.found.account.name
    async with view.state.sessions() as s, s.begin():
        await accounts.end_sessions(s, view.found.account.id)
        await changes.note(
            s,
            [
                AdminEvent(
                    actor=accounts.person(name),
                    action="account.sign-out-everywhere",
                    target=accounts.person(name),
                )
            ],
        )
    response = redirect(f"{PREFIX}/sign-in?m=out")
    clear_session_cookie(response, view.state)
    return response


async def language(request: web.Request) -> web.StreamResponse:
    """Switch language (a preference, not a change of anything: a plain link)."""
    lang = request.match_info["lang"]
    back = request.query.get("next", f"{PREFIX}/")
    # Only back into the console: never an open redirect.
    if not back.startswith(f"{PREFIX}/") or back.startswith("//") or "\\" in back:
        back = f"{PREFIX}/"
    response = redirect(back)
    response.headers.update(SECURITY_HEADERS)
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, path="/", samesite="Strict", max_age=365 * 86400)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/sign-in", sign_in_form)
    app.router.add_post(f"{PREFIX}/sign-in", sign_in)
    app.router.add_get(f"{PREFIX}/sign-in/code", code_form)
    app.router.add_post(f"{PREFIX}/sign-in/code", code)
    app.router.add_post(f"{PREFIX}/sign-in/passkey", passkey)
    app.router.add_post(f"{PREFIX}/sign-out", sign_out)
    app.router.add_post(f"{PREFIX}/sign-out/everywhere", sign_out_everywhere)
    app.router.add_get(f"{PREFIX}/lang/{{lang}}", language)
