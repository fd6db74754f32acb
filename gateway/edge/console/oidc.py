"""Signing in to the console through the province's OpenID Connect provider, when the
settings name one (`console_oidc_issuer`): a link on the sign-in page starts the code
flow (gateway/identity/oidc.py), the provider sends the browser back to the callback,
which checks the state against the browser's cookie, redeems the code with the PKCE
verifier, checks the ID token and its nonce, maps the groups to roles and opens the
session of the person's account.

The flow's cookie is SameSite=Lax (it must come back on the provider's redirect, a
cross-site navigation), HttpOnly, for the callback's path only and ten minutes, and is
cleared by the callback whatever its outcome. The session cookie stays SameSite=Strict:
since a browser withholds it on the rest of a redirect chain that began on another
site, the callback answers with a page that moves on to the console by itself.

Example:
    >>> add_routes(app)  # GET /console/sign-in/oidc, /console/sign-in/oidc/callback
"""

from __future__ import annotations

import hmac
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web

from gateway.edge.console.views import (
    PREFIX,
    View,
    cookie_name,
    page,
    redirect,
    set_session_cookie,
)
from gateway.identity import oidc, websessions
from gateway.identity.accounts import AccountError, person
from gateway.store import changes
from gateway.store.models import AdminEvent

__all__ = ["add_routes", "enabled"]

log = structlog.get_logger(__name__)

START = f"{PREFIX}/sign-in/oidc"
CALLBACK = f"{START}/callback"
FLOW_COOKIE = "lgsp_oidc"
FLOW_SECONDS = 600


def enabled(view: View) -> bool:
    """Is sign-in through the provider on (an issuer and a client set)?"""
    s = view.state.settings
    return bool(s.console_oidc_issuer and s.console_oidc_client_id)


def _client(view: View) -> oidc.Client:
    s = view.state.settings
    return oidc.Client(
        s.console_oidc_client_id,
        s.console_oidc_client_secret,
        s.console_oidc_redirect_url or s.public_url.rstrip("/") + CALLBACK,
        s.console_oidc_scopes,
    )


def _flow_cookie(view: View, response: web.StreamResponse, value: str, max_age: int) -> None:
    secure = view.state.settings.console_secure_cookies
    response.set_cookie(
        FLOW_COOKIE,
        value,
        path=START,
        secure=secure,
        httponly=True,
        samesite="Lax",
        max_age=max_age,
    )


def _refusal_page(view: View, status: int, reason: str) -> web.Response:
    message = view.t(f"oidc.refused_{reason}")
    return view.render(
        "error.html",
        status=status,
        message=message,
        title="oidc.refused_title",
        back_to_sign_in=True,
    )


def _refused(view: View, reason: str) -> web.Response:
    response = _refusal_page(view, 403, reason)
    _flow_cookie(view, response, "", 0)
    return response


@page(stage=None)
async def start(view: View) -> web.StreamResponse:
    """Send the browser to the provider, with a fresh state, nonce and PKCE challenge."""
    if not enabled(view):
        return view.error(404, "error.not_found")
    issuer = view.state.settings.console_oidc_issuer or ""
    try:
        async with aiohttp.ClientSession() as http:
            provider = await oidc.discover(http, issuer)
    except (oidc.Refused, aiohttp.ClientError, TimeoutError) as e:
        log.warning("oidc provider unreachable", issuer=issuer, error=str(e))
        return _refusal_page(view, 502, "provider")
    flow = oidc.new_flow()
    response = redirect(oidc.authorize_url(provider, _client(view), flow))
    _flow_cookie(view, response, flow.cookie(), FLOW_SECONDS)
    return response


async def _record_refusal(view: View, claims: dict[str, object], reason: str) -> None:
    name = str(claims.get("preferred_username") or claims.get("sub") or "")
    if not name:
        return
    async with view.state.sessions() as s, s.begin():
        event = AdminEvent(
            actor=person(name.lower()),
            action="account.sign-in-refused",
            target=person(name.lower()),
            after={"via": "oidc", "reason": reason, "address": view.request.remote or "-"},
        )
        await changes.note(s, [event])


@page(stage=None)
async def callback(view: View) -> web.StreamResponse:
    """The provider's answer: checked, then the person's session, or a refusal page."""
    if not enabled(view):
        return view.error(404, "error.not_found")
    settings, query = view.state.settings, view.request.query
    flow = oidc.Flow.parse(view.request.cookies.get(FLOW_COOKIE, ""))
    if flow is None or not hmac.compare_digest(query.get("state", ""), flow.state):
        log.warning("oidc callback with a state not this browser's")
        return _refused(view, "state")
    if "error" in query or not query.get("code"):
        return _refused(view, "provider_said")
    if query.get("iss", settings.console_oidc_issuer) != settings.console_oidc_issuer:
        return _refused(view, "token")  # another provider's answer (RFC 9207)
    claims: dict[str, object] = {}
    try:
        async with aiohttp.ClientSession() as http:
            provider = await oidc.discover(http, settings.console_oidc_issuer or "")
            claims = await oidc.redeem(http, provider, _client(view), query["code"], flow)
        if settings.console_oidc_require_mfa and not oidc.second_factor_asserted(
            claims, settings.console_oidc_mfa_acr
        ):
            raise oidc.Refused("mfa")
        groups = claims.get(settings.console_oidc_groups_claim)
        roles = oidc.roles_for(groups, settings.console_oidc_roles)
        if not roles:
            raise oidc.Refused("roles")
        async with view.state.sessions() as s, s.begin():
            account = await oidc.link_account(
                s, provider.issuer, claims, roles, view.request.remote or "-"
            )
            if view.found is not None:  # a session already in this browser ends here
                secure = settings.console_secure_cookies
                await websessions.close_session(s, view.request.cookies[cookie_name(secure)])
            token, _ = await websessions.open_session(
                s,
                account,
                websessions.SIGNED_IN,
                lifetime=timedelta(hours=settings.console_session_hours),
                address=view.request.remote,
            )
    except oidc.Refused as e:
        log.warning("oidc sign-in refused", reason=e.reason, error=str(e))
        await _record_refusal(view, claims, e.reason)
        return _refused(view, e.reason if e.reason != "code" else "token")
    except AccountError as e:  # the settings map a group to roles that do not exist
        log.error("oidc role mapping not valid", error=str(e))
        return _refused(view, "roles")
    except (aiohttp.ClientError, TimeoutError) as e:
        log.warning("oidc provider unreachable", error=str(e))
        return _refused(view, "provider")
    response = view.render("oidc_done.html")
    set_session_cookie(response, token, view.state)
    _flow_cookie(view, response, "", 0)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get(START, start)
    app.router.add_get(CALLBACK, callback)
