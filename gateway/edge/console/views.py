"""What every console page shares: templates, the session cookie, the CSRF check, roles,
and the headers that keep a browser safe.

Each handler is wrapped by `page(...)`, which, before the handler runs, finds the
session the cookie names (redirecting to sign-in without one), refuses a POST whose
synchronizer token is not the session's (or, before sign-in, not the pre-session
cookie's), refuses an account whose roles do not grant the page (deny unless granted);
and after it, sets the Content-Security-Policy (no script, but the console's own on a
page that asks for it (`View.script`: passkeys), styles from the
console only), frame-ancestors 'none' and X-Frame-Options DENY, no-store caching,
nosniff and no referrer.

Example:
    >>> @page(roles=ADMINISTER)
    ... async def agencies(view: View) -> web.Response:
    ...     return view.render("agencies.html", items=[])
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from gateway.admin.actor import Actor
from gateway.admin.edits import Editor
from gateway.edge.console.i18n import DEFAULT, LANGUAGES, translate
from gateway.edge.state import STATE, GatewayState
from gateway.identity.websessions import SIGNED_IN, Found, find_session
from gateway.upstream.allowlist import OutboundPolicy

__all__ = [
    "COMMENT_MAX",
    "PREFIX",
    "SECURITY_HEADERS",
    "View",
    "cookie_name",
    "page",
    "person_editor",
    "redirect",
    "set_session_cookie",
]

PREFIX = "/console"
COMMENT_MAX = 500  # characters of the comment a change asks for
LANG_COOKIE = "lgsp_lang"
# The pre-session cookie of the sign-in form (double-submit: no session exists yet).
PRE_COOKIE = "lgsp_signin"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}

SCRIPT_CSP = SECURITY_HEADERS["Content-Security-Policy"].replace(
    "default-src 'none';", "default-src 'none'; script-src 'self';"
)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway.edge.console", "templates"),
    autoescape=True,  # every value an outsider can put on a page is escaped
)


def cookie_name(secure: bool) -> str:
    """`__Host-lgsp_console` when secure (the browser then holds it to this host, path /
    and HTTPS); `lgsp_console` for a demo on plain HTTP.

    Example:
        >>> cookie_name(True)
        '__Host-lgsp_console'
    """
    return "__Host-lgsp_console" if secure else "lgsp_console"


def _cookie(response: web.StreamResponse, name: str, value: str, secure: bool, **kw: Any) -> None:
    response.set_cookie(
        ("__Host-" + name) if secure and not name.startswith("__Host-") else name,
        value,
        path="/",
        secure=secure,
        httponly=True,
        samesite="Strict",
        **kw,
    )


def set_session_cookie(response: web.StreamResponse, token: str, state: GatewayState) -> None:
    """Hand the browser the session token (a session cookie: it goes with the browser)."""
    secure = state.settings.console_secure_cookies
    _cookie(response, cookie_name(secure).removeprefix("__Host-"), token, secure)


def clear_session_cookie(response: web.StreamResponse, state: GatewayState) -> None:
    secure = state.settings.console_secure_cookies
    _cookie(response, cookie_name(secure).removeprefix("__Host-"), "", secure, max_age=0)


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST, the browser GETs the next page."""
    return web.Response(status=303, headers={"Location": location})


