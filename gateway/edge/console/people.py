"""Administrators manage people's accounts in the console: list them, create one (its
one-time password and TOTP secret shown once, on the answer to the form), change its
roles, reset it (a lost phone or password; unlocks it) or disable it.

The same operations as `lgsp account` (gateway/identity/accounts.py), with the person
who does it as the actor (`person:<account>`) and the comment they typed. Nobody can
disable themselves or take away their own administrator role here: that is how a
console loses its last administrator.

Example:
    >>> add_routes(app)  # GET/POST /console/accounts, POST /console/accounts/{name}/...
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from gateway.admin.actor import ADMINISTER, ADMINISTRATOR
from gateway.edge.console.views import COMMENT_MAX, PREFIX, View, page, redirect
from gateway.identity import accounts
from gateway.identity.accounts import ROLES, AccountError, Issued
from gateway.store.models import Account, utcnow

__all__ = ["add_routes"]


async def _listing(
    view: View, status: int = 200, *, issued: Issued | None = None, error: str | None = None
) -> web.Response:
    async with view.state.sessions() as s:
        rows = list((await s.scalars(select(Account).order_by(Account.name))).all())
    now = utcnow()
    return view.render(
        "accounts.html",
        status=status,
        people=rows,
        locked={a.name for a in rows if a.locked_until is not None and a.locked_until > now},
        roles=ROLES,
        issued=issued,
        error=error,
        done=view.request.query.get("done"),
    )


@page(roles=ADMINISTER)
async def people(view: View) -> web.StreamResponse:
    """Every account, and the form to create one."""
    return await _listing(view)


def _me(view: View) -> str:
    assert view.found is not None
    return view.found.account.name


def _comment(view: View) -> str | None:
    return view.field("comment").strip()[:COMMENT_MAX] or None


@page(roles=ADMINISTER)
async def create(view: View) -> web.StreamResponse:
    """Create an account; its one-time password and TOTP secret are on this answer only."""
    assert view.form is not None
    try:
        async with view.state.sessions() as s, s.begin():
            issued = await accounts.create_account(
                s,
                name=view.field("name").strip(),
                display_name=view.field("display_name").strip() or view.field("name").strip(),
                roles=[r for r in view.form.getall("roles", []) if isinstance(r, str)],
                actor=accounts.person(_me(view)),
                comment=_comment(view),
            )
    except AccountError as e:
        return await _listing(view, 422, error=str(e))
    return await _listing(view, issued=issued)


@page(roles=ADMINISTER)
async def change(view: View) -> web.StreamResponse:
    """Roles, reset or disable, for the account the path names."""
    assert view.form is not None
    name, action = view.request.match_info["name"], view.request.match_info["action"]
    actor, comment = accounts.person(_me(view)), _comment(view)
    roles = [r for r in view.form.getall("roles", []) if isinstance(r, str)]
    if name == _me(view) and (
        action == "disable" or (action == "roles" and ADMINISTRATOR not in roles)
    ):
        return await _listing(view, 409, error=view.t("people.not_yourself"))
    issued = None
    try:
        async with view.state.sessions() as s, s.begin():
            if action == "roles":
                await accounts.set_roles(s, name, roles, actor=actor, comment=comment)
            elif action == "reset":
                issued = await accounts.reset_account(s, name, actor=actor, comment=comment)
            elif action == "disable":
                await accounts.disable_account(s, name, actor=actor, comment=comment)
            else:
                return view.error(404, "error.not_found")
    except AccountError as e:
        return await _listing(view, 422, error=str(e))
    if issued is not None:
        return await _listing(view, issued=issued)
    return redirect(f"{PREFIX}/accounts?done={action}")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/accounts", people)
    app.router.add_post(f"{PREFIX}/accounts", create)
    app.router.add_post(f"{PREFIX}/accounts/{{name}}/{{action}}", change)
