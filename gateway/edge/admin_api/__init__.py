"""The admin API, under `/admin/v1`: the province's configuration and the systems'
credentials, changed over HTTP by clients that hold an administrative role.

Roles (held by clients, see gateway/admin/actor.py):

    administrator   everything
    operator        services (settings, timeouts, schemas...), upstreams and rate limits;
                    not agencies, groups, clients, credentials, access rights, nor the
                    policy as a whole (apply, rollback)
    auditor         reads
    observer        reads

The handlers parse a request, call an operation of gateway/admin/ (which commits the
change as one new policy version, each entity it touches an admin event with its before
and after, under the actor `admin-api:<client>`), then rebuild this gateway's tables
before answering, so the caller's next request already sees its change (other replicas
pick it up on their own within a second).

    models.py       query models, bodies and answers (the OpenAPI schemas)
    api.py          the API, the caller as an actor, commit and ETag answers
    policy.py       the policy as a whole: read, replace, diff, versions, rollback
    collections.py  agencies, groups, clients, upstreams, services, rate limits
    credentials.py  clients' credentials: list, issue, rotate, revoke
    events.py       the admin events
    routes.py       the route table and its OpenAPI document
"""

from aiohttp import web

from gateway.edge.admin_api.api import PREFIX
from gateway.edge.admin_api.routes import ROUTES, build_openapi
from gateway.edge.toolkit import add_routes as _add

__all__ = ["PREFIX", "ROUTES", "add_routes", "build_openapi"]


def add_routes(app: web.Application) -> None:
    _add(app, ROUTES)