@dataclass
class View:
    """One request to the console: who (if signed in), in which language, its form."""

    request: web.Request
    state: GatewayState
    lang: str
    found: Found | None
    form: MultiDictProxy[str | bytes | bytearray | web.FileField] | None = None
    pre_token: str = ""
    extra_cookies: dict[str, str] = field(default_factory=dict)
    # The page runs the console's own script (/console/static/*.js; passkeys): its CSP
    # then allows scripts from the console, and still none inline.
    script: bool = False

    @property
    def csrf(self) -> str:
        return self.found.session.csrf if self.found else self.pre_token

    def field(self, name: str) -> str:
        value = self.form.get(name, "") if self.form is not None else ""
        return value if isinstance(value, str) else ""

    def t(self, key: str, /, **values: object) -> str:
        return translate(self.lang, key, **values)

    def render(self, template: str, status: int = 200, **values: Any) -> web.Response:
        account = (
            self.found.account if self.found and self.found.session.stage == SIGNED_IN else None
        )
        html = _TEMPLATES.get_template(template).render(
            t=self.t,
            lang=self.lang,
            csrf=self.csrf,
            account=account,
            path=self.request.path,
            prefix=PREFIX,
            **values,
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def error(self, status: int, key: str) -> web.Response:
        return self.render("error.html", status=status, message=self.t(key))


def _lang(request: web.Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, DEFAULT)
    return lang if lang in LANGUAGES else DEFAULT


async def _session(state: GatewayState, request: web.Request) -> Found | None:
    token = request.cookies.get(cookie_name(state.settings.console_secure_cookies), "")
    if not token:
        return None
    idle = timedelta(minutes=state.settings.console_idle_minutes)
    async with state.sessions() as s, s.begin():
        return await find_session(s, token, idle=idle)


def _csrf_ok(view: View, request: web.Request) -> bool:
    sent = view.field("csrf")
    expected = view.found.session.csrf if view.found else request.cookies.get(_pre(view), "")
    return bool(sent) and bool(expected) and hmac.compare_digest(sent, expected)


def _pre(view: View) -> str:
    return ("__Host-" if view.state.settings.console_secure_cookies else "") + PRE_COOKIE


Handler = Callable[[View], Awaitable[web.StreamResponse]]


def page(
    *, stage: str | None = SIGNED_IN, roles: tuple[str, ...] = (), before_new_password: bool = False
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a console handler: the session it needs (`stage`; None: none needed), the
    roles one of which it needs (empty: any signed-in person), the CSRF check of a POST.
    A person still on a one-time password sees only pages `before_new_password` allows
    (choosing their password, signing out) until they choose one.
    """

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            state = request.app[STATE]
            view = View(request, state, _lang(request), await _session(state, request))
            response = await _checked(view, handler, stage, roles, before_new_password)
            for k, v in SECURITY_HEADERS.items():
                response.headers[k] = v
            if view.script:
                response.headers["Content-Security-Policy"] = SCRIPT_CSP
            if view.pre_token:
                _cookie(response, PRE_COOKIE, view.pre_token, state.settings.console_secure_cookies)
            return response

        run.__doc__ = handler.__doc__
        return run

    return wrap


async def _checked(
    view: View, handler: Handler, stage: str | None, roles: tuple[str, ...], early: bool
) -> web.StreamResponse:
    request = view.request
    if stage is not None and (view.found is None or view.found.session.stage != stage):
        return redirect(f"{PREFIX}/sign-in")
    if stage == SIGNED_IN and not early and view.found and view.found.account.must_change_password:
        return redirect(f"{PREFIX}/password")
    if stage is None and view.found is None:
        # Pages before a session (sign-in) carry the pre-session token in their forms.
        view.pre_token = request.cookies.get(_pre(view), "") or secrets.token_urlsafe(32)
    if request.method == "POST":
        view.form = await request.post()
        if not _csrf_ok(view, request):
            return view.error(403, "error.csrf")
    if roles and (view.found is None or not set(roles) & set(view.found.account.roles)):
        return view.error(403, "error.forbidden")
    return await handler(view)


def person_editor(
    view: View, comment: str | None, *, dry_run: bool = False, if_match: str | None = None
) -> Editor:
    """The admin API's editor acting for the signed-in person (`person:<account>`, with
    their roles and the comment they typed); `dry_run` for a preview, `if_match` for a
    change on condition the policy has not moved since the preview.

    Example: ``await edits.restore(person_editor(view, "too tight", if_match='"7"'), 6)``."""
    assert view.found is not None
    account = view.found.account
    return Editor(
        view.state.sessions,
        Actor.person(account.name, frozenset(account.roles), comment),
        outbound=OutboundPolicy.from_settings(view.state.settings),
        if_match=if_match,
        dry_run=dry_run,
    )
