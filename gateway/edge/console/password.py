"""The person chooses their password: at the first sign-in (a one-time password from
`lgsp account create` or `reset` opens only this page), or whenever they want.

The rules are shown beside the field, and a refused password is answered with each
broken rule next to it (NIST SP 800-63B: length, the breached list, not the name).

Example:
    >>> add_routes(app)  # GET/POST /console/password
"""

from __future__ import annotations

from aiohttp import web

from gateway.edge.console.views import PREFIX, View, page, redirect
from gateway.identity import accounts
from gateway.identity.accounts import AccountError, PasswordRejected
from gateway.identity.passwords import MAX_LENGTH
from gateway.store.models import Account

__all__ = ["add_routes"]


def _form(
    view: View, status: int = 200, errors: dict[str, list[str]] | None = None
) -> web.Response:
    assert view.found is not None
    return view.render(
        "password.html",
        status=status,
        errors=errors or {},
        forced=view.found.account.must_change_password,
        min_length=view.state.settings.console_password_min_length,
        max_length=MAX_LENGTH,
    )


@page(before_new_password=True)
async def password_form(view: View) -> web.StreamResponse:
    """The form: current password, new password, the new one again."""
    return _form(view)


@page(before_new_password=True)
async def password_save(view: View) -> web.StreamResponse:
    """Change the password; every other session of the account ends."""
    assert view.found is not None
    new = view.field("new")
    if new != view.field("again"):
        return _form(view, 422, {"again": [view.t("password.mismatch")]})
    try:
        async with view.state.sessions() as s, s.begin():
            account = await s.get(Account, view.found.account.id)
            assert account is not None
            await accounts.change_password(
                s,
                account,
                view.field("current"),
                new,
                min_length=view.state.settings.console_password_min_length,
                keep_session=view.found.session.id,
            )
    except PasswordRejected as e:
        return _form(view, 422, {"new": [_rule(view, p) for p in e.problems]})
    except AccountError as e:
        return _form(view, 422, {"current": [view.t(e.key)]})
    return redirect(f"{PREFIX}/?m=password")


def _rule(view: View, problem: str) -> str:
    return view.t(
        problem,
        min_length=view.state.settings.console_password_min_length,
        max_length=MAX_LENGTH,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/password", password_form)
    app.router.add_post(f"{PREFIX}/password", password_save)
