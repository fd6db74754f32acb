"""A person's passkeys in the console (gateway/identity/passkeys.py): the list, adding
one (the browser's authenticator answers a fresh challenge kept in the person's
session), and removing one. After the password, a person with a passkey may give it
instead of the TOTP code (signin.py).

These are the only pages that run a script, the console's own /console/static/passkey.js
(WebAuthn has no form of its own); their CSP allows it and nothing inline.

Example:
    >>> add_routes(app)  # GET/POST /console/passkeys, POST /console/passkeys/{id}/remove
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web
from markupsafe import Markup
from sqlalchemy import select

from gateway.edge.console.views import PREFIX, View, page, redirect
from gateway.identity import passkeys
from gateway.identity.accounts import person
from gateway.store import changes
from gateway.store.models import Account, AdminEvent, ConsoleSession, Passkey

__all__ = ["add_routes", "offer", "party", "take_challenge"]


def _embedded(options: str) -> Markup:
    """JSON to put in the page's data block: no `<` in it, so no `</script>` either."""
    return Markup(options.replace("<", "\\u003c"))  # noqa: S704 - JSON, `<` escaped


def party(view: View) -> passkeys.Party:
    """The relying party: from the settings, else the public URL's origin and host."""
    s = view.state.settings
    parts = urlsplit(s.console_webauthn_origin or s.public_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return passkeys.Party(s.console_webauthn_rp_id or parts.hostname or "", origin)


async def _set_challenge(view: View) -> str:
    assert view.found is not None
    challenge = passkeys.new_challenge()
    async with view.state.sessions() as s, s.begin():
        row = await s.get(ConsoleSession, view.found.session.id)
        assert row is not None
        row.challenge = challenge
    return challenge


async def take_challenge(view: View) -> str | None:
    """The challenge the session's page was given, now spent (good once)."""
    assert view.found is not None
    async with view.state.sessions() as s, s.begin():
        row = await s.get(ConsoleSession, view.found.session.id)
        challenge = row.challenge if row else None
        if row is not None:
            row.challenge = None
    return challenge


async def offer(view: View) -> Markup | None:
    """For the second factor's page: the options to sign in with one of the account's
    passkeys (a fresh challenge in the session), or None if it has none."""
    assert view.found is not None
    async with view.state.sessions() as s:
        account = await s.get(Account, view.found.account.id)
        keys = await passkeys.passkeys_of(s, account) if account else []
    if not keys:
        return None
    view.script = True
    challenge = await _set_challenge(view)
    return _embedded(passkeys.authentication_options(keys, party(view), challenge))


async def _page(view: View, *, status: int = 200, error: str | None = None) -> web.Response:
    assert view.found is not None
    async with view.state.sessions() as s:
        account = await s.get(Account, view.found.account.id)
        assert account is not None
        keys = await passkeys.passkeys_of(s, account)
    options = passkeys.registration_options(account, keys, party(view), await _set_challenge(view))
    view.script = True
    added = view.request.query.get("m") == "added"
    return view.render(
        "passkeys.html",
        status=status,
        keys=keys,
        options=_embedded(options),
        error=error,
        added=added,
    )


@page()
async def list_passkeys(view: View) -> web.StreamResponse:
    """The person's passkeys, and the form that adds one."""
    return await _page(view)


@page()
async def add(view: View) -> web.StreamResponse:
    """Keep the passkey the browser's authenticator made for the page's challenge."""
    assert view.found is not None
    challenge = await take_challenge(view)
    name = view.field("name").strip() or view.t("passkeys.unnamed")
    try:
        if challenge is None:
            raise passkeys.Refused("no challenge")
        async with view.state.sessions() as s, s.begin():
            account = await s.get(Account, view.found.account.id)
            assert account is not None
            await passkeys.register(
                s, account, view.field("credential"), challenge, party(view), name
            )
    except passkeys.Refused:
        return await _page(view, status=400, error=view.t("passkeys.refused"))
    return redirect(f"{PREFIX}/passkeys?m=added")


@page()
async def remove(view: View) -> web.StreamResponse:
    """Remove one of the person's own passkeys."""
    assert view.found is not None
    account = view.found.account
    raw = view.request.match_info["id"]
    async with view.state.sessions() as s, s.begin():
        key = await s.scalar(
            select(Passkey).where(
                Passkey.id == (int(raw) if raw.isdigit() else -1),
                Passkey.account_id == account.id,
            )
        )
        if key is None:
            return view.error(404, "error.not_found")
        await s.delete(key)
        who = person(account.name)
        event = AdminEvent(
            actor=who, action="account.passkey-remove", target=who, after={"passkey": key.name}
        )
        await changes.note(s, [event])
    return redirect(f"{PREFIX}/passkeys")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/passkeys", list_passkeys)
    app.router.add_post(f"{PREFIX}/passkeys", add)
    app.router.add_post(f"{PREFIX}/passkeys/{{id}}/remove", remove)
