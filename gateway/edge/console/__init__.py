"""The web console at /console: server-rendered pages for the people who administer the
gateway, served by the gateway itself (no second web server; no JavaScript but the
passkey pages' own script).

Vietnamese first, English switchable (i18n.py); personal accounts with a password and a
TOTP code (gateway/identity/accounts.py); server-side sessions (websessions.py); every
form with a synchronizer CSRF token and every page with a strict CSP (views.py).

Example:
    >>> add_routes(app)
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from gateway.edge.console import (
    access,
    credentials,
    dashboard,
    editing,
    kinds,
    oidc,
    pages,
    passkeys,
    password,
    people,
    services,
    signin,
    versions,
)
from gateway.edge.console.views import PREFIX, SECURITY_HEADERS

__all__ = ["add_routes"]

_STATIC = resources.files("gateway.edge.console").joinpath("static")
# The console's one stylesheet and one script (the CSP allows these only).
_FILES = {
    "console.css": (_STATIC.joinpath("console.css").read_bytes(), "text/css"),
    "passkey.js": (_STATIC.joinpath("passkey.js").read_bytes(), "text/javascript"),
}


async def static(request: web.Request) -> web.StreamResponse:
    """The console's stylesheet or its script."""
    found = _FILES.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"}
    return web.Response(body=found[0], content_type=found[1], charset="utf-8", headers=headers)


def add_routes(app: web.Application) -> None:
    """The console's routes, under /console.

    Example:
        >>> add_routes(web.Application())
    """
    signin.add_routes(app)
    oidc.add_routes(app)
    pages.add_routes(app)
    dashboard.add_routes(app)
    password.add_routes(app)
    people.add_routes(app)
    services.add_routes(app)
    versions.add_routes(app)
    access.add_routes(app)
    credentials.add_routes(app)
    editing.add_routes(app, kinds.CATALOGUE)
    passkeys.add_routes(app)
    app.router.add_get(f"{PREFIX}/static/{{name}}", static)
